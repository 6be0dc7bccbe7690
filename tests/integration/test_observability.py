"""Observability (issue 20): every metric family added for the operator,
asserted on a real scrape of both daemons after real traffic (a refusal
per rule, a shadow script, kv calls against a private redis-server, a TLS
session and a failed handshake, AUTH outcomes, a connection-limit refusal,
a spool failure, a relay failure, a milter connection, process_* and
mailhook_build_info); `promtool check metrics` on both scrapes and
`promtool check rules` / `promtool test rules` on deploy/prometheus; the
health endpoints (/healthz, /readyz) that run no policy."""

import http.client
import os
import re
import shutil
import socket
import subprocess
import time
import unittest

from harness import FRONT, MailhookTest, Process, Sink, SmtpClient, free_port, sample, scrape, wait_for
from test_kv import REDIS
from test_milter import negotiate

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
PROMETHEUS_DIR = os.path.join(ROOT, "deploy", "prometheus")
SCRIPTS = os.path.join(ROOT, "deploy", "docker", "scripts")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROBE = os.environ.get("MAILHOOK_PROBE") or os.path.join(os.path.dirname(os.path.abspath(FRONT)), "..", "tools",
                                                        "probe", "mailhook-probe")

# The enforcing policy: a refusal rule at RCPT, AUTH for alice, kv calls at MAIL.
POLICY = r'''
function hook.mail(s)
  kv.incr("mails")
  kv.set("word", "not a number")
  kv.incr("word")  -- an error reply from Redis: counted as a kv error
end
function hook.rcpt(r)
  if r == "no@example.com" then return "550 5.7.1 refused by rule\r\n" end
end
function hook.auth(arg, user, password)
  if user == "alice" and password == "secret" then return "235 2.7.0 ok\r\n" end
end
'''
# A shadow script: what it would refuse is counted by script, never sent.
SHADOW = r'''
function hook.rcpt(r)
  if r == "b@example.com" then return "550 5.7.1 shadow would refuse\r\n" end
end
'''


def b64(s):
    import base64
    return base64.b64encode(s.encode()).decode()


