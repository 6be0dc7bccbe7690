-- DKIM signing (RFC 6376) of outgoing mail with dkim.sign: a message from
-- an authenticated client (AUTH) or from a client in MAILHOOK_DKIM_NETWORKS
-- whose MAIL FROM is in MAILHOOK_DKIM_DOMAIN (or a subdomain) is signed
-- with d=MAILHOOK_DKIM_DOMAIN; other mail passes unsigned. Only clients
-- that may send for the domain get its signature: never sign for whoever
-- connects.
--
-- Settings reach the script only when policyd names them (--lua-env NAME):
--   MAILHOOK_DKIM_DOMAIN     d= (required)
--   MAILHOOK_DKIM_SELECTOR   s= (required)
--   MAILHOOK_DKIM_KEY        the private key, PEM; its directory must be a
--                            --lua-read-dir (required; keep it readable by
--                            policyd only)
--   MAILHOOK_DKIM_ALGORITHM  rsa-sha256 (default) or ed25519-sha256
--   MAILHOOK_DKIM_NETWORKS   clients signed without AUTH, comma-separated
--                            networks (e.g. 127.0.0.0/8,::1); default none
-- e.g. mailhook-policyd --script dkim_sign.lua --lua-read-dir /etc/mailhook/dkim
--   --lua-env MAILHOOK_DKIM_DOMAIN --lua-env MAILHOOK_DKIM_SELECTOR --lua-env MAILHOOK_DKIM_KEY
--
-- A message that should be signed but cannot be (unreadable key, …) gets
-- 451 4.3.0: sent unsigned it could fail DMARC at the receiver.
local function setting(name, required)
  local v = os.getenv(name)
  if (v == nil or v == "") and required then
    error("dkim_sign.lua: " .. name .. " is not set (and granted with --lua-env " .. name .. ")")
  end
  return v ~= "" and v or nil
end

local domain = setting("MAILHOOK_DKIM_DOMAIN", true):lower()
local selector = setting("MAILHOOK_DKIM_SELECTOR", true)
local key = setting("MAILHOOK_DKIM_KEY", true)
local algorithm = setting("MAILHOOK_DKIM_ALGORITHM") or "rsa-sha256"
local networks = {}
for entry in (setting("MAILHOOK_DKIM_NETWORKS") or ""):gmatch("[^,%s]+") do
  networks[#networks + 1] = assert(net.cidr(entry))      -- a bad entry stops the load
end

local function ours(sender)
  local d = (sender:match("@([^@]+)$") or ""):lower()
  return d == domain or d:sub(-#domain - 1) == "." .. domain
end

function hook.mail(sender)
  transaction.sign = (client.auth_user ~= nil or net.match(client.address, networks) == true) and ours(sender)
end

function hook.dot(path)
  if not transaction.sign then return end
  local ok, err = dkim.sign(path, { domain = domain, selector = selector, key = key, algorithm = algorithm })
  if not ok then
    syslog.warning("dkim_sign: not signed: " .. err)
    return "451 4.3.0 Message could not be signed, try again later\r\n"
  end
end
