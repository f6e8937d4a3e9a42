-- SPDX-License-Identifier: Apache-2.0
-- wrk script: POST a JSON body of about 1 KB, as an API client sending one
-- email would.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("SP_BENCH_KEY")
if key ~= nil and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
end
wrk.body = '{"from":"Bench <bench@example.com>","to":["sink@example.com"],' ..
    '"subject":"benchmark message","text":"' .. string.rep("lorem ipsum ", 80) .. '"}'
