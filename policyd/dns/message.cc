// RFC 1035 message parsing: header, question skip, resource records with
// name decompression (4.1.4), and the RDATA layouts of the seed's types.
#include "policyd/dns/message.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>

namespace mailhook::policyd::dns {
namespace {

class Reader {
 public:
  explicit Reader(std::string_view wire) : wire_(wire) {}

  bool u8(std::uint8_t& v) {
    if (pos_ + 1 > wire_.size()) return false;
    v = static_cast<std::uint8_t>(wire_[pos_++]);
    return true;
  }
  bool u16(std::uint16_t& v) {
    if (pos_ + 2 > wire_.size()) return false;
    v = static_cast<std::uint16_t>(byte(pos_) << 8 | byte(pos_ + 1));
    pos_ += 2;
    return true;
  }
  bool u32(std::uint32_t& v) {
    std::uint16_t hi = 0, lo = 0;
    if (!u16(hi) || !u16(lo)) return false;
    v = static_cast<std::uint32_t>(hi) << 16 | lo;
    return true;
  }
  bool bytes(std::size_t n, std::string_view& out) {
    if (pos_ + n > wire_.size()) return false;
    out = wire_.substr(pos_, n);
    pos_ += n;
    return true;
  }

  // A possibly compressed name at the cursor; the cursor moves past the
  // name's bytes here (not past where pointers lead).
  bool name(std::string& out) {
    out.clear();
    std::size_t at = pos_;
    bool jumped = false;
    int jumps = 0;
    std::size_t length = 0;
    for (;;) {
      if (at >= wire_.size()) return false;
      const std::uint8_t len = byte(at);
      if ((len & 0xC0) == 0xC0) {  // 4.1.4: a pointer
        if (at + 1 >= wire_.size() || ++jumps > 64) return false;
        const std::size_t target = static_cast<std::size_t>(len & 0x3F) << 8 | byte(at + 1);
        if (!jumped) pos_ = at + 2;
        jumped = true;
        at = target;
        continue;
      }
      if ((len & 0xC0) != 0) return false;  // 0x40/0x80: reserved label types
      if (len == 0) {
        if (!jumped) pos_ = at + 1;
        return true;
      }
      if (at + 1 + len > wire_.size()) return false;
      length += len + 1u;
      if (length > 255) return false;  // 3.1: names are at most 255 octets
      if (!out.empty()) out += '.';
      for (std::size_t i = at + 1; i < at + 1 + len; ++i) append_escaped(out, static_cast<unsigned char>(wire_[i]));
      at += 1 + len;
    }
  }

  std::size_t pos() const { return pos_; }
  std::size_t left() const { return wire_.size() - pos_; }
  void seek(std::size_t p) { pos_ = p; }

 private:
  unsigned byte(std::size_t i) const { return static_cast<unsigned char>(wire_[i]); }

  // RFC 4343 presentation form: a dot or backslash inside a label, or a
  // byte outside printable ASCII, is escaped.
  static void append_escaped(std::string& out, unsigned char c) {
    if (c == '.' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c <= 0x20 || c >= 0x7F) {
      out += '\\';
      out += static_cast<char>('0' + c / 100);
      out += static_cast<char>('0' + c / 10 % 10);
      out += static_cast<char>('0' + c % 10);
    } else {
      out += static_cast<char>(c);
    }
  }

  std::string_view wire_;
  std::size_t pos_ = 0;
};

std::string ip_text(int family, std::string_view raw) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(family, raw.data(), buf, sizeof buf)) return "";
  return buf;
}

// The RDATA of `r` at the reader's cursor, `len` octets long.
bool parse_rdata(Reader& in, std::uint16_t len, Record& r) {
  const std::size_t end = in.pos() + len;
  std::string_view raw;
  switch (r.type) {
    case kA:
      if (len != 4 || !in.bytes(4, raw)) return false;
      r.address = ip_text(AF_INET, raw);
      break;
    case kAAAA:
      if (len != 16 || !in.bytes(16, raw)) return false;
      r.address = ip_text(AF_INET6, raw);
      break;
    case kCNAME:
    case kDNAME:
    case kNS:
    case kPTR:
      if (!in.name(r.host)) return false;
      if (r.type == kPTR) r.address = address_of_reverse_name(r.owner);
      break;
    case kMX:
      if (!in.u16(r.preference) || !in.name(r.host)) return false;
      break;
    case kSOA:
      if (!in.name(r.mname) || !in.name(r.rname) || !in.u32(r.serial) || !in.u32(r.refresh) ||
          !in.u32(r.retry) || !in.u32(r.expire) || !in.u32(r.minimum)) {
        return false;
      }
      break;
    case kTXT:
      while (in.pos() < end) {  // 3.3.14: one or more <character-string>s
        std::uint8_t n = 0;
        std::string_view s;
        if (!in.u8(n) || in.pos() + n > end || !in.bytes(n, s)) return false;
        r.strings.emplace_back(s);
      }
      break;
    default:
      if (!in.bytes(len, raw)) return false;
      r.rdata.assign(raw);
      break;
  }
  if (in.pos() != end) return false;  // RDLENGTH disagrees with the RDATA
  return true;
}

