/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the LMDB store: reads and writes, group commit, rollback of
 * one request, full maps, shutdown drain, read-only access, backups. */
#include <errno.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include <sp/sp_errno.h>

#include "sp_core/store.h"

typedef struct {
    char dir[512];        /* the test's temporary directory */
    char store[PATH_MAX]; /* dir/db */
    uv_loop_t loop;
    sp_store_t *open; /* the writer store a test left open when it failed */
} fx_t;

/* ------------------------------------------------------------------------ */
/* Fixture and loop helpers */

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

    if (!fx) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "%s/sp_store_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->store, sizeof(fx->store), "%s/db", fx->dir);
    if (uv_loop_init(&fx->loop) != 0) {
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    int rc;

    if (fx->open) {
        sp__store_close(fx->open);
    }
    uv_run(&fx->loop, UV_RUN_DEFAULT); /* pending close callbacks */
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
    uv_stop(t->loop);
}

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

/* Run the loop until *count reaches want, failing on the watchdog. */
static void run_until(uv_loop_t *loop, const size_t *count, size_t want)
{
    uv_timer_t wd;
    bool fired = false;

    uv_timer_init(loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, on_watchdog, timeout_ms(), 0);
    while (*count < want && !fired) {
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&wd, on_closed_noop);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_false(fired);
}

static sp_store_t *open_store(fx_t *fx, const char *dir, uint64_t map_size, uint64_t map_max,
                              bool sync, uint32_t max_batch)
{
    sp_store_opts_t o = {
        .map_size = map_size, .map_max = map_max, .sync = sync, .max_batch = max_batch};
    sp_store_t *st = NULL;

    assert_int_equal(sp__store_open(&st, dir ? dir : fx->store, &o, &fx->loop), 0);
    assert_non_null(st);
    fx->open = st;
    return st;
}

static sp_store_t *open_ro(const char *dir)
{
    sp_store_opts_t o = {.read_only = true};
    sp_store_t *st = NULL;

    assert_int_equal(sp__store_open(&st, dir, &o, NULL), 0);
    return st;
}

static void close_store(fx_t *fx, sp_store_t *st)
{
    fx->open = NULL;
    sp__store_close(st);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
}

/* ------------------------------------------------------------------------ */
/* Write requests */

typedef struct ctx {
    size_t submitted;
    size_t done;
    size_t next_seq;
    bool order_bad;
} ctx_t;

typedef struct op op_t;
typedef int (*op_fn)(sp_wtxn_t *w, op_t *op);

struct op {
    ctx_t *ctx;
    size_t seq;
    op_fn fn;
    sp_db_t db;
    uint8_t key[32];
    size_t kl;
    const void *val;
    size_t vl;
    int status;
    bool done;
    uv_sem_t *sem;
    void *user;
    /* results of custom apply functions */
    int r[8];
    uint8_t rk[8][32];
    size_t rkl[8];
};

static int fn_put(sp_wtxn_t *w, op_t *op)
{
    return sp__wtxn_put(w, op->db, op->key, op->kl, op->val, op->vl);
}

static int fn_del(sp_wtxn_t *w, op_t *op)
{
    return sp__wtxn_del(w, op->db, op->key, op->kl);
}

static int apply_op(sp_wtxn_t *w, void *arg)
{
    op_t *op = arg;
    return op->fn(w, op);
}

static void done_op(void *arg, int status)
{
    op_t *op = arg;

    op->status = status;
    op->done = true;
    if (op->ctx) {
        if (op->seq != op->ctx->next_seq) {
            op->ctx->order_bad = true;
        }
        op->ctx->next_seq++;
        op->ctx->done++;
    }
}

static void op_init(op_t *op, ctx_t *ctx, op_fn fn, sp_db_t db, const void *k, size_t kl,
                    const void *v, size_t vl)
{
    memset(op, 0, sizeof(*op));
    op->ctx = ctx;
    op->fn = fn;
    op->db = db;
    memcpy(op->key, k, kl);
    op->kl = kl;
    op->val = v;
    op->vl = vl;
    op->status = 1; /* not yet */
}

static void submit(sp_store_t *st, op_t *op)
{
    op->seq = op->ctx ? op->ctx->submitted++ : 0;
    assert_int_equal(sp__store_write(st, apply_op, done_op, op), 0);
}

/* Submit one write and wait for it. */
static int write_sync(fx_t *fx, sp_store_t *st, op_fn fn, sp_db_t db, const void *k, size_t kl,
                      const void *v, size_t vl)
{
    ctx_t ctx = {0};
    op_t op;

    op_init(&op, &ctx, fn, db, k, kl, v, vl);
    submit(st, &op);
    run_until(&fx->loop, &ctx.done, 1);
    return op.status;
}

static int get_copy(sp_store_t *st, sp_db_t db, const void *k, size_t kl, void *out, size_t cap,
                    size_t *vl)
{
    sp_rtxn_t *r;
    const void *v;
    int rc;

    assert_int_equal(sp__store_read_begin(st, &r), 0);
    rc = sp__rtxn_get(r, db, k, kl, &v, vl);
    if (rc == 0 && out) {
        assert_true(*vl <= cap);
        memcpy(out, v, *vl);
    }
    sp__store_read_end(r);
    return rc;
}

