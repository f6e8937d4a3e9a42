/* SPDX-License-Identifier: Apache-2.0 */
/* Suspend and resume through real plugins: resumed from a timer, from
 * threads of their own and from the work pool, and the broken ones that
 * resume twice, never resume, or answer with garbage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "sp_core/msg.h"

static int teardown(void **state)
{
    h_env_t *h = *state;
    if (h != NULL) {
        h_teardown(h);
        free(h);
    }
    *state = NULL;
    return 0;
}

static h_env_t *load(void **state, const char *yaml)
{
    h_env_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    *state = h;
    h_setup(h, false, yaml);
    if (h_load(h) != 0) {
        fail_msg("load: %s", h->err);
    }
    return h;
}

static sp_pipeline_stats_t stats(h_env_t *h)
{
    sp_pipeline_stats_t st;
    sp__pipeline_stats(h->core->pipeline, &st);
    return st;
}

static void test_timer_resume(void **state)
{
    h_env_t *h = load(state, "  - name: async_timer\n"
                             "    config: {delay: 5ms}\n"
                             "  - name: rec_a\n"
                             "    config: {accept: reject}\n");
    sp_test_probe_t *pr = h_probe(h, "async_timer");
    sp_txn_t *txn;
    h_run_t r;
    txn = h_start(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.done_calls, 0);
    assert_int_equal(stats(h).suspended, 1);
    h_wait(h, &r.done_calls, 1, 5000);
    /* ACCEPT from the timer ended the stage: rec_a never ran */
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_string_equal(r.res.plugin, "async_timer");
    assert_int_equal(pr->nrc, 1);
    assert_int_equal(pr->rc[0], 0);
    assert_int_equal(pr->cancel_calls, 0);
    assert_int_equal(h_probe(h, "rec_a")->hook_calls, 0);
    assert_int_equal(stats(h).suspended, 0);
    assert_int_equal(stats(h).verdicts[SP_STAGE_ACCEPT][SP_PENDING], 1);
    assert_int_equal(stats(h).verdicts[SP_STAGE_ACCEPT][SP_ACCEPT], 1);
    sp__txn_free(txn);
    teardown(state);

    /* the resumed verdict goes through the stage table like any other */
    h = load(state, "  - name: async_timer\n"
                    "    config: {delay: 1ms, verdict: drop}\n");
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_EGRESS, &r);
    assert_int_equal(r.res.verdict, SP_DROP);
    assert_int_equal(r.res.status, SP_ST_SUPPRESSED);
    assert_string_equal(r.res.text, "dropped by async_timer");
}

typedef struct multi {
    h_run_t r;
    int *total;
} multi_t;

static void multi_done(sp_txn_t *txn, const sp_run_result_t *res, void *arg)
{
    multi_t *m = arg;
    (void)txn;
    m->r.done_calls++;
    m->r.res = *res;
    snprintf(m->r.plugin, sizeof(m->r.plugin), "%s", res->plugin != NULL ? res->plugin : "");
    (*m->total)++;
}

static void many_from_threads(void **state, const char *yaml)
{
    enum { N = 32 };
    h_env_t *h = load(state, yaml);
    sp_test_probe_t *pr = h_probe(h, "async_thread");
    sp_pipeline_t *pl = h->core->pipeline;
    sp_txn_t *txn[N];
    multi_t m[N];
    int total = 0;
    memset(m, 0, sizeof(m));
    for (int i = 0; i < N; i++) {
        m[i].total = &total;
        txn[i] = sp__txn_new(pl, h_msg("x"));
        assert_int_equal(sp__pipeline_run(pl, txn[i], SP_STAGE_ACCEPT, SP_STAGE_ACCEPT,
                                          multi_done, &m[i]),
                         0);
    }
    h_wait(h, &total, N, 10000);
    /* each run finished exactly once, whatever order the threads took */
    for (int i = 0; i < N; i++) {
        assert_int_equal(m[i].r.done_calls, 1);
        assert_int_equal(m[i].r.res.verdict, SP_CONTINUE);
        assert_string_equal(m[i].r.plugin, "async_thread");
        sp__txn_free(txn[i]);
    }
    assert_int_equal(total, N);
    assert_int_equal(pr->hook_calls, N);
    assert_int_equal(stats(h).suspended, 0);
    assert_int_equal(stats(h).active, 0);
    assert_int_equal(stats(h).dead_resumes, 0);
}

static void test_thread_resume(void **state)
{
    many_from_threads(state, "  - name: async_thread\n");
    /* the txn data free function joined every thread */
    assert_int_equal(h_probe(*state, "async_thread")->data_frees, 32);
}

static bool no_work_left(h_env_t *h, void *arg)
{
    (void)arg;
    return h_plugin(h, "async_thread")->nwork == 0;
}

