/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of teams, API keys and domains: key format and checking, every
 * refusal path, permissions and domain restrictions, name rules, the server
 * key file, id allocation and record compatibility. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>
#include <uv.h>

#include <sp/sp_errno.h>

#include "sp_core/core.h"
#include "sp_core/msg.h"
#include "sp_core/store.h"
#include "sp_core/tenancy.h"

typedef struct {
    char dir[512];
    uv_loop_t loop;
    sp_store_t *st;
    uint8_t skey[SP_TENANCY_SECRET_LEN];
} fx_t;

/* ------------------------------------------------------------------------ */
/* Fixture and helpers */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    const char *tmp = getenv("TMPDIR");
    sp_store_opts_t o = {.sync = false, .map_size = 8u << 20};

    if (!fx) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "%s/sp_tenancy_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir) || uv_loop_init(&fx->loop) != 0) {
        free(fx);
        return -1;
    }
    if (sp__store_open(&fx->st, fx->dir, &o, &fx->loop) != 0) {
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    int rc;

    sp__core = NULL;
    sp__store_close(fx->st);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&fx->loop);
    nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    assert_int_equal(rc, 0);
    return 0;
}

static uint64_t timeout_ms(void)
{
    const char *m = getenv("SP_TEST_TIMEOUT_MULTIPLIER");
    long k = m ? strtol(m, NULL, 10) : 1;
    return 20000 * (uint64_t)(k > 0 ? k : 1);
}

