// The one vocabulary of mailhook: SMTP events, replies and decisions, as
// plain value types shared by the front, policyd and the milter adapter.
// Never includes protobuf, Asio, gRPC, Lua or libmilter headers;
// mailcore/wire/ converts these to and from mailhook.v1.
#pragma once

#include <bitset>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailhook {

// Mirrors mailhook.v1.EventKind; the values are the proto's numbers.
enum class EventKind : std::uint8_t {
  Helo = 1,           // HELO <arg>
  Ehlo = 2,           // EHLO <arg>
  Auth = 3,           // AUTH <mechanism> [initial response]
  Mail = 4,           // MAIL FROM:<address> params
  Rcpt = 5,           // RCPT TO:<address> params
  Data = 6,           // DATA command, before 354
  MessageChunk = 7,   // message bytes, dot-unstuffed
  EndOfMessage = 8,   // the final dot
  Rset = 9,           // RSET
  Noop = 10,          // NOOP
  Help = 11,          // HELP
  Vrfy = 12,          // VRFY
  Expn = 13,          // EXPN
  Quit = 14,          // QUIT
  Unknown = 15,       // a command nobody knows
  Xclient = 16,       // XCLIENT
  Starttls = 17,      // TLS handshake completed
  Reset = 18,         // the transaction ended (RSET, HELO, EHLO, after DOT)
  Error = 19,         // a session error (I/O, protocol)
  Close = 20,         // the connection ended
};
inline constexpr int kEventKindCount = 21;

// Short lower-case name for logs ("rcpt", "end_of_message").
std::string_view event_kind_name(EventKind kind);

// A set of EventKinds: which events the scripts listen to.
class EventSet {
 public:
  void add(EventKind k) { bits_.set(static_cast<std::size_t>(k)); }
  bool has(EventKind k) const { return bits_.test(static_cast<std::size_t>(k)); }
  bool empty() const { return bits_.none(); }
  static EventSet all();
  bool operator==(const EventSet&) const = default;

 private:
  std::bitset<kEventKindCount> bits_;
};

// An SMTP reply: code, optional enhanced status code, one text per line.
struct Reply {
  int code = 0;               // 200..599
  std::string enhanced;       // "2.1.0" or empty
  std::vector<std::string> lines;  // no CR, LF or NUL inside

  // The reply as it goes on the wire, "250-a\r\n250 b\r\n".
  std::string wire() const;
  // The first line as one log token, "550 5.7.1 text".
  std::string summary() const;
  bool operator==(const Reply&) const = default;
};

struct Parameter {
  std::string name;
  std::string value;
  bool operator==(const Parameter&) const = default;
};

// Who is connected; any field may be empty when the shape cannot know it.
struct ClientFacts {
  std::string address;
  std::uint32_t port = 0;
  std::string host;
  std::string local_address;
  std::uint32_t local_port = 0;
  std::string tls_protocol;
  std::string tls_cipher;
  std::string auth_user;
  std::map<std::string, std::string> attributes;
  bool operator==(const ClientFacts&) const = default;
};

struct SessionLimits {
  std::uint64_t max_message_size = 0;  // 0: no limit
  std::uint32_t max_recipients = 0;
  std::uint32_t max_line_length = 0;
  bool operator==(const SessionLimits&) const = default;
};

enum class Shape : std::uint8_t {
  Front,   // mailhook-front speaks SMTP
  Milter,  // an MTA speaks SMTP and calls us over the milter protocol (policyd/milter)
};

// The connect event: the first thing a policy hears of a session.
struct SessionStart {
  std::string session_id;
  std::string local_host;
  Shape shape = Shape::Front;
  ClientFacts client;
  bool early_talker = false;
  SessionLimits limits;
};

// One SMTP event of a session.
struct SessionEvent {
  std::uint64_t seq = 0;
  EventKind kind = EventKind::Noop;
  bool wants_reply = false;
  std::string input;      // raw command line without CRLF
  std::string argument;   // HELO name, AUTH arg, VRFY arg, unknown line…
  std::string address;    // MAIL / RCPT address without <>
  std::vector<Parameter> parameters;
  std::string chunk;      // MessageChunk bytes
  std::optional<Reply> default_reply;
  int error_code = 0;
  std::string error_text;
  std::optional<ClientFacts> client;  // facts that changed with this event
  std::string transaction_id;
  std::uint64_t message_size = 0;
  std::string helo;       // the HELO/EHLO name in effect
  std::string sender;     // MAIL FROM of the open transaction (for the logs)
  std::vector<std::string> recipients;  // Data, EndOfMessage: accepted so far (for the logs)
  // Sent ahead of its command (RFC 2920), predicting earlier accepts
  // (session.proto Event.speculative).
  bool speculative = false;
  bool operator==(const SessionEvent&) const = default;
};

// A change to the message, asked for at end of message.
struct MessageChange {
  enum class Kind : std::uint8_t {
    AddHeader,     // name, value: append
    InsertHeader,  // index (0 = first), name, value
    ChangeHeader,  // the index-th (1-based) `name`; erase = delete it
    AddRcpt,       // value = address, name = its ESMTP arguments (may be empty)
    DelRcpt,       // value = address
    ChangeFrom,    // value = address
    ReplaceBody,   // value = new body
    Quarantine,    // value = reason
    Discard,       // accept and drop
  };
  Kind kind = Kind::AddHeader;
  std::string name;
  std::string value;
  std::uint32_t index = 0;
  bool erase = false;
  bool operator==(const MessageChange&) const = default;
};

// policyd's answer to one event.
struct Decision {
  enum class Action : std::uint8_t {
    Continue,  // send the default reply
    Reply,     // send `reply`
  };
  std::uint64_t seq = 0;
  Action action = Action::Continue;
  mailhook::Reply reply;
  bool disconnect = false;
  std::vector<MessageChange> changes;
  std::optional<SessionLimits> limits;
  std::vector<std::string> ehlo_keywords;
  // Who decided, for the log lines of a refusal: the script's name ("" for
  // the default reply) and the hook it ran ("rcpt").
  std::string script;
  std::string hook;
  // A speculative event that ran no hook: an earlier decision broke the
  // front's prediction (session.proto Decision.skipped).
  bool skipped = false;

  static Decision proceed(std::uint64_t seq) { return Decision{.seq = seq}; }
  static Decision respond(std::uint64_t seq, mailhook::Reply r, bool close = false) {
    return Decision{.seq = seq, .action = Action::Reply, .reply = std::move(r), .disconnect = close};
  }
};

// What the loaded scripts listen to.
struct Capabilities {
  EventSet events;
  bool wants_message = false;
  std::string policy_name;
  bool honours_speculative = false;  // policyd skips speculative events after a broken prediction
  bool connect_hook = false;  // a script decides at connect (not on the wire:
                              // the connect decision always comes)
};

}  // namespace mailhook
