-- mailhook's default policy (smtpe Lua API; see docs/lua-api.md).
--
-- Safe for real mail: it only refuses what RFC 5321 already calls wrong,
-- and slows down a client that opens connections too fast.
--
-- Globals are shared by all sessions of one policyd worker (not across
-- workers or replicas), so the rate limit below counts per worker: with
-- --workers 4, a client gets up to 4 x RATE_LIMIT connections a minute.

local RATE_LIMIT = 60        -- connections per client address per minute, per worker
local WINDOW = 60            -- seconds

local seen = {}              -- address -> { count, window_start }

-- A client opening connections faster than RATE_LIMIT gets a temporary
-- refusal instead of the greeting (it will retry later).
function hook.accept(ip, ptr)
  local now = os.time()
  local entry = seen[ip]
  if entry == nil or now - entry[2] >= WINDOW then
    entry = { 0, now }
    seen[ip] = entry
  end
  entry[1] = entry[1] + 1
  if entry[1] > RATE_LIMIT then
    syslog.info("rate limit: " .. ip .. " opened " .. entry[1] .. " connections in " .. WINDOW .. "s")
    return "421 4.7.0 Too many connections from " .. ip .. ", slow down\r\n"
  end
end

-- RFC 5321 4.1.3: an IP address in HELO must be an address literal
-- ("[192.0.2.1]"); a bare IP is the mark of a badly written bot.
local function bare_ip(name)
  return name:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or (name:find(":", 1, true) ~= nil and name:sub(1, 1) ~= "[")
end

local function check_helo(name)
  if bare_ip(name) then
    return "550 5.7.1 Use an address literal ([" .. name .. "]) in HELO, not a bare IP address\r\n"
  end
end

function hook.helo(name) return check_helo(name) end
function hook.ehlo(name) return check_helo(name) end

-- A recipient must have a domain part (RFC 5321 4.1.2 Mailbox); only
-- <postmaster> may stand alone (RFC 5321 4.5.1).
function hook.rcpt(recipient)
  if not recipient:find("@", 1, true) and recipient:lower() ~= "postmaster" then
    return "550 5.1.3 Recipient address must be fully qualified\r\n"
  end
end
