/* SPDX-License-Identifier: Apache-2.0 */
/* The pipeline engine driven by in-process hooks: ordering, the stage table,
 * replies, txn data, suspend/resume edge cases, cancellation and stats. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "sp_core/log.h"
#include "sp_core/msg.h"

/* A fake plugin: the hook does what `mode` says. */
typedef enum {
    M_RETURN,        /* return v */
    M_SYNC_RESUME,   /* suspend, resume(v) at once, return PENDING */
    M_SUSPEND,       /* suspend (tok kept), return PENDING */
    M_SUSPEND_ANSWER /* suspend, then return v anyway */
} mode_t_;

typedef struct fake {
    sp_plugin_t p;
    mode_t_ mode;
    sp_verdict_t v;
    int calls;
    int cancels;
    sp_token_t tok;
    uint32_t timeout;
    const char *reply;
    int code;
    int status;      /* -1: none */
    uint64_t retry;
    char trace_name[16];
} fake_t;

static char g_trace[4096];
static int g_frees;

static void trace_add(const char *s)
{
    size_t n = strlen(g_trace);
    snprintf(g_trace + n, sizeof(g_trace) - n, "%s%s", n > 0 ? "," : "", s);
}

static void fake_cancel(sp_token_t tok, void *arg)
{
    fake_t *f = arg;
    (void)tok;
    f->cancels++;
}

static sp_verdict_t fake_hook(sp_txn_t *txn, void *ctx)
{
    fake_t *f = ctx;
    f->calls++;
    trace_add(f->trace_name);
    if (f->reply != NULL || f->code != 0) {
        assert_int_equal(sp__txn_set_reply(txn, f->code, f->reply), 0);
    }
    if (f->status >= 0) {
        assert_int_equal(sp__txn_set_status(txn, (sp_status_t)f->status), 0);
    }
    if (f->retry > 0) {
        assert_int_equal(sp__txn_set_retry_in(txn, f->retry), 0);
    }
    switch (f->mode) {
    case M_RETURN:
        return f->v;
    case M_SYNC_RESUME:
        f->tok = sp__txn_suspend(txn, f->timeout, fake_cancel, f);
        assert_true(f->tok != 0);
        assert_int_equal(sp__pipeline_resume(f->tok, f->v), 0);
        return SP_PENDING;
    case M_SUSPEND:
        f->tok = sp__txn_suspend(txn, f->timeout, fake_cancel, f);
        assert_true(f->tok != 0);
        /* one suspension per hook call */
        assert_true(sp__txn_suspend(txn, 0, NULL, NULL) == 0);
        return SP_PENDING;
    case M_SUSPEND_ANSWER:
        f->tok = sp__txn_suspend(txn, f->timeout, fake_cancel, f);
        return f->v;
    }
    return SP_DEFER;
}

static void fake_init(fake_t *f, const char *name, int order, mode_t_ mode, sp_verdict_t v)
{
    memset(f, 0, sizeof(*f));
    f->p.name = (char *)name;
    f->p.order = order;
    f->p.ctx = f;
    f->mode = mode;
    f->v = v;
    f->status = -1;
    snprintf(f->trace_name, sizeof(f->trace_name), "%s", name);
}

static int setup(void **state)
{
    h_env_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h_setup(h, false, "");
    g_trace[0] = '\0';
    g_frees = 0;
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    h_env_t *h = *state;
    if (h != NULL) {
        h_teardown(h);
        free(h);
    }
    return 0;
}

static sp_pipeline_t *PL(void **state)
{
    return ((h_env_t *)*state)->core->pipeline;
}

