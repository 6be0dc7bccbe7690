-- A rate limit per client address, counted in Redis (policyd --kv
-- IP:PORT) so the limit holds across every policyd replica and worker:
-- at most MAILHOOK_RATE_MAX recipients (default 100) per client address in
-- each MAILHOOK_RATE_WINDOW seconds (default 3600); past it, RCPT gets
-- 450 4.7.1 until the window ends. Authenticated users are not limited.
-- Redis down: mail passes (fail open) and the error is logged.
-- Settings from the environment reach a script only when policyd names them:
-- --lua-env MAILHOOK_RATE_MAX --lua-env MAILHOOK_RATE_WINDOW (else the
-- defaults below apply).
local max = tonumber(os.getenv("MAILHOOK_RATE_MAX") or "") or 100
local window = tonumber(os.getenv("MAILHOOK_RATE_WINDOW") or "") or 3600

function hook.rcpt(recipient)
  if client.auth_user then return end
  local key = "rate:" .. client.address .. ":" .. (os.time() // window)
  local n, err = kv.incr(key)
  if not n then
    syslog.error("ratelimit: " .. err .. "; passing the mail")
    return
  end
  if n == 1 then kv.expire(key, window) end
  if n > max then
    return string.format("450 4.7.1 Too many recipients from %s; try again later\r\n", client.address)
  end
end
