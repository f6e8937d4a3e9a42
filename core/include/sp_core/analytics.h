/* SPDX-License-Identifier: Apache-2.0 */
/* Per-team, per-domain, per-day counters (SP_DB_DAILY) and lifetime
 * reputation counters (SP_DB_CUMULATED), updated in the same store write as
 * the status change that moves them. */
#ifndef SP_CORE_ANALYTICS_H
#define SP_CORE_ANALYTICS_H

#include <stdbool.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

#include "store.h"

/* Days since 1970-01-01 UTC of a time in ms. */
int32_t sp__analytics_day(int64_t ms);

/* Inside a store write: count `status` of a message of team/domain at time
 * `when`. `first`: no earlier event of this status for the message (opens
 * and clicks count once per message). `hard`: a Permanent bounce. */
int sp__analytics_count_txn(sp_wtxn_t *w, int64_t team, int64_t domain, sp_status_t status,
                            bool first, bool hard, int64_t when);

/* Host API backends (contracts in sp_plugin.h). */
int sp__analytics_daily(int64_t team, int64_t domain_id, int32_t from_day, int32_t to_day,
                        int (*each)(void *arg, int32_t day, const uint64_t *counts), void *arg);
int sp__analytics_cumulated(int64_t team, int64_t domain_id, uint64_t *out);
/* The same reads on a given store (tests). */
int sp__analytics_daily_in(sp_store_t *st, int64_t team, int64_t domain_id, int32_t from_day,
                           int32_t to_day,
                           int (*each)(void *arg, int32_t day, const uint64_t *counts),
                           void *arg);
int sp__analytics_cumulated_in(sp_store_t *st, int64_t team, int64_t domain_id, uint64_t *out);

#endif /* SP_CORE_ANALYTICS_H */
