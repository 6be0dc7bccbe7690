"""A private, throw-away Postfix instance for mailhook's integration tests.

    pf = PrivatePostfix(workdir, smtp_port, relay_port, milter=None, extra_main_cf=None)
    pf.start()         # config + queue tree, "postfix start", waits for the 220 banner
    pf.log()           # the instance's log (maillog_file, not syslog)
    pf.queue_empty()   # no files in active/incoming/deferred/maildrop
    pf.stop()          # "postfix stop", then waits for master (and its children) by PID

The instance listens for SMTP on 127.0.0.1:smtp_port, optionally calls a
milter through smtpd_milters (and non_smtpd_milters), and relays every
accepted message, whatever the recipient domain, to [127.0.0.1]:relay_port.
Nothing is delivered locally and no DNS (or NIS) lookup is ever made.

Layout, all under WORKDIR/postfix/:
    conf/    config_directory: main.cf, and master.cf copied from
             /etc/postfix/master.cf, filtered to the services needed, with
             the "smtp inet" line replaced by "127.0.0.1:PORT inet ... smtpd"
             and chroot switched off everywhere (no files to copy into a jail)
    queue/   queue_directory; master.pid is in queue/pid/
    data/    data_directory
    maillog  maillog_file, written by the postlogd service (Postfix >= 3.4),
             so the log is readable without syslog (maillog_file_prefixes
             is set to WORKDIR/postfix so Postfix accepts the path)

How the instance is started (the alternate_config_directories question)
-----------------------------------------------------------------------
Plainly with "postfix -c CONF start" (and "postfix -c CONF stop"), as root.
/etc/postfix is only read (master.cf template, postfix-files), never
written; the test machine's default instance has no main.cf at all.
alternate_config_directories (listed in the *default* instance's main.cf)
is NOT required for this: Postfix 3.7 enforces it only in its set-gid
commands run by unprivileged users (postdrop, postqueue, hence sendmail and
"postfix flush"), while postfix(1) run by root just exports
MAIL_CONFIG=CONF to postfix-script and the daemons. Verified on Debian 12 /
Postfix 3.7.11. Consequence: inject mail over SMTP, never via sendmail(1).
No need for MAIL_CONFIG tricks or running master by hand: "postfix start"
runs "master -w", which daemonizes and returns only once master has
initialized; the PID is then read from queue/pid/master.pid.

Two things make start() take ~0.2-0.3 s instead of ~3.5 s:
  * The queue tree (owners postfix / postdrop, modes as Postfix wants) is
    created here from the directory entries of Postfix's own
    /etc/postfix/postfix-files, and queue/quick-start tells postfix-script to
    skip its integrity check once. "postfix -c CONF check" creates the same
    tree (post-install create-missing) but spends ~2 s in postconf calls;
    check() runs it on demand. "postfix set-permissions" is avoided: it also
    resets permissions of the system-wide Postfix programs.
  * main.cf/master.cf are backdated: Postfix re-reads a config file every
    0.3 s until its mtime is more than a second old, which otherwise costs
    each postfix command ~1-2 s right after the file was written.

Postfix's commands print diagnostics only to a terminal; otherwise they go
to the log, so errors raised here include log().

Every wait is a poll with a deadline; stop() ends master, then makes sure no
process of master's session (the instance's daemons) survives, by PID.
"""

import os
import grp
import pwd
import signal
import socket
import subprocess
import time

POSTFIX = os.environ.get("MAILHOOK_POSTFIX", "postfix")
SYSTEM_MASTER_CF = "/etc/postfix/master.cf"

