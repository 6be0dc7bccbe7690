-- Envelope hooks: MAIL and RCPT checks. hook.mail gets the sender without
-- <> (empty for the null sender), hook.rcpt each recipient.
local local_domains = { ["example.com"] = true, ["example.org"] = true }

function hook.mail(sender)
  if sender:lower():match("@spammer%.example$") then
    return "550 5.7.1 Sender refused\r\n"
  end
end

function hook.rcpt(recipient)
  local domain = recipient:match("@([^@]+)$")
  if domain == nil or not local_domains[domain:lower()] then
    return "550 5.7.1 Relay access denied\r\n"
  end
end
