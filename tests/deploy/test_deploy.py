"""The deployment files of deploy/, checked without Docker or a cluster.

1. deploy/docker/scripts run natively: build.sh --install-only installs the
   build in MAILHOOK_BUILD_DIR into a temp prefix; policyd and the front
   start through start-policyd.sh / start-front.sh from environment
   variables on loopback; the healthcheck scripts (mailhook-probe) pass,
   a message is spooled, and the policyd healthcheck fails once policyd
   is stopped.
2. compose.yaml is validated offline by `docker-compose config -q` (Debian's
   docker-compose 1.29 needs no engine for it) and structurally.
3. deploy/kubernetes: what `kubectl kustomize` renders (what `kubectl
   apply -k` applies; client-side, no cluster) is validated against the
   Kubernetes OpenAPI schema offline (tests/deploy/k8s-validate: npm
   kubernetes-models + @kubernetes-models/validate, unknown fields
   included), then checked structurally: selectors matching pod labels,
   Service targetPorts naming container ports, HPA/PDB aimed at the
   Deployment, requests/limits/probes/securityContext on every container,
   the front's --policyd naming the policyd Service, the NetworkPolicy
   (only the front reaches gRPC, only labelled MTAs the milter port) and
   the mTLS wiring (env paths inside mounted Secrets, exec probes), no
   replicas beside an HPA, PDBs and anti-affinity, scrape annotations, and
   a policy edit renaming the generated ConfigMap (so policyd rolls out).
4. The package lists: ./dev run installs only packages.txt; the test-only
   ones are in packages-test.txt; the Dockerfiles install packages.txt in
   a layer before the sources.
5. The Postfix snippet's per-milter settings, and the documented way to
   add it beside an existing (rspamd) milter, through the real postconf.
The environment variables compose.yaml and the manifests set are also fed
to the real start scripts (addresses moved to loopback, TLS paths to
certificates from deploy/tls/make-link-certs.sh), so a flag name or value
the programs do not accept fails here, and the front must reach policyd
over mTLS and the policyd healthcheck must pass with the TLS it sets.

Every process started here is stopped by PID; every wait polls a condition
with a deadline. Nothing is skipped: a missing tool is a failure.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import Process, SmtpClient, free_port, wait_for  # noqa: E402

DOCKER = os.path.join(ROOT, "deploy", "docker")
MAKE_CERTS = os.path.join(ROOT, "deploy", "tls", "make-link-certs.sh")
CONTAINER_TLS_DIR = "/etc/mailhook-tls"  # where compose and the manifests mount the link's certificates
POLICYD_TLS_VARS = ("MAILHOOK_TLS_CERT", "MAILHOOK_TLS_KEY", "MAILHOOK_TLS_CLIENT_CA")
FRONT_TLS_VARS = ("MAILHOOK_POLICYD_TLS_CA", "MAILHOOK_POLICYD_TLS_CERT", "MAILHOOK_POLICYD_TLS_KEY")
SCRIPTS = os.path.join(DOCKER, "scripts")
KUBE = os.path.join(ROOT, "deploy", "kubernetes")
K8S_VALIDATE = os.path.join(HERE, "k8s-validate")
DEBIAN = os.path.join(ROOT, "deploy", "debian")
POSTFIX = os.path.join(ROOT, "deploy", "postfix")
BUILD_DIR = os.environ.get("MAILHOOK_BUILD_DIR", os.path.join(ROOT, "build"))
IMAGE_BIN = "/opt/mailhook/bin"          # where the images install the programs
PROGRAMS = ("mailhook-front", "mailhook-policyd", "mailhook-probe")
CONTAINER_SCRIPTS = ("start-front.sh", "start-policyd.sh", "healthcheck-front.sh", "healthcheck-policyd.sh")
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}   # in debian:12 itself (Essential)


def run(args, env=None, timeout=120):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def script_env(**variables):
    """A clean environment for the container scripts: ctest's own MAILHOOK_*
    variables (binary paths for the integration harness) must not leak in,
    since in a container MAILHOOK_POLICYD is policyd's address."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update({k: str(v) for k, v in variables.items()})
    return env


class ScriptProcess(Process):
    """harness.Process with an explicit environment."""

    def __init__(self, args, log_path, env):
        self.log_path = log_path
        self.args = args
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)


def script_variables(path):
    """The MAILHOOK_* names a start script reads."""
    with open(path) as f:
        return set(re.findall(r"\bMAILHOOK_[A-Z_]+", f.read()))


class Installed:
    """One `build.sh --install-only` into a temp prefix, shared by the tests."""

    prefix = None
    tmp = None

    @classmethod
    def get(cls, test):
        if cls.prefix is None:
            test.assertTrue(os.path.isfile(os.path.join(BUILD_DIR, "CMakeCache.txt")),
                            "MAILHOOK_BUILD_DIR=%s is not a configured build" % BUILD_DIR)
            cls.tmp = tempfile.mkdtemp(prefix="mailhook-deploy-")
            prefix = os.path.join(cls.tmp, "prefix")
            r = run([os.path.join(SCRIPTS, "build.sh"), "--install-only", prefix, BUILD_DIR], env=script_env())
            test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            cls.prefix = prefix
        return cls.prefix


def tearDownModule():
    if Installed.tmp:
        shutil.rmtree(Installed.tmp, ignore_errors=True)


class StartedScripts(unittest.TestCase):
    """Runs the container scripts from an installed prefix on loopback."""

    def setUp(self):
        self.prefix = Installed.get(self)
        self.bin = os.path.join(self.prefix, "bin")
        self.dir = tempfile.mkdtemp(prefix="mailhook-deploy-run-")
        self.processes = []

    def tearDown(self):
        # Fronts first: policyd's drain waits for their open streams.
        for p in sorted(self.processes, key=lambda p: "front" not in p.args[0]):
            p.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, script, env, args=()):
        p = ScriptProcess([os.path.join(self.bin, script)] + list(args),
                          os.path.join(self.dir, "%s-%d.log" % (script, len(self.processes))), env)
        self.processes.append(p)
        wait_for(lambda: "listening on" in p.output() or not p.alive(), what=script + " listening")
        self.assertTrue(p.alive(), p.output())
        # The scripts pass today's flag names, not deprecated aliases.
        self.assertNotIn("deprecated", p.output())
        return p

    def healthcheck(self, script, **variables):
        return run([os.path.join(self.bin, script)], env=script_env(**variables), timeout=30)

    def policyd_env(self, port, **extra):
        return dict(MAILHOOK_LISTEN="127.0.0.1:%d" % port, MAILHOOK_WORKERS=1, MAILHOOK_PTR_LOOKUP="no",
                    MAILHOOK_SCRIPTS=os.path.join(self.prefix, "share/mailhook/lua/policy.lua"),
                    MAILHOOK_SPOOL_DIR=os.path.join(self.dir, "tmp"), **extra)

    def front_env(self, port, policyd_port, **extra):
        return dict(MAILHOOK_LISTEN="127.0.0.1:%d" % port, MAILHOOK_POLICYD="127.0.0.1:%d" % policyd_port,
                    MAILHOOK_SPOOL=os.path.join(self.dir, "spool"), MAILHOOK_HOSTNAME="mx.test",
                    MAILHOOK_THREADS=1, **extra)