# Services kept from the system master.cf, (name, type) -> fallback line
# used when the system file lacks the entry. Local/virtual/lmtp/pipe
# delivery, postscreen, submission etc. are left out: nothing is delivered
# locally. Every kept entry gets chroot = n.
_SERVICES = [
    (("pickup", "unix"), "pickup    unix  n       -       n       60      1       pickup"),
    (("cleanup", "unix"), "cleanup   unix  n       -       n       -       0       cleanup"),
    (("qmgr", "unix"), "qmgr      unix  n       -       n       300     1       qmgr"),
    (("tlsmgr", "unix"), "tlsmgr    unix  -       -       n       1000?   1       tlsmgr"),
    (("rewrite", "unix"), "rewrite   unix  -       -       n       -       -       trivial-rewrite"),
    (("bounce", "unix"), "bounce    unix  -       -       n       -       0       bounce"),
    (("defer", "unix"), "defer     unix  -       -       n       -       0       bounce"),
    (("trace", "unix"), "trace     unix  -       -       n       -       0       bounce"),
    (("verify", "unix"), "verify    unix  -       -       n       -       1       verify"),
    (("flush", "unix"), "flush     unix  n       -       n       1000?   0       flush"),
    (("proxymap", "unix"), "proxymap  unix  -       -       n       -       -       proxymap"),
    (("proxywrite", "unix"), "proxywrite unix -       -       n       -       1       proxymap"),
    (("smtp", "unix"), "smtp      unix  -       -       n       -       -       smtp"),
    (("relay", "unix"), "relay     unix  -       -       n       -       -       smtp"),
    (("showq", "unix"), "showq     unix  n       -       n       -       -       showq"),
    (("error", "unix"), "error     unix  -       -       n       -       -       error"),
    (("retry", "unix"), "retry     unix  -       -       n       -       -       error"),
    (("discard", "unix"), "discard   unix  -       -       n       -       -       discard"),
    (("anvil", "unix"), "anvil     unix  -       -       n       -       1       anvil"),
    (("scache", "unix"), "scache    unix  -       -       n       -       1       scache"),
    (("postlog", "unix-dgram"), "postlog   unix-dgram n  -       n       -       1       postlogd"),
]

QUEUE_DIRS = ("active", "incoming", "deferred", "maildrop")

POSTFIX_FILES = "/etc/postfix/postfix-files"  # in meta_directory; read only
# The directory entries of postfix-files (Postfix 3.7), used if it is absent:
# (path under queue_directory or "" for itself / "@data", owner, group, mode)
_TREE_FALLBACK = [
    ("@data", "$mail_owner", "-", 0o700),
    ("", "root", "-", 0o755),
] + [(d, "$mail_owner", "-", 0o700) for d in (
    "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
    "incoming", "private", "saved", "trace")] + [
    ("maildrop", "$mail_owner", "$setgid_group", 0o730),
    ("public", "$mail_owner", "$setgid_group", 0o710),
    ("pid", "root", "-", 0o755),
]


class PostfixError(RuntimeError):
    pass


