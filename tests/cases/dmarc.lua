-- Drives dmarc.check from the envelope so policy cases can state every
-- input: the From domain is the MAIL FROM domain, SPF passes for the HELO
-- name, and DKIM passes for the RCPT local part read as a domain ("none":
-- no signature). The reply shows the whole verdict.
-- policyd hears MAIL only when a script has hook.mail (client.sender).
function hook.mail() end

local function v(x) if x == nil then return "nil" end return tostring(x) end

function hook.rcpt(to)
  local signer = to:match("^(.-)@")
  local dkim = {}
  if signer ~= "none" then dkim = { { result = "pass", domain = signer } } end
  local r = dmarc.check {
    from_domain = client.sender:match("@(.+)$") or "",
    spf = { result = "pass", domain = client.helo },
    dkim = dkim,
  }
  return string.format("250 2.1.5 result=%s policy=%s disposition=%s spf=%s dkim=%s org=%s pct=%s reason=%s\r\n",
    v(r.result), v(r.policy), v(r.disposition), v(r.spf_aligned), v(r.dkim_aligned), v(r.org_domain),
    v(r.pct), v(r.reason))
end
