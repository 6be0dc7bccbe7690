-- miltertest: a shadow policy that would refuse a recipient lets it
-- through and adds no header (test_shadow_trace).
local function expect(ok, what) if not ok then error(what, 2) end end
local c = mt.connect("inet:" .. os.getenv("PORT") .. "@127.0.0.1", 40, 0.05)
expect(c, "connect")
expect(mt.conninfo(c, "client.example", "192.0.2.1") == nil, "conninfo")
expect(mt.mailfrom(c, "<s@example.com>") == nil, "mail")
expect(mt.rcptto(c, "<x@blocked.example>") == nil, "rcpt")
expect(mt.getreply(c) == SMFIR_CONTINUE, "the shadow refusal is not sent")
expect(mt.header(c, "Subject", "s") == nil, "header")
expect(mt.eoh(c) == nil, "eoh")
expect(mt.bodystring(c, "hi\r\n") == nil, "body")
expect(mt.eom(c) == nil, "eom")
expect(not mt.eom_check(c, MT_HDRADD, "X-Shadow-Test"), "no header added in shadow")
mt.disconnect(c)
