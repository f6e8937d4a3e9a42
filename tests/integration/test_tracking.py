# SPDX-License-Identifier: Apache-2.0
"""Open and click tracking (plugin tracking) on the real binary: emails sent
through the API for a domain with tracking on are built by `mime` and kept
by egress_outbox; the kept message (`sendpipe outbox raw`) is parsed with
Python's email package and its html checked: exactly the http(s) links
rewritten, mailto:, anchors, unsubscribe and data-sp-no-track links kept,
the pixel at the end of the body. The pixel and click URLs are then fetched
like a mail client would: OPENED and CLICKED events with user agent, address
and prefetch mark; 302 only to the stored link. Forged and altered tokens
(flipped characters, another link index, another message id, a token of
another message, the other kind, another key) answer 404 and record
nothing. A domain with tracking off sends its html untouched. The `sendpipe
domains` flags and their CLI are checked too."""
import base64
import email
import email.policy
import hashlib
import hmac
import json
import html.parser
import http.client
import os
import re
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

HTML = ("<html><body><p>Hello <a href=\"https://shop.example/a?x=1&amp;y=2\">shop</a>, "
        "<a href=\"http://news.example/b\">news</a>, "
        "<a href=\"mailto:help@track.test\">mail us</a>, "
        "<a href=\"tel:+15550100\">call</a>, "
        "<a href=\"#top\">top</a>, "
        "<a href=\"https://track.test/Unsubscribe?u=7\">unsubscribe</a>, "
        "<a data-sp-no-track href=\"https://keep.example/c\">keep</a>, "
        "<a href=\"https://shop.example/a?x=1&amp;y=2\">again</a></p></body></html>")
TRACKED = ["https://shop.example/a?x=1&y=2", "http://news.example/b",
           "https://shop.example/a?x=1&y=2"]
KEPT = ["mailto:help@track.test", "tel:+15550100", "#top",
        "https://track.test/Unsubscribe?u=7", "https://keep.example/c"]


class Hrefs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []
        self.imgs = []
        self.order = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.hrefs.append(a.get("href"))
        if tag == "img":
            self.imgs.append(a)
        self.order.append(tag)

    def handle_endtag(self, tag):
        self.order.append("/" + tag)


