/* SPDX-License-Identifier: Apache-2.0 */
/* The core context: start-up and drain, submission (accept stage, then one
 * durable group-committed write, then the acknowledgement) and status
 * changes (record, event row and event hooks in one step). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sp_core/alerts.h"
#include "sp_core/core.h"
#include "sp_core/effects.h"
#include "sp_core/fetch.h"
#include "sp_core/http.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/sched.h"
#include "sp_core/webhooks.h"

sp_core_t *sp__core;

int64_t sp__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Ids stay increasing across restarts even if the clock went backwards
 * meanwhile: every submission records the largest id it stored. */
static void seed_ids(sp_store_t *st)
{
    sp_rtxn_t *r;
    const void *v;
    size_t vl;
    uint64_t last = 0;
    if (sp__store_read_begin(st, &r) == 0) {
        if (sp__rtxn_get(r, SP_DB_META, "last_id", 7, &v, &vl) == 0 && vl == 8) {
            last = sp__be64_get(v);
        }
        sp__store_read_end(r);
    }
    sp__id_seed(last);
}

int sp__core_init(sp_core_t **out, sp_config_t *cfg, uv_loop_t *loop, char *err, size_t errlen)
{
    sp_core_t *core = calloc(1, sizeof(*core));
    int rc;
    if (core == NULL) {
        sp__config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return SP_ENOMEM;
    }
    core->loop = loop;
    core->cfg = cfg;
    core->clock_ms = sp__now_ms;
    sp__core = core;

    sp_store_opts_t so = {.map_size = cfg->map_size, .sync = cfg->sync,
                          .max_batch = cfg->max_batch, .read_only = false};
    rc = sp__store_open(&core->store, cfg->data_dir, &so, loop);
    if (rc < 0) {
        snprintf(err, errlen, "store %s: %s", cfg->data_dir, sp__strerror(rc));
        goto fail;
    }
    seed_ids(core->store);
    rc = sp__pipeline_new(&core->pipeline, loop);
    if (rc < 0) {
        snprintf(err, errlen, "pipeline: %s", sp__strerror(rc));
        goto fail;
    }
    rc = sp__fetch_init(loop);
    if (rc < 0) {
        snprintf(err, errlen, "outbound http: %s", sp__strerror(rc));
        goto fail;
    }
    rc = sp__http_init(core);
    if (rc < 0) {
        snprintf(err, errlen, "http routes: %s", sp__strerror(rc));
        goto fail;
    }
    if (cfg->nplugins > 0) {
        core->plugins = calloc(cfg->nplugins, sizeof(*core->plugins));
        if (core->plugins == NULL) {
            rc = SP_ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg->nplugins; i++) {
        sp_plugin_t *p = NULL;
        rc = sp__plugin_load(core, &cfg->plugins[i], (int)i, &p, err, errlen);
        if (rc < 0) {
            goto fail;
        }
        core->plugins[core->nplugins++] = p;
    }
    rc = sp__sched_new(&core->sched, core);
    if (rc < 0) {
        snprintf(err, errlen, "scheduler: %s", sp__strerror(rc));
        goto fail;
    }
    sp__sched_start(core->sched);
    rc = sp__webhooks_start(core);
    if (rc == 0) {
        rc = sp__alerts_start(core);
    }
    if (rc < 0) {
        snprintf(err, errlen, "webhooks/alerts: %s", sp__strerror(rc));
        goto fail;
    }
    *out = core;
    return 0;
fail:
    core->stopping = true;
    sp__core_free(core);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Submission */

typedef struct submit_item {
    sp_txn_t *txn;
    sp_run_result_t run; /* copy of the accept-stage outcome */
    char *text;          /* owned copy of run.text */
    bool store;          /* goes into the commit */
    int status;          /* sp_status_t recorded */
    int64_t due;         /* queue due time, -1 if not queued */
    uint64_t id;
    int64_t team;
    char ids[SP_ID_STRLEN + 1];
    void *rec;           /* encoded record */
    size_t reclen;
    char *data;          /* event JSON of a message stored as dropped, or NULL */
} submit_item_t;

typedef struct submit_batch {
    sp_core_t *core;
    sp_plugin_t *plugin;
    size_t n;
    size_t remaining;
    bool all_or_nothing;
    bool in_submit;   /* still inside sp__core_submit: do not call back yet */
    bool finished;    /* accept stage done for all */
    sp_submit_cb cb;
    void *arg;
    int64_t now;
    submit_item_t *items;
} submit_batch_t;

static void batch_free(submit_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->items[i].txn != NULL) {
            sp__txn_free(b->items[i].txn);
        }
        free(b->items[i].text);
        free(b->items[i].rec);
        free(b->items[i].data);
    }
    free(b->items);
    free(b);
}