static uint64_t count(sp_store_t *st, sp_db_t db)
{
    sp_rtxn_t *r;
    uint64_t n = 0;

    assert_int_equal(sp__store_read_begin(st, &r), 0);
    assert_int_equal(sp__rtxn_count(r, db, &n), 0);
    sp__store_read_end(r);
    return n;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* ------------------------------------------------------------------------ */

static void test_put_get_del(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, true, 0);
    ctx_t ctx = {0};
    op_t ops[4];
    char buf[64];
    size_t vl;
    uint8_t big[600];

    op_init(&ops[0], &ctx, fn_put, SP_DB_KV, "k1", 2, "v1", 2);
    op_init(&ops[1], &ctx, fn_put, SP_DB_KV, "k2", 2, "v2", 2);
    op_init(&ops[2], &ctx, fn_put, SP_DB_MESSAGES, "k1", 2, "other", 5);
    op_init(&ops[3], &ctx, fn_put, SP_DB_QUEUE, "q", 1, NULL, 0);
    for (int i = 0; i < 4; i++) {
        submit(st, &ops[i]);
    }
    run_until(&fx->loop, &ctx.done, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ops[i].status, 0);
    }
    assert_false(ctx.order_bad);
    assert_int_equal(sp__store_pending(st), 0);

    assert_int_equal(get_copy(st, SP_DB_KV, "k1", 2, buf, sizeof(buf), &vl), 0);
    assert_int_equal(vl, 2);
    assert_memory_equal(buf, "v1", 2);
    assert_int_equal(get_copy(st, SP_DB_MESSAGES, "k1", 2, buf, sizeof(buf), &vl), 0);
    assert_memory_equal(buf, "other", 5);
    assert_int_equal(get_copy(st, SP_DB_QUEUE, "q", 1, buf, sizeof(buf), &vl), 0);
    assert_int_equal(vl, 0);
    assert_int_equal(get_copy(st, SP_DB_KV, "k3", 2, buf, sizeof(buf), &vl), SP_ENOTFOUND);
    assert_int_equal(get_copy(st, SP_DB_EVENTS, "k1", 2, buf, sizeof(buf), &vl), SP_ENOTFOUND);

    /* Overwrite, delete, delete a missing key. */
    assert_int_equal(write_sync(fx, st, fn_put, SP_DB_KV, "k2", 2, "v2b", 3), 0);
    assert_int_equal(get_copy(st, SP_DB_KV, "k2", 2, buf, sizeof(buf), &vl), 0);
    assert_memory_equal(buf, "v2b", 3);
    assert_int_equal(write_sync(fx, st, fn_del, SP_DB_KV, "k1", 2, NULL, 0), 0);
    assert_int_equal(write_sync(fx, st, fn_del, SP_DB_KV, "k1", 2, NULL, 0), SP_ENOTFOUND);
    assert_int_equal(get_copy(st, SP_DB_KV, "k1", 2, buf, sizeof(buf), &vl), SP_ENOTFOUND);
    assert_int_equal(count(st, SP_DB_KV), 1);
    assert_int_equal(count(st, SP_DB_MESSAGES), 1);

    /* Argument checks. */
    memset(big, 'k', sizeof(big));
    assert_int_equal(write_sync(fx, st, fn_put, SP_DB_KV, big, 0, "v", 1), SP_EINVAL);
    assert_int_equal(get_copy(st, SP_DB_KV, big, 0, buf, sizeof(buf), &vl), SP_EINVAL);
    assert_int_equal(get_copy(st, SP_DB__COUNT, "k", 1, buf, sizeof(buf), &vl), SP_EINVAL);
    {
        sp_rtxn_t *r;
        assert_int_equal(sp__store_read_begin(st, &r), 0);
        assert_int_equal(sp__rtxn_get(r, SP_DB_KV, big, sizeof(big), NULL, NULL), SP_EINVAL);
        sp__store_read_end(r);
    }
    assert_int_equal(sp__store_write(st, NULL, done_op, NULL), SP_EINVAL);
    assert_int_equal(sp__store_write(NULL, apply_op, done_op, NULL), SP_EINVAL);
    close_store(fx, st);

    /* Durable across reopen. */
    st = open_store(fx, NULL, 0, 0, true, 0);
    assert_int_equal(get_copy(st, SP_DB_KV, "k2", 2, buf, sizeof(buf), &vl), 0);
    assert_memory_equal(buf, "v2b", 3);
    close_store(fx, st);
}

/* ------------------------------------------------------------------------ */

typedef struct {
    uint8_t keys[16][16];
    size_t kl[16];
    size_t n;
    int stop_after; /* return stop_ret after this many (0: never) */
    int stop_ret;
} seen_t;

static int each_rec(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    seen_t *s = arg;

    (void)v;
    (void)vl;
    assert_true(s->n < 16 && kl <= 16);
    memcpy(s->keys[s->n], k, kl);
    s->kl[s->n] = kl;
    s->n++;
    if (s->stop_after && (int)s->n >= s->stop_after) {
        return s->stop_ret;
    }
    return 0;
}

static int scan(sp_store_t *st, sp_db_t db, const void *from, size_t fl, const void *prefix,
                size_t pl, seen_t *s)
{
    sp_rtxn_t *r;
    int rc;

    assert_int_equal(sp__store_read_begin(st, &r), 0);
    rc = sp__rtxn_scan(r, db, from, fl, prefix, pl, each_rec, s);
    sp__store_read_end(r);
    return rc;
}