/* ---------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(sp__stage_name(SP_STAGE_ACCEPT), "accept");
    assert_string_equal(sp__stage_name(SP_STAGE_EGRESS), "egress");
    assert_string_equal(sp__stage_name((sp_stage_t)99), "unknown");
    assert_int_equal(sp__stage_parse("transform"), SP_STAGE_TRANSFORM);
    assert_int_equal(sp__stage_parse("sign"), SP_STAGE_SIGN);
    assert_int_equal(sp__stage_parse("Accept"), -1);
    assert_int_equal(sp__stage_parse(NULL), -1);
    assert_string_equal(sp__verdict_name(SP_DROP), "DROP");
    assert_string_equal(sp__verdict_name(SP_PENDING), "PENDING");
    assert_string_equal(sp__verdict_name((sp_verdict_t)-1), "invalid");
}

static void test_registration(void **state)
{
    sp_pipeline_t *pl = PL(state);
    fake_t a, b;
    fake_init(&a, "a", 0, M_RETURN, SP_CONTINUE);
    fake_init(&b, "b", 1, M_RETURN, SP_CONTINUE);
    assert_int_equal(sp__pipeline_add_hook(pl, (sp_stage_t)5, &a.p, fake_hook, 0), SP_EINVAL);
    assert_int_equal(sp__pipeline_add_hook(pl, (sp_stage_t)-1, &a.p, fake_hook, 0), SP_EINVAL);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &a.p, NULL, 0), SP_EINVAL);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &a.p, fake_hook, 101), SP_EINVAL);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &a.p, fake_hook, -101),
                     SP_EINVAL);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &a.p, fake_hook, 100), 0);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &b.p, fake_hook, -100), 0);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_SIGN, &a.p, fake_hook, 0), 0);
    assert_int_equal(sp__pipeline_add_event(pl, &a.p, NULL), SP_EINVAL);
    assert_int_equal(sp__pipeline_nhooks(pl, SP_STAGE_ACCEPT), 2);
    assert_int_equal(sp__pipeline_nhooks(pl, SP_STAGE_SIGN), 1);
    assert_int_equal(sp__pipeline_nhooks(pl, (sp_stage_t)7), 0);
    sp__pipeline_remove_plugin(pl, &a.p);
    assert_int_equal(sp__pipeline_nhooks(pl, SP_STAGE_ACCEPT), 1);
    assert_int_equal(sp__pipeline_nhooks(pl, SP_STAGE_SIGN), 0);
    sp__pipeline_remove_plugin(pl, &b.p);
    assert_int_equal(sp__pipeline_nhooks(pl, SP_STAGE_ACCEPT), 0);
}

/* Lower priority first; equal priority by YAML order; equal both by
 * registration order. The YAML priority shifts every hook of a plugin. */
static void test_order(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    fake_t f[6];
    h_run_t r;
    fake_init(&f[0], "p0", 0, M_RETURN, SP_CONTINUE);
    fake_init(&f[1], "p1", 1, M_RETURN, SP_CONTINUE);
    fake_init(&f[2], "p2", 2, M_RETURN, SP_CONTINUE);
    fake_init(&f[3], "p3", 3, M_RETURN, SP_CONTINUE);
    fake_init(&f[4], "p4", 0, M_RETURN, SP_CONTINUE);
    fake_init(&f[5], "p5", 5, M_RETURN, SP_CONTINUE);
    f[5].p.priority = -50; /* YAML priority */
    /* registration order deliberately scrambled */
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f[2].p, fake_hook, 0), 0);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f[3].p, fake_hook, 10), 0);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f[1].p, fake_hook, 0), 0);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f[0].p, fake_hook, -10), 0);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f[4].p, fake_hook, 0), 0);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f[5].p, fake_hook, 0), 0);
    assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_RENDER, &f[0].p, fake_hook, 0), 0);
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_RENDER, &r);
    assert_string_equal(g_trace, "p5,p0,p4,p1,p2,p3,p0");
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_int_equal(r.res.stage, SP_STAGE_RENDER);
    assert_string_equal(r.res.text, "accepted");
    assert_null(r.res.plugin);
    assert_int_equal(r.res.status, -1);
}

static void test_no_hooks(void **state)
{
    h_env_t *h = *state;
    h_run_t r;
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_SIGN, &r);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_int_equal(r.res.stage, SP_STAGE_SIGN);
    /* nobody claims the message at egress: temporary, retried later */
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_EGRESS, &r);
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_int_equal(r.res.stage, SP_STAGE_EGRESS);
    assert_string_equal(r.res.text, "no egress plugin accepted the message");
    assert_null(r.res.plugin);
    assert_int_equal(r.res.status, -1);
    assert_int_equal(r.res.code, 0);
}

