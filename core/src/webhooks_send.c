/* SPDX-License-Identifier: Apache-2.0 */
/* Outgoing webhooks, the dispatcher (loop thread). Each pass reads the head
 * of every webhook's queue (SP_DB_WEBHOOK_QUEUE is ordered by webhook, then
 * call id), and sends the heads that are due through the core's outbound
 * HTTP: at most one call in flight per webhook, so a webhook receives its
 * calls strictly in the order they were queued, and a failing head holds the
 * later ones back until it is delivered or finally FAILED. Every attempt's
 * outcome is one store write; the next call of that webhook starts only
 * after it committed. A pass runs shortly after a kick (a committed status
 * change), when a retry is due, and at least every second (calls queued by
 * the CLI). Finished calls older than webhooks.retention are pruned. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sp_core/alerts.h"
#include "sp_core/core.h"
#include "sp_core/fetch.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "webhooks_int.h"

#define MAX_FLIGHT 64      /* webhooks with a call in flight */
#define POLL_MS 1000       /* fallback pass interval */
#define KICK_MS 5          /* a kick's pass runs this soon (coalesces bursts) */
#define PRUNE_EVERY_MS 600000
#define PRUNE_BATCH 2000

typedef struct flight {
    uint64_t wh, call;
    int64_t team;
    uint32_t attempt; /* this attempt, 1-based */
    uint64_t handle;
    bool fetching;    /* waiting for the answer (else for the result write) */
} flight_t;

typedef struct result {
    uint64_t wh, call;
    int64_t team;
    uint32_t attempt;
    bool ok;
    long http_status;
    uint64_t elapsed_ms;
    char *text;       /* first SP_WH_RESPONSE_MAX bytes, sanitised */
    char *error;      /* NULL when ok */
    int64_t now;
    int64_t next_at;  /* when a retry is allowed */
    bool disabled;    /* out: this result disabled the webhook */
} result_t;

static struct {
    sp_core_t *core;
    bool running;
    uv_timer_t timer;
    uint64_t due;     /* loop time the timer fires at, 0 = not armed */
    flight_t flights[MAX_FLIGHT];
    size_t nflight;
    int64_t last_prune;
    bool pruning;
    uint64_t rng;
} g;

static void pass(void);

