# SPDX-License-Identifier: Apache-2.0
"""The suppression list on the real binary: entries added with `sendpipe
suppressions` and POST /api/v1/suppressions (case and white space
normalised), listed with paging and search, removed; a send whose To
recipients are all suppressed answers 200 and is recorded SUPPRESSED with
the upstream error text and never reaches the outbox; suppressed Cc, Bcc
(and some-of-several To) recipients are removed from the stored message; a
"Name <addr>" recipient matches its bare address; another team's list is
independent; SENDING keys get 403; the SMTP ingress goes through the same
check. The feed: signed SNS notifications of a Permanent bounce and a
complaint add their recipients with the email id as source, a Transient
bounce adds nothing."""
import json
import os
import sys
import unittest
import urllib.parse
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(__file__))
import smtphelp  # noqa: E402
import snsfeed  # noqa: E402

SUPPRESSED_TEXT = "All TO recipients are suppressed. No emails to send."
S = "/api/v1/suppressions"


class SuppressionsTest(snsfeed.FeedTestCase):
    SERVER = {"smtp": True, "sync": False}

    @classmethod
    def prepare(cls):
        cls.team, _, cls.api = cls.srv.tenant("acme", "acme.test")
        cls.key = cls.api.key
        _, cls.sending_key = cls.srv.key(cls.team, permission="sending")
        _, _, cls.api2 = cls.srv.tenant("other", "other.test")

    # ---- helpers ---------------------------------------------------------

    def send(self, to, api=None, frm="a@acme.test", **extra):
        body = {"from": frm, "to": to, "subject": "s", "text": "hi"}
        body.update(extra)
        r = (api or self.api).post("/api/v1/emails", body)
        self.assertEqual(r.status, 200, r)
        return r.body["emailId"]

    def record(self, mid):
        m = self.srv.message(mid)
        self.assertIsNotNone(m, mid)
        return m["record"]

    def entries(self, api=None, **q):
        qs = "?" + urllib.parse.urlencode(q) if q else ""
        r = (api or self.api).get(S + qs)
        self.assertEqual(r.status, 200, r)
        return r.body

    def emails(self, api=None, **q):
        return [e["email"] for e in self.entries(api, **q)["data"]]

    def cli(self, *args, check=True):
        return self.srv.cli("suppressions", *args, check=check)

    def in_outbox(self, mid):
        return self.srv.cli("outbox", "show", mid, check=False).returncode == 0

    def delivered_after(self, mid):
        """Send a normal message after mid and wait for it to be SENT: the
        scheduler has had mid's turn by then."""
        later = self.send("later@example.com")
        self.srv.wait_status(later, "SENT")
        self.assertTrue(self.in_outbox(later))

    # ---- tests -----------------------------------------------------------

    def test_cli_and_api_entries(self):
        out = self.cli("add", "--team", "acme", "  Cli-One@Example.COM ").stdout
        self.assertIn("suppressed cli-one@example.com MANUAL", out)
        r = self.cli("add", "--team", "acme", "--reason", "COMPLAINT", "cli-two@example.com",
                     "cli-three@example.com")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.cli("add", "--team", "acme", "--reason", "BOGUS", "x@y.z",
                                  check=False).returncode, 2)
        self.assertEqual(self.cli("add", "--team", "nope", "x@y.z", check=False).returncode, 1)
        self.assertEqual(self.cli("add", "x@y.z", check=False).returncode, 2)
        got = {e["email"]: e for e in self.entries(search="cli-")["data"]}
        self.assertEqual(sorted(got), ["cli-one@example.com", "cli-three@example.com",
                                       "cli-two@example.com"])
        self.assertEqual(got["cli-one@example.com"]["reason"], "MANUAL")
        self.assertIsNone(got["cli-one@example.com"]["source"])
        self.assertEqual(got["cli-two@example.com"]["reason"], "COMPLAINT")
        self.assertRegex(got["cli-two@example.com"]["createdAt"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

        r = self.api.post(S, {"email": " Api-One@EXAMPLE.com", "reason": "HARD_BOUNCE"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["email"], "api-one@example.com")
        self.assertEqual(r.body["reason"], "HARD_BOUNCE")
        r = self.api.post(S, {"email": "api-two@example.com"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["reason"], "MANUAL")
        listed = json.loads(self.cli("list", "--team", str(self.team), "--search", "API-",
                                     "--json").stdout)
        self.assertEqual([(e["email"], e["reason"]) for e in listed],
                         [("api-one@example.com", "HARD_BOUNCE"),
                          ("api-two@example.com", "MANUAL")])
        text = self.cli("list", "--team", "acme", "--search", "api-one").stdout.splitlines()
        self.assertEqual(text[0].split("\t"), ["EMAIL", "REASON", "SOURCE", "CREATED"])
        self.assertEqual(text[1].split("\t")[:3], ["api-one@example.com", "HARD_BOUNCE", "-"])
        # Replacing keeps one entry.
        r = self.api.post(S, {"email": "API-TWO@example.com", "reason": "COMPLAINT"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([e["reason"] for e in self.entries(search="api-two")["data"]],
                         ["COMPLAINT"])

        for bad in ({}, {"email": ""}, {"email": "   "}, {"email": "no-at-sign"},
                    {"email": "Name <a@b.c>"}, {"email": "a@b.c", "emails": ["d@e.f"]},
                    {"email": 5}, {"emails": []}, {"emails": ["ok@x.y", "bad"]},
                    {"email": "a@b.c", "reason": "SOFT"}, {"email": "x" * 320 + "@b.c"}):
            with self.subTest(body=bad):
                r = self.api.post(S, bad)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.error["code"], "BAD_REQUEST")
        r = self.api.request("POST", S, raw="[1,2]")
        self.assertEqual(r.status, 400, r)

    def test_bulk_paging_search(self):
        addrs = [f"page{i}@paging.test" for i in range(7)]
        r = self.api.post(S, {"emails": [a.upper() for a in reversed(addrs)]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(sorted(e["email"] for e in r.body["data"]), addrs)
        pages = []
        for page in (1, 2, 3):
            b = self.entries(search="@paging.test", limit=3, page=page)
            self.assertEqual(b["count"], 7)
            pages.append([e["email"] for e in b["data"]])
        self.assertEqual(pages, [addrs[0:3], addrs[3:6], addrs[6:7]])
        b = self.entries(search="@PAGING.test", limit=3, page=9)
        self.assertEqual((b["data"], b["count"]), ([], 7))
        self.assertEqual(self.emails(search="page4"), ["page4@paging.test"])
        self.assertEqual(self.entries(search="nothing-like-this")["count"], 0)
        for q in ("limit=0", "limit=101", "page=0", "page=x"):
            r = self.api.get(S + "?" + q)
            self.assertEqual(r.status, 400, r)

    def test_send_to_suppressed_to(self):
        self.api.post(S, {"email": "gone@example.com"})
        mid = self.send(" GONE@Example.com ")
        self.assertEqual(self.record(mid)["status"], 13)  # SUPPRESSED
        e = self.api.get(f"/api/v1/emails/{mid}").body
        self.assertEqual(e["latestStatus"], "SUPPRESSED")
        self.assertEqual([(x["status"], x["data"]) for x in e["emailEvents"]],
                         [("SUPPRESSED", {"error": SUPPRESSED_TEXT})])
        # A display name around a suppressed address (sendpipe matches the
        # bare address too), and a batch with one suppressed element.
        mid2 = self.send(["Gone Person <gone@example.com>"])
        r = self.api.post("/api/v1/emails/batch", [
            {"from": "a@acme.test", "to": "gone@example.com", "subject": "s", "text": "t"},
            {"from": "a@acme.test", "to": "fine@example.com", "subject": "s", "text": "t"}])
        self.assertEqual(r.status, 200, r)
        b1, b2 = [d["emailId"] for d in r.body["data"]]
        self.assertEqual(self.srv.status_of(mid2), "SUPPRESSED")
        self.assertEqual(self.srv.status_of(b1), "SUPPRESSED")
        self.srv.wait_status(b2, "SENT")
        self.delivered_after(mid)
        for m in (mid, mid2, b1):
            self.assertFalse(self.in_outbox(m), m)
            self.assertEqual(self.srv.status_of(m), "SUPPRESSED")

    def test_cc_bcc_and_some_to_removed(self):
        self.api.post(S, {"emails": ["cc-gone@example.com", "bcc-gone@example.com",
                                     "to-gone@example.com"]})
        mid = self.send(["to-gone@example.com", "to-ok@example.com"],
                        cc=["CC-gone@example.com", "cc-ok@example.com"],
                        bcc=" bcc-gone@example.com ")
        rec = self.record(mid)
        self.assertEqual(rec["to"], ["to-ok@example.com"])
        self.assertEqual(rec["cc"], ["cc-ok@example.com"])
        self.assertNotIn("bcc-gone@example.com", json.dumps(rec.get("bcc", [])))
        self.srv.wait_status(mid, "SENT")
        self.assertTrue(self.in_outbox(mid))
        sent = self.srv.cli("outbox", "show", mid).stdout
        self.assertNotIn("gone@example.com", sent)
        self.assertIn("cc-ok@example.com", sent)

    def test_other_team_independent_and_delete(self):
        self.api.post(S, {"email": "shared@example.com"})
        mid = self.send("shared@example.com", api=self.api2, frm="x@other.test")
        self.srv.wait_status(mid, "SENT")
        self.assertNotIn("shared@example.com", self.emails(api=self.api2))
        r = self.api2.request("DELETE", S + "/shared%40example.com")
        self.assertEqual(r.status, 404, r)
        self.assertIn("shared@example.com", self.emails(search="shared"))
        # Removing it lets mail through again.
        self.assertEqual(self.srv.status_of(self.send("shared@example.com")), "SUPPRESSED")
        r = self.api.request("DELETE", S + "/%20SHARED%40Example.com")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, {"email": "shared@example.com", "deleted": True})
        self.assertEqual(self.api.request("DELETE", S + "/shared%40example.com").status, 404)
        mid = self.send("shared@example.com")
        self.srv.wait_status(mid, "SENT")
        # The CLI removes too; a missing one is an error.
        self.cli("add", "--team", "acme", "cli-rm@example.com")
        self.assertIn("removed cli-rm@example.com",
                      self.cli("rm", "--team", "acme", "CLI-RM@example.com").stdout)
        r = self.cli("rm", "--team", "acme", "cli-rm@example.com", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not on the list", r.stderr)

    def test_sending_key_forbidden(self):
        k = self.sending_key
        for method, path, body in (("GET", S, None), ("POST", S, {"email": "a@b.c"}),
                                   ("DELETE", S + "/a%40b.c", None)):
            r = self.api.request(method, path, body, key=k)
            self.assertEqual(r.status, 403, r)
            self.assertEqual(r.error["code"], "FORBIDDEN")
        self.assertEqual(self.api.get(S, key="us_aaaaaaaaaa_" + "0" * 32).status, 403)
        self.assertEqual(self.api.get(S, key="").status, 401)

    def test_feed_from_bounces_and_complaints(self):
        hard = self.send("hard@feed.test")
        soft = self.send("soft@feed.test")
        comp = self.send("comp@feed.test")
        for m in (hard, soft, comp):
            self.srv.wait_status(m, "SENT")
        self.srv.bounce(hard, ["Hard@Feed.test", "also-hard@feed.test"])
        self.srv.bounce(soft, ["soft@feed.test"], kind="Transient")
        self.srv.complaint(comp, ["comp@feed.test"])
        for m, st in ((hard, "BOUNCED"), (soft, "BOUNCED"), (comp, "COMPLAINED")):
            self.assertEqual(self.srv.status_of(m), st)
        got = {e["email"]: (e["reason"], e["source"])
               for e in self.entries(search="@feed.test")["data"]}
        self.assertEqual(got, {"hard@feed.test": ("HARD_BOUNCE", hard),
                               "also-hard@feed.test": ("HARD_BOUNCE", hard),
                               "comp@feed.test": ("COMPLAINT", comp)})
        # The other team's list saw nothing.
        self.assertEqual(self.entries(api=self.api2, search="@feed.test")["count"], 0)
        # Now suppressed at send.
        self.assertEqual(self.srv.status_of(self.send("hard@feed.test")), "SUPPRESSED")
        mid = self.send("soft@feed.test")
        self.srv.wait_status(mid, "SENT")

    def test_smtp_same_check(self):
        self.api.post(S, {"emails": ["smtp-gone@example.com", "smtp-cc@example.com"]})

        def submit(to, cc=None, rcpts=None):
            m = EmailMessage()
            m["From"] = "a@acme.test"
            if to:
                m["To"] = to
            if cc:
                m["Cc"] = cc
            m["Subject"] = "smtp"
            m.set_content("body\n")
            with smtphelp.smtp(self.srv.smtp_port) as s:
                s.starttls(context=smtphelp.client_ctx())
                s.login("usesend", self.key)
                s.send_message(m, to_addrs=rcpts)
                return s.last_id()

        mid = submit("Gone <smtp-gone@example.com>")
        rec = self.record(mid)
        self.assertEqual(self.srv.status_of(mid), "SUPPRESSED")
        self.assertEqual(rec["to"], ["Gone <smtp-gone@example.com>"])
        mid = submit("smtp-ok@example.com", cc="CC <smtp-cc@example.com>",
                     rcpts=["smtp-ok@example.com", "smtp-cc@example.com",
                            "smtp-gone@example.com"])
        rec = self.record(mid)
        self.assertEqual(rec["to"], ["smtp-ok@example.com"])
        self.assertEqual(rec.get("cc", []), [])
        self.assertEqual(rec.get("bcc", []), [])
        self.srv.wait_status(mid, "SENT")
        # Envelope recipients only (Bcc): all suppressed leaves nobody.
        bcc_only = submit(None, rcpts=["smtp-gone@example.com"])
        self.assertEqual(self.srv.status_of(bcc_only), "SUPPRESSED")
        e = self.api.get(f"/api/v1/emails/{bcc_only}").body
        self.assertEqual(e["emailEvents"][0]["data"],
                         {"error": "All recipients are suppressed. No emails to send."})
        self.delivered_after(mid)
        self.assertFalse(self.in_outbox(bcc_only))


if __name__ == "__main__":
    unittest.main()