def hrefs_of(text):
    p = Hrefs()
    p.feed(text)
    return p


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TrackServer(apihelp.ApiServer):
    """ingress_http + api_usesend + render + tracking + mime + egress_outbox;
    the public base URL comes from USESEND_DOMAIN (the server's own HTTP
    address), the HMAC key from data_dir/tracking.key."""

    def __init__(self):
        extra = ("  - name: api_usesend\n"
                 "    config: { rate_limit: 100000 }\n"
                 "  - name: render\n"
                 "  - name: tracking\n"
                 "  - name: mime\n")
        sphelp.Server.__init__(self, extra_plugins=extra, http=True, sync=False)

    def start(self):
        saved = {k: os.environ.get(k) for k in ("USESEND_DOMAIN", "NEXTAUTH_SECRET")}
        os.environ["USESEND_DOMAIN"] = self.base
        os.environ.pop("NEXTAUTH_SECRET", None)
        try:
            return super().start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def raw(self, mid):
        r = sphelp.subprocess.run([sphelp.BIN, "outbox", "raw", mid, "-c", self.conf],
                                  capture_output=True, timeout=60 * MULT,
                                  stdin=sphelp.subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout

    def tracking_key(self):
        with open(os.path.join(self.data, "tracking.key"), "rb") as f:
            return f.read()


class Hit:
    """An answer to a tracking URL, with the body as bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def error(self):
        try:
            return json.loads(self.body).get("error") or {}
        except ValueError:
            return {}

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:200]!r}>"


def fetch(port, path, headers=None):
    """GET like a mail client: no redirect following, body as bytes."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * MULT)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return Hit(r.status, {n.lower(): v for n, v in r.getheaders()}, r.read())
    finally:
        c.close()


def make_token(key, kind, mid, index):
    """The token layout of docs/tracking.md, made independently."""
    body = bytes([1, ord(kind), index >> 8, index & 255, len(mid)]) + mid.encode()
    mac = hmac.new(key, b"sendpipe-tracking-v1\0" + body, hashlib.sha256).digest()[:16]
    return b64u(body + mac)


class TrackingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = TrackServer().start()
        team = cls.srv.team("acme")
        out = cls.srv.cli("domains", "add", "--team", str(team), "--verified",
                          "--dkim-algorithm", "ed25519", "--open-tracking",
                          "--click-tracking", "track.test").stdout
        assert "open tracking on, click tracking on" in out, out
        cls.srv.domain(team, "plain.test")
        _, tok = cls.srv.key(team)
        cls.api = apihelp.Client(cls.srv.http_port, tok)
        cls.anon = apihelp.Client(cls.srv.http_port)

    @classmethod
    def tearDownClass(cls):
        if cls.srv.proc is not None and cls.srv.proc.poll() is None:
            rc = cls.srv.stop()
            assert rc == 0, "sendpipe exited with %d" % rc
        shutil.rmtree(cls.srv.tmp, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------

    def send(self, frm="News <news@track.test>", body=HTML, **kw):
        p = {"to": "reader@example.com", "from": frm, "subject": "Tracked", "html": body}
        p.update(kw)
        r = self.api.post("/api/v1/emails", p)
        self.assertEqual(r.status, 200, r)
        mid = r.body["emailId"]
        self.srv.wait_status(mid, "SENT")
        return mid

    def html_of(self, mid):
        py = email.message_from_bytes(self.srv.raw(mid), policy=email.policy.default)
        self.assertEqual(py.defects, [])
        part = py.get_body(preferencelist=("html",))
        self.assertIsNotNone(part)
        return part.get_content()

    def links_of(self, mid):
        """(click URLs in document order, pixel URL, parser) of a message."""
        p = hrefs_of(self.html_of(mid))
        base = self.srv.base + "/t/c/"
        clicks = [h for h in p.hrefs if h.startswith(base)]
        pixels = [i["src"] for i in p.imgs if i.get("src", "").startswith(self.srv.base + "/t/o/")]
        return clicks, pixels, p

    def get(self, url, ua=UA, headers=None):
        if url.startswith("http"):
            self.assertTrue(url.startswith(self.srv.base), url)
            url = url[len(self.srv.base):]
        h = {"User-Agent": ua} if ua is not None else {}
        h.update(headers or {})
        return fetch(self.srv.http_port, url, h)

    def events(self, mid, status):
        r = self.api.get(f"/api/v1/emails/{mid}")
        self.assertEqual(r.status, 200, r)
        return [e for e in r.body["emailEvents"] if e["status"] == status]

    def wait_events(self, mid, status, n):
        return sphelp.wait_until(lambda: len(self.events(mid, status)) >= n and
                                 self.events(mid, status), 30, f"{n} {status} events of {mid}")

    # ---- tests ----------------------------------------------------------------

    def test_rewrite_open_and_click(self):
        mid = self.send()
        clicks, pixels, p = self.links_of(mid)
        # Exactly the http(s) links, in order; the others as they were.
        self.assertEqual(len(clicks), len(TRACKED), p.hrefs)
        self.assertEqual([h for h in p.hrefs if not h.startswith(self.srv.base)], KEPT)
        self.assertEqual(len(pixels), 1)
        # The pixel is the last element of the body.
        self.assertEqual(p.order[-3:], ["img", "/body", "/html"])
        self.assertEqual(len(set(clicks)), len(clicks))  # one token per link

        # Open: the pixel, and an OPENED event with what a client sent.
        r = self.get(pixels[0])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "image/gif")
        self.assertEqual(len(r.body), 43)
        self.assertTrue(r.body.startswith(b"GIF89a"))
        self.assertIn("no-store", r.header("Cache-Control"))
        ev = self.wait_events(mid, "OPENED", 1)[0]["data"]
        self.assertEqual(ev["userAgent"], UA)
        self.assertEqual(ev["ipAddress"], "127.0.0.1")
        self.assertIsNone(ev["prefetch"])
        self.assertEqual(ev["source"], "sendpipe")
        self.assertRegex(ev["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.srv.wait_status(mid, "OPENED")

        # Clicks: 302 to the stored link of that index, never anything else.
        for i, url in enumerate(clicks):
            r = self.get(url)
            self.assertEqual(r.status, 302, r)
            self.assertEqual(r.header("Location"), TRACKED[i])
            self.assertIn("no-store", r.header("Cache-Control"))
        evs = self.wait_events(mid, "CLICKED", len(clicks))
        self.assertEqual([(e["data"]["link"], e["data"]["linkIndex"]) for e in evs],
                         [(u, i) for i, u in enumerate(TRACKED)])
        self.assertTrue(all(e["data"]["userAgent"] == UA and e["data"]["source"] == "sendpipe"
                            for e in evs))
        self.srv.wait_status(mid, "CLICKED")

        # A query string or another path cannot steer the redirect.
        r = self.get(clicks[1] + "?url=https://evil.example/&redirect=https://evil.example/")
        self.assertEqual((r.status, r.header("Location")), (302, TRACKED[1]))
        for path in ("/t/c/https:%2F%2Fevil.example", "/t/c/", "/t/c/..%2F..%2Fevil",
                     "/t/c/" + "A" * 300):
            r = self.get(path)
            self.assertEqual(r.status, 404, f"{path}: {r}")
            self.assertIsNone(r.header("Location"))

    def test_forged_tokens_refused(self):
        mid = self.send()
        other = self.send(body="<p><a href=\"https://other.example/z\">z</a></p>")
        clicks, pixels, _ = self.links_of(mid)
        oclicks, opixels, _ = self.links_of(other)
        base = self.srv.base
        tok = clicks[1].rsplit("/", 1)[1]
        raw = unb64u(tok)
        key = self.srv.tracking_key()
        self.assertEqual(len(key), 32)
        # The token layout is as documented: made here, it is the same one.
        self.assertEqual(make_token(key, "c", mid, 1), tok)
        self.assertEqual(make_token(key, "o", mid, 0), pixels[0].rsplit("/", 1)[1])

        forged = []
        # Every character flipped to another.
        for i in range(len(tok)):
            c = "A" if tok[i] != "A" else "B"
            forged.append("/t/c/" + tok[:i] + c + tok[i + 1:])
        # Another link index, MAC kept.
        forged.append("/t/c/" + b64u(raw[:2] + bytes([0, 2]) + raw[4:]))
        forged.append("/t/c/" + b64u(raw[:2] + bytes([0, 0]) + raw[4:]))
        # The other message's id, MAC kept.
        forged.append("/t/c/" + b64u(raw[:5] + other.encode() + raw[5 + len(mid):]))
        # Signed with another key.
        forged.append("/t/c/" + make_token(b"k" * 32, "c", mid, 0))
        # The other kind: a click token on the pixel route and back.
        forged.append("/t/o/" + tok)
        forged.append("/t/c/" + pixels[0].rsplit("/", 1)[1])
        # Correctly signed, but nothing stored: an index the message lacks, a
        # message that does not exist.
        forged.append("/t/c/" + make_token(key, "c", mid, 3))
        forged.append("/t/c/" + make_token(key, "c", "0000000000000", 0))
        forged.append("/t/o/" + make_token(key, "o", "0000000000000", 0))
        # Padded and non-canonical forms.
        forged.append("/t/c/" + tok + "=")
        forged.append("/t/c/" + tok.replace("-", "+").replace("_", "/"))
        for path in forged:
            if path == "/t/c/" + tok:
                continue  # a flip that changed nothing (cannot happen; guard)
            r = self.get(path)
            self.assertEqual(r.status, 404, f"{path}: {r}")
            self.assertIsNone(r.header("Location"), path)
            self.assertEqual(r.error.get("code"), "NOT_FOUND", path)

        # Another message's genuine token with this index leads to that
        # message's own link, and records on that message.
        r = self.get(oclicks[0])
        self.assertEqual((r.status, r.header("Location")), (302, "https://other.example/z"))
        self.wait_events(other, "CLICKED", 1)
        # Nothing forged was recorded on either message.
        self.assertEqual(self.events(mid, "CLICKED"), [])
        self.assertEqual(self.events(mid, "OPENED"), [])
        self.assertEqual(len(self.events(other, "CLICKED")), 1)
        self.assertEqual(self.events(other, "OPENED"), [])

    def test_prefetch_marked(self):
        mid = self.send()
        _, pixels, _ = self.links_of(mid)
        # Apple Mail Privacy Protection fetches with exactly "Mozilla/5.0".
        self.assertEqual(self.get(pixels[0], ua="Mozilla/5.0").status, 200)
        ev = self.wait_events(mid, "OPENED", 1)
        self.assertEqual(ev[0]["data"]["prefetch"], "apple-mail-privacy")
        # A security scanner.
        self.assertEqual(self.get(pixels[0], ua="Mozilla/5.0 Barracuda Sentinel").status, 200)
        ev = self.wait_events(mid, "OPENED", 2)
        self.assertEqual(ev[1]["data"]["prefetch"], "scanner")
        # X-Forwarded-For is not trusted by default: address and mark stay.
        r = self.get(pixels[0], headers={"X-Forwarded-For": "17.1.2.3"})
        self.assertEqual(r.status, 200)
        ev = self.wait_events(mid, "OPENED", 3)
        self.assertEqual((ev[2]["data"]["ipAddress"], ev[2]["data"]["prefetch"]),
                         ("127.0.0.1", None))

    def test_tracking_off_leaves_html(self):
        body = ("<html><body><p>Plain <a href=\"https://shop.example/a\">shop</a></p>"
                "</body></html>")
        mid = self.send(frm="plain@plain.test", body=body)
        self.assertEqual(self.html_of(mid).rstrip("\r\n"), body)

    def test_open_only_and_cli(self):
        r = self.srv.cli("domains", "tracking", "plain.test")
        self.assertIn("open tracking off, click tracking off", r.stdout)
        r = self.srv.cli("domains", "tracking", "plain.test", "--open", "on")
        self.assertIn("plain.test: open tracking on, click tracking off", r.stdout)
        rows = {l.split("\t")[2]: l.split("\t")[7]
                for l in self.srv.cli("domains", "list").stdout.splitlines()[1:]}
        self.assertEqual(rows["plain.test"], "open")
        self.assertEqual(rows["track.test"], "open,click")
        self.assertEqual(self.srv.cli("domains", "tracking", "plain.test", "--open", "maybe",
                                      check=False).returncode, 2)
        try:
            mid = self.send(frm="plain@plain.test",
                            body="<p><a href=\"https://shop.example/a\">shop</a></p>")
            clicks, pixels, p = self.links_of(mid)
            self.assertEqual((clicks, len(pixels)), ([], 1))
            self.assertEqual(p.hrefs, ["https://shop.example/a"])
        finally:
            r = self.srv.cli("domains", "tracking", "plain.test", "--open", "off", "--click",
                             "off")
            self.assertIn("open tracking off, click tracking off", r.stdout)

    def test_routes_documented_and_links_survive_restart(self):
        doc = self.anon.get("/api/v1/doc").body
        mine = sorted((x["method"], x["path"]) for x in doc["x-sendpipe-routes"]
                      if x["owner"] == "tracking")
        self.assertEqual(mine, [("GET", "/t/c/{token}"), ("GET", "/t/o/{token}")])
        for method, path in mine:
            self.assertIn(method.lower(), doc["paths"].get(path, {}))
        mid = self.send()
        clicks, _, _ = self.links_of(mid)
        key = self.srv.tracking_key()
        self.assertEqual(self.srv.stop(), 0)
        self.srv.start()
        # The key file is reused, the links were stored durably.
        self.assertEqual(self.srv.tracking_key(), key)
        r = self.get(clicks[0])
        self.assertEqual((r.status, r.header("Location")), (302, TRACKED[0]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
