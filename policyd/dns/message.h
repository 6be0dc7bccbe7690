// DNS messages (RFC 1035 4.1) as plain structs: the record layouts the
// dns module hands to Lua, and a parser for the answers c-ares returns.
// Pure: no sockets, no c-ares, no Lua. Hostile input gives an error, never
// a read past the buffer (compression loops are bounded).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailhook::policyd::dns {

// RFC 1035 3.2.2 and later RFCs: the types the seed names, plus PTR.
enum Type : std::uint16_t {
  kA = 1, kNS = 2, kCNAME = 5, kSOA = 6, kPTR = 12, kMX = 15, kTXT = 16, kAAAA = 28, kDNAME = 39, kANY = 255,
};
// RFC 1035 3.2.4.
enum Class : std::uint16_t { kIN = 1, kCS = 2, kCH = 3, kHS = 4 };

// The seed's rcodes: RFC 1035 4.1.1 RCODE values, and two of our own for
// failures that never produced an answer (values outside any RCODE).
enum Rcode : int {
  kNoError = 0, kFormErr = 1, kServFail = 2, kNxDomain = 3, kNotImp = 4, kRefused = 5,
  kErrno = 0x10000,    // the query could not be sent or the answer made no sense
  kTimeout = 0x20000,  // no answer within --dns-timeout
};

struct Record {
  std::string owner;            // the owner name, without the final dot
  std::uint16_t type = 0;
  std::uint16_t rclass = 0;
  std::uint32_t ttl = 0;
  std::string address;          // A, AAAA: text form; PTR: the address the owner name encodes
  std::string host;             // CNAME, DNAME, MX, NS, PTR: the target name
  std::uint16_t preference = 0; // MX
  std::vector<std::string> strings;  // TXT: each character-string
  // SOA (RFC 1035 3.3.13)
  std::string mname, rname;
  std::uint32_t serial = 0, refresh = 0, retry = 0, expire = 0, minimum = 0;
  std::string rdata;            // any other type: the raw RDATA

  std::string text() const;     // TXT: the character-strings joined
};

struct Message {
  std::uint16_t id = 0;
  int rcode = kNoError;
  bool truncated = false;
  std::vector<Record> answer, authority, additional;
};

// Parses a whole response; nullopt and `error` on malformed input.
std::optional<Message> parse_message(std::string_view wire, std::string& error);

// The address a reverse name encodes ("4.3.2.1.in-addr.arpa" ->
// "1.2.3.4", ip6.arpa nibbles -> "2001:db8::1"); "" when it is not one.
std::string address_of_reverse_name(std::string_view name);

// The reverse form of an IPv4 or IPv6 address for PTR and DNSBL queries
// ("192.0.2.1" -> "1.2.0.192", with ".in-addr.arpa" when asked; IPv6 as
// 32 nibbles, ".ip6.arpa"); "" when `address` is not one.
std::string reverse_name(std::string_view address, bool arpa_suffix);

std::string_view type_name(int type);    // "A", "MX", … or "" when unknown
std::string_view class_name(int rclass); // "IN", "CS", "CH", "HS" or ""
std::string_view rcode_name(int rcode);  // "NOERROR", …, "ERRNO", "TIMEOUT" or ""

}  // namespace mailhook::policyd::dns
