// policyd/mime/mime_summary: part numbers, offsets (LF and CRLF files),
// attachment names and decoded sizes (MIME, RFC 2231, UUE, BinHex, TNEF),
// address lists, malformed and missing files, and concurrent callers.
#include "policyd/mime/mime_summary.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <thread>

namespace mailhook::policyd::mime {
namespace {

namespace fs = std::filesystem;

class MimeSummaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "mime_summary_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, const std::string& bytes) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  Summary summarize_text(const std::string& bytes) {
    std::string error;
    auto summary = summarize(write("message.eml", bytes), error);
    EXPECT_TRUE(summary.has_value()) << error;
    return summary.value_or(Summary{});
  }
  fs::path dir_;
};

std::string crlf(const std::string& lf) {
  std::string out;
  for (char c : lf) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

std::vector<std::string> paths(const Summary& s) {
  std::vector<std::string> out;
  for (const auto& section : s.sections) out.push_back(section.path);
  return out;
}

const std::string kPdfBase64 = "JVBERi0xLjQKJeLjz9MKMSAwIG9iajw8Pj5lbmRvYmoKdHJhaWxlcjw8Pj4KJSVFT0YK";

const std::string kMixed =
    "From: Ann <ann@example.org>\n"
    "To: bob@example.net\n"
    "Subject: report\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\n"
    "\n"
    "This is a multi-part message in MIME format.\n"
    "--outer\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "\n"
    "See the report.\n"
    "--outer\n"
    "Content-Type: application/pdf; name=\"report.pdf\"\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"\n"
    "Content-Transfer-Encoding: base64\n"
    "\n" +
    kPdfBase64 + "\n" +
    "--outer--\n"
    "epilogue\n";

TEST_F(MimeSummaryTest, PlainTextMessageIsOneSectionWithDecodedSubject) {
  const std::string mail =
      "From: ann@example.org\n"
      "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\n"
      "\n"
      "Hello.\n";
  const Summary s = summarize_text(mail);
  EXPECT_EQ(s.subject, "Grüße aus Köln");
  EXPECT_EQ(s.from, "ann@example.org");
  EXPECT_EQ(s.size, mail.size());
  ASSERT_EQ(s.sections.size(), 1u);
  EXPECT_EQ(s.sections[0].path, "1");
  EXPECT_EQ(s.sections[0].content_type, "text");
  EXPECT_EQ(s.sections[0].content_subtype, "plain");
  EXPECT_EQ(s.sections[0].content_disposition, "");
  EXPECT_EQ(s.sections[0].start, 0u);
  EXPECT_EQ(s.sections[0].end, mail.size());
  EXPECT_TRUE(s.attachments.empty());
}

class LineEndTest : public MimeSummaryTest, public ::testing::WithParamInterface<bool> {};

TEST_P(LineEndTest, MultipartMixedListsPdfWithDecodedSizeAndExactOffsets) {
  const std::string mail = GetParam() ? crlf(kMixed) : kMixed;
  const std::string nl = GetParam() ? "\r\n" : "\n";
  const Summary s = summarize_text(mail);
  EXPECT_EQ(paths(s), (std::vector<std::string>{"TEXT", "1", "2"}));
  EXPECT_EQ(s.sections[0].content_type + "/" + s.sections[0].content_subtype, "multipart/mixed");
  EXPECT_EQ(s.sections[0].start, 0u);
  EXPECT_EQ(s.sections[0].end, mail.size());

  const Section& text = s.sections[1];
  EXPECT_EQ(text.content_subtype, "plain");
  EXPECT_EQ(text.start, mail.find("Content-Type: text/plain"));
  EXPECT_EQ(text.end, mail.find("See the report.") + 15);  // the line break belongs to the delimiter

  const Section& pdf = s.sections[2];
  EXPECT_EQ(pdf.content_type, "application");
  EXPECT_EQ(pdf.content_subtype, "pdf");
  EXPECT_EQ(pdf.content_type_filename, "report.pdf");
  EXPECT_EQ(pdf.content_disposition, "attachment");
  EXPECT_EQ(pdf.content_disposition_filename, "report.pdf");
  EXPECT_EQ(pdf.start, mail.find("Content-Type: application/pdf"));
  EXPECT_EQ(pdf.end, mail.find(kPdfBase64) + kPdfBase64.size());
  const std::string bytes = mail.substr(pdf.start, pdf.end - pdf.start);
  EXPECT_EQ(bytes.find("Content-Type: application/pdf; name=\"report.pdf\"" + nl), 0u);
  EXPECT_NE(bytes.find(nl + nl + kPdfBase64), std::string::npos);
  EXPECT_EQ(bytes.find("--outer"), std::string::npos);

  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].mime_section, 3);
  EXPECT_EQ(s.attachments[0].name, "report.pdf");
  EXPECT_EQ(s.attachments[0].mime_type, "application/pdf");
  EXPECT_EQ(s.attachments[0].size, 51u);
  EXPECT_EQ(s.attachments[0].type, "MIME");
}

