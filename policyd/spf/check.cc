// check_host() (RFC 7208 4-6): see check.h. Inside run(), two private
// exceptions carry control flow and never leave it: NeedAnswers stops
// the replay at a question not answered yet; Stop ends the check with
// temperror/permerror from any depth of include/redirect (RFC 7208 5.2:
// both propagate unchanged through include).
#include "policyd/spf/check.h"

#include <algorithm>

namespace mailhook::policyd::spf {
namespace {

struct NeedAnswers {};
struct Stop {
  Result result;
  std::string problem;
};

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// A name that can be asked for: 1-63 octet labels of visible ASCII,
// at most 253 octets (RFC 1035 2.3.4; RFC 7208 4.3).
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (c < 0x21 || c > 0x7e || ++label > 63) {
      return false;
    }
  }
  return label > 0;
}

Result result_of(char qualifier) {
  switch (qualifier) {
    case '-': return Result::Fail;
    case '~': return Result::SoftFail;
    case '?': return Result::Neutral;
    default: return Result::Pass;
  }
}

// `name` is `domain` or a name under it (RFC 7208 5.5).
bool within(std::string_view name, std::string_view domain) {
  return name == domain ||
         (name.size() > domain.size() && name.ends_with(domain) && name[name.size() - domain.size() - 1] == '.');
}

}  // namespace

std::string_view result_name(Result r) {
  switch (r) {
    case Result::None: return "none";
    case Result::Neutral: return "neutral";
    case Result::Pass: return "pass";
    case Result::Fail: return "fail";
    case Result::SoftFail: return "softfail";
    case Result::TempError: return "temperror";
    case Result::PermError: return "permerror";
  }
  return "permerror";
}

