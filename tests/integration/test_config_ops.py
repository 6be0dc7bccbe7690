"""Configuration in operation (issue 20): --check lists every problem (one
line each, exit 0/1) in both daemons; errors an administrator understands
(names resolve, a spool that is not writable, an unreachable policy
daemon); SIGHUP re-reads policyd's config file, moving a script from
shadow to enforce without a restart, and a broken file keeps the old state
and is counted. Real binaries over loopback."""

import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import unittest

from harness import (FRONT, POLICYD, MailhookTest, Process, SmtpClient, free_port, sample, scrape, wait_for)


def run(binary, *args, cwd=None, nofile=None, timeout=30):
    def limit():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    p = subprocess.run([os.path.abspath(binary)] + list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                       preexec_fn=limit if nofile else None)
    return p.returncode, p.stdout, p.stderr


def unwritable_dir(base):
    """An existing directory this process cannot write: a 0555 one, or for
    root (who ignores modes) a procfs directory."""
    if os.geteuid() == 0:
        return "/proc/1"
    d = os.path.join(base, "ro")
    os.mkdir(d)
    os.chmod(d, 0o555)
    return d


def make_cert(directory, name):
    """A self-signed certificate and its key (openssl req), as paths."""
    cert, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name],
                   check=True, capture_output=True, timeout=30)
    return cert, key


