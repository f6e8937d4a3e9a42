#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Webhook delivery benchmark. sendpipe (Release build, ingress_http,
api_usesend, egress_outbox) gets MESSAGES emails through the API; each makes
two status changes (QUEUED, SENT), so every one of WEBHOOKS endpoints gets
2 x MESSAGES calls. All endpoints are paths of one receiver,
tests/sdk/webhook_receiver.mjs, which verifies every call with the usesend-js
SDK and appends it to a file. Rate = verified calls over the time from the
first submission to the last call received.

The peer in the same run is the receiver's own ceiling: wrk POSTing a
correctly signed body of the same size to it over as many connections as
there are webhooks (sendpipe keeps one call in flight per webhook).
Prints a Markdown table. Knobs (environment): BUILD_DIR (default
<repo>/build-bench), MESSAGES (default 500), WEBHOOKS ("1 8"), SYNC
("true false")."""
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build-bench"))
MESSAGES = int(os.environ.get("MESSAGES", "500"))
WEBHOOKS = [int(x) for x in os.environ.get("WEBHOOKS", "1 8").split()]
SYNCS = os.environ.get("SYNC", "true false").split()
SDK = os.path.join(ROOT, "tests", "sdk")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, what):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} does not listen on {port}")


def build():
    if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", BUILD, "-j2", "--target", "sendpipe", "ingress_http",
                    "api_usesend", "egress_outbox"], check=True, stdout=subprocess.DEVNULL)
    if not os.path.isdir(os.path.join(SDK, "node_modules", "usesend-js")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SDK, check=True,
                       stdout=subprocess.DEVNULL)
    if shutil.which("wrk") is None:
        sudo = [] if os.getuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                       stdout=subprocess.DEVNULL)


class Receiver:
    def __init__(self, tmp):
        self.port = free_port()
        self.out = os.path.join(tmp, "calls.jsonl")
        self.proc = subprocess.Popen(["node", os.path.join(SDK, "webhook_receiver.mjs"),
                                      "--port", str(self.port), "--out", self.out], cwd=SDK,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout.readline().startswith(b"listening")

    def configure(self, secrets):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/__config", method="POST",
                                     data=json.dumps({"secrets": secrets}).encode())
        urllib.request.urlopen(req, timeout=10).read()

    def count(self):
        if not os.path.exists(self.out):
            return 0, 0
        ok = bad = 0
        with open(self.out, "rb") as f:
            for line in f:
                if b'"verified":true' in line:
                    ok += 1
                else:
                    bad += 1
        return ok, bad

    def reset(self):
        if os.path.exists(self.out):
            os.unlink(self.out)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def sendpipe_run(tmp, rx, nwh, sync):
    data = os.path.join(tmp, f"data-{nwh}-{sync}")
    port = free_port()
    conf = os.path.join(tmp, f"sp-{nwh}-{sync}.yaml")
    with open(conf, "w") as f:
        f.write(f"""data_dir: {data}
plugin_dir: {BUILD}/plugins
log: {{ level: warn, file: {tmp}/sp.log }}
store: {{ sync: {sync} }}
webhooks: {{ timeout: 10s }}
plugins:
  - name: ingress_http
    config: {{ listen: "127.0.0.1:{port}" }}
  - name: api_usesend
    config: {{ rate_limit: 0 }}
  - name: egress_outbox
""")
    sp = [os.path.join(BUILD, "sendpipe")]

    def cli(*a):
        return subprocess.run(sp + list(a) + ["-c", conf], check=True, capture_output=True,
                              text=True).stdout
    cli("teams", "create", "bench")
    cli("domains", "add", "--team", "bench", "--verified", "bench.test")
    key = cli("keys", "create", "--team", "bench").splitlines()[-1]
    secrets = {}
    for i in range(nwh):
        out = cli("webhooks", "add", "--team", "bench", "--url",
                  f"http://127.0.0.1:{rx.port}/w{i}").splitlines()
        secrets[f"/w{i}"] = out[-1]
    rx.configure(secrets)
    rx.reset()
    proc = subprocess.Popen(sp + ["serve", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, "sendpipe")
    body = json.dumps({"from": "a@bench.test", "to": "b@example.com", "subject": "bench",
                       "text": "hello"})
    want = 2 * MESSAGES * nwh
    t0 = time.monotonic()

    def submit(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(n):
            c.request("POST", "/api/v1/emails", body, {"Authorization": f"Bearer {key}",
                                                        "Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
        c.close()
    threads = [threading.Thread(target=submit, args=(MESSAGES // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = 2 * (MESSAGES // 4) * 4 * nwh
    deadline = time.monotonic() + 600
    ok = bad = 0
    while time.monotonic() < deadline:
        ok, bad = rx.count()
        if ok >= want:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    proc.terminate()
    proc.wait(30)
    sample = None
    with open(rx.out) as f:
        sample = json.loads(f.readline())
    return ok, bad, want, elapsed, sample


def peer(tmp, rx, nwh, sample):
    """wrk posting a freshly signed copy of a real call to one path."""
    secret = "whsec_" + "ab" * 32
    rx.configure({"/peer": secret})
    body = sample["body"]
    ts = str(int(time.time() * 1000))
    sig = hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    lua = os.path.join(tmp, "peer.lua")
    with open(lua, "w") as f:
        f.write("wrk.method = 'POST'\nwrk.body = " + json.dumps(body) + "\n"
                "wrk.headers['Content-Type'] = 'application/json'\n"
                f"wrk.headers['X-UseSend-Timestamp'] = '{ts}'\n"
                f"wrk.headers['X-UseSend-Signature'] = 'v1={sig}'\n"
                "wrk.headers['X-UseSend-Event'] = 'email.sent'\n"
                "wrk.headers['X-UseSend-Call'] = '1'\n")
    rx.reset()
    out = subprocess.run(["wrk", "-t1", f"-c{nwh}", "-d5s", "-s", lua,
                          f"http://127.0.0.1:{rx.port}/peer"], capture_output=True, text=True,
                         check=True).stdout
    rate = float([ln for ln in out.splitlines() if ln.startswith("Requests/sec")][0].split()[1])
    ok, bad = rx.count()
    if bad:
        sys.exit(f"the peer's signed calls did not verify ({bad} refused)")
    return rate


def main():
    build()
    tmp = tempfile.mkdtemp(prefix="sp-bench-webhooks-")
    rx = Receiver(tmp)
    try:
        print(f"{MESSAGES} emails through the API (2 status changes each), receiver "
              "verifying with usesend-js; peer: wrk posting signed calls to the same receiver.")
        print()
        print("| webhooks | store.sync | calls | verified | sendpipe calls/s | receiver ceiling req/s | ratio |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for sync in SYNCS:
            for nwh in WEBHOOKS:
                ok, bad, want, elapsed, sample = sendpipe_run(tmp, rx, nwh, sync)
                ceiling = peer(tmp, rx, nwh, sample)
                rate = ok / elapsed
                print(f"| {nwh} | {sync} | {want} | {ok} | {rate:.0f} | {ceiling:.0f} | "
                      f"{rate / ceiling:.2f} |", flush=True)
                if ok < want or bad:
                    sys.exit(f"only {ok} of {want} calls verified ({bad} refused)")
    finally:
        rx.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
