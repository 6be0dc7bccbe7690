-- The VPOP3 dialect (seed 002, SMTPSVR.LUA) as a thin adapter over
-- mailhook's native smtpe hooks. VPOP3 gives each SMTP session its own
-- instance of the script: here the script's text is compiled and run again
-- in a fresh environment for each session (text, never bytecode), so its
-- globals, the IN and IN/OUT variables among them, belong to the session;
-- the instance lives in the runtime's `session` table, freed with the
-- session (never in a global keyed by the session). The adapter calls the global functions when the seed says, honours their
-- returns, and applies the IN/OUT variables after every call.
--
-- prelude(env) adds nothing (VPOP3 globals are per session); detect(env)
-- looks for VPOP3's global functions; adapt(env, script) wires the
-- hook.* functions to the named parts below (on_accept, on_hello,
-- on_mail, on_rcpt, on_data, on_content, on_dot and its steps, on_close).
-- Compiled into mailhook-policyd (see dialects.cc).
local M = {}

local CALLBACKS = { "Start", "RBLResults", "GetMaxMessageSize", "GetEHLOCapabilities", "DoHELO", "DoHELP", "DoQUIT",
                    "DoNOOP", "DoRSET", "DoVRFY", "DoEXPN", "DoMAILFROM", "DoRCPTTO", "DoDATAStart", "DoUnrecognised",
                    "ProcessMessage", "StartMessage", "MessageLineRaw", "MessageLine", "EndMessage", "CheckRecipients",
                    "MonitorBcc", "LogRecipients", "LogRecipientsBlocked", "End" }

function M.prelude(_) end

function M.detect(env)
  for _, name in ipairs(CALLBACKS) do
    if type(rawget(env, name)) == "function" then return true end
  end
  return false
end

