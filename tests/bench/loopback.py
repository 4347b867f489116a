"""What the small benches share: free loopback ports, waiting for a
listener, stopping what they started, and a loopback setup of nginx
answering "ok" behind an egress that allows allowed.test (127.0.0.1).
Used by thread_balance.py, syscalls.py, inspect_bench.py and tunnel_bulk.py."""
import os
import signal
import socket
import subprocess
import time

POLICY = """\
version: 1
mode: self-hosted
internal:
  - host: allowed.test
    ports: any
"""
CONFIG = """\
dns:
  hosts_file: false
  hosts: {allowed.test: [127.0.0.1]}
log_level: warn
"""
NGINX = """\
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:%(http)d;
%(tls)s    location / { return 200 "ok\\n"; }
  }
}
"""
TLS = """\
    listen 127.0.0.1:%(https)d ssl;
    ssl_certificate %(dir)s/upstream.crt;
    ssl_certificate_key %(dir)s/upstream.key;
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on port %d" % port)


def stop(process, how=signal.SIGTERM):
    """Stops a process this bench started: `how`, then SIGKILL after 15 s."""
    process.send_signal(how)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_nginx(work, http_port, https_port=None):
    """nginx answering 200 "ok" on http_port (and over TLS on https_port,
    with a self-signed allowed.test certificate made here); stop it with
    stop(process, signal.SIGQUIT)."""
    tls = ""
    if https_port:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=allowed.test", "-keyout", os.path.join(work, "upstream.key"),
                        "-out", os.path.join(work, "upstream.crt")], check=True, capture_output=True, timeout=30)
        tls = TLS % {"dir": work, "https": https_port}
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX % {"dir": work, "http": http_port, "tls": tls})
    nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", conf, "-g", "daemon off;"])
    try:
        for port in (http_port, https_port):
            if port:
                wait_for_port(port)
    except RuntimeError:
        stop(nginx, signal.SIGQUIT)
        raise
    return nginx


def start_egress(binary, work, admin="off", policy=POLICY, config=CONFIG):
    """`binary serve` with `policy` and `config` (POLICY and CONFIG unless
    given) on a free port, 2 threads, its own audit file in `work`:
    (process, port). The caller stops it."""
    for name, text in (("policy.yaml", policy), ("egress.yaml", config)):
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    port = free_port()
    egress = subprocess.Popen([binary, "serve", "--config", os.path.join(work, "egress.yaml"),
                               "--policy", os.path.join(work, "policy.yaml"), "--threads", "2",
                               "--listen", "127.0.0.1:%d" % port, "--admin-listen", admin,
                               "--audit-db", os.path.join(work, "audit-%d.db" % port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        if admin != "off":
            wait_for_port(int(admin.rsplit(":", 1)[1]))
    except RuntimeError:
        stop(egress)
        raise
    return egress, port
