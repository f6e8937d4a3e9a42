# SPDX-License-Identifier: Apache-2.0
"""Certificate reload and refusals that must reach TLS clients.

- SIGHUP makes ingress_http (tls_listen) and ingress_smtp (STARTTLS and
  implicit TLS) load tls_cert/tls_key again: new connections get the new
  certificate, a connection opened before keeps working, and a broken file
  leaves the current certificate in place (logged).
- Over max_sessions on an implicit-TLS port, the 421 comes over TLS, where
  the client can read it (not as clear text the TLS client cannot parse).
- A graceful stop tells open SMTP sessions "421 4.3.2 ... shutting down",
  in clear and over TLS.
Certificates are made with the openssl CLI; clients are Python's ssl,
smtplib and a raw socket."""
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import smtphelp  # noqa: E402
import sphelp  # noqa: E402
import test_http_tls  # noqa: E402

MULT = sphelp.MULT


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def any_ctx():
    """Accept any certificate: the tests compare the one served."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def https_cert(port):
    with socket.create_connection(("127.0.0.1", port), 10) as raw:
        with any_ctx().wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def replace_cert(dst_cert, dst_key, src_cert, src_key):
    """Write the new files beside and rename over (how renewals do it)."""
    for src, dst in ((src_cert, dst_cert), (src_key, dst_key)):
        shutil.copy(src, dst + ".new")
        os.rename(dst + ".new", dst)


def wait_log(srv, text):
    sphelp.wait_until(lambda: any(text in ln.get("msg", "") for ln in srv.log_lines()), 20,
                      f"log line {text!r}")


def read_line(sock):
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


class HttpsReloadTest(unittest.TestCase):
    def test_sighup_reloads_the_https_certificate(self):
        tmp = tempfile.mkdtemp(prefix="sp-reload-")
        try:
            a_cert, a_key = test_http_tls.make_cert(tmp, "a")
            b_cert, b_key = test_http_tls.make_cert(tmp, "b")
            cert, key = os.path.join(tmp, "live.pem"), os.path.join(tmp, "live.key")
            replace_cert(cert, key, a_cert, a_key)
            os.mkdir(os.path.join(tmp, "srv"))
            srv = test_http_tls.tls_server(os.path.join(tmp, "srv"), cert, key)
            srv.start()
            try:
                test_http_tls.wait_port(srv, srv.tls_port)
                self.assertEqual(https_cert(srv.tls_port), der(a_cert))
                # A connection opened before the reload.
                old = test_http_tls.TlsConn(srv.tls_port, a_cert)
                replace_cert(cert, key, b_cert, b_key)
                srv.proc.send_signal(signal.SIGHUP)
                wait_log(srv, "SIGHUP: TLS certificate reloaded")
                self.assertEqual(https_cert(srv.tls_port), der(b_cert))
                old.send(test_http_tls.get("/healthz"))
                self.assertEqual(old.read().status, 200)
                old.sock.close()
                # A broken file: the current certificate stays.
                with open(cert, "w") as f:
                    f.write("not a certificate\n")
                srv.proc.send_signal(signal.SIGHUP)
                wait_log(srv, "SIGHUP: TLS certificate not reloaded")
                self.assertEqual(https_cert(srv.tls_port), der(b_cert))
            finally:
                self.assertEqual(srv.stop(), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class SmtpTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sp-reload-")
        cls.a = test_http_tls.make_cert(cls.tmp, "a")
        cls.b = test_http_tls.make_cert(cls.tmp, "b")
        cls.cert = os.path.join(cls.tmp, "live.pem")
        cls.key = os.path.join(cls.tmp, "live.key")
        replace_cert(cls.cert, cls.key, *cls.a)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def server(self, **cfg):
        c = {"tls_cert": self.cert, "tls_key": self.key}
        c.update(cfg)
        return smtphelp.SmtpServer(tmp=tempfile.mkdtemp(dir=self.tmp), sync=False,
                                   smtp_config=c).start()

    def starttls_cert(self, port):
        with smtphelp.SMTP("127.0.0.1", port, timeout=30 * MULT) as s:
            s.starttls(context=any_ctx())
            return s.sock.getpeercert(binary_form=True)

    def smtps_cert(self, port):
        with smtphelp.SMTP_SSL("127.0.0.1", port, timeout=30 * MULT, context=any_ctx()) as s:
            return s.sock.getpeercert(binary_form=True)

    def test_sighup_reloads_the_smtp_certificate(self):
        replace_cert(self.cert, self.key, *self.a)
        srv = self.server()
        try:
            self.assertEqual(self.starttls_cert(srv.smtp_port), der(self.a[0]))
            self.assertEqual(self.smtps_cert(srv.smtps_port), der(self.a[0]))
            replace_cert(self.cert, self.key, *self.b)
            srv.proc.send_signal(signal.SIGHUP)
            wait_log(srv, "SIGHUP: TLS certificate reloaded")
            self.assertEqual(self.starttls_cert(srv.smtp_port), der(self.b[0]))
            self.assertEqual(self.smtps_cert(srv.smtps_port), der(self.b[0]))
            with open(self.key, "w") as f:
                f.write("broken\n")
            srv.proc.send_signal(signal.SIGHUP)
            wait_log(srv, "SIGHUP: TLS certificate not reloaded")
            self.assertEqual(self.smtps_cert(srv.smtps_port), der(self.b[0]))
        finally:
            self.assertEqual(srv.stop(), 0)
            replace_cert(self.cert, self.key, *self.a)

    def test_over_cap_on_implicit_tls_answers_over_tls(self):
        replace_cert(self.cert, self.key, *self.a)
        srv = self.server(max_sessions=1)
        try:
            first = smtphelp.SMTP_SSL("127.0.0.1", srv.smtps_port, timeout=30 * MULT,
                                      context=any_ctx())
            try:
                raw = socket.create_connection(("127.0.0.1", srv.smtps_port), 10)
                with any_ctx().wrap_socket(raw, server_hostname="localhost") as s:
                    s.settimeout(30 * MULT)
                    line = read_line(s)
                self.assertTrue(line.startswith("421 4.3.2 "), line)
                self.assertIn("Too many connections", line)
                # The port in clear text answers in clear text.
                with socket.create_connection(("127.0.0.1", srv.smtp_port), 10) as p:
                    p.settimeout(30 * MULT)
                    self.assertTrue(read_line(p).startswith("421 4.3.2 "))
            finally:
                first.close()
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_shutdown_says_421_to_open_sessions(self):
        replace_cert(self.cert, self.key, *self.a)
        srv = self.server()
        plain = socket.create_connection(("127.0.0.1", srv.smtp_port), 10)
        plain.settimeout(30 * MULT)
        self.assertTrue(read_line(plain).startswith("220 "))
        raw = socket.create_connection(("127.0.0.1", srv.smtps_port), 10)
        tls = any_ctx().wrap_socket(raw, server_hostname="localhost")
        tls.settimeout(30 * MULT)
        self.assertTrue(read_line(tls).startswith("220 "))
        self.assertEqual(srv.stop(), 0)
        for s in (plain, tls):
            line = read_line(s)
            self.assertTrue(line.startswith("421 4.3.2 "), line)
            self.assertIn("shutting down", line)
            s.close()


if __name__ == "__main__":
    unittest.main()
