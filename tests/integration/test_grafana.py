"""The Grafana dashboard (deploy/grafana/mailhook.json) against a real
scrape: every mailhook_* metric a panel queries is a family policyd or the
front really exports after real SMTP traffic, and every label a panel
groups or filters by is a label of that metric."""

import collections
import json
import os
import re
import unittest

from harness import MailhookTest, free_port, sample, scrape, total

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "grafana",
                         "mailhook.json")

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
TARGET_LABELS = {"instance", "job"}  # added by Prometheus at scrape time, never in /metrics
GROUPING = {"by", "without"}

# Enough of PromQL's lexer: strings and range/subquery brackets are single
# tokens, so label values ("mailhook-front", "$instance") and durations
# never look like identifiers.
TOKEN = re.compile(r'''\s+|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`|\[[^\]]*\]|=~|!~|!=|==|>=|<=|'''
                   r'''[A-Za-z_:][A-Za-z0-9_:]*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|.''')


def tokens(expr):
    return [t for t in TOKEN.findall(expr) if not t.isspace()]


def closing(toks, i):
    """Index of the bracket closing the one at toks[i] ("(" or "{")."""
    pair = {"(": ")", "{": "}"}[toks[i]]
    depth = 0
    for j in range(i, len(toks)):
        if toks[j] == toks[i]:
            depth += 1
        elif toks[j] == pair:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced %r in %s" % (toks[i], " ".join(toks)))


def parse(expr):
    """(metrics, groupings) of one PromQL expression.
    metrics: [(name, {matcher label names})] for every mailhook_* selector;
    groupings: [(labels, {metric names in the aggregated expression})] for
    every `by (...)` / `without (...)` clause."""
    toks = tokens(expr)
    metrics, at = [], {}
    for i, t in enumerate(toks):
        if not t.startswith("mailhook_"):
            continue
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if nxt == "(":
            continue  # a function call, not a metric
        matchers = set()
        if nxt == "{":
            inner = toks[i + 2:closing(toks, i + 1)]
            matchers = {inner[k] for k in range(len(inner) - 1)
                        if inner[k + 1] in ("=", "!=", "=~", "!~") and re.match(r"[A-Za-z_]", inner[k])}
        at[i] = t
        metrics.append((t, matchers))
    groupings = []
    for i, t in enumerate(toks):
        if t not in GROUPING or i + 1 >= len(toks) or toks[i + 1] != "(":
            continue
        end = closing(toks, i + 1)
        labels = [x for x in toks[i + 2:end] if x != ","]
        if i > 0 and toks[i - 1] == ")":        # sum(expr) by (labels)
            depth, start = 0, i - 1
            for start in range(i - 1, -1, -1):
                depth += {")": 1, "(": -1}.get(toks[start], 0)
                if depth == 0:
                    break
            span = range(start, i)
        elif end + 1 < len(toks) and toks[end + 1] == "(":  # sum by (labels) (expr)
            span = range(end + 1, closing(toks, end + 1) + 1)
        else:
            raise ValueError("cannot find what %s (...) groups in %s" % (t, expr))
        groupings.append((labels, {at[k] for k in span if k in at}))
    return metrics, groupings


def families(*texts):
    """{family: {"type": ..., "labels": {...}}} of Prometheus text scrapes;
    a family counts when it has a HELP or TYPE line."""
    fams = {}
    for text in texts:
        for line in text.splitlines():
            m = re.match(r"# (HELP|TYPE) (\S+)(?: (\S+))?", line)
            if m:
                f = fams.setdefault(m.group(2), {"type": None, "labels": set()})
                if m.group(1) == "TYPE":
                    f["type"] = m.group(3)
        for line in text.splitlines():
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? \S+$", line)
            if not m or line.startswith("#"):
                continue
            name = m.group(1)
            for suffix in HISTOGRAM_SUFFIXES:
                base = name[:-len(suffix)]
                if name.endswith(suffix) and fams.get(base, {}).get("type") == "histogram":
                    name = base
            labels = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="(?:\\.|[^"\\])*"', m.group(2) or "")
            fams.setdefault(name, {"type": None, "labels": set()})["labels"].update(labels)
    return fams


def family_of(name, fams):
    """The family a series name belongs to: histogram suffixes are stripped
    only when the base is a histogram in the scrape."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[:-len(suffix)]
        if name.endswith(suffix) and fams.get(base, {}).get("type") == "histogram":
            return base
    return name


def panel_targets(dashboard):
    """[(panel title, expr)] over every panel, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def missing_metrics(dashboard, fams):
    """[(panel, reference)] whose family is not in the scrape, or that name a
    histogram family without _bucket/_sum/_count (no such series)."""
    missing = []
    for title, expr in panel_targets(dashboard):
        for name, _ in parse(expr)[0]:
            fam = family_of(name, fams)
            if fam not in fams or (fam == name and fams[fam]["type"] == "histogram"):
                missing.append((title, name))
    return missing


