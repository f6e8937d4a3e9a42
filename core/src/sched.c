/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler: the queue index (due || id) is the source of truth; one
 * timer is armed for the earliest entry, due messages go through
 * render..egress with bounded concurrency, and each outcome updates the record
 * and the queue index in the same store write. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/msgops.h"
#include "sp_core/sched.h"

typedef struct delivery {
    struct sp_sched *s;
    uint64_t id;
    uint64_t due;   /* due time of the queue key we picked */
    sp_txn_t *txn;
    /* outcome, filled when the pipeline run ends */
    sp_status_update_t u;
    char *last_error;
    char *provider_id;
    char *data; /* event data JSON */
    bool requeue;
    uint64_t new_due;
    int applied;
    int64_t team;
    char ids[SP_ID_STRLEN + 1];
} delivery_t;

struct sp_sched {
    sp_core_t *core;
    uv_timer_t timer;
    bool armed;
    int64_t armed_at;
    bool stopping;
    bool pumping;
    bool pump_again;
    size_t inflight;
    size_t held; /* ids held by sp__sched_hold */
    /* open-addressed set of ids in flight (0 = empty slot) */
    uint64_t *set;
    size_t set_cap;
    uint64_t rnd;
};

/* ---- in-flight set ---------------------------------------------------- */

static size_t set_slot(const sp_sched_t *s, uint64_t id)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (s->set_cap - 1);
}

static bool set_has(const sp_sched_t *s, uint64_t id)
{
    for (size_t i = set_slot(s, id);; i = (i + 1) & (s->set_cap - 1)) {
        if (s->set[i] == id) {
            return true;
        }
        if (s->set[i] == 0) {
            return false;
        }
    }
}

static void set_add(sp_sched_t *s, uint64_t id)
{
    size_t i = set_slot(s, id);
    while (s->set[i] != 0) {
        i = (i + 1) & (s->set_cap - 1);
    }
    s->set[i] = id;
}

static void set_del(sp_sched_t *s, uint64_t id)
{
    size_t i = set_slot(s, id);
    while (s->set[i] != id) {
        if (s->set[i] == 0) {
            return;
        }
        i = (i + 1) & (s->set_cap - 1);
    }
    s->set[i] = 0;
    /* Re-insert the rest of the cluster so lookups stay correct. */
    for (size_t j = (i + 1) & (s->set_cap - 1); s->set[j] != 0; j = (j + 1) & (s->set_cap - 1)) {
        uint64_t v = s->set[j];
        s->set[j] = 0;
        set_add(s, v);
    }
}

/* ---- backoff ---------------------------------------------------------- */

uint64_t sp__sched_backoff(uint64_t base_ms, uint64_t max_ms, unsigned attempt, double rnd)
{
    uint64_t d = base_ms;
    for (unsigned i = 1; i < attempt && d < max_ms; i++) {
        d *= 2;
    }
    if (d > max_ms) {
        d = max_ms;
    }
    /* "Equal jitter": half fixed, half random, so retries of a burst spread
     * out but never come sooner than half the nominal delay. */
    return d / 2 + (uint64_t)((double)(d - d / 2) * rnd);
}

