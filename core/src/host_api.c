/* SPDX-License-Identifier: Apache-2.0 */
/* The host API table handed to plugins at init: every member forwards to a
 * core subsystem, adding the plugin's identity (log tag, KV namespace,
 * counters) and the plumbing plugins must not see (libuv handles, store
 * requests). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/http.h"
#include "sp_core/msg.h"
#include "sp_core/msgops.h"
#include "sp_core/pipeline.h"
#include "sp_core/plugin.h"
#include "sp_core/store.h"
#include "sp_core/tenancy.h"
#include "sp_core/fetch.h"
#include "sp_core/templates.h"
#include "sp_core/analytics.h"
#include "sp_core/suppress.h"
#include "sp_core/webhooks.h"

#define LOG_LINE_MAX (16u * 1024u) /* longer plugin messages are cut */
#define KV_KEY_MAX 511u            /* LMDB's default maximum key size */

static uv_loop_t *core_loop(void)
{
    return sp__core != NULL ? sp__core->loop : NULL;
}

/* ---------------------------------------------------------------------- */
/* Logging */

static void api_log(sp_plugin_t *p, sp_log_level_t lvl, const char *fmt, ...) SP_PRINTF(3, 4);

static void api_log(sp_plugin_t *p, sp_log_level_t lvl, const char *fmt, ...)
{
    char buf[1024];
    char *big = NULL;
    va_list ap;
    int n;

    if (fmt == NULL) {
        return;
    }
    if ((unsigned)lvl > SP_LOG_DEBUG) {
        lvl = SP_LOG_ERROR;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(buf)) {
        size_t len = (size_t)n < LOG_LINE_MAX ? (size_t)n + 1 : LOG_LINE_MAX;
        big = malloc(len);
        if (big != NULL) {
            va_start(ap, fmt);
            vsnprintf(big, len, fmt, ap);
            va_end(ap);
        }
    }
    sp__log_src(lvl, p != NULL ? p->name : NULL, "%s", big != NULL ? big : buf);
    free(big);
}

/* ---------------------------------------------------------------------- */
/* Registration: init only */

static int api_hook(sp_plugin_t *p, sp_stage_t stage, sp_hook_fn fn, int priority)
{
    if (p == NULL || fn == NULL || (unsigned)stage >= SP_STAGE__COUNT) {
        return SP_EINVAL;
    }
    if (!p->in_init || p->core == NULL) {
        return SP_ESTATE;
    }
    return sp__pipeline_add_hook(p->core->pipeline, stage, p, fn, priority);
}

static int api_on_event(sp_plugin_t *p, sp_event_fn fn)
{
    if (p == NULL || fn == NULL) {
        return SP_EINVAL;
    }
    if (!p->in_init || p->core == NULL) {
        return SP_ESTATE;
    }
    return sp__pipeline_add_event(p->core->pipeline, p, fn);
}

/* ---------------------------------------------------------------------- */
/* Settings */

static const char *api_setting(const char *key)
{
    if (sp__core == NULL || sp__core->cfg == NULL || key == NULL) {
        return NULL;
    }
    return sp__config_setting(sp__core->cfg, key);
}

static const char *api_data_dir(void)
{
    if (sp__core == NULL || sp__core->cfg == NULL) {
        return NULL;
    }
    return sp__core->cfg->data_dir;
}

/* ---------------------------------------------------------------------- */
/* Ingress and status feedback */

static int api_submit(sp_plugin_t *p, sp_msg_t **msgs, size_t n, bool all_or_nothing,
                      sp_submit_cb cb, void *arg)
{
    if (sp__core == NULL) {
        return SP_ESTATE;
    }
    return sp__core_submit(sp__core, p, msgs, n, all_or_nothing, cb, arg);
}

static int api_emit_status(sp_plugin_t *p, const char *msg_id, sp_status_t st,
                           const char *data_json, sp_done_fn done, void *arg)
{
    if (sp__core == NULL) {
        return SP_ESTATE;
    }
    return sp__core_emit_status(sp__core, msg_id, st, data_json, done, arg);
}

/* ---------------------------------------------------------------------- */
/* HTTP routes (ABI 1.1) */

