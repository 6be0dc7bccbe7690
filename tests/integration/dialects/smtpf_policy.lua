-- An smtpf script (seed 001) exercising every call-back, variable,
-- constant and return form; test_dialect_smtpf.py drives it through the
-- front and through the milter.
syslog.openlog("smtpf-test", syslog.LOG_PID, syslog.LOG_MAIL)

local CODE_NAMES = { "ok", "closing", "busy", "again", "storage", "bad_syntax", "bad_arg", "bad_command",
                     "bad_sequence", "bad_param", "reject", "bad_user", "over_quota", "bad_address", "failed" }

function smtp.do_connect(ip, ptr)
  if ip == "127.0.0.2" then return smtp.code.failed, "5.7.1 no service for " .. ip end
  return smtp.code.ok
end

function smtp.do_helo(arg)
  if arg == "bad.example" then return smtp.code.reject, "5.7.1 bad helo " .. smtp.sess.helo end
  if arg == "codes.example" then
    local out = {}
    for _, n in ipairs(CODE_NAMES) do out[#out + 1] = n .. "=" .. smtp.code[n] end
    return smtp.code.ok, "codes " .. table.concat(out, " ")
  end
  if arg == "vars.example" then
    return 250, string.format("sess.id=%s id_log=%s tran.id=%s tran.sender=%s", tostring(smtp.sess.id),
      tostring(client.id_log), tostring(smtp.tran.id), tostring(smtp.tran.sender))
  end
  if arg == "long.example" then return 550, string.rep("x", 999) end
  if arg == "multi.example" then return 550, "one\r\n550 two" end
  if arg == "nonsense.example" then return "soon" end
  if arg == "zero.example" then return 0 end
  -- nothing returned: continue
end

function smtp.do_mail(sender, params)
  if sender == "temp@example.com" then return smtp.code.again, "4.7.1 greylisted, come back" end
  if sender == "params@example.com" then
    return 250, "2.1.0 params " .. #params .. ": " .. table.concat(params, ",")
  end
  return smtp.code.ok
end

function smtp.do_rcpt(recipient, params)
  if recipient == "no@example.com" then return smtp.code.bad_user, "5.1.1 no " .. recipient end
  if recipient == "who@example.com" then
    return 250, "2.1.5 sender=" .. tostring(smtp.tran.sender) .. " tran=" .. tostring(smtp.tran.id == client.id_trans)
  end
  return 0
end

function smtp.do_data()
  if smtp.tran.sender == "nodata@example.com" then return smtp.code.failed, "5.7.1 no data from you" end
end

function smtp.do_headers(headers)
  for _, h in ipairs(headers) do
    if h:lower() == "x-spam: yes" then return smtp.code.reject, "5.7.1 spam header (" .. #headers .. " headers)" end
  end
  return smtp.code.ok
end

function smtp.do_chunk(chunk, size)
  if chunk:find("VIRUS", 1, true) then return smtp.code.reject, "5.7.1 virus in a chunk of " .. size end
  return 0
end

function smtp.do_dot(path)
  local f = io.open(path, "rb")
  local m = f:read("a")
  f:close()
  if m:find("REFUSE", 1, true) then return smtp.code.reject, "5.7.1 refused at dot" end
  return smtp.code.ok
end

function smtp.rset() syslog.syslog(syslog.LOG_INFO, "smtpf rset for " .. smtp.sess.id) end
function smtp.close() syslog.syslog(syslog.LOG_INFO, "smtpf close for " .. smtp.sess.id) syslog.closelog() end
