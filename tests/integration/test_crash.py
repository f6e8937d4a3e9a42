# SPDX-License-Identifier: Apache-2.0
"""Crash test: many clients submit through the real binary; it is killed
with SIGKILL mid-stream; after a restart every acknowledged message must be
in the store and reach its final state (SENT through the outbox)."""
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402


class CrashTest(unittest.TestCase):
    def test_sigkill_loses_nothing_acknowledged(self):
        srv = sphelp.Server().start()
        acked = []
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def client(n):
            try:
                c = sphelp.Client(srv.port)
            except OSError as e:
                errors.append(e)
                return
            i = 0
            while not stop.is_set():
                try:
                    ans = c.send(subject=f"crash-{n}-{i}")
                except (OSError, ConnectionError):
                    break  # the server died: an unanswered command is not acknowledged
                if ans.startswith("OK "):
                    with lock:
                        acked.append(ans[3:])
                i += 1
            c.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        # Kill mid-stream once a good number of messages were acknowledged.
        sphelp.wait_until(lambda: len(acked) >= 1000, 60, "1000 acknowledgements")
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        srv.proc.stdout.close()
        srv.proc.stderr.close()
        self.assertFalse(errors)
        self.assertGreaterEqual(len(acked), 1000)
        self.assertEqual(len(acked), len(set(acked)), "ids are unique")

        # Before restart: every acknowledged id is in the store.
        listed = srv.cli("messages", "list", "--limit", "1000000").stdout
        ids = {line.split("\t")[0] for line in listed.splitlines()}
        missing = [a for a in acked if a not in ids]
        self.assertEqual(missing, [], "acknowledged but missing after SIGKILL")

        # Restart: the queue survives and everything reaches SENT.
        srv.start()

        def all_sent():
            out = srv.cli("messages", "list", "--limit", "1000000").stdout
            st = {}
            for line in out.splitlines():
                f = line.split("\t")
                st[f[0]] = f[1]
            return all(st.get(a) == "SENT" for a in acked)
        sphelp.wait_until(all_sent, 60, "every acknowledged message to be SENT")
        outbox = srv.cli("outbox", "list", "--limit", "1000000").stdout
        in_outbox = {line.split("\t")[0] for line in outbox.splitlines()}
        self.assertEqual([a for a in acked if a not in in_outbox], [])
        # New ids after the restart sort after the old ones.
        c = sphelp.Client(srv.port)
        ans = c.send(subject="after-restart")
        c.close()
        self.assertTrue(ans.startswith("OK "), ans)
        self.assertGreater(ans[3:], max(acked))
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
