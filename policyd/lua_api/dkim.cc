// `dkim`: DKIM verification and signing (RFC 6376, RFC 8463) for scripts.
//   dkim.verify(path)        -> { {domain=, selector=, algorithm=, result=, reason=, testing=}, ... }
//   dkim.sign(path, {domain=, selector=, key=PEM_PATH [, algorithm=] [, headers={...}]
//                    [, canonicalization="relaxed/relaxed"] [, expire=seconds] [, body_length=true]})
//                          -> true | nil, err
// Files are read through the sandbox's grants (file_grant.h), like io.open.
// Key lookups go to the worker's resolver and its cache; a verify that
// must wait suspends the session's hook like dns.wait (ARCHITECTURE
// pattern 8) and never blocks the worker. The DKIM work itself is in
// policyd/dkim/, which knows no Lua.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <string>

#include "mailcore/event/change_check.h"
#include "mailcore/telemetry/log.h"
#include "policyd/dkim/signer.h"
#include "policyd/dkim/verifier.h"
#include "policyd/dns/resolver.h"
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"
#include "policyd/lua_runtime/file_grant.h"
#include "policyd/lua_runtime/hook_runner.h"
#include "policyd/lua_runtime/script_clock.h"
#include "policyd/lua_runtime/runtime_metrics.h"

