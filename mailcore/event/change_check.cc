// Message change validation.
#include "mailcore/event/change_check.h"

namespace mailhook {

bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c <= 32 || c >= 127 || c == ':') return false;
  }
  return true;
}

bool valid_header_value(std::string_view v) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\0') return false;
    if (v[i] == '\r') {
      // RFC 5322 2.2.3: folding is CRLF followed by WSP.
      if (!(i + 2 < v.size() && v[i + 1] == '\n' && (v[i + 2] == ' ' || v[i + 2] == '\t'))) return false;
      ++i;  // the LF
    } else if (v[i] == '\n') {
      return false;
    }
  }
  return true;
}

bool valid_address(std::string_view a) {
  for (char c : a) {
    if (c == '\r' || c == '\n' || c == '\0' || c == '<' || c == '>') return false;
  }
  return true;
}

bool valid_esmtp_arguments(std::string_view args) {
  for (char c : args) {
    if (c < 0x20 || c > 0x7E) return false;  // RFC 5321 4.1.2
  }
  return true;
}

ChangeError check_change(const MessageChange& c) {
  using K = MessageChange::Kind;
  switch (c.kind) {
    case K::AddHeader:
    case K::InsertHeader:
    case K::ChangeHeader:
      if (!valid_header_name(c.name)) return ChangeError::HeaderName;
      if (!valid_header_value(c.value)) return ChangeError::HeaderValue;
      return ChangeError::None;
    case K::AddRcpt:
      if (!valid_address(c.value)) return ChangeError::Address;
      return valid_esmtp_arguments(c.name) ? ChangeError::None : ChangeError::Arguments;
    case K::DelRcpt:
    case K::ChangeFrom:
      return valid_address(c.value) ? ChangeError::None : ChangeError::Address;
    case K::Quarantine:
      for (char ch : c.value) {
        if (ch == '\r' || ch == '\n' || ch == '\0') return ChangeError::Text;
      }
      return ChangeError::None;
    case K::ReplaceBody:
    case K::Discard:
      return ChangeError::None;
  }
  return ChangeError::None;
}

std::string_view change_error_text(ChangeError e) {
  switch (e) {
    case ChangeError::None: return "ok";
    case ChangeError::HeaderName: return "not a header field name";
    case ChangeError::HeaderValue: return "line end in header value must be CRLF followed by whitespace";
    case ChangeError::Address: return "not an address";
    case ChangeError::Arguments: return "ESMTP arguments must be printable ASCII";
    case ChangeError::Text: return "line end or NUL in the text";
  }
  return "?";
}

}  // namespace mailhook