static void on_watchdog(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

typedef int (*wfn_t)(sp_wtxn_t *w, void *arg);

typedef struct wjob {
    wfn_t fn;
    void *arg;
    int status;
    bool done;
} wjob_t;

static int wjob_apply(sp_wtxn_t *w, void *arg)
{
    wjob_t *j = arg;
    return j->fn(w, j->arg);
}

static void wjob_done(void *arg, int status)
{
    wjob_t *j = arg;
    j->status = status;
    j->done = true;
}

/* One write request, run to its durable completion under a watchdog. */
static int write_sync(fx_t *fx, wfn_t fn, void *arg)
{
    wjob_t j = {.fn = fn, .arg = arg};
    uv_timer_t wd;
    bool fired = false;

    assert_int_equal(sp__store_write(fx->st, wjob_apply, wjob_done, &j), 0);
    uv_timer_init(&fx->loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, on_watchdog, timeout_ms(), 0);
    while (!j.done && !fired) {
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_false(fired);
    return j.status;
}

typedef struct op {
    int64_t team, domain_id, id;
    const char *name, *region;
    sp_permission_t perm;
    int status;
    const uint8_t *skey;
    int64_t out;
    char token[SP_KEY_TOKEN_LEN + 1];
} op_t;

static int w_team(sp_wtxn_t *w, void *arg)
{
    op_t *o = arg;
    return sp__tenancy_team_add(w, o->name, 1000, &o->out);
}

static int w_key(sp_wtxn_t *w, void *arg)
{
    op_t *o = arg;
    return sp__tenancy_key_add(w, o->team, o->name, o->perm, o->domain_id, o->skey, 2000,
                               &o->out, o->token);
}

static int w_revoke(sp_wtxn_t *w, void *arg)
{
    op_t *o = arg;
    return sp__tenancy_key_revoke(w, o->id, 3000);
}

static int w_domain(sp_wtxn_t *w, void *arg)
{
    op_t *o = arg;
    return sp__tenancy_domain_add(w, o->team, o->name, o->region, o->status, 4000, &o->out);
}

static int w_domain_status(sp_wtxn_t *w, void *arg)
{
    op_t *o = arg;
    return sp__tenancy_domain_set_status(w, o->id, o->status);
}

static int w_domain_del(sp_wtxn_t *w, void *arg)
{
    op_t *o = arg;
    return sp__tenancy_domain_del(w, o->id);
}

static int64_t team_add(fx_t *fx, const char *name)
{
    op_t o = {.name = name};
    assert_int_equal(write_sync(fx, w_team, &o), 0);
    assert_true(o.out > 0);
    return o.out;
}

static int64_t domain_add(fx_t *fx, int64_t team, const char *name, int status)
{
    op_t o = {.team = team, .name = name, .status = status};
    assert_int_equal(write_sync(fx, w_domain, &o), 0);
    return o.out;
}

static void load_skey(fx_t *fx)
{
    assert_int_equal(sp__tenancy_secret(fx->dir, true, fx->skey), 0);
}

/* A key; the token lands in tok. */
static int64_t key_add(fx_t *fx, int64_t team, sp_permission_t perm, int64_t domain,
                       char tok[SP_KEY_TOKEN_LEN + 1])
{
    op_t o = {.team = team, .name = "test", .perm = perm, .domain_id = domain,
              .skey = fx->skey};
    load_skey(fx);
    assert_int_equal(write_sync(fx, w_key, &o), 0);
    memcpy(tok, o.token, sizeof(o.token));
    return o.out;
}

static int auth(fx_t *fx, const char *tok, sp_auth_t *a)
{
    memset(a, 0, sizeof(*a));
    a->size = sizeof(*a);
    return sp__tenancy_auth_key_in(fx->st, tok, strlen(tok), a);
}

static bool in_set(char c, const char *set)
{
    return c && strchr(set, c) != NULL;
}

/* ------------------------------------------------------------------------ */
/* Keys */

static void test_key_format(void **state)
{
    fx_t *fx = *state;
    char t1[SP_KEY_TOKEN_LEN + 1], t2[SP_KEY_TOKEN_LEN + 1];
    int64_t team = team_add(fx, "acme");
    int64_t k1 = key_add(fx, team, SP_PERM_FULL, 0, t1);
    int64_t k2 = key_add(fx, team, SP_PERM_FULL, 0, t2);
    sp_key_rec_t rec;
    sp_rtxn_t *r;
    uint8_t mac[32];

    assert_int_equal(strlen(t1), SP_KEY_TOKEN_LEN);
    assert_memory_equal(t1, "us_", 3);
    for (int i = 3; i < 13; i++) {
        assert_true(in_set(t1[i], "0123456789abcdefghijklmnopqrstuvwxyz"));
    }
    assert_int_equal(t1[13], '_');
    for (int i = 14; i < SP_KEY_TOKEN_LEN; i++) {
        assert_true(in_set(t1[i], "0123456789abcdef"));
    }
    assert_string_not_equal(t1, t2);
    assert_true(k2 > k1);

    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_key_get(r, k1, &rec), 0);
    sp__store_read_end(r);
    assert_int_equal(rec.id, k1);
    assert_int_equal(rec.team, team);
    assert_memory_equal(rec.client_id, t1 + 3, 10);
    /* partialToken: first 6 + "..." + last 3, as useSend shows it */
    char partial[16];
    snprintf(partial, sizeof(partial), "%.6s...%s", t1, t1 + SP_KEY_TOKEN_LEN - 3);
    assert_string_equal(rec.partial_token, partial);
    /* The stored hash is HMAC-SHA256(server key, secret); the secret itself
     * is nowhere in the record. */
    assert_int_equal(sp__tenancy_token_hash(fx->skey, t1 + 14, 32, mac), 0);
    assert_memory_equal(rec.token_hash, mac, 32);
    assert_int_equal(rec.created_at, 2000);
    assert_int_equal(rec.revoked_at, 0);
    assert_string_equal(rec.name, "test");
}

static void test_auth_ok(void **state)
{
    fx_t *fx = *state;
    char tok[SP_KEY_TOKEN_LEN + 1], other[SP_KEY_TOKEN_LEN + 1];
    int64_t team = team_add(fx, "acme");
    int64_t id = key_add(fx, team, SP_PERM_FULL, 0, tok);
    sp_auth_t a;

    assert_int_equal(auth(fx, tok, &a), 0);
    assert_int_equal(a.size, sizeof(a));
    assert_int_equal(a.team, team);
    assert_int_equal(a.key_id, id);
    assert_int_equal(a.permission, SP_PERM_FULL);
    assert_int_equal(a.domain_id, 0);

    /* The prefix is not checked (useSend does not check it either). */
    snprintf(other, sizeof(other), "xx%s", tok + 2);
    assert_int_equal(auth(fx, other, &a), 0);
    assert_int_equal(a.key_id, id);

    /* A caller built against a smaller struct gets only what it knows. */
    struct {
        sp_auth_t a;
        uint64_t guard;
    } small;
    memset(&small, 0xab, sizeof(small));
    small.a.size = offsetof(sp_auth_t, key_id);
    assert_int_equal(sp__tenancy_auth_key_in(fx->st, tok, strlen(tok), &small.a), 0);
    assert_int_equal(small.a.team, team);
    assert_int_equal(small.a.key_id, (int64_t)0xabababababababab);
    assert_int_equal(small.guard, 0xababababababababull);

    /* Misuse is not an authentication result. */
    assert_int_equal(sp__tenancy_auth_key_in(fx->st, tok, strlen(tok), NULL), SP_EINVAL);
    a.size = 0;
    assert_int_equal(sp__tenancy_auth_key_in(fx->st, tok, strlen(tok), &a), SP_EINVAL);
    assert_int_equal(sp__tenancy_auth_key_in(NULL, tok, strlen(tok), &a), SP_EINVAL);
}

static void test_auth_refusals(void **state)
{
    fx_t *fx = *state;
    char tok[SP_KEY_TOKEN_LEN + 1], bad[128];
    int64_t team = team_add(fx, "acme");
    sp_auth_t a;

    key_add(fx, team, SP_PERM_FULL, 0, tok);
    const char *cid = tok + 3, *sec = tok + 14;

    /* Wrong secret: one character changed, at either end. */
    snprintf(bad, sizeof(bad), "%s", tok);
    bad[SP_KEY_TOKEN_LEN - 1] = bad[SP_KEY_TOKEN_LEN - 1] == '0' ? '1' : '0';
    assert_int_equal(auth(fx, bad, &a), SP_ENOTFOUND);
    snprintf(bad, sizeof(bad), "%s", tok);
    bad[14] = bad[14] == '0' ? '1' : '0';
    assert_int_equal(auth(fx, bad, &a), SP_ENOTFOUND);
    /* Unknown client id with the right secret. */
    snprintf(bad, sizeof(bad), "us_%s_%s", cid[0] == 'a' ? "bbbbbbbbbb" : "aaaaaaaaaa", sec);
    assert_int_equal(auth(fx, bad, &a), SP_ENOTFOUND);

    const char *malformed[] = {
        "",
        "us",
        "us_",
        "us__",
        "no-underscores-at-all-0123456789abcdef0123456789",
        "us_abcdefghij",
        "us_0123456789abcdef0123456789abcdef",
        NULL, /* filled below: variants of the real token */
    };
    for (size_t i = 0; malformed[i]; i++) {
        assert_int_equal(auth(fx, malformed[i], &a), SP_ENOTFOUND);
    }
    /* Variants built from the valid token. */
    char v[16][128];
    int n = 0;
    snprintf(v[n++], 128, "%.2s%.10s%.32s", tok, cid, sec);          /* no underscores */
    snprintf(v[n++], 128, "us_%.10s_%.32s_x", cid, sec);             /* extra part */
    snprintf(v[n++], 128, "u_s_%.10s_%.32s", cid, sec);              /* extra part in front */
    snprintf(v[n++], 128, "us_%.9s_%.32s", cid, sec);                /* client id too short */
    snprintf(v[n++], 128, "us_%.10sa_%.32s", cid, sec);              /* client id too long */
    snprintf(v[n++], 128, "us_%.10s_%.31s", cid, sec);               /* secret too short */
    snprintf(v[n++], 128, "us_%.10s_%.32sa", cid, sec);              /* secret too long */
    snprintf(v[n++], 128, "us_%.10s_%.31sg", cid, sec);              /* secret not hex */
    snprintf(v[n++], 128, "us_%.10s_%.31sA", cid, sec);              /* upper-case hex */
    snprintf(v[n++], 128, "us_%.9s-_%.32s", cid, sec);               /* client id alphabet */
    snprintf(v[n++], 128, "us_%.9sA_%.32s", cid, sec);               /* upper-case client id */
    snprintf(v[n++], 128, " %s", tok);                               /* leading space */
    snprintf(v[n++], 128, "%s ", tok);                               /* trailing space */
    snprintf(v[n++], 128, "us_%.10s__%.32s", cid, sec);              /* empty part */
    for (int i = 0; i < n; i++) {
        assert_int_equal(auth(fx, v[i], &a), SP_ENOTFOUND);
    }
    /* An embedded NUL, and a length that cuts the token short. */
    memcpy(bad, tok, sizeof(tok));
    bad[20] = '\0';
    a.size = sizeof(a);
    assert_int_equal(sp__tenancy_auth_key_in(fx->st, bad, SP_KEY_TOKEN_LEN, &a), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_auth_key_in(fx->st, tok, SP_KEY_TOKEN_LEN - 1, &a),
                     SP_ENOTFOUND);
    /* Far too long. */
    char huge[600];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    memcpy(huge + sizeof(huge) - 1 - 44, tok + 2, 44);
    assert_int_equal(auth(fx, huge, &a), SP_ENOTFOUND);

    /* And the good one still passes after all that. */
    assert_int_equal(auth(fx, tok, &a), 0);
}

static void test_token_parse(void **state)
{
    char cid[11], sec[33];
    const char *ok = "us_abcdefghij_0123456789abcdef0123456789abcdef";

    (void)state;
    assert_int_equal(sp__tenancy_token_parse(ok, strlen(ok), cid, sec), 0);
    assert_string_equal(cid, "abcdefghij");
    assert_string_equal(sec, "0123456789abcdef0123456789abcdef");
    /* An empty prefix still makes three parts, as upstream's split does. */
    assert_int_equal(sp__tenancy_token_parse(ok + 2, strlen(ok) - 2, cid, sec), 0);
    assert_int_equal(sp__tenancy_token_parse(ok + 3, strlen(ok) - 3, cid, sec), SP_EINVAL);
    assert_int_equal(sp__tenancy_token_parse(NULL, 0, cid, sec), SP_EINVAL);
}

static int del_team(sp_wtxn_t *w, void *arg)
{
    uint8_t k[8];
    sp__be64_put(k, (uint64_t)*(int64_t *)arg);
    return sp__wtxn_del(w, SP_DB_TEAMS, k, 8);
}

static void test_revoked_and_deleted_team(void **state)
{
    fx_t *fx = *state;
    char t1[SP_KEY_TOKEN_LEN + 1], t2[SP_KEY_TOKEN_LEN + 1];
    int64_t team = team_add(fx, "acme"), other = team_add(fx, "other");
    int64_t k1 = key_add(fx, team, SP_PERM_FULL, 0, t1);
    sp_auth_t a;
    sp_key_rec_t rec;
    sp_rtxn_t *r;
    op_t o = {.id = k1};

    key_add(fx, other, SP_PERM_FULL, 0, t2);
    assert_int_equal(auth(fx, t1, &a), 0);
    assert_int_equal(write_sync(fx, w_revoke, &o), 0);
    assert_int_equal(auth(fx, t1, &a), SP_ENOTFOUND);
    /* Revoking twice says so; an unknown id is not found. */
    assert_int_equal(write_sync(fx, w_revoke, &o), SP_ESTATE);
    o.id = 999;
    assert_int_equal(write_sync(fx, w_revoke, &o), SP_ENOTFOUND);
    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_key_get(r, k1, &rec), 0);
    sp__store_read_end(r);
    assert_int_equal(rec.revoked_at, 3000);

    /* A key whose team record is gone is refused. */
    assert_int_equal(auth(fx, t2, &a), 0);
    assert_int_equal(write_sync(fx, del_team, &other), 0);
    assert_int_equal(auth(fx, t2, &a), SP_ENOTFOUND);
}

