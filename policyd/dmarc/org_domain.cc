// libpsl behind one function. psl_latest() prefers the newest of the
// system list (/usr/share/publicsuffix) and libpsl's built-in data; the
// context is created once and only read afterwards, which libpsl allows
// from several threads at once.
#include "policyd/dmarc/org_domain.h"

#include <libpsl.h>

namespace mailhook::policyd::dmarc {
namespace {

const psl_ctx_t* suffix_list() {
  // Never freed: one immutable table for the life of the process.
  static const psl_ctx_t* const list = [] {
    const psl_ctx_t* l = psl_latest(nullptr);
    return l != nullptr ? l : psl_builtin();
  }();
  return list;
}

}  // namespace

std::string normalize_domain(std::string_view domain) {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  std::string out(domain);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string org_domain(std::string_view domain) {
  const std::string d = normalize_domain(domain);
  const psl_ctx_t* list = suffix_list();
  if (d.empty() || list == nullptr) return d;
  // NULL when `d` is a public suffix itself (or empty): then it is its own.
  const char* registrable = psl_registrable_domain(list, d.c_str());
  return registrable != nullptr ? std::string(registrable) : d;
}

}  // namespace mailhook::policyd::dmarc
