// Spool: one file per accepted message in the spool directory, made
// durable before the client hears 250: written under a temp name, synced,
// renamed, and the directory synced. Group commit: one committer thread
// takes every message waiting, writes them, makes them all durable with a
// single syncfs(2), renames them and syncs each directory once — two
// journal commits per batch instead of two per message. Callers await
// their own message; the SMTP I/O threads never block on the disk.
// Format: docs/spool-format.md.
#pragma once

#include <asio.hpp>

#include <functional>
#include <memory>
#include <string>

#include "frontend/delivery/envelope.h"

namespace mailhook::front {

class SpoolCommitter;

class Spool {
 public:
  explicit Spool(std::string dir);
  ~Spool();
  Spool(Spool&&) noexcept;

  // Creates the directory (and quarantine/) if missing; "" or why not.
  std::string prepare() const;

  // Writes one message durably; completes with "" or the error text. The
  // three arguments must stay alive until it completes (the caller awaits).
  template <typename Token>
  auto async_write(const Envelope& envelope, const std::string& received, const std::string& message,
                   Token&& token) {
    return asio::async_initiate<Token, void(std::string)>(
        [this, &envelope, &received, &message](auto handler) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          auto ex = asio::get_associated_executor(*h);
          submit(envelope, received, message, [h, ex](std::string error) {
            asio::post(ex, [h, error = std::move(error)]() mutable { (*h)(std::move(error)); });
          });
        },
        token);
  }

  // Messages made durable and commits done so far (batching ratio).
  std::uint64_t messages() const;
  std::uint64_t commits() const;

 private:
  void submit(const Envelope& e, const std::string& received, const std::string& message,
              std::function<void(std::string)> done);

  std::string dir_;
  std::unique_ptr<SpoolCommitter> committer_;
};

}  // namespace mailhook::front
