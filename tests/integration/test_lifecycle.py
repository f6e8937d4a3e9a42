# SPDX-License-Identifier: Apache-2.0
"""Lifecycle of the real binary: submit and deliver through the default
pipeline, scheduled messages, SIGHUP, SIGTERM drain with exit 0, restart on
the same data, hot backup."""
import json
import os
import shutil
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.srv = sphelp.Server().start()

    def tearDown(self):
        if self.srv.proc.poll() is None:
            self.srv.kill()
        shutil.rmtree(self.srv.tmp, ignore_errors=True)

    def sent(self, mid):
        return sphelp.status_name(self.srv.status(mid)) == "SENT"

    def test_submit_deliver_events(self):
        c = sphelp.Client(self.srv.port)
        ids = []
        for i in range(20):
            ans = c.send(subject=f"hello {i}")
            self.assertRegex(ans, r"^OK [0-9a-z]{13}$")
            ids.append(ans[3:])
        self.assertEqual(ids, sorted(ids), "ids are time-ordered")
        for mid in ids:
            sphelp.wait_until(lambda: self.sent(mid), 20, f"{mid} SENT")
        m = self.srv.message(ids[0])
        self.assertEqual(m["record"]["subject"], "hello 0")
        self.assertEqual(m["record"]["provider_id"], "outbox-" + ids[0])
        self.assertEqual([e["status"] for e in m["events"]], ["QUEUED", "SENT"])
        out = json.loads(self.srv.cli("outbox", "show", ids[3]).stdout)
        self.assertEqual(out["subject"], "hello 3")
        self.assertEqual(out["to"], ["b@example.com"])
        # The event_log plugin logged each status change.
        logs = self.srv.log_lines()
        ev = [l for l in logs if l.get("plugin") == "event_log" and ids[0] in l["msg"]]
        self.assertEqual(len(ev), 2, ev)
        self.assertTrue(all(set(("time", "level", "msg")) <= set(l) for l in logs))
        # Bad command answered, connection still usable.
        self.assertTrue(c.cmd("BOGUS").startswith("ERR 400"))
        self.assertTrue(c.send().startswith("OK "))
        c.close()

    def test_scheduled_message_waits(self):
        c = sphelp.Client(self.srv.port)
        ans = c.cmd("SCHED 1500 a@example.com b@example.com later")
        c.close()
        self.assertTrue(ans.startswith("OK "), ans)
        mid = ans[3:]
        self.assertEqual(sphelp.status_name(self.srv.status(mid)), "SCHEDULED")
        sphelp.wait_until(lambda: self.sent(mid), 20, "scheduled message SENT")
        ev = self.srv.message(mid)["events"]
        self.assertEqual([e["status"] for e in ev], ["SCHEDULED", "SENT"])
        self.assertGreaterEqual(ev[1]["time"] - ev[0]["time"], 1400)

    def test_scheduled_survives_restart(self):
        c = sphelp.Client(self.srv.port)
        ans = c.cmd("SCHED 2000 a@example.com b@example.com restart")
        c.close()
        mid = ans[3:]
        self.assertEqual(self.srv.stop(), 0)
        self.assertEqual(sphelp.status_name(self.srv.status(mid)), "SCHEDULED")
        self.srv.start()
        sphelp.wait_until(lambda: self.sent(mid), 20, "scheduled message SENT after restart")

    def test_sighup_and_sigterm(self):
        os.rename(self.srv.log, self.srv.log + ".1")
        self.srv.proc.send_signal(signal.SIGHUP)
        sphelp.wait_until(lambda: os.path.exists(self.srv.log), 10, "log reopened")
        c = sphelp.Client(self.srv.port)
        self.assertTrue(c.send().startswith("OK "))
        c.close()
        self.assertEqual(self.srv.stop(signal.SIGTERM), 0)
        msgs = [l["msg"] for l in self.srv.log_lines()]
        self.assertTrue(any("SIGHUP" in m for m in msgs), msgs)
        self.assertTrue(any("stopped" in m for m in msgs), msgs)

    def test_backup_while_running(self):
        c = sphelp.Client(self.srv.port)
        ids = [c.send(subject=f"b{i}")[3:] for i in range(10)]
        c.close()
        dest = tempfile.mkdtemp(prefix="sp-backup-")
        os.rmdir(dest)
        r = self.srv.cli("backup", dest)
        self.assertIn("written", r.stdout)
        conf = os.path.join(self.srv.tmp, "backup.yaml")
        with open(conf, "w") as f:
            f.write(f"data_dir: {dest}\nplugin_dir: {sphelp.PLUGIN_DIR}\n")
        r = sphelp.subprocess.run([sphelp.BIN, "messages", "list", "-c", conf],
                                  capture_output=True, text=True, check=True)
        got = {line.split("\t")[0] for line in r.stdout.splitlines()}
        self.assertTrue(set(ids) <= got)
        # A second backup into a non-empty directory is refused.
        r = self.srv.cli("backup", dest, check=False)
        self.assertNotEqual(r.returncode, 0)
        shutil.rmtree(dest)


if __name__ == "__main__":
    unittest.main(verbosity=2)
