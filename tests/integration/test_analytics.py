# SPDX-License-Identifier: Apache-2.0
"""The analytics API on the real binary: messages sent through the outbox
(SENT) of two domains of a team, then signed SNS notifications of SES
Delivery, Open (twice), Click (twice), Bounce (Permanent and Transient) and
Complaint events; GET /api/v1/analytics/email-time-series (7 and 30 days,
shape, zero-filled "Mon DD" labels, totals) and /reputation-metrics
(lifetime counters and rates) checked number by number, for the team, for
one domain, and for a domain-restricted key (whose domain wins over
domainId). A suppressed send counts nothing."""
import datetime
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import snsfeed  # noqa: E402

TS = "/api/v1/analytics/email-time-series"
REP = "/api/v1/analytics/reputation-metrics"
KEYS = ["sent", "delivered", "opened", "clicked", "bounced", "complained"]


def label(d):
    return d.strftime("%b %d")


def utc_today():
    return datetime.datetime.now(datetime.timezone.utc).date()


class AnalyticsTest(snsfeed.FeedTestCase):
    SERVER = {"sync": False}

    @classmethod
    def prepare(cls):
        cls.team, (cls.d1, cls.d2), cls.api = cls.srv.tenant("acme", "acme.test",
                                                              "mail.acme.test")
        _, skey = cls.srv.key(cls.team, permission="sending")
        _, dkey = cls.srv.key(cls.team, domain="mail.acme.test")
        cls.sending = apihelp.Client(cls.srv.http_port, skey)
        cls.restricted = apihelp.Client(cls.srv.http_port, dkey)
        _, _, cls.other = cls.srv.tenant("other", "other.test")
        cls.day0 = utc_today()
        cls.drive()
        cls.day1 = utc_today()

    @classmethod
    def send(cls, frm, to):
        r = cls.api.post("/api/v1/emails", {"from": frm, "to": to, "subject": "s", "text": "t"})
        assert r.status == 200, r
        return r.body["emailId"]

    @classmethod
    def drive(cls):
        srv = cls.srv
        m1 = cls.send("a@acme.test", "one@example.com")
        m2 = cls.send("a@acme.test", "two@example.com")
        m3 = cls.send("a@acme.test", "three@example.com")
        m4 = cls.send("a@mail.acme.test", "four@example.com")
        for m in (m1, m2, m3, m4):
            srv.wait_status(m, "SENT")
        ev = srv.event
        srv.notify(ev("delivery.json", m1))
        srv.notify(ev("open.json", m1))
        srv.notify(ev("open.json", m1))  # a repeat open counts once
        srv.notify(ev("click.json", m1))
        srv.notify(ev("click.json", m1))
        srv.bounce(m2, ["two@example.com"])  # Permanent
        srv.notify(ev("delivery.json", m3))
        srv.complaint(m3, ["three@example.com"])
        srv.notify(ev("delivery.json", m4))
        srv.bounce(m4, ["four@example.com"], kind="Transient")
        # Suppressed by m2's bounce now: recorded, not sent, not counted.
        mid = cls.send("a@acme.test", "two@example.com")
        assert srv.status_of(mid) == "SUPPRESSED"
        cls.mids = (m1, m2, m3, m4)

    # ---- helpers ---------------------------------------------------------

    def series(self, api=None, **q):
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        r = (api or self.api).get(TS + ("?" + qs if qs else ""))
        self.assertEqual(r.status, 200, r)
        return r.body

    def rep(self, api=None, **q):
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        r = (api or self.api).get(REP + ("?" + qs if qs else ""))
        self.assertEqual(r.status, 200, r)
        return r.body

    def check_series(self, body, days, totals):
        res = body["result"]
        self.assertEqual(len(res), days + 1)
        self.assertEqual(sorted(body), ["result", "totalCounts"])
        today = utc_today()
        # Oldest first, consecutive days, today last.
        self.assertEqual([r["date"] for r in res],
                         [label(today - datetime.timedelta(days=days - i))
                          for i in range(days + 1)])
        for r in res:
            self.assertEqual(sorted(r), sorted(["date"] + KEYS))
        self.assertEqual(body["totalCounts"], dict(zip(KEYS, totals)))
        for k in KEYS:
            self.assertEqual(sum(r[k] for r in res), body["totalCounts"][k])
        # Everything happened during this test: only its day(s) have counts.
        busy = {label(self.day0), label(self.day1)}
        for r in res:
            if r["date"] not in busy:
                self.assertEqual([r[k] for k in KEYS], [0] * 6, r)

    # ---- tests -----------------------------------------------------------

    def test_time_series_team(self):
        # sent delivered opened clicked bounced complained
        all_totals = [4, 3, 1, 1, 2, 1]
        self.check_series(self.series(days=7), 7, all_totals)
        self.check_series(self.series(), 30, all_totals)
        self.check_series(self.series(days=30), 30, all_totals)
        if self.day0 == self.day1:
            last = self.series(days=7)["result"][-1]
            self.assertEqual([last[k] for k in KEYS], all_totals)
        # SENDING keys may read analytics.
        self.check_series(self.series(api=self.sending, days=7), 7, all_totals)

    def test_time_series_domain(self):
        self.check_series(self.series(days=7, domainId=self.d1), 7, [3, 2, 1, 1, 1, 1])
        self.check_series(self.series(days=7, domainId=self.d2), 7, [1, 1, 0, 0, 1, 0])
        self.check_series(self.series(days=7, domainId=99999), 7, [0] * 6)
        # The key's domain wins over the query.
        for q in ({}, {"domainId": self.d1}):
            self.check_series(self.series(api=self.restricted, days=7, **q), 7,
                              [1, 1, 0, 0, 1, 0])
        # Another team sees its own (none).
        self.check_series(self.series(api=self.other, days=7), 7, [0] * 6)
        self.check_series(self.series(api=self.other, days=7, domainId=self.d1), 7, [0] * 6)

    def test_reputation(self):
        third = 1 / 3 * 100
        b = self.rep()
        self.assertEqual(sorted(b), sorted(["delivered", "hardBounced", "complained",
                                            "bounceRate", "complaintRate"]))
        self.assertEqual((b["delivered"], b["hardBounced"], b["complained"]), (3, 1, 1))
        self.assertAlmostEqual(b["bounceRate"], third, places=9)
        self.assertAlmostEqual(b["complaintRate"], third, places=9)
        self.assertEqual(self.rep(domainId=self.d1),
                         {"delivered": 2, "hardBounced": 1, "complained": 1,
                          "bounceRate": 50, "complaintRate": 50})
        zero = {"delivered": 1, "hardBounced": 0, "complained": 0, "bounceRate": 0,
                "complaintRate": 0}
        self.assertEqual(self.rep(domainId=self.d2), zero)
        self.assertEqual(self.rep(api=self.restricted, domainId=self.d1), zero)
        self.assertEqual(self.rep(api=self.other),
                         {"delivered": 0, "hardBounced": 0, "complained": 0, "bounceRate": 0,
                          "complaintRate": 0})

    def test_bad_queries(self):
        for path in (TS + "?days=14", TS + "?days=7x", TS + "?domainId=abc",
                     TS + "?domainId=0", REP + "?domainId=-1", REP + "?domainId=x"):
            with self.subTest(path=path):
                r = self.api.get(path)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.error["code"], "BAD_REQUEST")
        self.assertEqual(self.api.get(TS, key="").status, 401)
        self.assertEqual(self.api.get(REP, key="us_aaaaaaaaaa_" + "0" * 32).status, 403)

    def test_documented(self):
        doc = self.api.get("/api/v1/doc").body
        for path in (TS, REP):
            op = doc["paths"][path]["get"]
            self.assertIn("200", op["responses"])
            self.assertIn("parameters", op)
        for name in ("EmailTimeSeries", "ReputationMetrics", "Suppression", "SuppressionList"):
            self.assertIn(name, doc["components"]["schemas"])


if __name__ == "__main__":
    unittest.main()