class NativeScriptsTest(StartedScripts):

    def test_install_puts_programs_scripts_and_lua_in_the_prefix(self):
        for name in PROGRAMS + CONTAINER_SCRIPTS:
            self.assertTrue(os.access(os.path.join(self.bin, name), os.X_OK), name)
        lua = os.path.join(self.prefix, "share/mailhook/lua")
        self.assertTrue(os.path.isfile(os.path.join(lua, "policy.lua")))
        self.assertTrue(glob.glob(os.path.join(lua, "examples", "*.lua")))

    def test_install_only_refuses_a_directory_that_is_not_a_build(self):
        r = run([os.path.join(SCRIPTS, "build.sh"), "--install-only", os.path.join(self.dir, "p"), self.dir],
                env=script_env())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not a configured build directory", r.stderr)

    def test_runtime_packages_cover_every_library_the_programs_link(self):
        with open(os.path.join(DOCKER, "runtime-packages.txt")) as f:
            listed = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        for program in PROGRAMS:
            binary = os.path.join(self.bin, program)
            out = run(["ldd", binary]).stdout
            self.assertNotIn("not found", out, program)
            resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", out, re.M))
            # Only the libraries the program itself names (DT_NEEDED): their
            # own dependencies come with their packages.
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", run(["readelf", "-d", binary]).stdout)
            self.assertTrue(needed, program)
            for path in (resolved[n] for n in needed):
                package = self.package_of(path)
                self.assertIn(package, listed | BASE_PACKAGES, "%s of %s (package %s)" % (path, program, package))

    def package_of(self, path):
        # Debian 12 is merged-/usr: dpkg knows a library under one of its two paths.
        candidates = [path, os.path.realpath(path)]
        candidates += [c[4:] if c.startswith("/usr/") else "/usr" + c for c in list(candidates)]
        for c in candidates:
            r = run(["dpkg", "-S", c])
            if r.returncode == 0:
                return r.stdout.split(":")[0]
        self.fail("no package owns " + path)

    def test_probe_has_help_and_rejects_bad_usage(self):
        probe = os.environ.get("MAILHOOK_PROBE", os.path.join(self.bin, "mailhook-probe"))
        r = run([probe, "--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("grpc", r.stdout)
        self.assertEqual(run([probe, "ftp", "127.0.0.1:1"]).returncode, 2)
        r = run([probe, "grpc", "127.0.0.1:1", "--tls-ca", "/nonexistent"])   # mTLS takes all three files
        self.assertEqual((r.returncode, r.stderr.strip()),
                         (2, "mailhook-probe: --tls-ca, --tls-cert and --tls-key go together"))
        r = run([probe, "smtp", "127.0.0.1:%d" % free_port(), "--timeout-ms", "2000"])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_start_policyd_resolves_a_kv_host_name_once(self):
        # compose.yaml says MAILHOOK_KV=redis:6379; policyd gets the IP.
        port, kv = free_port(), free_port()
        p = self.start("start-policyd.sh", script_env(**self.policyd_env(port, MAILHOOK_KV="localhost:%d" % kv)))
        self.assertIn("MAILHOOK_KV localhost:%d -> 127.0.0.1:%d" % (kv, kv), p.output())
        self.assertIn("--kv 127.0.0.1:%d" % kv, p.output())
        # A name that does not resolve stops the start with a clear error.
        r = run([os.path.join(self.bin, "start-policyd.sh")],
                env=script_env(**self.policyd_env(free_port(), MAILHOOK_KV="no-such-host.invalid:6379")), timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("MAILHOOK_KV: cannot resolve no-such-host.invalid", r.stderr)

    def test_scripts_start_both_serve_mail_and_report_health(self):
        policyd_port, front_port = free_port(), free_port()
        extra = os.path.join(self.dir, "extra.lua")
        with open(extra, "w") as f:
            f.write('function hook.rcpt(r)\n  if r:find("blocked@", 1, true) then\n'
                    '    return "550 5.7.1 blocked by extra.lua\\r\\n"\n  end\nend\n')
        env = self.policyd_env(policyd_port)
        env["MAILHOOK_SCRIPTS"] += ", " + extra      # the list: commas and spaces
        policyd = self.start("start-policyd.sh", script_env(**env))
        # exec: the script's PID is policyd itself, so signals reach it.
        self.assertEqual(os.path.basename(os.readlink("/proc/%d/exe" % policyd.proc.pid)), "mailhook-policyd")
        self.assertEqual(self.healthcheck("healthcheck-policyd.sh", MAILHOOK_LISTEN="127.0.0.1:%d" % policyd_port)
                         .returncode, 0)
        # A wildcard listen address is checked on loopback.
        r = self.healthcheck("healthcheck-policyd.sh", MAILHOOK_LISTEN="0.0.0.0:%d" % policyd_port)
        self.assertEqual(r.returncode, 0, r.stderr)

        front = self.start("start-front.sh", script_env(**self.front_env(front_port, policyd_port)))
        self.assertEqual(os.path.basename(os.readlink("/proc/%d/exe" % front.proc.pid)), "mailhook-front")
        r = self.healthcheck("healthcheck-front.sh", MAILHOOK_LISTEN="127.0.0.1:%d" % front_port)
        self.assertEqual(r.returncode, 0, r.stderr)

        c = SmtpClient(front_port)
        try:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            code, lines = c.cmd("RCPT TO:<blocked@example.com>")
            self.assertEqual((code, lines[-1]), (550, "550 5.7.1 blocked by extra.lua"))
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send("Subject: deploy\r\n\r\nspooled through the container scripts\r\n.\r\n")
            self.assertEqual(c.read_reply()[0], 250)
            c.cmd("QUIT")
        finally:
            c.close()
        spool = os.path.join(self.dir, "spool")
        messages = glob.glob(os.path.join(spool, "*.eml"))
        self.assertEqual(len(messages), 1, os.listdir(spool))
        with open(messages[0], "rb") as f:
            self.assertIn(b"spooled through the container scripts", f.read())

        self.assertEqual(policyd.stop(), 0, policyd.output())
        r = self.healthcheck("healthcheck-policyd.sh", MAILHOOK_LISTEN="127.0.0.1:%d" % policyd_port)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("mailhook-probe:", r.stderr)
        # The front greets 421 without policyd (--policy-failure tempfail).
        r = self.healthcheck("healthcheck-front.sh", MAILHOOK_LISTEN="127.0.0.1:%d" % front_port)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("greeting", r.stderr)


def load_yaml_documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


class ComposeTest(StartedScripts):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(DOCKER, "compose.yaml")
        with open(self.path) as f:
            self.compose = yaml.safe_load(f)
        self.services = self.compose["services"]

    def test_docker_compose_validates_it_offline(self):
        self.assertTrue(shutil.which("docker-compose"), "docker-compose missing (deploy/debian/packages.txt)")
        env = dict(os.environ, DOCKER_HOST="unix://" + os.path.join(self.dir, "no-engine.sock"))
        for profile in ([], ["--profile", "milter"]):
            r = run(["docker-compose", "-f", self.path] + profile + ["config", "-q"], env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["docker-compose", "-f", self.path, "--profile", "milter", "config", "--services"], env=env)
        self.assertEqual(sorted(r.stdout.split()), ["front", "policyd", "postfix", "redis"])
        # The Compose Specification has no "version:" (docker compose v2 warns it is obsolete).
        self.assertNotIn("version", self.compose)

    def test_services_healthchecks_dependencies_and_profile(self):
        self.assertEqual(set(self.services), {"policyd", "front", "postfix", "redis"})
        self.assertEqual(self.services["postfix"]["profiles"], ["milter"])
        for name, service in self.services.items():
            self.assertIn("healthcheck", service, name)
            if name not in ("policyd", "redis"):
                self.assertEqual(service["depends_on"]["policyd"]["condition"], "service_healthy", name)
            if "build" in service:
                self.assertTrue(os.path.isfile(os.path.join(DOCKER, service["build"]["context"],
                                                            service["build"]["dockerfile"])), name)
        for name, script in (("policyd", "healthcheck-policyd.sh"), ("front", "healthcheck-front.sh")):
            self.assertEqual(self.services[name]["healthcheck"]["test"], ["CMD", IMAGE_BIN + "/" + script])
            self.assertEqual(self.services[name].get("cap_drop"), ["ALL"])
        front = self.services["front"]
        self.assertIn("${MAILHOOK_SMTP_PORT:-2525}:2525", front["ports"])
        self.assertIn("spool", self.compose["volumes"])
        self.assertIn("spool:" + front["environment"]["MAILHOOK_SPOOL"], front["volumes"])
        self.assertEqual(front["environment"]["MAILHOOK_POLICYD"],
                         "policyd:" + self.services["policyd"]["environment"]["MAILHOOK_LISTEN"].split(":")[1])

    def test_postfix_uses_the_snippet_and_policyd_as_its_milter(self):
        milter = self.services["policyd"]["environment"]["MAILHOOK_MILTER"]      # inet:PORT@HOST
        port = re.match(r"inet:(\d+)@", milter).group(1)
        conf = os.path.join(self.dir, "postfix")
        os.makedirs(conf)
        shutil.copy("/etc/postfix/master.cf", conf)
        r = run([os.path.join(SCRIPTS, "configure-postfix.sh"), conf,
                 os.path.join(ROOT, "deploy/postfix/main.cf.snippet")])
        self.assertEqual(r.returncode, 0, r.stderr)
        values = run(["postconf", "-c", conf, "-h", "smtpd_milters", "non_smtpd_milters"]).stdout.split("\n")
        # The snippet's per-milter group, only its address changed.
        self.assertEqual(values[:2], [snippet_settings()["smtpd_milters"].replace("inet:127.0.0.1:8890",
                                                                                 "inet:policyd:%s" % port),
                                      "$smtpd_milters"])
        chroot = run(["postconf", "-c", conf, "-F", "*/*/chroot"]).stdout.splitlines()
        self.assertIn("smtp/inet/chroot = n", chroot)
        self.assertTrue(all(line.endswith("= n") for line in chroot), chroot)
        with open(os.path.join(DOCKER, "Dockerfile.postfix")) as f:
            self.assertIn("deploy/postfix/main.cf.snippet", f.read())

    def test_dockerfiles_are_multi_stage_non_root_with_healthchecks(self):
        for name, port, script in (("front", 2525, "front"), ("policyd", 7070, "policyd")):
            with open(os.path.join(DOCKER, "Dockerfile." + name)) as f:
                text = f.read()
            # build, runtime, prebuilt (the tests' programs) and the image.
            self.assertEqual(re.findall(r"^FROM (\S+)", text, re.M), ["debian:12", "debian:12", "runtime", "runtime"], name)
            self.assertIn("deploy/docker/scripts/build.sh", text)
            self.assertIn("runtime-packages.txt", text)
            self.assertRegex(text, r"(?m)^USER 10025:10025$")
            self.assertRegex(text, r"(?m)^EXPOSE %d$" % port)
            self.assertIn('CMD ["%s/healthcheck-%s.sh"]' % (IMAGE_BIN, script), text)
            # The HEALTHCHECK asks /readyz on the metrics listener, on by default.
            self.assertRegex(text, r"(?m)^ENV MAILHOOK_METRICS=0\.0\.0\.0:9100$")
            self.assertIn('ENTRYPOINT ["%s/start-%s.sh"]' % (IMAGE_BIN, script), text)

    def test_the_link_is_mutual_tls_from_mounted_certificates_on_separate_networks(self):
        mounts = {}
        for name, variables in (("policyd", POLICYD_TLS_VARS), ("front", FRONT_TLS_VARS)):
            service = self.services[name]
            for var in variables:
                path = service["environment"][var]
                self.assertTrue(path.startswith(CONTAINER_TLS_DIR + "/"), var)
            (volume,) = [v for v in service["volumes"] if v.split(":")[1] == CONTAINER_TLS_DIR]
            source, _, mode = volume.split(":")
            self.assertEqual(mode, "ro")
            mounts[name] = source
        self.assertEqual(mounts, {"policyd": "./tls/policyd", "front": "./tls/front"})
        # The layout make-link-certs.sh writes is the one mounted.
        certs = link_certs(self)
        for name, source in mounts.items():
            for var in POLICYD_TLS_VARS if name == "policyd" else FRONT_TLS_VARS:
                local = os.path.join(certs, source.split("/", 2)[2],
                                     os.path.basename(self.services[name]["environment"][var]))
                self.assertTrue(os.path.isfile(local), local)
        with open(self.path) as f:
            self.assertIn("make-link-certs.sh tls", f.read())
        # Only the front shares a network with policyd's gRPC port, only
        # Postfix the one of its milter port; nothing publishes either.
        self.assertEqual(set(self.services["policyd"]["networks"]), {"link", "milter", "kv"})
        self.assertEqual(self.services["front"]["networks"], ["link"])
        self.assertEqual(self.services["postfix"]["networks"], ["milter"])
        self.assertNotIn("ports", self.services["policyd"])

    def test_redis_is_a_service_only_policyd_reaches_at_the_address_it_is_given(self):
        redis, policyd = self.services["redis"], self.services["policyd"]
        self.assertEqual(policyd["depends_on"]["redis"]["condition"], "service_healthy")
        self.assertNotIn("ports", redis)
        self.assertEqual(redis.get("cap_drop"), ["ALL"])
        self.assertIn("kv:/data", redis["volumes"])
        self.assertIn("kv", self.compose["volumes"])
        # policyd takes an IP (no name lookups on a worker): the service
        # name, which start-policyd.sh resolves once at start
        # (test_start_policyd_resolves_a_kv_host_name_once).
        (network,) = redis["networks"]
        self.assertEqual(policyd["environment"]["MAILHOOK_KV"], "redis:6379")
        on_kv = {n for n, s in self.services.items() if network in s.get("networks", [])}
        self.assertEqual(on_kv, {"policyd", "redis"})
        # The examples that need it use kv.* (lua/examples/*_kv.lua).
        for example in ("greylist_kv.lua", "ratelimit_kv.lua"):
            with open(os.path.join(ROOT, "lua", "examples", example)) as f:
                self.assertIn("kv.", f.read(), example)

    def test_dockerfiles_install_the_build_packages_in_a_layer_before_the_sources(self):
        for name in ("front", "policyd"):
            with open(os.path.join(DOCKER, "Dockerfile." + name)) as f:
                build_stage = f.read().split("\nFROM ")[1]
            steps = [l for l in build_stage.splitlines() if re.match(r"(COPY|RUN) ", l)]
            self.assertEqual(steps[0], "COPY deploy/debian/install.sh deploy/debian/packages.txt deploy/debian/", name)
            self.assertTrue(steps[1].startswith("RUN deploy/debian/install.sh build"), name)
            # Then only what the compile reads, so an edit elsewhere keeps the compiled layer.
            self.assertEqual(steps[2], "COPY CMakeLists.txt ./", name)
            self.assertNotIn("COPY . .", build_stage)
            self.assertNotIn("packages-test.txt", build_stage)

    def test_the_programs_accept_the_environment_compose_sets(self):
        run_with_environment(self, self.services["policyd"]["environment"], self.services["front"]["environment"], [])


def snippet_settings():
    """deploy/postfix/main.cf.snippet's settings: {name: value}."""
    settings = {}
    with open(os.path.join(POSTFIX, "main.cf.snippet")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, _, value = line.partition("=")
                settings[name.strip()] = value.strip()
    return settings


RSPAMD_MAIN_CF = """compatibility_level = 3.6
smtpd_milters = inet:localhost:11332
non_smtpd_milters = $smtpd_milters
milter_default_action = accept
milter_protocol = 6
milter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}
"""


class PostfixSnippetTest(unittest.TestCase):
    """The snippet and the documented way to add it beside rspamd, through
    the real postconf on a private config directory (MAIL_CONFIG)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mailhook-postfix-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.assertTrue(shutil.which("postconf"), "postconf missing (postfix, deploy/debian/packages-test.txt)")

    def rspamd_host(self, main_cf=RSPAMD_MAIN_CF):
        conf = tempfile.mkdtemp(dir=self.dir)
        shutil.copy("/etc/postfix/master.cf", conf)
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write(main_cf)
        return conf

    @staticmethod
    def settle(conf):
        """Backdates main.cf: postconf re-reads a file younger than a second
        until it is older (about a second per call otherwise)."""
        past = os.path.getmtime(os.path.join(conf, "main.cf")) - 10
        os.utime(os.path.join(conf, "main.cf"), (past, past))

    def postconf(self, conf, *names):
        self.settle(conf)
        r = run(["postconf", "-c", conf, "-h"] + list(names))
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split("\n")[:len(names)]

    def documented_block(self, marker):
        with open(os.path.join(ROOT, "docs", "deploy.md")) as f:
            text = f.read()
        m = re.search(re.escape("<!-- test_deploy: %s -->" % marker) + r"\n```sh\n(.*?)```", text, re.S)
        self.assertTrue(m, marker)
        # The reload is for a running Postfix: here only the settings count.
        return "\n".join(l for l in m.group(1).splitlines() if not l.startswith("postfix "))

    def test_the_snippet_keeps_its_milter_settings_inside_its_own_entry(self):
        settings = snippet_settings()
        entry = settings["smtpd_milters"]
        self.assertRegex(entry, r"^\{ inet:127\.0\.0\.1:8890, .* \}$")
        fields = dict(f.strip().split("=", 1) for f in entry.strip("{} ").split(",")[1:])
        self.assertEqual(fields["default_action"], "tempfail")
        self.assertEqual(fields["protocol"], "6")
        # Above policyd's --hook-timeout (5 s) plus --dns-timeout (5 s).
        self.assertGreater(int(fields["command_timeout"].rstrip("s")), 10)
        # No global milter_* setting that would change another milter's behaviour.
        for name in settings:
            self.assertTrue(name.endswith("_milters") or name.endswith("_macros"), name)
        # A fresh Postfix takes the snippet appended as it is.
        conf = self.rspamd_host("compatibility_level = 3.6\n")
        with open(os.path.join(POSTFIX, "main.cf.snippet")) as f, open(os.path.join(conf, "main.cf"), "a") as out:
            out.write(f.read())
        self.assertEqual(self.postconf(conf, "smtpd_milters", "non_smtpd_milters"), [entry, "$smtpd_milters"])

    def check_beside_rspamd(self, conf):
        smtpd, non_smtpd, action, protocol = self.postconf(conf, "smtpd_milters", "non_smtpd_milters",
                                                           "milter_default_action", "milter_protocol")
        self.assertEqual(smtpd, "inet:localhost:11332 " + snippet_settings()["smtpd_milters"])
        # rspamd's own settings are untouched.
        self.assertEqual((non_smtpd, action, protocol), ("$smtpd_milters", "accept", "6"))
        self.settle(conf)
        r = run(["postconf", "-c", conf, "-n"])
        self.assertEqual(r.stderr, "")        # postconf warns about a setting it cannot parse

    def test_the_documented_script_adds_policyd_beside_rspamd_and_twice_changes_nothing(self):
        conf = self.rspamd_host()
        block = self.documented_block("beside-rspamd script")
        env = dict(os.environ, MAIL_CONFIG=conf)
        for _ in range(2):
            self.settle(conf)
            r = subprocess.run(["sh", "-euc", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.check_beside_rspamd(conf)
        # The macros: the admin's (rspamd's {client_addr}) kept, policyd's added.
        (mail_macros,) = self.postconf(conf, "milter_mail_macros")
        for macro in ("{client_addr}", "{client_name}", "{auth_type}", "{mail_host}", "i"):
            self.assertEqual(mail_macros.split().count(macro), 1, macro)

    def test_the_script_appends_to_a_non_smtpd_list_of_its_own(self):
        conf = self.rspamd_host(RSPAMD_MAIN_CF.replace("non_smtpd_milters = $smtpd_milters",
                                                       "non_smtpd_milters = inet:localhost:11332"))
        self.settle(conf)
        r = run([os.path.join(POSTFIX, "add-mailhook-milter.sh"), conf, "inet:10.0.0.5:8890"])
        self.assertEqual(r.returncode, 0, r.stderr)
        entry = snippet_settings()["smtpd_milters"].replace("inet:127.0.0.1:8890", "inet:10.0.0.5:8890")
        self.assertEqual(self.postconf(conf, "smtpd_milters", "non_smtpd_milters"),
                         ["inet:localhost:11332 " + entry] * 2)

    def test_the_documented_postconf_line_adds_policyd_beside_rspamd(self):
        conf = self.rspamd_host()
        self.settle(conf)
        r = subprocess.run(["sh", "-euc", self.documented_block("beside-rspamd by hand")], cwd=ROOT,
                           env=dict(os.environ, MAIL_CONFIG=conf), capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_beside_rspamd(conf)


class PackageListsTest(unittest.TestCase):
    """./dev run installs packages.txt only; ./dev test adds packages-test.txt."""

    TEST_ONLY = {"postfix", "swaks", "redis-server", "docker-compose", "miltertest", "clang-14", "libgtest-dev",
                 "libgmock-dev", "libbenchmark-dev", "libmilter-dev", "python3-yaml", "systemd", "nodejs", "npm",
                 "kubernetes-client", "libclang-rt-14-dev", "prometheus"}

    def lists(self):
        out = {}
        for name in ("packages.txt", "packages-test.txt"):
            with open(os.path.join(DEBIAN, name)) as f:
                out[name] = [l.split()[0] for l in f if l.strip() and not l.lstrip().startswith("#")]
        return out

    def test_test_and_bench_packages_are_only_in_the_test_list(self):
        lists = self.lists()
        build, test = set(lists["packages.txt"]), set(lists["packages-test.txt"])
        self.assertFalse(build & test)
        self.assertFalse(build & self.TEST_ONLY, "test-only packages in the build/run list")
        self.assertEqual(self.TEST_ONLY - test, set())

    def test_install_sh_reads_the_list_it_is_asked_for(self):
        copy = tempfile.mkdtemp(prefix="mailhook-lists-")
        self.addCleanup(shutil.rmtree, copy, True)
        shutil.copy(os.path.join(DEBIAN, "install.sh"), copy)
        shutil.copy(os.path.join(DEBIAN, "packages.txt"), copy)
        with open(os.path.join(copy, "packages-test.txt"), "w") as f:
            # An absent package, and one counted as present by its command.
            f.write("# test\nmailhook-no-such-package\nmailhook-also-absent sh\n")
        r = run(["sh", os.path.join(copy, "install.sh"), "missing", "build"])
        self.assertEqual((r.returncode, r.stdout), (0, ""), r.stderr)
        r = run(["sh", os.path.join(copy, "install.sh"), "missing", "test"])
        self.assertEqual((r.returncode, r.stdout.split()), (0, ["mailhook-no-such-package"]), r.stderr)
        self.assertEqual(run(["sh", os.path.join(copy, "install.sh"), "nonsense"]).returncode, 2)

    def test_dev_run_installs_the_build_list_and_configures_without_tests(self):
        with open(os.path.join(ROOT, "dev")) as f:
            dev = f.read()
        run_branch = dev[dev.index('if [ "$cmd" = run ]; then'):dev.index("else")]
        self.assertIn("deploy/debian/install.sh build", run_branch)
        self.assertIn("-DMAILHOOK_TESTS=OFF", run_branch)
        self.assertIn("deploy/debian/install.sh test", dev[dev.index("else"):])
        # Configuring without the tests needs no GoogleTest at all.
        build = tempfile.mkdtemp(prefix="mailhook-notests-")
        self.addCleanup(shutil.rmtree, build, True)
        r = run(["cmake", "-S", ROOT, "-B", build, "-G", "Ninja", "-DMAILHOOK_TESTS=OFF",
                 "-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON"], timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        targets = run(["cmake", "--build", build, "--target", "help"]).stdout
        self.assertIn("mailhook-front", targets)
        self.assertNotIn("policyd_unit_tests", targets)


def link_certs(test):
    """deploy/tls/make-link-certs.sh into the test's directory: DIR/policyd
    and DIR/front, each with tls.crt, tls.key, ca.crt."""
    out = os.path.join(test.dir, "link-tls")
    r = run([MAKE_CERTS, out], env=script_env())
    test.assertEqual(r.returncode, 0, r.stderr)
    return out


def local_tls_paths(env, certs):
    """The container's /etc/mailhook-tls/FILE paths moved to `certs`/FILE."""
    return {k: (os.path.join(certs, v[len(CONTAINER_TLS_DIR) + 1:]) if str(v).startswith(CONTAINER_TLS_DIR + "/")
                else v) for k, v in env.items()}


def run_with_environment(test, policyd_env, front_env, front_args):
    """Starts both start scripts with a deployment's variables, addresses
    moved to loopback, so flag names and values meet the real parsers."""
    for env, scripts in ((policyd_env, ("start-policyd.sh", "healthcheck-policyd.sh")),
                         (front_env, ("start-front.sh", "healthcheck-front.sh"))):
        known = set().union(*(script_variables(os.path.join(SCRIPTS, script)) for script in scripts))
        unknown = set(env) - known
        test.assertFalse(unknown, "%s does not read %s" % (scripts, unknown))
    certs = link_certs(test)
    policyd_env = local_tls_paths(policyd_env, os.path.join(certs, "policyd"))
    front_env = local_tls_paths(front_env, os.path.join(certs, "front"))
    policyd_port, front_port = free_port(), free_port()
    # Only addresses and container paths change; every other value is the
    # deployment's own.
    penv = dict(policyd_env)
    penv.update(MAILHOOK_LISTEN="127.0.0.1:%d" % policyd_port, MAILHOOK_PTR_LOOKUP="no",
                MAILHOOK_SCRIPTS=os.path.join(test.prefix, "share/mailhook/lua/policy.lua"))
    for name, value in (("MAILHOOK_METRICS", "127.0.0.1:%d" % free_port()),
                        ("MAILHOOK_MILTER", "inet:%d@127.0.0.1" % free_port()),
                        ("MAILHOOK_KV", "127.0.0.1:%d" % free_port()),
                        ("MAILHOOK_SPOOL_DIR", os.path.join(test.dir, "tmp"))):
        if name in penv:
            penv[name] = value
    test.start("start-policyd.sh", script_env(**penv))
    fenv = dict(front_env)
    fenv.update(MAILHOOK_LISTEN="127.0.0.1:%d" % front_port, MAILHOOK_POLICYD="127.0.0.1:%d" % policyd_port)
    for name, value in (("MAILHOOK_METRICS", "127.0.0.1:%d" % free_port()),
                        ("MAILHOOK_RELAY", "127.0.0.1:%d" % free_port()),
                        ("MAILHOOK_SPOOL", os.path.join(test.dir, "spool"))):
        if name in fenv:
            fenv[name] = value
    if "MAILHOOK_RELAY" not in fenv:
        fenv["MAILHOOK_SPOOL"] = os.path.join(test.dir, "spool")   # not the image's /var/spool
    args = list(front_args)
    if "--policyd" in args:
        args[args.index("--policyd") + 1] = "127.0.0.1:%d" % policyd_port
        del fenv["MAILHOOK_POLICYD"]
    # The policyd healthcheck with exactly the deployment's variables (its
    # TLS ones included), the way the image's HEALTHCHECK runs it.
    health = {k: v for k, v in penv.items() if k.startswith("MAILHOOK_HEALTH_") or k in POLICYD_TLS_VARS}
    r = test.healthcheck("healthcheck-policyd.sh", MAILHOOK_LISTEN=penv["MAILHOOK_LISTEN"], **health)
    test.assertEqual(r.returncode, 0, r.stderr)
    test.start("start-front.sh", script_env(**fenv), args)
    # The front greets 220 only when policyd opened its session: over mTLS
    # when the deployment configures it.
    r = test.healthcheck("healthcheck-front.sh", MAILHOOK_LISTEN="127.0.0.1:%d" % front_port)
    test.assertEqual(r.returncode, 0, r.stderr)


KNOWN_KINDS = {("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "Deployment"),
               ("autoscaling/v2", "HorizontalPodAutoscaler"), ("policy/v1", "PodDisruptionBudget"),
               ("networking.k8s.io/v1", "NetworkPolicy")}


def quantity(value):
    """A Kubernetes CPU or memory quantity as a number (cores or bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert m and (m.group(2) == "" or m.group(2) in units), value
    return float(m.group(1)) * units.get(m.group(2), 1)


def kustomize(directory):
    """`kubectl kustomize DIR`: the objects `kubectl apply -k DIR` applies (client-side)."""
    r = run(["kubectl", "kustomize", directory], timeout=60)
    if r.returncode != 0:
        raise AssertionError("kubectl kustomize %s: %s" % (directory, r.stderr))
    return r.stdout


def validate_schema(test, text):
    """tests/deploy/k8s-validate/validate.js on rendered manifests: (rc, output)."""
    test.assertTrue(shutil.which("node"), "node missing (deploy/debian/packages-test.txt)")
    test.assertTrue(os.path.isdir(os.path.join(K8S_VALIDATE, "node_modules", "kubernetes-models")),
                    "run `npm ci` in tests/deploy/k8s-validate (./dev test does)")
    r = subprocess.run(["node", os.path.join(K8S_VALIDATE, "validate.js"), "-"], input=text,
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


class KubernetesTest(StartedScripts):
    """deploy/kubernetes as `kubectl apply -k` applies it: the schema, then structure."""

    def setUp(self):
        super().setUp()
        self.assertTrue(shutil.which("kubectl"), "kubectl missing (deploy/debian/packages-test.txt)")
        self.rendered = kustomize(KUBE)
        self.docs = [("kustomize", d) for d in yaml.safe_load_all(self.rendered) if d is not None]
        self.assertTrue(self.docs)

    def of_kind(self, kind):
        return {d["metadata"]["name"]: d for _, d in self.docs if d["kind"] == kind}

    def test_every_object_has_a_known_kind_and_the_namespace(self):
        namespaces = self.of_kind("Namespace")
        self.assertEqual(list(namespaces), ["mailhook"])
        for path, d in self.docs:
            self.assertIn((d.get("apiVersion"), d.get("kind")), KNOWN_KINDS, path)
            if d["kind"] != "Namespace":
                self.assertEqual(d["metadata"].get("namespace"), "mailhook", path + " " + d["metadata"]["name"])

    def test_every_object_is_valid_against_the_kubernetes_openapi_schema(self):
        rc, out = validate_schema(self, self.rendered)
        self.assertEqual(rc, 0, out)
        self.assertIn("%d object(s), 0 problem(s)" % len(self.docs), out)
        # The validator catches what a strict API server rejects: a wrong
        # type and an unknown (misspelt) field.
        broken = self.rendered.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", 1)
        rc, out = validate_schema(self, broken.replace("containerPort: 2525", "containerPort: smtp-port", 1))
        self.assertEqual(rc, 1, out)
        self.assertIn("unknown field(s) /spec/template/spec/containers/0/securityContext/readOnlyRootFileSystem", out)
        self.assertIn("/spec/template/spec/containers/0/ports/0/containerPort must be integer", out)

    def test_no_replicas_beside_an_autoscaler_and_a_disruption_budget_per_deployment(self):
        deployments = self.of_kind("Deployment")
        scaled = {h["spec"]["scaleTargetRef"]["name"] for h in self.of_kind("HorizontalPodAutoscaler").values()}
        self.assertEqual(scaled, {"mailhook-policyd"})
        for name, d in deployments.items():
            if name in scaled:
                self.assertNotIn("replicas", d["spec"], name + ": apply would reset the HPA's count")
            else:
                self.assertGreaterEqual(d["spec"]["replicas"], 2, name)
            labels = d["spec"]["template"]["metadata"]["labels"]
            budgets = [p for p in self.of_kind("PodDisruptionBudget").values()
                       if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
            self.assertEqual(len(budgets), 1, name)
            self.assertEqual(budgets[0]["spec"].get("maxUnavailable"), 1, name)

    def test_fronts_prefer_different_nodes(self):
        front = self.of_kind("Deployment")["mailhook-front"]["spec"]["template"]
        (term,) = front["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        self.assertEqual(term["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname")
        self.assertTrue(term["podAffinityTerm"]["labelSelector"]["matchLabels"].items()
                        <= front["metadata"]["labels"].items())

    def test_pods_carry_prometheus_scrape_annotations_for_their_metrics_port(self):
        for name, d in self.of_kind("Deployment").items():
            template = d["spec"]["template"]
            annotations = template["metadata"]["annotations"]
            (c,) = template["spec"]["containers"]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            env = {e["name"]: e["value"] for e in c["env"]}
            self.assertEqual(annotations["prometheus.io/scrape"], "true", name)
            self.assertEqual(int(annotations["prometheus.io/port"]), ports["metrics"], name)
            self.assertEqual(env["MAILHOOK_METRICS"], "0.0.0.0:%d" % ports["metrics"], name)
            self.assertEqual(annotations["prometheus.io/path"], "/metrics", name)

    def test_a_policy_edit_renames_the_configmap_so_policyd_rolls_out(self):
        def policyd_template(directory):
            docs = [d for d in yaml.safe_load_all(kustomize(directory)) if d]
            (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
            (dep,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mailhook-policyd"]
            return cm["metadata"]["name"], dep["spec"]["template"]
        name, template = policyd_template(KUBE)
        copy = os.path.join(self.dir, "kubernetes")
        shutil.copytree(KUBE, copy)
        with open(os.path.join(copy, "policy.lua"), "a") as f:
            f.write("-- an edit\n")
        new_name, new_template = policyd_template(copy)
        self.assertTrue(name.startswith("mailhook-policy-") and new_name.startswith("mailhook-policy-"))
        self.assertNotEqual(name, new_name)
        # The pod template changed (the volume's ConfigMap): a rollout.
        self.assertNotEqual(template, new_template)
        self.assertIn(new_name, [v.get("configMap", {}).get("name") for v in new_template["spec"]["volumes"]])
        self.assertFalse(glob.glob(os.path.join(KUBE, "*configmap*.yaml")), "the generator makes the ConfigMap")

    def test_deployments_select_their_pods_and_bound_every_container(self):
        deployments = self.of_kind("Deployment")
        self.assertEqual(set(deployments), {"mailhook-front", "mailhook-policyd"})
        for name, d in deployments.items():
            labels = d["spec"]["template"]["metadata"]["labels"]
            self.assertTrue(d["spec"]["selector"]["matchLabels"].items() <= labels.items(), name)
            pod = d["spec"]["template"]["spec"]
            self.assertTrue(pod["securityContext"]["runAsNonRoot"], name)
            for c in pod["containers"]:
                where = "%s/%s" % (name, c["name"])
                res = c["resources"]
                for key in ("cpu", "memory"):
                    self.assertLessEqual(quantity(res["requests"][key]), quantity(res["limits"][key]), where)
                self.assertEqual(quantity(res["requests"]["cpu"]), 0.25, where)
                self.assertEqual(quantity(res["requests"]["memory"]), 64 * 2**20, where)
                self.assertEqual(quantity(res["limits"]["cpu"]), 1, where)
                self.assertEqual(quantity(res["limits"]["memory"]), 256 * 2**20, where)
                sc = c["securityContext"]
                self.assertTrue(sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"], where)
                self.assertFalse(sc["allowPrivilegeEscalation"], where)
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"], where)
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                env = {e["name"]: e["value"] for e in c.get("env", [])}
                for probe in ("readinessProbe", "livenessProbe"):
                    self.assertIn(probe, c, where)
                    self.check_probe(c[probe], ports, env, where + " " + probe)
                volumes = {v["name"] for v in pod.get("volumes", [])}
                for m in c.get("volumeMounts", []):
                    self.assertIn(m["name"], volumes, where)

    def check_probe(self, probe, ports, env, where):
        kinds = [k for k in ("grpc", "exec", "tcpSocket", "httpGet") if k in probe]
        self.assertEqual(len(kinds), 1, where)
        if "exec" in probe:
            command = probe["exec"]["command"]
            self.assertTrue(command[0].startswith(IMAGE_BIN + "/"), where)
            self.assertIn(os.path.basename(command[0]), PROGRAMS + CONTAINER_SCRIPTS, where)
            # A healthcheck script checks the container's MAILHOOK_LISTEN.
            address = command[2] if len(command) > 2 else env["MAILHOOK_LISTEN"]
            port = int(address.rsplit(":", 1)[1])
            self.assertIn(port, ports.values(), where)
        else:
            port = probe[kinds[0]]["port"]
            self.assertIn(port, list(ports) + list(ports.values()), where)

    def test_services_target_named_container_ports(self):
        deployments = self.of_kind("Deployment")
        services = self.of_kind("Service")
        self.assertEqual(set(services), {"mailhook-front", "mailhook-policyd"})
        for name, s in services.items():
            selected = [d for d in deployments.values()
                        if s["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
            self.assertEqual(len(selected), 1, name)
            names = {p["name"] for c in selected[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
            for p in s["spec"]["ports"]:
                self.assertIn(p["targetPort"], names, name)
        policyd = services["mailhook-policyd"]["spec"]
        self.assertEqual(policyd["clusterIP"], "None")
        self.assertEqual([(p["name"], p["port"]) for p in policyd["ports"]], [("grpc", 7070)])
        front = services["mailhook-front"]["spec"]
        self.assertEqual([(p["port"], p["targetPort"]) for p in front["ports"]], [(25, "smtp")])
        self.assertIn(front["type"], ("LoadBalancer", "ClusterIP"))

    def test_autoscaler_and_disruption_budget_aim_at_policyd(self):
        policyd = self.of_kind("Deployment")["mailhook-policyd"]
        (hpa,) = self.of_kind("HorizontalPodAutoscaler").values()
        self.assertEqual(hpa["spec"]["scaleTargetRef"],
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mailhook-policyd"})
        self.assertGreaterEqual(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
        (metric,) = hpa["spec"]["metrics"]
        self.assertEqual(metric["resource"]["name"], "cpu")
        self.assertEqual(metric["resource"]["target"], {"type": "Utilization", "averageUtilization": 70})
        pdb = self.of_kind("PodDisruptionBudget")["mailhook-policyd"]
        self.assertTrue(pdb["spec"]["selector"]["matchLabels"].items()
                        <= policyd["spec"]["template"]["metadata"]["labels"].items())
        self.assertTrue("minAvailable" in pdb["spec"] or "maxUnavailable" in pdb["spec"])

    def test_front_finds_policyd_through_its_headless_service(self):
        front = self.of_kind("Deployment")["mailhook-front"]["spec"]["template"]["spec"]["containers"][0]
        args = front["args"]
        service = self.of_kind("Service")["mailhook-policyd"]
        expected = "dns:///%s.%s.svc.cluster.local:%d" % (service["metadata"]["name"],
                                                          service["metadata"]["namespace"],
                                                          service["spec"]["ports"][0]["port"])
        self.assertEqual(args[args.index("--policyd") + 1], expected)
        help_text = run([os.path.join(self.bin, "mailhook-front"), "--help"]).stdout
        self.assertIn("dns:///", help_text)

    def test_policy_configmap_is_lua_policy_and_mounted_for_policyd(self):
        (cm,) = self.of_kind("ConfigMap").values()
        # deploy/kubernetes/policy.lua is a copy (kustomize reads only files
        # below its directory): it must stay lua/policy.lua.
        with open(os.path.join(ROOT, "lua", "policy.lua")) as f:
            self.assertEqual(cm["data"]["policy.lua"], f.read())
        pod = self.of_kind("Deployment")["mailhook-policyd"]["spec"]["template"]["spec"]
        volume = [v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
        self.assertEqual(len(volume), 1)
        (c,) = pod["containers"]
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume[0]]
        self.assertEqual(mount["mountPath"], "/etc/mailhook")
        env = {e["name"]: e["value"] for e in c["env"]}
        self.assertEqual(env["MAILHOOK_SCRIPTS"], "/etc/mailhook/policy.lua")

    def test_network_policy_lets_only_the_front_reach_grpc_and_only_the_mta_the_milter(self):
        policyd = self.of_kind("Deployment")["mailhook-policyd"]
        front = self.of_kind("Deployment")["mailhook-front"]
        (policy,) = self.of_kind("NetworkPolicy").values()
        spec = policy["spec"]
        self.assertTrue(spec["podSelector"]["matchLabels"].items()
                        <= policyd["spec"]["template"]["metadata"]["labels"].items())
        self.assertEqual(spec["policyTypes"], ["Ingress"])
        (container,) = policyd["spec"]["template"]["spec"]["containers"]
        port_numbers = {p["name"]: p["containerPort"] for p in container["ports"]}
        front_labels = front["spec"]["template"]["metadata"]["labels"]
        reached = {}   # port number -> the rules' sources
        for rule in spec["ingress"]:
            for p in rule["ports"]:
                number = port_numbers.get(p["port"], p["port"])
                reached.setdefault(number, []).append(rule.get("from"))
        grpc_port = port_numbers["grpc"]
        self.assertEqual(len(reached[grpc_port]), 1)
        (sources,) = reached[grpc_port]
        (source,) = sources
        self.assertEqual(set(source), {"podSelector"})     # this namespace only
        self.assertTrue(source["podSelector"]["matchLabels"].items() <= front_labels.items())
        self.assertFalse(source["podSelector"]["matchLabels"].items()
                         <= policyd["spec"]["template"]["metadata"]["labels"].items())
        (milter_sources,) = reached[8890]
        (milter,) = milter_sources
        self.assertEqual(milter["podSelector"]["matchLabels"], {"mailhook/milter-client": "true"})
        self.assertFalse(milter["podSelector"]["matchLabels"].items() <= front_labels.items())
        # Only the metrics port is open to every source.
        open_ports = {n for n, froms in reached.items() if any(f is None for f in froms)}
        self.assertEqual(open_ports, {port_numbers["metrics"]})

    def test_policyd_and_front_wire_mutual_tls_from_mounted_secrets(self):
        deployments = self.of_kind("Deployment")
        secrets = {}
        for name, variables in (("mailhook-policyd", POLICYD_TLS_VARS), ("mailhook-front", FRONT_TLS_VARS)):
            pod = deployments[name]["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            env = {e["name"]: e["value"] for e in c["env"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            for var in variables:
                path = env[var]
                (mount,) = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
                self.assertTrue(mount.get("readOnly"), name)
                secret = volumes[mount["name"]]["secret"]
                self.assertEqual(secret["defaultMode"] & 0o007, 0, name)   # not world-readable
                self.assertIn(os.path.basename(path), ("tls.crt", "tls.key", "ca.crt"), var)
                secrets[name] = secret["secretName"]
        self.assertEqual(secrets, {"mailhook-policyd": "mailhook-policyd-tls", "mailhook-front": "mailhook-front-tls"})
        # The probes ask /readyz and /healthz on the metrics port (plain
        # HTTP): the gRPC port's client-certificate check is not in their way.
        (c,) = deployments["mailhook-policyd"]["spec"]["template"]["spec"]["containers"]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            self.assertEqual(c[probe]["httpGet"], {"path": path, "port": "metrics"})
        env = {e["name"]: e["value"] for e in c["env"]}
        service = self.of_kind("Service")["mailhook-policyd"]["metadata"]
        self.assertEqual(env["MAILHOOK_HEALTH_TLS_NAME"],
                         "%s.%s.svc.cluster.local" % (service["name"], service["namespace"]))

    def test_the_programs_accept_the_environment_and_args_of_the_manifests(self):
        containers = {name: d["spec"]["template"]["spec"]["containers"][0]
                      for name, d in self.of_kind("Deployment").items()}
        env = {name: {e["name"]: e["value"] for e in c.get("env", [])} for name, c in containers.items()}
        self.assertFalse(containers["mailhook-policyd"].get("args"))
        run_with_environment(self, env["mailhook-policyd"], env["mailhook-front"],
                             containers["mailhook-front"]["args"])


if __name__ == "__main__":
    unittest.main()
