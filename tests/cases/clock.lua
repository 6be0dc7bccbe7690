-- What the scripts' clock shows (tests/cases/clock.case): os.time(),
-- os.date() without a time, os.date with a time (Lua's own), and dkim.verify's x= check.
function hook.mail()
  return string.format("250 2.1.0 now=%d date=%s epoch=%s\r\n", os.time(), os.date("!%Y-%m-%dT%H:%M:%SZ"),
                       os.date("!%Y-%m-%d", 0))
end

function hook.dot(path)
  local sig = dkim.verify(path)[1]
  return string.format("550 5.7.0 dkim=%s reason=%s\r\n", sig.result, tostring(sig.reason))
end
