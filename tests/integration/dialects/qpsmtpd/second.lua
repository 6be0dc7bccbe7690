-- qpsmtpd plugin (second in the chain): runs only where the first declined.

function hook_rcpt(self, transaction, rcpt)
  if rcpt:address() == "second@example.com" then return OK end
  if rcpt:address() == "no@example.com" then return OK end  -- never reached: the first plugin denies
  return DECLINED
end

function hook_logging(self, transaction, level, hook, plugin, text)
  if text:find("secret") then return OK end  -- swallowed: logged by this plugin, not by qpsmtpd
  return DECLINED
end

function hook_config(self, transaction, name)
  if name == "answer" then return OK, "42" end
  return DECLINED
end

function hook_user_config(self, transaction, address, name)
  if name == "spam_level" then return OK, address:user() .. ":5" end
  return DECLINED
end

function hook_helo(self, transaction, host)
  if host == "secret.example" then self:log(LOGINFO, "a secret line") end
  if host == "answer.example" then
    self:qp():respond(250, "answer " .. self:qp():config("answer"))
    return DONE
  end
  return DECLINED
end
