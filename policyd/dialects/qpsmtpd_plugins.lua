-- The qpsmtpd dialect, part 2 of 3: the plugin runner. Each qpsmtpd
-- --script is one plugin (Qpsmtpd::Plugin); all of a policy's plugins form
-- one group, run in --script order for each hook until one does not
-- decline (run). Also what runs plugins on the objects' behalf: logging
-- (hook_logging), config (hook_config, then the config files) and
-- hook_user_config. Never answers SMTP: qpsmtpd.lua turns codes into replies.
local host, parts = ...
local O = parts.qpsmtpd_objects
local RC, LOG, Address, Qp, state = O.RC, O.LOG, O.Address, O.Qp, O.state
local OK, DECLINED = RC.OK, RC.DECLINED
local is_deny = O.is_deny

-- The plugins of this policy; `hook` is the first qpsmtpd script's hook
-- table, which runs the group.
local group = { plugins = {}, has = {}, hook = nil }
local Plugin = {}

local current_hook = "?"
local in_logging = false
local run  -- forward

local function write_log(level, plugin_name, hook, text)
  local priority = level <= LOG.LOGERROR and syslog.LOG_ERR or level == LOG.LOGWARN and syslog.LOG_WARNING
                   or level <= LOG.LOGINFO and syslog.LOG_INFO or syslog.LOG_DEBUG
  syslog.syslog(priority, string.format("qpsmtpd %s[%s]: %s", plugin_name, hook, text))
end

local function log_message(level, plugin_name, ...)
  local words = {}
  for i = 1, select("#", ...) do words[#words + 1] = tostring((select(i, ...))) end
  local text = table.concat(words, " ")
  if not in_logging and group.has.logging then
    in_logging = true
    local rc = run("logging", level, current_hook, plugin_name, text)
    in_logging = false
    if rc == OK then return end
  end
  write_log(level, plugin_name, current_hook, text)
end

-- Qpsmtpd's methods that run plugins (the rest: qpsmtpd_objects.lua).
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
  local s = state()
  local qp = setmetatable({ _sess = s, _plugin = self }, Qp)
  return qp
end
function Plugin:connection() return state().connection end
function Plugin:transaction() return state().transaction end
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
  local s = state()
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
      local s = state()
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

-- Adds the script (its environment `env`) as a plugin of the group:
-- its hook_* functions, then its register(self, qp); runs
-- qpsmtpd-async's hook_post_fork once per worker (each loads the policy).
local function add_plugin(env, script)
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
  if plugin._hooks.post_fork then
    current_hook = "post_fork"
    pcall(plugin._hooks.post_fork, plugin)
    current_hook = "?"
  end
  return plugin
end

-- register(self, qp) runs at load time, before any session.
function Plugin:qp_static() return setmetatable({ _sess = { notes = {} }, _plugin = self }, Qp) end

return { group = group, run = run, write_log = write_log, add_plugin = add_plugin }
