-- bench/auth_check.py: refuse a message unless rspamd's SPF, DKIM and DMARC
-- modules all passed it, so every message the benchmark counts as accepted
-- went through the three checks (the load passes all three).

local NEEDED = { 'R_SPF_ALLOW', 'R_DKIM_ALLOW', 'DMARC_POLICY_ALLOW' }

rspamd_config:register_symbol({
  name = 'BENCH_AUTH_REQUIRED',
  type = 'postfilter',
  callback = function(task)
    for _, sym in ipairs(NEEDED) do
      if not task:has_symbol(sym) then
        task:set_pre_result('reject', 'missing ' .. sym, 'bench_auth')
        return
      end
    end
  end,
})
