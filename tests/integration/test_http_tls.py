# SPDX-License-Identifier: Apache-2.0
"""The HTTPS listener of the HTTP ingress on the real binary, with a
self-signed certificate made by the openssl CLI: curl over HTTPS with HSTS
(and none on the plain listener), ALPN, keep-alive, pipelining, bodies
(length and chunked, larger than the read buffer), 408 and Connection:
close over TLS, TLS 1.1 refused, a silent or half-done handshake closed after
header_timeout while others are served, the connection cap, and start-up
errors naming the certificate or key file."""
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402
import test_http  # noqa: E402  (its Conn and Resp; its tests are not loaded here)

MULT = sphelp.MULT
HSTS = "max-age=31536000"


def make_cert(d, name="cert"):
    """A self-signed P-256 certificate for 127.0.0.1 and localhost."""
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return cert, key


def client_ctx(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


class TlsConn(test_http.Conn):
    """test_http.Conn over TLS: the same reads, on an SSL socket."""

    def __init__(self, port, cafile, timeout=10, ctx=None):
        raw = socket.create_connection(("127.0.0.1", port), 5)
        raw.settimeout(timeout * MULT)
        try:
            self.sock = (ctx or client_ctx(cafile)).wrap_socket(raw,
                                                                server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
        self.buf = b""


def get(path, headers=b""):
    return test_http.get(path, headers)


def tls_server(tmp, cert, key, extra=None):
    tls_port = sphelp.free_port()
    cfg = {"tls_listen": f'"127.0.0.1:{tls_port}"', "tls_cert": cert, "tls_key": key}
    cfg.update(extra or {})
    srv = sphelp.Server(http=True, sync=False, tmp=tmp, http_config=cfg)
    srv.tls_port = tls_port
    return srv


def wait_port(srv, port):
    def up():
        if srv.proc.poll() is not None:
            raise AssertionError("sendpipe exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    sphelp.wait_until(up, 20, "the HTTPS port")


class HttpTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sp-tls-")
        cls.cert, cls.key = make_cert(cls.tmp)
        cls.srv = tls_server(cls.tmp, cls.cert, cls.key, {
            "header_timeout": "1s", "body_timeout": "1s", "max_body_size": "2M"}).start()
        wait_port(cls.srv, cls.srv.tls_port)
        cls.port = cls.srv.tls_port
        cls.url = f"https://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.srv.proc.poll() is None:
                rc = cls.srv.stop()
                assert rc == 0, f"sendpipe exited with {rc}"
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def conn(self, **kw):
        return TlsConn(self.port, self.cert, **kw)

    def curl(self, *args):
        r = subprocess.run(["curl", "-s", "-S", "-i", "--max-time", str(int(20 * MULT))] +
                           list(args), capture_output=True, timeout=30 * MULT,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        top, body = r.stdout.split(b"\r\n\r\n", 1)
        lines = top.decode().split("\r\n")
        headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
        return test_http.Resp(int(lines[0].split(" ")[1]), "", headers, body)

    # -- HTTPS and HSTS -------------------------------------------------------

    def test_curl_https_hsts(self):
        r = self.curl("--cacert", self.cert, self.url + "/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "ok"})
        self.assertEqual(r.header("Strict-Transport-Security"), HSTS)
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        # Errors made by the plugin itself carry it too.
        r = self.curl("--cacert", self.cert, self.url + "/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("Strict-Transport-Security"), HSTS)
        # curl checks the certificate: without the CA it refuses.
        bad = subprocess.run(["curl", "-s", "-o", "/dev/null", self.url + "/healthz"],
                             capture_output=True, timeout=30 * MULT, stdin=subprocess.DEVNULL)
        self.assertNotEqual(bad.returncode, 0)

    def test_plain_listener_has_no_hsts(self):
        r = self.curl(f"http://127.0.0.1:{self.srv.http_port}/healthz")
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("Strict-Transport-Security"))
        # The HTTPS port does not speak plain HTTP.
        c = test_http.Conn(self.port, timeout=5)
        c.send(get("/healthz"))
        self.assertTrue(c.closed_by_peer())
        self.assertNotIn(b"HTTP/1.1", c.buf)
        c.close()

    def test_alpn_and_version(self):
        c = self.conn()
        self.assertEqual(c.sock.selected_alpn_protocol(), "http/1.1")
        self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
        c.close()
        # A client that offers only h2 still gets HTTP/1.1, without ALPN.
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.set_alpn_protocols(["h2"])
        c = self.conn(ctx=ctx)
        self.assertIsNone(c.sock.selected_alpn_protocol())
        c.send(get("/healthz"))
        self.assertEqual(c.read().status, 200)
        c.close()
        # TLS 1.2 exactly works too.
        ctx = client_ctx(self.cert)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        c = self.conn(ctx=ctx)
        self.assertEqual(c.sock.version(), "TLSv1.2")
        c.send(get("/healthz"))
        self.assertEqual(c.read().header("Strict-Transport-Security"), HSTS)
        c.close()

    # -- connection handling over TLS ----------------------------------------

    def test_keepalive(self):
        c = self.conn()
        c.send(get("/healthz"))
        r = c.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Strict-Transport-Security"), HSTS)
        c.send(get("/test/echo/two"))
        r = c.read()
        self.assertEqual(r.json()["name"], "two")
        self.assertIsNone(r.header("Connection"))
        self.assertEqual(r.header("Strict-Transport-Security"), HSTS)
        c.close()

    def test_pipelining_in_order(self):
        c = self.conn()
        c.send(get("/test/slow?ms=200") + get("/test/echo/second"))
        self.assertEqual(c.read().json(), {"slept": 200})
        self.assertEqual(c.read().json()["name"], "second")
        # More than max_pipeline (32) in one write: all answered, in order.
        c.send(b"".join(get(f"/test/echo/n{i}") for i in range(80)))
        for i in range(80):
            self.assertEqual(c.read().json()["name"], f"n{i}")
        # Slow ones past max_pipeline, larger together than the read buffer:
        # reading pauses with decrypted input left over, then resumes.
        pad = b"X-Pad: " + b"p" * 3000 + b"\r\n"
        c.send(b"".join(get("/test/slow?ms=5", pad) for _ in range(100)) + get("/test/echo/end"))
        for _ in range(100):
            self.assertEqual(c.read().json(), {"slept": 5})
        self.assertEqual(c.read().json()["name"], "end")
        c.close()

    def test_post_bodies(self):
        c = self.conn()
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        r = c.read()
        self.assertEqual(r.json(), {"length": 5,
                                    "sha256": hashlib.sha256(b"hello").hexdigest()})
        self.assertEqual(r.header("Strict-Transport-Security"), HSTS)
        # Larger than the 64 KiB read buffer, in one write.
        data = os.urandom(1500000)
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(data)
               + data + get("/test/echo/after"))
        self.assertEqual(c.read().json()["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(c.read().json()["name"], "after")
        # Chunked, on the same connection.
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        small = data[:200000]
        for i in range(0, len(small), 7000):
            part = small[i:i + 7000]
            c.send(b"%x\r\n" % len(part) + part + b"\r\n")
        c.send(b"0\r\n\r\n")
        self.assertEqual(c.read().json()["sha256"], hashlib.sha256(small).hexdigest())
        # 100-continue: the interim answer, then the body.
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5\r\n\r\n")
        self.assertEqual(c.read().status, 100)
        c.send(b"hello")
        self.assertEqual(c.read().json()["length"], 5)
        c.close()
        # And through curl, with a body from a file.
        path = os.path.join(self.tmp, "body.bin")
        with open(path, "wb") as f:
            f.write(data[:300000])
        r = self.curl("--cacert", self.cert, "--data-binary", "@" + path,
                      self.url + "/test/echo")
        self.assertEqual(r.json()["sha256"], hashlib.sha256(data[:300000]).hexdigest())

    def test_limits_over_tls(self):
        c = self.conn()
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2097153\r\n\r\n")
        r = c.read()
        self.assertEqual(r.status, 413)
        self.assertEqual(r.header("Connection"), "close")
        self.assertEqual(r.header("Strict-Transport-Security"), HSTS)
        self.assertTrue(c.closed_by_peer())  # close_notify, then the end
        c.close()
        # 408: the headers do not come in time.
        c = self.conn()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        r = c.read()
        self.assertEqual(r.status, 408)
        self.assertEqual(r.json()["error"]["code"], "REQUEST_TIMEOUT")
        self.assertTrue(c.closed_by_peer())
        c.close()
        # Connection: close after the answer.
        c = self.conn()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        r = c.read()
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(c.closed_by_peer())
        c.close()

    def test_client_close_notify(self):
        """A request, then the client's close_notify: the answer still comes,
        then the end."""
        obj_in, obj_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_ctx(self.cert).wrap_bio(obj_in, obj_out, server_hostname="localhost")
        sock = socket.create_connection(("127.0.0.1", self.port), 5)
        sock.settimeout(10 * MULT)

        def pump():
            data = obj_out.read()
            if data:
                sock.sendall(data)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
                data = sock.recv(65536)
                self.assertTrue(data, "closed during the handshake")
                obj_in.write(data)
        pump()
        obj.write(get("/test/slow?ms=100"))
        with self.assertRaises(ssl.SSLWantReadError):
            obj.unwrap()  # sends close_notify, would wait for the server's
        pump()
        while True:
            data = sock.recv(65536)
            if not data:
                break
            obj_in.write(data)
        sock.close()
        plain = b""
        try:
            while True:
                data = obj.read(65536)
                if not data:
                    break
                plain += data
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
        self.assertIn(b"HTTP/1.1 200 ", plain)
        self.assertTrue(plain.endswith(b'{"slept":100}'), plain)

    def test_tls11_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                # Let the local OpenSSL really offer TLS 1.1 if it still can.
                ctx.set_ciphers("DEFAULT@SECLEVEL=0")
                ctx.minimum_version = ssl.TLSVersion.TLSv1
            except (ssl.SSLError, ValueError):
                pass
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        raw = socket.create_connection(("127.0.0.1", self.port), 5)
        raw.settimeout(10 * MULT)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.close()
        raw.close()
        # The server is unharmed.
        c = self.conn()
        c.send(get("/healthz"))
        self.assertEqual(c.read().status, 200)
        c.close()

    def test_garbage_instead_of_client_hello(self):
        c = test_http.Conn(self.port, timeout=5)
        c.send(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64)
        # An alert at most, then the end.
        self.assertTrue(c.closed_by_peer())
        self.assertLess(len(c.buf), 64)
        c.close()

    def test_stalled_handshakes_closed_while_others_served(self):
        silent = test_http.Conn(self.port, timeout=10)
        # Half a ClientHello: a record header that announces more.
        half = test_http.Conn(self.port, timeout=10)
        half.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        t0 = time.monotonic()
        result = {}

        def watch(name, c):
            result[name] = (c.closed_by_peer(), time.monotonic() - t0)
        ths = [threading.Thread(target=watch, args=(n, c))
               for n, c in (("silent", silent), ("half", half))]
        for th in ths:
            th.start()
        for i in range(8):
            s = time.monotonic()
            c = self.conn()
            c.send(get(f"/test/echo/n{i}"))
            self.assertEqual(c.read().json()["name"], f"n{i}")
            c.close()
            self.assertLess(time.monotonic() - s, 1.0 * MULT)
            time.sleep(0.05)
        for th in ths:
            th.join(30 * MULT)
        for name in ("silent", "half"):
            closed, when = result[name]
            self.assertTrue(closed, name)
            # header_timeout is 1 s from the accept.
            self.assertGreater(when, 0.7, name)
            self.assertLess(when, 4 * MULT, name)
        silent.close()
        half.close()

    def test_handshake_then_silence(self):
        c = self.conn()
        t0 = time.monotonic()
        self.assertTrue(c.closed_by_peer())
        self.assertLess(time.monotonic() - t0, 4 * MULT)
        self.assertEqual(c.buf, b"")
        c.close()


class HttpTlsCapTest(unittest.TestCase):
    def test_connection_cap_over_tls(self):
        tmp = tempfile.mkdtemp(prefix="sp-tls-")
        cert, key = make_cert(tmp)
        srv = tls_server(tmp, cert, key, {"max_connections": 2}).start()
        try:
            wait_port(srv, srv.tls_port)
            held = []

            def hold():
                c = None
                try:
                    c = TlsConn(srv.tls_port, cert)
                    c.send(get("/healthz"))
                    ok = c.read().status == 200
                except (OSError, ConnectionError):
                    if c is not None:
                        c.close()
                    return False
                if ok:
                    held.append(c)
                    return len(held) == 2
                c.close()  # a probe of start() not closed yet on the server
                return False
            sphelp.wait_until(hold, 10, "two connections")
            # One more: the handshake completes, then 503 and close.
            c = TlsConn(srv.tls_port, cert)
            r = c.read()
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["error"]["code"], "SERVICE_UNAVAILABLE")
            self.assertEqual(r.header("Connection"), "close")
            self.assertEqual(r.header("Strict-Transport-Security"), HSTS)
            self.assertTrue(c.closed_by_peer())
            c.close()
            held.pop().close()

            def served():
                c = None
                try:
                    c = TlsConn(srv.tls_port, cert)
                    c.send(get("/healthz"))
                    return c.read().status == 200
                except (OSError, ConnectionError):
                    return False
                finally:
                    if c is not None:
                        c.close()
            sphelp.wait_until(served, 10, "a free connection slot")
            for c in held:
                c.close()
            self.assertEqual(srv.stop(), 0)
        finally:
            if srv.proc.poll() is None:
                srv.kill()
            shutil.rmtree(tmp, ignore_errors=True)


class HttpTlsConfigTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sp-tls-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_fails(self, extra):
        srv = sphelp.Server(http=True, sync=False, tmp=self.tmp, http_config=dict(
            {"tls_listen": f'"127.0.0.1:{sphelp.free_port()}"'}, **extra))
        r = subprocess.run([sphelp.BIN, "serve", "-c", srv.conf], capture_output=True,
                           text=True, timeout=60 * MULT, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("ingress_http", lines[0])
        # check-config stops on it the same way.
        c = subprocess.run([sphelp.BIN, "check-config", srv.conf], capture_output=True,
                           text=True, timeout=60 * MULT, stdin=subprocess.DEVNULL)
        self.assertEqual(c.returncode, 1, c.stdout)
        return lines[0]

    def test_bad_cert_path(self):
        cert, key = make_cert(self.tmp)
        missing = os.path.join(self.tmp, "nosuch-cert.pem")
        line = self.start_fails({"tls_cert": missing, "tls_key": key})
        self.assertIn(missing, line)
        self.assertIn("No such file", line)

    def test_bad_key(self):
        cert, key = make_cert(self.tmp)
        other_cert, other_key = make_cert(self.tmp, "other")
        line = self.start_fails({"tls_cert": cert, "tls_key": other_key})
        self.assertIn(other_key, line)
        garbage = os.path.join(self.tmp, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a PEM file\n")
        line = self.start_fails({"tls_cert": garbage, "tls_key": key})
        self.assertIn(garbage, line)
        line = self.start_fails({"tls_cert": cert, "tls_key": cert})
        self.assertIn(cert, line)

    def test_https_only(self):
        cert, key = make_cert(self.tmp)
        srv = tls_server(self.tmp, cert, key, {"listen": '""', "tls_min_version": "1.3"})
        srv.proc = subprocess.Popen([sphelp.BIN, "serve", "-c", srv.conf],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
        try:
            wait_port(srv, srv.tls_port)
            c = TlsConn(srv.tls_port, cert)
            self.assertEqual(c.sock.version(), "TLSv1.3")
            c.send(get("/healthz"))
            self.assertEqual(c.read().header("Strict-Transport-Security"), HSTS)
            c.close()
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", srv.http_port), 2).close()
            # tls_min_version 1.3: a TLS 1.2 client is refused.
            ctx = client_ctx(cert)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                TlsConn(srv.tls_port, cert, ctx=ctx)
            self.assertEqual(srv.stop(), 0)
        finally:
            if srv.proc.poll() is None:
                srv.kill()

    def test_tls_listen_needs_cert_and_key(self):
        cert, key = make_cert(self.tmp)
        line = self.start_fails({"tls_key": key})
        self.assertIn("tls_listen needs tls_cert and tls_key", line)
        line = self.start_fails({"tls_cert": cert})
        self.assertIn("tls_listen needs tls_cert and tls_key", line)
        line = self.start_fails({"tls_cert": cert, "tls_key": key, "tls_min_version": "1.1"})
        self.assertIn("tls_min_version", line)
        line = self.start_fails({"tls_cert": cert, "tls_key": key, "tls_listen": '"nope:x"'})
        self.assertIn("tls_listen", line)


if __name__ == "__main__":
    unittest.main(verbosity=2)