class Check(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mailhook-check-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def problems(self, binary, *args, **kw):
        code, _, err = run(binary, "--check", *args, **kw)
        prefix = os.path.basename(binary) + ": "
        return code, [l[len(prefix):] for l in err.splitlines() if l.startswith(prefix)]

    def test_front_clean_config_passes(self):
        code, lines = self.problems(FRONT, "--listen", "localhost:2525", "--queue-dir", os.path.join(self.dir, "q"),
                                    "--metrics", "localhost:9100")
        self.assertEqual(code, 0, lines)
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith("OK"), lines)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "q")))  # a check creates nothing

    def test_front_every_problem_one_line(self):
        cert, key = make_cert(self.dir, "a")
        _, other_key = make_cert(self.dir, "b")
        notpem = self.write("notpem", "hello\n")
        ro = unwritable_dir(self.dir)
        code, lines = self.problems(
            FRONT, "--listen", "nonsense", "--metrics", "nocolon", "--queue-dir", ro,
            "--policyd", "unix:%s/nodir/policyd.sock" % self.dir,
            "--tls-cert", cert, "--tls-key", other_key,
            "--policyd-tls-ca", notpem, "--policyd-tls-cert", cert, "--policyd-tls-key", os.path.join(self.dir, "nokey"),
            "--xclient-hosts", "10.0.0.0/99", "--max-connections", "5000", nofile=4096)
        self.assertEqual(code, 1, lines)
        expected = [
            "--listen nonsense: expected HOST:PORT",
            "--policyd unix:%s/nodir/policyd.sock: the socket's directory %s/nodir does not exist" % (self.dir, self.dir),
            "--queue-dir %s: not writable" % ro,
            "--metrics nocolon: expected HOST:PORT",
            "--tls-key %s: is not the private key of --tls-cert %s" % (other_key, cert),
            "--policyd-tls-ca %s: not a PEM certificate" % notpem,
            "--policyd-tls-key %s/nokey: cannot read: No such file or directory" % self.dir,
            "--max-connections 5000 may need 10064 file descriptors, RLIMIT_NOFILE allows 4096",
        ]
        for e in expected:
            self.assertTrue(any(l.startswith(e) for l in lines), "%r not in %r" % (e, lines))
        self.assertTrue(any(l.startswith("--xclient-hosts 10.0.0.0/99:") for l in lines), lines)
        self.assertFalse(any(l.startswith("OK") for l in lines))

    def test_front_port_and_name_problems(self):
        code, lines = self.problems(FRONT, "--listen", "127.0.0.1:99999", "--smart-host", "no-such-host.invalid:25")
        self.assertEqual(code, 1)
        self.assertIn("--listen 127.0.0.1:99999: the port must be a number from 1 to 65535", lines)
        self.assertTrue(any(l.startswith("--smart-host no-such-host.invalid:25: cannot resolve no-such-host.invalid")
                            for l in lines), lines)

    def test_front_certificate_not_pem(self):
        notpem = self.write("notpem", "hello\n")
        cert, key = make_cert(self.dir, "a")
        code, lines = self.problems(FRONT, "--tls-cert", notpem, "--tls-key", notpem)
        self.assertEqual(code, 1)
        self.assertTrue(any(l.startswith("--tls-cert %s: not a PEM certificate" % notpem) for l in lines), lines)
        self.assertTrue(any(l.startswith("--tls-key %s: not a PEM private key" % notpem) for l in lines), lines)
        code, lines = self.problems(FRONT, "--tls-cert", cert, "--tls-key", key)
        self.assertEqual(code, 0, lines)

    def test_policyd_clean_config_passes(self):
        script = self.write("p.lua", "function hook.rcpt(r) end\n")
        code, lines = self.problems(POLICYD, "--script", script, "--listen", "localhost:7070",
                                    "--milter", "inet:8890@localhost", "--metrics", "localhost:9101",
                                    "--temp-dir", os.path.join(self.dir, "t"), "--lua-read-dir", self.dir)
        self.assertEqual(code, 0, lines)
        self.assertEqual(lines, ["OK (1 script(s) loaded, listen localhost:7070)"])

    def test_policyd_every_problem_one_line(self):
        script = self.write("p.lua", "function hook.rcpt(r) end\n")
        bad = self.write("bad.lua", "function hook.rcpt(r)\n  return (\nend\n")
        ro = unwritable_dir(self.dir)
        cert, key = make_cert(self.dir, "a")
        notpem = self.write("notpem", "hello\n")
        code, lines = self.problems(
            POLICYD, "--script", script, "--listen", "nonsense", "--milter", "bogus", "--metrics", "nocolon",
            "--shadow-script", os.path.join(self.dir, "missing.lua"), "--lua-read-dir", os.path.join(self.dir, "nodir"),
            "--lua-write-dir", ro, "--temp-dir", ro, "--kv", "redis", "--dns-server", "1.2.3.x",
            "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", notpem,
            "--milter-max-connections", "100000", cwd=self.dir, nofile=4096)
        self.assertEqual(code, 1, lines)
        expected = [
            "--listen nonsense: expected HOST:PORT",
            "--metrics nocolon: expected HOST:PORT",
            "--milter bogus: expected inet:PORT@HOST, inet6:PORT@HOST or unix:PATH",
            "--kv redis: expected HOST:PORT",
            "--dns-server 1.2.3.x: not an IP address",
            "--shadow-script %s/missing.lua: no such file" % self.dir,
            "--lua-read-dir %s/nodir: no such directory" % self.dir,
            "--lua-write-dir %s: not writable" % ro,
            "--temp-dir %s: not writable" % ro,
            "--tls-client-ca %s: not a PEM certificate" % notpem,
            "--milter-max-connections 100000 may need",
        ]
        for e in expected:
            self.assertTrue(any(l.startswith(e) for l in lines), "%r not in %r" % (e, lines))
        # --milter bogus creates no socket file named after it.
        self.assertFalse(os.path.exists(os.path.join(self.dir, "bogus")))
        # A script that does not compile: file and line, beside the rest.
        code, lines = self.problems(POLICYD, "--script", bad, "--listen", "nonsense")
        self.assertEqual(code, 1)
        self.assertIn("--listen nonsense: expected HOST:PORT", lines)
        self.assertTrue(any(l.startswith("--script: ") and "bad.lua:3" in l for l in lines), lines)

    def test_policyd_unix_socket_directory(self):
        script = self.write("p.lua", "")
        ro = unwritable_dir(self.dir)
        code, lines = self.problems(POLICYD, "--script", script, "--milter", "unix:%s/m.sock" % ro,
                                    "--listen", "unix:%s/nodir/g.sock" % self.dir)
        self.assertEqual(code, 1)
        self.assertIn("--milter unix:%s/m.sock: cannot create the socket: %s not writable" % (ro, ro), lines)
        self.assertIn("--listen unix:%s/nodir/g.sock: the socket's directory %s/nodir does not exist"
                      % (self.dir, self.dir), lines)

    def test_a_value_that_does_not_parse_is_a_problem(self):
        cfg = self.write("front.toml", 'max-message-size = "lots"\n')
        code, lines = self.problems(FRONT, "--config", cfg)
        self.assertEqual(code, 1)
        self.assertEqual(lines, ["--max-message-size: not a size: 'lots' (a number with K, M, G or T: 64K, 25M)"])

    def test_check_reads_the_config_file(self):
        cfg = self.write("front.toml", 'listen = "nonsense"\n')
        code, lines = self.problems(FRONT, "--config", cfg)
        self.assertEqual(code, 1)
        self.assertIn("--listen nonsense: expected HOST:PORT", lines)