static void qkey(uint8_t *k, uint64_t due, uint64_t id)
{
    sp__be64_put(k, due);
    sp__be64_put(k + 8, id);
}

static void ekey(uint8_t *k, uint64_t id, uint32_t seq)
{
    sp__be64_put(k, id);
    sp__be32_put(k + 8, seq);
}

/* Looks up the last key of several prefixes inside one write transaction. */
static int fn_last(sp_wtxn_t *w, op_t *op)
{
    uint8_t p7[8], p8[8], p9[8], pff[8];
    const void *k;
    size_t kl;

    sp__be64_put(p7, 7);
    sp__be64_put(p8, 8);
    sp__be64_put(p9, 9);
    sp__be64_put(pff, UINT64_MAX);
    const uint8_t *prefixes[] = {p7, p8, p9, pff, NULL};
    for (int i = 0; i < 5; i++) {
        op->r[i] = sp__wtxn_last(w, SP_DB_EVENTS, prefixes[i], prefixes[i] ? 8 : 0, &k, &kl);
        if (op->r[i] == 0) {
            assert_true(kl <= 32);
            memcpy(op->rk[i], k, kl);
            op->rkl[i] = kl;
        }
    }
    op->r[5] = sp__wtxn_last(w, SP_DB_COUNTERS, NULL, 0, &k, &kl);
    return 0;
}

static void test_scan_and_last(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, false, 0);
    static const uint64_t dues[] = {100, 200, 200, 300, 500};
    ctx_t ctx = {0};
    op_t ops[16];
    size_t n = 0;
    uint8_t k[16];
    seen_t s;

    for (size_t i = 0; i < 5; i++) {
        qkey(k, dues[i], i + 1);
        op_init(&ops[n], &ctx, fn_put, SP_DB_QUEUE, k, 16, NULL, 0);
        submit(st, &ops[n++]);
    }
    for (uint32_t seq = 1; seq <= 5; seq++) {
        ekey(k, 7, seq);
        op_init(&ops[n], &ctx, fn_put, SP_DB_EVENTS, k, 12, "e", 1);
        submit(st, &ops[n++]);
    }
    for (uint32_t seq = 1; seq <= 2; seq++) {
        ekey(k, 8, seq);
        op_init(&ops[n], &ctx, fn_put, SP_DB_EVENTS, k, 12, "e", 1);
        submit(st, &ops[n++]);
    }
    ekey(k, UINT64_MAX, 1);
    op_init(&ops[n], &ctx, fn_put, SP_DB_EVENTS, k, 12, "e", 1);
    submit(st, &ops[n++]);
    run_until(&fx->loop, &ctx.done, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ops[i].status, 0);
    }

    /* Whole queue in due order. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(scan(st, SP_DB_QUEUE, NULL, 0, NULL, 0, &s), 0);
    assert_int_equal(s.n, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(sp__be64_get(s.keys[i]), dues[i]);
        assert_int_equal(sp__be64_get(s.keys[i] + 8), i + 1);
    }
    /* From a due time (a shorter key than the stored ones). */
    memset(&s, 0, sizeof(s));
    sp__be64_put(k, 200);
    assert_int_equal(scan(st, SP_DB_QUEUE, k, 8, NULL, 0, &s), 0);
    assert_int_equal(s.n, 4);
    assert_int_equal(sp__be64_get(s.keys[0] + 8), 2);
    /* The scheduler's pattern: stop at the first key past "now". */
    memset(&s, 0, sizeof(s));
    s.stop_after = 3;
    s.stop_ret = 7;
    assert_int_equal(scan(st, SP_DB_QUEUE, NULL, 0, NULL, 0, &s), 7);
    assert_int_equal(s.n, 3);
    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    s.stop_ret = -5;
    assert_int_equal(scan(st, SP_DB_QUEUE, NULL, 0, NULL, 0, &s), -5);

    /* Prefix ranges. */
    memset(&s, 0, sizeof(s));
    sp__be64_put(k, 7);
    assert_int_equal(scan(st, SP_DB_EVENTS, NULL, 0, k, 8, &s), 0);
    assert_int_equal(s.n, 5);
    assert_int_equal(sp__be32_get(s.keys[4] + 8), 5);
    memset(&s, 0, sizeof(s));
    sp__be64_put(k, 8);
    assert_int_equal(scan(st, SP_DB_EVENTS, NULL, 0, k, 8, &s), 0);
    assert_int_equal(s.n, 2);
    /* From inside a prefix. */
    {
        uint8_t from[12], pre[8];
        ekey(from, 7, 3);
        sp__be64_put(pre, 7);
        memset(&s, 0, sizeof(s));
        assert_int_equal(scan(st, SP_DB_EVENTS, from, 12, pre, 8, &s), 0);
        assert_int_equal(s.n, 3);
        assert_int_equal(sp__be32_get(s.keys[0] + 8), 3);
        /* From below the prefix starts at the prefix. */
        sp__be64_put(from, 1);
        sp__be64_put(pre, 8);
        memset(&s, 0, sizeof(s));
        assert_int_equal(scan(st, SP_DB_EVENTS, from, 8, pre, 8, &s), 0);
        assert_int_equal(s.n, 2);
        /* From above everything with the prefix. */
        ekey(from, 8, 9);
        memset(&s, 0, sizeof(s));
        assert_int_equal(scan(st, SP_DB_EVENTS, from, 12, pre, 8, &s), 0);
        assert_int_equal(s.n, 0);
        /* A prefix with no keys, and the all-0xff prefix. */
        sp__be64_put(pre, 9);
        memset(&s, 0, sizeof(s));
        assert_int_equal(scan(st, SP_DB_EVENTS, NULL, 0, pre, 8, &s), 0);
        assert_int_equal(s.n, 0);
        sp__be64_put(pre, UINT64_MAX);
        memset(&s, 0, sizeof(s));
        assert_int_equal(scan(st, SP_DB_EVENTS, NULL, 0, pre, 8, &s), 0);
        assert_int_equal(s.n, 1);
        /* An empty database. */
        memset(&s, 0, sizeof(s));
        assert_int_equal(scan(st, SP_DB_COUNTERS, NULL, 0, NULL, 0, &s), 0);
        assert_int_equal(s.n, 0);
    }
    assert_int_equal(count(st, SP_DB_EVENTS), 8);

    /* Last key per prefix, inside a write. */
    {
        op_t op;
        op_init(&op, &ctx, fn_last, SP_DB_EVENTS, "x", 1, NULL, 0);
        submit(st, &op);
        run_until(&fx->loop, &ctx.done, n + 1);
        assert_int_equal(op.status, 0);
        assert_int_equal(op.r[0], 0);
        assert_int_equal(sp__be64_get(op.rk[0]), 7);
        assert_int_equal(sp__be32_get(op.rk[0] + 8), 5);
        assert_int_equal(op.r[1], 0);
        assert_int_equal(sp__be32_get(op.rk[1] + 8), 2);
        assert_int_equal(op.r[2], SP_ENOTFOUND);
        assert_int_equal(op.r[3], 0);
        assert_true(sp__be64_get(op.rk[3]) == UINT64_MAX);
        assert_int_equal(op.r[4], 0); /* no prefix: the largest key */
        assert_true(sp__be64_get(op.rk[4]) == UINT64_MAX);
        assert_int_equal(op.r[5], SP_ENOTFOUND);
    }
    close_store(fx, st);
}

