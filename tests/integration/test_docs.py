"""The README documents every reason code the binary can emit (the list is
declared once, in include/egress/policy/reason.h), and the example
policies in policies/ load in the real binary."""
import glob
import os
import re
import subprocess

import harness

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def reason_table_doc():
    """The reason table lives in docs/operating.md once the README is split
    into docs/, in README.md before."""
    operating = os.path.join(ROOT, "docs", "operating.md")
    return operating if os.path.exists(operating) else os.path.join(ROOT, "README.md")


def check_reason_statuses(results, statuses, doc_path, doc):
    """The docs table's status column (`| `code` | status | …`) against
    reason.h's: 0 there is '—' (allows) or 'closed' (no answer) here."""
    name = os.path.relpath(doc_path, ROOT)
    shown = dict(re.findall(r"^\| `([a-z-]+)` \| ([^|]+?) \|", doc, re.MULTILINE))
    for code, status in statuses.items():
        expected = ("—", "closed") if status == 0 else (str(status),)
        results.check("%s shows status %s for %s, as reason.h says" % (name, "/".join(expected), code),
                      shown.get(code) in expected, "shown: %r" % shown.get(code))


def run(workdir, results):
    with open(os.path.join(ROOT, "include", "egress", "policy", "reason.h")) as f:
        table = re.findall(r'^\s*X\(\w+, "([a-z-]+)", (\d+)\)', f.read(), re.MULTILINE)
    codes = [code for code, _ in table]
    doc_path = reason_table_doc()
    with open(doc_path) as f:
        readme = f.read()
    results.check("reason.h declares reason codes", len(codes) >= 20, str(codes))
    for code in codes:
        results.check("%s documents reason code %s" % (os.path.relpath(doc_path, ROOT), code),
                      "| `%s` |" % code in readme)
    check_reason_statuses(results, {code: int(status) for code, status in table}, doc_path, readme)
    for policy in sorted(glob.glob(os.path.join(ROOT, "policies", "*.yaml"))):
        out = subprocess.run([harness.EGRESS, "check", "--policy", policy, "--json", "10.255.255.1:443"],
                             capture_output=True, text=True, timeout=20)
        results.check("%s loads" % os.path.basename(policy), out.returncode in (0, 1), out.stderr)


if __name__ == "__main__":
    harness.main(run)
