// The pure half of the milter adapter: what to negotiate for a set of
// capabilities, how a Decision's reply becomes a milter status and reply,
// how envfrom/envrcpt arguments become an address and ESMTP parameters,
// and which macros are read. No I/O, no threads: unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mailcore/event/event.h"

namespace mailhook::policyd::milter {

// SMFIP_* / SMFIF_* bits of the milter protocol (the values of Sendmail's
// mfdef.h, which Postfix's milter8.c uses too).
namespace flag {
inline constexpr unsigned long kNoConnect = 0x1, kNoHelo = 0x2, kNoMail = 0x4, kNoRcpt = 0x8, kNoBody = 0x10,
                               kNoHdrs = 0x20, kNoEoh = 0x40, kNrHdr = 0x80, kNoUnknown = 0x100, kNoData = 0x200,
                               kSkip = 0x400, kRcptRej = 0x800, kNrConn = 0x1000, kNrHelo = 0x2000,
                               kNrMail = 0x4000, kNrRcpt = 0x8000, kNrData = 0x10000, kNrUnkn = 0x20000,
                               kNrEoh = 0x40000, kNrBody = 0x80000, kHdrLeadspc = 0x100000;
inline constexpr unsigned long kAddHdrs = 0x1, kChgBody = 0x2, kAddRcpt = 0x4, kDelRcpt = 0x8, kChgHdrs = 0x10,
                               kQuarantine = 0x20, kChgFrom = 0x40, kAddRcptPar = 0x80, kSetSymlist = 0x100;
}  // namespace flag

struct Negotiation {
  unsigned long actions = 0;   // what we may do at eom (pf0)
  unsigned long protocol = 0;  // steps we skip or answer without a reply (pf1)
};

// Only the callbacks the scripts use, NR_* where no reply is needed, SKIP
// when nothing reads the body; bounded by what the MTA offers. CONNECT,
// HELO and MAIL always come (without a reply when no script listens):
// they carry the facts later hooks read.
Negotiation negotiate(const Capabilities& caps, unsigned long mta_actions, unsigned long mta_protocol);

// The HELO callback cannot tell HELO from EHLO: it becomes an EHLO event
// when a script defines hook.ehlo, else HELO.
EventKind helo_kind(const Capabilities& caps);

enum class Status : std::uint8_t {
  Continue,  // SMFIS_CONTINUE: the MTA's own reply
  Reject,    // SMFIS_REJECT with the script's 5xx
  Tempfail,  // SMFIS_TEMPFAIL with the script's 4xx (421 also closes)
  Discard,   // SMFIS_DISCARD: accept and drop (eom only)
};

struct MilterReply {
  Status status = Status::Continue;
  std::string code, enhanced;       // "550", "5.7.1" (may be empty)
  std::vector<std::string> lines;   // %-escaped for the MTA, at most 32 (libmilter's limit, which MTAs expect)
};

// 4xx -> Tempfail, 5xx -> Reject with the exact code, enhanced code and
// text; a 2xx/3xx or no reply -> Continue (the MTA answers).
MilterReply milter_reply(const Decision& d);

// "<a@b>" and "SIZE=10" ... -> address a@b and parameters.
void parse_envelope_args(const std::vector<std::string>& argv, std::string& address,
                         std::vector<Parameter>& parameters);

// A header as message bytes: "Name: value\r\n", LF in folded values -> CRLF.
std::string header_bytes(std::string_view name, std::string_view value);

// A header value as the ADDHEADER/CHGHEADER/INSHEADER packets carry it: CRLF -> LF.
std::string milter_header_value(std::string_view value);

// The macros shown to Lua as client.macros (names as the MTA sends them:
// "i", "{auth_authen}").
const std::vector<std::string>& known_macros();

}  // namespace mailhook::policyd::milter
