# SPDX-License-Identifier: Apache-2.0
"""feedback_sns on the real binary: the real signed SNS messages of
../shared/vectors/sns verify through POST /api/ses_callback (their
certificates given in the `certificates` directory); altered ones are refused
with 403 and record nothing; certificate and subscribe URLs on other hosts are
refused without being fetched (a loopback HTTP server sees no request). End
to end with our own PKI (root CA -> intermediate -> an SNS-like signer made
with openssl): SES events for messages sent through the API are recorded,
found by provider id ("outbox-<id>") or by the X-Usesend-Email-ID header,
with statuses and event data checked through GET /api/v1/emails/{id}; the
same SNS MessageId twice is recorded once, a second DeliveryDelay is
ignored."""
import base64
import glob
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import sphelp  # noqa: E402

VECTORS = os.path.join(sphelp.SOURCE_DIR, "..", "shared", "vectors")
SNS_VEC = os.path.join(VECTORS, "sns")
SES_VEC = os.path.join(VECTORS, "ses-events")
OUR_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-sendpipetest.pem"
BADNAME_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-badname.pem"
OUR_TOPIC = "arn:aws:sns:us-east-1:123456789012:sendpipe-test"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:not-allowed"
CB = "/api/ses_callback"


def url_hash(url):
    return hashlib.sha256(url.encode()).hexdigest()


def openssl(*args, data=None):
    r = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (args, r.stderr.decode()))
    return r.stdout


def string_to_sign(m):
    """As AWS documents it: key\\nvalue\\n for each signed key, in order."""
    if m["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                "Type"]
    return "".join(f"{k}\n{m[k]}\n" for k in keys if k in m and m[k] is not None)


class Pki:
    """Root CA -> intermediate CA -> leaves, made with the openssl CLI."""

    def __init__(self, d):
        self.d = d
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("[ca]\nbasicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,"
                    "cRLSign\n[leaf]\nbasicConstraints=CA:false\nkeyUsage=critical,"
                    "digitalSignature,keyEncipherment\nsubjectAltName=DNS:sns.amazonaws.com\n"
                    "[badleaf]\nbasicConstraints=CA:false\nsubjectAltName=DNS:evil.example\n")
        self.root = self._cert("root", "/CN=sendpipe test root", None, "ca", ext)
        self.inter = self._cert("inter", "/CN=sendpipe test intermediate", "root", "ca", ext)
        self.leaf = self._cert("leaf", "/CN=sns.amazonaws.com", "inter", "leaf", ext)
        self.badleaf = self._cert("badleaf", "/CN=evil.example", "inter", "badleaf", ext)

    def _cert(self, name, subj, issuer, section, ext):
        key = os.path.join(self.d, name + ".key")
        crt = os.path.join(self.d, name + ".pem")
        openssl("genrsa", "-out", key, "2048")
        if issuer is None:
            openssl("req", "-x509", "-new", "-key", key, "-subj", subj, "-days", "30",
                    "-out", crt, "-addext", "basicConstraints=critical,CA:true", "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign")
        else:
            csr = os.path.join(self.d, name + ".csr")
            openssl("req", "-new", "-key", key, "-subj", subj, "-out", csr)
            openssl("x509", "-req", "-in", csr, "-CA", os.path.join(self.d, issuer + ".pem"),
                    "-CAkey", os.path.join(self.d, issuer + ".key"), "-CAcreateserial",
                    "-days", "30", "-extfile", ext, "-extensions", section, "-out", crt)
        return crt

    def sign(self, m, who="leaf"):
        """Fill Signature for SignatureVersion m["SignatureVersion"]."""
        md = "-sha1" if m["SignatureVersion"] == "1" else "-sha256"
        sig = openssl("dgst", md, "-sign", os.path.join(self.d, who + ".key"),
                      data=string_to_sign(m).encode())
        m["Signature"] = base64.b64encode(sig).decode()
        return m


class CountingHandler(http.server.BaseHTTPRequestHandler):
    hits = []

    def do_GET(self):
        CountingHandler.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"-----BEGIN CERTIFICATE-----\n")

    def log_message(self, *a):
        pass


