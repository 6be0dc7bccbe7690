// The c-ares channel driven by Asio: socket watches, the timeout timer,
// and the mapping of c-ares' outcomes to the seed's rcodes.
#include "policyd/dns/resolver.h"

#include "policyd/dns/cache.h"

#include <ares.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>

#include "mailcore/telemetry/log.h"

namespace mailhook::policyd::dns {
namespace {

void init_library() {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

// How many nameservers a channel of `config` would ask (resolv.conf or
// --dns-server); 1 when it cannot tell.
int count_servers(const ResolverConfig& config) {
  ares_channel probe = nullptr;
  ares_options opts{};
  if (ares_init_options(&probe, &opts, 0) != ARES_SUCCESS) return 1;
  if (!config.servers.empty() && ares_set_servers_ports_csv(probe, config.servers.c_str()) != ARES_SUCCESS) {
    ares_destroy(probe);
    return 1;
  }
  ares_addr_port_node* servers = nullptr;
  int n = 0;
  if (ares_get_servers_ports(probe, &servers) == ARES_SUCCESS) {
    for (auto* s = servers; s != nullptr; s = s->next) ++n;
    ares_free_data(servers);
  }
  ares_destroy(probe);
  return n > 0 ? n : 1;
}

// The options every channel gets. --dns-timeout bounds the whole query:
// c-ares tries each nameserver in rounds of timeout T, 2T, 4T (it doubles
// per round), so three rounds over n servers take 7·n·T; a lost UDP
// packet is thus retried well within the limit. Answers are handed back
// as they are (NOCHECKRESP: a SERVFAIL or REFUSED is an answer for the
// script, not a reason to ask elsewhere); truncated UDP answers are
// retried over TCP (c-ares' default).
constexpr int kTries = 3;
constexpr int kRoundWeights = 7;  // 1 + 2 + 4

ares_channel make_channel(const ResolverConfig& config, ares_options& opts, int mask, std::string& error) {
  init_library();
  const int servers = count_servers(config);
  opts.flags = ARES_FLAG_NOCHECKRESP;
  opts.timeout = std::max(1, static_cast<int>(config.timeout.count()) / (kRoundWeights * servers));
  opts.tries = kTries;
  mask |= ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  if (config.receive_buffer > 0) {
    opts.socket_receive_buffer_size = config.receive_buffer;
    mask |= ARES_OPT_SOCK_RCVBUF;
  }
  ares_channel channel = nullptr;
  if (int rc = ares_init_options(&channel, &opts, mask); rc != ARES_SUCCESS) {
    error = std::string("cannot start the DNS resolver: ") + ares_strerror(rc);
    return nullptr;
  }
  if (!config.servers.empty()) {
    if (int rc = ares_set_servers_ports_csv(channel, config.servers.c_str()); rc != ARES_SUCCESS) {
      error = "--dns-server " + config.servers + ": " + ares_strerror(rc) + " (expected ip[:port],…)";
      ares_destroy(channel);
      return nullptr;
    }
  }
  return channel;
}

class AresResolver final : public Resolver {
 public:
  AresResolver(asio::io_context& io, std::size_t cache_entries, int receive_buffer)
      : io_(io), timer_(io), receive_buffer_(receive_buffer), cache_(cache_entries) {}

  bool start(const ResolverConfig& config, std::string& error) {
    ares_options opts{};
    opts.sock_state_cb = &AresResolver::on_socket_state;
    opts.sock_state_cb_data = this;
    channel_ = make_channel(config, opts, ARES_OPT_SOCK_STATE_CB, error);
    return channel_ != nullptr;
  }

  ~AresResolver() override {
    destroying_ = true;
    if (channel_) ares_destroy(channel_);  // pending queries end with ARES_EDESTRUCTION
    timer_.cancel();
  }

  void query(std::string_view name, int rclass, int type, Callback done) override {
    unsigned char* buf = nullptr;
    int len = 0;
    const std::string n(name);
    if (int rc = ares_create_query(n.c_str(), rclass, type, 0, 1, &buf, &len, 0); rc != ARES_SUCCESS) {
      Answer a;
      a.error = std::string("cannot make a query for \"") + n + "\": " + ares_strerror(rc);
      // Never call back from inside the caller's stack.
      asio::post(io_, [done = std::move(done), a = std::move(a)]() mutable { done(std::move(a)); });
      return;
    }
    ++in_flight_;
    ares_send(channel_, buf, len, &AresResolver::on_answer,
              new Pending{this, std::move(done), n, rclass, type});
    ares_free_string(buf);
    rearm_timer();
  }

  std::size_t in_flight() const override { return in_flight_; }

 private:
  struct Watch {
    explicit Watch(asio::io_context& io, int fd) : descriptor(io, fd) {}
    asio::posix::stream_descriptor descriptor;
    bool read = false, write = false;
    bool reading = false, writing = false;
  };

  std::optional<Answer> cached(std::string_view name, int rclass, int type) override {
    return cache_.get(name, rclass, type, AnswerCache::Clock::now());
  }

  struct Pending {
    AresResolver* self;
    Callback done;
    std::string name;
    int rclass, type;
  };

  static void on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    std::unique_ptr<Pending> pending(static_cast<Pending*>(arg));
    --pending->self->in_flight_;
    if (status == ARES_EDESTRUCTION) return;  // the worker is stopping
    Answer a;
    switch (status) {
      case ARES_SUCCESS: {
        std::string error;
        auto m = parse_message({reinterpret_cast<const char*>(abuf), static_cast<std::size_t>(alen)}, error);
        if (m) {
          a.rcode = m->rcode;
          a.message = std::move(*m);
        } else {
          a.error = "malformed answer: " + error;
        }
        break;
      }
      case ARES_ETIMEOUT:
        a.rcode = kTimeout;
        a.error = "no answer within --dns-timeout";
        break;
      default:
        a.error = ares_strerror(status);
        break;
    }
    pending->self->cache_.put(pending->name, pending->rclass, pending->type, a, AnswerCache::Clock::now());
    pending->done(std::move(a));
  }

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<AresResolver*>(data);
    if (self->destroying_ && (readable || writable)) return;
    self->socket_state(fd, readable != 0, writable != 0);
  }

