-- qpsmtpd's badmailfrom, ported to Lua. config/badmailfrom lines:
--   user@host [message]    one sender
--   @host [message]        every sender of a domain
-- As qpsmtpd does (and RFC 5321 advises), the sender is noted at MAIL and
-- refused at RCPT, so the client sees a per-recipient refusal.

function hook_mail(self, transaction, sender)
  local address = (sender:address() or ""):lower()
  if address == "" then return DECLINED end  -- the null sender is never bad
  local host = "@" .. (sender:host() or ""):lower()
  for _, line in ipairs({ self:qp():config("badmailfrom") }) do
    local bad, message = line:match("^(%S+)%s*(.*)$")
    bad = bad and bad:lower()
    if bad == address or bad == host then
      transaction:notes("badmailfrom", message ~= "" and message or "Mail from " .. address .. " not accepted here")
      self:log(LOGINFO, "badmailfrom: " .. address)
      break
    end
  end
  return DECLINED
end

function hook_rcpt(self, transaction, recipient)
  local note = transaction:notes("badmailfrom")
  if note then return DENY, note end
  return DECLINED
end
