"""The attack suite (issue 5, item 6): a hostile worker tries every known
way around the allowlist against the real `egress` binary. Each case asserts
that the worker got a refusal (status and X-Egress-Reason, or a closed
connection), that the decision is in the audit log with its precise reason
code, and that a canary upstream never saw a byte.

The canaries are what make a case able to fail. Every name the attacks use
is mapped (dns.hosts) to 127.0.0.2, and the policy has `internal` rules on
any port for allowed.test, .wild.test, *.star.test, a regex and
.blocked.test, so a matching mistake would be *allowed* and connect to
127.0.0.2:P, where P is the port of the case's own canary listener.
Smuggling, header and version cases aim at allowed.test:P itself: only the
parser stands between them and the canary. The IP-literal cases run against
a developer-mode egress, where public destinations are allowed and only the
address classification refuses loopback; their canary listens on
127.0.0.1:P and [::1]:P, where a wrongly allowed literal would land. A
legitimate upstream (127.0.0.2:U) records every path; no case's marker path
may reach it either.

Safety: the suite re-executes itself in a private network namespace
(`unshare -rn`, loopback only) when it can, so even a buggy egress cannot
send a packet to 169.254.169.254 or anywhere else. Without a namespace, the
developer-mode policy denies every address outside loopback with `deny`
cidrs, and the cases expect `deny-rule` for those targets instead.

Cases are listed in CASES with their family; `--list` prints the counts as
docs/security.md's table, and the run checks that the table there matches.
"""
import concurrent.futures
import contextlib
import fcntl
import http.server
import ipaddress
import os
import re
import resource
import selectors
import shutil
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import threading
import time

import harness
from framing_cases import framing_cases

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CANARY_HOST = "127.0.0.2"
NETNS = os.environ.get("EGRESS_ATTACKS_NETNS") == "1"

FAMILIES = [
    ("host", "Host-matching tricks (prefix/suffix confusion, case, trailing dots, percent-encoding, userinfo, "
             "backslashes, IDN homographs, over-long names, NUL)"),
    ("literal", "IPv4 literal spellings and IPv6 forms of loopback and the metadata address"),
    ("mismatch", "Host header / request-target mismatches"),
    ("fronting", "Domain fronting and non-TLS bytes through CONNECT"),
    ("ports", "Ports other than allowed"),
    ("smuggling", "Request smuggling and malformed heads"),
    ("pipelining", "Pipelined requests on one connection"),
    ("scheme", "Unsupported schemes"),
    ("version", "HTTP/2 preface and other HTTP versions"),
    ("exhaustion", "Resource exhaustion and slow clients"),
]


class Case:
    def __init__(self, family, name, instance, run, **spec):
        self.family = family
        self.name = name
        self.instance = instance
        self.run = run
        self.spec = spec


CASES = []


def refusal(family, name, request, status, reason, instance="S", close=False, source="127.0.0.1", timeout=4):
    """A raw request (bytes with {P} canary port, {U} legitimate port, {M}
    marker path placeholders) that must be refused with `status` (None: the
    connection is closed without an answer) and audited as `reason`."""
    CASES.append(Case(family, name, instance, lambda *a: run_refusal(*a), request=request, status=status, reason=reason,
                      close=close, source=source, timeout=timeout))


def tunnel(family, name, authority, payload, reason, with_connect=False):
    """CONNECT to an allowed authority, then `payload(ctx)` -> list of byte
    chunks: the tunnel must be closed with `reason` and nothing relayed."""
    CASES.append(Case(family, name, "S", lambda *a: run_tunnel(*a), authority=authority, payload=payload, reason=reason,
                      with_connect=with_connect))


def custom(family, name, instance, function, **spec):
    CASES.append(Case(family, name, instance, function, **spec))


def GET(authority, extra=b"", method=b"GET", version=b"HTTP/1.1"):
    return (method + b" http://" + authority + b"{M} " + version + b"\r\nHost: " + authority + b"\r\n" + extra +
            b"\r\n")


def CONNECT(authority, extra=b""):
    return b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n" + extra + b"\r\n"


def fill(template, port, upstream_port, marker):
    return (template.replace(b"{P}", str(port).encode()).replace(b"{U}", str(upstream_port).encode())
            .replace(b"{M}", marker.encode()))


# ---------------------------------------------------------------------------
# Host-matching tricks, absolute-form HTTP and CONNECT.
# ---------------------------------------------------------------------------
HOMOGRAPH = "\u0430llowed.test"  # Cyrillic a
HOMOGRAPH_A = HOMOGRAPH.encode("idna")  # xn--llowed-…
LONG_LABEL = b"a" * 64 + b".wild.test"
LONG_NAME = b"b" + b".".join([b"a" * 60] * 4) + b".wild.test"  # 254 characters, every label <= 63
HUGE_NAME = b".".join([b"a" * 60] * 18) + b".wild.test"  # ~1100 characters

for label, authority, reason in [
    ("prefix confusion evilallowed.test", b"evilallowed.test", "not-allowed"),
    ("suffix confusion allowed.test.attacker.test", b"allowed.test.attacker.test", "not-allowed"),
    ("label extension allowed.testattacker.test", b"allowed.testattacker.test", "not-allowed"),
    ("domain rule without a dot boundary notwild.test", b"notwild.test", "not-allowed"),
    ("domain rule as a prefix wild.test.attacker.test", b"wild.test.attacker.test", "not-allowed"),
    ("*.star.test apex", b"star.test", "not-allowed"),
    ("*.star.test apex in upper case with a trailing dot", b"STAR.TEST.", "not-allowed"),
    ("regex rule unanchored at the start xapi1.regex.test", b"xapi1.regex.test", "not-allowed"),
    ("regex rule unanchored at the end", b"api1.regex.test.attacker.test", "not-allowed"),
    ("regex rule's escaped dot as any character", b"api1xregex.test", "not-allowed"),
    ("deny rule dodged by upper case", b"SECRET.BLOCKED.TEST", "deny-rule"),
    ("deny rule dodged by a trailing dot", b"www.secret.blocked.test.", "deny-rule"),
    ("deny rule dodged by mixed case and a trailing dot", b"Www.Secret.Blocked.Test.", "deny-rule"),
    ("two trailing dots", b"allowed.test..", "invalid-host"),
    ("leading dot", b".allowed.test", "invalid-host"),
    ("empty label", b"allowed..test", "invalid-host"),
    ("percent-encoded letter %61llowed.test", b"%61llowed.test", "invalid-host"),
    ("percent-encoded dot", b"allowed%2etest", "invalid-host"),
    ("percent-encoded NUL", b"allowed.test%00.attacker.test", "invalid-host"),
    ("IDN homograph as an A-label", HOMOGRAPH_A, "not-allowed"),
    ("IDN homograph A-label in upper case", HOMOGRAPH_A.upper(), "not-allowed"),
    ("fake A-label that decodes to ASCII", b"xn--allowed-.test", "invalid-host"),
    ("label over 63 characters", LONG_LABEL, "invalid-host"),
    ("name over 253 characters", LONG_NAME, "invalid-host"),
    ("name over 1000 characters", HUGE_NAME, "invalid-host"),
]:
    refusal("host", "http: " + label, GET(authority + b":{P}"), 400 if reason == "invalid-host" else 403, reason)

