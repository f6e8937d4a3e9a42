# SPDX-License-Identifier: Apache-2.0
"""it.ses: the egress_ses plugin on the real binary (ingress_http, api_usesend,
mime, egress_ses).

1. Against aws-ses-v2-local 2.10.2 (npm, tests/ses-local, loopback only): a
   message sent through the emails API reaches SENT with the local SES's
   MessageId as provider id, and the local store holds it with the right
   from/to/cc/subject/body; the local server refuses requests without an
   "AWS..." Authorization header, so its 200 shows the header shape passed.
2. Against a small Python HTTP server in this file. It is a mock because
   nothing real produces SES errors locally (aws-ses-v2-local never throttles
   or rejects); its error answers use the shapes of shared/vectors/ses-api
   (status from the SESv2 model, x-amzn-ErrorType header, JSON "message").
   It checks the request itself (JSON body, bcc as destinations, base64 raw
   MIME without Bcc, configuration set, session token, and the SigV4
   signature recomputed here independently), then throttling (DEFER,
   Retry-After honoured, SENT once SES accepts), MessageRejected (REJECTED
   with SES's reason in the event) and 500 (retried, then SENT).
"""
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT
SES_DIR = os.path.join(sphelp.SOURCE_DIR, "tests", "ses-local")
AK = "AKIDSENDPIPETEST"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSECRETKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJH"
AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256 Credential=(\w+)/(\d{8})/([a-z0-9-]+)/ses/aws4_request, "
                     r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")


def ses_server(endpoint, region="us-east-1", extra="", mime=True, **kw):
    """An ApiServer whose egress is egress_ses at `endpoint`, with mime."""
    srv = apihelp.ApiServer(egress="egress_ses", **kw)
    with open(srv.conf) as f:
        conf = f.read()
    conf = conf.replace("  - name: egress_ses\n",
                        ("  - name: mime\n" if mime else "") + "  - name: egress_ses\n"
                        f"    config: {{ endpoint: \"{endpoint}\", region: {region}{extra} }}\n")
    with open(srv.conf, "w") as f:
        f.write(conf)
    return srv


def stop_server(srv):
    if srv is not None and srv.proc is not None and srv.proc.poll() is None:
        rc = srv.stop()
        assert rc == 0, "sendpipe exited with %d" % rc
    if srv is not None:
        shutil.rmtree(srv.tmp, ignore_errors=True)


def events(srv, mid):
    return srv.message(mid)["events"]


def record(srv, mid):
    return srv.message(mid)["record"]


def wait_status(srv, mid, want, timeout=30):
    def ok():
        st = sphelp.status_name(srv.status(mid))
        if st not in ("QUEUED", "SCHEDULED", want):
            raise AssertionError(f"{mid} is {st}, want {want}: {events(srv, mid)}")
        return st == want
    sphelp.wait_until(ok, timeout, f"message {mid} to reach {want}")


def tenant(srv):
    team = srv.team("acme")
    srv.domain(team, "acme.test")
    _, key = srv.key(team)
    return apihelp.Client(srv.http_port, key)


def send(api, **kw):
    p = {"from": "Acme <hello@acme.test>", "to": ["Ann <ann@example.net>"],
         "subject": "Hello SES", "text": "Body through SES."}
    p.update(kw)
    r = api.post("/api/v1/emails", p)
    assert r.status == 200, r
    return r.body["emailId"]


# ---- SigV4, recomputed independently of plugins/egress_ses/sigv4.c ----------

def sigv4_check(method, path, headers, body, secret, region="us-east-1"):
    """headers: dict of lower-case name -> value as received. Returns the
    Signature SigV4 gives for the signed headers named in Authorization."""
    m = AUTH_RE.match(headers["authorization"])
    assert m, headers["authorization"]
    signed = m.group(4).split(";")
    creq = "\n".join([method, path, ""] + [f"{h}:{headers[h].strip()}" for h in signed]
                     + ["", ";".join(signed), hashlib.sha256(body).hexdigest()])
    amz = headers["x-amz-date"]
    scope = f"{amz[:8]}/{region}/ses/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])

    def h(k, msg):
        return hmac.new(k, msg.encode(), hashlib.sha256).digest()
    k = h(h(h(h(("AWS4" + secret).encode(), amz[:8]), region), "ses"), "aws4_request")
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest(), m


# ---- aws-ses-v2-local ---------------------------------------------------------

