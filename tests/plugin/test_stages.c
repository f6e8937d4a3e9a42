/* SPDX-License-Identifier: Apache-2.0 */
/* The stage table end to end: recorder plugins loaded from .so files play
 * the roles their config gives them, and whole pipeline runs are checked
 * for order, stage skipping, defaults, statuses, txn data and shutdown. */
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

/* Run first..last on a fresh message; trace into tr (may be NULL). */
static void run(h_env_t *h, sp_stage_t first, sp_stage_t last, h_run_t *r, char *tr,
                size_t trlen)
{
    sp_txn_t *txn = h_run_txn(h, h_msg("s"), first, last, r);
    if (tr != NULL) {
        h_trace(sp__txn_msg(txn), tr, trlen);
    }
    sp__txn_free(txn);
}

static void test_order(void **state)
{
    /* effective priority = YAML priority + hook priority; ties: YAML order */
    h_env_t *h = load(state, "  - name: rec_a\n"
                             "    priority: 10\n"
                             "    config: {accept: continue, render: continue}\n"
                             "  - name: rec_b\n"
                             "    priority: -5\n"
                             "    config: {accept: continue, sign: continue}\n"
                             "  - name: rec_c\n"
                             "    config: {accept: continue, render: continue, priority: -20,"
                             " sign: continue}\n");
    char tr[512];
    h_run_t r;
    run(h, SP_STAGE_ACCEPT, SP_STAGE_SIGN, &r, tr, sizeof(tr));
    assert_string_equal(tr, "rec_c:accept,rec_b:accept,rec_a:accept,rec_c:render,rec_a:render,"
                            "rec_c:sign,rec_b:sign");
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_int_equal(r.res.stage, SP_STAGE_SIGN);
}

static void test_yaml_order_ties(void **state)
{
    h_env_t *h = load(state, "  - name: rec_c\n"
                             "    config: {transform: continue}\n"
                             "  - name: rec_a\n"
                             "    config: {transform: continue}\n"
                             "  - name: rec_b\n"
                             "    config: {transform: continue}\n");
    char tr[512];
    h_run_t r;
    run(h, SP_STAGE_TRANSFORM, SP_STAGE_TRANSFORM, &r, tr, sizeof(tr));
    assert_string_equal(tr, "rec_c:transform,rec_a:transform,rec_b:transform");
}

static void test_accept_skips_rest_of_stage(void **state)
{
    h_env_t *h = load(state, "  - name: rec_a\n"
                             "    config: {accept: accept, reply: fine, code: 202}\n"
                             "  - name: rec_b\n"
                             "    config: {accept: reject, render: continue}\n");
    char tr[512];
    h_run_t r;
    run(h, SP_STAGE_ACCEPT, SP_STAGE_RENDER, &r, tr, sizeof(tr));
    assert_string_equal(tr, "rec_a:accept,rec_b:render");
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_string_equal(r.res.plugin, "rec_a");
    assert_string_equal(r.res.text, "fine");
    assert_int_equal(r.res.code, 202);
}

static void test_egress_default(void **state)
{
    h_env_t *h = load(state, "  - name: rec_a\n"
                             "    config: {accept: continue, render: continue, transform: "
                             "continue, sign: continue, egress: continue}\n");
    char tr[512];
    h_run_t r;
    run(h, SP_STAGE_ACCEPT, SP_STAGE_EGRESS, &r, tr, sizeof(tr));
    assert_string_equal(tr, "rec_a:accept,rec_a:render,rec_a:transform,rec_a:sign,rec_a:egress");
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_int_equal(r.res.stage, SP_STAGE_EGRESS);
    assert_string_equal(r.res.text, "no egress plugin accepted the message");
    assert_null(r.res.plugin);
    assert_int_equal(r.res.status, -1);
    teardown(state);

    /* an egress ACCEPT means sent: the whole run passes */
    h = load(state, "  - name: rec_a\n"
                    "    config: {egress: continue}\n"
                    "  - name: rec_b\n"
                    "    config: {egress: accept}\n");
    run(h, SP_STAGE_RENDER, SP_STAGE_EGRESS, &r, tr, sizeof(tr));
    assert_string_equal(tr, "rec_a:egress,rec_b:egress");
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_string_equal(r.res.plugin, "rec_b");
}