for label, url, reason in [
    ("fragment hiding @allowed.test", b"http://attacker.test#@allowed.test:{P}{M}", "not-allowed"),
    ("query hiding @allowed.test", b"http://attacker.test?@allowed.test:{P}{M}", "not-allowed"),
]:
    refusal("host", "http: " + label, b"GET " + url + b" HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 403, reason)
for label, url in [
    ("bracketed name [allowed.test]", b"http://[allowed.test]:{P}{M}"),
    ("userinfo allowed.test@attacker.test", b"http://allowed.test@attacker.test:{P}{M}"),
    ("userinfo on the allowed host", b"http://attacker.test@allowed.test:{P}{M}"),
    ("userinfo with a port", b"http://allowed.test:{U}@attacker.test:{P}{M}"),
    ("empty userinfo", b"http://@allowed.test:{P}{M}"),
    ("backslash before @", b"http://allowed.test\\@attacker.test:{P}{M}"),
    ("backslash as a path separator", b"http://attacker.test:{P}\\allowed.test{M}"),
    ("backslashes for slashes", b"http:\\\\allowed.test:{P}\\{M}"),
]:
    refusal("host", "http: " + label, b"GET " + url + b" HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400, "bad-request")

for label, authority, reason in [
    ("prefix confusion", b"evilallowed.test:{P}", "not-allowed"),
    ("suffix confusion", b"allowed.test.attacker.test:{P}", "not-allowed"),
    ("domain rule without a dot boundary", b"notwild.test:{P}", "not-allowed"),
    ("*.star.test apex", b"star.test:{P}", "not-allowed"),
    ("regex rule unanchored at the end", b"api1.regex.test.attacker.test:{P}", "not-allowed"),
    ("deny rule dodged by case and a trailing dot", b"SECRET.BLOCKED.TEST.:{P}", "deny-rule"),
    ("userinfo", b"allowed.test@attacker.test:{P}", "invalid-host"),
    ("backslash", b"attacker.test\\allowed.test:{P}", "invalid-host"),
    ("percent-encoding", b"%61llowed.test:{P}", "invalid-host"),
    ("two trailing dots", b"allowed.test..:{P}", "invalid-host"),
    ("label over 63 characters", LONG_LABEL + b":{P}", "invalid-host"),
    ("IDN homograph as an A-label", HOMOGRAPH_A + b":{P}", "not-allowed"),
    ("two ports", b"allowed.test:{U}:{P}", "invalid-host"),
    ("a path after the port", b"allowed.test:{P}/x", "invalid-host"),
]:
    refusal("host", "CONNECT: " + label, CONNECT(authority), 400 if reason == "invalid-host" else 403, reason)

# Contract (issue 5 item 3): control characters and non-ASCII in the target.
refusal("host", "http: raw UTF-8 homograph in the target", GET(HOMOGRAPH.encode() + b":{P}"), 400, "invalid-target",
        close=True)
refusal("host", "http: NUL inside the host", GET(b"allowed.test\x00.attacker.test:{P}"), 400, "invalid-target",
        close=True)
refusal("host", "CONNECT: raw UTF-8 homograph", CONNECT(HOMOGRAPH.encode() + b":{P}"), 400, "invalid-target",
        close=True)
refusal("host", "CONNECT: NUL inside the host", CONNECT(b"allowed.test\x00.attacker.test:{P}"), 400,
        "invalid-target", close=True)

# ---------------------------------------------------------------------------
# IP literals against the developer-mode instance (D). The canary listens on
# 127.0.0.1:P and [::1]:P.
# ---------------------------------------------------------------------------
LOOPBACK_SPELLINGS = [
    ("dotted quad", "127.0.0.1"), ("decimal", "2130706433"), ("octal", "0177.0.0.1"), ("hex", "0x7f000001"),
    ("hex short form", "0x7f.1"), ("short form", "127.1"), ("three parts", "127.0.1"),
    ("upper-case hex", "0X7F.0.0.1"), ("octal 32-bit", "017700000001"), ("zero-padded", "127.000.000.001"),
    ("mixed hex and octal", "0x7f.0.0.01"), ("per-part hex", "0x7f.0x0.0x0.0x1"), ("trailing dot", "127.0.0.1."),
    ("another loopback address", "127.8.9.10"), ("zero", "0"), ("0.0.0.0", "0.0.0.0"),
]
METADATA_SPELLINGS = [
    ("dotted quad", "169.254.169.254"), ("decimal", "2852039166"), ("hex", "0xa9fea9fe"),
    ("octal", "0251.0376.0251.0376"), ("two-part short form", "169.16689662"), ("three-part short form",
                                                                                "169.254.43518"),
    ("per-part hex", "0xA9.0xFE.0xA9.0xFE"), ("mixed", "0251.254.0xa9.254"), ("trailing dot", "169.254.169.254."),
]
IPV6_FORMS = [
    ("[::1]", "::1"), ("[0:0:0:0:0:0:0:1]", "::1"), ("[::ffff:127.0.0.1] (v4-mapped)", "::ffff:127.0.0.1"),
    ("[::ffff:7f00:1] (v4-mapped, hex)", "::ffff:7f00:1"), ("[::] (unspecified)", "::"),
    ("[64:ff9b::7f00:1] (NAT64 of loopback)", "64:ff9b::7f00:1"),
    ("[64:ff9b::127.0.0.1] (NAT64, dotted)", "64:ff9b::127.0.0.1"),
    ("[2002:7f00:1::1] (6to4 of loopback)", "2002:7f00:1::1"),
    ("[::ffff:169.254.169.254] (v4-mapped metadata)", "::ffff:169.254.169.254"),
    ("[::ffff:a9fe:a9fe] (v4-mapped metadata, hex)", "::ffff:a9fe:a9fe"),
    ("[64:ff9b::a9fe:a9fe] (NAT64 of metadata)", "64:ff9b::a9fe:a9fe"),
    ("[2002:a9fe:a9fe::1] (6to4 of metadata)", "2002:a9fe:a9fe::1"),
    ("[fd00:ec2::254] (AWS IPv6 metadata, unique local)", "fd00:ec2::254"),
    ("[fe80::1] (link-local)", "fe80::1"),
    ("[::127.0.0.1] (IPv4-compatible, deprecated)", "::127.0.0.1"),
    ("[::ffff:0:7f00:1] (SIIT IPv4-translated)", "::ffff:0:7f00:1"),
    ("[64:ff9b:1::7f00:1] (local-use NAT64)", "64:ff9b:1::7f00:1"),
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe] (Teredo, client 127.0.0.1)", "2001:0:4136:e378:8000:63bf:80ff:fffe"),
]

# Addresses that stay reachable (and are refused as private) even without a
# network namespace; anything else is denied by a cidr in that fallback.
KEEP = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "0.0.0.0/32", "::1/128", "::/128", "::ffff:127.0.0.0/104",
                                          "::ffff:0.0.0.0/128")]


def literal_reason(address):
    if NETNS:
        return "private-address"
    a = ipaddress.ip_address(address)
    return "private-address" if any(a in n for n in KEEP if n.version == a.version) else "deny-rule"


