// The milter protocol's bytes, version 6 (Sendmail's libmilter/docs and
// Postfix's MILTER_README describe it): length-prefixed packets, one command
// letter each. Cuts the MTA's stream into packets, reads the data of the
// commands the adapter takes and writes the data of its replies. Pure: no
// sockets, no threads, no Runtime, so every rule here is unit-tested.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mailcore/event/event.h"
#include "policyd/milter/milter_mapping.h"

namespace mailhook::policyd::milter {

inline constexpr std::uint32_t kProtocolVersion = 6;
inline constexpr std::size_t kBodyReplyChunk = 65535;   // the largest REPLBODY packet MTAs take
inline constexpr std::size_t kKeptBuffer = 256 * 1024;  // a read buffer past this is freed once empty

// MTA -> filter commands and filter -> MTA replies (mfdef.h's letters).
namespace cmd {
inline constexpr char kAbort = 'A', kBody = 'B', kConnect = 'C', kMacro = 'D', kEndOfBody = 'E', kHelo = 'H',
                      kQuitNewConnection = 'K', kHeader = 'L', kMail = 'M', kEndOfHeader = 'N',
                      kOptionNegotiation = 'O', kQuit = 'Q', kRcpt = 'R', kData = 'T', kUnknown = 'U';
}  // namespace cmd
namespace reply {
inline constexpr char kAddRcpt = '+', kDelRcpt = '-', kAddRcptPar = '2', kAccept = 'a', kReplaceBody = 'b',
                      kContinue = 'c', kDiscard = 'd', kChangeFrom = 'e', kAddHeader = 'h', kInsertHeader = 'i',
                      kChangeHeader = 'm', kProgress = 'p', kQuarantine = 'q', kReject = 'r', kTempfail = 't',
                      kReplyCode = 'y', kOptionNegotiation = 'O';
}  // namespace reply

// The protocol's integers: 4 bytes, network order.
std::uint32_t get_u32(std::string_view d, std::size_t at);
void put_u32(std::string& out, std::uint32_t v);

// NUL-terminated strings of a packet's data ("a\0b\0" -> a, b); a last
// string without its NUL counts too.
std::vector<std::string_view> strings_of(std::string_view d);

// One packet onto `out`: its length (letter and data), the letter, the data.
void append_packet(std::string& out, char letter, std::string_view data = {});

struct Packet {
  char letter = 0;
  std::string_view data;
};

// Cuts the MTA's byte stream into packets. The caller asks next(); on
// NeedMore it reads into room() and commit()s what came, then asks again.
// One buffer, reused: a partial packet moves to its front, it grows to
// hold the packet being read, and one grown past kKeptBuffer is freed
// once it is empty.
class PacketReader {
 public:
  enum class Status : std::uint8_t {
    Packet,    // `packet` is the next one
    NeedMore,  // read into room(), then commit()
    Refused,   // a length of 0 or past max_packet: the MTA is broken or hostile
  };
  struct Next {
    Status status = Status::NeedMore;
    Packet packet;             // its data stays valid until the next call of next()
    std::uint32_t length = 0;  // the packet's length as sent (letter and data), for the log
  };

  explicit PacketReader(std::size_t max_packet) : max_packet_(max_packet) {}

  Next next();
  // After NeedMore: where the next read goes (room for the rest of the
  // packet and at least 4 KiB), then how many bytes it brought.
  std::span<char> room() { return {in_.data() + end_, in_.size() - end_}; }
  void commit(std::size_t n) { end_ += n; }
  std::size_t capacity() const { return in_.size(); }  // the buffer's size, for tests