static void test_accept_skips_rest_of_stage(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    fake_t a, b, c;
    h_run_t r;
    sp_pipeline_stats_t st;
    fake_init(&a, "a", 0, M_RETURN, SP_ACCEPT);
    fake_init(&b, "b", 1, M_RETURN, SP_REJECT);
    fake_init(&c, "c", 2, M_RETURN, SP_ACCEPT);
    a.reply = "sent as 42";
    a.code = 250;
    sp__pipeline_add_hook(pl, SP_STAGE_RENDER, &a.p, fake_hook, 0);
    sp__pipeline_add_hook(pl, SP_STAGE_RENDER, &b.p, fake_hook, 0);
    sp__pipeline_add_hook(pl, SP_STAGE_EGRESS, &c.p, fake_hook, 0);
    h_run(h, h_msg("x"), SP_STAGE_RENDER, SP_STAGE_EGRESS, &r);
    assert_string_equal(g_trace, "a,c");
    assert_int_equal(b.calls, 0);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_int_equal(r.res.stage, SP_STAGE_EGRESS);
    /* egress ACCEPT = sent, by c; c set no reply */
    assert_string_equal(r.res.plugin, "c");
    assert_string_equal(r.res.text, "accepted");
    assert_int_equal(r.res.code, 0);
    /* stages before the range never run */
    g_trace[0] = '\0';
    h_run(h, h_msg("x"), SP_STAGE_TRANSFORM, SP_STAGE_EGRESS, &r);
    assert_string_equal(g_trace, "c");
    /* the last ACCEPT's reply is reported */
    g_trace[0] = '\0';
    h_run(h, h_msg("x"), SP_STAGE_RENDER, SP_STAGE_SIGN, &r);
    assert_string_equal(g_trace, "a");
    assert_string_equal(r.res.plugin, "a");
    assert_string_equal(r.res.text, "sent as 42");
    assert_int_equal(r.res.code, 250);
    sp__pipeline_stats(pl, &st);
    assert_int_equal(st.verdicts[SP_STAGE_RENDER][SP_ACCEPT], 2);
    assert_int_equal(st.verdicts[SP_STAGE_EGRESS][SP_ACCEPT], 2);
    assert_int_equal(st.active, 0);
}

/* Default status and text of each stopping verdict in each stage. */
static void test_stage_table(void **state)
{
    static const struct {
        sp_stage_t stage;
        sp_verdict_t v;
        int status;
        const char *text;
    } cases[] = {
        {SP_STAGE_ACCEPT, SP_REJECT, -1, "rejected by f"},
        {SP_STAGE_ACCEPT, SP_DEFER, -1, "deferred by f"},
        {SP_STAGE_ACCEPT, SP_DROP, SP_ST_SUPPRESSED, "dropped by f"},
        {SP_STAGE_RENDER, SP_REJECT, SP_ST_RENDERING_FAILURE, "rejected by f"},
        {SP_STAGE_RENDER, SP_DEFER, -1, "deferred by f"},
        {SP_STAGE_RENDER, SP_DROP, SP_ST_CANCELLED, "dropped by f"},
        {SP_STAGE_TRANSFORM, SP_REJECT, SP_ST_FAILED, "rejected by f"},
        {SP_STAGE_TRANSFORM, SP_DROP, SP_ST_CANCELLED, "dropped by f"},
        {SP_STAGE_SIGN, SP_REJECT, SP_ST_FAILED, "rejected by f"},
        {SP_STAGE_SIGN, SP_DEFER, -1, "deferred by f"},
        {SP_STAGE_EGRESS, SP_REJECT, SP_ST_REJECTED, "rejected by f"},
        {SP_STAGE_EGRESS, SP_DEFER, -1, "deferred by f"},
        {SP_STAGE_EGRESS, SP_DROP, SP_ST_CANCELLED, "dropped by f"},
    };
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_t f, later;
        h_run_t r;
        fake_init(&f, "f", 0, M_RETURN, cases[i].v);
        fake_init(&later, "later", 1, M_RETURN, SP_ACCEPT);
        sp__pipeline_add_hook(pl, cases[i].stage, &f.p, fake_hook, 0);
        sp__pipeline_add_hook(pl, cases[i].stage, &later.p, fake_hook, 0);
        h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_EGRESS, &r);
        assert_int_equal(r.res.verdict, cases[i].v);
        assert_int_equal(r.res.stage, cases[i].stage);
        assert_int_equal(r.res.status, cases[i].status);
        assert_string_equal(r.res.text, cases[i].text);
        assert_string_equal(r.res.plugin, "f");
        assert_int_equal(later.calls, 0); /* the run stopped */
        sp__pipeline_remove_plugin(pl, &f.p);
        sp__pipeline_remove_plugin(pl, &later.p);
    }
}