static void test_permissions_and_domains(void **state)
{
    fx_t *fx = *state;
    char tf[SP_KEY_TOKEN_LEN + 1], ts[SP_KEY_TOKEN_LEN + 1], td[SP_KEY_TOKEN_LEN + 1];
    int64_t team = team_add(fx, "acme"), other = team_add(fx, "other");
    int64_t dom = domain_add(fx, team, "example.com", SP_DOM_PENDING);
    int64_t odom = domain_add(fx, other, "other.org", SP_DOM_PENDING);
    int64_t kf = key_add(fx, team, SP_PERM_FULL, 0, tf);
    int64_t ks = key_add(fx, team, SP_PERM_SENDING, 0, ts);
    int64_t kd = key_add(fx, team, SP_PERM_SENDING, dom, td);
    sp_auth_t a;
    sp_key_rec_t rec;
    sp_rtxn_t *r;

    assert_int_equal(auth(fx, tf, &a), 0);
    assert_int_equal(a.permission, SP_PERM_FULL);
    assert_int_equal(a.key_id, kf);
    assert_int_equal(auth(fx, ts, &a), 0);
    assert_int_equal(a.permission, SP_PERM_SENDING);
    assert_int_equal(a.key_id, ks);
    assert_int_equal(a.domain_id, 0);
    assert_int_equal(auth(fx, td, &a), 0);
    assert_int_equal(a.permission, SP_PERM_SENDING);
    assert_int_equal(a.domain_id, dom);
    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_key_get(r, kd, &rec), 0);
    sp__store_read_end(r);
    assert_int_equal(rec.domain_id, dom);
    assert_int_equal(rec.permission, SP_PERM_SENDING);

    /* A restriction must name a domain of the key's own team. */
    op_t o = {.team = team, .perm = SP_PERM_FULL, .domain_id = odom, .skey = fx->skey};
    assert_int_equal(write_sync(fx, w_key, &o), SP_EINVAL);
    o.domain_id = 12345;
    assert_int_equal(write_sync(fx, w_key, &o), SP_EINVAL);
    o.domain_id = 0;
    o.perm = (sp_permission_t)7;
    assert_int_equal(write_sync(fx, w_key, &o), SP_EINVAL);
    o.perm = SP_PERM_FULL;
    o.name = "bad\nname";
    assert_int_equal(write_sync(fx, w_key, &o), SP_EINVAL);
    o.name = NULL;
    o.team = 999;
    assert_int_equal(write_sync(fx, w_key, &o), SP_ENOTFOUND);

    /* Removing the domain does not widen the key: it stops working. */
    op_t d = {.id = dom};
    assert_int_equal(write_sync(fx, w_domain_del, &d), 0);
    assert_int_equal(auth(fx, td, &a), SP_ENOTFOUND);
    assert_int_equal(auth(fx, tf, &a), 0);
    assert_int_equal(write_sync(fx, w_domain_del, &d), SP_ENOTFOUND);
}

