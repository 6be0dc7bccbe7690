// The bounded per-connection state of the milter engine (milter_state.h).
#include "policyd/milter/milter_state.h"

#include <cstring>

#include "policyd/milter/milter_codec.h"
#include "policyd/milter/milter_mapping.h"

namespace mailhook::policyd::milter {
namespace {

// The protocol's stages in the order an SMTP session reaches them; a
// later stage's macro hides an earlier one of the same name.
int rank(char stage) {
  static constexpr std::string_view kOrder = "CHMRTLNBE";
  const std::size_t i = kOrder.find(stage);
  return i == std::string_view::npos ? 16 + static_cast<unsigned char>(stage) : static_cast<int>(i);
}

std::size_t bytes_of(const std::map<std::string, std::string>& m) {
  std::size_t n = 0;
  for (const auto& [name, value] : m) n += name.size() + value.size();
  return n;
}

}  // namespace

Reply refusal_reply(Refusal r) {
  switch (r) {
    case Refusal::LineTooLong: return Reply{550, "5.6.0", {"Message has a line over the length limit"}};
    case Refusal::TooManyHeaders: return Reply{552, "5.3.4", {"Message has too many header fields"}};
    case Refusal::HeadersTooBig: return Reply{552, "5.3.4", {"Message header exceeds fixed limit"}};
    case Refusal::MessageTooBig:
    case Refusal::None: break;
  }
  return Reply{552, "5.3.4", {"Message size exceeds fixed limit"}};  // RFC 3463 5.3.4
}

std::string_view refusal_flag(Refusal r) {
  switch (r) {
    case Refusal::LineTooLong: return "--milter-max-line";
    case Refusal::TooManyHeaders: return "--milter-max-headers";
    case Refusal::HeadersTooBig: return "--milter-max-header-bytes";
    case Refusal::MessageTooBig:
    case Refusal::None: break;
  }
  return "--milter-max-message-size";
}

ConnectionState::Step ConnectionState::take(char letter, std::string_view data) {
  tripped_ = Refusal::None;
  Step step;
  switch (letter) {
    case cmd::kMacro: return take_macros(data);
    case cmd::kConnect:
      // A new SMTP session (a second CONNECT without QUIT_NC too): only the
      // connect-stage macros sent for it stay.
      if (!connect_macros_fresh_) drop_stage(cmd::kConnect);
      for (auto it = stages_.begin(); it != stages_.end();) {
        if (it->first == cmd::kConnect) {
          ++it;
          continue;
        }
        macro_count_ -= it->second.size();
        macro_bytes_ -= bytes_of(it->second);
        it = stages_.erase(it);
      }
      connect_macros_fresh_ = false;
      changed_ = true;
      end_message();
      break;
    case cmd::kQuitNewConnection: new_session(); break;
    case cmd::kMail:
      // A new transaction: the last one's recipient, DATA and message
      // macros are not this one's.
      for (char stage : std::string_view("RTLNBE")) drop_stage(stage);
      end_message();
      break;
    case cmd::kAbort: end_message(); break;
    case cmd::kHeader: add_header(data); break;
    case cmd::kEndOfHeader:
      if (refusal_ == Refusal::None) {
        message_size_ += 2;  // the blank line
        if (message_size_ > limits_.max_message_size) refuse(Refusal::MessageTooBig);
      }
      break;
    case cmd::kBody:
    case cmd::kEndOfBody: add_body(data); break;
    default: break;
  }
  step.refused_now = tripped_;
  return step;
}

// SMFIC_MACRO replaces its stage's macros, as libmilter does; the total
// held stays within --milter-max-macros and --milter-max-macro-bytes.
ConnectionState::Step ConnectionState::take_macros(std::string_view data) {
  Step step;
  std::map<std::string, std::string> fresh;
  if (!parse_macros(data, fresh)) return step;  // no stage letter: nothing to replace
  const char stage = data[0];
  const auto old = stages_.find(stage);
  const std::size_t old_count = old == stages_.end() ? 0 : old->second.size();
  const std::size_t old_bytes = old == stages_.end() ? 0 : bytes_of(old->second);
  const std::size_t count = macro_count_ - old_count + fresh.size();
  const std::size_t bytes = macro_bytes_ - old_bytes + bytes_of(fresh);
  if (count > limits_.max_macros) {
    step.close = true;
    step.why = "--milter-max-macros";
    return step;
  }
  if (bytes > limits_.max_macro_bytes) {
    step.close = true;
    step.why = "--milter-max-macro-bytes";
    return step;
  }
  macro_count_ = count;
  macro_bytes_ = bytes;
  stages_[stage] = std::move(fresh);
  if (stage == cmd::kConnect) connect_macros_fresh_ = true;
  changed_ = true;
  return step;
}

void ConnectionState::drop_stage(char stage) {
  const auto it = stages_.find(stage);
  if (it == stages_.end()) return;
  macro_count_ -= it->second.size();
  macro_bytes_ -= bytes_of(it->second);
  stages_.erase(it);
  changed_ = true;
}

// SMFIC_QUIT_NC: the MTA reuses the connection for another SMTP session;
// nothing of this one may reach it (its login above all).
void ConnectionState::new_session() {
  stages_.clear();
  macro_count_ = macro_bytes_ = 0;
  connect_macros_fresh_ = false;
  changed_ = true;
  end_message();
}

void ConnectionState::end_message() {
  message_size_ = 0;
  headers_ = header_bytes_ = 0;
  line_ = 0;
  after_cr_ = false;
  refusal_ = Refusal::None;
}

const std::string* ConnectionState::macro(std::string_view name) const {
  const std::string* found = nullptr;
  int best = -1;
  for (const auto& [stage, macros] : stages_) {
    const auto it = macros.find(std::string(name));
    if (it != macros.end() && rank(stage) > best) {
      best = rank(stage);
      found = &it->second;
    }
  }
  return found;
}

void ConnectionState::refuse(Refusal r) {
  if (refusal_ != Refusal::None) return;
  refusal_ = r;
  tripped_ = r;
}

void ConnectionState::add_header(std::string_view data) {
  if (refusal_ != Refusal::None) return;  // nothing more of this message is kept
  const auto s = strings_of(data);
  const std::size_t n = header_bytes(s.size() > 0 ? s[0] : "", s.size() > 1 ? s[1] : "").size();
  ++headers_;
  header_bytes_ += n;
  message_size_ += n;
  if (headers_ > limits_.max_headers) {
    refuse(Refusal::TooManyHeaders);
  } else if (header_bytes_ > limits_.max_header_bytes) {
    refuse(Refusal::HeadersTooBig);
  } else if (message_size_ > limits_.max_message_size) {
    refuse(Refusal::MessageTooBig);
  }
}

// The body's lines end at CRLF, as the runtime's line splitter cuts them
// (session_events.cc): a line it would hold past --milter-max-line, CRLF
// included, refuses the message.
void ConnectionState::add_body(std::string_view bytes) {
  if (refusal_ != Refusal::None) return;
  message_size_ += bytes.size();
  if (message_size_ > limits_.max_message_size) {
    refuse(Refusal::MessageTooBig);
    return;
  }
  std::size_t at = 0;
  for (;;) {
    const void* hit = bytes.size() > at ? std::memchr(bytes.data() + at, '\n', bytes.size() - at) : nullptr;
    if (!hit) break;
    const std::size_t lf = static_cast<std::size_t>(static_cast<const char*>(hit) - bytes.data());
    const std::size_t segment = lf - at;
    const bool crlf = segment > 0 ? bytes[lf - 1] == '\r' : after_cr_;
    line_ += segment + 1;
    if (crlf) {
      if (line_ > limits_.max_line) return refuse(Refusal::LineTooLong);
      line_ = 0;
    } else if (line_ >= limits_.max_line) {  // a bare LF does not end a line
      return refuse(Refusal::LineTooLong);
    }
    after_cr_ = false;
    at = lf + 1;
  }
  if (at < bytes.size()) {
    line_ += bytes.size() - at;
    after_cr_ = bytes.back() == '\r';
  }
  if (line_ >= limits_.max_line) refuse(Refusal::LineTooLong);  // it cannot end within the limit
}

}  // namespace mailhook::policyd::milter
