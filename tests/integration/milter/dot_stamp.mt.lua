-- miltertest: a hook.dot() without a parameter needs the end of message,
-- not the message: no header, end-of-header or body step is negotiated
-- (run against milter/dot_stamp.lua).
local function expect(ok, what) if not ok then error(what, 2) end end
local c = mt.connect("inet:" .. os.getenv("PORT") .. "@127.0.0.1", 40, 0.05)
expect(c, "connect")
expect(mt.conninfo(c, "client.example", "192.0.2.1") == nil, "conninfo")
expect(mt.test_option(c, SMFIP_NOHDRS), "no headers")
expect(mt.test_option(c, SMFIP_NOEOH), "no end of header")
expect(mt.test_option(c, SMFIP_NOBODY), "no body")
expect(mt.test_option(c, SMFIP_SKIP), "SKIP offered to the MTA")
expect(mt.mailfrom(c, "<a@example.com>") == nil, "mail")
expect(mt.rcptto(c, "<blocked@example.com>") == nil, "rcpt")
expect(mt.getreply(c) == SMFIR_REPLYCODE, "rcpt refused")
expect(mt.rcptto(c, "<b@example.com>") == nil, "rcpt 2")
expect(mt.getreply(c) == SMFIR_CONTINUE, "rcpt 2 continues")
expect(mt.eom(c) == nil, "eom")
expect(mt.getreply(c) == SMFIR_CONTINUE, "eom continues")
expect(mt.eom_check(c, MT_HDRADD, "X-Stamp", "stamped"), "header added")
mt.disconnect(c)