/* The registry takes NULL as "a core route"; a plugin must name itself. */
static int api_http_route(sp_plugin_t *p, const char *method, const char *pattern,
                          sp_http_handler_fn fn, uint32_t flags)
{
    if (p == NULL) {
        return SP_EINVAL;
    }
    return sp__http_route(p, method, pattern, fn, flags);
}

/* ---------------------------------------------------------------------- */
/* Stored messages (ABI 1.1) */

static int api_msg_load(const char *id, sp_msg_t **out)
{
    return sp__core == NULL ? SP_ESTATE : sp__msgops_load(sp__core, id, out);
}

static int api_msg_events(const char *id,
                          int (*each)(void *arg, sp_status_t st, int64_t time_ms,
                                      const char *data),
                          void *arg)
{
    return sp__core == NULL ? SP_ESTATE : sp__msgops_events(sp__core, id, each, arg);
}

static int api_msg_list(int64_t team, int64_t from_ms, int64_t to_ms, uint64_t skip,
                        int (*each)(void *arg, const sp_msg_t *m), void *arg)
{
    return sp__core == NULL ? SP_ESTATE
                            : sp__msgops_list(sp__core, team, from_ms, to_ms, skip, each, arg);
}

static int api_msg_reschedule(const char *id, int64_t team, int64_t due_ms, sp_done_fn done,
                              void *arg)
{
    return sp__core == NULL ? SP_ESTATE
                            : sp__msgops_reschedule(sp__core, id, team, due_ms, done, arg);
}

static int api_msg_cancel(const char *id, int64_t team, sp_done_fn done, void *arg)
{
    return sp__core == NULL ? SP_ESTATE : sp__msgops_cancel(sp__core, id, team, done, arg);
}

/* ---------------------------------------------------------------------- */
/* Work queue */

struct sp_work {
    uv_work_t req;
    sp_plugin_t *p; /* NULL once detached (plugin unloaded) */
    void (*work)(void *arg);
    sp_done_fn done;
    void *arg;
    struct sp_work *prev, *next; /* p->works */
};

static void work_unlink(struct sp_work *w)
{
    if (w->p == NULL) {
        return;
    }
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        w->p->works = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    w->p->nwork--;
    w->p = NULL;
    w->prev = w->next = NULL;
}

static void work_run(uv_work_t *r)
{
    struct sp_work *w = r->data;
    w->work(w->arg);
}

static void work_after(uv_work_t *r, int status)
{
    struct sp_work *w = r->data;
    bool attached = w->p != NULL;
    work_unlink(w);
    if (attached && w->done != NULL) {
        w->done(w->arg, status == UV_ECANCELED ? SP_ECANCELED : status < 0 ? status : 0);
    }
    free(w);
}

static int api_queue_work(sp_plugin_t *p, void (*work)(void *arg), sp_done_fn done, void *arg)
{
    struct sp_work *w;
    int rc;
    if (p == NULL || work == NULL) {
        return SP_EINVAL;
    }
    if (core_loop() == NULL) {
        return SP_ESTATE;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return SP_ENOMEM;
    }
    w->req.data = w;
    w->work = work;
    w->done = done;
    w->arg = arg;
    rc = uv_queue_work(core_loop(), &w->req, work_run, work_after);
    if (rc < 0) {
        free(w);
        return rc;
    }
    w->p = p;
    w->next = p->works;
    if (p->works != NULL) {
        p->works->prev = w;
    }
    p->works = w;
    p->nwork++;
    return 0;
}

size_t sp__host_work_detach(sp_plugin_t *p)
{
    size_t running = 0;
    while (p != NULL && p->works != NULL) {
        struct sp_work *w = p->works;
        /* A request not started yet is cancelled: its work never runs.
         * work_after still comes, detached, and only frees. */
        if (uv_cancel((uv_req_t *)&w->req) != 0) {
            running++;
        }
        work_unlink(w);
    }
    return running;
}

/* ---------------------------------------------------------------------- */
/* Timers */

struct sp_timer {
    uv_timer_t h;
    sp_plugin_t *p;
    void (*cb)(void *arg);
    void *arg;
    struct sp_timer *prev, *next; /* p->timers */
};