/* ------------------------------------------------------------------------ */

#define GC_N 1000

static void test_group_commit(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, true, 1024);
    op_t *ops = calloc(GC_N, sizeof(*ops));
    static uint8_t vals[GC_N][100];
    sp_store_stats_t ss;
    ctx_t ctx = {0};
    uint64_t sum = 0;

    for (size_t i = 0; i < GC_N; i++) {
        uint8_t k[8];
        sp__be64_put(k, i);
        fill(vals[i], sizeof(vals[i]), (uint32_t)i);
        op_init(&ops[i], &ctx, fn_put, SP_DB_MESSAGES, k, 8, vals[i], sizeof(vals[i]));
        submit(st, &ops[i]);
    }
    assert_true(sp__store_pending(st) > 0);
    run_until(&fx->loop, &ctx.done, GC_N);
    for (size_t i = 0; i < GC_N; i++) {
        assert_int_equal(ops[i].status, 0);
    }
    assert_false(ctx.order_bad);
    assert_int_equal(sp__store_pending(st), 0);

    sp__store_stats(st, &ss);
    assert_int_equal(ss.requests, GC_N);
    assert_true(ss.commits >= 1);
    assert_true(ss.commits < GC_N);
    assert_int_equal(ss.failed_commits, 0);
    for (int i = 0; i < 8; i++) {
        sum += ss.batch_hist[i];
    }
    assert_int_equal(sum, ss.commits);
    assert_true(ss.map_size == 1ull << 30);
    assert_true(ss.map_used > GC_N * 100);
    assert_true(ss.map_used < ss.map_size);

    assert_int_equal(count(st, SP_DB_MESSAGES), GC_N);
    for (size_t i = 0; i < GC_N; i++) {
        uint8_t k[8], v[100];
        size_t vl;
        sp__be64_put(k, i);
        assert_int_equal(get_copy(st, SP_DB_MESSAGES, k, 8, v, sizeof(v), &vl), 0);
        assert_int_equal(vl, 100);
        assert_memory_equal(v, vals[i], 100);
    }
    close_store(fx, st);
    free(ops);
}

static void test_one_commit_per_request(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, true, 1);
    sp_store_stats_t ss;
    ctx_t ctx = {0};
    op_t ops[20];

    for (size_t i = 0; i < 20; i++) {
        uint8_t k[8];
        sp__be64_put(k, i);
        op_init(&ops[i], &ctx, fn_put, SP_DB_KV, k, 8, "v", 1);
        submit(st, &ops[i]);
    }
    run_until(&fx->loop, &ctx.done, 20);
    assert_false(ctx.order_bad);
    sp__store_stats(st, &ss);
    assert_int_equal(ss.commits, 20);
    assert_int_equal(ss.batch_hist[0], 20);
    assert_int_equal(ss.last_batch, 1);
    close_store(fx, st);
}

/* ------------------------------------------------------------------------ */

/* Holds the writer: tells the test it runs (sem[0]), waits for sem[1]. */
static int fn_block(sp_wtxn_t *w, op_t *op)
{
    (void)w;
    uv_sem_post(&op->sem[0]);
    uv_sem_wait(&op->sem[1]);
    return 0;
}

