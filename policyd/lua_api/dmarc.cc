// `dmarc`: dmarc.check{from_domain=, spf={result=, domain=}, dkim={{result=,
// domain=}, ...}} -> a table (docs/lua-api.md). Finds the policy record at
// _dmarc.<From domain>, else at _dmarc.<Organizational Domain> (RFC 7489
// 6.6.3), through the worker's c-ares resolver and its cache; a lookup
// that must wait suspends the calling hook like dns.wait (ARCHITECTURE
// pattern 8). The rules themselves live in policyd/dmarc/. Never blocks.
#include <memory>
#include <random>
#include <string>

#include "policyd/dmarc/evaluate.h"
#include "policyd/dmarc/org_domain.h"
#include "policyd/dmarc/record.h"
#include "policyd/dns/resolver.h"
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"
#include "policyd/lua_runtime/runtime_metrics.h"

namespace mailhook::policyd {

// The check a hook waits for: one query at a time, the From domain's
// record first, then the Organizational Domain's.
struct DmarcLookup {
  SessionContext* session = nullptr;
  dmarc::Message message;
  bool at_org = false;  // the second query (_dmarc.<org domain>)
  bool sent = false;
  bool done = false;
  dns::Answer answer;
};

namespace {

using dmarc::Result;

// RFC 1035 2.3.4 / RFC 7489 6.6.1: an ASCII host name (A-labels for IDN),
// labels of 1..63 octets, at most 253 in all; "_" is allowed so a script's
// own test domains work. Anything else is never sent to DNS.
bool dns_name(std::string_view d) {
  if (d.empty() || d.size() > 253) return false;
  std::size_t label = 0;
  for (char c : d) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

std::string field_string(lua_State* L, int table, const char* key) {
  std::string out;
  lua_getfield(L, table, key);
  if (lua_type(L, -1) == LUA_TSTRING) {
    std::size_t n = 0;
    const char* s = lua_tolstring(L, -1, &n);
    out.assign(s, n);
  }
  lua_pop(L, 1);
  return out;
}

dmarc::Identifier identifier(lua_State* L, int table) {
  dmarc::Identifier id;
  id.result = field_string(L, table, "result");
  id.domain = dmarc::normalize_domain(field_string(L, table, "domain"));
  id.org_domain = dmarc::org_domain(id.domain);
  return id;
}

// Reads the argument table; "" or the argument error. Raises nothing, so
// no C++ object is skipped by a longjmp (Lua is built as C).
std::string read_request(lua_State* L, dmarc::Message& m) {
  lua_getfield(L, 1, "from_domain");
  if (lua_type(L, -1) != LUA_TSTRING) return "from_domain must be a string";
  lua_pop(L, 1);
  m.from_domain = dmarc::normalize_domain(field_string(L, 1, "from_domain"));
  m.from_org_domain = dmarc::org_domain(m.from_domain);
  const int spf = lua_getfield(L, 1, "spf");
  if (spf == LUA_TTABLE) {
    m.spf.push_back(identifier(L, lua_gettop(L)));
  } else if (spf != LUA_TNIL) {
    return "spf must be a table {result=, domain=}";
  }
  lua_pop(L, 1);
  const int dkim = lua_getfield(L, 1, "dkim");
  if (dkim == LUA_TTABLE) {
    const int t = lua_gettop(L);
    const lua_Unsigned n = lua_rawlen(L, t);
    for (lua_Unsigned i = 1; i <= n; ++i) {
      if (lua_rawgeti(L, t, static_cast<lua_Integer>(i)) != LUA_TTABLE) return "dkim must be an array of {result=, domain=}";
      m.dkim.push_back(identifier(L, lua_gettop(L)));
      lua_pop(L, 1);
    }
  } else if (dkim != LUA_TNIL) {
    return "dkim must be an array of {result=, domain=}";
  }
  lua_pop(L, 1);
  return "";
}

void set_string(lua_State* L, const char* key, std::string_view v) {
  lua_pushlstring(L, v.data(), v.size());
  lua_setfield(L, -2, key);
}

int push_verdict(lua_State* L, const DmarcLookup& d, const dmarc::Verdict& v, const dmarc::Record* record,
                 std::string_view reason) {
  // For the transaction's log line (activity.h): the last check wins.
  if (d.session != nullptr && !d.session->transaction_id.empty()) {
    d.session->auth.dmarc = log::AuthResults::Dmarc{
        .result = std::string(dmarc::result_name(v.result)),
        .from_domain = d.message.from_domain,
        .policy = v.has_policy ? std::string(dmarc::policy_name(v.policy)) : std::string(),
        .disposition = std::string(dmarc::policy_name(v.disposition))};
  }
  lua_createtable(L, 0, 9);
  set_string(L, "result", dmarc::result_name(v.result));
  if (v.has_policy) {
    set_string(L, "policy", dmarc::policy_name(v.policy));
    set_string(L, "policy_domain", d.at_org ? d.message.from_org_domain : d.message.from_domain);
    lua_pushinteger(L, record->percent);
    lua_setfield(L, -2, "pct");
  }
  set_string(L, "disposition", dmarc::policy_name(v.disposition));
  lua_pushboolean(L, v.spf_aligned);
  lua_setfield(L, -2, "spf_aligned");
  lua_pushboolean(L, v.dkim_aligned);
  lua_setfield(L, -2, "dkim_aligned");
  set_string(L, "org_domain", d.message.from_org_domain);
  if (!reason.empty()) set_string(L, "reason", reason);
  return 1;
}

enum class Discovery : std::uint8_t {
  NoRecord,  // NXDOMAIN, or no TXT that starts with v=DMARC1
  Found,     // exactly one valid record
  Invalid,   // a record that cannot be applied, or several (permerror)
  Failed,    // SERVFAIL, timeout, no resolver (temperror)
};

// RFC 7489 6.6.3 steps 2-5 on one answer.
Discovery discover(const dns::Answer& a, dmarc::Record& record, std::string& reason) {
  if (a.rcode == dns::kNxDomain) return Discovery::NoRecord;
  if (a.rcode != dns::kNoError) {
    reason = a.rcode == dns::kTimeout ? "DNS timeout" : "DNS " + std::string(dns::rcode_name(a.rcode));
    return Discovery::Failed;
  }
  int records = 0;
  for (const dns::Record& rr : a.message.answer) {
    if (rr.type != dns::kTXT) continue;
    dmarc::ParsedRecord p = dmarc::parse_record(rr.text());
    if (p.status == dmarc::RecordStatus::NotDmarc) continue;  // step 3: discarded
    if (++records > 1) {
      reason = "more than one DMARC record";
      return Discovery::Invalid;
    }
    if (p.status == dmarc::RecordStatus::Invalid) {
      reason = "malformed DMARC record: " + p.error;
    } else {
      record = p.record;
    }
  }
  if (records == 0) return Discovery::NoRecord;
  return reason.empty() ? Discovery::Found : Discovery::Invalid;
}

// pct sampling (RFC 7489 6.6.4): only drawn when it can matter.
int sample_for(const dmarc::Record& r) {
  if (r.percent <= 0 || r.percent >= 100) return 0;
  std::random_device rd;
  return static_cast<int>(rd() % 100);
}

// Sends the pending query; done at once on a cache hit or without DNS.
void send(SessionContext& s, const std::shared_ptr<DmarcLookup>& d) {
  d->sent = true;
  const std::string name = "_dmarc." + (d->at_org ? d->message.from_org_domain : d->message.from_domain);
  if (s.resolver == nullptr) {
    d->done = true;
    d->answer.error = "no resolver";
    return;
  }
  if (std::optional<dns::Answer> hit = s.resolver->cached(name, dns::kIN, dns::kTXT)) {
    s.metrics->dns_cache_hits.add();
    d->done = true;
    d->answer = std::move(*hit);
    return;
  }
  s.metrics->dns_queries.add();
  std::weak_ptr<DmarcLookup> weak = d;
  const auto started = std::chrono::steady_clock::now();
  s.resolver->query(name, dns::kIN, dns::kTXT, [weak, started](dns::Answer a) {
    auto d = weak.lock();
    if (!d) return;  // the session ended, or a newer check replaced this one
    d->session->metrics->dns_answer(a.rcode, std::chrono::steady_clock::now() - started);
    d->done = true;
    d->answer = std::move(a);
    d->session->wake();  // never resumes Lua here; the hook runner does
  });
}

// What to do next with the lookup: answer, wait, or query the Organizational Domain.
enum class Step : std::uint8_t { Answered, Wait };

Step step(lua_State* L, SessionContext& s) {
  const std::shared_ptr<DmarcLookup> d = s.dmarc;
  while (true) {
    if (!d->sent) send(s, d);
    if (!d->done) return Step::Wait;
    dmarc::Record record;
    std::string reason;
    switch (discover(d->answer, record, reason)) {
      case Discovery::Found: {
        const dmarc::Verdict v = dmarc::evaluate(record, d->at_org, d->message, sample_for(record));
        push_verdict(L, *d, v, &record, record.policy_defaulted ? "invalid p= or sp=, applied as p=none (rua= given)" : "");
        return Step::Answered;
      }
      case Discovery::Invalid:
        push_verdict(L, *d, dmarc::without_policy(Result::PermError, d->message), nullptr, reason);
        return Step::Answered;
      case Discovery::Failed:
        push_verdict(L, *d, dmarc::without_policy(Result::TempError, d->message), nullptr, reason);
        return Step::Answered;
      case Discovery::NoRecord:
        // RFC 7489 6.6.3 step 4: once more at the Organizational Domain.
        if (!d->at_org && d->message.from_org_domain != d->message.from_domain) {
          d->at_org = true;
          d->sent = false;
          d->done = false;
          d->answer = {};
          continue;
        }
        push_verdict(L, *d, dmarc::without_policy(Result::None, d->message), nullptr, "no DMARC record");
        return Step::Answered;
    }
  }
}

int advance(lua_State* L, SessionContext& s);

int check_continuation(lua_State* L, int, lua_KContext) {
  SessionContext* s = current_session(L);
  if (s == nullptr || !s->dmarc) return luaL_error(L, "dmarc.check: the session's lookup is gone");
  return advance(L, *s);
}

int advance(lua_State* L, SessionContext& s) {
  if (step(L, s) == Step::Answered) {
    s.dmarc.reset();
    return 1;
  }
  if (L != s.thread || !lua_isyieldable(L)) {
    s.dmarc.reset();
    return luaL_error(L, "dmarc.check cannot wait here: call it from the hook itself, "
                         "not from a coroutine of the script or a C callback");
  }
  {
    std::weak_ptr<DmarcLookup> weak = s.dmarc;
    s.resume_when = [weak] {
      auto d = weak.lock();
      return !d || d->done;
    };
  }  // `weak` ends here: lua_yieldk does not return
  return lua_yieldk(L, 0, 0, check_continuation);
}

int dmarc_check(lua_State* L) {
  SessionContext* s = current_session(L);
  if (s == nullptr) return luaL_error(L, "dmarc.check is only available inside a hook");
  luaL_checktype(L, 1, LUA_TTABLE);
  bool bad = false;
  {
    auto d = std::make_shared<DmarcLookup>();
    d->session = s;
    const std::string error = read_request(L, d->message);
    if (!error.empty()) {
      lua_pushfstring(L, "bad argument #1 to 'dmarc.check' (%s)", error.c_str());
      bad = true;
    } else if (!dns_name(d->message.from_domain)) {
      // Client bytes (the From header): an answer, not a script error.
      push_verdict(L, *d, dmarc::without_policy(Result::PermError, d->message), nullptr,
                   "the From domain is not a DNS name");
      return 1;
    } else {
      s->dmarc = std::move(d);
    }
  }
  if (bad) return lua_error(L);
  return advance(L, *s);
}

}  // namespace

void open_dmarc(lua_State* L) {
  lua_newtable(L);
  const luaL_Reg fns[] = {{"check", dmarc_check}, {nullptr, nullptr}};
  luaL_setfuncs(L, fns, 0);
  lua_setglobal(L, "dmarc");
}

}  // namespace mailhook::policyd
