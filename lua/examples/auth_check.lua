-- Sender authentication: SPF (RFC 7208) on the MAIL FROM (or, for the null
-- sender, the HELO name), DKIM (RFC 6376) on the message, and DMARC (RFC
-- 7489) for the domain of the message's From header. A DMARC "reject"
-- disposition gets 550 5.7.1, "quarantine" quarantines the message, and a
-- failure that may be caused by a DNS error gets 451 4.7.1 (retry later)
-- instead. Accepted mail gets an Authentication-Results header (RFC 8601)
-- on top:
--
--   Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=a@example.com;
--     dkim=pass header.d=example.com header.s=2026; dmarc=pass header.from=example.com
--
-- Never trust the client: every value in the header that comes from the
-- client or the message is written as an RFC 8601 token or as a quoted
-- string with '\' and '"' escaped and control bytes dropped, so a sender
-- cannot add fields, results or lines. Authentication-Results headers that
-- already carry this host's authserv-id are removed (RFC 8601 5): only this
-- host may speak for itself.
--
-- The From header, read from the message file (RFC 5322 3.6.2): exactly one
-- From field holding exactly one mailbox, its domain an ASCII DNS name.
-- Anything else (no From, two From fields, a list of mailboxes, a group, a
-- domain literal, a UTF-8 domain) cannot be checked, and a reader's mail
-- program might show a different address than the one checked, so it is
-- refused with 550 5.7.1 (RFC 7489 6.6.1 allows this).

-- The authserv-id: the front's host name; behind an MTA's milter, the MTA's
-- own name (macro j); else "localhost".
local function authserv_id()
  for _, name in ipairs({ smtpe.host, client.macros and client.macros.j }) do
    if type(name) == "string" and name:match("^[%w][%w%.%-]*$") then return name:lower() end
  end
  return "localhost"
end

-- RFC 8601 2.2: a property value is an RFC 2045 token, a quoted-string, or
-- [local-part "@"] domain-name. Values of that safe shape are written as
-- they are; anything else is quoted: control bytes (CR and LF among them)
-- dropped, '\' and '"' escaped.
local function ar_value(v)
  v = tostring(v or "")
  if v:match("^[%w!#$%%&'*+%-/=?^_`{|}~.]*@?[%w][%w%.%-_]*$") then return v end
  v = v:gsub("[%c\128-\255]", ""):gsub("[\\\"]", "\\%0")
  return '"' .. v .. '"'
end

-- RFC 8601 2.7: result keywords; anything else a library might say is not
-- written into the header.
local results = { pass = true, fail = true, softfail = true, neutral = true, none = true,
                  temperror = true, permerror = true, policy = true }
local function ar_result(r) return results[r] and r or "permerror" end

