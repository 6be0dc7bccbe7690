-- The policy the miltertest scripts (and test_milter.py) drive through
-- mailhook-policyd --milter: one behaviour per input value.
function hook.accept(ip, ptr)
  if ip == "192.0.2.66" then return "554 5.7.1 go away\r\n" end
end
function hook.helo(h)
  if h == "bad.example" then return "550 5.7.1 helo " .. h .. " is 100% wrong\r\n" end
  if h == "bye.example" then return "421 4.7.0 closing now\r\n" end
end
function hook.mail(s)
  if s == "temp@example.com" then return "451 4.3.2 try later\r\n" end
end
function hook.rcpt(r)
  if r == "no@example.com" then
    return "550-5.1.1 no such user\r\n550 5.1.1 see " .. (client.macros["{rcpt_addr}"] or "?") .. "\r\n"
  end
end
function hook.data()
  if client.macros["i"] == "Q-REFUSE" then return "554 5.7.1 no data for " .. client.queue_id .. "\r\n" end
end
function hook.unknown(line) return "502 5.5.2 unknown " .. line .. "\r\n" end
function hook.dot(path)
  local f = io.open(path, "rb")
  local m = f:read("a")
  f:close()
  if m:find("REFUSE", 1, true) then return "550 5.7.1 refused at dot\r\n" end
  if m:find("DISCARD", 1, true) then message.discard() return end
  message.add_header("X-Mailhook", "user=" .. (client.auth_user or "-") .. " tls=" .. (client.tls_protocol or "-"))
  message.change_header("X-Remove", 1, nil)
  if m:find("CHANGES", 1, true) then
    message.insert_header(0, "X-First", "first")
    message.change_header("Subject", 1, "changed")
    message.add_rcpt("added@example.com")
    message.del_rcpt("gone@example.com")
    message.change_from("new@example.com")
    message.replace_body("new body\r\n")
    message.quarantine("held for review")
  end
end
