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
local MAX_CLIENTS = 10000    -- clients remembered per generation (below); 2 generations are kept

-- The counts live in two generations of tables: `current` takes every
-- client seen, and once it is WINDOW old or holds MAX_CLIENTS clients it
-- becomes `previous` and the older one is dropped whole. So an entry
-- expires within two windows, memory stays under 2 x MAX_CLIENTS entries
-- whatever the clients (a flood of new IPv6 addresses included), and no
-- hook ever walks the table. Under such a flood the limit forgets clients
-- early: it fails open, never with 451 for everyone (--lua-memory).
local current, previous = {}, {}
local entries = 0            -- clients in `current`
local started = os.time()    -- when `current` was started

-- The key of a client: an IPv4 address as it is, an IPv6 address by its
-- /64 (one end site gets a /64 or more, so counting each /128 would let
-- one host use 2^64 addresses). net.network is policyd's one CIDR code:
-- any spelling of an address gives the same key, and an IPv4-mapped
-- address (RFC 4291 2.5.5.2) is its IPv4 client.
local function client_key(ip)
  ip = ip:gsub("%%.*$", "")                 -- a zone index ("fe80::1%eth0")
  local v6 = net.network(ip, 64)            -- nil for an IPv4 client
  if v6 then return v6 end
  local v4 = net.network(ip, 32)
  return v4 and v4:sub(1, -4) or ip         -- "192.0.2.1/32" -> "192.0.2.1"
end

local function entry_for(key, now)
  if now - started >= WINDOW or entries >= MAX_CLIENTS then
    previous, current, entries, started = current, {}, 0, now
  end
  local entry = current[key]
  if entry == nil then
    entry = previous[key]                   -- still counting from the last generation
    if entry == nil or now - entry[2] >= WINDOW then entry = { 0, now } end
    current[key] = entry
    entries = entries + 1
  elseif now - entry[2] >= WINDOW then
    entry[1], entry[2] = 0, now
  end
  return entry
end

-- A client opening connections faster than RATE_LIMIT gets a temporary
-- refusal instead of the greeting (it will retry later).
function hook.accept(ip, ptr)
  local now = os.time()
  local key = client_key(ip)
  local entry = entry_for(key, now)
  entry[1] = entry[1] + 1
  if entry[1] > RATE_LIMIT then
    syslog.info("rate limit: " .. key .. " opened " .. entry[1] .. " connections in " .. WINDOW .. "s")
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
