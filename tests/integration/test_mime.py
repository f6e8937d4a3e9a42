# SPDX-License-Identifier: Apache-2.0
"""The mime plugin on the real binary: messages submitted through the
emails API (and one through SMTP) are delivered to egress_outbox, read back
with `sendpipe outbox raw`, and every built message is parsed by two
independent parsers, Python's email package (policy=default) and npm
mailparser (tests/mime-node/parse.mjs), whose readings are compared with
what was submitted: UTF-8 subjects and display names, address lists, no
Bcc header, exact text and html, the text made from html, byte-exact
binary attachments and their content types, custom headers and the ones
refused, Message-ID, Date, X-Usesend-Email-ID, In-Reply-To, CRLF and line
lengths. The SMTP case checks the submitted bytes are kept except for the
added headers and the removed Bcc."""
import base64
import datetime
import email
import email.policy
import email.utils
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import smtphelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT
NODE_DIR = os.path.join(sphelp.SOURCE_DIR, "tests", "mime-node")

SUBJECT = "Grüße – 日本語 ✓"
TRICKY_TO = '"Doe, John \\"JD\\"" <j@x.test>'


class MimeServer(apihelp.ApiServer):
    """ingress_http + api_usesend + ingress_smtp + mime + egress_outbox."""

    def __init__(self):
        self.smtp_port = sphelp.free_port()
        self.smtps_port = sphelp.free_port()
        extra = (f"  - name: ingress_smtp\n"
                 f"    config: {{ listen: \"127.0.0.1:{self.smtp_port}\", "
                 f"tls_listen: \"127.0.0.1:{self.smtps_port}\", "
                 f"hostname: mx.sendpipe.test }}\n"
                 f"  - name: api_usesend\n"
                 f"    config: {{ rate_limit: 100000 }}\n"
                 f"  - name: mime\n")
        sphelp.Server.__init__(self, extra_plugins=extra, http=True, sync=False)

    def raw(self, mid):
        r = subprocess.run([sphelp.BIN, "outbox", "raw", mid, "-c", self.conf],
                           capture_output=True, timeout=60 * MULT, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout


def node_parse(raws):
    """Parse messages with mailparser; one dict per message."""
    node = shutil.which("node")
    assert node is not None, "node is needed for the mailparser check (scripts/deps.sh)"
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "mailparser")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", NODE_DIR],
                       check=True, timeout=300, stdin=subprocess.DEVNULL)
    tmp = tempfile.mkdtemp(prefix="sp-mime-")
    try:
        files = []
        for i, raw in enumerate(raws):
            f = os.path.join(tmp, f"m{i}.eml")
            with open(f, "wb") as fh:
                fh.write(raw)
            files.append(f)
        r = subprocess.run([node, os.path.join(NODE_DIR, "parse.mjs")] + files,
                           capture_output=True, timeout=60 * MULT, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr.decode()
        return json.loads(r.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def lf(s):
    return s.replace("\r\n", "\n") if s is not None else None


def header_block(raw):
    head, sep, _ = raw.partition(b"\r\n\r\n")
    assert sep, "no end of the header block"
    return head


def unfolded_fields(raw):
    """(name, value) of each header field of the top-level header block."""
    out = []
    for line in header_block(raw).split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            out[-1] = (out[-1][0], out[-1][1] + b" " + line.strip())
        else:
            n, _, v = line.partition(b":")
            out.append((n.decode(), v.strip()))
    return out


class MimeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = MimeServer()
        srv = cls.srv
        srv.start()
        sphelp.wait_until(lambda: smtphelp._connectable(srv.smtp_port), 20, "the SMTP port")
        cls.team = srv.team("acme")
        srv.domain(cls.team, "acme.test")
        srv.domain(cls.team, "mail.acme.test")
        _, cls.key = srv.key(cls.team)
        cls.api = apihelp.Client(srv.http_port, cls.key)

    @classmethod
    def tearDownClass(cls):
        if cls.srv.proc is not None and cls.srv.proc.poll() is None:
            rc = cls.srv.stop()
            assert rc == 0, "sendpipe exited with %d" % rc
        shutil.rmtree(cls.srv.tmp, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------

    def send(self, **kw):
        p = {"to": "rcpt@example.com", "from": "Acme <hello@acme.test>", "subject": "Hi"}
        p.update(kw)
        r = self.api.post("/api/v1/emails", p)
        self.assertEqual(r.status, 200, r)
        return r.body["emailId"]

    def built(self, mid):
        """Wait for SENT; the kept bytes, checked for what every message
        must satisfy; Python's and mailparser's readings."""
        self.srv.wait_status(mid, "SENT")
        raw = self.srv.raw(mid)
        self.check_wire(raw, mid)
        py = email.message_from_bytes(raw, policy=email.policy.default)
        nd = node_parse([raw])[0]
        self.assertEqual(py.defects, [], raw[:2000])
        return raw, py, nd

    def check_wire(self, raw, mid, domain="acme.test", built=True):
        self.assertTrue(raw.endswith(b"\r\n"))
        self.assertNotRegex(raw, re.compile(rb"[^\r]\n|\r[^\n]"), "a bare CR or LF")
        fields = unfolded_fields(raw)
        names = [n.lower() for n, _ in fields]
        self.assertNotIn("bcc", names)
        self.assertEqual(names.count("message-id"), 1, fields)
        self.assertEqual(names.count("date"), 1, fields)
        self.assertEqual([v for n, v in fields if n.lower() == "x-usesend-email-id"],
                         [mid.encode()])
        self.assertNotIn("x-unsend-email-id", names)
        for line in raw.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
        if built:
            # Encoded body lines (QP, base64) at most 78; every line ASCII.
            py = email.message_from_bytes(raw, policy=email.policy.default)
            leaves = [p for p in py.walk() if not p.is_multipart()]
            self.assertTrue(leaves)
            for p in leaves:
                self.assertIn(p["Content-Transfer-Encoding"], ("quoted-printable", "base64"))
                for line in p.get_payload().split("\r\n"):
                    self.assertLessEqual(len(line), 78, line)
            for line in raw.split(b"\r\n"):
                self.assertTrue(all(b < 128 for b in line), line)
            self.assertEqual([v for n, v in fields if n.lower() == "message-id"],
                             [f"<{mid}@{domain}>".encode()])
            self.assertEqual([v for n, v in fields if n.lower() == "mime-version"], [b"1.0"])

    def addrs_py(self, py, name):
        h = py[name]
        return [(a.display_name, a.addr_spec) for a in h.addresses] if h is not None else []

    def addrs_node(self, nd, name):
        return [(a["name"], a["address"]) for a in (nd[name] or [])]

    # ---- built messages -----------------------------------------------------

    def test_full_message(self):
        blob = bytes([0, 1, 2, 0, 255, 13, 10, 0]) + random.Random(7).randbytes(5000)
        csv = b"a,b\r\n1,2\n\x00x\n"
        text = "Hallo Welt ✓\nzweite Zeile mit einer sehr langen Zeile " + "lang " * 30 + "\n"
        html = "<p>Hallo <b>Welt</b> ✓</p>\n<p>" + "sehr lang " * 30 + "</p>\n"
        mid = self.send(
            to=[TRICKY_TO, "Zoë Ünïcode <zoe@y.test>", "plain@z.test"],
            cc=["Carol, C. <carol@c.test>"],
            bcc=["hidden@h.test", "Secret <secret@h.test>"],
            replyTo=["Replies <replies@acme.test>", "other@acme.test"],
            **{"from": "Grüße, Sender <hello@acme.test>"},
            subject=SUBJECT, text=text, html=html,
            headers={"X-Campaign": "q3 grüße ✓", "X-Entity-Ref-ID": "ref-1",
                     "List-Unsubscribe": "<https://acme.test/u/1>"},
            attachments=[
                {"filename": "blob.bin", "content": base64.b64encode(blob).decode()},
                {"filename": "Bericht über Q3.pdf", "content": base64.b64encode(blob[:999]).decode()},
                {"filename": "data.CSV", "content": base64.b64encode(csv).decode()},
                {"filename": "photo.jpeg", "content": base64.b64encode(b"\xff\xd8\xff").decode()},
            ])
        raw, py, nd = self.built(mid)

        # Python's reading
        self.assertEqual(py["Subject"], SUBJECT)
        self.assertEqual(self.addrs_py(py, "From"), [("Grüße, Sender", "hello@acme.test")])
        self.assertEqual(self.addrs_py(py, "To"), [('Doe, John "JD"', "j@x.test"),
                                                  ("Zoë Ünïcode", "zoe@y.test"),
                                                  ("", "plain@z.test")])
        self.assertEqual(self.addrs_py(py, "Cc"), [("Carol, C.", "carol@c.test")])
        self.assertEqual(self.addrs_py(py, "Reply-To"), [("Replies", "replies@acme.test"),
                                                        ("", "other@acme.test")])
        self.assertIsNone(py["Bcc"])
        self.assertNotIn(b"hidden@h.test", raw)
        self.assertNotIn(b"secret@h.test", raw)
        self.assertEqual(py["X-Campaign"], "q3 grüße ✓")
        self.assertEqual(py.get_all("X-Entity-Ref-ID"), ["ref-1"])  # replaces ours
        self.assertEqual(py["List-Unsubscribe"], "<https://acme.test/u/1>")
        self.assertEqual(py.get_content_type(), "multipart/mixed")
        self.assertEqual(lf(py.get_body(("plain",)).get_content()), text)
        self.assertEqual(lf(py.get_body(("html",)).get_content()), html)
        atts = [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True))
                for a in py.iter_attachments()]
        expect = [("blob.bin", "application/octet-stream", blob),
                  ("Bericht über Q3.pdf", "application/pdf", blob[:999]),
                  ("data.CSV", "text/csv", csv),
                  ("photo.jpeg", "image/jpeg", b"\xff\xd8\xff")]
        self.assertEqual(atts, expect)
        for a in py.iter_attachments():
            self.assertEqual(a["Content-Transfer-Encoding"], "base64")
            self.assertEqual(a.get_content_disposition(), "attachment")

        # mailparser's reading
        self.assertEqual(nd["subject"], SUBJECT)
        self.assertEqual(self.addrs_node(nd, "from"), [("Grüße, Sender", "hello@acme.test")])
        self.assertEqual(self.addrs_node(nd, "to"), [('Doe, John "JD"', "j@x.test"),
                                                    ("Zoë Ünïcode", "zoe@y.test"),
                                                    ("", "plain@z.test")])
        self.assertEqual(self.addrs_node(nd, "cc"), [("Carol, C.", "carol@c.test")])
        self.assertEqual(self.addrs_node(nd, "replyTo"), [("Replies", "replies@acme.test"),
                                                         ("", "other@acme.test")])
        self.assertIsNone(nd["bcc"])
        self.assertEqual(nd["messageId"], f"<{mid}@acme.test>")
        self.assertEqual(lf(nd["text"]), text)
        self.assertEqual(lf(nd["html"]), html)
        # mailparser leaves encoded words of unknown headers as they are
        self.assertEqual(nd["headers"]["x-entity-ref-id"], "ref-1")
        self.assertEqual(nd["headers"]["x-usesend-email-id"], mid)
        self.assertEqual([(a["filename"], a["contentType"], base64.b64decode(a["content"]))
                          for a in nd["attachments"]], expect)

        # Date: the record's created_at, to the second
        rec = self.srv.message(mid)["record"]
        want = datetime.datetime.fromtimestamp(rec["created_at"] // 1000, datetime.timezone.utc)
        self.assertEqual(py["Date"].datetime, want)
        self.assertEqual(nd["date"], want.strftime("%Y-%m-%dT%H:%M:%S.000Z"))

    def test_html_only_gets_text(self):
        html = ("<!doctype html><html><head><title>T</title><style>p{color:red}</style>"
                "<script>alert(1)</script></head><body>"
                "<h1>Welcome &amp; hello</h1><p>Dear   Jörg,<br>your order &#8470; 5 &lt;ok&gt;"
                " is <b>ready</b>.</p><p>See <a href=\"https://acme.test/o/5\">your order</a>"
                " or <a href=\"https://acme.test/\">https://acme.test/</a>.</p>"
                "<ul><li>one</li><li>two &nbsp;items</li></ul>"
                "<div>last<script>x()</script></div></body></html>")
        mid = self.send(html=html)
        raw, py, nd = self.built(mid)
        want = ("Welcome & hello\n\nDear Jörg,\nyour order № 5 <ok> is ready.\n\n"
                "See your order (https://acme.test/o/5) or https://acme.test/.\n\n"
                "* one\n* two \u00a0items\nlast")
        self.assertEqual(py.get_content_type(), "multipart/alternative")
        self.assertEqual(lf(py.get_body(("plain",)).get_content()), want)
        self.assertEqual(lf(py.get_body(("html",)).get_content()), html)
        self.assertEqual(lf(nd["text"]), want)
        self.assertEqual(nd["html"], html)

    def test_text_only_and_encodings(self):
        text = "日本語のテキスト。" * 20 + "\n" + "second line\n"
        mid = self.send(text=text, subject="x" * 200)
        raw, py, nd = self.built(mid)
        self.assertEqual(py.get_content_type(), "text/plain")
        self.assertEqual(py.get_all("X-Entity-Ref-ID"), [mid])
        self.assertEqual(py["Content-Transfer-Encoding"], "base64")
        self.assertEqual(lf(py.get_content()), text)
        self.assertEqual(lf(nd["text"]), text)
        self.assertEqual(py["Subject"], "x" * 200)
        self.assertEqual(nd["subject"], "x" * 200)
        # Mostly ASCII: quoted-printable.
        text2 = "plain ascii = with equals and a ✓ " + "long " * 40 + "\n"
        mid2 = self.send(text=text2)
        raw2, py2, nd2 = self.built(mid2)
        self.assertEqual(py2["Content-Transfer-Encoding"], "quoted-printable")
        self.assertEqual(lf(py2.get_content()), text2)
        self.assertEqual(lf(nd2["text"]), text2)

    def test_custom_headers_reserved_and_injection(self):
        mid = self.send(
            text="body",
            subject="Subject\u2028Bcc: evil@attacker.test\u0085X: y",
            to=['"Mallory\\" <evil@attacker.test>, Bcc:" <m@x.test>'],
            headers={"X-Usesend-Email-ID": "forged", "X-Unsend-Email-ID": "forged2",
                     "From": "evil@attacker.test", "To": "evil3@attacker.test",
                     "Bcc": "evil4@attacker.test", "Message-ID": "<forged@attacker.test>",
                     "Content-Type": "text/html", "MIME-Version": "2.0",
                     "Subject": "Overridden ✓ \u2028Bcc: e@attacker.test",
                     "Reply-To": "Custom <custom@acme.test>", "X-Fine": "yes"})
        raw, py, nd = self.built(mid)
        self.assertNotIn(b"forged", raw)
        fields = unfolded_fields(raw)
        self.assertEqual([(n, v) for n, v in fields
                          if n.lower() in ("from", "to", "content-type", "mime-version")],
                         [("From", b"Acme <hello@acme.test>"),
                          ("To", b'"Mallory\\" <evil@attacker.test>, Bcc:" <m@x.test>'),
                          ("MIME-Version", b"1.0"),
                          ("Content-Type", b"text/plain; charset=us-ascii")])
        self.assertEqual(self.addrs_py(py, "To"),
                         [('Mallory" <evil@attacker.test>, Bcc:', "m@x.test")])
        self.assertEqual(self.addrs_node(nd, "to"),
                         [('Mallory" <evil@attacker.test>, Bcc:', "m@x.test")])
        self.assertEqual(py["Subject"], "Overridden ✓ \u2028Bcc: e@attacker.test")
        self.assertEqual(nd["subject"], "Overridden ✓ \u2028Bcc: e@attacker.test")
        self.assertEqual(self.addrs_py(py, "Reply-To"), [("Custom", "custom@acme.test")])
        self.assertEqual(py["X-Fine"], "yes")
        self.assertEqual(py["X-Usesend-Email-ID"], mid)
        self.assertEqual(nd["headers"]["x-usesend-email-id"], mid)
        self.assertIsNone(nd["bcc"])
        # CR or LF anywhere is refused by the API before anything is stored;
        # the plugin drops such items too (defence in depth, not reachable here).
        for bad in ({"headers": {"X-A": "1\r\nBcc: e@x.test"}},
                    {"subject": "s\r\nBcc: e@x.test"}, {"to": ["A\nBcc: e@x.test <a@x.test>"]}):
            p = {"to": "a@x.test", "from": "hello@acme.test", "subject": "s", "text": "t"}
            p.update(bad)
            r = self.api.post("/api/v1/emails", p)
            self.assertEqual(r.status, 400, r)

    def test_in_reply_to(self):
        parent = self.send(text="parent", **{"from": "hello@mail.acme.test"})
        self.srv.wait_status(parent, "SENT")
        child = self.send(text="child", inReplyToId=parent)
        raw, py, nd = self.built(child)
        want = f"<{parent}@mail.acme.test>"
        self.assertEqual(py["In-Reply-To"], want)
        self.assertEqual(py["References"], want)
        self.assertEqual(nd["inReplyTo"], want)
        self.assertEqual(nd["references"], want)

    def test_scheduled_date(self):
        at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + \
            datetime.timedelta(seconds=2)
        mid = self.send(text="later", scheduledAt=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        raw, py, nd = self.built(mid)
        self.assertEqual(py["Date"].datetime, at)

    # ---- SMTP ingress: the bytes are kept -----------------------------------

    def smtp_send(self, data, rcpts):
        with smtphelp.smtp(self.srv.smtp_port) as s:
            s.starttls(context=smtphelp.client_ctx())
            s.login("usesend", self.key)
            s.sendmail("hi@acme.test", rcpts, data)
            return s.last_id()

    def test_smtp_raw_kept(self):
        head = (b"From: =?utf-8?q?Gr=C3=BC=C3=9Fe?= <hi@acme.test>\r\n"
                b"To: a@example.com,\r\n  b@example.com\r\n"
                b"BCC: hidden@example.com,\r\n\tother-hidden@example.com\r\n"
                b"Subject: kept   as  is\r\n"
                b"X-Usesend-Email-ID: forged\r\n"
                b"X-Odd:value-without-space\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n")
        body = "Grüße\r\n..leading dot line\r\n\r\n\r\nlast line with trailing space \r\n"
        data = head + b"\r\n" + body.encode()
        mid = self.smtp_send(data, ["a@example.com", "b@example.com", "hidden@example.com"])
        self.srv.wait_status(mid, "SENT")
        raw = self.srv.raw(mid)
        self.check_wire(raw, mid, built=False)
        rec = self.srv.message(mid)["record"]
        date = email.utils.format_datetime(
            datetime.datetime.fromtimestamp(rec["created_at"] // 1000, datetime.timezone.utc))
        date = date.replace("-0000", "+0000")
        kept = head.replace(b"BCC: hidden@example.com,\r\n\tother-hidden@example.com\r\n", b"")
        kept = kept.replace(b"X-Usesend-Email-ID: forged\r\n", b"")
        want = (kept + f"Message-ID: <{mid}@acme.test>\r\nDate: {date}\r\n"
                f"X-Usesend-Email-ID: {mid}\r\n".encode() + b"\r\n" + body.encode())
        self.assertEqual(raw, want)
        py = email.message_from_bytes(raw, policy=email.policy.default)
        nd = node_parse([raw])[0]
        self.assertEqual(py["Subject"], "kept   as  is")
        self.assertEqual(nd["subject"], "kept   as  is")
        self.assertIsNone(py["Bcc"])
        self.assertIsNone(nd["bcc"])

    def test_smtp_own_ids_kept_and_replied_to(self):
        data = (b"Message-ID: <own.id.1@client.example>\r\n"
                b"Date: Tue, 01 Jan 2030 10:00:00 +0100\r\n"
                b"From: hi@acme.test\r\nTo: a@example.com\r\nSubject: own ids\r\n"
                b"\r\nbody\r\n")
        mid = self.smtp_send(data, ["a@example.com"])
        self.srv.wait_status(mid, "SENT")
        raw = self.srv.raw(mid)
        self.check_wire(raw, mid, built=False)
        self.assertEqual(raw, data.replace(b"\r\n\r\n",
                                           f"\r\nX-Usesend-Email-ID: {mid}\r\n\r\n".encode(), 1))
        # A reply through the API refers to the message's own Message-ID.
        child = self.send(text="reply", inReplyToId=mid)
        _, py, nd = self.built(child)
        self.assertEqual(py["In-Reply-To"], "<own.id.1@client.example>")
        self.assertEqual(nd["inReplyTo"], "<own.id.1@client.example>")


if __name__ == "__main__":
    unittest.main()
