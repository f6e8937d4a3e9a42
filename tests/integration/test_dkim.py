# SPDX-License-Identifier: Apache-2.0
"""DKIM on the real binary: domains get keys from `sendpipe domains add`,
`sendpipe domains dkim` prints the DNS record, and messages sent through
the API (ingress_http + api_usesend) and through SMTP (ingress_smtp), built
by `mime` and signed by `dkim`, leave through egress_outbox signed. Every
signature is checked with two independent verifiers fed the published
records: dkimpy (Debian python3-dkim, run with the system interpreter) and
OpenDKIM's test mode (`opendkim -x CONF -t FILE` with TestPublicKeys). A
message changed after signing (one body byte, one Subject byte) fails in
both. The RFC 8463 example (plugins/dkim/testdata) proves the tooling."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import smtphelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT
RFC_DIR = os.path.join(sphelp.SOURCE_DIR, "plugins", "dkim", "testdata", "rfc8463")
SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter with Debian's python3-dkim

# dkimpy with local records: argv = records file, message files; prints one
# JSON list of booleans (one per DKIM-Signature) per message.
DKIMPY = r"""
import json, sys
import dkim
recs = {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line:
        n, v = line.split(" ", 1)
        recs[n + "."] = v.encode()
def dns(q, timeout=5):
    return recs.get(q.decode())
def check(m, i):
    try:
        return dkim.DKIM(m, minkey=1024).verify(idx=i, dnsfunc=dns)
    except Exception as e:  # some failures raise instead of returning False
        sys.stderr.write("signature %d: %r\n" % (i, e))
        return False
for f in sys.argv[2:]:
    m = open(f, "rb").read()
    print(json.dumps([check(m, i) for i in range(m.count(b"DKIM-Signature:"))]))
"""


class Verifiers:
    """dkimpy and OpenDKIM, both reading `<name> <TXT value>` lines."""

    def __init__(self, tmp):
        self.tmp = tmp
        for tool in (SYSTEM_PYTHON, shutil.which("opendkim")):
            if not tool or not os.path.exists(tool):
                raise AssertionError("missing verifier: install python3-dkim and opendkim")
        r = subprocess.run([SYSTEM_PYTHON, "-c", "import dkim"], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError("dkimpy (python3-dkim) is not importable by %s: %s"
                                 % (SYSTEM_PYTHON, r.stderr))
        self.script = os.path.join(tmp, "dkimpy_verify.py")
        with open(self.script, "w") as f:
            f.write(DKIMPY)
        self.n = 0

    def _file(self, data, ext):
        self.n += 1
        p = os.path.join(self.tmp, "v%d.%s" % (self.n, ext))
        with open(p, "wb") as f:
            f.write(data)
        return p

    def dkimpy(self, records, msg):
        r = subprocess.run([SYSTEM_PYTHON, self.script, records, self._file(msg, "eml")],
                           capture_output=True, text=True, timeout=60 * MULT)
        if r.returncode != 0:
            raise AssertionError("dkimpy failed: %s" % r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def opendkim(self, records, msg):
        """One True/False per signature, from the dkim= results of the
        Authentication-Results field it would add (printed with -vvv; the
        exit status is 0 either way, and the report goes to stdout when that
        is not a terminal)."""
        conf = self._file(("Mode v\nTestPublicKeys %s\nSyslog no\n" % records).encode(), "conf")
        path = self._file(msg, "eml")
        r = subprocess.run(["opendkim", "-x", conf, "-t", path, "-vvv"], capture_output=True,
                           text=True, timeout=60 * MULT, stdin=subprocess.DEVNULL)
        out = r.stdout + r.stderr
        res = re.findall(r"\bdkim=(\w+)", out)
        if not res:
            raise AssertionError("opendkim gave no result: %s" % out[-2000:])
        return [x == "pass" for x in res]

    def both(self, records, msg):
        return self.dkimpy(records, msg), self.opendkim(records, msg)


class DkimServer(apihelp.ApiServer):
    """ingress_http + api_usesend, ingress_smtp, mime, dkim, egress_outbox."""

    def __init__(self):
        self.smtp_port = sphelp.free_port()
        self.smtps_port = sphelp.free_port()
        extra = ("  - name: api_usesend\n    config: { rate_limit: 100000 }\n"
                 "  - name: ingress_smtp\n"
                 f"    config: {{ listen: \"127.0.0.1:{self.smtp_port}\", "
                 f"tls_listen: \"127.0.0.1:{self.smtps_port}\", hostname: mx.sendpipe.test }}\n"
                 "  - name: mime\n"
                 "  - name: dkim\n")
        sphelp.Server.__init__(self, extra_plugins=extra, http=True)

    def start(self):
        super().start()
        sphelp.wait_until(lambda: smtphelp._connectable(self.smtp_port), 20, "the SMTP port")
        return self


class DkimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = DkimServer()
        srv = cls.srv
        try:
            srv.start()
            cls.v = Verifiers(srv.tmp)
            cls.team = srv.team("acme")
            srv.domain(cls.team, "rsa.test")
            out = srv.cli("domains", "add", "--team", str(cls.team), "--verified",
                          "--dkim-algorithm", "ed25519", "--dkim-selector", "ed2026",
                          "ed.test").stdout
            assert "DKIM key ed25519-sha256, selector ed2026" in out, out
            _, cls.key = srv.key(cls.team)
            cls.api = apihelp.Client(srv.http_port, cls.key)
            cls.records = os.path.join(srv.tmp, "records.txt")
            cls.write_records()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.srv.proc is not None and cls.srv.proc.poll() is None:
            rc = cls.srv.stop()
            assert rc == 0, "sendpipe exited with %d" % rc
        shutil.rmtree(cls.srv.tmp, ignore_errors=True)

    @classmethod
    def dkim_json(cls, name, *extra):
        return json.loads(cls.srv.cli("domains", "dkim", name, "--json", *extra).stdout)

    @classmethod
    def write_records(cls):
        with open(cls.records, "w") as f:
            for d in ("rsa.test", "ed.test"):
                j = cls.dkim_json(d)
                f.write("%s %s\n" % (j["name"], j["value"]))

    # ---- helpers ----------------------------------------------------------

    def sent_bytes(self, mid):
        self.srv.wait_status(mid, "SENT")
        r = subprocess.run([sphelp.BIN, "outbox", "raw", "-c", self.srv.conf, mid],
                           capture_output=True, timeout=60 * MULT)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def send_api(self, **kw):
        p = {"to": "rcpt@example.com", "from": "Sender <hi@rsa.test>", "subject": "Hello",
             "text": "Hello there.\nSecond line.\n"}
        p.update(kw)
        r = self.api.post("/api/v1/emails", p)
        self.assertEqual(r.status, 200, r)
        return self.sent_bytes(r.body["emailId"])

    def sig_tags(self, msg):
        """Tags of the first DKIM-Signature field (unfolded)."""
        self.assertTrue(msg.startswith(b"DKIM-Signature: "), msg[:200])
        end = re.search(rb"\r\n(?![ \t])", msg).start()
        field = re.sub(rb"\r\n[ \t]", b" ", msg[len(b"DKIM-Signature: "):end]).decode()
        return {k.strip(): v.strip() for k, v in
                (t.split("=", 1) for t in field.split(";") if "=" in t)}

    def assert_verifies(self, msg, n=1):
        py, od = self.v.both(self.records, msg)
        self.assertEqual(py, [True] * n, "dkimpy")
        self.assertEqual(od, [True] * n, "opendkim")

    def assert_fails(self, msg):
        py, od = self.v.both(self.records, msg)
        self.assertEqual(py, [False], "dkimpy")
        self.assertEqual(od, [False], "opendkim")

    def tamper(self, msg):
        """One body byte and one Subject byte changed, each alone."""
        head, body = msg.split(b"\r\n\r\n", 1)
        i = body.index(b"e")
        self.assert_fails(head + b"\r\n\r\n" + body[:i] + b"E" + body[i + 1:])
        m = re.search(rb"\r\nSubject: (.)", head)
        self.assertIsNotNone(m, head)
        j = m.start(1)
        c = b"X" if head[j:j + 1] != b"X" else b"Y"
        self.assert_fails(head[:j] + c + head[j + 1:] + b"\r\n\r\n" + body)

    # ---- the tooling, on the RFC 8463 example -----------------------------

    def test_tools_verify_rfc8463(self):
        recs = os.path.join(RFC_DIR, "dns-txt-records.txt")
        with open(os.path.join(RFC_DIR, "signed.eml"), "rb") as f:
            msg = f.read()
        self.assertEqual(self.v.dkimpy(recs, msg), [True, True])
        self.assertEqual(self.v.opendkim(recs, msg), [True, True])
        bad = msg.replace(b"We lost the game", b"We won the game")
        self.assertEqual(self.v.dkimpy(recs, bad), [False, False])
        self.assertEqual(self.v.opendkim(recs, bad), [False, False])

    # ---- the CLI ---------------------------------------------------------

    def test_dkim_record_format(self):
        out = self.srv.cli("domains", "dkim", "rsa.test").stdout
        lines = dict(l.split(": ", 1) for l in out.splitlines())
        self.assertEqual(lines["domain"], "rsa.test")
        self.assertEqual(lines["selector"], "sendpipe")
        self.assertEqual(lines["algorithm"], "rsa-sha256")
        self.assertEqual(lines["name"], "sendpipe._domainkey.rsa.test")
        self.assertEqual(lines["type"], "TXT")
        m = re.fullmatch(r"v=DKIM1; k=rsa; p=([A-Za-z0-9+/=]+)", lines["value"])
        self.assertIsNotNone(m, lines["value"])
        der = base64.b64decode(m.group(1))
        # SubjectPublicKeyInfo of rsaEncryption, 2048-bit modulus
        self.assertEqual(len(der), 294)
        self.assertIn(bytes.fromhex("06092a864886f70d010101"), der)
        pub = subprocess.run(["openssl", "pkey", "-pubin", "-inform", "DER", "-noout",
                              "-text"], input=der, capture_output=True)
        self.assertEqual(pub.returncode, 0, pub.stderr)
        self.assertIn(b"2048 bit", pub.stdout)

        j = self.dkim_json("ed.test")
        self.assertEqual(set(j), {"domain", "selector", "algorithm", "name", "type", "value"})
        self.assertEqual((j["domain"], j["selector"], j["algorithm"], j["name"], j["type"]),
                         ("ed.test", "ed2026", "ed25519-sha256", "ed2026._domainkey.ed.test",
                          "TXT"))
        m = re.fullmatch(r"v=DKIM1; k=ed25519; p=([A-Za-z0-9+/=]+)", j["value"])
        self.assertIsNotNone(m, j["value"])
        self.assertEqual(len(base64.b64decode(m.group(1))), 32)  # RFC 8463: the raw key

        doms = {r.split("\t")[2]: r.split("\t")[6]
                for r in self.srv.cli("domains", "list").stdout.splitlines()[1:]}
        self.assertEqual(doms["rsa.test"], "sendpipe rsa-sha256")
        self.assertEqual(doms["ed.test"], "ed2026 ed25519-sha256")

        # Misuse is refused with a usage error.
        r = self.srv.cli("domains", "dkim", "rsa.test", "--dkim-selector", "x", check=False)
        self.assertEqual(r.returncode, 2)
        r = self.srv.cli("domains", "add", "--team", "acme", "--dkim-algorithm", "dsa",
                         "x.test", check=False)
        self.assertEqual(r.returncode, 2)
        r = self.srv.cli("domains", "add", "--team", "acme", "--dkim-selector", "a_b",
                         "x.test", check=False)
        self.assertEqual(r.returncode, 2)
        r = self.srv.cli("domains", "dkim", "nope.test", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no domain", r.stderr)

    def test_rotate(self):
        self.srv.cli("domains", "add", "--team", "acme", "--verified", "rot.test")
        before = self.dkim_json("rot.test")
        r = self.srv.cli("domains", "dkim", "rot.test", "--rotate", "--json")
        after = json.loads(r.stdout)
        self.assertEqual(after["selector"], "sendpipe")  # kept
        self.assertNotEqual(after["value"], before["value"])
        self.assertIn("selector is unchanged", r.stderr)
        self.assertEqual(self.dkim_json("rot.test"), after)
        r = self.srv.cli("domains", "dkim", "rot.test", "--rotate", "--dkim-algorithm",
                         "ed25519", "--dkim-selector", "s2")
        self.assertIn("value: v=DKIM1; k=ed25519; p=", r.stdout)
        self.assertNotIn("selector is unchanged", r.stderr)
        j = self.dkim_json("rot.test")
        self.assertEqual((j["selector"], j["algorithm"]), ("s2", "ed25519-sha256"))
        # The private key never leaves the store through the CLI.
        for args in (("domains", "list"), ("domains", "dkim", "rot.test"),
                     ("domains", "dkim", "rot.test", "--json")):
            out = self.srv.cli(*args)
            self.assertNotIn("PRIVATE", out.stdout + out.stderr)
        # Signed with the new key: the message verifies against it only.
        r = self.api.post("/api/v1/emails", {"to": "a@example.com", "from": "r@rot.test",
                                              "subject": "rotated", "text": "new key\n"})
        self.assertEqual(r.status, 200, r)
        msg = self.sent_bytes(r.body["emailId"])
        t = self.sig_tags(msg)
        self.assertEqual((t["d"], t["s"], t["a"]), ("rot.test", "s2", "ed25519-sha256"))
        recs = os.path.join(self.srv.tmp, "rot-records.txt")
        with open(recs, "w") as f:
            f.write("s2._domainkey.rot.test %s\n" % j["value"])
            f.write("sendpipe._domainkey.rot.test %s\n" % after["value"])
        self.assertEqual(self.v.both(recs, msg), ([True], [True]))
        with open(recs, "w") as f:  # the old record under the new name
            f.write("s2._domainkey.rot.test %s\n" % before["value"])
        self.assertEqual(self.v.both(recs, msg), ([False], [False]))

    # ---- signed messages ----------------------------------------------------

    def test_rsa_signed(self):
        msg = self.send_api(html="<p>Hello <b>there</b></p>", cc=["cc@example.org"],
                            replyTo="reply@rsa.test")
        t = self.sig_tags(msg)
        self.assertEqual((t["v"], t["a"], t["c"], t["d"], t["s"]),
                         ("1", "rsa-sha256", "relaxed/relaxed", "rsa.test", "sendpipe"))
        self.assertNotIn("x", t)
        signed = [h.strip().lower() for h in t["h"].split(":")]
        head = msg.split(b"\r\n\r\n", 1)[0].decode()
        present = {l.split(":", 1)[0].lower() for l in head.split("\r\n")[1:]
                   if l and l[0] not in " \t"}
        for h in ("from", "to", "cc", "subject", "date", "message-id", "mime-version",
                  "content-type", "reply-to"):
            if h in present:
                self.assertIn(h, signed, (h, t["h"]))
        self.assertIn("from", signed)
        self.assertEqual(signed.count("from"), 2)  # oversigned
        self.assertTrue(set(signed) <= present | {"from"}, (signed, present))
        self.assertNotIn("bcc", present)
        self.assert_verifies(msg)
        self.tamper(msg)

    def test_ed25519_signed(self):
        msg = self.send_api(**{"from": "Ed <hi@ed.test>", "subject": "Ed25519"})
        t = self.sig_tags(msg)
        self.assertEqual((t["a"], t["d"], t["s"]), ("ed25519-sha256", "ed.test", "ed2026"))
        self.assertEqual(len(base64.b64decode(re.sub(r"\s", "", t["b"]))), 64)
        self.assert_verifies(msg)
        self.tamper(msg)

    def test_utf8_subject_and_attachment(self):
        data = bytes(range(256)) * 8
        msg = self.send_api(**{
            "from": "Jörg <joerg@ed.test>", "subject": "Grüße aus Köln ✓ — ünïcödé",
            "text": "Straße\nnaïve café\n", "html": "<p>Straße ✓</p>",
            "attachments": [{"filename": "data.bin",
                             "content": base64.b64encode(data).decode()}]})
        self.assertIn(b"multipart/", msg)
        self.assertIn(base64.b64encode(data[:57]), msg.replace(b"\r\n", b""))
        self.assert_verifies(msg)
        self.tamper(msg)
        msg = self.send_api(**{"subject": "Grüße ✓ RSA", "attachments": [
            {"filename": "ä.txt", "content": base64.b64encode(b"hello\n").decode()}]})
        self.assert_verifies(msg)

    def test_smtp_signed(self):
        m = EmailMessage()
        m["From"] = "Smtp <smtp@ed.test>"
        m["To"] = "rcpt@example.com"
        m["Subject"] = "through SMTP"
        m.set_content("Hello over SMTP.\n")
        s = smtphelp.smtp(self.srv.smtp_port)
        try:
            s.starttls(context=smtphelp.client_ctx())
            s.login("usesend", self.key)
            s.send_message(m)
            mid = s.last_id()
        finally:
            s.quit()
        msg = self.sent_bytes(mid)
        t = self.sig_tags(msg)
        self.assertEqual((t["d"], t["s"]), ("ed.test", "ed2026"))
        self.assert_verifies(msg)
        self.tamper(msg)


if __name__ == "__main__":
    unittest.main()
