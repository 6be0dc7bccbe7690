// PolicyStream: the reactor side queues under a mutex and posts a wake-up
// to the connection's executor; the coroutine side checks the queue and
// waits on a timer that the wake-up cancels (or that is the deadline).
#include "frontend/policy_client/policy_stream.h"

#include <cctype>

namespace mailhook::front {

PolicyStream::PolicyStream(v1::Policy::Stub& stub, asio::any_io_executor executor)
    : executor_(executor), timer_(executor) {
  stub.async()->Session(&context_, this);
}

void PolicyStream::start(v1::FrontMessage first) {
  self_ = shared_from_this();
  {
    std::lock_guard l(mu_);
    StartWrite(out_.offer(std::move(first)));
  }
  StartRead(&in_);
  StartCall();
}

void PolicyStream::send(v1::FrontMessage message) {
  std::lock_guard l(mu_);
  if (broken_ || closed_ || close_pending_) return;
  if (v1::FrontMessage* next = out_.offer(std::move(message))) StartWrite(next);
}

void PolicyStream::close() {
  std::lock_guard l(mu_);
  if (closed_ || close_pending_ || broken_) return;
  if (out_.writing()) {
    close_pending_ = true;
    return;
  }
  closed_ = true;
  StartWritesDone();
}

void PolicyStream::OnWriteDone(bool ok) {
  std::lock_guard l(mu_);
  if (!ok) {
    broken_ = true;
    out_.drop();
    return;
  }
  if (v1::FrontMessage* next = out_.done()) {
    StartWrite(next);
  } else if (close_pending_) {
    close_pending_ = false;
    closed_ = true;
    StartWritesDone();
  }
}

void PolicyStream::OnReadDone(bool ok) {
  {
    std::lock_guard l(mu_);
    if (ok) {
      received_.push_back(std::move(in_));
      in_.Clear();
    } else {
      broken_ = true;
    }
  }
  if (ok) StartRead(&in_);
  wake();
}

namespace {

// gRPC's status as a log phrase: UNAVAILABLE with a socket error becomes
// "unreachable: connection refused"; the rest keeps gRPC's own words.
std::string describe(const grpc::Status& status) {
  if (status.ok()) return "";
  std::string text = status.error_message();
  std::string lower = text;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    for (const char* cause : {"connection refused", "no route to host", "network is unreachable", "connection reset",
                              "no such file or directory", "permission denied", "dns resolution failed",
                              "handshake failed", "certificate verify failed"}) {
      if (lower.find(cause) != std::string::npos) return std::string("unreachable: ") + cause;
    }
    return "unreachable: " + text;
  }
  static const char* const kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                       "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                       "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int code = static_cast<int>(status.error_code());
  const std::string name = code >= 0 && code <= 16 ? kNames[code] : std::to_string(code);
  return text.empty() ? name : name + ": " + text;
}

}  // namespace

void PolicyStream::OnDone(const grpc::Status& status) {
  {
    std::lock_guard l(mu_);
    broken_ = true;
    done_ = true;
    failure_ = describe(status);
  }
  wake();
  // Hand the last reference to the executor, so the object dies there and
  // never under a running reactor callback.
  asio::post(executor_, [self = std::move(self_)] {});
}

void PolicyStream::wake() {
  asio::post(executor_, [self = shared_from_this()] { self->timer_.cancel(); });
}

std::string PolicyStream::failure() {
  std::lock_guard l(mu_);
  return failure_;
}

bool PolicyStream::broken() {
  std::lock_guard l(mu_);
  return broken_ && received_.empty();
}

asio::awaitable<std::optional<v1::PolicyMessage>> PolicyStream::next(
    std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    {
      std::lock_guard l(mu_);
      if (!received_.empty()) {
        v1::PolicyMessage m = received_.pop_front();
        co_return m;
      }
      if (broken_) co_return std::nullopt;
    }
    if (std::chrono::steady_clock::now() >= deadline) co_return std::nullopt;
    timer_.expires_at(deadline);
    asio::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<std::string> PolicyStream::settled_failure(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    {
      std::lock_guard l(mu_);
      if (done_ || !broken_) co_return failure_;
    }
    if (std::chrono::steady_clock::now() >= deadline) co_return failure();
    timer_.expires_at(deadline);
    asio::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace mailhook::front
