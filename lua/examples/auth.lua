-- AUTH: hook.auth(arg, user, password) gets the credentials the front
-- decoded from AUTH PLAIN or LOGIN; "235" logs the client in, anything
-- else refuses (535 5.7.8). This example reads "user:password" lines from
-- the file named by MAILHOOK_AUTH_USERS (default /etc/mailhook/users) once,
-- when policyd loads or reloads (SIGHUP). Scripts only read what the
-- operator grants: run policyd with `--lua-read-dir /etc/mailhook` (the
-- directory of the file) and, to set the path, `--lua-env
-- MAILHOOK_AUTH_USERS`. Keep that file readable by policyd only; for real
-- deployments compare against hashes instead. The user name is the
-- client's: syslog.* escapes line breaks in it.
local users = {}
local path = os.getenv("MAILHOOK_AUTH_USERS") or "/etc/mailhook/users"
local file = io.open(path, "r")
if file then
  for line in file:lines() do
    local user, password = line:match("^([^:#][^:]*):(.*)$")
    if user then users[user] = password end
  end
  file:close()
else
  syslog.error("auth.lua: cannot read " .. path .. "; nobody can log in")
end

function hook.auth(arg, user, password)
  if users[user] ~= nil and users[user] == password then
    return "235 2.7.0 Authentication successful\r\n"
  end
  syslog.info("auth.lua: failed login for " .. user .. " from " .. client.address)
end
