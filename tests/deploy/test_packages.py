"""The Debian packages (deploy/debian/package.cmake), built and started.

`cpack -G DEB` builds mailhook-front and mailhook-policyd from the build in
MAILHOOK_BUILD_DIR into a temp directory; both are unpacked (`dpkg -x`)
into a scratch root. Their systemd units pass `systemd-analyze verify`,
and each unit's ExecStart line, exactly as installed, is started: its
paths moved into the scratch root, the addresses of the packaged config
files moved to free loopback ports, NOTIFY_SOCKET set to a datagram socket
this test reads. policyd and the front say READY=1 once they listen, a
message sent through the front lands in the spool, SIGHUP (the units'
ExecReload) gives RELOADING=1 then READY=1, SIGTERM gives STOPPING=1 and
a clean exit.

Not done here: the maintainer scripts run as root in a real system
(dpkg -i would create the mailhook user on this machine); they are
checked by `sh -n` and for what they create. The units run as the test's
user, not User=mailhook, and without the sandbox (systemd is not PID 1).

Every process is stopped by PID; every wait polls with a deadline.
"""

import glob
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import tomllib
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import SmtpClient, free_port, wait_for  # noqa: E402

BUILD_DIR = os.path.abspath(os.environ.get("MAILHOOK_BUILD_DIR", os.path.join(ROOT, "build")))
UNIT_DIR = "lib/systemd/system"
SANDBOX = {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
           "Type": "notify", "User": "mailhook", "Group": "mailhook", "ExecReload": "/bin/kill -HUP $MAINPID"}
# The directory each unit may write, which its postinst creates.
WRITABLE = {"mailhook-front": "/var/spool/mailhook", "mailhook-policyd": "/var/spool/mailhook-policyd"}


