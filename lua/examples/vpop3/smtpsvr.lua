-- A typical VPOP3 SMTPSVR.LUA (runs unchanged on mailhook's vpop3
-- dialect): relay control by client address, a DNS blocklist through the
-- Enterprise RBL globals, a size limit for outsiders, and a header stamp
-- on every accepted message. Settings come from the environment so the
-- same file serves tests and production:
--   MAILHOOK_RELAY_NETS     addresses or CIDR networks allowed to relay (space separated)
--   MAILHOOK_LOCAL_DOMAINS  domains we accept mail for
--   MAILHOOK_RBL_ZONE       DNS blocklist zone ("" for none)

local function words(s)
  local out = {}
  for w in tostring(s or ""):gmatch("%S+") do out[#out + 1] = w end
  return out
end

-- Settings from the environment reach a script only when policyd names them:
-- --lua-env MAILHOOK_RELAY_NETS --lua-env MAILHOOK_LOCAL_DOMAINS --lua-env
-- MAILHOOK_RBL_ZONE (else the defaults below apply).
local RelayNets = words(os.getenv("MAILHOOK_RELAY_NETS") or "127.0.0.1")
local LocalDomains = words(os.getenv("MAILHOOK_LOCAL_DOMAINS") or "example.com")
local Zone = os.getenv("MAILHOOK_RBL_ZONE") or ""

function Start()
  if net.match(IPAddress, RelayNets) == true then LocalClientAddress = true end
  if not LocalClientAddress and Zone ~= "" then RBLServers = { Zone } end
  return ""
end

function RBLResults()
  if RBLFound then return "554 5.7.1 " .. IPAddress .. " is listed by " .. Zone end
  return ""
end

function GetMaxMessageSize(host, current)
  if LocalClientAddress then return current end
  return 10 * 1024 * 1024
end

function DoRCPTTO(data, recipient, params, list)
  if LocalClientAddress then return params, "" end
  local domain = (recipient:match("@(.+)$") or ""):lower()
  for _, d in ipairs(LocalDomains) do
    if domain == d then return params, "" end
  end
  return params, "550 5.7.1 relaying denied for " .. recipient
end

function ProcessMessage(mailfrom, subject, recipients, actions, mime, size, attachments)
  actions.HeaderModifiers = { "X-Checked-By: " .. ServerName .. " (" .. (LocalClientAddress and "local" or "incoming")
                              .. ", " .. #attachments .. " attachment(s))" }
  return actions, ""
end
