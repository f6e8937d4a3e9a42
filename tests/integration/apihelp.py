# SPDX-License-Identifier: Apache-2.0
"""Helpers for the emails API tests: a sendpipe server with the HTTP
ingress and the api_usesend plugin, tenants made with the `sendpipe
teams|domains|keys` CLI, a small JSON HTTP client, and store counts through
`sendpipe messages list`."""
import http.client
import json
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
import sphelp  # noqa: E402

MULT = sphelp.MULT
TOKEN_RE = re.compile(r"^us_[0-9a-z]{10}_[0-9a-f]{32}$")


class ApiServer(sphelp.Server):
    """sphelp.Server with ingress_http and api_usesend. api_config and
    http_config are dicts of plugin settings written as YAML flow values."""

    def __init__(self, api_config=None, http_config=None, **kw):
        items = ", ".join(f"{k}: {v}" for k, v in (api_config or {}).items())
        extra = "  - name: api_usesend\n"
        if items:
            extra += f"    config: {{ {items} }}\n"
        super().__init__(extra_plugins=extra, http=True, http_config=http_config, **kw)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.http_port}"

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

    def key(self, team, permission="full", domain=None):
        args = ["keys", "create", "--team", str(team), "--permission", permission]
        if domain is not None:
            args += ["--domain", domain]
        out = self.cli(*args).stdout.splitlines()
        m = re.match(r"created API key (\d+) ", out[0])
        assert m and TOKEN_RE.match(out[-1]), out
        return int(m.group(1)), out[-1]

    def revoke(self, key_id):
        self.cli("keys", "revoke", str(key_id))

    # ---- the store ------------------------------------------------------

    def message_count(self):
        out = self.cli("messages", "list", "--limit", "1000000").stdout
        return len([l for l in out.splitlines() if l.strip()])

    def status_of(self, mid):
        return sphelp.status_name(self.status(mid))

    def wait_status(self, mid, want, timeout=30):
        return sphelp.wait_until(lambda: self.status_of(mid) == want, timeout,
                                 f"message {mid} to reach {want}")


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.raw = body
        try:
            self.body = json.loads(body) if body else None
        except ValueError:
            self.body = None

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def error(self):
        return (self.body or {}).get("error") or {}

    def __repr__(self):
        return f"<{self.status} {self.raw[:300]!r}>"


class Client:
    """JSON over http.client; one connection per request."""

    def __init__(self, port, key=None):
        self.port = port
        self.key = key

    def request(self, method, path, body=None, headers=None, key=None, raw=None):
        h = {}
        k = key if key is not None else self.key
        if k:
            h["Authorization"] = f"Bearer {k}"
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
            h["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30 * MULT)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            payload = r.read()
            hdrs = {n.lower(): v for n, v in r.getheaders()}
            return Resp(r.status, hdrs, payload.decode("utf-8", "replace"))
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)


def pipelined(port, requests, timeout=30):
    """Send several raw HTTP/1.1 requests in one write on one connection and
    return the status lines and bodies of the answers, in order."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.settimeout(timeout * MULT)
    s.sendall(b"".join(requests))
    buf = b""
    out = []
    try:
        while len(out) < len(requests):
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            clen = 0
            for line in lines[1:]:
                n, _, v = line.partition(":")
                if n.strip().lower() == "content-length":
                    clen = int(v.strip())
            while len(buf) < clen:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            body, buf = buf[:clen], buf[clen:]
            out.append((status, json.loads(body) if body else None))
    finally:
        s.close()
    return out


def raw_post(path, key, body, extra_headers=""):
    data = body if isinstance(body, bytes) else body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"{extra_headers}\r\n").encode() + data