static int fn_put_then_fail(sp_wtxn_t *w, op_t *op)
{
    assert_int_equal(sp__wtxn_put(w, op->db, "a", 1, "bad", 3), 0);
    assert_int_equal(sp__wtxn_put(w, op->db, op->key, op->kl, op->val, op->vl), 0);
    return SP_EINVAL;
}

/* Queue ops behind a request that holds the writer, so they share a batch. */
static void run_as_one_batch(fx_t *fx, sp_store_t *st, op_t *ops, size_t n, ctx_t *ctx)
{
    uv_sem_t sem[2];
    op_t blocker;

    uv_sem_init(&sem[0], 0);
    uv_sem_init(&sem[1], 0);
    op_init(&blocker, ctx, fn_block, SP_DB_KV, "z", 1, NULL, 0);
    blocker.sem = sem;
    submit(st, &blocker);
    /* Once the writer is inside the blocker's batch, the ops queue up
     * together and the next batch takes them all. */
    uv_sem_wait(&sem[0]);
    for (size_t i = 0; i < n; i++) {
        submit(st, &ops[i]);
    }
    uv_sem_post(&sem[1]);
    run_until(&fx->loop, &ctx->done, ctx->done + n + 1);
    assert_int_equal(blocker.status, 0);
    assert_false(ctx->order_bad);
    uv_sem_destroy(&sem[0]);
    uv_sem_destroy(&sem[1]);
}

static void test_failing_apply_rolls_back_itself(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, true, 0);
    sp_store_stats_t ss;
    ctx_t ctx = {0};
    op_t ops[3];
    char buf[16];
    size_t vl;

    op_init(&ops[0], &ctx, fn_put, SP_DB_KV, "a", 1, "A", 1);
    op_init(&ops[1], &ctx, fn_put_then_fail, SP_DB_KV, "b", 1, "B", 1);
    op_init(&ops[2], &ctx, fn_put, SP_DB_KV, "c", 1, "C", 1);
    run_as_one_batch(fx, st, ops, 3, &ctx);
    assert_int_equal(ops[0].status, 0);
    assert_int_equal(ops[1].status, SP_EINVAL);
    assert_int_equal(ops[2].status, 0);

    sp__store_stats(st, &ss);
    assert_int_equal(ss.last_batch, 3);
    assert_int_equal(ss.commits, 2);
    assert_int_equal(ss.failed_commits, 0);

    /* The failed request's writes are gone, including its overwrite of "a". */
    assert_int_equal(get_copy(st, SP_DB_KV, "a", 1, buf, sizeof(buf), &vl), 0);
    assert_int_equal(vl, 1);
    assert_memory_equal(buf, "A", 1);
    assert_int_equal(get_copy(st, SP_DB_KV, "b", 1, buf, sizeof(buf), &vl), SP_ENOTFOUND);
    assert_int_equal(get_copy(st, SP_DB_KV, "c", 1, buf, sizeof(buf), &vl), 0);
    assert_int_equal(count(st, SP_DB_KV), 2);
    close_store(fx, st);
}

/* ------------------------------------------------------------------------ */

#define BIG 8192

/* Write distinct 8 KiB values one commit at a time until the map is full.
 * Returns how many were stored. */
static size_t fill_until_full(fx_t *fx, sp_store_t *st, size_t first, uint8_t (*vals)[BIG],
                              size_t max)
{
    size_t i;

    for (i = first; i < max; i++) {
        uint8_t k[8];
        int rc;
        sp__be64_put(k, i);
        fill(vals[i], BIG, (uint32_t)i + 1);
        rc = write_sync(fx, st, fn_put, SP_DB_MESSAGES, k, 8, vals[i], BIG);
        if (rc == SP_ESTOREFULL) {
            return i;
        }
        assert_int_equal(rc, 0);
    }
    fail_msg("the map never filled up");
    return 0;
}

static void check_big(sp_store_t *st, uint8_t (*vals)[BIG], size_t from, size_t to)
{
    static uint8_t v[BIG];

    for (size_t i = from; i < to; i++) {
        uint8_t k[8];
        size_t vl;
        sp__be64_put(k, i);
        assert_int_equal(get_copy(st, SP_DB_MESSAGES, k, 8, v, sizeof(v), &vl), 0);
        assert_int_equal(vl, BIG);
        assert_memory_equal(v, vals[i], BIG);
    }
}

static int fn_del_two(sp_wtxn_t *w, op_t *op)
{
    uint8_t k[8];
    int rc;

    (void)op;
    sp__be64_put(k, 0);
    if ((rc = sp__wtxn_del(w, SP_DB_MESSAGES, k, 8)) != 0) {
        return rc;
    }
    sp__be64_put(k, 1);
    return sp__wtxn_del(w, SP_DB_MESSAGES, k, 8);
}

