// XCLIENT attribute parsing. Pure (no Asio), so
// tests/fuzz/fuzz_xclient compiles it alone.
#include "frontend/server/xclient.h"

#include "frontend/server/client_address.h"
#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/xtext.h"

#include <sstream>

namespace mailhook::front {

std::string apply_xclient(const std::string& attributes, ClientFacts& facts, std::string& helo, bool& esmtp) {
  std::stringstream ss(attributes);
  std::string item;
  ClientFacts next = facts;
  std::string next_helo = helo;
  bool next_esmtp = esmtp;
  bool any = false;
  while (ss >> item) {
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos) return "malformed attribute: " + item;
    const std::string name = smtp::ascii_upper(item.substr(0, eq));
    std::optional<std::string> value = smtp::xtext_decode(item.substr(eq + 1));
    if (!value) return "bad xtext in " + name;
    // A decoded CR, LF or NUL would split the spool envelope, a header or
    // a log line ("NAME=evil+0D+0AX-Mailhook-To:+20<x@y>"): refused.
    if (smtp::has_control(*value)) return "control character in " + name;
    const bool unavailable = *value == "[UNAVAILABLE]" || *value == "[TEMPUNAVAIL]";
    const std::string v = unavailable ? std::string() : *value;
    if (name == "NAME") {
      next.host = v;
    } else if (name == "ADDR") {
      std::string a = v.rfind("IPV6:", 0) == 0 ? v.substr(5) : v;  // Postfix writes IPV6:addr
      if (!a.empty() && !address_bytes(a)) return "bad ADDR: " + v;
      next.address = a;
    } else if (name == "PORT" || name == "DESTPORT") {
      if (!v.empty() && (v.find_first_not_of("0123456789") != std::string::npos || v.size() > 5 || std::stoul(v) > 65535))
        return "bad " + name + ": " + v;
      (name == "PORT" ? next.port : next.local_port) = v.empty() ? 0 : static_cast<std::uint32_t>(std::stoul(v));
    } else if (name == "DESTADDR") {
      std::string a = v.rfind("IPV6:", 0) == 0 ? v.substr(5) : v;
      if (!a.empty() && !address_bytes(a)) return "bad DESTADDR: " + v;
      next.local_address = a;
    } else if (name == "PROTO") {
      if (!v.empty() && v != "SMTP" && v != "ESMTP") return "bad PROTO: " + v;
      next_esmtp = v == "ESMTP";
    } else if (name == "HELO") {
      next_helo = v;
    } else if (name == "LOGIN") {
      next.auth_user = v;
    } else {
      return "unknown attribute: " + name;
    }
    any = true;
  }
  if (!any) return "no attributes";
  facts = std::move(next);
  helo = std::move(next_helo);
  esmtp = next_esmtp;
  return "";
}

}  // namespace mailhook::front
