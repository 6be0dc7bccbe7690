// policyd/spf: RFC 7208 check_host() over zone data held in memory,
// section by section: record selection (4.4, 4.5), syntax (4.6, 12),
// every mechanism (5.1-5.7), dual-cidr-length (5.6), modifiers (6.1, 6.2),
// macros (7), limits (4.6.4), DNS errors (2.6.6, 2.6.7), HELO (2.3, 2.4),
// IPv6 and IPv4-mapped addresses (5). The checks run through the same
// questions-out/answers-in loop as the Lua glue, answering from the zone.
#include "policyd/spf/check.h"

#include <gtest/gtest.h>

#include <set>

namespace mailhook::policyd::spf {
namespace {

using T = RrType;

class Zone {
 public:
  Zone& add(const std::string& name, RrType type, const std::string& value) {
    data_[{name, type}].push_back(value);
    names_.insert(name);
    return *this;
  }
  Zone& fail(const std::string& name) {
    failing_.insert(name);
    return *this;
  }
  DnsAnswer answer(const Question& q) const {
    DnsAnswer a;
    if (failing_.contains(q.name)) return a;
    if (!names_.contains(q.name)) {
      a.status = DnsAnswer::Status::NxDomain;
      return a;
    }
    a.status = DnsAnswer::Status::Records;
    if (auto it = data_.find(q); it != data_.end()) a.values = it->second;
    return a;
  }