INSTANTIATE_TEST_SUITE_P(LfAndCrlf, LineEndTest, ::testing::Bool());

TEST_F(MimeSummaryTest, NestedAlternativeIsNumberedLikeImap) {
  const std::string mail =
      "MIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=b1\n"
      "\n"
      "--b1\n"
      "Content-Type: multipart/alternative; boundary=b1a\n"
      "\n"
      "--b1a\n"
      "Content-Type: text/plain\n"
      "\n"
      "plain\n"
      "--b1a\n"
      "Content-Type: text/html\n"
      "\n"
      "<p>html</p>\n"
      "--b1a--\n"
      "inner epilogue\n"
      "--b1\n"
      "Content-Type: image/png\n"
      "Content-Disposition: inline\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "iVBORw0K\n"
      "--b1--\n";
  const Summary s = summarize_text(mail);
  EXPECT_EQ(paths(s), (std::vector<std::string>{"TEXT", "1", "1.1", "1.2", "2"}));
  const Section& alternative = s.sections[1];
  EXPECT_EQ(alternative.content_subtype, "alternative");
  EXPECT_EQ(alternative.start, mail.find("Content-Type: multipart/alternative"));
  EXPECT_EQ(alternative.end, mail.find("\n--b1\nContent-Type: image/png"));  // "b1a" is not "b1"
  EXPECT_EQ(s.sections[3].content_subtype, "html");
  EXPECT_EQ(s.sections[4].content_disposition, "inline");
  EXPECT_TRUE(s.attachments.empty());  // inline, no file name
}

TEST_F(MimeSummaryTest, NestedMultipartEndIsFoundAcrossReadChunks) {
  // The delimiter scan reads 64 KiB at a time from the part's start; put the
  // outer delimiter across that edge.
  const std::string head = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=out\n\n--out\n";
  const std::string child =
      "Content-Type: multipart/related; boundary=in\n\n--in\nContent-Type: text/plain\n\nx\n--in--\n";
  for (std::size_t at = 65530; at <= 65540; ++at) {
    const std::string mail = head + child + std::string(at - child.size(), 'e') + "\n--out--\n";
    const Summary s = summarize_text(mail);
    ASSERT_EQ(paths(s), (std::vector<std::string>{"TEXT", "1", "1.1"}));
    EXPECT_EQ(s.sections[1].start, head.size());
    EXPECT_EQ(s.sections[1].end, head.size() + at) << at;
  }
}

TEST_F(MimeSummaryTest, Rfc2231FileNamesAreDecoded) {
  const Summary s = summarize_text(
      "MIME-Version: 1.0\n"
      "Content-Type: application/octet-stream;\n"
      " name*0*=UTF-8''na%C3%AFve;\n"
      " name*1*=%20plan.xlsx\n"
      "Content-Disposition: attachment; filename*=UTF-8''%C3%A9t%C3%A9.xlsx\n"
      "\n"
      "data\n");
  ASSERT_EQ(s.sections.size(), 1u);
  EXPECT_EQ(s.sections[0].content_type_filename, "naïve plan.xlsx");
  EXPECT_EQ(s.sections[0].content_disposition_filename, "été.xlsx");
  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].name, "été.xlsx");
  EXPECT_EQ(s.attachments[0].mime_type, "application/octet-stream");
  EXPECT_EQ(s.attachments[0].size, 5u);
}