 private:
  std::size_t max_packet_;
  std::vector<char> in_;
  std::size_t begin_ = 0, end_ = 0, used_ = 0;  // in_[begin_, end_) is unread; the packet handed out is used_ long
};

// Where a connection is in the protocol, for the order of commands: the
// states of libmilter's engine (engine.c), whose table of which may follow
// which every MTA is written against.
enum class Stage : std::uint8_t {
  Init, Options, Connect, Helo, Mail, Rcpt, Data, Headers, EndOfHeaders, Body, EndOfMessage, Quit, Abort,
  Unknown, QuitNewConnection,
  None,  // a command outside the order (MACRO), or no command
};
Stage stage_of(char letter);
std::string_view stage_name(Stage s);  // for the log: "HELO", "end of message"
// MAIL up to the body: a command that leaves the order here ends the
// transaction (libmilter calls xxfi_abort).
bool in_transaction(Stage s);
// Whether `to` may follow `from`, stepping over stages the MTA was asked
// to skip (the SMFIP_NO* bits of `protocol`), as engine.c's trans_ok.
bool may_follow(Stage from, Stage to, unsigned long protocol);

// SMFIC_OPTNEG: version, actions, protocol steps offered; false when too
// short or older than version 2. An offer of no actions or no steps means
// version 1's (mfdef.h's SMFI_V1_ACTS, SMFI_V1_PROT), as libmilter reads it.
inline constexpr std::uint32_t kV1Actions = 0x0F, kV1Protocol = 0x3F;
struct OptionOffer {
  std::uint32_t version = 0;
  std::uint32_t actions = 0;
  std::uint32_t protocol = 0;
};
bool parse_optneg(std::string_view d, OptionOffer& out);

// SMFIR_OPTNEG's data: our version (never past the MTA's), the actions and
// protocol steps we ask for.
std::string optneg_reply(std::uint32_t mta_version, unsigned long actions, unsigned long protocol);

// Whether a command's data has the shape libmilter (engine.c) requires
// before it calls a filter: HELO, MAIL, RCPT, HEADER, BODY, UNKNOWN and
// MACRO carry data; HELO is one NUL-terminated string, MAIL and RCPT hold
// NUL-terminated strings, a header is its name and its value, each
// NUL-terminated. A malformed command closes the connection (libmilter
// closes too; for HELO it sends no reply, which leaves the MTA waiting).
// CONNECT and OPTNEG are checked by their own parsers.
bool well_formed(char letter, std::string_view d);

// SMFIC_CONNECT: hostname, family ('4', '6', 'L' or 'U'), port, address.
struct ConnectInfo {
  std::string host;  // the MTA's verified name; empty when it has none ("[192.0.2.1]")
  char family = 0;
  std::uint32_t port = 0;
  std::string address;  // none for 'L' (a unix socket) and 'U' (unknown)
};
// False when malformed, as libmilter judges it: no family after the
// hostname, a family other than these four, no port, an address without
// its NUL, an IPv4 or IPv6 address that does not parse, a socket path
// longer than sockaddr_un holds.
bool parse_connect(std::string_view d, ConnectInfo& out);

// SMFIC_MACRO: the step's letter, then name/value pairs, merged into
// `macros`. "{x}" and "x" name the same one-letter macro. False, nothing
// taken, when the data is empty.
bool parse_macros(std::string_view d, std::map<std::string, std::string>& macros);

// SMFIR_REPLYCODE's text: "550 5.7.1 text", or "550-5.7.1 a\r\n550 5.7.1 b"
// (a multi-line reply needs an enhanced code: 4.0.0 / 5.0.0 by default).
std::string reply_text(const MilterReply& r);

struct Modifications {
  bool allowed = true;       // false: nothing was appended
  std::string_view refused;  // what the MTA did not allow, for the log ("adding headers")
  bool discard = false;      // a change asked to accept and drop the message
};

// The message changes of hook.dot as modification packets appended to
// `out`, each only if negotiated in `actions`; when one was not, nothing
// is appended (half-applied changes must not be delivered).
Modifications append_modifications(std::string& out, const std::vector<MessageChange>& changes,
                                   unsigned long actions);

}  // namespace mailhook::policyd::milter
