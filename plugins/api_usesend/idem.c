/* SPDX-License-Identifier: Apache-2.0 */
/* Idempotency-Key (§1.4): the answer of a send is kept durably in the
 * plugin's key/value namespace for idempotency_ttl, keyed by team and key,
 * with the payload fingerprint; a key being processed is held in memory so
 * a concurrent retry gets 409 instead of a second send. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

#define IDEM_PREFIX "idem:"
#define SWEEP_FIRST_MS 60000
#define SWEEP_EVERY_MS 3600000

/* A held key ("team:key"). Few are in flight at once: a list suffices. */
struct api_inflight {
    struct api_inflight *next;
    char key[];
};

static bool held(const api_t *a, const char *key)
{
    for (const api_inflight_t *f = a->inflight; f != NULL; f = f->next) {
        if (strcmp(f->key, key) == 0) {
            return true;
        }
    }
    return false;
}

static int hold(api_t *a, const char *key)
{
    size_t n = strlen(key) + 1;
    api_inflight_t *f = malloc(sizeof(*f) + n);
    if (f == NULL) {
        return SP_ENOMEM;
    }
    memcpy(f->key, key, n);
    f->next = a->inflight;
    a->inflight = f;
    return 0;
}

static void unhold(api_t *a, const char *key)
{
    for (api_inflight_t **pp = &a->inflight; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            api_inflight_t *f = *pp;
            *pp = f->next;
            free(f);
            return;
        }
    }
}

/* The kv key of a held key: "idem:" + "team:key". */
static char *kv_key(const char *held_key, size_t *len)
{
    size_t n = strlen(IDEM_PREFIX) + strlen(held_key);
    char *k = malloc(n + 1);
    if (k != NULL) {
        snprintf(k, n + 1, "%s%s", IDEM_PREFIX, held_key);
        *len = n;
    }
    return k;
}

/* A stored record: {"exp": ms, "hash": hex, "ids": [..]}; NULL if unreadable. */
static json_t *record_parse(const void *val, size_t vlen)
{
    json_t *r = json_loadb(val, vlen, 0, NULL);
    if (r != NULL && (!json_is_integer(json_object_get(r, "exp")) ||
                      !json_is_string(json_object_get(r, "hash")) ||
                      !json_is_array(json_object_get(r, "ids")))) {
        json_decref(r);
        r = NULL;
    }
    return r;
}

api_idem_t api_idem_begin(api_call_t *call, const json_t *body, bool batch)
{
    api_ctx_t *c = &call->c;
    api_t *a = c->a;
    const sp_host_api_t *api = a->api;
    const char *hdr = api->http_header(c->req, "Idempotency-Key");
    char *key, *kk;
    size_t klen, kklen, vlen;
    void *val = NULL;
    int rc;

    if (hdr == NULL) {
        return API_IDEM_NEW;
    }
    if (!api_idem_key_ok(hdr)) {
        api_fail(c, 400, "Invalid Idempotency-Key length");
        return API_IDEM_FAILED;
    }
    if (api_fingerprint(body, call->hash) < 0) {
        api_fail(c, 503, "out of memory");
        return API_IDEM_FAILED;
    }
    klen = strlen(hdr) + 24;
    key = malloc(klen);
    if (key == NULL) {
        api_fail(c, 503, "out of memory");
        return API_IDEM_FAILED;
    }
    snprintf(key, klen, "%lld:%s", (long long)c->auth.team, hdr);
    if (held(a, key)) {
        free(key);
        api_fail(c, 409, "Request with same Idempotency-Key is in progress. Retry later.");
        return API_IDEM_FAILED;
    }
    kk = kv_key(key, &kklen);
    if (kk == NULL) {
        free(key);
        api_fail(c, 503, "out of memory");
        return API_IDEM_FAILED;
    }
    rc = api->kv_get(a->p, kk, kklen, &val, &vlen);
    free(kk);
    if (rc == 0) {
        json_t *r = record_parse(val, vlen);
        api->free(val);
        if (r != NULL && json_integer_value(json_object_get(r, "exp")) > api->now_ms()) {
            bool same = strcmp(json_string_value(json_object_get(r, "hash")), call->hash) == 0;
            free(key);
            if (!same) {
                json_decref(r);
                api_fail(c, 409, "Idempotency-Key already used with a different payload");
                return API_IDEM_FAILED;
            }
            api->counter_add(a->p, "idempotent_replays", 1);
            api_reply(c, 200, api_ids_body(json_object_get(r, "ids"), batch));
            json_decref(r);
            return API_IDEM_REPLAYED;
        }
        /* Expired or unreadable: as if never seen (the sweep removes it). */
        json_decref(r);
    } else if (rc != SP_ENOTFOUND) {
        free(key);
        api_fail_rc(c, rc, "Idempotency lookup failed");
        return API_IDEM_FAILED;
    }
    if (hold(a, key) < 0) {
        free(key);
        api_fail(c, 503, "out of memory");
        return API_IDEM_FAILED;
    }
    call->idem = key;
    return API_IDEM_NEW;
}

