-- Greylisting (the Harris triplet): the first attempt of each (client
-- network, sender, recipient) gets a temporary failure; a retry after
-- MAILHOOK_GREYLIST_DELAY seconds (default 300) passes, and the triplet is
-- then remembered for MAILHOOK_GREYLIST_PASS seconds (default 36 days) so
-- later mail is not delayed again. Clients are grouped by /24 (IPv4) or
-- /64 (IPv6) because big senders retry from a different address.
--
-- The table lives in the worker's globals: each policyd worker keeps its
-- own, and a restart forgets it. With --workers above 1 a retry may land
-- on another worker and be delayed once more; run this with one worker,
-- or keep the triplets in a shared store.
-- Settings from the environment reach a script only when policyd names them:
-- --lua-env MAILHOOK_GREYLIST_DELAY --lua-env MAILHOOK_GREYLIST_PASS (else
-- the defaults below apply).
local delay = tonumber(os.getenv("MAILHOOK_GREYLIST_DELAY") or "") or 300
local pass_for = tonumber(os.getenv("MAILHOOK_GREYLIST_PASS") or "") or 36 * 86400
local max_entries = 100000

greylist = greylist or { entries = {}, count = 0 }

-- The client's network: IPv4 by /24, IPv6 by /64 whatever the spelling of
-- the address (expanded as lua/policy.lua's client_key does), and an
-- IPv4-mapped IPv6 address as the IPv4 client it is.
local function network(ip)
  ip = ip:gsub("%%.*$", "")                 -- a zone index ("fe80::1%eth0")
  local v4 = ip:match("^(%d+%.%d+%.%d+)%.%d+$") or ip:match("^::[fF][fF][fF][fF]:(%d+%.%d+%.%d+)%.%d+$")
  if v4 then return v4 end
  if not ip:find(":", 1, true) then return ip end
  local head, tail = ip:match("^(.-)::(.*)$")
  local groups = {}
  local function add(part)
    for g in part:gmatch("[^:]+") do groups[#groups + 1] = g end
  end
  if head then
    add(head)
    local right = {}
    for g in tail:gmatch("[^:]+") do right[#right + 1] = g end
    local missing = 8 - #groups - #right - (tail:find(".", 1, true) and 1 or 0)
    for _ = 1, missing do groups[#groups + 1] = "0" end
    for _, g in ipairs(right) do groups[#groups + 1] = g end
  else
    add(ip)
  end
  local out = {}
  for i = 1, 4 do out[i] = string.format("%x", tonumber(groups[i] or "0", 16) or 0) end
  return table.concat(out, ":") .. "::/64"
end

local function expire(now)
  for key, e in pairs(greylist.entries) do
    if e.until_ < now then
      greylist.entries[key] = nil
      greylist.count = greylist.count - 1
    end
  end
end

-- The sender belongs to the transaction: the runtime drops `transaction`
-- at RSET, HELO/EHLO and the end of the message, so nothing is cleaned up here.
function hook.mail(sender)
  transaction.sender = sender:lower()
end

function hook.rcpt(recipient)
  if client.auth_user then return end  -- authenticated users are never greylisted
  local now = os.time()
  local sender = transaction.sender or ""
  local key = network(client.address) .. "/" .. sender .. "/" .. recipient:lower()
  local e = greylist.entries[key]
  if e == nil then
    if greylist.count >= max_entries then expire(now) end
    if greylist.count >= max_entries then return end  -- full: fail open
    greylist.entries[key] = { first = now, until_ = now + delay + 86400 }
    greylist.count = greylist.count + 1
    return string.format("451 4.7.1 Greylisted, please try again in %d seconds\r\n", delay)
  end
  if now - e.first < delay then
    return string.format("451 4.7.1 Greylisted, please try again in %d seconds\r\n", delay - (now - e.first))
  end
  e.until_ = now + pass_for
end