/* ------------------------------------------------------------------------ */
/* Names and domains */

static void test_domain_names(void **state)
{
    char out[SP_DOMAIN_NAME_MAX + 1], l63[64], l64[65], big[300];
    (void)state;

    const char *good[][2] = {
        {"example.com", "example.com"},
        {"EXAMPLE.Com", "example.com"},
        {"mail.a-b.co.uk", "mail.a-b.co.uk"},
        {"xn--bcher-kva.example", "xn--bcher-kva.example"},
        {"1.example.com", "1.example.com"},
        {"a.b", "a.b"},
        {"example.c0m", "example.c0m"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(sp__tenancy_domain_name_norm(good[i][0], out), 0);
        assert_string_equal(out, good[i][1]);
    }
    const char *bad[] = {"",        "com",      "-a.com",   "a-.com",  "a..com",  ".a.com",
                         "a.com.",  "a_b.com",  "1.2.3.4",  "\xc3\xa9.com", "a com.org",
                         "a.com/x", "a.-b.com", "a.b-.com", "a@b.com", "*.example.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sp__tenancy_domain_name_norm(bad[i], out), SP_EINVAL);
    }
    assert_int_equal(sp__tenancy_domain_name_norm(NULL, out), SP_EINVAL);

    /* Label 63 is fine, 64 is not; 253 in all is fine, 254 is not. */
    memset(l63, 'a', 63);
    l63[63] = '\0';
    memset(l64, 'a', 64);
    l64[64] = '\0';
    snprintf(big, sizeof(big), "%s.com", l63);
    assert_int_equal(sp__tenancy_domain_name_norm(big, out), 0);
    snprintf(big, sizeof(big), "%s.com", l64);
    assert_int_equal(sp__tenancy_domain_name_norm(big, out), SP_EINVAL);
    /* 63+1+63+1+63+1+61 = 253 */
    snprintf(big, sizeof(big), "%s.%s.%s.%.61s", l63, l63, l63, l63);
    assert_int_equal(strlen(big), 253);
    assert_int_equal(sp__tenancy_domain_name_norm(big, out), 0);
    snprintf(big, sizeof(big), "%s.%s.%s.%.62s", l63, l63, l63, l63);
    assert_int_equal(sp__tenancy_domain_name_norm(big, out), SP_EINVAL);
}

static void test_team_names(void **state)
{
    fx_t *fx = *state;
    char long_name[SP_TEAM_NAME_MAX + 2];
    sp_team_rec_t t;
    sp_rtxn_t *r;
    op_t o = {0};

    assert_int_equal(sp__tenancy_team_name_check("Acme Inc."), 0);
    assert_int_equal(sp__tenancy_team_name_check("team-7"), 0);
    assert_int_equal(sp__tenancy_team_name_check(""), SP_EINVAL);
    assert_int_equal(sp__tenancy_team_name_check("42"), SP_EINVAL);
    assert_int_equal(sp__tenancy_team_name_check(" acme"), SP_EINVAL);
    assert_int_equal(sp__tenancy_team_name_check("acme "), SP_EINVAL);
    assert_int_equal(sp__tenancy_team_name_check("ac\tme"), SP_EINVAL);
    assert_int_equal(sp__tenancy_team_name_check(NULL), SP_EINVAL);
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[SP_TEAM_NAME_MAX] = '\0';
    assert_int_equal(sp__tenancy_team_name_check(long_name), 0);
    long_name[SP_TEAM_NAME_MAX] = 'x';
    long_name[SP_TEAM_NAME_MAX + 1] = '\0';
    assert_int_equal(sp__tenancy_team_name_check(long_name), SP_EINVAL);

    int64_t id = team_add(fx, "Acme Inc.");
    o.name = "ACME INC.";
    assert_int_equal(write_sync(fx, w_team, &o), SP_EEXIST);
    o.name = "42";
    assert_int_equal(write_sync(fx, w_team, &o), SP_EINVAL);

    /* Found by id, by name in any case; digits always mean an id. */
    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_team_resolve(r, "1", &t), 0);
    assert_int_equal(t.id, id);
    assert_string_equal(t.name, "Acme Inc.");
    assert_int_equal(t.created_at, 1000);
    assert_int_equal(sp__tenancy_team_resolve(r, "acme inc.", &t), 0);
    assert_int_equal(t.id, id);
    assert_int_equal(sp__tenancy_team_resolve(r, "2", &t), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_team_resolve(r, "0", &t), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_team_resolve(r, "99999999999999999999999", &t), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_team_resolve(r, "nobody", &t), SP_ENOTFOUND);
    sp__store_read_end(r);
}