void api_idem_release(api_call_t *call)
{
    if (call->idem != NULL) {
        unhold(call->c.a, call->idem);
        free(call->idem);
        call->idem = NULL;
    }
}

static void stored(void *arg, int status)
{
    api_call_t *call = arg;
    api_t *a = call->c.a;
    if (status < 0) {
        /* The emails are queued; only the replay record is missing. */
        a->api->log(a->p, SP_LOG_WARN, "idempotency record not stored: %s",
                    a->api->strerror(status));
    }
    api_reply(&call->c, 200, api_ids_body(call->ids, call->batch));
    api_call_free(call);
}

void api_idem_finish(api_call_t *call)
{
    api_t *a = call->c.a;
    const sp_host_api_t *api = a->api;
    json_t *r = json_object();
    char *txt, *kk;
    size_t kklen;
    int rc = SP_ENOMEM;

    json_object_set_new(r, "exp",
                        json_integer(api->now_ms() + (json_int_t)a->conf->idempotency_ttl));
    json_object_set_new(r, "hash", json_string(call->hash));
    json_object_set(r, "ids", call->ids);
    txt = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    kk = kv_key(call->idem, &kklen);
    if (txt != NULL && kk != NULL) {
        rc = api->kv_put(a->p, kk, kklen, txt, strlen(txt), stored, call);
    }
    free(txt);
    free(kk);
    if (rc < 0) {
        stored(call, rc);
    }
}

/* ---- expiry sweep ----------------------------------------------------- */

typedef struct sweep_ctx {
    int64_t now;
    char **keys;
    size_t n, cap;
} sweep_ctx_t;

static int sweep_each(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    sweep_ctx_t *s = arg;
    json_t *r = record_parse(val, vlen);
    bool dead = r == NULL || json_integer_value(json_object_get(r, "exp")) <= s->now;
    json_decref(r);
    if (!dead) {
        return 0;
    }
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        char **nk = realloc(s->keys, ncap * sizeof(*nk));
        if (nk == NULL) {
            return 1;
        }
        s->keys = nk;
        s->cap = ncap;
    }
    s->keys[s->n] = malloc(klen + 1);
    if (s->keys[s->n] == NULL) {
        return 1;
    }
    memcpy(s->keys[s->n], key, klen);
    s->keys[s->n][klen] = '\0';
    s->n++;
    /* Bounded work per sweep; the rest goes next time. */
    return s->n >= 10000;
}

static void deleted(void *arg, int status)
{
    (void)arg;
    (void)status;
}

static void sweep(void *arg)
{
    api_t *a = arg;
    const sp_host_api_t *api = a->api;
    sweep_ctx_t s = {.now = api->now_ms()};

    (void)api->kv_scan(a->p, IDEM_PREFIX, strlen(IDEM_PREFIX), sweep_each, &s);
    for (size_t i = 0; i < s.n; i++) {
        (void)api->kv_del(a->p, s.keys[i], strlen(s.keys[i]), deleted, NULL);
        free(s.keys[i]);
    }
    if (s.n > 0) {
        api->log(a->p, SP_LOG_DEBUG, "removed %zu expired idempotency records", s.n);
    }
    free(s.keys);
}

int api_idem_init(api_t *a)
{
    a->sweep = a->api->timer_start(a->p, SWEEP_FIRST_MS, SWEEP_EVERY_MS, sweep, a);
    return a->sweep != NULL ? 0 : SP_ENOMEM;
}

void api_idem_fini(api_t *a)
{
    if (a->sweep != NULL) {
        a->api->timer_stop(a->sweep);
        a->sweep = NULL;
    }
    while (a->inflight != NULL) {
        api_inflight_t *f = a->inflight;
        a->inflight = f->next;
        free(f);
    }
}
