// XCLIENT (Postfix XCLIENT_README): who may send it (--xclient-hosts, a
// CIDR list: mailcore/net/cidr.h) and how its attributes change the
// client facts. Pure (no
// Asio; fuzzed by tests/fuzz/fuzz_xclient); never touches sockets. A
// decoded value with a control character is refused, never applied.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mailcore/event/event.h"
#include "mailcore/net/cidr.h"

namespace mailhook::front {

// --xclient-hosts: mailcore's one CIDR matcher (mailcore/net/cidr.h).
using CidrList = net::CidrList;

// Applies "NAME=x ADDR=y ..." to `facts` (and `helo`, `esmtp`); values are
// xtext (RFC 3461 4); [UNAVAILABLE]/[TEMPUNAVAIL] clear a field. Returns
// an error text for a malformed or unknown attribute or a value that
// decodes to CR, LF, NUL or another control (501), "" when applied.
std::string apply_xclient(const std::string& attributes, ClientFacts& facts, std::string& helo, bool& esmtp);

}  // namespace mailhook::front