static void test_map_full_no_growth(void **state)
{
    fx_t *fx = *state;
    /* MDB_NOSYNC keeps this fast; the failure path does not depend on it. */
    sp_store_t *st = open_store(fx, NULL, 256 * 1024, 0, false, 0);
    static uint8_t vals[200][BIG];
    static uint8_t huge[65536];
    sp_store_stats_t ss;
    size_t n;
    ctx_t ctx = {0};
    op_t ops[2];
    char buf[16];
    size_t vl;

    n = fill_until_full(fx, st, 0, vals, 200);
    assert_true(n >= 4);
    sp__store_stats(st, &ss);
    assert_int_equal(ss.failed_commits, 1);
    assert_true(ss.map_size == 256 * 1024);
    check_big(st, vals, 0, n);
    assert_int_equal(count(st, SP_DB_MESSAGES), n);

    /* Every request of a batch that hits the full map fails, even the small
     * one that would have fit, and nothing of it is stored. */
    op_init(&ops[0], &ctx, fn_put, SP_DB_KV, "small", 5, "x", 1);
    op_init(&ops[1], &ctx, fn_put, SP_DB_KV, "huge", 4, huge, sizeof(huge));
    run_as_one_batch(fx, st, ops, 2, &ctx);
    assert_int_equal(ops[0].status, SP_ESTOREFULL);
    assert_int_equal(ops[1].status, SP_ESTOREFULL);
    assert_int_equal(get_copy(st, SP_DB_KV, "small", 5, buf, sizeof(buf), &vl), SP_ENOTFOUND);
    check_big(st, vals, 0, n);

    /* Deleting frees space; then small writes work again. */
    assert_int_equal(write_sync(fx, st, fn_del_two, SP_DB_MESSAGES, "x", 1, NULL, 0), 0);
    assert_int_equal(write_sync(fx, st, fn_put, SP_DB_KV, "small", 5, "x", 1), 0);
    assert_int_equal(get_copy(st, SP_DB_KV, "small", 5, buf, sizeof(buf), &vl), 0);
    check_big(st, vals, 2, n);
    close_store(fx, st);

    /* And the environment reopens consistent. */
    st = open_store(fx, NULL, 256 * 1024, 0, false, 0);
    check_big(st, vals, 2, n);
    assert_int_equal(count(st, SP_DB_MESSAGES), n - 2);
    close_store(fx, st);
}

static void test_map_full_grows(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 256 * 1024, 1024 * 1024, false, 0);
    static uint8_t vals[400][BIG];
    sp_store_stats_t ss;
    size_t n1, n2, n3;
    uint8_t k[8];

    n1 = fill_until_full(fx, st, 0, vals, 400);
    sp__store_stats(st, &ss);
    assert_int_equal(ss.failed_commits, 1);
    assert_true(ss.map_size == 512 * 1024);
    /* The value that failed fits now. */
    n2 = fill_until_full(fx, st, n1, vals, 400);
    assert_true(n2 > n1);
    sp__store_stats(st, &ss);
    assert_true(ss.map_size == 1024 * 1024);
    n3 = fill_until_full(fx, st, n2, vals, 400);
    assert_true(n3 > n2);
    /* At the limit: stays full. */
    sp__be64_put(k, n3);
    assert_int_equal(write_sync(fx, st, fn_put, SP_DB_MESSAGES, k, 8, vals[n3], BIG),
                     SP_ESTOREFULL);
    sp__store_stats(st, &ss);
    assert_true(ss.map_size == 1024 * 1024);
    assert_int_equal(ss.failed_commits, 4);
    check_big(st, vals, 0, n3);
    close_store(fx, st);
}

/* ------------------------------------------------------------------------ */

typedef struct {
    sp_store_t *st;
    int rc_after;
    size_t done;
    op_t *ops;
    size_t n;
    bool close_in_done;
} drain_t;

static void done_drain(void *arg, int status)
{
    op_t *op = arg;
    drain_t *d = op->user;

    op->status = status;
    op->done = true;
    d->done++;
    if (d->done == 1) {
        /* Closing already began: nothing new is accepted. */
        d->rc_after = sp__store_write(d->st, apply_op, done_op, op);
    }
}

static void test_close_drains(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, true, 64);
    drain_t d = {.st = st, .rc_after = 1};
    op_t ops[300];

    for (size_t i = 0; i < 300; i++) {
        uint8_t k[8];
        sp__be64_put(k, i);
        op_init(&ops[i], NULL, fn_put, SP_DB_KV, k, 8, "v", 1);
        ops[i].user = &d;
        assert_int_equal(sp__store_write(st, apply_op, done_drain, &ops[i]), 0);
    }
    /* No loop run: close itself waits for the writer and runs completions. */
    fx->open = NULL;
    sp__store_close(st);
    assert_int_equal(d.done, 300);
    assert_int_equal(d.rc_after, SP_ESHUTDOWN);
    for (size_t i = 0; i < 300; i++) {
        assert_int_equal(ops[i].status, 0);
    }
    uv_run(&fx->loop, UV_RUN_DEFAULT);

    st = open_store(fx, NULL, 0, 0, true, 0);
    assert_int_equal(count(st, SP_DB_KV), 300);
    close_store(fx, st);
}

typedef struct {
    sp_store_t *st;
    size_t done;
    bool closed;
} closer_t;

static int fn_noop(sp_wtxn_t *w, void *arg)
{
    (void)w;
    (void)arg;
    return 0;
}

static void done_close_when_idle(void *arg, int status)
{
    closer_t *c = arg;

    assert_int_equal(status, 0);
    c->done++;
    if (sp__store_pending(c->st) == 0) {
        sp__store_close(c->st);
        c->closed = true;
    }
}

static void test_close_from_done(void **state)
{
    fx_t *fx = *state;
    closer_t c = {.st = open_store(fx, NULL, 0, 0, false, 0)};

    fx->open = NULL; /* closed by the last completion */

    for (int i = 0; i < 50; i++) {
        assert_int_equal(sp__store_write(c.st, fn_noop, done_close_when_idle, &c), 0);
    }
    run_until(&fx->loop, &c.done, 50);
    assert_true(c.closed);
}