static void batch_reply(submit_batch_t *b, int store_status)
{
    sp_submit_result_t *res = calloc(b->n, sizeof(*res));
    if (res == NULL) {
        SP_LOGE("out of memory answering a submission");
        batch_free(b);
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        submit_item_t *it = &b->items[i];
        res[i].index = (int)i;
        res[i].verdict = it->run.verdict;
        res[i].code = it->run.code;
        res[i].text = it->text != NULL ? it->text : "";
        if (it->store) {
            res[i].status = store_status;
            res[i].id = store_status == 0 ? it->ids : NULL;
            if (store_status < 0) {
                res[i].text = store_status == SP_ESTOREFULL ? "store is full, try again later"
                                                            : "store error, try again later";
            } else if (it->run.verdict == SP_CONTINUE || it->run.verdict == SP_ACCEPT) {
                res[i].text = "queued";
            }
        } else if (it->run.verdict == SP_REJECT || it->run.verdict == SP_DEFER) {
            res[i].status = it->run.verdict == SP_REJECT ? SP_EINVAL : SP_EBUSY;
        } else {
            /* passed the accept stage, but another message of an
             * all-or-nothing batch failed */
            res[i].status = SP_ECANCELED;
            res[i].text = "not stored: another message of the batch was refused";
        }
    }
    b->cb(b->arg, res, b->n);
    free(res);
}

static int apply_submit(sp_wtxn_t *w, void *arg)
{
    submit_batch_t *b = arg;
    uint8_t key[16];
    uint64_t maxid = 0;
    int rc;
    for (size_t i = 0; i < b->n; i++) {
        submit_item_t *it = &b->items[i];
        if (!it->store) {
            continue;
        }
        sp__be64_put(key, it->id);
        rc = sp__wtxn_put(w, SP_DB_MESSAGES, key, 8, it->rec, it->reclen);
        if (rc < 0) {
            return rc;
        }
        sp__be64_put(key, (uint64_t)it->team);
        sp__be64_put(key + 8, it->id);
        rc = sp__wtxn_put(w, SP_DB_TEAM_MSGS, key, 16, "", 0);
        if (rc < 0) {
            return rc;
        }
        if (it->due >= 0) {
            sp__be64_put(key, (uint64_t)it->due);
            sp__be64_put(key + 8, it->id);
            rc = sp__wtxn_put(w, SP_DB_QUEUE, key, 16, "", 0);
            if (rc < 0) {
                return rc;
            }
        }
        rc = sp__core_record_event(w, it->id, it->status, b->now, it->data);
        if (rc == 0) {
            rc = sp__effects_apply(w, it->id, sp__txn_msg(it->txn), (sp_status_t)it->status,
                                   b->now, it->data);
        }
        if (rc < 0) {
            return rc;
        }
        if (it->id > maxid) {
            maxid = it->id;
        }
    }
    sp__be64_put(key, maxid);
    return sp__wtxn_put(w, SP_DB_META, "last_id", 7, key, 8);
}

static void emit_event(sp_core_t *core, const char *id, int status, int64_t when,
                       const char *data, int64_t team)
{
    sp_event_t ev = {.size = sizeof(ev), .msg_id = id, .status = (sp_status_t)status,
                     .status_name = sp__status_name((sp_status_t)status), .time_ms = when,
                     .data = data != NULL ? data : "{}", .team = team};
    core->stats.events++;
    sp__pipeline_emit(core->pipeline, &ev);
}

