# SPDX-License-Identifier: Apache-2.0
"""Teams, API keys and domains through the real binary's CLI: the whole
life of a key (created and shown once, listed by its partial token only,
revoked), domains (add, verify, remove, refusals), error exit codes, and the
CLI writing to the store while a server runs on the same data directory."""
import os
import re
import shutil
import stat
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402

TOKEN_RE = re.compile(r"^us_[0-9a-z]{10}_[0-9a-f]{32}$")


def rows(out):
    """Tab-separated listing without its header line."""
    lines = [l for l in out.splitlines() if l.strip()]
    return [l.split("\t") for l in lines[1:]]


class TenancyCliTest(unittest.TestCase):
    def setUp(self):
        self.srv = sphelp.Server()

    def tearDown(self):
        if self.srv.proc is not None and self.srv.proc.poll() is None:
            self.srv.kill()
        shutil.rmtree(self.srv.tmp, ignore_errors=True)

    def cli(self, *args):
        return self.srv.cli(*args, check=False)

    def ok(self, *args):
        r = self.cli(*args)
        self.assertEqual(r.returncode, 0, "%s: %s" % (args, r.stderr))
        return r.stdout

    def fails(self, code, *args, match=None):
        r = self.cli(*args)
        self.assertEqual(r.returncode, code, "%s: %s%s" % (args, r.stdout, r.stderr))
        if match:
            self.assertRegex(r.stderr, match)
        return r

    def create_key(self, *args):
        out = self.ok("keys", "create", *args)
        lines = out.splitlines()
        m = re.match(r"created API key (\d+) ", lines[0])
        self.assertIsNotNone(m, out)
        self.assertRegex(lines[-1], TOKEN_RE)
        return int(m.group(1)), lines[-1]

    def test_end_to_end(self):
        self.assertIn("created team 1 (acme)", self.ok("teams", "create", "acme"))
        self.fails(1, "teams", "create", "ACME", match="already exists")
        self.fails(1, "teams", "create", "42", match="invalid team name")
        self.assertIn("created team 2 (other)", self.ok("teams", "create", "other"))
        teams = rows(self.ok("teams", "list"))
        self.assertEqual([t[:2] for t in teams], [["1", "acme"], ["2", "other"]])

        # Domains: normalised, unique across teams, validated.
        self.assertIn("status PENDING",
                      self.ok("domains", "add", "--team", "acme", "Example.COM"))
        self.fails(1, "domains", "add", "--team", "other", "example.com",
                   match="already exists")
        self.fails(1, "domains", "add", "--team", "nobody", "x.com", match="no team 'nobody'")
        self.fails(1, "domains", "add", "--team", "9", "x.com", match="no team")
        for bad in ("bad_name.com", "com", "x-.com", "a..com", "1.2.3.4", "x" * 64 + ".com"):
            self.fails(1, "domains", "add", "--team", "acme", bad, match="not a valid domain")
        self.fails(2, "domains", "add", "x.com")  # --team is required
        self.fails(1, "domains", "add", "--team", "acme", "--region", "EU WEST", "y.com",
                   match="region")
        self.assertIn("status SUCCESS", self.ok("domains", "add", "--team", "2", "--verified",
                                                "--region", "eu-west-1", "other.org"))
        doms = rows(self.ok("domains", "list"))
        self.assertEqual([d[1:5] for d in doms],
                         [["1", "example.com", "PENDING", "us-east-1"],
                          ["2", "other.org", "SUCCESS", "eu-west-1"]])
        self.assertEqual(len(rows(self.ok("domains", "list", "--team", "other"))), 1)

        # Keys: printed once, in the documented format.
        kid, tok = self.create_key("--team", "acme", "--name", "ci")
        kid2, tok2 = self.create_key("--team", "1", "--permission", "sending", "--domain",
                                     "EXAMPLE.com")
        self.assertEqual((kid, kid2), (1, 2))
        self.assertNotEqual(tok, tok2)
        self.fails(2, "keys", "create", "--team", "acme", "--permission", "admin")
        self.fails(1, "keys", "create", "--team", "acme", "--domain", "other.org",
                   match="not a domain of team")
        self.fails(1, "keys", "create", "--team", "ghost", match="no team")
        self.fails(2, "keys", "create")

        out = self.ok("keys", "list")
        keys = rows(out)
        self.assertEqual(len(keys), 2)
        self.assertEqual(keys[0][:6], ["1", "1", "ci", tok[:6] + "..." + tok[-3:], "FULL", "*"])
        self.assertEqual(keys[1][:6], ["2", "1", "-", tok2[:6] + "..." + tok2[-3:], "SENDING",
                                       "example.com"])
        self.assertEqual([k[7] for k in keys], ["active", "active"])
        # Never the key, its secret, or anything hash-like.
        for t in (tok, tok2):
            self.assertNotIn(t, out)
            self.assertNotIn(t.split("_")[2], out)
            self.assertNotIn(t.split("_")[2][:12], out)
        self.assertIsNone(re.search(r"[0-9a-f]{16}", out))
        self.assertEqual(len(rows(self.ok("keys", "list", "--team", "other"))), 0)
        self.fails(1, "keys", "list", "--team", "ghost", match="no team")

        # The server key: one file, private, 32 bytes.
        path = os.path.join(self.srv.data, "keys.secret")
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_size, 32)
        with open(path, "rb") as f:
            secret = f.read()
        self.create_key("--team", "other")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), secret, "the server key is reused")

        # A domain with keys limited to it is not removed behind their back.
        self.fails(1, "domains", "rm", "example.com", match=r"restricted to it \(2\)")
        self.assertIn("revoked API key 2", self.ok("keys", "revoke", "2"))
        self.assertIn("already revoked", self.ok("keys", "revoke", "2"))
        self.fails(1, "keys", "revoke", "999", match="no API key 999")
        self.fails(1, "keys", "revoke", "abc", match="not a key id")
        keys = rows(self.ok("keys", "list", "--team", "acme"))
        self.assertTrue(keys[1][7].startswith("revoked "), keys[1])
        self.assertIn("removed domain 1 example.com", self.ok("domains", "rm", "example.com"))
        self.fails(1, "domains", "rm", "example.com", match="no domain")
        # The revoked key's listing still names what it was limited to.
        self.assertIn("(removed domain 1)", self.ok("keys", "list"))

        # Manual verification.
        self.ok("domains", "add", "--team", "acme", "mail.acme.test")
        self.assertIn("marked verified", self.ok("domains", "verify", "MAIL.acme.test"))
        doms = {d[2]: d[3] for d in rows(self.ok("domains", "list", "--team", "acme"))}
        self.assertEqual(doms, {"mail.acme.test": "SUCCESS"})
        self.assertIn("marked verified", self.ok("domains", "verify", "3"))
        self.fails(1, "domains", "verify", "nope.test", match="no domain")

        # Usage errors exit 2.
        self.fails(2, "keys")
        self.fails(2, "teams", "bogus")
        self.fails(2, "keys", "list", "--region", "x")
        self.fails(2, "keys", "list", "--bogus", match="unknown option")
        self.fails(2, "keys", "revoke")
        self.fails(2, "teams", "create")
        self.fails(2, "teams", "create", "a", "b")
        self.assertEqual(self.cli("keys", "--help").returncode, 0)

    def test_cli_beside_running_server(self):
        """The CLI is a second writer on the environment the server has open:
        both make progress, neither loses the other's writes."""
        self.srv.start()
        results = []

        def submit():
            c = sphelp.Client(self.srv.port)
            for i in range(30):
                results.append(c.send(subject=f"m{i}"))
            c.close()

        t = threading.Thread(target=submit)
        t.start()
        self.ok("teams", "create", "live")
        tokens = set()
        for i in range(5):
            self.ok("domains", "add", "--team", "live", f"d{i}.example")
            tokens.add(self.create_key("--team", "live", "--domain", f"d{i}.example")[1])
        t.join(60 * sphelp.MULT)
        self.assertEqual(len(results), 30)
        self.assertTrue(all(r.startswith("OK ") for r in results), results)
        self.assertEqual(len(tokens), 5)
        self.assertEqual(len(rows(self.ok("keys", "list", "--team", "live"))), 5)
        self.ok("keys", "revoke", "3")
        self.ok("domains", "verify", "d0.example")
        # The server keeps delivering what it accepted.
        for r in results:
            mid = r[3:]
            sphelp.wait_until(lambda: sphelp.status_name(self.srv.status(mid)) == "SENT", 20,
                              f"{mid} SENT")
        self.assertEqual(self.srv.stop(), 0)
        # Everything is there after the server is gone, and after a restart.
        self.srv.start()
        keys = rows(self.ok("keys", "list"))
        self.assertEqual(len(keys), 5)
        self.assertTrue(keys[2][7].startswith("revoked"))
        doms = {d[2]: d[3] for d in rows(self.ok("domains", "list"))}
        self.assertEqual(doms["d0.example"], "SUCCESS")
        self.assertEqual(self.srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()
