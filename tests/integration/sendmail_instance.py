"""A private, throw-away Sendmail for mailhook's integration tests.

    sm = PrivateSendmail(workdir, smtp_port, relay_port, milter_port)
    sm.start()         # sendmail.cf built with m4, "sendmail -bD", waits for the 220 banner
    sm.log()           # what sendmail printed (its syslog lines go to syslog, if any)
    sm.stop()          # SIGTERM to the daemon by PID, then its session's children by PID

It must never touch the system's Sendmail or Postfix: Debian 12's
sendmail-bin conflicts with postfix (installing it removes Postfix, which
the other milter tests need), so the packages are only downloaded
(`apt-get download`) and unpacked with `dpkg-deb -x` into a private root,
build/sendmail-root by default (MAILHOOK_SENDMAIL_ROOT), reused afterwards.

The unpacked binary's compiled-in paths (/etc/mail/sendmail.cf,
/var/run/sendmail/mta/sendmail.pid, /var/spool/mqueue, /etc/mail/aliases,
/etc/mail/statistics, /etc/mail/helpfile, /etc/hosts, /etc/nsswitch.conf)
are all replaced: -C names the private cf, and the .mc sets every other
path under WORKDIR/sendmail/. Sendmail sleeps 60 s and retries when it
cannot qualify its own host name, which it looks up through the system
resolver before reading the cf: it runs in its own UTS namespace
(`unshare --uts`) named mta.mailhook.test, and the private hosts file
(service switch "hosts files", no DNS) answers that name afterwards.

Layout under WORKDIR/sendmail/: sendmail.mc, sendmail.cf, hosts,
service.switch, aliases, helpfile, statistics, queue/, sendmail.pid,
sendmail.log (its stdout/stderr).
"""

import fcntl
import glob
import os
import signal
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PACKAGES = ("sendmail-bin", "sendmail-cf", "sendmail-base")
FQDN = "mta.mailhook.test"


def default_root():
    return os.environ.get("MAILHOOK_SENDMAIL_ROOT", os.path.join(REPO, "build", "sendmail-root"))


def unpacked_root(root=None):
    """The private root holding usr/libexec/sendmail/sendmail and the cf tree,
    downloaded and unpacked on first use (apt-get update once if the
    package lists are missing, as on a fresh machine)."""
    root = root or default_root()
    os.makedirs(os.path.dirname(root), exist_ok=True)
    # One unpacker at a time (ctest -j may start several suites at once).
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _unpack(root)


