"""Upstream connection reuse for plain HTTP: after a response has been
relayed whole, egress keeps the upstream TCP connection in the proxy
thread's pool for the next request of any worker connection to the same
host:port (src/proxy/upstream_pool.h, the pool inspected tunnels use).

Real peers: curl as the worker (a new process, so a new worker connection,
per request) and the keep-alive origin of test_inspect_pool.py in plain
HTTP, which numbers its connections and can drop a kept-alive one at will.

Proves: two worker connections in turn share one upstream connection (and
the metric counts it); another host:port never gets it; after a policy
reload that no longer allows the address the connection carries nothing; a
connection the origin closed while idle is never handed out; a GET that
meets a connection closed just then is sent again on a new one (200), a
body or an unsafe method without an Idempotency-Key is not (502); the audit
row's upstream_addr is the address the request really went to, pooled or
new; idle connections are closed after tls.upstream_pool_idle; with
tls.upstream_pool_size 0 every request opens its own connection. The
checks of those rules are test_inspect_pool.py's, run here on plain HTTP."""
import os
import signal

import harness
from harness import Egress
from test_inspect_pool import Origin, check_idle_close, check_reuse_rules, check_unpooled, reused, wait_until

POLICY = """\
version: 1
mode: self-hosted
allow:
  - host: allowed.test
    ports: any
  - host: other.test
    ports: any
  - host: twice.test
    ports: any
internal:
  - cidr: 127.0.0.0/8
    ports: any
"""

# The same, without the internal cidr: loopback addresses are refused again.
POLICY_NO_LOOPBACK = POLICY.split("internal:")[0]

FAMILY = "egress_proxy_upstream_connections_total"


def start_egress(workdir, name, extra_config=""):
    directory = os.path.join(workdir, name)
    os.makedirs(directory)
    admin = "127.0.0.1:%d" % harness.free_port()
    # twice.test: nothing listens on 127.0.0.3, so every new connection goes
    # to the second address, 127.0.0.2, which the audit row must name.
    egress = Egress(directory, POLICY, extra_config=extra_config, threads=1, extra_args=("--admin-listen", admin),
                    hosts={"allowed.test": "127.0.0.1", "other.test": "127.0.0.1",
                           "twice.test": "127.0.0.3, 127.0.0.2"})
    return egress, admin


def reload_policy(egress, text):
    with open(egress.policy, "w") as f:
        f.write(text)
    before = egress.log_text().count("policy reloaded")
    egress.proc.send_signal(signal.SIGHUP)
    return wait_until(lambda: egress.log_text().count("policy reloaded") > before, 5)


def run(workdir, results):
    check = results.check
    origin = Origin(also_on=("127.0.0.2",))
    base = "http://allowed.test:%d" % origin.port
    # One proxy thread, so every worker connection meets the same pool.
    egress, admin = start_egress(workdir, "pooled", "tls:\n  upstream_pool_idle: 700ms\n")
    try:
        get = lambda path, *args, host=base: harness.curl(egress.proxy, host + path, *args)

        # Worker connections in turn share one upstream connection.
        statuses = [get("/seq/%d" % i)[0] for i in range(4)]
        check("4 worker connections in turn: all 200", statuses == [200] * 4, str(statuses))
        connections = {r[0] for i in range(4) for r in origin.seen("/seq/%d" % i)}
        check("they reached the origin over one upstream connection", len(connections) == 1 and
              origin.connections == 1, str(origin.requests))
        check("metric: 1 new upstream connection, 3 reused", reused(admin, FAMILY) == (3, 1),
              str(reused(admin, FAMILY)))
        rows = egress.wait_for_events("kind = 'http' AND event = 'close' AND path LIKE '/seq/%'", count=4)
        check("audit: a row per request, status 200, the origin's address",
              len(rows) == 4 and all(r["status"] == 200 and r["upstream_addr"] == "127.0.0.1:%d" % origin.port
                                     for r in rows), str([(r["status"], r["upstream_addr"]) for r in rows]))

        # Another name on the same address and port, or another port: a
        # connection of its own.
        status = get("/other", host="http://other.test:%d" % origin.port)[0]
        other = origin.seen("/other")
        check("other.test on the same address and port: 200 over a new connection",
              status == 200 and len(other) == 1 and other[0][0] not in connections, "%s %s" % (status, other))
        second = Origin()
        try:
            status = get("/other-port", host="http://allowed.test:%d" % second.port)[0]
            check("allowed.test on another port: 200, from the origin on that port, over its own connection",
                  status == 200 and len(second.seen("/other-port")) == 1 and not origin.seen("/other-port"),
                  "%s %s" % (status, second.requests))
        finally:
            second.close()

        # upstream_addr is the address the request went over: twice.test's
        # first address refuses, its second answers, and the pooled
        # connection there carries the next request.
        twice = [get("/twice/%d" % i, host="http://twice.test:%d" % origin.port)[0] for i in range(2)]
        seen = [origin.seen("/twice/%d" % i) for i in range(2)]
        check("twice.test: both 200 over one connection, accepted on 127.0.0.2",
              twice == [200, 200] and len(seen[0]) == len(seen[1]) == 1 and seen[0][0][0] == seen[1][0][0] and
              origin.local_address[seen[0][0][0]] == "127.0.0.2", "%s %s" % (twice, seen))
        rows = egress.wait_for_events("event = 'close' AND path LIKE '/twice/%'", count=2)
        check("audit: upstream_addr 127.0.0.2 on the new and the pooled request alike",
              [r["upstream_addr"] for r in rows] == ["127.0.0.2:%d" % origin.port] * 2,
              str([r["upstream_addr"] for r in rows]))

        # A reload that no longer allows the address: the pooled connection
        # carries nothing; allowed again, it may (it is checked per request).
        get("/before-reload")
        pooled_on = origin.seen("/before-reload")[0][0]
        check("reload without the internal cidr", reload_policy(egress, POLICY_NO_LOOPBACK))
        status, head, body, err = get("/after-reload")
        check("after the reload: 403, and nothing reached the origin",
              status == 403 and not origin.seen("/after-reload"), "%s %s" % (status, origin.requests[-2:]))
        check("reload with the internal cidr again", reload_policy(egress, POLICY))
        status = get("/allowed-again")[0]
        check("allowed again: 200", status == 200 and len(origin.seen("/allowed-again")) == 1,
              "%s %s" % (status, pooled_on))

        # The rules inspected tunnels' pool keeps, checked the same way.
        check_reuse_rules(check, egress, origin, get, "http")
        check_idle_close(check, origin, get)
    finally:
        code = egress.stop()
        check("egress stops cleanly (exit 0)", code == 0, "%s\n%s" % (code, egress.log_text()[-3000:]))

    # With the pool off, every request has its own upstream connection.
    egress, admin = start_egress(workdir, "unpooled", "tls:\n  upstream_pool_size: 0\n")
    try:
        check_unpooled(check, origin, lambda path: harness.curl(egress.proxy, base + path),
                       lambda: reused(admin, FAMILY))
    finally:
        code = egress.stop()
        check("the second egress stops cleanly (exit 0)", code == 0, egress.log_text()[-3000:])
        origin.close()


if __name__ == "__main__":
    harness.main(run)
