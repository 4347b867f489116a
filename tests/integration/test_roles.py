"""Roles and hot reload, end to end. Two workers connect from two loopback
source addresses (127.0.0.2 and 127.0.0.3) and get their roles' different
decisions; a token in Proxy-Authorization selects a role and a wrong one
gets 407; the policy file is replaced 20 times (valid and invalid
alternately, some by ConfigMap-style symlink swaps) while a bounded client
loop runs, and no request fails except by the decision of the policy in
force."""
import hashlib
import os
import subprocess
import threading
import time

import harness
from harness import Egress, Upstream, curl, header

TOKEN = "s3cret-worker-token"

POLICY_A = """\
version: 1
mode: self-hosted
internal:
  - host: shared.test
    ports: any
roles:
  comfyui:
    sources: [127.0.0.2/32]
    internal:
      - host: hf.test
        ports: any
  ai_worker:
    sources: [127.0.0.3/32]
    tokens: [sha256:%s]
    internal:
      - host: gh.test
        ports: any
""" % hashlib.sha256(TOKEN.encode()).hexdigest()

# B differs from A in one place: the shared internal host also admits flip.test.
POLICY_B = POLICY_A.replace("  - host: shared.test\n    ports: any\n",
                            "  - host: shared.test\n    ports: any\n  - host: flip.test\n    ports: any\n")
INVALID = POLICY_A.replace("ports: any", "ports: [99999]", 1)

NAMES = ["shared.test", "hf.test", "gh.test", "flip.test"]


