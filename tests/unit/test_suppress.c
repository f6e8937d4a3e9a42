/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the suppression list: address normalisation, reason names,
 * the bare address inside "Name <addr>" (the suppression plugin's pure
 * part), and the store layer (put inside a write, check, list with search
 * and skip, per-team separation) on a temporary store. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "sp_core/store.h"
#include "sp_core/suppress.h"

#include "../../plugins/suppression/supp_addr.c"
#include "store_fx.h"

static void test_norm(void **state)
{
    char out[SP_SUPPRESS_EMAIL_MAX + 1];
    char big[SP_SUPPRESS_EMAIL_MAX + 8];

    (void)state;
    assert_int_equal(sp__suppress_norm("  Bob@Example.COM \t\r\n", out), 0);
    assert_string_equal(out, "bob@example.com");
    assert_int_equal(sp__suppress_norm("Bob <Bob@Example.com>", out), 0);
    assert_string_equal(out, "bob <bob@example.com>"); /* the whole string */
    assert_int_equal(sp__suppress_norm("ÜBER@example.com", out), 0);
    assert_string_equal(out, "Über@example.com"); /* only ASCII letters fold */
    assert_int_equal(sp__suppress_norm("", out), SP_EINVAL);
    assert_int_equal(sp__suppress_norm(" \t ", out), SP_EINVAL);
    assert_int_equal(sp__suppress_norm(NULL, out), SP_EINVAL);
    assert_int_equal(sp__suppress_norm("a\x01@b", out), SP_EINVAL);
    assert_int_equal(sp__suppress_norm("a\x7f@b", out), SP_EINVAL);
    memset(big, 'a', sizeof(big));
    big[SP_SUPPRESS_EMAIL_MAX] = '\0';
    assert_int_equal(sp__suppress_norm(big, out), 0);
    big[SP_SUPPRESS_EMAIL_MAX] = 'a';
    big[SP_SUPPRESS_EMAIL_MAX + 1] = '\0';
    assert_int_equal(sp__suppress_norm(big, out), SP_EINVAL);
    /* Padding does not count against the limit. */
    big[0] = ' ';
    big[SP_SUPPRESS_EMAIL_MAX] = ' ';
    assert_int_equal(sp__suppress_norm(big, out), 0);
    assert_int_equal(strlen(out), SP_SUPPRESS_EMAIL_MAX - 1);
    assert_int_equal(sp__suppress_normn("X@Y.z\0junk", 5, out), 0);
    assert_string_equal(out, "x@y.z");
}

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(sp__suppress_reason_name(SP_SUPPRESS_HARD_BOUNCE), "HARD_BOUNCE");
    assert_string_equal(sp__suppress_reason_name(SP_SUPPRESS_COMPLAINT), "COMPLAINT");
    assert_string_equal(sp__suppress_reason_name(SP_SUPPRESS_MANUAL), "MANUAL");
    assert_null(sp__suppress_reason_name((sp_suppress_reason_t)7));
    assert_int_equal(sp__suppress_reason_parse("COMPLAINT"), SP_SUPPRESS_COMPLAINT);
    assert_int_equal(sp__suppress_reason_parse("manual"), -1);
    assert_int_equal(sp__suppress_reason_parse(NULL), -1);
}

static void bare_is(const char *in, const char *want)
{
    const char *o = NULL;
    size_t ol = 0;
    bool ok = supp_bare_addr(in, strlen(in), &o, &ol);

    if (want == NULL) {
        assert_false(ok);
        return;
    }
    assert_true(ok);
    assert_int_equal(ol, strlen(want));
    assert_memory_equal(o, want, ol);
}

static void test_bare(void **state)
{
    (void)state;
    bare_is("Bob <bob@example.com>", "bob@example.com");
    bare_is("\"Smith, Bob\" <B@x.org>  ", "B@x.org");
    bare_is("<a@b>", "a@b");
    bare_is("x <y> < a@b >", "a@b");
    bare_is("a@b", NULL);
    bare_is("Bob <>", NULL);
    bare_is("Bob < >", NULL);
    bare_is("bob@example.com>", NULL);
    bare_is("Bob <bob@example.com> trailing", NULL);
    bare_is(">", NULL);
    bare_is("", NULL);
    assert_false(supp_bare_addr(NULL, 0, NULL, NULL));
}

/* ------------------------------------------------------------------------ */
/* The store layer */

typedef struct put {
    int64_t team;
    const char *email;
    sp_suppress_reason_t reason;
    const char *source;
    int64_t when;
} put_t;

typedef struct wr {
    const put_t *puts;
    size_t n;
} wr_t;

