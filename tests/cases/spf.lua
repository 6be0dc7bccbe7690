-- spf.check in hook.mail: the SPF result becomes the reply, so the case
-- file (spf.case) reads each RFC 7208 outcome off the wire.
function hook.mail(sender)
  local result, exp, mech = spf.check(client.address, client.helo, sender)
  if result == "fail" then return "550 5.7.23 " .. (exp or "SPF fail") .. "\r\n" end
  if result == "temperror" then return "451 4.7.24 SPF temperror\r\n" end
  if result == "permerror" then return "550 5.7.24 SPF permerror\r\n" end
  return "250 2.1.0 " .. result .. " " .. tostring(mech) .. "\r\n"
end