static void test_domain_find(void **state)
{
    fx_t *fx = *state;
    int64_t team = team_add(fx, "acme"), other = team_add(fx, "other");
    op_t o = {.team = team, .name = "Example.COM", .status = SP_DOM_PENDING};
    sp_domain_t d;
    sp_domain_rec_t rec;
    sp_rtxn_t *r;

    assert_int_equal(write_sync(fx, w_domain, &o), 0);
    int64_t id = o.out;
    /* Names are unique across teams, whatever their case. */
    o.name = "example.com";
    assert_int_equal(write_sync(fx, w_domain, &o), SP_EEXIST);
    o.team = other;
    o.name = "EXAMPLE.com";
    assert_int_equal(write_sync(fx, w_domain, &o), SP_EEXIST);
    o.name = "bad_name.com";
    assert_int_equal(write_sync(fx, w_domain, &o), SP_EINVAL);
    o.name = "ok.com";
    o.region = "EU West";
    assert_int_equal(write_sync(fx, w_domain, &o), SP_EINVAL);
    o.region = NULL;
    o.team = 999;
    assert_int_equal(write_sync(fx, w_domain, &o), SP_ENOTFOUND);
    o.team = other;
    o.status = 99;
    assert_int_equal(write_sync(fx, w_domain, &o), SP_EINVAL);

    memset(&d, 0, sizeof(d));
    d.size = sizeof(d);
    assert_int_equal(sp__tenancy_domain_find_in(fx->st, team, "EXAMPLE.com", &d), 0);
    assert_int_equal(d.id, id);
    assert_int_equal(d.team, team);
    assert_string_equal(d.name, "example.com");
    assert_string_equal(d.region, "us-east-1");
    assert_false(d.verified);
    /* Another team's domain does not exist for this team. */
    assert_int_equal(sp__tenancy_domain_find_in(fx->st, other, "example.com", &d), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_domain_find_in(fx->st, team, "nope.com", &d), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_domain_find_in(fx->st, team, "not a name", &d), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_domain_get_in(fx->st, id, &d), 0);
    assert_string_equal(d.name, "example.com");
    assert_int_equal(sp__tenancy_domain_get_in(fx->st, id + 100, &d), SP_ENOTFOUND);
    d.size = 0;
    assert_int_equal(sp__tenancy_domain_get_in(fx->st, id, &d), SP_EINVAL);

    /* Manual verification flips verified. */
    op_t v = {.id = id, .status = SP_DOM_SUCCESS};
    assert_int_equal(write_sync(fx, w_domain_status, &v), 0);
    d.size = sizeof(d);
    assert_int_equal(sp__tenancy_domain_get_in(fx->st, id, &d), 0);
    assert_true(d.verified);
    v.id = 999;
    assert_int_equal(write_sync(fx, w_domain_status, &v), SP_ENOTFOUND);

    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_domain_rec_find(r, "example.COM", &rec), 0);
    sp__store_read_end(r);
    assert_int_equal(rec.status, SP_DOM_SUCCESS);
    assert_string_equal(rec.dkim_selector, "usesend");
    assert_int_equal(rec.created_at, 4000);
    assert_false(rec.click_tracking);
    assert_false(rec.open_tracking);
    assert_string_equal(sp__domain_status_name(rec.status), "SUCCESS");
    assert_int_equal(sp__domain_status_parse("TEMPORARY_FAILURE"), SP_DOM_TEMPORARY_FAILURE);
    assert_int_equal(sp__domain_status_parse("success"), SP_EINVAL);
    assert_null(sp__domain_status_name(SP_DOM__COUNT));
}

/* The host API backends read the running core's store. */
static void test_host_backends(void **state)
{
    fx_t *fx = *state;
    char tok[SP_KEY_TOKEN_LEN + 1];
    sp_config_t cfg = {.data_dir = fx->dir};
    sp_core_t core = {.store = fx->st, .cfg = &cfg};
    int64_t team = team_add(fx, "acme");
    int64_t dom = domain_add(fx, team, "example.com", SP_DOM_SUCCESS);
    sp_auth_t a = {.size = sizeof(a)};
    sp_domain_t d = {.size = sizeof(d)};

    key_add(fx, team, SP_PERM_SENDING, dom, tok);
    sp__core = NULL;
    assert_int_equal(sp__tenancy_auth_key(tok, strlen(tok), &a), SP_ESTATE);
    assert_int_equal(sp__tenancy_domain_get(dom, &d), SP_ESTATE);
    sp__core = &core;
    assert_int_equal(sp__tenancy_auth_key(tok, strlen(tok), &a), 0);
    assert_int_equal(a.team, team);
    assert_int_equal(a.domain_id, dom);
    assert_int_equal(sp__tenancy_auth_key("us_x", 4, &a), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_domain_find(team, "Example.Com", &d), 0);
    assert_true(d.verified);
    assert_int_equal(sp__tenancy_domain_find(team + 1, "example.com", &d), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_domain_get(dom, &d), 0);
    assert_int_equal(d.team, team);
    sp__core = NULL;
}

