// summarize(): walks GMime's parse of a message file into Summary (see the
// header for the numbering and offset rules) and scans text parts for
// uuencoded and BinHex blocks. Reads the file only; keeps no state between
// calls, so worker threads may call it at once (GMime parsers are
// independent; g_mime_init runs once, guarded by std::call_once).
#include "policyd/mime/mime_summary.h"

#include <fcntl.h>
#include <gmime/gmime.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string_view>

namespace mailhook::policyd::mime {
namespace {

struct Unref {
  void operator()(gpointer object) const { g_object_unref(object); }
};
template <class T>
using Ref = std::unique_ptr<T, Unref>;

std::string text(const char* s) { return s ? s : ""; }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The MIME type of a non-MIME attachment, guessed from its file name.
std::string mime_type_of_name(const std::string& name, const char* fallback) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 16> kTypes{{
      {"pdf", "application/pdf"}, {"zip", "application/zip"}, {"exe", "application/x-msdownload"},
      {"doc", "application/msword"}, {"xls", "application/vnd.ms-excel"}, {"rtf", "application/rtf"},
      {"gz", "application/gzip"}, {"rar", "application/vnd.rar"}, {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"},
      {"png", "image/png"}, {"gif", "image/gif"}, {"txt", "text/plain"}, {"htm", "text/html"},
      {"html", "text/html"}, {"js", "text/javascript"}}};
  const auto dot = name.rfind('.');
  const std::string ext = dot == std::string::npos ? "" : lower(name.substr(dot + 1));
  for (const auto& [e, type] : kTypes)
    if (e == ext) return std::string(type);
  return fallback;
}

// BinHex 4.0 header (name length, name, version, type, creator, flags, data
// fork length) from the encoded text after the opening ':'. Decodes the
// 6-bit alphabet and the 0x90 run-length escape; false if too short.
bool binhex_header(std::string_view encoded, Attachment& out) {
  static constexpr std::string_view kAlphabet =
      "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
  std::string bytes;
  unsigned bits = 0, nbits = 0;
  bool run = false;
  for (char c : encoded) {
    const auto v = kAlphabet.find(c);
    if (v == std::string_view::npos) continue;  // line breaks
    bits = (bits << 6) | static_cast<unsigned>(v);
    if ((nbits += 6) < 8) continue;
    const auto byte = static_cast<unsigned char>(bits >> (nbits -= 8));
    bits &= (1u << nbits) - 1;
    if (run) {
      run = false;
      if (byte == 0) bytes += '\x90';
      else if (!bytes.empty()) bytes.append(byte - 1, bytes.back());
    } else if (byte == 0x90) {
      run = true;
    } else {
      bytes += static_cast<char>(byte);
    }
  }
  const std::size_t name_len = bytes.empty() ? 0 : static_cast<unsigned char>(bytes[0]);
  const std::size_t data_len_at = 1 + name_len + 1 + 4 + 4 + 2;
  if (bytes.size() < data_len_at + 4) return false;
  out.name = bytes.substr(1, name_len);
  for (std::size_t i = data_len_at; i < data_len_at + 4; ++i)
    out.size = (out.size << 8) | static_cast<unsigned char>(bytes[i]);
  return true;
}

// "begin 644 name" opens a uuencoded block: the name, else nullopt.
std::optional<std::string> uue_begin(std::string_view line) {
  if (!line.starts_with("begin ")) return std::nullopt;
  const auto mode_end = line.find_first_not_of("01234567", 6);
  if (mode_end == std::string_view::npos || mode_end < 9 || mode_end > 10 || line[mode_end] != ' ')
    return std::nullopt;
  return std::string(line.substr(mode_end + 1));
}

class Walker {
 public:
  // `top`: the top-level body; `mime_version`: the message has MIME-Version.
  Walker(GMimeStream* file, GMimeObject* top, bool mime_version, Summary& out)
      : file_(file), top_(top), mime_version_(mime_version), out_(out) {}

  // The body of a message: IMAP number "1" (prefix.1), or, when multipart,
  // unnumbered ("TEXT") with children numbered from `prefix`.
  void body(GMimeObject* obj, const std::string& prefix, std::uint64_t start, std::uint64_t end) {
    const std::string dot = prefix.empty() ? "" : prefix + ".";
    if (GMIME_IS_MULTIPART(obj)) return visit(obj, dot + "TEXT", prefix, start, end);
    visit(obj, dot + "1", dot + "1", start, end);
  }