class AdminErrors(MailhookTest):
    SCRIPT = ""

    def test_names_resolve_for_listen_and_metrics(self):
        port, mport, pmport = free_port(), free_port(), free_port()
        self.policyd_port = free_port()
        p = Process([POLICYD, "--listen", "localhost:%d" % self.policyd_port, "--script", self.write_script(""),
                     "--log-stderr", "--ptr-lookup", "no", "--workers", "1", "--temp-dir", os.path.join(self.dir, "t"),
                     "--metrics", "localhost:%d" % pmport], os.path.join(self.dir, "policyd.log"))
        self.processes.append(p)
        wait_for(lambda: "listening on" in p.output() or not p.alive(), what="policyd listening")
        self.assertTrue(p.alive(), p.output())
        f = Process([FRONT, "--listen", "localhost:%d" % port, "--policyd", "localhost:%d" % self.policyd_port,
                     "--queue-dir", self.spool, "--log-stderr", "--io-threads", "1", "--metrics", "localhost:%d" % mport],
                    os.path.join(self.dir, "front.log"))
        self.processes.append(f)
        wait_for(lambda: "listening on" in f.output() or not f.alive(), what="front listening")
        self.assertTrue(f.alive(), f.output())
        c = self.client(port=port)
        self.assertEqual(c.cmd("EHLO c.example")[0], 250)
        self.assertIn("mailhook_front_sessions_total", scrape(mport))
        self.assertIn("mailhook_policyd_sessions_total", scrape(pmport))

    def test_spool_exists_but_not_writable(self):
        ro = unwritable_dir(self.dir)
        code, _, err = run(FRONT, "--listen", "127.0.0.1:%d" % free_port(), "--queue-dir", ro, "--log-stderr")
        self.assertEqual(code, 1)
        self.assertIn("cannot create spool: %s not writable" % ro, err)

    def test_policy_daemon_unreachable_is_named(self):
        self.policyd_port = free_port()  # nothing listens there
        self.start_front()
        c = self.client(expect_greeting=421)
        wait_for(lambda: "policy failure at connect" in self.front.output(), what="the failure logged")
        self.assertIn("policy daemon 127.0.0.1:%d unreachable: connection refused" % self.policyd_port,
                      self.front.output())


class FrontHangup(MailhookTest):
    def test_sighup_is_answered_not_fatal(self):
        self.start_both("")
        self.front.signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: mailhook-front has no settings to reload" in self.front.output(), what="SIGHUP line")
        self.assertTrue(self.front.alive())
        self.assertEqual(self.client().cmd("EHLO c.example")[0], 250)


REFUSER_A = r'''
function hook.rcpt(r) return "550 5.7.1 refused by A\r\n" end
'''