class SnsServer(apihelp.ApiServer):
    def __init__(self, fsns_config, **kw):
        super().__init__(api_config={"rate_limit": 100000}, **kw)
        items = ", ".join(f"{k}: {v}" for k, v in fsns_config.items())
        with open(self.conf) as f:
            conf = f.read()
        conf = conf.replace("  - name: api_usesend\n",
                            f"  - name: feedback_sns\n    config: {{ {items} }}\n"
                            "  - name: api_usesend\n", 1)
        with open(self.conf, "w") as f:
            f.write(conf)


def vector_files():
    out = []
    for d in ("signed-java-v2", "signed-php-ruby"):
        for p in sorted(glob.glob(os.path.join(SNS_VEC, d, "*.json"))):
            pem = glob.glob(os.path.join(SNS_VEC, d, "*.pem"))
            out.append((p, pem[0]))
    return out


class SnsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(SNS_VEC) or not os.path.isdir(SES_VEC):
            raise AssertionError(f"test vectors missing: {SNS_VEC} and {SES_VEC} must exist")
        cls.tmp = tempfile.mkdtemp(prefix="sp-sns-")
        cls.pki = Pki(cls.tmp)
        certs = os.path.join(cls.tmp, "certs")
        os.mkdir(certs)
        cls.vectors = []
        topics = {OUR_TOPIC}
        pins = []
        for path, pem in vector_files():
            with open(path, "rb") as f:
                raw = f.read()
            m = json.loads(raw)
            url = m.get("SigningCertURL") or m.get("SigningCertUrl")
            shutil.copy(pem, os.path.join(certs, url_hash(url) + ".pem"))
            topics.add(m["TopicArn"])
            cls.vectors.append((os.path.basename(path), raw, m))
            if pem not in pins:
                pins.append(pem)
        shutil.copy(cls.pki.leaf, os.path.join(certs, url_hash(OUR_CERT_URL) + ".pem"))
        shutil.copy(cls.pki.badleaf, os.path.join(certs, url_hash(BADNAME_CERT_URL) + ".pem"))
        shutil.copy(cls.pki.inter, os.path.join(certs, "intermediate.pem"))
        # Trust: our root, and the two real SNS certificates pinned (their
        # Amazon intermediates are not in the vectors).
        trust = os.path.join(cls.tmp, "trust.pem")
        with open(trust, "wb") as out:
            for p in [cls.pki.root] + pins:
                with open(p, "rb") as f:
                    out.write(f.read())
        cls.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
        cls.http_thread = threading.Thread(target=cls.httpd.serve_forever, daemon=True)
        cls.http_thread.start()
        os.mkdir(os.path.join(cls.tmp, "srv"))
        cls.srv = None
        cls.srv = SnsServer({
            "topic_arns": '"%s"' % ",".join(sorted(topics)),
            "certificates": '"%s"' % certs,
            "trust_ca_file": '"%s"' % trust,
            # The real vector certificates are past their validity period.
            "check_cert_expiry": "false",
            "fetch_timeout": "3s",
            "max_body_size": "64K",
        }, tmp=os.path.join(cls.tmp, "srv"))
        try:
            cls.srv.start()
            cls.team = cls.srv.team("acme")
            cls.srv.domain(cls.team, "acme.test")
            _, key = cls.srv.key(cls.team)
            cls.api = apihelp.Client(cls.srv.http_port, key)
            cls.anon = apihelp.Client(cls.srv.http_port)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.srv is not None and cls.srv.proc is not None and cls.srv.proc.poll() is None:
                rc = cls.srv.stop()
                assert rc == 0, "sendpipe exited with %d" % rc
        finally:
            cls.httpd.shutdown()
            cls.httpd.server_close()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers ---------------------------------------------------------

    def post(self, body):
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body, indent=2)
        return self.anon.request("POST", CB, raw=raw,
                                 headers={"Content-Type": "text/plain; charset=UTF-8"})

    def send_email(self, subject="hello"):
        r = self.api.post("/api/v1/emails", {"from": "a@acme.test", "to": "b@example.com",
                                             "subject": subject, "text": "hi"})
        self.assertEqual(r.status, 200, r)
        mid = r.body["emailId"]
        self.srv.wait_status(mid, "SENT")
        return mid

    def email(self, mid):
        r = self.api.get(f"/api/v1/emails/{mid}")
        self.assertEqual(r.status, 200, r)
        return r.body

    def events(self, mid):
        return [e["status"] for e in self.email(mid)["emailEvents"]]

    def ses_event(self, name, ses_id, header_id=None):
        with open(os.path.join(SES_VEC, "event-publishing", name)) as f:
            ev = json.load(f)
        ev["mail"]["messageId"] = ses_id
        hdrs = [h for h in ev["mail"].get("headers", []) if h["name"] != "X-Usesend-Email-ID"]
        if header_id is not None:
            hdrs.append({"name": "X-Usesend-Email-ID", "value": header_id})
        ev["mail"]["headers"] = hdrs
        return ev

    def notification(self, message, version="2", topic=OUR_TOPIC, cert_url=OUR_CERT_URL,
                     who="leaf", mid=None, subject=None):
        m = {"Type": "Notification", "MessageId": mid or str(uuid.uuid4()), "TopicArn": topic,
             "Message": message if isinstance(message, str) else json.dumps(message),
             "Timestamp": "2026-11-25T05:00:00.000Z", "SignatureVersion": version,
             "SigningCertURL": cert_url,
             "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"}
        if subject is not None:
            m["Subject"] = subject
        return self.pki.sign(m, who)

    # ---- tests -----------------------------------------------------------

    def test_get_answers_hello(self):
        r = self.anon.get(CB)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, {"data": "Hello"})

    def test_routes_in_openapi_document(self):
        doc = self.anon.get("/api/v1/doc").body
        mine = [(x["method"], x["path"]) for x in doc["x-sendpipe-routes"]
                if x["owner"] == "feedback_sns"]
        self.assertEqual(sorted(mine), [("GET", "/api/ses_callback"),
                                        ("POST", "/api/ses_callback")])
        for method, path in mine:
            self.assertIn(method.lower(), doc["paths"].get(path, {}),
                          f"{method} {path} served but not in /api/v1/doc")

    def test_real_vectors_verify(self):
        for name, raw, m in self.vectors:
            with self.subTest(vector=name):
                r = self.post(raw)
                if m["Type"] == "SubscriptionConfirmation":
                    # Verified; confirming needs AWS itself (not reachable
                    # from a test, or it refuses the old token).
                    self.assertIn(r.status, (502, 503), r)
                    self.assertIn("SubscribeURL" if r.status == 502 else "retry",
                                  r.error.get("message", ""), r)
                else:
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.body, {"data": "Success"})
        lines = [l.get("msg", "") for l in self.srv.log_lines()]
        self.assertTrue(any("unsubscribed from arn:aws:sns:us-west-2" in l for l in lines))

    def test_altered_vectors_refused(self):
        n = 0
        for name, raw, m in self.vectors:
            for field in ("Message", "Subject", "Timestamp", "Signature"):
                if field not in m:
                    continue
                v = m[field]
                for i in sorted({0, len(v) // 2, len(v) - 1}):
                    c = chr(ord(v[i]) ^ 1)
                    alt = dict(m)
                    alt[field] = v[:i] + c + v[i + 1:]
                    r = self.post(alt)
                    self.assertEqual(r.status, 403, f"{name} {field}[{i}]: {r}")
                    self.assertEqual(r.error.get("code"), "FORBIDDEN")
                    n += 1
            # A Subject added to a message signed without one.
            if m["Type"] == "Notification" and "Subject" not in m:
                alt = dict(m, Subject="x")
                self.assertEqual(self.post(alt).status, 403)
        self.assertGreater(n, 80)

    def test_foreign_cert_urls_not_fetched(self):
        port = self.httpd.server_address[1]
        before = len(CountingHandler.hits)
        urls = [f"http://127.0.0.1:{port}/cert.pem",
                f"https://127.0.0.1:{port}/cert.pem",
                f"http://127.0.0.1:{port}/sns.us-east-1.amazonaws.com/cert.pem",
                f"https://sns.us-east-1.amazonaws.com@127.0.0.1:{port}/cert.pem",
                f"https://sns.us-east-1.amazonaws.com.evil.com/cert.pem",
                f"https://sns.us-east-1.amazonaws.com:{port}/cert.pem",
                "https://sns.us-east-1.amazonaws.com/cert.txt"]
        for u in urls:
            with self.subTest(url=u):
                r = self.post(self.notification({"eventType": "Send", "mail": {}}, cert_url=u))
                self.assertEqual(r.status, 403, r)
                self.assertIn("SigningCertURL", r.error["message"])
        # The real vectors with their SigningCertURL pointed at our server.
        for name, raw, m in self.vectors:
            alt = dict(m)
            alt.pop("SigningCertUrl", None)
            alt["SigningCertURL"] = f"http://127.0.0.1:{port}/{name}.pem"
            self.assertEqual(self.post(alt).status, 403)
        self.assertEqual(len(CountingHandler.hits), before, CountingHandler.hits)

    def test_subscribe_url_elsewhere_not_fetched(self):
        port = self.httpd.server_address[1]
        before = len(CountingHandler.hits)
        for u in (f"https://127.0.0.1:{port}/?Action=ConfirmSubscription&Token=t",
                  f"http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
                  f"https://sns.us-east-1.amazonaws.com@127.0.0.1:{port}/?Action=x"):
            m = {"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()),
                 "Token": "t0k3n", "TopicArn": OUR_TOPIC, "Message": "confirm me",
                 "SubscribeURL": u, "Timestamp": "2026-11-25T05:00:00.000Z",
                 "SignatureVersion": "1", "SigningCertURL": OUR_CERT_URL}
            r = self.post(self.pki.sign(m))
            self.assertEqual(r.status, 403, r)
            self.assertIn("SubscribeURL", r.error["message"])
        self.assertEqual(len(CountingHandler.hits), before, CountingHandler.hits)

    def test_uncached_certificate_unavailable(self):
        # A well-formed SNS certificate URL that is neither cached nor in the
        # certificates directory needs a fetch; AWS is not reachable from a
        # test, so the answer is 503 (SNS retries) and nothing is recorded.
        url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-uncached.pem"
        r = self.post(self.notification({"eventType": "Send", "mail": {}}, cert_url=url))
        self.assertEqual(r.status, 503, r)
        self.assertIn("retry later", r.error["message"])

    def test_bad_requests(self):
        r = self.post("{not json")
        self.assertEqual(r.status, 400, r)
        self.assertIn("not JSON", r.error["message"])
        r = self.post({"Type": "Notification", "Message": "x"})
        self.assertEqual(r.status, 400, r)
        self.assertIn("MessageId", r.error["message"])
        r = self.post({"Type": "Bogus"})
        self.assertEqual(r.status, 400, r)
        r = self.post("x" * (70 << 10))
        self.assertEqual(r.status, 413, r)
        # Topic not allowed, even though the signature is good.
        r = self.post(self.notification({"eventType": "Send", "mail": {}}, topic=OTHER_TOPIC))
        self.assertEqual(r.status, 403, r)
        self.assertIn("TopicArn", r.error["message"])
        # A certificate chaining to our CA but not issued to sns.amazonaws.com.
        r = self.post(self.notification({"eventType": "Send", "mail": {}},
                                        cert_url=BADNAME_CERT_URL, who="badleaf"))
        self.assertEqual(r.status, 403, r)
        self.assertIn("sns.amazonaws.com", r.error["message"])
        # Signed by a key that is not the certificate's.
        r = self.post(self.notification({"eventType": "Send", "mail": {}}, who="badleaf"))
        self.assertEqual(r.status, 403, r)
        self.assertIn("signature", r.error["message"])
        # Version 3 is unknown.
        m = self.notification({"eventType": "Send", "mail": {}})
        m["SignatureVersion"] = "3"
        self.assertEqual(self.post(m).status, 403)

    def test_end_to_end_events(self):
        mid = self.send_email("e2e")
        ses_id = f"outbox-{mid}"
        base = self.events(mid)
        self.assertEqual(base[-1], "SENT")

        def ok(ev_name, version="2", sns_mid=None, header_id=None, sid=ses_id):
            m = self.notification(self.ses_event(ev_name, sid, header_id), version=version,
                                  mid=sns_mid)
            r = self.post(m)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, {"data": "Success"})
            return m

        # SES's Send event: SENT is already recorded (by the egress), once.
        ok("send.json")
        self.assertEqual(self.events(mid), base)
        sns_mid = str(uuid.uuid4())
        ok("delivery.json", version="1", sns_mid=sns_mid)
        e = self.email(mid)
        self.assertEqual(e["latestStatus"], "DELIVERED")
        last = e["emailEvents"][-1]
        self.assertEqual(last["status"], "DELIVERED")
        self.assertIn("smtpResponse", last["data"])
        # The same SNS message again: recorded once.
        ok("delivery.json", version="1", sns_mid=sns_mid)
        self.assertEqual(self.events(mid).count("DELIVERED"), 1)
        # DeliveryDelay twice (different SNS messages): one event; the
        # status stays DELIVERED (precedence).
        ok("delivery-delay.json")
        ok("delivery-delay.json")
        self.assertEqual(self.events(mid).count("DELIVERY_DELAYED"), 1)
        self.assertEqual(self.email(mid)["latestStatus"], "DELIVERED")
        ok("open.json")
        self.assertEqual(self.email(mid)["latestStatus"], "OPENED")
        ok("click.json")
        e = self.email(mid)
        self.assertEqual(e["latestStatus"], "CLICKED")
        with open(os.path.join(SES_VEC, "event-publishing", "click.json")) as f:
            link = json.load(f)["click"]["link"]
        self.assertEqual(e["emailEvents"][-1]["data"]["link"], link)
        # An altered signed event records nothing.
        n = len(self.events(mid))
        m = self.notification(self.ses_event("complaint.json", ses_id))
        m["Message"] = m["Message"].replace("abuse", "abusf")
        self.assertEqual(self.post(m).status, 403)
        self.assertEqual(len(self.events(mid)), n)
        ok("complaint.json")
        e = self.email(mid)
        self.assertEqual(e["latestStatus"], "COMPLAINED")
        self.assertEqual(e["emailEvents"][-1]["data"]["complaintFeedbackType"], "abuse")
        self.assertEqual(self.events(mid), base + ["DELIVERED", "DELIVERY_DELAYED", "OPENED",
                                                   "CLICKED", "COMPLAINED"])

        # Found by the X-Usesend-Email-ID header (SES id unknown here).
        mid2 = self.send_email("by header")
        ok("bounce.json", header_id=mid2, sid="0100-unknown-ses-id")
        e = self.email(mid2)
        self.assertEqual(e["latestStatus"], "BOUNCED")
        self.assertEqual(e["emailEvents"][-1]["data"]["bounceType"], "Permanent")
        self.assertEqual(self.email(mid)["latestStatus"], "COMPLAINED")

        # Unknown message, Subscription events and non-SES messages: 200,
        # nothing recorded.
        ok("delivery.json", sid="0100-nobody")
        ok("subscription.json")
        r = self.post(self.notification("just text", subject="hi"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.events(mid)[-1], "COMPLAINED")
        self.assertEqual(len(self.events(mid2)), len(base) + 1)


if __name__ == "__main__":
    unittest.main()