 private:
  void visit(GMimeObject* obj, std::string path, const std::string& prefix, std::uint64_t start,
             std::uint64_t end) {
    GMimeContentType* ct = g_mime_object_get_content_type(obj);
    const Section s{std::move(path), lower(text(g_mime_content_type_get_media_type(ct))),
                    lower(text(g_mime_content_type_get_media_subtype(ct))),
                    text(g_mime_content_type_get_parameter(ct, "name")),
                    lower(text(g_mime_object_get_disposition(obj))),
                    text(g_mime_object_get_content_disposition_parameter(obj, "filename")), start, end};
    out_.sections.push_back(s);
    const int index = static_cast<int>(out_.sections.size());
    const bool named = s.content_disposition == "attachment" || !s.content_type_filename.empty() ||
                       !s.content_disposition_filename.empty();
    const std::string mime_type = s.content_type + "/" + s.content_subtype;
    const std::string name = s.content_disposition_filename.empty() ? s.content_type_filename
                                                                    : s.content_disposition_filename;

    if (GMIME_IS_MULTIPART(obj)) {
      children(GMIME_MULTIPART(obj), prefix, start, end);
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
      const std::uint64_t inner_start = inner ? std::max(start_of(GMIME_OBJECT(inner), end), start) : end;
      if (named) out_.attachments.push_back({index, name, mime_type, end - inner_start, "MIME"});
      if (GMimeObject* inner_body = inner ? g_mime_message_get_mime_part(inner) : nullptr)
        body(inner_body, prefix, inner_start, end);
    } else if (GMIME_IS_PART(obj)) {
      GMimeDataWrapper* content = g_mime_part_get_content(GMIME_PART(obj));
      const bool tnef = mime_type == "application/ms-tnef" || mime_type == "application/vnd.ms-tnef";
      if (named || tnef) {
        Ref<GMimeStream> null(g_mime_stream_null_new());
        const ssize_t size = content ? g_mime_data_wrapper_write_to_stream(content, null.get()) : 0;
        out_.attachments.push_back({index, name, mime_type, static_cast<std::uint64_t>(std::max<ssize_t>(size, 0)),
                                    tnef ? "TNEF" : "MIME"});
      }
      if (content && s.content_type == "text")
        scan_text(content, index, mime_version_ || obj != top_);
    }
  }

  // A multipart's children: each ends at its content's end (leaves) or at
  // the line break before the next delimiter (containers).
  void children(GMimeMultipart* multipart, const std::string& prefix, std::uint64_t start, std::uint64_t end) {
    const char* boundary = g_mime_multipart_get_boundary(multipart);
    for (int i = 0; i < g_mime_multipart_get_count(multipart); ++i) {
      GMimeObject* child = g_mime_multipart_get_part(multipart, i);
      const std::string number = (prefix.empty() ? "" : prefix + ".") + std::to_string(i + 1);
      const std::uint64_t child_start = std::max(start_of(child, end), start);
      GMimeStream* content = content_of(child);
      const std::uint64_t child_end = content ? static_cast<std::uint64_t>(content->bound_end)
                                      : boundary ? delimiter(boundary, child_start, end) : end;
      visit(child, number, number, child_start, std::clamp(child_end, child_start, end));
    }
  }

  // A leaf's content: a substream of the file, its bounds GMime's offsets
  // (the parser persists the stream). Null for containers.
  static GMimeStream* content_of(GMimeObject* obj) {
    GMimeDataWrapper* content = GMIME_IS_PART(obj) ? g_mime_part_get_content(GMIME_PART(obj)) : nullptr;
    return content ? g_mime_data_wrapper_get_stream(content) : nullptr;
  }

  // Where a part's first header line begins, or its content when it has none.
  static std::uint64_t start_of(GMimeObject* obj, std::uint64_t fallback) {
    GMimeHeaderList* headers = g_mime_object_get_header_list(obj);
    gint64 offset = -1;
    if (g_mime_header_list_get_count(headers) > 0)
      offset = g_mime_header_get_offset(g_mime_header_list_get_header_at(headers, 0));
    else if (GMimeStream* content = content_of(obj))
      offset = content->bound_start;
    return offset >= 0 ? static_cast<std::uint64_t>(offset) : fallback;
  }

  // RFC 2046 5.1.1: the offset of the line break before the first line in
  // [from, limit) that starts with "--boundary" (not a longer boundary);
  // `limit` when there is none (truncated mail).
  std::uint64_t delimiter(const std::string& boundary, std::uint64_t from, std::uint64_t limit) {
    const std::string needle = "\n--" + boundary;
    Ref<GMimeStream> range(g_mime_stream_substream(file_, static_cast<gint64>(from), static_cast<gint64>(limit)));
    std::string window;
    std::uint64_t window_at = from;
    std::array<char, 65536> chunk{};
    for (;;) {
      const ssize_t n = g_mime_stream_read(range.get(), chunk.data(), chunk.size());
      const bool last = n <= 0;
      if (!last) window.append(chunk.data(), static_cast<std::size_t>(n));
      for (std::size_t at = window.find(needle); at != std::string::npos; at = window.find(needle, at + 1)) {
        const std::size_t after = at + needle.size();
        if (after == window.size() && !last) break;  // decide once the next byte is read
        if (after == window.size() || std::strchr("-\r\n \t", window[after]))
          return window_at + at - (at > 0 && window[at - 1] == '\r');
      }
      if (last) return limit;
      const std::size_t keep = std::min(window.size(), needle.size() + 1);
      window_at += window.size() - keep;
      window.erase(0, window.size() - keep);
    }
  }

