// CIDR matching and XCLIENT attribute parsing.
#include "frontend/server/xclient.h"

#include "mailcore/smtp/ascii.h"

#include <asio/ip/address.hpp>

#include <cctype>
#include <sstream>

namespace mailhook::front {
namespace {

std::optional<std::vector<unsigned char>> address_bytes(const std::string& text) {
  asio::error_code ec;
  asio::ip::address a = asio::ip::make_address(text, ec);
  if (ec) return std::nullopt;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    return std::vector<unsigned char>(b.begin(), b.end());
  }
  auto b = a.to_v6().to_bytes();
  return std::vector<unsigned char>(b.begin(), b.end());
}

// RFC 3461 4: xtext, "+" followed by two upper-case hex digits.
std::optional<std::string> xtext_decode(const std::string& in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '+') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      return std::nullopt;
    }
    out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
    i += 2;
  }
  return out;
}

}  // namespace

std::optional<CidrList> CidrList::parse(const std::string& text, std::string& error) {
  CidrList list;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const std::size_t slash = item.find('/');
    auto bytes = address_bytes(item.substr(0, slash));
    if (!bytes) {
      error = "not an address: " + item;
      return std::nullopt;
    }
    unsigned prefix = static_cast<unsigned>(bytes->size() * 8);
    if (slash != std::string::npos) {
      const std::string p = item.substr(slash + 1);
      if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos ||
          std::stoul(p) > prefix) {
        error = "bad prefix length: " + item;
        return std::nullopt;
      }
      prefix = static_cast<unsigned>(std::stoul(p));
    }
    list.entries_.push_back({std::move(*bytes), prefix});
  }
  return list;
}

bool CidrList::contains(const std::string& address) const {
  auto bytes = address_bytes(address);
  if (!bytes) return false;
  for (const auto& e : entries_) {
    if (e.bytes.size() != bytes->size()) continue;
    unsigned bits = e.prefix;
    bool match = true;
    for (std::size_t i = 0; i < e.bytes.size() && bits > 0 && match; ++i) {
      const unsigned take = bits >= 8 ? 8 : bits;
      const unsigned char mask = static_cast<unsigned char>(0xff << (8 - take));
      match = (e.bytes[i] & mask) == ((*bytes)[i] & mask);
      bits -= take;
    }
    if (match) return true;
  }
  return false;
}

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
    std::optional<std::string> value = xtext_decode(item.substr(eq + 1));
    if (!value) return "bad xtext in " + name;
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
      next.local_address = v;
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
