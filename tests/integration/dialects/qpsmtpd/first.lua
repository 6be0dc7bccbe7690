-- qpsmtpd plugin (first in the chain): one behaviour per hook, driven by
-- the test's addresses and names (tests/integration/test_dialect_qpsmtpd.py).

function register(self, qp)
  self:register_hook("noop", "count_noops")
end

function hook_post_fork(self)
  self:log(LOGINFO, "post_fork ran")
end

function hook_pre_connection(self, transaction, args)
  if args.remote_ip == "127.0.0.2" then return DENY, "pre-connection says no" end
  return DECLINED
end

function hook_connect(self)
  local ip = self:connection():remote_ip()
  if ip == "127.0.0.3" then return DENYSOFT, "not now" end
  if ip == "127.0.0.4" then
    self:qp():respond(220, "custom greeting from a plugin")
    return DONE
  end
  if ip == "127.0.0.5" then self:connection():relay_client(true) end
  self:connection():notes("connected", ip)
  return DECLINED
end

function hook_helo_parse(self, transaction)
  return OK, function(plugin, cmd, line) return OK, line:lower() end
end

function hook_ehlo_parse(self, transaction)
  return OK, function(plugin, cmd, line) return OK, line:lower() end
end

function hook_rcpt_parse(self, transaction)
  return OK, function(plugin, cmd, line)
    if line:find("bad%.parse") then return DENY, "5.5.4 cannot parse that recipient" end
    return OK, line:match("^[Tt][Oo]:%s*(%b<>)")
  end
end

function hook_rcpt_pre(self, transaction, addr)
  if addr == "<alias@example.com>" then return OK, "<ok@example.com>" end
  return DECLINED
end

function hook_queue_pre(self, transaction)
  if transaction:header():get("Subject") == "[tagged] noqueue" then return DONE end
  return DECLINED
end

function hook_helo(self, transaction, host)
  for _, bad in ipairs({ self:qp():config("badhelo") }) do
    if host == bad then return DENY, "bad helo " .. host end
  end
  if host == "disc.example" then return DENY_DISCONNECT, "go away" end
  if host == "upper.example" then
    self:qp():respond(250, "hello " .. host .. " (parsed)")
    return DONE
  end
  return DECLINED
end

function hook_ehlo(self, transaction, host)
  if host == "soft.example" then return DENYSOFT, "try later" end
  return DECLINED
end

