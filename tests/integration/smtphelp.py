# SPDX-License-Identifier: Apache-2.0
"""Helpers for the SMTP ingress tests: a sendpipe server with ingress_smtp
on free loopback ports (plain with STARTTLS, and implicit TLS), tenants made
with the CLI, smtplib clients that keep the server's last answer (the
message id), and a raw line client for protocol abuse."""
import os
import re
import smtplib
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402

MULT = sphelp.MULT
TOKEN_RE = re.compile(r"^us_[0-9a-z]{10}_[0-9a-f]{32}$")
ID_RE = re.compile(r"^250 2\.0\.0 ([0-9a-z]{13})$")


class SmtpServer(sphelp.Server):
    """sphelp.Server with ingress_smtp. smtp_config: extra plugin settings
    (dict of YAML flow values)."""

    def __init__(self, smtp_config=None, **kw):
        self.smtp_port = sphelp.free_port()
        self.smtps_port = sphelp.free_port()
        cfg = {"listen": f'"127.0.0.1:{self.smtp_port}"',
               "tls_listen": f'"127.0.0.1:{self.smtps_port}"',
               "hostname": "mx.sendpipe.test"}
        cfg.update(smtp_config or {})
        items = ", ".join(f"{k}: {v}" for k, v in cfg.items())
        extra = f"  - name: ingress_smtp\n    config: {{ {items} }}\n"
        super().__init__(extra_plugins=extra, **kw)

    def start(self):
        super().start()
        sphelp.wait_until(lambda: _connectable(self.smtp_port), 20, "the SMTP port")
        return self

    # ---- tenancy through the CLI ----------------------------------------

    def team(self, name):
        out = self.cli("teams", "create", name).stdout
        m = re.search(r"created team (\d+)", out)
        assert m, out
        return int(m.group(1))

    def domain(self, team, name, verified=True):
        args = ["domains", "add", "--team", str(team)]
        if verified:
            args.append("--verified")
        out = self.cli(*args, name).stdout
        m = re.search(r"added domain (\d+)", out)
        assert m, out
        return int(m.group(1))

    def key(self, team, domain=None):
        args = ["keys", "create", "--team", str(team)]
        if domain is not None:
            args += ["--domain", domain]
        out = self.cli(*args).stdout.splitlines()
        m = re.match(r"created API key (\d+) ", out[0])
        assert m and TOKEN_RE.match(out[-1]), out
        return int(m.group(1)), out[-1]

    def message_count(self):
        out = self.cli("messages", "list", "--limit", "1000000").stdout
        return len([ln for ln in out.splitlines() if ln.strip()])

    def record(self, mid):
        m = self.message(mid)
        assert m is not None, f"message {mid} not stored"
        return m["record"]


def _connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def client_ctx():
    """TLS client context for the self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Keep:
    """Mixin: remember the answer to DATA (it carries the message id)."""

    last_data = None

    def data(self, msg):
        code, text = super().data(msg)
        self.last_data = (code, text.decode("utf-8", "replace"))
        return code, text

    def last_id(self):
        code, text = self.last_data
        m = ID_RE.match(f"{code} {text}")
        assert m, self.last_data
        return m.group(1)


class SMTP(_Keep, smtplib.SMTP):
    pass


class SMTP_SSL(_Keep, smtplib.SMTP_SSL):
    pass


def smtp(port):
    return SMTP("127.0.0.1", port, timeout=30 * MULT)


def smtps(port):
    return SMTP_SSL("127.0.0.1", port, timeout=30 * MULT, context=client_ctx())


class Raw:
    """A line client over a plain socket (optionally switched to TLS)."""

    def __init__(self, port, tls=False, greeting=True):
        self.sock = socket.create_connection(("127.0.0.1", port), 10)
        self.sock.settimeout(30 * MULT)
        if tls:
            self.sock = client_ctx().wrap_socket(self.sock)
        self.buf = b""
        if greeting:
            self.greeting = self.reply()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed; have %r" % self.buf)
            self.buf += chunk
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln.decode("utf-8", "replace")

    def reply(self):
        """One whole reply (all its lines); returns the last line."""
        while True:
            ln = self.line()
            if len(ln) < 4 or ln[3] != "-":
                return ln

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.startswith("220"), r
        self.sock = client_ctx().wrap_socket(self.sock)
        return r

    def closed(self):
        """True if the server closed the connection (after any pending
        answers were read)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def json_bytes(b):
    """How `sendpipe messages show` renders bytes: valid UTF-8 as is, any
    other byte as the code point of its value."""
    return b.decode("utf-8", "surrogateescape").translate(
        {0xDC00 + i: i for i in range(0x80, 0x100)})
