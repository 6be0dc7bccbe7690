-- DNSBL check at connect: the client's address, reversed, under each zone
-- of MAILHOOK_DNSBL_ZONES (comma-separated; default zen.spamhaus.org).
-- All zones are asked at once and answered with one dns.wait, which
-- suspends only this session while the answers come. A 127.0.0.x answer
-- lists the client: the connection is refused with the zone's TXT reason.
-- Anything else (NXDOMAIN, a timeout, a resolver answering 127.255.255.x
-- for "you are blocked from querying") lets the client through.
local zones = {}
-- Settings from the environment reach a script only when policyd names them:
-- --lua-env MAILHOOK_DNSBL_ZONES (else the defaults below apply).
for zone in (os.getenv("MAILHOOK_DNSBL_ZONES") or "zen.spamhaus.org"):gmatch("[^,%s]+") do
  zones[#zones + 1] = zone:lower()
end

local function listed_by(answer, reversed)
  for _, rr in ipairs(answer) do
    if rr.type == dns.type.A and rr.address:match("^127%.0%.0%.%d+$") then
      for _, zone in ipairs(zones) do
        if rr.owner:lower() == reversed .. "." .. zone then return zone, rr.owner end
      end
    end
  end
end

function hook.accept(ip, ptr)
  local reversed = net.reverseip(ip)
  if reversed == nil then return end
  for _, zone in ipairs(zones) do
    dns.query(dns.class.IN, dns.type.A, reversed .. "." .. zone)
  end
  local _, rr = dns.wait(true)
  if rr == nil then return end  -- no answer at all: do not refuse on our own trouble
  local zone, name = listed_by(rr.answer, reversed)
  if zone == nil then return end
  dns.reset()
  dns.query(dns.class.IN, dns.type.TXT, name)
  local _, txt = dns.wait(true)
  local reason = (txt and txt.answer[1] and txt.answer[1].text) or ("listed by " .. zone)
  reason = reason:gsub("[%c]", " ")
  syslog.info(string.format("%s listed by %s: %s", ip, zone, reason))
  return string.format("554 5.7.1 Service unavailable; client [%s] blocked using %s: %s\r\n", ip, zone, reason)
end
