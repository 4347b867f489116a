"""A 1 GiB download through HTTP forwarding and through a CONNECT tunnel
must stream: egress's peak resident memory (VmHWM) stays under 64 MiB.
Prints the figures so docs/performance.md can quote them."""
import harness
from harness import Egress, Upstream

GIB = 1 << 30
LIMIT_KIB = 64 * 1024

POLICY = harness.ALLOWED_TEST_POLICY


def run(workdir, results):
    cert = harness.make_upstream_cert(workdir)
    plain = Upstream()
    tls = Upstream(tls_dir=workdir)
    egress = Egress(workdir, POLICY, hosts={"allowed.test": "127.0.0.1"})
    for name, url, args in (
        ("http forwarding", "http://allowed.test:%d/bytes/%d" % (plain.port, GIB), []),
        ("CONNECT tunnel", "https://allowed.test:%d/bytes/%d" % (tls.port, GIB), ["--cacert", cert]),
    ):
        out = harness.subprocess.run(
            ["curl", "-sS", "--noproxy", "", "-x", egress.proxy, "-o", "/dev/null", "--max-time", "240",
             "-w", "%{http_code} %{size_download} %{speed_download}", *args, url],
            capture_output=True, text=True, timeout=260)
        status, size, speed = (out.stdout.split() + ["0", "0", "0"])[:3]
        rss = egress.peak_rss_kib()
        print("%s: status %s, %s bytes at %.0f MiB/s, egress peak RSS %.1f MiB"
              % (name, status, size, float(speed) / (1 << 20), rss / 1024.0))
        results.check("%s: 1 GiB arrives whole" % name, status == "200" and int(size) == GIB, out.stdout + out.stderr)
        results.check("%s: peak RSS under 64 MiB" % name, 0 < rss < LIMIT_KIB, "%d KiB" % rss)
    results.check("egress stops cleanly", egress.stop() == 0)
    plain.close()
    tls.close()


if __name__ == "__main__":
    harness.main(run)
