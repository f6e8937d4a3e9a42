# SPDX-License-Identifier: Apache-2.0
"""SMTP ingress settings on the real binary: trusted_networks with
trusted_team (a listed source address submits without AUTH as that team, an
unlisted one gets 530), allow_plain_auth (AUTH without TLS), a configured
tls_cert/tls_key made with the openssl CLI (served instead of the
self-signed one), and nodemailer as a client (npm, tests/smtp-node)."""
import base64
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import unittest
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(__file__))
import smtphelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT
# 127.0.0.2 is loopback too on Linux: a client bound to it comes from an
# address the server can tell apart from 127.0.0.1.
TRUSTED_SRC = ("127.0.0.2", 0)
NODE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "smtp-node")


def message(frm="app@acme.test", subject="trusted"):
    m = EmailMessage()
    m["From"] = frm
    m["To"] = "rcpt@example.com"
    m["Subject"] = subject
    m.set_content("body\n")
    return m


class SmtpConfigTest(unittest.TestCase):
    """One server: trusted_networks 127.0.0.2/32 as team acme,
    allow_plain_auth, a certificate from the openssl CLI."""

    @classmethod
    def setUpClass(cls):
        tmp = __import__("tempfile").mkdtemp(prefix="sp-it-")
        cls.cert = os.path.join(tmp, "smtp.crt")
        cls.keyfile = os.path.join(tmp, "smtp.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                        "-subj", "/CN=custom.sendpipe.test", "-keyout", cls.keyfile,
                        "-out", cls.cert], check=True, capture_output=True,
                       timeout=60 * MULT)
        cls.srv = smtphelp.SmtpServer(tmp=tmp, sync=False, smtp_config={
            "trusted_networks": '"127.0.0.2/32"', "trusted_team": "TEAM_ID",
            "allow_plain_auth": "true",
            "tls_cert": cls.cert, "tls_key": cls.keyfile})
        srv = cls.srv
        # The team must exist before the server starts (trusted_team is
        # checked then): make it with the CLI, then put its id in the config.
        cls.team = srv.team("acme")
        cls.other = srv.team("other")
        cls.dom = srv.domain(cls.team, "acme.test")
        srv.domain(cls.team, "pending.test", verified=False)
        srv.domain(cls.other, "other.test")
        with open(srv.conf) as f:
            conf = f.read()
        assert "trusted_team: TEAM_ID" in conf
        with open(srv.conf, "w") as f:
            f.write(conf.replace("trusted_team: TEAM_ID", "trusted_team: %d" % cls.team))
        srv.start()
        cls.key_id, cls.key = srv.key(cls.team)

    @classmethod
    def tearDownClass(cls):
        if cls.srv.proc is not None and cls.srv.proc.poll() is None:
            rc = cls.srv.stop()
            assert rc == 0, "sendpipe exited with %d" % rc
        shutil.rmtree(cls.srv.tmp, ignore_errors=True)

    # ---- trusted networks --------------------------------------------------

    def test_trusted_network_submits_without_auth(self):
        with smtphelp.SMTP("127.0.0.1", self.srv.smtp_port, timeout=30 * MULT,
                           source_address=TRUSTED_SRC) as s:
            s.ehlo()
            s.send_message(message(subject="from a trusted network"))
            mid = s.last_id()
        rec = self.srv.record(mid)
        self.assertEqual(rec["team"], self.team)
        self.assertEqual(rec["domain_id"], self.dom)
        self.assertNotIn("api_key_id", rec)
        self.assertEqual(rec["subject"], "from a trusted network")

    def test_trusted_network_keeps_the_from_domain_rule(self):
        before = self.srv.message_count()
        for frm, text in (("x@other.test", "is not a domain of this team"),
                          ("x@pending.test", "is not verified")):
            with smtphelp.SMTP("127.0.0.1", self.srv.smtp_port, timeout=30 * MULT,
                               source_address=TRUSTED_SRC) as s:
                with self.assertRaises(smtplib.SMTPDataError) as cm:
                    s.send_message(message(frm=frm))
            self.assertEqual(cm.exception.smtp_code, 550)
            self.assertIn(text, cm.exception.smtp_error.decode())
        self.assertEqual(self.srv.message_count(), before)

    def test_unlisted_network_needs_auth(self):
        r = smtphelp.Raw(self.srv.smtp_port)  # from 127.0.0.1: not listed
        self.assertTrue(r.cmd("EHLO client.test").startswith("250 "))
        self.assertEqual(r.cmd("MAIL FROM:<app@acme.test>"), "530 5.7.0 Authentication required")
        self.assertEqual(r.cmd("RCPT TO:<rcpt@example.com>"),
                         "530 5.7.0 Authentication required")
        self.assertEqual(r.cmd("DATA"), "530 5.7.0 Authentication required")
        r.close()

    # ---- allow_plain_auth --------------------------------------------------

    def test_plain_auth_without_tls(self):
        with smtphelp.smtp(self.srv.smtp_port) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("auth"))  # advertised before STARTTLS
            self.assertTrue(s.has_extn("starttls"))
            s.login("usesend", self.key)
            s.send_message(message(subject="plain auth"))
            mid = s.last_id()
        rec = self.srv.record(mid)
        self.assertEqual(rec["api_key_id"], self.key_id)
        self.assertEqual(rec["subject"], "plain auth")

    def test_plain_auth_wrong_key(self):
        r = smtphelp.Raw(self.srv.smtp_port)
        r.cmd("EHLO c")
        cred = base64.b64encode(b"\0usesend\0us_0000000000_" + b"0" * 32).decode()
        self.assertEqual(r.cmd("AUTH PLAIN " + cred),
                         "535 5.7.8 Authentication credentials invalid")
        r.close()

    # ---- configured certificate -------------------------------------------

    def test_configured_certificate_is_served(self):
        with open(self.cert) as f:
            want = ssl.PEM_cert_to_DER_cert(f.read())
        # Verified against the generated certificate as the only CA (the
        # name is not checked: the client connects to 127.0.0.1).
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        for starttls in (False, True):
            if starttls:
                s = smtphelp.SMTP("127.0.0.1", self.srv.smtp_port, timeout=30 * MULT)
                s.starttls(context=ctx)
            else:
                s = smtphelp.SMTP_SSL("127.0.0.1", self.srv.smtps_port, timeout=30 * MULT,
                                      context=ctx)
            with s:
                self.assertEqual(s.sock.getpeercert(binary_form=True), want)
                s.login("usesend", self.key)
                s.send_message(message(subject="verified tls"))
                mid = s.last_id()
            self.assertEqual(self.srv.record(mid)["subject"], "verified tls")
        # No self-signed certificate was generated.
        self.assertFalse(os.path.exists(os.path.join(self.srv.data, "smtp-selfsigned.pem")))

    # ---- nodemailer -------------------------------------------------------

    def test_nodemailer_with_attachments(self):
        if shutil.which("node") is None or shutil.which("npm") is None:
            self.skipTest("node and npm are not installed")
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "nodemailer")):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NODE_DIR, check=True, capture_output=True,
                           timeout=300 * MULT)
        blob = bytes(range(256)) * 4
        arg = {"port": self.srv.smtp_port, "secure": False, "user": "usesend",
               "pass": self.key,
               "message": {
                   "from": "\"Node App\" <node@acme.test>",
                   "to": "Ann <ann@example.com>",
                   "cc": "cc@example.com",
                   "bcc": "hidden@example.com",
                   "subject": "nodemailer ✓ attachments",
                   "text": "text body\n",
                   "html": "<p>html body</p>\n",
                   "headers": {"X-Campaign": "node"},
                   "attachments": [
                       {"filename": "notes.txt",
                        "content": base64.b64encode(b"node notes\n").decode(),
                        "contentType": "text/plain"},
                       {"filename": "blob.bin",
                        "content": base64.b64encode(blob).decode(),
                        "contentType": "application/octet-stream"}]}}
        try:
            r = subprocess.run(["node", os.path.join(NODE_DIR, "send.js"), json.dumps(arg)],
                               capture_output=True, text=True, timeout=60 * MULT)
        except subprocess.TimeoutExpired as e:
            self.fail("nodemailer timed out: %s %s" % (e.stdout, e.stderr))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        info = json.loads(r.stdout)
        m = smtphelp.ID_RE.match(info["response"])
        self.assertIsNotNone(m, info)
        self.assertEqual(sorted(info["accepted"]),
                         ["ann@example.com", "cc@example.com", "hidden@example.com"])
        rec = self.srv.record(m.group(1))
        self.assertEqual(rec["api_key_id"], self.key_id)
        self.assertEqual(rec["from"], "Node App <node@acme.test>")
        self.assertEqual(rec["to"], ["Ann <ann@example.com>"])
        self.assertEqual(rec["cc"], ["cc@example.com"])
        self.assertEqual(rec["bcc"], ["hidden@example.com"])
        self.assertEqual(rec["subject"], "nodemailer ✓ attachments")
        self.assertEqual(rec["text"].replace("\r\n", "\n"), "text body\n")
        self.assertEqual(rec["html"].replace("\r\n", "\n"), "<p>html body</p>\n")
        self.assertIn("X-Campaign: node", rec["headers"])
        self.assertEqual(rec["attachment_names"], ["notes.txt", "blob.bin"])
        self.assertEqual(rec["attachment_data"],
                         [smtphelp.json_bytes(b"node notes\n"), smtphelp.json_bytes(blob)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
