// PolicyStream: the reactor side queues under a mutex and posts a wake-up
// to the connection's executor; the coroutine side checks the queue and
// waits on a timer that the wake-up cancels (or that is the deadline).
#include "frontend/policy_client/policy_stream.h"

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

void PolicyStream::OnDone(const grpc::Status&) {
  {
    std::lock_guard l(mu_);
    broken_ = true;
  }
  wake();
  // Hand the last reference to the executor, so the object dies there and
  // never under a running reactor callback.
  asio::post(executor_, [self = std::move(self_)] {});
}

void PolicyStream::wake() {
  asio::post(executor_, [self = shared_from_this()] { self->timer_.cancel(); });
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

}  // namespace mailhook::front
