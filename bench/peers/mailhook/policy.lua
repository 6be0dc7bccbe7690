-- bench/compare's policy for mailhook (front + policyd, and policyd as a
-- milter): the same three rules every peer in bench/peers/ implements.
-- The load (HELO bench.test, RCPT rcpt@dest.example) passes all three;
-- bench/compare checks each refusal and the header once before measuring.

local function refuse_helo(name)
  if name:lower() == "bad.example" then
    return "550 5.7.1 HELO bad.example refused by policy\r\n"
  end
end

function hook.helo(name) return refuse_helo(name) end
function hook.ehlo(name) return refuse_helo(name) end

function hook.rcpt(recipient)
  if recipient:lower() == "blocked@dest.example" then
    return "550 5.7.1 Recipient blocked@dest.example refused by policy\r\n"
  end
end

-- No parameter: the stamp needs no message bytes, so none cross to policyd
-- (behind a milter, the MTA is asked for no header or body).
function hook.dot()
  message.add_header("X-Bench-Policy", "mailhook")
end
