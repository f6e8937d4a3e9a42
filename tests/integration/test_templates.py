# SPDX-License-Identifier: Apache-2.0
"""Stored templates on the real binary: `sendpipe templates` (add, list,
show, update, rm) beside a running server, the emails API's templateId check
(unknown and other teams' ids refused by name), and the render plugin at due
time (variables escaped in html and raw in text and subject, fallbacks,
unknown names left as written, case-insensitive names, a template removed
before a scheduled send's due time, the size limit), read back from the
outbox through the mime plugin."""
import datetime
import json
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import apihelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT


class TplServer(apihelp.ApiServer):
    """ingress_http + api_usesend + render + mime, egress_outbox."""

    def __init__(self):
        sphelp.Server.__init__(self, http=True, extra_plugins="""  - name: api_usesend
    config: { rate_limit: 100000 }
  - name: render
    config: { max_size: 64K }
  - name: mime
""")


def in_seconds(s):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TemplatesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = srv = TplServer()
        try:
            srv.start()
            cls.team = srv.team("acme")
            cls.other = srv.team("other")
            srv.domain(cls.team, "acme.test")
            srv.domain(cls.other, "other.test")
            _, key = srv.key(cls.team)
            _, cls.other_key = srv.key(cls.other)
            cls.api = apihelp.Client(srv.http_port, key)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.srv.proc is not None and cls.srv.proc.poll() is None:
            rc = cls.srv.stop()
            assert rc == 0, "sendpipe exited with %d" % rc
        shutil.rmtree(cls.srv.tmp, ignore_errors=True)

    # ---- helpers ----------------------------------------------------------

    def tpl(self, *args, team=None):
        """`templates add`; returns the new id."""
        r = self.srv.cli("templates", "add", "--team", str(team or self.team), *args)
        tid = r.stdout.strip()
        self.assertRegex(tid, r"^[0-9a-z]{13}$", r.stdout)
        return tid

    def write(self, name, content):
        path = os.path.join(self.srv.tmp, name)
        with open(path, "w") as f:
            f.write(content)
        return path

    def send(self, status=200, key=None, **kw):
        body = {"to": "rcpt@example.com", "from": "Acme <hello@acme.test>"}
        body.update(kw)
        r = self.api.post("/api/v1/emails", body, key=key)
        self.assertEqual(r.status, status, r)
        return r

    def sent(self, **kw):
        """Send, wait for SENT, return the outbox record."""
        mid = self.send(**kw).body["emailId"]
        self.srv.wait_status(mid, "SENT")
        return mid, json.loads(self.srv.cli("outbox", "show", mid).stdout)

    # ---- rendering --------------------------------------------------------

    def test_render_variables(self):
        html = self.write("welcome.html",
                          '<p>Hi {{ name }}</p><p>{{company,fallback=your team}}</p>'
                          '<p>{{unknown}} {{ Unknown2 }}</p><a href="{{link}}">go</a>'
                          '<p>[{{empty}}] [{{empty , fallback = <i>E</i> }}]</p>')
        text = self.write("welcome.txt",
                          "Hi {{NAME}}, {{company,fallback=your team}} {{unknown}} "
                          "{{empty,fallback=E}} {{Contact.First_Name}}")
        tid = self.tpl("--name", "Welcome", "--subject", "Hello {{Name}} {{nope}}",
                       "--html-file", html, "--text-file", text)
        value = "Ada <&> \"Q\" 'x'"
        mid, rec = self.sent(templateId=tid, variables={
            "name": value, "link": "https://x.test/?a=1&b=2", "empty": "",
            "contact.first_name": "Grace"})
        self.assertEqual(rec["subject"], "Hello " + value + " {{nope}}")
        self.assertEqual(rec["html"],
                         "<p>Hi Ada &lt;&amp;&gt; &quot;Q&quot; &#39;x&#39;</p>"
                         "<p>your team</p><p>{{unknown}} {{ Unknown2 }}</p>"
                         '<a href="https://x.test/?a=1&amp;b=2">go</a>'
                         "<p>[] [<i>E</i>]</p>")
        self.assertEqual(rec["text"], "Hi " + value + ", your team {{unknown}} E Grace")
        # The built message carries the rendered parts.
        raw = self.srv.cli("outbox", "raw", mid).stdout
        self.assertIn("Subject: Hello Ada", raw)
        self.assertIn("Hi Ada", raw)
        self.assertNotIn("{{Name}}", raw)

    def test_template_parts_and_message_parts(self):
        # No subject and no text in the template: the message's own are used
        # (and rendered); the template's html replaces the message's.
        tid = self.tpl("--name", "No subject", "--html", "<b>{{x}}</b>")
        _, rec = self.sent(templateId=tid, subject="Own {{x}}", text="t {{x}}",
                           html="<i>ignored</i>", variables={"x": "1<2"})
        self.assertEqual((rec["subject"], rec["html"], rec["text"]),
                         ("Own 1<2", "<b>1&lt;2</b>", "t 1<2"))
        # No template, only variables: the message's parts are rendered.
        _, rec = self.sent(subject="S {{x}}", html="<p>{{x}} {{y,fallback=F}}</p>",
                           variables={"x": "<b>"})
        self.assertEqual((rec["subject"], rec["html"]), ("S <b>", "<p>&lt;b&gt; F</p>"))
        # Neither: placeholders are left alone.
        _, rec = self.sent(subject="S {{x}}", html="<p>{{x,fallback=F}}</p>")
        self.assertEqual((rec["subject"], rec["html"]), ("S {{x}}", "<p>{{x,fallback=F}}</p>"))
        # A variable cannot break the subject header.
        tid = self.tpl("--name", "Header", "--subject", "A {{v}} B", "--text", "t")
        _, rec = self.sent(templateId=tid, variables={"v": "x\r\nBcc: evil@x.test"})
        self.assertEqual(rec["subject"], "A x  Bcc: evil@x.test B")

    # ---- refusals ---------------------------------------------------------

    def test_unknown_and_other_teams_template(self):
        theirs = self.tpl("--name", "Theirs", "--text", "x", team=self.other)
        for tid in ("nope", "0000000000000", theirs):
            r = self.send(400, templateId=tid)
            self.assertEqual(r.error["code"], "BAD_REQUEST", r)
            self.assertIn(f"Template not found: {tid}", r.error["message"], r)
        # The owner can use it.
        r = self.api.post("/api/v1/emails", {"to": "a@example.com", "from": "x@other.test",
                                             "templateId": theirs}, key=self.other_key)
        self.assertEqual(r.status, 200, r)

    def test_removed_before_due_time(self):
        tid = self.tpl("--name", "Short-lived", "--subject", "S", "--html", "<p>x</p>")
        mid = self.send(templateId=tid, scheduledAt=in_seconds(3)).body["emailId"]
        self.assertEqual(self.srv.status_of(mid), "SCHEDULED")
        out = self.srv.cli("templates", "rm", tid).stdout
        self.assertIn(f"removed template {tid}", out)
        self.srv.wait_status(mid, "RENDERING_FAILURE", timeout=20)
        e = self.api.get(f"/api/v1/emails/{mid}").body
        self.assertEqual(e["latestStatus"], "RENDERING_FAILURE")
        ev = [x for x in e["emailEvents"] if x["status"] == "RENDERING_FAILURE"]
        self.assertEqual(len(ev), 1, e)
        self.assertIn(f"template {tid} not found", ev[0]["data"]["error"])
        self.assertNotEqual(self.srv.cli("outbox", "show", mid, check=False).returncode, 0)

    def test_rendered_too_big(self):
        tid = self.tpl("--name", "Big", "--text", "{{v}}{{v}}{{v}}{{v}}")
        mid = self.send(templateId=tid, variables={"v": "x" * 20000}).body["emailId"]

        def failed():
            e = self.api.get(f"/api/v1/emails/{mid}").body
            return [x for x in e["emailEvents"] if x["status"] == "RENDERING_FAILURE"]
        ev = sphelp.wait_until(failed, 20, "a RENDERING_FAILURE event")
        self.assertIn("rendered message is larger than 65536 bytes", ev[0]["data"]["error"])
        self.assertEqual(ev[0]["data"]["plugin"], "render")
        # RENDERING_FAILURE ranks below QUEUED in useSend's precedence, but
        # the final outcome of a delivery attempt always shows
        # (docs/templates.md).
        self.assertEqual(self.srv.status_of(mid), "RENDERING_FAILURE")
        self.assertNotEqual(self.srv.cli("outbox", "show", mid, check=False).returncode, 0)
        # Three copies fit in 64K.
        self.tpl("--name", "Fits", "--text", "{{v}}{{v}}{{v}}")

    # ---- the CLI ----------------------------------------------------------

    def test_cli(self):
        cli = self.srv.cli
        team = str(self.team)
        tid = self.tpl("--name", "Listed", "--subject", "Subj", "--html", "<p>h</p>")
        out = cli("templates", "list", "--team", "acme").stdout.splitlines()
        self.assertEqual(out[0].split("\t"), ["ID", "TEAM", "NAME", "SUBJECT", "UPDATED"])
        row = [line.split("\t") for line in out[1:] if line.startswith(tid)]
        self.assertEqual(row[0][:4], [tid, team, "Listed", "Subj"])
        lst = json.loads(cli("templates", "list", "--team", team, "--json").stdout)
        mine = [t for t in lst if t["id"] == tid]
        self.assertEqual(len(mine), 1)
        self.assertEqual((mine[0]["name"], mine[0]["team"]), ("Listed", self.team))
        self.assertNotIn("html", mine[0])
        theirs = json.loads(cli("templates", "list", "--team", "other", "--json").stdout)
        self.assertNotIn(tid, [t["id"] for t in theirs])
        self.assertNotIn(tid, cli("templates", "list", "--team", "other").stdout)
        # show: by id in any case, optionally within a team.
        shown = json.loads(cli("templates", "show", tid.upper(), "--json").stdout)
        self.assertEqual({k: shown[k] for k in ("id", "team", "name", "subject", "html", "text")},
                         {"id": tid, "team": self.team, "name": "Listed", "subject": "Subj",
                          "html": "<p>h</p>", "text": ""})
        self.assertGreater(shown["created_at"], 1.7e12)
        self.assertIn("<p>h</p>", cli("templates", "show", "--team", "acme", tid).stdout)
        r = cli("templates", "show", "--team", "other", tid, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no template", r.stderr)
        # update
        out = cli("templates", "update", tid, "--text", "plain {{a}}", "--subject", "").stdout
        self.assertIn(f"updated template {tid}", out)
        shown = json.loads(cli("templates", "show", tid, "--json").stdout)
        self.assertEqual((shown["subject"], shown["text"], shown["html"]),
                         ("", "plain {{a}}", "<p>h</p>"))
        self.assertGreaterEqual(shown["updated_at"], shown["created_at"])
        r = cli("templates", "update", tid, "--text", "", "--html", "", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs html or text", r.stderr)
        # refusals of add
        for args, msg in ((["--name", "x"], "needs html or text"),
                          (["--name", "", "--text", "t"], "--name"),
                          (["--name", "n" * 101, "--text", "t"], "--name"),
                          (["--name", "x", "--subject", "a\nb", "--text", "t"], "--subject"),
                          (["--name", "x", "--html-file", "/nonexistent"], "/nonexistent")):
            r = cli("templates", "add", "--team", team, *args, check=False)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertIn(msg, r.stderr)
        big = self.write("big.html", "x" * (1024 * 1024 + 1))
        r = cli("templates", "add", "--team", team, "--name", "x", "--html-file", big,
                check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("larger than", r.stderr)
        r = cli("templates", "add", "--team", "nope", "--name", "x", "--text", "t", check=False)
        self.assertIn("no team 'nope'", r.stderr)
        self.assertEqual(cli("templates", "list", check=False).returncode, 2)
        # rm
        self.assertIn(f"removed template {tid}", cli("templates", "rm", tid).stdout)
        r = cli("templates", "rm", tid, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"no template {tid}", r.stderr)
        r = cli("templates", "show", "not-an-id", check=False)
        self.assertIn("is not a template id", r.stderr)
        # A removed template is unknown to the API at once.
        r = self.send(400, templateId=tid)
        self.assertIn(tid, r.error["message"])


if __name__ == "__main__":
    unittest.main()
