// SmartHostRelay: hands one accepted message to the smart host over SMTP
// before the client hears 250 (the before-queue proxy of Postfix's
// smtpd_proxy_filter). Smart host down, slow or 4xx → 451 4.4.1; 5xx is
// passed on. Runs on the connection's executor; never blocks.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <string>

#include "frontend/delivery/envelope.h"

namespace mailhook::front {

struct SmartHostConfig {
  std::string host;
  std::string port;
  std::string helo_name;
  std::chrono::seconds timeout{60};
};

// Parses "host:port" or "[v6]:port"; false when malformed.
bool parse_host_port(const std::string& text, std::string& host, std::string& port);

// The reply the client gets for this message.
asio::awaitable<Reply> relay_message(const SmartHostConfig& config, const Envelope& envelope,
                                     const std::string& received, const std::string& message);

}  // namespace mailhook::front