class SesLocal:
    def __init__(self):
        node = shutil.which("node")
        assert node, "node is needed for aws-ses-v2-local (scripts/deps.sh)"
        cli = os.path.join(SES_DIR, "node_modules", "aws-ses-v2-local", "package.json")
        if not os.path.exists(cli):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", SES_DIR],
                           check=True, capture_output=True, timeout=300)
        self.port = sphelp.free_port()
        self.proc = subprocess.Popen(
            [os.path.join(SES_DIR, "node_modules", ".bin", "aws-ses-v2-local"),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("aws-ses-v2-local exited: " + self.proc.stderr.read().decode())
            try:
                return urllib.request.urlopen(self.base + "/health-check", timeout=1).status == 200
            except OSError:
                return False
        sphelp.wait_until(up, 30, "aws-ses-v2-local to listen")

    def store(self):
        with urllib.request.urlopen(self.base + "/store", timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


class LocalSesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ses = cls.srv = None
        os.environ["AWS_ACCESS_KEY_ID"] = AK
        os.environ["AWS_SECRET_ACCESS_KEY"] = SK
        os.environ.pop("AWS_SESSION_TOKEN", None)
        try:
            cls.ses = SesLocal()
            cls.srv = ses_server(cls.ses.base)
            cls.srv.start()
            cls.api = tenant(cls.srv)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            stop_server(cls.srv)
        finally:
            if cls.ses is not None:
                cls.ses.stop()

    def test_sent_and_stored(self):
        mid = send(self.api, cc="Carl <carl@example.net>", bcc="bea@example.net",
                   subject="Hello local SES", text="Stored by the local SES.")
        wait_status(self.srv, mid, "SENT")
        pid = record(self.srv, mid)["provider_id"]
        self.assertRegex(pid, r"^ses-\d+$")
        mails = [e for e in self.ses.store()["emails"] if e["messageId"] == pid]
        self.assertEqual(len(mails), 1, self.ses.store())
        e = mails[0]
        self.assertIn("hello@acme.test", e["from"])
        self.assertEqual(e["subject"], "Hello local SES")
        # (it keeps the header form, display names included)
        self.assertEqual(len(e["destination"]["to"]), 1, e)
        self.assertIn("<ann@example.net>", e["destination"]["to"][0])
        self.assertEqual(len(e["destination"]["cc"]), 1, e)
        self.assertIn("carl@example.net", e["destination"]["cc"][0])
        # The local SES reads recipients from the MIME headers only: Bcc is
        # not there (the mock test checks it was a destination).
        self.assertEqual(e["destination"]["bcc"], [])
        self.assertIn("Stored by the local SES.", e["body"]["text"])
        ev = events(self.srv, mid)
        self.assertEqual(ev[-1]["status"], "SENT")
        self.assertEqual(ev[-1]["data"].get("providerId"), pid, ev)
        self.assertEqual(ev[-1]["data"].get("plugin"), "egress_ses", ev)


# ---- the mock: real SES error shapes ------------------------------------------

class MockSes(ThreadingHTTPServer):
    """Answers POST /v2/email/outbound-emails from a script keyed by the first
    To address: a list of (status, headers, body); when it runs out, 200
    with a MessageId. Every request is kept."""
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), MockHandler)
        self.lock = threading.Lock()
        self.requests = []
        self.script = {}
        self.n = 0
        self.hung = threading.Event()  # set: hanging answers end now
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def for_rcpt(self, rcpt):
        with self.lock:
            return [r for r in self.requests
                    if r["json"].get("Destination", {}).get("ToAddresses", [None])[0] == rcpt]


class MockHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        srv = self.server
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        rcpt = doc.get("Destination", {}).get("ToAddresses", [None])[0]
        with srv.lock:
            srv.requests.append({"path": self.path, "method": self.command, "body": body,
                                 "json": doc, "time": time.monotonic(),
                                 "headers": {k.lower(): v for k, v in self.headers.items()}})
            steps = srv.script.get(rcpt) or []
            status = None
            if steps:
                status, hdrs, out = steps.pop(0)
            if status == "hang":
                pass
            elif status is None:
                srv.n += 1
                status, hdrs = 200, {}
                out = json.dumps({"MessageId": f"0100018c-mock-{srv.n:06d}-000000"})
        if status == "hang":
            # no answer for `hdrs` seconds (or until the test ends), then close
            srv.hung.wait(hdrs)
            self.close_connection = True
            return
        data = out.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", "e0abcdfa-c866-11e0-b6d0-273d09173b49")
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


REJECTED_MSG = ("Email address is not verified. The following identities failed the check "
                "in region US-EAST-1: hello@acme.test")


class MockSesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mock = cls.srv = None
        os.environ["AWS_ACCESS_KEY_ID"] = AK
        os.environ["AWS_SECRET_ACCESS_KEY"] = SK
        os.environ["AWS_SESSION_TOKEN"] = TOKEN
        try:
            cls.mock = MockSes()
            cls.srv = ses_server(cls.mock.base, region="eu-west-1",
                                 extra=", configuration_set: tracking")
            cls.srv.start()
            cls.api = tenant(cls.srv)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        os.environ.pop("AWS_SESSION_TOKEN", None)
        try:
            stop_server(cls.srv)
        finally:
            if cls.mock is not None:
                cls.mock.hung.set()
                cls.mock.shutdown()
                cls.mock.server_close()

    def test_request_shape_and_signature(self):
        mid = send(self.api, to=["Ann <shape@example.net>", "dan@example.net"],
                   cc="Carl <carl@example.net>", bcc=["Bea <bea@example.net>"])
        wait_status(self.srv, mid, "SENT")
        reqs = self.mock.for_rcpt("shape@example.net")
        self.assertEqual(len(reqs), 1)
        r = reqs[0]
        self.assertEqual((r["method"], r["path"]), ("POST", "/v2/email/outbound-emails"))
        self.assertEqual(r["headers"]["content-type"], "application/json")
        doc = r["json"]
        self.assertEqual(doc["FromEmailAddress"], "Acme <hello@acme.test>")
        self.assertEqual(doc["Destination"], {"ToAddresses": ["shape@example.net",
                                                              "dan@example.net"],
                                              "CcAddresses": ["carl@example.net"],
                                              "BccAddresses": ["bea@example.net"]})
        self.assertEqual(doc["ConfigurationSetName"], "tracking")
        self.assertNotIn("EmailTags", doc)
        raw = base64.b64decode(doc["Content"]["Raw"]["Data"], validate=True)
        self.assertIn(b"Subject: Hello SES\r\n", raw)
        self.assertIn(b"Body through SES.", raw)
        self.assertNotRegex(raw, rb"(?im)^bcc:")
        self.assertNotIn(b"bea@example.net", raw)
        # SigV4: region from the config, token sent and signed, date fresh,
        # signature as an independent implementation computes it.
        h = r["headers"]
        self.assertEqual(h["x-amz-security-token"], TOKEN)
        want, m = sigv4_check("POST", r["path"], h, r["body"], SK, region="eu-west-1")
        self.assertEqual(m.group(1), AK)
        self.assertEqual(m.group(3), "eu-west-1")
        self.assertEqual(m.group(4), "content-type;host;x-amz-date;x-amz-security-token")
        self.assertEqual(m.group(5), want)
        amz = datetime.datetime.strptime(h["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
        self.assertLess(abs((datetime.datetime.now(datetime.timezone.utc) - amz)
                            .total_seconds()), 300)
        self.assertRegex(record(self.srv, mid)["provider_id"], r"^0100018c-mock-\d{6}-000000$")
        # no secret in the log
        with open(self.srv.log) as f:
            log = f.read()
        self.assertNotIn(SK, log)
        self.assertNotIn(TOKEN, log)

    def test_throttled_then_sent(self):
        throttle = {"x-amzn-ErrorType": "TooManyRequestsException"}
        self.mock.script["slow@example.net"] = [
            (429, dict(throttle, **{"Retry-After": "1"}),
             '{"message":"Maximum sending rate exceeded."}'),
            (400, {"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/"},
             '{"message":"Rate exceeded"}'),
        ]
        mid = send(self.api, to="slow@example.net")
        wait_status(self.srv, mid, "SENT")
        reqs = self.mock.for_rcpt("slow@example.net")
        self.assertEqual(len(reqs), 3)
        # Retry-After: 1 was honoured (the configured backoff starts at 200 ms)
        self.assertGreaterEqual(reqs[1]["time"] - reqs[0]["time"], 0.9)
        rec = record(self.srv, mid)
        self.assertEqual(rec["attempts"], 3)
        self.assertRegex(rec["provider_id"], r"^0100018c-mock-")
        self.assertEqual([e["status"] for e in events(self.srv, mid)], ["QUEUED", "SENT"])

    def test_non_ascii_display_name(self):
        mid = send(self.api, to="utf8@example.net", **{"from": "Zoë Acme <hello@acme.test>"})
        wait_status(self.srv, mid, "SENT")
        doc = self.mock.for_rcpt("utf8@example.net")[0]["json"]
        # SES wants non-ASCII names encoded: the address only, the name
        # stays in the (encoded) From header of the raw message
        self.assertEqual(doc["FromEmailAddress"], "hello@acme.test")
        raw = base64.b64decode(doc["Content"]["Raw"]["Data"])
        self.assertRegex(raw, rb"(?m)^From: =\?[Uu][Tt][Ff]-8\?")

    def test_message_rejected(self):
        self.mock.script["nope@example.net"] = [
            (400, {"x-amzn-ErrorType": "MessageRejected"},
             json.dumps({"message": REJECTED_MSG}))]
        mid = send(self.api, to="nope@example.net")
        wait_status(self.srv, mid, "REJECTED")
        ev = events(self.srv, mid)[-1]
        self.assertEqual(ev["status"], "REJECTED")
        self.assertEqual(ev["data"].get("error"), "SES MessageRejected: " + REJECTED_MSG, ev)
        self.assertEqual(ev["data"].get("code"), 400, ev)
        self.assertEqual(ev["data"].get("plugin"), "egress_ses", ev)
        self.assertEqual(record(self.srv, mid)["attempts"], 1)
        self.assertEqual(len(self.mock.for_rcpt("nope@example.net")), 1)

    def test_server_error_retried(self):
        self.mock.script["flaky@example.net"] = [
            (500, {}, '{"message":"InternalFailure"}'),
            (503, {"x-amzn-ErrorType": "ServiceUnavailable"}, '{"message":"unavailable"}')]
        mid = send(self.api, to="flaky@example.net")
        wait_status(self.srv, mid, "SENT")
        self.assertEqual(len(self.mock.for_rcpt("flaky@example.net")), 3)
        self.assertEqual(record(self.srv, mid)["attempts"], 3)

    def test_account_suspended_fails(self):
        self.mock.script["susp@example.net"] = [
            (400, {}, json.dumps({"__type": "com.amazonaws.sesv2#AccountSuspendedException",
                                  "message": "Your account is suspended."}))]
        mid = send(self.api, to="susp@example.net")
        wait_status(self.srv, mid, "FAILED")
        ev = events(self.srv, mid)[-1]
        self.assertEqual(ev["data"].get("error"),
                         "SES AccountSuspendedException: Your account is suspended.", ev)



class SlowSesTest(unittest.TestCase):
    """An SES that does not answer: the request times out and is retried;
    at shutdown a request still in flight is cancelled (cancel_fn ->
    http_fetch_cancel) and the server exits cleanly within its grace."""

    def setUp(self):
        self.mock = self.srv = None
        os.environ["AWS_ACCESS_KEY_ID"] = AK
        os.environ["AWS_SECRET_ACCESS_KEY"] = SK
        os.environ.pop("AWS_SESSION_TOKEN", None)

    def tearDown(self):
        try:
            stop_server(self.srv)
        finally:
            if self.mock is not None:
                self.mock.hung.set()
                self.mock.shutdown()
                self.mock.server_close()

    def start(self, **kw):
        self.mock = MockSes()
        self.srv = ses_server(self.mock.base, **kw)
        self.srv.start()
        self.api = tenant(self.srv)

    def test_timeout_deferred_then_sent(self):
        self.start(extra=", timeout: 400ms")
        self.mock.script["late@example.net"] = [("hang", 5, "")]
        mid = send(self.api, to="late@example.net")
        wait_status(self.srv, mid, "SENT")
        rec = record(self.srv, mid)
        self.assertEqual(rec["attempts"], 2)
        self.assertIn("SES unreachable", rec.get("last_error", ""), rec)
        self.assertEqual(len(self.mock.for_rcpt("late@example.net")), 2)

    def test_without_mime_fails(self):
        self.start(mime=False)
        mid = send(self.api, to="nomime@example.net")
        wait_status(self.srv, mid, "FAILED")
        ev = events(self.srv, mid)[-1]
        self.assertEqual(ev["data"].get("error"), "no message was built: load the mime plugin")
        self.assertEqual(self.mock.requests, [])

    def test_shutdown_cancels_request_in_flight(self):
        self.start(grace="300ms")
        api = self.api
        self.mock.script["stuck@example.net"] = [("hang", 60, "")]
        send(api, to="stuck@example.net")
        sphelp.wait_until(lambda: self.mock.for_rcpt("stuck@example.net"), 20,
                          "the request to reach SES")
        t0 = time.monotonic()
        rc = self.srv.stop()
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 10 * MULT)
        with open(self.srv.log) as f:
            log = f.read()
        self.assertIn("cancelling 1 suspended hooks", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
