// Formatting helpers of the event vocabulary. Pure: no I/O.
#include "mailcore/event/event.h"

namespace mailhook {

std::string_view event_kind_name(EventKind kind) {
  switch (kind) {
    case EventKind::Helo: return "helo";
    case EventKind::Ehlo: return "ehlo";
    case EventKind::Auth: return "auth";
    case EventKind::Mail: return "mail";
    case EventKind::Rcpt: return "rcpt";
    case EventKind::Data: return "data";
    case EventKind::MessageChunk: return "message_chunk";
    case EventKind::EndOfMessage: return "end_of_message";
    case EventKind::Rset: return "rset";
    case EventKind::Noop: return "noop";
    case EventKind::Help: return "help";
    case EventKind::Vrfy: return "vrfy";
    case EventKind::Expn: return "expn";
    case EventKind::Quit: return "quit";
    case EventKind::Unknown: return "unknown";
    case EventKind::Xclient: return "xclient";
    case EventKind::Starttls: return "starttls";
    case EventKind::Reset: return "reset";
    case EventKind::Error: return "error";
    case EventKind::Close: return "close";
  }
  return "invalid";
}

EventSet EventSet::all() {
  EventSet s;
  for (int k = 1; k < kEventKindCount; ++k) s.add(static_cast<EventKind>(k));
  return s;
}

std::string Reply::wire() const {
  std::string out;
  const std::string code_text = std::to_string(code);
  const std::size_t n = lines.empty() ? 1 : lines.size();
  for (std::size_t i = 0; i < n; ++i) {
    out += code_text;
    out += (i + 1 == n) ? ' ' : '-';
    if (!enhanced.empty()) {
      out += enhanced;
      out += ' ';
    }
    if (i < lines.size()) out += lines[i];
    out += "\r\n";
  }
  return out;
}

std::string Reply::summary() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) out += " " + enhanced;
  if (!lines.empty()) out += " " + lines.front();
  return out;
}

}  // namespace mailhook
