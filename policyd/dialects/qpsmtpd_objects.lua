-- The qpsmtpd dialect, part 1 of 3: the object model plugins see
-- (Qpsmtpd::Constants, ::Address, ::Connection, ::Transaction, Mail::Header
-- and the Qpsmtpd object's state) and each session's state. Runs no
-- plugin: qpsmtpd_plugins.lua adds the methods that do (config, log) and
-- qpsmtpd.lua maps the smtpe hooks. Never keeps state in a global keyed
-- by a session: the runtime's `session` table holds it.

-- Qpsmtpd::Constants.
local RC = { OK = 900, DENY = 901, DENYSOFT = 902, DENY_DISCONNECT = 903, DENYSOFT_DISCONNECT = 904,
             DENY_AUTH = 905, DENYSOFT_AUTH = 906, DECLINED = 909, DONE = 910 }
local LOG = { LOGEMERG = 0, LOGALERT = 1, LOGCRIT = 2, LOGERROR = 3, LOGWARN = 4, LOGNOTICE = 5, LOGINFO = 6,
              LOGDEBUG = 7 }
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
-- Per-session state: kept in the runtime's `session` table under a key
-- no script can name; the runtime frees it when the session ends.
local KEY = {}

local Connection, Transaction, Header, Qp = {}, {}, {}, {}
Connection.__index, Transaction.__index, Header.__index, Qp.__index = Connection, Transaction, Header, Qp

local function new_transaction(sess)
  return setmetatable({ _sess = sess, _notes = {}, _recipients = {}, _header_ops = {} }, Transaction)
end

-- The calling session's state, created on its first hook.
local function state()
  local s = session[KEY]
  if s == nil then
    s = { notes = {}, transactions = 0 }
    s.connection = setmetatable({ _sess = s }, Connection)
    s.transaction = new_transaction(s)
    s.qp = setmetatable({ _sess = s }, Qp)
    session[KEY] = s
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


-- Qpsmtpd (the object plugins reach as self:qp()): its plain parts; log
-- and config run plugins (qpsmtpd_plugins.lua).
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

return { RC = RC, LOG = LOG, RC_NAME = RC_NAME, is_deny = is_deny, Address = Address, Connection = Connection,
         Transaction = Transaction, Header = Header, Qp = Qp, state = state, new_transaction = new_transaction }
