-- qpsmtpd's dnsbl, ported to Lua. config/dnsbl_zones lines:
--   zone [message]
-- The lookups start when the client connects (dns.query sends them all at
-- once; the session waits, not the worker) and the verdict is given at
-- RCPT, so relay clients and postmaster still get through, as in qpsmtpd.

function hook_connect(self)
  local reversed = net.reverseip(self:connection():remote_ip())
  local zones = { self:qp():config("dnsbl_zones") }
  if not reversed or #zones == 0 then return DECLINED end
  dns.reset()
  local wanted = {}
  for _, line in ipairs(zones) do
    local zone, message = line:match("^(%S+)%s*(.*)$")
    wanted[(reversed .. "." .. zone):lower()] = { zone = zone, message = message }
    dns.query(dns.class.IN, dns.type.A, reversed .. "." .. zone)
  end
  local _, rr = dns.wait(true)
  for _, r in ipairs(rr and rr.answer or {}) do
    local hit = r.type == dns.type.A and wanted[r.owner:lower()]
    if hit then
      local text = hit.message ~= "" and hit.message
                   or ("Mail from " .. self:connection():remote_ip() .. " rejected: listed in " .. hit.zone)
      self:connection():notes("dnsbl", text)
      self:log(LOGINFO, "dnsbl: " .. self:connection():remote_ip() .. " listed in " .. hit.zone)
      break
    end
  end
  return DECLINED
end

function hook_rcpt(self, transaction, recipient)
  local listed = self:connection():notes("dnsbl")
  if not listed or self:connection():relay_client() then return DECLINED end
  if (recipient:user() or ""):lower() == "postmaster" then return DECLINED end
  return DENY, listed
end
