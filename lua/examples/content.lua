-- Content hooks: hook.header sees each header (folded lines joined),
-- hook.eoh the end of the header, hook.body each body line; their return
-- values are ignored, so they record and hook.dot decides.
local state = {}   -- per session, keyed by client.id_log

function hook.header(line)
  local s = state[client.id_log] or { headers = 0, lines = 0 }
  state[client.id_log] = s
  s.headers = s.headers + 1
  if line:lower():match("^subject:.*viagra") then s.spam = true end
end

function hook.body(line)
  local s = state[client.id_log]
  if s then s.lines = s.lines + 1 end
end

function hook.dot(path)
  local s = state[client.id_log] or {}
  state[client.id_log] = nil
  if s.spam then return "550 5.7.1 Message looks like spam\r\n" end
end

function hook.close() state[client.id_log] = nil end