def run(args, timeout=300, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def unit_settings(path):
    """[Service]/[Unit]/[Install] key=value lines of a unit file: {key: [values]}."""
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")):
                key, _, value = line.partition("=")
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def write_toml(path, values):
    """The few TOML forms the packaged configs use: strings and string lists."""
    def quote(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    with open(path, "w") as f:
        for key, value in values.items():
            if isinstance(value, list):
                f.write("%s = [%s]\n" % (key, ", ".join(quote(v) for v in value)))
            else:
                f.write("%s = %s\n" % (key, quote(str(value))))


class Packages:
    """One cpack run and one scratch root, shared by the tests."""

    tmp = None
    debs = {}
    root = None

    @classmethod
    def get(cls, test):
        if cls.root is None:
            test.assertTrue(os.path.isfile(os.path.join(BUILD_DIR, "CPackConfig.cmake")),
                            "MAILHOOK_BUILD_DIR=%s has no CPackConfig.cmake" % BUILD_DIR)
            cls.tmp = cls.tmp or tempfile.mkdtemp(prefix="mailhook-deb-")
            out = os.path.join(cls.tmp, "out")
            r = run(["cpack", "-G", "DEB", "-B", out, "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake")],
                    cwd=cls.tmp)
            test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            for deb in glob.glob(os.path.join(out, "*.deb")):
                name = run(["dpkg-deb", "-f", deb, "Package"]).stdout.strip()
                cls.debs[name] = deb
            root = os.path.join(cls.tmp, "root")
            for deb in cls.debs.values():
                r = run(["dpkg-deb", "-x", deb, root])
                test.assertEqual(r.returncode, 0, r.stderr)
            cls.root = root
            for name, size in sorted((n, os.path.getsize(d)) for n, d in cls.debs.items()):
                print("package %s: %d bytes (%.1f MiB)" % (name, size, size / 2**20), file=sys.stderr)
        return cls


def tearDownModule():
    if Packages.tmp:
        shutil.rmtree(Packages.tmp, ignore_errors=True)


class PackageContentsTest(unittest.TestCase):

    def setUp(self):
        self.p = Packages.get(self)

    def test_one_package_per_daemon_with_unit_config_and_conffiles(self):
        self.assertEqual(sorted(self.p.debs), ["mailhook-front", "mailhook-policyd"])
        expected = {
            "mailhook-front": ["/usr/bin/mailhook-front", "/usr/bin/mailhook-probe", "/etc/mailhook/front.conf",
                               "/lib/systemd/system/mailhook-front.service"],
            "mailhook-policyd": ["/usr/bin/mailhook-policyd", "/etc/mailhook/policyd.conf", "/etc/mailhook/policy.lua",
                                 "/usr/share/mailhook/lua/policy.lua", "/usr/share/mailhook/lua/examples/greylist_kv.lua",
                                 "/usr/share/mailhook/lua/examples/smtpf/relay_rbl.lua",
                                 "/usr/share/doc/mailhook-policyd/main.cf.snippet",
                                 "/lib/systemd/system/mailhook-policyd.service"],
        }
        for name, paths in expected.items():
            listing = {line.split()[-1].lstrip(".") for line in run(["dpkg-deb", "-c", self.p.debs[name]]).stdout.splitlines()}
            for path in paths:
                self.assertIn(path, listing, name)
            # Each file in one package only: both install side by side.
            other = [n for n in expected if n != name][0]
            self.assertNotIn("/usr/bin/" + other, listing)
            conffiles = run(["dpkg-deb", "--info", self.p.debs[name], "conffiles"]).stdout.split()
            self.assertEqual(sorted(conffiles), sorted(p for p in paths if p.startswith("/etc/")), name)
            # Stripped: no debug sections in the shipped programs.
            binary = os.path.join(self.p.root, "usr/bin", name)
            self.assertNotIn(".debug_info", run(["readelf", "-S", binary]).stdout, name)

    def test_depends_name_the_shared_libraries_and_adduser(self):
        for name, deb in self.p.debs.items():
            depends = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
            for package in ("adduser", "libc6", "libgrpc++1.51", "libprotobuf32"):
                self.assertIn(package, depends, name)
        self.assertIn("liblua5.4-0", run(["dpkg-deb", "-f", self.p.debs["mailhook-policyd"], "Depends"]).stdout)

    def test_maintainer_scripts_create_the_user_and_the_writable_directories(self):
        for name, deb in self.p.debs.items():
            control = os.path.join(self.p.tmp, "control-" + name)
            self.assertEqual(run(["dpkg-deb", "-e", deb, control]).returncode, 0)
            for script in ("postinst", "prerm", "postrm"):
                path = os.path.join(control, script)
                self.assertTrue(os.access(path, os.X_OK), script)
                self.assertEqual(run(["sh", "-n", path]).returncode, 0, script)
                with open(path) as f:
                    text = f.read()
                self.assertNotIn("@", text.replace("$@", ""), script + ": a template variable left")
                self.assertIn(name + ".service", text, script)
            with open(os.path.join(control, "postinst")) as f:
                postinst = f.read()
            self.assertIn("adduser --system", postinst)
            self.assertIn(WRITABLE[name], postinst)


class UnitsTest(unittest.TestCase):

    def setUp(self):
        self.p = Packages.get(self)
        self.units = {name: os.path.join(self.p.root, UNIT_DIR, name + ".service") for name in self.p.debs}

    def test_units_are_sandboxed_notify_services(self):
        for name, path in self.units.items():
            s = unit_settings(path)
            for key, value in SANDBOX.items():
                self.assertEqual(s.get(key), [value], "%s %s" % (name, key))
            self.assertEqual(s["ReadWritePaths"], [WRITABLE[name]], name)
            self.assertGreaterEqual(int(s["LimitNOFILE"][0]), 65536, name)
            self.assertNotIn("StandardOutput", s, name)      # journald, no log files
            self.assertEqual(s["WantedBy"], ["multi-user.target"], name)
        self.assertEqual(unit_settings(self.units["mailhook-policyd"])["CapabilityBoundingSet"], [""])
        self.assertEqual(unit_settings(self.units["mailhook-front"])["CapabilityBoundingSet"], ["CAP_NET_BIND_SERVICE"])

    def test_systemd_analyze_verify_accepts_the_units(self):
        self.assertTrue(shutil.which("systemd-analyze"), "systemd-analyze missing (package systemd)")
        # The installed units with one change: ExecStart's program is the
        # one in the scratch root (verify checks it is executable); the
        # rest (/bin/kill, the targets) is this machine's.
        copies = os.path.join(self.p.tmp, "verify")
        os.makedirs(copies, exist_ok=True)
        paths = []
        for name, path in self.units.items():
            with open(path) as f:
                text = f.read()
            self.assertIn("ExecStart=/usr/bin/%s " % name, text)
            paths.append(os.path.join(copies, name + ".service"))
            with open(paths[-1], "w") as f:
                f.write(text.replace("ExecStart=/usr/bin/", "ExecStart=%s/usr/bin/" % self.p.root))
        r = run(["systemd-analyze", "verify", "--man=no"] + paths)
        print("systemd-analyze verify: rc=%d, output: %r" % (r.returncode, (r.stdout + r.stderr).strip()),
              file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).strip(), "")
        # The exposure score systemd computes from the sandboxing settings.
        for path in paths:
            r = run(["systemd-analyze", "security", "--offline=yes", path])
            m = re.search(r"Overall exposure level for \S+: (\S+ \S+)", r.stdout)
            self.assertTrue(m, r.stdout + r.stderr)
            print("systemd-analyze security %s: %s" % (os.path.basename(path), m.group(1)), file=sys.stderr)
            # "OK" or better (systemd's scale: 0 safest ... 10 unsafe).
            self.assertLess(float(m.group(1).split()[0]), 5.0, r.stdout)


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def _drain(self):
        while select.select([self.sock], [], [], 0)[0]:
            self.messages.append(self.sock.recv(4096).decode())

    def wait(self, state, after=0, timeout=20):
        """Waits for a message (index >= after) holding the line `state`; returns its index."""
        found = []

        def seen():
            self._drain()
            found[:] = [i for i, m in enumerate(self.messages) if i >= after and state in m.split("\n")]
            return found
        wait_for(seen, timeout=timeout, what="%s on %s (got %r)" % (state, self.path, self.messages))
        return found[0]

    def close(self):
        self.sock.close()