/* What the hook set wins over the table's defaults. */
static void test_hook_reply_and_status(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    fake_t f, g;
    h_run_t r;
    fake_init(&f, "f", 0, M_RETURN, SP_REJECT);
    f.reply = "550 mailbox\r\nunavailable";
    f.code = 403;
    f.status = SP_ST_BOUNCED;
    f.retry = 5000;
    sp__pipeline_add_hook(pl, SP_STAGE_EGRESS, &f.p, fake_hook, 0);
    h_run(h, h_msg("x"), SP_STAGE_EGRESS, SP_STAGE_EGRESS, &r);
    assert_int_equal(r.res.verdict, SP_REJECT);
    assert_int_equal(r.res.code, 403);
    assert_string_equal(r.res.text, "550 mailbox  unavailable");
    assert_int_equal(r.res.status, SP_ST_BOUNCED);
    assert_int_equal(r.res.retry_in_ms, 0); /* only for DEFER */
    /* DEFER keeps the retry hint and no status even when one was set */
    f.v = SP_DEFER;
    h_run(h, h_msg("x"), SP_STAGE_EGRESS, SP_STAGE_EGRESS, &r);
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_int_equal(r.res.retry_in_ms, 5000);
    assert_int_equal(r.res.status, -1);
    /* a reply set by a hook that said CONTINUE does not leak to the next */
    sp__pipeline_remove_plugin(pl, &f.p);
    fake_init(&f, "f", 0, M_RETURN, SP_CONTINUE);
    f.reply = "not me";
    f.code = 499;
    fake_init(&g, "g", 1, M_RETURN, SP_REJECT);
    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f.p, fake_hook, 0);
    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &g.p, fake_hook, 0);
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_string_equal(r.res.text, "rejected by g");
    assert_int_equal(r.res.code, 0);
}

static sp_verdict_t reply_probe_hook(sp_txn_t *txn, void *ctx)
{
    char big[2000];
    (void)ctx;
    assert_int_equal(sp__txn_set_reply(txn, -1, "x"), SP_EINVAL);
    assert_int_equal(sp__txn_set_reply(txn, 1000, "x"), SP_EINVAL);
    assert_int_equal(sp__txn_set_reply(NULL, 0, "x"), SP_EINVAL);
    assert_int_equal(sp__txn_set_status(txn, SP_ST__COUNT), SP_EINVAL);
    assert_int_equal(sp__txn_set_status(txn, (sp_status_t)-1), SP_EINVAL);
    /* 510 ASCII bytes then a 3-byte UTF-8 character straddling the limit */
    memset(big, 'a', sizeof(big));
    memcpy(big + 510, "\xe2\x82\xac", 3);
    big[600] = '\0';
    assert_int_equal(sp__txn_set_reply(txn, 0, big), 0);
    return SP_REJECT;
}

static void test_reply_bounds(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    sp_txn_t *txn;
    h_run_t r;
    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, NULL, reply_probe_hook, 0);
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    /* cut before the multi-byte character rather than inside it */
    assert_int_equal(strlen(r.res.text), 510);
    assert_null(r.res.plugin);
    /* outside a run, the setters refuse */
    txn = sp__txn_new(PL(state), h_msg("y"));
    assert_non_null(txn);
    assert_int_equal(sp__txn_set_reply(txn, 0, "z"), SP_ESTATE);
    assert_int_equal(sp__txn_set_status(txn, SP_ST_FAILED), SP_ESTATE);
    assert_int_equal(sp__txn_set_retry_in(txn, 5), SP_ESTATE);
    assert_int_equal(sp__txn_suspend(txn, 0, NULL, NULL), 0);
    sp__txn_free(txn);
}