-- The message's header section, unfolded: an array of {name=, value=}.
local function read_headers(path)
  local f = io.open(path, "rb")
  if f == nil then return nil end
  local fields = {}
  for line in f:lines() do
    line = line:gsub("\r$", "")
    if line == "" then break end
    if line:match("^[ \t]") and #fields > 0 then
      fields[#fields].value = fields[#fields].value .. line      -- RFC 5322 2.2.3 unfolding
    else
      local name, value = line:match("^([!-9;-~]+)[ \t]*:(.*)$")
      if name == nil then break end                             -- not a header: the body began
      fields[#fields + 1] = { name = name, value = value }
    end
  end
  f:close()
  return fields
end

-- The domain of a From field's one mailbox (RFC 5322 3.4), or nil and why.
-- Quoted strings and comments are taken out first (so a '<', ',', '@' or
-- '(' inside them counts for nothing); then a name-addr's <angle-addr> or
-- the whole value is the addr-spec, and its domain is what follows the
-- last '@'.
local function from_domain(value)
  local out, depth, quoted, i = {}, 0, false, 1
  while i <= #value do
    local c = value:sub(i, i)
    if c == "\\" and (quoted or depth > 0) then
      i = i + 1                                                 -- quoted-pair: skip the escaped byte
      if quoted then out[#out + 1] = "q" end
    elseif quoted then
      if c == '"' then quoted = false end
    elseif depth > 0 then
      if c == "(" then depth = depth + 1 elseif c == ")" then depth = depth - 1 end
    elseif c == '"' then quoted = true; out[#out + 1] = "q"
    elseif c == "(" then depth = 1
    else out[#out + 1] = c end
    i = i + 1
  end
  if quoted or depth > 0 then return nil, "unbalanced quote or comment" end
  local text = table.concat(out)
  local lt = select(2, text:gsub("<", ""))
  local addr
  if lt == 0 then
    addr = text                                                 -- a bare addr-spec
  elseif lt == 1 then
    local phrase, inner, rest = text:match("^([^<]*)<([^>]*)>(.*)$")
    -- The display name may not hold what separates or starts an address.
    if phrase == nil or phrase:find("[,;:@>]") or not rest:match("^%s*$") then
      return nil, "not one mailbox"
    end
    addr = inner:gsub("^%s*@[^:]*:", "")                        -- obsolete source route (RFC 5322 4.4)
  else
    return nil, "not one mailbox"
  end
  if addr:find("[,;:<>]") then return nil, "not one mailbox" end
  local domain = addr:match("@%s*([^@]-)%s*$")
  if domain == nil then return nil, "no domain" end
  domain = domain:lower():gsub("%.$", "")
  if #domain > 253 or not domain:match("^[%w_%-%.]+$") or not domain:find("%.")
     or domain:find("%.%.") or domain:find("^[%.%-]") or domain:find("%-$") then
    return nil, "not a DNS name"
  end
  return domain
end

-- The domain of an address or HELO name for SPF: after the last '@'.
local function spf_domain(identity) return (identity:match("@([^@]*)$") or identity):lower() end

function hook.mail(sender)
  -- RFC 7208 2.4: the null sender is checked as postmaster@<HELO>; DMARC
  -- then aligns the HELO domain (RFC 7489 3.1.2).
  local helo = client.helo or ""
  local result = spf.check(client.address, helo, sender)
  transaction.spf = result or "permerror"
  if sender == "" then
    transaction.spf_prop, transaction.spf_identity = "smtp.helo", helo
  else
    transaction.spf_prop, transaction.spf_identity = "smtp.mailfrom", sender
  end
end

function hook.dot(path)
  local fields = read_headers(path)
  if fields == nil then return "451 4.3.0 Message not readable, try again later\r\n" end
  local id = authserv_id()

  local from_values, own_ar = {}, {}
  local ar_index = 0
  for _, h in ipairs(fields) do
    local name = h.name:lower()
    if name == "from" then from_values[#from_values + 1] = h.value end
    if name == "authentication-results" then
      ar_index = ar_index + 1
      local claimed = h.value:match("^%s*([^%s;]+)")
      if claimed and claimed:lower() == id then own_ar[#own_ar + 1] = ar_index end
    end
  end
  if #from_values ~= 1 then
    return "550 5.7.1 Message must have exactly one From header\r\n"
  end
  local domain, why = from_domain(from_values[1])
  if domain == nil then
    return "550 5.7.1 From header not understood (" .. why .. ")\r\n"
  end

  local sigs = dkim.verify(path) or {}
  if transaction.spf == nil then transaction.spf, transaction.spf_prop, transaction.spf_identity = "none", "smtp.mailfrom", "" end
  local dkim_for_dmarc, temporary = {}, transaction.spf == "temperror"
  for _, sig in ipairs(sigs) do
    if sig.result == "temperror" then temporary = true end
    -- RFC 6376 3.6.1: a key in testing mode (t=y) counts as unsigned.
    if not sig.testing then
      dkim_for_dmarc[#dkim_for_dmarc + 1] = { result = sig.result, domain = sig.domain or "" }
    end
  end
  local d = dmarc.check{ from_domain = domain,
                         spf = { result = transaction.spf, domain = spf_domain(transaction.spf_identity) },
                         dkim = dkim_for_dmarc }
  if d.result == "temperror" or (d.result == "fail" and d.disposition ~= "none" and temporary) then
    return "451 4.7.1 Sender authentication failed temporarily, try again later\r\n"
  end
  if d.disposition == "reject" then
    return "550 5.7.1 Rejected by the DMARC policy of " .. domain .. "\r\n"
  end
  if d.disposition == "quarantine" then
    message.quarantine("DMARC policy of " .. domain)
  end

  local parts = { id,
    "spf=" .. ar_result(transaction.spf) .. " " .. transaction.spf_prop .. "=" .. ar_value(transaction.spf_identity) }
  if #sigs == 0 then
    parts[#parts + 1] = "dkim=none"
  end
  for _, sig in ipairs(sigs) do
    parts[#parts + 1] = "dkim=" .. ar_result(sig.result) .. " header.d=" .. ar_value(sig.domain) ..
                        " header.s=" .. ar_value(sig.selector)
  end
  parts[#parts + 1] = "dmarc=" .. ar_result(d.result) .. " header.from=" .. domain
  -- Drop forged results under our own name, last first so the indexes of
  -- the ones before stay valid.
  for i = #own_ar, 1, -1 do message.change_header("Authentication-Results", own_ar[i], nil) end
  message.insert_header(0, "Authentication-Results", table.concat(parts, "; "))
end