static double next_rnd(sp_sched_t *s)
{
    /* xorshift64*: jitter needs spread, not secrecy */
    s->rnd ^= s->rnd >> 12;
    s->rnd ^= s->rnd << 25;
    s->rnd ^= s->rnd >> 27;
    return (double)((s->rnd * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* ---- timer ------------------------------------------------------------ */

static void pump(sp_sched_t *s);

static void timer_cb(uv_timer_t *t)
{
    sp_sched_t *s = t->data;
    s->armed = false;
    pump(s);
}

static void arm(sp_sched_t *s, int64_t due)
{
    int64_t now = s->core->clock_ms();
    if (s->stopping) {
        return;
    }
    if (s->armed && s->armed_at <= due) {
        return;
    }
    s->armed = true;
    s->armed_at = due;
    uv_timer_start(&s->timer, timer_cb, due > now ? (uint64_t)(due - now) : 0, 0);
}

void sp__sched_kick(sp_sched_t *s, int64_t due_ms)
{
    arm(s, due_ms);
}

/* ---- delivery outcome ------------------------------------------------- */

static void delivery_free(delivery_t *d)
{
    if (d->txn != NULL) {
        sp__txn_free(d->txn);
    }
    free(d->last_error);
    free(d->provider_id);
    free(d->data);
    free(d);
}

static int apply_delivery(sp_wtxn_t *w, void *arg)
{
    delivery_t *d = arg;
    uint8_t key[16];
    int rc;
    sp__be64_put(key, d->due);
    sp__be64_put(key + 8, d->id);
    rc = sp__wtxn_del(w, SP_DB_QUEUE, key, 16);
    if (rc == SP_ENOTFOUND) {
        /* Cancelled or rescheduled meanwhile: that change wins, the outcome
         * of this attempt is still recorded below. */
        d->requeue = false;
    } else if (rc < 0) {
        return rc;
    }
    if (d->requeue) {
        sp__be64_put(key, d->new_due);
        rc = sp__wtxn_put(w, SP_DB_QUEUE, key, 16, "", 0);
        if (rc < 0) {
            return rc;
        }
    }
    rc = sp__core_update_status(w, d->id, &d->u, &d->applied, &d->team);
    if (rc == SP_ENOTFOUND) {
        d->applied = -1;
        return 0;
    }
    if (rc == 0 && d->u.provider_id != NULL) {
        /* Feedback (provider events) finds the message by this id. */
        size_t pl = strlen(d->u.provider_id);
        if (pl > 0 && pl <= SP_PROVIDER_ID_MAX) {
            uint8_t v[8];
            sp__be64_put(v, d->id);
            rc = sp__wtxn_put(w, SP_DB_PROVIDER_IDS, d->u.provider_id, pl, v, 8);
        }
    }
    return rc;
}

static void done_delivery(void *arg, int status)
{
    delivery_t *d = arg;
    sp_sched_t *s = d->s;
    sp_core_t *core = s->core;
    if (status < 0) {
        /* The attempt's outcome could not be recorded; the queue key is
         * still there, so the message is tried again later. */
        SP_LOGE("recording delivery of %s failed: %s", d->ids, sp__strerror(status));
    } else if (d->u.status >= 0) {
        sp_event_t ev = {.size = sizeof(ev), .msg_id = d->ids, .status = (sp_status_t)d->u.status,
                         .status_name = sp__status_name((sp_status_t)d->u.status),
                         .time_ms = d->u.when,
                         .data = d->u.data != NULL ? d->u.data : "{}", .team = d->team};
        core->stats.events++;
        sp__pipeline_emit(core->pipeline, &ev);
    }
    set_del(s, d->id);
    s->inflight--;
    if (status < 0) {
        arm(s, core->clock_ms() + (int64_t)core->cfg->retry_base_ms);
    } else if (d->requeue) {
        arm(s, (int64_t)d->new_due);
    }
    delivery_free(d);
    pump(s);
}

/* The event data of a delivery outcome: which plugin decided, its reply
 * (code and text: the provider id on success, the remote answer or error on
 * failure) and the attempt number. NULL on out of memory (the event then
 * carries "{}"). */
static char *outcome_json(const sp_run_result_t *res, const char *key, const char *text,
                          int64_t attempts)
{
    size_t tl = strlen(text), pl = res->plugin != NULL ? strlen(res->plugin) : 0;
    size_t cap = 6 * (tl + pl) + 128;
    char *out = malloc(cap), *q;
    if (out == NULL) {
        return NULL;
    }
    q = out;
    q += snprintf(q, cap, "{\"%s\":\"", key);
    q += sp__json_escape(q, cap - (size_t)(q - out), text, tl);
    q += snprintf(q, cap - (size_t)(q - out), "\"");
    if (res->plugin != NULL) {
        q += snprintf(q, cap - (size_t)(q - out), ",\"plugin\":\"");
        q += sp__json_escape(q, cap - (size_t)(q - out), res->plugin, pl);
        q += snprintf(q, cap - (size_t)(q - out), "\"");
    }
    if (res->code > 0) {
        q += snprintf(q, cap - (size_t)(q - out), ",\"code\":%d", res->code);
    }
    snprintf(q, cap - (size_t)(q - out), ",\"attempt\":%lld}", (long long)attempts);
    return out;
}

static void run_done(sp_txn_t *txn, const sp_run_result_t *res, void *arg)
{
    delivery_t *d = arg;
    sp_sched_t *s = d->s;
    sp_core_t *core = s->core;
    sp_config_t *cfg = core->cfg;
    sp_msg_t *m = sp__txn_msg(txn);
    int64_t now = core->clock_ms();
    int64_t attempts = 0, created = now;
    const char *pid;
    int rc;

    (void)sp__msg_get_int(m, SP_F_ATTEMPTS, &attempts);
    (void)sp__msg_get_int(m, SP_F_CREATED_AT, &created);
    attempts++;
    d->u = (sp_status_update_t){.status = -1, .attempts = (int)attempts, .when = now};
    switch (res->verdict) {
    case SP_CONTINUE:
    case SP_ACCEPT:
        d->u.status = SP_ST_SENT;
        pid = sp__msg_get(m, SP_F_PROVIDER_ID, NULL);
        if (pid != NULL) {
            d->provider_id = strdup(pid);
            d->u.provider_id = d->provider_id;
        }
        d->data = outcome_json(res, "providerId", pid != NULL ? pid : "", attempts);
        d->u.data = d->data;
        core->stats.delivered++;
        break;
    case SP_DEFER: {
        uint64_t delay = res->retry_in_ms > 0
                             ? res->retry_in_ms
                             : sp__sched_backoff(cfg->retry_base_ms, cfg->retry_max_ms,
                                                 (unsigned)attempts, next_rnd(s));
        d->last_error = strdup(res->text);
        d->u.last_error = d->last_error;
        if (now + (int64_t)delay - created > (int64_t)cfg->max_age_ms) {
            d->u.status = SP_ST_FAILED;
            d->data = outcome_json(res, "error", res->text, attempts);
            d->u.data = d->data;
            core->stats.failed++;
            SP_LOGW("message %s failed after %lld attempts: %s", d->ids, (long long)attempts,
                    res->text);
        } else {
            d->requeue = true;
            d->new_due = (uint64_t)(now + (int64_t)delay);
            core->stats.retried++;
            SP_LOGI("message %s deferred (attempt %lld, retry in %llu ms): %s", d->ids,
                    (long long)attempts, (unsigned long long)delay, res->text);
        }
        break;
    }
    default: /* REJECT, DROP */
        d->u.final = true;
        d->u.status = res->status >= 0 ? res->status
                                       : (res->verdict == SP_DROP ? SP_ST_CANCELLED
                                                                  : SP_ST_FAILED);
        d->last_error = strdup(res->text);
        d->u.last_error = d->last_error;
        d->data = outcome_json(res, "error", res->text, attempts);
        d->u.data = d->data;
        core->stats.failed++;
        break;
    }
    rc = sp__store_write(core->store, apply_delivery, done_delivery, d);
    if (rc < 0) {
        /* Shutting down: the queue key stays, the next start retries. */
        set_del(s, d->id);
        s->inflight--;
        delivery_free(d);
    }
}

/* ---- picking due messages --------------------------------------------- */

typedef struct pick {
    uint64_t id, due;
} pick_t;

typedef struct scan_ctx {
    sp_sched_t *s;
    int64_t now;
    size_t slots, n;
    pick_t *picks;
    int64_t next_due; /* first entry in the future, -1 if none seen */
} scan_ctx_t;

static int scan_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    scan_ctx_t *c = arg;
    uint64_t due, id;
    if (kl != 16) {
        return 0;
    }
    due = sp__be64_get(k);
    id = sp__be64_get((const uint8_t *)k + 8);
    if ((int64_t)due > c->now) {
        c->next_due = (int64_t)due;
        return 1;
    }
    if (set_has(c->s, id)) {
        return 0;
    }
    c->picks[c->n].id = id;
    c->picks[c->n].due = due;
    c->n++;
    return c->n == c->slots ? 1 : 0;
}

static void start_delivery(sp_sched_t *s, sp_rtxn_t *r, const pick_t *pk)
{
    sp_core_t *core = s->core;
    uint8_t key[8];
    const void *v;
    size_t vl;
    sp_msg_t *m = NULL;
    delivery_t *d;
    int rc;

    sp__be64_put(key, pk->id);
    rc = sp__rtxn_get(r, SP_DB_MESSAGES, key, 8, &v, &vl);
    if (rc == 0) {
        rc = sp__msg_decode(v, vl, &m);
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        sp__msg_free(m);
        return;
    }
    d->s = s;
    d->id = pk->id;
    d->due = pk->due;
    sp__id_str(pk->id, d->ids);
    set_add(s, pk->id);
    s->inflight++;
    if (rc < 0) {
        /* A queue key without a readable record: drop the key, record the
         * failure if the record exists but is corrupt. */
        SP_LOGE("queued message %s unreadable: %s", d->ids, sp__strerror(rc));
        d->u = (sp_status_update_t){.status = rc == SP_ENOTFOUND ? -1 : SP_ST_FAILED,
                                    .attempts = -1, .when = core->clock_ms(),
                                    .last_error = "record unreadable"};
        if (sp__store_write(core->store, apply_delivery, done_delivery, d) < 0) {
            set_del(s, d->id);
            s->inflight--;
            delivery_free(d);
        }
        return;
    }
    d->txn = sp__txn_new(core->pipeline, m);
    if (d->txn == NULL) {
        sp__msg_free(m);
        set_del(s, d->id);
        s->inflight--;
        delivery_free(d);
        return;
    }
    if (sp__pipeline_run(core->pipeline, d->txn, SP_STAGE_RENDER, SP_STAGE_EGRESS, run_done, d) <
        0) {
        set_del(s, d->id);
        s->inflight--;
        delivery_free(d);
    }
}

static void pump(sp_sched_t *s)
{
    sp_core_t *core = s->core;
    size_t cap = core->cfg->concurrency;
    if (s->pumping) {
        s->pump_again = true;
        return;
    }
    s->pumping = true;
    do {
        scan_ctx_t c = {.s = s, .now = core->clock_ms(), .next_due = -1};
        sp_rtxn_t *r;
        s->pump_again = false;
        if (s->stopping || s->inflight >= cap) {
            break;
        }
        c.slots = cap - s->inflight;
        if (c.slots > 256) {
            c.slots = 256; /* bounded work per loop iteration */
        }
        c.picks = malloc(c.slots * sizeof(*c.picks));
        if (c.picks == NULL || sp__store_read_begin(core->store, &r) < 0) {
            free(c.picks);
            arm(s, c.now + 1000);
            break;
        }
        (void)sp__rtxn_scan(r, SP_DB_QUEUE, NULL, 0, NULL, 0, scan_each, &c);
        for (size_t i = 0; i < c.n; i++) {
            start_delivery(s, r, &c.picks[i]);
        }
        sp__store_read_end(r);
        free(c.picks);
        if (c.next_due >= 0) {
            arm(s, c.next_due);
        }
        if (c.n == c.slots && s->inflight < cap) {
            s->pump_again = true; /* more may be due */
        }
    } while (s->pump_again);
    s->pumping = false;
}

/* ---- lifecycle -------------------------------------------------------- */

int sp__sched_new(sp_sched_t **out, sp_core_t *core)
{
    sp_sched_t *s = calloc(1, sizeof(*s));
    size_t cap = 16;
    if (s == NULL) {
        return SP_ENOMEM;
    }
    while (cap < (size_t)core->cfg->concurrency * 2) {
        cap *= 2;
    }
    s->set = calloc(cap, sizeof(*s->set));
    if (s->set == NULL) {
        free(s);
        return SP_ENOMEM;
    }
    s->set_cap = cap;
    s->core = core;
    s->rnd = (uint64_t)core->clock_ms() | 1;
    uv_timer_init(core->loop, &s->timer);
    s->timer.data = s;
    *out = s;
    return 0;
}

void sp__sched_start(sp_sched_t *s)
{
    arm(s, s->core->clock_ms());
}

void sp__sched_stop(sp_sched_t *s)
{
    s->stopping = true;
    s->armed = false;
    uv_timer_stop(&s->timer);
}

int sp__sched_hold(sp_sched_t *s, uint64_t id)
{
    if (set_has(s, id)) {
        return SP_ESTATE;
    }
    /* A held id sits in the same set, so picks skip it, but it is not
     * counted as a delivery in flight. The set has room for twice the
     * concurrency; holds beyond that wait (busy). */
    if (s->inflight + s->held + 1 >= s->set_cap) {
        return SP_EBUSY;
    }
    set_add(s, id);
    s->held++;
    return 0;
}

void sp__sched_release(sp_sched_t *s, uint64_t id)
{
    set_del(s, id);
    s->held--;
}

size_t sp__sched_inflight(const sp_sched_t *s)
{
    return s->inflight;
}

static void sched_closed(uv_handle_t *h)
{
    sp_sched_t *s = h->data;
    free(s->set);
    free(s);
}

void sp__sched_free(sp_sched_t *s)
{
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sched_closed);
}