static uint32_t rnd32(void)
{
    /* xorshift64*: jitter only */
    g.rng ^= g.rng >> 12;
    g.rng ^= g.rng << 25;
    g.rng ^= g.rng >> 27;
    return (uint32_t)((g.rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    g.due = 0;
    pass();
}

static void arm(uint64_t ms)
{
    uint64_t at = uv_now(g.core->loop) + ms;

    if (!g.running || (g.due != 0 && g.due <= at)) {
        return;
    }
    g.due = at;
    uv_timer_start(&g.timer, on_timer, ms, 0);
}

void sp__webhooks_kick(void)
{
    if (g.running) {
        arm(KICK_MS);
    }
}

static flight_t *flight_of(uint64_t wh)
{
    for (size_t i = 0; i < g.nflight; i++) {
        if (g.flights[i].wh == wh) {
            return &g.flights[i];
        }
    }
    return NULL;
}

static void flight_drop(uint64_t wh)
{
    flight_t *f = flight_of(wh);

    if (f) {
        *f = g.flights[--g.nflight];
    }
}

/* ---- recording an attempt ---------------------------------------------- */

static int apply_result(sp_wtxn_t *w, void *arg)
{
    result_t *r = arg;
    const sp_config_t *cfg = sp__core ? sp__core->cfg : NULL;
    uint32_t max = cfg && cfg->wh_attempts ? cfg->wh_attempts : 6;
    uint32_t off = cfg && cfg->wh_disable_after ? cfg->wh_disable_after : 30;
    uint8_t k[WH_KEY_LEN];
    const void *v;
    size_t vl;
    sp_msg_t *c = NULL, *wh = NULL;
    bool final;
    int rc;

    wh_key(k, r->wh, r->call);
    if (sp__wtxn_get(w, SP_DB_WEBHOOK_CALLS, k, sizeof(k), &v, &vl) != 0 ||
        sp__msg_decode(v, vl, &c) != 0) {
        return 0; /* deleted meanwhile */
    }
    final = r->ok || r->attempt >= max;
    rc = sp__msg_set_int(c, "attempt", r->attempt);
    rc = rc ? rc : sp__msg_set_int(c, "status", r->ok ? SP_WHC_DELIVERED
                                                 : final ? SP_WHC_FAILED : SP_WHC_PENDING);
    rc = rc ? rc : sp__msg_set_int(c, "response_status", r->http_status);
    rc = rc ? rc : sp__msg_set_int(c, "response_time_ms", (int64_t)r->elapsed_ms);
    rc = rc ? rc : sp__msg_set(c, "response_text", r->text ? r->text : "",
                               r->text ? strlen(r->text) : 0);
    rc = rc ? rc : sp__msg_set(c, "last_error", r->error ? r->error : "",
                               r->error ? strlen(r->error) : 0);
    rc = rc ? rc : sp__msg_set_int(c, "next_attempt_at", final ? 0 : r->next_at);
    rc = rc ? rc : sp__msg_set_int(c, "updated_at", r->now);
    if (rc == 0) {
        void *buf;
        size_t len;
        if ((rc = sp__msg_encode(c, &buf, &len)) == 0) {
            rc = sp__wtxn_put(w, SP_DB_WEBHOOK_CALLS, k, sizeof(k), buf, len);
            free(buf);
        }
    }
    if (rc == 0 && final) {
        (void)sp__wtxn_del(w, SP_DB_WEBHOOK_QUEUE, k, sizeof(k));
    }
    sp__msg_free(c);
    if (rc != 0 || !final || wh_get_txn(w, r->team, r->wh, &wh) != 0) {
        return rc;
    }
    if (r->ok) {
        rc = sp__msg_set_int(wh, "consecutive_failures", 0);
        rc = rc ? rc : sp__msg_set_int(wh, "last_success_at", r->now);
    } else {
        int64_t n = wh_int(wh, "consecutive_failures") + 1;
        rc = sp__msg_set_int(wh, "consecutive_failures", n);
        rc = rc ? rc : sp__msg_set_int(wh, "last_failure_at", r->now);
        if (rc == 0 && n >= (int64_t)off && wh_int(wh, "status") == SP_WH_ACTIVE) {
            rc = sp__msg_set_int(wh, "status", SP_WH_AUTO_DISABLED);
            rc = rc ? rc : sp__msg_set_int(wh, "updated_at", r->now);
            r->disabled = rc == 0;
        }
    }
    rc = rc ? rc : wh_put_txn(w, wh);
    sp__msg_free(wh);
    return rc;
}

static void result_free(result_t *r)
{
    free(r->text);
    free(r->error);
    free(r);
}

static void done_result(void *arg, int status)
{
    result_t *r = arg;

    if (g.running) {
        flight_drop(r->wh);
        if (status != 0) {
            SP_LOGW("webhook %llu: recording call %llu failed: %s", (unsigned long long)r->wh,
                    (unsigned long long)r->call, sp__strerror(status));
            arm(POLL_MS);
        } else {
            arm(0);
        }
        if (status == 0 && r->disabled) {
            uint32_t n = g.core->cfg->wh_disable_after ? g.core->cfg->wh_disable_after : 30;
            SP_LOGW("webhook %llu of team %lld auto-disabled after %u failed calls",
                    (unsigned long long)r->wh, (long long)r->team, n);
            sp__alert("webhook_disabled",
                      "webhook %llu of team %lld was disabled after %u consecutive failed calls",
                      (unsigned long long)r->wh, (long long)r->team, n);
        }
    }
    result_free(r);
}

/* The response kept in the log: at most SP_WH_RESPONSE_MAX bytes, control
 * characters as spaces, and only ASCII when the cut is not UTF-8. */
static char *keep_text(const char *body, size_t len)
{
    size_t n = len < SP_WH_RESPONSE_MAX ? len : SP_WH_RESPONSE_MAX;
    char *t = malloc(n + 1);
    json_t *j;

    if (!t) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)body[i];
        t[i] = (char)(c < 0x20 && c != '\n' && c != '\t' ? ' ' : c);
    }
    t[n] = '\0';
    if (!(j = json_stringn(t, n))) {
        for (size_t i = 0; i < n; i++) {
            t[i] = (unsigned char)t[i] >= 0x80 ? '?' : t[i];
        }
    }
    json_decref(j);
    return t;
}

