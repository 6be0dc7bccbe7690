-- The smtpf dialect (seed 001) as a thin adapter over mailhook's native
-- smtpe hooks. prelude(env) gives a script's environment the `smtp` table
-- (codes, sess, tran) before the script runs; detect(env) tells whether
-- the script defined smtpf call-backs; adapt(env) then defines the hook.*
-- functions that call them. Compiled into mailhook-policyd (the build
-- embeds this file; policyd/lua_runtime/loader.cc runs it).
local M = {}

local CODES = {
  ok = 250, closing = 421, busy = 450, again = 451, storage = 452, bad_syntax = 500, bad_arg = 501,
  bad_command = 502, bad_sequence = 503, bad_param = 504, reject = 550, bad_user = 551, over_quota = 552,
  bad_address = 553, failed = 554,
}

local function read_only(name, get)
  return setmetatable({}, {
    __index = function(_, k) return get(k) end,
    __newindex = function(_, k) error("smtp." .. name .. "." .. tostring(k) .. " is read-only", 2) end,
  })
end

function M.prelude(env)
  local code = {}
  for k, v in pairs(CODES) do code[k] = v end
  env.smtp = {
    code = code,
    -- smtp.sess.id, smtp.sess.helo (nil until HELO/EHLO)
    sess = read_only("sess", function(k)
      if k == "id" then return client.id_log end
      if k == "helo" then return client.helo end
    end),
    -- smtp.tran.id, smtp.tran.sender (nil between transactions)
    tran = read_only("tran", function(k)
      if k == "id" then return client.id_trans end
      if k == "sender" then return client.sender end
    end),
  }
end

local CALLBACKS = { "do_connect", "do_helo", "do_mail", "do_rcpt", "do_data", "do_headers", "do_chunk", "do_dot",
                    "rset", "close" }

function M.detect(env)
  local smtp = rawget(env, "smtp")
  if type(smtp) ~= "table" then return false end
  for _, name in ipairs(CALLBACKS) do
    if type(rawget(smtp, name)) == "function" then return true end
  end
  return false
end

function M.adapt(env)
local smtp, hook = env.smtp, env.hook

-- (code, reply) -> an SMTP reply line, or nil to continue. 0, nothing, or
-- 250 without text continue; anything else is sent as given.
local function reply(name, code, text)
  if code == nil or code == 0 then return nil end
  local n = math.tointeger(tonumber(code))
  if n == nil or n < 200 or n > 599 then
    error(string.format("smtp.%s returned %s: expected 0 or an SMTP code", name, tostring(code)), 0)
  end
  if text == nil then
    if n == 250 then return nil end
    text = ""
  end
  text = tostring(text)
  if #text > 998 then
    error(string.format("smtp.%s: reply of %d octets; smtpf allows 998", name, #text), 0)
  end
  if text:find("[\r\n]") then
    error(string.format("smtp.%s: multi-line replies are not supported by smtpf", name), 0)
  end
  return string.format("%d %s\r\n", n, text)
end

-- The ESMTP parameters of the command being handled, as smtpf passes them:
-- an array of "NAME=value" strings (or "NAME"), in the order sent. From
-- client.params, parsed once by the front (names upper case).
local function parameters()
  local params = client.params or {}
  local out = {}
  for i, name in ipairs(params) do
    local v = params[name]
    out[i] = v == true and name or name .. "=" .. v
  end
  return out
end

local function call(name, ...)
  local fn = smtp[name]
  if type(fn) ~= "function" then return nil end
  return reply(name, fn(...))
end

if smtp.do_connect then
  function hook.accept(ip, ptr) return call("do_connect", ip, ptr) end
end
if smtp.do_helo then
  function hook.helo(arg) return call("do_helo", arg) end
  function hook.ehlo(arg) return call("do_helo", arg) end
end
-- smtp.tran.sender is read in later call-backs: MAIL always reaches us
-- when any transaction call-back exists.
if smtp.do_mail or smtp.do_rcpt or smtp.do_data or smtp.do_headers or smtp.do_chunk or smtp.do_dot then
  function hook.mail(sender) return call("do_mail", sender, parameters()) end
end
if smtp.do_rcpt then
  function hook.rcpt(recipient) return call("do_rcpt", recipient, parameters()) end
end
if smtp.do_data then
  function hook.data() return call("do_data") end
end

-- do_headers and do_chunk (never implemented in smtpf) run as the message
-- arrives; their refusal is the message's answer at the final dot, since
-- SMTP has no reply before it. Kept in the runtime's `transaction` table
-- under a key no script can name; the runtime frees it when the
-- transaction ends (RSET, HELO/EHLO, after the dot, end of session).
local KEY = {}
local function message()
  local s = transaction[KEY]
  if s == nil then
    s = { headers = {} }
    transaction[KEY] = s
  end
  return s
end

if smtp.do_headers then
  function hook.header(line)
    local s = message()
    s.headers[#s.headers + 1] = line
  end
  function hook.eoh()
    local s = message()
    s.answer = s.answer or call("do_headers", s.headers)
  end
end
if smtp.do_chunk then
  function hook.content(chunk)
    local s = message()
    s.answer = s.answer or call("do_chunk", chunk, #chunk)
  end
end
if smtp.do_dot or smtp.do_headers or smtp.do_chunk then
  function hook.dot(path)
    local s = transaction[KEY]
    if s and s.answer then return s.answer end
    return call("do_dot", path)
  end
end

-- smtp.rset(): the transaction ends (RSET, HELO/EHLO, after the dot);
-- smtp.close(): the connection ends.
if type(smtp.rset) == "function" then
  function hook.reset() smtp.rset() end
end
if type(smtp.close) == "function" then
  function hook.close() smtp.close() end
end
end

return M