def _unpack(root):
    binary = os.path.join(root, "usr", "libexec", "sendmail", "sendmail")
    if os.path.exists(binary) and os.path.exists(os.path.join(root, "usr", "share", "sendmail", "cf", "m4", "cf.m4")):
        return root
    debs = root + ".debs"
    os.makedirs(debs, exist_ok=True)
    download = ["apt-get", "download"] + list(PACKAGES)
    r = subprocess.run(download, cwd=debs, capture_output=True, timeout=300)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
        r = subprocess.run(download, cwd=debs, capture_output=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("apt-get download %s failed:\n%s" % (" ".join(PACKAGES), r.stderr.decode(errors="replace")))
    staging = root + ".tmp"
    subprocess.run(["rm", "-rf", staging], check=True)
    os.makedirs(staging)
    for package in PACKAGES:
        found = sorted(glob.glob(os.path.join(debs, package + "_*.deb")))
        if not found:
            raise RuntimeError("no %s .deb in %s" % (package, debs))
        subprocess.run(["dpkg-deb", "-x", found[-1], staging], check=True, timeout=120)
    subprocess.run(["rm", "-rf", root], check=True)
    os.rename(staging, root)
    return root


def milter_definition(port):
    """deploy/sendmail/mailhook.mc, the snippet admins are told to use, with
    the milter's port changed: the test runs what the docs ship."""
    with open(os.path.join(REPO, "deploy", "sendmail", "mailhook.mc")) as f:
        text = f.read()
    if "inet:8890@127.0.0.1" not in text:
        raise RuntimeError("deploy/sendmail/mailhook.mc no longer names inet:8890@127.0.0.1")
    return text.replace("inet:8890@127.0.0.1", "inet:%d@127.0.0.1" % port)


class PrivateSendmail:
    def __init__(self, workdir, smtp_port, relay_port, milter_port, root=None):
        self.root = unpacked_root(root)
        self.dir = os.path.join(workdir, "sendmail")
        self.smtp_port = smtp_port
        self.relay_port = relay_port
        self.milter_port = milter_port
        self.proc = None
        self.log_file = None

    def path(self, name):
        return os.path.join(self.dir, name)

    def binary(self):
        return os.path.join(self.root, "usr", "libexec", "sendmail", "sendmail")

    def mc(self):
        cf = os.path.join(self.root, "usr", "share", "sendmail", "cf")
        p = self.path
        return "".join([
            "divert(-1)\ndivert(0)dnl\n",
            "include(`%s/m4/cf.m4')dnl\n" % cf,
            "VERSIONID(`mailhook private test instance')dnl\n",
            "OSTYPE(`linux')dnl\n",
            # Every compiled-in or OSTYPE path replaced by a private one.
            "define(`confSERVICE_SWITCH_FILE', `%s')dnl\n" % p("service.switch"),
            "define(`confHOSTS_FILE', `%s')dnl\n" % p("hosts"),
            "define(`confPID_FILE', `%s')dnl\n" % p("sendmail.pid"),
            "define(`QUEUE_DIR', `%s')dnl\n" % p("queue"),
            "define(`STATUS_FILE', `%s')dnl\n" % p("statistics"),
            "define(`ALIAS_FILE', `%s')dnl\n" % p("aliases"),
            "define(`HELP_FILE', `%s')dnl\n" % p("helpfile"),
            "define(`confDOMAIN_NAME', `%s')dnl\n" % FQDN,
            "define(`confDONT_PROBE_INTERFACES', `True')dnl\n",
            "define(`confDONT_INIT_GROUPS', `True')dnl\n",
            "define(`confTO_IDENT', `0s')dnl\n",
            "define(`confDELIVERY_MODE', `background')dnl\n",
            "define(`confPRIVACY_FLAGS', `noetrn,noexpn,novrfy')dnl\n",
            # The relay target: everything to the test's sink, no MX lookup.
            "define(`SMART_HOST', `esmtp:[127.0.0.1]')dnl\n",
            "define(`ESMTP_MAILER_ARGS', `TCP $h %d')dnl\n" % self.relay_port,
            "define(`SMTP_MAILER_ARGS', `TCP $h %d')dnl\n" % self.relay_port,
            "define(`RELAY_MAILER_ARGS', `TCP $h %d')dnl\n" % self.relay_port,
            "FEATURE(`no_default_msa')dnl\n",
            "FEATURE(`promiscuous_relay')dnl\n",
            "FEATURE(`accept_unresolvable_domains')dnl\n",
            "FEATURE(`accept_unqualified_senders')dnl\n",
            "DAEMON_OPTIONS(`Family=inet, Name=MTA-test, Port=%d, Addr=127.0.0.1')dnl\n" % self.smtp_port,
            milter_definition(self.milter_port),
            "MAILER(`local')dnl\nMAILER(`smtp')dnl\n",
        ])

    def write_config(self):
        os.makedirs(self.path("queue"), mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o755)
        host = socket.gethostname()
        with open(self.path("hosts"), "w") as f:
            f.write("127.0.0.1 %s %s localhost\n" % (FQDN, host))
        with open(self.path("service.switch"), "w") as f:
            f.write("hosts files\naliases files\n")
        for name in ("aliases", "helpfile", "statistics"):
            open(self.path(name), "a").close()
        with open(self.path("sendmail.mc"), "w") as f:
            f.write(self.mc())
        with open(self.path("sendmail.cf"), "w") as cf:
            r = subprocess.run(["m4", self.path("sendmail.mc")], stdout=cf, stderr=subprocess.PIPE,
                               cwd=self.dir, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("m4 sendmail.mc failed:\n" + r.stderr.decode(errors="replace"))
        # Sendmail refuses a cf or queue reachable through group/world-writable paths.
        for name in ("sendmail.cf", "hosts", "service.switch", "aliases", "helpfile", "statistics"):
            os.chmod(self.path(name), 0o644)

    def start(self, timeout=60):
        os.makedirs(self.dir, exist_ok=True)
        self.write_config()
        self.log_file = open(self.path("sendmail.log"), "wb")
        # -bD: the daemon in the foreground; no -q: no queue runner, each
        # accepted message is delivered at once by a background child.
        # Sendmail qualifies its host name through the system resolver before
        # it reads the cf (and sleeps 60 s when the name has no dot), so it
        # runs in its own UTS namespace whose host name is an FQDN; unshare
        # and sh exec, so self.proc.pid is sendmail's own PID.
        self.proc = subprocess.Popen(["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', FQDN,
                                      self.binary(), "-bD", "-C", self.path("sendmail.cf"),
                                      "-O", "QueueDirectory=" + self.path("queue"),
                                      "-O", "PidFile=" + self.path("sendmail.pid"),
                                      "-O", "LogLevel=14"],
                                     stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sendmail exited with %s:\n%s" % (self.proc.returncode, self.log()))
            if self._banner():
                return
            time.sleep(0.05)
        raise RuntimeError("no 220 banner from sendmail on port %d:\n%s" % (self.smtp_port, self.log()))

    def _banner(self):
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=5) as s:
                s.settimeout(10)
                greeting = s.recv(512)
                s.sendall(b"QUIT\r\n")
                return greeting.startswith(b"220")
        except OSError:
            return False

    def log(self):
        if self.log_file and not self.log_file.closed:
            self.log_file.flush()
        try:
            with open(self.path("sendmail.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def queue_files(self):
        return sorted(os.listdir(self.path("queue")))

    def _session_pids(self, sid):
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # field 6 of stat: session id
                pids.append(int(entry))
        return pids

    def stop(self, timeout=30):
        if self.proc is None:
            return
        sid = self.proc.pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # The daemon's children (SMTP sessions, deliveries) share its session.
        deadline = time.monotonic() + timeout
        while self._session_pids(sid) and time.monotonic() < deadline:
            for pid in self._session_pids(sid):
                try:
                    os.kill(pid, signal.SIGTERM if time.monotonic() < deadline - timeout / 2 else signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        self.log_file.close()
        self.proc = None