static void on_fetch(void *arg, const sp_fetch_res_t *res)
{
    flight_t *f = flight_of((uint64_t)(uintptr_t)arg);
    const sp_config_t *cfg = g.core->cfg;
    result_t *r;
    char err[160];

    if (!f) {
        return;
    }
    f->fetching = false;
    if (!(r = calloc(1, sizeof(*r)))) {
        flight_drop(f->wh);
        arm(POLL_MS);
        return;
    }
    r->wh = f->wh;
    r->call = f->call;
    r->team = f->team;
    r->attempt = f->attempt;
    r->now = g.core->clock_ms();
    r->http_status = res->status == 0 ? res->http_status : 0;
    r->elapsed_ms = res->elapsed_ms;
    r->ok = res->status == 0 && res->http_status >= 200 && res->http_status < 300;
    if (res->status == 0) {
        r->text = keep_text(res->body ? res->body : "", res->body ? res->body_len : 0);
        snprintf(err, sizeof(err), "HTTP %ld", res->http_status);
    } else {
        snprintf(err, sizeof(err), "%s", res->error && *res->error ? res->error
                                                                   : sp__strerror(res->status));
    }
    if (!r->ok) {
        r->error = strdup(err);
        r->next_at = r->now + (int64_t)sp__wh_backoff(cfg->wh_retry_base_ms ? cfg->wh_retry_base_ms
                                                                             : 10000,
                                                      cfg->wh_retry_max_ms ? cfg->wh_retry_max_ms
                                                                           : 600000,
                                                      r->attempt, rnd32());
        SP_LOGD("webhook %llu call %llu attempt %u: %s", (unsigned long long)r->wh,
                (unsigned long long)r->call, r->attempt, err);
    }
    if (sp__store_write(g.core->store, apply_result, done_result, r) != 0) {
        flight_drop(r->wh);
        result_free(r);
    }
}

/* ---- a pass ------------------------------------------------------------ */

/* Non-ACTIVE webhook: its queued calls become DISCARDED. */
static int apply_discard(sp_wtxn_t *w, void *arg)
{
    uint64_t wh = *(uint64_t *)arg;
    uint8_t p[8];
    wh_first_t h;
    int rc;

    sp__be64_put(p, wh);
    for (;;) {
        const void *v;
        size_t vl;
        sp_msg_t *c;
        h.found = false;
        rc = sp__wtxn_scan(w, SP_DB_WEBHOOK_QUEUE, p, 8, p, 8, wh_first_each, &h);
        if (rc < 0 || !h.found) {
            return rc < 0 ? rc : 0;
        }
        if ((rc = sp__wtxn_del(w, SP_DB_WEBHOOK_QUEUE, h.key, sizeof(h.key))) != 0) {
            return rc;
        }
        if (sp__wtxn_get(w, SP_DB_WEBHOOK_CALLS, h.key, sizeof(h.key), &v, &vl) == 0 &&
            sp__msg_decode(v, vl, &c) == 0) {
            void *buf;
            size_t len;
            rc = sp__msg_set_int(c, "status", SP_WHC_DISCARDED);
            rc = rc ? rc : sp__msg_set_int(c, "next_attempt_at", 0);
            rc = rc ? rc : sp__msg_encode(c, &buf, &len);
            if (rc == 0) {
                rc = sp__wtxn_put(w, SP_DB_WEBHOOK_CALLS, h.key, sizeof(h.key), buf, len);
                free(buf);
            }
            sp__msg_free(c);
            if (rc != 0) {
                return rc;
            }
        }
    }
}

static void done_free(void *arg, int status)
{
    (void)status;
    free(arg);
}

static void discard(uint64_t wh)
{
    uint64_t *a = malloc(sizeof(*a));

    if (a) {
        *a = wh;
        if (sp__store_write(g.core->store, apply_discard, done_free, a) != 0) {
            free(a);
        }
    }
}

static int apply_unqueue(sp_wtxn_t *w, void *arg)
{
    int rc = sp__wtxn_del(w, SP_DB_WEBHOOK_QUEUE, arg, WH_KEY_LEN);

    return rc == SP_ENOTFOUND ? 0 : rc;
}

/* Drop a queue entry whose call record is missing or unreadable. */
static void unqueue(const uint8_t *key)
{
    uint8_t *k = malloc(WH_KEY_LEN);

    if (k) {
        memcpy(k, key, WH_KEY_LEN);
        if (sp__store_write(g.core->store, apply_unqueue, done_free, k) != 0) {
            free(k);
        }
    }
}

