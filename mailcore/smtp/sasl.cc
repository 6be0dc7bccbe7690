// AUTH PLAIN and LOGIN decoding (RFC 4616 2, RFC 4954 4). A client's user
// name reaches hook.auth, client.auth_user and the log: it must be one
// line, so the RFC's SAFE rule (no NUL, CR, LF) is enforced here.
#include "mailcore/smtp/sasl.h"

#include <optional>

#include "mailcore/smtp/base64.h"

namespace mailhook::smtp {
namespace {

bool has_line_break(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

}  // namespace

PlainCredentials decode_plain(std::string_view response) {
  PlainCredentials out;
  std::optional<std::string> decoded = response == "=" ? std::optional<std::string>(std::string()) : base64_decode(response);
  if (!decoded) {
    out.error = SaslError::BadBase64;
    return out;
  }
  // RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
  const std::size_t a = decoded->find('\0');
  const std::size_t b = a == std::string::npos ? a : decoded->find('\0', a + 1);
  if (b == std::string::npos || decoded->find('\0', b + 1) != std::string::npos) {
    out.error = SaslError::Malformed;
    return out;
  }
  out.authzid = decoded->substr(0, a);
  out.authcid = decoded->substr(a + 1, b - a - 1);
  out.password = decoded->substr(b + 1);
  if (has_line_break(out.authzid) || has_line_break(out.authcid) || has_line_break(out.password)) {
    out = PlainCredentials{};
    out.error = SaslError::ControlChar;
  }
  return out;
}

LoginField decode_login_field(std::string_view response) {
  LoginField out;
  std::optional<std::string> decoded = base64_decode(response);
  if (!decoded) {
    out.error = SaslError::BadBase64;
    return out;
  }
  if (decoded->find('\0') != std::string::npos) {
    out.error = SaslError::Malformed;
    return out;
  }
  if (has_line_break(*decoded)) {
    out.error = SaslError::ControlChar;
    return out;
  }
  out.value = std::move(*decoded);
  return out;
}

}  // namespace mailhook::smtp
