// policyd/dns/message: RR layouts from hand-built answers, and hostile
// input (compression loops, short RDATA, lying lengths) as errors.
#include "policyd/dns/message.h"

#include <gtest/gtest.h>

#include <string>

namespace mailhook::policyd::dns {
namespace {

// A response header with one question "a.test" and `an` answers.
std::string header(std::uint16_t an, int rcode = 0, bool tc = false) {
  std::string m;
  auto u16 = [&](unsigned v) {
    m += static_cast<char>(v >> 8);
    m += static_cast<char>(v & 0xFF);
  };
  u16(0x1234);
  u16(0x8180 | (tc ? 0x0200 : 0) | rcode);
  u16(1);
  u16(an);
  u16(0);
  u16(0);
  m += std::string("\x01" "a\x04test\x00", 8);  // offset 12
  u16(kA);
  u16(kIN);
  return m;
}

std::string rr(std::uint16_t type, const std::string& rdata, const std::string& owner = std::string("\xC0\x0C", 2)) {
  std::string r = owner;
  r += static_cast<char>(type >> 8);
  r += static_cast<char>(type & 0xFF);
  r += std::string("\x00\x01\x00\x00\x0E\x10", 6);  // IN, ttl 3600
  r += static_cast<char>(rdata.size() >> 8);
  r += static_cast<char>(rdata.size() & 0xFF);
  return r + rdata;
}

Message parse_ok(const std::string& wire) {
  std::string error;
  auto m = parse_message(wire, error);
  EXPECT_TRUE(m) << error;
  return m ? *m : Message{};
}

std::string parse_error(const std::string& wire) {
  std::string error;
  EXPECT_FALSE(parse_message(wire, error));
  return error;
}

TEST(DnsMessage, AddressRecords) {
  Message m = parse_ok(header(2) + rr(kA, std::string("\xC0\x00\x02\x01", 4)) +
                       rr(kAAAA, std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x01"));
  ASSERT_EQ(m.answer.size(), 2u);
  EXPECT_EQ(m.answer[0].owner, "a.test");
  EXPECT_EQ(m.answer[0].ttl, 3600u);
  EXPECT_EQ(m.answer[0].address, "192.0.2.1");
  EXPECT_EQ(m.answer[1].address, "2001:db8::1");
}

TEST(DnsMessage, NamesThroughCompressionAndMxSoaTxt) {
  const std::string mx = std::string("\x00\x0A", 2) + std::string("\x02mx\xC0\x0C", 5);
  const std::string soa = std::string("\x02ns\xC0\x0C", 5) + std::string("\x04host\xC0\x0C", 7) +
                          std::string("\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00\x05", 20);
  const std::string txt = std::string("\x03one\x03two", 8);
  Message m = parse_ok(header(3) + rr(kMX, mx) + rr(kSOA, soa) + rr(kTXT, txt));
  EXPECT_EQ(m.answer[0].host, "mx.a.test");
  EXPECT_EQ(m.answer[0].preference, 10);
  EXPECT_EQ(m.answer[1].mname, "ns.a.test");
  EXPECT_EQ(m.answer[1].rname, "host.a.test");
  EXPECT_EQ(m.answer[1].serial, 1u);
  EXPECT_EQ(m.answer[1].minimum, 5u);
  EXPECT_EQ(m.answer[2].strings, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(m.answer[2].text(), "onetwo");
}

TEST(DnsMessage, RcodeAndTruncation) {
  Message m = parse_ok(header(0, kNxDomain, true));
  EXPECT_EQ(m.rcode, kNxDomain);
  EXPECT_TRUE(m.truncated);
}

TEST(DnsMessage, HostileInputIsAnError) {
  EXPECT_EQ(parse_error("\x12\x34"), "short header");
  std::string query = header(0);
  query[2] = 0;  // QR clear: a query, not a response
  EXPECT_EQ(parse_error(query), "not a response");
  // A pointer to itself (the record starts at offset 24).
  EXPECT_EQ(parse_error(header(1) + rr(kA, "\x01\x02\x03\x04", std::string("\xC0\x18", 2))), "malformed resource record");
  // RDLENGTH longer than the message.
  std::string cut = header(1) + rr(kA, "\x01\x02\x03\x04");
  cut.resize(cut.size() - 1);
  EXPECT_EQ(parse_error(cut), "malformed resource record");
  // An A record of 3 octets; a TXT string running past its RDATA.
  EXPECT_EQ(parse_error(header(1) + rr(kA, "\x01\x02\x03")), "malformed resource record");
  EXPECT_EQ(parse_error(header(1) + rr(kTXT, "\x05" "ab")), "malformed resource record");
}

TEST(DnsMessage, LabelsWithDotsAndBinaryAreEscaped) {
  Message m = parse_ok(header(1) + rr(kA, "\x01\x02\x03\x04", std::string("\x03" "a.b\x02\x00\xFF\x00", 8)));
  EXPECT_EQ(m.answer[0].owner, "a\\.b.\\000\\255");
}

TEST(DnsMessage, ReverseNames) {
  EXPECT_EQ(reverse_name("192.0.2.1", false), "1.2.0.192");
  EXPECT_EQ(reverse_name("192.0.2.1", true), "1.2.0.192.in-addr.arpa");
  EXPECT_EQ(reverse_name("2001:db8::1", true),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  EXPECT_EQ(reverse_name("nonsense", true), "");
  EXPECT_EQ(address_of_reverse_name("1.2.0.192.in-addr.arpa"), "192.0.2.1");
  EXPECT_EQ(address_of_reverse_name(reverse_name("2001:db8::1", true)), "2001:db8::1");
  EXPECT_EQ(address_of_reverse_name("1.2.0.in-addr.arpa"), "");
  EXPECT_EQ(address_of_reverse_name("mail.example.test"), "");
}

TEST(DnsMessage, Names) {
  EXPECT_EQ(type_name(kPTR), "PTR");
  EXPECT_EQ(class_name(kIN), "IN");
  EXPECT_EQ(rcode_name(kTimeout), "TIMEOUT");
  EXPECT_EQ(rcode_name(kNotImp), "NOT_IMPLEMENTED");
  EXPECT_EQ(type_name(9999), "");
}

}  // namespace
}  // namespace mailhook::policyd::dns