static void timer_fire(uv_timer_t *h)
{
    sp_timer_t *t = h->data;
    /* t stays allocated even if cb stops it: the free waits for the close
     * callback, which runs on a later loop iteration. */
    t->cb(t->arg);
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static sp_timer_t *api_timer_start(sp_plugin_t *p, uint64_t timeout_ms, uint64_t repeat_ms,
                                   void (*cb)(void *arg), void *arg)
{
    sp_timer_t *t;
    if (cb == NULL || core_loop() == NULL) {
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    uv_timer_init(core_loop(), &t->h);
    t->h.data = t;
    t->p = p;
    t->cb = cb;
    t->arg = arg;
    if (p != NULL) {
        t->next = p->timers;
        if (p->timers != NULL) {
            p->timers->prev = t;
        }
        p->timers = t;
    }
    uv_timer_start(&t->h, timer_fire, timeout_ms, repeat_ms);
    return t;
}

static void api_timer_stop(sp_timer_t *t)
{
    if (t == NULL) {
        return;
    }
    if (t->p != NULL) {
        if (t->prev != NULL) {
            t->prev->next = t->next;
        } else {
            t->p->timers = t->next;
        }
        if (t->next != NULL) {
            t->next->prev = t->prev;
        }
    }
    uv_timer_stop(&t->h);
    uv_close((uv_handle_t *)&t->h, timer_closed);
}

size_t sp__host_timers_close(sp_plugin_t *p)
{
    size_t n = 0;
    while (p != NULL && p->timers != NULL) {
        api_timer_stop(p->timers);
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------------- */
/* Plugin key/value store: SP_DB_KV, key = plugin name || 0x00 || key */

static int kv_key(const sp_plugin_t *p, const void *key, size_t klen, uint8_t *out,
                  size_t *outlen)
{
    size_t nl = strlen(p->name);
    if (klen > KV_KEY_MAX || nl + 1 + klen > KV_KEY_MAX) {
        return SP_ETOOBIG;
    }
    memcpy(out, p->name, nl);
    out[nl] = 0;
    if (klen > 0) {
        memcpy(out + nl + 1, key, klen);
    }
    *outlen = nl + 1 + klen;
    return 0;
}

static sp_store_t *kv_store(const sp_plugin_t *p)
{
    if (p == NULL || p->name == NULL || sp__core == NULL) {
        return NULL;
    }
    return sp__core->store;
}

static int api_kv_get(sp_plugin_t *p, const void *key, size_t klen, void **val, size_t *vlen)
{
    uint8_t k[KV_KEY_MAX];
    size_t kl;
    sp_rtxn_t *r;
    const void *v;
    size_t vl;
    sp_store_t *st = kv_store(p);
    int rc;

    if (p == NULL || (key == NULL && klen > 0) || val == NULL || vlen == NULL) {
        return SP_EINVAL;
    }
    if (st == NULL) {
        return SP_ESTATE;
    }
    rc = kv_key(p, key, klen, k, &kl);
    if (rc < 0) {
        return rc;
    }
    rc = sp__store_read_begin(st, &r);
    if (rc < 0) {
        return rc;
    }
    rc = sp__rtxn_get(r, SP_DB_KV, k, kl, &v, &vl);
    if (rc == 0) {
        void *copy = malloc(vl > 0 ? vl : 1);
        if (copy == NULL) {
            rc = SP_ENOMEM;
        } else {
            if (vl > 0) {
                memcpy(copy, v, vl);
            }
            *val = copy;
            *vlen = vl;
        }
    }
    sp__store_read_end(r);
    return rc;
}

typedef struct kv_req {
    sp_done_fn done;
    void *arg;
    size_t kl, vl;
    uint8_t buf[]; /* key, then value */
} kv_req_t;

static int kv_apply_put(sp_wtxn_t *w, void *arg)
{
    kv_req_t *q = arg;
    return sp__wtxn_put(w, SP_DB_KV, q->buf, q->kl, q->buf + q->kl, q->vl);
}

static int kv_apply_del(sp_wtxn_t *w, void *arg)
{
    kv_req_t *q = arg;
    return sp__wtxn_del(w, SP_DB_KV, q->buf, q->kl);
}

static void kv_done(void *arg, int status)
{
    kv_req_t *q = arg;
    if (q->done != NULL) {
        q->done(q->arg, status);
    }
    free(q);
}

static int kv_write(sp_plugin_t *p, const void *key, size_t klen, const void *val, size_t vlen,
                    sp_store_apply_fn apply, sp_done_fn done, void *arg)
{
    uint8_t k[KV_KEY_MAX];
    size_t kl;
    kv_req_t *q;
    sp_store_t *st = kv_store(p);
    int rc;

    if (p == NULL || (key == NULL && klen > 0) || (val == NULL && vlen > 0)) {
        return SP_EINVAL;
    }
    if (st == NULL) {
        return SP_ESTATE;
    }
    rc = kv_key(p, key, klen, k, &kl);
    if (rc < 0) {
        return rc;
    }
    if (vlen > SIZE_MAX - sizeof(*q) - kl) {
        return SP_ETOOBIG;
    }
    q = malloc(sizeof(*q) + kl + vlen);
    if (q == NULL) {
        return SP_ENOMEM;
    }
    q->done = done;
    q->arg = arg;
    q->kl = kl;
    q->vl = vlen;
    memcpy(q->buf, k, kl);
    if (vlen > 0) {
        memcpy(q->buf + kl, val, vlen);
    }
    rc = sp__store_write(st, apply, kv_done, q);
    if (rc < 0) {
        free(q);
    }
    return rc;
}

static int api_kv_put(sp_plugin_t *p, const void *key, size_t klen, const void *val, size_t vlen,
                      sp_done_fn done, void *arg)
{
    return kv_write(p, key, klen, val, vlen, kv_apply_put, done, arg);
}

static int api_kv_del(sp_plugin_t *p, const void *key, size_t klen, sp_done_fn done, void *arg)
{
    return kv_write(p, key, klen, NULL, 0, kv_apply_del, done, arg);
}

typedef struct kv_scan_ctx {
    sp_kv_each_fn each;
    void *arg;
    size_t nsl; /* namespace prefix length, stripped from keys */
    int stop;   /* what the visitor returned when it stopped the scan */
} kv_scan_ctx_t;

static int kv_scan_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    kv_scan_ctx_t *c = arg;
    int rc = c->each(c->arg, (const uint8_t *)k + c->nsl, kl - c->nsl, v, vl);
    if (rc != 0) {
        c->stop = rc;
        return 1;
    }
    return 0;
}

static int api_kv_scan(sp_plugin_t *p, const void *prefix, size_t plen, sp_kv_each_fn each,
                       void *arg)
{
    uint8_t k[KV_KEY_MAX];
    size_t kl;
    sp_rtxn_t *r;
    kv_scan_ctx_t c;
    sp_store_t *st = kv_store(p);
    int rc;

    if (p == NULL || (prefix == NULL && plen > 0) || each == NULL) {
        return SP_EINVAL;
    }
    if (st == NULL) {
        return SP_ESTATE;
    }
    rc = kv_key(p, prefix, plen, k, &kl);
    if (rc < 0) {
        return rc;
    }
    c.each = each;
    c.arg = arg;
    c.nsl = strlen(p->name) + 1;
    c.stop = 0;
    rc = sp__store_read_begin(st, &r);
    if (rc < 0) {
        return rc;
    }
    rc = sp__rtxn_scan(r, SP_DB_KV, k, kl, k, kl, kv_scan_each, &c);
    sp__store_read_end(r);
    if (c.stop != 0) {
        /* A visitor's "stop" is not an error; a negative return is its own. */
        return c.stop < 0 ? c.stop : 0;
    }
    return rc > 0 ? 0 : rc;
}

/* ---------------------------------------------------------------------- */
/* Odds and ends */

static void api_counter_add(sp_plugin_t *p, const char *name, uint64_t delta)
{
    sp__plugin_counter_add(p, name, delta);
}

static void *api_uv_loop(void)
{
    return core_loop();
}

/* ---------------------------------------------------------------------- */
/* Delivery (ABI 1.2) */

static int api_http_fetch(sp_plugin_t *p, const sp_fetch_req_t *req, sp_fetch_cb cb, void *arg,
                          uint64_t *handle)
{
    return sp__core == NULL ? SP_ESTATE : sp__fetch_start(p, req, cb, arg, handle);
}

static int api_msg_find_provider(const char *provider_id, char *id_out, size_t id_len)
{
    return sp__core == NULL ? SP_ESTATE
                            : sp__msgops_find_provider(sp__core, provider_id, id_out, id_len);
}

static const sp_host_api_t host_api = {
    .abi_major = SP_ABI_MAJOR,
    .abi_minor = SP_ABI_MINOR,
    .size = sizeof(sp_host_api_t),

    .alloc = malloc,
    .calloc = calloc,
    .realloc = realloc,
    .free = free,
    .strdup = strdup,

    .log = api_log,
    .strerror = sp__strerror,

    .hook = api_hook,
    .on_event = api_on_event,

    .setting = api_setting,
    .data_dir = api_data_dir,

    .msg_new = sp__msg_new,
    .msg_free = sp__msg_free,
    .msg_set = sp__msg_set,
    .msg_add = sp__msg_add,
    .msg_set_int = sp__msg_set_int,
    .msg_del = sp__msg_del,
    .msg_get = sp__msg_get,
    .msg_count = sp__msg_count,
    .msg_get_at = sp__msg_get_at,
    .msg_get_int = sp__msg_get_int,
    .msg_encode = sp__msg_encode,
    .msg_decode = sp__msg_decode,

    .submit = api_submit,

    .txn_msg = sp__txn_msg,
    .txn_stage = sp__txn_stage,
    .txn_set_reply = sp__txn_set_reply,
    .txn_set_status = sp__txn_set_status,
    .txn_set_retry_in = sp__txn_set_retry_in,
    .txn_set_data = sp__txn_set_data,
    .txn_get_data = sp__txn_get_data,

    .suspend = sp__txn_suspend,
    .resume = sp__pipeline_resume,
    .resume_from_thread = sp__pipeline_resume_from_thread,
    .queue_work = api_queue_work,

    .timer_start = api_timer_start,
    .timer_stop = api_timer_stop,
    .now_ms = sp__now_ms,

    .kv_get = api_kv_get,
    .kv_put = api_kv_put,
    .kv_del = api_kv_del,
    .kv_scan = api_kv_scan,

    .counter_add = api_counter_add,

    .emit_status = api_emit_status,
    .status_name = sp__status_name,

    .uv_loop = api_uv_loop,

    .http_route = api_http_route,
    .http_route_each = sp__http_route_each,
    .http_req_new = sp__http_req_new,
    .http_req_add_header = sp__http_req_add_header,
    .http_req_set_body = sp__http_req_set_body,
    .http_dispatch = sp__http_dispatch,
    .http_req_abort = sp__http_req_abort,
    .http_method = sp__http_method,
    .http_path = sp__http_path,
    .http_param = sp__http_param,
    .http_query = sp__http_query,
    .http_header = sp__http_header,
    .http_body = sp__http_body,
    .http_remote = sp__http_remote,
    .http_route_of = sp__http_route_of,
    .http_set_header = sp__http_set_header,
    .http_respond = sp__http_respond,

    .auth_key = sp__tenancy_auth_key,
    .domain_find = sp__tenancy_domain_find,
    .domain_get = sp__tenancy_domain_get,

    .msg_load = api_msg_load,
    .msg_events = api_msg_events,
    .msg_list = api_msg_list,
    .msg_reschedule = api_msg_reschedule,
    .msg_cancel = api_msg_cancel,

    .template_load = sp__templates_load,
    .domain_dkim = sp__tenancy_domain_dkim,
    .http_fetch = api_http_fetch,
    .http_fetch_cancel = sp__fetch_cancel,
    .msg_find_provider = api_msg_find_provider,

    .suppress_check = sp__suppress_check,
    .suppress_add = sp__suppress_add,
    .suppress_del = sp__suppress_del,
    .suppress_list = sp__suppress_list,
    .webhook_put = sp__webhook_put,
    .webhook_del = sp__webhook_del,
    .webhook_list = sp__webhook_list,
    .webhook_calls = sp__webhook_calls,
    .webhook_test = sp__webhook_test,
    .analytics_daily = sp__analytics_daily,
    .analytics_cumulated = sp__analytics_cumulated,
};

const sp_host_api_t *sp__host_api(void)
{
    return &host_api;
}