def canonical_v4(spelling):
    """What egress must fold a spelling to (computed here independently of
    egress, with the WHATWG rules inet_aton also follows)."""
    return socket.inet_ntoa(socket.inet_aton(spelling.rstrip(".")))


for what, spellings in (("loopback", LOOPBACK_SPELLINGS), ("metadata", METADATA_SPELLINGS)):
    for label, spelling in spellings:
        address = canonical_v4(spelling)
        if spelling.endswith("."):
            # Boost.URL 1.81 takes "127.0.0.1." for an IPv4 address followed
            # by junk and refuses the URL: a refusal, if a blunt one.
            refusal("literal", "http: %s, %s %s" % (what, label, spelling), GET(spelling.encode() + b":{P}"), 400,
                    "bad-request", instance="D")
            refusal("literal", "CONNECT: %s, %s %s" % (what, label, spelling), CONNECT(spelling.encode() + b":{P}"),
                    403, literal_reason(address), instance="D")
        else:
            refusal("literal", "http: %s, %s %s" % (what, label, spelling), GET(spelling.encode() + b":{P}"), 403,
                    literal_reason(address), instance="D")
        CASES[-1].spec["audit_host"] = address
for label, address in IPV6_FORMS:
    refusal("literal", "http: IPv6 " + label, GET(b"[" + address.encode() + b"]:{P}"), 403, literal_reason(address),
            instance="D")
    CASES[-1].spec["audit_host"] = str(ipaddress.ip_address(address))
refusal("literal", "http: IPv6 zone id [fe80::1%25lo]", GET(b"[fe80::1%25lo]:{P}"), 400, "bad-request", instance="D")
refusal("literal", "http: IPv6 zone id on loopback [::1%25lo]", GET(b"[::1%25lo]:{P}"), 400, "bad-request",
        instance="D")
refusal("literal", "http: unbracketed IPv6", b"GET http://::1:{P}{M} HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad-request",
        instance="D")
for label, authority, address in [
    ("decimal loopback", b"2130706433", "127.0.0.1"), ("hex short form", b"0x7f.1", "127.0.0.1"),
    ("octal metadata", b"0251.0376.0251.0376", "169.254.169.254"), ("[::1]", b"[::1]", "::1"),
    ("[::ffff:7f00:1]", b"[::ffff:7f00:1]", "::ffff:7f00:1"), ("NAT64 of loopback", b"[64:ff9b::7f00:1]",
                                                                "64:ff9b::7f00:1"),
]:
    refusal("literal", "CONNECT: " + label, CONNECT(authority + b":{P}"), 403, literal_reason(address), instance="D")
    CASES[-1].spec["audit_host"] = address
refusal("literal", "CONNECT: IPv6 zone id", CONNECT(b"[::1%lo]:{P}"), 400, "invalid-host", instance="D")
for label, name, address in [
    ("a name that resolves to loopback", b"rebind.test", "127.0.0.1"),
    ("a name that resolves to the metadata address", b"meta.test", "169.254.169.254"),
    ("a name with one public and one loopback address", b"mixed.test", "198.51.100.7"),
    ("a name that resolves to v4-mapped loopback", b"mapped.test", "::ffff:127.0.0.1"),
    ("a name that resolves to 0.0.0.0 (reaches loopback)", b"zero.test", "0.0.0.0"),
]:
    refusal("literal", "http: " + label, GET(name + b":{P}"), 403, literal_reason(address), instance="D")

