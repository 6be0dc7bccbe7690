// SASL responses of AUTH PLAIN (RFC 4616) and LOGIN (the draft every MTA
// speaks): base64 text from the client in, credentials out. Pure: no I/O,
// no log; the fuzz target fuzz_auth runs over these.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mailhook::smtp {

enum class SaslError : std::uint8_t {
  None,
  BadBase64,    // not base64 (RFC 4954 4: 501)
  Malformed,    // PLAIN without its two NULs, or a NUL in the password
  ControlChar,  // CR or LF inside a field: RFC 4616 2 SAFE excludes them
};

struct PlainCredentials {
  std::string authzid;
  std::string authcid;  // the user
  std::string password;
  SaslError error = SaslError::None;
};

// AUTH PLAIN's response: base64 of [authzid] NUL authcid NUL passwd;
// "=" is the empty response (RFC 4954 4).
PlainCredentials decode_plain(std::string_view response);

struct LoginField {
  std::string value;
  SaslError error = SaslError::None;
};

// One AUTH LOGIN answer (user name or password): base64 of the field,
// which may hold no NUL, CR or LF.
LoginField decode_login_field(std::string_view response);

}  // namespace mailhook::smtp
