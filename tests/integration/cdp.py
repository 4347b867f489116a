"""Headless Chromium driven over the DevTools protocol with python3's
standard library only: a small RFC 6455 WebSocket client (text frames,
client masking) and a Browser with navigate / evaluate / screenshot.

Chromium is started with --remote-debugging-port=0 and the flags of
COMMON.md; the port is read from DevToolsActivePort in its profile
directory. Everything is loopback. Browser.close() kills the process it
started (by its PID) and removes the profile directory.
"""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM = "/usr/bin/chromium"


class WebSocket:
    def __init__(self, port, path, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the WebSocket handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError("DevTools refused the WebSocket: %r" % head[:200])

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("DevTools closed the WebSocket")
            data += chunk
        return data

    def send(self, text):
        payload = text.encode()
        n = len(payload)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            data = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping/pong: not sent by DevTools in practice
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self):
        self.sock.close()


class Browser:
    def __init__(self, width=1280, height=800):
        self.profile = tempfile.mkdtemp(prefix="egress-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + self.profile, "--remote-debugging-port=0", "--remote-allow-origins=*",
             "--window-size=%d,%d" % (width, height), "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._port()
            request = urllib.request.Request("http://127.0.0.1:%d/json/new?about:blank" % port, method="PUT")
            target = json.load(urllib.request.urlopen(request, timeout=10))
            path = "/" + target["webSocketDebuggerUrl"].split("/", 3)[3]
            self.ws = WebSocket(port, path)
        except Exception:
            self.close()
            raise
        self.next_id = 0
        self.events = []
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _port(self):
        marker = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(marker):
                with open(marker) as f:
                    lines = f.read().split("\n")
                if lines and lines[0].strip():
                    return int(lines[0])
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("chromium did not start (no DevToolsActivePort)")

    def call(self, method, **params):
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == me:
                if "error" in message:
                    raise RuntimeError("%s: %s" % (method, message["error"]))
                return message.get("result", {})
            self.events.append(message)
            del self.events[:-500]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError("page script failed: %s" % result["exceptionDetails"].get("text"))
        return result["result"].get("value")

    def wait_for(self, expression, timeout=10, interval=0.05):
        """Polls `expression` until it is truthy; returns its value or None."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(interval)
        return None

    def navigate(self, url, timeout=10):
        self.call("Page.navigate", url=url)
        time.sleep(0.05)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", timeout)

    def screenshot(self, path):
        """Writes a PNG of the page to `path`; returns its size in bytes."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return len(data) if data.startswith(b"\x89PNG") else 0

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
