// `dns`: the smtpe DNS functions (seed 000, "DNS Support Functions") on
// the worker's c-ares resolver. dns.query sends at once, so several
// queries are in flight before one dns.wait; dns.wait returns at once when
// its answers are in, and otherwise suspends only the calling session's
// hook (ARCHITECTURE pattern 8): answers are stored by the resolver's
// callback, which wakes the session; the hook resumes from the worker's
// run queue in wait_continuation. Never blocks the worker.
#include <deque>
#include <memory>

#include "policyd/dns/resolver.h"
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"
#include "policyd/lua_runtime/runtime_metrics.h"

namespace mailhook::policyd {

// A session's queries since the last dns.reset, answered or not, that no
// dns.wait has returned yet.
struct DnsSession {
  struct Query {
    std::uint64_t id = 0;
    bool done = false;
    dns::Answer answer;
  };
  SessionContext* session = nullptr;
  std::deque<Query> queries;
  std::uint64_t next_id = 1;

  bool ready(bool for_all) const {
    bool any = false, all = true;
    for (const auto& q : queries) {
      any = any || q.done;
      all = all && q.done;
    }
    return queries.empty() || (for_all ? all : any);
  }
};

namespace {

SessionContext& session_for(lua_State* L, const char* fn) {
  SessionContext* s = current_session(L);
  if (s == nullptr) luaL_error(L, "dns.%s is only available inside a hook", fn);
  return *s;
}

std::shared_ptr<DnsSession>& dns_of(SessionContext& s) {
  if (!s.dns) {
    s.dns = std::make_shared<DnsSession>();
    s.dns->session = &s;
  }
  return s.dns;
}

void set_string(lua_State* L, const char* key, const std::string& v) {
  lua_pushlstring(L, v.data(), v.size());
  lua_setfield(L, -2, key);
}
void set_integer(lua_State* L, const char* key, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, key);
}
// t[i] = t[key]
void mirror(lua_State* L, int i, const char* key) {
  lua_getfield(L, -1, key);
  lua_rawseti(L, -2, i);
}

// One RR: the seed's positional layout, the same values under names.
void push_record(lua_State* L, const dns::Record& rr) {
  lua_createtable(L, 11, 12);
  const bool ptr = rr.type == dns::kPTR;
  set_string(L, "owner", rr.owner);
  set_string(L, "name", ptr ? rr.host : rr.owner);
  set_integer(L, "class", rr.rclass);
  set_integer(L, "type", rr.type);
  set_integer(L, "ttl", rr.ttl);
  // PTR = { address, class, type, ttl, name }; the others start with name.
  if (ptr) set_string(L, "address", rr.address.empty() ? rr.owner : rr.address);
  mirror(L, 1, ptr ? "address" : "name");
  mirror(L, 2, "class");
  mirror(L, 3, "type");
  mirror(L, 4, "ttl");
  switch (rr.type) {
    case dns::kA:
    case dns::kAAAA:
      set_string(L, "address", rr.address);
      mirror(L, 5, "address");
      break;
    case dns::kPTR:
      set_string(L, "host", rr.host);
      mirror(L, 5, "name");
      break;
    case dns::kCNAME:
    case dns::kDNAME:
    case dns::kNS:
      set_string(L, "host", rr.host);
      mirror(L, 5, "host");
      break;
    case dns::kMX:
      set_string(L, "host", rr.host);
      set_integer(L, "preference", rr.preference);
      mirror(L, 5, "host");
      mirror(L, 6, "preference");
      break;
    case dns::kSOA:
      set_string(L, "mname", rr.mname);
      set_string(L, "rname", rr.rname);
      set_integer(L, "serial", rr.serial);
      set_integer(L, "refresh", rr.refresh);
      set_integer(L, "retry", rr.retry);
      set_integer(L, "expire", rr.expire);
      set_integer(L, "minimum", rr.minimum);
      mirror(L, 5, "mname");
      mirror(L, 6, "rname");
      mirror(L, 7, "serial");
      mirror(L, 8, "refresh");
      mirror(L, 9, "retry");
      mirror(L, 10, "expire");
      mirror(L, 11, "minimum");
      break;
    case dns::kTXT:
      set_string(L, "text", rr.text());
      mirror(L, 5, "text");
      lua_createtable(L, static_cast<int>(rr.strings.size()), 0);
      for (std::size_t i = 0; i < rr.strings.size(); ++i) {
        lua_pushlstring(L, rr.strings[i].data(), rr.strings[i].size());
        lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
      }
      lua_setfield(L, -2, "strings");
      break;
    default:
      set_string(L, "rdata", rr.rdata);
      mirror(L, 5, "rdata");
      break;
  }
}

void push_section(lua_State* L, const std::vector<const dns::Record*>& rrs, const char* key) {
  lua_createtable(L, static_cast<int>(rrs.size()), 0);
  for (std::size_t i = 0; i < rrs.size(); ++i) {
    push_record(L, *rrs[i]);
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  lua_setfield(L, -2, key);
}

// dns.wait's results: the answered queries leave the session. rcode is
// NOERROR when any answer had it, else the first answer's; rr_table is nil
// when no query got an answer at all (ERRNO, TIMEOUT).
int push_results(lua_State* L, DnsSession& d) {
  std::vector<DnsSession::Query> taken;
  for (auto it = d.queries.begin(); it != d.queries.end();) {
    if (it->done) {
      taken.push_back(std::move(*it));
      it = d.queries.erase(it);
    } else {
      ++it;
    }
  }
  if (taken.empty()) {
    lua_pushinteger(L, dns::kErrno);
    lua_pushnil(L);
    return 2;
  }
  int rcode = taken.front().answer.rcode;
  bool any_message = false;
  std::vector<const dns::Record*> answer, authority, extra;
  for (const auto& q : taken) {
    if (q.answer.rcode == dns::kNoError) rcode = dns::kNoError;
    if (q.answer.rcode == dns::kErrno || q.answer.rcode == dns::kTimeout) continue;
    any_message = true;
    for (const auto& rr : q.answer.message.answer) answer.push_back(&rr);
    for (const auto& rr : q.answer.message.authority) authority.push_back(&rr);
    for (const auto& rr : q.answer.message.additional) extra.push_back(&rr);
  }
  lua_pushinteger(L, rcode);
  if (!any_message) {
    lua_pushnil(L);
    return 2;
  }
  lua_createtable(L, 0, 3);
  push_section(L, answer, "answer");
  push_section(L, extra, "extra");
  push_section(L, authority, "authority");
  return 2;
}

int dns_open(lua_State* L) {
  session_for(L, "open");
  lua_pushboolean(L, 1);
  return 1;
}

int dns_reset(lua_State* L) {
  SessionContext& s = session_for(L, "reset");
  if (s.dns) s.dns->queries.clear();  // late answers find no query and are dropped
  return 0;
}

// dns.query(class, type, name)
int dns_query(lua_State* L) {
  const lua_Integer rclass = luaL_checkinteger(L, 1);
  const lua_Integer type = luaL_checkinteger(L, 2);
  std::size_t len = 0;
  const char* name = luaL_checklstring(L, 3, &len);
  luaL_argcheck(L, rclass > 0 && rclass < 65536, 1, "not a DNS class");
  luaL_argcheck(L, type > 0 && type < 65536, 2, "not a DNS type");
  SessionContext& s = session_for(L, "query");
  std::shared_ptr<DnsSession>& d = dns_of(s);
  DnsSession::Query& q = d->queries.emplace_back();
  q.id = d->next_id++;
  if (s.resolver == nullptr) {
    q.done = true;
    q.answer.error = "no resolver";
    lua_pushboolean(L, 1);
    return 1;
  }
  // A fresh cached answer: done now, so dns.wait need not wait for it.
  if (std::optional<dns::Answer> hit = s.resolver->cached(std::string_view(name, len), static_cast<int>(rclass),
                                                          static_cast<int>(type))) {
    s.metrics->dns_cache_hits.add();
    q.done = true;
    q.answer = std::move(*hit);
    lua_pushboolean(L, 1);
    return 1;
  }
  s.metrics->dns_queries.add();
  std::weak_ptr<DnsSession> weak = d;
  const auto started = std::chrono::steady_clock::now();
  s.resolver->query(std::string_view(name, len), static_cast<int>(rclass), static_cast<int>(type),
                    [weak, id = q.id, started](dns::Answer a) {
                      auto d = weak.lock();
                      if (!d) return;  // the session ended
                      SessionContext& s = *d->session;
                      s.metrics->dns_answer(a.rcode, std::chrono::steady_clock::now() - started);
                      for (auto& q : d->queries) {
                        if (q.id != id) continue;
                        q.done = true;
                        q.answer = std::move(a);
                        s.wake();  // never resumes Lua here; the runner does
                        return;
                      }
                    });
  lua_pushboolean(L, 1);
  return 1;
}

int wait_continuation(lua_State* L, int, lua_KContext) {
  SessionContext* s = current_session(L);
  if (s == nullptr || !s->dns) {
    lua_pushinteger(L, dns::kErrno);
    lua_pushnil(L);
    return 2;
  }
  return push_results(L, *s->dns);
}

// rcode, rr_table = dns.wait(for_all_flag)
int dns_wait(lua_State* L) {
  const bool for_all = lua_toboolean(L, 1);
  SessionContext& s = session_for(L, "wait");
  std::shared_ptr<DnsSession>& d = dns_of(s);
  if (d->ready(for_all)) return push_results(L, *d);
  if (L != s.thread || !lua_isyieldable(L)) {
    return luaL_error(L, "dns.wait cannot wait here: call it from the hook itself, "
                         "not from a coroutine of the script or a C callback");
  }
  std::weak_ptr<DnsSession> weak = d;
  s.resume_when = [weak, for_all] {
    auto d = weak.lock();
    return !d || d->ready(for_all);
  };
  return lua_yieldk(L, 0, 0, wait_continuation);
}

int dns_classname(lua_State* L) {
  lua_pushstring(L, std::string(dns::class_name(static_cast<int>(luaL_checkinteger(L, 1)))).c_str());
  return 1;
}
int dns_typename(lua_State* L) {
  lua_pushstring(L, std::string(dns::type_name(static_cast<int>(luaL_checkinteger(L, 1)))).c_str());
  return 1;
}
int dns_rcodename(lua_State* L) {
  lua_pushstring(L, std::string(dns::rcode_name(static_cast<int>(luaL_checkinteger(L, 1)))).c_str());
  return 1;
}

void constants(lua_State* L, const char* table, std::initializer_list<std::pair<const char*, int>> values) {
  lua_createtable(L, 0, static_cast<int>(values.size()));
  for (const auto& [k, v] : values) set_integer(L, k, v);
  lua_setfield(L, -2, table);
}

}  // namespace

void open_dns(lua_State* L) {
  lua_newtable(L);
  constants(L, "class", {{"IN", dns::kIN}, {"CS", dns::kCS}, {"CH", dns::kCH}, {"HS", dns::kHS}});
  constants(L, "type",
            {{"A", dns::kA}, {"AAAA", dns::kAAAA}, {"CNAME", dns::kCNAME}, {"DNAME", dns::kDNAME}, {"MX", dns::kMX},
             {"NS", dns::kNS}, {"SOA", dns::kSOA}, {"TXT", dns::kTXT}, {"PTR", dns::kPTR}, {"ANY", dns::kANY}});
  constants(L, "rcode",
            {{"OK", dns::kNoError}, {"NOERROR", dns::kNoError}, {"FORMAT", dns::kFormErr},
             {"SERVFAIL", dns::kServFail}, {"NXDOMAIN", dns::kNxDomain}, {"NOT_IMPLEMENTED", dns::kNotImp},
             {"REFUSED", dns::kRefused}, {"ERRNO", dns::kErrno}, {"TIMEOUT", dns::kTimeout}});
  const luaL_Reg fns[] = {{"open", dns_open},         {"reset", dns_reset},         {"query", dns_query},
                          {"wait", dns_wait},         {"classname", dns_classname}, {"typename", dns_typename},
                          {"rcodename", dns_rcodename}, {nullptr, nullptr}};
  luaL_setfuncs(L, fns, 0);
  lua_setglobal(L, "dns");
}

}  // namespace mailhook::policyd
