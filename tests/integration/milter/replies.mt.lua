-- miltertest: each callback's reply. Run by test_milter.py with PORT set.
local function expect(ok, what) if not ok then error(what, 2) end end
local function open(ip)
  local conn = mt.connect("inet:" .. os.getenv("PORT") .. "@127.0.0.1", 40, 0.05)
  expect(conn, "connect")
  expect(mt.conninfo(conn, "client.example", ip) == nil, "conninfo")
  return conn
end

-- connect: a refusal rejects (libmilter allows no custom text at connect)
local c = open("192.0.2.66")
expect(mt.getreply(c) == SMFIR_REJECT, "accept refusal -> reject")
mt.disconnect(c)

c = open("192.0.2.1")
expect(mt.getreply(c) == SMFIR_CONTINUE, "connect continues")
-- helo: 5xx with the script's text (custom reply), then one that passes
expect(mt.helo(c, "bad.example") == nil, "helo")
expect(mt.getreply(c) == SMFIR_REPLYCODE, "helo 550 -> reply code")
expect(mt.helo(c, "good.example") == nil, "helo 2")
expect(mt.getreply(c) == SMFIR_CONTINUE, "helo continues")
-- mail: 4xx
expect(mt.mailfrom(c, "<temp@example.com>") == nil, "mail")
expect(mt.getreply(c) == SMFIR_REPLYCODE, "mail 451 -> reply code")
expect(mt.mailfrom(c, "<a@example.com>", "SIZE=100", "BODY=8BITMIME") == nil, "mail 2")
expect(mt.getreply(c) == SMFIR_CONTINUE, "mail continues")
-- rcpt: a multi-line 550 for one recipient only
mt.macro(c, SMFIC_RCPT, "{rcpt_addr}", "no@example.com")
expect(mt.rcptto(c, "<no@example.com>") == nil, "rcpt")
expect(mt.getreply(c) == SMFIR_REPLYCODE, "rcpt 550 -> reply code")
expect(mt.rcptto(c, "<yes@example.com>") == nil, "rcpt 2")
expect(mt.getreply(c) == SMFIR_CONTINUE, "the next recipient continues")
-- unknown command
expect(mt.unknown(c, "FOO bar") == nil, "unknown")
expect(mt.getreply(c) == SMFIR_REPLYCODE, "unknown -> reply code")
-- eom: refusal with the exact code, enhanced code and text
expect(mt.header(c, "Subject", "REFUSE me") == nil, "header")
expect(mt.eoh(c) == nil, "eoh")
expect(mt.bodystring(c, "body\r\n") == nil, "body")
expect(mt.eom(c) == nil, "eom")
expect(mt.getreply(c) == SMFIR_REPLYCODE, "eom refusal")
expect(mt.eom_check(c, MT_SMTPREPLY, "550", "5.7.1", "refused at dot"), "eom reply text")
mt.disconnect(c)

-- data: the queue id macro reaches client.queue_id / client.macros.i
c = open("192.0.2.2")
expect(mt.helo(c, "good.example") == nil, "helo")
mt.macro(c, SMFIC_MAIL, "i", "Q-REFUSE")
expect(mt.mailfrom(c, "<a@example.com>") == nil, "mail")
expect(mt.rcptto(c, "<yes@example.com>") == nil, "rcpt")
expect(mt.data(c) == nil, "data")
expect(mt.getreply(c) == SMFIR_REPLYCODE, "data refused by queue id")
mt.disconnect(c)

-- 421 from helo: tempfail with the reply (the MTA closes)
c = open("192.0.2.3")
expect(mt.helo(c, "bye.example") == nil, "helo")
expect(mt.getreply(c) == SMFIR_REPLYCODE, "421 -> reply code")
mt.disconnect(c)
