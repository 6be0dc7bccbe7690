// RedisClient: hiredis's async context on an Asio stream_descriptor. hiredis
// says when it wants to read or write (addRead, addWrite, ...); Events
// turns each wish into one async_wait, calls redisAsyncHandleRead/Write
// when the socket is ready, and re-arms while the wish holds. hiredis owns
// the socket: Events releases it (never closes it) in cleanup.
#include "policyd/kv/redis_client.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>

#include "mailcore/telemetry/log.h"

namespace mailhook::policyd::kv {

bool parse_address(const std::string& text, std::string& host, int& port, std::string& error) {
  const auto colon = text.rfind(':');
  std::string h = colon == std::string::npos ? "" : text.substr(0, colon);
  const std::string p = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  asio::error_code ec;
  asio::ip::make_address(h, ec);
  int n = 0;
  const auto [end, err] = std::from_chars(p.data(), p.data() + p.size(), n);
  if (ec || err != std::errc() || end != p.data() + p.size() || n < 1 || n > 65535) {
    error = "--kv " + text + ": expected IP:PORT (an address, not a name: no blocking lookup on a worker)";
    return false;
  }
  host = h;
  port = n;
  return true;
}

struct RedisClient::Events : std::enable_shared_from_this<Events> {
  Events(asio::io_context& io, redisAsyncContext* c) : sd(io, c->c.fd), ac(c) {}

  asio::posix::stream_descriptor sd;
  redisAsyncContext* ac;  // nullptr once hiredis cleaned up
  bool want_read = false, want_write = false, reading = false, writing = false;

  void arm_read() {
    if (!want_read || reading || ac == nullptr) return;
    reading = true;
    sd.async_wait(asio::posix::stream_descriptor::wait_read, [self = shared_from_this()](asio::error_code ec) {
      self->reading = false;
      if (ec || self->ac == nullptr || !self->want_read) return;
      redisAsyncHandleRead(self->ac);  // may free the context (cleanup below)
      self->arm_read();
    });
  }
  void arm_write() {
    if (!want_write || writing || ac == nullptr) return;
    writing = true;
    sd.async_wait(asio::posix::stream_descriptor::wait_write, [self = shared_from_this()](asio::error_code ec) {
      self->writing = false;
      if (ec || self->ac == nullptr || !self->want_write) return;
      redisAsyncHandleWrite(self->ac);
      self->arm_write();
    });
  }

  static Events& of(void* p) { return *static_cast<Events*>(p); }
  static void add_read(void* p) {
    of(p).want_read = true;
    of(p).arm_read();
  }
  static void del_read(void* p) { of(p).want_read = false; }
  static void add_write(void* p) {
    of(p).want_write = true;
    of(p).arm_write();
  }
  static void del_write(void* p) { of(p).want_write = false; }
  static void cleanup(void* p) {
    Events& e = of(p);
    e.ac = nullptr;
    e.want_read = e.want_write = false;
    asio::error_code ec;
    e.sd.cancel(ec);
    e.sd.release();  // hiredis closes its socket itself
  }
};

namespace {

// What a command's callback needs: the client (if still alive) and the id.
struct CallTag {
  std::weak_ptr<RedisClient> client;
  std::uint64_t id;
};

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_NIL: out.type = Reply::Type::Nil; break;
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::String;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::Status;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::Integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::Error;
      out.text.assign(r->str, r->len);
      break;
    default: out.type = Reply::Type::Array; break;
  }
  return out;
}

Reply error_reply(std::string text) { return Reply{.type = Reply::Type::Error, .text = std::move(text)}; }

}  // namespace

std::shared_ptr<RedisClient> RedisClient::create(asio::io_context& io, Config config) {
  std::string host, error;
  int port = 0;
  if (!parse_address(config.address, host, port, error)) return nullptr;
  return std::shared_ptr<RedisClient>(new RedisClient(io, std::move(config), std::move(host), port));
}

RedisClient::RedisClient(asio::io_context& io, Config config, std::string host, int port)
    : io_(io), config_(std::move(config)), host_(std::move(host)), port_(port) {}

RedisClient::~RedisClient() {
  if (ac_ != nullptr) {
    ac_->data = nullptr;
    redisAsyncFree(ac_);  // pending callbacks run with no reply; their tags find no client
  }
}

namespace {
constexpr std::chrono::milliseconds kFirstReconnectPause{100};
constexpr std::chrono::milliseconds kMostReconnectPause{5000};
}  // namespace

