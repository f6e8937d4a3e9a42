# SPDX-License-Identifier: Apache-2.0
"""The SMTP relay egress (egress_smtp) on the real binary against real peers
on loopback:
 - a private Postfix instance with STARTTLS (a CA and server certificate
   made here with openssl, verified through ca_file), virtual Maildir
   delivery, and a texthash check_recipient_access map that rejects and
   defers chosen recipients; the same Postfix without ca_file (untrusted
   certificate: deferred, nothing delivered);
 - Postfix's smtp-sink for the connection pool (50 messages, fewer
   connections than messages, counters on /metrics);
 - a second sendpipe's own ingress_smtp for STARTTLS + AUTH (a good API key
   and a wrong one);
 - a scripted SMTP peer in this file for what real servers will not do on
   demand: proof of PIPELINING (the whole envelope before the first reply),
   a pooled connection that breaks on reuse, QUIT on idle."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import smtphelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"


def need(path):
    if shutil.which(path) is None and not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is required for this test (apt-get install postfix)")
    return path


def relay_plugins(cfg):
    """The YAML of the mime plugin and egress_smtp with cfg (dict of YAML
    flow values), written where sphelp.Server puts its egress entry."""
    items = ", ".join(f"{k}: {v}" for k, v in cfg.items())
    return f"mime\n  - name: egress_smtp\n    config: {{ {items} }}"


class RelayApiServer(apihelp.ApiServer):
    """sendpipe with the emails API, mime and egress_smtp."""

    def __init__(self, relay, **kw):
        super().__init__(egress=relay_plugins(relay), **kw)


class RelayLinesServer(sphelp.Server):
    """sendpipe with the line ingress, mime and egress_smtp, plus the HTTP
    ingress for /metrics."""

    def __init__(self, relay, **kw):
        super().__init__(egress=relay_plugins(relay), http=True, **kw)


def metrics(srv):
    c = apihelp.Client(srv.http_port)
    r = c.get("/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.raw.splitlines():
        m = re.match(r"^sendpipe_plugin_egress_smtp_(\w+)_total (\d+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def events(srv, mid):
    return srv.message(mid)["events"]


def record(srv, mid):
    return srv.message(mid)["record"]


def stop_server(srv):
    if srv is not None and srv.proc is not None and srv.proc.poll() is None:
        rc = srv.stop()
        assert rc == 0, "sendpipe exited with %d" % rc
    if srv is not None:
        shutil.rmtree(srv.tmp, ignore_errors=True)


# ---- certificates -----------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=30 * MULT)


def make_ca_and_server_cert(d):
    """ca.pem, and server.pem/server.key for 127.0.0.1 and localhost signed by it."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=sendpipe test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return os.path.join(d, "ca.pem")


# ---- a private Postfix --------------------------------------------------------

