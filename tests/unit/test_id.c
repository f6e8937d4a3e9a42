/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of message ids: monotonic generation, text form, parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sp/sp_errno.h>

#include "sp_core/store.h"

#define EPOCH_MS 1577836800000LL
#define NOW_MS 1735689600000LL /* 2025-01-01 */

static void test_next_monotonic(void **state)
{
    uint64_t prev, id;
    int64_t now = NOW_MS;

    (void)state;
    prev = sp__id_next(now);
    /* 1.5M ids in one millisecond: more than the 20-bit sequence holds. */
    for (int i = 0; i < 1500000; i++) {
        id = sp__id_next(now);
        assert_true(id > prev);
        prev = id;
    }
    /* The clock jumps back ten seconds, then crawls forward. */
    now -= 10000;
    for (int i = 0; i < 1000000; i++) {
        if (i % 1000 == 0) {
            now++;
        }
        id = sp__id_next(now);
        assert_true(id > prev);
        prev = id;
    }
    /* Far ahead again: the time part follows the clock. */
    now = NOW_MS + 3600000;
    for (int i = 0; i < 500000; i++) {
        id = sp__id_next(now + i / 100);
        assert_true(id > prev);
        prev = id;
    }
    assert_int_equal((int64_t)(prev >> 20), now + 499999 / 100 - EPOCH_MS);
}

static void test_next_layout(void **state)
{
    int64_t later = NOW_MS + 86400000LL * 365;
    uint64_t id;

    (void)state;
    id = sp__id_next(later);
    assert_int_equal((int64_t)(id >> 20), later - EPOCH_MS);
    /* Before the epoch clamps to 0 but stays increasing. */
    assert_true(sp__id_next(0) > id);
}

static void test_seed(void **state)
{
    uint64_t base = sp__id_next(NOW_MS);
    uint64_t high = base + ((uint64_t)5000 << 20);

    (void)state;
    sp__id_seed(high);
    assert_true(sp__id_next(NOW_MS) > high);
    /* A lower seed never moves the generator back. */
    sp__id_seed(1);
    assert_true(sp__id_next(NOW_MS) > high);
}

static void test_str_fixed_and_sorted(void **state)
{
    uint64_t ids[2000];
    char a[SP_ID_STRLEN + 1], b[SP_ID_STRLEN + 1];
    uint64_t x = 0x9e3779b97f4a7c15ull;

    (void)state;
    ids[0] = 0;
    ids[1] = UINT64_MAX;
    ids[2] = 1;
    ids[3] = UINT64_MAX - 1;
    for (size_t i = 4; i < 2000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* Mix full-range values with nearby ones to hit equal prefixes. */
        ids[i] = (i % 3 == 0) ? ids[i - 1] + (x & 0xff) : x >> (x & 31);
    }
    sp__id_str(0, a);
    assert_string_equal(a, "0000000000000");
    sp__id_str(UINT64_MAX, a);
    assert_string_equal(a, "fzzzzzzzzzzzz");
    for (size_t i = 0; i + 1 < 2000; i++) {
        int c;
        sp__id_str(ids[i], a);
        sp__id_str(ids[i + 1], b);
        assert_int_equal(strlen(a), SP_ID_STRLEN);
        for (size_t j = 0; j < SP_ID_STRLEN; j++) {
            assert_true((a[j] >= '0' && a[j] <= '9') || (a[j] >= 'a' && a[j] <= 'z'));
        }
        c = strcmp(a, b);
        if (ids[i] < ids[i + 1]) {
            assert_true(c < 0);
        } else if (ids[i] > ids[i + 1]) {
            assert_true(c > 0);
        } else {
            assert_int_equal(c, 0);
        }
    }
}

static void test_parse_round_trip(void **state)
{
    char s[SP_ID_STRLEN + 1];
    uint64_t v, x = 88172645463325252ull;

    (void)state;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sp__id_str(x, s);
        assert_int_equal(sp__id_parse(s, strlen(s), &v), 0);
        assert_true(v == x);
    }
    /* Upper case is accepted. */
    sp__id_str(0x0123456789abcdefull, s);
    for (char *p = s; *p; p++) {
        if (*p >= 'a' && *p <= 'z') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    assert_int_equal(sp__id_parse(s, SP_ID_STRLEN, &v), 0);
    assert_true(v == 0x0123456789abcdefull);
}

static void test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "000000000000",    /* 12 */
        "00000000000000",  /* 14 */
        "g000000000000",   /* first digit above 15 overflows 64 bits */
        "z000000000000",
        "000000000000i",   /* i, l, o, u are not in the alphabet */
        "000000000000l",
        "000000000000o",
        "000000000000u",
        "000000000000U",
        "00000000000-0",
        "000000 000000",
        "0000000000000\n",
    };
    char nul[SP_ID_STRLEN] = "000000";
    uint64_t v = 42;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sp__id_parse(bad[i], strlen(bad[i]), &v), SP_EINVAL);
    }
    nul[6] = '\0';
    memset(nul + 7, '0', SP_ID_STRLEN - 7);
    assert_int_equal(sp__id_parse(nul, SP_ID_STRLEN, &v), SP_EINVAL);
    assert_int_equal(sp__id_parse(NULL, SP_ID_STRLEN, &v), SP_EINVAL);
    assert_int_equal(v, 42); /* untouched on failure */
    assert_int_equal(sp__id_parse("fzzzzzzzzzzzz", SP_ID_STRLEN, &v), 0);
    assert_true(v == UINT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_monotonic),   cmocka_unit_test(test_next_layout),
        cmocka_unit_test(test_seed),             cmocka_unit_test(test_str_fixed_and_sorted),
        cmocka_unit_test(test_parse_round_trip), cmocka_unit_test(test_parse_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
