"""deploy/docker/test-images.sh: builds the images with podman and proves the
product through them, as two containers and then through compose.yaml.
It must leave nothing running: every container, network and volume it
starts carries this run's name (mhtest<pid>) and is removed by that name;
every wait is a polled condition with a deadline, and the whole run has one.
It never talks to an image registry (the debian:12 base is made locally
with mmdebstrap when missing)."""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DOCKER = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(DOCKER))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import Sink, SmtpClient, free_port  # noqa: E402  (the suites' SMTP client and sink)

BASE = "docker.io/library/debian:12"
REDIS_OFFICIAL = "docker.io/library/redis:7-bookworm"
# What this sandbox (and any podman host) accepts: runc (crun is refused
# here) and modest explicit limits (the default nproc/nofile are refused).
# netavark + aardvark-dns, not CNI: with CNI's dnsname plugin a container
# on several networks (policyd: link, milter, kv) asks only the first
# network's resolver, so it cannot find redis on "kv" (Docker's and
# aardvark's resolvers answer for every network of the container).
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
"""

POLICY = """-- test-images.sh's policy, mounted from the host (version %(v)s).
function hook.rcpt(recipient)
  if recipient:lower():match("^blocked@") then
    return "550 5.7.1 blocked by policy %(v)s\\r\\n"
  end
end
function hook.dot(path)
  message.add_header("X-Mailhook-Policy", "%(v)s")
