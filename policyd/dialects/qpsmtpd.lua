-- The qpsmtpd dialect (seeds 003 and 004) as a thin adapter over
-- mailhook's native smtpe hooks. Each qpsmtpd --script is one plugin: the
-- global functions hook_<name>(self, transaction, ...) it defines (or the
-- ones its register(self, qp) names with self:register_hook). All the
-- qpsmtpd plugins of a policy form one group, run in --script order for
-- each hook: DECLINED (or nothing) asks the next plugin, anything else
-- stops; when every plugin declines, the hook's qpsmtpd default applies
-- (for hook_rcpt a soft deny). The group answers at the place of the
-- first qpsmtpd script in the chain of scripts.
--
-- prelude(env) gives every script's environment the constants; detect(env)
-- tells whether the script defined hook_* functions; adapt(env, name) adds
-- it to the group and defines the native hook.* functions that run the
-- group. Compiled into mailhook-policyd (see dialects.cc).
local M = {}
-- What policyd tells the adapter (dialects.cc): qpsmtpd_config, the value
-- of $QPSMTPD_CONFIG (scripts' os.getenv only sees --lua-env names).
local host = ... or {}

-- Qpsmtpd::Constants.
local RC = { OK = 900, DENY = 901, DENYSOFT = 902, DENY_DISCONNECT = 903, DENYSOFT_DISCONNECT = 904,
             DENY_AUTH = 905, DENYSOFT_AUTH = 906, DECLINED = 909, DONE = 910 }
local LOG = { LOGEMERG = 0, LOGALERT = 1, LOGCRIT = 2, LOGERROR = 3, LOGWARN = 4, LOGNOTICE = 5, LOGINFO = 6,
              LOGDEBUG = 7 }
local OK, DECLINED, DONE = RC.OK, RC.DECLINED, RC.DONE
local DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT = RC.DENY, RC.DENYSOFT, RC.DENY_DISCONNECT,
                                                            RC.DENYSOFT_DISCONNECT
local RC_NAME = {}
for k, v in pairs(RC) do RC_NAME[v] = k end

local function is_deny(rc)
  return rc == DENY or rc == DENYSOFT or rc == DENY_DISCONNECT or rc == DENYSOFT_DISCONNECT
end

---------------------------------------------------------------------------
-- Qpsmtpd::Address: parse("<user@host>"), address(), user(), host(),
-- format(), notes(key [, value]), config(name) (hook_user_config).
local Address = {}
Address.__index = Address
Address.__tostring = function(a) return a:format() end

local group  -- the plugins of this policy (set by the first adapt)

function Address.new(text)
  text = tostring(text or "")
  local inner = text:match("^%s*<(.*)>%s*$") or text:match("^%s*(.-)%s*$")
  local user, host = inner:match("^(.*)@([^@]*)$")
  return setmetatable({ _address = inner, _user = user or inner, _host = host, _notes = {} }, Address)
end
Address.parse = Address.new
function Address:address() return self._address end
function Address:user() return self._user end
function Address:host() return self._host end
function Address:format() return "<" .. self._address .. ">" end
function Address:notes(key, ...)
  if select("#", ...) > 0 then self._notes[key] = ... end
  return self._notes[key]
end

---------------------------------------------------------------------------
-- Per-session state: globals are per worker, so everything of a session
-- is kept by client.id_log and dropped in hook.close.
local sessions = {}

local Connection, Transaction, Header, Qp, Plugin = {}, {}, {}, {}, {}
Connection.__index, Transaction.__index, Header.__index, Qp.__index = Connection, Transaction, Header, Qp

local function new_transaction(sess)
  return setmetatable({ _sess = sess, _notes = {}, _recipients = {}, _header_ops = {} }, Transaction)
end

local function session()
  local id = client.id_log
  local s = sessions[id]
  if s == nil then
    s = { id = id, notes = {}, transactions = 0 }
    s.connection = setmetatable({ _sess = s }, Connection)
    s.transaction = new_transaction(s)
    s.qp = setmetatable({ _sess = s }, Qp)
    sessions[id] = s
  end
  return s
end

-- Qpsmtpd::Connection
function Connection:remote_ip() return client.address end
function Connection:remote_port() return client.port end
function Connection:remote_host() return client.host end
function Connection:local_ip() return client.local_address end
function Connection:local_port() return client.local_port end
function Connection:hello_host() return client.helo end
function Connection:hello() return self._sess.hello end
function Connection:id() return client.id_log end
function Connection:relay_client(...)
  if select("#", ...) > 0 then self._sess.relay_client = ... end
  return self._sess.relay_client
end
function Connection:notes(key, ...)
  if select("#", ...) > 0 then self._sess.notes[key] = ... end
  return self._sess.notes[key]
end

-- Qpsmtpd::Transaction
function Transaction:id() return client.id_trans end
function Transaction:sender(...)
  if select("#", ...) > 0 then
    local a = ...
    self._sender = type(a) == "table" and a or Address.new(a)
  end
  return self._sender
end
function Transaction:recipients(...)
  if select("#", ...) > 0 then
    self._recipients = {}
    for _, r in ipairs({ ... }) do self:add_recipient(r) end
  end
  local out = {}
  for i, r in ipairs(self._recipients) do out[i] = r end
  return out
end
function Transaction:add_recipient(r)
  if type(r) ~= "table" then r = Address.new(r) end
  self._recipients[#self._recipients + 1] = r
end
function Transaction:remove_recipient(r)
  local addr = type(r) == "table" and r:address() or Address.new(r):address()
  for i = #self._recipients, 1, -1 do
    if self._recipients[i]:address():lower() == addr:lower() then table.remove(self._recipients, i) end
  end
end
function Transaction:notes(key, ...)
  if select("#", ...) > 0 then self._notes[key] = ... end
  return self._notes[key]
end
function Transaction:body_filename() return client.msg_file end
function Transaction:data_size()
  local f = client.msg_file and io.open(client.msg_file, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

-- The header and body of the message file, read once per transaction.
local function read_message(tx)
  if tx._header then return end
  tx._header = setmetatable({ _tx = tx, _fields = {} }, Header)
  tx._body_offset = 0
  local f = client.msg_file and io.open(client.msg_file, "rb")
  if not f then return end
  local fields, offset = tx._header._fields, 0
  for line in f:lines("L") do
    offset = offset + #line
    local bare = line:gsub("\r?\n$", "")
    if bare == "" then break end
    if bare:match("^[ \t]") and #fields > 0 then
      fields[#fields].value = fields[#fields].value .. "\r\n" .. bare
    else
      local name, value = bare:match("^([^:]+):[ \t]*(.*)$")
      if name then fields[#fields + 1] = { name = name, value = value } end
    end
  end
  tx._body_offset = offset
  f:close()
end
function Transaction:header()
  read_message(self)
  return self._header
end
function Transaction:body_length()
  read_message(self)
  return math.max(self:data_size() - self._body_offset, 0)
end
function Transaction:body_resetpos() self._body_pos = nil end
function Transaction:body_getline()
  read_message(self)
  local f = client.msg_file and io.open(client.msg_file, "rb")
  if not f then return nil end
  f:seek("set", self._body_pos or self._body_offset)
  local line = f:read("L")
  self._body_pos = f:seek()
  f:close()
  return line
end
function Transaction:body_as_string()
  read_message(self)
  local f = client.msg_file and io.open(client.msg_file, "rb")
  if not f then return "" end
  f:seek("set", self._body_offset)
  local body = f:read("a")
  f:close()
  return body
end

-- Mail::Header, as qpsmtpd's transaction->header gives it. Indexes are
-- 0-based as in Perl. Changes are applied to the message at the end of
-- DATA (mailhook's `message`), in the order they were made.
local function lname(n) return tostring(n):lower() end
function Header:_matching(tag)
  local out = {}
  for i, f in ipairs(self._fields) do
    if lname(f.name) == lname(tag) then out[#out + 1] = i end
  end
  return out
end
function Header:get(tag, index)
  local m = self:_matching(tag)
  local i = m[(index or 0) + 1]
  return i and self._fields[i].value or nil
end
function Header:get_all(tag)
  local out = {}
  for _, i in ipairs(self:_matching(tag)) do out[#out + 1] = self._fields[i].value end
  return out
end
function Header:count(tag) return #self:_matching(tag) end
function Header:tags()
  local seen, out = {}, {}
  for _, f in ipairs(self._fields) do
    if not seen[lname(f.name)] then seen[lname(f.name)] = true out[#out + 1] = f.name end
  end
  return out
end
function Header:add(tag, value, index)
  local ops = self._tx._header_ops
  if index == 0 then
    table.insert(self._fields, 1, { name = tag, value = value })
    ops[#ops + 1] = { "insert", tag, value }
  else
    self._fields[#self._fields + 1] = { name = tag, value = value }
    ops[#ops + 1] = { "add", tag, value }
  end
end
function Header:replace(tag, value, index)
  local m = self:_matching(tag)
  local i = m[(index or 0) + 1]
  if not i then return self:add(tag, value) end
  self._fields[i].value = value
  local ops = self._tx._header_ops
  ops[#ops + 1] = { "change", tag, (index or 0) + 1, value }
end
function Header:delete(tag, index)
  local m = self:_matching(tag)
  local ops = self._tx._header_ops
  local from, to = 1, #m
  if index then from, to = index + 1, index + 1 end
  for k = math.min(to, #m), from, -1 do
    table.remove(self._fields, m[k])
    ops[#ops + 1] = { "change", tag, k, nil }
  end
end
function Header:as_string()
  local out = {}
  for _, f in ipairs(self._fields) do out[#out + 1] = f.name .. ": " .. f.value .. "\r\n" end
  return table.concat(out)
end

---------------------------------------------------------------------------
-- Running hooks over the plugins.
local current_hook = "?"
local in_logging = false
local run  -- forward

local function write_log(level, plugin_name, hook, text)
  local priority = level <= LOG.LOGERROR and syslog.LOG_ERR or level == LOG.LOGWARN and syslog.LOG_WARNING
                   or level <= LOG.LOGINFO and syslog.LOG_INFO or syslog.LOG_DEBUG
  syslog.syslog(priority, string.format("qpsmtpd %s[%s]: %s", plugin_name, hook, text))
end

local function log_message(level, plugin_name, ...)
  local parts = {}
  for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
  local text = table.concat(parts, " ")
  if not in_logging and group.has.logging then
    in_logging = true
    local rc = run("logging", level, current_hook, plugin_name, text)
    in_logging = false
    if rc == OK then return end
  end
  write_log(level, plugin_name, current_hook, text)
end

-- Qpsmtpd (the object plugins reach as self:qp())
function Qp:connection() return self._sess.connection end
function Qp:transaction() return self._sess.transaction end
function Qp:respond(code, ...)
  local lines = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "table" then for _, l in ipairs(v) do lines[#lines + 1] = tostring(l) end
    else lines[#lines + 1] = tostring(v) end
  end
  self._sess.responded = { code = tonumber(code), lines = lines }
  return true
end
function Qp:log(level, ...) log_message(level, "qpsmtpd", ...) end

-- config(name): hook_config first, then the file <dir>/<name>, where dir is
-- $QPSMTPD_CONFIG or the directory `config` next to the plugin script.
-- policyd grants reading both (loader.cc); io.open refuses a name that
-- leads out of them ("../x", a symbolic link).
local config_cache = {}
local function read_config(dir, name)
  local path = dir .. "/" .. name
  if config_cache[path] == nil then
    local values = {}
    local f = io.open(path, "r")
    if f then
      for line in f:lines() do
        line = line:gsub("^%s+", ""):gsub("%s+$", "")
        if line ~= "" and not line:match("^#") then values[#values + 1] = line end
      end
      f:close()
    end
    config_cache[path] = values
  end
  return config_cache[path]
end
local function config(plugin, name)
  if group.has.config then
    local result = { run("config", name) }
    if result[1] == OK then return table.unpack(result, 2) end
  end
  local dir = host.qpsmtpd_config or plugin._config_dir
  return table.unpack(read_config(dir, name))
end
function Qp:config(name) return config(self._plugin or group.plugins[1], name) end
function Address:config(name)
  if not group.has.user_config then return nil end
  local result = { run("user_config", self, name) }
  if result[1] == OK then return table.unpack(result, 2) end
  return nil
end

-- Qpsmtpd::Plugin: self in every hook.
Plugin.__index = Plugin
function Plugin:qp()
  local s = session()
  local qp = setmetatable({ _sess = s, _plugin = self }, Qp)
  return qp
end
function Plugin:connection() return session().connection end
function Plugin:transaction() return session().transaction end
function Plugin:plugin_name() return self._name end
function Plugin:log(level, ...) log_message(level, self._name, ...) end
function Plugin:register_hook(hook, fn)
  hook = tostring(hook):gsub("-", "_")
  if type(fn) == "string" then fn = self._env[fn] end
  if type(fn) ~= "function" then error("register_hook(" .. hook .. "): not a function", 2) end
  self._hooks[hook] = fn
  group.has[hook] = true
end
function Plugin:is_immune()
  local s = session()
  return s.relay_client or s.notes.whitelisthost or s.transaction._notes.whitelistsender or false
end
function Plugin:config(name) return config(self, name) end

-- Hooks whose outcome is not reported to hook_deny / hook_ok.
local QUIET = { deny = true, ok = true, logging = true, config = true, user_config = true, pre_connection = true,
                post_connection = true, disconnect = true, post_fork = true }

-- Runs hook_<name> of each plugin until one does not decline. Returns the
-- return code, its message and the plugin, or DECLINED.
run = function(name, ...)
  local outer = current_hook
  for _, p in ipairs(group.plugins) do
    local fn = p._hooks[name]
    if fn then
      current_hook = name
      local s = session()
      local result = table.pack(pcall(fn, p, s.transaction, ...))
      current_hook = outer
      local rc
      if not result[1] then
        syslog.syslog(syslog.LOG_ERR, string.format("qpsmtpd %s[%s]: error: %s", p._name, name, tostring(result[2])))
        rc = DECLINED
      else
        rc = result[2]
        if rc == nil then
          -- Hooks whose return is ignored may return nothing.
          if not QUIET[name] then write_log(LOG.LOGERROR, p._name, name, "returned nothing; taken as DECLINED") end
          rc = DECLINED
        end
      end
      if rc ~= DECLINED then
        if not QUIET[name] then
          if is_deny(rc) and group.has.deny then run("deny", p._name, rc, result[3])
          elseif not is_deny(rc) and group.has.ok then run("ok", p._name, rc, result[3]) end
        end
        return rc, table.unpack(result, 3, result.n)
      end
    end
  end
  return DECLINED
end

---------------------------------------------------------------------------
-- Turning return codes into replies.
local function text_of(msg, default)
  if msg == nil or msg == "" then return { default } end
  if type(msg) == "table" then return msg end
  return { tostring(msg) }
end

local function format_reply(code, lines)
  local out = {}
  for i, l in ipairs(lines) do
    out[#out + 1] = string.format("%d%s%s\r\n", code, i < #lines and "-" or " ", tostring(l))
  end
  return table.concat(out)
end

-- DONE: the reply the plugin gave with qp:respond (nil: the default).
local function responded()
  local s = session()
  local r = s.responded
  s.responded = nil
  if r and r.code then return format_reply(r.code, #r.lines > 0 and r.lines or { "" }) end
  return nil
end

-- The reply for a deny-ish code; `soft` and `hard` are the codes and texts
-- of the hook (qpsmtpd's), *_DISCONNECT also closes the connection.
local function deny_reply(rc, msg, hard, soft)
  if rc == DENY_DISCONNECT or rc == DENYSOFT_DISCONNECT then
    mailhook.disconnect()
    session().disconnecting = true
  end
  local d = (rc == DENY or rc == DENY_DISCONNECT) and hard or soft
  return format_reply(d[1], text_of(msg, d[2]))
end

-- The answer of a command hook: nil is mailhook's (or the MTA's) default.
local function answer(rc, msg, hard, soft)
  if rc == DONE then return responded() end
  session().responded = nil
  if is_deny(rc) then return deny_reply(rc, msg, hard, soft) end
  return nil
end

-- ESMTP parameters of the current MAIL/RCPT line, keyed as sent; a lookup
-- in any case finds them (qpsmtpd plugins use lower case).
local function esmtp_parameters(input)
  local rest = (input or ""):match(">%s*(.*)$") or ""
  local params = setmetatable({}, { __index = function(t, k)
    if type(k) ~= "string" then return nil end
    for key, v in pairs(t) do if key:lower() == k:lower() then return v end end
  end })
  for p in rest:gmatch("%S+") do
    local k, v = p:match("^([^=]+)=(.*)$")
    if k then params[k] = v else params[p] = true end
  end
  return params
end

-- The parse hooks: hook_<cmd>_parse returns (ignored, sub); sub(self, cmd,
-- line) gives (OK, pieces...) or (DENY, reason).
local function parse(cmd, line)
  if not group.has[cmd .. "_parse"] then return nil end
  for _, p in ipairs(group.plugins) do
    local fn = p._hooks[cmd .. "_parse"]
    if fn then
      local _, sub = fn(p, session().transaction)
      if type(sub) == "function" then return table.pack(sub(p, cmd, line)) end
    end
  end
  return nil
end

local function after_verb(input)
  return ((input or ""):match("^%S+%s*(.*)$")) or ""
end

---------------------------------------------------------------------------
-- The native hooks the group defines.
local native = {}

function native.accept(ip, _)
  local s = session()
  if group.has.pre_connection then
    local rc, msg = run("pre_connection", { remote_ip = ip, remote_port = client.port,
                                            local_ip = client.local_address, local_port = client.local_port })
    if rc == DENY or rc == DENY_DISCONNECT then return format_reply(550, text_of(msg, "Connection from you denied, bye bye.")) end
    if rc == DENYSOFT or rc == DENYSOFT_DISCONNECT then
      return format_reply(451, text_of(msg, "Connection from you temporarily denied, bye bye."))
    end
  end
  local rc, msg = run("connect")
  if rc == DONE then return responded() end
  if rc == DENY or rc == DENY_DISCONNECT then return format_reply(550, text_of(msg, "Connection from you denied, bye bye.")) end
  if rc == DENYSOFT or rc == DENYSOFT_DISCONNECT then
    return format_reply(450, text_of(msg, "Connection from you temporarily denied, bye bye."))
  end
  s.responded = nil
  return nil
end

local function hello(kind, host)
  local s = session()
  s.hello = kind
  local extra = {}
  local parsed = parse(kind, host)
  if parsed then
    host = parsed[2] or host
    extra = { table.unpack(parsed, 3, parsed.n) }
  end
  local rc, msg = run(kind, host, table.unpack(extra))
  return answer(rc, msg, { 550, "Denied" }, { 450, "Temporarily denied" })
end
function native.helo(host) return hello("helo", host) end
function native.ehlo(host) return hello("ehlo", host) end

-- MAIL and RCPT: parse hook, *_pre hook, then the hook proper.
local function address_of(kind, address)
  local parsed = parse(kind, after_verb(client.input))
  local params = esmtp_parameters(client.input)
  if parsed then
    if parsed[1] ~= OK then return nil, format_reply(501, text_of(parsed[2], "Syntax error in command")) end
    address = parsed[2] or address
    params = esmtp_parameters("<> " .. table.concat({ table.unpack(parsed, 3, parsed.n) }, " "))
    for i = 3, parsed.n - 1, 2 do
      if type(parsed[i]) == "string" and parsed[i + 1] ~= nil then params[parsed[i]] = parsed[i + 1] end
    end
  end
  if group.has[kind .. "_pre"] then
    local rc, new = run(kind .. "_pre", address)
    if rc == OK and new then
      address = type(new) == "table" and new:address() or tostring(new):match("^<?(.-)>?$")
    elseif rc ~= DECLINED then
      return nil, format_reply(501, text_of(nil, "Syntax error in address"))
    end
  end
  return Address.new(address), nil, params
end

function native.mail(sender)
  local s = session()
  s.transactions = s.transactions + 1
  if s.transactions == 1 and group.has.reset_transaction then run("reset_transaction") end
  local addr, failure, params = address_of("mail", sender)
  if failure then return failure end
  local tx = s.transaction
  tx._sender, tx._envelope_sender = addr, sender
  local rc, msg = run("mail", addr, params)
  return answer(rc, msg, { 550, "denied" }, { 450, "temporarily denied" })
end

function native.rcpt(recipient)
  local s = session()
  local addr, failure, params = address_of("rcpt", recipient)
  if failure then return failure end
  local rc, msg = run("rcpt", addr, params)
  if rc == OK then
    s.transaction:add_recipient(addr)
    -- What the front holds: the address as the client gave it.
    s.transaction._front = s.transaction._front or {}
    table.insert(s.transaction._front, recipient)
    return nil
  end
  if rc == DECLINED then
    -- qpsmtpd: no plugin decided.
    return "450 4.7.1 No plugin decided if relaying is allowed\r\n"
  end
  return answer(rc, msg, { 550, "relaying denied" }, { 450, "relaying denied" })
end

function native.data()
  local rc, msg = run("data")
  return answer(rc, msg, { 554, "Message denied" }, { 451, "Message denied temporarily" })
end

-- data_headers_end: SMTP has no reply before the final dot, so a refusal
-- here is the answer to the dot (and the connection closes after it).
function native.eoh()
  local rc, msg = run("data_headers_end")
  if rc == DENY_DISCONNECT then
    session().pending_eom = { rc, format_reply(554, text_of(msg, "Message denied")) }
  elseif rc == DENYSOFT_DISCONNECT then
    session().pending_eom = { rc, format_reply(421, text_of(msg, "Message denied temporarily")) }
  end
end

-- Applies what the plugins changed on the transaction to the message.
local function apply_transaction(tx)
  for _, op in ipairs(tx._header_ops) do
    if op[1] == "add" then message.add_header(op[2], op[3])
    elseif op[1] == "insert" then message.insert_header(0, op[2], op[3])
    else message.change_header(op[2], op[3], op[4]) end
  end
  tx._header_ops = {}
  if tx._sender and tx._envelope_sender and tx._sender:address() ~= tx._envelope_sender then
    message.change_from(tx._sender:address())
  end
  -- Recipients: what the front accepted (the original addresses) against
  -- the transaction's list now.
  local accepted, now = {}, {}
  for _, r in ipairs(tx._front or {}) do accepted[r:lower()] = r end
  for _, r in ipairs(tx._recipients) do now[r:address():lower()] = r:address() end
  for key, r in pairs(accepted) do
    if not now[key] then message.del_rcpt(r) end
  end
  for key, r in pairs(now) do
    if not accepted[key] then message.add_rcpt(r) end
  end
end

function native.dot(_)
  local s = session()
  local tx = s.transaction
  local function finish(reply)
    apply_transaction(tx)
    return reply
  end
  if s.pending_eom then
    local p = s.pending_eom
    s.pending_eom = nil
    mailhook.disconnect()
    s.disconnecting = true
    return p[2]
  end
  if group.has.received_line then
    -- RFC 5321 4.4: mailhook's own Received line stays; the plugin's is added above it.
    local rc, line = run("received_line", client.tls_protocol and "ESMTPS" or "ESMTP",
                         client.auth_user and ("(authenticated as " .. client.auth_user .. ")") or "",
                         client.tls_protocol and (client.tls_protocol .. " " .. (client.tls_cipher or "")) or "")
    if rc == OK and type(line) == "string" then tx:header():add("Received", line, 0) end
  end
  local hard, soft = { 554, "Message denied" }, { 451, "Message denied temporarily" }
  for _, name in ipairs({ "data_post_headers", "data_post" }) do
    local rc, msg = run(name)
    if is_deny(rc) then return deny_reply(rc, msg, hard, soft) end
    if rc == DONE and name == "data_post" then  -- not queued; the plugin answered
      message.discard()
      return finish(responded() or "250 2.0.0 Queued\r\n")
    end
  end
  local rc = run("queue_pre")
  if rc == DONE then
    message.discard()
    return finish("250 2.0.0 Queued\r\n")
  end
  local qrc, qmsg = run("queue")
  local reply
  if qrc == OK then  -- a queue plugin took the message: mailhook does not deliver it
    message.discard()
    reply = format_reply(250, text_of(qmsg, "Queued"))
  elseif qrc == DONE then
    message.discard()
    reply = responded() or "250 2.0.0 Queued\r\n"
  elseif is_deny(qrc) then
    reply = deny_reply(qrc, qmsg, { 552, "Message denied" }, { 452, "Message denied temporarily" })
  end
  local prc, pmsg = run("queue_post")
  if group.has.queue_post and prc ~= OK and pmsg then write_log(LOG.LOGERROR, "queue_post", "queue_post", tostring(pmsg)) end
  if reply and reply:match("^[45]") then return reply end
  return finish(reply)
end

function native.reset()
  local s = session()
  if group.has.reset_transaction then run("reset_transaction") end
  s.transaction = new_transaction(s)
  s.pending_eom = nil
end

function native.quit()
  local s = session()
  local rc = run("quit")
  if rc == DONE then
    s.quit_done = true
    return responded()
  end
  s.responded = nil
  if group.has.disconnect then run("disconnect") end
  s.disconnected = true
  return nil
end

function native.close()
  local s = session()
  if s.disconnecting and not s.disconnected and group.has.disconnect then run("disconnect") end
  run("post_connection")
  sessions[s.id] = nil
end

function native.unknown(input)
  local words = {}
  for w in tostring(input or ""):gmatch("%S+") do words[#words + 1] = w end
  local cmd = table.remove(words, 1) or ""
  local rc, msg = run("unrecognized_command", cmd, table.unpack(words))
  if rc == DONE then return responded() end
  if rc == DENY_DISCONNECT then
    mailhook.disconnect()
    session().disconnecting = true
    return format_reply(521, text_of(msg, "Unrecognized command"))
  end
  return format_reply(500, text_of(rc == DENY and msg or nil, "Unrecognized command"))
end

function native.help()
  local args = {}
  for w in after_verb(client.input):gmatch("%S+") do args[#args + 1] = w end
  local rc, msg = run("help", table.unpack(args))
  if rc == DONE then return responded() end
  if rc == DENY then return format_reply(501, text_of(msg, "Syntax error, command not understood")) end
  if msg then return format_reply(214, text_of(msg, "")) end
  return nil
end

function native.vrfy(arg, _)
  local rc, msg = run("vrfy", arg)
  if rc == DONE then return responded() end
  if rc == OK then return format_reply(250, text_of(msg, "User OK")) end
  if rc == DENY then return format_reply(554, text_of(msg, "Access Denied")) end
  return "252 Just try sending a mail and we'll see how it turns out ...\r\n"
end

function native.noop()
  local rc, msg = run("noop")
  if rc == DONE then return responded() end
  if rc == DENY_DISCONNECT then
    mailhook.disconnect()
    session().disconnecting = true
    return format_reply(421, text_of(msg, "Stop wasting my time."))
  end
  if rc == DENY then return format_reply(500, text_of(msg, "Stop wasting my time.")) end
  return nil
end

-- AUTH: hook_auth_<mechanism> then hook_auth (qpsmtpd's docs/authentication).
function native.auth(arg, user, password)
  local mechanism = (tostring(arg or ""):match("^(%S+)") or ""):lower()
  local rc, msg = DECLINED, nil
  if group.has["auth_" .. mechanism] then rc, msg = run("auth_" .. mechanism, mechanism, user, password) end
  if rc == DECLINED then rc, msg = run("auth", mechanism, user, password) end
  if rc == OK then return format_reply(235, text_of(msg, "Authentication successful")) end
  if rc == DENYSOFT then return format_reply(454, text_of(msg, "Temporary authentication failure")) end
  return format_reply(535, text_of(msg, "Authentication failed"))
end

-- Which native hooks the group needs, from the qpsmtpd hooks it has.
local NEEDS = {
  accept = { "pre_connection", "connect" },
  helo = { "helo", "helo_parse" }, ehlo = { "ehlo", "ehlo_parse" },
  mail = { "mail", "mail_pre", "mail_parse", "reset_transaction" },
  data = { "data" },
  eoh = { "data_headers_end" },
  dot = { "received_line", "data_post_headers", "data_post", "queue_pre", "queue", "queue_post" },
  reset = { "reset_transaction" },
  quit = { "quit", "disconnect" },
  close = { "post_connection", "disconnect" },
  unknown = { "unrecognized_command" },
  help = { "help" }, vrfy = { "vrfy" }, noop = { "noop" },
  auth = { "auth", "auth_plain", "auth_login", "auth_cram_md5" },
}

local function install(hook)
  for name, fn in pairs(native) do
    -- rcpt: the soft-deny default holds with or without hook_rcpt; mail,
    -- reset and close keep the transaction and the session's state.
    local needed = name == "rcpt" or name == "mail" or name == "reset" or name == "close"
    for _, q in ipairs(NEEDS[name] or {}) do needed = needed or group.has[q] end
    if needed then hook[name] = fn end
  end
  -- hook.dot also applies what plugins changed on the transaction.
  if group.has.data_headers_end or group.has.mail_pre or group.has.rcpt_pre or group.has.mail_parse
     or group.has.rcpt_parse or group.has.rcpt then
    hook.dot = native.dot
  end
end

---------------------------------------------------------------------------
function M.prelude(env)
  for k, v in pairs(RC) do env[k] = v end
  for k, v in pairs(LOG) do env[k] = v end
  env.Qpsmtpd = { Address = Address }
end

function M.detect(env)
  for k, v in pairs(env) do
    if type(k) == "string" and k:match("^hook_") and type(v) == "function" then return true end
  end
  return false
end

-- Adds the script as a plugin; the first one's hook table runs the group.
function M.adapt(env, script)
  if group == nil then
    group = { plugins = {}, has = {}, hook = env.hook }
  end
  local plugin = setmetatable({ _env = env, _hooks = {}, _name = script:match("([^/]+)$"):gsub("%.lua$", ""),
                                _config_dir = (script:match("^(.*)/[^/]*$") or ".") .. "/config" }, Plugin)
  for k, v in pairs(env) do
    if type(k) == "string" and type(v) == "function" then
      local name = k:match("^hook_(.+)$")
      if name then plugin._hooks[name] = v group.has[name] = true end
    end
  end
  group.plugins[#group.plugins + 1] = plugin
  if type(rawget(env, "register")) == "function" then env.register(plugin, plugin:qp_static()) end
  install(group.hook)
  -- qpsmtpd-async's hook_post_fork: once per worker (each loads the policy).
  if plugin._hooks.post_fork then
    current_hook = "post_fork"
    pcall(plugin._hooks.post_fork, plugin)
    current_hook = "?"
  end
  return group.hook == env.hook
end

-- register(self, qp) runs at load time, before any session.
function Plugin:qp_static() return setmetatable({ _sess = { notes = {} }, _plugin = self }, Qp) end

return M
