-- SPDX-License-Identifier: Apache-2.0
-- wrk script for bench/egress: POST one email of about SP_BENCH_SIZE bytes of
-- text, all scheduled for the same instant SP_BENCH_AT (ISO 8601), so the
-- queue fills during the ingest run and drains at once afterwards.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SP_BENCH_KEY")
local size = tonumber(os.getenv("SP_BENCH_SIZE") or "1000")
local line = string.rep("lorem ipsum dolor sit amet ", 3) .. "\\n"
local text = string.rep(line, math.floor(size / 82) + 1):sub(1, size)
wrk.body = '{"from":"Bench <bench@example.com>","to":["sink@example.net"],' ..
    '"subject":"egress benchmark","text":"' .. text .. '","scheduledAt":"' ..
    os.getenv("SP_BENCH_AT") .. '"}'
