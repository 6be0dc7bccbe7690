-- The qpsmtpd dialect (seeds 003 and 004) as a thin adapter over
-- mailhook's native smtpe hooks; part 3 of 3: the hook mapping. Each
-- qpsmtpd --script is one plugin: the global functions hook_<name>(self,
-- transaction, ...) it defines (or the ones its register(self, qp) names
-- with self:register_hook). All the qpsmtpd plugins of a policy form one
-- group, run in --script order for each hook (qpsmtpd_plugins.lua, over
-- the object model of qpsmtpd_objects.lua): DECLINED (or nothing) asks the
-- next plugin, anything else stops; when every plugin declines, the hook's
-- qpsmtpd default applies (for hook_rcpt a soft deny). The group answers
-- at the place of the first qpsmtpd script in the chain of scripts.
--
-- prelude(env) gives every script's environment the constants; detect(env)
-- tells whether the script defined hook_* functions; adapt(env, name) adds
-- it to the group and defines the native hook.* functions that run the
-- group. Compiled into mailhook-policyd with its parts (see dialects.cc).
local M = {}
local _, parts = ...
local O, R = parts.qpsmtpd_objects, parts.qpsmtpd_plugins
local RC, LOG, Address = O.RC, O.LOG, O.Address
local OK, DECLINED, DONE = RC.OK, RC.DECLINED, RC.DONE
local DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT = RC.DENY, RC.DENYSOFT, RC.DENY_DISCONNECT,
                                                            RC.DENYSOFT_DISCONNECT
local is_deny, state, new_transaction = O.is_deny, O.state, O.new_transaction
local group, run, write_log = R.group, R.run, R.write_log

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
  local s = state()
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
    state().disconnecting = true
  end
  local d = (rc == DENY or rc == DENY_DISCONNECT) and hard or soft
  return format_reply(d[1], text_of(msg, d[2]))
end

-- The answer of a command hook: nil is mailhook's (or the MTA's) default.
local function answer(rc, msg, hard, soft)
  if rc == DONE then return responded() end
  state().responded = nil
  if is_deny(rc) then return deny_reply(rc, msg, hard, soft) end
  return nil
end

-- ESMTP parameters of the current MAIL/RCPT command (client.params, the
-- front's parse, keywords upper case); a lookup in any case finds them
-- (qpsmtpd plugins use lower case). Pieces a parse hook returned (key,
-- value, ...) are added over them.
local function esmtp_parameters(pieces)
  local params = setmetatable({}, { __index = function(t, k)
    if type(k) ~= "string" then return nil end
    for key, v in pairs(t) do if key:lower() == k:lower() then return v end end
  end })
  if pieces then
    for i = 1, #pieces - 1, 2 do
      if type(pieces[i]) == "string" and pieces[i + 1] ~= nil then params[pieces[i]] = pieces[i + 1] end
    end
    return params
  end
  local given = client.params or {}
  for _, name in ipairs(given) do params[name] = given[name] end
  return params
end

-- The parse hooks: hook_<cmd>_parse returns (ignored, sub); sub(self, cmd,
-- line) gives (OK, pieces...) or (DENY, reason).
local function parse(cmd, line)
  if not group.has[cmd .. "_parse"] then return nil end
  for _, p in ipairs(group.plugins) do
    local fn = p._hooks[cmd .. "_parse"]
    if fn then
      local _, sub = fn(p, state().transaction)
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
  local s = state()
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
  local s = state()
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
  -- hook_<cmd>_parse gets the command's raw text, as in qpsmtpd.
  local parsed = parse(kind, after_verb(client.input))
  local params
  if parsed then
    if parsed[1] ~= OK then return nil, format_reply(501, text_of(parsed[2], "Syntax error in command")) end
    address = parsed[2] or address
    params = esmtp_parameters({ table.unpack(parsed, 3, parsed.n) })
  else
    params = esmtp_parameters()
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
  local s = state()
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
  local s = state()
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
    state().pending_eom = { rc, format_reply(554, text_of(msg, "Message denied")) }
  elseif rc == DENYSOFT_DISCONNECT then
    state().pending_eom = { rc, format_reply(421, text_of(msg, "Message denied temporarily")) }
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
  local s = state()
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
  local s = state()
  if group.has.reset_transaction then run("reset_transaction") end
  s.transaction = new_transaction(s)
  s.pending_eom = nil
end

function native.quit()
  local s = state()
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
  local s = state()
  if s.disconnecting and not s.disconnected and group.has.disconnect then run("disconnect") end
  run("post_connection")
  -- The session's state goes with the session: the runtime frees `session`.
end

function native.unknown(input)
  local words = {}
  for w in tostring(input or ""):gmatch("%S+") do words[#words + 1] = w end
  local cmd = table.remove(words, 1) or ""
  local rc, msg = run("unrecognized_command", cmd, table.unpack(words))
  if rc == DONE then return responded() end
  if rc == DENY_DISCONNECT then
    mailhook.disconnect()
    state().disconnecting = true
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
    state().disconnecting = true
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
    -- rcpt: the soft-deny default holds with or without hook_rcpt; mail
    -- and reset keep the transaction object. (The session's state needs
    -- no hook.close: the runtime frees it with `session`.)
    local needed = name == "rcpt" or name == "mail" or name == "reset"
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
  if group.hook == nil then group.hook = env.hook end
  R.add_plugin(env, script)
  install(group.hook)
  return group.hook == env.hook
end

return M
