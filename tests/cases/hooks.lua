-- The policy tests/cases/hooks.case runs: one behaviour of the native API
-- per trigger, each checked through mailhook-policyd --test.
function hook.helo(name)
  if name == "multi.example" then return "250-first line\r\n250 second line\r\n" end
  if name == "bye.example" then return "421 4.7.0 closing now\r\n" end
  if name == "broken.example" then return "25 not a reply" end
  if name == "drop.example" then mailhook.disconnect() return "550 5.7.1 go away\r\n" end
end

function hook.ehlo(name)
  if name == "small.example" then mailhook.limits{ max_message_size = 1000 } end
  -- XPLAIN is no keyword of the default reply; 8BITMIME (one of it) goes
  if name == "plain.example" then mailhook.ehlo_keywords{ "PIPELINING", "XPLAIN" } end
  if name == "ptr.example" then return "250 " .. client.host .. "\r\n" end
end

function hook.mail(sender)
  if sender == "mx@example.net" then
    dns.query(dns.class.IN, dns.type.MX, "example.net")
    local rcode, rr = dns.wait(true)
    if rr and rr.answer[1] then return "250 2.1.0 mx " .. rr.answer[1].host .. " " .. rr.answer[1].preference .. "\r\n" end
    return "451 4.4.3 no MX (" .. dns.rcodename(rcode) .. ")\r\n"
  end
end

function hook.vrfy(arg, default)
  if arg == "postmaster" then return "250 2.1.5 <postmaster@mx.test>\r\n" end
end

function hook.data()
  return "354 go ahead, transaction " .. client.id_trans .. "\r\n"
end

function hook.dot(path)
  local f = io.open(path, "rb")
  local text = f:read("a")
  f:close()
  if text:find("DISCARD") then message.discard() return end
  if text:find("QUARANTINE") then message.quarantine("looks odd") return end
  message.insert_header(0, "X-First", "yes")
  message.change_from("bounces@example.com")
  message.add_rcpt("archive@example.com", "NOTIFY=NEVER")
  message.del_rcpt("b@example.com")
end
