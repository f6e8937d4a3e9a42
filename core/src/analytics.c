/* SPDX-License-Identifier: Apache-2.0 */
/* Daily and lifetime counters. SP_DB_DAILY maps team(be64) || domain(be64)
 * || day(be32, days since 1970-01-01 UTC; a clock before 1970 counts on day
 * 0) to SP_AN__COUNT big-endian u64 counters; SP_DB_CUMULATED maps
 * team(be64) || domain(be64) to SP_CUM__COUNT of them. Both are updated by
 * sp__analytics_count_txn inside the store write of the status change that
 * moves them (effects.c), so a counter never disagrees with the events. A
 * record shorter than the current arrays (an older layout) reads as zeros
 * for the missing counters and is rewritten full length. */
#include <stdlib.h>
#include <string.h>

#include "sp_core/analytics.h"
#include "sp_core/core.h"

#define DAY_KEY_LEN 20
#define CUM_KEY_LEN 16
/* The longest range summed over domains in one call (about 100 years). */
#define MAX_RANGE_DAYS 36600

int32_t sp__analytics_day(int64_t ms)
{
    return (int32_t)(ms >= 0 ? ms / 86400000 : (ms - 86399999) / 86400000);
}

static void day_key(uint8_t k[DAY_KEY_LEN], int64_t team, int64_t domain, int32_t day)
{
    sp__be64_put(k, (uint64_t)team);
    sp__be64_put(k + 8, (uint64_t)domain);
    sp__be32_put(k + 16, (uint32_t)(day < 0 ? 0 : day));
}

static int32_t key_day(const uint8_t *k)
{
    return (int32_t)(sp__be32_get(k + 16) & 0x7fffffffu);
}

/* Counters of a record into out[n] (zeros past its end). */
static void load_counts(const void *v, size_t vl, uint64_t *out, size_t n)
{
    const uint8_t *p = v;

    for (size_t i = 0; i < n; i++) {
        out[i] = (i + 1) * 8 <= vl ? sp__be64_get(p + i * 8) : 0;
    }
}

/* Add inc[n] to the counters stored under key. */
static int bump(sp_wtxn_t *w, sp_db_t db, const uint8_t *key, size_t kl, const uint64_t *inc,
                size_t n)
{
    uint64_t cur[SP_AN__COUNT];
    uint8_t buf[SP_AN__COUNT * 8];
    const void *v;
    size_t vl;
    int rc = sp__wtxn_get(w, db, key, kl, &v, &vl);

    if (rc == 0) {
        load_counts(v, vl, cur, n);
    } else if (rc == SP_ENOTFOUND) {
        memset(cur, 0, sizeof(cur));
    } else {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        sp__be64_put(buf + i * 8, cur[i] + inc[i]);
    }
    return sp__wtxn_put(w, db, key, kl, buf, n * 8);
}

