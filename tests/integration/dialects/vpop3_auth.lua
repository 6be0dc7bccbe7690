-- smtpe script chained after the VPOP3 one: accepts two demo logins, so
-- AuthenticatedUser / AllowedUsers can be tested (VPOP3 has no AUTH call-back).
function hook.auth(arg, user, password)
  if (user == "alice" or user == "carol") and password == "secret" then return "235 2.7.0 ok\r\n" end
end