/* ------------------------------------------------------------------------ */

static void test_read_only(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, true, 0), *ro, *again = NULL;
    sp_store_opts_t o = {.read_only = true};
    char buf[16], missing[PATH_MAX];
    size_t vl;
    pid_t pid;
    int wst;

    assert_int_equal(write_sync(fx, st, fn_put, SP_DB_KV, "k", 1, "v", 1), 0);

    /* In this process: shares the writer's environment. */
    ro = open_ro(fx->store);
    assert_int_equal(get_copy(ro, SP_DB_KV, "k", 1, buf, sizeof(buf), &vl), 0);
    assert_int_equal(sp__store_write(ro, apply_op, done_op, NULL), SP_ESTATE);
    sp__store_close(ro);
    assert_int_equal(write_sync(fx, st, fn_put, SP_DB_KV, "k2", 2, "v", 1), 0);

    /* In another process, as the CLI does while the daemon runs. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sp_store_t *c = NULL;
        sp_rtxn_t *r;
        uint64_t n = 0;
        const void *v;
        size_t l;
        int ok = sp__store_open(&c, fx->store, &o, NULL) == 0 &&
                 sp__store_read_begin(c, &r) == 0 && sp__rtxn_count(r, SP_DB_KV, &n) == 0 &&
                 n == 2 && sp__rtxn_get(r, SP_DB_KV, "k2", 2, &v, &l) == 0 && l == 1;
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), 0);

    /* The writer is undisturbed. */
    assert_int_equal(write_sync(fx, st, fn_put, SP_DB_KV, "k3", 2, "v", 1), 0);
    assert_int_equal(count(st, SP_DB_KV), 3);

    /* A second writer in one process is refused. */
    {
        sp_store_opts_t w = {.sync = true};
        assert_int_equal(sp__store_open(&again, fx->store, &w, &fx->loop), SP_EBUSY);
        assert_null(again);
    }
    close_store(fx, st);

    /* Read-only without any writer, then bad directories. */
    ro = open_ro(fx->store);
    assert_int_equal(count(ro, SP_DB_KV), 3);
    sp__store_close(ro);
    snprintf(missing, sizeof(missing), "%s/missing", fx->dir);
    assert_int_equal(sp__store_open(&again, missing, &o, NULL), SP_ENOTFOUND);
    assert_int_equal(access(missing, F_OK), -1); /* not created */
    assert_int_equal(mkdir(missing, 0700), 0);
    assert_int_equal(sp__store_open(&again, missing, &o, NULL), SP_ENOTFOUND);
    assert_int_equal(sp__store_open(&again, missing, NULL, NULL), SP_EINVAL); /* writer, no loop */
    assert_int_equal(sp__store_open(NULL, missing, &o, NULL), SP_EINVAL);
}

static int fn_put_schema2(sp_wtxn_t *w, op_t *op)
{
    uint8_t v[4];

    (void)op;
    sp__be32_put(v, SP_STORE_SCHEMA_VERSION + 1);
    return sp__wtxn_put(w, SP_DB_META, "schema", 6, v, 4);
}

static void test_schema_version(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, true, 0), *again = NULL;
    sp_store_opts_t w = {.sync = true}, o = {.read_only = true};
    char buf[16];
    size_t vl;

    assert_int_equal(get_copy(st, SP_DB_META, "schema", 6, buf, sizeof(buf), &vl), 0);
    assert_int_equal(vl, 4);
    assert_int_equal(sp__be32_get((uint8_t *)buf), SP_STORE_SCHEMA_VERSION);
    assert_int_equal(get_copy(st, SP_DB_META, "created", 7, buf, sizeof(buf), &vl), 0);
    assert_int_equal(vl, 8);
    assert_int_equal(write_sync(fx, st, fn_put_schema2, SP_DB_META, "x", 1, NULL, 0), 0);
    close_store(fx, st);

    assert_int_equal(sp__store_open(&again, fx->store, &w, &fx->loop), SP_ECORRUPT);
    assert_null(again);
    assert_int_equal(sp__store_open(&again, fx->store, &o, NULL), SP_ECORRUPT);
}

/* Every reader slot taken by live transactions: the stale-reader check
 * frees nothing, and the next reader gets SP_EBUSY instead of blocking. */
static void test_readers_full(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, false, 0);
    sp_rtxn_t **r = calloc(2048, sizeof(*r));
    size_t n = 0;
    int rc = 0;

    while (n < 2048 && (rc = sp__store_read_begin(st, &r[n])) == 0) {
        n++;
    }
    assert_int_equal(rc, SP_EBUSY);
    assert_true(n >= 256);
    while (n > 0) {
        sp__store_read_end(r[--n]);
    }
    assert_int_equal(sp__store_read_begin(st, &r[0]), 0);
    sp__store_read_end(r[0]);
    free(r);
    close_store(fx, st);
}

/* ------------------------------------------------------------------------ */

