-- Greylisting with the triplets in Redis (policyd --kv IP:PORT), so every
-- policyd replica and worker shares them: a retry that lands on another
-- replica is recognised. Same rules as greylist.lua: the first attempt of
-- a (client network, sender, recipient) triplet gets 451; a retry after
-- MAILHOOK_GREYLIST_DELAY seconds (default 300) passes, and the triplet
-- then passes for MAILHOOK_GREYLIST_PASS seconds (default 36 days).
-- Redis down: mail passes (fail open) and the error is logged.
-- Settings from the environment reach a script only when policyd names them:
-- --lua-env MAILHOOK_GREYLIST_DELAY --lua-env MAILHOOK_GREYLIST_PASS (else
-- the defaults below apply).
local delay = tonumber(os.getenv("MAILHOOK_GREYLIST_DELAY") or "") or 300
local pass_for = tonumber(os.getenv("MAILHOOK_GREYLIST_PASS") or "") or 36 * 86400

-- The client's network: IPv4 by /24, IPv6 by /64 whatever the spelling of
-- the address, and an IPv4-mapped IPv6 address as the IPv4 client it is
-- (net.network, policyd's one CIDR code).
local function network(ip)
  ip = ip:gsub("%%.*$", "")                 -- a zone index ("fe80::1%eth0")
  return net.network(ip, 64) or net.network(ip, 24) or ip
end

-- policyd hears MAIL FROM only when a script has hook.mail: this one makes
-- client.sender known in hook.rcpt.
function hook.mail() end

function hook.rcpt(recipient)
  if client.auth_user then return end  -- authenticated users are never greylisted
  local key = "greylist:" .. network(client.address) .. "/" .. (client.sender or ""):lower() .. "/"
              .. recipient:lower()
  local now = os.time()
  local first, err = kv.get(key)
  if err then
    syslog.error("greylist: " .. err .. "; passing the mail")
    return
  end
  if first == nil then
    kv.set(key, tostring(now), delay + 86400)  -- an unretried attempt is forgotten after a day
    return string.format("451 4.7.1 Greylisted, please try again in %d seconds\r\n", delay)
  end
  local waited = now - (tonumber(first) or now)
  if waited < delay then
    return string.format("451 4.7.1 Greylisted, please try again in %d seconds\r\n", delay - waited)
  end
  kv.expire(key, pass_for)  -- known good: keep it for pass_for
end