/* Start attempt `c` of webhook record `rec`. */
static int start(const sp_msg_t *rec, const sp_msg_t *c, uint64_t wh, uint64_t call)
{
    const sp_config_t *cfg = g.core->cfg;
    flight_t *f = &g.flights[g.nflight];
    uint32_t attempt = (uint32_t)wh_int(c, "attempt") + 1;
    int64_t ts = g.core->clock_ms();
    char sig[SP_WH_SIG_LEN + 1], h_ev[96], h_call[48], h_ts[48], h_sig[96], h_retry[32];
    const char *type = wh_str(c, "type");
    char *body = sp__wh_body(call, type, wh_str(rec, "api_version"), wh_int(c, "created_at"),
                             wh_int(c, "team"), wh_str(c, "data"), attempt);
    const char *headers[] = {"Content-Type: application/json",
                             "User-Agent: UseSend-Webhook/1.0",
                             h_ev,
                             h_call,
                             h_ts,
                             h_sig,
                             h_retry,
                             NULL};
    sp_fetch_req_t req = {.size = sizeof(req),
                          .method = "POST",
                          .url = wh_str(rec, "url"),
                          .headers = headers,
                          .timeout_ms = (uint32_t)(cfg->wh_timeout_ms ? cfg->wh_timeout_ms
                                                                      : 10000)};
    int rc;

    if (!body) {
        return SP_ENOMEM;
    }
    if ((rc = sp__wh_sign(wh_str(rec, "secret"), ts, body, strlen(body), sig)) != 0) {
        free(body);
        return rc;
    }
    snprintf(h_ev, sizeof(h_ev), "X-UseSend-Event: %s", type);
    snprintf(h_call, sizeof(h_call), "X-UseSend-Call: %llu", (unsigned long long)call);
    snprintf(h_ts, sizeof(h_ts), "X-UseSend-Timestamp: %lld", (long long)ts);
    snprintf(h_sig, sizeof(h_sig), "X-UseSend-Signature: %s", sig);
    snprintf(h_retry, sizeof(h_retry), "X-UseSend-Retry: %s", attempt > 1 ? "true" : "false");
    req.body = body;
    req.body_len = strlen(body);
    *f = (flight_t){.wh = wh, .call = call, .team = wh_int(c, "team"), .attempt = attempt,
                    .fetching = true};
    g.nflight++;
    rc = sp__fetch_start(NULL, &req, on_fetch, (void *)(uintptr_t)wh, &f->handle);
    free(body);
    if (rc != 0) {
        g.nflight--;
    }
    return rc;
}

/* One queue head: send it when due and its webhook is ACTIVE (*inactive:
 * it is not, the webhook's calls are to be discarded). Returns the
 * ms until it is due (0: started or nothing to wait for). */
static int64_t head(sp_rtxn_t *r, const uint8_t *key, int64_t now, bool *inactive)
{
    uint64_t wh = sp__be64_get(key), call = sp__be64_get(key + 8);
    uint8_t k[WH_KEY_LEN];
    const void *v;
    size_t vl;
    sp_msg_t *c = NULL, *rec = NULL;
    int64_t wait = 0, at;
    int rc;

    *inactive = false;
    if (sp__rtxn_get(r, SP_DB_WEBHOOK_CALLS, key, WH_KEY_LEN, &v, &vl) != 0 ||
        sp__msg_decode(v, vl, &c) != 0) {
        SP_LOGW("webhook %llu: call %llu is unreadable; dropped from the queue",
                (unsigned long long)wh, (unsigned long long)call);
        unqueue(key);
        return 0;
    }
    at = wh_int(c, "next_attempt_at");
    if (at > now) {
        sp__msg_free(c);
        return at - now;
    }
    wh_key(k, (uint64_t)wh_int(c, "team"), wh);
    if (sp__rtxn_get(r, SP_DB_WEBHOOKS, k, sizeof(k), &v, &vl) != 0 ||
        sp__msg_decode(v, vl, &rec) != 0 || wh_int(rec, "status") != SP_WH_ACTIVE) {
        *inactive = true;
    } else if ((rc = start(rec, c, wh, call)) != 0) {
        SP_LOGW("webhook %llu: call %llu not started: %s", (unsigned long long)wh,
                (unsigned long long)call, sp__strerror(rc));
        wait = POLL_MS;
    }
    sp__msg_free(c);
    sp__msg_free(rec);
    return wait;
}

/* ---- pruning ----------------------------------------------------------- */

typedef struct prune {
    int64_t before;
    size_t n;
    uint8_t (*keys)[WH_KEY_LEN];
    uint64_t skip_wh; /* webhook whose old calls are done */
} prune_t;

static int prune_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    prune_t *p = arg;
    sp_msg_t *c;
    int64_t st, at;

    if (kl != WH_KEY_LEN || sp__be64_get(k) == p->skip_wh) {
        return 0;
    }
    if (sp__msg_decode(v, vl, &c) != 0) {
        return 0;
    }
    st = wh_int(c, "status");
    at = wh_int(c, "updated_at");
    sp__msg_free(c);
    if (st == SP_WHC_PENDING) {
        return 0;
    }
    if (at >= p->before) {
        p->skip_wh = sp__be64_get(k); /* calls after it are younger */
        return 0;
    }
    memcpy(p->keys[p->n++], k, WH_KEY_LEN);
    return p->n == PRUNE_BATCH;
}