class PrivatePostfix:
    """One private Postfix instance under workdir; see the module docstring."""

    def __init__(self, workdir, smtp_port, relay_port, milter=None, extra_main_cf=None):
        self.workdir = os.path.abspath(workdir)
        self.smtp_port = int(smtp_port)
        self.relay_port = int(relay_port)
        self.milter = milter
        self.extra_main_cf = dict(extra_main_cf or {})
        self.root = os.path.join(self.workdir, "postfix")
        self.config_dir = os.path.join(self.root, "conf")
        self.queue_dir = os.path.join(self.root, "queue")
        self.data_dir = os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "maillog")
        self.pid_file = os.path.join(self.queue_dir, "pid", "master.pid")
        self.master_pid = None
        self.start_seconds = None

    # ----------------------------------------------------------- config

    def main_cf(self):
        """The main.cf settings, defaults overridden by extra_main_cf (a
        value of None drops the setting, leaving Postfix's default)."""
        cf = {
            "compatibility_level": "3.6",
            "config_directory": self.config_dir,
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.test",
            "mydomain": "test",
            "myorigin": "$myhostname",
            # Logging to a file through postlogd, not syslog.
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.root,
            # Loopback only, IPv4 only.
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            # Relay everything to the sink; nothing is local.
            "mydestination": "",
            "relay_domains": "",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "[127.0.0.1]:%d" % self.relay_port,
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "local_transport": "error:5.1.1 local delivery disabled",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            # No DNS (or NIS) anywhere.
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "smtp_connect_timeout": "5s",
            # No TLS.
            "smtpd_tls_security_level": "",
            "smtp_tls_security_level": "",
            # Nothing throttles the benchmark (2,000 messages, 20 sessions).
            "default_process_limit": "50",
            "in_flow_delay": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "smtpd_client_recipient_rate_limit": "0",
            "smtpd_error_sleep_time": "0",
            # Retry deferred mail quickly (e.g. after the sink comes back).
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "10s",
            # Milter protocol settings (macros left at Postfix defaults).
            "milter_protocol": "6",
            "milter_default_action": "tempfail",
            "milter_connect_timeout": "10s",
            "milter_command_timeout": "10s",
            "milter_content_timeout": "30s",
        }
        if self.milter:
            cf["smtpd_milters"] = self.milter
            cf["non_smtpd_milters"] = self.milter
        for key, value in self.extra_main_cf.items():
            if value is None:
                cf.pop(key, None)
            else:
                cf[key] = str(value)
        return cf

    def master_cf(self):
        """master.cf text: the system file filtered to _SERVICES, chroot off,
        smtpd on 127.0.0.1:smtp_port."""
        try:
            with open(SYSTEM_MASTER_CF) as f:
                text = f.read()
        except OSError:
            text = ""
        entries = {}
        current = None
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace():
                if current is not None:
                    entries[current].append(line)
                continue
            fields = line.split()
            key = (fields[0], fields[1]) if len(fields) >= 8 else None
            if key not in dict(_SERVICES) or key in entries:
                current = None
                continue
            fields[4] = "n"  # chroot
            entries[key] = [" ".join(fields)]
            current = key
        out = [
            "# Private test instance, generated by postfix_instance.py",
            "127.0.0.1:%d inet n - n - - smtpd" % self.smtp_port,
        ]
        for key, fallback in _SERVICES:
            out.extend(entries.get(key) or [fallback])
        return "\n".join(out) + "\n"

    def write_config(self):
        for d in (self.root, self.config_dir, self.queue_dir, self.data_dir):
            os.makedirs(d, exist_ok=True)
        # The daemons run as mail_owner and open e.g. data/master.lock by
        # absolute path: let them reach the instance (the workdir itself may
        # be a 0700 mkdtemp directory); its ancestors must already allow it.
        for d in (self.workdir, self.root):
            os.chmod(d, os.stat(d).st_mode | 0o011)
        parent = os.path.dirname(self.workdir)
        while True:
            if not os.stat(parent).st_mode & 0o001:
                raise PostfixError("%s is not searchable by others; Postfix's daemons "
                                   "(mail_owner) cannot reach %s" % (parent, self.root))
            if parent == os.path.dirname(parent):
                break
            parent = os.path.dirname(parent)
        self.make_tree()
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            for key, value in self.main_cf().items():
                f.write("%s = %s\n" % (key, value))
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(self.master_cf())
        # Postfix re-reads a table file until its mtime is more than a
        # second old (dict_load_file: guard against a file being edited),
        # which costs every command ~2 s right after writing main.cf.
        # Backdating the files skips that wait.
        old = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(os.path.join(self.config_dir, name), (old, old))

    def tree_spec(self):
        """[(path, owner, group, mode)] for the queue and data directories,
        from the $queue_directory/$data_directory directory entries of
        Postfix's own postfix-files (what "postfix check" would create)."""
        spec = []
        try:
            with open(POSTFIX_FILES) as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            fields = line.split(":")
            if len(fields) < 5 or fields[1] != "d":
                continue
            for var, base in (("$queue_directory", self.queue_dir),
                              ("$data_directory", self.data_dir)):
                if fields[0] == var or fields[0].startswith(var + "/"):
                    path = base + fields[0][len(var):]
                    spec.append((path, fields[2], fields[3], int(fields[4], 8)))
        if not any(p == os.path.join(self.queue_dir, "maildrop") for p, *_ in spec):
            spec = [(self.data_dir if d == "@data" else os.path.join(self.queue_dir, d).rstrip("/"),
                     o, g, m) for d, o, g, m in _TREE_FALLBACK]
        return spec

    def make_tree(self):
        """Create the queue and data directories with Postfix's owners and
        modes. "postfix -c CONF check" does the same (post-install
        create-missing) but takes ~2 s of postconf calls; this takes
        milliseconds, and start() then skips the check via quick-start."""
        cf = self.main_cf()
        names = {"$mail_owner": cf.get("mail_owner", "postfix"),
                 "$setgid_group": cf.get("setgid_group", "postdrop")}
        for path, owner, group, mode in self.tree_spec():
            os.makedirs(path, exist_ok=True)
            uid = pwd.getpwnam(names.get(owner, owner)).pw_uid
            gid = -1 if group == "-" else grp.getgrnam(names.get(group, group)).gr_gid
            os.chown(path, uid, gid)
            os.chmod(path, mode)

    def check(self):
        """Run "postfix -c CONF check" (slow, ~2 s); returns (rc, output+log).
        Not needed by start(); useful when a configuration does not start."""
        proc = self._postfix("check")
        return proc.returncode, proc.stdout.decode(errors="replace") + self.log()

    # ---------------------------------------------------------- control

    def _postfix(self, *args, timeout=30):
        return subprocess.run(
            [POSTFIX, "-c", self.config_dir] + list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout, check=False)

    def _fail(self, what, proc=None):
        out = proc.stdout.decode(errors="replace") if proc is not None else ""
        return PostfixError("%s\n--- command output ---\n%s--- instance log (%s) ---\n%s"
                            % (what, out, self.log_path, self.log()))

    def start(self, timeout=30.0):
        """Write the configuration, create the queue tree, start Postfix and
        return once 127.0.0.1:smtp_port answers 220 (else raise, with the log)."""
        if self.master_pid is not None and _alive(self.master_pid):
            raise PostfixError("instance already running (master pid %d)" % self.master_pid)
        t0 = time.monotonic()
        deadline = t0 + timeout
        self.write_config()
        # The tree was just made by make_tree(); skip postfix-script's slow
        # integrity check (post-install create-missing, postsuper) once.
        open(os.path.join(self.queue_dir, "quick-start"), "w").close()
        try:
            proc = self._postfix("start", timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pid = self._read_pid()
            self.master_pid = pid if pid is not None and _is_master(pid) else None
            self.stop()
            raise self._fail("postfix start did not return within %.0f s" % timeout)
        self.master_pid = self._read_pid()
        if self.master_pid is not None and not _is_master(self.master_pid):
            self.master_pid = None
        if proc.returncode != 0 or self.master_pid is None:
            self.stop()
            raise self._fail("postfix start failed (rc %d)" % proc.returncode, proc)
        while True:
            if _banner(self.smtp_port):
                self.start_seconds = time.monotonic() - t0
                return self
            if time.monotonic() >= deadline or not _alive(self.master_pid):
                break
            time.sleep(0.02)
        self.stop()
        raise self._fail("no 220 banner on 127.0.0.1:%d within %.0f s" % (self.smtp_port, timeout))

    def stop(self, timeout=15.0):
        """Stop the instance; returns when master and every process of its
        session are gone. Safe to call when not running."""
        pid = self.master_pid
        if pid is None:
            return
        if not _is_master(pid):  # already gone (or the PID was reused)
            self.master_pid = None
            return
        deadline = time.monotonic() + timeout
        try:
            self._postfix("stop", timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        if not _wait(lambda: not _alive(pid), deadline) and _is_master(pid):
            _kill(pid, signal.SIGKILL)
            _wait(lambda: not _alive(pid), time.monotonic() + 5)
        # master SIGTERMs its children when it exits; give them a moment,
        # then kill any straggler of the instance's session by PID.
        if not _wait(lambda: not _session_members(pid), time.monotonic() + 5):
            for child in _session_members(pid):
                _kill(child, signal.SIGKILL)
            _wait(lambda: not _session_members(pid), time.monotonic() + 5)
        if _alive(pid) or _session_members(pid):
            raise PostfixError("postfix instance (master pid %d) did not stop" % pid)
        self.master_pid = None

    # ------------------------------------------------------- inspection

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def queue_empty(self):
        for name in QUEUE_DIRS:
            for _dirpath, _dirs, files in os.walk(os.path.join(self.queue_dir, name)):
                if files:
                    return False
        return True

    def running(self):
        return self.master_pid is not None and _alive(self.master_pid)

    def _read_pid(self):
        try:
            with open(self.pid_file) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ------------------------------------------------------------- helpers

def _proc_stat(pid):
    """(state, session id) of pid from /proc, or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], int(rest[3])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid):
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie is gone


def _is_master(pid):
    """pid is a live Postfix master (guards against a stale or reused PID)."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip() == "master" and _alive(pid)
    except OSError:
        return False


def _session_members(sid):
    """Live processes in session sid (master is a session leader)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None and st[1] == sid and st[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait(condition, deadline):
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _banner(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.settimeout(2.0)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
            ok = data.startswith(b"220")
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return ok
    except OSError:
        return False
