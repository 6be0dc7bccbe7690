// policyd/milter/milter_codec: packet framing over split and joined reads,
// the data of CONNECT, MACRO and OPTNEG, the REPLYCODE text and the
// modification packets, byte for byte, without an MTA.
#include "policyd/milter/milter_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

namespace mailhook::policyd::milter {
namespace {

using namespace std::string_literals;

std::string packet(char letter, std::string_view data = {}) {
  std::string out;
  append_packet(out, letter, data);
  return out;
}

// One read of the MTA's bytes into the reader, after next() said NeedMore.
void feed(PacketReader& r, std::string_view bytes) {
  const std::span<char> room = r.room();
  ASSERT_GE(room.size(), bytes.size());
  std::memcpy(room.data(), bytes.data(), bytes.size());
  r.commit(bytes.size());
}

// ---------------------------------------------------------------- framing

TEST(MilterCodec, IntegersAreFourBytesInNetworkOrder) {
  std::string out;
  put_u32(out, 0x01020304);
  EXPECT_EQ(out, "\x01\x02\x03\x04"s);
  EXPECT_EQ(get_u32("xx\xff\xff\xff\xfe"s, 2), 0xFFFFFFFEu);
  EXPECT_EQ(packet('c'), "\0\0\0\x01"s "c"s);
  EXPECT_EQ(packet('y', "451 x\0"s), "\0\0\0\x07"s "y451 x\0"s);
}

TEST(MilterCodec, PacketSentOneByteAtATimeComesOutWhole) {
  PacketReader r(1u << 20);
  const std::string bytes = packet(cmd::kHelo, "mx.example.com\0"s);
  for (char c : bytes) {
    ASSERT_EQ(r.next().status, PacketReader::Status::NeedMore);
    feed(r, std::string_view(&c, 1));
  }
  const PacketReader::Next n = r.next();
  ASSERT_EQ(n.status, PacketReader::Status::Packet);
  EXPECT_EQ(n.packet.letter, cmd::kHelo);
  EXPECT_EQ(n.packet.data, "mx.example.com\0"s);
  EXPECT_EQ(n.length, 16u);
  EXPECT_EQ(r.next().status, PacketReader::Status::NeedMore);
}

TEST(MilterCodec, PacketsSharingOneReadComeOutOneByOneAndAPartialOneWaits) {
  PacketReader r(1u << 20);
  const std::string third = packet(cmd::kRcpt, "<c@example.com>\0"s);
  ASSERT_EQ(r.next().status, PacketReader::Status::NeedMore);
  feed(r, packet(cmd::kMail, "<a@example.com>\0"s) + packet(cmd::kData) + third.substr(0, 7));
  PacketReader::Next n = r.next();
  ASSERT_EQ(n.status, PacketReader::Status::Packet);
  EXPECT_EQ(n.packet.letter, cmd::kMail);
  EXPECT_EQ(n.packet.data, "<a@example.com>\0"s);
  n = r.next();
  ASSERT_EQ(n.status, PacketReader::Status::Packet);
  EXPECT_EQ(n.packet.letter, cmd::kData);
  EXPECT_EQ(n.packet.data, "");
  // The partial third moves to the buffer's front and completes there.
  ASSERT_EQ(r.next().status, PacketReader::Status::NeedMore);
  feed(r, third.substr(7));
  n = r.next();
  ASSERT_EQ(n.status, PacketReader::Status::Packet);
  EXPECT_EQ(n.packet.letter, cmd::kRcpt);
  EXPECT_EQ(n.packet.data, "<c@example.com>\0"s);
}

TEST(MilterCodec, PartialPacketMovesToTheFrontInsteadOfGrowingTheBuffer) {
  PacketReader r(1u << 20);
  ASSERT_EQ(r.next().status, PacketReader::Status::NeedMore);
  const std::size_t first = r.room().size();
  const std::string second = packet(cmd::kRcpt, "<b@example.com>\0"s);
  // The first packet and 6 bytes of the second fill the buffer exactly.
  feed(r, packet(cmd::kBody, std::string(first - 6 - 5, 'x')) + second.substr(0, 6));
  ASSERT_EQ(r.next().status, PacketReader::Status::Packet);
  ASSERT_EQ(r.next().status, PacketReader::Status::NeedMore);
  EXPECT_EQ(r.capacity(), first);
  EXPECT_EQ(r.room().size(), first - 6);
  feed(r, second.substr(6));
  const PacketReader::Next n = r.next();
  ASSERT_EQ(n.status, PacketReader::Status::Packet);
  EXPECT_EQ(n.packet.data, "<b@example.com>\0"s);
}

TEST(MilterCodec, PacketOfExactlyMaxPacketIsTakenOneByteMoreIsRefused) {
  PacketReader at(100);
  ASSERT_EQ(at.next().status, PacketReader::Status::NeedMore);
  feed(at, packet(cmd::kBody, std::string(99, 'x')));  // length 100: the letter and 99 bytes
  PacketReader::Next n = at.next();
  ASSERT_EQ(n.status, PacketReader::Status::Packet);
  EXPECT_EQ(n.packet.data.size(), 99u);

  PacketReader over(100);
  ASSERT_EQ(over.next().status, PacketReader::Status::NeedMore);
  feed(over, packet(cmd::kBody, std::string(100, 'x')).substr(0, 4));  // the length alone is enough
  n = over.next();
  EXPECT_EQ(n.status, PacketReader::Status::Refused);
  EXPECT_EQ(n.length, 101u);
}

TEST(MilterCodec, ZeroLengthPacketIsRefused) {
  PacketReader r(1u << 20);
  ASSERT_EQ(r.next().status, PacketReader::Status::NeedMore);
  feed(r, "\0\0\0\0c"s);
  const PacketReader::Next n = r.next();
  EXPECT_EQ(n.status, PacketReader::Status::Refused);
  EXPECT_EQ(n.length, 0u);
}

TEST(MilterCodec, BufferGrownForALargePacketIsFreedOnceEmpty) {
  PacketReader r(1u << 20);
  const std::string bytes = packet(cmd::kBody, std::string(300 * 1024, 'x'));
  std::string_view rest = bytes;
  PacketReader::Next n = r.next();
  while (n.status == PacketReader::Status::NeedMore) {
    const std::size_t part = std::min(rest.size(), r.room().size());
    feed(r, rest.substr(0, part));
    rest.remove_prefix(part);
    n = r.next();
  }
  ASSERT_EQ(n.status, PacketReader::Status::Packet);
  EXPECT_EQ(n.packet.data.size(), 300u * 1024);
  EXPECT_GT(r.capacity(), kKeptBuffer);
  EXPECT_EQ(r.next().status, PacketReader::Status::NeedMore);
  EXPECT_EQ(r.capacity(), 16u * 1024);  // freed, then the usual first buffer
}

TEST(MilterCodec, StringsOfSplitsAtNulWithOrWithoutTheLastOne) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(strings_of("a\0b\0"s), (V{"a", "b"}));
  EXPECT_EQ(strings_of("a\0b"s), (V{"a", "b"}));
  EXPECT_EQ(strings_of("a\0\0"s), (V{"a", ""}));
  EXPECT_EQ(strings_of(""), V{});
}

// --------------------------------------------------------------- commands

// What parse_connect makes of `data`, field by field.
void expect_connect(const std::string& data, const char* host, char family, std::uint32_t port, const char* address) {
  ConnectInfo c;
  ASSERT_TRUE(parse_connect(data, c)) << data;
  EXPECT_EQ(c.host, host);
  EXPECT_EQ(c.family, family);
  EXPECT_EQ(c.port, port);
  EXPECT_EQ(c.address, address);
}

TEST(MilterCodec, ConnectOverIpv4CarriesNamePortAndAddress) {
  expect_connect("mx.example.com\0" "4\x9c\x40" "192.0.2.1\0"s, "mx.example.com", '4', 40000, "192.0.2.1");
}

TEST(MilterCodec, ConnectWithABracketedNameHasNoHost) {
  expect_connect("[2001:db8::1]\0" "6\x00\x19" "2001:db8::1\0"s, "", '6', 25, "2001:db8::1");
}

TEST(MilterCodec, ConnectOverAUnixSocketOrOfUnknownFamilyHasNoAddress) {
  expect_connect("localhost\0" "L\x00\x00" "/var/run/mta.sock\0"s, "localhost", 'L', 0, "");
  expect_connect("client.example\0" "U"s, "client.example", 'U', 0, "");
}

TEST(MilterCodec, ConnectWithoutAFamilyIsMalformed) {
  ConnectInfo c;
  EXPECT_FALSE(parse_connect("mx.example.com"s, c));
  EXPECT_FALSE(parse_connect("mx.example.com\0"s, c));
  EXPECT_FALSE(parse_connect("", c));
}

// libmilter's st_connectinfo closes the connection on each of these.
TEST(MilterCodec, ConnectWithABadFamilyPortOrAddressIsMalformed) {
  ConnectInfo c;
  EXPECT_FALSE(parse_connect("mx\0" "X\x00\x19" "192.0.2.1\0"s, c));   // no such family
  EXPECT_FALSE(parse_connect("mx\0" "4"s, c));                         // no port
  EXPECT_FALSE(parse_connect("mx\0" "4\x00\x19"s, c));                 // no address
  EXPECT_FALSE(parse_connect("mx\0" "4\x00\x19" "192.0.2.1"s, c));      // no NUL after it
  EXPECT_FALSE(parse_connect("mx\0" "4\x00\x19" "nonsense\0"s, c));
  EXPECT_FALSE(parse_connect("mx\0" "6\x00\x19" "192.0.2.1x\0"s, c));
  EXPECT_FALSE(parse_connect("mx\0" "L\x00\x00"s + std::string(108, 'p') + "\0"s, c));
  EXPECT_TRUE(parse_connect("mx\0" "L\x00\x00"s + std::string(107, 'p') + "\0"s, c));
}

TEST(MilterCodec, CommandsWithoutTheDataLibmilterNeedsAreMalformed) {
  for (char letter : {'B', 'U', 'D', 'H', 'M', 'R', 'L'}) EXPECT_FALSE(well_formed(letter, "")) << letter;
  for (char letter : {'A', 'N', 'T', 'E', 'Q', 'K'}) EXPECT_TRUE(well_formed(letter, "")) << letter;
  EXPECT_TRUE(well_formed('H', "client.example\0"s));
  EXPECT_FALSE(well_formed('H', "client.example"s));
  EXPECT_TRUE(well_formed('M', "<a@example.org>\0"s));
  EXPECT_FALSE(well_formed('M', "<a@example.org>"s));
  EXPECT_FALSE(well_formed('R', "<b@example.com>"s));
  EXPECT_TRUE(well_formed('L', "Subject\0hello\0"s));
  EXPECT_TRUE(well_formed('L', "Subject\0\0"s));  // an empty value
  EXPECT_FALSE(well_formed('L', "Subject\0"s));    // no value
  EXPECT_FALSE(well_formed('L', "Subject\0hello"s));
  EXPECT_TRUE(well_formed('B', "x"));
  EXPECT_TRUE(well_formed('D', "C"));  // a stage and no macro: ignored, not malformed
}

TEST(MilterCodec, MacrosMergeAndBracedOneLetterNamesLoseTheirBraces) {
  std::map<std::string, std::string> m;
  ASSERT_TRUE(parse_macros("C" "{i}\0" "4F1A\0" "j\0" "mx.example.com\0" "{daemon_port}\0" "25\0"s, m));
  EXPECT_EQ(m, (std::map<std::string, std::string>{{"i", "4F1A"}, {"j", "mx.example.com"}, {"{daemon_port}", "25"}}));
  ASSERT_TRUE(parse_macros("M" "i\0" "4F1B\0" "{dangling}\0"s, m));  // "i" is "{i}"; a name without value is not taken
  EXPECT_EQ(m.at("i"), "4F1B");
  EXPECT_EQ(m.count("{dangling}"), 0u);
  EXPECT_FALSE(parse_macros("", m));
  EXPECT_EQ(m.size(), 3u);
}

TEST(MilterCodec, OptionNegotiationIsReadAndAnsweredInThreeIntegers) {
  OptionOffer offer;
  ASSERT_TRUE(parse_optneg("\0\0\0\x06" "\0\0\x01\xff" "\0\x1f\xff\xff"s, offer));
  EXPECT_EQ(offer.version, 6u);
  EXPECT_EQ(offer.actions, 0x1FFu);
  EXPECT_EQ(offer.protocol, 0x1FFFFFu);
  EXPECT_FALSE(parse_optneg("\0\0\0\x06" "\0\0\x01\xff"s, offer));                  // short
  EXPECT_FALSE(parse_optneg("\0\0\0\x01" "\0\0\x01\xff" "\0\x1f\xff\xff"s, offer));  // version 1
  ASSERT_TRUE(parse_optneg("\0\0\0\x02" "\0\0\0\0" "\0\0\0\0"s, offer));  // 0: version 1's, as libmilter reads it
  EXPECT_EQ(offer.actions, kV1Actions);
  EXPECT_EQ(offer.protocol, kV1Protocol);

  EXPECT_EQ(optneg_reply(6, 0x1FF, 0x1000), "\0\0\0\x06" "\0\0\x01\xff" "\0\0\x10\0"s);
  EXPECT_EQ(optneg_reply(2, 0x1, 0x0).substr(0, 4), "\0\0\0\x02"s);  // never past the MTA's version
  EXPECT_EQ(optneg_reply(7, 0x1, 0x0).substr(0, 4), "\0\0\0\x06"s);
}

// ------------------------------------------------------ order of commands

// libmilter's engine.c table: what each command may follow.
TEST(MilterCodec, CommandsFollowEachOtherInLibmiltersOrder) {
  EXPECT_TRUE(may_follow(Stage::Init, Stage::Options, 0));
  EXPECT_FALSE(may_follow(Stage::Init, Stage::Connect, 0));  // no CONNECT before OPTNEG
  EXPECT_FALSE(may_follow(Stage::Options, Stage::Options, 0));
  EXPECT_TRUE(may_follow(Stage::Connect, Stage::Mail, 0));    // HELO is optional
  EXPECT_FALSE(may_follow(Stage::Connect, Stage::Rcpt, 0));   // RCPT before MAIL
  EXPECT_TRUE(may_follow(Stage::Rcpt, Stage::EndOfMessage, 0));
  EXPECT_FALSE(may_follow(Stage::Data, Stage::EndOfMessage, 0));  // DATA, then the end of headers
  EXPECT_FALSE(may_follow(Stage::EndOfHeaders, Stage::Headers, 0));
  EXPECT_FALSE(may_follow(Stage::EndOfMessage, Stage::EndOfMessage, 0));
  EXPECT_TRUE(may_follow(Stage::EndOfMessage, Stage::Mail, 0));
  EXPECT_FALSE(may_follow(Stage::Helo, Stage::Abort, 0));  // ABORT only in a transaction
  EXPECT_TRUE(may_follow(Stage::QuitNewConnection, Stage::Connect, 0));
  EXPECT_FALSE(may_follow(Stage::Helo, Stage::None, 0));
}

TEST(MilterCodec, StagesTheMtaWasToldToSkipAreSteppedOver) {
  EXPECT_FALSE(may_follow(Stage::Mail, Stage::Data, 0));
  EXPECT_TRUE(may_follow(Stage::Mail, Stage::Data, flag::kNoRcpt));
  EXPECT_TRUE(may_follow(Stage::Data, Stage::EndOfMessage, flag::kNoHdrs | flag::kNoEoh));
  EXPECT_FALSE(may_follow(Stage::Data, Stage::EndOfMessage, flag::kNoHdrs));
  EXPECT_TRUE(may_follow(Stage::Options, Stage::Helo, flag::kNoConnect));
}

TEST(MilterCodec, ATransactionIsMailUpToTheBody) {
  EXPECT_EQ(stage_of('M'), Stage::Mail);
  EXPECT_EQ(stage_of('D'), Stage::None);
  EXPECT_EQ(stage_of('Z'), Stage::None);
  EXPECT_FALSE(in_transaction(Stage::Helo));
  EXPECT_TRUE(in_transaction(Stage::Mail));
  EXPECT_TRUE(in_transaction(Stage::Body));
  EXPECT_FALSE(in_transaction(Stage::EndOfMessage));
  EXPECT_EQ(stage_name(Stage::Rcpt), "RCPT");
  EXPECT_EQ(stage_name(Stage::QuitNewConnection), "QUIT_NC");
  EXPECT_EQ(stage_name(Stage::None), "no stage");
}

// ---------------------------------------------------------------- replies

TEST(MilterCodec, ReplyCodeTextOnOneLine) {
  EXPECT_EQ(reply_text(MilterReply{Status::Reject, "550", "5.7.1", {"no thanks"}}), "550 5.7.1 no thanks\0"s);
  EXPECT_EQ(reply_text(MilterReply{Status::Tempfail, "451", "", {"later"}}), "451 later\0"s);
}

TEST(MilterCodec, ReplyCodeTextOnManyLinesAlwaysHasAnEnhancedCode) {
  EXPECT_EQ(reply_text(MilterReply{Status::Reject, "550", "5.7.1", {"a", "b"}}), "550-5.7.1 a\r\n550 5.7.1 b\0"s);
  EXPECT_EQ(reply_text(MilterReply{Status::Reject, "554", "", {"a", "b", "c"}}),
            "554-5.0.0 a\r\n554-5.0.0 b\r\n554 5.0.0 c\0"s);
  EXPECT_EQ(reply_text(MilterReply{Status::Tempfail, "421", "", {"a", "b"}}), "421-4.0.0 a\r\n421 4.0.0 b\0"s);
}

MessageChange change(MessageChange::Kind kind, std::string name, std::string value, std::uint32_t index = 0,
                     bool erase = false) {
  MessageChange c;
  c.kind = kind;
  c.name = std::move(name);
  c.value = std::move(value);
  c.index = index;
  c.erase = erase;
  return c;
}

constexpr unsigned long kAllActions = 0x1FF;
using Kind = MessageChange::Kind;

TEST(MilterCodec, HeaderChangesBecomeAddInsertAndChangePackets) {
  std::string out;
  const Modifications m = append_modifications(
      out,
      {change(Kind::AddHeader, "X-Spam", "yes"), change(Kind::AddHeader, "X-Folded", "a,\r\n\tb"),
       change(Kind::InsertHeader, "X-First", "1", 0), change(Kind::InsertHeader, "X-Third", "3", 2),
       change(Kind::ChangeHeader, "Subject", "[spam] hi", 1), change(Kind::ChangeHeader, "X-Old", "gone", 2, true)},
      kAllActions);
  EXPECT_TRUE(m.allowed);
  EXPECT_FALSE(m.discard);
  EXPECT_EQ(out, packet(reply::kAddHeader, "X-Spam\0yes\0"s) + packet(reply::kAddHeader, "X-Folded\0a,\n\tb\0"s) +
                     packet(reply::kInsertHeader, "\0\0\0\0X-First\0" "1\0"s) +
                     packet(reply::kInsertHeader, "\0\0\0\x02X-Third\0" "3\0"s) +
                     packet(reply::kChangeHeader, "\0\0\0\x01Subject\0[spam] hi\0"s) +
                     packet(reply::kChangeHeader, "\0\0\0\x02X-Old\0\0"s));
}

TEST(MilterCodec, EnvelopeChangesBecomeRecipientAndSenderPackets) {
  std::string out;
  const Modifications m = append_modifications(
      out,
      {change(Kind::AddRcpt, "", "a@example.com"), change(Kind::AddRcpt, "NOTIFY=NEVER", "b@example.com"),
       change(Kind::DelRcpt, "", "c@example.com"), change(Kind::ChangeFrom, "", "d@example.com"),
       change(Kind::Quarantine, "", "looks odd")},
      kAllActions);
  EXPECT_TRUE(m.allowed);
  EXPECT_EQ(out, packet(reply::kAddRcpt, "<a@example.com>\0"s) +
                     packet(reply::kAddRcptPar, "<b@example.com>\0NOTIFY=NEVER\0"s) +
                     packet(reply::kDelRcpt, "<c@example.com>\0"s) + packet(reply::kChangeFrom, "<d@example.com>\0"s) +
                     packet(reply::kQuarantine, "looks odd\0"s));
}

TEST(MilterCodec, ReplacedBodyGoesOutIn65535ByteParts) {
  const std::string body = std::string(65535, 'a') + std::string(65535, 'b') + "tail";
  std::string out;
  ASSERT_TRUE(append_modifications(out, {change(Kind::ReplaceBody, "", body)}, flag::kChgBody).allowed);
  EXPECT_EQ(out, packet(reply::kReplaceBody, std::string(65535, 'a')) +
                     packet(reply::kReplaceBody, std::string(65535, 'b')) + packet(reply::kReplaceBody, "tail"));
  out.clear();
  ASSERT_TRUE(append_modifications(out, {change(Kind::ReplaceBody, "", "")}, flag::kChgBody).allowed);
  EXPECT_EQ(out, packet(reply::kReplaceBody));  // an empty body is still one part
}

TEST(MilterCodec, ChangeTheMtaDidNotAllowLeavesTheOutputUnchanged) {
  std::string out = packet(reply::kProgress);
  const std::string before = out;
  Modifications m = append_modifications(
      out, {change(Kind::AddHeader, "X-Spam", "yes"), change(Kind::DelRcpt, "", "c@example.com")}, flag::kAddHdrs);
  EXPECT_FALSE(m.allowed);
  EXPECT_EQ(m.refused, "removing recipients");
  EXPECT_EQ(out, before);
  m = append_modifications(out, {change(Kind::AddRcpt, "NOTIFY=NEVER", "b@example.com")}, flag::kAddRcpt);
  EXPECT_FALSE(m.allowed);
  EXPECT_EQ(m.refused, "adding recipients with ESMTP arguments");
  EXPECT_EQ(out, before);
}

TEST(MilterCodec, DiscardIsReportedAndNeedsNoAction) {
  std::string out;
  Modifications m = append_modifications(out, {change(Kind::Discard, "", "")}, 0);
  EXPECT_TRUE(m.allowed);
  EXPECT_TRUE(m.discard);
  EXPECT_EQ(out, "");
  m = append_modifications(out, {change(Kind::Discard, "", ""), change(Kind::AddHeader, "X-A", "1")}, kAllActions);
  EXPECT_TRUE(m.allowed);
  EXPECT_TRUE(m.discard);
  EXPECT_EQ(out, packet(reply::kAddHeader, "X-A\0" "1\0"s));
}

}  // namespace
}  // namespace mailhook::policyd::milter