static void done_submit(void *arg, int status)
{
    submit_batch_t *b = arg;
    sp_core_t *core = b->core;
    int64_t first_due = -1;
    for (size_t i = 0; i < b->n; i++) {
        submit_item_t *it = &b->items[i];
        if (!it->store) {
            continue;
        }
        if (status < 0) {
            core->stats.deferred++;
            continue;
        }
        if (it->run.verdict == SP_DROP) {
            core->stats.dropped++;
        } else {
            core->stats.submitted++;
        }
        int64_t team = 0;
        (void)sp__msg_get_int(sp__txn_msg(it->txn), SP_F_TEAM, &team);
        emit_event(core, it->ids, it->status, b->now, it->data, team);
        if (it->due >= 0 && (first_due < 0 || it->due < first_due)) {
            first_due = it->due;
        }
    }
    if (status < 0) {
        SP_LOGW("submission not stored: %s", sp__strerror(status));
    }
    batch_reply(b, status);
    if (first_due >= 0 && core->sched != NULL) {
        sp__sched_kick(core->sched, first_due);
    }
    batch_free(b);
}

/* All accept-stage runs ended: decide what is stored and commit it. */
static void batch_commit(submit_batch_t *b)
{
    sp_core_t *core = b->core;
    bool any_fail = false;
    size_t nstore = 0;
    int rc;
    for (size_t i = 0; i < b->n; i++) {
        sp_verdict_t v = b->items[i].run.verdict;
        if (v == SP_REJECT || v == SP_DEFER) {
            any_fail = true;
            if (v == SP_REJECT) {
                core->stats.rejected++;
            } else {
                core->stats.deferred++;
            }
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        submit_item_t *it = &b->items[i];
        sp_verdict_t v = it->run.verdict;
        if (v == SP_REJECT || v == SP_DEFER || (any_fail && b->all_or_nothing)) {
            continue;
        }
        sp_msg_t *m = sp__txn_msg(it->txn);
        if (v == SP_DROP) {
            it->status = it->run.status >= 0 ? it->run.status : SP_ST_SUPPRESSED;
            it->due = -1;
            if (it->text != NULL && it->text[0] != '\0') {
                json_t *d = json_pack("{s:s}", "error", it->text);
                it->data = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
                json_decref(d);
            }
        }
        (void)sp__msg_set_int(m, SP_F_STATUS, it->status);
        it->team = 0;
        (void)sp__msg_get_int(m, SP_F_TEAM, &it->team);
        rc = sp__msg_encode(m, &it->rec, &it->reclen);
        if (rc < 0) {
            SP_LOGE("encoding message %s: %s", it->ids, sp__strerror(rc));
            it->run.verdict = SP_DEFER;
            continue;
        }
        it->store = true;
        nstore++;
    }
    if (nstore == 0) {
        batch_reply(b, 0);
        batch_free(b);
        return;
    }
    rc = sp__store_write(core->store, apply_submit, done_submit, b);
    if (rc < 0) {
        batch_reply(b, rc);
        batch_free(b);
    }
}

static void accept_done(sp_txn_t *txn, const sp_run_result_t *res, void *arg)
{
    submit_batch_t *b = arg;
    submit_item_t *it = sp__txn_udata(txn);
    it->run = *res;
    it->text = strdup(res->text != NULL ? res->text : "");
    it->run.text = it->text;
    if (--b->remaining == 0) {
        b->finished = true;
        if (!b->in_submit) {
            batch_commit(b);
        }
    }
}

int sp__core_submit(sp_core_t *core, sp_plugin_t *p, sp_msg_t **msgs, size_t n,
                    bool all_or_nothing, sp_submit_cb cb, void *arg)
{
    submit_batch_t *b;
    if (core == NULL || msgs == NULL || n == 0 || n > 100000 || cb == NULL) {
        return SP_EINVAL;
    }
    if (core->stopping) {
        return SP_ESHUTDOWN;
    }
    for (size_t i = 0; i < n; i++) {
        if (msgs[i] == NULL) {
            return SP_EINVAL;
        }
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return SP_ENOMEM;
    }
    b->items = calloc(n, sizeof(*b->items));
    if (b->items == NULL) {
        free(b);
        return SP_ENOMEM;
    }
    b->core = core;
    b->plugin = p;
    b->n = n;
    b->all_or_nothing = all_or_nothing;
    b->cb = cb;
    b->arg = arg;
    b->now = core->clock_ms();
    /* Ids and core fields first; if anything fails here, the caller still
     * owns every message. */
    for (size_t i = 0; i < n; i++) {
        submit_item_t *it = &b->items[i];
        int64_t sched_at = 0;
        it->id = sp__id_next(b->now);
        sp__id_str(it->id, it->ids);
        it->status = SP_ST_QUEUED;
        it->due = b->now;
        if (sp__msg_get_int(msgs[i], SP_F_SCHEDULED_AT, &sched_at) == 0 && sched_at > b->now) {
            it->status = SP_ST_SCHEDULED;
            it->due = sched_at;
        }
        if (sp__msg_set(msgs[i], SP_F_ID, it->ids, SP_ID_STRLEN) < 0 ||
            sp__msg_set_int(msgs[i], SP_F_CREATED_AT, b->now) < 0 ||
            sp__msg_set_int(msgs[i], SP_F_STATUS, it->status) < 0 ||
            sp__msg_set_int(msgs[i], SP_F_ATTEMPTS, 0) < 0) {
            free(b->items);
            free(b);
            return SP_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        b->items[i].txn = sp__txn_new(core->pipeline, msgs[i]);
        if (b->items[i].txn == NULL) {
            for (size_t j = 0; j < i; j++) {
                (void)sp__txn_take_msg(b->items[j].txn);
                sp__txn_free(b->items[j].txn);
            }
            free(b->items);
            free(b);
            return SP_ENOMEM;
        }
        sp__txn_set_udata(b->items[i].txn, &b->items[i]);
    }
    /* From here on the core owns the messages. */
    b->remaining = n;
    b->in_submit = true;
    for (size_t i = 0; i < n; i++) {
        int rc = sp__pipeline_run(core->pipeline, b->items[i].txn, SP_STAGE_ACCEPT,
                                  SP_STAGE_ACCEPT, accept_done, b);
        if (rc < 0) {
            sp_run_result_t r = {.verdict = SP_DEFER, .stage = SP_STAGE_ACCEPT,
                                 .text = "internal error", .status = -1};
            accept_done(b->items[i].txn, &r, b);
        }
    }
    b->in_submit = false;
    if (b->finished) {
        batch_commit(b);
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Status changes */

int sp__core_record_event(sp_wtxn_t *w, uint64_t id, int status, int64_t when,
                          const char *data)
{
    uint8_t key[12];
    const void *lk;
    size_t lkl;
    uint32_t seq = 0;
    void *buf;
    size_t len;
    int rc;
    sp__be64_put(key, id);
    rc = sp__wtxn_last(w, SP_DB_EVENTS, key, 8, &lk, &lkl);
    if (rc == 0 && lkl == 12) {
        seq = sp__be32_get((const uint8_t *)lk + 8) + 1;
    } else if (rc < 0 && rc != SP_ENOTFOUND) {
        return rc;
    }
    sp__be32_put(key + 8, seq);
    rc = sp__event_encode(status, when, data != NULL ? data : "{}", &buf, &len);
    if (rc < 0) {
        return rc;
    }
    rc = sp__wtxn_put(w, SP_DB_EVENTS, key, 12, buf, len);
    free(buf);
    return rc;
}

int sp__core_update_status(sp_wtxn_t *w, uint64_t id, const sp_status_update_t *u,
                           int *applied, int64_t *team)
{
    uint8_t key[8];
    const void *v;
    size_t vl;
    sp_msg_t *m = NULL;
    int64_t cur = SP_ST_QUEUED;
    void *buf = NULL;
    size_t len = 0;
    int rc;
    *applied = -1;
    sp__be64_put(key, id);
    rc = sp__wtxn_get(w, SP_DB_MESSAGES, key, 8, &v, &vl);
    if (rc < 0) {
        return rc;
    }
    rc = sp__msg_decode(v, vl, &m);
    if (rc < 0) {
        return rc;
    }
    (void)sp__msg_get_int(m, SP_F_STATUS, &cur);
    if (team != NULL) {
        *team = 0;
        (void)sp__msg_get_int(m, SP_F_TEAM, team);
    }
    /* A final outcome of our own delivery (RENDERING_FAILURE, CANCELLED rank
     * below QUEUED) must still show: nothing else can have happened to a
     * message that was never handed to a provider. */
    if (u->status >= 0 &&
        (sp__status_supersedes((sp_status_t)cur, (sp_status_t)u->status) ||
         (u->final && (cur == SP_ST_QUEUED || cur == SP_ST_SCHEDULED)))) {
        rc = sp__msg_set_int(m, SP_F_STATUS, u->status);
        *applied = u->status;
    }
    if (rc == 0 && u->attempts >= 0) {
        rc = sp__msg_set_int(m, SP_F_ATTEMPTS, u->attempts);
    }
    if (rc == 0 && u->last_error != NULL) {
        rc = sp__msg_set(m, SP_F_LAST_ERROR, u->last_error, strlen(u->last_error));
    }
    if (rc == 0 && u->provider_id != NULL) {
        rc = sp__msg_set(m, SP_F_PROVIDER_ID, u->provider_id, strlen(u->provider_id));
    }
    if (rc == 0) {
        rc = sp__msg_encode(m, &buf, &len);
    }
    if (rc == 0) {
        rc = sp__wtxn_put(w, SP_DB_MESSAGES, key, 8, buf, len);
        free(buf);
    }
    if (rc == 0 && u->status >= 0) {
        /* The event row is kept even when precedence leaves latestStatus
         * unchanged: the history shows every change that happened. */
        rc = sp__core_record_event(w, id, u->status, u->when, u->data);
        if (rc == 0) {
            rc = sp__effects_apply(w, id, m, (sp_status_t)u->status, u->when, u->data);
        }
    }
    sp__msg_free(m);
    return rc;
}

typedef struct emit_req {
    sp_core_t *core;
    uint64_t id;
    char ids[SP_ID_STRLEN + 1];
    sp_status_update_t u;
    char *data;
    int applied;
    int64_t team;
    sp_done_fn done;
    void *arg;
} emit_req_t;

static int apply_emit(sp_wtxn_t *w, void *arg)
{
    emit_req_t *r = arg;
    return sp__core_update_status(w, r->id, &r->u, &r->applied, &r->team);
}

static void done_emit(void *arg, int status)
{
    emit_req_t *r = arg;
    if (status == 0) {
        emit_event(r->core, r->ids, r->u.status, r->u.when, r->data, r->team);
    }
    if (r->done != NULL) {
        r->done(r->arg, status);
    }
    free(r->data);
    free(r);
}

int sp__core_emit_status(sp_core_t *core, const char *msg_id, sp_status_t st,
                         const char *data_json, sp_done_fn done, void *arg)
{
    emit_req_t *r;
    uint64_t id;
    int rc;
    if (msg_id == NULL || (int)st < 0 || st >= SP_ST__COUNT) {
        return SP_EINVAL;
    }
    if (sp__id_parse(msg_id, strlen(msg_id), &id) < 0) {
        return SP_ENOTFOUND;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return SP_ENOMEM;
    }
    r->core = core;
    r->id = id;
    sp__id_str(id, r->ids);
    r->data = strdup(data_json != NULL ? data_json : "{}");
    r->u = (sp_status_update_t){.status = (int)st, .attempts = -1, .when = core->clock_ms(),
                                .data = r->data};
    r->done = done;
    r->arg = arg;
    if (r->data == NULL) {
        free(r);
        return SP_ENOMEM;
    }
    rc = sp__store_write(core->store, apply_emit, done_emit, r);
    if (rc < 0) {
        free(r->data);
        free(r);
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Drain and teardown */

typedef struct stop_ctx {
    sp_core_t *core;
    uv_timer_t timer;
    int64_t deadline;
    bool cancelled;
    void (*done)(void *arg);
    void *arg;
} stop_ctx_t;

static void stop_closed(uv_handle_t *h)
{
    free(h->data);
}

static bool core_idle(sp_core_t *core)
{
    sp_pipeline_stats_t ps;
    sp__pipeline_stats(core->pipeline, &ps);
    return ps.active == 0 && sp__store_pending(core->store) == 0 &&
           (core->sched == NULL || sp__sched_inflight(core->sched) == 0);
}

static void stop_tick(uv_timer_t *t)
{
    stop_ctx_t *s = t->data;
    sp_core_t *core = s->core;
    if (!s->cancelled && core->clock_ms() >= s->deadline) {
        sp_pipeline_stats_t ps;
        sp__pipeline_stats(core->pipeline, &ps);
        SP_LOGW("shutdown grace period over: cancelling %llu suspended hooks",
                (unsigned long long)ps.suspended);
        s->cancelled = true;
        sp__pipeline_cancel_all(core->pipeline);
    }
    if (core_idle(core)) {
        uv_timer_stop(t);
        s->done(s->arg);
        uv_close((uv_handle_t *)t, stop_closed);
    }
}

void sp__core_stop(sp_core_t *core, uint64_t grace_ms, void (*done)(void *arg), void *arg)
{
    stop_ctx_t *s = calloc(1, sizeof(*s));
    core->stopping = true;
    if (core->sched != NULL) {
        sp__sched_stop(core->sched);
    }
    if (s == NULL) {
        done(arg);
        return;
    }
    s->core = core;
    s->deadline = core->clock_ms() + (int64_t)grace_ms;
    s->done = done;
    s->arg = arg;
    uv_timer_init(core->loop, &s->timer);
    s->timer.data = s;
    /* Completions arrive through the loop; checking every 10 ms while
     * draining keeps this simple and is only ever done at shutdown. */
    uv_timer_start(&s->timer, stop_tick, 0, 10);
}

void sp__core_free(sp_core_t *core)
{
    if (core == NULL) {
        return;
    }
    if (core->sched != NULL) {
        sp__sched_free(core->sched);
        core->sched = NULL;
    }
    sp__webhooks_stop();
    sp__alerts_stop();
    /* Two passes: every fini first, then let the loop run the close
     * callbacks of handles plugins closed (their code), then unmap. */
    for (size_t i = core->nplugins; i > 0; i--) {
        sp__plugin_fini(core->plugins[i - 1]);
    }
    /* After fini (which may still cancel its fetches), before unloading:
     * fetches nobody cancelled end with SP_ECANCELED in mapped code. */
    sp__fetch_shutdown();
    for (int i = 0; i < 16 && uv_run(core->loop, UV_RUN_NOWAIT) != 0; i++) {
    }
    for (size_t i = core->nplugins; i > 0; i--) {
        sp__plugin_unload(core->plugins[i - 1]);
    }
    free(core->plugins);
    core->plugins = NULL;
    core->nplugins = 0;
    sp__http_free();
    if (core->store != NULL) {
        sp__store_close(core->store);
        core->store = NULL;
    }
    if (core->pipeline != NULL) {
        sp__pipeline_free(core->pipeline);
        core->pipeline = NULL;
    }
    /* Let close callbacks of the handles above run. */
    uv_run(core->loop, UV_RUN_NOWAIT);
    sp__config_free(core->cfg);
    if (sp__core == core) {
        sp__core = NULL;
    }
    free(core);
}
