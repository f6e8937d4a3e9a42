# SPDX-License-Identifier: Apache-2.0
"""Helpers for integration tests: start the real sendpipe binary on a
temporary data directory with a generated configuration, talk to the
test-only ingress_lines plugin over loopback TCP (and, with http=True, to the
ingress_http plugin and the test-only http_echo routes), read the store
through the sendpipe CLI."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

BIN = os.environ.get("SP_BIN", "build/sendpipe")
PLUGIN_DIR = os.environ.get("SP_PLUGIN_DIR", "build/plugins")
IT_PLUGIN_DIR = os.environ.get("SP_IT_PLUGIN_DIR", "build/tests/integration/plugins")
SOURCE_DIR = os.environ.get("SP_SOURCE_DIR", ".")
MULT = float(os.environ.get("SP_TEST_TIMEOUT_MULTIPLIER", "1"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout, what):
    """Poll pred() until true; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout * MULT
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Server:
    def __init__(self, extra_plugins="", sync=True, grace="10s", egress="egress_outbox",
                 tmp=None, http=False, http_config=None):
        """http=True adds the ingress_http plugin on a free loopback port
        (self.http_port) and the http_echo test routes; http_config is a dict
        of extra ingress_http settings (e.g. {"header_timeout": "1s"})."""
        self.tmp = tmp or tempfile.mkdtemp(prefix="sp-it-")
        self.data = os.path.join(self.tmp, "data")
        self.port = free_port()
        self.http_port = free_port() if http else None
        if http:
            cfg = {"listen": f'"127.0.0.1:{self.http_port}"'}
            cfg.update(http_config or {})
            items = ", ".join(f"{k}: {v}" for k, v in cfg.items())
            extra_plugins = (f"""  - name: ingress_http
    config: {{ {items} }}
  - name: http_echo
    path: {IT_PLUGIN_DIR}/http_echo.so
""" + extra_plugins)
        self.conf = os.path.join(self.tmp, "sendpipe.yaml")
        self.log = os.path.join(self.tmp, "sendpipe.log")
        self.proc = None
        with open(self.conf, "w") as f:
            f.write(f"""
data_dir: {self.data}
plugin_dir: {PLUGIN_DIR}
log: {{ level: debug, file: {self.log} }}
store: {{ sync: {"true" if sync else "false"} }}
scheduler: {{ concurrency: 32, retry_base: 200ms, retry_max: 2s, max_age: 1h }}
shutdown_grace: {grace}
plugins:
  - name: ingress_lines
    path: {IT_PLUGIN_DIR}/ingress_lines.so
    config: {{ port: {self.port} }}
  - name: event_log
{extra_plugins}
  - name: {egress}
""")

    def start(self):
        self.proc = subprocess.Popen([BIN, "serve", "-c", self.conf],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("sendpipe exited at start: %s" %
                                     self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                if self.http_port is not None:
                    socket.create_connection(("127.0.0.1", self.http_port), 0.2).close()
                return True
            except OSError:
                return False
        wait_until(up, 20, "the ingress port")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout * MULT)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def cli(self, *args, check=True):
        r = subprocess.run([BIN] + list(args) + ["-c", self.conf], capture_output=True,
                           text=True, timeout=60 * MULT, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError("sendpipe %s failed (%d): %s" % (args, r.returncode, r.stderr))
        return r

    def message(self, mid):
        r = self.cli("messages", "show", mid, check=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def status(self, mid):
        m = self.message(mid)
        if m is None:
            return None
        return m["record"].get("status")

    def log_lines(self):
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]


class Client:
    """One ingress_lines connection; each command waits for its answer."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.sock.settimeout(30 * MULT)
        self.buf = b""

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        ans, self.buf = self.buf.split(b"\n", 1)
        return ans.decode()

    def send(self, frm="a@example.com", to="b@example.com", subject="hello"):
        return self.cmd(f"SEND {frm} {to} {subject}")

    def close(self):
        self.sock.close()


# Status numbers as stored in the record (sp_status_t order).
STATUS = ["SCHEDULED", "CANCELLED", "RENDERING_FAILURE", "QUEUED", "SENT", "REJECTED",
          "DELIVERY_DELAYED", "DELIVERED", "BOUNCED", "OPENED", "CLICKED", "COMPLAINED",
          "FAILED", "SUPPRESSED"]


def status_name(v):
    return STATUS[v] if isinstance(v, int) and 0 <= v < len(STATUS) else v
