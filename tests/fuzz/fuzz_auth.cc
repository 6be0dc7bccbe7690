// libFuzzer target: AUTH PLAIN and LOGIN decoding (mailcore/smtp/sasl.cc,
// pure). Whatever the bytes, a decoded user name or password holds no
// NUL, CR or LF (issue 19 finding 7: a user name with LF forged log
// lines), and a PLAIN response re-encodes to what was decoded.
#include <cstddef>
#include <cstdint>
#include <string>

#include "mailcore/smtp/base64.h"
#include "mailcore/smtp/sasl.h"

namespace {
bool one_line(const std::string& s, bool nul_ok) {
  return s.find_first_of("\r\n") == std::string::npos && (nul_ok || s.find('\0') == std::string::npos);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mailhook::smtp;
  const std::string in(reinterpret_cast<const char*>(data), size);
  for (const std::string& response : {in, base64_encode(in)}) {
    const PlainCredentials p = decode_plain(response);
    if (p.error == SaslError::None) {
      if (!one_line(p.authzid, false) || !one_line(p.authcid, false) || !one_line(p.password, false)) __builtin_trap();
      const std::string again = p.authzid + '\0' + p.authcid + '\0' + p.password;
      if (response != "=" && base64_decode(response) != again) __builtin_trap();
    } else if (!p.authcid.empty() || !p.password.empty()) {
      __builtin_trap();
    }
    const LoginField l = decode_login_field(response);
    if (l.error == SaslError::None && !one_line(l.value, false)) __builtin_trap();
    if (l.error != SaslError::None && !l.value.empty()) __builtin_trap();
  }
  return 0;
}
