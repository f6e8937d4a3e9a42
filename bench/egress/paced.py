#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Open-loop paced sender for bench/egress: POST /api/v1/emails at a fixed
rate from several keep-alive connections, then read every message back and
report end-to-end latency: from the message's creation (the API accept) to
its SENT event (the relay's 250 after DATA, i.e. the message is at the sink).

usage: paced.py BASE KEY RATE SECONDS BODY_BYTES
prints one line: "sent N failed F p50_ms P50 p99_ms P99 max_ms MAX accept_p99_ms A"
"""
import calendar
import http.client
import json
import sys
import threading
import time
import urllib.parse


def main():
    base, key, rate, seconds, size = sys.argv[1], sys.argv[2], float(sys.argv[3]), \
        float(sys.argv[4]), int(sys.argv[5])
    u = urllib.parse.urlparse(base)
    nthreads = 16
    body = json.dumps({"from": "Bench <bench@example.com>", "to": ["sink@example.net"],
                       "subject": "latency", "text": "x" * size}).encode()
    hdr = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    ids, accept_ms, failed = [], [], [0]
    lock = threading.Lock()
    start = time.monotonic() + 0.2
    total = int(rate * seconds)

    def worker(k):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        i = k
        while i < total:
            due = start + i / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            t0 = time.monotonic()
            try:
                conn.request("POST", "/api/v1/emails", body, hdr)
                r = conn.getresponse()
                data = r.read()
                ok = r.status == 200
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                ok = False
            with lock:
                if ok:
                    ids.append(json.loads(data)["emailId"])
                    accept_ms.append((time.monotonic() - t0) * 1000)
                else:
                    failed[0] += 1
            i += nthreads
        conn.close()

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - start

    # Read back: creation time and SENT event time of every message.
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    lat = []
    deadline = time.monotonic() + 60
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        left = []
        for mid in pending:
            conn.request("GET", "/api/v1/emails/" + mid, headers=hdr)
            r = conn.getresponse()
            e = json.loads(r.read())
            sent = [ev for ev in e.get("emailEvents", []) if ev.get("status") == "SENT"]
            if not sent:
                left.append(mid)
                continue
            created = iso_ms(e["createdAt"])
            lat.append(iso_ms(sent[0]["createdAt"]) - created)
        pending = left
        if pending:
            time.sleep(0.5)
    lat.sort()
    accept_ms.sort()

    def pct(v, p):
        return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")

    print("sent %d failed %d unsent %d offered_per_s %.0f p50_ms %.1f p99_ms %.1f max_ms %.1f "
          "accept_p99_ms %.1f" % (len(ids), failed[0], len(pending), total / elapsed,
                                   pct(lat, 0.5), pct(lat, 0.99), lat[-1] if lat else float("nan"),
                                   pct(accept_ms, 0.99)))


def iso_ms(s):
    # "2026-11-25T04:50:01.123Z"
    t = time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")
    ms = int(s[20:23]) if len(s) > 20 and s[19] == "." else 0
    return calendar.timegm(t) * 1000 + ms


if __name__ == "__main__":
    main()
