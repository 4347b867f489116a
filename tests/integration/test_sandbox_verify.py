"""`egress sandbox verify` on this machine (root, real runsc): with no
arguments it brings up its own egress and upstream, passes every checkable
line of the Production Checklist and exits 0; with the hidden
`--break default-route` (the worker gets a default route) the network
isolation line fails and it exits 1. Also the render CLI: a daemon.json with
invalid JSON is refused with exit 2 and left as it was."""
import os
import re
import subprocess

import harness


def run(workdir, results):
    check = results.check
    check("running as root", os.geteuid() == 0)
    if os.geteuid() != 0:
        return

    ok = subprocess.run([harness.EGRESS, "sandbox", "verify"], capture_output=True, text=True, timeout=120)
    print(ok.stdout)
    check("verify exits 0 on this machine", ok.returncode == 0, ok.stderr)
    check("verify prints no FAIL line", "[FAIL]" not in ok.stdout)
    for line in ("gVisor installed and tested", "Network isolation enabled", "DNS resolution disabled for workers",
                 "Read-only root filesystem", "No privileged mode", "Logging and monitoring configured",
                 "Egress proxy path (allowed 200, denied 403)"):
        check("verify: [PASS] %s" % line, re.search(r"\[PASS\] " + re.escape(line), ok.stdout) is not None)
    check("verify: unverifiable lines say SKIP with why",
          re.search(r"\[SKIP\] Documented incident response procedures\n\s+\S", ok.stdout) is not None)

    broken = subprocess.run([harness.EGRESS, "sandbox", "verify", "--break", "default-route"],
                            capture_output=True, text=True, timeout=120)
    print(broken.stdout)
    check("verify with a default route exits 1", broken.returncode == 1, broken.stderr)
    fails = re.findall(r"\[FAIL\] (.*)", broken.stdout)
    check("exactly the network isolation line fails", fails == ["Network isolation enabled (internal network)"],
          str(fails))
    check("the failing line says why", "default routes: 1" in broken.stdout)

    # render: invalid JSON in daemon.json is refused and left untouched
    daemon = os.path.join(workdir, "daemon.json")
    with open(daemon, "w") as f:
        f.write('{"debug": tru')
    r = subprocess.run([harness.EGRESS, "sandbox", "render", "--target", "docker-daemon", "--out", workdir],
                       capture_output=True, text=True, timeout=20)
    check("render refuses invalid daemon.json with exit 2", r.returncode == 2 and "not valid JSON" in r.stderr,
          r.stderr)
    with open(daemon) as f:
        check("invalid daemon.json left untouched", f.read() == '{"debug": tru')
    os.unlink(daemon)
    r = subprocess.run([harness.EGRESS, "sandbox", "render", "--mode", "production", "--target", "k8s", "--out",
                        workdir], capture_output=True, text=True, timeout=20)
    check("render k8s writes four files (runtime classes, network policies, the egress deployment)",
          r.returncode == 0 and r.stdout.count("wrote ") == 4, r.stdout + r.stderr)

    left = [l for l in os.listdir("/sys/class/net") if l.startswith(("egsh", "egsu"))]
    check("verify left no veth behind", not left, str(left))
    check("verify left no proxy address on lo",
          "10.213.253.1" not in subprocess.run(["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True,
                                               text=True).stdout)


if __name__ == "__main__":
    harness.main(run)
