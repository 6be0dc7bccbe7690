-- End of message: hook.dot(path) gets the message's temp file; the
-- `message` table changes the message before it is delivered.
function hook.dot(path)
  local f = io.open(path, "rb")
  if f == nil then return end
  local text = f:read("a")
  f:close()
  if #text > 10 * 1024 * 1024 then
    return "552 5.3.4 Message too big for this policy\r\n"
  end
  message.add_header("X-Policy", "checked by mailhook")
  message.change_header("X-Spam-Flag", 1, nil)   -- drop a sender's own spam flag
end
