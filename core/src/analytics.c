/* SPDX-License-Identifier: Apache-2.0 */
/* Daily and lifetime counters. */
#include "sp_core/analytics.h"

int32_t sp__analytics_day(int64_t ms)
{
    return (int32_t)(ms >= 0 ? ms / 86400000 : (ms - 86399999) / 86400000);
}

int sp__analytics_count_txn(sp_wtxn_t *w, int64_t team, int64_t domain, sp_status_t status,
                            bool first, bool hard, int64_t when)
{
    (void)w, (void)team, (void)domain, (void)status, (void)first, (void)hard, (void)when;
    return 0;
}

int sp__analytics_daily(int64_t team, int64_t domain_id, int32_t from_day, int32_t to_day,
                        int (*each)(void *arg, int32_t day, const uint64_t *counts), void *arg)
{
    (void)team, (void)domain_id, (void)from_day, (void)to_day, (void)each, (void)arg;
    return 0;
}

int sp__analytics_cumulated(int64_t team, int64_t domain_id, uint64_t *out)
{
    (void)team, (void)domain_id;
    for (int i = 0; i < SP_CUM__COUNT; i++) {
        out[i] = 0;
    }
    return 0;
}
