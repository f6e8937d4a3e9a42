/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the analytics counters: UTC day arithmetic, the API's
 * "Jan 05" labels (api_usesend's an_date.h), and counting inside store
 * writes read back per domain and summed over a team's domains. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "sp_core/analytics.h"
#include "sp_core/store.h"

#include "../../plugins/api_usesend/an_date.h"
#include "store_fx.h"

#define DAY_MS 86400000LL

static void test_day(void **state)
{
    (void)state;
    assert_int_equal(sp__analytics_day(0), 0);
    assert_int_equal(sp__analytics_day(DAY_MS - 1), 0);
    assert_int_equal(sp__analytics_day(DAY_MS), 1);
    assert_int_equal(sp__analytics_day(-1), -1);
    assert_int_equal(sp__analytics_day(-DAY_MS), -1);
    assert_int_equal(sp__analytics_day(-DAY_MS - 1), -2);
    /* 2025-11-25T23:59:59.999Z and the next millisecond. */
    assert_int_equal(sp__analytics_day(1764115199999LL), 20417);
    assert_int_equal(sp__analytics_day(1764115200000LL), 20418);
    for (int64_t ms = -5 * DAY_MS; ms < 5 * DAY_MS; ms += 3600000 + 7) {
        assert_int_equal(an_day_of_ms(ms), sp__analytics_day(ms));
    }
}

static void label_is(int32_t day, const char *want)
{
    char out[8];
    an_day_label(day, out);
    assert_string_equal(out, want);
}

static void test_labels(void **state)
{
    (void)state;
    label_is(0, "Jan 01");
    label_is(-1, "Dec 31");
    label_is(20418, "Nov 26");
    label_is(20417, "Nov 25");
    /* 2024-02-29 (leap day) and 2100-03-01 (not a leap year before). */
    label_is(19782, "Feb 29");
    label_is(47541, "Mar 01");
    /* Every day of 1960..2200 agrees with gmtime. */
    for (int32_t d = -3653; d < 84000; d++) {
        time_t t = (time_t)d * 86400;
        struct tm tm;
        int y, m, dd;
        assert_non_null(gmtime_r(&t, &tm));
        an_civil(d, &y, &m, &dd);
        assert_int_equal(y, tm.tm_year + 1900);
        assert_int_equal(m, tm.tm_mon + 1);
        assert_int_equal(dd, tm.tm_mday);
    }
}

/* ------------------------------------------------------------------------ */
/* Counting in the store */

typedef struct ev {
    int64_t team, domain;
    sp_status_t st;
    bool first, hard;
    int32_t day;
} ev_t;

typedef struct wr {
    const ev_t *evs;
    size_t n;
} wr_t;

static int apply_evs(sp_wtxn_t *w, void *arg)
{
    wr_t *x = arg;

    for (size_t i = 0; i < x->n; i++) {
        const ev_t *e = &x->evs[i];
        int rc = sp__analytics_count_txn(w, e->team, e->domain, e->st, e->first, e->hard,
                                         (int64_t)e->day * DAY_MS + 12345);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static void count(fx_t *fx, const ev_t *e, size_t n)
{
    wr_t x = {.evs = e, .n = n};
    assert_int_equal(fx_write(fx, apply_evs, &x), 0);
}

typedef struct rows {
    int32_t days[16];
    uint64_t c[16][SP_AN__COUNT];
    size_t n;
} rows_t;

static int rows_each(void *arg, int32_t day, const uint64_t *counts)
{
    rows_t *r = arg;

    if (r->n < 16) {
        r->days[r->n] = day;
        memcpy(r->c[r->n], counts, sizeof(r->c[0]));
    }
    r->n++;
    return 0;
}

static void test_counting(void **state)
{
    fx_t *fx = *state;
    const ev_t evs[] = {
        {1, 10, SP_ST_SENT, true, false, 100},
        {1, 10, SP_ST_SENT, true, false, 100},
        {1, 10, SP_ST_DELIVERED, true, false, 100},
        {1, 10, SP_ST_OPENED, true, false, 100},
        {1, 10, SP_ST_OPENED, false, false, 100}, /* a repeat open: not counted */
        {1, 10, SP_ST_CLICKED, true, false, 101},
        {1, 10, SP_ST_CLICKED, false, false, 101},
        {1, 10, SP_ST_BOUNCED, true, false, 101}, /* transient */
        {1, 10, SP_ST_BOUNCED, true, true, 101},  /* permanent */
        {1, 10, SP_ST_COMPLAINED, true, false, 102},
        {1, 10, SP_ST_QUEUED, true, false, 102},  /* not a counter */
        {1, 10, SP_ST_DELIVERY_DELAYED, true, false, 102},
        {1, 20, SP_ST_SENT, true, false, 100},
        {1, 20, SP_ST_DELIVERED, true, false, 99},
        {1, 0, SP_ST_DELIVERED, true, false, 101}, /* no domain */
        {2, 10, SP_ST_SENT, true, false, 100},     /* another team */
        {0, 10, SP_ST_SENT, true, false, 100},     /* no team: ignored */
    };
    rows_t r = {0};
    uint64_t cum[SP_CUM__COUNT];

    count(fx, evs, sizeof(evs) / sizeof(evs[0]));
    /* One domain. */
    assert_int_equal(sp__analytics_daily_in(fx->st, 1, 10, 100, 102, rows_each, &r), 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.days[0], 100);
    assert_int_equal(r.c[0][SP_AN_SENT], 2);
    assert_int_equal(r.c[0][SP_AN_DELIVERED], 1);
    assert_int_equal(r.c[0][SP_AN_OPENED], 1);
    assert_int_equal(r.c[1][SP_AN_CLICKED], 1);
    assert_int_equal(r.c[1][SP_AN_BOUNCED], 2);
    assert_int_equal(r.c[1][SP_AN_HARD_BOUNCED], 1);
    assert_int_equal(r.days[2], 102);
    assert_int_equal(r.c[2][SP_AN_COMPLAINED], 1);
    assert_int_equal(r.c[2][SP_AN_SENT], 0);
    /* A narrower range. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(sp__analytics_daily_in(fx->st, 1, 10, 101, 101, rows_each, &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.days[0], 101);
    /* All domains summed, in day order, only days with counts. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(sp__analytics_daily_in(fx->st, 1, 0, 90, 110, rows_each, &r), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.days[0], 99);
    assert_int_equal(r.c[0][SP_AN_DELIVERED], 1);
    assert_int_equal(r.days[1], 100);
    assert_int_equal(r.c[1][SP_AN_SENT], 3);
    assert_int_equal(r.days[2], 101);
    assert_int_equal(r.c[2][SP_AN_DELIVERED], 1);
    assert_int_equal(r.days[3], 102);
    memset(&r, 0, sizeof(r));
    assert_int_equal(sp__analytics_daily_in(fx->st, 1, 0, 100, 100, rows_each, &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.c[0][SP_AN_SENT], 3);
    assert_int_equal(r.c[0][SP_AN_DELIVERED], 1);
    memset(&r, 0, sizeof(r));
    assert_int_equal(sp__analytics_daily_in(fx->st, 3, 0, 0, 1000, rows_each, &r), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(sp__analytics_daily_in(fx->st, 0, 0, 0, 1000, rows_each, &r), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(sp__analytics_daily_in(fx->st, 1, 0, 0, 100000, rows_each, &r),
                     SP_EINVAL);
    /* Lifetime counters. */
    assert_int_equal(sp__analytics_cumulated_in(fx->st, 1, 10, cum), 0);
    assert_int_equal(cum[SP_CUM_DELIVERED], 1);
    assert_int_equal(cum[SP_CUM_HARD_BOUNCED], 1);
    assert_int_equal(cum[SP_CUM_COMPLAINED], 1);
    assert_int_equal(sp__analytics_cumulated_in(fx->st, 1, 0, cum), 0);
    assert_int_equal(cum[SP_CUM_DELIVERED], 3);
    assert_int_equal(cum[SP_CUM_HARD_BOUNCED], 1);
    assert_int_equal(sp__analytics_cumulated_in(fx->st, 1, 30, cum), 0);
    assert_int_equal(cum[SP_CUM_DELIVERED], 0);
    assert_int_equal(sp__analytics_cumulated_in(fx->st, 2, 0, cum), 0);
    assert_int_equal(cum[SP_CUM_DELIVERED], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_day),
        cmocka_unit_test(test_labels),
        cmocka_unit_test_setup_teardown(test_counting, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
