"""`egress ca init|show` and how `serve` takes (or refuses) the inspection CA:
file modes, refusal to overwrite, --force, key types, name constraints, the
trust instructions, a key with loose permissions, an inspect rule without
a CA, and the CA given in the configuration file."""
import os
import re
import stat
import subprocess

import harness
from harness import Egress

INSPECT_POLICY = """\
version: 1
mode: self-hosted
internal:
  - host: allowed.test
    ports: any
    inspect: true
"""


def egress(*args, cwd=None):
    return subprocess.run([harness.EGRESS, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def serve_refusal(workdir, *args):
    """Runs serve expecting it to refuse to start: (exit code, stderr)."""
    policy = os.path.join(workdir, "inspect.yaml")
    with open(policy, "w") as f:
        f.write(INSPECT_POLICY)
    out = subprocess.run([harness.EGRESS, "serve", "--policy", policy, "--listen", "127.0.0.1:0", "--admin-listen",
                          "off", "--audit-db", os.path.join(workdir, "refused.db"), *args],
                         capture_output=True, text=True, timeout=30)
    return out.returncode, out.stderr


def run(workdir, results):
    check = results.check

    out = egress("ca", "init", cwd=workdir)
    crt, key = os.path.join(workdir, "certs", "ca.crt"), os.path.join(workdir, "certs", "ca.key")
    check("ca init: exit 0, default directory certs/", out.returncode == 0 and os.path.exists(crt), out.stderr)
    check("ca init: the key is mode 0600", mode(key) == 0o600, oct(mode(key)))
    check("ca init: the certificate is mode 0644", mode(crt) == 0o644, oct(mode(crt)))
    with open(crt) as f:
        original = f.read()

    out = egress("ca", "init", cwd=workdir)
    check("ca init again: refused with exit 2, naming --force",
          out.returncode == 2 and "already exists" in out.stderr and "--force" in out.stderr, out.stderr)
    with open(crt) as f:
        check("ca init again: the CA is unchanged", f.read() == original)

    out = egress("ca", "show", "--cert", crt)
    fingerprint = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha256"],
                                 capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    check("ca show: the SHA-256 fingerprint matches openssl's", "sha256:       " + fingerprint in out.stdout, out.stdout)
    check("ca show: subject, validity and key type",
          "CN = egress inspection CA" in out.stdout and "valid until:" in out.stdout and "ECDSA P-256" in out.stdout,
          out.stdout)
    for words in ("update-ca-certificates", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"):
        check("ca show: explains %s" % words, words in out.stdout)
    check("ca show: no name constraints by default", re.search(r"constraints:\s+none", out.stdout) is not None)

    out = egress("ca", "init", "--force", "--key-type", "rsa", "--days", "30", cwd=workdir)
    with open(crt) as f:
        replaced = f.read()
    check("ca init --force: replaces the CA", out.returncode == 0 and replaced != original, out.stderr)
    check("ca init --key-type rsa: RSA 3072", "RSA 3072" in out.stdout, out.stdout)
    check("ca init --force: the new key is 0600 too", mode(key) == 0o600, oct(mode(key)))

    out = egress("ca", "init", "--out", os.path.join(workdir, "narrow"), "--permit", ".huggingface.co")
    check("ca init --permit: the CA carries name constraints",
          out.returncode == 0 and "DNS:huggingface.co" in out.stdout, out.stdout + out.stderr)
    out = egress("ca", "init", "--out", os.path.join(workdir, "bad"), "--key-type", "dsa")
    check("ca init --key-type dsa: refused with exit 2", out.returncode == 2 and "--key-type" in out.stderr, out.stderr)
    out = egress("ca", "show", "--cert", os.path.join(workdir, "missing.crt"))
    check("ca show of a missing file: exit 2 naming it", out.returncode == 2 and "missing.crt" in out.stderr,
          out.stderr)

    # serve and the CA.
    code, err = serve_refusal(workdir)
    check("serve with an inspect rule and no CA refuses to start (exit 2) and says how to fix it",
          code == 2 and "inspect: true needs the TLS inspection CA" in err and "egress ca init" in err, err)
    code, err = serve_refusal(workdir, "--ca-cert", crt)
    check("serve with --ca-cert but no --ca-key: exit 2", code == 2 and "--ca-key" in err, err)
    os.chmod(key, 0o644)
    code, err = serve_refusal(workdir, "--ca-cert", crt, "--ca-key", key)
    check("serve with a CA key readable by others refuses to start, naming the file and chmod 600",
          code == 2 and key in err and "chmod 600" in err and "0644" in err, err)
    check("the refusal does not print the key", "PRIVATE KEY" not in err)
    os.chmod(key, 0o640)
    code, err = serve_refusal(workdir, "--ca-cert", crt, "--ca-key", key)
    check("serve with a group-readable CA key refuses too", code == 2 and "0640" in err, err)
    os.chmod(key, 0o600)
    other = os.path.join(workdir, "narrow", "ca.key")
    code, err = serve_refusal(workdir, "--ca-cert", crt, "--ca-key", other)
    check("serve with a key that does not match the certificate: exit 2", code == 2 and "does not belong" in err, err)

    # The CA from the configuration file; the inspect policy then loads.
    e = Egress(workdir, INSPECT_POLICY, hosts={"allowed.test": "127.0.0.1"},
               extra_config="tls:\n  ca_cert: %s\n  ca_key: %s\n" % (crt, key), extra_args=("--admin-listen", "off"))
    check("serve with tls.ca_cert / tls.ca_key in the configuration starts with an inspect rule", e.proc.poll() is None)
    check("serve logs which CA it loaded, not the key", "TLS inspection CA" in e.log_text() and
          "PRIVATE KEY" not in e.log_text())
    check("serve stops with exit 0", e.stop() == 0)


if __name__ == "__main__":
    harness.main(run)
