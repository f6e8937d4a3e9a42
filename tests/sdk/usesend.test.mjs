// SPDX-License-Identifier: Apache-2.0
// Every emails call of the official usesend-js SDK against sendpipe, with
// only the base URL changed.
import { test } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { UseSend } from "usesend-js";

import { base, from, inHours, isoRe, key, otherKey, waitStatus } from "./common.mjs";

const usesend = new UseSend(key, base);
const get = (id) => usesend.emails.get(id);

test("emails.send: queued, delivered, read back with every field", async () => {
  const { data, error } = await usesend.emails.send({
    to: ["sdk@example.com", "Second <two@example.com>"],
    from,
    subject: "From the SDK",
    html: "<p>Hello from the SDK</p>",
    text: "Hello from the SDK",
    cc: "cc@example.com",
    bcc: ["bcc@example.com"],
    replyTo: "reply@example.com",
    headers: { "X-Sdk": "usesend-js" },
  });
  assert.equal(error, null);
  assert.equal(typeof data.emailId, "string");
  const e = await waitStatus(get, data.emailId, "SENT");
  assert.equal(e.id, data.emailId);
  assert.deepEqual(e.to, ["sdk@example.com", "Second <two@example.com>"]);
  assert.deepEqual(e.cc, ["cc@example.com"]);
  assert.deepEqual(e.bcc, ["bcc@example.com"]);
  assert.deepEqual(e.replyTo, ["reply@example.com"]);
  assert.equal(e.from, from);
  assert.equal(e.subject, "From the SDK");
  assert.equal(e.html, "<p>Hello from the SDK</p>");
  assert.equal(e.text, "Hello from the SDK");
  assert.equal(e.scheduledAt, null);
  assert.match(e.createdAt, isoRe);
  assert.match(e.updatedAt, isoRe);
  assert.equal(typeof e.teamId, "number");
  const statuses = e.emailEvents.map((x) => x.status);
  assert.equal(statuses.at(-1), "SENT");
  const times = e.emailEvents.map((x) => x.createdAt);
  assert.deepEqual(times, [...times].sort());
});

test("emails.create renders a React element client-side", async () => {
  const { data, error } = await usesend.emails.create({
    to: "react@example.com",
    from,
    subject: "React",
    react: React.createElement("p", null, "rendered by react"),
  });
  assert.equal(error, null);
  const got = await get(data.emailId);
  assert.equal(got.error, null);
  assert.match(got.data.html, /rendered by react/);
});

test("emails.create with idempotencyKey: same id again, 409 for another payload", async () => {
  const k = `sdk-${Date.now()}`;
  const p = { to: "idem@example.com", from, subject: "Once", text: "once" };
  const a = await usesend.emails.create(p, { idempotencyKey: k });
  const b = await usesend.emails.create({ ...p }, { idempotencyKey: k });
  assert.equal(a.error, null);
  assert.deepEqual(b.data, a.data);
  const c = await usesend.emails.create({ ...p, text: "twice" }, { idempotencyKey: k });
  assert.equal(c.data, null);
  // The SDK hands back the whole body when it has error.code.
  assert.equal(c.error.error.code, "NOT_UNIQUE");
});

test("emails.batch: ids in request order", async () => {
  const { data, error } = await usesend.emails.batch(
    [1, 2, 3].map((i) => ({ to: `b${i}@example.com`, from, subject: `batch ${i}`, text: "b" })),
    { idempotencyKey: `batch-${Date.now()}` },
  );
  assert.equal(error, null);
  assert.equal(data.length, 3);
  for (const [i, x] of data.entries()) {
    const got = await get(x.emailId);
    assert.equal(got.data.subject, `batch ${i + 1}`);
  }
});

test("emails.update and emails.cancel on a scheduled email", async () => {
  const at = inHours(2);
  const sent = await usesend.emails.send({
    to: "later@example.com", from, subject: "Later", text: "later", scheduledAt: at,
  });
  assert.equal(sent.error, null);
  const id = sent.data.emailId;
  let got = await get(id);
  assert.equal(got.data.latestStatus, "SCHEDULED");
  assert.equal(got.data.scheduledAt, at);
  const later = inHours(4);
  const up = await usesend.emails.update(id, { scheduledAt: later });
  assert.deepEqual(up, { data: { emailId: id }, error: null });
  got = await get(id);
  assert.equal(got.data.scheduledAt, later);
  const cancelled = await usesend.emails.cancel(id);
  assert.deepEqual(cancelled, { data: { emailId: id }, error: null });
  got = await get(id);
  assert.equal(got.data.latestStatus, "CANCELLED");
  const again = await usesend.emails.cancel(id);
  assert.equal(again.error.error.code, "BAD_REQUEST");
  assert.equal(again.error.error.message, "Email already processed");
});

test("errors come back in the SDK's error field", async () => {
  const bad = await usesend.emails.send({ to: "x@example.com", from, subject: "no content" });
  assert.equal(bad.data, null);
  assert.equal(bad.error.error.code, "BAD_REQUEST");
  assert.match(bad.error.error.message, /Either text or html/);

  const missing = await get("0000000000000");
  assert.equal(missing.error.error.code, "NOT_FOUND");

  const wrongKey = new UseSend("us_0000000000_00000000000000000000000000000000", base);
  const denied = await wrongKey.emails.send({ to: "x@example.com", from, subject: "s", text: "t" });
  assert.equal(denied.error.error.code, "FORBIDDEN");
  assert.equal(denied.error.error.message, "Invalid API token");

  if (otherKey) {
    const mine = await usesend.emails.send({ to: "x@example.com", from, subject: "s", text: "t" });
    const other = new UseSend(otherKey, base);
    const peek = await other.emails.get(mine.data.emailId);
    assert.equal(peek.error.error.code, "NOT_FOUND");
  }
});
