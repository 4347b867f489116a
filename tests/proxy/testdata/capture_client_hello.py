#!/usr/bin/env python3
"""Captures the first bytes a TLS client sends, as hex, for the ClientHello fixtures.

Usage: capture_client_hello.py OUT.hex -- CLIENT-COMMAND ... (the literal PORT in
the command is replaced by the listener's port). Listens on 127.0.0.1 only, reads
until the client has sent a complete TLS handshake message (or 2 s pass), then
closes the connection, so the client fails its handshake: only its ClientHello is
kept.
"""
import socket
import subprocess
import sys
import time


def hello_complete(data: bytes) -> bool:
    body = b""
    pos = 0
    while pos + 5 <= len(data):
        length = int.from_bytes(data[pos + 3:pos + 5], "big")
        if pos + 5 + length > len(data):
            break
        body += data[pos + 5:pos + 5 + length]
        pos += 5 + length
        if len(body) >= 4 and len(body) >= 4 + int.from_bytes(body[1:4], "big"):
            return True
    return False


def main() -> None:
    out = sys.argv[1]
    command = sys.argv[sys.argv.index("--") + 1:]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = subprocess.Popen([arg.replace("PORT", str(port)) for arg in command],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    conn, _ = listener.accept()
    conn.settimeout(0.2)
    data = b""
    deadline = time.time() + 2
    while time.time() < deadline and not hello_complete(data):
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    conn.close()
    listener.close()
    client.wait(timeout=10)
    with open(out, "w") as f:
        f.write(data.hex() + "\n")
    print(f"{out}: {len(data)} bytes")


if __name__ == "__main__":
    main()
