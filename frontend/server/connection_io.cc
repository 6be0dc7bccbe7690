// The Connection's socket I/O: reads into a per-thread buffer, waits that
// a timeout or the drain can end, and reply writes that give up on a
// client that stops reading (--command-timeout). Plain or TLS (OpenSSL
// over the non-blocking socket). Never blocks its I/O thread.
#include <chrono>

#include "frontend/server/session_connection.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::front::detail {

// The bytes of one read land in a buffer of the thread, not of the
// session: an idle session holds no read buffer while it waits (10,000
// idle sessions would otherwise hold 160 MB). Each read waits for the
// socket first, then reads what is there without blocking; with TLS,
// OpenSSL decrypts straight into that buffer.
asio::awaitable<Connection::Read> Connection::read_more(std::chrono::seconds timeout) {
  thread_local char buf[16 * 1024];
  timer_.expires_after(timeout);
  if (tls_) {
    for (;;) {
      std::size_t n = 0;
      const TlsStream::Want w = tls_->read(buf, sizeof buf, n);
      if (w == TlsStream::Want::Done) {
        in_.append(buf, n);
        co_return Read::Ok;
      }
      if (w == TlsStream::Want::Failed) co_return Read::Closed;
      const Read ready = co_await wait_for_tls(w);
      if (ready != Read::Ok) co_return ready;
    }
  }
  for (;;) {
    const Read ready = co_await wait_socket(tcp::socket::wait_read);
    if (ready != Read::Ok) co_return ready;
    asio::error_code ec;
    socket_.non_blocking(true, ec);
    const std::size_t n = socket_.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) continue;  // spurious wake-up
    if (ec) co_return Read::Closed;
    in_.append(buf, n);
    co_return Read::Ok;
  }
}

// The wait for the socket to be readable (or writable), ended early by
// the timer the caller armed (a timeout) or by the drain. Not asio's ||
// operator: that spawns two coroutines and a parallel group per wait,
// about 2.4 KiB that every idle session would hold. The timer's handler
// touches the connection only while it lives and only for the wait it was
// armed for.
asio::awaitable<Connection::Read> Connection::wait_socket(tcp::socket::wait_type what) {
  const std::uint64_t gen = ++wait_generation_;
  timer_ended_wait_ = false;
  timer_.async_wait([this, gen, alive = std::weak_ptr<void>(alive_)](const asio::error_code& ec) {
    if (ec || alive.expired() || gen != wait_generation_) return;
    timer_ended_wait_ = true;
    asio::error_code ignored;
    socket_.cancel(ignored);
  });
  waiting_read_ = what == tcp::socket::wait_read;  // the drain wakes a read, and an idle session's write
  waiting_write_ = !waiting_read_;
  asio::error_code ec;
  co_await socket_.async_wait(what, asio::redirect_error(asio::use_awaitable, ec));
  waiting_read_ = false;
  waiting_write_ = false;
  if (draining_ && ec == asio::error::operation_aborted) co_return Read::Draining;
  if (timer_ended_wait_ && ec == asio::error::operation_aborted) co_return Read::TimedOut;
  timer_.cancel();
  co_return ec ? Read::Closed : Read::Ok;
}

// Writes out_. A reply that makes no progress for --command-timeout ends
// the session, as Postfix's smtpd_timeout covers both directions: a client
// that pipelines and never reads would otherwise hold its slot for good.
// The drain ends a stalled write outside a transaction at once.
asio::awaitable<void> Connection::flush() {
  if (out_.empty()) co_return;
  if (write_failed_) {
    out_.clear();
    co_return;
  }
  const auto timeout = std::chrono::seconds(ctx_.config.command_timeout_s);
  std::size_t done = 0;
  std::size_t armed_at = std::string::npos;  // progress when the timer was last armed
  Read stalled = Read::Ok;
  // Arms the no-progress timer again only after progress.
  auto arm = [&] {
    if (armed_at == done) return;
    armed_at = done;
    timer_.expires_after(timeout);
  };
  asio::error_code ec;
  if (!tls_) socket_.non_blocking(true, ec);
  while (done < out_.size()) {
    std::size_t n = 0;
    tcp::socket::wait_type want = tcp::socket::wait_write;
    if (tls_) {
      const TlsStream::Want w = tls_->write(out_.data() + done, out_.size() - done, n);
      done += n;
      if (w == TlsStream::Want::Done) continue;
      if (w == TlsStream::Want::Failed) {
        stalled = Read::Closed;
        break;
      }
      if (w == TlsStream::Want::Read) want = tcp::socket::wait_read;
    } else {
      n = socket_.write_some(asio::buffer(out_.data() + done, out_.size() - done), ec);
      done += n;
      if (!ec) continue;
      if (ec != asio::error::would_block && ec != asio::error::try_again) {
        stalled = Read::Closed;
        break;
      }
    }
    if (draining_ && machine_.transaction_id().empty()) {  // shutting down, nothing in flight
      stalled = Read::Draining;
      break;
    }
    arm();
    stalled = co_await wait_socket(want);
    if (stalled != Read::Ok) break;
  }
  if (done < out_.size()) {
    write_failed_ = true;
    if (stalled == Read::TimedOut) {
      end_reason_ = "write_timeout";
      log::notice("session={} client={} reply not read for {}s (--command-timeout): closing", id_, client_token(),
                  ctx_.config.command_timeout_s);
    } else if (stalled == Read::Draining) {
      end_reason_ = "shutdown";
    } else {
      end_reason_ = "disconnect";
    }
    asio::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
  }
  out_.clear();
}

}  // namespace mailhook::front::detail
