-- Connection hooks: refuse clients by address before the greeting, and
-- greet everyone else by name. hook.accept(ip, ptr) runs before the 220.
local blocked = { ["192.0.2.66"] = true }

function hook.accept(ip, ptr)
  if blocked[ip] then
    return "554 5.7.1 " .. ip .. " is not welcome here\r\n"
  end
  return "220 " .. smtpe.host .. " ESMTP hello " .. ip .. "\r\n"
end

function hook.close()
  syslog.info("session " .. client.id_log .. " from " .. client.address .. " closed")
end
