// libFuzzer target: DKIM's parsers of hostile bytes (policyd/dkim): the
// message split and both canonicalizations, every DKIM-Signature field in
// it, the key record parser (the input's last line doubles as a TXT
// record), header selection and the b= blanking. None may read past the
// buffer (ASan) or trip UB, and their outputs must hold their invariants.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "policyd/dkim/canon.h"
#include "policyd/dkim/signature.h"
#include "policyd/dkim/tag_list.h"
#include "policyd/dkim/verifier.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mailhook::policyd::dkim;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string message = with_crlf(in);
  const SplitMessage m = split_message(message);
  for (const Canon c : {Canon::Simple, Canon::Relaxed}) {
    const std::string body = canonical_body(m.body, c);
    // A canonical body is empty (relaxed) or ends in exactly one CRLF line end.
    if (!body.empty() && body.compare(body.size() - 2, 2, "\r\n") != 0) __builtin_trap();
    if (body.size() >= 4 && body.compare(body.size() - 4, 4, "\r\n\r\n") == 0) __builtin_trap();
    for (const HeaderField& f : m.fields) {
      const std::string h = canonical_header(f, c);
      if (h.size() < 2 || h.compare(h.size() - 2, 2, "\r\n") != 0) __builtin_trap();
    }
  }
  std::string error;
  const std::size_t last_line = in.rfind('\n');
  const std::string_view txt = last_line == std::string_view::npos ? in : in.substr(last_line + 1);
  if (auto tags = parse_tag_list(txt, error)) {
    for (const Tag& t : *tags) {
      if (t.value_begin > t.value_end || t.value_end > txt.size()) __builtin_trap();
    }
  }
  for (const HeaderField& f : m.fields) {
    ParsedSignature p = parse_signature(f.raw);
    if (!p.signature) {
      if (p.error.empty()) __builtin_trap();
      continue;
    }
    const Signature& s = *p.signature;
    if (s.b_begin > s.b_end || s.b_end > f.raw.size()) __builtin_trap();
    const std::string blanked = blank_b(f.raw, s);
    (void)header_hash_input(m, s.headers, blanked, s.header_canon);
    bool too_short = false;
    (void)canonical_body_for(m.body, s.body_canon, s.length, too_short);
    (void)parse_key_record(txt, s);
  }
  return 0;
}
