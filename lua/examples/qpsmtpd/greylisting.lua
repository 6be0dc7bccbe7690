-- qpsmtpd's greylisting, ported to Lua: the first delivery attempt of a
-- (client address or IPv6 /64, sender, recipient) triplet is deferred at DATA; a retry
-- after black_timeout seconds passes, and the triplet stays white for
-- white_timeout. config/greylisting lines: "black_timeout 300",
-- "white_timeout 3110400". The table is per policyd worker (run one
-- worker, or use a shared store, for a cluster-wide list).

local seen = {}  -- triplet -> { first = time, white = bool, last = time }

local function setting(self, name, default)
  for _, line in ipairs({ self:qp():config("greylisting") }) do
    local key, value = line:match("^(%S+)%s+(%S+)")
    if key == name then return tonumber(value) or default end
  end
  return default
end

function hook_data(self, transaction)
  if self:connection():relay_client() then return DECLINED end
  local now = os.time()
  local black = setting(self, "black_timeout", 300)
  local white = setting(self, "white_timeout", 36 * 24 * 3600)
  -- An IPv6 client by its /64 (one end site's addresses are one sender);
  -- an IPv4 client by its address, as qpsmtpd does.
  local remote = self:connection():remote_ip()
  local ip = net.network(remote, 64) or remote
  local sender = transaction:sender() and transaction:sender():address():lower() or ""
  local defer = false
  for _, r in ipairs(transaction:recipients()) do
    local key = ip .. "\0" .. sender .. "\0" .. r:address():lower()
    local entry = seen[key]
    if entry and entry.white and now - entry.last <= white then
      entry.last = now
    elseif entry and now - entry.first >= black then
      entry.white, entry.last = true, now
    else
      if not entry then seen[key] = { first = now, last = now } end
      defer = true
    end
  end
  if defer then return DENYSOFT, "4.7.1 This mail is temporarily denied" end
  return DECLINED
end
