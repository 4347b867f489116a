"""The README documents every reason code the binary can emit (the list is
declared once, in include/egress/policy/reason.h), and the example
policies in policies/ load in the real binary."""
import glob
import os
import re
import subprocess

import harness

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(workdir, results):
    with open(os.path.join(ROOT, "include", "egress", "policy", "reason.h")) as f:
        codes = re.findall(r'^\s*X\(\w+, "([a-z-]+)"\)', f.read(), re.MULTILINE)
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    results.check("reason.h declares reason codes", len(codes) >= 20, str(codes))
    for code in codes:
        results.check("README documents reason code %s" % code, "| `%s` |" % code in readme)
    for policy in sorted(glob.glob(os.path.join(ROOT, "policies", "*.yaml"))):
        out = subprocess.run([harness.EGRESS, "check", "--policy", policy, "--json", "10.255.255.1:443"],
                             capture_output=True, text=True, timeout=20)
        results.check("%s loads" % os.path.basename(policy), out.returncode in (0, 1), out.stderr)


if __name__ == "__main__":
    harness.main(run)
