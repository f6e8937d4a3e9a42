# SPDX-License-Identifier: Apache-2.0
"""The SMTP submission ingress on the real binary with real clients:
Python's smtplib (the seed's STARTTLS + login snippet, implicit TLS, AUTH
LOGIN, attachments, Cc, Bcc and a UTF-8 subject) and swaks when installed;
every accepted message is read back with `sendpipe messages show` and
compared field by field. Then the abuse cases: AUTH before STARTTLS, bad
base64, wrong password, a 10,000-byte line, too large, too many
recipients, a pipelined burst, a drop in the middle of DATA, NUL bytes, an
early talker, a TLS handshake that never completes, the error limit."""
import base64
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import unittest
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(__file__))
import smtphelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT


class SmtpTest(unittest.TestCase):
    """One server for the class; tests share its tenants."""

    @classmethod
    def setUpClass(cls):
        cls.srv = smtphelp.SmtpServer(sync=False, smtp_config={
            "max_message_size": "64K", "max_recipients": 5, "max_errors": 4,
            "tls_timeout": "30s"})
        srv = cls.srv
        srv.start()
        cls.team = srv.team("acme")
        cls.other = srv.team("other")
        cls.dom = srv.domain(cls.team, "acme.test")
        cls.dom2 = srv.domain(cls.team, "mail.acme.test")
        srv.domain(cls.team, "pending.test", verified=False)
        srv.domain(cls.other, "other.test")
        cls.key_id, cls.key = srv.key(cls.team)
        _, cls.dom_key = srv.key(cls.team, domain="mail.acme.test")

    @classmethod
    def tearDownClass(cls):
        if cls.srv.proc is not None and cls.srv.proc.poll() is None:
            rc = cls.srv.stop()
            assert rc == 0, "sendpipe exited with %d" % rc
        shutil.rmtree(cls.srv.tmp, ignore_errors=True)

    def login(self, key=None):
        s = smtphelp.smtp(self.srv.smtp_port)
        s.starttls(context=smtphelp.client_ctx())
        s.login("usesend", key or self.key)
        return s

    def raw_authed(self):
        r = smtphelp.Raw(self.srv.smtp_port)
        self.assertTrue(r.cmd("EHLO client.test").startswith("250 "))
        r.starttls()
        self.assertTrue(r.cmd("EHLO client.test").startswith("250 "))
        cred = base64.b64encode(b"\0usesend\0" + self.key.encode()).decode()
        self.assertEqual(r.cmd("AUTH PLAIN " + cred), "235 2.7.0 Authentication successful")
        return r

    def simple(self, subject="hi", frm="hi@acme.test"):
        m = EmailMessage()
        m["From"] = frm
        m["To"] = "rcpt@example.com"
        m["Subject"] = subject
        m.set_content("body\n")
        return m

    # ---- happy paths -----------------------------------------------------

    def test_seed_snippet_starttls_login(self):
        """The seed's example: STARTTLS on the plain port, user usesend,
        an API key as the password, send_message."""
        m = EmailMessage()
        m["From"] = "Acme <hello@acme.test>"
        m["To"] = "Bob <bob@example.com>"
        m["Subject"] = "Hello from SMTP"
        m.set_content("plain body\n")
        with smtphelp.smtp(self.srv.smtp_port) as s:
            code, caps = s.ehlo()
            self.assertEqual(code, 250)
            self.assertNotIn(b"AUTH", caps)  # not before TLS
            self.assertIn(b"STARTTLS", caps)
            s.starttls(context=smtphelp.client_ctx())
            s.ehlo()
            for ext in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "auth"):
                self.assertTrue(s.has_extn(ext), ext)
            self.assertEqual(s.esmtp_features["size"], str(64 * 1024))
            self.assertFalse(s.has_extn("chunking"))
            s.login("usesend", self.key)
            s.send_message(m)
            mid = s.last_id()
        rec = self.srv.record(mid)
        self.assertEqual(rec["team"], self.team)
        self.assertEqual(rec["domain_id"], self.dom)
        self.assertEqual(rec["api_key_id"], self.key_id)
        self.assertEqual(rec["from"], "Acme <hello@acme.test>")
        self.assertEqual(rec["to"], ["Bob <bob@example.com>"])
        self.assertNotIn("cc", rec)
        self.assertNotIn("bcc", rec)
        self.assertEqual(rec["subject"], "Hello from SMTP")
        self.assertEqual(rec["text"], "plain body\r\n")
        self.assertNotIn("html", rec)
        self.assertIn("Subject: Hello from SMTP", rec["raw"])
        self.assertTrue(rec["raw"].endswith("plain body\r\n"))

    def test_implicit_tls_auth_login(self):
        with smtphelp.smtps(self.srv.smtps_port) as s:
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            s.login("usesend", self.key, initial_response_ok=False)  # AUTH LOGIN
            s.send_message(self.simple("over tls"))
            mid = s.last_id()
        self.assertEqual(self.srv.record(mid)["subject"], "over tls")

    def test_auth_login_mechanism(self):
        r = smtphelp.Raw(self.srv.smtps_port, tls=True)
        self.assertTrue(r.greeting.startswith("220 mx.sendpipe.test"))
        r.cmd("EHLO c")
        self.assertEqual(r.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6")
        self.assertEqual(r.cmd(base64.b64encode(b"usesend").decode()), "334 UGFzc3dvcmQ6")
        self.assertEqual(r.cmd(base64.b64encode(self.key.encode()).decode()),
                         "235 2.7.0 Authentication successful")
        r.close()

    def test_attachments_cc_bcc_utf8_subject(self):
        blob = bytes(range(256)) * 3
        m = EmailMessage()
        m["From"] = "Zoë Sender <zoe@mail.acme.test>"
        m["To"] = "A <a@example.com>, b@example.com"
        m["Cc"] = "C <c@example.com>"
        m["Reply-To"] = "replies@acme.test"
        m["Subject"] = "Grüße aus Köln ✓"
        m["X-Campaign"] = "q3"
        m.set_content("Hallo Welt\n")
        m.add_alternative("<p>Hallo <b>Welt</b></p>\n", subtype="html")
        m.add_attachment(b"hello attachment\n", maintype="text", subtype="plain",
                         filename="notes.txt")
        m.add_attachment(blob, maintype="application", subtype="octet-stream",
                         filename="blob.bin")
        with self.login() as s:
            s.send_message(m, to_addrs=["a@example.com", "B@example.com", "c@example.com",
                                        "hidden@example.com"])
            mid = s.last_id()
        rec = self.srv.record(mid)
        self.assertEqual(rec["from"], "Zoë Sender <zoe@mail.acme.test>")
        self.assertEqual(rec["domain_id"], self.dom2)
        self.assertEqual(rec["to"], ["A <a@example.com>", "b@example.com"])
        self.assertEqual(rec["cc"], ["C <c@example.com>"])
        self.assertEqual(rec["bcc"], ["hidden@example.com"])
        self.assertEqual(rec["reply_to"], ["replies@acme.test"])
        self.assertEqual(rec["subject"], "Grüße aus Köln ✓")
        self.assertEqual(rec["text"], "Hallo Welt\r\n")
        self.assertEqual(rec["html"], "<p>Hallo <b>Welt</b></p>\r\n")
        self.assertIn("X-Campaign: q3", rec["headers"])
        self.assertFalse([h for h in rec["headers"] if h.lower().startswith(("bcc", "to:"))])
        self.assertEqual(rec["attachment_names"], ["notes.txt", "blob.bin"])
        self.assertEqual(rec["attachment_data"],
                         [smtphelp.json_bytes(b"hello attachment\n"),
                          smtphelp.json_bytes(blob)])

    def test_utf8_address_smtputf8(self):
        m = self.simple("utf8 rcpt")
        with self.login() as s:
            s.send_message(m, to_addrs=["jörg@exämple.com"], mail_options=["SMTPUTF8"])
            mid = s.last_id()
        self.assertEqual(self.srv.record(mid)["bcc"], ["jörg@exämple.com"])

    def test_swaks(self):
        self.assertTrue(shutil.which("swaks"), "swaks is needed (scripts/deps.sh)")
        r = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(self.srv.smtp_port), "--tls",
             "--auth", "PLAIN", "--auth-user", "usesend", "--auth-password", self.key,
             "--from", "swaks@acme.test", "--to", "x@example.com",
             "--header", "Subject: from swaks", "--body", "swaks body"],
            capture_output=True, text=True, timeout=60 * MULT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        ids = [ln.split()[-1] for ln in r.stdout.splitlines() if "<~  250 2.0.0 " in ln]
        self.assertEqual(len(ids), 1, r.stdout)
        rec = self.srv.record(ids[0])
        self.assertEqual(rec["subject"], "from swaks")
        self.assertEqual(rec["to"], ["x@example.com"])
        self.assertEqual(rec["text"].strip(), "swaks body")

    # ---- policy ------------------------------------------------------------

    def assert_refused(self, msg, code, text, key=None):
        before = self.srv.message_count()
        with self.login(key) as s:
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail("hi@acme.test", ["r@example.com"], msg.as_bytes())
        self.assertEqual(cm.exception.smtp_code, code)
        self.assertIn(text, cm.exception.smtp_error.decode())
        self.assertEqual(self.srv.message_count(), before)

    def test_from_domain_rules(self):
        self.assert_refused(self.simple(frm="x@other.test"), 550,
                            "5.7.1 Domain other.test of the From address is not a domain")
        self.assert_refused(self.simple(frm="x@pending.test"), 550,
                            "5.7.1 Domain pending.test is not verified")
        self.assert_refused(self.simple(frm="x@acme.test"), 550,
                            "5.7.1 This API key may not send from domain acme.test",
                            key=self.dom_key)
        m = EmailMessage()
        m["To"] = "a@example.com"
        m.set_content("no from")
        self.assert_refused(m, 554, "5.6.0 The message has no From address")

    def test_auth_required_and_wrong_password(self):
        with smtphelp.smtp(self.srv.smtp_port) as s:
            s.starttls(context=smtphelp.client_ctx())
            s.ehlo()
            code, text = s.mail("a@acme.test")
            self.assertEqual((code, text), (530, b"5.7.0 Authentication required"))
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login("usesend", "us_aaaaaaaaaa_" + "0" * 32)
            self.assertEqual(cm.exception.smtp_code, 535)
            self.assertIn(b"5.7.8", cm.exception.smtp_error)
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login("someone", self.key)

    # ---- abuse -------------------------------------------------------------

    def test_auth_before_starttls(self):
        r = smtphelp.Raw(self.srv.smtp_port)
        r.cmd("EHLO c")
        cred = base64.b64encode(b"\0usesend\0" + self.key.encode()).decode()
        self.assertEqual(r.cmd("AUTH PLAIN " + cred),
                         "538 5.7.11 Encryption required for requested authentication mechanism")
        self.assertTrue(r.cmd("MAIL FROM:<a@acme.test>").startswith("530 5.7.0"))
        r.close()

    def test_bad_base64(self):
        r = smtphelp.Raw(self.srv.smtps_port, tls=True)
        r.cmd("EHLO c")
        self.assertEqual(r.cmd("AUTH PLAIN !!!notbase64"), "501 5.5.2 Invalid base64 data")
        self.assertEqual(r.cmd("AUTH PLAIN"), "334 ")
        self.assertEqual(r.cmd("abc"), "501 5.5.2 Invalid base64 data")
        self.assertEqual(r.cmd("NOOP"), "250 2.0.0 OK")
        r.close()

    def test_long_line(self):
        r = smtphelp.Raw(self.srv.smtp_port)
        self.assertEqual(r.cmd("EHLO " + "x" * 10000),
                         "500 5.5.6 Line too long (at most 512 bytes)")
        self.assertTrue(r.cmd("EHLO c").startswith("250 "))
        r.close()

    def test_too_big(self):
        big = self.simple("big")
        big.set_content("x" * 100 + "\n" + ("y" * 998 + "\n") * 80)
        before = self.srv.message_count()
        with self.login() as s:
            # Without SIZE the limit applies at the end of DATA.
            self.assertEqual(s.mail("hi@acme.test")[0], 250)
            self.assertEqual(s.rcpt("r@example.com")[0], 250)
            code, text = s.data(big.as_bytes())
            self.assertEqual(code, 552)
            self.assertIn(b"5.3.4", text)
            # SIZE declared up front (smtplib does so itself) is refused at MAIL.
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("hi@acme.test", ["r@example.com"], big.as_bytes())
            self.assertEqual(cm.exception.smtp_code, 552)
            s.rset()
            s.send_message(self.simple("after big"))  # the session goes on
        self.assertEqual(self.srv.message_count(), before + 1)

    def test_too_many_recipients(self):
        with self.login() as s:
            s.mail("hi@acme.test")
            for i in range(5):
                self.assertEqual(s.rcpt(f"r{i}@example.com")[0], 250)
            code, text = s.rcpt("r5@example.com")
            self.assertEqual((code, text), (452, b"4.5.3 Too many recipients"))
            s.rset()

    def test_pipelined_burst(self):
        r = self.raw_authed()
        msg = "From: hi@acme.test\r\nTo: p@example.com\r\nSubject: piped\r\n\r\n..dot\r\n"
        r.send("MAIL FROM:<hi@acme.test>\r\nRCPT TO:<p@example.com>\r\n"
               "RCPT TO:<q@example.com>\r\nDATA\r\n")
        self.assertEqual(r.reply(), "250 2.1.0 Sender OK")
        self.assertEqual(r.reply(), "250 2.1.5 Recipient OK")
        self.assertEqual(r.reply(), "250 2.1.5 Recipient OK")
        self.assertTrue(r.reply().startswith("354 "))
        r.send(msg + ".\r\nNOOP\r\n")
        ans = r.reply()
        m = smtphelp.ID_RE.match(ans)
        self.assertTrue(m, ans)
        self.assertEqual(r.reply(), "250 2.0.0 OK")
        rec = self.srv.record(m.group(1))
        self.assertEqual(rec["text"], ".dot\r\n")  # unstuffed
        self.assertEqual(rec["bcc"], ["q@example.com"])
        r.close()

    def test_drop_during_data(self):
        before = self.srv.message_count()
        r = self.raw_authed()
        r.cmd("MAIL FROM:<hi@acme.test>")
        r.cmd("RCPT TO:<p@example.com>")
        self.assertTrue(r.cmd("DATA").startswith("354"))
        r.send("From: hi@acme.test\r\nSubject: cut\r\n\r\npartial body\r\n")
        r.close()
        sphelp.wait_until(lambda: any("connection lost during DATA" in ln.get("msg", "")
                                      for ln in self.srv.log_lines()), 10, "the drop")
        self.assertEqual(self.srv.message_count(), before)

    def test_nul_bytes(self):
        before = self.srv.message_count()
        r = self.raw_authed()
        r.cmd("MAIL FROM:<hi@acme.test>")
        r.cmd("RCPT TO:<p@example.com>")
        r.cmd("DATA")
        self.assertEqual(r.cmd("From: hi@acme.test\r\n\r\na\0b\r\n."),
                         "554 5.6.0 NUL bytes are not allowed in a message")
        self.assertEqual(r.cmd("NOOP\0"), "500 5.5.2 NUL bytes are not allowed in commands")
        r.close()
        self.assertEqual(self.srv.message_count(), before)

    def test_smuggling_refused(self):
        r = self.raw_authed()
        r.cmd("MAIL FROM:<hi@acme.test>")
        r.cmd("RCPT TO:<p@example.com>")
        r.cmd("DATA")
        r.send("From: hi@acme.test\r\n\r\nbody\n.\nMAIL FROM:<x@acme.test>\r\n")
        self.assertTrue(r.reply().startswith("554 5.5.0 Bare LF"))
        self.assertTrue(r.closed())
        r.close()

    def test_early_talker(self):
        r = smtphelp.Raw(self.srv.smtp_port)
        # HELO: no PIPELINING, so two commands at once are refused.
        r.send("HELO c\r\nNOOP\r\n")
        self.assertEqual(r.reply(), "250 mx.sendpipe.test")
        self.assertTrue(r.reply().startswith("554 5.5.0"))
        self.assertTrue(r.closed())
        r.close()

    def test_error_limit(self):
        r = smtphelp.Raw(self.srv.smtp_port)
        for _ in range(3):
            self.assertEqual(r.cmd("BOGUS"), "500 5.5.2 Command not recognized")
        self.assertEqual(r.cmd("BOGUS"), "500 5.5.2 Command not recognized")
        self.assertTrue(r.reply().startswith("421 4.7.0"))
        self.assertTrue(r.closed())
        r.close()

    def test_stalled_tls_handshake_does_not_block_others(self):
        stalled = socket.create_connection(("127.0.0.1", self.srv.smtps_port), 5)
        stalled.sendall(b"\x16\x03\x01\x00\xff")  # a ClientHello header, then nothing
        half = smtphelp.Raw(self.srv.smtp_port)
        half.cmd("EHLO c")
        half.send("STARTTLS\r\n")  # and never start the handshake
        try:
            with self.login() as s:
                s.send_message(self.simple("while others stall"))
                self.assertTrue(s.last_id())
        finally:
            stalled.close()
            half.close()

    def test_vrfy_help_bdat(self):
        r = smtphelp.Raw(self.srv.smtp_port)
        r.cmd("EHLO c")
        self.assertTrue(r.cmd("VRFY bob").startswith("252 2.5.0"))
        self.assertTrue(r.cmd("HELP").startswith("214 2.0.0"))
        self.assertEqual(r.cmd("BDAT 10 LAST"), "502 5.5.1 CHUNKING is not supported")
        self.assertTrue(r.cmd("QUIT").startswith("221 2.0.0"))
        r.close()


