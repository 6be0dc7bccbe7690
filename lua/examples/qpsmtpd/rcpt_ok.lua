-- qpsmtpd's rcpt_ok, ported to Lua: a recipient whose domain is in
-- config/rcpthosts (or config/morercpthosts) is accepted; so is any
-- recipient of a relay client (connection:relay_client(), set by an
-- earlier plugin); every other is refused as relaying.

local function listed(line, domain)
  line = line:lower()
  if line == domain then return true end
  -- ".example.com" covers every subdomain
  return line:sub(1, 1) == "." and domain:sub(-#line) == line
end

function hook_rcpt(self, transaction, recipient)
  if self:connection():relay_client() then return OK end
  local domain = (recipient:host() or ""):lower()
  local qp = self:qp()
  for _, file in ipairs({ "rcpthosts", "morercpthosts" }) do
    for _, line in ipairs({ qp:config(file) }) do
      if listed(line, domain) then return OK end
    end
  end
  return DENY, "Relaying denied"
end
