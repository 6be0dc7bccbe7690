// The forward-confirmed PTR lookup behind client.host.
#include "policyd/lua_runtime/client_host.h"


#include <arpa/inet.h>

#include <memory>
#include <vector>

#include "mailcore/telemetry/decision_log.h"
#include "mailcore/telemetry/log.h"
#include "policyd/dns/resolver.h"
#include "policyd/dns/message.h"
#include "policyd/lua_runtime/runtime_metrics.h"

namespace mailhook::policyd {

struct HostLookup {
  SessionContext* session;
  std::string address;            // canonical
  std::vector<std::string> names; // PTR targets to confirm
  std::size_t pending = 0;
  std::string confirmed;
};

namespace {

constexpr std::size_t kMaxNames = 5;  // PTR targets tried per client

void finish(const std::shared_ptr<HostLookup>& h) {
  SessionContext& s = *h->session;
  s.start.client.host = h->confirmed;
  s.host_resolved = true;
  s.host_lookup.reset();  // `h` stays alive in the caller
  log::info("session={} client={} ptr_lookup={}", log::escape(s.start.session_id),
            log::client_token(h->confirmed, h->address), h->confirmed.empty() ? "unconfirmed" : "confirmed");
  s.wake();
}

// One query, from the cache when fresh (then `done` runs at once).
void lookup(SessionContext& s, const std::string& name, int type, dns::Resolver::Callback done) {
  if (std::optional<dns::Answer> hit = s.resolver->cached(name, dns::kIN, type)) {
    s.metrics->dns_cache_hits.add();
    done(std::move(*hit));
    return;
  }
  s.metrics->dns_queries.add();
  // The metrics outlive every session and worker: safe after the session ends.
  s.resolver->query(name, dns::kIN, type,
                    [m = s.metrics, started = std::chrono::steady_clock::now(), done = std::move(done)](dns::Answer a) {
                      m->dns_answer(a.rcode, std::chrono::steady_clock::now() - started);
                      done(std::move(a));
                    });
}

void confirm(const std::shared_ptr<HostLookup>& h) {
  SessionContext& s = *h->session;
  const bool v6 = h->address.find(':') != std::string::npos;
  h->pending = h->names.size();
  const std::vector<std::string> names = h->names;  // a cached answer may finish `h` inside the loop
  for (const std::string& name : names) {
    std::weak_ptr<HostLookup> weak = h;
    lookup(s, name, v6 ? dns::kAAAA : dns::kA, [weak, name](dns::Answer a) {
      auto h = weak.lock();
      if (!h || h->session->host_lookup != h) return;  // the session ended
      for (const auto& rr : a.message.answer) {
        if ((rr.type == dns::kA || rr.type == dns::kAAAA) && canonical_address(rr.address) == h->address &&
            h->confirmed.empty()) {
          h->confirmed = name;
        }
      }
      if (--h->pending == 0) finish(h);
    });
  }
}

int host_continuation(lua_State* L, int, lua_KContext) {
  SessionContext* s = current_session(L);
  const std::string& host = s ? s->start.client.host : std::string();
  lua_pushlstring(L, host.data(), host.size());
  return 1;
}

}  // namespace

std::string canonical_address(std::string_view text) {
  const std::string t(text);
  unsigned char raw[16];
  char out[INET6_ADDRSTRLEN] = {};
  if (inet_pton(AF_INET, t.c_str(), raw) == 1) return inet_ntop(AF_INET, raw, out, sizeof out) ? out : "";
  if (inet_pton(AF_INET6, t.c_str(), raw) != 1) return "";
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  if (std::equal(kMapped, kMapped + 12, raw)) return inet_ntop(AF_INET, raw + 12, out, sizeof out) ? out : "";
  return inet_ntop(AF_INET6, raw, out, sizeof out) ? out : "";
}

void start_host_lookup(SessionContext& s) {
  if (s.host_lookup || s.host_resolved) return;
  auto h = std::make_shared<HostLookup>();
  h->session = &s;
  h->address = canonical_address(s.start.client.address);
  s.host_lookup = h;
  const std::string reverse = h->address.empty() ? "" : dns::reverse_name(h->address, true);
  if (!s.resolver || reverse.empty()) {
    finish(h);
    return;
  }
  std::weak_ptr<HostLookup> weak = h;
  lookup(s, reverse, dns::kPTR, [weak](dns::Answer a) {
    auto h = weak.lock();
    if (!h || h->session->host_lookup != h) return;
    for (const auto& rr : a.message.answer) {
      if (rr.type == dns::kPTR && h->names.size() < kMaxNames) h->names.push_back(rr.host);
    }
    if (h->names.empty()) {
      finish(h);
    } else {
      confirm(h);
    }
  });
}

int push_client_host(lua_State* L, SessionContext& s) {
  if (!s.host_resolved && s.resolver && lua_isyieldable(L) && L == s.thread) {
    start_host_lookup(s);
    if (!s.host_resolved) {
      s.resume_when = [&s] { return s.host_resolved; };
      return lua_yieldk(L, 0, 0, host_continuation);
    }
  }
  lua_pushlstring(L, s.start.client.host.data(), s.start.client.host.size());
  return 1;
}

}  // namespace mailhook::policyd
