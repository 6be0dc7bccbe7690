// libFuzzer target: a whole MTA byte stream, cut into reads of varying
// size, framed by the PacketReader and fed through the per-connection
// state (milter_state.h) as milter_connection.cc feeds it. Whatever the
// order of the commands: no crash, the macros held never pass their caps,
// a session's macros are gone after QUIT_NC, a message past a limit stays
// refused until the next one, and no packet past max_packet is handed out.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "policyd/milter/milter_codec.h"
#include "policyd/milter/milter_state.h"

using namespace mailhook::policyd::milter;

namespace {
constexpr std::size_t kMaxPacket = 64 * 1024;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size < 1) return 0;
  // The first byte picks the read size (1 to 256 bytes), the rest is the stream.
  const std::size_t read_size = std::size_t{bytes[0]} + 1;
  const std::string_view stream(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  StateLimits limits;
  limits.max_macros = 8;
  limits.max_macro_bytes = 256;
  limits.max_message_size = 4096;
  limits.max_line = 1000;
  limits.max_headers = 16;
  limits.max_header_bytes = 1024;
  ConnectionState state(limits);
  PacketReader reader(kMaxPacket);
  std::size_t at = 0;
  for (;;) {
    const PacketReader::Next n = reader.next();
    if (n.status == PacketReader::Status::Refused) return 0;  // the connection closes
    if (n.status == PacketReader::Status::NeedMore) {
      if (at == stream.size()) return 0;  // the MTA left
      const std::size_t want = std::min(read_size, stream.size() - at);
      const std::span<char> room = reader.room();
      if (room.size() < want) __builtin_trap();
      std::memcpy(room.data(), stream.data() + at, want);
      reader.commit(want);
      at += want;
      continue;
    }
    const Packet p = n.packet;
    if (p.data.size() + 1 > kMaxPacket) __builtin_trap();
    const Refusal before = state.refusal();
    const ConnectionState::Step step = state.take(p.letter, p.data);
    if (state.macro_count() > limits.max_macros || state.macro_bytes() > limits.max_macro_bytes) __builtin_trap();
    if (step.close) return 0;  // the connection closes, as milter_connection.cc does
    if (step.refused_now != Refusal::None && before != Refusal::None) __builtin_trap();  // refused once
    if (state.refusal() == Refusal::None &&
        (state.message_size() > limits.max_message_size || state.headers() > limits.max_headers)) {
      __builtin_trap();
    }
    switch (p.letter) {
      case cmd::kQuitNewConnection:
        if (state.macro_count() != 0 || state.macro_bytes() != 0 || state.refusal() != Refusal::None) {
          __builtin_trap();
        }
        break;
      case cmd::kMail:
      case cmd::kAbort:
      case cmd::kConnect:
        if (state.refusal() != Refusal::None || state.message_size() != 0) __builtin_trap();
        break;
      case cmd::kEndOfBody: state.end_message(); break;  // the connection answers, then the next message
      default: break;
    }
    state.take_changed();
  }
}
