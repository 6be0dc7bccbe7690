-- Command hooks: replies for NOOP, HELP, RSET, QUIT and unknown commands.
function hook.noop() return "250 2.0.0 Still here\r\n" end
function hook.help() return "214-mailhook policy server\r\n214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321\r\n" end
function hook.rset() return "250 2.0.0 Reset done\r\n" end
function hook.quit() return "221 2.0.0 Goodbye from " .. smtpe.host .. "\r\n" end
function hook.unknown(line)
  syslog.info("unknown command from " .. client.address .. ": " .. line)
  return "502 5.5.2 Command not recognized\r\n"
end