function hook_mail_parse(self, transaction)
  return OK, function(plugin, cmd, line)
    if line:find("bad%.parse") then return DENY, "5.5.4 cannot parse that" end
    local addr, rest = line:match("^[Ff][Rr][Oo][Mm]:%s*(%b<>)%s*(.*)$")
    local pieces = { OK, addr }
    for k, v in rest:gmatch("(%w+)=(%S+)") do pieces[#pieces + 1] = k pieces[#pieces + 1] = v end
    return table.unpack(pieces)
  end
end

function hook_mail_pre(self, transaction, addr)
  if addr == "<rewrite@example.com>" or addr == "rewrite@example.com" then return OK, "<rewritten@example.com>" end
  return DECLINED
end

function hook_mail(self, transaction, sender, params)
  local a = sender:address()
  if a == "spam@example.com" then return DENY, "5.7.1 no spam" end
  if a == "bye@example.com" then return DENYSOFT_DISCONNECT, "4.7.1 bye" end
  if a == "greylist@example.com" then transaction:notes("greylist", true) end
  if params.size then
    self:qp():respond(250, "size=" .. params.size .. " body=" .. tostring(params.BODY))
    return DONE
  end
  if a == "rewritten@example.com" then
    self:qp():respond(250, "sender " .. a)
    return DONE
  end
  return DECLINED
end

function hook_rcpt(self, transaction, rcpt, params)
  local a = rcpt:address()
  if a == "no@example.com" then return DENY, "5.1.1 no such user" end
  if a == "later@example.com" then return DENYSOFT end
  if a == "ok@example.com" or a == "drop@example.com" then return OK end
  if a == "who@example.com" then
    self:qp():respond(250, self:connection():remote_ip() .. " " .. self:connection():hello_host() .. " "
                      .. tostring(self:connection():notes("connected")) .. " relay=" .. tostring(self:connection():relay_client()))
    return DONE
  end
  if a == "level@example.com" then
    self:qp():respond(550, "level " .. tostring(rcpt:config("spam_level")))
    return DONE
  end
  if self:connection():relay_client() then return OK end
  return DECLINED
end

function hook_data(self, transaction)
  if transaction:notes("greylist") then return DENYSOFT, "4.7.1 greylisted" end
  return DECLINED
end

function hook_data_headers_end(self, transaction)
  if transaction:header():get("X-Drop") then return DENY_DISCONNECT end
  return DECLINED
end

function hook_received_line(self, transaction, smtp, auth, sslinfo)
  return OK, "from plugin-test by first.lua with " .. smtp
end

function hook_data_post_headers(self, transaction)
  transaction:header():add("X-Post-Headers", "yes")
  return DECLINED
end

function hook_data_post(self, transaction)
  local body = transaction:body_as_string()
  if body:find("VIRUS") then return DENY, "5.7.1 virus found" end
  local lines, line = 0, transaction:body_getline()
  while line do lines = lines + 1 line = transaction:body_getline() end
  transaction:header():add("X-Body-Lines", tostring(lines))
  transaction:header():replace("Subject", "[tagged] " .. (transaction:header():get("Subject") or ""))
  transaction:header():delete("X-Remove-Me")
  if body:find("ADD BCC") then transaction:add_recipient("bcc@example.com") end
  if body:find("REMOVE OK") then transaction:remove_recipient("ok@example.com") end
  return DECLINED
end

function hook_queue(self, transaction)
  for _, r in ipairs(transaction:recipients()) do
    if r:address() == "drop@example.com" then return OK, "2.0.0 dropped by queue plugin" end
  end
  return DECLINED
end

function hook_queue_post(self)
  self:log(LOGINFO, "queue_post ran")
  return OK
end

function hook_reset_transaction(self, transaction)
  self:log(LOGINFO, "reset_transaction ran")
  return DECLINED
end

function hook_quit(self)
  if self:connection():notes("connected") == "127.0.0.6" then
    self:qp():respond(221, "plugin says goodbye")
    return DONE
  end
  return DECLINED
end

function hook_disconnect(self)
  self:log(LOGINFO, "disconnect hook for " .. tostring(self:connection():remote_ip()))
  return DECLINED
end

function hook_post_connection(self)
  self:log(LOGINFO, "post_connection hook for " .. tostring(self:connection():remote_ip()))
  return DECLINED
end

function hook_unrecognized_command(self, transaction, cmd, ...)
  if cmd:upper() == "XYZZY" then
    self:qp():respond(250, "nothing happens (" .. table.concat({ ... }, ",") .. ")")
    return DONE
  end
  if cmd:upper() == "EVIL" then return DENY_DISCONNECT end
  return DECLINED
end

function hook_help(self, transaction, ...)
  self:qp():respond(214, "plugin help for " .. (select(1, ...) or "all"))
  return DONE
end

function hook_vrfy(self, transaction, arg)
  if arg == "postmaster" then return OK end
  return DECLINED
end

function count_noops(self, transaction)
  local n = (self:connection():notes("noops") or 0) + 1
  self:connection():notes("noops", n)
  if n >= 3 then return DENY_DISCONNECT, "too many NOOPs" end
  return DECLINED
end

function hook_auth_plain(self, transaction, mechanism, user, password)
  if user == "demo" and password == "demo" then return OK end
  return DENY
end

function hook_deny(self, transaction, plugin, rc, msg)
  self:log(LOGINFO, "deny hook saw " .. plugin .. " return " .. rc)
end

function hook_ok(self, transaction, plugin, rc, msg)
  self:log(LOGINFO, "ok hook saw " .. plugin .. " return " .. rc)
end