static int apply_puts(sp_wtxn_t *w, void *arg)
{
    wr_t *x = arg;

    for (size_t i = 0; i < x->n; i++) {
        int rc = sp__suppress_put_txn(w, x->puts[i].team, x->puts[i].email, x->puts[i].reason,
                                      x->puts[i].source, x->puts[i].when);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int write_puts(fx_t *fx, const put_t *p, size_t n)
{
    wr_t x = {.puts = p, .n = n};
    return fx_write(fx, apply_puts, &x);
}

typedef struct seen {
    char emails[8][64];
    sp_suppress_reason_t reasons[8];
    char sources[8][32];
    int64_t created[8];
    size_t n, stop_at;
} seen_t;

static int seen_each(void *arg, const sp_suppression_t *s)
{
    seen_t *v = arg;

    if (v->n < 8) {
        snprintf(v->emails[v->n], 64, "%s", s->email);
        snprintf(v->sources[v->n], 32, "%s", s->source);
        v->reasons[v->n] = s->reason;
        v->created[v->n] = s->created_ms;
    }
    v->n++;
    return v->stop_at != 0 && v->n == v->stop_at;
}

static void test_store(void **state)
{
    fx_t *fx = *state;
    const put_t p[] = {
        {1, " Zed@Example.com", SP_SUPPRESS_MANUAL, NULL, 1000},
        {1, "amy@example.com", SP_SUPPRESS_HARD_BOUNCE, "0abc", 2000},
        {1, "bob@other.org", SP_SUPPRESS_COMPLAINT, "0def", 3000},
        {2, "amy@example.com", SP_SUPPRESS_MANUAL, "", 4000},
    };
    sp_suppress_reason_t r = SP_SUPPRESS_MANUAL;
    seen_t v = {0};

    assert_int_equal(write_puts(fx, p, 4), 0);
    /* Invalid entries refused inside the write (and the write rolled back). */
    {
        const put_t bad[] = {{1, "ok@x.y", SP_SUPPRESS_MANUAL, NULL, 1}, {1, "  ", 0, NULL, 1}};
        const put_t noteam[] = {{0, "ok@x.y", SP_SUPPRESS_MANUAL, NULL, 1}};
        assert_int_equal(write_puts(fx, bad, 2), SP_EINVAL);
        assert_int_equal(write_puts(fx, noteam, 1), SP_EINVAL);
        assert_int_equal(sp__suppress_check_in(fx->st, 1, "ok@x.y", NULL), SP_ENOTFOUND);
    }
    assert_int_equal(sp__suppress_check_in(fx->st, 1, "AMY@example.com ", &r), 0);
    assert_int_equal(r, SP_SUPPRESS_HARD_BOUNCE);
    assert_int_equal(sp__suppress_check_in(fx->st, 1, "zed@example.com", &r), 0);
    assert_int_equal(r, SP_SUPPRESS_MANUAL);
    assert_int_equal(sp__suppress_check_in(fx->st, 2, "bob@other.org", NULL), SP_ENOTFOUND);
    assert_int_equal(sp__suppress_check_in(fx->st, 3, "amy@example.com", NULL), SP_ENOTFOUND);
    assert_int_equal(sp__suppress_check_in(fx->st, 1, "", NULL), SP_ENOTFOUND);
    assert_int_equal(sp__suppress_check_in(NULL, 1, "amy@example.com", NULL), SP_ESTATE);

    /* Address order, all fields. */
    assert_int_equal(sp__suppress_list_in(fx->st, 1, NULL, 0, seen_each, &v), 0);
    assert_int_equal(v.n, 3);
    assert_string_equal(v.emails[0], "amy@example.com");
    assert_string_equal(v.sources[0], "0abc");
    assert_int_equal(v.reasons[0], SP_SUPPRESS_HARD_BOUNCE);
    assert_int_equal(v.created[0], 2000);
    assert_string_equal(v.emails[1], "bob@other.org");
    assert_int_equal(v.reasons[1], SP_SUPPRESS_COMPLAINT);
    assert_string_equal(v.emails[2], "zed@example.com");
    assert_string_equal(v.sources[2], "");
    /* Search (case-insensitive, trimmed) and skip; stop early. */
    memset(&v, 0, sizeof(v));
    assert_int_equal(sp__suppress_list_in(fx->st, 1, " EXAMPLE.com", 1, seen_each, &v), 0);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.emails[0], "zed@example.com");
    memset(&v, 0, sizeof(v));
    v.stop_at = 2;
    assert_int_equal(sp__suppress_list_in(fx->st, 1, "   ", 0, seen_each, &v), 0);
    assert_int_equal(v.n, 2);
    memset(&v, 0, sizeof(v));
    assert_int_equal(sp__suppress_list_in(fx->st, 1, "nomatch", 0, seen_each, &v), 0);
    assert_int_equal(v.n, 0);
    assert_int_equal(sp__suppress_list_in(fx->st, 2, NULL, 0, seen_each, &v), 0);
    assert_int_equal(v.n, 1);
    /* Replacing an entry keeps one entry with the new reason. */
    {
        const put_t again[] = {{1, "amy@EXAMPLE.com", SP_SUPPRESS_COMPLAINT, "0ghi", 5000}};
        assert_int_equal(write_puts(fx, again, 1), 0);
        memset(&v, 0, sizeof(v));
        assert_int_equal(sp__suppress_list_in(fx->st, 1, "amy", 0, seen_each, &v), 0);
        assert_int_equal(v.n, 1);
        assert_int_equal(v.reasons[0], SP_SUPPRESS_COMPLAINT);
        assert_string_equal(v.sources[0], "0ghi");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norm),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_bare),
        cmocka_unit_test_setup_teardown(test_store, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
