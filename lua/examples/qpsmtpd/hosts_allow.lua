-- qpsmtpd's hosts_allow, ported to Lua (runs unchanged on mailhook's
-- qpsmtpd dialect). At pre-connection time: config/hosts_allow lines
--   <address or CIDR> <OK|DENY|DENYSOFT|DECLINED> [message]
-- decide for matching clients (first match wins), and config/max_conn_ip
-- (a number) limits a client's open sessions on this policyd worker (the
-- front's --max-connections-per-ip is the limit across the whole front).

local open = {}  -- client address -> sessions open on this worker

-- A rule is an address or a CIDR network, IPv4 or IPv6 (net.match:
-- policyd's one CIDR code); a rule that is neither never matches.
local function matches(rule, address)
  local ok, found = pcall(net.match, address, rule)
  return ok and found == true
end

function hook_pre_connection(self, transaction, args)
  local ip = args.remote_ip
  local max = tonumber((self:qp():config("max_conn_ip")))
  if max and max > 0 and (open[ip] or 0) >= max then
    return DENYSOFT, "Sorry, too many connections from " .. ip .. ", try again later"
  end
  for _, line in ipairs({ self:qp():config("hosts_allow") }) do
    local rule, action, message = line:match("^(%S+)%s+(%S+)%s*(.*)$")
    if rule and matches(rule, ip) then
      local rc = _ENV[action:upper()]
      if rc and rc ~= DECLINED then return rc, message ~= "" and message or nil end
      break
    end
  end
  open[ip] = (open[ip] or 0) + 1
  self:connection():notes("hosts_allow_counted", true)
  return DECLINED
end

function hook_post_connection(self)
  local ip = self:connection():remote_ip()
  if self:connection():notes("hosts_allow_counted") and open[ip] then
    open[ip] = open[ip] > 1 and open[ip] - 1 or nil
  end
  return DECLINED
end