/* ------------------------------------------------------------------------ */
/* Ids, server key, records */

static int each_count(void *arg, const sp_key_rec_t *k)
{
    (void)k;
    (*(int *)arg)++;
    return 0;
}

static int each_team_ids(void *arg, const sp_team_rec_t *t)
{
    int64_t **p = arg;
    *(*p)++ = t->id;
    return 0;
}

static int each_domain_stop(void *arg, const sp_domain_rec_t *d)
{
    (*(int *)arg)++;
    return d->id == 1 ? 7 : 0;
}

static void test_ids_and_lists(void **state)
{
    fx_t *fx = *state;
    char tok[SP_KEY_TOKEN_LEN + 1];
    int64_t ids[4], seen[8], *p = seen;
    op_t dup = {.name = "t1"};
    sp_rtxn_t *r;
    int n = 0;

    ids[0] = team_add(fx, "t1");
    /* A refused request hands out no id. */
    assert_int_equal(write_sync(fx, w_team, &dup), SP_EEXIST);
    ids[1] = team_add(fx, "t2");
    ids[2] = team_add(fx, "t3");
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 3);
    assert_int_equal(domain_add(fx, ids[0], "a.com", SP_DOM_PENDING), 1);
    assert_int_equal(domain_add(fx, ids[1], "b.com", SP_DOM_PENDING), 2);
    assert_int_equal(key_add(fx, ids[0], SP_PERM_FULL, 0, tok), 1);
    assert_int_equal(key_add(fx, ids[1], SP_PERM_FULL, 0, tok), 2);
    assert_int_equal(key_add(fx, ids[1], SP_PERM_FULL, 0, tok), 3);

    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_team_each(r, each_team_ids, &p), 0);
    assert_int_equal(p - seen, 3);
    assert_int_equal(seen[2], 3);
    assert_int_equal(sp__tenancy_key_each(r, 0, each_count, &n), 0);
    assert_int_equal(n, 3);
    n = 0;
    assert_int_equal(sp__tenancy_key_each(r, ids[1], each_count, &n), 0);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_equal(sp__tenancy_domain_each(r, 0, each_domain_stop, &n), 7);
    assert_int_equal(n, 1);
    assert_int_equal(sp__tenancy_key_each(r, 0, NULL, NULL), SP_EINVAL);
    sp__store_read_end(r);
    assert_string_equal(sp__store_dir(fx->st), fx->dir);
}

static void test_server_key_file(void **state)
{
    fx_t *fx = *state;
    uint8_t k1[32], k2[32], zero[32] = {0};
    char path[PATH_MAX], tok[SP_KEY_TOKEN_LEN + 1];
    struct stat sb;
    sp_auth_t a;
    FILE *f;

    snprintf(path, sizeof(path), "%s/keys.secret", fx->dir);
    assert_int_equal(sp__tenancy_secret(fx->dir, false, k1), SP_ENOTFOUND);
    assert_int_equal(stat(path, &sb), -1);
    assert_int_equal(sp__tenancy_secret(fx->dir, true, k1), 0);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, 32);
    assert_memory_not_equal(k1, zero, 32);
    /* Reused, not replaced. */
    assert_int_equal(sp__tenancy_secret(fx->dir, true, k2), 0);
    assert_memory_equal(k1, k2, 32);
    assert_int_equal(sp__tenancy_secret(fx->dir, false, k2), 0);
    assert_memory_equal(k1, k2, 32);

    /* A key made with it authenticates; a replaced key file (say, lost in a
     * restore) makes the same token fail: the hash depends on the file. */
    int64_t team = team_add(fx, "acme");
    key_add(fx, team, SP_PERM_FULL, 0, tok);
    assert_int_equal(auth(fx, tok, &a), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(auth(fx, tok, &a), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_secret(fx->dir, true, k2), 0);
    assert_memory_not_equal(k1, k2, 32);
    assert_int_equal(auth(fx, tok, &a), SP_ENOTFOUND);
    /* Restored in place: works again (the cache follows the file; the
     * explicit time keeps this independent of the clock's granularity). */
    assert_non_null(f = fopen(path, "wb"));
    assert_int_equal(fwrite(k1, 1, 32, f), 32);
    fclose(f);
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    assert_int_equal(auth(fx, tok, &a), 0);

    /* A file of the wrong size is refused. */
    char other[600], opath[640];
    snprintf(other, sizeof(other), "%s/sub", fx->dir);
    assert_int_equal(mkdir(other, 0700), 0);
    snprintf(opath, sizeof(opath), "%s/keys.secret", other);
    assert_non_null(f = fopen(opath, "wb"));
    fputs("short", f);
    fclose(f);
    assert_int_equal(sp__tenancy_secret(other, true, k2), SP_ECORRUPT);
    assert_int_equal(sp__tenancy_secret(NULL, true, k2), SP_EINVAL);
}

/* A record carrying a field from a newer version keeps it through an
 * update by this version; an unknown major version is refused. */
