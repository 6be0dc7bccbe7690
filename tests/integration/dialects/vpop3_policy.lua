-- A VPOP3 SMTPSVR.LUA exercising every call-back and variable of seed 002
-- (tests/integration/test_dialect_vpop3.py drives it by client address,
-- HELO name, sender, recipient and subject).

Count = 0  -- per session: each session has its own instance of the script
Lines = { raw = 0, processed = 0 }

function Start()
  Count = Count + 1
  syslog.syslog(syslog.LOG_INFO, "vpop3 Start count=" .. Count .. " ip=" .. IPAddress)
  if IPAddress == "127.0.0.2" then return "554 5.7.1 go away " .. IPAddress end
  if IPAddress == "127.0.0.3" then ValidClientAddress = false end
  if IPAddress == "127.0.0.4" then return "220 vpop3 custom welcome" end
  if IPAddress == "127.0.0.5" then
    RBLServers = { "bl.test", "bl2.test" }
    RBLCheckAllServers = true
  end
  if IPAddress == "127.0.0.8" then
    RBLServers = { "bl.test", "bl2.test" }
    RBLWhitelist = { "127.0.0.*" }
  end
  if IPAddress == "127.0.0.9" then RBLServers = { "bl.test", "bl2.test" } end  -- stops at the first match
  if IPAddress == "127.0.0.6" then
    LocalClientAddress = true
    MaxMessagesPerLocalSession = 1
    MaxRecipientsPerLocalMessage = 2
  end
  if IPAddress == "127.0.0.7" then AuthenticationRequired = true end
  if IPAddress == "127.0.0.14" then
    AuthenticationRequired = true
    AllowedUsers = "alice bob"
  end
  if IPAddress == "127.0.0.15" then MaxRecipientsPerIncomingMessage = 1 end
  if IPAddress:match("^127%.0%.0%.1[0-3]$") then RBLServers = { "bl.test" } end
  if IPAddress == "127.0.0.13" then CheckRBL = false end
  return ""
end

