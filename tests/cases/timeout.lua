-- A hook that never returns: --hook-timeout stops it (tests/cases/timeout.case).
function hook.rcpt(r)
  if r == "loop@example.com" then while true do end end
end
