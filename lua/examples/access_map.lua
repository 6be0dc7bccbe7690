-- Postfix-style access checks from one map file (check_client_access,
-- check_helo_access, check_sender_access, check_recipient_access). The
-- file is `key action` per line (docs/lua-api.md "map"); policyd reads it
-- again by itself when it changes, once for all workers. Run with
--   --lua-read-dir DIR --lua-env MAILHOOK_ACCESS_MAP   (the map inside DIR)
-- e.g. MAILHOOK_ACCESS_MAP=lua/examples/access_map.txt --lua-read-dir lua/examples.
--
-- Actions (Postfix access(5)): OK (accept; skip the later checks of this
-- transaction), DUNNO (no decision here), REJECT [text] (554 5.7.1),
-- DEFER [text] (450 4.7.1), or a reply of your own: "4NN text"/"5NN text".
local path = os.getenv("MAILHOOK_ACCESS_MAP") or "/etc/mailhook/access"
local access = assert(map.file(path))

-- The reply for a map value, "ok", or nil (no decision).
local function act(value, what)
  local action, text = value:match("^(%S+)%s*(.-)%s*$")
  local upper = action:upper()
  if upper == "OK" then return "ok" end
  if upper == "DUNNO" then return nil end
  if upper == "REJECT" then
    return string.format("554 5.7.1 %s\r\n", text ~= "" and text or what .. " rejected")
  end
  if upper == "DEFER" then
    return string.format("450 4.7.1 %s\r\n", text ~= "" and text or what .. " deferred, try again later")
  end
  if action:match("^[45]%d%d$") then
    return string.format("%s %s\r\n", action, text ~= "" and text or "Access denied")
  end
  syslog.warning("access_map: unknown action '" .. action .. "' for " .. what .. "; ignored")
  return nil
end

-- Looks up each key in turn; the first decision wins.
local function check(keys)
  for _, k in ipairs(keys) do
    local value = k[1] and access:lookup(k[1])
    if value then
      local reply = act(value, k[2])
      if reply == "ok" then
        transaction.ok = true
        return nil
      end
      if reply then return reply end
    end
  end
end

-- Postfix delays client and HELO rejections to RCPT TO by default
-- (smtpd_delay_reject); here they are checked at MAIL FROM, once per
-- transaction, with the sender.
function hook.mail(sender)
  return check({ { client.address, "Client host" }, { client.helo, "Helo command" }, { sender, "Sender address" } })
end

function hook.rcpt(recipient)
  if transaction.ok then return end
  return check({ { recipient, "Recipient address" } })
end