function RBLResults()
  local info = {}
  for server, value in pairs(RBLResultInfo) do info[#info + 1] = server .. "=" .. string.format("0x%08x", value) end
  table.sort(info)
  syslog.syslog(syslog.LOG_INFO, "vpop3 RBLResults found=" .. tostring(RBLFound) .. " " .. table.concat(info, ","))
  if IPAddress == "127.0.0.10" then RBLBlackhole = true end
  if IPAddress == "127.0.0.11" then
    RBLRedirect = "rbl@example.com"
    RBLHeader = "X-RBL: listed in bl.test"
  end
  if IPAddress == "127.0.0.12" then
    RBLAccept = true
    RBLRejectMessage = "5.7.1 never sent: RBLAccept"
  end
  if RBLResultInfo["bl2.test"] then
    RBLRejectMessage = "5.7.1 listed in bl2.test"
    RBLHeader = "X-RBL: bl2.test"
  end
  return ""
end

function GetMaxMessageSize(host, current)
  if host == "small.example" then return 100 end
  return current
end

function GetEHLOCapabilities(host, caps)
  if host ~= "caps.example" then return caps end
  local out = {}
  for line in caps:gmatch("[^\r\n]+") do
    if line ~= "DSN" then out[#out + 1] = line end
  end
  out[#out + 1] = "X-VPOP3"
  return table.concat(out, "\r\n")
end

function DoHELO(host, refuse, ehlo)
  if host == "refuse.example" then return true, "554 5.7.1 refused helo" end
  if host == "custom.example" then return false, "250 custom hello " .. (ehlo and "EHLO" or "HELO") end
  if host == "vars.example" then
    return false, string.format("250 vars server=%s id=%d enc=%s details=[%s] auth=[%s] smtpauth=[%s] valid=%s",
                                ServerName, ServerID, tostring(Encryption), EncryptionDetails, AuthenticatedUser,
                                SMTPAuthenticatedUser, tostring(ValidClientAddress))
  end
  if host == "force.example" then ForceDisconnect = true end
  return refuse, ""
end

function DoHELP(text) return "214 vpop3 help: " .. text end
function DoQUIT() return "221 vpop3 bye" end
function DoNOOP() return "250 vpop3 noop" end
function DoRSET() return "250 vpop3 reset" end

function DoVRFY(list, current)
  if list[1] == "postmaster" then return "250 postmaster@mx.test" end
  return current
end

function DoEXPN(list, current) return "550 5.7.1 no EXPN for " .. list[1] end

function DoMAILFROM(data, mailfrom, params, spf, auth)
  if mailfrom == "spam@example.com" then return params, "550 5.7.1 no spam" end
  if mailfrom == "rewrite@example.com" then
    params.MAILFROM = "rewritten@example.com"
    return params, ""
  end
  if params.SIZE then return params, "250 size " .. params.SIZE .. " data=" .. data end
  return params, ""
end

function DoRCPTTO(data, recipient, params, list)
  if recipient == "no@example.com" then return params, "550 5.1.1 no such user" end
  if recipient == "count@example.com" then return params, "250 count=" .. #list end
  if recipient == "lines@example.com" then MaxLineLength = 50 end
  return params, ""
end

function DoDATAStart(list)
  for _, r in ipairs(list) do
    if r == "nodata@example.com" then return "554 5.7.1 no data for you", "" end
  end
  return "", "X-VPOP3-Data: " .. #list .. " recipients"
end

function DoUnrecognised(line) return "502 5.5.1 vpop3 does not know " .. line end

function StartMessage() Lines = { raw = 0, processed = 0 } end
function MessageLineRaw(line) Lines.raw = Lines.raw + 1 end
function MessageLine(line) Lines.processed = Lines.processed + 1 end
function EndMessage()
  syslog.syslog(syslog.LOG_INFO, "vpop3 EndMessage raw=" .. Lines.raw .. " processed=" .. Lines.processed)
end

function ProcessMessage(mailfrom, subject, recipients, actions, mime, size, attachments)
  local sections = {}
  for _, s in ipairs(mime) do
    sections[#sections + 1] = s.Path .. ":" .. s.ContentType .. "/" .. s.ContentSubtype
  end
  local files = {}
  for _, a in ipairs(attachments) do
    files[#files + 1] = a.Name .. "/" .. a.MIMEType .. "/" .. a.Size .. "/" .. a.Type .. "/" .. a.MIMESection
  end
  actions.HeaderModifiers = { "X-Sections: " .. table.concat(sections, ","),
                              "X-Attachments: " .. table.concat(files, ","),
                              "X-Envelope: " .. mailfrom .. " " .. table.concat(recipients, ",") .. " " .. size,
                              "Subject: [vpop3] " .. subject, "X-Remove:" }
  if subject == "reject" then
    actions.Ignore = true
    actions.Reason = "5.7.1 rejected by the script"
  elseif subject == "blackhole" then
    actions.Ignore = true
    actions.Delete = false
  elseif subject == "redirect" then
    actions.SendToOriginalRecipients = false
    actions.Recipients = { "other@example.com" }
  end
  return actions, "processed"
end

function CheckRecipients(list, to, cc, bcc, ip, auth, sender, subject, locally, size)
  syslog.syslog(syslog.LOG_INFO, string.format("vpop3 CheckRecipients to=%s cc=%s bcc=%s ip=%s local=%s size=%d",
    table.concat(to, ","), table.concat(cc, ","), table.concat(bcc, ","), ip, tostring(locally), size))
  if subject == "nobcc" and #bcc > 0 then return "550 5.7.1 no Bcc allowed" end
end

function MonitorBcc(sender, bcc, recipients)
  if sender == "monitored@example.com" then return { "monitor@example.com" } end
end

function LogRecipients(list, sender) return "vpop3 LogRecipients " .. sender .. " -> " .. table.concat(list, ",") end
function LogRecipientsBlocked(list, sender) return "vpop3 LogRecipientsBlocked " .. table.concat(list, ",") end

function End()
  syslog.syslog(syslog.LOG_INFO, "vpop3 End for " .. IPAddress)
end
