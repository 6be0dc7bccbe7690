-- qpsmtpd's hosts_allow, ported to Lua (runs unchanged on mailhook's
-- qpsmtpd dialect). At pre-connection time: config/hosts_allow lines
--   <address or CIDR> <OK|DENY|DENYSOFT|DECLINED> [message]
-- decide for matching clients (first match wins), and config/max_conn_ip
-- (a number) limits a client's open sessions on this policyd worker (the
-- front's --max-connections-per-ip is the limit across the whole front).

local open = {}  -- client address -> sessions open on this worker

local function ipv4(address)
  local a, b, c, d = tostring(address):match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

local function matches(rule, address)
  if rule == address then return true end
  local net, bits = rule:match("^([%d%.]+)/(%d+)$")
  local n, ip = ipv4(net or rule), ipv4(address)
  if not n or not ip then return false end
  local size = 2 ^ (32 - tonumber(bits or 32))
  return math.floor(n / size) == math.floor(ip / size)
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