std::string normal_name(std::string_view name) {
  std::string out(name);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

// One replay of the evaluation over the answers known so far.
struct Check::Evaluation {
  Check& c;
  unsigned lookups = 0;  // DNS-querying terms so far (4.6.4)
  unsigned voids = 0;    // void lookups so far (4.6.4)
  std::string sender, local_part, sender_domain;

  struct Found {
    Result result = Result::Neutral;
    std::optional<std::string> mechanism;
    std::optional<std::string> explanation;
    std::string domain;
  };

  const DnsAnswer& need(const Question& q) {
    auto it = c.answers_.find(q);
    if (it != c.answers_.end()) return it->second;
    c.missing_.push_back(q);
    throw NeedAnswers{};
  }
  // Asks for every missing answer of `qs` at once (the MX and PTR fan-out).
  void need_all(const std::vector<Question>& qs) {
    for (const Question& q : qs) {
      if (!c.answers_.contains(q) && std::find(c.missing_.begin(), c.missing_.end(), q) == c.missing_.end()) {
        c.missing_.push_back(q);
      }
    }
    if (!c.missing_.empty()) throw NeedAnswers{};
  }

  void count_lookup(const std::string& what) {
    if (++lookups > c.limits_.dns_lookups) {
      throw Stop{Result::PermError, "more than " + std::to_string(c.limits_.dns_lookups) +
                                        " DNS-querying terms (RFC 7208 4.6.4), at " + what};
    }
  }
  void count_void(const std::string& name) {
    if (++voids > c.limits_.void_lookups) {
      throw Stop{Result::PermError, "more than " + std::to_string(c.limits_.void_lookups) +
                                        " void lookups (RFC 7208 4.6.4), at " + name};
    }
  }

  RrType address_type() const { return c.ip_->v4 ? RrType::A : RrType::Aaaa; }

  MacroFacts facts(const std::string& domain) {
    MacroFacts f;
    f.sender = sender;
    f.local_part = local_part;
    f.sender_domain = sender_domain;
    f.domain = domain;
    f.helo = c.request_.helo;
    f.receiver = c.request_.receiver;
    f.ip = &*c.ip_;
    f.now = c.request_.now;
    f.validated_name = [this, domain] { return validated_name(domain); };
    return f;
  }

  // RFC 7208 7.3: a name longer than 253 octets loses labels on the left.
  static std::string truncated(std::string name) {
    while (name.size() > 253 && name.find('.') != std::string::npos) name.erase(0, name.find('.') + 1);
    return name;
  }

  std::string target(const MacroString& spec, const std::string& domain) {
    const std::string name = normal_name(truncated(expand(spec, facts(domain))));
    if (!valid_name(name)) throw Stop{Result::PermError, "a domain-spec expands to an invalid name: " + name};
    return name;
  }

  std::string reverse_name() const {
    MacroFacts f;
    f.ip = &*c.ip_;
    std::string i = letter_value('i', f), out;
    while (!i.empty()) {
      const std::size_t dot = i.rfind('.');
      out += i.substr(dot == std::string::npos ? 0 : dot + 1);
      out += '.';
      i.erase(dot == std::string::npos ? 0 : dot);
    }
    return out + (c.ip_->v4 ? "in-addr.arpa" : "ip6.arpa");
  }

  // The names of the client's PTR records that resolve back to it, in
  // answer order, of the first `ptr_names` (RFC 7208 5.5); a DNS error
  // skips a name. nullopt: the PTR lookup itself failed.
  std::optional<std::vector<std::string>> validated_names(bool count_voids) {
    const std::string reverse = reverse_name();
    const DnsAnswer& ptr = need({reverse, RrType::Ptr});
    if (ptr.status == DnsAnswer::Status::Failure) return std::nullopt;
    if (ptr.values.empty()) {
      if (count_voids) count_void(reverse);
      return std::vector<std::string>{};
    }
    std::vector<Question> qs;
    for (const std::string& v : ptr.values) {
      const std::string name = normal_name(v);
      if (qs.size() >= c.limits_.ptr_names) break;
      if (valid_name(name)) qs.push_back({name, address_type()});
    }
    need_all(qs);
    std::vector<std::string> out;
    for (const Question& q : qs) {
      const DnsAnswer& a = c.answers_.at(q);
      if (a.status != DnsAnswer::Status::Records) continue;
      for (const std::string& v : a.values) {
        std::optional<net::Address> addr = net::parse_address(v);
        if (addr && *addr == *c.ip_) {
          out.push_back(q.name);
          break;
        }
      }
    }
    return out;
  }

  // %{p} (RFC 7208 7.3): <domain> itself if validated, else a name under
  // it, else any validated name, else "unknown".
  std::string validated_name(const std::string& domain) {
    std::optional<std::vector<std::string>> names = validated_names(false);
    if (!names || names->empty()) return "unknown";
    const std::string d = normal_name(domain);
    for (const std::string& n : *names) {
      if (n == d) return n;
    }
    for (const std::string& n : *names) {
      if (within(n, d)) return n;
    }
    return names->front();
  }

  // The A/AAAA answer of `name` holds an address in the client's network.
  bool in_network(const DnsAnswer& a, unsigned bits) const {
    for (const std::string& v : a.values) {
      std::optional<net::Address> addr = net::parse_address(v);
      if (addr && net::same_prefix(*addr, *c.ip_, bits)) return true;
    }
    return false;
  }

  // A lookup of a term: temperror on a DNS failure, a void lookup counted.
  const DnsAnswer* term_lookup(const std::string& name, RrType type) {
    const DnsAnswer& a = need({name, type});
    if (a.status == DnsAnswer::Status::Failure) {
      throw Stop{Result::TempError, "DNS failure for " + name};
    }
    if (a.values.empty()) {
      count_void(name);
      return nullptr;
    }
    return &a;
  }

  bool matches(const Term& t, const std::string& domain) {
    const unsigned bits = c.ip_->v4 ? t.cidr4 : t.cidr6;
    switch (t.mechanism) {
      case Mechanism::All: return true;
      case Mechanism::Ip4:
      case Mechanism::Ip6: return t.network->contains(*c.ip_);
      case Mechanism::Include: {
        // RFC 7208 5.2: pass matches; fail, softfail, neutral do not;
        // temperror and permerror propagate; none is a permerror.
        const std::string name = target(*t.domain, domain);
        const Found inner = check_host(name);
        if (inner.result == Result::None) throw Stop{Result::PermError, "include of " + name + ", which has no SPF record"};
        return inner.result == Result::Pass;
      }
      case Mechanism::A: {
        const std::string name = t.domain ? target(*t.domain, domain) : normal_name(domain);
        const DnsAnswer* a = term_lookup(name, address_type());
        return a && in_network(*a, bits);
      }
      case Mechanism::Mx: {
        const std::string name = t.domain ? target(*t.domain, domain) : normal_name(domain);
        const DnsAnswer* mx = term_lookup(name, RrType::Mx);
        if (!mx) return false;
        std::vector<Question> qs;
        for (const std::string& v : mx->values) {
          const std::string host = normal_name(v);
          if (host.empty()) continue;  // RFC 7505 null MX
          if (!valid_name(host)) continue;
          qs.push_back({host, address_type()});
        }
        if (mx->values.size() > c.limits_.mx_names) {
          throw Stop{Result::PermError, "more than " + std::to_string(c.limits_.mx_names) + " MX names at " + name +
                                            " (RFC 7208 4.6.4)"};
        }
        need_all(qs);
        for (const Question& q : qs) {
          const DnsAnswer& a = c.answers_.at(q);
          if (a.status == DnsAnswer::Status::Failure) throw Stop{Result::TempError, "DNS failure for " + q.name};
          if (in_network(a, bits)) return true;
        }
        return false;
      }
      case Mechanism::Ptr: {
        const std::string name = t.domain ? target(*t.domain, domain) : normal_name(domain);
        std::optional<std::vector<std::string>> names = validated_names(true);
        if (!names) return false;  // RFC 7208 5.5: a DNS error is no match
        return std::any_of(names->begin(), names->end(), [&](const std::string& n) { return within(n, name); });
      }
      case Mechanism::Exists: {
        // RFC 7208 5.7: always an A query, whatever the client's family.
        return term_lookup(target(*t.domain, domain), RrType::A) != nullptr;
      }
    }
    return false;
  }

  // RFC 7208 6.2: any trouble means no explanation, never another result.
  std::optional<std::string> explanation(const Record& r, const std::string& domain) {
    if (!r.exp) return std::nullopt;
    const std::string name = normal_name(truncated(expand(*r.exp, facts(domain))));
    if (!valid_name(name)) return std::nullopt;
    const DnsAnswer& a = need({name, RrType::Txt});
    if (a.status != DnsAnswer::Status::Records || a.values.size() != 1) return std::nullopt;
    std::string error;
    std::optional<MacroString> m = tokenize(a.values.front(), true, error);
    if (!m) return std::nullopt;
    std::string text = expand(*m, facts(domain));
    if (text.size() > c.limits_.explanation_bytes) text.resize(c.limits_.explanation_bytes);
    return text;
  }

  std::shared_ptr<const std::optional<Record>> parsed(const std::string& text) {
    auto it = c.records_.find(text);
    if (it != c.records_.end()) return it->second;
    std::string error;
    auto r = std::make_shared<const std::optional<Record>>(parse_record(text, error));
    if (!*r) c.record_errors_[text] = error;
    c.records_.emplace(text, r);
    return r;
  }

  // RFC 7208 4: check_host(<ip>, <domain>, <sender>).
  Found check_host(const std::string& domain) {
    Found f;
    f.domain = domain;
    const std::string name = normal_name(domain);
    // 4.3: a malformed or single-label domain is "none".
    if (!valid_name(name) || name.find('.') == std::string::npos) {
      f.result = Result::None;
      return f;
    }
    // 4.4, 4.5: the TXT records starting "v=spf1".
    const DnsAnswer& txt = need({name, RrType::Txt});
    if (txt.status == DnsAnswer::Status::Failure) throw Stop{Result::TempError, "DNS failure for the TXT of " + name};
    std::vector<const std::string*> spf;
    for (const std::string& v : txt.values) {
      if (is_spf_record(v)) spf.push_back(&v);
    }
    if (spf.empty()) {
      f.result = Result::None;
      return f;
    }
    if (spf.size() > 1) throw Stop{Result::PermError, "more than one SPF record at " + name};
    const std::shared_ptr<const std::optional<Record>> record = parsed(*spf.front());
    if (!*record) throw Stop{Result::PermError, "SPF record of " + name + ": " + c.record_errors_[*spf.front()]};
    const Record& r = **record;
    // 4.6.2: the first matching mechanism decides.
    for (const Term& t : r.terms) {
      if (t.needs_dns()) count_lookup(t.text);
      if (!matches(t, domain)) continue;
      f.result = result_of(t.qualifier);
      f.mechanism = t.text;
      if (f.result == Result::Fail) f.explanation = explanation(r, domain);
      return f;
    }
    // 6.1: redirect= when nothing matched and there is no "all".
    if (r.redirect && !r.has_all) {
      count_lookup("redirect=");
      const std::string next = target(*r.redirect, domain);
      Found redirected = check_host(next);
      if (redirected.result == Result::None) {
        throw Stop{Result::PermError, "redirect= to " + next + ", which has no SPF record"};
      }
      return redirected;  // with the target's exp=, never this record's
    }
    f.result = Result::Neutral;  // 4.7
    return f;
  }

  Found top() {
    const std::string& s = c.request_.sender;
    const std::size_t at = s.rfind('@');
    // 4.3: no local-part means "postmaster"; 2.4: an empty MAIL FROM is
    // checked as postmaster@<HELO name>.
    if (s.empty()) {
      sender_domain = c.request_.helo;
    } else {
      local_part = at == std::string::npos ? "" : s.substr(0, at);
      sender_domain = at == std::string::npos ? s : s.substr(at + 1);
    }
    if (local_part.empty()) local_part = "postmaster";
    sender = local_part + "@" + sender_domain;
    return check_host(sender_domain);
  }
};

Check::Check(Request request, Limits limits)
    : request_(std::move(request)), limits_(limits), ip_(net::parse_address(request_.ip)) {}

Check::~Check() = default;

void Check::answer(const Question& q, DnsAnswer a) {
  std::erase(missing_, q);
  answers_.insert_or_assign(q, std::move(a));
}

bool Check::run() {
  if (done_) return true;
  missing_.clear();
  if (!ip_) {
    outcome_.result = Result::None;
    outcome_.problem = "not an IP address";
    done_ = true;
    return true;
  }
  Evaluation e{*this};
  try {
    Evaluation::Found f = e.top();
    outcome_.result = f.result;
    outcome_.mechanism = std::move(f.mechanism);
    outcome_.explanation = std::move(f.explanation);
    outcome_.domain = std::move(f.domain);
    if (f.result == Result::None) outcome_.problem = "no SPF record";
  } catch (const NeedAnswers&) {
    return false;
  } catch (const Stop& stop) {
    outcome_.result = stop.result;
    outcome_.problem = stop.problem;
  }
  done_ = true;
  return true;
}

}  // namespace mailhook::policyd::spf