static int put_raw_key(sp_wtxn_t *w, void *arg)
{
    msgpack_sbuffer *sb = arg;
    uint8_t k[8];
    sp__be64_put(k, 50);
    return sp__wtxn_put(w, SP_DB_API_KEYS, k, 8, sb->data, sb->size);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void build_key_record(msgpack_sbuffer *sb, int version, bool extra)
{
    msgpack_packer pk;
    uint8_t hash[32] = {1, 2, 3};

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, extra ? 6 : 5);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, version);
    pack_str(&pk, "client_id");
    pack_str(&pk, "abcdefghij");
    pack_str(&pk, "token_hash");
    msgpack_pack_bin(&pk, 32);
    msgpack_pack_bin_body(&pk, hash, 32);
    if (extra) {
        pack_str(&pk, "future");
        msgpack_pack_array(&pk, 2);
        pack_str(&pk, "kept");
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "deep");
        msgpack_pack_int(&pk, -5);
    }
    pack_str(&pk, "permission");
    pack_str(&pk, "SENDING");
    pack_str(&pk, "team");
    msgpack_pack_int(&pk, 1);
}

static void test_record_compat(void **state)
{
    fx_t *fx = *state;
    msgpack_sbuffer sb;
    sp_key_rec_t k;
    sp_rtxn_t *r;
    const void *v;
    size_t vl;
    uint8_t key[8];
    op_t o = {.id = 50};

    build_key_record(&sb, 1, true);
    assert_int_equal(write_sync(fx, put_raw_key, &sb), 0);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(write_sync(fx, w_revoke, &o), 0);

    sp__be64_put(key, 50);
    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_key_get(r, 50, &k), 0);
    assert_int_equal(k.revoked_at, 3000);
    assert_string_equal(k.client_id, "abcdefghij");
    assert_int_equal(k.permission, SP_PERM_SENDING);
    assert_int_equal(sp__rtxn_get(r, SP_DB_API_KEYS, key, 8, &v, &vl), 0);
    /* The unknown field is there, byte for byte. */
    static const uint8_t future[] = {0xa6, 'f', 'u', 't', 'u', 'r', 'e', 0x92, 0xa4, 'k', 'e',
                                     'p',  't', 0x81, 0xa4, 'd', 'e', 'e', 'p', 0xfb};
    assert_non_null(memmem(v, vl, future, sizeof(future)));
    sp__store_read_end(r);

    build_key_record(&sb, 2, false);
    assert_int_equal(write_sync(fx, put_raw_key, &sb), 0);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_key_get(r, 50, &k), SP_ECORRUPT);
    sp__store_read_end(r);
    assert_int_equal(write_sync(fx, w_revoke, &o), SP_ECORRUPT);
}

/* ------------------------------------------------------------------------ */
/* DKIM keys */

typedef struct dkim_op {
    int64_t id;
    const char *sel, *alg, *pem;
} dkim_op_t;

static int w_set_dkim(sp_wtxn_t *w, void *arg)
{
    dkim_op_t *o = arg;
    return sp__tenancy_domain_set_dkim(w, o->id, o->sel, o->alg, o->pem);
}