class Reload(MailhookTest):
    def start_policyd_with(self, config_text):
        self.policyd_port = free_port()
        self.metrics_port = free_port()
        self.cfg = os.path.join(self.dir, "policyd.toml")
        self.write_config(config_text)
        p = Process([POLICYD, "--config", self.cfg, "--listen", "127.0.0.1:%d" % self.policyd_port, "--log-stderr",
                     "--ptr-lookup", "no", "--workers", "1", "--temp-dir", os.path.join(self.dir, "tmp"),
                     "--metrics", "127.0.0.1:%d" % self.metrics_port], os.path.join(self.dir, "policyd.log"))
        self.processes.append(p)
        self.policyd = p
        wait_for(lambda: "listening on" in p.output() or not p.alive(), what="policyd listening")
        self.assertTrue(p.alive(), p.output())

    def write_config(self, text):
        with open(self.cfg + ".new", "w") as f:
            f.write(text)
        os.replace(self.cfg + ".new", self.cfg)

    def rcpt_reply(self):
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<s@example.com>")[0], 250)
        reply = c.cmd("RCPT TO:<r@example.com>")
        c.cmd("QUIT")
        return reply

    def sighup_and_wait(self, word, count):
        self.policyd.signal(signal.SIGHUP)
        wait_for(lambda: self.policyd.output().count(word) >= count, what=word)

    def test_shadow_to_enforce_without_restart(self):
        a = self.write_script(REFUSER_A, name="a.lua")
        b = self.write_script("", name="b.lua")
        self.start_policyd_with('script = ["%s"]\nshadow-script = ["%s"]\n' % (b, a))
        self.start_front()
        pid = self.policyd.proc.pid
        self.assertEqual(self.rcpt_reply()[0], 250)  # A only says what it would do
        self.assertRegex(self.policyd.output(), r'would_reject: .* hook=rcpt script=\S*a\.lua reply="550 5\.7\.1 refused by A"')

        self.write_config('script = ["%s", "%s"]\n' % (a, b))
        self.sighup_and_wait("reload: new sessions use the new scripts", 1)
        self.assertEqual(self.rcpt_reply(), (550, ["550 5.7.1 refused by A"]))
        self.assertEqual(self.policyd.proc.pid, pid)
        m = scrape(self.metrics_port)
        self.assertEqual(sample(m, 'mailhook_policyd_reloads_total{result="ok"}'), 1)
        self.assertEqual(sample(m, 'mailhook_policyd_reloads_total{result="failed"}'), 0)
        stamp = sample(m, "mailhook_policyd_last_reload_success_timestamp_seconds")
        self.assertGreater(stamp, 1.7e9)

        # A broken file: the old state stays (A still refuses), counted, logged.
        self.write_config('script = ["%s"]\nhook-timeout = "soon"\n' % b)
        self.sighup_and_wait("reload failed", 1)
        self.assertIn("not a duration: 'soon'", self.policyd.output())
        self.assertEqual(self.rcpt_reply()[0], 550)
        # A script that does not load: the same.
        bad = self.write_script("function hook.rcpt(r)\n  return (\nend\n", name="bad.lua")
        self.write_config('script = ["%s"]\n' % bad)
        self.sighup_and_wait("reload failed", 2)
        self.assertRegex(self.policyd.output(), r"reload failed, keeping the old scripts and config: .*bad\.lua:3")
        self.assertEqual(self.rcpt_reply()[0], 550)
        # An unknown key is a failure too, never silently ignored.
        self.write_config('script = ["%s"]\nshadow-scirpt = ["%s"]\n' % (b, a))
        self.sighup_and_wait("reload failed", 3)
        self.assertIn("unknown setting 'shadow-scirpt' (did you mean shadow-script?)", self.policyd.output())
        m = scrape(self.metrics_port)
        self.assertEqual(sample(m, 'mailhook_policyd_reloads_total{result="ok"}'), 1)
        self.assertEqual(sample(m, 'mailhook_policyd_reloads_total{result="failed"}'), 3)
        self.assertEqual(sample(m, "mailhook_policyd_last_reload_success_timestamp_seconds"), stamp)
        self.assertTrue(self.policyd.alive())

    def test_restart_only_settings_are_named(self):
        b = self.write_script("", name="b.lua")
        self.start_policyd_with('script = ["%s"]\n' % b)
        self.write_config('script = ["%s"]\ndns-timeout = "2s"\n' % b)
        self.sighup_and_wait("reload: new sessions use the new scripts", 1)
        self.assertIn("reload: --dns-timeout changed (--config %s); it takes effect at the next restart" % self.cfg,
                      self.policyd.output())


if __name__ == "__main__":
    unittest.main()
