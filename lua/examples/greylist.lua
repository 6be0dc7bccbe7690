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
-- the address, and an IPv4-mapped IPv6 address as the IPv4 client it is
-- (net.network, policyd's one CIDR code).
local function network(ip)
  ip = ip:gsub("%%.*$", "")                 -- a zone index ("fe80::1%eth0")
  return net.network(ip, 64) or net.network(ip, 24) or ip
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
