# SPDX-License-Identifier: Apache-2.0
"""The useSend-compatible emails API on the real binary: the seed README's
curl request, every emails route, the official JavaScript SDKs (usesend-js
and the legacy unsend, through node --test in tests/sdk), authentication and
key scopes, idempotency, the rate limit, the OpenAPI document against the
routes the server registered, and bad input answered with its documented
status and error while nothing is stored."""
import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT
SDK_DIR = os.path.join(sphelp.SOURCE_DIR, "tests", "sdk")
ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
# Routes of test-only plugins; everything sendpipe ships must be documented.
TEST_ONLY_OWNERS = {"http_echo", "ingress_lines"}


def iso(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def in_hours(h):
    return iso(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=h))


class ApiEmailsTest(unittest.TestCase):
    """One server for the whole class; tests share its tenants."""

    @classmethod
    def setUpClass(cls):
        cls.srv = apihelp.ApiServer(
            api_config={"rate_limit": 100000, "max_attachment_size": "16K",
                        "max_attachments_total": "24K"},
            http_config={"max_body_size": "256K"})
        srv = cls.srv
        srv.start()
        cls.team = srv.team("acme")
        cls.other_team = srv.team("other")
        cls.dom = srv.domain(cls.team, "acme.test")
        cls.dom2 = srv.domain(cls.team, "mail.acme.test")
        srv.domain(cls.team, "pending.test", verified=False)
        srv.domain(cls.other_team, "other.test")
        _, cls.key = srv.key(cls.team)
        _, cls.sending_key = srv.key(cls.team, permission="sending")
        _, cls.dom_key = srv.key(cls.team, domain="acme.test")
        _, cls.other_key = srv.key(cls.other_team)
        revoked_id, cls.revoked_key = srv.key(cls.team)
        srv.revoke(revoked_id)
        cls.api = apihelp.Client(srv.http_port, cls.key)

    @classmethod
    def tearDownClass(cls):
        if cls.srv.proc is not None and cls.srv.proc.poll() is None:
            rc = cls.srv.stop()
            assert rc == 0, "sendpipe exited with %d" % rc
        shutil.rmtree(cls.srv.tmp, ignore_errors=True)

    def payload(self, **kw):
        p = {"to": "rcpt@example.com", "from": "Acme <hello@acme.test>", "subject": "Hi",
             "html": "<p>Hello</p>"}
        p.update(kw)
        return p

    def send_ok(self, key=None, **kw):
        r = self.api.post("/api/v1/emails", self.payload(**kw), key=key)
        self.assertEqual(r.status, 200, r)
        self.assertIsInstance(r.body["emailId"], str)
        return r.body["emailId"]

    def assert_error(self, r, status, code, message=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        self.assertEqual(set(r.body.keys()), {"error"}, r)
        self.assertEqual(r.error["code"], code, r)
        self.assertIsInstance(r.error["message"], str)
        if message is not None:
            self.assertIn(message, r.error["message"], r)

    # ---- the seed README --------------------------------------------------

    def test_readme_curl(self):
        # Verbatim apart from host, key and the verified domain.
        out = subprocess.run(
            ["curl", "-sS", "-X", "POST", f"{self.srv.base}/api/v1/emails",
             "-H", f"Authorization: Bearer {self.key}",
             "-H", "Content-Type: application/json",
             "-d", '{"to":"hello@example.com","from":"hello@acme.test","subject":"Test",'
                   '"html":"<p>Hello</p>"}',
             "-w", "\n%{http_code}"],
            capture_output=True, text=True, timeout=30 * MULT, check=True).stdout
        body, code = out.rsplit("\n", 1)
        self.assertEqual(code, "200", out)
        mid = json.loads(body)["emailId"]
        self.srv.wait_status(mid, "SENT")
        self.assertEqual(self.srv.cli("outbox", "show", mid, check=False).returncode, 0)

    # ---- operational routes and the document ------------------------------

    def test_health_and_doc(self):
        r = self.api.get("/api/health", key="")
        self.assertEqual((r.status, r.body), (200, {"data": "Healthy"}))
        self.assertIsNone(r.header("X-RateLimit-Limit"))
        r = self.api.get("/api/v1/doc", key="")
        self.assertEqual(r.status, 200, r)
        doc = r.body
        self.assertTrue(doc["openapi"].startswith("3."))
        routes = doc["x-sendpipe-routes"]
        served = {(x["method"], x["path"]) for x in routes}
        for want in [("POST", "/api/v1/emails"), ("POST", "/api/v1/emails/batch"),
                     ("GET", "/api/v1/emails"), ("GET", "/api/v1/emails/{emailId}"),
                     ("PATCH", "/api/v1/emails/{emailId}"),
                     ("POST", "/api/v1/emails/{emailId}/cancel"), ("GET", "/api/health"),
                     ("GET", "/api/v1/doc"), ("POST", "/api/send"), ("POST", "/api/schedule"),
                     ("GET", "/healthz"), ("GET", "/metrics")]:
            self.assertIn(want, served)
        missing = [f"{x['method']} {x['path']} ({x['owner']})" for x in routes
                   if x["owner"] not in TEST_ONLY_OWNERS and
                   x["method"].lower() not in doc["paths"].get(x["path"], {})]
        self.assertEqual(missing, [], "routes served but not in /api/v1/doc")
        # Every schema reference resolves.
        text = json.dumps(doc)
        for ref in set(p.split('"')[0] for p in text.split('"$ref": "#/components/schemas/')[1:]):
            self.assertIn(ref, doc["components"]["schemas"])
        # Unknown paths and methods answer JSON too.
        self.assert_error(self.api.get("/api/v1/nope"), 404, "NOT_FOUND")
        self.assert_error(self.api.request("DELETE", "/api/v1/emails"), 405,
                          "METHOD_NOT_ALLOWED")

    # ---- send, read, list ------------------------------------------------

    def test_send_and_get_all_fields(self):
        sched = None
        mid = self.send_ok(to=["a@example.com", "B <b@example.com>"], cc="c@example.com",
                           bcc=["d@example.com"], replyTo="r@example.com", text="plain",
                           headers={"X-Campaign": "q3"},
                           attachments=[{"filename": "a.txt",
                                         "content": base64.b64encode(b"hello").decode()}])
        self.srv.wait_status(mid, "SENT")
        r = self.api.get(f"/api/v1/emails/{mid}")
        self.assertEqual(r.status, 200, r)
        e = r.body
        self.assertEqual(e["id"], mid)
        self.assertEqual(e["teamId"], self.team)
        self.assertEqual(e["domainId"], self.dom)
        self.assertEqual(e["to"], ["a@example.com", "B <b@example.com>"])
        self.assertEqual(e["cc"], ["c@example.com"])
        self.assertEqual(e["bcc"], ["d@example.com"])
        self.assertEqual(e["replyTo"], ["r@example.com"])
        self.assertEqual(e["from"], "Acme <hello@acme.test>")
        self.assertEqual(e["subject"], "Hi")
        self.assertEqual(e["html"], "<p>Hello</p>")
        self.assertEqual(e["text"], "plain")
        self.assertEqual(e["latestStatus"], "SENT")
        self.assertEqual(e["scheduledAt"], sched)
        self.assertRegex(e["createdAt"], ISO_RE)
        self.assertRegex(e["updatedAt"], ISO_RE)
        self.assertGreaterEqual(e["updatedAt"], e["createdAt"])
        ev = e["emailEvents"]
        self.assertGreaterEqual(len(ev), 1)
        self.assertEqual([x["createdAt"] for x in ev], sorted(x["createdAt"] for x in ev))
        self.assertEqual(ev[-1]["status"], "SENT")
        for x in ev:
            self.assertEqual(x["emailId"], mid)
            self.assertIsInstance(x["data"], dict)
        # The record carries the documented fields.
        rec = self.srv.message(mid)["record"]
        self.assertEqual(rec["team"], self.team)
        self.assertEqual(rec["domain_id"], self.dom)
        self.assertIsInstance(rec["api_key_id"], int)
        self.assertEqual(rec["to"], ["a@example.com", "B <b@example.com>"])
        self.assertIn("X-Campaign: q3", rec["headers"])
        self.assertEqual(rec["attachment_names"], ["a.txt"])
        self.assertEqual(len(rec["attachment_data"]), 1)
        # Rate-limit headers ride on every authenticated answer.
        self.assertEqual(r.header("X-RateLimit-Limit"), "100000")
        self.assertIsNotNone(r.header("X-RateLimit-Remaining"))
        self.assertIsNotNone(r.header("X-RateLimit-Reset"))

    def test_batch(self):
        before = self.srv.message_count()
        r = self.api.post("/api/v1/emails/batch",
                          [self.payload(subject=f"b{i}") for i in range(3)])
        self.assertEqual(r.status, 200, r)
        ids = [x["emailId"] for x in r.body["data"]]
        self.assertEqual(len(set(ids)), 3)
        for i, mid in enumerate(ids):
            g = self.api.get(f"/api/v1/emails/{mid}")
            self.assertEqual(g.body["subject"], f"b{i}")
        self.assertEqual(self.srv.message_count(), before + 3)

    def test_list(self):
        # A private team so the counts are exact.
        srv = self.srv
        team = srv.team("lister")
        srv.domain(team, "lister.test")
        d2 = srv.domain(team, "two.lister.test")
        _, key = srv.key(team)
        _, dkey = srv.key(team, domain="two.lister.test")
        c = apihelp.Client(srv.http_port, key)
        t0 = iso(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1))
        ids = []
        for i in range(5):
            r = c.post("/api/v1/emails", self.payload(**{"from": "x@lister.test",
                                                        "subject": f"s{i}"}))
            self.assertEqual(r.status, 200, r)
            ids.append(r.body["emailId"])
        r = c.post("/api/v1/emails", self.payload(**{"from": "x@two.lister.test"}))
        ids.append(r.body["emailId"])
        r = c.get("/api/v1/emails")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["count"], 6)
        self.assertEqual([x["id"] for x in r.body["data"]], ids[::-1])
        item = r.body["data"][0]
        for f in ("id", "to", "replyTo", "cc", "bcc", "from", "subject", "html", "text",
                  "createdAt", "updatedAt", "latestStatus", "scheduledAt", "domainId"):
            self.assertIn(f, item)
        self.assertEqual(item["domainId"], d2)
        r = c.get("/api/v1/emails?limit=2&page=2")
        self.assertEqual([x["id"] for x in r.body["data"]], ids[::-1][2:4])
        self.assertEqual(r.body["count"], 6)
        r = c.get("/api/v1/emails?limit=2&page=4")
        self.assertEqual((r.body["data"], r.body["count"]), ([], 6))
        r = c.get(f"/api/v1/emails?domainId={d2}")
        self.assertEqual([x["id"] for x in r.body["data"]], [ids[5]])
        # A restricted key sees its domain only, whatever it asks.
        r = c.get("/api/v1/emails?domainId=1", key=dkey)
        self.assertEqual([x["id"] for x in r.body["data"]], [ids[5]])
        # Both date bounds apply (DECISIONS #7).
        created = [c.get(f"/api/v1/emails/{i}").body["createdAt"] for i in ids]
        r = c.get(f"/api/v1/emails?startDate={created[1]}&endDate={created[3]}")
        self.assertEqual([x["id"] for x in r.body["data"]], ids[1:4][::-1])
        r = c.get(f"/api/v1/emails?startDate={t0}")
        self.assertEqual(r.body["count"], 6)
        before_all = iso(datetime.datetime.now(datetime.timezone.utc) -
                         datetime.timedelta(days=1))
        for end in (before_all, "2001-01-01T00:00:00Z"):
            r = c.get(f"/api/v1/emails?endDate={end}")
            self.assertEqual((r.status, r.body["count"]), (200, 0), end)
        r = c.get(f"/api/v1/emails?startDate={created[3]}&endDate={created[1]}")
        self.assertEqual((r.status, r.body["count"]), (200, 0))
        for q, field in (("limit=51", "limit"), ("limit=0", "limit"), ("page=0", "page"),
                         ("page=x", "page"), ("startDate=yesterday", "startDate"),
                         ("domainId=abc", "domainId")):
            r = c.get(f"/api/v1/emails?{q}")
            self.assert_error(r, 400, "BAD_REQUEST", field)

    def test_schedule_update_cancel(self):
        at = in_hours(2)
        mid = self.send_ok(scheduledAt=at)
        e = self.api.get(f"/api/v1/emails/{mid}").body
        self.assertEqual(e["latestStatus"], "SCHEDULED")
        self.assertEqual(e["scheduledAt"], at)
        later = in_hours(5)
        r = self.api.patch(f"/api/v1/emails/{mid}", {"scheduledAt": later})
        self.assertEqual((r.status, r.body), (200, {"emailId": mid}))
        self.assertEqual(self.api.get(f"/api/v1/emails/{mid}").body["scheduledAt"], later)
        self.assert_error(self.api.patch(f"/api/v1/emails/{mid}", {"scheduledAt": "soon"}), 400,
                          "BAD_REQUEST", "scheduledAt")
        self.assert_error(self.api.patch(f"/api/v1/emails/{mid}", {}), 400, "BAD_REQUEST",
                          "scheduledAt")
        r = self.api.post(f"/api/v1/emails/{mid}/cancel", {})
        self.assertEqual((r.status, r.body), (200, {"emailId": mid}))
        e = self.api.get(f"/api/v1/emails/{mid}").body
        self.assertEqual(e["latestStatus"], "CANCELLED")
        self.assertIn("CANCELLED", [x["status"] for x in e["emailEvents"]])
        self.assert_error(self.api.post(f"/api/v1/emails/{mid}/cancel", {}), 400, "BAD_REQUEST",
                          "Email already processed")
        self.assert_error(self.api.patch(f"/api/v1/emails/{mid}", {"scheduledAt": later}), 400,
                          "BAD_REQUEST", "Email already processed")
        # A sent email cannot be rescheduled either.
        sent = self.send_ok()
        self.srv.wait_status(sent, "SENT")
        self.assert_error(self.api.post(f"/api/v1/emails/{sent}/cancel", {}), 400,
                          "BAD_REQUEST", "Email already processed")
        # Unknown ids.
        for path in ("/api/v1/emails/0000000000000", "/api/v1/emails/zz"):
            self.assert_error(self.api.get(path), 404, "NOT_FOUND", "Email not found")
        self.assert_error(self.api.post("/api/v1/emails/0000000000000/cancel", {}), 404,
                          "NOT_FOUND")

    def test_rescheduled_into_the_past_is_sent(self):
        mid = self.send_ok(scheduledAt=in_hours(3))
        r = self.api.patch(f"/api/v1/emails/{mid}", {"scheduledAt": "2001-01-01T00:00:00Z"})
        self.assertEqual(r.status, 200, r)
        self.srv.wait_status(mid, "SENT")

    def test_legacy_routes(self):
        r = self.api.post("/api/send", self.payload())
        self.assertEqual(r.status, 200, r)
        self.srv.wait_status(r.body["emailId"], "SENT")
        before = self.srv.message_count()
        self.assert_error(self.api.post("/api/schedule", self.payload()), 400, "BAD_REQUEST",
                          "scheduledAt")
        self.assert_error(self.api.post("/api/send", self.payload(), key=""), 401,
                          "UNAUTHORIZED")
        self.assertEqual(self.srv.message_count(), before)
        r = self.api.post("/api/schedule", self.payload(scheduledAt=in_hours(1)))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.srv.status_of(r.body["emailId"]), "SCHEDULED")

    def test_in_reply_to(self):
        first = self.send_ok()
        second = self.send_ok(inReplyToId=first)
        self.assertEqual(self.srv.message(second)["record"]["in_reply_to_id"], first)
        other = self.api.post("/api/v1/emails",
                              self.payload(**{"from": "x@other.test"}), key=self.other_key)
        self.assertEqual(other.status, 200, other)
        before = self.srv.message_count()
        for bad in ("0000000000000", other.body["emailId"]):
            self.assert_error(self.api.post("/api/v1/emails", self.payload(inReplyToId=bad)),
                              400, "BAD_REQUEST", "inReplyToId")
        self.assertEqual(self.srv.message_count(), before)

    # ---- keys and scopes -------------------------------------------------

    def test_auth(self):
        before = self.srv.message_count()
        p = self.payload()
        self.assert_error(self.api.post("/api/v1/emails", p, key=""), 401, "UNAUTHORIZED",
                          "No Authorization header provided")
        self.assert_error(self.api.post("/api/v1/emails", p, headers={"Authorization": "Bearer"},
                                        key=""), 401, "UNAUTHORIZED")
        for bad in ("us_0000000000_00000000000000000000000000000000", "garbage", "us_x",
                    self.key[:-1] + ("0" if self.key[-1] != "0" else "1"), self.revoked_key):
            self.assert_error(self.api.post("/api/v1/emails", p, key=bad), 403, "FORBIDDEN",
                              "Invalid API token")
            self.assert_error(self.api.get("/api/v1/emails", key=bad), 403, "FORBIDDEN")
        self.assertEqual(self.srv.message_count(), before)
        # A SENDING key may send and read emails.
        mid = self.send_ok(key=self.sending_key)
        self.assertEqual(self.api.get(f"/api/v1/emails/{mid}", key=self.sending_key).status, 200)
        self.assertEqual(self.api.get("/api/v1/emails", key=self.sending_key).status, 200)

    def test_team_and_domain_scope(self):
        other = self.api.post("/api/v1/emails", self.payload(**{"from": "x@other.test"}),
                              key=self.other_key)
        self.assertEqual(other.status, 200, other)
        oid = other.body["emailId"]
        # Another team's email does not exist for this key.
        self.assert_error(self.api.get(f"/api/v1/emails/{oid}"), 404, "NOT_FOUND")
        self.assert_error(self.api.patch(f"/api/v1/emails/{oid}", {"scheduledAt": in_hours(1)}),
                          404, "NOT_FOUND")
        self.assert_error(self.api.post(f"/api/v1/emails/{oid}/cancel", {}), 404, "NOT_FOUND")
        self.assertNotIn(oid, [x["id"] for x in self.api.get("/api/v1/emails").body["data"]])
        # A domain-restricted key: its domain only, for sending and reading.
        before = self.srv.message_count()
        r = self.api.post("/api/v1/emails", self.payload(**{"from": "x@mail.acme.test"}),
                          key=self.dom_key)
        self.assert_error(r, 403, "FORBIDDEN",
                          "API key does not have access to domain: mail.acme.test")
        r = self.api.post("/api/v1/emails/batch",
                          [self.payload(), self.payload(**{"from": "x@mail.acme.test"})],
                          key=self.dom_key)
        self.assert_error(r, 403, "FORBIDDEN", "emails[1]")
        self.assertEqual(self.srv.message_count(), before)
        own = self.send_ok(key=self.dom_key)
        elsewhere = self.send_ok(**{"from": "x@mail.acme.test"})
        self.assertEqual(self.api.get(f"/api/v1/emails/{own}", key=self.dom_key).status, 200)
        self.assert_error(self.api.get(f"/api/v1/emails/{elsewhere}", key=self.dom_key), 404,
                          "NOT_FOUND")
        # From-domain rules.
        before = self.srv.message_count()
        for frm, msg in (("nobody", "From email is invalid"),
                         ("x@unknown.test", "Domain: unknown.test of from email is wrong"),
                         ("x@other.test", "Domain: other.test of from email is wrong"),
                         ("X <x@Pending.test>", "Domain: pending.test is not verified")):
            self.assert_error(self.api.post("/api/v1/emails", self.payload(**{"from": frm})),
                              400, "BAD_REQUEST", msg)
        # Templates: unknown ids and other teams' templates are refused by id.
        theirs = self.srv.cli("templates", "add", "--team", str(self.other_team), "--name",
                              "theirs", "--html", "<p>x</p>").stdout.strip()
        ours = self.srv.cli("templates", "add", "--team", str(self.team), "--name", "ours",
                            "--subject", "S", "--html", "<p>y</p>").stdout.strip()
        for tid in ("welcome", theirs):
            self.assert_error(self.api.post("/api/v1/emails", self.payload(templateId=tid)),
                              400, "BAD_REQUEST", f"Template not found: {tid}")
        self.assertEqual(self.srv.message_count(), before)
        # templateId alone is enough (DECISIONS #9).
        r = self.api.post("/api/v1/emails", {"to": "rcpt@example.com", "from": "hello@acme.test",
                                             "templateId": ours.upper()})
        self.assertEqual(r.status, 200, r)

    # ---- bad input: documented answer, nothing stored ---------------------

    def test_bad_input_nothing_stored(self):
        before = self.srv.message_count()
        big = "A" * (300 * 1024)
        cases = [
            ("malformed JSON", dict(raw='{"to":'), 400, "Malformed JSON in request body"),
            ("empty body", dict(raw=''), 400, "Malformed JSON"),
            ("array body", dict(body=[1]), 400, "Expected object"),
            ("wrong type", dict(body=self.payload(to=5)), 400, "to: Expected string"),
            ("missing to", dict(body={"from": "a@acme.test", "subject": "s", "text": "t"}), 400,
             "to: Required"),
            ("missing content", dict(body={"to": "a@b.c", "from": "a@acme.test",
                                           "subject": "s"}), 400,
             "Either text or html content must be provided."),
            ("missing subject", dict(body={"to": "a@b.c", "from": "a@acme.test",
                                           "text": "t"}), 400,
             "Either subject or templateId must be provided."),
            ("CRLF subject", dict(body=self.payload(subject="Hi\r\nBcc: evil@x.test")), 400,
             "subject: Must not contain CR or LF"),
            ("CRLF header", dict(body=self.payload(headers={"X-A": "v\r\nBcc: evil@x.test"})),
             400, "headers.X-A"),
            ("CRLF header name", dict(body=self.payload(headers={"X-A\nBcc": "v"})), 400,
             "Header name must not contain CR or LF"),
            ("bad base64", dict(body=self.payload(attachments=[
                {"filename": "report.pdf", "content": "not base64!"}])), 400,
             'Invalid base64 in attachment "report.pdf"'),
            ("too many attachments", dict(body=self.payload(attachments=[
                {"filename": "a", "content": "AA=="}] * 11)), 400, "at most 10"),
            ("attachment too big", dict(body=self.payload(attachments=[
                {"filename": "big.bin", "content": base64.b64encode(b"x" * 17000).decode()}])),
             400, 'Attachment "big.bin" is larger than'),
            ("bad scheduledAt", dict(body=self.payload(scheduledAt="2025-02-30T00:00:00Z")), 400,
             "scheduledAt: Invalid datetime"),
            ("form body", dict(raw="to=a", headers={"Content-Type":
                                                     "application/x-www-form-urlencoded"}), 400,
             "Content-Type"),
            ("oversized body", dict(raw='{"to":"' + big + '"}'), 413, None),
        ]
        for name, kw, status, msg in cases:
            with self.subTest(name):
                r = self.api.post("/api/v1/emails", **kw)
                self.assertEqual(r.status, status, f"{name}: {r}")
                self.assertIn("error", r.body, r)
                if msg is not None:
                    self.assert_error(r, status, "BAD_REQUEST", msg)
                    self.assertIsInstance(r.error.get("issues", []), list)
        # Schema errors list their issues with paths.
        r = self.api.post("/api/v1/emails", self.payload(to=5, cc={}))
        self.assertEqual([i["path"] for i in r.error["issues"]], [["to"], ["cc"]])
        # Batches: all or nothing, the bad element named.
        batch = [self.payload(subject=str(i)) for i in range(4)]
        batch[2]["to"] = []
        r = self.api.post("/api/v1/emails/batch", batch)
        self.assert_error(r, 400, "BAD_REQUEST", "emails[2].to")
        self.assertEqual(r.error["issues"][0]["path"], [2, "to"])
        batch[2] = self.payload(**{"from": "x@unknown.test"})
        self.assert_error(self.api.post("/api/v1/emails/batch", batch), 400, "BAD_REQUEST",
                          "emails[2]: Domain: unknown.test")
        self.assert_error(self.api.post("/api/v1/emails/batch",
                                        [self.payload()] * 101), 400, "BAD_REQUEST",
                          "Cannot send more than 100 emails")
        self.assert_error(self.api.post("/api/v1/emails/batch", []), 400, "BAD_REQUEST",
                          "No emails provided")
        self.assert_error(self.api.post("/api/v1/emails/batch", self.payload()), 400,
                          "BAD_REQUEST", "Expected array")
        self.assertEqual(self.srv.message_count(), before)

    # ---- idempotency -------------------------------------------------------

    def test_idempotency(self):
        srv = self.srv
        p = self.payload(subject="idem")
        h = {"Idempotency-Key": "order-1"}
        before = srv.message_count()
        r1 = self.api.post("/api/v1/emails", p, headers=h)
        self.assertEqual(r1.status, 200, r1)
        # Same key, same body (keys in another order): the first answer again.
        p2 = dict(reversed(list(p.items())))
        r2 = self.api.post("/api/v1/emails", p2, headers=h)
        self.assertEqual((r2.status, r2.body), (200, r1.body))
        self.assertEqual(srv.message_count(), before + 1)
        # Same key, other body: 409.
        self.assert_error(self.api.post("/api/v1/emails", self.payload(subject="other"),
                                        headers=h), 409, "NOT_UNIQUE",
                          "Idempotency-Key already used with a different payload")
        # Keys are per team: another team may use the same key.
        r = self.api.post("/api/v1/emails", self.payload(**{"from": "x@other.test"}), headers=h,
                          key=self.other_key)
        self.assertEqual(r.status, 200, r)
        self.assertNotEqual(r.body, r1.body)
        # Length rules.
        self.assert_error(self.api.post("/api/v1/emails", p,
                                        headers={"Idempotency-Key": "k" * 257}), 400,
                          "BAD_REQUEST", "Invalid Idempotency-Key length")
        # Batches too.
        hb = {"Idempotency-Key": "batch-1"}
        b1 = self.api.post("/api/v1/emails/batch", [p, p], headers=hb)
        b2 = self.api.post("/api/v1/emails/batch", [p, p], headers=hb)
        self.assertEqual((b2.status, b2.body), (200, b1.body))
        self.assertEqual(len(b1.body["data"]), 2)
        # While the first is in flight, a second with the same key is refused.
        # Pipelined on one connection, the second is dispatched before the
        # first's commit finished.
        before = srv.message_count()
        req = apihelp.raw_post("/api/v1/emails", self.key, json.dumps(self.payload(subject="f")),
                               "Idempotency-Key: inflight-1\r\n")
        (s1, j1), (s2, j2) = apihelp.pipelined(srv.http_port, [req, req])
        self.assertEqual(s1, 200, j1)
        self.assertEqual(s2, 409, j2)
        self.assertEqual(j2["error"]["code"], "NOT_UNIQUE")
        self.assertIn("in progress", j2["error"]["message"])
        r = self.api.post("/api/v1/emails", self.payload(subject="f"),
                          headers={"Idempotency-Key": "inflight-1"})
        self.assertEqual((r.status, r.body), (200, j1))
        self.assertEqual(srv.message_count(), before + 1)
        # A refused request records nothing: the key stays usable.
        for _ in range(2):
            bad = self.api.post("/api/v1/emails", self.payload(**{"from": "x@unknown.test"}),
                                headers={"Idempotency-Key": "retry-1"})
            self.assertEqual(bad.status, 400, bad)
        ok = self.api.post("/api/v1/emails", self.payload(), headers={"Idempotency-Key": "retry-1"})
        self.assertEqual(ok.status, 200, ok)

    # ---- the official SDKs -------------------------------------------------

    def test_sdk(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is needed for the SDK tests (scripts/deps.sh)")
        if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "usesend-js")):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", SDK_DIR],
                           check=True, timeout=300, stdin=subprocess.DEVNULL)
        env = dict(os.environ, SP_API_BASE=self.srv.base, SP_API_KEY=self.key,
                   SP_API_FROM="Acme <sdk@acme.test>", SP_API_OTHER_KEY=self.other_key,
                   SP_TEST_TIMEOUT_MULTIPLIER=str(MULT))
        files = sorted(os.path.join(SDK_DIR, f) for f in os.listdir(SDK_DIR)
                       if f.endswith(".test.mjs"))
        self.assertGreaterEqual(len(files), 2)
        r = subprocess.run([node, "--test"] + files, env=env, capture_output=True, text=True,
                           timeout=240 * MULT, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stdout[-6000:] + r.stderr[-3000:])
        self.assertRegex(r.stdout, r"# fail 0")
        passed = int(re.search(r"# pass (\d+)", r.stdout).group(1))
        self.assertGreaterEqual(passed, 8, r.stdout[-3000:])
        sys.stderr.write("node --test: %d SDK tests passed\n" % passed)


