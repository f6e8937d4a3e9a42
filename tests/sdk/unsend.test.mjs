// SPDX-License-Identifier: Apache-2.0
// The legacy `unsend` package (before the rebrand) against sendpipe.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Unsend } from "unsend";

import { base, from, inHours, key, waitStatus } from "./common.mjs";

const unsend = new Unsend(key, base);
const get = (id) => unsend.emails.get(id);

test("unsend emails.send reaches SENT", async () => {
  const { data, error } = await unsend.emails.send({
    to: "legacy@example.com", from, subject: "Legacy", html: "<b>old sdk</b>",
  });
  assert.equal(error, null);
  const e = await waitStatus(get, data.emailId, "SENT");
  assert.equal(e.subject, "Legacy");
  assert.deepEqual(e.to, ["legacy@example.com"]);
});

test("unsend batch, update and cancel", async () => {
  const b = await unsend.emails.batch([
    { to: "l1@example.com", from, subject: "l1", text: "1" },
    { to: "l2@example.com", from, subject: "l2", text: "2", scheduledAt: inHours(1) },
  ]);
  assert.equal(b.error, null);
  assert.equal(b.data.length, 2);
  const id = b.data[1].emailId;
  const up = await unsend.emails.update(id, { scheduledAt: inHours(3) });
  assert.deepEqual(up.data, { emailId: id });
  const c = await unsend.emails.cancel(id);
  assert.deepEqual(c.data, { emailId: id });
  const bad = await unsend.emails.send({
    to: "x@example.com", from: "nobody", subject: "s", text: "t",
  });
  assert.equal(bad.error.error.code, "BAD_REQUEST");
  assert.equal(bad.error.error.message, "From email is invalid");
});