# ---------------------------------------------------------------------------
# Host header / request-target mismatches (instance S).
# ---------------------------------------------------------------------------
refusal("mismatch", "denied URI with an allowed Host header",
        b"GET http://denied.test:{P}{M} HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 403, "not-allowed")
refusal("mismatch", "address literal URI with an allowed Host header",
        b"GET http://127.0.0.2:{P}{M} HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 403, "not-allowed")
refusal("mismatch", "denied URI with an allowed X-Forwarded-Host",
        b"GET http://denied.test:{P}{M} HTTP/1.1\r\nHost: denied.test\r\nX-Forwarded-Host: allowed.test:{P}\r\n"
        b"Forwarded: host=allowed.test\r\n\r\n", 403, "not-allowed")
refusal("mismatch", "origin-form request with an allowed Host header",
        b"GET {M} HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 400, "origin-form")
refusal("mismatch", "HTTP/1.0 denied URI with an allowed Host header",
        b"GET http://denied.test:{P}{M} HTTP/1.0\r\nHost: allowed.test:{P}\r\n\r\n", 403, "not-allowed")
refusal("mismatch", "URI without a host, Host header allowed",
        b"GET http://{M} HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 400, "bad-request")
refusal("mismatch", "URI with only a port, Host header allowed",
        b"GET http://:{P}{M} HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 400, "bad-request")
refusal("mismatch", "asterisk-form with an allowed Host header",
        b"OPTIONS * HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 400, "bad-request")
refusal("mismatch", "CONNECT to a denied host with an allowed Host header",
        b"CONNECT denied.test:{P} HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 403, "not-allowed")
refusal("mismatch", "lower-case connect method",
        b"connect allowed.test:{P} HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 400, "unsupported-scheme")
refusal("mismatch", "authority-form on GET (host:port as the target)",
        b"GET allowed.test:{P} HTTP/1.1\r\nHost: allowed.test:{P}\r\n\r\n", 400, "unsupported-scheme")

# ---------------------------------------------------------------------------
# Ports (instance S): ports.test is internal on port U only.
# ---------------------------------------------------------------------------
for label, template, status, reason in [
    ("http: another port than the internal rule's", GET(b"ports.test:{P}"), 403, "not-allowed"),
    ("http: default port 80", GET(b"ports.test"), 403, "not-allowed"),
    ("http: another port than the allow rule's", GET(b"public.test:{P}"), 403, "port-not-allowed"),
    ("http: port 65536 + U (16-bit wrap to the allowed port)", b"GET http://ports.test:WRAP{M} HTTP/1.1\r\n\r\n",
     400, "bad-request"),
    ("http: port 0", GET(b"ports.test:0"), 400, "bad-request"),
    ("http: leading zeros on the allowed port", GET(b"ports.test:0{U}"), 400, "bad-request"),
    ("http: hex port", GET(b"ports.test:0x50"), 400, "bad-request"),
    ("http: negative port", GET(b"ports.test:-1"), 400, "bad-request"),
    ("CONNECT: another port than the internal rule's", CONNECT(b"ports.test:{P}"), 403, "not-allowed"),
    ("CONNECT: another port than the allow rule's", CONNECT(b"public.test:{P}"), 403, "port-not-allowed"),
    ("CONNECT: port 65536 + U", CONNECT(b"ports.test:WRAP"), 400, "invalid-host"),
    ("CONNECT: port 0", CONNECT(b"ports.test:0"), 400, "invalid-host"),
    ("CONNECT: a sign before the allowed port", CONNECT(b"ports.test:+{U}"), 400, "invalid-host"),
    ("CONNECT: no port", CONNECT(b"ports.test"), 400, "invalid-host"),
]:
    refusal("ports", label, template, status, reason)

# ---------------------------------------------------------------------------
# Unsupported schemes (instance S), all aimed at allowed.test:P.
# ---------------------------------------------------------------------------
for scheme in (b"https", b"ftp", b"file", b"gopher", b"ws", b"wss", b"dict", b"ldap", b"HTTPS"):
    refusal("scheme", "%s:// in absolute form" % scheme.decode(),
            b"GET " + scheme + b"://allowed.test:{P}{M} HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400,
            "unsupported-scheme")
refusal("scheme", "file:/// with no host", b"GET file:///etc/passwd HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400,
        "unsupported-scheme")
refusal("scheme", "scheme-relative //host", b"GET //allowed.test:{P}{M} HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        400, "origin-form")
refusal("scheme", "http: without slashes", b"GET http:allowed.test:{P}{M} HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        400, "bad-request")

# ---------------------------------------------------------------------------
# Smuggling and malformed heads (instance S): every request aims at
# allowed.test:P, so only the parser keeps it from the canary. These codes
# are the contract with the hardening branch (issue 5 item 3).
# ---------------------------------------------------------------------------
BODY = b"0\r\n\r\nGET http://denied.test:{P}/smuggled HTTP/1.1\r\nHost: denied.test\r\n\r\n"


def post(extra, body=BODY):
    return (b"POST http://allowed.test:{P}{M} HTTP/1.1\r\nHost: allowed.test:{P}\r\n" + extra + b"\r\n" + body)


for label, head, reason in framing_cases(len(BODY)):
    refusal("smuggling", label, post(head), 400, reason, close=True)

for label, target, reason, status in [
    ("space in the target", b"http://allowed.test:{P}{M} x", "invalid-target", 400),
    ("tab in the target", b"http://allowed.test:{P}{M}\tx", "invalid-target", 400),
    ("DEL in the target", b"http://allowed.test:{P}{M}\x7f", "invalid-target", 400),
    ("NUL in the path", b"http://allowed.test:{P}{M}\x00", "invalid-target", 400),
    ("bare CR in the target", b"http://allowed.test:{P}{M}\rx", "invalid-target", 400),
    ("non-ASCII byte in the path", b"http://allowed.test:{P}{M}\xff", "invalid-target", 400),
    ("target over 8192 bytes", b"http://allowed.test:{P}{M}/" + b"a" * 9000, "target-too-long", 414),
]:
    refusal("smuggling", label, b"GET " + target + b" HTTP/1.1\r\nHost: allowed.test\r\n\r\n", status, reason,
            close=True)
refusal("smuggling", "CONNECT authority over 8192 bytes", CONNECT(b"a" * 9000 + b".wild.test:{P}"), 414,
        "target-too-long", close=True)
refusal("smuggling", "more than 100 header fields",
        GET(b"allowed.test:{P}", extra=b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(150))), 431,
        "too-many-headers", close=True)
refusal("smuggling", "1000 tiny header fields",
        GET(b"allowed.test:{P}", extra=b"a: b\r\n" * 1000), 431, "too-many-headers", close=True)
refusal("smuggling", "head over 32 KiB", GET(b"allowed.test:{P}", extra=b"X-Big: " + b"a" * 40000 + b"\r\n"), 431,
        "header-too-large", close=True)

# ---------------------------------------------------------------------------
# HTTP versions (instance S; contract: 505 unsupported-version).
# ---------------------------------------------------------------------------
refusal("version", "HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "unsupported-version",
        close=True)
refusal("version", "HTTP/1.2 request", GET(b"allowed.test:{P}", version=b"HTTP/1.2"), 505, "unsupported-version",
        close=True)
refusal("version", "HTTP/2.0 in an HTTP/1 request line", GET(b"allowed.test:{P}", version=b"HTTP/2.0"), 505,
        "unsupported-version", close=True)
refusal("version", "HTTP/0.9 request line without a version", b"GET http://allowed.test:{P}{M}\r\n\r\n", 505,
        "unsupported-version", close=True)
refusal("version", "HTTP/3.0 request", GET(b"allowed.test:{P}", version=b"HTTP/3.0"), 505, "unsupported-version",
        close=True)


# ---------------------------------------------------------------------------
# Network plumbing.
# ---------------------------------------------------------------------------
class Canary:
    """Listeners on one port (127.0.0.2, or 127.0.0.1 and ::1) that count
    connections and record every byte; a request that reaches it gets a
    fake 200 so a failing case fails fast instead of hanging."""

    def __init__(self, hosts):
        self.connections = 0
        self.data = b""
        self.selector = selectors.DefaultSelector()
        self.listeners = []
        for _ in range(20):
            try:
                self._bind(hosts)
                break
            except OSError:
                for s in self.listeners:
                    s.close()
                self.listeners = []
        else:
            raise RuntimeError("no free canary port")
        for s in self.listeners:
            self.selector.register(s, selectors.EVENT_READ, None)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _bind(self, hosts):
        port = 0
        for host in hosts:
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            self.listeners.append(s)
            s.bind((host, port))
            port = s.getsockname()[1]
            s.listen(16)
            s.setblocking(False)
        self.port = port

    def _run(self):
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.05):
                if key.data is None:
                    try:
                        conn, _ = key.fileobj.accept()
                    except OSError:
                        continue
                    self.connections += 1
                    conn.setblocking(False)
                    self.selector.register(conn, selectors.EVENT_READ, "conn")
                    continue
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.data += data
                    try:
                        key.fileobj.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Canary: 1\r\n\r\ncanary")
                    except OSError:
                        pass
                else:
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def connect(address, source="127.0.0.1", timeout=5):
    host, port = address.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((host, int(port)))
    return s


def read_response(s, timeout=4):
    """One HTTP response: (status or None, head text, body). None when the
    connection closed (or stayed silent) before a whole head arrived."""
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return None, data.decode("latin-1"), b""
            data += chunk
    except (socket.timeout, ConnectionResetError):
        return None, data.decode("latin-1"), b""
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.decode("latin-1")
    length = int(harness.header(head, "Content-Length") or 0)
    try:
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    match = re.match(r"HTTP/1\.[01] (\d{3})", head)
    return (int(match.group(1)) if match else None), head, body[:length]


def read_pipelined(s, count, timeout=4):
    out = []
    buffered = b""
    s.settimeout(timeout)
    for _ in range(count):
        try:
            while b"\r\n\r\n" not in buffered:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                buffered += chunk
        except (socket.timeout, ConnectionResetError):
            return out
        head, _, rest = buffered.partition(b"\r\n\r\n")
        head = head.decode("latin-1")
        length = int(harness.header(head, "Content-Length") or 0)
        try:
            while len(rest) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        match = re.match(r"HTTP/1\.[01] (\d{3})", head)
        out.append(((int(match.group(1)) if match else None), head, rest[:length]))
        buffered = rest[length:]
    return out


def closed_by_peer(s, timeout=2):
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (socket.timeout, OSError):
        return False


def client_hello(sni, alpn=None):
    """A real TLS ClientHello from python's ssl module, as bytes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def split_records(hello):
    """The same handshake message carried in two TLS records."""
    version, payload = hello[1:3], hello[5:]
    half = len(payload) // 2
    record = lambda p: b"\x16" + version + struct.pack(">H", len(p)) + p  # noqa: E731
    return record(payload[:half]) + record(payload[half:])


# ---------------------------------------------------------------------------
# Case runners. Each returns a list of problems (empty: the case passed).
# ---------------------------------------------------------------------------
def audit_decision(instance, request_id, client_addr):
    """The decision event of one attempt, found by request id (or by the
    client's unique source port). Text columns are decoded leniently: a raw
    request target may hold bytes that are not UTF-8."""
    where, args = ("request_id = ?", request_id) if request_id else ("client_addr = ?", client_addr)
    deadline = time.time() + 5
    while True:
        with contextlib.closing(sqlite3.connect(instance.db)) as db:
            db.row_factory = sqlite3.Row
            db.text_factory = lambda b: b.decode("utf-8", "replace")
            rows = [dict(r) for r in db.execute("SELECT * FROM events WHERE event = 'decision' AND %s ORDER BY id"
                                                % where, (args,))]
        if rows or time.time() > deadline:
            return rows[-1] if rows else None
        time.sleep(0.05)


def same_host(a, b):
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def check_audit(problems, instance, request_id, client_addr, reason, audit_host=None):
    row = audit_decision(instance, request_id, client_addr)
    if row is None:
        problems.append("no audit decision event (request id %s, client %s)" % (request_id, client_addr))
        return
    if row["decision"] != "deny" or row["reason"] != reason:
        problems.append("audit says %s/%s, expected deny/%s" % (row["decision"], row["reason"], reason))
    if audit_host is not None and not same_host(row["host"], audit_host):
        problems.append("audit host %r, expected %r" % (row["host"], audit_host))


def check_canary(problems, ctx, canary, marker, connections_allowed=False):
    time.sleep(0.3)  # anything egress might still send would arrive by now
    if canary.data:
        problems.append("CANARY RECEIVED %d bytes: %r" % (len(canary.data), canary.data[:120]))
    if canary.connections and not connections_allowed:
        problems.append("canary was connected to %d time(s)" % canary.connections)
    leaked = [r["path"] for r in ctx.upstream.seen if r["path"].startswith(marker)]
    if leaked:
        problems.append("LEGITIMATE UPSTREAM RECEIVED %s" % leaked)


def run_refusal(ctx, case, instance, canary, marker):
    spec = case.spec
    payload = fill(spec["request"], canary.port, ctx.upstream_port, marker)
    payload = payload.replace(b"WRAP", str(65536 + ctx.upstream_port).encode())
    problems = []
    s = connect(instance.address, spec["source"])
    client_addr = "%s:%d" % s.getsockname()
    try:
        s.sendall(payload)
    except OSError as e:  # the proxy may close early on a bad head; the answer decides
        problems.append("send: %s" % e) if not spec["close"] else None
    status, head, body = read_response(s, spec["timeout"])
    reason = harness.header(head, "X-Egress-Reason")
    if spec["status"] is None:
        if status is not None:
            problems.append("expected a closed connection, got %s %r" % (status, head[:80]))
    elif status != spec["status"] or reason != spec["reason"]:
        problems.append("got %s %s, expected %d %s (%r)" % (status, reason, spec["status"], spec["reason"],
                                                              head[:100]))
    if spec["close"] and status is not None and not closed_by_peer(s):
        problems.append("connection left open after the refusal")
    s.close()
    check_audit(problems, instance, harness.header(head, "X-Egress-Request-Id"), client_addr, spec["reason"],
                spec.get("audit_host"))
    check_canary(problems, ctx, canary, marker)
    return problems


def run_tunnel(ctx, case, instance, canary, marker):
    spec = case.spec
    problems = []
    authority = fill(spec["authority"], canary.port, ctx.upstream_port, marker)
    chunks = spec["payload"](ctx)
    s = connect(instance.address)
    if spec["with_connect"]:
        s.sendall(CONNECT(authority) + chunks[0])
        chunks = chunks[1:]
    else:
        s.sendall(CONNECT(authority))
    status, head, _ = read_response(s)
    if status != 200:
        problems.append("CONNECT answered %s, expected 200 (%r)" % (status, head[:100]))
    try:
        for chunk in chunks:
            s.sendall(chunk)
            time.sleep(0.05)
    except OSError:
        pass
    if not closed_by_peer(s, 3):
        problems.append("the tunnel was not closed")
    s.close()
    check_audit(problems, instance, harness.header(head, "X-Egress-Request-Id"), None, spec["reason"])
    check_canary(problems, ctx, canary, marker, connections_allowed=True)
    return problems


for label, payload, reason, with_connect in [
    ("SNI names another host", lambda ctx: [client_hello("attacker.test")], "sni-mismatch", False),
    ("SNI names another allowed host", lambda ctx: [client_hello("other.test")], "sni-mismatch", False),
    ("SNI suffix confusion", lambda ctx: [client_hello("allowed.test.attacker.test")], "sni-mismatch", False),
    ("SNI prefix confusion", lambda ctx: [client_hello("evilallowed.test")], "sni-mismatch", False),
    ("SNI of a subdomain of the CONNECT host", lambda ctx: [client_hello("www.allowed.test")], "sni-mismatch", False),
    ("SNI names a denied host, with ALPN h2", lambda ctx: [client_hello("www.evil.test", ["h2", "http/1.1"])],
     "sni-mismatch", False),
    ("ClientHello sent together with the CONNECT head", lambda ctx: [client_hello("attacker.test")], "sni-mismatch",
     True),
    ("ClientHello split over TCP segments", lambda ctx: (lambda h: [h[:7], h[7:60], h[60:]])(
        client_hello("attacker.test")), "sni-mismatch", False),
    ("ClientHello split over two TLS records", lambda ctx: [split_records(client_hello("attacker.test"))],
     "sni-mismatch", False),
    ("ClientHello without SNI", lambda ctx: [client_hello(None)], "sni-missing", False),
    ("plain HTTP with an allowed Host", lambda ctx: [b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"], "not-tls",
     False),
    ("HTTP/2 preface", lambda ctx: [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], "not-tls", False),
    ("SSH banner", lambda ctx: [b"SSH-2.0-OpenSSH_9.2\r\n"], "not-tls", False),
    ("TLS application-data record first", lambda ctx: [b"\x17\x03\x03\x00\x05hello"], "not-tls", False),
    ("handshake record that is not a ClientHello", lambda ctx: [b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"], "not-tls",
     False),
]:
    tunnel("fronting", "CONNECT allowed.test, " + label, b"allowed.test:{P}", payload, reason, with_connect)
refusal("fronting", "CONNECT to a denied host (SNI would name an allowed one)", CONNECT(b"www.evil.test:{P}"), 403,
        "deny-rule")
tunnel("exhaustion", "CONNECT, then a ClientHello that never completes",
       b"allowed.test:{P}", lambda ctx: [client_hello("allowed.test")[:40]], "client-timeout")


def run_pipeline(ctx, case, instance, canary, marker):
    """Requests sent in one write; each must get its own answer."""
    spec = case.spec
    problems = []
    allowed_marker = marker + "-allowed"
    payload = fill(spec["request"], canary.port, ctx.upstream_port, marker).replace(b"{A}", allowed_marker.encode())
    s = connect(instance.address)
    s.sendall(payload)
    answers = read_pipelined(s, len(spec["expect"]))
    got = [(status, harness.header(head, "X-Egress-Reason")) for status, head, _ in answers]
    if got != spec["expect"]:
        problems.append("answers %s, expected %s" % (got, spec["expect"]))
    if spec.get("then_closed") and not closed_by_peer(s):
        problems.append("connection left open")
    s.close()
    for (status, head, _), (_, reason) in zip(answers, spec["expect"]):
        if reason:
            check_audit(problems, instance, harness.header(head, "X-Egress-Request-Id"), None, reason)
    if spec.get("allowed_reaches_upstream", True):
        if not any(allowed_marker == r["path"] for r in ctx.upstream.seen):
            problems.append("the allowed request did not reach the upstream")
    # The forbidden request's marker must reach neither upstream.
    leaked = [r["path"] for r in ctx.upstream.seen if r["path"].startswith(marker) and r["path"] != allowed_marker]
    if leaked:
        problems.append("LEGITIMATE UPSTREAM RECEIVED %s" % leaked)
    time.sleep(0.3)
    if canary.data:
        problems.append("CANARY RECEIVED %d bytes: %r" % (len(canary.data), canary.data[:120]))
    return problems


ALLOWED = b"GET http://ports.test:{U}{A} HTTP/1.1\r\nHost: ports.test:{U}\r\n\r\n"
for label, second, expect, then_closed in [
    ("allowed, then a denied host", GET(b"denied.test:{P}"), [(200, None), (403, "not-allowed")], False),
    ("allowed, then the same host on a forbidden port",
     GET(b"ports.test:{P}"), [(200, None), (403, "not-allowed")], False),
    ("allowed, then a deny rule", GET(b"www.evil.test:{P}"), [(200, None), (403, "deny-rule")], False),
    ("allowed, then a loopback literal", GET(b"127.0.0.2:{P}"), [(200, None), (403, "not-allowed")], False),
    ("allowed, then userinfo", b"GET http://allowed.test@denied.test:{P}{M} HTTP/1.1\r\n\r\n",
     [(200, None), (400, "bad-request")], False),
    ("allowed, then a CONNECT to a denied host", CONNECT(b"denied.test:{P}"), [(200, None), (403, "not-allowed")],
     True),
    ("allowed, then an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [(200, None), (505, "unsupported-version")],
     True),
    ("allowed, then CL.TE smuggling", b"POST http://allowed.test:{P}{M} HTTP/1.1\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [(200, None), (400, "ambiguous-framing")], True),
]:
    custom("pipelining", label, "S", run_pipeline, request=ALLOWED + second, expect=expect, then_closed=then_closed)
INNER = b"GET http://allowed.test:{P}{M}-inner HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
custom("pipelining", "denied POST whose Content-Length body is an allowed request", "S", run_pipeline,
       request=b"POST http://denied.test:{P}{M} HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(INNER) + INNER,
       expect=[(403, "not-allowed")], then_closed=True, allowed_reaches_upstream=False)
custom("pipelining", "denied POST whose chunked body is an allowed request", "S", run_pipeline,
       request=b"POST http://denied.test:{P}{M} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(INNER)
       + INNER + b"\r\n0\r\n\r\n", expect=[(403, "not-allowed")], then_closed=True, allowed_reaches_upstream=False)
custom("pipelining", "unknown proxy token on a POST whose body is an allowed request", "S", run_pipeline,
       request=b"POST http://allowed.test:{P}{M} HTTP/1.1\r\nProxy-Authorization: Bearer nope\r\n"
       b"Content-Length: %d\r\n\r\n" % len(INNER) + INNER, expect=[(407, "unknown-token")], then_closed=True,
       allowed_reaches_upstream=False)
custom("pipelining", "allowed with Connection: close, then a denied host", "S", run_pipeline,
       request=b"GET http://allowed.test:{U}{A} HTTP/1.1\r\nConnection: close\r\n\r\n" + GET(b"denied.test:{P}"),
       expect=[(200, None)], then_closed=True)
custom("pipelining", "fifty denied requests in one write", "S", run_pipeline,
       request=b"".join(GET(b"denied.test:{P}") for _ in range(50)), expect=[(403, "not-allowed")] * 50,
       allowed_reaches_upstream=False)


def run_host_rewrite(ctx, case, instance, canary, marker):
    """An allowed URI with a forbidden Host header: served by the URI's host
    only, with Host rewritten; the Host header's target sees nothing."""
    problems = []
    s = connect(instance.address)
    s.sendall(fill(b"GET http://allowed.test:{U}{M} HTTP/1.1\r\nHost: denied.test:{P}\r\n\r\n", canary.port,
                   ctx.upstream_port, marker))
    status, head, body = read_response(s)
    s.close()
    seen = [r for r in ctx.upstream.seen if r["path"] == marker]
    if status != 200 or len(seen) != 1:
        problems.append("got %s, upstream saw %s" % (status, seen))
    elif seen[0]["headers"].get("host") != "allowed.test:%d" % ctx.upstream_port:
        problems.append("upstream got Host %r" % seen[0]["headers"].get("host"))
    time.sleep(0.3)
    if canary.data or canary.connections:
        problems.append("CANARY RECEIVED %d bytes" % len(canary.data))
    return problems


custom("mismatch", "allowed URI with a denied Host header is served with Host rewritten", "S", run_host_rewrite)


# ---------------------------------------------------------------------------
# Resource exhaustion.
# ---------------------------------------------------------------------------
refusal("exhaustion", "request head slower than header_timeout", b"GET http://allowed.test:{P}{M} HTTP/1.1\r\nX-Slow: ",
        None, "client-timeout", timeout=4)


def run_slow_second_head(ctx, case, instance, canary, marker):
    """Slowloris on a kept-alive connection: after one allowed request, the
    next head is dripped a line at a time. The header deadline
    (header_timeout, 1 s in instance S) must cut it off as it does the
    first head, not only the keep-alive idle timeout (60 s)."""
    problems = []
    s = connect(instance.address)
    client_addr = "%s:%d" % s.getsockname()
    s.sendall(fill(b"GET http://ports.test:{U}/ok{M} HTTP/1.1\r\n\r\n", canary.port, ctx.upstream_port, marker))
    status, _, _ = read_response(s)
    if status != 200:
        problems.append("the first request got %s" % status)
    started = time.monotonic()
    cut_after = None
    try:
        s.sendall(fill(b"GET http://allowed.test:{P}{M} HTTP/1.1\r\n", canary.port, ctx.upstream_port, marker))
        for i in range(25):  # bounded: 5 s
            time.sleep(0.2)
            s.sendall(b"X-%d: %d\r\n" % (i, i))
    except OSError:
        cut_after = time.monotonic() - started
    s.close()
    if cut_after is None or cut_after > 3:
        problems.append("the dripped second head was not cut off within 3 s (%s)" %
                        ("still open after 5 s" if cut_after is None else "%.1f s" % cut_after))
    else:
        rows = instance.wait_for_events("event = 'decision' AND client_addr = ? AND reason = 'client-timeout'",
                                        (client_addr,))
        if not rows:
            problems.append("no client-timeout decision event")
    check_canary(problems, ctx, canary, marker)
    return problems


custom("exhaustion", "slow second head on a kept-alive connection", "S", run_slow_second_head)


def run_idle_flood(ctx, case, instance, canary, marker):
    """500 idle connections (100 each from five source addresses, under the
    per-client limit) plus a slowloris attacker; an allowed request from
    another client must still complete in under a second."""
    problems = []
    idle = []
    stop = threading.Event()
    slow_sent = [0]

    def slowloris():
        s = connect(instance.address, "127.0.1.100")
        try:
            s.sendall(b"GET http://allowed.test:%d/slowloris HTTP/1.1\r\n" % ctx.upstream_port)
            for i in range(100):  # bounded: at most 10 s
                if stop.is_set():
                    break
                s.sendall(b"X-%d: %d\r\n" % (i, i))
                slow_sent[0] += 1
                time.sleep(0.1)
        except OSError:
            pass
        s.close()

    attacker = threading.Thread(target=slowloris, daemon=True)
    try:
        for i in range(500):
            idle.append(connect(instance.address, "127.0.1.%d" % (10 + i // 100)))
        attacker.start()
        deadline = time.time() + 5
        while slow_sent[0] < 3 and time.time() < deadline:
            time.sleep(0.05)
        while len(os.listdir("/proc/%d/fd" % instance.proc.pid)) < 500 and time.time() < deadline:
            time.sleep(0.05)
        held = len(os.listdir("/proc/%d/fd" % instance.proc.pid))
        if held < 500:
            problems.append("egress holds only %d descriptors" % held)
        durations = []
        for i in range(3):
            started = time.monotonic()
            s = connect(instance.address, "127.0.0.3")
            s.sendall(b"GET http://allowed.test:%d%s-%d HTTP/1.1\r\nHost: x\r\n\r\n" % (ctx.upstream_port,
                                                                                     marker.encode(), i))
            status, head, body = read_response(s, 5)
            durations.append(time.monotonic() - started)
            s.close()
            if status != 200 or b"hello from upstream" not in body:
                problems.append("allowed request %d got %s" % (i, status))
        if max(durations) >= 1.0:
            problems.append("allowed requests took %s s" % ["%.3f" % d for d in durations])
        still_open = 0
        for s in idle:
            try:
                s.setblocking(False)
                still_open += 1 if s.recv(1, socket.MSG_PEEK) else 0
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        if still_open != 500:
            problems.append("only %d of 500 idle connections were still open" % still_open)
        if slow_sent[0] < 3 or not attacker.is_alive():
            problems.append("the slowloris attacker was not active during the measurement (%d lines)" % slow_sent[0])
        print("     idle flood: allowed requests took %s s with 500 idle connections and a slowloris attacker"
              % ", ".join("%.3f" % d for d in durations))
    finally:
        stop.set()
        for s in idle:
            s.close()
        attacker.join(12)
    return problems


custom("exhaustion", "500 idle connections plus slowloris: an allowed request completes in under 1 s", "E",
       run_idle_flood)


def over_limit(ctx, case, instance, canary, marker, held_sources, source, which):
    """Holds a busy connection from each of `held_sources`, then connects
    once more from `source`: that one must get 503 with the case's reason,
    an audit row, and nothing may reach the canary."""
    problems = []
    held = [connect(instance.address, address) for address in held_sources]
    for h in held:  # busy, a head begun: an idle connection would give its place to the new one
        h.sendall(b"GET http://allowed.test/ HTTP/1.1\r\n")
    try:
        time.sleep(0.2)
        s = connect(instance.address, source)
        client_addr = "%s:%d" % s.getsockname()
        try:
            s.sendall(fill(GET(b"allowed.test:{P}"), canary.port, ctx.upstream_port, marker))
        except OSError:
            pass
        status, head, _ = read_response(s)
        s.close()
        if status != 503 or harness.header(head, "X-Egress-Reason") != case.spec["reason"]:
            problems.append("the %s connection got %s %r" % (which, status, head[:100]))
        check_audit(problems, instance, harness.header(head, "X-Egress-Request-Id"), client_addr, case.spec["reason"])
        check_canary(problems, ctx, canary, marker)
    finally:
        for h in held:
            h.close()
    return problems


def run_client_limit(ctx, case, instance, canary, marker):
    """Contract: limits.max_connections_per_client (3 in instance L)."""
    return over_limit(ctx, case, instance, canary, marker, ["127.0.2.1"] * 3, "127.0.2.1", "fourth")


def run_global_limit(ctx, case, instance, canary, marker):
    """Contract: limits.max_connections (6 in instance L), from 3 clients."""
    return over_limit(ctx, case, instance, canary, marker, ["127.0.3.%d" % (1 + i // 2) for i in range(6)],
                      "127.0.3.9", "seventh")


custom("exhaustion", "connections over the per-client limit", "L", run_client_limit, reason="client-connection-limit",
       serial=True)
custom("exhaustion", "connections over the global limit", "L", run_global_limit, reason="connection-limit",
       serial=True)
refusal("exhaustion", "request body over max_body_bytes (Content-Length)",
        b"POST http://allowed.test:{P}{M} HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, 413,
        "body-too-large", instance="L")


# ---------------------------------------------------------------------------
# Instances and the run.
# ---------------------------------------------------------------------------
def policy_s(upstream_port):
    return """\
version: 1
mode: self-hosted
internal:
  - host: allowed.test
    ports: any
  - host: other.test
    ports: any
  - host: .wild.test
    ports: any
  - host: "*.star.test"
    ports: any
  - host: ~^api[0-9]+\\.regex\\.test$
    ports: any
  - host: .blocked.test
    ports: any
  - host: ports.test
    ports: [%d]
allow:
  - host: public.test      # allowed, but not internal: its loopback address is refused
    ports: [%d]
deny:
  - .evil.test
  - .secret.blocked.test
""" % (upstream_port, upstream_port)


S_NAMES = ["allowed.test", "other.test", "wild.test", "a.wild.test", "star.test", "a.star.test", "api1.regex.test",
           "blocked.test", "secret.blocked.test", "www.secret.blocked.test", "ports.test", "evil.test",
           "www.evil.test", "denied.test", "attacker.test", "evilallowed.test", "allowed.test.attacker.test",
           "allowed.testattacker.test", "notwild.test", "wild.test.attacker.test", "xapi1.regex.test",
           "api1.regex.test.attacker.test", "api1xregex.test", "www.allowed.test", "public.test", HOMOGRAPH_A.decode()]


def policy_d():
    text = "version: 1\nmode: developer\n"
    if not NETNS:
        # No namespace: deny every address outside loopback, so a mistake can
        # only ever reach the loopback canary.
        blocked = []
        for whole in (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")):
            parts = [whole]
            for keep in (k for k in KEEP if k.version == whole.version):
                parts = [q for p in parts for q in (p.address_exclude(keep) if keep.subnet_of(p) else [p])]
            blocked += parts
        text += "deny:\n" + "".join("  - cidr: %s\n" % n for n in sorted(blocked, key=str))
    return text


D_HOSTS = {"zero.test": "0.0.0.0", "rebind.test": "127.0.0.1", "meta.test": "169.254.169.254", "mixed.test": "198.51.100.7, 127.0.0.1",
           "mapped.test": "::ffff:127.0.0.1"}


POLICY_REASONS = ("not-allowed", "deny-rule", "port-not-allowed", "private-address")
CONNECTABLE = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "0.0.0.0/32", "::1/128", "::/128",
                                                 "::ffff:127.0.0.0/104")]


def reaches_canary_when_allowed(case):
    """Cases refused by policy (not by the parser) whose target would land
    on the canary if the policy let it through."""
    if case.run.__name__ != "<lambda>" or case.spec.get("reason") not in POLICY_REASONS:
        return False
    if b"WRAP" in case.spec.get("request", b"") or case.instance not in ("S", "D"):
        return False
    if any(x in case.spec["request"] for x in (b"ports.test{M}", b"#@", b"?@")):  # port 80, not the canary's
        return False
    host = case.spec.get("audit_host")
    if host is not None:
        address = ipaddress.ip_address(host)
        return any(address in n for n in CONNECTABLE if n.version == address.version)
    return b"meta.test" not in case.spec["request"] and b"mixed.test" not in case.spec["request"]


CONTROL_S = """\
version: 1
mode: self-hosted
internal:
  - host: ~.*
    ports: any
"""
CONTROL_D = """\
version: 1
mode: developer
internal:
  - cidr: 127.0.0.0/8
    ports: any
  - cidr: 0.0.0.0/32
    ports: any
  - cidr: ::1/128
    ports: any
  - cidr: ::/128
    ports: any
  - cidr: ::ffff:127.0.0.0/104
    ports: any
"""


class Context:
    pass


def start_instance(workdir, name, policy, hosts, extra_config=""):
    directory = os.path.join(workdir, name)
    os.makedirs(directory)
    try:
        return harness.Egress(directory, policy, hosts=hosts, extra_config=extra_config), None
    except Exception as e:  # noqa: BLE001 — reported per case
        return None, str(e)[-400:]


def run_case(ctx, index, case, instance_name=None):
    instance_name = instance_name or case.instance
    instance = ctx.instances.get(instance_name)
    if instance is None:
        return ["egress instance %s did not start: %s" % (instance_name, ctx.start_errors.get(instance_name))]
    hosts = ("127.0.0.1", "::1", "127.8.9.10") if case.instance == "D" else (CANARY_HOST,)
    canary = Canary(hosts)
    try:
        return case.run(ctx, case, instance, canary, "/atk-%d/" % index)
    except Exception as e:  # noqa: BLE001 — a crash is this case's failure
        return ["crashed: %r" % e]
    finally:
        canary.close()


def family_counts():
    counts = {key: 0 for key, _ in FAMILIES}
    for case in CASES:
        counts[case.family] += 1
    return counts


def readme_table():
    counts = family_counts()
    lines = ["| family | cases |", "|---|---|"]
    lines += ["| %s | %d |" % (title, counts[key]) for key, title in FAMILIES]
    lines.append("| **total** | **%d** |" % len(CASES))
    return "\n".join(lines)


def bring_loopback_up():
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def run(workdir, results):
    check = results.check
    print("network: %s" % ("private namespace, loopback only" if NETNS else
                           "host namespace; developer-mode instance denies every non-loopback address"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    ctx = Context()
    server = http.server.ThreadingHTTPServer((CANARY_HOST, 0), harness.UpstreamHandler)
    server.daemon_threads = True
    server.seen = []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    ctx.upstream = server
    ctx.upstream_port = server.server_address[1]
    s_hosts = {n: CANARY_HOST for n in S_NAMES}
    s_policy = policy_s(ctx.upstream_port)
    ctx.instances, ctx.start_errors = {}, {}
    for name, policy, hosts, extra in [
        ("S", s_policy, s_hosts, "limits:\n  header_timeout: 1s\n"),
        ("D", policy_d(), D_HOSTS, "limits:\n  header_timeout: 1s\n"),
        ("E", s_policy, s_hosts, ""),
        ("CS", CONTROL_S, s_hosts, "limits:\n  header_timeout: 1s\n"),
        ("CD", CONTROL_D, D_HOSTS, "limits:\n  header_timeout: 1s\n"),
        # Contract limits (issue 5 item 4): the keys are new, so this
        # instance only starts with the hardening branch merged.
        ("L", s_policy, s_hosts, "limits:\n  max_body_bytes: 1000\n  max_connections: 6\n"
                                 "  max_connections_per_client: 3\n"),
    ]:
        ctx.instances[name], ctx.start_errors[name] = start_instance(workdir, name, policy, hosts, extra)
    started = time.time()
    indexed = list(enumerate(CASES))
    parallel = [(i, c) for i, c in indexed if not c.spec.get("serial") and c.instance != "E"]
    serial = [(i, c) for i, c in indexed if c.spec.get("serial") or c.instance == "E"]
    outcomes = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {pool.submit(run_case, ctx, i, c): i for i, c in parallel}
        for future in concurrent.futures.as_completed(futures, timeout=240):
            outcomes[futures[future]] = future.result()
    for i, case in serial:
        outcomes[i] = run_case(ctx, i, case)
    for i, case in indexed:
        problems = outcomes[i]
        check("[%s] %s" % (case.family, case.name), not problems, "; ".join(problems))
    print("     %d attack cases in %.1f s" % (len(CASES), time.time() - started))

    # Control: the same policy-level attacks against instances whose policy
    # lets everything through must reach their canaries. A case that would
    # pass even then could not catch a mistake.
    controls = [(i, c) for i, c in indexed if reaches_canary_when_allowed(c)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {pool.submit(run_case, ctx, 10000 + i, c, "C" + c.instance): c for i, c in controls}
        blind = [futures[f].name for f in concurrent.futures.as_completed(futures, timeout=240)
                 if not any("CANARY RECEIVED" in p or "canary was connected" in p for p in f.result())]
    check("control: all %d policy-level cases reach their canary when the policy allows them" % len(controls),
          len(controls) >= 60 and not blind, "blind cases: %s" % blind)

    check("at least 80 distinct attack cases", len(CASES) >= 80 and len({c.name for c in CASES}) == len(CASES),
          str(len(CASES)))
    with open(os.path.join(ROOT, "docs", "security.md")) as f:
        security_doc = f.read()
    check("docs/security.md's attack table matches the suite (python3 %s --list)" % os.path.relpath(__file__, ROOT),
          readme_table() in security_doc, "\n" + readme_table())
    for name, instance in ctx.instances.items():
        if instance is not None:
            code = instance.stop()
            with open(instance.log.name, errors="replace") as f:
                check("instance %s stops cleanly" % name, code == 0, f.read()[-300:])
    server.shutdown()
    server.server_close()


def main():
    if "--list" in sys.argv:
        print(readme_table())
        return
    if os.environ.get("EGRESS_ATTACKS_NETNS") is None and shutil.which("unshare"):
        for prefix in (["unshare", "-rn"], ["unshare", "-n"]):
            probe = subprocess.run(prefix + ["true"], capture_output=True)
            if probe.returncode == 0:
                env = dict(os.environ, EGRESS_ATTACKS_NETNS="1")
                sys.stdout.flush()
                os.execvpe(prefix[0], prefix + [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)
    if NETNS:
        bring_loopback_up()
    harness.main(run)


if __name__ == "__main__":
    main()
