// SPDX-License-Identifier: Apache-2.0
// Settings shared by the SDK tests: the server, key and sender the Python
// integration test (tests/integration/test_api_emails.py) passes in.
export const base = process.env.SP_API_BASE;
export const key = process.env.SP_API_KEY;
export const otherKey = process.env.SP_API_OTHER_KEY;
export const from = process.env.SP_API_FROM;
export const mult = Number(process.env.SP_TEST_TIMEOUT_MULTIPLIER || "1");
export const isoRe = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

if (!base || !key || !from) {
  throw new Error("SP_API_BASE, SP_API_KEY and SP_API_FROM must be set");
}

export function inHours(h) {
  return new Date(Date.now() + h * 3600 * 1000).toISOString();
}

// Poll get(id) until latestStatus is `want`; fail after the timeout.
export async function waitStatus(get, id, want, ms = 30000 * mult) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await get(id);
    if (last.data && last.data.latestStatus === want) {
      return last.data;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`email ${id} did not reach ${want}: ${JSON.stringify(last)}`);
}
