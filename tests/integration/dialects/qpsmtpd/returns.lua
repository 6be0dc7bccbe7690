-- qpsmtpd plugin for the return-form table of test_dialect_qpsmtpd:
-- "HELO <hook>.<CODE>.example" makes hook_<hook> return CODE with the
-- message "said CODE"; every other hook lets the session through.
local function scenario(self, hook)
  local s = self:connection():notes("scenario")
  if s and s.hook == hook then return _ENV[s.rc], "said " .. s.rc end
end

function hook_helo(self, transaction, host)
  local hook, rc = host:match("^([%w_]+)%.([%w_]+)%.example$")
  if hook then self:connection():notes("scenario", { hook = hook, rc = rc:upper() }) end
  return DECLINED
end

for _, name in ipairs({ "mail", "data", "data_headers_end", "data_post_headers", "data_post", "queue",
                        "unrecognized_command", "help", "vrfy", "noop" }) do
  _ENV["hook_" .. name] = function(self)
    local rc, msg = scenario(self, name)
    if rc then return rc, msg end
    return DECLINED
  end
end

function hook_rcpt(self)
  local rc, msg = scenario(self, "rcpt")
  if rc then return rc, msg end
  return OK
end