class RateLimitTest(unittest.TestCase):
    """settings.api_rate_limit from API_RATE_LIMIT (DECISIONS #12)."""

    def setUp(self):
        os.environ["API_RATE_LIMIT"] = "3"
        try:
            self.srv = apihelp.ApiServer().start()
        finally:
            del os.environ["API_RATE_LIMIT"]

    def tearDown(self):
        if self.srv.proc is not None and self.srv.proc.poll() is None:
            self.assertEqual(self.srv.stop(), 0)
        shutil.rmtree(self.srv.tmp, ignore_errors=True)

    def test_limit(self):
        srv = self.srv
        t1, t2 = srv.team("a"), srv.team("b")
        srv.domain(t1, "a.test")
        srv.domain(t2, "b.test")
        _, k1 = srv.key(t1)
        _, k1b = srv.key(t1)
        _, k2 = srv.key(t2)
        c = apihelp.Client(srv.http_port, k1)
        p = {"to": "x@example.com", "from": "a@a.test", "subject": "s", "text": "t"}
        start = time.time()
        for i in range(3):
            r = c.post("/api/v1/emails", p) if i == 0 else c.get("/api/v1/emails")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("X-RateLimit-Limit"), "3")
            self.assertEqual(r.header("X-RateLimit-Remaining"), str(2 - i))
            reset = int(r.header("X-RateLimit-Reset"))
            self.assertTrue(start < reset <= start + 62, reset)
        before = srv.message_count()
        # The limit is per team: another key of the same team shares it.
        r = c.post("/api/v1/emails", p, key=k1b)
        self.assertEqual(r.status, 429, r)
        self.assertEqual(r.error["code"], "RATE_LIMITED")
        self.assertIn("Rate limit exceeded", r.error["message"])
        retry = int(r.header("Retry-After"))
        self.assertTrue(1 <= retry <= 60, retry)
        self.assertEqual(r.header("X-RateLimit-Remaining"), "0")
        self.assertEqual(srv.message_count(), before)
        # Other teams and unauthenticated routes are not affected.
        r = c.post("/api/v1/emails", dict(p, **{"from": "b@b.test"}), key=k2)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(c.get("/api/health", key="").status, 200)
        # Authentication comes first: a bad key is 403, never 429.
        self.assertEqual(c.get("/api/v1/emails", key="us_bad").status, 403)


if __name__ == "__main__":
    unittest.main(verbosity=2)