static void test_backup(void **state)
{
    fx_t *fx = *state;
    sp_store_t *st = open_store(fx, NULL, 0, 0, true, 16), *bk;
    char dest[PATH_MAX], dest2[PATH_MAX], file[PATH_MAX], missing[PATH_MAX];
    static uint8_t vals[400][64];
    op_t *ops = calloc(400, sizeof(*ops));
    ctx_t ctx = {0};
    uint64_t n;

    for (size_t i = 0; i < 100; i++) {
        uint8_t k[8];
        sp__be64_put(k, i);
        fill(vals[i], 64, (uint32_t)i);
        op_init(&ops[i], &ctx, fn_put, SP_DB_MESSAGES, k, 8, vals[i], 64);
        submit(st, &ops[i]);
    }
    run_until(&fx->loop, &ctx.done, 100);

    snprintf(dest, sizeof(dest), "%s/bk", fx->dir);
    assert_int_equal(sp__store_backup(fx->store, dest), 0);
    bk = open_ro(dest);
    assert_int_equal(count(bk, SP_DB_MESSAGES), 100);
    for (size_t i = 0; i < 100; i++) {
        uint8_t k[8], v[64];
        size_t vl;
        sp__be64_put(k, i);
        assert_int_equal(get_copy(bk, SP_DB_MESSAGES, k, 8, v, sizeof(v), &vl), 0);
        assert_memory_equal(v, vals[i], 64);
    }
    sp__store_close(bk);

    /* A non-empty destination, a file, a missing source. */
    assert_int_equal(sp__store_backup(fx->store, dest), SP_EEXIST);
    snprintf(file, sizeof(file), "%s/bk/data.mdb", fx->dir);
    assert_int_equal(sp__store_backup(fx->store, file), -ENOTDIR);
    snprintf(missing, sizeof(missing), "%s/nothing", fx->dir);
    snprintf(dest2, sizeof(dest2), "%s/bk2", fx->dir);
    assert_int_equal(sp__store_backup(missing, dest2), SP_ENOTFOUND);
    assert_int_equal(access(dest2, F_OK), -1);

    /* While the writer is busy: the copy is one consistent snapshot. */
    for (size_t i = 100; i < 400; i++) {
        uint8_t k[8];
        sp__be64_put(k, i);
        fill(vals[i], 64, (uint32_t)i);
        op_init(&ops[i], &ctx, fn_put, SP_DB_MESSAGES, k, 8, vals[i], 64);
        submit(st, &ops[i]);
    }
    assert_int_equal(sp__store_backup(fx->store, dest2), 0);
    run_until(&fx->loop, &ctx.done, 400);
    assert_false(ctx.order_bad);
    bk = open_ro(dest2);
    n = count(bk, SP_DB_MESSAGES);
    assert_true(n >= 100 && n <= 400);
    for (size_t i = 0; i < n; i++) {
        uint8_t k[8], v[64];
        size_t vl;
        sp__be64_put(k, i);
        assert_int_equal(get_copy(bk, SP_DB_MESSAGES, k, 8, v, sizeof(v), &vl), 0);
        assert_memory_equal(v, vals[i], 64);
    }
    sp__store_close(bk);
    close_store(fx, st);

    /* With no store open in this process. */
    snprintf(dest2, sizeof(dest2), "%s/bk3", fx->dir);
    assert_int_equal(sp__store_backup(fx->store, dest2), 0);
    bk = open_ro(dest2);
    assert_int_equal(count(bk, SP_DB_MESSAGES), 400);
    sp__store_close(bk);
    free(ops);
}

/* ------------------------------------------------------------------------ */

#define TW_N 400

typedef struct {
    sp_store_t *st;
    op_t *ops;
    int failures;
} tw_t;

static void done_count(void *arg, int status)
{
    op_t *op = arg;

    op->status = status;
    op->ctx->done++;
}

static void writer_thread(void *arg)
{
    tw_t *t = arg;

    for (size_t i = 0; i < TW_N; i++) {
        if (sp__store_write(t->st, apply_op, done_count, &t->ops[i]) != 0) {
            t->failures++;
        }
    }
}

static void test_writes_from_thread(void **state)
{
    fx_t *fx = *state;
    tw_t t = {.st = open_store(fx, NULL, 0, 0, true, 0)};
    uv_thread_t th;
    ctx_t ctx = {0};

    t.ops = calloc(TW_N, sizeof(op_t));
    for (size_t i = 0; i < TW_N; i++) {
        uint8_t k[8];
        sp__be64_put(k, i);
        op_init(&t.ops[i], &ctx, fn_put, SP_DB_KV, k, 8, "tv", 2);
    }
    assert_int_equal(uv_thread_create(&th, writer_thread, &t), 0);
    run_until(&fx->loop, &ctx.done, TW_N);
    assert_int_equal(uv_thread_join(&th), 0);
    assert_int_equal(t.failures, 0);
    for (size_t i = 0; i < TW_N; i++) {
        assert_int_equal(t.ops[i].status, 0);
    }
    assert_int_equal(count(t.st, SP_DB_KV), TW_N);
    close_store(fx, t.st);
    free(t.ops);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_put_get_del),
        T(test_scan_and_last),
        T(test_group_commit),
        T(test_one_commit_per_request),
        T(test_failing_apply_rolls_back_itself),
        T(test_map_full_no_growth),
        T(test_map_full_grows),
        T(test_close_drains),
        T(test_close_from_done),
        T(test_read_only),
        T(test_schema_version),
        T(test_readers_full),
        T(test_backup),
        T(test_writes_from_thread),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