static void test_pool_resume(void **state)
{
    h_env_t *h;
    sp_test_probe_t *pr;
    many_from_threads(state, "  - name: async_thread\n"
                             "    config: {pool: true}\n");
    h = *state;
    pr = h_probe(h, "async_thread");
    /* every work item's done callback ran (status 0) */
    h_wait(h, &pr->nrc, 8, 5000);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pr->rc[i], 0);
    }
    h_wait_pred(h, no_work_left, NULL, 5000);
}

static void test_double_resume(void **state)
{
    h_env_t *h = load(state, "  - name: bad_double_resume\n");
    sp_test_probe_t *pr = h_probe(h, "bad_double_resume");
    sp_txn_t *txn;
    h_run_t r;
    txn = h_run_txn(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.res.verdict, SP_CONTINUE); /* the first resume's ACCEPT */
    assert_int_equal(pr->nrc, 2);
    assert_int_equal(pr->rc[0], 0);
    assert_int_equal(pr->rc[1], SP_ECANCELED);
    assert_int_equal(stats(h).dead_resumes, 1);
    assert_true(h_log_contains(h, "resume of a dead token"));
    /* nothing more arrives later */
    uv_run(&h->loop, UV_RUN_NOWAIT);
    assert_int_equal(r.done_calls, 1);
    sp__txn_free(txn);
    teardown(state);

    /* both resumes inside the hook, before it returns SP_PENDING */
    h = load(state, "  - name: bad_double_resume\n"
                    "    config: {sync: true}\n");
    pr = h_probe(h, "bad_double_resume");
    txn = h_start(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_int_equal(pr->rc[0], 0);
    assert_int_equal(pr->rc[1], SP_ECANCELED);
    assert_int_equal(stats(h).dead_resumes, 1);
    assert_int_equal(stats(h).active, 0);
    sp__txn_free(txn);
}

static void test_never_resumes(void **state)
{
    h_env_t *h = load(state, "  - name: bad_never\n"
                             "    config: {timeout: 20ms}\n");
    sp_test_probe_t *pr = h_probe(h, "bad_never");
    h_run_t r;
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_string_equal(r.res.text, "plugin bad_never timed out");
    assert_string_equal(r.res.plugin, "bad_never");
    assert_int_equal(r.res.status, -1);
    assert_int_equal(pr->cancel_calls, 1);
    assert_int_equal(pr->rc[0], SP_ECANCELED); /* resume from its cancel fn */
    assert_int_equal(stats(h).timeouts, 1);
    assert_int_equal(stats(h).suspended, 0);
    assert_true(h_log_contains(h, "timed out after 20 ms"));
    teardown(state);

    /* timeout 0 in suspend(): the plugin's YAML timeout applies */
    h = load(state, "  - name: bad_never\n"
                    "    timeout: 30ms\n"
                    "    config: {timeout: 0}\n");
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_int_equal(h_probe(h, "bad_never")->cancel_calls, 1);
    assert_true(h_log_contains(h, "timed out after 30 ms"));
}

static void test_garbage(void **state)
{
    static const struct {
        const char *mode;
        int cancels;
        int nrc;
    } cases[] = {
        {"big", 0, 0},
        {"negative", 0, 0},
        {"pending", 0, 0},
        {"resume_garbage", 0, 1},
        {"resume_pending", 0, 1},
        {"answer_after_suspend", 1, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[200];
        h_env_t h;
        h_run_t r;
        sp_test_probe_t *pr;
        sp_pipeline_stats_t st;
        snprintf(yaml, sizeof(yaml),
                 "  - name: bad_garbage\n"
                 "    config: {mode: %s}\n"
                 "  - name: rec_a\n"
                 "    config: {accept: accept}\n",
                 cases[i].mode);
        h_setup(&h, false, yaml);
        assert_int_equal(h_load(&h), 0);
        pr = h_probe(&h, "bad_garbage");
        h_run(&h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_EGRESS, &r);
        assert_int_equal(r.res.verdict, SP_DEFER);
        assert_int_equal(r.res.stage, SP_STAGE_ACCEPT);
        assert_string_equal(r.res.text, "plugin bad_garbage failed");
        assert_int_equal(pr->cancel_calls, cases[i].cancels);
        assert_int_equal(pr->nrc, cases[i].nrc);
        if (cases[i].nrc > 0) {
            assert_int_equal(pr->rc[0], 0);
        }
        sp__pipeline_stats(h.core->pipeline, &st);
        assert_int_equal(st.bad_verdicts, 1);
        assert_int_equal(st.suspended, 0);
        assert_int_equal(h_probe(&h, "rec_a")->hook_calls, 0); /* fails closed */
        h_teardown(&h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_timer_resume, teardown),
        cmocka_unit_test_teardown(test_thread_resume, teardown),
        cmocka_unit_test_teardown(test_pool_resume, teardown),
        cmocka_unit_test_teardown(test_double_resume, teardown),
        cmocka_unit_test_teardown(test_never_resumes, teardown),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