static void count_free(void *p)
{
    g_frees++;
    free(p);
}

static void test_txn_data(void **state)
{
    sp_txn_t *txn = sp__txn_new(PL(state), h_msg("x"));
    sp_plugin_t p1 = {.name = "p1"}, p2 = {.name = "p2"};
    int *a = malloc(sizeof(int)), *b = malloc(sizeof(int)), *c = malloc(sizeof(int));
    assert_non_null(txn);
    assert_null(sp__txn_get_data(txn, &p1));
    assert_int_equal(sp__txn_set_data(txn, &p1, a, count_free), 0);
    assert_int_equal(sp__txn_set_data(txn, &p2, b, count_free), 0);
    assert_ptr_equal(sp__txn_get_data(txn, &p1), a);
    assert_ptr_equal(sp__txn_get_data(txn, &p2), b);
    /* same pointer again: not freed */
    assert_int_equal(sp__txn_set_data(txn, &p1, a, count_free), 0);
    assert_int_equal(g_frees, 0);
    /* replaced: the old value is freed once */
    assert_int_equal(sp__txn_set_data(txn, &p1, c, count_free), 0);
    assert_int_equal(g_frees, 1);
    assert_ptr_equal(sp__txn_get_data(txn, &p1), c);
    /* cleared: freed */
    assert_int_equal(sp__txn_set_data(txn, &p2, NULL, NULL), 0);
    assert_int_equal(g_frees, 2);
    assert_null(sp__txn_get_data(txn, &p2));
    assert_int_equal(sp__txn_set_data(NULL, &p2, NULL, NULL), SP_EINVAL);
    sp__txn_free(txn);
    assert_int_equal(g_frees, 3);
    /* a message taken out is not freed with the txn */
    txn = sp__txn_new(PL(state), h_msg("y"));
    {
        sp_msg_t *m = sp__txn_take_msg(txn);
        assert_non_null(m);
        assert_null(sp__txn_msg(txn));
        sp__txn_free(txn);
        sp__msg_free(m);
    }
}

static void local_done(sp_txn_t *txn, const sp_run_result_t *res, void *arg)
{
    h_run_t *r = arg;
    (void)txn;
    r->done_calls++;
    r->res = *res;
    snprintf(r->text, sizeof(r->text), "%s", res->text);
    r->res.text = r->text;
}

static void never_done(sp_txn_t *txn, const sp_run_result_t *res, void *arg)
{
    (void)txn;
    (void)res;
    (void)arg;
    fail_msg("done must not be called");
}

static void test_run_errors(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    fake_t s;
    h_run_t r;
    sp_txn_t *txn;
    fake_init(&s, "s", 0, M_SUSPEND, SP_CONTINUE);
    txn = sp__txn_new(pl, h_msg("x"));
    assert_non_null(txn);
    assert_int_equal(sp__pipeline_run(pl, txn, SP_STAGE_SIGN, SP_STAGE_RENDER, never_done, NULL),
                     SP_EINVAL);
    assert_int_equal(sp__pipeline_run(pl, txn, SP_STAGE_ACCEPT, (sp_stage_t)9, never_done, NULL),
                     SP_EINVAL);
    assert_int_equal(sp__pipeline_run(pl, txn, SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, NULL, NULL),
                     SP_EINVAL);
    assert_int_equal(sp__pipeline_run(NULL, txn, SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, never_done,
                                      NULL),
                     SP_EINVAL);
    sp__txn_free(txn);
    assert_null(sp__txn_new(NULL, NULL));

    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &s.p, fake_hook, 0);
    txn = h_start(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.done_calls, 0);
    assert_int_equal(sp__pipeline_run(pl, txn, SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, never_done,
                                      NULL),
                     SP_ESTATE);
    assert_int_equal(sp__pipeline_resume(s.tok, SP_ACCEPT), 0);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_string_equal(r.res.plugin, "s");
    /* the same txn may run again, and done may come before run returns */
    s.mode = M_RETURN;
    s.v = SP_DROP;
    memset(&r, 0, sizeof(r));
    assert_int_equal(sp__pipeline_run(pl, txn, SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, local_done, &r),
                     0);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.res.verdict, SP_DROP);
    assert_int_equal(r.res.status, SP_ST_SUPPRESSED);
    sp__txn_free(txn);
}