class SmtpLimitsTest(unittest.TestCase):
    """Settings that need their own server: session cap, idle timeout,
    greeting delay (early talker before the greeting)."""

    def test_session_cap_idle_and_greeting_delay(self):
        srv = smtphelp.SmtpServer(sync=False, smtp_config={
            "max_sessions": 2, "idle_timeout": "1s", "greeting_delay": "300ms"})
        srv.start()
        try:
            a = smtphelp.Raw(srv.smtp_port)
            b = smtphelp.Raw(srv.smtp_port)
            c = smtphelp.Raw(srv.smtp_port)
            self.assertTrue(c.greeting.startswith("421 4.3.2"), c.greeting)
            self.assertTrue(c.closed())
            # Idle: both sessions are closed with 421 4.4.2.
            self.assertTrue(a.reply().startswith("421 4.4.2"))
            self.assertTrue(b.reply().startswith("421 4.4.2"))
            for x in (a, b, c):
                x.close()
            # Talking before the greeting.
            sphelp.wait_until(lambda: srv.log_lines() is not None, 1, "log")
            e = smtphelp.Raw(srv.smtp_port, greeting=False)
            e.send("EHLO early\r\n")
            self.assertTrue(e.reply().startswith("554 5.5.0"))
            self.assertTrue(e.closed())
            e.close()
        finally:
            rc = srv.stop()
            shutil.rmtree(srv.tmp, ignore_errors=True)
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