 private:
  std::map<Question, std::vector<std::string>> data_;
  std::set<std::string> names_;
  std::set<std::string> failing_;
};

struct Evaluated {
  Outcome outcome;
  std::vector<Question> asked;
  int rounds = 0;
};

Evaluated evaluate(const Zone& z, const std::string& ip, const std::string& sender, const std::string& helo = "mx.client.example",
             Limits limits = {}) {
  Request r;
  r.ip = ip;
  r.sender = sender;
  r.helo = helo;
  r.receiver = "mx.receiver.example";
  r.now = 1700000000;
  Check c(r, limits);
  Evaluated run;
  while (!c.run()) {
    if (++run.rounds > 1000) ADD_FAILURE() << "no end";
    if (run.rounds > 1000) break;
    const std::vector<Question> qs = c.questions();
    EXPECT_FALSE(qs.empty());
    for (const Question& q : qs) {
      run.asked.push_back(q);
      c.answer(q, z.answer(q));
    }
  }
  run.outcome = c.outcome();
  return run;
}

// The zone every table row runs against.
Zone zone() {
  Zone z;
  // 5.1 all and the qualifiers (4.6.2)
  z.add("fail.example", T::Txt, "v=spf1 -all");
  z.add("pass.example", T::Txt, "v=spf1 +all");
  z.add("default.example", T::Txt, "v=spf1 all");
  z.add("neutral.example", T::Txt, "v=spf1 ?all");
  z.add("soft.example", T::Txt, "v=spf1 ~all");
  z.add("nomatch.example", T::Txt, "v=spf1 ip4:192.0.2.99");
  // 4.4, 4.5 record selection
  z.add("none.example", T::Txt, "some verification=123");
  z.add("none.example", T::A, "192.0.2.1");
  z.add("multi.example", T::Txt, "v=spf1 -all").add("multi.example", T::Txt, "v=spf1 +all");
  z.add("mixed.example", T::Txt, "google-site-verification=x").add("mixed.example", T::Txt, "v=spf1 +all");
  z.add("upper.example", T::Txt, "V=SPF1 +ALL");
  z.add("spf10.example", T::Txt, "v=spf10 +all");
  z.add("spaces.example", T::Txt, "v=spf1   ip4:192.0.2.1    -all   ");
  z.fail("servfail.example");
  // 5.6 ip4, ip6
  z.add("ip4.example", T::Txt, "v=spf1 ip4:192.0.2.0/24 -all");
  z.add("ip6.example", T::Txt, "v=spf1 ip6:2001:db8::/32 -all");
  z.add("ip4host.example", T::Txt, "v=spf1 ip4:192.0.2.10 ~all");
  // 5.3 a
  z.add("a.example", T::Txt, "v=spf1 a -all").add("a.example", T::A, "192.0.2.20").add("a.example", T::Aaaa, "2001:db8::20");
  z.add("acidr.example", T::Txt, "v=spf1 a/24//64 -all")
      .add("acidr.example", T::A, "192.0.2.20")
      .add("acidr.example", T::Aaaa, "2001:db8:5::20");
  z.add("a6cidr.example", T::Txt, "v=spf1 a//126 -all").add("a6cidr.example", T::Aaaa, "2001:db8::20");
  z.add("atarget.example", T::Txt, "v=spf1 a:host.other.example -all").add("host.other.example", T::A, "198.51.100.5");
  z.add("afail.example", T::Txt, "v=spf1 a:servfail.example -all");
  // 5.4 mx
  z.add("mx.example", T::Txt, "v=spf1 mx -all")
      .add("mx.example", T::Mx, "mail1.mx.example")
      .add("mx.example", T::Mx, "mail2.mx.example")
      .add("mail1.mx.example", T::A, "192.0.2.30")
      .add("mail2.mx.example", T::Aaaa, "2001:db8::30");
  z.add("mxcidr.example", T::Txt, "v=spf1 mx:mx.example/30 -all");
  z.add("nullmx.example", T::Txt, "v=spf1 mx -all").add("nullmx.example", T::Mx, ".");
  z.add("mxfail.example", T::Txt, "v=spf1 mx -all").add("mxfail.example", T::Mx, "servfail.example");
  for (int n : {10, 11}) {
    const std::string d = "mx" + std::to_string(n) + ".example";
    z.add(d, T::Txt, "v=spf1 mx -all");
    for (int i = 1; i <= n; ++i) {
      z.add(d, T::Mx, "m" + std::to_string(i) + "." + d).add("m" + std::to_string(i) + "." + d, T::A, "198.51.100." + std::to_string(i));
    }
  }
  // 5.5 ptr; 7.3 %{p}
  z.add("ptr.example", T::Txt, "v=spf1 ptr -all");
  z.add("ptrtarget.example", T::Txt, "v=spf1 ptr:ptr.example -all");
  z.add("40.2.0.192.in-addr.arpa", T::Ptr, "host.ptr.example").add("host.ptr.example", T::A, "192.0.2.40");
  z.add("41.2.0.192.in-addr.arpa", T::Ptr, "host.ptr.example");  // forged: does not resolve back
  z.add("0.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", T::Ptr, "host6.ptr.example")
      .add("host6.ptr.example", T::Aaaa, "2001:db8::40");
  z.fail("42.2.0.192.in-addr.arpa");
  z.add("ptr11.example", T::Txt, "v=spf1 ptr:good.example -all");
  for (int i = 1; i <= 11; ++i) {
    const std::string name = (i == 11 ? "h11.good.example" : "h" + std::to_string(i) + ".other.example");
    z.add("43.2.0.192.in-addr.arpa", T::Ptr, name).add(name, T::A, "192.0.2.43");
    const std::string name10 = (i == 10 ? "h10.good.example" : "h" + std::to_string(i) + ".other.example");
    z.add("44.2.0.192.in-addr.arpa", T::Ptr, name10).add(name10, T::A, "192.0.2.44");
  }
  z.add("pmacro.example", T::Txt, "v=spf1 exists:%{p}._p.pmacro.example -all")
      .add("host.ptr.example._p.pmacro.example", T::A, "127.0.0.2");
  // 5.7 exists, 7 macros in domain-specs
  z.add("exists.example", T::Txt, "v=spf1 exists:%{ir}.%{v}._spf.%{d} -all")
      .add("50.2.0.192.in-addr._spf.exists.example", T::A, "127.0.0.2")
      .add("0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.exists.example", T::A, "127.0.0.2");
  z.add("existsfail.example", T::Txt, "v=spf1 exists:servfail.example -all");
  z.add("local.example", T::Txt, "v=spf1 exists:%{l1r-}.%{o}.lp.local.example -all")
      .add("strong.local.example.lp.local.example", T::A, "127.0.0.2");
  z.add("helo-macro.example", T::Txt, "v=spf1 exists:%{h}.h.helo-macro.example -all")
      .add("mx.client.example.h.helo-macro.example", T::A, "127.0.0.2");
  z.add("urlesc.example", T::Txt, "v=spf1 exists:%{S}.u.urlesc.example -all")
      .add("a%2bb%40urlesc.example.u.urlesc.example", T::A, "127.0.0.2");
  const std::string l60(60, 'x');
  z.add("trunc.example", T::Txt, "v=spf1 exists:%{l}.%{l}.%{l}.%{l}.t.trunc.example -all")
      .add(l60 + "." + l60 + "." + l60 + ".t.trunc.example", T::A, "127.0.0.2");
  // 5.2 include
  z.add("include.example", T::Txt, "v=spf1 include:inc-target.example -all")
      .add("inc-target.example", T::Txt, "v=spf1 ip4:192.0.2.60 -all");
  z.add("incsoft.example", T::Txt, "v=spf1 include:soft.example ?all");
  z.add("incnone.example", T::Txt, "v=spf1 include:none.example -all");
  z.add("incnx.example", T::Txt, "v=spf1 include:nowhere.example -all");
  z.add("inctemp.example", T::Txt, "v=spf1 include:servfail.example -all");
  z.add("incperm.example", T::Txt, "v=spf1 include:syntax.example -all");
  z.add("syntax.example", T::Txt, "v=spf1 ip4:192.0.2.300 -all");
  z.add("latesyntax.example", T::Txt, "v=spf1 +all foo:bar");
  z.add("unknownmod.example", T::Txt, "v=spf1 foo=bar%{d} -all");
  // 6.1 redirect
  z.add("redirect.example", T::Txt, "v=spf1 redirect=redir-target.example");
  z.add("redir-target.example", T::Txt, "v=spf1 ip4:192.0.2.70 -all exp=why.redir-target.example")
      .add("why.redir-target.example", T::Txt, "target says no to %{i}");
  z.add("redirall.example", T::Txt, "v=spf1 ?all redirect=redir-target.example");
  z.add("redirnone.example", T::Txt, "v=spf1 redirect=none.example");
  z.add("redirfirst.example", T::Txt, "v=spf1 redirect=redir-target.example ip4:192.0.2.72");
  z.add("expredir.example", T::Txt, "v=spf1 redirect=redir-target.example exp=why.exp.example");
  // 6.2 exp
  z.add("exp.example", T::Txt, "v=spf1 ip4:192.0.2.81 -all exp=why.exp.example")
      .add("why.exp.example", T::Txt,
           "%{i} is not one of %{d}'s designated mail servers; %{c} %{v} %{r} %{t} %{h} %{s} %{l} %{o} %%%_%-");
  z.add("exppass.example", T::Txt, "v=spf1 +all exp=why.exp.example");
  z.add("expbad.example", T::Txt, "v=spf1 -all exp=bad.exp.example").add("bad.exp.example", T::Txt, "broken %{z}");
  z.add("exptwo.example", T::Txt, "v=spf1 -all exp=two.exp.example")
      .add("two.exp.example", T::Txt, "one")
      .add("two.exp.example", T::Txt, "two");
  z.add("expnx.example", T::Txt, "v=spf1 -all exp=nowhere.exp.example");
  z.add("expfail.example", T::Txt, "v=spf1 -all exp=servfail.example");
  z.add("expinc.example", T::Txt, "v=spf1 include:expinner.example -all")
      .add("expinner.example", T::Txt, "v=spf1 ip4:192.0.2.82 ?all exp=why.exp.example");
  z.add("expmacro.example", T::Txt, "v=spf1 -all exp=%{l}.e.expmacro.example")
      .add("user.e.expmacro.example", T::Txt, "no %{L} here");
  // 4.6.4 limits
  auto chain = [&](const std::string& d, int n, const std::string& sub) {
    std::string rec = "v=spf1";
    for (int i = 1; i <= n; ++i) {
      const std::string h = "h" + std::to_string(i) + "." + d;
      rec += " a:" + h;
      if (sub == "a") z.add(h, T::A, "198.51.100." + std::to_string(i));
    }
    z.add(d, T::Txt, rec + " -all");
  };
  chain("ten.example", 10, "a");
  chain("eleven.example", 11, "a");
  chain("twovoid.example", 2, "");
  chain("threevoid.example", 3, "");
  z.add("loop.example", T::Txt, "v=spf1 include:loop.example -all");
  z.add("rloop.example", T::Txt, "v=spf1 redirect=rloop.example");
  z.add("ping.example", T::Txt, "v=spf1 include:pong.example -all").add("pong.example", T::Txt, "v=spf1 include:ping.example -all");
  // 2.3, 2.4 HELO identity
  z.add("helo.example", T::Txt, "v=spf1 ip4:192.0.2.90 exists:%{l}.%{o}.hl.helo.example -all")
      .add("postmaster.helo.example.hl.helo.example", T::A, "127.0.0.2");
  return z;
}

struct Row {
  const char* name;
  const char* ip;
  const char* sender;
  const char* result;
  const char* mechanism;  // nullptr: none matched
};

const Row kRows[] = {
    {"5.1 -all fails", "192.0.2.1", "u@fail.example", "fail", "-all"},
    {"5.1 +all passes", "192.0.2.1", "u@pass.example", "pass", "+all"},
    {"4.6.2 no qualifier is +", "192.0.2.1", "u@default.example", "pass", "all"},
    {"4.6.2 ? is neutral", "192.0.2.1", "u@neutral.example", "neutral", "?all"},
    {"4.6.2 ~ is softfail", "192.0.2.1", "u@soft.example", "softfail", "~all"},
    {"4.7 nothing matched: neutral", "192.0.2.1", "u@nomatch.example", "neutral", nullptr},
    {"4.5 no SPF record: none", "192.0.2.1", "u@none.example", "none", nullptr},
    {"4.3 NXDOMAIN: none", "192.0.2.1", "u@nowhere.example", "none", nullptr},
    {"4.3 single-label domain: none", "192.0.2.1", "u@localhost", "none", nullptr},
    {"4.3 empty label: none", "192.0.2.1", "u@a..example", "none", nullptr},
    {"4.5 two SPF records: permerror", "192.0.2.1", "u@multi.example", "permerror", nullptr},
    {"4.5 other TXT records are ignored", "192.0.2.1", "u@mixed.example", "pass", "+all"},
    {"4.5 version is case-insensitive", "192.0.2.1", "u@upper.example", "pass", "+ALL"},
    {"4.5 v=spf10 is no SPF record", "192.0.2.1", "u@spf10.example", "none", nullptr},
    {"4.6.1 extra spaces are fine", "192.0.2.1", "u@spaces.example", "pass", "ip4:192.0.2.1"},
    {"4.4 SERVFAIL: temperror", "192.0.2.1", "u@servfail.example", "temperror", nullptr},
    {"4.3 no local-part: postmaster", "192.0.2.90", "@helo.example", "pass", "ip4:192.0.2.90"},
    {"5.6 ip4 in", "192.0.2.10", "u@ip4.example", "pass", "ip4:192.0.2.0/24"},
    {"5.6 ip4 out", "198.51.100.1", "u@ip4.example", "fail", "-all"},
    {"5 IPv4-mapped IPv6 is IPv4", "::ffff:192.0.2.10", "u@ip4.example", "pass", "ip4:192.0.2.0/24"},
    {"5.6 ip4 never matches IPv6", "2001:db8::1", "u@ip4host.example", "softfail", "~all"},
    {"5.6 ip6 in", "2001:db8:1::1", "u@ip6.example", "pass", "ip6:2001:db8::/32"},
    {"5.6 ip6 out", "2001:db9::1", "u@ip6.example", "fail", "-all"},
    {"5.6 ip6 never matches IPv4", "192.0.2.1", "u@ip6.example", "fail", "-all"},
    {"5.3 a: A record", "192.0.2.20", "u@a.example", "pass", "a"},
    {"5.3 a: AAAA record", "2001:db8::20", "u@a.example", "pass", "a"},
    {"5.3 a: no match", "192.0.2.21", "u@a.example", "fail", "-all"},
    {"5.6 dual-cidr IPv4 part", "192.0.2.99", "u@acidr.example", "pass", "a/24//64"},
    {"5.6 dual-cidr IPv6 part", "2001:db8:5::99", "u@acidr.example", "pass", "a/24//64"},
    {"5.6 dual-cidr IPv6 outside", "2001:db8:6::1", "u@acidr.example", "fail", "-all"},
    {"5.6 //126 alone", "2001:db8::23", "u@a6cidr.example", "pass", "a//126"},
    {"5.6 //126 alone, outside", "2001:db8::24", "u@a6cidr.example", "fail", "-all"},
    {"5.3 a:domain", "198.51.100.5", "u@atarget.example", "pass", "a:host.other.example"},
    {"5 a lookup SERVFAIL: temperror", "192.0.2.1", "u@afail.example", "temperror", nullptr},
    {"5.4 mx A", "192.0.2.30", "u@mx.example", "pass", "mx"},
    {"5.4 mx AAAA", "2001:db8::30", "u@mx.example", "pass", "mx"},
    {"5.4 mx no match", "192.0.2.31", "u@mx.example", "fail", "-all"},
    {"5.4 mx:domain/30", "192.0.2.29", "u@mxcidr.example", "pass", "mx:mx.example/30"},
    {"RFC 7505 null MX matches nothing", "192.0.2.1", "u@nullmx.example", "fail", "-all"},
    {"5.4 MX target SERVFAIL: temperror", "192.0.2.1", "u@mxfail.example", "temperror", nullptr},
    {"4.6.4 10 MX names are fine", "198.51.100.10", "u@mx10.example", "pass", "mx"},
    {"4.6.4 11 MX names: permerror", "198.51.100.1", "u@mx11.example", "permerror", nullptr},
    {"5.5 ptr validated", "192.0.2.40", "u@ptr.example", "pass", "ptr"},
    {"5.5 ptr:domain validated", "192.0.2.40", "u@ptrtarget.example", "pass", "ptr:ptr.example"},
    {"5.5 ptr IPv6", "2001:db8::40", "u@ptr.example", "pass", "ptr"},
    {"5.5 ptr forged (no A back)", "192.0.2.41", "u@ptr.example", "fail", "-all"},
    {"5.5 ptr lookup SERVFAIL: no match", "192.0.2.42", "u@ptr.example", "fail", "-all"},
    {"4.6.4 ptr: 10th name counts", "192.0.2.44", "u@ptr11.example", "pass", "ptr:good.example"},
    {"4.6.4 ptr: 11th name ignored", "192.0.2.43", "u@ptr11.example", "fail", "-all"},
    {"7.3 %{p} validated name", "192.0.2.40", "u@pmacro.example", "pass", "exists:%{p}._p.pmacro.example"},
    {"7.3 %{p} unknown when not validated", "192.0.2.41", "u@pmacro.example", "fail", "-all"},
    {"5.7 exists with %{ir}.%{v}", "192.0.2.50", "u@exists.example", "pass", "exists:%{ir}.%{v}._spf.%{d}"},
    {"5.7 exists IPv6 nibbles (A query)", "2001:db8::50", "u@exists.example", "pass", "exists:%{ir}.%{v}._spf.%{d}"},
    {"5.7 exists no match", "192.0.2.51", "u@exists.example", "fail", "-all"},
    {"5.7 exists SERVFAIL: temperror", "192.0.2.1", "u@existsfail.example", "temperror", nullptr},
    {"7.3 %{l1r-} and %{o}", "192.0.2.1", "strong-bad@local.example", "pass", "exists:%{l1r-}.%{o}.lp.local.example"},
    {"7.3 %{h}", "192.0.2.1", "u@helo-macro.example", "pass", "exists:%{h}.h.helo-macro.example"},
    {"7.3 upper case letters are URL-escaped", "192.0.2.1", "a+b@urlesc.example", "pass", "exists:%{S}.u.urlesc.example"},
    {"5.2 include pass matches", "192.0.2.60", "u@include.example", "pass", "include:inc-target.example"},
    {"5.2 include fail does not match", "192.0.2.61", "u@include.example", "fail", "-all"},
    {"5.2 include softfail does not match", "192.0.2.61", "u@incsoft.example", "neutral", "?all"},
    {"5.2 include of none: permerror", "192.0.2.1", "u@incnone.example", "permerror", nullptr},
    {"5.2 include of NXDOMAIN: permerror", "192.0.2.1", "u@incnx.example", "permerror", nullptr},
    {"5.2 include temperror propagates", "192.0.2.1", "u@inctemp.example", "temperror", nullptr},
    {"5.2 include permerror propagates", "192.0.2.1", "u@incperm.example", "permerror", nullptr},
    {"4.6 bad ip4 network: permerror", "192.0.2.1", "u@syntax.example", "permerror", nullptr},
    {"4.6 a syntax error after a match: permerror", "192.0.2.1", "u@latesyntax.example", "permerror", nullptr},
    {"6 unknown modifiers are ignored", "192.0.2.1", "u@unknownmod.example", "fail", "-all"},
    {"6.1 redirect", "192.0.2.70", "u@redirect.example", "pass", "ip4:192.0.2.70"},
    {"6.1 redirect ignored with all", "192.0.2.70", "u@redirall.example", "neutral", "?all"},
    {"6.1 redirect to none: permerror", "192.0.2.1", "u@redirnone.example", "permerror", nullptr},
    {"6.1 redirect only after every mechanism", "192.0.2.72", "u@redirfirst.example", "pass", "ip4:192.0.2.72"},
    {"4.6.4 ten DNS terms are fine", "192.0.2.1", "u@ten.example", "fail", "-all"},
    {"4.6.4 eleven DNS terms: permerror", "192.0.2.1", "u@eleven.example", "permerror", nullptr},
    {"4.6.4 two void lookups are fine", "192.0.2.1", "u@twovoid.example", "fail", "-all"},
    {"4.6.4 three void lookups: permerror", "192.0.2.1", "u@threevoid.example", "permerror", nullptr},
    {"include loop ends at the limit", "192.0.2.1", "u@loop.example", "permerror", nullptr},
    {"redirect loop ends at the limit", "192.0.2.1", "u@rloop.example", "permerror", nullptr},
    {"include ping-pong ends at the limit", "192.0.2.1", "u@ping.example", "permerror", nullptr},
    {"7.3 a name past 253 octets loses labels on the left", "192.0.2.1",
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx@trunc.example", "pass",
     "exists:%{l}.%{l}.%{l}.%{l}.t.trunc.example"},
    {"not an address: none", "not-an-ip", "u@pass.example", "none", nullptr},
};

TEST(SpfCheck, EveryRowOfTheRfcTable) {
  const Zone z = zone();
  for (const Row& row : kRows) {
    const Evaluated run = evaluate(z, row.ip, row.sender);
    EXPECT_EQ(result_name(run.outcome.result), row.result) << row.name << ": " << run.outcome.problem;
    if (row.mechanism) {
      EXPECT_EQ(run.outcome.mechanism.value_or("(none)"), row.mechanism) << row.name;
    } else {
      EXPECT_FALSE(run.outcome.mechanism) << row.name << ": " << *run.outcome.mechanism;
    }
  }
}

TEST(SpfCheck, EmptySenderChecksPostmasterAtHelo) {
  const Zone z = zone();
  Evaluated run = evaluate(z, "192.0.2.90", "", "helo.example");
  EXPECT_EQ(run.outcome.result, Result::Pass);
  // %{l}.%{o} of the HELO identity is postmaster.helo.example
  run = evaluate(z, "192.0.2.91", "", "helo.example");
  EXPECT_EQ(run.outcome.result, Result::Pass);
  EXPECT_EQ(*run.outcome.mechanism, "exists:%{l}.%{o}.hl.helo.example");
  EXPECT_EQ(evaluate(z, "192.0.2.1", "", "[192.0.2.1]").outcome.result, Result::None);
  EXPECT_EQ(evaluate(z, "192.0.2.1", "", "localhost").outcome.result, Result::None);
  EXPECT_EQ(evaluate(z, "192.0.2.1", "", "").outcome.result, Result::None);
}

TEST(SpfCheck, ExplanationExpandsEveryLetterOnFailOnly) {
  const Zone z = zone();
  Evaluated run = evaluate(z, "192.0.2.80", "user@exp.example");
  EXPECT_EQ(run.outcome.result, Result::Fail);
  ASSERT_TRUE(run.outcome.explanation);
  EXPECT_EQ(*run.outcome.explanation,
            "192.0.2.80 is not one of exp.example's designated mail servers; 192.0.2.80 in-addr mx.receiver.example "
            "1700000000 mx.client.example user@exp.example user exp.example % %20");
  run = evaluate(z, "2001:db8::1", "user@exp.example");
  ASSERT_TRUE(run.outcome.explanation);
  EXPECT_EQ(run.outcome.explanation->substr(0, 63), "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1");
  EXPECT_NE(run.outcome.explanation->find("servers; 2001:db8::1 ip6 "), std::string::npos);
  EXPECT_FALSE(evaluate(z, "192.0.2.1", "u@exppass.example").outcome.explanation);
  EXPECT_EQ(*evaluate(z, "192.0.2.1", "user@expmacro.example").outcome.explanation, "no user here");
}

TEST(SpfCheck, ABrokenExplanationIsNoneAndNeverChangesTheResult) {
  const Zone z = zone();
  for (const char* sender : {"u@expbad.example", "u@exptwo.example", "u@expnx.example", "u@expfail.example"}) {
    const Evaluated run = evaluate(z, "192.0.2.1", sender);
    EXPECT_EQ(run.outcome.result, Result::Fail) << sender;
    EXPECT_FALSE(run.outcome.explanation) << sender;
  }
}

TEST(SpfCheck, ExplanationComesFromTheRedirectTargetNeverFromAnInclude) {
  const Zone z = zone();
  Evaluated run = evaluate(z, "192.0.2.1", "u@redirect.example");
  EXPECT_EQ(run.outcome.result, Result::Fail);
  EXPECT_EQ(run.outcome.explanation.value_or(""), "target says no to 192.0.2.1");
  EXPECT_EQ(run.outcome.domain, "redir-target.example");
  run = evaluate(z, "192.0.2.1", "u@expredir.example");
  EXPECT_EQ(run.outcome.explanation.value_or(""), "target says no to 192.0.2.1");
  run = evaluate(z, "192.0.2.1", "u@expinc.example");
  EXPECT_EQ(run.outcome.result, Result::Fail);
  EXPECT_FALSE(run.outcome.explanation);
}

TEST(SpfCheck, LimitsAreSettableAndTripAtTheirEdge) {
  const Zone z = zone();
  Limits l;
  l.dns_lookups = 9;
  EXPECT_EQ(evaluate(z, "192.0.2.1", "u@ten.example", "h", l).outcome.result, Result::PermError);
  l.dns_lookups = 11;
  EXPECT_EQ(evaluate(z, "192.0.2.1", "u@eleven.example", "h", l).outcome.result, Result::Fail);
  l = {};
  l.void_lookups = 3;
  EXPECT_EQ(evaluate(z, "192.0.2.1", "u@threevoid.example", "h", l).outcome.result, Result::Fail);
  l.void_lookups = 0;
  const Evaluated run = evaluate(z, "192.0.2.1", "u@twovoid.example", "h", l);
  EXPECT_EQ(run.outcome.result, Result::PermError);
  EXPECT_NE(run.outcome.problem.find("void lookups"), std::string::npos) << run.outcome.problem;
}

TEST(SpfCheck, TheLookupLimitStopsQueriesNotOnlyTheResult) {
  const Zone z = zone();
  const Evaluated run = evaluate(z, "192.0.2.1", "u@loop.example");
  EXPECT_EQ(run.outcome.result, Result::PermError);
  EXPECT_NE(run.outcome.problem.find("10 DNS-querying terms"), std::string::npos) << run.outcome.problem;
  EXPECT_LE(run.asked.size(), 2u);  // loop.example's TXT, answered once (memoised)
}

TEST(SpfCheck, MxTargetsAreAskedInOneRound) {
  const Zone z = zone();
  const Evaluated run = evaluate(z, "198.51.100.10", "u@mx10.example");
  EXPECT_EQ(run.outcome.result, Result::Pass);
  EXPECT_EQ(run.rounds, 3);  // TXT, MX, then the 10 A queries together
}

TEST(SpfCheck, NamesAreAskedInLowerCaseWithoutTheFinalDot) {
  Zone z;
  z.add("mixed.example", T::Txt, "v=spf1 a:Host.Mixed.Example. -all").add("host.mixed.example", T::A, "192.0.2.5");
  const Evaluated run = evaluate(z, "192.0.2.5", "u@MIXED.example");
  EXPECT_EQ(run.outcome.result, Result::Pass);
  for (const Question& q : run.asked) EXPECT_EQ(q.name, normal_name(q.name));
}

// 4.6 / 12: the record grammar. Every entry is a syntax error.
TEST(SpfRecord, SyntaxErrorsArePermerrors) {
  for (const char* bad : {
           "v=spf1 foo",                // unknown mechanism
           "v=spf1 a:museum",           // domain-end needs "." toplabel
           "v=spf1 a:example.123",      // a numeric top label
           "v=spf1 a:example.-com",     // a top label starting with "-"
           "v=spf1 a:",                 // empty domain-spec
           "v=spf1 include",            // include needs a domain
           "v=spf1 exists",             // exists too
           "v=spf1 all:example.com",    // all takes nothing
           "v=spf1 all/24",             // nor a CIDR
           "v=spf1 ip4",                // ip4 needs a network
           "v=spf1 ip4:1.2.3",          // not a dotted quad
           "v=spf1 ip4:2001:db8::1",    // wrong family
           "v=spf1 ip6:192.0.2.1",      // wrong family
           "v=spf1 ip4:192.0.2.0/33",   // > 32
           "v=spf1 ip6:2001:db8::/129", // > 128
           "v=spf1 a/024",              // leading zero
           "v=spf1 a//129",
           "v=spf1 a/33",
           "v=spf1 mx//",
           "v=spf1 ptr/24",             // ptr takes no CIDR
           "v=spf1 redirect=a.example redirect=b.example",
           "v=spf1 exp=a.example exp=b.example",
           "v=spf1 exp=",
           "v=spf1 redirect=",
           "v=spf1 -all exp=%{c}.example.com",  // c, r, t only in exp text
           "v=spf1 exists:%{r}.example.com",
           "v=spf1 exists:%{t}.example.com",
           "v=spf1 exists:%{d0}.example.com",   // DIGIT must be nonzero
           "v=spf1 exists:%{x}.example.com",    // unknown letter
           "v=spf1 exists:%{d.example.com",     // no "}"
           "v=spf1 exists:%d.example.com",      // % then a letter
           "v=spf1 exists:%",
           "v=spf1 exists:%{dz}.example.com",   // unknown transformer
           "v=spf1 foo=%{z}",                   // unknown modifiers must parse too
           "v=spf1 a:exa\tmple.com",            // a control character
           "v=spf1 --all",
           "v=spf1 +",
       }) {
    std::string error;
    EXPECT_FALSE(parse_record(bad, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

TEST(SpfRecord, ValidRecordsParse) {
  for (const char* good : {
           "v=spf1",
           "v=spf1 -all",
           "v=spf1 a mx ptr -all",
           "v=spf1 a:example.com. mx:example.com/24//64 ?all",
           "v=spf1 a/0 a//0 a/32//128 ~all",
           "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip6:::1 ip6:::ffff:192.0.2.1",
           "v=spf1 include:_spf.example.com exists:%{i}.%{l1r+-}._spf.%{d} -all",
           "v=spf1 a:foo-bar.example.com a:example.c0m a:example.1-2",
           "v=spf1 redirect=_spf.%{d2} exp=explain._spf.%{d}",
           "v=spf1 unknown-mod.x_y=anything%%%_%- -all",
           "V=SPF1 A MX IP4:192.0.2.1 -ALL",
           "v=spf1 exists:%{d999}.example.com",
       }) {
    std::string error;
    EXPECT_TRUE(parse_record(good, error)) << good << ": " << error;
  }
  std::string error;
  auto r = parse_record("v=spf1 a/24//64 mx:mx.example/30 ip4:192.0.2.7/24 -all redirect=x.example", error);
  ASSERT_TRUE(r) << error;
  ASSERT_EQ(r->terms.size(), 4u);
  EXPECT_EQ(r->terms[0].cidr4, 24u);
  EXPECT_EQ(r->terms[0].cidr6, 64u);
  EXPECT_EQ(r->terms[1].cidr4, 30u);
  EXPECT_EQ(r->terms[1].cidr6, 128u);
  EXPECT_EQ(r->terms[2].network->text(), "192.0.2.0/24");
  EXPECT_EQ(r->terms[3].qualifier, '-');
  EXPECT_TRUE(r->has_all);
  EXPECT_TRUE(r->redirect);
  EXPECT_TRUE(is_spf_record("v=spf1"));
  EXPECT_FALSE(is_spf_record("v=spf1x"));
  EXPECT_FALSE(is_spf_record("v=spf"));
}

// RFC 7208 7.4: the RFC's own examples, then every letter, transformer
// and delimiter.
std::string expanded(const char* text, bool explain = false, const char* ip = "192.0.2.3") {
  std::string error;
  auto m = tokenize(text, explain, error);
  if (!m) return "ERROR " + error;
  net::Address a = *net::parse_address(ip);
  MacroFacts f;
  f.sender = "strong-bad@email.example.com";
  f.local_part = "strong-bad";
  f.sender_domain = "email.example.com";
  f.domain = "email.example.com";
  f.helo = "mx.client.example";
  f.receiver = "mx.receiver.example";
  f.now = 1700000000;
  f.ip = &a;
  f.validated_name = [] { return std::string("host.email.example.com"); };
  return expand(*m, f);
}

TEST(SpfMacro, TheRfcExamples) {
  EXPECT_EQ(expanded("%{s}"), "strong-bad@email.example.com");
  EXPECT_EQ(expanded("%{o}"), "email.example.com");
  EXPECT_EQ(expanded("%{d}"), "email.example.com");
  EXPECT_EQ(expanded("%{d4}"), "email.example.com");
  EXPECT_EQ(expanded("%{d3}"), "email.example.com");
  EXPECT_EQ(expanded("%{d2}"), "example.com");
  EXPECT_EQ(expanded("%{d1}"), "com");
  EXPECT_EQ(expanded("%{dr}"), "com.example.email");
  EXPECT_EQ(expanded("%{d2r}"), "example.email");
  EXPECT_EQ(expanded("%{l}"), "strong-bad");
  EXPECT_EQ(expanded("%{l-}"), "strong.bad");
  EXPECT_EQ(expanded("%{lr}"), "strong-bad");
  EXPECT_EQ(expanded("%{lr-}"), "bad.strong");
  EXPECT_EQ(expanded("%{l1r-}"), "strong");
  EXPECT_EQ(expanded("%{ir}.%{v}._spf.%{d2}"), "3.2.0.192.in-addr._spf.example.com");
  EXPECT_EQ(expanded("%{lr-}.lp._spf.%{d2}"), "bad.strong.lp._spf.example.com");
  EXPECT_EQ(expanded("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}"), "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
  EXPECT_EQ(expanded("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}"), "3.2.0.192.in-addr.strong.lp._spf.example.com");
  EXPECT_EQ(expanded("%{d2}.trusted-domains.example.net"), "example.com.trusted-domains.example.net");
  EXPECT_EQ(expanded("%{ir}.%{v}._spf.%{d2}", false, "2001:db8::cb01"),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
}

TEST(SpfMacro, EveryLetterTransformerAndDelimiter) {
  EXPECT_EQ(expanded("%{h}"), "mx.client.example");
  EXPECT_EQ(expanded("%{p}"), "host.email.example.com");
  EXPECT_EQ(expanded("%{v}"), "in-addr");
  EXPECT_EQ(expanded("%{i}"), "192.0.2.3");
  EXPECT_EQ(expanded("%{i}", false, "::ffff:192.0.2.3"), "192.0.2.3");
  EXPECT_EQ(expanded("%{c}", true), "192.0.2.3");
  EXPECT_EQ(expanded("%{c}", true, "2001:DB8:0:0::CB01"), "2001:db8::cb01");
  EXPECT_EQ(expanded("%{r}", true), "mx.receiver.example");
  EXPECT_EQ(expanded("%{t}", true), "1700000000");
  EXPECT_EQ(expanded("%{i2}"), "2.3");
  EXPECT_EQ(expanded("%{i9r}"), "3.2.0.192");
  EXPECT_EQ(expanded("%{s1@}"), "ERROR a macro with an unknown transformer or delimiter");  // "@" is none
  EXPECT_EQ(expanded("%{s2.}"), "example.com");
  EXPECT_EQ(expanded("%{l+}"), "strong-bad");
  EXPECT_EQ(expanded("%{l-+,/_=}"), "strong.bad");
  EXPECT_EQ(expanded("%{d._}"), "email.example.com");
  EXPECT_EQ(expanded("%{S}"), "strong-bad%40email.example.com");
  EXPECT_EQ(expanded("%{L}"), "strong-bad");
  EXPECT_EQ(expanded("%{D1R}"), "email");
  EXPECT_EQ(expanded("%%%_%-"), "% %20");
  EXPECT_EQ(expanded("a b %{d1}", true), "a b com");
  EXPECT_EQ(expanded("%{d999}"), "email.example.com");
  EXPECT_EQ(expanded("a b"), "ERROR a character not allowed in a macro-string");
  EXPECT_EQ(url_escape("a b/é~"), "a%20b%2F%C3%A9~");
}

}  // namespace
}  // namespace mailhook::policyd::spf