-- "250 text", "550 5.7.1 text", or "" / nil (the default). A string
-- without a code is taken as text for `default_code`.
local function reply(text, default_code)
  if text == nil or text == "" then return nil end
  text = tostring(text):gsub("[\r\n]+$", "")
  if text == "" then return nil end
  if not text:match("^%d%d%d[ -]") and not text:match("^%d%d%d$") then
    if not default_code then return nil end
    text = default_code .. " " .. text
  end
  -- Multi-line replies: one line per line.
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do lines[#lines + 1] = line end
  local code = lines[1]:sub(1, 3)
  local out = {}
  for i, line in ipairs(lines) do
    local body = line:match("^%d%d%d[ -]?(.*)$") or line
    out[#out + 1] = code .. (i < #lines and "-" or " ") .. body .. "\r\n"
  end
  return table.concat(out)
end

local function code_of(r) return r and tonumber(r:sub(1, 1)) or 0 end

local function lines_of(text)
  local out = {}
  for line in (tostring(text or "") .. "\n"):gmatch("(.-)\r?\n") do
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

-- ESMTP parameters of the current MAIL/RCPT command as VPOP3 passes them:
-- {NAME = value} (a keyword without a value: ""), from client.params (the
-- front's parse); and the command's data after the colon, "<address>
-- NAME=value ...", written back from the same parse.
local function parameters()
  local params = client.params or {}
  local out = {}
  for _, name in ipairs(params) do
    local v = params[name]
    out[name] = v == true and "" or v
  end
  return out
end
local function command_data(address)
  local params = client.params or {}
  local out = { "<" .. tostring(address or "") .. ">" }
  for _, name in ipairs(params) do
    local v = params[name]
    out[#out + 1] = v == true and name or name .. "=" .. v
  end
  return table.concat(out, " ")
end

local function copy(list)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = v end
  return out
end

local function contains_address(list, addr)
  for _, v in ipairs(list) do
    if v:lower() == addr:lower() then return true end
  end
  return false
end

-- RBLWhitelist entries: host names or addresses, "*" and "?" wildcards.
local function wildcard_match(pattern, value)
  if value == nil or value == "" then return false end
  local p = "^" .. tostring(pattern):lower():gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
  return value:lower():match(p) ~= nil
end

-- How many `name` fields the message's header has.
local function header_count(path, name)
  local f = path and io.open(path, "rb")
  if not f then return 0 end
  local n, lname = 0, name:lower()
  for line in f:lines() do
    line = line:gsub("\r$", "")
    if line == "" then break end
    local field = line:match("^([^:%s]+):")
    if field and field:lower() == lname then n = n + 1 end
  end
  f:close()
  return n
end


---------------------------------------------------------------------------
-- One adapted script: `A` = { env, script, source, key }. `key` is the
-- private key of its per-session instance in the runtime's `session`
-- table, which the runtime frees when the session ends.

local function defined(A, name) return type(rawget(A.env, name)) == "function" end

-- IN/OUT defaults of a new instance (seed 002), limits from the front's.
local function set_defaults(g, limits)
  g.ValidClientAddress = true
  g.LocalClientAddress = false
  g.AuthenticationRequired = false
  g.AllowedUsers = ""
  g.ForceDisconnect = false
  g.UseBATV = false
  g.MaxRecipientsPerLocalMessage = limits.max_recipients
  g.MaxRecipientsPerIncomingMessage = limits.max_recipients
  g.MaxMessagesPerLocalSession = 0
  g.MaxLineLength = limits.max_line_length
  g.AddUserAddresses = false
  -- Enterprise RBL settings.
  g.CheckRBL = true
  g.RBLServers = {}
  g.RBLWhitelist = {}
  g.RBLCheckAllServers = false
  g.RBLFound = false
  g.RBLBlackhole = false
  g.RBLAccept = false
  g.RBLRedirect = ""
  g.RBLRejectMessage = ""
  g.RBLHeader = ""
  g.RBLResultInfo = {}
end

-- The session's instance of the script, created on its first event.
local function instance(A)
  local s = session[A.key]
  if s then return s end
  local limits = mailhook.limits()
  local g = setmetatable({}, { __index = _G })
  s = { g = g, recipients = {}, blocked = {}, messages = 0, header_add = {}, params = {} }
  set_defaults(g, limits)
  s.applied = { recipients = limits.max_recipients, line = limits.max_line_length }
  session[A.key] = s
  -- Text again, never bytecode: scripts load text chunks only.
  local run = assert(load(A.source, "@" .. A.script, "t", g))
  run()
  return s
end

-- IN variables, fresh before every call.
local function refresh(s)
  local g = s.g
  g.IPAddress = client.address
  g.AuthenticatedUser = client.auth_user or ""
  g.SMTPAuthenticatedUser = client.auth_user or ""
  g.ServerID = 1
  g.ServerName = smtpe.host
  g.Encryption = client.tls_protocol ~= nil
  g.EncryptionDetails = client.tls_protocol and (client.tls_protocol .. " " .. (client.tls_cipher or "")) or ""
end

-- IN/OUT variables take effect after every call.
local function apply(s)
  local g = s.g
  if g.ForceDisconnect then mailhook.disconnect() end
  local max_rcpt = g.LocalClientAddress and g.MaxRecipientsPerLocalMessage or g.MaxRecipientsPerIncomingMessage
  max_rcpt = math.tointeger(tonumber(max_rcpt)) or s.applied.recipients
  local max_line = math.tointeger(tonumber(g.MaxLineLength)) or s.applied.line
  if max_rcpt ~= s.applied.recipients or max_line ~= s.applied.line then
    mailhook.limits({ max_recipients = max_rcpt, max_line_length = max_line })
    s.applied.recipients, s.applied.line = max_rcpt, max_line
  end
end

-- Calls a VPOP3 function of the session's instance, if the script has it.
local function call(s, name, ...)
  local fn = rawget(s.g, name)
  if type(fn) ~= "function" then return false end
  refresh(s)
  local results = table.pack(fn(...))
  apply(s)
  return true, table.unpack(results, 1, results.n)
end

local function set_size(s, host)
  local has, size = call(s, "GetMaxMessageSize", host, mailhook.limits().max_message_size)
  if has and tonumber(size) then mailhook.limits({ max_message_size = math.tointeger(tonumber(size)) or 0 }) end
end

-- Enterprise RBL: RBLServers checked with the dns module (one A query
-- per server), RBLFound / RBLResultInfo set, RBLResults() called.
local function rbl_ask(g, reversed, servers)
  dns.reset()
  for _, server in ipairs(servers) do dns.query(dns.class.IN, dns.type.A, reversed .. "." .. server) end
  local _, rr = dns.wait(true)
  for _, r in ipairs(rr and rr.answer or {}) do
    if r.type == dns.type.A then
      for _, server in ipairs(servers) do
        if r.owner:lower() == (reversed .. "." .. server):lower() and g.RBLResultInfo[server] == nil then
          local a, b, c, d = r.address:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
          -- VPOP3: the address as one number in network order read little-endian (127.0.0.1 = 0x0100007f)
          g.RBLResultInfo[server] = tonumber(a) + tonumber(b) * 256 + tonumber(c) * 65536 + tonumber(d) * 16777216
        end
      end
    end
  end
end

local function check_rbl(s)
  local g = s.g
  if not g.CheckRBL or type(g.RBLServers) ~= "table" or #g.RBLServers == 0 then return nil end
  for _, w in ipairs(type(g.RBLWhitelist) == "table" and g.RBLWhitelist or {}) do
    if wildcard_match(w, client.address) or wildcard_match(w, client.host) then return nil end
  end
  local reversed = net.reverseip(client.address)
  if not reversed then return nil end
  g.RBLResultInfo = {}
  if g.RBLCheckAllServers then
    rbl_ask(g, reversed, g.RBLServers)
  else
    for _, server in ipairs(g.RBLServers) do
      rbl_ask(g, reversed, { server })
      if g.RBLResultInfo[server] then break end
    end
  end
  g.RBLFound = next(g.RBLResultInfo) ~= nil
  local _, text = call(s, "RBLResults")
  return reply(text, nil)
end

-- Start, the message size, the RBL check.
local function on_accept(A)
  local s = instance(A)
  local _, welcome = call(s, "Start")
  local greeting = reply(welcome, nil)
  if not s.g.ValidClientAddress then return "554 5.7.1 Access denied\r\n" end
  if code_of(greeting) >= 4 then return greeting end
  set_size(s, client.address)
  local rbl = check_rbl(s)
  return rbl or greeting
end

-- GetEHLOCapabilities(host, keywords): the EHLO keywords the front would
-- offer (SIZE with the size in effect), replaced by what it returns.
local function ehlo_capabilities(s, arg)
  local default = client.default_reply or ""
  local keywords = {}
  for i, line in ipairs(lines_of(default)) do
    if i > 1 then keywords[#keywords + 1] = line:match("^%d%d%d[ -](.*)$") or line end
  end
  local size = mailhook.limits().max_message_size
  for i, k in ipairs(keywords) do
    if k:match("^SIZE") then keywords[i] = "SIZE " .. size end
  end
  local _, caps = call(s, "GetEHLOCapabilities", arg, table.concat(keywords, "\r\n"))
  if caps ~= nil then
    local new = {}
    for _, line in ipairs(lines_of(caps)) do new[#new + 1] = line:match("^%d%d%d[ -](.*)$") or line end
    mailhook.ehlo_keywords(new)
  end
end

local function on_hello(A, arg, ehlo)
  local s = instance(A)
  set_size(s, arg)
  local has, refuse, response = call(s, "DoHELO", arg, false, ehlo)
  if has and refuse then
    mailhook.disconnect()
    return reply(response, "554") or "554 5.7.1 Connection refused\r\n"
  end
  local r = has and reply(response, "250") or nil
  if ehlo and defined(A, "GetEHLOCapabilities") and not r then ehlo_capabilities(s, arg) end
  return r
end

-- Handlers of the commands with one call-back and a reply.
local function simple(A, name, default_code)
  return function()
    local _, text = call(instance(A), name)
    return reply(text, default_code)
  end
end
local function on_help(A)
  local s = instance(A)
  local text = {}
  for _, line in ipairs(lines_of(client.default_reply or "")) do text[#text + 1] = line:match("^%d%d%d[ -](.*)$") or line end
  local _, new = call(s, "DoHELP", table.concat(text, "\r\n"))
  return reply(new, "214")
end
local function verify(A, name)
  return function(arg, current)
    local _, text = call(instance(A), name, { arg }, current)
    if text == current then return nil end
    return reply(text, "252")
  end
end
local function on_unknown(A, line)
  local _, text = call(instance(A), "DoUnrecognised", line)
  return reply(text, "500")
end

-- The envelope: MAIL FROM, RCPT TO, DATA.
local function on_mail(A, sender)
  local s = instance(A)
  local g = s.g
  s.recipients, s.blocked, s.header_add, s.new_sender, s.lines = {}, {}, {}, nil, 0
  if g.AuthenticationRequired and not client.auth_user then return "530 5.7.0 Authentication required\r\n" end
  if g.AllowedUsers ~= nil and g.AllowedUsers ~= "" then
    local allowed = false
    for u in tostring(g.AllowedUsers):gmatch("%S+") do allowed = allowed or u == client.auth_user end
    if not allowed then return "550 5.7.1 User not allowed to send from this address\r\n" end
  end
  local max = tonumber(g.MaxMessagesPerLocalSession) or 0
  if g.LocalClientAddress and max > 0 and s.messages >= max then
    return "452 4.5.3 Too many messages in this session\r\n"
  end
  local has, new_params, result = call(s, "DoMAILFROM", command_data(sender), sender, parameters(), "",
                                       client.auth_user or "")
  if not has then return nil end
  if type(new_params) == "table" and new_params.MAILFROM and new_params.MAILFROM ~= sender then
    s.new_sender = tostring(new_params.MAILFROM):match("^<?(.-)>?$")
  end
  return reply(result, "250")
end

local function on_rcpt(A, recipient)
  local s = instance(A)
  local g = s.g
  if g.RBLFound and not g.RBLAccept and g.RBLRejectMessage ~= "" and g.RBLRejectMessage ~= nil then
    s.blocked[#s.blocked + 1] = recipient
    return reply(g.RBLRejectMessage, "550")
  end
  local has, _, result = call(s, "DoRCPTTO", command_data(recipient), recipient, parameters(), copy(s.recipients))
  local r = has and reply(result, "250") or nil
  if code_of(r) >= 4 then
    s.blocked[#s.blocked + 1] = recipient
  else
    s.recipients[#s.recipients + 1] = recipient
  end
  return r
end

local function on_data(A)
  local s = instance(A)
  local has, result, headers = call(s, "DoDATAStart", copy(s.recipients))
  if has and headers ~= nil then
    for _, line in ipairs(lines_of(headers)) do
      local name, value = line:match("^([^:%s]+):%s*(.*)$")
      if name then s.header_add[#s.header_add + 1] = { name, value } end
    end
  end
  return has and reply(result, "354") or nil
end

local function wants_lines(A)
  return defined(A, "StartMessage") or defined(A, "MessageLineRaw") or defined(A, "MessageLine")
end

local function on_content(A, chunk)
  local s = instance(A)
  if s.lines == 0 then call(s, "StartMessage") end
  for line in chunk:gmatch("(.-)\r\n") do
    s.lines = s.lines + 1
    call(s, "MessageLineRaw", line)
    call(s, "MessageLine", line)
  end
end

-- At the dot, in the seed's order: EndMessage, the headers DoDATAStart
-- asked for, the new sender, the RBL actions, CheckRecipients and
-- MonitorBcc, ProcessMessage, LogRecipients(Blocked).

local function address_list(text)
  local out = {}
  for _, a in ipairs(text or {}) do out[#out + 1] = a end
  return out
end

-- The RBL actions on a listed client; true when the message is discarded.
local function rbl_actions(s)
  local g = s.g
  if not g.RBLFound or g.RBLAccept then return false end
  if g.RBLHeader ~= nil and g.RBLHeader ~= "" then
    local name, value = tostring(g.RBLHeader):match("^([^:%s]+):%s*(.*)$")
    message.add_header(name or "X-RBL-Warning", value or tostring(g.RBLHeader))
  end
  if g.RBLBlackhole then
    message.discard()
    return true
  end
  if g.RBLRedirect ~= nil and g.RBLRedirect ~= "" then
    for _, r in ipairs(s.recipients) do message.del_rcpt(r) end
    message.add_rcpt(g.RBLRedirect)
  end
  return false
end

-- CheckRecipients (a refusal is the message's answer) and MonitorBcc.
local function check_recipients(A, s, summary, sender, subject, size)
  local to, cc = address_list(summary.to), address_list(summary.cc)
  local bcc = {}
  for _, r in ipairs(s.recipients) do
    if not contains_address(to, r) and not contains_address(cc, r) then bcc[#bcc + 1] = r end
  end
  local _, refusal = call(s, "CheckRecipients", copy(s.recipients), to, cc, bcc, client.address,
                          client.auth_user or "", sender, subject, s.g.LocalClientAddress and true or false, size)
  local r = reply(refusal, nil)
  if code_of(r) >= 4 then return r end
  if defined(A, "MonitorBcc") and #bcc > 0 then
    local _, monitors = call(s, "MonitorBcc", sender, bcc, copy(s.recipients))
    for _, m in ipairs(type(monitors) == "table" and monitors or {}) do message.add_rcpt(m) end
  end
  return nil
end

-- ProcessMessage's MessageStructure and AttachmentInfo from mime.parse.
local function message_structure(summary)
  local structure = {}
  for i, sec in ipairs(summary.sections or {}) do
    structure[i] = { Path = sec.path, ContentType = sec.content_type, ContentSubtype = sec.content_subtype,
                     ContentTypeFilename = sec.content_type_filename,
                     ContentDisposition = sec.content_disposition,
                     ContentDispositionFilename = sec.content_disposition_filename, Start = sec.start,
                     End = sec["end"] }
  end
  local attachments = {}
  for i, a in ipairs(summary.attachments or {}) do
    attachments[i] = { MIMESection = a.mime_section, Name = a.name, MIMEType = a.mime_type, Size = a.size,
                       Type = a.type }
  end
  return structure, attachments
end

-- HeaderModifiers: "Name: value" sets the header (the first one, or a new
-- one); "Name:" with no value removes every one.
local function modify_headers(path, modifiers)
  for _, line in ipairs(type(modifiers) == "table" and modifiers or {}) do
    local name, value = tostring(line):match("^([^:%s]+):%s*(.-)%s*$")
    if name then
      local count = header_count(path, name)
      if value == "" then
        for i = count, 1, -1 do message.change_header(name, i) end
      elseif count > 0 then
        message.change_header(name, 1, value)
      else
        message.add_header(name, value)
      end
    end
  end
end

-- ProcessMessage's actions applied; a reply when the message is refused.
local function process_message(s, path, summary, sender, subject, size)
  local structure, attachments = message_structure(summary)
  local actions = { SendToOriginalRecipients = true, Delete = true, Ignore = false, Reason = "",
                    Recipients = {}, HeaderModifiers = {} }
  local _, new = call(s, "ProcessMessage", sender, subject, copy(s.recipients), actions, structure, size,
                      attachments)
  if type(new) ~= "table" then return nil end
  if new.Ignore and new.Delete ~= false then
    local reason = new.Reason ~= nil and new.Reason ~= "" and tostring(new.Reason) or "Message rejected"
    local final = reply(reason, "554")
    if code_of(final) < 4 then final = "554 " .. reason .. "\r\n" end
    return final
  elseif new.Ignore then
    message.discard()  -- accepted, not processed: blackholed
  end
  if type(new.Recipients) == "table" and #new.Recipients > 0 then
    if new.SendToOriginalRecipients == false then
      for _, r in ipairs(s.recipients) do message.del_rcpt(r) end
    end
    for _, r in ipairs(new.Recipients) do
      if not contains_address(s.recipients, r) or new.SendToOriginalRecipients == false then message.add_rcpt(r) end
    end
  elseif new.SendToOriginalRecipients == false then
    message.discard()
  end
  modify_headers(path, new.HeaderModifiers)
  return nil
end

local function log_recipients(A, s, sender)
  if defined(A, "LogRecipients") then
    local _, text = call(s, "LogRecipients", copy(s.recipients), sender)
    if text ~= nil and text ~= "" then syslog.syslog(syslog.LOG_INFO, tostring(text)) end
  end
  if #s.blocked > 0 and defined(A, "LogRecipientsBlocked") then
    local _, text = call(s, "LogRecipientsBlocked", copy(s.blocked), sender)
    if text ~= nil and text ~= "" then syslog.syslog(syslog.LOG_INFO, tostring(text)) end
  end
end

local function on_dot(A, path)
  local s = instance(A)
  s.messages = s.messages + 1
  if wants_lines(A) and s.lines == 0 then call(s, "StartMessage") end
  call(s, "EndMessage")
  local summary = {}
  if defined(A, "ProcessMessage") or defined(A, "CheckRecipients") or defined(A, "MonitorBcc") then
    summary = mime.parse(path) or {}
  end
  local size = summary.size or 0
  local subject = summary.subject or ""
  local sender = client.sender or ""
  -- Headers DoDATAStart asked for go first.
  for i = #s.header_add, 1, -1 do message.insert_header(0, s.header_add[i][1], s.header_add[i][2]) end
  if s.new_sender then message.change_from(s.new_sender) end
  if rbl_actions(s) then return nil end
  if defined(A, "CheckRecipients") then
    local refusal = check_recipients(A, s, summary, sender, subject, size)
    if refusal then return refusal end
  end
  if defined(A, "ProcessMessage") then
    local final = process_message(s, path, summary, sender, subject, size)
    if final then return final end
  end
  log_recipients(A, s, sender)
  return nil
end

-- End(): the session's instance goes with the session (the runtime drops
-- `session` after hook.close).
local function on_close(A)
  local s = session[A.key]
  if s then call(s, "End") end
end

-- `source` is the script's text, from policyd (the adapter opens no file).
-- Wires the hook.* functions to the named parts above.
function M.adapt(env, script, source)
  assert(load(source, "@" .. script, "t"))  -- compiles: errors surface at load time
  local A = { env = env, script = script, source = source, key = {} }
  local hook = env.hook
  hook.accept = function() return on_accept(A) end
  hook.helo = function(arg) return on_hello(A, arg, false) end
  hook.ehlo = function(arg) return on_hello(A, arg, true) end
  if defined(A, "DoQUIT") then hook.quit = simple(A, "DoQUIT", "221") end
  if defined(A, "DoNOOP") then hook.noop = simple(A, "DoNOOP", "250") end
  if defined(A, "DoHELP") then hook.help = function() return on_help(A) end end
  if defined(A, "DoVRFY") then hook.vrfy = verify(A, "DoVRFY") end
  if defined(A, "DoEXPN") then hook.expn = verify(A, "DoEXPN") end
  if defined(A, "DoUnrecognised") then hook.unknown = function(line) return on_unknown(A, line) end end
  hook.mail = function(sender) return on_mail(A, sender) end
  hook.rcpt = function(recipient) return on_rcpt(A, recipient) end
  hook.data = function() return on_data(A) end
  if wants_lines(A) then hook.content = function(chunk) return on_content(A, chunk) end end
  hook.dot = function(path) return on_dot(A, path) end
  if defined(A, "DoRSET") then hook.rset = simple(A, "DoRSET", "250") end
  hook.close = function() return on_close(A) end
end

return M