const std::string kUue =
    "begin 644 fox.txt\n"
    "M5&AE('%U:6-K(&)R;W=N(&9O>\"!J=6UP<R!O=F5R('1H92!L87IY(&1O9RX@\n"
    "$,#$R,P``\n"
    "`\n"
    "end\n";

TEST_F(MimeSummaryTest, UuencodedBlockInPlainMessageIsUue) {
  const Summary s = summarize_text("Subject: fox\n\nHere it is:\n\n" + kUue + "bye\n");
  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].mime_section, 1);
  EXPECT_EQ(s.attachments[0].name, "fox.txt");
  EXPECT_EQ(s.attachments[0].mime_type, "text/plain");
  EXPECT_EQ(s.attachments[0].size, 49u);
  EXPECT_EQ(s.attachments[0].type, "UUE");
}

TEST_F(MimeSummaryTest, UuencodedBlockInMimePartIsMimeUue) {
  const Summary s = summarize_text(crlf(
      "MIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=x\n"
      "\n"
      "--x\n"
      "Content-Type: text/plain\n"
      "\n"
      "nothing here\n"
      "--x\n"
      "Content-Type: text/plain\n"
      "\n" +
      kUue + "--x--\n"));
  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].mime_section, 3);
  EXPECT_EQ(s.attachments[0].size, 49u);
  EXPECT_EQ(s.attachments[0].type, "MIMEUUE");
}

// BinHex 4.0 text of `bytes` (already run-length escaped).
std::string binhex_text(const std::string& bytes) {
  static const std::string alphabet = "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
  std::string out;
  unsigned bits = 0, n = 0;
  for (unsigned char b : bytes) {
    bits = (bits << 8) | b;
    for (n += 8; n >= 6; n -= 6) out += alphabet[(bits >> (n - 6)) & 63];
  }
  if (n) out += alphabet[(bits << (6 - n)) & 63];
  return out;
}

TEST_F(MimeSummaryTest, BinhexBlockGivesNameAndDataForkLength) {
  // Name "aaaa.exe" as 'a' + run of 4; data fork 0x90 (144) bytes, 0x90 escaped.
  const std::string header = std::string("\x08" "a\x90\x04.exe" "\0" "APPLmac?" "\0\0" "\0\0\0\x90\0" "\0\0\0\0" "\0\0",
                                         1 + 7 + 1 + 8 + 2 + 5 + 4 + 2);
  const std::string encoded = binhex_text(header + std::string(40, 'z'));
  const Summary s = summarize_text("Subject: mac\n\n(This file must be converted with BinHex 4.0)\n\n:" +
                                   encoded.substr(0, 40) + "\n" + encoded.substr(40) + ":\ntail\n");
  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].name, "aaaa.exe");
  EXPECT_EQ(s.attachments[0].size, 144u);
  EXPECT_EQ(s.attachments[0].mime_type, "application/x-msdownload");
  EXPECT_EQ(s.attachments[0].type, "BINHEX");
}

TEST_F(MimeSummaryTest, TnefPartIsTnefAttachment) {
  const Summary s = summarize_text(
      "MIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=t\n"
      "\n"
      "--t\n"
      "Content-Type: application/ms-tnef\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "eJ8+IgAA\n"
      "--t--\n");
  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].type, "TNEF");
  EXPECT_EQ(s.attachments[0].size, 6u);
  EXPECT_EQ(s.attachments[0].name, "");
}

