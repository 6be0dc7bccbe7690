// RedisClient: one worker's connection to Redis for the `kv` module,
// hiredis's asynchronous API driven by the worker's io_context (its
// socket waits are Asio descriptor waits; nothing ever blocks the worker).
// Connects lazily and again after a failure; every command ends within
// `timeout` with a reply or an error — a Redis that is down, slow or
// unreachable gives an error, never a hang.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

struct redisAsyncContext;

namespace mailhook::policyd::kv {

struct Reply {
  enum class Type : std::uint8_t { Nil, String, Integer, Status, Array, Error };
  Type type = Type::Error;
  std::string text;          // String, Status, Error (the message)
  long long integer = 0;     // Integer
};

// No defaults here: RuntimeConfig's (--kv, --kv-timeout) are the only ones.
struct Config {
  std::string address;  // "IP:PORT" or "[IPv6]:PORT"
  std::chrono::milliseconds timeout{};
};

// Parses --kv; false and `error` when it is not IP:PORT.
bool parse_address(const std::string& text, std::string& host, int& port, std::string& error);

class RedisClient : public std::enable_shared_from_this<RedisClient> {
 public:
  static std::shared_ptr<RedisClient> create(asio::io_context& io, Config config);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command; `done` runs exactly once on the worker thread, with
  // the reply or an Error (connection refused, lost, or past the timeout).
  void command(std::vector<std::string> argv, std::function<void(Reply)> done);

  // Drops the connection; pending commands get an error (worker stop).
  void close();

 private:
  struct Events;  // the hiredis <-> Asio adapter
  struct Pending {
    std::function<void(Reply)> done;
    std::unique_ptr<asio::steady_timer> timer;
  };

  RedisClient(asio::io_context& io, Config config, std::string host, int port);
  bool connect(std::string& error);
  void finish(std::uint64_t id, Reply reply);
  void fail_all(const std::string& why);
  static void on_reply(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_connect(const redisAsyncContext* ac, int status);
  static void on_disconnect(const redisAsyncContext* ac, int status);

  asio::io_context& io_;
  Config config_;
  std::string host_;
  int port_ = 0;
  redisAsyncContext* ac_ = nullptr;
  std::shared_ptr<Events> events_;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, Pending> pending_;
  // Back-off after a failed connect (THREATS.md, Redis): until retry_at_
  // a command fails at once instead of dialling a Redis that is down
  // (one connection attempt and one log line per command, before).
  std::chrono::milliseconds connect_pause_{0};
  std::chrono::steady_clock::time_point retry_at_{};
};

}  // namespace mailhook::policyd::kv
