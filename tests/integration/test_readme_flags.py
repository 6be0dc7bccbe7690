"""The README's flag tables match each daemon's --help (issue 20): a flag
in --help but not in the README, or in the README but gone from --help,
fails the test. Deprecated names are hidden from --help and left out of
the tables, so they are not compared; --help and --version are CLI11's."""

import os
import re
import subprocess
import unittest

from harness import FRONT, POLICYD

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
NOT_IN_TABLES = {"--help", "--version"}


def help_flags(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=20, check=True).stdout
    flags = set()
    for line in out.splitlines():
        m = re.match(r"^\s+(?:-\w,)?(--[a-z0-9][a-z0-9-]*)", line)
        if m:
            flags.add(m.group(1))
    return flags - NOT_IN_TABLES


def readme_flags(section):
    """The flags in the first column of the first table under `## section`."""
    with open(README) as f:
        text = f.read()
    start = text.index("\n## " + section + "\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end != -1 else len(text)]
    flags, in_table = set(), False
    for line in body.splitlines():
        if line.startswith("| flag |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and line.startswith("| `"):
            first = line.split(" | ")[0]
            flags.update(re.findall(r"`(--[a-z0-9][a-z0-9-]*)", first))
    return flags


class ReadmeFlags(unittest.TestCase):
    def compare(self, binary, section):
        in_help, in_readme = help_flags(binary), readme_flags(section)
        self.assertGreater(len(in_help), 10)
        self.assertEqual(sorted(in_help - in_readme), [], "in --help, missing from the README's %s table" % section)
        self.assertEqual(sorted(in_readme - in_help), [], "in the README's %s table, not in --help" % section)

    def test_front(self):
        self.compare(FRONT, "mailhook-front")

    def test_policyd(self):
        self.compare(POLICYD, "mailhook-policyd")

    def test_deprecated_names_are_hidden_from_help(self):
        self.assertNotIn("--threads", help_flags(FRONT))
        self.assertNotIn("--spool", help_flags(FRONT))
        self.assertNotIn("--shutdown-grace", help_flags(FRONT))
        self.assertNotIn("--spool-dir", help_flags(POLICYD))


if __name__ == "__main__":
    unittest.main()