  void socket_state(int fd, bool readable, bool writable) {
    auto it = watches_.find(fd);
    if (!readable && !writable) {  // c-ares closes the socket next
      if (it != watches_.end()) {
        asio::error_code ec;
        it->second->descriptor.cancel(ec);
        it->second->descriptor.release();  // c-ares owns the descriptor
        watches_.erase(it);
      }
      return;
    }
    if (it == watches_.end()) {
      check_receive_buffer(fd);
      it = watches_.emplace(fd, std::make_shared<Watch>(io_, fd)).first;
    }
    it->second->read = readable;
    it->second->write = writable;
    arm(it->second, fd);
  }

  void arm(const std::shared_ptr<Watch>& w, int fd) {
    if (w->read && !w->reading) {
      w->reading = true;
      w->descriptor.async_wait(asio::posix::descriptor_base::wait_read, [this, w, fd](asio::error_code ec) {
        w->reading = false;
        if (ec || !w->read) return;
        process(fd, ARES_SOCKET_BAD);
        // A TCP answer may take several reads: go on while bytes wait.
        for (int i = 0; i < 64 && w->read && w->descriptor.is_open() && readable_now(fd); ++i) {
          process(fd, ARES_SOCKET_BAD);
        }
        if (w->descriptor.is_open()) arm(w, fd);
      });
    }
    if (w->write && !w->writing) {
      w->writing = true;
      w->descriptor.async_wait(asio::posix::descriptor_base::wait_write, [this, w, fd](asio::error_code ec) {
        w->writing = false;
        if (ec || !w->write) return;
        process(ARES_SOCKET_BAD, fd);
        if (w->descriptor.is_open()) arm(w, fd);
      });
    }
  }

  // The kernel caps SO_RCVBUF at net.core.rmem_max without a word (c-ares
  // ignores setsockopt's result): say so once per process, since a burst
  // of answers past the real size is dropped and asked again a c-ares
  // round (--dns-timeout / 7) later.
  void check_receive_buffer(int fd) const {
    static std::atomic<bool> said{false};
    if (receive_buffer_ <= 0 || said.load()) return;
    int granted = 0;
    socklen_t len = sizeof granted;
    if (::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &len) != 0) return;
    granted /= 2;  // Linux reports twice the size asked for (socket(7)), its bookkeeping included
    if (granted >= receive_buffer_ || said.exchange(true)) return;
    log::warning("dns: the kernel gave the resolver's sockets a {} byte receive buffer, not the {} of "
                 "--dns-receive-buffer (raise sysctl net.core.rmem_max); answers past it in a burst are "
                 "dropped and asked again",
                 granted, receive_buffer_);
  }

  static bool readable_now(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
  }

  void process(ares_socket_t read_fd, ares_socket_t write_fd) {
    ares_process_fd(channel_, read_fd, write_fd);
    rearm_timer();
  }

  // c-ares' next deadline (retries, timeouts) as one steady_timer.
  void rearm_timer() {
    if (destroying_) return;
    timeval tv{};
    if (!ares_timeout(channel_, nullptr, &tv)) {
      timer_.cancel();
      return;
    }
    const auto after = std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
    timer_.expires_after(after);
    timer_.async_wait([this](asio::error_code ec) {
      if (ec) return;
      process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    });
  }

  asio::io_context& io_;
  asio::steady_timer timer_;
  int receive_buffer_;  // --dns-receive-buffer
  ares_channel channel_ = nullptr;
  std::map<int, std::shared_ptr<Watch>> watches_;
  std::size_t in_flight_ = 0;
  bool destroying_ = false;
  AnswerCache cache_;
};

}  // namespace

std::unique_ptr<Resolver> Resolver::create(asio::io_context& io, const ResolverConfig& config, std::string& error) {
  auto r = std::make_unique<AresResolver>(io, config.cache_entries, config.receive_buffer);
  if (!r->start(config, error)) return nullptr;
  return r;
}

std::string Resolver::check(const ResolverConfig& config) {
  ares_options opts{};
  std::string error;
  ares_channel channel = make_channel(config, opts, 0, error);
  if (channel) ares_destroy(channel);
  return error;
}

}  // namespace mailhook::policyd::dns
