// SPDX-License-Identifier: Apache-2.0
// A webhook receiver for the integration tests: every POST is checked with
// the usesend-js SDK's own verification (new Webhooks(secret).constructEvent)
// and recorded as one JSON line appended to --out:
//   {path, verified, error?, status, event?, headers: {...}}
// Secrets and the answer status are set at run time through
//   POST /__config {"secrets": {"/path": "whsec_..."}, "status": 500}
// (merged into the current settings, which are also saved beside --out so a
// restarted receiver keeps them). Usage:
//   node webhook_receiver.mjs --port N --out FILE
import { createServer } from "node:http";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { Webhooks } from "usesend-js";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const port = Number(args.port);
const out = args.out;
const stateFile = `${out}.config.json`;
if (!port || !out) {
  console.error("usage: node webhook_receiver.mjs --port N --out FILE");
  process.exit(2);
}

let config = { secrets: {}, status: 200 };
if (existsSync(stateFile)) {
  config = JSON.parse(readFileSync(stateFile, "utf8"));
}

function record(entry) {
  appendFileSync(out, JSON.stringify(entry) + "\n");
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    if (req.url === "/__config" && req.method === "POST") {
      const c = JSON.parse(body);
      config = {
        secrets: { ...config.secrets, ...(c.secrets || {}) },
        status: c.status ?? config.status,
      };
      writeFileSync(stateFile, JSON.stringify(config));
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(config));
      return;
    }
    const secret = config.secrets[req.url];
    const entry = {
      path: req.url,
      method: req.method,
      verified: false,
      headers: {
        contentType: req.headers["content-type"],
        userAgent: req.headers["user-agent"],
        event: req.headers["x-usesend-event"],
        call: req.headers["x-usesend-call"],
        timestamp: req.headers["x-usesend-timestamp"],
        signature: req.headers["x-usesend-signature"],
        retry: req.headers["x-usesend-retry"],
      },
      body,
    };
    let status = config.status;
    try {
      if (!secret) throw new Error(`no secret for ${req.url}`);
      entry.event = new Webhooks(secret).constructEvent(body, { headers: req.headers });
      entry.verified = true;
    } catch (e) {
      entry.error = e.code || e.message;
      status = 401;
    }
    entry.status = status;
    record(entry);
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ ok: status < 300, note: "x".repeat(status >= 500 ? 5000 : 0) }));
  });
});

server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${port}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