def run(workdir, results):
    check = results.check
    up = Upstream()
    egress = Egress(workdir, POLICY_A, hosts={n: "127.0.0.1" for n in NAMES},
                    extra_config="policy_poll_interval: 100ms\n")

    def status_from(source, host, *args):
        got, head, _, err = curl(egress.proxy, "http://%s:%d/" % (host, up.port), "--interface", source, *args)
        return got, header(head, "X-Egress-Reason")

    # -- Source addresses select roles. --
    table = [
        ("127.0.0.2", "hf.test", 200), ("127.0.0.2", "gh.test", 403), ("127.0.0.2", "shared.test", 200),
        ("127.0.0.3", "gh.test", 200), ("127.0.0.3", "hf.test", 403), ("127.0.0.3", "shared.test", 200),
        ("127.0.0.1", "hf.test", 403), ("127.0.0.1", "gh.test", 403), ("127.0.0.1", "shared.test", 200),
    ]
    for source, host, expected in table:
        got, reason = status_from(source, host)
        check("from %s to %s: %d" % (source, host, expected), got == expected, "got %d %s" % (got, reason))
        predicted = harness.egress_check(egress.policy, egress.config, "http://%s:%d/" % (host, up.port),
                                         "--source", source)
        check("egress check --source %s agrees for %s" % (source, host),
              (predicted["decision"] == "allow") == (expected == 200), str(predicted))
    rows = egress.wait_for_events("event = 'decision' AND host IN ('hf.test', 'gh.test')", count=6)
    roles = {(r["client_addr"].rsplit(":", 1)[0], r["host"]): r["role"] for r in rows}
    check("audit names role comfyui for 127.0.0.2", roles.get(("127.0.0.2", "hf.test")) == "comfyui", str(roles))
    check("audit names role ai_worker for 127.0.0.3", roles.get(("127.0.0.3", "gh.test")) == "ai_worker", str(roles))
    check("audit leaves the role empty for a worker with none", roles.get(("127.0.0.1", "hf.test")) is None, str(roles))

    # -- Tokens select roles; a wrong token is refused with 407. --
    got, reason = status_from("127.0.0.1", "gh.test", "--proxy-user", "worker:" + TOKEN)
    check("Basic token selects ai_worker", got == 200, "%d %s" % (got, reason))
    got, reason = status_from("127.0.0.1", "gh.test", "--proxy-header", "Proxy-Authorization: Bearer " + TOKEN)
    check("Bearer token selects ai_worker", got == 200, "%d %s" % (got, reason))
    got, head, body, _ = curl(egress.proxy, "http://gh.test:%d/" % up.port, "--proxy-user", "worker:wrong")
    check("a wrong token gets 407 unknown-token", got == 407 and header(head, "X-Egress-Reason") == "unknown-token",
          head)
    check("407 asks for Basic credentials", (header(head, "Proxy-Authenticate") or "").startswith("Basic"), head)
    seen = [r for r in up.seen if "proxy-authorization" in r["headers"]]
    check("tokens never reach the upstream", not seen, str(seen[:1]))

    # -- Hot reload under load. --
    stop = threading.Event()
    failures, counts = [], {"shared": 0, "flip": {}}
    lock = threading.Lock()

    def client_loop():
        deadline = time.time() + 60
        while not stop.is_set() and time.time() < deadline:
            got, reason = status_from("127.0.0.1", "shared.test")
            flip, flip_reason = status_from("127.0.0.1", "flip.test")
            with lock:
                counts["shared"] += 1
                counts["flip"][flip] = counts["flip"].get(flip, 0) + 1
                if got != 200:
                    failures.append(("shared.test", got, reason))
                if flip not in (200, 403) or (flip == 403 and flip_reason != "not-allowed"):
                    failures.append(("flip.test", flip, flip_reason))

    loaders = [threading.Thread(target=client_loop) for _ in range(3)]
    for t in loaders:
        t.start()

    def wait_for_flip(expected, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if status_from("127.0.0.1", "flip.test")[0] == expected:
                return True
            time.sleep(0.05)
        return False

    # The policy path becomes a symlink chain, as in a Kubernetes ConfigMap:
    # policy.yaml -> ..data/policy.yaml, ..data -> ..v<N>/
    configmap = os.path.join(workdir, "configmap")
    os.makedirs(configmap)

    def swap_symlink(text, n):
        version = os.path.join(configmap, "..v%d" % n)
        os.makedirs(version)
        with open(os.path.join(version, "policy.yaml"), "w") as f:
            f.write(text)
        tmp = os.path.join(configmap, "..data_tmp")
        os.symlink("..v%d" % n, tmp)
        os.rename(tmp, os.path.join(configmap, "..data"))

    swap_symlink(POLICY_A, 0)
    os.remove(egress.policy)
    os.symlink(os.path.join(configmap, "..data", "policy.yaml"), egress.policy)

    failed_reloads_before = egress.log_text().count("policy reload failed")
    expected_allowed = False
    for n in range(1, 21):
        if n % 2 == 1:  # invalid: the previous policy stays
            if n % 4 == 1:
                swap_symlink(INVALID, n)
            else:
                with open(os.path.join(configmap, "..data", "policy.yaml"), "w") as f:
                    f.write(INVALID)
            time.sleep(0.4)
            held = wait_for_flip(200 if expected_allowed else 403, timeout=1)
            check("swap %d (invalid) leaves the previous policy in force" % n, held)
        else:
            expected_allowed = not expected_allowed
            text = POLICY_B if expected_allowed else POLICY_A
            if n % 4 == 2:
                swap_symlink(text, n)
            else:
                with open(os.path.join(configmap, "..data", "policy.yaml"), "w") as f:
                    f.write(text)
            check("swap %d (valid) takes effect" % n, wait_for_flip(200 if expected_allowed else 403))
    stop.set()
    for t in loaders:
        t.join(70)
    check("the client loop ran throughout", counts["shared"] > 20, str(counts))
    check("no request failed except by the policy in force", not failures, str(failures[:5]))
    check("both policies were seen by the loop", set(counts["flip"]) == {200, 403}, str(counts))
    failed_reloads = egress.log_text().count("policy reload failed") - failed_reloads_before
    check("every invalid replacement was logged with FILE:LINE", failed_reloads >= 10 and
          "policy.yaml:" in egress.log_text(), "%d failures logged" % failed_reloads)
    check("egress stops cleanly", egress.stop() == 0)

    # -- With polling off, SIGHUP is what reloads. --
    quiet_dir = os.path.join(workdir, "sighup")
    os.makedirs(quiet_dir)
    egress = Egress(quiet_dir, POLICY_A, hosts={n: "127.0.0.1" for n in NAMES},
                    extra_config="policy_poll_interval: 0s\n")
    with open(egress.policy, "w") as f:
        f.write(POLICY_B)
    time.sleep(0.5)
    check("without polling a changed file is not picked up by itself", status_from("127.0.0.1", "flip.test")[0] == 403)
    egress.proc.send_signal(1)
    check("SIGHUP reloads the policy", wait_for_flip(200))
    check("egress stops cleanly after SIGHUP", egress.stop() == 0)
    up.close()


if __name__ == "__main__":
    harness.main(run)
