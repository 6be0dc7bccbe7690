// Spool: one file per accepted message in the spool directory, made
// durable before the client hears 250: written under a temp name,
// fsync'd, renamed, and the directory fsync'd. Blocking file I/O: callers
// run it off the SMTP I/O threads. Format: docs/spool-format.md.
#pragma once

#include <string>

#include "frontend/delivery/envelope.h"

namespace mailhook::front {

class Spool {
 public:
  explicit Spool(std::string dir) : dir_(std::move(dir)) {}
  // Creates the directory (and quarantine/) if missing; "" or why not.
  std::string prepare() const;
  // Writes one message durably; "" on success, else the error text.
  std::string write(const Envelope& envelope, const std::string& received, const std::string& message) const;

 private:
  std::string dir_;
};

}  // namespace mailhook::front
