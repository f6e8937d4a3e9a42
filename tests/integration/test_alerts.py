# SPDX-License-Identifier: Apache-2.0
"""Operator alerts to DISCORD_WEBHOOK_URL on the real binary.

Discord itself cannot run on loopback, so the webhook is a local HTTP
receiver that records what it is sent (the only stand-in in this test).
Checked: a message that reaches FAILED posts one alert with its id and
reason as Discord's {"content": ...}; more failures within the minute are
held back and counted on /metrics, not posted; the webhook URL (a secret)
never appears in the log; a store more than 90 % full alerts after a
restart."""
import http.server
import json
import os
import sys
import threading
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402

SECRET_PATH = "/api/webhooks/1234567890/s3cr3t-T0KEN-do-not-log"


class Receiver:
    """Records every POST body; answers 204 like Discord."""

    def __init__(self):
        self.posts = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.posts.append({"path": self.path, "headers": dict(self.headers),
                                        "body": json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{SECRET_PATH}"

    def count(self):
        with self.lock:
            return len(self.posts)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def metrics(srv):
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/metrics", timeout=10) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


def failing_server(extra=""):
    """A server whose only egress declines every message, so each one is
    retried until the (1 s) maximum age and then FAILED."""
    srv = sphelp.Server(http=True)
    with open(srv.conf) as f:
        conf = f.read()
    conf = conf.replace("max_age: 1h", "max_age: 1s")
    conf = conf.replace("  - name: egress_outbox\n",
                        "  - name: egress_outbox\n    config: { enabled: false }\n")
    with open(srv.conf, "w") as f:
        f.write(conf + extra)
    return srv


class AlertsTest(unittest.TestCase):
    def setUp(self):
        self.rx = Receiver()
        os.environ["DISCORD_WEBHOOK_URL"] = self.rx.url

    def tearDown(self):
        os.environ.pop("DISCORD_WEBHOOK_URL", None)
        self.rx.close()

    def test_failed_delivery_alerts_once_per_window(self):
        srv = failing_server().start()
        try:
            c = sphelp.Client(srv.port)
            ids = []
            for i in range(3):
                ans = c.send(subject=f"alert-{i}")
                self.assertTrue(ans.startswith("OK "), ans)
                ids.append(ans.split()[1])
            c.close()
            sphelp.wait_until(lambda: all(srv.status(i) == sphelp.STATUS.index("FAILED")
                                          for i in ids), 30, "three FAILED messages")
            sphelp.wait_until(lambda: metrics(srv).get("sendpipe_alerts_sent_total", 0) +
                              metrics(srv).get("sendpipe_alerts_held_total", 0) >= 3, 30,
                              "three alerts raised")
            sphelp.wait_until(lambda: self.rx.count() >= 1, 30, "the alert post")
            m = metrics(srv)
            self.assertEqual(m["sendpipe_alerts_sent_total"], 1)
            self.assertEqual(m["sendpipe_alerts_held_total"], 2)
            self.assertEqual(m["sendpipe_alerts_failed_total"], 0)
            self.assertEqual(self.rx.count(), 1)
            p = self.rx.posts[0]
            self.assertEqual(p["path"], SECRET_PATH)
            self.assertEqual(p["headers"]["Content-Type"], "application/json")
            content = p["body"]["content"]
            self.assertIn("egress_failed", content)
            self.assertIn("no egress plugin accepted the message", content)
            self.assertTrue(any(i in content for i in ids), content)
            self.assertLessEqual(len(content), 2000)
        finally:
            srv.stop()
        with open(srv.log) as f:
            log = f.read()
        self.assertIn("alert egress_failed", log)
        self.assertNotIn("s3cr3t-T0KEN", log)

    def test_unreachable_webhook_is_counted_not_fatal(self):
        self.rx.close()
        self.rx = Receiver()
        dead = self.rx.url
        self.rx.close()  # nothing listens there any more
        os.environ["DISCORD_WEBHOOK_URL"] = dead
        self.rx = Receiver()
        srv = failing_server().start()
        try:
            c = sphelp.Client(srv.port)
            ans = c.send(subject="dead-webhook")
            c.close()
            mid = ans.split()[1]
            sphelp.wait_until(lambda: srv.status(mid) == sphelp.STATUS.index("FAILED"), 30,
                              "FAILED")
            sphelp.wait_until(lambda: metrics(srv).get("sendpipe_alerts_failed_total", 0) == 1,
                              30, "the failed alert post")
            self.assertEqual(self.rx.count(), 0)
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_store_near_full(self):
        srv = failing_server()
        with open(srv.conf) as f:
            conf = f.read()
        conf = conf.replace("store: {", "store: { map_size: 1M,")
        conf = conf.replace("max_age: 1s", "max_age: 1h")
        with open(srv.conf, "w") as f:
            f.write(conf)
        os.environ.pop("DISCORD_WEBHOOK_URL", None)
        srv.start()
        try:
            c = sphelp.Client(srv.port)
            pad = "x" * 3000
            n = 0
            while True:
                ans = c.send(subject=f"{n}-{pad}")
                if not ans.startswith("OK "):
                    break
                n += 1
                used = metrics(srv)
                if used["sendpipe_store_map_used_bytes"] >= 0.92 * used[
                        "sendpipe_store_map_size_bytes"]:
                    break
            c.close()
            self.assertGreater(n, 10)
        finally:
            srv.stop()
        os.environ["DISCORD_WEBHOOK_URL"] = self.rx.url
        srv.start()
        try:
            sphelp.wait_until(lambda: self.rx.count() >= 1, 40, "the store_full alert")
            self.assertIn("store_full", self.rx.posts[0]["body"]["content"])
        finally:
            srv.stop()


if __name__ == "__main__":
    unittest.main()