  // uuencoded ("begin 644 name" ... "end") and BinHex 4.0 blocks in a
  // decoded text part, line by line.
  void scan_text(GMimeDataWrapper* content, int index, bool mime) {
    GMimeStream* raw = g_mime_data_wrapper_get_stream(content);
    g_mime_stream_reset(raw);
    Ref<GMimeStream> decoded(g_mime_stream_filter_new(raw));
    Ref<GMimeFilter> decoder(g_mime_filter_basic_new(g_mime_data_wrapper_get_encoding(content), FALSE));
    g_mime_stream_filter_add(GMIME_STREAM_FILTER(decoded.get()), decoder.get());  // 7bit etc.: copies
    Ref<GMimeStream> lines(g_mime_stream_buffer_new(decoded.get(), GMIME_STREAM_BUFFER_BLOCK_READ));
    std::unique_ptr<GByteArray, void (*)(GByteArray*)> buffer(g_byte_array_new(), g_byte_array_unref);
    enum { kText, kUue, kBinhex } state = kText;
    Attachment found;
    std::string binhex;
    const auto finish = [&] {
      if (state == kBinhex) binhex_header(std::string_view(binhex).substr(binhex.find(':') + 1), found);
      found.mime_type = mime_type_of_name(found.name, state == kUue ? "application/octet-stream"
                                                                      : "application/mac-binhex40");
      out_.attachments.push_back(found);
      state = kText;
    };
    while (!g_mime_stream_eos(lines.get())) {
      g_byte_array_set_size(buffer.get(), 0);
      g_mime_stream_buffer_readln(lines.get(), buffer.get());
      if (buffer->len == 0) break;
      std::string_view line(reinterpret_cast<const char*>(buffer->data), buffer->len);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
      if (state == kUue) {
        if (line == "end") finish();
        else if (!line.empty()) found.size += (static_cast<unsigned char>(line[0]) - 32) & 63;
      } else if (state == kBinhex) {
        // The data runs from a ':' to the next; the header needs its first
        // few hundred characters only.
        if (binhex.empty() && line.find(':') == std::string_view::npos) continue;
        const bool closes = line.find(':', binhex.empty() ? line.find(':') + 1 : 0) != std::string_view::npos;
        if (binhex.size() < kBinhexHeaderChars) binhex.append(line.substr(0, kBinhexHeaderChars));
        if (closes) finish();
      } else if (auto name = uue_begin(line)) {
        state = kUue;
        found = {index, std::move(*name), "", 0, mime ? "MIMEUUE" : "UUE"};
      } else if (line.starts_with("(This file must be converted with BinHex")) {
        state = kBinhex;
        found = {index, "", "", 0, mime ? "MIMEBINHEX" : "BINHEX"};
        binhex.clear();
      }
    }
    if (state != kText) finish();  // unterminated block: still an attachment
  }

  static constexpr std::size_t kBinhexHeaderChars = 512;  // > 4/3 of a 255-byte name + 18
  GMimeStream* file_;
  GMimeObject* top_;
  bool mime_version_;
  Summary& out_;
};

void add_addresses(InternetAddressList* list, std::vector<std::string>& out) {
  for (int i = 0; list && i < internet_address_list_length(list); ++i) {
    InternetAddress* address = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_GROUP(address))
      add_addresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(address)), out);
    else if (INTERNET_ADDRESS_IS_MAILBOX(address))
      out.push_back(text(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(address))));
  }
}

}  // namespace

std::optional<Summary> summarize(const std::filesystem::path& path, std::string& error) {
  static std::once_flag gmime_once;
  std::call_once(gmime_once, [] { g_mime_init(); });

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    error = "cannot open " + path.string() + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  }
  Summary summary;
  summary.size = static_cast<std::uint64_t>(st.st_size);
  Ref<GMimeStream> file(g_mime_stream_fs_new(fd));  // owns fd from here
  Ref<GMimeParser> parser(g_mime_parser_new_with_stream(file.get()));
  g_mime_parser_set_persist_stream(parser.get(), TRUE);  // content stays in the file: offsets
  Ref<GMimeMessage> message(g_mime_parser_construct_message(parser.get(), nullptr));
  GMimeObject* top = message ? g_mime_message_get_mime_part(message.get()) : nullptr;
  if (!top) {
    summary.sections.push_back({"1", "text", "plain", "", "", "", 0, summary.size});
    return summary;
  }
  summary.subject = text(g_mime_message_get_subject(message.get()));
  if (InternetAddressList* from = g_mime_message_get_from(message.get());
      from && internet_address_list_length(from) > 0) {
    std::unique_ptr<char, void (*)(gpointer)> s(internet_address_list_to_string(from, nullptr, FALSE), g_free);
    summary.from = text(s.get());
  }
  add_addresses(g_mime_message_get_to(message.get()), summary.to);
  add_addresses(g_mime_message_get_cc(message.get()), summary.cc);
  const bool mime_version = g_mime_object_get_header(GMIME_OBJECT(message.get()), "MIME-Version") != nullptr;
  Walker(file.get(), top, mime_version, summary).body(top, "", 0, summary.size);
  return summary;
}

}  // namespace mailhook::policyd::mime
