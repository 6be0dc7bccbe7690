-- miltertest: message changes requested at eom, and discard.
local function expect(ok, what) if not ok then error(what, 2) end end
local function message(subject, macros)
  local c = mt.connect("inet:" .. os.getenv("PORT") .. "@127.0.0.1", 40, 0.05)
  expect(c, "connect")
  expect(mt.conninfo(c, "client.example", "192.0.2.1") == nil, "conninfo")
  mt.macro(c, SMFIC_HELO, "{tls_version}", "TLSv1.3", "{cipher}", "TLS_AES_256_GCM_SHA384")
  expect(mt.helo(c, "good.example") == nil, "helo")
  mt.macro(c, SMFIC_MAIL, "{auth_authen}", "alice", "i", "Q1")
  expect(mt.mailfrom(c, "<a@example.com>") == nil, "mail")
  expect(mt.rcptto(c, "<gone@example.com>") == nil, "rcpt")
  expect(mt.header(c, "Subject", subject) == nil, "header")
  expect(mt.header(c, "X-Remove", "bye") == nil, "header 2")
  expect(mt.eoh(c) == nil, "eoh")
  expect(mt.bodystring(c, "hello\r\n") == nil, "body")
  expect(mt.eom(c) == nil, "eom")
  return c
end

local c = message("plain")
expect(mt.getreply(c) == SMFIR_CONTINUE, "eom continues")
expect(mt.eom_check(c, MT_HDRADD, "X-Mailhook", "user=alice tls=TLSv1.3"), "header added with macros")
expect(mt.eom_check(c, MT_HDRDELETE, "X-Remove"), "header deleted")
expect(not mt.eom_check(c, MT_BODYCHANGE), "body untouched")
mt.disconnect(c)

c = message("CHANGES")
expect(mt.eom_check(c, MT_HDRINSERT, "X-First", "first"), "header inserted")
expect(mt.eom_check(c, MT_HDRCHANGE, "Subject", "changed"), "header changed")
expect(mt.eom_check(c, MT_RCPTADD, "<added@example.com>"), "recipient added")
expect(mt.eom_check(c, MT_RCPTDELETE, "<gone@example.com>"), "recipient deleted")
expect(mt.eom_check(c, MT_BODYCHANGE, "new body\r\n"), "body replaced")
expect(mt.eom_check(c, MT_QUARANTINE, "held for review"), "quarantined")
mt.disconnect(c)

c = message("DISCARD")
expect(mt.getreply(c) == SMFIR_DISCARD, "discarded")
mt.disconnect(c)
