// SPDX-License-Identifier: Apache-2.0
// Parses each message file named on the command line with mailparser and
// prints one JSON array: the fields tests/integration/test_mime.py compares
// with what was submitted (a second parser besides Python's email package).
import { readFile } from "node:fs/promises";
import { simpleParser } from "mailparser";

function addrs(a) {
  if (!a) return null;
  const list = Array.isArray(a) ? a : [a];
  return list.flatMap((x) => x.value).map((v) => ({ name: v.name, address: v.address }));
}

function headerValue(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return v;
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(headerValue);
  if (typeof v === "object" && "text" in v) return v.text;
  if (typeof v === "object" && "value" in v) return String(v.value);
  return JSON.stringify(v);
}

const out = [];
for (const file of process.argv.slice(2)) {
  const raw = await readFile(file);
  const m = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true,
                                      skipTextLinks: true, skipImageLinks: true });
  const headers = {};
  for (const [k, v] of m.headers) headers[k] = headerValue(v);
  out.push({
    subject: m.subject ?? null,
    from: addrs(m.from),
    to: addrs(m.to),
    cc: addrs(m.cc),
    bcc: addrs(m.bcc),
    replyTo: addrs(m.replyTo),
    messageId: m.messageId ?? null,
    inReplyTo: m.inReplyTo ?? null,
    references: m.references ?? null,
    date: m.date ? m.date.toISOString() : null,
    text: m.text ?? null,
    html: m.html === false ? null : m.html ?? null,
    attachments: m.attachments.map((a) => ({
      filename: a.filename ?? null,
      contentType: a.contentType,
      content: a.content.toString("base64"),
    })),
    headers,
  });
}
process.stdout.write(JSON.stringify(out));