def http_request(port, method, path):
    """(status, headers, body) of one request to a --metrics listener."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def promtool_check_metrics(test, text, who):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    test.assertEqual(r.returncode, 0, "promtool check metrics (%s):\n%s%s" % (who, r.stdout.decode(),
                                                                             r.stderr.decode()))


class AlertRules(unittest.TestCase):
    def test_promtool_checks_and_unit_tests_the_alert_rules(self):
        r = subprocess.run([PROMTOOL, "check", "rules", os.path.join(PROMETHEUS_DIR, "alerts.yml")],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertIn("SUCCESS: 8 rules found", r.stdout.decode())
        r = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR, capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())

    def test_the_rules_name_the_families_the_daemons_export(self):
        with open(os.path.join(PROMETHEUS_DIR, "alerts.yml")) as f:
            text = f.read()
        for name in ("mailhook_policy_failures_total", "mailhook_policyd_hook_timeouts_total",
                     'mailhook_policyd_reloads_total{result="failed"}', "mailhook_front_delivery_failures_total",
                     "process_open_fds", "process_max_fds"):
            self.assertIn(name, text)


class EveryNewMetricAfterRealTraffic(MailhookTest):
    def setUp(self):
        super().setUp()
        self.redis_port = free_port()
        redis = Process([REDIS, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                         "no", "--dir", self.dir, "--daemonize", "no"], os.path.join(self.dir, "redis.log"))
        self.processes.append(redis)
        wait_for(lambda: "Ready to accept connections" in redis.output() or not redis.alive(), what="redis ready")
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=mx.test", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True, timeout=60)
        self.policyd_metrics, self.front_metrics, self.relay_metrics = free_port(), free_port(), free_port()
        self.milter_port = free_port()
        shadow = self.write_script(SHADOW, "shadow.lua")
        self.start_policyd(POLICY, args=["--metrics", "127.0.0.1:%d" % self.policyd_metrics,
                                         "--kv", "127.0.0.1:%d" % self.redis_port,
                                         "--shadow-script", shadow,
                                         "--milter", "inet:%d@127.0.0.1" % self.milter_port])
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="milter listening")
        self.policy_path, self.shadow_path = self.script_path, shadow
        # The relaying front first: its smart host refuses MAIL with 451.
        self.sink = Sink(fail_at="mail")
        self.addCleanup(self.sink.stop)
        self.start_front(["--smart-host", "127.0.0.1:%d" % self.sink.port,
                          "--metrics", "127.0.0.1:%d" % self.relay_metrics])
        self.relay_port = self.front_port
        self.start_front(["--metrics", "127.0.0.1:%d" % self.front_metrics, "--tls-cert", self.cert,
                          "--tls-key", self.key, "--auth-plaintext", "--max-connections-per-ip", "1"])

    def tls_session(self):
        import ssl
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
        c.buf = b""
        self.assertEqual(c.cmd("EHLO client.example")[0], 250)
        c.cmd("QUIT")
        c.close()

    def failed_handshake(self):
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        c.send(b"this is not a TLS ClientHello\r\n" * 8)
        self.assertTrue(c.closed())
        c.close()

    def wait_no_session(self):
        wait_for(lambda: sample(scrape(self.front_metrics), "mailhook_front_sessions_open") == 0,
                 what="the front's sessions closed")

    def test_every_new_family_counts_what_happened(self):
        # AUTH: one failure, one malformed, one success; kv at MAIL; a
        # refusal by the rule, the shadow script's would-be refusal.
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0alice\0wrong"))[0], 535)
        self.assertEqual(c.cmd("AUTH PLAIN !!!!")[0], 501)
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0alice\0secret"))[0], 235)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>")[0], 550)
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)   # the shadow script only logs
        # A second client from the same address: --max-connections-per-ip 1.
        refused = self.client(expect_greeting=421)
        refused.close()
        c.cmd("QUIT")
        c.close()
        self.wait_no_session()
        self.tls_session()
        self.wait_no_session()
        self.failed_handshake()
        self.wait_no_session()
        # The spool is replaced by a file: the write fails, 452.
        shutil.rmtree(self.spool)
        with open(self.spool, "w") as f:
            f.write("x")
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(self.send_message(c, rcpts=("c@example.com",))[0], 452)
        c.cmd("QUIT")
        c.close()
        # The relaying front: the smart host answers 451 to MAIL.
        r = self.client(port=self.relay_port)
        r.cmd("EHLO client.example")
        self.assertEqual(self.send_message(r, rcpts=("c@example.com",))[0], 451)
        r.cmd("QUIT")
        r.close()
        # A milter connection: option negotiation, then the MTA leaves.
        with socket.create_connection(("127.0.0.1", self.milter_port), timeout=10) as m:
            negotiate(m)
            wait_for(lambda: sample(scrape(self.policyd_metrics), "mailhook_policyd_milter_connections_open") == 1,
                     what="the milter connection counted open")
        wait_for(lambda: sample(scrape(self.policyd_metrics), "mailhook_policyd_milter_connections_open") == 0,
                 what="the milter connection counted closed")

        front, relay, policyd = scrape(self.front_metrics), scrape(self.relay_metrics), scrape(self.policyd_metrics)
        rule = 'mailhook_policyd_replies_total{hook="rcpt",script="%s",class="5xx"}' % self.policy_path
        self.assertEqual(sample(policyd, rule), 1, policyd)
        self.assertEqual(sample(policyd, rule.replace("5xx", "2xx")), 0)
        self.assertEqual(sample(policyd, 'mailhook_policyd_replies_total{hook="auth",script="%s",class="2xx"}'
                                % self.policy_path), 1)
        self.assertEqual(sample(policyd, 'mailhook_policyd_shadow_replies_total{hook="rcpt",script="%s",class="5xx"}'
                                % self.shadow_path), 1)
        # Not registered for a hook the script does not define.
        self.assertNotIn('hook="data",script="%s"' % self.policy_path, policyd)
        # Three transactions (both fronts), each MAIL: incr, set, incr (refused by Redis).
        self.assertEqual(sample(policyd, 'mailhook_policyd_kv_calls_total{command="incr"}'), 6)
        self.assertEqual(sample(policyd, 'mailhook_policyd_kv_calls_total{command="set"}'), 3)
        self.assertEqual(sample(policyd, 'mailhook_policyd_kv_errors_total{command="incr"}'), 3)
        self.assertEqual(sample(policyd, 'mailhook_policyd_kv_errors_total{command="set"}'), 0)
        self.assertEqual(sample(policyd, "mailhook_policyd_kv_seconds_count"), 9)
        self.assertEqual(sample(policyd, "mailhook_policyd_milter_connections_total"), 1)

        self.assertEqual(sample(front, 'mailhook_front_auth_total{result="failure"}'), 1)
        self.assertEqual(sample(front, 'mailhook_front_auth_total{result="malformed"}'), 1)
        self.assertEqual(sample(front, 'mailhook_front_auth_total{result="success"}'), 1)
        self.assertEqual(sample(front, 'mailhook_front_auth_total{result="canceled"}'), 0)
        self.assertEqual(sample(front, 'mailhook_front_connection_limit_refusals_total{limit="per_ip"}'), 1)
        self.assertEqual(sample(front, 'mailhook_front_connection_limit_refusals_total{limit="total"}'), 0)
        self.assertEqual(sample(front, 'mailhook_front_tls_handshakes_total{result="ok"}'), 1)
        self.assertEqual(sample(front, 'mailhook_front_tls_handshakes_total{result="failed"}'), 1)
        self.assertEqual(sample(front, 'mailhook_front_delivery_failures_total{delivery="spool",class="4xx"}'), 1)
        self.assertEqual(sample(relay, 'mailhook_front_delivery_failures_total{delivery="relay",class="4xx"}'), 1)
        self.assertEqual(sample(relay, 'mailhook_front_delivery_failures_total{delivery="relay",class="5xx"}'), 0)
        self.assertEqual(sample(relay, 'mailhook_front_messages_total{delivery="relay"}'), 0)

        for text, daemon, proc in ((front, "front", self.front), (policyd, "policyd", self.policyd)):
            pid = proc.proc.pid
            self.assertGreater(sample(text, "process_open_fds"), 3)
            self.assertLessEqual(sample(text, "process_open_fds"), len(os.listdir("/proc/%d/fd" % pid)) + 8)
            self.assertGreater(sample(text, "process_max_fds"), sample(text, "process_open_fds"))
            self.assertGreater(sample(text, "process_resident_memory_bytes"), 1 << 20)
            self.assertGreater(sample(text, "process_cpu_seconds_total"), 0)
            started = sample(text, "process_start_time_seconds")
            self.assertTrue(time.time() - 600 < started <= time.time() + 1, started)
            m = re.search(r'^mailhook_build_info\{daemon="%s",version="([^"]+)",commit="([^"]+)"\} 1$' % daemon,
                          text, re.M)
            self.assertTrue(m, text[-600:])
            self.assertRegex(m.group(1), r"^\d+\.\d+\.\d+$")
        for text, who in ((front, "front"), (relay, "relaying front"), (policyd, "policyd")):
            promtool_check_metrics(self, text, who)
        # Bounded labels: no client value became a label (addresses, HELO names).
        for text in (front, policyd):
            for value in ("no@example.com", "b@example.com", "client.example", "alice", "127.0.0.1"):
                self.assertNotIn('"%s"' % value, text)

    def test_head_metrics_answers_headers_without_a_body(self):
        status, headers, body = http_request(self.front_metrics, "GET", "/metrics")
        self.assertEqual(status, 200)
        length = int(headers["Content-Length"])
        self.assertEqual(len(body), length)
        for port in (self.front_metrics, self.policyd_metrics):
            status, headers, body = http_request(port, "HEAD", "/metrics")
            self.assertEqual((status, body), (200, b""))
            self.assertGreater(int(headers["Content-Length"]), 0)
            self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        self.assertEqual(http_request(self.front_metrics, "POST", "/metrics")[0], 405)
        self.assertEqual(http_request(self.front_metrics, "GET", "/other")[0], 404)


# A policy that refuses loopback at the connection: a probe that opened an
# SMTP session would fail, and log the session.
REFUSE_LOOPBACK = r'''
function hook.accept(ip, host)
  if ip == "127.0.0.1" then return "554 5.7.1 no loopback clients\r\n" end
end
'''


class HealthEndpoints(MailhookTest):
    def start_with_health(self, script):
        self.policyd_metrics, self.front_metrics = free_port(), free_port()
        self.start_both(script, policyd_args=["--metrics", "127.0.0.1:%d" % self.policyd_metrics],
                        front_args=["--metrics", "127.0.0.1:%d" % self.front_metrics])

    def healthcheck(self, script, metrics, path="/readyz"):
        env = dict(os.environ, MAILHOOK_BIN_DIR=os.path.dirname(os.path.abspath(PROBE)),
                   MAILHOOK_METRICS="0.0.0.0:%d" % metrics, MAILHOOK_HEALTH_PATH=path)
        return subprocess.run([os.path.join(SCRIPTS, script)], env=env, capture_output=True, timeout=30, text=True)

    def test_readiness_passes_with_a_policy_that_refuses_loopback_and_runs_no_session(self):
        self.start_with_health(REFUSE_LOOPBACK)
        for port in (self.front_metrics, self.policyd_metrics):
            self.assertEqual(http_request(port, "GET", "/healthz")[:3:2], (200, b"ok\n"))
            self.assertEqual(http_request(port, "GET", "/readyz")[:3:2], (200, b"ready\n"))
            self.assertEqual(http_request(port, "HEAD", "/readyz")[:3:2], (200, b""))
        # The container healthchecks (and through them the images'
        # HEALTHCHECK) ask the same endpoints through mailhook-probe.
        for script, port in (("healthcheck-front.sh", self.front_metrics),
                             ("healthcheck-policyd.sh", self.policyd_metrics)):
            for path in ("/readyz", "/healthz"):
                r = self.healthcheck(script, port, path)
                self.assertEqual(r.returncode, 0, script + path + ": " + r.stderr)
        # No policy ran: no session in either daemon, no session line logged.
        policyd, front = scrape(self.policyd_metrics), scrape(self.front_metrics)
        self.assertEqual(sample(policyd, "mailhook_policyd_sessions_total"), 0)
        self.assertEqual(sample(front, "mailhook_front_sessions_total"), 0)
        self.assertNotIn("session=", self.policyd.output())
        self.assertNotIn("session=", self.front.output())
        # The policy does refuse a real loopback client.
        self.client(expect_greeting=554)

    def test_front_is_not_ready_while_policyd_is_down_but_stays_alive(self):
        self.start_with_health("")
        self.assertEqual(http_request(self.front_metrics, "GET", "/readyz")[0], 200)
        self.policyd.stop()
        status, _, body = http_request(self.front_metrics, "GET", "/readyz")
        self.assertEqual(status, 503, body)
        self.assertIn(b"not ready: policy daemon 127.0.0.1:%d" % self.policyd_port, body)
        self.assertEqual(http_request(self.front_metrics, "GET", "/healthz")[0], 200)
        r = self.healthcheck("healthcheck-front.sh", self.front_metrics)
        self.assertEqual(r.returncode, 1)
        self.assertIn("mailhook-probe: http 127.0.0.1:%d/readyz: 503 not ready: policy daemon" % self.front_metrics,
                      r.stderr)
        self.assertEqual(self.healthcheck("healthcheck-front.sh", self.front_metrics, "/healthz").returncode, 0)
        # policyd back on the same port: ready again, without a restart.
        self.start_policyd("", args=["--metrics", "127.0.0.1:%d" % self.policyd_metrics], port=self.policyd_port)
        wait_for(lambda: http_request(self.front_metrics, "GET", "/readyz")[0] == 200, what="the front ready again")

    def test_policyd_is_not_ready_while_it_drains(self):
        self.start_with_health("")
        c = self.client()   # an open session holds policyd's drain
        self.assertEqual(http_request(self.policyd_metrics, "GET", "/readyz")[0], 200)
        self.policyd.proc.send_signal(15)
        wait_for(lambda: http_request(self.policyd_metrics, "GET", "/readyz")[0] == 503, what="policyd not ready")
        status, _, body = http_request(self.policyd_metrics, "GET", "/readyz")
        self.assertEqual((status, body), (503, b"not ready: policyd is draining (SIGTERM) or not serving\n"))
        self.assertEqual(http_request(self.policyd_metrics, "GET", "/healthz")[0], 200)
        c.cmd("QUIT")
        c.close()

    def test_policyd_is_not_ready_while_its_only_worker_is_stuck_in_a_hook(self):
        self.policyd_metrics, self.front_metrics = free_port(), free_port()
        self.start_both("function hook.noop() while true do end end",
                        policyd_args=["--metrics", "127.0.0.1:%d" % self.policyd_metrics, "--hook-timeout", "8000",
                                      "--trace", "127.0.0.1"],
                        front_args=["--metrics", "127.0.0.1:%d" % self.front_metrics])
        self.assertEqual(http_request(self.policyd_metrics, "GET", "/readyz")[0], 200)
        c = self.client()
        c.send("NOOP\r\n")   # the one worker spins until --hook-timeout
        # --trace logs the event before its hook runs.
        wait_for(lambda: re.search(r"trace session=\S+ event noop ", self.policyd.output(), re.I),
                 what="hook.noop running")
        status, _, body = http_request(self.policyd_metrics, "GET", "/readyz")
        self.assertEqual((status, body), (503, b"not ready: no answer within 3 s\n"))
        # The front asks policyd's gRPC health, which does not need a worker.
        self.assertEqual(http_request(self.front_metrics, "GET", "/readyz")[0], 200)
        self.assertEqual(c.read_reply()[0], 451)   # stopped at --hook-timeout
        self.assertEqual(http_request(self.policyd_metrics, "GET", "/readyz")[0], 200)


if __name__ == "__main__":
    unittest.main()