TEST_F(MimeSummaryTest, ForwardedMessageIsNumberedInsideItsPart) {
  const std::string mail =
      "MIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=f\n"
      "\n"
      "--f\n"
      "Content-Type: text/plain\n"
      "\n"
      "fwd\n"
      "--f\n"
      "Content-Type: message/rfc822\n"
      "\n"
      "Subject: inner\n"
      "MIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=g\n"
      "\n"
      "--g\n"
      "Content-Type: text/plain\n"
      "\n"
      "inner text\n"
      "--g\n"
      "Content-Type: application/zip; name=x.zip\n"
      "\n"
      "PK\n"
      "--g--\n"
      "--f--\n";
  const Summary s = summarize_text(mail);
  EXPECT_EQ(paths(s), (std::vector<std::string>{"TEXT", "1", "2", "2.TEXT", "2.1", "2.2"}));
  EXPECT_EQ(s.subject, "");
  EXPECT_EQ(s.sections[2].end, mail.find("\n--f--"));
  EXPECT_EQ(s.sections[3].start, mail.find("Subject: inner"));
  EXPECT_EQ(s.sections[3].end, s.sections[2].end);
  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].mime_section, 6);
  EXPECT_EQ(s.attachments[0].name, "x.zip");
  EXPECT_EQ(s.attachments[0].size, 2u);  // "PK": the line break belongs to the delimiter
}

TEST_F(MimeSummaryTest, AddressListsAreBareAddressesWithGroupsExpanded) {
  const Summary s = summarize_text(
      "From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.org>\n"
      "To: \"Doe, Jane\" <jane@example.net>, bob@example.net (Bob),\n"
      " team: carol@example.com, Dave <dave@example.com>;\n"
      "Cc: undisclosed-recipients:;, <eve@example.org>\n"
      "\n"
      "hi\n");
  EXPECT_EQ(s.from, "Jörg <joerg@example.org>");
  EXPECT_EQ(s.to, (std::vector<std::string>{"jane@example.net", "bob@example.net", "carol@example.com",
                                            "dave@example.com"}));
  EXPECT_EQ(s.cc, (std::vector<std::string>{"eve@example.org"}));
}

TEST_F(MimeSummaryTest, TruncatedMultipartGivesWhatWasRead) {
  const std::string mail =
      "MIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=cut\n"
      "\n"
      "--cut\n"
      "Content-Type: text/plain\n"
      "\n"
      "first\n"
      "--cut\n"
      "Content-Type: application/pdf; name=half.pdf\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "JVBERi0x";
  const Summary s = summarize_text(mail);
  EXPECT_EQ(paths(s), (std::vector<std::string>{"TEXT", "1", "2"}));
  EXPECT_EQ(s.sections[2].end, mail.size());
  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].name, "half.pdf");
  EXPECT_EQ(s.attachments[0].size, 6u);
}

TEST_F(MimeSummaryTest, GarbageAndEmptyFilesStillGiveOneTextSection) {
  for (const std::string& mail : {std::string(), std::string("\0\0\xff\n--\n", 6), std::string("no headers at all")}) {
    const Summary s = summarize_text(mail);
    EXPECT_EQ(s.size, mail.size());
    ASSERT_FALSE(s.sections.empty());
    EXPECT_EQ(s.sections[0].path, "1");
    EXPECT_EQ(s.sections[0].end, mail.size());
  }
}

TEST_F(MimeSummaryTest, MissingFileIsAnErrorNamingThePath) {
  std::string error;
  const fs::path path = dir_ / "gone.eml";
  EXPECT_FALSE(summarize(path, error).has_value());
  EXPECT_NE(error.find(path.string()), std::string::npos) << error;
}

TEST_F(MimeSummaryTest, ConcurrentCallersGetTheSameSummary) {
  const fs::path path = write("shared.eml", crlf(kMixed));
  std::vector<std::thread> threads;
  std::vector<std::size_t> attachments(8);
  for (std::size_t t = 0; t < attachments.size(); ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string error;
        const auto s = summarize(path, error);
        attachments[t] += s ? s->attachments.size() : 100;
      }
    });
  for (auto& thread : threads) thread.join();
  for (std::size_t n : attachments) EXPECT_EQ(n, 50u);
}

}  // namespace
}  // namespace mailhook::policyd::mime