static sp_verdict_t chain_hook(sp_txn_t *txn, void *ctx)
{
    sp_token_t tok = sp__txn_suspend(txn, 0, NULL, NULL);
    (void)ctx;
    assert_true(tok != 0);
    assert_int_equal(sp__pipeline_resume(tok, SP_CONTINUE), 0);
    return SP_PENDING;
}

/* Thousands of hooks that all resume inside themselves: the run is a loop,
 * not a recursion, so the stack stays flat. */
static void test_long_sync_chain(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    sp_pipeline_stats_t st;
    h_run_t r;
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(sp__pipeline_add_hook(pl, SP_STAGE_TRANSFORM, NULL, chain_hook, 0), 0);
    }
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_SIGN, &r);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    sp__pipeline_stats(pl, &st);
    assert_int_equal(st.verdicts[SP_STAGE_TRANSFORM][SP_PENDING], 20000);
    assert_int_equal(st.verdicts[SP_STAGE_TRANSFORM][SP_CONTINUE], 20000);
    assert_int_equal(st.suspended, 0);
    assert_int_equal(st.dead_resumes, 0);
}

static void test_suspend_then_answer(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    sp_pipeline_stats_t st;
    fake_t f;
    h_run_t r;
    fake_init(&f, "f", 0, M_SUSPEND_ANSWER, SP_ACCEPT);
    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f.p, fake_hook, 0);
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_string_equal(r.res.text, "plugin f failed");
    assert_int_equal(f.cancels, 1);
    assert_int_equal(sp__pipeline_resume(f.tok, SP_ACCEPT), SP_ECANCELED);
    sp__pipeline_stats(pl, &st);
    assert_int_equal(st.bad_verdicts, 1);
    assert_int_equal(st.dead_resumes, 1);
    assert_int_equal(st.suspended, 0);
    assert_true(h_log_contains(h, "suspended but did not return pending"));
}

static void test_timeout_uses_plugin_timeout(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    sp_pipeline_stats_t st;
    fake_t f;
    h_run_t r;
    sp_txn_t *txn;
    fake_init(&f, "slow", 0, M_SUSPEND, SP_CONTINUE);
    f.p.timeout_ms = 15;
    sp__pipeline_add_hook(pl, SP_STAGE_RENDER, &f.p, fake_hook, 0);
    txn = h_start(h, h_msg("x"), SP_STAGE_RENDER, SP_STAGE_EGRESS, &r);
    sp__pipeline_stats(pl, &st);
    assert_int_equal(st.suspended, 1);
    assert_int_equal(st.active, 1);
    h_wait(h, &r.done_calls, 1, 5000);
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_int_equal(r.res.stage, SP_STAGE_RENDER);
    assert_string_equal(r.res.text, "plugin slow timed out");
    assert_string_equal(r.res.plugin, "slow");
    assert_int_equal(f.cancels, 1);
    sp__pipeline_stats(pl, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.suspended, 0);
    assert_int_equal(st.active, 0);
    assert_true(h_log_contains(h, "timed out after 15 ms"));
    sp__txn_free(txn);
}

static void test_txn_cancel(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    fake_t f;
    h_run_t r;
    sp_txn_t *txn;
    fake_init(&f, "f", 0, M_SUSPEND, SP_CONTINUE);
    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f.p, fake_hook, 0);
    txn = h_start(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(sp__txn_cancel(txn, "client went away"), 0);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_string_equal(r.res.text, "client went away");
    assert_int_equal(f.cancels, 1);
    assert_int_equal(sp__txn_cancel(txn, NULL), SP_ESTATE);
    assert_int_equal(sp__pipeline_resume(f.tok, SP_ACCEPT), SP_ECANCELED);
    sp__txn_free(txn);
}

/* cancel_all ends every suspension once; a run that a done callback starts
 * during it (and that suspends again) is left alone. */
typedef struct restart {
    h_run_t r;
    int restarts;
    sp_pipeline_t *pl;
} restart_t;

