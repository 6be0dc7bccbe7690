"""Configuration as an administrator meets it (issue 20): one --config file
per daemon, --print-config and its round trip, flags overriding the file,
units on durations and sizes, deprecated names that warn, and a mistyped
flag or key answered with "did you mean". The real binaries, no network
beyond what a test starts."""

import os
import shutil
import subprocess
import tempfile
import unittest

from harness import FRONT, POLICYD

DAEMONS = {"front": FRONT, "policyd": POLICYD}


def run(binary, *args, timeout=20):
    """(exit code, stdout, stderr) of one short run of a daemon."""
    p = subprocess.run([binary] + list(args), capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def settings(text):
    """key -> (value text, is default) of --print-config output; commented
    unset lines as (None, True)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# ") and (" = (not set)" in line or " = []" in line):
            out[line[2:].split(" = ")[0]] = (None, True)
            continue
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.partition(" = ")
        default = rest.endswith("  # default")
        out[key] = (rest[: -len("  # default")] if default else rest, default)
    return out


class ConfigFile(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mailhook-config-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def print_config(self, binary, *args):
        code, out, err = run(binary, *args, "--print-config")
        self.assertEqual(code, 0, err)
        return out

    def test_print_config_marks_defaults(self):
        s = settings(self.print_config(FRONT))
        self.assertEqual(s["listen"], ('"127.0.0.1:2525"', True))
        self.assertEqual(s["max-message-size"], ("26214400", True))
        self.assertEqual(s["drain-timeout"], ("30", True))
        self.assertEqual(s["auth-plaintext"], ("false", True))
        s = settings(self.print_config(POLICYD))
        self.assertEqual(s["hook-timeout"], ("5000", True))
        self.assertEqual(s["workers"], (None, True))
        self.assertNotIn("check", s)
        self.assertNotIn("test", s)
        self.assertNotIn("print-config", s)

    def test_file_sets_and_flags_override(self):
        cfg = self.write("front.toml", "\n".join([
            "# a comment",
            'listen = "127.0.0.1:2600"',
            "max-recipients = 7",
            'policy-timeout = "2s"',
            "auth-plaintext = true",
            'xclient-hosts = "127.0.0.0/8"',
        ]) + "\n")
        s = settings(self.print_config(FRONT, "--config", cfg, "--max-recipients", "9"))
        self.assertEqual(s["listen"], ('"127.0.0.1:2600"', False))
        self.assertEqual(s["max-recipients"], ("9", False))      # the flag wins
        self.assertEqual(s["policy-timeout"], ("2000", False))   # 2s in the flag's milliseconds
        self.assertEqual(s["auth-plaintext"], ("true", False))
        self.assertEqual(s["xclient-hosts"], ('"127.0.0.0/8"', False))

    def test_repeatable_flags_are_arrays(self):
        a = self.write("a.lua", "")
        b = self.write("b.lua", "")
        cfg = self.write("policyd.toml", 'script = ["%s", "%s"]\nlua-env = ["HOME"]\n' % (a, b))
        s = settings(self.print_config(POLICYD, "--config", cfg))
        self.assertEqual(s["script"], ('["%s", "%s"]' % (a, b), False))
        self.assertEqual(s["lua-env"], ('["HOME"]', False))

    def test_round_trip(self):
        """print-config fed back as --config prints the same settings."""
        a = self.write("a.lua", "")
        for name, binary, args in [
            ("front", FRONT, ["--listen", "127.0.0.1:2700", "--max-message-size", "10M", "--drain-timeout", "2m",
                              "--auth-plaintext", "--io-threads", "3", "--hostname", "mx.example"]),
            ("policyd", POLICYD, ["--script", a, "--script", a, "--shadow", "--hook-timeout", "1s",
                                  "--lua-memory", "1G", "--dns-server", "127.0.0.1:53", "--workers", "2"]),
        ]:
            with self.subTest(name):
                first = self.print_config(binary, *args)
                path = self.write(name + ".toml", first)
                second = self.print_config(binary, "--config", path)
                self.assertEqual(settings(first), settings(second))
                again = self.write(name + "2.toml", second)
                self.assertEqual(second.splitlines()[1:], self.print_config(binary, "--config", again).splitlines()[1:])

    def test_units(self):
        s = settings(self.print_config(FRONT, "--max-message-size", "25M", "--command-timeout", "6m",
                                       "--greet-pause", "1s", "--policy-timeout", "500ms", "--data-timeout", "600"))
        self.assertEqual(s["max-message-size"], ("26214400", True))
        self.assertEqual(s["command-timeout"], ("360", False))
        self.assertEqual(s["greet-pause"], ("1000", False))
        self.assertEqual(s["policy-timeout"], ("500", False))
        self.assertEqual(s["data-timeout"], ("600", True))
        s = settings(self.print_config(POLICYD, "--lua-memory", "1G", "--milter-max-packet", "64K",
                                       "--drain-timeout", "1h", "--kv-timeout", "2s"))
        self.assertEqual(s["lua-memory"], ("1024", False))
        self.assertEqual(s["milter-max-packet"], ("65536", False))
        self.assertEqual(s["drain-timeout"], ("3600", False))
        self.assertEqual(s["kv-timeout"], ("2000", False))

    def test_bad_units_are_refused(self):
        for binary, args, words in [
            (FRONT, ["--command-timeout", "1500ms"], "not a whole number of seconds"),
            (FRONT, ["--max-message-size", "25Q"], "unknown size unit 'Q'"),
            (FRONT, ["--policy-timeout", "fast"], "not a duration"),
            (POLICYD, ["--lua-memory", "512K"], "not a whole number of megabytes"),
            (POLICYD, ["--hook-timeout", "3w"], "unknown duration unit 'w'"),
        ]:
            with self.subTest(args=args):
                code, _, err = run(binary, *args, "--print-config")
                self.assertEqual(code, 2, err)
                self.assertIn(words, err)

    def test_deprecated_names_warn_and_work(self):
        for binary, old, new, value, shown in [
            (FRONT, "--threads", "io-threads", "3", "3"),
            (FRONT, "--shutdown-grace", "drain-timeout", "12", "12"),
            (FRONT, "--spool", "queue-dir", "/var/spool/x", '"/var/spool/x"'),
            (POLICYD, "--spool-dir", "temp-dir", "/var/tmp/x", '"/var/tmp/x"'),
        ]:
            with self.subTest(old=old):
                code, out, err = run(binary, old, value, "--print-config")
                self.assertEqual(code, 0, err)
                self.assertEqual(settings(out)[new], (shown, False))
                self.assertIn("%s is deprecated" % old, err)
                self.assertIn("use --%s" % new, err)
                self.assertNotIn("\n" + old[2:] + " =", out)
                # In a config file too.
                path = self.write("old.toml", "%s = %s\n" % (old[2:], '"%s"' % value))
                code, out, err = run(binary, "--config", path, "--print-config")
                self.assertEqual(code, 0, err)
                self.assertEqual(settings(out)[new], (shown, False))
                self.assertIn("%s is deprecated" % old, err)
        # The new name wins over the old one.
        code, out, err = run(FRONT, "--threads", "3", "--io-threads", "4", "--print-config")
        self.assertEqual(settings(out)["io-threads"], ("4", False))

    def test_typo_suggests_the_flag(self):
        code, _, err = run(FRONT, "--polcyd", "127.0.0.1:7070", "--print-config")
        self.assertEqual(code, 2)
        self.assertIn("unknown option --polcyd (did you mean --policyd?)", err)
        code, _, err = run(POLICYD, "--scirpt=x.lua", "--print-config")
        self.assertEqual(code, 2)
        self.assertIn("unknown option --scirpt (did you mean --script?)", err)
        code, _, err = run(POLICYD, "--zzzzzzzz", "--print-config")
        self.assertEqual(code, 2)
        self.assertIn("unknown option --zzzzzzzz", err)
        self.assertNotIn("did you mean", err)

    def test_typo_in_config_file(self):
        path = self.write("front.toml", 'polcyd = "127.0.0.1:7070"\n')
        code, _, err = run(FRONT, "--config", path, "--print-config")
        self.assertEqual(code, 2)
        self.assertIn("%s: unknown setting 'polcyd' (did you mean policyd?)" % path, err)

    def test_missing_config_file(self):
        code, _, err = run(POLICYD, "--config", os.path.join(self.dir, "nope.toml"), "--print-config")
        self.assertEqual(code, 2)
        self.assertIn("nope.toml", err)


if __name__ == "__main__":
    unittest.main()
