// libFuzzer target: the milter codec over one packet from the MTA (its
// letter, then its data). Every parser of command data, the shape check
// and the order table take it without a crash; what is parsed holds its
// invariants; the packet framed again reads back the same through the
// PacketReader, in one read or two.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "policyd/milter/milter_codec.h"
#include "policyd/milter/milter_mapping.h"

using namespace mailhook::policyd::milter;

namespace {

// The packet through a reader, the bytes cut at `split`.
void read_back(char letter, std::string_view data, std::size_t split) {
  std::string wire;
  append_packet(wire, letter, data);
  PacketReader r(1u << 20);
  std::size_t fed = 0;
  split = std::min(split, wire.size());
  for (int round = 0; round < 4; ++round) {
    const PacketReader::Next n = r.next();
    if (n.status == PacketReader::Status::Packet) {
      if (n.packet.letter != letter || n.packet.data != data || fed != wire.size()) __builtin_trap();
      return;
    }
    if (n.status == PacketReader::Status::Refused) {
      if (data.size() + 1 <= (1u << 20)) __builtin_trap();  // only a packet past the limit is refused
      return;
    }
    const std::size_t want = fed < split ? split - fed : wire.size() - fed;
    const std::span<char> room = r.room();
    if (room.size() < want) __builtin_trap();  // the reader always makes room for the packet
    std::memcpy(room.data(), wire.data() + fed, want);
    r.commit(want);
    fed += want;
  }
  __builtin_trap();  // a whole packet was fed and never came out
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t split = bytes[0];
  const char letter = static_cast<char>(bytes[1]);
  const std::string_view data(reinterpret_cast<const char*>(bytes) + 2, size - 2);

  for (std::string_view s : strings_of(data)) {
    if (s.find('\0') != std::string_view::npos) __builtin_trap();
  }
  OptionOffer offer;
  if (parse_optneg(data, offer)) {
    if (offer.version < 2) __builtin_trap();
    const std::string reply = optneg_reply(offer.version, offer.actions, offer.protocol);
    if (reply.size() != 12 || get_u32(reply, 0) > offer.version || get_u32(reply, 0) > kProtocolVersion) {
      __builtin_trap();
    }
  }
  ConnectInfo client;
  if (parse_connect(data, client)) {
    if (!client.host.empty() && client.host[0] == '[') __builtin_trap();
    if (client.port > 65535) __builtin_trap();
  }
  std::map<std::string, std::string> macros;
  if (parse_macros(data, macros) && data.empty()) __builtin_trap();  // no stage letter: nothing taken
  for (const auto& [name, value] : macros) {
    if (name.find('\0') != std::string::npos || value.find('\0') != std::string::npos) __builtin_trap();
  }
  std::vector<std::string> args;
  for (std::string_view a : strings_of(data)) args.emplace_back(a);
  std::string address;
  std::vector<mailhook::Parameter> parameters;
  parse_envelope_args(args, address, parameters);
  const auto s = strings_of(data);
  const std::string header = header_bytes(s.size() > 0 ? s[0] : "", s.size() > 1 ? s[1] : "");
  if (header.size() < 4 || header.compare(header.size() - 2, 2, "\r\n") != 0) __builtin_trap();
  // The shape check before a command is acted on, and the order table
  // from every stage, with the data's first word as the negotiated steps.
  if (well_formed(letter, data) && letter == cmd::kHelo && (data.empty() || data.back() != '\0')) __builtin_trap();
  const Stage to = stage_of(letter);
  if (stage_name(to).empty()) __builtin_trap();
  const unsigned long protocol = data.size() >= 4 ? get_u32(data, 0) : 0;
  for (int from = 0; from <= static_cast<int>(Stage::None); ++from) {
    (void)may_follow(static_cast<Stage>(from), to, protocol);
    (void)in_transaction(static_cast<Stage>(from));
  }
  read_back(letter, data, split);
  return 0;
}
