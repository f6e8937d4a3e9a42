# SPDX-License-Identifier: Apache-2.0
"""Configuration and plugin errors at start-up: each stops the binary with
one line that names the file and the reason."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402


def run(*args, env=None):
    return subprocess.run([sphelp.BIN] + list(args), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env=env)


class ConfigTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sp-conf-")

    def write(self, text):
        p = os.path.join(self.tmp, "c.yaml")
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_default_config_is_valid(self):
        env = dict(os.environ, SP_PLUGIN_DIR=sphelp.PLUGIN_DIR)
        r = run("check-config", os.path.join(sphelp.SOURCE_DIR, "conf", "sendpipe.yaml"),
                env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ok", r.stdout)

    def test_unknown_key_names_file_line_col(self):
        p = self.write("data_dir: /tmp/x\nstore:\n  sync: true\n  syncc: false\n")
        r = run("check-config", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn(p + ":4:", r.stderr)
        self.assertIn("syncc", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_bad_yaml(self):
        p = self.write("data_dir: [unclosed\n")
        r = run("check-config", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn(p + ":", r.stderr)

    def test_missing_plugin_stops_start(self):
        p = self.write(f"data_dir: {self.tmp}/d\nplugin_dir: {self.tmp}\n"
                       "plugins:\n  - name: nosuch\n")
        r = run("serve", "-c", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn("nosuch", r.stderr)
        self.assertIn(os.path.join(self.tmp, "nosuch.so"), r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_plugin_config_checked(self):
        p = self.write(f"data_dir: {self.tmp}/d\nplugin_dir: {sphelp.PLUGIN_DIR}\n"
                       "plugins:\n  - name: event_log\n    config:\n      levl: info\n")
        r = run("check-config", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn("levl", r.stderr)
        self.assertIn(p + ":6:", r.stderr)
        p = self.write(f"data_dir: {self.tmp}/d\nplugin_dir: {sphelp.PLUGIN_DIR}\n"
                       "plugins:\n  - name: event_log\n    config:\n      level: loud\n")
        r = run("serve", "-c", p)
        self.assertEqual(r.returncode, 1)
        self.assertIn("event_log", r.stderr)
        self.assertIn("loud", r.stderr)

    def test_env_substitution(self):
        p = self.write("data_dir: ${SP_TEST_DD}\n")
        r = run("check-config", p, env=dict(os.environ, SP_TEST_DD=self.tmp + "/dd"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("check-config", p, env={k: v for k, v in os.environ.items()
                                        if k != "SP_TEST_DD"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("SP_TEST_DD", r.stderr)

    def test_cli_usage(self):
        self.assertEqual(run("version").returncode, 0)
        self.assertIn("sendpipe", run("version").stdout)
        r = run("nonsense")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
