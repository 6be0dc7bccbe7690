// `kv`: shared state across policyd replicas, in Redis (--kv IP:PORT).
//   kv.get(key)                  -> value, or nil when the key is missing
//   kv.set(key, value [, ttl])   -> true            (ttl: seconds, SET EX)
//   kv.incr(key [, by])          -> the new integer (INCRBY)
//   kv.expire(key, seconds)      -> true when the key exists
//   kv.del(key)                  -> how many keys were removed (0 or 1)
// Every call waits for Redis like dns.wait does: the session's hook
// yields, the worker serves other sessions, and the hook resumes with the
// answer. Any failure (no --kv, Redis down, an error reply, no answer
// within --kv-timeout) returns nil and an error string, never raises and
// never hangs: `local n, err = kv.incr(k) if not n then ... end`.
#include <string>
#include <vector>

#include "policyd/kv/redis_client.h"
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"
#include "policyd/lua_runtime/runtime_metrics.h"

namespace mailhook::policyd {

// The one kv call a session's hook waits for.
struct KvCall {
  bool done = false;
  kv::Reply reply;
  enum class Want : std::uint8_t { Value, Ok, Integer, Bool } want = Want::Value;
};

namespace {

int push_result(lua_State* L, const KvCall& c) {
  const kv::Reply& r = c.reply;
  if (r.type == kv::Reply::Type::Error) {
    lua_pushnil(L);
    lua_pushstring(L, ("kv: " + r.text).c_str());
    return 2;
  }
  switch (c.want) {
    case KvCall::Want::Value:
      if (r.type == kv::Reply::Type::String) {
        lua_pushlstring(L, r.text.data(), r.text.size());
      } else {
        lua_pushnil(L);
      }
      return 1;
    case KvCall::Want::Ok: lua_pushboolean(L, 1); return 1;
    case KvCall::Want::Integer: lua_pushinteger(L, r.integer); return 1;
    case KvCall::Want::Bool: lua_pushboolean(L, r.integer != 0); return 1;
  }
  return 0;
}

int continuation(lua_State* L, int, lua_KContext) {
  SessionContext* s = current_session(L);
  if (s == nullptr || !s->kv_call) {
    lua_pushnil(L);
    lua_pushstring(L, "kv: the call was abandoned");
    return 2;
  }
  std::shared_ptr<KvCall> call = std::move(s->kv_call);
  return push_result(L, *call);
}

using KvCommand = RuntimeMetrics::KvCommand;

int run(lua_State* L, const char* fn, KvCommand command, std::vector<std::string> argv, KvCall::Want want) {
  SessionContext* s = current_session(L);
  if (s == nullptr) return luaL_error(L, "kv.%s is only available inside a hook", fn);
  auto call = std::make_shared<KvCall>();
  call->want = want;
  if (s->kv == nullptr) {
    call->reply = kv::Reply{.type = kv::Reply::Type::Error, .text = "no Redis configured (policyd --kv IP:PORT)"};
    return push_result(L, *call);
  }
  if (L != s->thread || !lua_isyieldable(L)) {
    return luaL_error(L, "kv.%s cannot wait here: call it from the hook itself, "
                         "not from a coroutine of the script or a C callback", fn);
  }
  s->kv_call = call;
  std::weak_ptr<KvCall> weak = call;
  SessionContext* session = s;
  // The runtime's metrics outlive every worker and so this callback.
  RuntimeMetrics* metrics = s->metrics;
  const auto sent = std::chrono::steady_clock::now();
  if (metrics) metrics->kv_sent(command);
  s->kv->command(std::move(argv), [weak, session, metrics, command, sent](kv::Reply r) {
    if (metrics) metrics->kv_answered(command, r.type == kv::Reply::Type::Error, std::chrono::steady_clock::now() - sent);
    auto c = weak.lock();
    if (!c) return;  // the session ended: kv_call was dropped with it
    c->reply = std::move(r);
    c->done = true;
    session->wake();  // never resumes Lua here; the hook runner does
  });
  if (call->done) {  // answered at once (no connection possible)
    s->kv_call.reset();
    return push_result(L, *call);
  }
  s->resume_when = [weak] {
    auto c = weak.lock();
    return !c || c->done;
  };
  return lua_yieldk(L, 0, 0, continuation);
}

std::string arg(lua_State* L, int i) {
  std::size_t n = 0;
  const char* v = luaL_checklstring(L, i, &n);
  return std::string(v, n);
}

int kv_get(lua_State* L) { return run(L, "get", KvCommand::Get, {"GET", arg(L, 1)}, KvCall::Want::Value); }

int kv_set(lua_State* L) {
  std::vector<std::string> argv{"SET", arg(L, 1), arg(L, 2)};
  if (!lua_isnoneornil(L, 3)) {
    const lua_Integer ttl = luaL_checkinteger(L, 3);
    luaL_argcheck(L, ttl > 0, 3, "ttl must be a positive number of seconds");
    argv.insert(argv.end(), {"EX", std::to_string(ttl)});
  }
  return run(L, "set", KvCommand::Set, std::move(argv), KvCall::Want::Ok);
}

int kv_incr(lua_State* L) {
  const lua_Integer by = luaL_optinteger(L, 2, 1);
  return run(L, "incr", KvCommand::Incr, {"INCRBY", arg(L, 1), std::to_string(by)}, KvCall::Want::Integer);
}

int kv_expire(lua_State* L) {
  const lua_Integer seconds = luaL_checkinteger(L, 2);
  luaL_argcheck(L, seconds > 0, 2, "seconds must be positive");
  return run(L, "expire", KvCommand::Expire, {"EXPIRE", arg(L, 1), std::to_string(seconds)}, KvCall::Want::Bool);
}

int kv_del(lua_State* L) { return run(L, "del", KvCommand::Del, {"DEL", arg(L, 1)}, KvCall::Want::Integer); }

constexpr luaL_Reg kFunctions[] = {{"get", kv_get},       {"set", kv_set}, {"incr", kv_incr},
                                   {"expire", kv_expire}, {"del", kv_del}, {nullptr, nullptr}};

}  // namespace

void open_kv(lua_State* L) {
  luaL_newlib(L, kFunctions);
  lua_setglobal(L, "kv");
}

}  // namespace mailhook::policyd
