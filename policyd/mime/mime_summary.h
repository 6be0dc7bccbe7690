// MIME summary of a message file: the subject, addresses, MIME structure and
// attachments a policy script sees (VPOP3's ProcessMessage and
// CheckRecipients arguments), as plain structs. Parses with GMime; never
// throws and never modifies the file. Knows nothing of Lua.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mailhook::policyd::mime {

// One MIME part, in depth-first order.
struct Section {
  // IMAP part number (RFC 3501 6.4.5): the body of a non-multipart message
  // is "1"; the children of a multipart are "1", "2", ...; their children
  // "2.1", ...; the body of a message/rfc822 part "3" is "3.1" or, when
  // multipart, has children "3.1", "3.2", .... A multipart that is the body
  // of a message has no number in IMAP; it gets the IMAP name of that body:
  // "TEXT" for the top-level message, "3.TEXT" inside message/rfc822 "3".
  std::string path;
  std::string content_type;     // "text", "image", "multipart" (lower case)
  std::string content_subtype;  // "plain", "html", "mixed" (lower case)
  std::string content_type_filename;         // Content-Type name= (decoded, RFC 2231/2047)
  std::string content_disposition;           // "inline", "attachment" or "" (lower case)
  std::string content_disposition_filename;  // Content-Disposition filename=
  // Byte offsets in the file, [start, end):
  // start: the first byte of the part's first header line (of a headerless
  //   part: of its content). The body of a message (top-level or inside
  //   message/rfc822) starts at the message's first header, so the top-level
  //   body's start is 0.
  // end: one past the part's last content byte. The line break before the
  //   next boundary delimiter belongs to the delimiter (RFC 2046 5.1.1), so
  //   it is excluded; a multipart's end covers its close delimiter and
  //   epilogue. The top-level body ends at the end of the file; a part whose
  //   multipart is truncated ends where its parent ends.
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};

struct Attachment {
  int mime_section = 0;   // 1-based index into Summary::sections of the part it is in
  std::string name;       // decoded file name, "" when none
  std::string mime_type;  // "application/pdf" (lower case)
  // MIME: decoded content length, exact. UUE: the sum of the lines' length
  // bytes, exact for well-formed data. BINHEX: the data fork length from
  // the BinHex header.
  std::uint64_t size = 0;
  std::string type;  // "MIME", "UUE", "BINHEX", "MIMEUUE", "MIMEBINHEX", "TNEF"
};

struct Summary {
  std::string subject;              // decoded (RFC 2047), "" when none
  std::string from;                 // From: as one decoded string ("Ann <ann@example.org>")
  std::vector<std::string> to, cc;  // bare addresses from To:/Cc:, groups expanded
  std::uint64_t size = 0;           // file size in bytes
  std::vector<Section> sections;
  std::vector<Attachment> attachments;
};

// Parses the RFC 5322 message in `path` (CRLF or LF line ends). Malformed
// mail gives what could be read (at least `size` and one Section "1"
// text/plain spanning the file). nullopt, with `error` naming the path,
// only when the file cannot be opened. Safe to call from several threads.
std::optional<Summary> summarize(const std::filesystem::path& path, std::string& error);

}  // namespace mailhook::policyd::mime
