function hook.rcpt(r) if r == "no@example.com" then return "550 5.1.1 no\r\n" end end