def missing_labels(dashboard, fams):
    """[(panel, metric, label, where)] for labels a panel groups by (or
    matches on) that the metric does not carry in the scrape."""
    missing = []
    for title, expr in panel_targets(dashboard):
        metrics, groupings = parse(expr)
        uses = [(labels, names, "by") for labels, names in groupings]
        uses += [(matchers, [name], "selector") for name, matchers in metrics]
        for labels, names, where in uses:
            for name in names:
                fam = family_of(name, fams)
                if fam not in fams:
                    continue  # reported by missing_metrics
                for label in labels:
                    if label == "le" and fams[fam]["type"] == "histogram":
                        continue
                    if where == "selector" and label in TARGET_LABELS:
                        continue
                    if label not in fams[fam]["labels"]:
                        missing.append((title, name, label, where))
    return missing


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


# One accepted message and one refused recipient: reply classes and the
# rcpt hook histogram get samples.
POLICY = 'function hook.rcpt(r) if r == "no@example.com" then return "550 5.1.1 no\\r\\n" end end'


class DashboardJson(unittest.TestCase):
    def test_parses_with_panels_targets_and_variables(self):
        d = load_dashboard()
        self.assertGreaterEqual(d.get("schemaVersion", 0), 36)
        variables = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        self.assertIn("instance", variables)
        graphs = [p for p in d["panels"] if p["type"] != "row"]
        self.assertTrue(graphs)
        for p in graphs:
            self.assertTrue(p.get("targets"), "panel %r has no targets" % p.get("title"))
            for t in p["targets"]:
                self.assertTrue(t.get("expr"), p["title"])
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
                self.assertIn('instance=~"$instance"', t["expr"], p["title"])
        rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
        self.assertEqual(rows, ["Sessions", "Replies by class", "Rejects per rule", "Per-hook latency",
                                "Policy failures", "Delivery", "DNS", "TLS, AUTH and connection limits",
                                "kv (Redis) and milter", "Process"])
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)))

    def test_the_promql_reader(self):
        metrics, groupings = parse('histogram_quantile(0.99, sum by (le, hook) '
                                   '(rate(mailhook_policyd_hook_seconds_bucket{instance=~"$instance"}[5m])))')
        self.assertEqual(metrics, [("mailhook_policyd_hook_seconds_bucket", {"instance"})])
        self.assertEqual(groupings, [(["le", "hook"], {"mailhook_policyd_hook_seconds_bucket"})])
        metrics, groupings = parse('sum(rate(mailhook_a_total{x="mailhook_not_me"}[5m])) by (class) '
                                   '/ sum(rate(mailhook_b_total[5m]))')
        self.assertEqual([m for m, _ in metrics], ["mailhook_a_total", "mailhook_b_total"])
        self.assertEqual(groupings, [(["class"], {"mailhook_a_total"})])


class DashboardAgainstScrape(MailhookTest):
    def scrape_after_traffic(self):
        front_metrics, policyd_metrics = free_port(), free_port()
        # A shadow script and the milter port: their families exist only then.
        shadow = self.write_script(POLICY, "shadow.lua")
        self.start_both(POLICY, policyd_args=["--metrics", "127.0.0.1:%d" % policyd_metrics, "--shadow-script", shadow,
                                              "--milter", "inet:%d@127.0.0.1" % free_port()],
                        front_args=["--metrics", "127.0.0.1:%d" % front_metrics])
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(self.send_message(c)[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>")[0], 550)
        front, policyd = scrape(front_metrics), scrape(policyd_metrics)
        # The traffic really reached both daemons.
        self.assertEqual(sample(front, 'mailhook_front_replies_total{class="5xx"}'), 1)
        self.assertEqual(sample(front, 'mailhook_front_messages_total{delivery="spool"}'), 1)
        self.assertEqual(total(policyd, "mailhook_policyd_replies_total", hook="rcpt", class_="5xx"), 1)
        self.assertEqual(total(policyd, "mailhook_policyd_shadow_replies_total", hook="rcpt", class_="5xx"), 1)
        # Two RCPTs, each through the shadow script and the enforcing one.
        self.assertEqual(sample(policyd, 'mailhook_policyd_hook_seconds_count{hook="rcpt"}'), 4)
        return families(front, policyd)

    def test_every_panel_metric_is_an_exported_family(self):
        fams = self.scrape_after_traffic()
        refs = [n for _, e in panel_targets(load_dashboard()) for n, _ in parse(e)[0]]
        self.assertTrue(refs, "no mailhook_* metric found in any panel")
        missing = missing_metrics(load_dashboard(), fams)
        self.assertEqual(missing, [], "panels name metrics neither daemon exports: " +
                         ", ".join("%s (panel %r)" % (n, t) for t, n in missing))

    def test_every_grouping_label_is_on_its_metric(self):
        fams = self.scrape_after_traffic()
        missing = missing_labels(load_dashboard(), fams)
        self.assertEqual(missing, [], "labels the metrics do not carry: " +
                         ", ".join("%s on %s in %s (panel %r)" % (l, n, w, t) for t, n, l, w in missing))


if __name__ == "__main__":
    unittest.main()