class Postfix:
    """Postfix on a free loopback port, configuration and queue in a temp
    dir, STARTTLS with the test certificate, mail for relay.test delivered
    by the virtual agent into one Maildir, recipient access from a texthash
    map. The master runs in the foreground in its own session so that
    stop() takes every Postfix process down."""

    def __init__(self, tmp, tlsdir, access):
        need("postfix")
        need(POSTFIX_MASTER)
        self.dir = os.path.join(tmp, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        self.mail = os.path.join(self.dir, "mail")
        for d in ("etc", "data", "spool", "mail"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        os.chmod(tmp, 0o755)
        os.chmod(self.dir, 0o755)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        shutil.chown(self.mail, "nobody", "nogroup")
        self.port = sphelp.free_port()
        self.access = os.path.join(self.etc, "access")
        self.write_access(access)
        with open("/etc/postfix/master.cf") as f:
            master = f.read()
        lines = []
        for line in master.splitlines():
            if re.match(r"^smtp\s+inet\s", line):
                line = f"127.0.0.1:{self.port} inet n - n - - smtpd"
            f = line.split()
            if (len(f) >= 8 and not line[0].isspace() and not line.startswith("#")
                    and f[1] in ("inet", "unix", "unix-dgram", "fifo", "pass")):
                f[4] = "n"  # no chroot: nothing is populated there
                line = " ".join(f)
            lines.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
queue_directory = {self.dir}/spool
data_directory = {self.dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.relay.test
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = loopback-only
inet_protocols = ipv4
alias_maps =
alias_database =
maillog_file = /dev/stdout
virtual_mailbox_domains = relay.test
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_tls_security_level = may
smtpd_tls_cert_file = {tlsdir}/server.pem
smtpd_tls_key_file = {tlsdir}/server.key
smtpd_tls_received_header = yes
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{self.access}
""")
        self.proc = None

    def write_access(self, text):
        with open(self.access, "w") as f:
            f.write(text)
        os.chmod(self.access, 0o644)

    def start(self):
        self.make_queue()
        self.log = open(os.path.join(self.dir, "master.log"), "w")
        self.proc = subprocess.Popen([POSTFIX_MASTER, "-c", self.etc, "-d"], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("postfix master exited: " + self.log_text())
            return smtphelp._connectable(self.port)
        sphelp.wait_until(up, 20, "the Postfix port")

    def make_queue(self):
        """The queue directories with the owners and modes "postfix check"
        gives them (it takes seconds: it inspects the whole installation)."""
        spool = os.path.join(self.dir, "spool")
        dirs = {d: ("postfix", None, 0o700) for d in (
            "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
            "incoming", "private", "saved", "trace")}
        dirs.update({"maildrop": ("postfix", "postdrop", 0o730),
                     "public": ("postfix", "postdrop", 0o710),
                     "pid": ("root", None, 0o755)})
        os.chmod(spool, 0o755)
        for d, (user, group, mode) in dirs.items():
            path = os.path.join(spool, d)
            os.makedirs(path, exist_ok=True)
            shutil.chown(path, user, group)
            os.chmod(path, mode)

    def reload(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(20 * MULT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        self.proc = None

    def log_text(self):
        with open(os.path.join(self.dir, "master.log")) as f:
            return f.read()

    def delivered(self):
        """Messages in the Maildir as (Delivered-To, bytes)."""
        out = []
        d = os.path.join(self.mail, "inbox", "new")
        if not os.path.isdir(d):
            return out
        for n in sorted(os.listdir(d)):
            with open(os.path.join(d, n), "rb") as f:
                b = f.read()
            m = re.search(rb"^Delivered-To: (\S+)$", b, re.M)
            out.append((m.group(1).decode() if m else None, b))
        return out

    def delivered_to(self, rcpt):
        return [b for (to, b) in self.delivered() if to == rcpt]


ACCESS = """bounce@relay.test REJECT no such user here
later@relay.test 450 4.2.1 Mailbox busy, try again later
"""


class PostfixTest(unittest.TestCase):
    """Relay to Postfix with verified STARTTLS (ca_file), and without the
    CA (the untrusted certificate defers)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sp-it-egress-")
        cls.pf = cls.srv = cls.untrusted = None
        try:
            ca = make_ca_and_server_cert(cls.tmp)
            cls.pf = Postfix(cls.tmp, cls.tmp, ACCESS)
            cls.pf.start()
            # One message per connection: a deferred recipient is retried on
            # a new smtpd, which sees the access map after a reload.
            cls.srv = RelayApiServer({"relay": f'"127.0.0.1:{cls.pf.port}"',
                                      "ca_file": ca, "helo": "out.sendpipe.test",
                                      "max_messages_per_connection": 1})
            cls.srv.start()
            cls.team = cls.srv.team("acme")
            cls.srv.domain(cls.team, "acme.test")
            _, key = cls.srv.key(cls.team)
            cls.api = apihelp.Client(cls.srv.http_port, key)
            cls.untrusted = RelayLinesServer({"relay": f'"127.0.0.1:{cls.pf.port}"'})
            cls.untrusted.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            stop_server(cls.srv)
            stop_server(cls.untrusted)
        finally:
            if cls.pf is not None:
                cls.pf.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def send(self, **kw):
        p = {"from": "Acme <hello@acme.test>", "subject": "Hello relay",
             "text": "Body line one.\n.A line that starts with a dot.\nLast line."}
        p.update(kw)
        r = self.api.post("/api/v1/emails", p)
        self.assertEqual(r.status, 200, r)
        return r.body["emailId"]

    def wait_status(self, srv, mid, want, timeout=30):
        def ok():
            st = sphelp.status_name(srv.status(mid))
            if st not in ("QUEUED", "SCHEDULED", want):
                raise AssertionError(f"{mid} is {st}, want {want}: {events(srv, mid)}")
            return st == want
        sphelp.wait_until(ok, timeout, f"message {mid} to reach {want}")

    def test_delivered_over_verified_starttls(self):
        mid = self.send(to=["Ann <ann@relay.test>"], cc="carl@relay.test",
                        bcc=["Bea <bea@relay.test>"])
        self.wait_status(self.srv, mid, "SENT")
        got = sphelp.wait_until(
            lambda: all(self.pf.delivered_to(a) for a in
                        ("ann@relay.test", "carl@relay.test", "bea@relay.test"))
            and self.pf.delivered_to, 20, "three Maildir deliveries")
        self.assertTrue(got)
        rec = record(self.srv, mid)
        pid = rec["provider_id"]
        # Postfix's queue id from "250 2.0.0 Ok: queued as <id>".
        self.assertRegex(pid, r"^[0-9A-Za-z]{6,}$")
        for a in ("ann@relay.test", "carl@relay.test", "bea@relay.test"):
            msgs = self.pf.delivered_to(a)
            self.assertEqual(len(msgs), 1, a)
            b = msgs[0]
            self.assertIn(b"Return-Path: <hello@acme.test>", b)
            self.assertIn(b"Subject: Hello relay", b)
            self.assertIn(b"Body line one.", b)
            # Dot-stuffing undone by the server: the line keeps one dot.
            self.assertRegex(b, rb"\n\.A line that starts with a dot\.\r?\n")
            self.assertNotRegex(b, rb"\n\.\.A line")
            self.assertIn(f"Message-Id: <{mid}@acme.test>".encode().lower(), b.lower())
            self.assertNotRegex(b, rb"(?im)^bcc:")
            # The queue id is the one in Postfix's Received header; TLS was used.
            self.assertIn(f"id {pid}".encode(), b)
            self.assertRegex(b, rb"\(using TLSv1\.[23]")
            self.assertIn(b"from out.sendpipe.test (", b)
        ev = events(self.srv, mid)
        self.assertEqual(ev[-1]["status"], "SENT")
        m = metrics(self.srv)
        self.assertGreaterEqual(m.get("sent", 0), 1)
        self.assertGreaterEqual(m.get("connections_opened", 0), 1)

    def test_rejected_recipient_bounces(self):
        mid = self.send(to="bounce@relay.test")
        self.wait_status(self.srv, mid, "BOUNCED")
        ev = events(self.srv, mid)
        self.assertEqual(ev[-1]["status"], "BOUNCED")
        data = ev[-1]["data"]
        self.assertEqual(data.get("plugin"), "egress_smtp", ev)
        self.assertEqual(data.get("code"), 554, ev)
        self.assertIn("<bounce@relay.test>: Recipient address rejected: no such user here",
                      data.get("error", ""), ev)
        self.assertEqual(self.pf.delivered_to("bounce@relay.test"), [])

    def test_partial_rejection_sends_to_the_others(self):
        mid = self.send(to=["bounce@relay.test", "dora@relay.test"])
        # SENT, then BOUNCED for the refused recipient (below).
        sphelp.wait_until(lambda: sphelp.status_name(self.srv.status(mid)) == "BOUNCED", 30,
                          f"message {mid} to reach BOUNCED")
        sphelp.wait_until(lambda: self.pf.delivered_to("dora@relay.test"), 20,
                          "delivery to dora")
        self.assertEqual(self.pf.delivered_to("bounce@relay.test"), [])
        self.assertGreaterEqual(metrics(self.srv).get("recipients_refused", 0), 1)
        logs = [ln.get("msg", "") for ln in self.srv.log_lines()]
        self.assertTrue(any(f"message {mid}: recipient <bounce@relay.test> refused: 554" in m
                            for m in logs), logs[-20:])
        # The refused recipient is reported as a Permanent bounce after SENT,
        # in SES's shape, so it lands on the team's suppression list.
        ev = self.srv.message(mid)["events"]
        names = [sphelp.status_name(e["status"]) for e in ev]
        self.assertEqual(names[-2:], ["SENT", "BOUNCED"], ev)
        data = ev[-1]["data"]
        data = json.loads(data) if isinstance(data, str) else data
        self.assertEqual(data["bounceType"], "Permanent")
        self.assertEqual([r["emailAddress"] for r in data["bouncedRecipients"]],
                         ["bounce@relay.test"])
        self.assertIn("554", data["bouncedRecipients"][0]["diagnosticCode"])
        listed = json.loads(self.srv.cli("suppressions", "list", "--team", str(self.team),
                                         "--json").stdout)
        got = {e["email"]: (e["reason"], e["source"]) for e in listed}
        self.assertEqual(got.get("bounce@relay.test"), ("HARD_BOUNCE", mid))
        self.assertNotIn("dora@relay.test", got)

    def test_deferred_recipient_is_retried(self):
        mid = self.send(to="later@relay.test")

        def retried():
            rec = record(self.srv, mid)
            return rec.get("attempts", 0) >= 2 and rec
        rec = sphelp.wait_until(retried, 20, "two delivery attempts")
        self.assertEqual(sphelp.status_name(rec["status"]), "QUEUED")
        self.assertIn("450 4.2.1", rec.get("last_error", ""))
        self.assertIn("Mailbox busy", rec.get("last_error", ""))
        self.assertEqual(self.pf.delivered_to("later@relay.test"), [])
        # The mailbox is free again: the next attempt is delivered.
        self.pf.write_access("bounce@relay.test REJECT no such user here\n")
        try:
            self.pf.reload()
            self.wait_status(self.srv, mid, "SENT", timeout=40)
            sphelp.wait_until(lambda: self.pf.delivered_to("later@relay.test"), 20,
                              "the retried delivery")
        finally:
            self.pf.write_access(ACCESS)
            self.pf.reload()

    def test_untrusted_certificate_defers(self):
        c = sphelp.Client(self.untrusted.port)
        try:
            ans = c.send("hello@acme.test", "untrusted@relay.test", "never")
        finally:
            c.close()
        self.assertTrue(ans.startswith("OK "), ans)
        mid = ans.split()[1]

        def failed_twice():
            rec = record(self.untrusted, mid)
            return rec.get("attempts", 0) >= 2 and rec
        rec = sphelp.wait_until(failed_twice, 20, "two failed attempts")
        self.assertEqual(sphelp.status_name(rec["status"]), "QUEUED")
        self.assertIn("certificate verification", rec["last_error"])
        self.assertIn("local issuer", rec["last_error"])
        time.sleep(0.5)
        self.assertEqual(self.pf.delivered_to("untrusted@relay.test"), [])
        self.assertGreaterEqual(metrics(self.untrusted).get("deferred", 0), 2)
        # TLS failed before any envelope: Postfix never saw the recipient.
        self.assertNotIn("untrusted@relay.test", self.pf.log_text())


# ---- smtp-sink: the pool -----------------------------------------------------

class SinkPoolTest(unittest.TestCase):
    N = 50

    def setUp(self):
        need("smtp-sink")
        self.tmp = tempfile.mkdtemp(prefix="sp-it-sink-")
        os.chmod(self.tmp, 0o755)
        self.dump = os.path.join(self.tmp, "dump")
        os.makedirs(self.dump)
        os.chmod(self.dump, 0o777)
        self.port = sphelp.free_port()
        self.sink = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", "-d", self.dump + "/%M.", f"127.0.0.1:{self.port}",
             "100"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL)
        self.srv = None
        try:
            sphelp.wait_until(lambda: smtphelp._connectable(self.port), 10, "smtp-sink")
            self.srv = RelayLinesServer({"relay": f'"127.0.0.1:{self.port}"', "tls": "none",
                                         "max_connections": 4,
                                         "max_messages_per_connection": 20})
            self.srv.start()
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        try:
            stop_server(self.srv)
        finally:
            self.sink.kill()
            self.sink.wait()
            self.sink.stderr.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def test_fifty_messages_over_a_pool(self):
        # All fifty in one write: they are due together and compete for
        # the pool.
        sock = socket.create_connection(("127.0.0.1", self.srv.port), 5)
        sock.settimeout(30 * MULT)
        ids = []
        try:
            sock.sendall(b"".join(f"SEND pool@acme.test r{i}@sink.test pool message {i}\n"
                                  .encode() for i in range(self.N)))
            buf = b""
            while buf.count(b"\n") < self.N:
                chunk = sock.recv(65536)
                self.assertTrue(chunk, "ingress_lines closed")
                buf += chunk
        finally:
            sock.close()
        for ans in buf.decode().splitlines():
            self.assertTrue(ans.startswith("OK "), ans)
            ids.append(ans.split()[1])
        self.assertEqual(len(ids), self.N)

        def all_dumped():
            return len(os.listdir(self.dump)) >= self.N
        sphelp.wait_until(all_dumped, 30, f"{self.N} messages in the smtp-sink dump")
        sphelp.wait_until(lambda: metrics(self.srv).get("sent", 0) == self.N, 20,
                          "sent counter")
        seen = set()
        for n in os.listdir(self.dump):
            with open(os.path.join(self.dump, n), "rb") as f:
                b = f.read()
            m = re.search(rb"^X-Rcpt-Args: <r(\d+)@sink\.test>$", b, re.M)
            self.assertIsNotNone(m, b[:300])
            i = int(m.group(1))
            self.assertIn(b"X-Mail-Args: <pool@acme.test>", b)
            self.assertIn(f"Subject: pool message {i}".encode(), b)
            seen.add(i)
        self.assertEqual(seen, set(range(self.N)))
        for mid in ids[:5] + ids[-5:]:
            rec = record(self.srv, mid)
            self.assertEqual(sphelp.status_name(rec["status"]), "SENT")
            self.assertTrue(rec["provider_id"].startswith("250 "), rec)
        m = metrics(self.srv)
        opened, reused = m.get("connections_opened", 0), m.get("connections_reused", 0)
        # 20 messages per connection at most: at least three connections,
        # and far fewer than one per message.
        self.assertGreaterEqual(opened, 3)
        self.assertLessEqual(opened, 12)
        self.assertGreaterEqual(reused, self.N - opened)
        self.assertEqual(m.get("deferred", 0), 0)


# ---- a second sendpipe: STARTTLS + AUTH ------------------------------------

class AuthTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.rx = cls.good = cls.bad = cls.misnamed = None
        try:
            cls.rx = smtphelp.SmtpServer()
            cls.rx.start()
            team = cls.rx.team("acme")
            cls.rx.domain(team, "acme.test")
            _, key = cls.rx.key(team)
            relay = {"relay": f'"127.0.0.1:{cls.rx.smtp_port}"', "tls_verify": "false",
                     "username": "usesend"}
            cls.good = RelayLinesServer(dict(relay, password=key))
            cls.good.start()
            wrong = key[:-4] + ("0000" if not key.endswith("0000") else "1111")
            cls.bad = RelayLinesServer(dict(relay, password=wrong))
            cls.bad.start()
            # Its own certificate trusted, but it names mx.sendpipe.test,
            # not the 127.0.0.1 we connect to.
            cls.misnamed = RelayLinesServer(dict(
                relay, password=key, tls_verify="true",
                ca_file=os.path.join(cls.rx.data, "smtp-selfsigned.pem")))
            cls.misnamed.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in (cls.good, cls.bad, cls.misnamed, cls.rx):
            stop_server(s)

    def send(self, srv, subject):
        c = sphelp.Client(srv.port)
        try:
            ans = c.send("hello@acme.test", "friend@example.com", subject)
        finally:
            c.close()
        self.assertTrue(ans.startswith("OK "), ans)
        return ans.split()[1]

    def test_auth_with_an_api_key(self):
        mid = self.send(self.good, "through auth")
        sphelp.wait_until(lambda: sphelp.status_name(self.good.status(mid)) == "SENT", 20,
                          "SENT through the AUTH relay")
        pid = record(self.good, mid)["provider_id"]
        # The receiving sendpipe answers "250 2.0.0 <its message id>".
        self.assertRegex(pid, r"^[0-9a-z]{13}$")
        theirs = self.rx.record(pid)
        self.assertEqual(theirs["subject"], "through auth")
        self.assertEqual(theirs["to"], ["friend@example.com"])
        self.assertIn("test body", theirs.get("text", "") + theirs.get("raw", ""))

    def test_certificate_for_another_name_defers(self):
        before = self.rx.message_count()
        mid = self.send(self.misnamed, "misnamed")

        def failed():
            rec = record(self.misnamed, mid)
            return rec.get("attempts", 0) >= 1 and rec
        rec = sphelp.wait_until(failed, 20, "a failed attempt")
        self.assertEqual(sphelp.status_name(rec["status"]), "QUEUED")
        self.assertIn("certificate verification: IP address mismatch", rec["last_error"])
        self.assertEqual(self.rx.message_count(), before)

    def test_wrong_password_is_permanent(self):
        before = self.rx.message_count()
        mid = self.send(self.bad, "wrong key")
        sphelp.wait_until(lambda: sphelp.status_name(self.bad.status(mid)) == "REJECTED", 20,
                          "REJECTED after a refused AUTH")
        ev = events(self.bad, mid)[-1]
        self.assertEqual(ev["data"].get("code"), 535, ev)
        self.assertIn("authentication failed: 535", ev["data"].get("error", ""))
        self.assertEqual(record(self.bad, mid).get("attempts"), 1)
        self.assertEqual(self.rx.message_count(), before)


# ---- a scripted peer: pipelining, a broken pooled connection, QUIT on idle ----

class ScriptedSmtp:
    """A minimal SMTP server in threads. It offers PIPELINING and notes for
    each MAIL whether the rest of the envelope had already arrived before it
    answered. With drop_on_reuse, a connection that carried a message is
    closed without answer when the client says RSET."""

    def __init__(self, drop_on_reuse=False):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.drop_on_reuse = drop_on_reuse
        self.lock = threading.Lock()
        self.connections = 0
        self.pipelined = []   # per MAIL: envelope complete before the reply
        self.rset_pipelined = []  # per RSET: MAIL arrived in the same group
        self.messages = []
        self.quits = 0
        self.stopping = False
        self.threads = []
        t = threading.Thread(target=self.accept_loop, daemon=True)
        t.start()
        self.threads.append(t)

    def accept_loop(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
            t = threading.Thread(target=self.serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def serve(self, conn):
        conn.settimeout(10)
        buf = b""
        carried = 0

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    raise ConnectionError
                buf += chunk
            ln, buf = buf.split(b"\r\n", 1)
            return ln.decode("latin-1")
        try:
            conn.sendall(b"220 scripted ESMTP\r\n")
            while True:
                cmd = line()
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    conn.sendall(b"250-scripted\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n"
                                 b"250 8BITMIME\r\n")
                elif verb == "MAIL":
                    time.sleep(0.2)  # anything sent without waiting for us is here now
                    conn.setblocking(False)
                    try:
                        while True:
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            buf += chunk
                    except BlockingIOError:
                        pass
                    conn.settimeout(10)
                    with self.lock:
                        self.pipelined.append(b"\r\nDATA\r\n" in b"\r\n" + buf)
                    conn.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    conn.sendall(b"250 2.1.5 Ok\r\n")
                elif verb == "DATA":
                    conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    while b"\r\n.\r\n" not in b"\r\n" + buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            raise ConnectionError
                        buf += chunk
                    i = (b"\r\n" + buf).index(b"\r\n.\r\n")
                    msg, buf = buf[:i], buf[i + 3:]
                    with self.lock:
                        self.messages.append(msg)
                        n = len(self.messages)
                    carried += 1
                    conn.sendall(f"250 2.0.0 Ok: queued as SCRIPT{n}\r\n".encode())
                elif verb == "RSET":
                    with self.lock:
                        self.rset_pipelined.append(b"MAIL FROM:" in buf)
                    if self.drop_on_reuse and carried > 0:
                        conn.close()
                        return
                    conn.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == "QUIT":
                    with self.lock:
                        self.quits += 1
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    conn.close()
                    return
                else:
                    conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.sock.close()
        for t in self.threads:
            t.join(5)


class ScriptedPeerTest(unittest.TestCase):

    def setUp(self):
        self.peer = ScriptedSmtp(drop_on_reuse=True)
        self.srv = None
        try:
            self.srv = RelayLinesServer({"relay": f'"127.0.0.1:{self.peer.port}"',
                                         "tls": "none", "max_connections": 1,
                                         "idle_timeout": "1500ms"})
            self.srv.start()
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        try:
            stop_server(self.srv)
        finally:
            self.peer.close()

    def send(self, subject):
        c = sphelp.Client(self.srv.port)
        try:
            ans = c.send("pipe@acme.test", "one@scripted.test", subject)
        finally:
            c.close()
        self.assertTrue(ans.startswith("OK "), ans)
        return ans.split()[1]

    def wait_sent(self, mid):
        sphelp.wait_until(lambda: sphelp.status_name(self.srv.status(mid)) == "SENT", 20,
                          f"{mid} SENT")

    def test_pipelining_broken_pooled_connection_and_idle_quit(self):
        first = self.send("first")
        self.wait_sent(first)
        self.assertEqual(record(self.srv, first)["provider_id"], "SCRIPT1")
        # The pooled connection is dropped by the peer at RSET: the message
        # goes out on a new connection within the same attempt.
        second = self.send("second")
        self.wait_sent(second)
        rec = record(self.srv, second)
        self.assertEqual(rec["provider_id"], "SCRIPT2")
        self.assertEqual(rec.get("attempts"), 1)
        self.assertEqual(self.peer.connections, 2)
        self.assertEqual(self.peer.pipelined, [True, True])
        # RFC 2920: on a reused connection RSET leads the pipelined group.
        self.assertEqual(self.peer.rset_pipelined, [True])
        m = metrics(self.srv)
        self.assertEqual(m.get("connections_opened"), 2)
        self.assertEqual(m.get("connections_reused"), 1)
        self.assertEqual(m.get("deferred", 0), 0)
        self.assertIn(b"Subject: second", self.peer.messages[1])
        self.assertTrue(self.peer.messages[1].endswith(b"\r\n"))
        # Idle for longer than idle_timeout: the client says QUIT.
        sphelp.wait_until(lambda: self.peer.quits == 1, 10, "QUIT on the idle connection")


class RefusalsTest(unittest.TestCase):
    """Deferrals that need no real server: a relay without STARTTLS under
    tls: starttls, and one that accepts the connection but never speaks
    (command_timeout), then a shutdown with that delivery in flight."""

    def setUp(self):
        self.peer = ScriptedSmtp()
        self.silent = socket.socket()
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(16)
        self.servers = []

    def tearDown(self):
        try:
            for s in self.servers:
                stop_server(s)
        finally:
            self.peer.close()
            self.silent.close()

    def start(self, relay, **kw):
        srv = RelayLinesServer(relay, **kw)
        self.servers.append(srv)
        return srv.start()

    def send(self, srv):
        c = sphelp.Client(srv.port)
        try:
            ans = c.send("x@acme.test", "y@example.com", "refused")
        finally:
            c.close()
        self.assertTrue(ans.startswith("OK "), ans)
        return ans.split()[1]

    def wait_error(self, srv, mid, text):
        def seen():
            rec = record(srv, mid)
            return text in rec.get("last_error", "") and rec
        return sphelp.wait_until(seen, 20, f"last_error with {text!r}")

    def test_no_starttls_and_silent_relay(self):
        silent = f'"127.0.0.1:{self.silent.getsockname()[1]}"'
        a = self.start({"relay": f'"127.0.0.1:{self.peer.port}"'})
        b = self.start({"relay": silent, "tls": "none", "command_timeout": "300ms"})
        c = self.start({"relay": silent, "tls": "none"}, grace="500ms")
        mid = self.send(a)
        rec = self.wait_error(a, mid, "does not offer STARTTLS; not sending in clear")
        self.assertEqual(sphelp.status_name(rec["status"]), "QUEUED")
        self.assertEqual(self.peer.messages, [])
        self.assertEqual(self.peer.pipelined, [])  # not even MAIL FROM
        mid = self.send(b)
        self.wait_error(b, mid, "timed out in greeting")
        # Shut down with a delivery waiting for a greeting (5 min timeout):
        # after the grace period the core cancels it; the plugin closes its
        # connection and the exit is clean.
        mid = self.send(c)
        sphelp.wait_until(lambda: metrics(c).get("connections_opened", 0) == 1, 10,
                          "the connection to the silent relay")
        t0 = time.monotonic()
        rc = c.stop()
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 8 * MULT)
        with open(c.log) as f:
            text = f.read()
        self.assertIn(f"message {mid}: delivery abandoned", text)

if __name__ == "__main__":
    unittest.main()
