-- A header stamp at end of message that never reads the message: hook.dot
-- takes no parameter, so policyd asks the MTA for no header or body.
function hook.rcpt(r)
  if r == "blocked@example.com" then return "550 5.7.1 blocked\r\n" end
end
function hook.dot()
  message.add_header("X-Stamp", "stamped")
end
