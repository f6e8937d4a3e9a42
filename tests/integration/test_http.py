# SPDX-License-Identifier: Apache-2.0
"""The HTTP ingress on the real binary: built-in routes through curl, 404 and
405 JSON, keep-alive, pipelining in order, chunked uploads, 100-continue,
limits (431, 413, 408 while others are served, the connection cap), bad
request lines, HTTP/1.0 and HEAD, security headers, request ids, the access
log, and a durable submit through a route."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402

MULT = sphelp.MULT


class Resp:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


class Conn:
    """A raw HTTP/1.1 client socket: write bytes, read whole answers."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.sock.settimeout(timeout * MULT)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def read(self, head=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        top, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = top.decode("latin-1").split("\r\n")
        ver, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert ver == "HTTP/1.1", lines[0]
        headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
        r = Resp(int(status), reason, headers, b"")
        n = int(r.header("Content-Length") or 0)
        if head or r.status in (100, 204, 304):
            return r
        while len(self.buf) < n:
            self._fill()
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r

    def closed_by_peer(self):
        """True if the server closed the connection (EOF, nothing more)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def get(path, headers=b""):
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n"


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = sphelp.Server(http=True, sync=False, http_config={
            "header_timeout": "1s", "body_timeout": "1s", "max_body_size": "1M",
            "max_header_size": "8K"}).start()
        cls.port = cls.srv.http_port
        cls.url = f"http://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.srv.proc.poll() is None:
                rc = cls.srv.stop()
                assert rc == 0, f"sendpipe exited with {rc}"
        finally:
            shutil.rmtree(cls.srv.tmp, ignore_errors=True)

    def curl(self, *args):
        r = subprocess.run(["curl", "-s", "-S", "-i", "--max-time", str(int(20 * MULT))] +
                           list(args), capture_output=True, timeout=30 * MULT,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        # Skip interim answers (100 Continue) curl prints too.
        while out.startswith(b"HTTP/1.1 100"):
            out = out.split(b"\r\n\r\n", 1)[1]
        top, body = out.split(b"\r\n\r\n", 1)
        lines = top.decode().split("\r\n")
        headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
        return Resp(int(lines[0].split(" ")[1]), "", headers, body)

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.header("Content-Type"), "application/json")
        e = r.json()
        self.assertEqual(set(e), {"error"})
        self.assertEqual(e["error"]["code"], code)
        self.assertIsInstance(e["error"]["message"], str)

    # -- built-in routes, routing, headers ----------------------------------

    def test_healthz_readyz_metrics(self):
        r = self.curl(self.url + "/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "ok"})
        r = self.curl(self.url + "/readyz")
        self.assertEqual(r.json(), {"status": "ready"})
        self.curl(self.url + "/test/echo/x")
        r = self.curl(self.url + "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/plain; version=0.0.4"))
        text = r.body.decode()
        self.assertIn("sendpipe_store_commits_total", text)
        self.assertIn('sendpipe_http_requests_total{route="/test/echo/{name}",status="200"}',
                      text)
        self.assertIn('sendpipe_http_request_duration_seconds_bucket{route="/test/echo/{name}",'
                      'status="200",le="+Inf"}', text)

    def test_404_405(self):
        self.assert_error(self.curl(self.url + "/nope"), 404, "NOT_FOUND")
        r = self.curl("-X", "DELETE", self.url + "/healthz")
        self.assert_error(r, 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(r.header("Allow"), "GET, HEAD")
        r = self.curl(self.url + "/test/echo")
        self.assert_error(r, 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(r.header("Allow"), "POST")

    def test_params_query_head(self):
        r = self.curl(self.url + "/test/echo/b%6Fb?q=a+b%21")
        self.assertEqual(r.json(), {"name": "bob", "q": "a b!", "route": "/test/echo/{name}"})
        self.assert_error(self.curl(self.url + "/test/echo/x?q=%zz"), 400, "BAD_REQUEST")
        c = Conn(self.port)
        c.send(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read(head=True)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), "15")
        c.send(get("/healthz"))  # no body bytes were sent for HEAD
        self.assertEqual(c.read().json(), {"status": "ok"})
        c.close()

    def test_security_headers_and_request_id(self):
        r = self.curl(self.url + "/healthz")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertEqual(r.header("X-Frame-Options"), "DENY")
        self.assertEqual(r.header("Referrer-Policy"), "strict-origin-when-cross-origin")
        self.assertIsNone(r.header("Strict-Transport-Security"))
        self.assertRegex(r.header("X-Request-Id"), r"^[0-9a-f]{16}$")
        self.assertIsNotNone(r.header("Date"))
        r2 = self.curl(self.url + "/healthz")
        self.assertNotEqual(r.header("X-Request-Id"), r2.header("X-Request-Id"))
        r = self.curl("-H", "X-Request-Id: my-req.42", self.url + "/nope")
        self.assertEqual(r.header("X-Request-Id"), "my-req.42")
        r = self.curl("-H", "X-Request-Id: bad id!", self.url + "/healthz")
        self.assertRegex(r.header("X-Request-Id"), r"^[0-9a-f]{16}$")

    def test_access_log(self):
        self.curl("-H", "X-Request-Id: log-check-1", "-H", "Authorization: Bearer s3cret",
                  "-A", "probe/1.0", "-d", "secret-body", self.url + "/test/echo")
        self.curl("-H", "X-Request-Id: log-check-2", self.url + "/healthz")

        def line():
            for l in self.srv.log_lines():
                if l.get("request_id") == "log-check-1":
                    return l
            return None
        l = sphelp.wait_until(line, 10, "the access log line")
        self.assertEqual(l["msg"], "http request")
        self.assertEqual(l["method"], "POST")
        self.assertEqual(l["path"], "/test/echo")
        self.assertEqual(l["route"], "/test/echo")
        self.assertEqual(l["status"], "200")
        self.assertEqual(l["remote"].split(":")[0], "127.0.0.1")
        self.assertEqual(l["user_agent"], "probe/1.0")
        self.assertGreater(int(l["bytes"]), 0)
        float(l["duration_ms"])
        with open(self.srv.log) as f:
            raw = f.read()
        self.assertNotIn("s3cret", raw)
        self.assertNotIn("secret-body", raw)
        # Health checks are not logged.
        self.assertNotIn("log-check-2", raw)

    # -- connection handling -------------------------------------------------

    def test_keepalive(self):
        c = Conn(self.port)
        c.send(get("/healthz"))
        self.assertEqual(c.read().status, 200)
        c.send(get("/test/echo/two"))
        r = c.read()
        self.assertEqual(r.json()["name"], "two")
        self.assertIsNone(r.header("Connection"))
        c.close()

    def test_pipelining_in_order(self):
        c = Conn(self.port)
        # The first answer is the slowest: the others must wait for it.
        c.send(get("/test/slow?ms=300") + get("/test/slow?ms=0") + get("/test/echo/third"))
        self.assertEqual(c.read().json(), {"slept": 300})
        self.assertEqual(c.read().json(), {"slept": 0})
        self.assertEqual(c.read().json()["name"], "third")
        # Many at once, more than max_pipeline (32): all answered in order.
        c.send(b"".join(get(f"/test/echo/n{i}") for i in range(80)))
        for i in range(80):
            self.assertEqual(c.read().json()["name"], f"n{i}")
        # Exactly max_pipeline slow ones: reading pauses right at the end of
        # what was read, and must resume for the next request.
        c.send(b"".join(get("/test/slow?ms=20") for _ in range(32)))
        for _ in range(32):
            self.assertEqual(c.read().json(), {"slept": 20})
        c.send(get("/test/echo/after"))
        self.assertEqual(c.read().json()["name"], "after")
        c.close()

    def test_http10_and_connection_close(self):
        c = Conn(self.port)
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        r = c.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(c.closed_by_peer())
        c.close()
        c = Conn(self.port)
        c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read()
        self.assertEqual(r.header("Connection"), "keep-alive")
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" +
               get("/healthz"))
        r = c.read()
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(c.closed_by_peer())
        self.assertEqual(c.buf, b"", "nothing is answered after Connection: close")
        c.close()

    def test_bad_request_line(self):
        for raw in (b"BLAH\r\n\r\n", b"GET /x HTTP/1.1 extra\r\n\r\n", b"GET\r\n\r\n",
                    b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"):
            c = Conn(self.port)
            c.send(raw)
            r = c.read()
            self.assertIn(r.status, (400, 501), raw)
            self.assert_error(r, r.status, "BAD_REQUEST" if r.status == 400 else
                              "NOT_IMPLEMENTED")
            self.assertEqual(r.header("Connection"), "close")
            self.assertTrue(c.closed_by_peer())
            c.close()
        c = Conn(self.port)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assert_error(c.read(), 400, "BAD_REQUEST")
        c.close()

    # -- bodies ---------------------------------------------------------------

    def test_chunked_upload(self):
        data = os.urandom(200000)
        c = Conn(self.port)
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(data), 7000):
            part = data[i:i + 7000]
            c.send(b"%x\r\n" % len(part) + part + b"\r\n")
        c.send(b"0\r\nX-Trailer: ignored\r\n\r\n")
        r = c.read()
        self.assertEqual(r.json(), {"length": len(data),
                                    "sha256": hashlib.sha256(data).hexdigest()})
        # The same connection still works after a chunked body.
        c.send(get("/healthz"))
        self.assertEqual(c.read().status, 200)
        c.close()
        path = os.path.join(self.srv.tmp, "upload.bin")
        with open(path, "wb") as f:
            f.write(data)
        r = self.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path,
                      self.url + "/test/echo")
        self.assertEqual(r.json()["sha256"], hashlib.sha256(data).hexdigest())

    def test_expect_100_continue(self):
        data = os.urandom(5000)
        path = os.path.join(self.srv.tmp, "expect.bin")
        with open(path, "wb") as f:
            f.write(data)
        r = self.curl("-H", "Expect: 100-continue", "--expect100-timeout", "30",
                      "--data-binary", "@" + path, self.url + "/test/echo")
        self.assertEqual(r.json()["sha256"], hashlib.sha256(data).hexdigest())
        # By hand: 100 Continue comes before the body is sent.
        c = Conn(self.port)
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5\r\n\r\n")
        self.assertEqual(c.read().status, 100)
        c.send(b"hello")
        self.assertEqual(c.read().json()["length"], 5)
        # Too large: 413 at once, without waiting for the body.
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Length: 2000000\r\n\r\n")
        r = c.read()
        self.assert_error(r, 413, "PAYLOAD_TOO_LARGE")
        self.assertEqual(r.header("Connection"), "close")
        c.close()

    def test_431_header_too_large(self):
        c = Conn(self.port)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        r = c.read()
        self.assert_error(r, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
        c.close()
        c = Conn(self.port)
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(200))
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
        self.assert_error(c.read(), 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
        c.close()
        # Just under the limit is fine.
        c = Conn(self.port)
        c.send(get("/healthz", b"X-Big: " + b"a" * 7000 + b"\r\n"))
        self.assertEqual(c.read().status, 200)
        c.close()

    def test_413_body_too_large(self):
        c = Conn(self.port)
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n")
        self.assert_error(c.read(), 413, "PAYLOAD_TOO_LARGE")
        c.close()
        # Exactly the limit passes.
        data = os.urandom(1048576)
        c = Conn(self.port)
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n" +
               data)
        self.assertEqual(c.read().json()["length"], 1048576)
        # Chunked: refused while streaming, once past the limit.
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        part = b"x" * 65536
        r = None
        try:
            for _ in range(40):
                c.send(b"%x\r\n" % len(part) + part + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read()
        self.assert_error(r, 413, "PAYLOAD_TOO_LARGE")
        c.close()

    def test_408_slowloris_does_not_stall_others(self):
        slow = Conn(self.port)
        result = {}

        def trickle():
            try:
                for b in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: yes":
                    slow.send(bytes([b]))
                    time.sleep(0.1)
            except OSError:
                pass
            try:
                result["resp"] = slow.read()
            except (OSError, ConnectionError) as e:
                result["err"] = e

        t0 = time.monotonic()
        th = threading.Thread(target=trickle)
        th.start()
        # Meanwhile other clients are served at once.
        for _ in range(10):
            s = time.monotonic()
            c = Conn(self.port)
            c.send(get("/healthz"))
            self.assertEqual(c.read().status, 200)
            c.close()
            self.assertLess(time.monotonic() - s, 0.5 * MULT)
            time.sleep(0.05)
        th.join(30 * MULT)
        self.assertIn("resp", result, result)
        self.assert_error(result["resp"], 408, "REQUEST_TIMEOUT")
        # header_timeout is 1 s, counted from the first byte.
        self.assertLess(time.monotonic() - t0, 4 * MULT)
        self.assertTrue(slow.closed_by_peer())
        slow.close()

    def test_body_timeout(self):
        c = Conn(self.port)
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        self.assert_error(c.read(), 408, "REQUEST_TIMEOUT")
        c.close()

    # -- a durable submit through a route -----------------------------------

    def test_submit_route(self):
        r = self.curl("-d", '{"hello":"world"}', self.url + "/test/submit")
        self.assertEqual(r.status, 200, r.body)
        mid = r.json()["emailId"]
        self.assertRegex(mid, r"^[0-9a-z]{13}$")
        self.assertIsNotNone(self.srv.message(mid))


class HttpCapTest(unittest.TestCase):
    def test_connection_cap(self):
        srv = sphelp.Server(http=True, sync=False,
                            http_config={"max_connections": 3}).start()
        try:
            # start() probed the port; let those probe connections go.
            held = []

            def hold():
                c = Conn(srv.http_port)
                c.send(get("/healthz"))
                if c.read().status == 200:
                    held.append(c)
                    return len(held) == 3
                c.close()  # a probe of start() not closed yet on the server
                return False
            sphelp.wait_until(hold, 10, "three connections")
            c = Conn(srv.http_port)
            r = c.read()
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["error"]["code"], "SERVICE_UNAVAILABLE")
            self.assertEqual(r.header("Connection"), "close")
            self.assertTrue(c.closed_by_peer())
            c.close()
            held.pop().close()

            def served():
                c = Conn(srv.http_port)
                try:
                    c.send(get("/healthz"))
                    return c.read().status == 200
                except (OSError, ConnectionError):
                    return False
                finally:
                    c.close()
            sphelp.wait_until(served, 10, "a free connection slot")
            for c in held:
                c.close()
            self.assertEqual(srv.stop(), 0)
        finally:
            if srv.proc.poll() is None:
                srv.kill()
            shutil.rmtree(srv.tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
