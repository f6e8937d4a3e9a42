# SPDX-License-Identifier: Apache-2.0
"""Helpers for the feedback tests (suppressions, analytics): a sendpipe
server with the HTTP ingress, api_usesend, feedback_sns, the suppression
plugin and (optionally) the SMTP ingress, and signed SNS notifications of
SES events for messages it sent, made with test_sns's own PKI (root CA ->
intermediate -> an SNS-like signer)."""
import copy
import json
import os
import shutil
import sys
import tempfile
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import smtphelp  # noqa: E402
import sphelp  # noqa: E402
import test_sns  # noqa: E402

SES_VEC = test_sns.SES_VEC
CB = test_sns.CB


def _vector(name):
    with open(os.path.join(SES_VEC, "event-publishing", name)) as f:
        return json.load(f)


class FeedServer(apihelp.ApiServer):
    """ApiServer plus feedback_sns (trusting a test PKI made here), the
    suppression plugin and, with smtp=True, ingress_smtp on free ports."""

    def __init__(self, smtp=False, **kw):
        self.tmpdir = tempfile.mkdtemp(prefix="sp-feed-")
        self.pki = test_sns.Pki(self.tmpdir)
        certs = os.path.join(self.tmpdir, "certs")
        os.mkdir(certs)
        shutil.copy(self.pki.leaf, os.path.join(certs, test_sns.url_hash(test_sns.OUR_CERT_URL)
                                                + ".pem"))
        shutil.copy(self.pki.inter, os.path.join(certs, "intermediate.pem"))
        os.mkdir(os.path.join(self.tmpdir, "srv"))
        super().__init__(api_config={"rate_limit": 100000},
                         tmp=os.path.join(self.tmpdir, "srv"), **kw)
        fsns = (f'topic_arns: "{test_sns.OUR_TOPIC}", certificates: "{certs}", '
                f'trust_ca_file: "{self.pki.root}", fetch_timeout: 3s')
        plugins = (f"  - name: feedback_sns\n    config: {{ {fsns} }}\n"
                   "  - name: api_usesend\n")
        after = "  - name: suppression\n"
        self.smtp_port = None
        if smtp:
            self.smtp_port = sphelp.free_port()
            self.smtps_port = sphelp.free_port()
            after += ("  - name: ingress_smtp\n    config: { "
                      f'listen: "127.0.0.1:{self.smtp_port}", '
                      f'tls_listen: "127.0.0.1:{self.smtps_port}", hostname: mx.sendpipe.test }}\n')
        with open(self.conf) as f:
            conf = f.read()
        conf = conf.replace("  - name: api_usesend\n", plugins, 1)
        conf = conf.replace("  - name: egress_outbox\n", after + "  - name: egress_outbox\n", 1)
        with open(self.conf, "w") as f:
            f.write(conf)

    def start(self):
        super().start()
        if self.smtp_port is not None:
            sphelp.wait_until(lambda: smtphelp._connectable(self.smtp_port), 20,
                              "the SMTP port")
        return self

    def close(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                rc = self.stop()
                assert rc == 0, "sendpipe exited with %d" % rc
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def tenant(self, name, *domains, **key):
        """A team with verified domains and a key (keyword arguments of
        ApiServer.key): (team id, [domain ids], apihelp.Client)."""
        team = self.team(name)
        ids = [self.domain(team, d) for d in domains]
        _, k = self.key(team, **key)
        return team, ids, apihelp.Client(self.http_port, k)

    # ---- SES events through POST /api/ses_callback ----------------------

    def notify(self, event):
        """Sign and post one SES event; the answer must be 200 (then the
        status change is durable)."""
        m = {"Type": "Notification", "MessageId": str(uuid.uuid4()),
             "TopicArn": test_sns.OUR_TOPIC, "Message": json.dumps(event),
             "Timestamp": "2026-11-25T05:00:00.000Z", "SignatureVersion": "2",
             "SigningCertURL": test_sns.OUR_CERT_URL,
             "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"}
        self.pki.sign(m)
        r = apihelp.Client(self.http_port).request(
            "POST", CB, raw=json.dumps(m), headers={"Content-Type": "text/plain; charset=UTF-8"})
        assert r.status == 200 and r.body == {"data": "Success"}, r
        return r

    def event(self, name, mid, **sub):
        """The SES vector `name` (e.g. "bounce.json") for message mid (sent
        through the outbox, so its SES id is outbox-<mid>), with keys of its
        sub-object (bounce, complaint, ...) replaced by `sub`."""
        ev = copy.deepcopy(_vector(name))
        ev["mail"]["messageId"] = f"outbox-{mid}"
        ev["mail"]["headers"] = [h for h in ev["mail"].get("headers", [])
                                 if h["name"] != "X-Usesend-Email-ID"]
        key = {"bounce.json": "bounce", "complaint.json": "complaint",
               "delivery.json": "delivery", "open.json": "open",
               "click.json": "click"}.get(name)
        if key is not None:
            ev[key].update(sub)
        return ev

    def bounce(self, mid, addrs, kind="Permanent"):
        self.notify(self.event("bounce.json", mid, bounceType=kind,
                               bouncedRecipients=[{"emailAddress": a, "action": "failed",
                                                   "status": "5.1.1"} for a in addrs]))

    def complaint(self, mid, addrs):
        self.notify(self.event("complaint.json", mid,
                               complainedRecipients=[{"emailAddress": a} for a in addrs]))



class FeedTestCase(unittest.TestCase):
    """One FeedServer per test class: SERVER holds its keyword arguments;
    the subclass's prepare() (a classmethod) makes tenants and traffic.
    The server is closed (its exit status checked) after the class, or at
    once if prepare fails."""

    SERVER = {}

    @classmethod
    def prepare(cls):
        pass

    @classmethod
    def setUpClass(cls):
        cls.srv = FeedServer(**cls.SERVER)
        try:
            cls.srv.start()
            cls.prepare()
        except BaseException:
            cls.srv.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()
