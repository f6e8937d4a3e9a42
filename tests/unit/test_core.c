/* SPDX-License-Identifier: Apache-2.0 */
/* Core tests: submission with durable commit before the callback, the
 * all-or-nothing rule, delivery retries into FAILED when no egress takes a
 * message, status precedence through emit_status, drain, metrics, backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/msgops.h"
#include "sp_core/sched.h"

typedef struct fixture {
    char dir[64];
    uv_loop_t loop;
    sp_core_t *core;
    uv_timer_t watchdog;
} fixture_t;

static void watchdog_cb(uv_timer_t *t)
{
    fail_msg("watchdog: the loop did not reach the expected state in time");
}

/* Run the loop until *flag becomes true; the watchdog fails the test. */
static void run_until(fixture_t *f, const bool *flag, uint64_t ms)
{
    const char *mult = getenv("SP_TEST_TIMEOUT_MULTIPLIER");
    uint64_t m = mult != NULL ? (uint64_t)atoi(mult) : 1;
    uv_timer_start(&f->watchdog, watchdog_cb, ms * (m > 0 ? m : 1), 0);
    while (!*flag) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&f->watchdog);
}

static int setup(void **state)
{
    static const char yaml_fmt[] = "data_dir: %s/data\n"
                                   "store: { sync: false }\n"
                                   "scheduler: { concurrency: 4, retry_base: 10ms, "
                                   "retry_max: 20ms, max_age: 120ms }\n"
                                   "shutdown_grace: 1s\n";
    char yaml[512], err[512];
    fixture_t *f = calloc(1, sizeof(*f));
    sp_config_t *cfg;
    assert_non_null(f);
    strcpy(f->dir, "/tmp/sp-core-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(yaml, sizeof(yaml), yaml_fmt, f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->watchdog);
    sp__log_open("/dev/null", SP_LOG_ERROR);
    assert_int_equal(sp__config_parse(yaml, strlen(yaml), "test.yaml", f->dir, &cfg, err,
                                      sizeof(err)),
                     0);
    assert_int_equal(sp__core_init(&f->core, cfg, &f->loop, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static void stopped(void *arg)
{
    *(bool *)arg = true;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[128];
    bool done = false;
    sp__core_stop(f->core, 1000, stopped, &done);
    run_until(f, &done, 5000);
    sp__core_free(f->core);
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sp__log_close();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

typedef struct submit_out {
    bool done;
    size_t n;
    int status[8];
    char id[8][SP_ID_STRLEN + 1];
} submit_out_t;

static void submit_cb(void *arg, const sp_submit_result_t *res, size_t n)
{
    submit_out_t *o = arg;
    o->n = n;
    for (size_t i = 0; i < n && i < 8; i++) {
        o->status[i] = res[i].status;
        if (res[i].id != NULL) {
            strcpy(o->id[i], res[i].id);
        }
    }
    o->done = true;
}

static sp_msg_t *new_msg(const char *subject)
{
    sp_msg_t *m = sp__msg_new();
    assert_non_null(m);
    assert_int_equal(sp__msg_set(m, SP_F_FROM, "a@example.com", 13), 0);
    assert_int_equal(sp__msg_add(m, SP_F_TO, "b@example.com", 13), 0);
    assert_int_equal(sp__msg_set(m, SP_F_SUBJECT, subject, strlen(subject)), 0);
    return m;
}

static int64_t stored_status(fixture_t *f, const char *id)
{
    uint64_t n;
    uint8_t key[8];
    const void *v;
    size_t vl;
    sp_rtxn_t *r;
    sp_msg_t *m;
    int64_t st = -1;
    assert_int_equal(sp__id_parse(id, strlen(id), &n), 0);
    sp__be64_put(key, n);
    assert_int_equal(sp__store_read_begin(f->core->store, &r), 0);
    if (sp__rtxn_get(r, SP_DB_MESSAGES, key, 8, &v, &vl) == 0) {
        assert_int_equal(sp__msg_decode(v, vl, &m), 0);
        assert_int_equal(sp__msg_get_int(m, SP_F_STATUS, &st), 0);
        sp__msg_free(m);
    }
    sp__store_read_end(r);
    return st;
}

static void test_submit_is_durable_before_callback(void **state)
{
    fixture_t *f = *state;
    submit_out_t o = {0};
    sp_msg_t *msgs[3] = {new_msg("one"), new_msg("two"), new_msg("three")};
    assert_int_equal(sp__core_submit(f->core, NULL, msgs, 3, true, submit_cb, &o), 0);
    /* The callback never runs inside submit: the commit is asynchronous. */
    assert_false(o.done);
    run_until(f, &o.done, 5000);
    assert_int_equal(o.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o.status[i], 0);
        assert_int_equal(strlen(o.id[i]), SP_ID_STRLEN);
        /* Visible in the store at the moment of the acknowledgement. */
        int64_t st = stored_status(f, o.id[i]);
        assert_true(st == SP_ST_QUEUED || st == SP_ST_FAILED);
    }
    assert_true(strcmp(o.id[0], o.id[1]) < 0 && strcmp(o.id[1], o.id[2]) < 0);
}

static void test_no_egress_retries_then_fails(void **state)
{
    fixture_t *f = *state;
    submit_out_t o = {0};
    sp_msg_t *m = new_msg("nowhere");
    assert_int_equal(sp__core_submit(f->core, NULL, &m, 1, true, submit_cb, &o), 0);
    run_until(f, &o.done, 5000);
    assert_int_equal(o.status[0], 0);
    /* No egress plugin: each attempt DEFERs; past max_age (120 ms) it fails. */
    uv_timer_start(&f->watchdog, watchdog_cb, 10000, 0);
    while (stored_status(f, o.id[0]) != SP_ST_FAILED) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&f->watchdog);
    assert_true(f->core->stats.retried >= 1);
    assert_true(f->core->stats.failed >= 1);
}

static void test_scheduled_and_invalid(void **state)
{
    fixture_t *f = *state;
    submit_out_t o = {0};
    sp_msg_t *m = new_msg("later");
    assert_int_equal(sp__msg_set_int(m, SP_F_SCHEDULED_AT, sp__now_ms() + 3600 * 1000), 0);
    assert_int_equal(sp__core_submit(f->core, NULL, &m, 1, true, submit_cb, &o), 0);
    run_until(f, &o.done, 5000);
    assert_int_equal(stored_status(f, o.id[0]), SP_ST_SCHEDULED);
    assert_int_equal(sp__core_submit(f->core, NULL, NULL, 1, true, submit_cb, &o), SP_EINVAL);
    assert_int_equal(sp__core_submit(f->core, NULL, &m, 0, true, submit_cb, &o), SP_EINVAL);
}

typedef struct emit_out {
    bool done;
    int status;
} emit_out_t;

static void emit_cb(void *arg, int status)
{
    emit_out_t *e = arg;
    e->status = status;
    e->done = true;
}

static int count_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    (*(int *)arg)++;
    return 0;
}

static void test_emit_status_precedence(void **state)
{
    fixture_t *f = *state;
    submit_out_t o = {0};
    emit_out_t e = {0};
    sp_msg_t *m = new_msg("feedback");
    assert_int_equal(sp__msg_set_int(m, SP_F_SCHEDULED_AT, sp__now_ms() + 3600 * 1000), 0);
    assert_int_equal(sp__core_submit(f->core, NULL, &m, 1, true, submit_cb, &o), 0);
    run_until(f, &o.done, 5000);

    assert_int_equal(sp__core_emit_status(f->core, o.id[0], SP_ST_OPENED, "{\"ua\":\"x\"}",
                                          emit_cb, &e),
                     0);
    run_until(f, &e.done, 5000);
    assert_int_equal(e.status, 0);
    assert_int_equal(stored_status(f, o.id[0]), SP_ST_OPENED);
    /* DELIVERED ranks below OPENED: recorded as an event, status unchanged. */
    e.done = false;
    assert_int_equal(sp__core_emit_status(f->core, o.id[0], SP_ST_DELIVERED, NULL, emit_cb, &e),
                     0);
    run_until(f, &e.done, 5000);
    assert_int_equal(stored_status(f, o.id[0]), SP_ST_OPENED);
    e.done = false;
    assert_int_equal(sp__core_emit_status(f->core, o.id[0], SP_ST_COMPLAINED, NULL, emit_cb, &e),
                     0);
    run_until(f, &e.done, 5000);
    assert_int_equal(stored_status(f, o.id[0]), SP_ST_COMPLAINED);
    /* Four event rows: SCHEDULED, OPENED, DELIVERED, COMPLAINED. */
    {
        uint64_t n;
        uint8_t key[8];
        sp_rtxn_t *r;
        int count = 0;
        assert_int_equal(sp__id_parse(o.id[0], SP_ID_STRLEN, &n), 0);
        sp__be64_put(key, n);
        assert_int_equal(sp__store_read_begin(f->core->store, &r), 0);
        assert_int_equal(sp__rtxn_scan(r, SP_DB_EVENTS, key, 8, key, 8, count_each, &count), 0);
        sp__store_read_end(r);
        assert_int_equal(count, 4);
    }
    /* Unknown id. */
    e.done = false;
    assert_int_equal(sp__core_emit_status(f->core, "0000000000000", SP_ST_OPENED, NULL, emit_cb,
                                          &e),
                     0);
    run_until(f, &e.done, 5000);
    assert_int_equal(e.status, SP_ENOTFOUND);
    assert_int_equal(sp__core_emit_status(f->core, "not-an-id", SP_ST_OPENED, NULL, emit_cb, &e),
                     SP_ENOTFOUND);
    assert_int_equal(sp__core_emit_status(f->core, o.id[0], SP_ST__COUNT, NULL, emit_cb, &e),
                     SP_EINVAL);
}

static void test_refused_while_stopping(void **state)
{
    fixture_t *f = *state;
    submit_out_t o = {0};
    sp_msg_t *m = new_msg("late");
    f->core->stopping = true;
    assert_int_equal(sp__core_submit(f->core, NULL, &m, 1, true, submit_cb, &o), SP_ESHUTDOWN);
    f->core->stopping = false;
    sp__msg_free(m);
}

static void test_metrics_text(void **state)
{
    fixture_t *f = *state;
    submit_out_t o = {0};
    sp_msg_t *m = new_msg("metrics");
    char *text;
    size_t len;
    assert_int_equal(sp__core_submit(f->core, NULL, &m, 1, true, submit_cb, &o), 0);
    run_until(f, &o.done, 5000);
    assert_int_equal(sp__core_metrics(f->core, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "sendpipe_store_commits_total "));
    assert_non_null(strstr(text, "sendpipe_submitted_total 1\n"));
    assert_non_null(strstr(text, "sendpipe_store_batch_size_bucket{le=\"+Inf\"}"));
    assert_non_null(strstr(text, "sendpipe_queue_depth{state=\"waiting\"}"));
    assert_non_null(
        strstr(text, "sendpipe_stage_verdicts_total{stage=\"accept\",verdict=\"CONTINUE\"}"));
    free(text);
}

static void test_backoff(void **state)
{
    /* base 1 s, cap 60 s: attempt 1 in [0.5 s, 1 s], doubling, capped. */
    assert_int_equal(sp__sched_backoff(1000, 60000, 1, 0.0), 500);
    assert_int_equal(sp__sched_backoff(1000, 60000, 1, 0.999999), 999);
    assert_int_equal(sp__sched_backoff(1000, 60000, 3, 0.0), 2000);
    assert_int_equal(sp__sched_backoff(1000, 60000, 30, 0.0), 30000);
    assert_true(sp__sched_backoff(1000, 60000, 200, 0.5) <= 60000);
    for (unsigned a = 1; a < 40; a++) {
        uint64_t d = sp__sched_backoff(30000, 3600000, a, 0.7);
        assert_true(d >= 15000 && d <= 3600000);
    }
}

/* ---- stored-message operations --------------------------------------- */

static sp_msg_t *team_msg(const char *subject, int64_t team, int64_t sched_at)
{
    sp_msg_t *m = new_msg(subject);
    assert_int_equal(sp__msg_set_int(m, SP_F_TEAM, team), 0);
    if (sched_at > 0) {
        assert_int_equal(sp__msg_set_int(m, SP_F_SCHEDULED_AT, sched_at), 0);
    }
    return m;
}

static void submit_one(fixture_t *f, sp_msg_t *m, char id[SP_ID_STRLEN + 1])
{
    submit_out_t o = {0};
    assert_int_equal(sp__core_submit(f->core, NULL, &m, 1, true, submit_cb, &o), 0);
    run_until(f, &o.done, 5000);
    assert_int_equal(o.status[0], 0);
    strcpy(id, o.id[0]);
}

static int queue_count(fixture_t *f)
{
    sp_rtxn_t *r;
    uint64_t n = 0;
    assert_int_equal(sp__store_read_begin(f->core->store, &r), 0);
    assert_int_equal(sp__rtxn_count(r, SP_DB_QUEUE, &n), 0);
    sp__store_read_end(r);
    return (int)n;
}

static void test_cancel_and_reschedule(void **state)
{
    fixture_t *f = *state;
    char id[SP_ID_STRLEN + 1];
    emit_out_t e = {0};
    int64_t later = sp__now_ms() + 3600 * 1000, v = 0;
    sp_msg_t *m;

    submit_one(f, team_msg("sched", 7, later), id);
    assert_int_equal(queue_count(f), 1);
    /* Another team cannot touch it. */
    assert_int_equal(sp__msgops_cancel(f->core, id, 8, emit_cb, &e), 0);
    run_until(f, &e.done, 5000);
    assert_int_equal(e.status, SP_ENOTFOUND);
    /* Reschedule moves the queue key and the field in one write. */
    e.done = false;
    assert_int_equal(sp__msgops_reschedule(f->core, id, 7, later + 1000, emit_cb, &e), 0);
    run_until(f, &e.done, 5000);
    assert_int_equal(e.status, 0);
    assert_int_equal(queue_count(f), 1);
    assert_int_equal(sp__msgops_load(f->core, id, &m), 0);
    assert_int_equal(sp__msg_get_int(m, SP_F_SCHEDULED_AT, &v), 0);
    assert_int_equal(v, later + 1000);
    sp__msg_free(m);
    /* Cancel: status CANCELLED, queue empty, an event row. */
    e.done = false;
    assert_int_equal(sp__msgops_cancel(f->core, id, 7, emit_cb, &e), 0);
    run_until(f, &e.done, 5000);
    assert_int_equal(e.status, 0);
    assert_int_equal(queue_count(f), 0);
    assert_int_equal(stored_status(f, id), SP_ST_CANCELLED);
    /* Not scheduled any more. */
    e.done = false;
    assert_int_equal(sp__msgops_cancel(f->core, id, 7, emit_cb, &e), 0);
    run_until(f, &e.done, 5000);
    assert_int_equal(e.status, SP_ESTATE);
    e.done = false;
    assert_int_equal(sp__msgops_reschedule(f->core, id, 7, later, emit_cb, &e), 0);
    run_until(f, &e.done, 5000);
    assert_int_equal(e.status, SP_ESTATE);
    assert_int_equal(sp__msgops_cancel(f->core, "bogus", 7, emit_cb, &e), SP_ENOTFOUND);
    assert_int_equal(sp__msgops_reschedule(f->core, id, 7, -5, emit_cb, &e), SP_EINVAL);
}

/* Cancel while the scheduler may pick the message: it is either cancelled
 * (never delivered) or refused because a delivery is in flight. */
static void test_cancel_races_delivery(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 20; i++) {
        char id[SP_ID_STRLEN + 1];
        emit_out_t e = {0};
        int rc;
        /* due right now: the scheduler picks it on its next turn */
        submit_one(f, team_msg("race", 1, sp__now_ms() + 1), id);
        rc = sp__msgops_cancel(f->core, id, 1, emit_cb, &e);
        if (rc == SP_ESTATE) {
            continue; /* delivery already in flight: refused, never both */
        }
        assert_int_equal(rc, 0);
        run_until(f, &e.done, 5000);
        if (e.status == 0) {
            int64_t st;
            /* give the scheduler a chance to (wrongly) deliver it */
            for (int k = 0; k < 50; k++) {
                uv_run(&f->loop, UV_RUN_NOWAIT);
            }
            st = stored_status(f, id);
            assert_int_equal(st, SP_ST_CANCELLED);
        } else {
            assert_int_equal(e.status, SP_ESTATE);
        }
    }
}

typedef struct list_out {
    int n;
    char ids[16][SP_ID_STRLEN + 1];
} list_out_t;

static int list_cb(void *arg, const sp_msg_t *m)
{
    list_out_t *o = arg;
    const char *id = sp__msg_get(m, SP_F_ID, NULL);
    assert_non_null(id);
    strcpy(o->ids[o->n++], id);
    return o->n == 16;
}

typedef struct ev_out {
    int n;
    int status[8];
} ev_out_t;

static int ev_cb(void *arg, sp_status_t st, int64_t t, const char *data)
{
    ev_out_t *o = arg;
    assert_non_null(data);
    o->status[o->n++] = (int)st;
    return 0;
}

static void test_list_load_events(void **state)
{
    fixture_t *f = *state;
    char ids[5][SP_ID_STRLEN + 1], other[SP_ID_STRLEN + 1];
    list_out_t o = {0};
    ev_out_t ev = {0};
    int64_t later = sp__now_ms() + 3600 * 1000;
    sp_msg_t *m;
    for (int i = 0; i < 5; i++) {
        submit_one(f, team_msg("list", 3, later), ids[i]);
    }
    submit_one(f, team_msg("other team", 4, later), other);
    assert_int_equal(sp__msgops_list(f->core, 3, 0, 0, 0, list_cb, &o), 0);
    assert_int_equal(o.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(o.ids[i], ids[4 - i]); /* newest first */
    }
    memset(&o, 0, sizeof(o));
    assert_int_equal(sp__msgops_list(f->core, 3, 0, 0, 2, list_cb, &o), 0);
    assert_int_equal(o.n, 3);
    assert_string_equal(o.ids[0], ids[2]);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sp__msgops_list(f->core, 3, 0, sp__now_ms() - 3600 * 1000, 0, list_cb, &o),
                     0);
    assert_int_equal(o.n, 0);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sp__msgops_list(f->core, 3, sp__now_ms() + 1000, 0, 0, list_cb, &o), 0);
    assert_int_equal(o.n, 0);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sp__msgops_list(f->core, 3, 0, 1000, 0, list_cb, &o), 0); /* 1970 */
    assert_int_equal(o.n, 0);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sp__msgops_list(f->core, 99, 0, 0, 0, list_cb, &o), 0);
    assert_int_equal(o.n, 0);

    assert_int_equal(sp__msgops_load(f->core, other, &m), 0);
    assert_string_equal(sp__msg_get(m, SP_F_SUBJECT, NULL), "other team");
    sp__msg_free(m);
    assert_int_equal(sp__msgops_load(f->core, "0000000000000", &m), SP_ENOTFOUND);
    assert_int_equal(sp__msgops_events(f->core, other, ev_cb, &ev), 0);
    assert_int_equal(ev.n, 1);
    assert_int_equal(ev.status[0], SP_ST_SCHEDULED);
    assert_int_equal(sp__msgops_events(f->core, "0000000000000", ev_cb, &ev), SP_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_submit_is_durable_before_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_egress_retries_then_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scheduled_and_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_status_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_while_stopping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_reschedule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_races_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_load_events, setup, teardown),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