%(kv)s
end
"""
# compose.yaml's policyd has Redis (MAILHOOK_KV): count messages there.
KV = """  local ok, n = pcall(kv.incr, "test-images-messages")
  message.add_header("X-Mailhook-KV", tostring(ok and n or "error: " .. tostring(n)))"""


class Failed(Exception):
    pass


class Run:
    def __init__(self, args):
        self.args = args
        self.name = "mhtest%d" % os.getpid()
        self.deadline = time.monotonic() + args.timeout
        self.dir = tempfile.mkdtemp(prefix="mailhook-images-")
        os.chmod(self.dir, 0o755)
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as f:
            f.write(CONTAINERS_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.results = []          # (step, ok, detail)
        self.numbers = []          # (what, value)
        self.containers = []       # names this run created
        self.projects = []         # compose project names this run used
        self.volumes_before = None

    # ---- plumbing -------------------------------------------------------
    def left(self, cap):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Failed("the run's time (--timeout %ds) is up" % self.args.timeout)
        return min(cap, left)

    def sh(self, argv, timeout=120, check=True, input=None, env=None, quiet=False):
        r = subprocess.run(argv, capture_output=True, text=True, input=input, env=env or self.env,
                           timeout=self.left(timeout), cwd=ROOT)
        if check and r.returncode != 0:
            raise Failed("%s exited %d: %s" % (" ".join(argv[:4]), r.returncode,
                                               (r.stderr or r.stdout).strip()[-1500:]))
        return r

    def podman(self, *argv, **kw):
        return self.sh(["podman"] + list(argv), **kw)

    def wait(self, what, condition, timeout):
        end = time.monotonic() + self.left(timeout)
        while time.monotonic() < end:
            if condition():
                return
            time.sleep(0.25)
        raise Failed("timed out after %ds waiting for %s" % (timeout, what))

    def step(self, title, fn, *a):
        started = time.monotonic()
        try:
            detail = fn(*a) or ""
        except (Failed, AssertionError, OSError, subprocess.TimeoutExpired) as e:
            self.results.append((title, False, str(e)))
            print("FAIL  %s: %s" % (title, e), flush=True)
            raise Failed(title)
        took = time.monotonic() - started
        self.results.append((title, True, detail))
        print("PASS  %s (%.1fs)%s" % (title, took, ": " + detail if detail else ""), flush=True)
        return took

    # ---- images ----------------------------------------------------------
    def check_podman(self):
        if not shutil.which("podman"):
            raise Failed("podman is not installed (deploy/debian/packages-test.txt; ./dev test installs it)")
        r = self.podman("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}", check=False)
        if r.returncode != 0:
            raise Failed("podman cannot run here: " + (r.stderr or r.stdout).strip()[-800:])
        return "podman %s, %s" % (self.podman("--version").stdout.split()[-1], r.stdout.strip())

    def check_run(self):
        r = self.podman("run", "--rm", "--network=host", *(ULIMITS + [BASE, "true"]), check=False, timeout=60)
        if r.returncode != 0:
            raise Failed("podman cannot start a container here: " + r.stderr.strip()[-800:])
        return "runc, host network, ulimits nofile/nproc"

    def base_image(self):
        if self.podman("image", "exists", BASE, check=False).returncode == 0:
            return "%s present" % BASE
        if not shutil.which("mmdebstrap"):
            raise Failed("%s missing and mmdebstrap not installed" % BASE)
        sources = ["deb http://deb.debian.org/debian bookworm main",
                   "deb http://deb.debian.org/debian bookworm-updates main",
                   "deb http://deb.debian.org/debian-security bookworm-security main"]
        started = time.monotonic()
        mm = subprocess.Popen(["mmdebstrap", "--variant=apt", "--format=tar", "bookworm", "-"] + sources,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        imp = subprocess.run(["podman", "import", "--change", 'CMD ["bash"]', "-", BASE], stdin=mm.stdout,
                             capture_output=True, text=True, env=self.env, timeout=self.left(600))
        mm.stdout.close()
        err = mm.stderr.read().decode(errors="replace")
        if mm.wait(timeout=self.left(60)) != 0 or imp.returncode != 0:
            raise Failed("mmdebstrap | podman import: %s %s" % (err[-800:], imp.stderr[-800:]))
        self.numbers.append(("base image (mmdebstrap + import)", "%.0fs" % (time.monotonic() - started)))
        return "made %s with mmdebstrap" % BASE

    def prebuilt_context(self):
        """A build context holding what the runtime stage copies, and the
        programs of the existing build tree in deploy/docker/prebuilt/."""
        build = os.path.abspath(self.args.build_dir)
        ctx = os.path.join(self.dir, "context")
        for rel in ("deploy/docker/runtime-packages.txt", "lua/policy.lua"):
            os.makedirs(os.path.dirname(os.path.join(ctx, rel)), exist_ok=True)
            shutil.copy(os.path.join(ROOT, rel), os.path.join(ctx, rel))
        shutil.copytree(os.path.join(DOCKER, "scripts"), os.path.join(ctx, "deploy/docker/scripts"))
        prefix = os.path.join(ctx, "deploy/docker/prebuilt")
        self.sh([os.path.join(DOCKER, "scripts", "build.sh"), "--install-only", prefix, build], timeout=120)
        # The Release image carries no debug info; neither does this one.
        for p in ("mailhook-front", "mailhook-policyd", "mailhook-probe"):
            self.sh(["strip", "--strip-debug", os.path.join(prefix, "bin", p)])
        return ctx

    def build(self, dockerfile, tag, context, target=None, ignorefile=None):
        argv = ["build", "--format", "docker", "--pull=never", "--network=host"] + ULIMITS + [
            "-f", os.path.join(DOCKER, dockerfile), "-t", tag]
        if target:
            argv += ["--target", target]
        if ignorefile:
            argv += ["--ignorefile", ignorefile]
        # The build's output goes to a log file as it comes (a full build
        # takes minutes): its path is printed, its tail shown on failure.
        log = os.path.join(self.dir, "build-%s.log" % tag.replace("/", "_").replace(":", "_"))
        print("      building %s (log: %s)" % (tag, log), flush=True)
        started = time.monotonic()
        with open(log, "w") as f:
            r = subprocess.run(["podman"] + argv + [context], stdout=f, stderr=subprocess.STDOUT,
                               env=self.env, cwd=ROOT, timeout=self.left(3600))
        took = time.monotonic() - started
        if r.returncode != 0:
            with open(log) as f:
                raise Failed("podman build %s: %s" % (dockerfile, f.read()[-2000:]))
        self.numbers.append(("build %s%s" % (tag, " (--full)" if self.args.full else ""), "%.0fs" % took))
        return "%.0fs" % took

    def build_images(self):
        if self.args.full:
            self.front_image, self.policyd_image = "mailhook-front:0.1.0", "mailhook-policyd:0.1.0"
            for d, tag in (("policyd", self.policyd_image), ("front", self.front_image)):
                self.step("build %s (full multi-stage)" % tag, self.build, "Dockerfile." + d, tag, ROOT, None,
                          os.path.join(DOCKER, "Dockerfile.%s.dockerignore" % d))
        else:
            self.front_image, self.policyd_image = "localhost/mailhook-front:prebuilt", "localhost/mailhook-policyd:prebuilt"
            ctx = self.prebuilt_context()
            for d, tag in (("policyd", self.policyd_image), ("front", self.front_image)):
                self.step("build %s (runtime stage + %s)" % (tag, self.args.build_dir), self.build,
                          "Dockerfile." + d, tag, ctx, "prebuilt")
        self.postfix_image = "mailhook-postfix-demo:0.1.0"
        self.step("build %s" % self.postfix_image, self.build, "Dockerfile.postfix", self.postfix_image, ROOT, None,
                  os.path.join(DOCKER, "Dockerfile.postfix.dockerignore"))
        self.redis_image = os.environ.get("MAILHOOK_REDIS_IMAGE")
        if not self.redis_image:
            if self.podman("image", "exists", REDIS_OFFICIAL, check=False).returncode == 0:
                self.redis_image = REDIS_OFFICIAL
            else:
                self.redis_image = "localhost/mailhook-test-redis:7"
                self.step("build %s (stand-in for redis:7-bookworm)" % self.redis_image, self.build,
                          "test/Dockerfile.redis", self.redis_image, HERE)
        for tag in (self.policyd_image, self.front_image, self.postfix_image, self.redis_image):
            size = self.podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
            self.numbers.append(("size %s" % tag, "%.0f MB" % (int(size) / 1e6)))

    # ---- helpers for the scenario ---------------------------------------
    def owned_dir(self, path, mode=0o750):
        """A host directory the images' user (uid 10025) owns."""
        os.makedirs(path, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(path, 10025, 10025)
        else:
            self.podman("unshare", "chown", "10025:10025", path)
        os.chmod(path, mode)
        return path

    def certs(self, where):
        env = dict(self.env, MAILHOOK_CERT_UID="10025") if os.geteuid() == 0 else self.env
        self.sh([os.path.join(ROOT, "deploy", "tls", "make-link-certs.sh"), where], env=env)
        if os.geteuid() != 0:
            self.podman("unshare", "chown", "-R", "10025:10025", where)
        return where

    def healthy(self, name):
        return self.podman("healthcheck", "run", name, check=False, timeout=30).returncode == 0

    def wait_healthy(self, name, timeout=90):
        try:
            self.wait("%s healthy" % name, lambda: self.healthy(name), timeout)
        except Failed:
            raise Failed("%s not healthy: %s" % (name, self.logs(name)))

    def logs(self, name):
        r = self.podman("logs", "--tail", "15", name, check=False, timeout=20)
        return (r.stdout + r.stderr).strip()[-1500:]

    def smtp(self, port, rcpt, marker, expect=250):
        """One transaction; returns (code, text) of the first reply that is
        not the success expected, or of the final dot."""
        c = SmtpClient(port, timeout=30)
        try:
            code, lines = c.read_reply()
            if code != 220:
                return code, " ".join(lines)
            for line in ("EHLO client.example", "MAIL FROM:<sender@example.org>", "RCPT TO:<%s>" % rcpt):
                code, lines = c.cmd(line)
                if code != 250:
                    return code, " ".join(lines)
            code, lines = c.cmd("DATA")
            if code != 354:
                return code, " ".join(lines)
            c.send("From: <sender@example.org>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nbody of %s\r\n.\r\n"
                   % (rcpt, marker, marker))
            code, lines = c.read_reply()
            c.cmd("QUIT")
            return code, " ".join(lines)
        finally:
            c.close()

    def expect(self, got, code, text=None):
        if got[0] != code or (text and text not in got[1]):
            raise Failed("expected %d%s, got %d %s" % (code, " ...%s..." % text if text else "", got[0], got[1]))
        return "%d %s" % got

    @staticmethod
    def spooled(spool, marker):
        found = []
        for root, _, files in os.walk(spool):
            for f in files:
                p = os.path.join(root, f)
                try:
                    with open(p, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                if ("Subject: " + marker).encode() in data:
                    found.append((p, data))
        return found

    def spooled_with_header(self, spool, marker, version):
        self.wait("message %s in %s" % (marker, spool), lambda: self.spooled(spool, marker), 20)
        path, data = self.spooled(spool, marker)[0]
        if ("X-Mailhook-Policy: %s" % version).encode() not in data:
            raise Failed("%s lacks the policy's header: %r" % (path, data[:400]))
        return path

    # ---- part 1: two containers, host network ----------------------------
    def run_container(self, name, image, env, mounts):
        argv = ["run", "-d", "--name", name, "--network=host"] + ULIMITS + [
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        for k, v in env.items():
            argv += ["-e", "%s=%s" % (k, v)]
        for m in mounts:
            argv += ["-v", m]
        self.containers.append(name)
        self.podman(*(argv + [image]), timeout=60)

    def part_containers(self):
        d = os.path.join(self.dir, "run")
        os.makedirs(d)
        tls = self.certs(os.path.join(d, "tls"))
        policy_dir = os.path.join(d, "policy")
        os.makedirs(policy_dir)
        self.policy = os.path.join(policy_dir, "policy.lua")
        with open(self.policy, "w") as f:
            f.write(POLICY % {"v": "v1", "kv": ""})
        self.spool = self.owned_dir(os.path.join(d, "spool"))
        grpc, smtp, m_policyd, m_front = free_port(), free_port(), free_port(), free_port()
        self.smtp_port = smtp
        self.policyd_name, self.front_name = self.name + "-policyd", self.name + "-front"
        self.policyd_env = {
            "MAILHOOK_LISTEN": "127.0.0.1:%d" % grpc, "MAILHOOK_METRICS": "127.0.0.1:%d" % m_policyd,
            "MAILHOOK_WORKERS": "2",
            "MAILHOOK_TLS_CERT": "/etc/mailhook-tls/tls.crt", "MAILHOOK_TLS_KEY": "/etc/mailhook-tls/tls.key",
            "MAILHOOK_TLS_CLIENT_CA": "/etc/mailhook-tls/ca.crt"}
        self.front_env = {
            "MAILHOOK_LISTEN": "127.0.0.1:%d" % smtp, "MAILHOOK_METRICS": "127.0.0.1:%d" % m_front,
            "MAILHOOK_POLICYD": "127.0.0.1:%d" % grpc, "MAILHOOK_HOSTNAME": "mx.example.com",
            "MAILHOOK_THREADS": "2",
            "MAILHOOK_POLICYD_TLS_CA": "/etc/mailhook-tls/ca.crt",
            "MAILHOOK_POLICYD_TLS_CERT": "/etc/mailhook-tls/tls.crt",
            "MAILHOOK_POLICYD_TLS_KEY": "/etc/mailhook-tls/tls.key"}
        self.policyd_mounts = ["%s:/etc/mailhook:ro" % policy_dir, "%s/policyd:/etc/mailhook-tls:ro" % tls]
        self.front_mounts = ["%s:/var/spool/mailhook" % self.spool, "%s/front:/etc/mailhook-tls:ro" % tls]

        def start():
            started = time.monotonic()
            self.run_container(self.policyd_name, self.policyd_image, self.policyd_env, self.policyd_mounts)
            self.run_container(self.front_name, self.front_image, self.front_env, self.front_mounts)
            self.wait_healthy(self.policyd_name)
            self.wait_healthy(self.front_name)
            took = time.monotonic() - started
            self.numbers.append(("podman run -> both healthy", "%.1fs" % took))
            return "policyd gRPC 127.0.0.1:%d (mTLS), front SMTP 127.0.0.1:%d; %.1fs to healthy" % (grpc, smtp, took)
        self.step("containers: start policyd + front (host network), health checks pass", start)

        def spool():
            r = self.expect(self.smtp(smtp, "user@example.com", "spooled-1"), 250)
            path = self.spooled_with_header(self.spool, "spooled-1", "v1")
            return "%s; %s" % (r, os.path.relpath(path, self.dir))
        self.step("containers: a message is spooled in the host volume, with the policy's header", spool)

        def refused():
            return self.expect(self.smtp(smtp, "blocked@example.com", "refused-1"), 550, "blocked by policy v1")
        self.step("containers: the mounted policy refuses a recipient", refused)

        def relay():
            sink = Sink()
            try:
                name = self.name + "-relay"
                env = dict(self.front_env, MAILHOOK_RELAY="127.0.0.1:%d" % sink.port,
                           MAILHOOK_LISTEN="127.0.0.1:%d" % free_port(), MAILHOOK_METRICS="127.0.0.1:%d" % free_port())
                self.run_container(name, self.front_image, env, self.front_mounts[1:])
                self.wait_healthy(name)
                port = int(env["MAILHOOK_LISTEN"].rsplit(":", 1)[1])
                r = self.expect(self.smtp(port, "user@example.com", "relayed-1"), 250)
                self.wait("the sink to receive the message", lambda: sink.messages, 30)
                data = sink.messages[0][2]
                if b"Subject: relayed-1" not in data or b"X-Mailhook-Policy: v1" not in data:
                    raise Failed("the sink got %r" % data[:400])
                self.podman("rm", "-f", "-v", "-t", "0", name, timeout=60)
                return "%s; the sink on 127.0.0.1:%d got it" % (r, sink.port)
            finally:
                sink.stop()
        self.step("containers: with MAILHOOK_RELAY the front relays to a smart host", relay)

        def kill():
            before = sorted(p for p, _ in self.spooled(self.spool, "spooled-1"))
            self.podman("kill", self.policyd_name, timeout=30)
            self.wait("policyd's container to stop", lambda: self.podman(
                "inspect", "--format", "{{.State.Running}}", self.policyd_name).stdout.strip() == "false", 30)
            got = self.smtp(smtp, "user@example.com", "while-down")
            if got[0] not in (421, 451) or "4.3.0" not in got[1]:
                raise Failed("with policyd down the front answered %d %s" % got)
            after = sorted(p for p, _ in self.spooled(self.spool, "spooled-1"))
            if before != after or not after:
                raise Failed("spooled mail changed while policyd was down: %s -> %s" % (before, after))
            if self.spooled(self.spool, "while-down"):
                raise Failed("a tempfailed message was spooled")
            self.wait("the front's /readyz to fail", lambda: not self.healthy(self.front_name), 30)
            return "%d %s; the spooled message is still there; front unhealthy" % got
        self.step("containers: policyd killed -> 4xx 4.3.0, nothing accepted lost", kill)

        def restart():
            self.podman("start", self.policyd_name, timeout=60)
            self.wait_healthy(self.policyd_name)
            self.wait_healthy(self.front_name)
            return self.expect(self.smtp(smtp, "user@example.com", "after-restart"), 250)
        self.step("containers: policyd restarted -> 250 again", restart)

        def reload():
            with open(self.policy, "w") as f:
                f.write(POLICY % {"v": "v2", "kv": ""})
            self.podman("kill", "--signal", "HUP", self.policyd_name, timeout=30)
            last = []

            def answers_v2():
                last[:] = [self.smtp(smtp, "blocked@example.com", "refused-2")]
                return last[0][0] == 550 and "blocked by policy v2" in last[0][1]
            try:
                self.wait("the new policy to answer", answers_v2, 30)
            except Failed:
                raise Failed("after SIGHUP: %r; %s" % (last, self.logs(self.policyd_name)))
            self.expect(self.smtp(smtp, "user@example.com", "spooled-2"), 250)
            self.spooled_with_header(self.spool, "spooled-2", "v2")
            return "%d %s" % last[0]
        self.step("containers: policy edited on the host + podman kill --signal HUP -> the new policy answers", reload)

        def stop():
            for name in (self.front_name, self.policyd_name):
                self.podman("rm", "-f", "-v", "-t", "0", name, timeout=60)
            return ""
        self.step("containers: removed", stop)

    # ---- part 2: compose.yaml --------------------------------------------
    def compose(self, *argv, timeout=300, check=True):
        return self.sh(["podman-compose", "-p", self.project, "-f", self.compose_file] + list(argv),
                       timeout=timeout, check=check, env=self.compose_env)

    def compose_container(self, service):
        r = self.podman("ps", "-a", "--filter", "label=io.podman.compose.project=" + self.project,
                        "--filter", "label=com.docker.compose.service=" + service, "--format", "{{.Names}}")
        names = r.stdout.split()
        if len(names) != 1:
            raise Failed("no single container for service %s: %r" % (service, names))
        return names[0]

    def part_compose(self):
        if not shutil.which("podman-compose"):
            raise Failed("podman-compose is not installed")
        self.project = self.name + "c"
        # compose.yaml verbatim, beside what its relative paths name: ./tls
        # (make-link-certs.sh tls) and ../../lua/policy.lua (the test policy).
        top = os.path.join(self.dir, "compose")
        os.makedirs(os.path.join(top, "deploy", "docker"))
        os.makedirs(os.path.join(top, "lua"))
        self.compose_file = os.path.join(top, "deploy", "docker", "compose.yaml")
        shutil.copy(os.path.join(DOCKER, "compose.yaml"), self.compose_file)
        self.certs(os.path.join(top, "deploy", "docker", "tls"))
        with open(os.path.join(top, "lua", "policy.lua"), "w") as f:
            f.write(POLICY % {"v": "compose", "kv": KV})
        os.chmod(os.path.join(top, "lua", "policy.lua"), 0o644)
        smtp, postfix = free_port(), free_port()
        self.compose_env = dict(self.env, MAILHOOK_SMTP_PORT=str(smtp), MAILHOOK_POSTFIX_PORT=str(postfix),
                                MAILHOOK_POLICYD_IMAGE=self.policyd_image, MAILHOOK_FRONT_IMAGE=self.front_image,
                                MAILHOOK_REDIS_IMAGE=self.redis_image, COMPOSE_PROFILES="milter")
        self.projects.append(self.project)

        def up():
            started = time.monotonic()
            # --no-build: the images are the ones built above (compose.yaml
            # names them); podman-compose would otherwise build from ../..
            self.compose("--podman-run-args=" + " ".join(ULIMITS), "up", "-d", "--no-build", timeout=300)
            names = {s: self.compose_container(s) for s in ("redis", "policyd", "front", "postfix")}
            for s in ("redis", "policyd", "front", "postfix"):
                self.wait_healthy(names[s], 120)
            self.names = names
            took = time.monotonic() - started
            self.numbers.append(("podman-compose up -> all healthy", "%.1fs" % took))
            return "%s; front on 127.0.0.1:%d, Postfix on 127.0.0.1:%d; %.1fs to healthy" % (
                ", ".join(sorted(names.values())), smtp, postfix, took)
        self.step("compose: podman-compose up (redis, policyd, front, postfix), health checks pass", up)

        def spool():
            r = self.expect(self.smtp(smtp, "user@example.com", "compose-1"), 250)
            volume = self.project + "_spool"
            where = self.podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip()
            path = self.spooled_with_header(where, "compose-1", "compose")
            with open(path, "rb") as f:
                if b"X-Mailhook-KV: 1\r\n" not in f.read():
                    raise Failed("policyd did not count in Redis (kv.incr): %s" % self.logs(self.names["policyd"]))
            return "%s; in volume %s (%s)" % (r, volume, path)
        self.step("compose: a message through the front is spooled in the spool volume", spool)

        def kv():
            log = self.logs(self.names["policyd"])
            if "MAILHOOK_KV redis:6379 -> " not in log or "cannot resolve" in log:
                raise Failed("start-policyd.sh did not resolve redis: %s" % log)
            return "X-Mailhook-KV: 1 (kv.incr in Redis); " + log[log.index("MAILHOOK_KV"):].split("\n")[0]
        self.step("compose: policyd reaches Redis by its service name (network kv)", kv)

        def milter():
            r1 = self.expect(self.smtp(postfix, "blocked@example.com", "compose-refused"), 550,
                             "blocked by policy compose")
            r2 = self.expect(self.smtp(postfix, "user@example.com", "compose-milter"), 250)
            box = []

            def delivered():
                r = self.podman("exec", self.names["postfix"], "cat", "/var/mail/maildemo", check=False, timeout=30)
                box[:] = [r.stdout]
                return "Subject: compose-milter" in r.stdout
            try:
                self.wait("Postfix to deliver to /var/mail/maildemo", delivered, 60)
            except Failed:
                raise Failed("not delivered: %r; %s" % (box[0][-600:] if box else "", self.logs(self.names["postfix"])))
            if "X-Mailhook-Policy: compose" not in box[0] or "X-Mailhook-KV: 2" not in box[0]:
                raise Failed("delivered without the milter's header: %r" % box[0][-800:])
            return "refused: %s; accepted: %s; delivered with X-Mailhook-Policy" % (r1, r2)
        self.step("compose: Postfix with policyd as its milter refuses and accepts by the policy", milter)

        def down():
            self.compose("down", "-v", timeout=180)
            left = self.podman("ps", "-a", "-q", "--filter", "label=io.podman.compose.project=" + self.project).stdout
            if left.strip():
                raise Failed("containers left after down: %s" % left.split())
            return ""
        self.step("compose: podman-compose down -v", down)

    # ---- cleanup and report -----------------------------------------------
    def leftovers(self):
        """What this run made that is still there (after cleanup: nothing)."""
        left = []
        names = self.sh(["podman", "ps", "-a", "--format", "{{.Names}}"], check=False, timeout=30).stdout.split()
        left += ["container " + n for n in names if n.startswith(self.name)]
        nets = self.sh(["podman", "network", "ls", "--format", "{{.Name}}"], check=False, timeout=30).stdout.split()
        left += ["network " + n for n in nets if n.startswith(self.name)]
        pods = self.sh(["podman", "pod", "ls", "--format", "{{.Name}}"], check=False, timeout=30).stdout.split()
        left += ["pod " + n for n in pods if self.name in n]
        if self.volumes_before is not None:
            vols = set(self.sh(["podman", "volume", "ls", "-q"], check=False, timeout=30).stdout.split())
            left += ["volume " + v for v in sorted(vols - self.volumes_before)]
        return left

    def cleanup(self):
        for name in self.containers:
            self.sh(["podman", "rm", "-f", "-v", "-t", "0", "--ignore", name], check=False, timeout=60)
        for project in self.projects:
            label = "label=io.podman.compose.project=" + project
            ids = self.sh(["podman", "ps", "-a", "-q", "--filter", label], check=False, timeout=30).stdout.split()
            if ids:
                self.sh(["podman", "rm", "-f", "-v", "-t", "0"] + ids, check=False, timeout=60)
            for kind in ("pod", "network", "volume"):
                lister = ["podman", kind, "ls", "-q", "--filter", label] if kind != "pod" else \
                    ["podman", "pod", "ls", "-q", "--filter", "name=pod_" + project]
                ids = self.sh(lister, check=False, timeout=30).stdout.split()
                if ids:
                    self.sh(["podman", kind, "rm", "-f"] + ids, check=False, timeout=60)
        # The spool of the first part belongs to uid 10025.
        if os.geteuid() != 0 and os.path.isdir(self.dir):
            self.sh(["podman", "unshare", "rm", "-rf", self.dir], check=False, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def report(self, ok):
        print("\n---- numbers", flush=True)
        for what, value in self.numbers:
            print("  %-58s %s" % (what, value))
        print("---- steps: %d passed, %d failed" % (sum(1 for r in self.results if r[1]),
                                                    sum(1 for r in self.results if not r[1])))
        print("RESULT: %s" % ("PASS" if ok else "FAIL"), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true",
                   help="build the images with the real multi-stage Dockerfiles (compiles everything)")
    p.add_argument("--build-dir", default=os.environ.get("MAILHOOK_BUILD_DIR", os.path.join(ROOT, "build")),
                   help="without --full: the build tree whose programs the images get (default: build/)")
    p.add_argument("--timeout", type=int, default=None,
                   help="seconds the whole run may take (default 900, 5400 with --full)")
    args = p.parse_args()
    if args.timeout is None:
        args.timeout = 5400 if args.full else 900
    run = Run(args)
    ok = False
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        run.step("podman runs here", run.check_podman)
        run.step("base image %s" % BASE, run.base_image)
        run.step("podman can start a container", run.check_run)
        run.volumes_before = set(run.podman("volume", "ls", "-q").stdout.split())
        run.build_images()
        run.part_containers()
        run.part_compose()
        ok = True
    except Failed:
        pass
    except KeyboardInterrupt:
        print("FAIL  interrupted", flush=True)
    finally:
        try:
            run.cleanup()
            if run.results and run.results[0][1]:      # podman ran, so something may be left
                left = run.leftovers()
                if left:
                    raise Failed("left behind: " + ", ".join(left))
                print("PASS  cleanup: no container, pod, network or volume of %s left" % run.name, flush=True)
        except Exception as e:  # the report must still come
            print("FAIL  cleanup: %s" % e, flush=True)
            ok = False
        run.report(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