namespace mailhook::policyd {
namespace {

constexpr const char* kJobType = "mailhook.dkim.verification";
constexpr std::size_t kMaxKeyFile = 64u << 10;  // a PEM key is a few KiB; anything larger is not one

// One dkim.verify call: the message, its signatures, the key answers.
struct Verification {
  std::string message;                       // CRLF line ends
  dkim::SplitMessage split;                  // views into `message`
  std::vector<dkim::SignatureCheck> checks;
  std::map<std::string, std::optional<dkim::KeyAnswer>> keys;  // by key name; nullopt: in flight
  std::size_t pending = 0;
};

// Reads a file the running script may read (the same grants as io.open);
// "" in `error` when it worked.
std::string read_granted(lua_State* L, const std::string& path, std::size_t max, std::string& error) {
  const std::optional<std::string> granted = granted_path(L, path, FileAccess::Read, error);
  if (!granted) {
    error = path + ": " + error;
    return "";
  }
  const int fd = ::open(granted->c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    error = path + ": " + std::strerror(errno);
    return "";
  }
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    error = path + ": not a regular file";
  } else if (static_cast<std::uint64_t>(st.st_size) > max) {
    error = path + ": larger than " + std::to_string(max) + " bytes";
  } else {
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < out.size()) {
      const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    out.resize(got);
  }
  ::close(fd);
  return out;
}

// The key lookup's answer as DKIM sees it (RFC 6376 6.1.2).
dkim::KeyAnswer key_answer(const dns::Answer& a) {
  dkim::KeyAnswer k;
  if (a.rcode == dns::kNxDomain) {
    k.status = dkim::KeyAnswer::Status::Missing;
    return k;
  }
  if (a.rcode != dns::kNoError) {
    k.status = dkim::KeyAnswer::Status::TempFail;
    const std::string_view name = dns::rcode_name(a.rcode);
    k.error = name.empty() ? "rcode " + std::to_string(a.rcode) : std::string(name);
    return k;
  }
  for (const auto& rr : a.message.answer) {
    if (rr.type == dns::kTXT) k.records.push_back(rr.text());
  }
  k.status = k.records.empty() ? dkim::KeyAnswer::Status::Missing : dkim::KeyAnswer::Status::Found;
  return k;
}

void set_string(lua_State* L, const char* key, std::string_view v) {
  lua_pushlstring(L, v.data(), v.size());
  lua_setfield(L, -2, key);
}

// Decides every check and pushes the result array; keeps the results for
// the transaction's log line (activity.h; the last call wins, at most
// --dkim-max-signatures of them named).
int push_results(lua_State* L, Verification& v) {
  SessionContext* s = current_session(L);
  const bool note = s != nullptr && !s->transaction_id.empty();
  if (note) {
    s->auth.dkim.emplace();
    s->auth.dkim_cut = 0;
  }
  lua_createtable(L, static_cast<int>(v.checks.size()), 0);
  for (std::size_t i = 0; i < v.checks.size(); ++i) {
    dkim::SignatureCheck& c = v.checks[i];
    if (!c.key_name.empty() && c.result == dkim::Result::None) {
      auto k = v.keys.find(c.key_name);
      dkim::KeyAnswer none{.status = dkim::KeyAnswer::Status::TempFail, .records = {}, .error = "no answer"};
      dkim::finish(c, v.split, k != v.keys.end() && k->second ? *k->second : none);
    }
    lua_createtable(L, 0, 6);
    // d=, s= and a= can hold any byte of the message: escaped like log text.
    set_string(L, "domain", log::escape_text(c.parsed.domain));
    set_string(L, "selector", log::escape_text(c.parsed.selector));
    set_string(L, "algorithm", log::escape_text(c.parsed.algorithm));
    set_string(L, "result", dkim::result_name(c.result));
    if (!c.reason.empty()) set_string(L, "reason", log::escape_text(c.reason));
    lua_pushboolean(L, c.testing);
    lua_setfield(L, -2, "testing");
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
    if (!note) continue;
    if (s->auth.dkim->size() < s->generation->dkim_max_signatures) {
      s->auth.dkim->push_back({std::string(dkim::result_name(c.result)), c.parsed.domain});
    } else {
      ++s->auth.dkim_cut;
    }
  }
  return 1;
}

std::shared_ptr<Verification>* job_of(lua_State* L, int index) {
  return static_cast<std::shared_ptr<Verification>*>(luaL_checkudata(L, index, kJobType));
}

int job_gc(lua_State* L) {
  std::shared_ptr<Verification>* p = job_of(L, 1);
  p->~shared_ptr();
  return 0;
}

int verify_continuation(lua_State* L, int, lua_KContext index) {
  std::shared_ptr<Verification> v = *job_of(L, static_cast<int>(index));
  return push_results(L, *v);
}

// Sends the key queries; false when none has to be waited for.
bool look_up_keys(SessionContext& s, const std::shared_ptr<Verification>& v) {
  for (const auto& c : v->checks) {
    if (c.key_name.empty() || v->keys.count(c.key_name)) continue;
    std::optional<dkim::KeyAnswer>& slot = v->keys[c.key_name];
    if (s.resolver == nullptr) {
      slot = dkim::KeyAnswer{.status = dkim::KeyAnswer::Status::TempFail, .records = {}, .error = "no resolver"};
      continue;
    }
    if (std::optional<dns::Answer> hit = s.resolver->cached(c.key_name, dns::kIN, dns::kTXT)) {
      if (s.metrics) s.metrics->dns_cache_hits.add();
      slot = key_answer(*hit);
      continue;
    }
    if (s.metrics) s.metrics->dns_queries.add();
    ++v->pending;
    std::weak_ptr<Verification> weak = v;
    std::weak_ptr<Waker> waker = s.waker;
    RuntimeMetrics* metrics = s.metrics;
    const auto started = std::chrono::steady_clock::now();
    s.resolver->query(c.key_name, dns::kIN, dns::kTXT, [weak, waker, metrics, name = c.key_name, started](dns::Answer a) {
      if (metrics) metrics->dns_answer(a.rcode, std::chrono::steady_clock::now() - started);
      auto v = weak.lock();
      if (!v) return;  // the hook was dropped
      v->keys[name] = key_answer(a);
      --v->pending;
      if (auto w = waker.lock()) w->wake();  // never resumes Lua here; the hook runner does
    });
  }
  return v->pending > 0;
}

// dkim.verify(path)
int dkim_verify(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  SessionContext* s = current_session(L);
  if (s == nullptr) return luaL_error(L, "dkim.verify is only available inside a hook");
  lua_settop(L, 1);
  // The job lives in a userdata on this stack, so it survives the yield
  // and is freed with the thread whatever happens to the hook.
  auto* slot = static_cast<std::shared_ptr<Verification>*>(lua_newuserdatauv(L, sizeof(std::shared_ptr<Verification>), 0));
  new (slot) std::shared_ptr<Verification>(std::make_shared<Verification>());
  luaL_setmetatable(L, kJobType);
  const int job_index = lua_gettop(L);
  bool wait = false;
  std::string error;
  {
    Verification& v = **slot;
    std::string raw = read_granted(L, path, std::numeric_limits<std::size_t>::max(), error);
    if (!error.empty()) {
      lua_pushnil(L);
      lua_pushlstring(L, error.data(), error.size());
      return 2;
    }
    v.message = dkim::with_crlf(raw);
    v.split = dkim::split_message(v.message);
    const dkim::VerifyLimits limits{.max_signatures = s->generation->dkim_max_signatures};
    v.checks = dkim::find_signatures(v.split, static_cast<std::uint64_t>(script_now(L)), limits);
    if (v.checks.size() > limits.max_signatures) {
      log::warning("session={} dkim.verify: {} signatures, past --dkim-max-signatures {}; the rest get policy",
                   log::escape_text(s->start.session_id), v.checks.size(), limits.max_signatures);
    }
    wait = look_up_keys(*s, *slot);
  }
  if (!wait) return push_results(L, **slot);
  if (L != s->thread || !lua_isyieldable(L)) {
    return luaL_error(L, "dkim.verify cannot wait here: call it from the hook itself, "
                         "not from a coroutine of the script or a C callback");
  }
  std::weak_ptr<Verification> weak = *slot;
  s->resume_when = [weak] {
    auto v = weak.lock();
    return !v || v->pending == 0;
  };
  return lua_yieldk(L, 0, job_index, verify_continuation);
}

// Raises unless option `key` is a string (or absent when not required);
// no C++ object is alive here, so the error's longjmp skips no destructor.
void check_option(lua_State* L, const char* key, bool required) {
  const int type = lua_getfield(L, 2, key);
  lua_pop(L, 1);
  if (type != LUA_TSTRING && (type != LUA_TNIL || required)) luaL_error(L, "dkim.sign: option %s must be a string", key);
}

// Option `key` after check_option: its string, or "" when absent.
std::string option(lua_State* L, const char* key) {
  lua_getfield(L, 2, key);
  std::size_t n = 0;
  const char* p = lua_tolstring(L, -1, &n);
  std::string v = p ? std::string(p, n) : std::string();
  lua_pop(L, 1);
  return v;
}

bool parse_canon(std::string_view text, dkim::SignRequest& r) {
  const std::size_t slash = text.find('/');
  auto one = [](std::string_view t, dkim::Canon& c) {
    if (t == "simple") c = dkim::Canon::Simple;
    else if (t == "relaxed") c = dkim::Canon::Relaxed;
    else return false;
    return true;
  };
  if (slash == std::string_view::npos) {
    r.body_canon = dkim::Canon::Simple;  // RFC 6376 3.5 c=: the body's defaults to simple
    return one(text, r.header_canon);
  }
  return one(text.substr(0, slash), r.header_canon) && one(text.substr(slash + 1), r.body_canon);
}

// dkim.sign(path, options)
int dkim_sign(lua_State* L) {
  // Arguments first: every Lua error is raised before a C++ object lives.
  const char* path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  SessionContext* s = current_session(L);
  if (s == nullptr || (s->phase != HookPhase::Dot && s->phase != HookPhase::Forward)) {
    return luaL_error(L, "dkim.sign is not available in hook.%s (it adds a header: hook.dot or hook.forward)",
                      s ? std::string(hook_name(s->phase)).c_str() : "load");
  }
  lua_getfield(L, 2, "expire");
  const bool has_expire = !lua_isnil(L, -1);
  const lua_Integer expire = has_expire ? luaL_checkinteger(L, -1) : 0;
  lua_pop(L, 1);
  if (has_expire && expire <= 0) return luaL_error(L, "dkim.sign: expire must be a positive number of seconds");
  lua_getfield(L, 2, "body_length");
  const bool body_length = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 2, "headers");
  const bool has_headers = !lua_isnil(L, -1);
  if (has_headers) luaL_checktype(L, -1, LUA_TTABLE);
  const int headers_index = lua_gettop(L);
  const lua_Integer header_count = has_headers ? static_cast<lua_Integer>(lua_rawlen(L, headers_index)) : 0;
  for (lua_Integer i = 1; i <= header_count; ++i) {
    if (lua_rawgeti(L, headers_index, i) != LUA_TSTRING) return luaL_error(L, "dkim.sign: headers must be a list of strings");
    lua_pop(L, 1);
  }
  for (const char* key : {"domain", "selector", "key"}) check_option(L, key, true);
  for (const char* key : {"algorithm", "canonicalization"}) check_option(L, key, false);
  std::string error;
  {
    const std::string domain = option(L, "domain");
    const std::string selector = option(L, "selector");
    const std::string key_path = option(L, "key");
    std::string algorithm = option(L, "algorithm");
    const std::string canon = option(L, "canonicalization");
    dkim::SignRequest r;
    r.domain = dkim::lower(domain);
    r.selector = selector;
    r.timestamp = static_cast<std::uint64_t>(script_now(L));  // the scripts' clock
    if (has_expire) r.expires = r.timestamp + static_cast<std::uint64_t>(expire);
    r.body_length = body_length;
    for (lua_Integer i = 1; i <= header_count; ++i) {
      lua_rawgeti(L, headers_index, i);
      std::size_t n = 0;
      const char* h = lua_tolstring(L, -1, &n);
      r.headers.emplace_back(h, n);
      lua_pop(L, 1);
    }
    if (algorithm.empty()) algorithm = "rsa-sha256";
    if (algorithm != "rsa-sha256" && algorithm != "ed25519-sha256") {
      error = "algorithm must be rsa-sha256 or ed25519-sha256";
    } else if (!canon.empty() && !parse_canon(canon, r)) {
      error = "canonicalization must be simple or relaxed, header/body";
    }
    std::string message, pem;
    if (error.empty()) message = read_granted(L, path, std::numeric_limits<std::size_t>::max(), error);
    if (error.empty()) pem = read_granted(L, key_path, kMaxKeyFile, error);
    std::optional<dkim::PrivateKey> key;
    if (error.empty()) {
      key = dkim::PrivateKey::from_pem(pem, error);
      if (key) {
        const bool ed = algorithm == "ed25519-sha256";
        if (ed != (key->type() == dkim::KeyType::Ed25519)) {
          error = key_path + ": the key is not an " + std::string(ed ? "Ed25519" : "RSA") + " key (algorithm=" + algorithm + ")";
        }
      } else {
        error = key_path + ": " + error;
      }
    }
    std::optional<std::string> value;
    if (error.empty()) value = dkim::sign_message(message, r, *key, error);
    if (value && !valid_header_value(*value)) {
      value.reset();
      error = "bug: the signature is not a valid header value";
    }
    if (value) {
      // RFC 6376 5.6: the signature goes on top, above the fields it signs.
      s->changes.push_back(MessageChange{.kind = MessageChange::Kind::InsertHeader, .name = "DKIM-Signature",
                                         .value = std::move(*value), .index = 0});
    }
  }
  if (!error.empty()) {
    lua_pushnil(L);
    lua_pushlstring(L, error.data(), error.size());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

constexpr luaL_Reg kFunctions[] = {{"verify", dkim_verify}, {"sign", dkim_sign}, {nullptr, nullptr}};

}  // namespace

void open_dkim(lua_State* L) {
  luaL_newmetatable(L, kJobType);
  lua_pushcfunction(L, job_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "dkim verification");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  luaL_newlib(L, kFunctions);
  lua_setglobal(L, "dkim");
}

}  // namespace mailhook::policyd