int sp__analytics_count_txn(sp_wtxn_t *w, int64_t team, int64_t domain, sp_status_t status,
                            bool first, bool hard, int64_t when)
{
    uint64_t daily[SP_AN__COUNT] = {0}, cum[SP_CUM__COUNT] = {0};
    bool any_cum = false;
    uint8_t key[DAY_KEY_LEN];
    int rc;

    if (w == NULL || team <= 0) {
        return 0; /* nobody can read counters of a message without a team */
    }
    if (domain < 0) {
        domain = 0;
    }
    switch (status) {
    case SP_ST_SENT:
        daily[SP_AN_SENT] = 1;
        break;
    case SP_ST_DELIVERED:
        daily[SP_AN_DELIVERED] = 1;
        cum[SP_CUM_DELIVERED] = 1;
        any_cum = true;
        break;
    case SP_ST_OPENED:
        if (!first) {
            return 0;
        }
        daily[SP_AN_OPENED] = 1;
        break;
    case SP_ST_CLICKED:
        if (!first) {
            return 0;
        }
        daily[SP_AN_CLICKED] = 1;
        break;
    case SP_ST_BOUNCED:
        daily[SP_AN_BOUNCED] = 1;
        if (hard) {
            daily[SP_AN_HARD_BOUNCED] = 1;
            cum[SP_CUM_HARD_BOUNCED] = 1;
            any_cum = true;
        }
        break;
    case SP_ST_COMPLAINED:
        daily[SP_AN_COMPLAINED] = 1;
        cum[SP_CUM_COMPLAINED] = 1;
        any_cum = true;
        break;
    default:
        return 0;
    }
    day_key(key, team, domain, sp__analytics_day(when));
    rc = bump(w, SP_DB_DAILY, key, DAY_KEY_LEN, daily, SP_AN__COUNT);
    if (rc == 0 && any_cum) {
        rc = bump(w, SP_DB_CUMULATED, key, CUM_KEY_LEN, cum, SP_CUM__COUNT);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Reads */

typedef struct daily_ctx {
    int64_t domain;    /* the domain being read */
    int32_t from, to;
    bool next_domain;  /* the scan left the domain or its range */
    int64_t next;      /* then: the domain to seek next (0: none) */
    /* one domain: stream */
    int (*each)(void *arg, int32_t day, const uint64_t *counts);
    void *arg;
    int stop;
    /* all domains: sum into sums[(day - from) * SP_AN__COUNT + i] */
    uint64_t *sums;
    uint8_t *seen;
} daily_ctx_t;

static int daily_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    daily_ctx_t *dc = arg;
    uint64_t counts[SP_AN__COUNT];
    int64_t dom;
    int32_t day;

    if (kl != DAY_KEY_LEN) {
        return 0;
    }
    dom = (int64_t)sp__be64_get((const uint8_t *)k + 8);
    day = key_day(k);
    if (dom != dc->domain) {
        dc->next = dom; /* first key of a later domain */
        return 1;
    }
    if (day > dc->to) {
        dc->next = dom == INT64_MAX ? 0 : dom + 1;
        return 1;
    }
    if (day < dc->from) {
        return 0;
    }
    load_counts(v, vl, counts, SP_AN__COUNT);
    if (dc->sums == NULL) {
        dc->stop = dc->each(dc->arg, day, counts);
        return dc->stop != 0;
    }
    for (size_t i = 0; i < SP_AN__COUNT; i++) {
        dc->sums[(size_t)(day - dc->from) * SP_AN__COUNT + i] += counts[i];
    }
    dc->seen[day - dc->from] = 1;
    return 0;
}

int sp__analytics_daily_in(sp_store_t *st, int64_t team, int64_t domain_id, int32_t from_day,
                           int32_t to_day, int (*each)(void *arg, int32_t day,
                                                       const uint64_t *counts),
                           void *arg)
{
    daily_ctx_t dc = {.from = from_day, .to = to_day, .each = each, .arg = arg};
    uint8_t from[DAY_KEY_LEN];
    size_t ndays;
    sp_rtxn_t *r;
    int rc = 0;

    if (each == NULL || domain_id < 0) {
        return SP_EINVAL;
    }
    if (st == NULL) {
        return SP_ESTATE;
    }
    if (team <= 0 || from_day > to_day) {
        return 0;
    }
    ndays = (size_t)((int64_t)to_day - from_day + 1);
    if (domain_id == 0) {
        if (ndays > MAX_RANGE_DAYS) {
            return SP_EINVAL;
        }
        dc.sums = calloc(ndays * SP_AN__COUNT, sizeof(*dc.sums));
        dc.seen = calloc(ndays, 1);
        if (dc.sums == NULL || dc.seen == NULL) {
            free(dc.sums);
            free(dc.seen);
            return SP_ENOMEM;
        }
    }
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        free(dc.sums);
        free(dc.seen);
        return rc;
    }
    /* One range read per domain: seek to (domain, from_day), stop past
     * to_day or at the next domain, and seek again there. */
    dc.domain = domain_id;
    for (;;) {
        dc.next = 0;
        day_key(from, team, dc.domain, from_day);
        rc = sp__rtxn_scan(r, SP_DB_DAILY, from, sizeof(from), from, domain_id ? 16 : 8,
                           daily_each, &dc);
        if (rc < 0 || dc.stop != 0 || domain_id != 0 || dc.next == 0) {
            break;
        }
        dc.domain = dc.next;
    }
    sp__store_read_end(r);
    if (rc >= 0 && dc.sums != NULL) {
        rc = 0;
        for (size_t d = 0; d < ndays; d++) {
            if (dc.seen[d] && each(arg, from_day + (int32_t)d, dc.sums + d * SP_AN__COUNT)) {
                break;
            }
        }
    }
    free(dc.sums);
    free(dc.seen);
    return rc < 0 ? rc : 0;
}

int sp__analytics_daily(int64_t team, int64_t domain_id, int32_t from_day, int32_t to_day,
                        int (*each)(void *arg, int32_t day, const uint64_t *counts), void *arg)
{
    return sp__analytics_daily_in(sp__core != NULL ? sp__core->store : NULL, team, domain_id,
                                  from_day, to_day, each, arg);
}

typedef struct cum_ctx {
    uint64_t *out;
} cum_ctx_t;

static int cum_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    cum_ctx_t *cc = arg;
    uint64_t c[SP_CUM__COUNT];

    (void)k;
    if (kl != CUM_KEY_LEN) {
        return 0;
    }
    load_counts(v, vl, c, SP_CUM__COUNT);
    for (size_t i = 0; i < SP_CUM__COUNT; i++) {
        cc->out[i] += c[i];
    }
    return 0;
}

int sp__analytics_cumulated_in(sp_store_t *st, int64_t team, int64_t domain_id, uint64_t *out)
{
    cum_ctx_t cc = {.out = out};
    uint8_t key[CUM_KEY_LEN];
    sp_rtxn_t *r;
    int rc;

    if (out == NULL || domain_id < 0) {
        return SP_EINVAL;
    }
    memset(out, 0, SP_CUM__COUNT * sizeof(*out));
    if (st == NULL) {
        return SP_ESTATE;
    }
    if (team <= 0) {
        return 0;
    }
    sp__be64_put(key, (uint64_t)team);
    sp__be64_put(key + 8, (uint64_t)domain_id);
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        return rc;
    }
    if (domain_id != 0) {
        const void *v;
        size_t vl;
        rc = sp__rtxn_get(r, SP_DB_CUMULATED, key, sizeof(key), &v, &vl);
        if (rc == 0) {
            load_counts(v, vl, out, SP_CUM__COUNT);
        }
        rc = rc == SP_ENOTFOUND ? 0 : rc;
    } else {
        rc = sp__rtxn_scan(r, SP_DB_CUMULATED, key, 8, key, 8, cum_each, &cc);
    }
    sp__store_read_end(r);
    return rc < 0 ? rc : 0;
}

int sp__analytics_cumulated(int64_t team, int64_t domain_id, uint64_t *out)
{
    return sp__analytics_cumulated_in(sp__core != NULL ? sp__core->store : NULL, team,
                                      domain_id, out);
}
