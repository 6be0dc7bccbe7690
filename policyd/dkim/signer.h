// DKIM signing (RFC 6376 5, RFC 8463): the DKIM-Signature field value for
// a message, to be added at the top of its header. Pure over bytes; the
// key comes in parsed (crypto.h), the clock as an argument.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policyd/dkim/canon.h"
#include "policyd/dkim/crypto.h"

namespace mailhook::policyd::dkim {

struct SignRequest {
  std::string domain;                // d=
  std::string selector;              // s=
  Canon header_canon = Canon::Relaxed;
  Canon body_canon = Canon::Relaxed;
  std::vector<std::string> headers;  // h=; empty: the RFC 6376 5.4.1 set present, From over-signed
  std::uint64_t timestamp = 0;       // t=
  std::optional<std::uint64_t> expires;  // x=
  bool body_length = false;          // l= (the whole canonical body): text appended later stays unsigned
};

// The header fields signed when the caller names none: RFC 6376 5.4.1's
// list, each as often as the message has it.
const std::vector<std::string>& default_signed_headers();

// The value of the DKIM-Signature field (folded with CRLF + TAB, no name),
// or nullopt and `error`.
std::optional<std::string> sign_message(std::string_view message, const SignRequest& request, const PrivateKey& key,
                                        std::string& error);

}  // namespace mailhook::policyd::dkim
