-- Content hooks: hook.header sees each header (folded lines joined),
-- hook.eoh the end of the header, hook.body each body line; their return
-- values are ignored, so they record and hook.dot decides. What they
-- record lives in `transaction`: the runtime gives each message a fresh
-- one and frees it after, so nothing is cleaned up here.

function hook.header(line)
  transaction.headers = (transaction.headers or 0) + 1
  if line:lower():match("^subject:.*viagra") then transaction.spam = true end
end

function hook.body(line)
  transaction.lines = (transaction.lines or 0) + 1
end

function hook.dot(path)
  if transaction.spam then return "550 5.7.1 Message looks like spam\r\n" end
end