class StartedUnitsTest(unittest.TestCase):
    """The units' ExecStart lines, run from the scratch root."""

    def setUp(self):
        self.p = Packages.get(self)
        self.dir = tempfile.mkdtemp(prefix="mailhook-units-")
        self.processes = []
        self.sockets = []

    def tearDown(self):
        for proc, log in reversed(self.processes):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            log.close()
        for s in self.sockets:
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def in_root(self, path):
        return os.path.join(self.p.root, path.lstrip("/"))

    def configure(self, conf, addresses):
        """The packaged config, in place in the scratch root: addresses to
        loopback ports, absolute paths into the root. Returns the values."""
        with open(self.in_root(conf), "rb") as f:
            values = tomllib.load(f)
        for key, value in values.items():
            if key in addresses:
                values[key] = addresses[key]
            elif isinstance(value, str) and value.startswith("/"):
                values[key] = self.in_root(value)
            elif isinstance(value, list):
                values[key] = [self.in_root(v) if v.startswith("/") else v for v in value]
        missing = set(addresses) - set(values)
        self.assertFalse(missing, "%s sets no %s" % (conf, missing))
        write_toml(self.in_root(conf), values)
        return values

    def start_unit(self, name):
        """ExecStart of the installed unit, its absolute paths in the root."""
        (line,) = unit_settings(os.path.join(self.p.root, UNIT_DIR, name + ".service"))["ExecStart"]
        args = [self.in_root(a) if a.startswith("/") else a for a in shlex.split(line)]
        self.assertTrue(os.access(args[0], os.X_OK), args[0])
        notify = NotifySocket(os.path.join(self.dir, name + ".notify"))
        self.sockets.append(notify)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILHOOK_")}
        env["NOTIFY_SOCKET"] = notify.path
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.processes.append((proc, log))
        return proc, notify

    def output(self, name):
        with open(os.path.join(self.dir, name + ".log"), "rb") as f:
            return f.read().decode(errors="replace")

    def test_abstract_notify_socket_and_a_bad_one_never_stop_the_daemon(self):
        # "@name": Linux's abstract namespace, as systemd may hand it out.
        name = "mailhook-test-notify-%d" % os.getpid()
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(abstract.close)
        abstract.bind("\0" + name)
        policyd = self.in_root("/usr/bin/mailhook-policyd")
        for notify_socket in ("@" + name, "relative/path", os.path.join(self.dir, "nobody-listens")):
            env = dict(os.environ, NOTIFY_SOCKET=notify_socket)
            log = open(os.path.join(self.dir, "abstract.log"), "wb")
            port = free_port()
            proc = subprocess.Popen([policyd, "--listen", "127.0.0.1:%d" % port, "--script",
                                     self.in_root("/etc/mailhook/policy.lua"), "--log-stderr"],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
            self.processes.append((proc, log))
            if notify_socket.startswith("@"):
                wait_for(lambda: select.select([abstract], [], [], 0)[0], timeout=20, what="READY=1 on @" + name)
                self.assertIn("READY=1", abstract.recv(4096).decode().split("\n"))
            else:
                wait_for(lambda: "listening on" in self.output("abstract") or proc.poll() is not None,
                         timeout=20, what="policyd listening")
                self.assertIsNone(proc.poll(), self.output("abstract"))
                if notify_socket == "relative/path":
                    self.assertIn("NOTIFY_SOCKET is not a socket path or @name", self.output("abstract"))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=45), 0, self.output("abstract"))

    def test_exec_start_lines_serve_mail_and_speak_sd_notify(self):
        grpc, smtp = free_port(), free_port()
        policyd_conf = self.configure("/etc/mailhook/policyd.conf", {
            "listen": "127.0.0.1:%d" % grpc, "milter": "inet:%d@127.0.0.1" % free_port(),
            "metrics": "127.0.0.1:%d" % free_port()})
        self.assertEqual(policyd_conf["script"], [self.in_root("/etc/mailhook/policy.lua")])
        front_conf = self.configure("/etc/mailhook/front.conf", {
            "listen": "127.0.0.1:%d" % smtp, "policyd": "127.0.0.1:%d" % grpc,
            "metrics": "127.0.0.1:%d" % free_port()})
        # What the postinst creates (owned by mailhook there).
        for d in WRITABLE.values():
            os.makedirs(self.in_root(d), exist_ok=True)
        self.assertEqual(front_conf["queue-dir"], self.in_root(WRITABLE["mailhook-front"]))

        policyd, policyd_notify = self.start_unit("mailhook-policyd")
        policyd_notify.wait("READY=1")
        front, front_notify = self.start_unit("mailhook-front")
        front_notify.wait("READY=1")
        for name in ("mailhook-policyd", "mailhook-front"):
            self.assertNotIn("deprecated", self.output(name), name + ": the packaged config uses an old name")

        c = SmtpClient(smtp)
        try:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send("Subject: deb\r\n\r\nthrough the packaged units\r\n.\r\n")
            self.assertEqual(c.read_reply()[0], 250)
            c.cmd("QUIT")
        finally:
            c.close()
        spooled = glob.glob(os.path.join(front_conf["queue-dir"], "*.eml"))
        self.assertEqual(len(spooled), 1, os.listdir(front_conf["queue-dir"]))
        with open(spooled[0], "rb") as f:
            self.assertIn(b"through the packaged units", f.read())

        # systemctl reload = ExecReload = SIGHUP: RELOADING=1, then READY=1.
        for proc, notify, name in ((policyd, policyd_notify, "mailhook-policyd"),
                                   (front, front_notify, "mailhook-front")):
            before = len(notify.messages)
            proc.send_signal(signal.SIGHUP)
            reloading = notify.wait("RELOADING=1", after=before)
            self.assertRegex(notify.messages[reloading], r"(?m)^MONOTONIC_USEC=\d+$")
            notify.wait("READY=1", after=reloading + 1)
            self.assertIsNone(proc.poll(), name + " died on SIGHUP: " + self.output(name))

        # systemctl stop = SIGTERM: STOPPING=1 and a clean exit, front first.
        for proc, notify, name in ((front, front_notify, "mailhook-front"),
                                   (policyd, policyd_notify, "mailhook-policyd")):
            before = len(notify.messages)
            proc.send_signal(signal.SIGTERM)
            notify.wait("STOPPING=1", after=before)
            self.assertEqual(proc.wait(timeout=45), 0, self.output(name))


if __name__ == "__main__":
    unittest.main()
