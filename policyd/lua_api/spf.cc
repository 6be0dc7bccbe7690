// `spf.check(ip, helo, sender [, options])` -> result, explanation,
// mechanism: RFC 7208 check_host() by our own evaluator (policyd/spf/)
// on the worker's c-ares resolver and answer cache. libspf2 is not used:
// its resolver blocks the calling thread. A check whose answers are all
// cached returns at once; otherwise it suspends only the calling session's
// hook, as dns.wait does (ARCHITECTURE pattern 8): answers are stored by
// the resolver's callbacks, the hook resumes from the run queue. Never
// blocks the worker; never resumes Lua inside a c-ares callback.
#include <chrono>
#include <ctime>
#include <memory>
#include <set>

#include "mailcore/telemetry/log.h"
#include "policyd/dns/resolver.h"
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"
#include "policyd/lua_runtime/hook_runner.h"
#include "policyd/lua_runtime/runtime_metrics.h"
#include "policyd/lua_runtime/script_clock.h"
#include "policyd/spf/check.h"

namespace mailhook::policyd {
namespace {

constexpr const char* kCallMeta = "mailhook.spf.call";

// One spf.check in progress. A full userdata on the hook's stack owns
// it (its __gc frees it); callbacks hold weak pointers, so an answer
// that comes after the session ended finds nothing.
struct SpfCall {
  explicit SpfCall(spf::Request r, spf::Limits l) : check(std::move(r), l) {}
  spf::Check check;
  std::set<spf::Question> sent;  // asked of the resolver, not answered yet
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::chrono::milliseconds time_limit{20000};  // --spf-timeout
  bool ready() const { return check.questions().empty(); }
};

struct CallBox {
  std::shared_ptr<SpfCall> call;
};

int call_gc(lua_State* L) {
  auto* box = static_cast<CallBox*>(luaL_checkudata(L, 1, kCallMeta));
  box->~CallBox();
  return 0;
}

spf::DnsAnswer convert(const dns::Answer& a, spf::RrType type) {
  spf::DnsAnswer out;
  if (a.rcode == dns::kNxDomain) {
    out.status = spf::DnsAnswer::Status::NxDomain;
    return out;
  }
  if (a.rcode != dns::kNoError) return out;  // Failure
  out.status = spf::DnsAnswer::Status::Records;
  for (const dns::Record& rr : a.message.answer) {
    if (rr.type != static_cast<std::uint16_t>(type)) continue;  // CNAMEs on the way
    switch (type) {
      case spf::RrType::A:
      case spf::RrType::Aaaa: out.values.push_back(rr.address); break;
      case spf::RrType::Mx:
      case spf::RrType::Ptr: out.values.push_back(rr.host); break;
      case spf::RrType::Txt: out.values.push_back(rr.text()); break;
    }
  }
  return out;
}

// Sends what the check asks for, answering from the cache first. true:
// something is in flight and the hook must wait.
bool ask(SessionContext& s, const std::shared_ptr<SpfCall>& call) {
  const std::vector<spf::Question> questions = call->check.questions();
  bool waiting = false;
  for (const spf::Question& q : questions) {
    if (call->sent.contains(q)) {
      waiting = true;
      continue;
    }
    const int type = static_cast<int>(q.type);
    if (std::optional<dns::Answer> hit = s.resolver->cached(q.name, dns::kIN, type)) {
      s.metrics->dns_cache_hits.add();
      call->check.answer(q, convert(*hit, q.type));
      continue;
    }
    s.metrics->dns_queries.add();
    call->sent.insert(q);
    waiting = true;
    std::weak_ptr<SpfCall> weak_call = call;
    std::weak_ptr<Waker> weak_waker = s.waker;
    s.resolver->query(q.name, dns::kIN, type,
                      [weak_call, weak_waker, q, m = s.metrics, t0 = std::chrono::steady_clock::now()](dns::Answer a) {
                        m->dns_answer(a.rcode, std::chrono::steady_clock::now() - t0);
                        auto call = weak_call.lock();
                        if (!call) return;  // the hook or the session is gone
                        call->sent.erase(q);
                        call->check.answer(q, convert(a, q.type));
                        if (!call->ready()) return;
                        if (auto waker = weak_waker.lock()) waker->wake();  // the runner resumes Lua
                      });
  }
  return waiting;
}

// For the transaction's log line (activity.h): the last check wins. The
// domain checked: the sender's, or the HELO name for the null sender
// (RFC 7208 2.4); the outcome's own when the check ran.
void note_result(SessionContext& s, std::string_view result, const spf::Request& r, std::string_view domain = {}) {
  if (s.transaction_id.empty()) return;  // outside a transaction: no line to go on
  if (domain.empty()) {
    const std::size_t at = r.sender.rfind('@');
    domain = at == std::string::npos ? std::string_view(r.helo) : std::string_view(r.sender).substr(at + 1);
  }
  s.auth.spf = log::AuthResults::Verdict{std::string(result), std::string(domain)};
}

int push_outcome(lua_State* L, SessionContext& s, const spf::Check& check) {
  const spf::Outcome& o = check.outcome();
  const spf::Request& r = check.request();
  const std::string_view result = spf::result_name(o.result);
  const bool trouble = o.result == spf::Result::TempError || o.result == spf::Result::PermError;
  if (trouble || s.trace) {
    log::info("session={} spf ip={} helo={} sender={} result={} domain={} queries={}{}{}",
              log::escape_text(s.start.session_id), log::escape_text(r.ip), log::escape_text(r.helo),
              log::escape_text(r.sender), result, log::escape_text(o.domain), check.queries(),
              o.problem.empty() ? "" : " problem=", log::escape_text(o.problem));
  }
  note_result(s, result, r, o.domain);
  lua_pushlstring(L, result.data(), result.size());
  if (o.explanation) {
    lua_pushlstring(L, o.explanation->data(), o.explanation->size());
  } else {
    lua_pushnil(L);
  }
  if (o.mechanism) {
    lua_pushlstring(L, o.mechanism->data(), o.mechanism->size());
  } else {
    lua_pushnil(L);
  }
  return 3;
}

// Past --spf-timeout (RFC 7208 4.6.4 allows a time limit of 20 s or more):
// checked whenever answers come in, so the check ends at most one
// --dns-timeout after its limit.
bool overdue(SessionContext& s, const SpfCall& call) {
  if (std::chrono::steady_clock::now() - call.started <= call.time_limit) return false;
  log::info("session={} spf sender={}: the check passed its time limit ({} ms); temperror",
            log::escape_text(s.start.session_id), log::escape_text(call.check.request().sender),
            call.time_limit.count());
  return true;
}

int drive(lua_State* L, SessionContext& s, const std::shared_ptr<SpfCall>& call, int box_index);

int check_continuation(lua_State* L, int, lua_KContext box_index) {
  SessionContext* s = current_session(L);
  auto* box = static_cast<CallBox*>(luaL_checkudata(L, static_cast<int>(box_index), kCallMeta));
  if (s == nullptr) return luaL_error(L, "spf.check resumed outside its hook");
  if (overdue(*s, *box->call)) {
    note_result(*s, "temperror", box->call->check.request());
    lua_pushstring(L, "temperror");
    lua_pushnil(L);
    lua_pushnil(L);
    return 3;
  }
  return drive(L, *s, box->call, static_cast<int>(box_index));
}

// Evaluates as far as the answers go; waits (yields) for the rest.
int drive(lua_State* L, SessionContext& s, const std::shared_ptr<SpfCall>& call, int box_index) {
  while (!call->check.run()) {
    if (!ask(s, call)) continue;  // all from the cache: evaluate on
    if (L != s.thread || !lua_isyieldable(L)) {
      return luaL_error(L, "spf.check cannot wait here: call it from the hook itself, "
                           "not from a coroutine of the script or a C callback");
    }
    std::weak_ptr<SpfCall> weak = call;
    s.resume_when = [weak] {
      auto c = weak.lock();
      return !c || c->ready();
    };
    return lua_yieldk(L, 0, box_index, check_continuation);
  }
  return push_outcome(L, s, call->check);
}

lua_Integer int_option(lua_State* L, int opts, const char* key, lua_Integer def, lua_Integer lo, lua_Integer hi) {
  lua_getfield(L, opts, key);
  lua_Integer v = def;
  if (!lua_isnil(L, -1)) {
    int ok = 0;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < lo || v > hi) {
      luaL_error(L, "spf.check: option %s must be an integer from %d to %d", key, static_cast<int>(lo),
                 static_cast<int>(hi));
    }
  }
  lua_pop(L, 1);
  return v;
}

// spf.check(ip, helo, sender [, {receiver=, max_dns_lookups=, max_void_lookups=, timeout=}])
int spf_check(lua_State* L) {
  spf::Request r;
  r.ip = luaL_checkstring(L, 1);
  r.helo = luaL_optstring(L, 2, "");
  r.sender = luaL_optstring(L, 3, "");
  // The flags' values (--spf-max-dns-lookups, ...), then the call's options.
  const Generation& g = generation_of(L);
  spf::Limits limits;
  limits.dns_lookups = g.spf_max_dns_lookups;
  limits.void_lookups = g.spf_max_void_lookups;
  std::chrono::milliseconds time_limit = g.spf_timeout;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "receiver");
    if (!lua_isnil(L, -1)) r.receiver = luaL_checkstring(L, -1);
    lua_pop(L, 1);
    // RFC 7208 4.6.4: 10 and 2 are the RFC's; an operator may lower them
    // or raise them a little for a known-broken partner.
    limits.dns_lookups = static_cast<unsigned>(int_option(L, 4, "max_dns_lookups", limits.dns_lookups, 1, 20));
    limits.void_lookups = static_cast<unsigned>(int_option(L, 4, "max_void_lookups", limits.void_lookups, 0, 20));
    time_limit = std::chrono::seconds(
        int_option(L, 4, "timeout", std::chrono::duration_cast<std::chrono::seconds>(time_limit).count(), 1, 300));
  }
  SessionContext* s = current_session(L);
  if (s == nullptr) return luaL_error(L, "spf.check is only available inside a hook");
  if (!net::parse_address(r.ip)) {
    lua_pushnil(L);
    lua_pushstring(L, "invalid address");
    return 2;
  }
  r.now = script_now(L);  // the scripts' clock (--test may set it)
  if (s->resolver == nullptr) {
    log::info("session={} spf: no DNS resolver; temperror", log::escape_text(s->start.session_id));
    note_result(*s, "temperror", r);
    lua_pushstring(L, "temperror");
    lua_pushnil(L);
    lua_pushnil(L);
    return 3;
  }
  lua_settop(L, 3);
  auto* box = static_cast<CallBox*>(lua_newuserdatauv(L, sizeof(CallBox), 0));
  new (box) CallBox{std::make_shared<SpfCall>(std::move(r), limits)};
  luaL_setmetatable(L, kCallMeta);
  box->call->time_limit = time_limit;
  return drive(L, *s, box->call, lua_gettop(L));
}

}  // namespace

void open_spf(lua_State* L) {
  luaL_newmetatable(L, kCallMeta);
  lua_pushcfunction(L, call_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, spf_check);
  lua_setfield(L, -2, "check");
  lua_setglobal(L, "spf");
}

}  // namespace mailhook::policyd
