-- bench/compare's policy as an rspamd Lua rule. rspamd's milter proxy
-- scans a message at its end (it collects HELO, envelope and body first),
-- so both refusals happen at the end of DATA rather than at HELO/RCPT:
-- that is how rspamd works, and bench/compare reports the stage.

local function refusal(task)
  local helo = task:get_helo()
  if helo and helo:lower() == 'bad.example' then
    return 'HELO bad.example refused by policy'
  end
  for _, rcpt in ipairs(task:get_recipients('smtp') or {}) do
    if (rcpt.addr or ''):lower() == 'blocked@dest.example' then
      return 'Recipient blocked@dest.example refused by policy'
    end
  end
end

rspamd_config:register_symbol({
  name = 'BENCH_POLICY',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local why = refusal(task)
    if why then
      task:set_pre_result('reject', why, 'bench_policy')
      return
    end
    task:set_milter_reply({ add_headers = { ['X-Bench-Policy'] = 'rspamd' } })
  end,
})
