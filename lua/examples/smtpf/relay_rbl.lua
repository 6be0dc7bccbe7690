-- A typical smtpf script (seed 001), run unchanged by mailhook: relay
-- control, a DNS blocklist and a header stamp.
--
--   * Mail is accepted for the domains in LOCAL_DOMAINS from anyone, and
--     for any domain from the networks in RELAY_NETS (MAILHOOK_RELAY_NETS,
--     space-separated addresses or CIDR networks like "192.0.2.0/24 10.0.0.0/8").
--   * Clients listed by RBL_ZONE (MAILHOOK_RBL_ZONE, default
--     zen.spamhaus.org) are refused at connect; the lookup goes through
--     mailhook's dns module and waits without blocking other sessions.
--   * Accepted messages get an X-Relay-Checked header (mailhook's message
--     table, usable from do_dot).
local LOCAL_DOMAINS = { ["example.com"] = true, ["example.org"] = true }
local RELAY_NETS = {}
-- Settings from the environment reach a script only when policyd names them:
-- --lua-env MAILHOOK_RELAY_NETS --lua-env MAILHOOK_RBL_ZONE (else the
-- defaults below apply).
for entry in (os.getenv("MAILHOOK_RELAY_NETS") or "127.0.0.1"):gmatch("%S+") do
  RELAY_NETS[#RELAY_NETS + 1] = assert(net.cidr(entry))  -- a bad entry stops the load
end
local RBL_ZONE = os.getenv("MAILHOOK_RBL_ZONE") or "zen.spamhaus.org"

syslog.openlog("smtpf", syslog.LOG_PID, syslog.LOG_MAIL)

local function relay_client(ip)
  return net.match(ip, RELAY_NETS) == true
end

function smtp.do_connect(ip, ptr)
  local reversed = net.reverseip(ip)
  if reversed == nil or relay_client(ip) then return smtp.code.ok end
  dns.query(dns.class.IN, dns.type.A, reversed .. "." .. RBL_ZONE)
  local rcode, rr = dns.wait(true)
  if rcode == dns.rcode.OK and rr and #rr.answer > 0 then
    syslog.syslog(syslog.LOG_INFO, ip .. " listed by " .. RBL_ZONE)
    return smtp.code.failed, "5.7.1 " .. ip .. " is listed by " .. RBL_ZONE
  end
  return smtp.code.ok
end

function smtp.do_rcpt(recipient, params)
  local domain = (recipient:match("@([^@]+)$") or ""):lower()
  if LOCAL_DOMAINS[domain] or relay_client(client.address) then return smtp.code.ok end
  return smtp.code.reject, "5.7.1 relaying denied for " .. recipient
end

function smtp.do_dot(path)
  message.add_header("X-Relay-Checked", "smtpf script on " .. smtpe.host)
  return smtp.code.ok
end