/* A domain record as written before DKIM keys existed. */
static int put_old_domain(sp_wtxn_t *w, void *arg)
{
    int64_t *team = arg;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint8_t k[8];
    int rc;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "team");
    msgpack_pack_int64(&pk, *team);
    pack_str(&pk, "name");
    pack_str(&pk, "old.example");
    pack_str(&pk, "status");
    pack_str(&pk, "SUCCESS");
    pack_str(&pk, "dkim_selector");
    pack_str(&pk, "usesend");
    sp__be64_put(k, 60);
    rc = sp__wtxn_put(w, SP_DB_DOMAINS, k, 8, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void test_domain_dkim(void **state)
{
    fx_t *fx = *state;
    sp_config_t cfg = {.data_dir = fx->dir};
    sp_core_t core = {.store = fx->st, .cfg = &cfg};
    int64_t team = team_add(fx, "acme");
    int64_t dom = domain_add(fx, team, "example.com", SP_DOM_PENDING);
    char *rsa = malloc(SP_DKIM_KEY_MAX), *ed = malloc(SP_DKIM_KEY_MAX), txt[SP_DKIM_TXT_MAX];
    sp_domain_rec_t *rec = malloc(sizeof(*rec));
    sp_msg_t *m = NULL;
    sp_rtxn_t *r;
    size_t n;

    assert_non_null(rsa);
    assert_non_null(ed);
    assert_non_null(rec);
    assert_string_equal(sp__tenancy_dkim_alg_norm("rsa"), SP_DKIM_RSA);
    assert_string_equal(sp__tenancy_dkim_alg_norm("ed25519-sha256"), SP_DKIM_ED25519);
    assert_null(sp__tenancy_dkim_alg_norm("rsa-sha1"));
    assert_null(sp__tenancy_dkim_alg_norm(NULL));
    assert_int_equal(sp__tenancy_dkim_selector_check("sendpipe"), 0);
    assert_int_equal(sp__tenancy_dkim_selector_check("s2026-11.Mail"), 0);
    const char *bad_sel[] = {"", "-a", "a-", "a..b", ".a", "a.", "a_b", "a b", "x;y", NULL};
    for (int i = 0; bad_sel[i]; i++) {
        assert_int_equal(sp__tenancy_dkim_selector_check(bad_sel[i]), SP_EINVAL);
    }
    char longsel[SP_DKIM_SELECTOR_MAX + 2];
    memset(longsel, 'a', sizeof(longsel) - 1);
    longsel[sizeof(longsel) - 1] = '\0';
    assert_int_equal(sp__tenancy_dkim_selector_check(longsel), SP_EINVAL);

    /* Keys: PKCS#8 PEM; their records in the documented formats. */
    assert_int_equal(sp__tenancy_dkim_keygen(SP_DKIM_RSA, rsa, SP_DKIM_KEY_MAX), 0);
    assert_int_equal(sp__tenancy_dkim_keygen(SP_DKIM_ED25519, ed, SP_DKIM_KEY_MAX), 0);
    assert_int_equal(sp__tenancy_dkim_keygen("rsa", txt, 100), SP_EINVAL);
    assert_int_equal(sp__tenancy_dkim_keygen(SP_DKIM_ED25519, txt, 100), SP_ETOOBIG);
    assert_true(strncmp(rsa, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    assert_true(strncmp(ed, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    assert_int_equal(sp__tenancy_dkim_txt(SP_DKIM_RSA, rsa, txt, sizeof(txt)), 0);
    /* base64 of a 2048-bit SubjectPublicKeyInfo (294 bytes): 392 chars */
    assert_true(strncmp(txt, "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
                        62) == 0);
    assert_int_equal(strlen(txt), 18 + 392);
    assert_int_equal(sp__tenancy_dkim_txt(SP_DKIM_ED25519, ed, txt, sizeof(txt)), 0);
    assert_true(strncmp(txt, "v=DKIM1; k=ed25519; p=", 22) == 0);
    assert_int_equal(strlen(txt), 22 + 44); /* the raw 32-byte key */
    assert_int_equal(sp__tenancy_dkim_txt(SP_DKIM_ED25519, rsa, txt, sizeof(txt)), SP_EINVAL);
    assert_int_equal(sp__tenancy_dkim_txt(SP_DKIM_RSA, "junk", txt, sizeof(txt)), SP_EINVAL);
    assert_int_equal(sp__tenancy_dkim_txt(SP_DKIM_RSA, rsa, txt, 40), SP_ETOOBIG);

    /* No key yet. */
    sp__core = &core;
    assert_int_equal(sp__tenancy_domain_dkim(dom, &m), SP_ENOTFOUND);
    assert_int_equal(sp__tenancy_domain_dkim(dom + 100, &m), SP_ENOTFOUND);

    /* Refusals leave the record alone. */
    dkim_op_t o = {.id = dom, .sel = "sendpipe", .alg = "rsa", .pem = rsa};
    o.sel = "bad sel";
    assert_int_equal(write_sync(fx, w_set_dkim, &o), SP_EINVAL);
    o.sel = "sendpipe";
    o.alg = "ed25519"; /* an RSA key under the Ed25519 name */
    assert_int_equal(write_sync(fx, w_set_dkim, &o), SP_EINVAL);
    o.alg = "rsa";
    o.id = dom + 100;
    assert_int_equal(write_sync(fx, w_set_dkim, &o), SP_ENOTFOUND);
    o.id = dom;
    assert_int_equal(write_sync(fx, w_set_dkim, &o), 0);

    assert_int_equal(sp__tenancy_domain_dkim(dom, &m), 0);
    assert_string_equal(sp__msg_get(m, "domain", &n), "example.com");
    assert_string_equal(sp__msg_get(m, "selector", &n), "sendpipe");
    assert_string_equal(sp__msg_get(m, "algorithm", &n), "rsa-sha256");
    assert_string_equal(sp__msg_get(m, "private_key", &n), rsa);
    sp__msg_free(m);
    m = NULL;

    /* Other updates keep the key; a rotation replaces it. */
    op_t v = {.id = dom, .status = SP_DOM_SUCCESS};
    assert_int_equal(write_sync(fx, w_domain_status, &v), 0);
    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_domain_rec_get(r, dom, rec), 0);
    sp__store_read_end(r);
    assert_string_equal(rec->dkim_private_key, rsa);
    assert_string_equal(rec->dkim_algorithm, "rsa-sha256");
    o.alg = "ed25519-sha256";
    o.sel = "s2";
    o.pem = ed;
    assert_int_equal(write_sync(fx, w_set_dkim, &o), 0);
    assert_int_equal(sp__tenancy_domain_dkim_in(fx->st, dom, &m), 0);
    assert_string_equal(sp__msg_get(m, "selector", &n), "s2");
    assert_string_equal(sp__msg_get(m, "algorithm", &n), "ed25519-sha256");
    assert_string_equal(sp__msg_get(m, "private_key", &n), ed);
    sp__msg_free(m);
    m = NULL;

    /* A record from before keys: readable, no key, and it can get one. */
    assert_int_equal(write_sync(fx, put_old_domain, &team), 0);
    assert_int_equal(sp__store_read_begin(fx->st, &r), 0);
    assert_int_equal(sp__tenancy_domain_rec_get(r, 60, rec), 0);
    sp__store_read_end(r);
    assert_string_equal(rec->name, "old.example");
    assert_string_equal(rec->dkim_selector, "usesend");
    assert_string_equal(rec->dkim_private_key, "");
    assert_int_equal(sp__tenancy_domain_dkim(60, &m), SP_ENOTFOUND);
    dkim_op_t old = {.id = 60, .sel = "sendpipe", .alg = "rsa-sha256", .pem = rsa};
    assert_int_equal(write_sync(fx, w_set_dkim, &old), 0);
    assert_int_equal(sp__tenancy_domain_dkim(60, &m), 0);
    assert_string_equal(sp__msg_get(m, "domain", &n), "old.example");
    sp__msg_free(m);
    sp__core = NULL;
    free(rsa);
    free(ed);
    free(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_refusals, setup, teardown),
        cmocka_unit_test(test_token_parse),
        cmocka_unit_test_setup_teardown(test_revoked_and_deleted_team, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permissions_and_domains, setup, teardown),
        cmocka_unit_test(test_domain_names),
        cmocka_unit_test_setup_teardown(test_team_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_domain_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_backends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_and_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_key_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_compat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_domain_dkim, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