bool RedisClient::connect(std::string& error) {
  redisAsyncContext* ac = redisAsyncConnect(host_.c_str(), port_);
  if (ac == nullptr || ac->err) {
    error = ac ? ac->errstr : "out of memory";
    if (ac) redisAsyncFree(ac);
    return false;
  }
  ac->data = this;
  events_ = std::make_shared<Events>(io_, ac);
  ac->ev.data = events_.get();
  ac->ev.addRead = &Events::add_read;
  ac->ev.delRead = &Events::del_read;
  ac->ev.addWrite = &Events::add_write;
  ac->ev.delWrite = &Events::del_write;
  ac->ev.cleanup = &Events::cleanup;
  redisAsyncSetConnectCallback(ac, &RedisClient::on_connect);
  redisAsyncSetDisconnectCallback(ac, &RedisClient::on_disconnect);
  ac_ = ac;
  return true;
}

void RedisClient::on_connect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisClient*>(ac->data);
  if (self == nullptr) return;
  if (status == REDIS_OK) {
    self->connect_pause_ = std::chrono::milliseconds(0);
    return;
  }
  // hiredis frees the context after this callback, answering every queued
  // command with no reply (on_reply turns that into an error). The next
  // attempt waits: 100 ms, doubling up to 5 s while Redis stays down.
  self->connect_pause_ = std::clamp(self->connect_pause_ * 2, kFirstReconnectPause, kMostReconnectPause);
  self->retry_at_ = std::chrono::steady_clock::now() + self->connect_pause_;
  log::warning("kv: cannot connect to Redis at {}: {}; next try in {} ms", self->config_.address,
               ac->errstr ? ac->errstr : "error", self->connect_pause_.count());
  self->ac_ = nullptr;
  self->events_.reset();
}

void RedisClient::on_disconnect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisClient*>(ac->data);
  if (self == nullptr) return;
  if (status != REDIS_OK) {
    log::warning("kv: connection to Redis at {} lost: {}", self->config_.address, ac->errstr ? ac->errstr : "error");
  }
  self->ac_ = nullptr;
  self->events_.reset();
}

void RedisClient::on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
  std::unique_ptr<CallTag> tag(static_cast<CallTag*>(privdata));
  auto self = tag->client.lock();
  if (!self) return;
  if (reply == nullptr) {
    self->finish(tag->id, error_reply(ac->errstr && *ac->errstr ? ac->errstr : "connection to Redis lost"));
    return;
  }
  self->finish(tag->id, convert(static_cast<redisReply*>(reply)));
}

void RedisClient::finish(std::uint64_t id, Reply reply) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // timed out already
  auto done = std::move(it->second.done);
  pending_.erase(it);  // also cancels the timer
  done(std::move(reply));
}

void RedisClient::fail_all(const std::string& why) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) p.done(error_reply(why));
}

void RedisClient::command(std::vector<std::string> argv, std::function<void(Reply)> done) {
  std::string error;
  if (ac_ == nullptr && std::chrono::steady_clock::now() < retry_at_) {
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - std::chrono::steady_clock::now());
    done(error_reply("Redis at " + config_.address + " unreachable; next try in " + std::to_string(wait.count()) +
                     " ms"));
    return;
  }
  if (ac_ == nullptr && !connect(error)) {
    done(error_reply("cannot connect to Redis at " + config_.address + ": " + error));
    return;
  }
  const std::uint64_t id = next_id_++;
  Pending& p = pending_[id];
  p.done = std::move(done);
  p.timer = std::make_unique<asio::steady_timer>(io_, config_.timeout);
  p.timer->async_wait([weak = weak_from_this(), id](asio::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    const bool stuck = self->pending_.count(id) != 0;
    self->finish(id, error_reply("no answer from Redis within --kv-timeout (" +
                                 std::to_string(self->config_.timeout.count()) + " ms)"));
    // A Redis that does not answer in time is dropped; the next command
    // connects again, so a hung server cannot hold later commands.
    if (stuck && self->ac_ != nullptr) self->close();
  });
  std::vector<const char*> args;
  std::vector<std::size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* tag = new CallTag{weak_from_this(), id};
  if (redisAsyncCommandArgv(ac_, &RedisClient::on_reply, tag, static_cast<int>(args.size()), args.data(),
                            lens.data()) != REDIS_OK) {
    delete tag;
    finish(id, error_reply("Redis connection is closing"));
  }
}

void RedisClient::close() {
  if (ac_ != nullptr) {
    redisAsyncContext* ac = ac_;
    ac_ = nullptr;
    ac->data = nullptr;
    events_.reset();
    redisAsyncFree(ac);  // queued commands: no reply -> error
  }
  fail_all("Redis connection closed");
}

}  // namespace mailhook::policyd::kv