static int apply_prune(sp_wtxn_t *w, void *arg)
{
    prune_t *p = arg;
    int rc = sp__wtxn_scan(w, SP_DB_WEBHOOK_CALLS, NULL, 0, NULL, 0, prune_each, p);

    for (size_t i = 0; rc >= 0 && i < p->n; i++) {
        rc = sp__wtxn_del(w, SP_DB_WEBHOOK_CALLS, p->keys[i], WH_KEY_LEN);
        rc = rc == SP_ENOTFOUND ? 0 : rc;
    }
    return rc < 0 ? rc : 0;
}

static void done_prune(void *arg, int status)
{
    prune_t *p = arg;

    if (g.running) {
        g.pruning = false;
        if (status == 0 && p->n == PRUNE_BATCH) {
            g.last_prune = 0; /* more to do: next pass */
        }
        if (status == 0 && p->n > 0) {
            SP_LOGD("webhooks: pruned %zu finished calls", p->n);
        }
    }
    free(p->keys);
    free(p);
}

static void maybe_prune(int64_t now)
{
    prune_t *p;

    if (g.pruning || now - g.last_prune < PRUNE_EVERY_MS) {
        return;
    }
    g.last_prune = now;
    if (!(p = calloc(1, sizeof(*p))) || !(p->keys = calloc(PRUNE_BATCH, WH_KEY_LEN))) {
        free(p);
        return;
    }
    p->before = now - (int64_t)(g.core->cfg->wh_retention_ms ? g.core->cfg->wh_retention_ms
                                                                : 7 * 86400000ULL);
    p->skip_wh = UINT64_MAX;
    g.pruning = true;
    if (sp__store_write(g.core->store, apply_prune, done_prune, p) != 0) {
        g.pruning = false;
        free(p->keys);
        free(p);
    }
}

static void pass(void)
{
    int64_t now, wait = POLL_MS;
    uint8_t from[8] = {0};
    uint64_t next = 0;
    sp_rtxn_t *r;

    if (!g.running || g.core->stopping) {
        return;
    }
    now = g.core->clock_ms();
    if (sp__store_read_begin(g.core->store, &r) != 0) {
        arm(POLL_MS);
        return;
    }
    for (;;) {
        wh_first_t h = {.found = false};
        uint64_t wh;
        bool inactive;
        int64_t w;

        sp__be64_put(from, next);
        if (sp__rtxn_scan(r, SP_DB_WEBHOOK_QUEUE, from, 8, NULL, 0, wh_first_each, &h) < 0 ||
            !h.found) {
            break;
        }
        wh = sp__be64_get(h.key);
        if (!flight_of(wh)) {
            if (g.nflight == MAX_FLIGHT) {
                wait = KICK_MS * 10;
                break;
            }
            w = head(r, h.key, now, &inactive);
            if (inactive) {
                discard(wh);
            } else if (w > 0 && w < wait) {
                wait = w;
            }
        }
        if (wh == UINT64_MAX) {
            break;
        }
        next = wh + 1;
    }
    sp__store_read_end(r);
    maybe_prune(now);
    arm((uint64_t)wait);
}

/* ---- life -------------------------------------------------------------- */

int sp__webhooks_start(struct sp_core *core)
{
    if (g.running) {
        return SP_ESTATE;
    }
    memset(&g, 0, sizeof(g));
    g.core = core;
    if (getrandom(&g.rng, sizeof(g.rng), GRND_NONBLOCK) != (ssize_t)sizeof(g.rng) || !g.rng) {
        g.rng = (uint64_t)core->clock_ms() | 1;
    }
    uv_timer_init(core->loop, &g.timer);
    g.running = true;
    g.last_prune = core->clock_ms() - PRUNE_EVERY_MS + 5000; /* first prune soon */
    arm(0);
    return 0;
}

void sp__webhooks_stop(void)
{
    if (!g.running) {
        return;
    }
    g.running = false;
    for (size_t i = 0; i < g.nflight; i++) {
        if (g.flights[i].fetching) {
            sp__fetch_cancel(g.flights[i].handle);
        }
    }
    g.nflight = 0;
    uv_timer_stop(&g.timer);
    uv_close((uv_handle_t *)&g.timer, NULL);
}
