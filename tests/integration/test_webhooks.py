# SPDX-License-Identifier: Apache-2.0
"""Outgoing webhooks on the real binary: endpoints made with the CLI and the
API (FULL keys only), emails sent through the API, every delivery received
by tests/sdk/webhook_receiver.mjs and verified there with the usesend-js
SDK's own Webhooks(secret).constructEvent; filters, a tampered signature
refused by the SDK, retries with backoff while the receiver answers 500 and
delivery in order once it recovers, FAILED calls in the delivery log, auto
disabling, and pending calls surviving a kill -9 of the server."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT
RECEIVER = os.path.join(sphelp.SOURCE_DIR, "tests", "sdk", "webhook_receiver.mjs")
SDK_MODULES = os.path.join(sphelp.SOURCE_DIR, "tests", "sdk", "node_modules", "usesend-js")
# Short backoff and a reachable auto-disable threshold (documented settings).
WEBHOOKS_CONF = "webhooks: { retry_base: 150ms, retry_max: 400ms, attempts: 6, " \
                "disable_after: 3, timeout: 2s }\n"


class Receiver:
    def __init__(self, tmp):
        self.port = sphelp.free_port()
        self.out = os.path.join(tmp, "received.jsonl")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["node", RECEIVER, "--port", str(self.port),
                                      "--out", self.out],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        assert self.proc.stdout.readline().startswith(b"listening"), self.proc.stderr.read()
        return self

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()
            self.proc = None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path, body, headers=None):
        req = urllib.request.Request(self.url(path), data=body.encode(), method="POST",
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def config(self, **kw):
        status, _ = self.post("/__config", json.dumps(kw),
                              {"Content-Type": "application/json"})
        assert status == 200

    def entries(self, path=None):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            es = [json.loads(line) for line in f if line.strip()]
        return [e for e in es if path is None or e["path"] == path]

    def accepted(self, path):
        return [e["event"] for e in self.entries(path) if e["verified"] and e["status"] == 200]


def need_sdk():
    """node and the SDK are installed by scripts/deps.sh: missing is a
    failure, never a skip."""
    assert shutil.which("node"), "node is needed (scripts/deps.sh)"
    assert os.path.isdir(SDK_MODULES), "tests/sdk/node_modules is needed (npm ci in tests/sdk)"


class WebhooksTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need_sdk()
        cls.srv = apihelp.ApiServer(api_config={"rate_limit": 100000})
        with open(cls.srv.conf, "a") as f:
            f.write(WEBHOOKS_CONF)
        cls.rcv = Receiver(cls.srv.tmp).start()
        srv = cls.srv.start()
        cls.team = srv.team("hooks")
        cls.other_team = srv.team("elsewhere")
        cls.dom = srv.domain(cls.team, "hooks.test")
        cls.dom2 = srv.domain(cls.team, "news.hooks.test")
        _, cls.key = srv.key(cls.team)
        _, cls.sending_key = srv.key(cls.team, permission="sending")
        _, cls.other_key = srv.key(cls.other_team)
        cls.api = apihelp.Client(srv.http_port, cls.key)
        # The catch-all endpoint, made with the CLI.
        out = srv.cli("webhooks", "add", "--team", "hooks", "--url", cls.rcv.url("/all"),
                      "--description", "everything").stdout.splitlines()
        assert out[0].startswith("created webhook "), out
        cls.all_id = int(out[0].split()[2])
        cls.all_secret = out[-1]
        assert cls.all_secret.startswith("whsec_") and len(cls.all_secret) == 70
        cls.rcv.config(secrets={"/all": cls.all_secret})

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.stop()
        except Exception:
            pass
        cls.rcv.stop()

    # ---- helpers ----------------------------------------------------------

    def send(self, frm="ann@hooks.test", **kw):
        body = {"from": frm, "to": ["bob@example.com"], "subject": "hi", "text": "hello"}
        body.update(kw)
        r = self.api.post("/api/v1/emails", body)
        self.assertEqual(r.status, 200, r)
        return r.body["emailId"]

    def events_for(self, path, mid):
        return [e for e in self.rcv.accepted(path) if e["data"].get("id") == mid]

    def wait_types(self, path, mid, types, timeout=20):
        def got():
            have = [e["type"] for e in self.events_for(path, mid)]
            return have if all(t in have for t in types) else None
        return sphelp.wait_until(got, timeout, f"{types} for {mid} at {path}")

    def calls(self, wid, key=None):
        r = self.api.get(f"/api/v1/webhooks/{wid}/calls?limit=100", key=key)
        self.assertEqual(r.status, 200, r)
        return r.body["data"]

    # ---- tests --------------------------------------------------------------

    def test_a_api_management(self):
        r = self.api.post("/api/v1/webhooks", {"url": self.rcv.url("/x")},
                          key=self.sending_key)
        self.assertEqual(r.status, 403, r)
        r = self.api.post("/api/v1/webhooks", {"url": "ftp://example.com/"})
        self.assertEqual(r.status, 400, r)
        self.assertIn("url", r.body["error"]["message"])
        r = self.api.post("/api/v1/webhooks", {"url": self.rcv.url("/x"),
                                               "eventTypes": ["email.nope"]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.body["error"]["code"], "BAD_REQUEST")
        r = self.api.post("/api/v1/webhooks", {"url": self.rcv.url("/x"), "bogus": 1})
        self.assertEqual(r.status, 400, r)
        r = self.api.post("/api/v1/webhooks", {"url": self.rcv.url("/x"), "domainIds": [999999]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.body["error"]["issues"][0]["path"], ["domainIds"])
        r = self.api.post("/api/v1/webhooks", {"url": self.rcv.url("/x"),
                                               "description": "temp"})
        self.assertEqual(r.status, 200, r)
        wh = r.body
        self.assertTrue(wh["secret"].startswith("whsec_"))
        self.assertEqual(wh["status"], "ACTIVE")
        self.assertEqual(wh["eventTypes"], [])
        g = self.api.get(f"/api/v1/webhooks/{wh['id']}")
        self.assertEqual(g.status, 200, g)
        self.assertNotIn("secret", g.body)
        self.assertEqual(g.body["url"], self.rcv.url("/x"))
        self.assertEqual(self.api.get(f"/api/v1/webhooks/{wh['id']}",
                                      key=self.other_key).status, 404)
        self.assertEqual(self.api.get(f"/api/v1/webhooks/{wh['id']}",
                                      key=self.sending_key).status, 403)
        p = self.api.patch(f"/api/v1/webhooks/{wh['id']}", {"status": "PAUSED",
                                                             "eventTypes": ["email.sent"]})
        self.assertEqual(p.status, 200, p)
        self.assertEqual((p.body["status"], p.body["eventTypes"]), ("PAUSED", ["email.sent"]))
        ids = [w["id"] for w in self.api.get("/api/v1/webhooks").body["data"]]
        self.assertIn(wh["id"], ids)
        self.assertIn(self.all_id, ids)
        self.assertEqual(self.api.get("/api/v1/webhooks", key=self.other_key).body["data"], [])
        self.assertEqual(self.api.request("DELETE", f"/api/v1/webhooks/{wh['id']}",
                                          key=self.other_key).status, 404)
        d = self.api.request("DELETE", f"/api/v1/webhooks/{wh['id']}")
        self.assertEqual(d.status, 200, d)
        self.assertEqual(self.api.get(f"/api/v1/webhooks/{wh['id']}").status, 404)
        self.assertEqual(self.api.get("/api/v1/webhooks/nope").status, 404)
        listed = self.srv.cli("webhooks", "list", "--team", "hooks", "--json").stdout
        self.assertEqual([w["id"] for w in json.loads(listed)], [self.all_id])

    def test_b_events_verified_and_filtered(self):
        # Only email.sent of the second domain.
        r = self.api.post("/api/v1/webhooks", {"url": self.rcv.url("/filtered"),
                                               "eventTypes": ["email.sent"],
                                               "domainIds": [self.dom2]})
        self.assertEqual(r.status, 200, r)
        self.rcv.config(secrets={"/filtered": r.body["secret"]})
        m1 = self.send()
        m2 = self.send(frm="news@news.hooks.test", subject="second")
        self.wait_types("/all", m1, ["email.queued", "email.sent"])
        self.wait_types("/all", m2, ["email.queued", "email.sent"])
        self.wait_types("/filtered", m2, ["email.sent"])
        # A scheduled email, cancelled.
        m3 = self.send(scheduledAt="2099-01-01T00:00:00.000Z")
        c = self.api.post(f"/api/v1/emails/{m3}/cancel", {})
        self.assertEqual(c.status, 200, c)
        self.wait_types("/all", m3, ["email.scheduled", "email.cancelled"])
        time.sleep(0.5)
        self.assertEqual([e["type"] for e in self.rcv.accepted("/filtered")], ["email.sent"])
        # Every delivery is exactly what the contract says.
        entries = [e for e in self.rcv.entries("/all") if e["verified"]]
        self.assertTrue(entries)
        for e in entries:
            ev, h = e["event"], e["headers"]
            self.assertEqual(h["contentType"], "application/json")
            self.assertEqual(h["userAgent"], "UseSend-Webhook/1.0")
            self.assertEqual(h["event"], ev["type"])
            self.assertEqual(h["call"], ev["id"])
            self.assertTrue(h["signature"].startswith("v1="))
            self.assertEqual(ev["version"], "2026-01-18")
            self.assertEqual(ev["teamId"], self.team)
            self.assertRegex(ev["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn("attempt", ev)
        sent = self.events_for("/all", m2)[-1]
        d = sent["data"]
        self.assertEqual((d["from"], d["to"], d["subject"], d["domainId"]),
                         ("news@news.hooks.test", ["bob@example.com"], "second", self.dom2))
        self.assertEqual(d["status"], "SENT")
        self.assertRegex(d["occurredAt"], r"^\d{4}-\d\d-\d\dT")
        # Per message, queued comes before sent.
        types = [e["type"] for e in self.events_for("/all", m1)]
        self.assertLess(types.index("email.queued"), types.index("email.sent"))
        # Negative controls: the SDK refuses a tampered signature or body.
        good = next(e for e in entries if e["event"]["type"] == "email.sent")
        hdr = {"Content-Type": "application/json",
               "X-UseSend-Timestamp": good["headers"]["timestamp"],
               "X-UseSend-Signature": good["headers"]["signature"]}
        st, _ = self.rcv.post("/all", good["body"], hdr)
        self.assertEqual(st, 200)  # the genuine delivery verifies again
        bad = dict(hdr)
        sig = bad["X-UseSend-Signature"]
        bad["X-UseSend-Signature"] = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        st, _ = self.rcv.post("/all", good["body"], bad)
        self.assertEqual(st, 401)
        st, _ = self.rcv.post("/all", good["body"].replace("SENT", "DELIVERED"), hdr)
        self.assertEqual(st, 401)
        refused = [e for e in self.rcv.entries("/all") if not e["verified"]]
        self.assertEqual([e["error"] for e in refused[-2:]], ["SIGNATURE_MISMATCH"] * 2)

    def test_c_cli_test_and_calls(self):
        out = self.srv.cli("webhooks", "test", str(self.all_id)).stdout
        self.assertIn("queued webhook.test call", out)
        sphelp.wait_until(lambda: any(e["type"] == "webhook.test"
                                      for e in self.rcv.accepted("/all")), 20, "webhook.test")
        log = json.loads(self.srv.cli("webhooks", "calls", str(self.all_id), "--json").stdout)
        t = next(c for c in log if c["type"] == "webhook.test")
        sphelp.wait_until(lambda: any(c["status"] == "DELIVERED" and c["type"] == "webhook.test"
                                      for c in self.calls(self.all_id)), 20, "test DELIVERED")
        t = next(c for c in self.calls(self.all_id) if c["id"] == t["id"])
        self.assertEqual((t["status"], t["attempt"], t["responseStatus"]), ("DELIVERED", 1, 200))
        self.assertIn('"ok":true', t["responseText"])
        self.assertEqual(self.api.get(f"/api/v1/webhooks/{self.all_id}/calls",
                                      key=self.other_key).status, 404)

    def test_d_retry_then_in_order(self):
        self.rcv.config(status=500)
        try:
            mid = self.send(subject="retry")

            def refused():
                es = [e for e in self.rcv.entries("/all")
                      if e["verified"] and e["event"]["data"].get("id") == mid]
                return es if len({e["event"]["attempt"] for e in es}) >= 2 else None
            es = sphelp.wait_until(refused, 20, "two refused attempts")
        finally:
            self.rcv.config(status=200)
        self.assertEqual(es[0]["event"]["attempt"], 1)
        self.assertEqual(es[0]["headers"]["retry"], "false")
        self.assertEqual(es[1]["event"]["attempt"], 2)
        self.assertEqual(es[1]["headers"]["retry"], "true")
        self.assertEqual(es[0]["event"]["id"], es[1]["event"]["id"])  # the same call
        self.wait_types("/all", mid, ["email.queued", "email.sent"])
        types = [e["type"] for e in self.events_for("/all", mid)]
        self.assertEqual(types, ["email.queued", "email.sent"])
        # The delivery log kept the failed attempts' answer.
        c = next(c for c in self.calls(self.all_id) if c["id"] == es[0]["event"]["id"])
        self.assertEqual(c["status"], "DELIVERED")
        self.assertGreaterEqual(c["attempt"], 2)

    def test_e_down_failed_then_auto_disabled(self):
        dead = f"http://127.0.0.1:{sphelp.free_port()}/down"
        r = self.api.post("/api/v1/webhooks", {"url": dead, "eventTypes": ["webhook.test"]})
        self.assertEqual(r.status, 200, r)
        wid = r.body["id"]
        for _ in range(3):
            self.assertEqual(self.api.post(f"/api/v1/webhooks/{wid}/test", {}).status, 200)

        def failed():
            cs = self.calls(wid)
            return cs if [c["status"] for c in cs] == ["FAILED"] * 3 else None
        cs = sphelp.wait_until(failed, 60, "three FAILED calls")
        for c in cs:
            self.assertEqual(c["attempt"], 6)
            self.assertIsNone(c["responseStatus"])
            self.assertTrue(c["lastError"])
        w = self.api.get(f"/api/v1/webhooks/{wid}").body
        self.assertEqual((w["status"], w["consecutiveFailures"]), ("AUTO_DISABLED", 3))
        self.assertIsNotNone(w["lastFailureAt"])
        # Calls of a disabled webhook are discarded.
        self.assertEqual(self.api.post(f"/api/v1/webhooks/{wid}/test", {}).status, 200)
        sphelp.wait_until(lambda: self.calls(wid)[0]["status"] == "DISCARDED", 20, "DISCARDED")
        text = self.srv.cli("webhooks", "calls", str(wid)).stdout
        self.assertIn("FAILED", text)
        self.assertIn("DISCARDED", text)

    def test_f_restart_durability(self):
        """Pending calls survive kill -9 (own server: slower retries, so the
        calls are still pending when it is killed)."""
        srv = apihelp.ApiServer(api_config={"rate_limit": 100000})
        with open(srv.conf, "a") as f:
            f.write("webhooks: { retry_base: 3s, retry_max: 3s }\n")
        rcv = Receiver(srv.tmp)
        srv.start()
        try:
            team = srv.team("durable")
            srv.domain(team, "durable.test")
            _, key = srv.key(team)
            api = apihelp.Client(srv.http_port, key)
            r = api.post("/api/v1/webhooks", {"url": rcv.url("/d")})
            self.assertEqual(r.status, 200, r)
            wid, secret = r.body["id"], r.body["secret"]
            r = api.post("/api/v1/emails", {"from": "a@durable.test", "to": ["b@example.com"],
                                            "subject": "durable", "text": "x"})
            self.assertEqual(r.status, 200, r)
            mid = r.body["emailId"]
            srv.wait_status(mid, "SENT")

            def tried():
                cs = api.get(f"/api/v1/webhooks/{wid}/calls").body["data"]
                # Newest first: the queued call is the head, the sent one waits behind it.
                return cs if len(cs) == 2 and cs[1]["attempt"] >= 1 else None
            cs = sphelp.wait_until(tried, 20, "a failed attempt of the first call")
            self.assertEqual(cs[0]["attempt"], 0, cs)
            self.assertEqual({c["status"] for c in cs}, {"PENDING"}, cs)
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait()
            srv.proc.stdout.close()
            srv.proc.stderr.close()
            rcv.start()
            rcv.config(secrets={"/d": secret})
            srv.start()

            def both():
                es = [e["event"] for e in rcv.entries("/d") if e["verified"]]
                return es if len(es) == 2 else None
            es = sphelp.wait_until(both, 30, "both calls after the restart")
            self.assertEqual([e["type"] for e in es], ["email.queued", "email.sent"])
            self.assertEqual([e["data"]["id"] for e in es], [mid, mid])
            self.assertGreaterEqual(es[0]["attempt"], 2)
        finally:
            rcv.stop()
            try:
                srv.stop()
            except Exception:
                pass

class FailedEventTest(unittest.TestCase):
    """A message that exhausts its retries reaches FAILED: the webhook gets
    email.failed with the reason (the only egress declines every message,
    and the maximum age is 1 s)."""

    def test_failed_is_emitted(self):
        need_sdk()
        srv = apihelp.ApiServer(api_config={"rate_limit": 100000})
        with open(srv.conf) as f:
            conf = f.read()
        conf = conf.replace("max_age: 1h", "max_age: 1s").replace(
            "  - name: egress_outbox\n", "  - name: egress_outbox\n    config: { enabled: false }\n")
        with open(srv.conf, "w") as f:
            f.write(conf + WEBHOOKS_CONF)
        rcv = Receiver(srv.tmp).start()
        srv.start()
        try:
            team = srv.team("fails")
            srv.domain(team, "fails.test")
            _, key = srv.key(team)
            out = srv.cli("webhooks", "add", "--team", "fails", "--url", rcv.url("/f"),
                          "--events", "email.failed").stdout.splitlines()
            rcv.config(secrets={"/f": out[-1]})
            r = apihelp.Client(srv.http_port, key).post(
                "/api/v1/emails", {"from": "a@fails.test", "to": "b@example.com",
                                   "subject": "will fail", "text": "x"})
            self.assertEqual(r.status, 200, r)
            mid = r.body["emailId"]
            got = sphelp.wait_until(lambda: [e for e in rcv.accepted("/f")
                                             if e["data"].get("id") == mid], 30,
                                    "email.failed")
            self.assertEqual([e["type"] for e in got], ["email.failed"])
            self.assertEqual(got[0]["data"]["status"], "FAILED")
            self.assertIn("no egress plugin accepted the message", got[0]["data"]["error"])
        finally:
            srv.stop()
            rcv.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
