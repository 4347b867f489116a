"""The request-head framing and header-syntax cases both attack suites
send: plain forwarding in test_attacks.py, and inside an inspected tunnel in
test_attacks_inspected.py. Each is (label, header lines, reason) for a POST
whose body is `n` bytes; egress must refuse each with 400 and the reason,
and forward nothing."""


def framing_cases(n):
    return [
        ("CL.TE", b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % n, "ambiguous-framing"),
        ("TE.CL", b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % n, "ambiguous-framing"),
        ("duplicate Content-Length, same value", b"Content-Length: %d\r\nContent-Length: %d\r\n" % (n, n),
         "ambiguous-framing"),
        ("Content-Length: 5 twice", b"Content-Length: 5\r\nContent-Length: 5\r\n", "ambiguous-framing"),
        ("conflicting Content-Length", b"Content-Length: 5\r\nContent-Length: %d\r\n" % n, "ambiguous-framing"),
        ("Content-Length: 5, 5", b"Content-Length: 5, 5\r\n", "ambiguous-framing"),
        ("Content-Length list in one field", b"Content-Length: 5, %d\r\n" % n, "ambiguous-framing"),
        ("Transfer-Encoding: chunked, identity", b"Transfer-Encoding: chunked, identity\r\n", "ambiguous-framing"),
        ("Transfer-Encoding: identity with a Content-Length", b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n",
         "ambiguous-framing"),
        ("Transfer-Encoding: xchunked", b"Transfer-Encoding: xchunked\r\n", "ambiguous-framing"),
        ("Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: gzip, chunked\r\n", "ambiguous-framing"),
        ("two Transfer-Encoding fields", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
         "ambiguous-framing"),
        ("obs-fold continuation line", b"X-Folded: a\r\n b\r\nContent-Length: 0\r\n", "invalid-header"),
        ("obs-fold hiding Transfer-Encoding", b"X-Folded: a\r\n Transfer-Encoding: chunked\r\n", "invalid-header"),
        ("space before the colon", b"Transfer-Encoding : chunked\r\n", "invalid-header"),
        ("space inside a header name", b"X Bad: 1\r\nContent-Length: 0\r\n", "invalid-header"),
        ("invalid character in a header name", b"X@Bad: 1\r\nContent-Length: 0\r\n", "invalid-header"),
        ("empty header name", b": 1\r\nContent-Length: 0\r\n", "invalid-header"),
        ("header line without a colon", b"NoColon\r\nContent-Length: 0\r\n", "invalid-header"),
        ("control character in a header value", b"X-Ctl: a\x01b\r\nContent-Length: 0\r\n", "invalid-header"),
        ("NUL in a header value", b"X-Nul: a\x00b\r\nContent-Length: 0\r\n", "invalid-header"),
        ("bare CR in a header value", b"X-Cr: a\rb\r\nContent-Length: 0\r\n", "invalid-header"),
    ]
