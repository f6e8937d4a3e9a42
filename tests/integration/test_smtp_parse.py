# SPDX-License-Identifier: Apache-2.0
"""MIME parsing of the SMTP ingress runs on a pool thread: while a 9 MiB
message is parsed, other sessions get their greeting and a NOOP answer
without waiting for it, and the big message is then stored."""
import os
import select
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import smtphelp  # noqa: E402
import sphelp  # noqa: E402

MULT = sphelp.MULT


def big_message(size):
    """A message of about size bytes made of parts with many headers each:
    GMime's work (every part and header is an object) is large, the record
    small (the part headers are not kept, each part is an empty attachment)."""
    head = (b"From: big@acme.test\r\nTo: r@example.com\r\nSubject: big\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n")
    part = (b"--b\r\nContent-Type: application/octet-stream\r\n"
            + b"".join(b"X-Pad-%d: =?utf-8?q?caf=C3=A9?= padding padding\r\n" % i
                       for i in range(40)) + b"\r\n\r\n")
    return head + part * ((size - len(head)) // len(part)) + b"--b--\r\n"


class SmtpParseTest(unittest.TestCase):

    def test_other_sessions_served_while_a_big_message_is_parsed(self):
        srv = smtphelp.SmtpServer(sync=False, smtp_config={
            "trusted_networks": '"127.0.0.0/8"', "trusted_team": "TEAM_ID",
            "max_message_size": "10M"})
        team = srv.team("acme")
        srv.domain(team, "acme.test")
        with open(srv.conf) as f:
            conf = f.read()
        with open(srv.conf, "w") as f:
            f.write(conf.replace("trusted_team: TEAM_ID", "trusted_team: %d" % team))
        srv.start()
        try:
            body = big_message(9 * 1024 * 1024)
            self.assertGreater(len(body), 9 * 1024 * 1024 - 4096)
            a = smtphelp.Raw(srv.smtp_port)
            self.assertTrue(a.cmd("EHLO a.test").startswith("250 "))
            self.assertTrue(a.cmd("MAIL FROM:<big@acme.test>").startswith("250 "))
            self.assertTrue(a.cmd("RCPT TO:<r@example.com>").startswith("250 "))
            self.assertTrue(a.cmd("DATA").startswith("354 "))
            a.send(body + b".\r\n")
            t_end = time.monotonic()
            # Until the big message is answered, new sessions keep coming:
            # each must get its greeting and a NOOP answer at once, also
            # while the message is being parsed.
            worst, n = 0.0, 0
            while not select.select([a.sock], [], [], 0)[0]:
                t0 = time.monotonic()
                b = smtphelp.Raw(srv.smtp_port)
                self.assertTrue(b.greeting.startswith("220 "), b.greeting)
                self.assertTrue(b.cmd("NOOP").startswith("250 "))
                worst = max(worst, time.monotonic() - t0)
                n += 1
                b.close()
            a_reply = a.reply()
            t_a = time.monotonic() - t_end
            self.assertTrue(a_reply.startswith("250 2.0.0 "), a_reply)
            # No session waited anywhere near as long as the big message:
            # parsing did not hold the loop.
            self.assertGreater(n, 0)
            self.assertLess(worst, t_a / 4, "worst session %.3fs of %d, big message %.3fs"
                            % (worst, n, t_a))
            self.assertTrue(a.cmd("NOOP").startswith("250 "))
            a.close()
            rec = srv.record(smtphelp.ID_RE.match(a_reply).group(1))
            self.assertEqual(rec["subject"], "big")
            self.assertEqual(rec["text"], "café")
            self.assertGreater(len(rec["attachment_names"]), 1000)
        finally:
            rc = srv.stop()
            shutil.rmtree(srv.tmp, ignore_errors=True)
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