static void test_default_statuses(void **state)
{
    static const struct {
        const char *key;
        const char *verdict;
        sp_stage_t stage;
        sp_verdict_t v;
        int status;
        const char *text;
    } cases[] = {
        {"accept", "reject", SP_STAGE_ACCEPT, SP_REJECT, -1, "rejected by rec_a"},
        {"render", "reject", SP_STAGE_RENDER, SP_REJECT, SP_ST_RENDERING_FAILURE,
         "rejected by rec_a"},
        {"transform", "reject", SP_STAGE_TRANSFORM, SP_REJECT, SP_ST_FAILED, "rejected by rec_a"},
        {"sign", "reject", SP_STAGE_SIGN, SP_REJECT, SP_ST_FAILED, "rejected by rec_a"},
        {"egress", "reject", SP_STAGE_EGRESS, SP_REJECT, SP_ST_REJECTED, "rejected by rec_a"},
        {"accept", "drop", SP_STAGE_ACCEPT, SP_DROP, SP_ST_SUPPRESSED, "dropped by rec_a"},
        {"sign", "drop", SP_STAGE_SIGN, SP_DROP, SP_ST_CANCELLED, "dropped by rec_a"},
        {"egress", "drop", SP_STAGE_EGRESS, SP_DROP, SP_ST_CANCELLED, "dropped by rec_a"},
        {"accept", "defer", SP_STAGE_ACCEPT, SP_DEFER, -1, "deferred by rec_a"},
        {"egress", "defer", SP_STAGE_EGRESS, SP_DEFER, -1, "deferred by rec_a"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[256], tr[512];
        h_env_t h;
        h_run_t r;
        snprintf(yaml, sizeof(yaml),
                 "  - name: rec_a\n"
                 "    config: {%s: %s, retry_in: 90s}\n"
                 "  - name: rec_b\n"
                 "    config: {%s: accept}\n",
                 cases[i].key, cases[i].verdict, cases[i].key);
        h_setup(&h, false, yaml);
        assert_int_equal(h_load(&h), 0);
        run(&h, SP_STAGE_ACCEPT, SP_STAGE_EGRESS, &r, tr, sizeof(tr));
        assert_int_equal(r.res.verdict, cases[i].v);
        assert_int_equal(r.res.stage, cases[i].stage);
        assert_int_equal(r.res.status, cases[i].status);
        assert_string_equal(r.res.text, cases[i].text);
        assert_string_equal(r.res.plugin, "rec_a");
        assert_int_equal(r.res.retry_in_ms, cases[i].v == SP_DEFER ? 90000 : 0);
        /* the run stopped: rec_b never saw this stage */
        assert_null(strstr(tr, "rec_b"));
        h_teardown(&h);
    }
}

static void test_hook_chooses_status_and_reply(void **state)
{
    h_env_t *h = load(state, "  - name: rec_a\n"
                             "    config: {egress: reject, reply: \"mailbox full\", code: 552,"
                             " status: BOUNCED}\n");
    h_run_t r;
    run(h, SP_STAGE_EGRESS, SP_STAGE_EGRESS, &r, NULL, 0);
    assert_int_equal(r.res.verdict, SP_REJECT);
    assert_int_equal(r.res.status, SP_ST_BOUNCED);
    assert_int_equal(r.res.code, 552);
    assert_string_equal(r.res.text, "mailbox full");
}

static void test_garbage_verdict(void **state)
{
    h_env_t *h = load(state, "  - name: rec_a\n"
                             "    config: {accept: garbage}\n"
                             "  - name: rec_b\n"
                             "    config: {accept: accept}\n");
    sp_pipeline_stats_t st;
    h_run_t r;
    run(h, SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r, NULL, 0);
    assert_int_equal(r.res.verdict, SP_DEFER);
    assert_string_equal(r.res.text, "plugin rec_a failed");
    sp__pipeline_stats(h->core->pipeline, &st);
    assert_int_equal(st.bad_verdicts, 1);
    assert_int_equal(st.verdicts[SP_STAGE_ACCEPT][SP_DEFER], 1);
    assert_true(h_log_contains(h, "returned an invalid verdict (42)"));
}

static void test_txn_data_freed_once(void **state)
{
    h_env_t *h = load(state, "  - name: rec_a\n"
                             "    config: {accept: continue, render: continue, egress: accept,"
                             " data: true}\n"
                             "  - name: rec_b\n"
                             "    config: {accept: continue, data: true}\n");
    sp_test_probe_t *pa = h_probe(h, "rec_a"), *pb = h_probe(h, "rec_b");
    sp_txn_t *txn;
    h_run_t r;
    txn = h_run_txn(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_EGRESS, &r);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    /* rec_a set data three times: the two replaced values are freed */
    assert_int_equal(pa->data_frees, 2);
    assert_int_equal(pb->data_frees, 0);
    sp__txn_free(txn);
    assert_int_equal(pa->data_frees, 3);
    assert_int_equal(pb->data_frees, 1);
}

static void test_events(void **state)
{
    h_env_t *h = load(state, "  - name: rec_a\n"
                             "    config: {events: true}\n"
                             "  - name: rec_b\n"
                             "    config: {events: true}\n");
    sp_event_t ev = {.size = sizeof(ev), .msg_id = "x", .status = SP_ST_OPENED,
                     .status_name = "OPENED", .data = "{}"};
    sp__pipeline_emit(h->core->pipeline, &ev);
    assert_int_equal(h_probe(h, "rec_a")->events, 1);
    assert_int_equal(h_probe(h, "rec_b")->events, 1);
    assert_int_equal(h_probe(h, "rec_b")->last_event_status, SP_ST_OPENED);
}

static void test_cancel_all_at_shutdown(void **state)
{
    h_env_t *h = load(state, "  - name: async_timer\n"
                             "    config: {delay: 10m}\n"
                             "  - name: rec_a\n"
                             "    config: {accept: accept}\n");
    sp_test_probe_t *pr = h_probe(h, "async_timer");
    sp_pipeline_stats_t st;
    sp_txn_t *txn[2];
    h_run_t r[2];
    for (int i = 0; i < 2; i++) {
        txn[i] = h_start(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r[i]);
        assert_int_equal(r[i].done_calls, 0);
    }
    sp__pipeline_stats(h->core->pipeline, &st);
    assert_int_equal(st.suspended, 2);
    assert_non_null(h_plugin(h, "async_timer")->timers);
    sp__pipeline_cancel_all(h->core->pipeline);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].done_calls, 1);
        assert_int_equal(r[i].res.verdict, SP_DEFER);
        assert_string_equal(r[i].res.text, "shutting down");
        sp__txn_free(txn[i]);
    }
    assert_int_equal(pr->cancel_calls, 2);
    assert_null(h_plugin(h, "async_timer")->timers); /* its cancel stopped them */
    sp__pipeline_stats(h->core->pipeline, &st);
    assert_int_equal(st.suspended, 0);
    assert_int_equal(st.active, 0);
    assert_int_equal(h_probe(h, "rec_a")->hook_calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_order, teardown),
        cmocka_unit_test_teardown(test_yaml_order_ties, teardown),
        cmocka_unit_test_teardown(test_accept_skips_rest_of_stage, teardown),
        cmocka_unit_test_teardown(test_egress_default, teardown),
        cmocka_unit_test(test_default_statuses),
        cmocka_unit_test_teardown(test_hook_chooses_status_and_reply, teardown),
        cmocka_unit_test_teardown(test_garbage_verdict, teardown),
        cmocka_unit_test_teardown(test_txn_data_freed_once, teardown),
        cmocka_unit_test_teardown(test_events, teardown),
        cmocka_unit_test_teardown(test_cancel_all_at_shutdown, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