static void restart_done(sp_txn_t *txn, const sp_run_result_t *res, void *arg)
{
    restart_t *x = arg;
    local_done(txn, res, &x->r);
    if (x->restarts++ == 0) {
        assert_int_equal(sp__pipeline_run(x->pl, txn, SP_STAGE_ACCEPT, SP_STAGE_ACCEPT,
                                          restart_done, x),
                         0);
    }
}

static void test_cancel_all(void **state)
{
    sp_pipeline_t *pl = PL(state);
    sp_pipeline_stats_t st;
    fake_t f;
    restart_t x[3];
    sp_txn_t *t[3];
    fake_init(&f, "f", 0, M_SUSPEND, SP_CONTINUE);
    f.timeout = 600000;
    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f.p, fake_hook, 0);
    memset(x, 0, sizeof(x));
    for (int i = 0; i < 3; i++) {
        x[i].pl = pl;
        t[i] = sp__txn_new(pl, h_msg("x"));
        assert_int_equal(sp__pipeline_run(pl, t[i], SP_STAGE_ACCEPT, SP_STAGE_ACCEPT,
                                          restart_done, &x[i]),
                         0);
    }
    sp__pipeline_stats(pl, &st);
    assert_int_equal(st.suspended, 3);
    assert_int_equal(st.active, 3);
    sp__pipeline_cancel_all(pl);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(x[i].r.done_calls, 1);
        assert_int_equal(x[i].r.res.verdict, SP_DEFER);
        assert_string_equal(x[i].r.text, "shutting down");
    }
    assert_int_equal(f.cancels, 3);
    sp__pipeline_stats(pl, &st);
    assert_int_equal(st.suspended, 3); /* the restarted runs */
    sp__pipeline_cancel_all(pl);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(x[i].r.done_calls, 2);
        sp__txn_free(t[i]);
    }
    assert_int_equal(f.cancels, 6);
    sp__pipeline_stats(pl, &st);
    assert_int_equal(st.suspended, 0);
    assert_int_equal(st.active, 0);
}

static sp_verdict_t resumer_hook(sp_txn_t *txn, void *ctx)
{
    fake_t *victim = ctx;
    (void)txn;
    trace_add("resumer");
    assert_int_equal(sp__pipeline_resume(victim->tok, SP_ACCEPT), 0);
    return SP_REJECT;
}

/* A hook of one txn resumes another txn: that one finishes inside the
 * call, the first goes on with its own verdict. */
static void test_nested_resume(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    fake_t s;
    sp_plugin_t holder = {.name = "holder"};
    h_run_t ra, rb;
    sp_txn_t *tb;
    fake_init(&s, "s", 0, M_SUSPEND, SP_CONTINUE);
    holder.ctx = &s; /* resumer_hook's ctx: the hook it resumes */
    sp__pipeline_add_hook(pl, SP_STAGE_RENDER, &s.p, fake_hook, 0);
    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &holder, resumer_hook, 0);
    tb = h_start(h, h_msg("b"), SP_STAGE_RENDER, SP_STAGE_RENDER, &rb);
    assert_int_equal(rb.done_calls, 0);
    h_run(h, h_msg("a"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &ra);
    assert_int_equal(rb.done_calls, 1);
    assert_int_equal(rb.res.verdict, SP_CONTINUE);
    assert_int_equal(ra.res.verdict, SP_REJECT);
    assert_string_equal(ra.res.plugin, "holder");
    assert_string_equal(g_trace, "s,resumer");
    sp__pipeline_remove_plugin(pl, &holder);
    sp__txn_free(tb);
}

static void ev_a(const sp_event_t *ev, void *ctx)
{
    fake_t *f = ctx;
    f->calls++;
    assert_int_equal(ev->status, SP_ST_DELIVERED);
    trace_add(f->trace_name);
}

static void test_events(void **state)
{
    sp_pipeline_t *pl = PL(state);
    fake_t a, b;
    sp_event_t ev = {.size = sizeof(ev), .msg_id = "m1", .status = SP_ST_DELIVERED,
                     .status_name = "DELIVERED", .data = "{}"};
    fake_init(&a, "a", 5, M_RETURN, SP_CONTINUE);
    fake_init(&b, "b", 0, M_RETURN, SP_CONTINUE);
    assert_int_equal(sp__pipeline_add_event(pl, &a.p, ev_a), 0);
    assert_int_equal(sp__pipeline_add_event(pl, &b.p, ev_a), 0);
    sp__pipeline_emit(pl, &ev);
    assert_string_equal(g_trace, "a,b"); /* registration order */
    sp__pipeline_remove_plugin(pl, &a.p);
    sp__pipeline_emit(pl, &ev);
    assert_string_equal(g_trace, "a,b,b");
    sp__pipeline_emit(pl, NULL);
    sp__pipeline_emit(NULL, &ev);
}

