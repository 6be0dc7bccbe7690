// Packet framing and the data of the milter commands and replies.
#include "policyd/milter/milter_codec.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <iterator>

namespace mailhook::policyd::milter {

std::uint32_t get_u32(std::string_view d, std::size_t at) {
  const auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(d[at + i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

void put_u32(std::string& out, std::uint32_t v) {
  out += static_cast<char>(v >> 24);
  out += static_cast<char>(v >> 16);
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v);
}

std::vector<std::string_view> strings_of(std::string_view d) {
  std::vector<std::string_view> v;
  while (!d.empty()) {
    const std::size_t nul = d.find('\0');
    v.push_back(d.substr(0, nul));
    if (nul == std::string_view::npos) break;
    d.remove_prefix(nul + 1);
  }
  return v;
}

void append_packet(std::string& out, char letter, std::string_view data) {
  put_u32(out, static_cast<std::uint32_t>(data.size() + 1));
  out += letter;
  out.append(data);
}

PacketReader::Next PacketReader::next() {
  begin_ += used_;
  used_ = 0;
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (in_.size() > kKeptBuffer) std::vector<char>().swap(in_);  // after a large packet
  }
  Next n;
  std::size_t need = 4;
  if (end_ - begin_ >= 4) {
    n.length = get_u32(std::string_view(in_.data() + begin_, 4), 0);
    if (n.length == 0 || n.length > max_packet_) {
      n.status = Status::Refused;
      return n;
    }
    need = 4 + std::size_t{n.length};
    if (end_ - begin_ >= need) {
      used_ = need;
      n.status = Status::Packet;
      n.packet = Packet{in_[begin_ + 4], std::string_view(in_.data() + begin_ + 5, n.length - 1)};
      return n;
    }
  }
  if (begin_ > 0) {  // keep the partial packet at the front
    std::memmove(in_.data(), in_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (in_.size() < std::max(need, end_ + 4096)) in_.resize(std::max(need, end_ + 16 * 1024));
  return n;
}

namespace {

constexpr unsigned bit(Stage s) { return 1u << static_cast<unsigned>(s); }

// What may follow each stage (engine.c's next_states), indexed by Stage.
constexpr unsigned kNext[] = {
    /* Init */ bit(Stage::Options),
    /* Options */ bit(Stage::Connect) | bit(Stage::Unknown),
    /* Connect */ bit(Stage::Helo) | bit(Stage::Mail) | bit(Stage::Unknown),
    /* Helo */ bit(Stage::Helo) | bit(Stage::Mail) | bit(Stage::Unknown),
    /* Mail */ bit(Stage::Rcpt) | bit(Stage::Abort) | bit(Stage::Unknown),
    /* Rcpt */ bit(Stage::Headers) | bit(Stage::EndOfHeaders) | bit(Stage::Data) | bit(Stage::Body) |
        bit(Stage::EndOfMessage) | bit(Stage::Rcpt) | bit(Stage::Abort) | bit(Stage::Unknown),
    /* Data */ bit(Stage::EndOfHeaders) | bit(Stage::Headers) | bit(Stage::Abort),
    /* Headers */ bit(Stage::EndOfHeaders) | bit(Stage::Headers) | bit(Stage::Abort),
    /* EndOfHeaders */ bit(Stage::Body) | bit(Stage::EndOfMessage) | bit(Stage::Abort),
    /* Body */ bit(Stage::EndOfMessage) | bit(Stage::Body) | bit(Stage::Abort),
    /* EndOfMessage */ bit(Stage::Quit) | bit(Stage::Mail) | bit(Stage::Unknown) | bit(Stage::QuitNewConnection),
    /* Quit */ 0,
    /* Abort */ 0,
    /* Unknown */ bit(Stage::Helo) | bit(Stage::Mail) | bit(Stage::Rcpt) | bit(Stage::Abort) | bit(Stage::Data) |
        bit(Stage::Body) | bit(Stage::Unknown) | bit(Stage::Quit) | bit(Stage::QuitNewConnection),
    /* QuitNewConnection */ bit(Stage::Connect) | bit(Stage::Unknown),
};
static_assert(std::size(kNext) == static_cast<std::size_t>(Stage::None));

// A stage the MTA leaves out when told to (engine.c's fix_stm).
bool skipped(Stage s, unsigned long protocol) {
  switch (s) {
    case Stage::Connect: return protocol & flag::kNoConnect;
    case Stage::Helo: return protocol & flag::kNoHelo;
    case Stage::Mail: return protocol & flag::kNoMail;
    case Stage::Rcpt: return protocol & flag::kNoRcpt;
    case Stage::Headers: return protocol & flag::kNoHdrs;
    case Stage::EndOfHeaders: return protocol & flag::kNoEoh;
    case Stage::Body: return protocol & flag::kNoBody;
    case Stage::Data: return protocol & flag::kNoData;
    case Stage::Unknown: return protocol & flag::kNoUnknown;
    default: return false;
  }
}

}  // namespace

Stage stage_of(char letter) {
  switch (letter) {
    case cmd::kAbort: return Stage::Abort;
    case cmd::kBody: return Stage::Body;
    case cmd::kConnect: return Stage::Connect;
    case cmd::kEndOfBody: return Stage::EndOfMessage;
    case cmd::kHelo: return Stage::Helo;
    case cmd::kHeader: return Stage::Headers;
    case cmd::kMail: return Stage::Mail;
    case cmd::kOptionNegotiation: return Stage::Options;
    case cmd::kEndOfHeader: return Stage::EndOfHeaders;
    case cmd::kQuit: return Stage::Quit;
    case cmd::kData: return Stage::Data;
    case cmd::kRcpt: return Stage::Rcpt;
    case cmd::kUnknown: return Stage::Unknown;
    case cmd::kQuitNewConnection: return Stage::QuitNewConnection;
    default: return Stage::None;
  }
}

std::string_view stage_name(Stage s) {
  static constexpr std::string_view kNames[] = {
      "the start", "OPTNEG", "CONNECT", "HELO", "MAIL", "RCPT", "DATA", "a header", "the end of headers",
      "a body chunk", "the end of message", "QUIT", "ABORT", "an unknown command", "QUIT_NC", "no stage"};
  return kNames[std::min(static_cast<std::size_t>(s), std::size(kNames) - 1)];
}

bool in_transaction(Stage s) { return s >= Stage::Mail && s < Stage::EndOfMessage; }

bool may_follow(Stage from, Stage to, unsigned long protocol) {
  if (from >= Stage::None || to >= Stage::None) return false;
  // The stages are in protocol order, so a skipped one is the next index.
  for (auto s = static_cast<unsigned>(from);;) {
    if (kNext[s] & bit(to)) return true;
    const unsigned n = s + 1;
    if (n >= static_cast<unsigned>(Stage::None) || !skipped(static_cast<Stage>(n), protocol)) return false;
    s = n;
  }
}

bool parse_optneg(std::string_view d, OptionOffer& out) {
  if (d.size() < 12 || get_u32(d, 0) < 2) return false;
  out.version = get_u32(d, 0);
  out.actions = get_u32(d, 4);
  out.protocol = get_u32(d, 8);
  // An old MTA's 0: what version 1 offered (add headers, change the body,
  // add and remove recipients), not nothing.
  if (out.actions == 0) out.actions = kV1Actions;
  if (out.protocol == 0) out.protocol = kV1Protocol;
  return true;
}

std::string optneg_reply(std::uint32_t mta_version, unsigned long actions, unsigned long protocol) {
  std::string o;
  put_u32(o, std::min<std::uint32_t>(kProtocolVersion, mta_version));
  put_u32(o, static_cast<std::uint32_t>(actions));
  put_u32(o, static_cast<std::uint32_t>(protocol));
  return o;
}

bool well_formed(char letter, std::string_view d) {
  switch (letter) {
    case cmd::kBody:
    case cmd::kUnknown:
    case cmd::kMacro: return !d.empty();
    case cmd::kHelo: return !d.empty() && d.back() == '\0';
    case cmd::kMail:
    case cmd::kRcpt: return d.find('\0') != std::string_view::npos;
    case cmd::kHeader: {  // name\0value\0, the name at least one byte (engine.c's dec_arg2)
      if (d.size() < 2 || d.back() != '\0') return false;
      const std::size_t nul = d.find('\0', 1);
      return nul < d.size() - 1;
    }
    default: return true;
  }
}

bool parse_connect(std::string_view d, ConnectInfo& out) {
  const std::size_t nul = d.find('\0');
  if (nul == std::string_view::npos || nul + 1 >= d.size()) return false;
  const std::string_view hostname = d.substr(0, nul);
  out = ConnectInfo();
  out.family = d[nul + 1];
  if (out.family != 'U') {
    if (out.family != '4' && out.family != '6' && out.family != 'L') return false;
    const std::string_view rest = d.substr(nul + 2);
    // The port, then the address with its NUL.
    if (rest.size() < 3 || rest.back() != '\0') return false;
    out.port = static_cast<std::uint32_t>(static_cast<unsigned char>(rest[0]) << 8 |
                                          static_cast<unsigned char>(rest[1]));
    const std::string address(rest.substr(2, rest.find('\0', 2) - 2));
    unsigned char parsed[sizeof(in6_addr)];
    if (out.family == '4' && inet_aton(address.c_str(), reinterpret_cast<in_addr*>(parsed)) != 1) return false;
    if (out.family == '6' && inet_pton(AF_INET6, address.c_str(), parsed) != 1) return false;
    if (out.family == 'L' && address.size() >= sizeof(sockaddr_un{}.sun_path)) return false;
    if (out.family != 'L') out.address = address;
  }
  // The MTA's verified name; "[192.0.2.1]" means it has none.
  if (!hostname.empty() && hostname[0] != '[') out.host = std::string(hostname);
  return true;
}

bool parse_macros(std::string_view d, std::map<std::string, std::string>& macros) {
  if (d.empty()) return false;
  const auto s = strings_of(d.substr(1));
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) {
    std::string_view name = s[i];
    if (name.size() == 3 && name.front() == '{' && name.back() == '}') name = name.substr(1, 1);
    macros[std::string(name)] = std::string(s[i + 1]);
  }
  return true;
}

std::string reply_text(const MilterReply& r) {
  std::string out;
  if (r.lines.size() <= 1) {
    out = r.code;
    if (!r.enhanced.empty()) out += " " + r.enhanced;
    out += " ";
    if (!r.lines.empty()) out += r.lines[0];
  } else {
    const std::string x = r.enhanced.empty() ? (r.code[0] == '4' ? "4.0.0" : "5.0.0") : r.enhanced;
    for (std::size_t i = 0; i < r.lines.size(); ++i) {
      const bool last = i + 1 == r.lines.size();
      out += r.code + (last ? " " : "-") + x + " " + r.lines[i] + (last ? "" : "\r\n");
    }
  }
  out += '\0';
  return out;
}

Modifications append_modifications(std::string& out, const std::vector<MessageChange>& changes,
                                   unsigned long actions) {
  const std::size_t mark = out.size();
  Modifications m;
  auto allowed = [&](unsigned long action, std::string_view what) {
    if (actions & action) return true;
    m.refused = what;
    return false;
  };
  auto z = [](std::string_view s) { return std::string(s) + '\0'; };
  bool ok = true;
  for (const MessageChange& ch : changes) {
    const std::string value = milter_header_value(ch.value);
    std::string p;
    switch (ch.kind) {
      case MessageChange::Kind::AddHeader:
        if ((ok = allowed(flag::kAddHdrs, "adding headers"))) {
          append_packet(out, reply::kAddHeader, z(ch.name) + z(value));
        }
        break;
      case MessageChange::Kind::InsertHeader:
        if ((ok = allowed(flag::kAddHdrs, "inserting headers"))) {
          put_u32(p, static_cast<std::uint32_t>(ch.index));
          append_packet(out, reply::kInsertHeader, p + z(ch.name) + z(value));
        }
        break;
      case MessageChange::Kind::ChangeHeader:
        if ((ok = allowed(flag::kChgHdrs, "changing headers"))) {
          put_u32(p, static_cast<std::uint32_t>(ch.index));
          append_packet(out, reply::kChangeHeader, p + z(ch.name) + z(ch.erase ? std::string() : value));
        }
        break;
      case MessageChange::Kind::AddRcpt:
        if (ch.name.empty()) {
          if ((ok = allowed(flag::kAddRcpt, "adding recipients"))) {
            append_packet(out, reply::kAddRcpt, z("<" + ch.value + ">"));
          }
        } else if ((ok = allowed(flag::kAddRcptPar, "adding recipients with ESMTP arguments"))) {
          append_packet(out, reply::kAddRcptPar, z("<" + ch.value + ">") + z(ch.name));
        }
        break;
      case MessageChange::Kind::DelRcpt:
        if ((ok = allowed(flag::kDelRcpt, "removing recipients"))) {
          append_packet(out, reply::kDelRcpt, z("<" + ch.value + ">"));
        }
        break;
      case MessageChange::Kind::ChangeFrom:
        if ((ok = allowed(flag::kChgFrom, "changing the sender"))) {
          append_packet(out, reply::kChangeFrom, z("<" + ch.value + ">"));
        }
        break;
      case MessageChange::Kind::ReplaceBody:
        if ((ok = allowed(flag::kChgBody, "replacing the body"))) {
          std::string_view body = ch.value;
          do {
            const std::string_view part = body.substr(0, kBodyReplyChunk);
            append_packet(out, reply::kReplaceBody, part);
            body.remove_prefix(part.size());
          } while (!body.empty());
        }
        break;
      case MessageChange::Kind::Quarantine:
        if ((ok = allowed(flag::kQuarantine, "quarantine"))) append_packet(out, reply::kQuarantine, z(ch.value));
        break;
      case MessageChange::Kind::Discard: m.discard = true; break;
    }
    if (!ok) {
      out.resize(mark);
      m.allowed = false;
      return m;
    }
  }
  return m;
}

}  // namespace mailhook::policyd::milter
