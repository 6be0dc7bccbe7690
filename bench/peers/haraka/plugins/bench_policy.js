// bench/compare's policy as a Haraka plugin: refuse HELO/EHLO bad.example,
// refuse RCPT blocked@dest.example (and accept every other recipient, as
// Haraka refuses recipients no plugin accepted), add one header at the end
// of DATA. queue/smtp_forward then relays to the sink before answering.

// Haraka looks up the client's PTR before the connect hook unless a
// lookup_rdns hook answers: answer it, so no DNS query leaves the machine
// (mailhook runs with --ptr-lookup no, Postfix with smtpd_peername_lookup=no).
exports.hook_lookup_rdns = function (next, connection) {
    next(OK, 'localhost')
}

function refuse_helo(next, connection, helo) {
    if ((helo || '').toLowerCase() === 'bad.example') {
        return next(DENY, 'HELO bad.example refused by policy')
    }
    next()
}
exports.hook_helo = refuse_helo
exports.hook_ehlo = refuse_helo

exports.hook_rcpt = function (next, connection, params) {
    const rcpt = params[0]
    // Haraka 3.1+ (@haraka/email-address): a getter; before: a method.
    const address = typeof rcpt.address === 'function' ? rcpt.address() : rcpt.address
    if (String(address).toLowerCase() === 'blocked@dest.example') {
        return next(DENY, 'Recipient blocked@dest.example refused by policy')
    }
    next(OK)
}

exports.hook_data_post = function (next, connection) {
    connection.transaction.add_header('X-Bench-Policy', 'haraka')
    next()
}
