"""The docs say what the binary does:
- docs/operating.md documents every reason code the binary can emit, with
  its HTTP status (both declared once, in include/egress/policy/reason.h);
- every `egress …` command shown in a code block of the README or docs/ is a
  real subcommand (`egress SUB [SUB2] --help` exits 0);
- the README's `egress check` example prints what the README says;
- every relative link in the README and docs/ names a file that exists, and
  so does every doc a comment in src/ or include/ cites;
- the example policies in policies/ load in the real binary.
(test_attacks.py checks the attack table in docs/security.md.)"""
import glob
import os
import re
import subprocess

import harness

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PUBLIC_IP = "93.184.216.34"  # `egress check` resolves the example's name here; it never connects


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def doc_files():
    return ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def egress(*args):
    return subprocess.run([harness.EGRESS, *args], capture_output=True, text=True, timeout=20)


def check_reason_codes(results):
    """Every code of reason.h in docs/operating.md's table, with the status
    reason.h gives it (0 there is '—', allows, or 'closed', no answer)."""
    table = re.findall(r'^\s*X\(\w+, "([a-z-]+)", (\d+)\)', read("include/egress/policy/reason.h"), re.MULTILINE)
    operating = read("docs/operating.md")
    shown = dict(re.findall(r"^\| `([a-z-]+)` \| ([^|]+?) \|", operating, re.MULTILINE))
    results.check("reason.h declares reason codes", len(table) >= 20, str(table))
    for code, status in table:
        expected = ("—", "closed") if status == "0" else (status,)
        results.check("docs/operating.md documents reason code %s with status %s" % (code, "/".join(expected)),
                      shown.get(code) in expected, "shown: %r" % shown.get(code))


def commands_shown():
    """(file, words) for every line of a code block that runs egress."""
    found = []
    for path in doc_files():
        blocks = re.findall(r"```[a-z]*\n(.*?)```", read(path), re.DOTALL)
        for block in blocks:
            for line in block.splitlines():
                line = re.sub(r"^\$ ", "", line.strip())
                if line.startswith("egress "):
                    words = [w for w in line.split()[1:3] if re.fullmatch(r"[a-z][a-z-]*", w)]
                    found.append((path, words))
    return found


def check_commands(results):
    shown = commands_shown()
    results.check("the docs show egress commands", len(shown) >= 20, str(len(shown)))
    tried = {}
    for path, words in shown:
        key = tuple(words)
        if key not in tried:
            out = egress(*words, "--help")
            if out.returncode != 0 and len(words) == 2:  # the second word was an argument
                out = egress(words[0], "--help")
            tried[key] = out
        results.check("%s: `egress %s` is a real command" % (path, " ".join(words)),
                      tried[key].returncode == 0, tried[key].stderr[-300:])


def check_readme_example(workdir, results):
    """The README's policy and `egress check` output, run for real."""
    readme = read("README.md")
    policy = re.search(r"## A policy\n\n```yaml\n(.*?)```", readme, re.DOTALL).group(1)
    shown = re.search(r"```\n\$ (egress check [^\n]*)\n(.*?)```", readme, re.DOTALL)
    policy_path = os.path.join(workdir, "policy.yaml")
    with open(policy_path, "w") as f:
        f.write(policy.replace("sha256:9f86d0…", "sha256:" + "9f86d0" + "0" * 58))
    config = os.path.join(workdir, "check.yaml")
    with open(config, "w") as f:
        f.write("dns:\n  hosts_file: false\n  servers: [\"127.0.0.1:%d\"]\n  timeout: 500ms\n"
                "  hosts:\n    huggingface.co: [%s]\n" % (harness.free_port(), PUBLIC_IP))
    args = shown.group(1).split()[1:]
    out = subprocess.run([harness.EGRESS, *args[:-1], "--config", config, args[-1]], cwd=workdir,
                         capture_output=True, text=True, timeout=20)
    printed = out.stdout.splitlines()
    for line in shown.group(2).splitlines():
        prefix = line.split("…")[0].rstrip()
        results.check("README's check example prints %r" % line,
                      any(p.startswith(prefix) for p in printed), out.stdout + out.stderr)


def check_links(results):
    for path in doc_files():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(path)):
            if re.match(r"[a-z]+:", target):
                continue
            resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(path), target))
            results.check("%s links to %s, which exists" % (path, target), os.path.exists(resolved))
    cited = set()
    for source in glob.glob(os.path.join(ROOT, "src", "**", "*.*"), recursive=True) + \
            glob.glob(os.path.join(ROOT, "include", "**", "*.h"), recursive=True):
        with open(source, errors="replace") as f:
            text = f.read()
        cited.update(re.findall(r"\b(docs/[a-z-]+\.md)\b", text))
        results.check("%s cites no doc outside the repository" % os.path.relpath(source, ROOT),
                      not re.search(r"(?<![/\w])design\.md|the README\b", text))
    results.check("the code cites the docs", "docs/security.md" in cited, str(cited))
    for doc in sorted(cited):
        results.check("cited %s exists" % doc, os.path.exists(os.path.join(ROOT, doc)))


def run(workdir, results):
    check_reason_codes(results)
    check_commands(results)
    check_readme_example(workdir, results)
    check_links(results)
    results.check("the README stays a front door (about 200 lines)", read("README.md").count("\n") <= 220)
    for policy in sorted(glob.glob(os.path.join(ROOT, "policies", "*.yaml"))):
        out = egress("check", "--policy", policy, "--json", "10.255.255.1:443")
        results.check("%s loads" % os.path.basename(policy), out.returncode in (0, 1), out.stderr)


if __name__ == "__main__":
    harness.main(run)