static void *resume_thread(void *arg)
{
    sp_token_t *tok = arg;
    assert_int_equal(sp__pipeline_resume_from_thread(*tok, SP_ACCEPT), 0);
    /* a second resume of the same token is queued too, then refused on the
     * loop as a dead token */
    assert_int_equal(sp__pipeline_resume_from_thread(*tok, SP_REJECT), 0);
    return NULL;
}

static bool got_dead_resume(h_env_t *h, void *arg)
{
    sp_pipeline_stats_t st;
    (void)arg;
    sp__pipeline_stats(h->core->pipeline, &st);
    return st.dead_resumes > 0;
}

static void test_resume_from_thread(void **state)
{
    h_env_t *h = *state;
    sp_pipeline_t *pl = PL(state);
    sp_pipeline_stats_t st;
    fake_t f;
    h_run_t r;
    pthread_t thr;
    sp_txn_t *txn;
    fake_init(&f, "f", 0, M_SUSPEND, SP_CONTINUE);
    sp__pipeline_add_hook(pl, SP_STAGE_ACCEPT, &f.p, fake_hook, 0);
    txn = h_start(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(pthread_create(&thr, NULL, resume_thread, &f.tok), 0);
    h_wait(h, &r.done_calls, 1, 5000);
    assert_int_equal(pthread_join(thr, NULL), 0);
    /* let the second, dead resume arrive */
    h_wait_pred(h, got_dead_resume, NULL, 5000);
    sp__pipeline_stats(pl, &st);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_int_equal(st.dead_resumes, 1);
    assert_true(h_log_contains(h, "resume of a dead token"));
    sp__txn_free(txn);
}

/* Freeing the pipeline under a suspended run still ends it once. */
static void test_free_with_suspended(void **state)
{
    h_env_t *h = *state;
    fake_t f;
    h_run_t r;
    sp_txn_t *txn;
    fake_init(&f, "f", 0, M_SUSPEND, SP_CONTINUE);
    sp__pipeline_add_hook(PL(state), SP_STAGE_ACCEPT, &f.p, fake_hook, 0);
    txn = h_start(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    h_teardown(h); /* frees the pipeline; its timer and async are closed */
    free(h);
    *state = NULL;
    assert_int_equal(r.done_calls, 1);
    assert_string_equal(r.text, "shutting down");
    assert_int_equal(f.cancels, 1);
    assert_int_equal(sp__pipeline_resume(f.tok, SP_ACCEPT), SP_ECANCELED);
    sp__txn_free(txn);
}

/* Without a pipeline: one per process, and none after it is freed. */
static void test_pipeline_lifecycle(void **state)
{
    uv_loop_t loop;
    sp_pipeline_t *pl, *pl2;
    (void)state;
    assert_int_equal(sp__pipeline_new(&pl, NULL), SP_EINVAL);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sp__pipeline_new(&pl, &loop), 0);
    assert_int_equal(sp__pipeline_new(&pl2, &loop), SP_EBUSY);
    assert_int_equal(sp__pipeline_resume(12345, SP_ACCEPT), SP_ECANCELED);
    sp__pipeline_free(pl);
    assert_int_equal(sp__pipeline_resume_from_thread(1, SP_ACCEPT), SP_ESHUTDOWN);
    assert_int_equal(sp__pipeline_resume(1, SP_ACCEPT), SP_ECANCELED);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
    /* and a new one can be made again */
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sp__pipeline_new(&pl, &loop), 0);
    sp__pipeline_free(pl);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_hooks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_skips_rest_of_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_reply_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_sync_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suspend_then_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_uses_plugin_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_from_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_suspended, setup, teardown),
        cmocka_unit_test(test_pipeline_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
