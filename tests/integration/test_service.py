"""docker/egress.service: systemd accepts it (`systemd-analyze verify`),
it keeps the sandboxing the deployment needs, its exposure score stays low,
and every flag its ExecStart passes is one `egress serve` knows."""
import os
import re
import shutil
import subprocess

import harness

UNIT = os.path.join(os.path.dirname(__file__), "..", "..", "docker", "egress.service")
REQUIRED = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "DynamicUser": "yes",
    "StateDirectory": "egress",
    "KillSignal": "SIGTERM",
}


def run(workdir, results):
    with open(UNIT) as f:
        text = f.read()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    for key, value in REQUIRED.items():
        results.check("%s=%s" % (key, value), settings.get(key) == value, repr(settings.get(key)))
    results.check("reload is SIGHUP", "kill -HUP $MAINPID" in settings.get("ExecReload", ""))

    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", text, re.M | re.S).group(1).replace("\\\n", " ")
    flags = re.findall(r"(--[a-z-]+)", exec_start)
    help_text = subprocess.run([harness.EGRESS, "serve", "--help"], capture_output=True, text=True).stdout
    for flag in flags:
        results.check("egress serve knows %s" % flag, flag in help_text)

    # systemd checks the unit with the binary where the test built it.
    unit = os.path.join(workdir, "egress.service")
    with open(unit, "w") as f:
        f.write(text.replace("/usr/local/bin/egress", harness.EGRESS))
    analyze = shutil.which("systemd-analyze")
    results.check("systemd-analyze is installed (scripts/install-deps.sh --test)", analyze is not None)
    if analyze:
        verify = subprocess.run([analyze, "verify", unit], capture_output=True, text=True)
        results.check("systemd-analyze verify accepts the unit", verify.returncode == 0 and not verify.stderr.strip(),
                      verify.stderr)
        security = subprocess.run([analyze, "security", "--offline=true", unit], capture_output=True, text=True)
        score = re.search(r"Overall exposure level for egress.service: ([0-9.]+)", security.stdout)
        results.check("exposure score at most 2.0 (systemd-analyze security)",
                      score is not None and float(score.group(1)) <= 2.0, security.stdout[-300:])


if __name__ == "__main__":
    harness.main(run)
