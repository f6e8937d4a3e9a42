# SPDX-License-Identifier: Apache-2.0
"""The feedback loop end to end, on loopback, with real components:

sendpipe (ingress_http, api_usesend, suppression, feedback_sns, mime,
egress_ses) sends through aws-ses-v2-local (npm); the test then posts the
matching SES events (Delivery, Open twice, Click, Bounce Permanent and
Transient, Complaint) as SNS notifications signed by a PKI it makes with the
openssl CLI (sendpipe trusts that test CA through `trust_ca_file`, the
documented test setting). A webhook receiver (node, tests/sdk) verifies every
delivery with usesend-js's own `Webhooks(secret)`.

Checked: statuses and event history; daily counters and reputation through
the analytics API (a repeated open counts once); suppression entries only for
the Permanent bounce and the complaint, with the email id as source; a new
send to a suppressed address answers 200 with status SUPPRESSED and is not
sent; every status change reaches the webhook, verified, in order per
message; with the receiver down, deliveries are retried (X-UseSend-Retry)
and arrive in order once it is back."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import sphelp  # noqa: E402
import test_ses  # noqa: E402
import test_sns  # noqa: E402

MULT = sphelp.MULT
SDK_DIR = os.path.join(sphelp.SOURCE_DIR, "tests", "sdk")
RECEIVER = os.path.join(SDK_DIR, "webhook_receiver.mjs")
SES_VEC = test_sns.SES_VEC


class Receiver:
    """tests/sdk/webhook_receiver.mjs: verifies each POST with usesend-js."""

    def __init__(self, d):
        self.port = sphelp.free_port()
        self.out = os.path.join(d, "webhooks.jsonl")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["node", RECEIVER, "--port", str(self.port),
                                      "--out", self.out], cwd=SDK_DIR,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening"), line + self.proc.stderr.read().decode()
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc is not None:
            self.proc.stdout.close()
            self.proc.stderr.close()
        self.proc = None

    def configure(self, **c):
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/__config",
                                     data=json.dumps(c).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def entries(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            return [json.loads(x) for x in f if x.strip()]

    def verified(self):
        return [e for e in self.entries() if e["verified"] and e["status"] < 300]


class FeedbackE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sp-e2e-")
        cls.ses = cls.srv = cls.rx = None
        try:
            cls._setup()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _setup(cls):
        os.environ["AWS_ACCESS_KEY_ID"] = test_ses.AK
        os.environ["AWS_SECRET_ACCESS_KEY"] = test_ses.SK
        os.environ.pop("AWS_SESSION_TOKEN", None)
        cls.pki = test_sns.Pki(cls.tmp)
        certs = os.path.join(cls.tmp, "certs")
        os.mkdir(certs)
        shutil.copy(cls.pki.leaf, os.path.join(certs, test_sns.url_hash(test_sns.OUR_CERT_URL)
                                               + ".pem"))
        shutil.copy(cls.pki.inter, os.path.join(certs, "intermediate.pem"))
        cls.ses = test_ses.SesLocal()
        cls.rx = Receiver(cls.tmp).start()
        os.mkdir(os.path.join(cls.tmp, "srv"))
        srv = apihelp.ApiServer(api_config={"rate_limit": 100000}, egress="egress_ses",
                                tmp=os.path.join(cls.tmp, "srv"))
        with open(srv.conf) as f:
            conf = f.read()
        fsns = (f'topic_arns: "{test_sns.OUR_TOPIC}", certificates: "{certs}", '
                f'trust_ca_file: "{cls.pki.root}", fetch_timeout: 3s')
        conf = conf.replace("  - name: api_usesend\n",
                            "  - name: suppression\n"
                            f"  - name: feedback_sns\n    config: {{ {fsns} }}\n"
                            "  - name: api_usesend\n", 1)
        conf = conf.replace("  - name: egress_ses\n",
                            "  - name: mime\n  - name: egress_ses\n"
                            f"    config: {{ endpoint: \"{cls.ses.base}\", region: us-east-1 }}\n")
        # Webhook retries fast enough for a test (documented settings).
        conf += "webhooks: { retry_base: 200ms, retry_max: 1s }\n"
        with open(srv.conf, "w") as f:
            f.write(conf)
        cls.srv = srv
        srv.start()
        cls.team = srv.team("acme")
        cls.dom = srv.domain(cls.team, "acme.test")
        _, key = srv.key(cls.team)
        cls.api = apihelp.Client(srv.http_port, key)
        cls.anon = apihelp.Client(srv.http_port)
        r = cls.api.post("/api/v1/webhooks", {"url": f"http://127.0.0.1:{cls.rx.port}/hook",
                                              "description": "e2e"})
        assert r.status == 200, r
        cls.webhook = r.body
        cls.rx.configure(secrets={"/hook": r.body["secret"]})

    @classmethod
    def tearDownClass(cls):
        try:
            test_ses.stop_server(cls.srv)
        finally:
            if cls.rx is not None:
                cls.rx.stop()
            if cls.ses is not None:
                cls.ses.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers -----------------------------------------------------------

    def send(self, to, subject):
        r = self.api.post("/api/v1/emails", {"from": "Acme <hello@acme.test>", "to": to,
                                             "subject": subject, "text": "hello"})
        self.assertEqual(r.status, 200, r)
        return r.body["emailId"]

    def sent(self, mid):
        test_ses.wait_status(self.srv, mid, "SENT")
        return test_ses.record(self.srv, mid)["provider_id"]

    def notify(self, name, ses_id, mutate=None):
        with open(os.path.join(SES_VEC, "event-publishing", name)) as f:
            ev = json.load(f)
        ev["mail"]["messageId"] = ses_id
        ev["mail"]["headers"] = [h for h in ev["mail"].get("headers", [])
                                 if h["name"] != "X-Usesend-Email-ID"]
        if mutate is not None:
            mutate(ev)
        m = {"Type": "Notification", "MessageId": str(uuid.uuid4()),
             "TopicArn": test_sns.OUR_TOPIC, "Message": json.dumps(ev),
             "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
             "SignatureVersion": "2", "SigningCertURL": test_sns.OUR_CERT_URL,
             "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"}
        self.pki.sign(m)
        r = self.anon.request("POST", test_sns.CB, raw=json.dumps(m),
                              headers={"Content-Type": "text/plain; charset=UTF-8"})
        self.assertEqual(r.status, 200, r)

    def status(self, mid):
        return sphelp.status_name(self.srv.status(mid))

    def events(self, mid):
        return [sphelp.status_name(e["status"]) if isinstance(e["status"], int) else e["status"]
                for e in self.srv.message(mid)["events"]]

    def hooks_for(self, mid):
        return [e for e in self.rx.verified() if e["event"]["data"].get("id") == mid]

    def wait_hooks(self, mid, types, timeout=30):
        def ok():
            got = [e["event"]["type"] for e in self.hooks_for(mid)]
            return got == types
        try:
            sphelp.wait_until(ok, timeout, f"webhooks {types} for {mid}")
        except AssertionError:
            raise AssertionError("got %s" % [e["event"]["type"] for e in self.hooks_for(mid)])

    # ---- the loop ----------------------------------------------------------

    def test_1_feedback_loop(self):
        a = self.send("ann@example.net", "delivered, opened, clicked")
        b = self.send("bob@example.net", "hard bounce")
        c = self.send("carl@example.net", "complaint")
        d = self.send("dora@example.net", "soft bounce")
        pa, pb, pc, pd = (self.sent(x) for x in (a, b, c, d))
        self.assertTrue(all(p.startswith("ses-") for p in (pa, pb, pc, pd)))

        def bounce(kind, who):
            def f(ev):
                ev["bounce"]["bounceType"] = kind
                ev["bounce"]["bouncedRecipients"] = [{"emailAddress": who}]
            return f

        def complaint(ev):
            ev["complaint"]["complainedRecipients"] = [{"emailAddress": "carl@example.net"}]

        self.notify("delivery.json", pa)
        self.notify("open.json", pa)
        self.notify("open.json", pa)
        self.notify("click.json", pa)
        self.notify("bounce.json", pb, bounce("Permanent", "bob@example.net"))
        self.notify("complaint.json", pc, complaint)
        self.notify("bounce.json", pd, bounce("Transient", "dora@example.net"))

        self.assertEqual(self.status(a), "CLICKED")
        self.assertEqual(self.status(b), "BOUNCED")
        self.assertEqual(self.status(c), "COMPLAINED")
        self.assertEqual(self.status(d), "BOUNCED")
        self.assertEqual(self.events(a), ["QUEUED", "SENT", "DELIVERED", "OPENED", "OPENED",
                                          "CLICKED"])

        # Analytics: today's counters and lifetime reputation.
        r = self.api.get("/api/v1/analytics/email-time-series?days=7")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body["result"]), 8)
        self.assertEqual(r.body["totalCounts"], {"sent": 4, "delivered": 1, "opened": 1,
                                                 "clicked": 1, "bounced": 2, "complained": 1})
        today = r.body["result"][-1]
        self.assertEqual(today["date"], time.strftime("%b %d", time.gmtime()))
        self.assertEqual(today["sent"], 4)
        r = self.api.get(f"/api/v1/analytics/reputation-metrics?domainId={self.dom}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["delivered"], 1)
        self.assertEqual(r.body["hardBounced"], 1)
        self.assertEqual(r.body["complained"], 1)
        self.assertEqual(r.body["bounceRate"], 100)
        self.assertEqual(r.body["complaintRate"], 100)

        # Suppression: the Permanent bounce and the complaint only.
        r = self.api.get("/api/v1/suppressions")
        self.assertEqual(r.status, 200, r)
        got = {e["email"]: (e["reason"], e["source"]) for e in r.body["data"]}
        self.assertEqual(got, {"bob@example.net": ("HARD_BOUNCE", b),
                               "carl@example.net": ("COMPLAINT", c)})
        e = self.send(["Bob@Example.net "], "to a suppressed address")
        self.assertEqual(self.status(e), "SUPPRESSED")
        before = len(self.ses.store()["emails"])
        f = self.send("erin@example.net", "after the suppressed one")
        self.sent(f)
        self.assertEqual(len(self.ses.store()["emails"]), before + 1)

        # Webhooks: every change, verified by the SDK, in order per message.
        self.wait_hooks(a, ["email.queued", "email.sent", "email.delivered", "email.opened",
                            "email.opened", "email.clicked"])
        self.wait_hooks(b, ["email.queued", "email.sent", "email.bounced"])
        self.wait_hooks(c, ["email.queued", "email.sent", "email.complained"])
        self.wait_hooks(e, ["email.suppressed"])
        hb = self.hooks_for(b)[-1]["event"]
        self.assertEqual(hb["data"]["bounce"]["type"], "Permanent")
        self.assertEqual(hb["data"]["domainId"], self.dom)
        self.assertEqual(hb["teamId"], self.team)
        self.assertEqual(hb["data"]["to"], ["bob@example.net"])
        hs = self.hooks_for(e)[-1]["event"]["data"]
        self.assertEqual(hs["status"], "SUPPRESSED")
        self.assertEqual(hs["error"], "All TO recipients are suppressed. No emails to send.")
        # The receiver's verification is real: nothing unverified arrived.
        self.assertEqual([x for x in self.rx.entries() if not x["verified"]], [])

    def test_2_receiver_down_then_back(self):
        g = self.send("gus@example.net", "while the receiver is down")
        pg = self.sent(g)
        self.wait_hooks(g, ["email.queued", "email.sent"])
        self.rx.configure(status=500)
        self.notify("delivery.json", pg)
        self.notify("open.json", pg)
        sphelp.wait_until(lambda: sum(1 for x in self.rx.entries()
                                      if x["status"] == 500 and x["headers"]["retry"] == "true")
                          >= 1, 30, "a retried delivery")
        self.rx.configure(status=200)
        self.wait_hooks(g, ["email.queued", "email.sent", "email.delivered", "email.opened"])
        # Nothing of g was delivered out of order while retrying.
        order = [x["event"]["type"] for x in self.rx.entries()
                 if x.get("event") and x["event"]["data"].get("id") == g]
        firsts = []
        for t in order:
            if t not in firsts:
                firsts.append(t)
        self.assertEqual(firsts, ["email.queued", "email.sent", "email.delivered",
                                  "email.opened"])


if __name__ == "__main__":
    unittest.main()