bool parse_section(Reader& in, std::uint16_t count, std::vector<Record>& out) {
  // Trust the count no further than the bytes left (11 octets per RR at
  // least): a hostile header must not make us allocate megabytes.
  out.reserve(std::min<std::size_t>(count, in.left() / 11));
  for (std::uint16_t i = 0; i < count; ++i) {
    Record r;
    std::uint16_t len = 0;
    if (!in.name(r.owner) || !in.u16(r.type) || !in.u16(r.rclass) || !in.u32(r.ttl) || !in.u16(len)) return false;
    if (!parse_rdata(in, len, r)) return false;
    out.push_back(std::move(r));
  }
  return true;
}

}  // namespace

std::string Record::text() const {
  std::string all;
  for (const auto& s : strings) all += s;  // RFC 7208 3.3: joined without spaces
  return all;
}

std::optional<Message> parse_message(std::string_view wire, std::string& error) {
  Reader in(wire);
  Message m;
  std::uint16_t flags = 0, qd = 0, an = 0, ns = 0, ar = 0;
  if (!in.u16(m.id) || !in.u16(flags) || !in.u16(qd) || !in.u16(an) || !in.u16(ns) || !in.u16(ar)) {
    error = "short header";
    return std::nullopt;
  }
  if ((flags & 0x8000) == 0) {
    error = "not a response";
    return std::nullopt;
  }
  m.truncated = (flags & 0x0200) != 0;
  m.rcode = flags & 0x000F;
  for (std::uint16_t i = 0; i < qd; ++i) {
    std::string name;
    std::uint16_t type = 0, rclass = 0;
    if (!in.name(name) || !in.u16(type) || !in.u16(rclass)) {
      error = "malformed question";
      return std::nullopt;
    }
  }
  if (!parse_section(in, an, m.answer) || !parse_section(in, ns, m.authority) ||
      !parse_section(in, ar, m.additional)) {
    error = "malformed resource record";
    return std::nullopt;
  }
  return m;
}

std::string address_of_reverse_name(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) {
    if (name.size() < suffix.size()) return false;
    for (std::size_t i = 0; i < suffix.size(); ++i) {
      char c = name[name.size() - suffix.size() + i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != suffix[i]) return false;
    }
    return true;
  };
  if (ends_with(".in-addr.arpa")) {
    std::string_view rest = name.substr(0, name.size() - 13);
    std::array<std::string_view, 4> parts;
    for (int i = 0; i < 4; ++i) {
      const std::size_t dot = rest.rfind('.');
      parts[static_cast<std::size_t>(i)] = dot == std::string_view::npos ? rest : rest.substr(dot + 1);
      if (dot == std::string_view::npos) {
        if (i != 3) return "";
        rest = {};
      } else {
        rest = rest.substr(0, dot);
      }
    }
    if (!rest.empty()) return "";
    std::string text;
    for (const auto& p : parts) {
      if (!text.empty()) text += '.';
      text += p;
    }
    unsigned char raw[4];
    if (inet_pton(AF_INET, text.c_str(), raw) != 1) return "";
    return text;
  }
  if (ends_with(".ip6.arpa")) {
    std::string_view rest = name.substr(0, name.size() - 9);
    if (rest.size() != 63) return "";  // 32 nibbles and 31 dots
    unsigned char raw[16] = {};
    for (int i = 0; i < 32; ++i) {
      const char c = rest[static_cast<std::size_t>(i) * 2];
      if (i < 31 && rest[static_cast<std::size_t>(i) * 2 + 1] != '.') return "";
      int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (v < 0) return "";
      const int nibble = 31 - i;  // the first label is the lowest nibble
      raw[nibble / 2] = static_cast<unsigned char>(raw[nibble / 2] | (nibble % 2 ? v : v << 4));
    }
    return ip_text(AF_INET6, std::string_view(reinterpret_cast<const char*>(raw), 16));
  }
  return "";
}

std::string reverse_name(std::string_view address, bool arpa_suffix) {
  const std::string text(address);
  unsigned char b[16];
  std::string out;
  if (inet_pton(AF_INET, text.c_str(), b) == 1) {
    for (int i = 3; i >= 0; --i) {
      out += std::to_string(b[i]);
      if (i > 0) out += '.';
    }
    if (arpa_suffix) out += ".in-addr.arpa";
  } else if (inet_pton(AF_INET6, text.c_str(), b) == 1) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
      out += kHex[b[i] & 0xf];
      out += '.';
      out += kHex[b[i] >> 4];
      if (i > 0) out += '.';
    }
    if (arpa_suffix) out += ".ip6.arpa";
  }
  return out;
}

std::string_view type_name(int type) {
  switch (type) {
    case kA: return "A";
    case kNS: return "NS";
    case kCNAME: return "CNAME";
    case kSOA: return "SOA";
    case kPTR: return "PTR";
    case kMX: return "MX";
    case kTXT: return "TXT";
    case kAAAA: return "AAAA";
    case kDNAME: return "DNAME";
    case kANY: return "ANY";
    default: return "";
  }
}

std::string_view class_name(int rclass) {
  switch (rclass) {
    case kIN: return "IN";
    case kCS: return "CS";
    case kCH: return "CH";
    case kHS: return "HS";
    default: return "";
  }
}

std::string_view rcode_name(int rcode) {
  switch (rcode) {
    case kNoError: return "NOERROR";
    case kFormErr: return "FORMAT";
    case kServFail: return "SERVFAIL";
    case kNxDomain: return "NXDOMAIN";
    case kNotImp: return "NOT_IMPLEMENTED";
    case kRefused: return "REFUSED";
    case kErrno: return "ERRNO";
    case kTimeout: return "TIMEOUT";
    default: return "";
  }
}

}  // namespace mailhook::policyd::dns
