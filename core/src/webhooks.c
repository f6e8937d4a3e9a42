/* SPDX-License-Identifier: Apache-2.0 */
/* Outgoing webhooks, the store side: webhook and call records, queuing
 * calls inside the write of a status change, and the host API backends.
 * The dispatcher is in webhooks_send.c, the CLI in webhooks_cli.c, the
 * bodies and signature in webhooks_payload.c. Layout in sp_core/webhooks.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/tenancy.h"
#include "webhooks_int.h"


void wh_key(uint8_t k[WH_KEY_LEN], uint64_t a, uint64_t b)
{
    sp__be64_put(k, a);
    sp__be64_put(k + 8, b);
}

int64_t wh_int(const sp_msg_t *m, const char *f)
{
    int64_t v = 0;

    (void)sp__msg_get_int(m, f, &v);
    return v;
}

const char *wh_str(const sp_msg_t *m, const char *f)
{
    const char *v = sp__msg_get(m, f, NULL);

    return v ? v : "";
}

/* Bump the counter `name` in META; *out = the new value. */
static int meta_next(sp_wtxn_t *w, const char *name, uint64_t *out)
{
    const void *v;
    size_t vl;
    uint8_t b[8];
    uint64_t n = 0;

    if (sp__wtxn_get(w, SP_DB_META, name, strlen(name), &v, &vl) == 0 && vl == 8) {
        n = sp__be64_get(v);
    }
    *out = ++n;
    sp__be64_put(b, n);
    return sp__wtxn_put(w, SP_DB_META, name, strlen(name), b, 8);
}

int wh_get_txn(sp_wtxn_t *w, int64_t team, uint64_t id, sp_msg_t **out)
{
    uint8_t k[WH_KEY_LEN];
    const void *v;
    size_t vl;
    int rc;

    wh_key(k, (uint64_t)team, id);
    if ((rc = sp__wtxn_get(w, SP_DB_WEBHOOKS, k, sizeof(k), &v, &vl)) != 0) {
        return rc;
    }
    return sp__msg_decode(v, vl, out);
}

static int put_rec(sp_wtxn_t *w, sp_db_t db, const uint8_t *k, const sp_msg_t *rec)
{
    void *buf;
    size_t len;
    int rc = sp__msg_encode(rec, &buf, &len);

    if (rc == 0) {
        rc = sp__wtxn_put(w, db, k, WH_KEY_LEN, buf, len);
        free(buf);
    }
    return rc;
}

int wh_put_txn(sp_wtxn_t *w, const sp_msg_t *rec)
{
    uint8_t k[WH_KEY_LEN];

    wh_key(k, (uint64_t)wh_int(rec, "team"), (uint64_t)wh_int(rec, "id"));
    return put_rec(w, SP_DB_WEBHOOKS, k, rec);
}

typedef struct find {
    uint64_t id;
    sp_msg_t *rec;
    int rc;
} find_t;

static int find_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    find_t *f = arg;

    if (kl != WH_KEY_LEN || sp__be64_get((const uint8_t *)k + 8) != f->id) {
        return 0;
    }
    f->rc = sp__msg_decode(v, vl, &f->rec);
    return 1;
}

int wh_find(sp_rtxn_t *r, uint64_t id, sp_msg_t **out)
{
    find_t f = {.id = id, .rc = SP_ENOTFOUND};
    int rc = sp__rtxn_scan(r, SP_DB_WEBHOOKS, NULL, 0, NULL, 0, find_each, &f);

    if (rc < 0) {
        return rc;
    }
    *out = f.rec;
    return f.rc;
}

static json_t *time_or_null(int64_t ms)
{
    char iso[32];

    if (ms <= 0) {
        return json_null();
    }
    sp__wh_iso(ms, iso);
    return json_string(iso);
}

static json_t *str_json(const sp_msg_t *m, const char *f)
{
    size_t l = 0;
    const char *v = sp__msg_get(m, f, &l);
    json_t *j = v ? json_stringn(v, l) : NULL;

    return j ? j : json_string("");
}

json_t *wh_json(const sp_msg_t *rec, bool secret)
{
    const char *state = sp__wh_state_name((int)wh_int(rec, "status"));
    json_t *o = json_object(), *ev = json_array(), *dom = json_array();
    size_t n;

    if (!o || !ev || !dom) {
        json_decref(o);
        json_decref(ev);
        json_decref(dom);
        return NULL;
    }
    n = sp__msg_count(rec, "event_types");
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(ev, json_string(sp__msg_get_at(rec, "event_types", i, NULL)));
    }
    n = sp__msg_count(rec, "domain_ids");
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(dom, json_integer(strtoll(sp__msg_get_at(rec, "domain_ids", i,
                                                                       NULL), NULL, 10)));
    }
    json_object_set_new(o, "id", json_integer(wh_int(rec, "id")));
    json_object_set_new(o, "teamId", json_integer(wh_int(rec, "team")));
    json_object_set_new(o, "url", str_json(rec, "url"));
    json_object_set_new(o, "description", str_json(rec, "description"));
    json_object_set_new(o, "status", json_string(state ? state : "ACTIVE"));
    json_object_set_new(o, "eventTypes", ev);
    json_object_set_new(o, "domainIds", dom);
    json_object_set_new(o, "apiVersion", *wh_str(rec, "api_version")
                                             ? str_json(rec, "api_version")
                                             : json_string(SP_WH_VERSION));
    json_object_set_new(o, "consecutiveFailures",
                        json_integer(wh_int(rec, "consecutive_failures")));
    json_object_set_new(o, "lastFailureAt", time_or_null(wh_int(rec, "last_failure_at")));
    json_object_set_new(o, "lastSuccessAt", time_or_null(wh_int(rec, "last_success_at")));
    json_object_set_new(o, "createdAt", time_or_null(wh_int(rec, "created_at")));
    json_object_set_new(o, "updatedAt", time_or_null(wh_int(rec, "updated_at")));
    if (secret) {
        json_object_set_new(o, "secret", str_json(rec, "secret"));
    }
    return o;
}

json_t *wh_call_json(const sp_msg_t *call)
{
    json_t *o = json_object();
    char cid[24];
    int64_t rs = wh_int(call, "response_status");

    if (!o) {
        return NULL;
    }
    snprintf(cid, sizeof(cid), "%lld", (long long)wh_int(call, "id"));
    json_object_set_new(o, "id", json_string(cid));
    json_object_set_new(o, "webhookId", json_integer(wh_int(call, "webhook")));
    json_object_set_new(o, "type", str_json(call, "type"));
    json_object_set_new(o, "status", json_string(sp__whc_state_name((int)wh_int(call, "status"))));
    json_object_set_new(o, "attempt", json_integer(wh_int(call, "attempt")));
    json_object_set_new(o, "responseStatus", rs > 0 ? json_integer(rs) : json_null());
    json_object_set_new(o, "responseTimeMs", wh_int(call, "attempt") > 0
                                                 ? json_integer(wh_int(call, "response_time_ms"))
                                                 : json_null());
    json_object_set_new(o, "responseText", sp__msg_get(call, "response_text", NULL)
                                               ? str_json(call, "response_text")
                                               : json_null());
    json_object_set_new(o, "lastError", *wh_str(call, "last_error") ? str_json(call, "last_error")
                                                                    : json_null());
    json_object_set_new(o, "createdAt", time_or_null(wh_int(call, "created_at")));
    json_object_set_new(o, "nextAttemptAt", wh_int(call, "status") == SP_WHC_PENDING
                                                ? time_or_null(wh_int(call, "next_attempt_at"))
                                                : json_null());
    json_object_set_new(o, "updatedAt", time_or_null(wh_int(call, "updated_at")));
    return o;
}

/* Queue a call of `type` for webhook `wh`; *out (may be NULL) gets it. */
static int call_add_txn(sp_wtxn_t *w, const sp_msg_t *wh, const char *type, const char *data,
                        int64_t now, sp_msg_t **out)
{
    uint8_t k[WH_KEY_LEN];
    uint64_t cid;
    uint64_t whid = (uint64_t)wh_int(wh, "id");
    sp_msg_t *c;
    int rc = meta_next(w, "webhook_call_seq", &cid);

    if (rc != 0) {
        return rc;
    }
    if (!(c = sp__msg_new())) {
        return SP_ENOMEM;
    }
    rc = sp__msg_set_int(c, "id", (int64_t)cid);
    rc = rc ? rc : sp__msg_set_int(c, "webhook", (int64_t)whid);
    rc = rc ? rc : sp__msg_set_int(c, "team", wh_int(wh, "team"));
    rc = rc ? rc : sp__msg_set(c, "type", type, strlen(type));
    rc = rc ? rc : sp__msg_set(c, "data", data, strlen(data));
    rc = rc ? rc : sp__msg_set_int(c, "created_at", now);
    rc = rc ? rc : sp__msg_set_int(c, "updated_at", now);
    rc = rc ? rc : sp__msg_set_int(c, "status", SP_WHC_PENDING);
    rc = rc ? rc : sp__msg_set_int(c, "attempt", 0);
    rc = rc ? rc : sp__msg_set_int(c, "next_attempt_at", now);
    wh_key(k, whid, cid);
    rc = rc ? rc : put_rec(w, SP_DB_WEBHOOK_CALLS, k, c);
    rc = rc ? rc : sp__wtxn_put(w, SP_DB_WEBHOOK_QUEUE, k, sizeof(k), "", 0);
    if (rc == 0 && out) {
        *out = c;
    } else {
        sp__msg_free(c);
    }
    return rc;
}

/* ---- queuing inside a status change ------------------------------------ */

typedef struct match {
    const char *type;
    int64_t domain;
    size_t n, cap;
    sp_msg_t **hits;
    int rc;
} match_t;

static bool contains(const sp_msg_t *rec, const char *field, const char *v)
{
    size_t n = sp__msg_count(rec, field);

    for (size_t i = 0; i < n; i++) {
        const char *e = sp__msg_get_at(rec, field, i, NULL);
        if (e && strcmp(e, v) == 0) {
            return true;
        }
    }
    return false;
}

/* A filter list: empty = all. */
static bool list_has(const sp_msg_t *rec, const char *field, const char *v)
{
    return sp__msg_count(rec, field) == 0 || contains(rec, field, v);
}

static int match_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    match_t *mt = arg;
    char dom[24];
    sp_msg_t *rec;

    (void)k;
    if (kl != WH_KEY_LEN || sp__msg_decode(v, vl, &rec) != 0) {
        return 0;
    }
    snprintf(dom, sizeof(dom), "%lld", (long long)mt->domain);
    if (wh_int(rec, "status") != SP_WH_ACTIVE || !list_has(rec, "event_types", mt->type) ||
        (mt->domain <= 0 ? sp__msg_count(rec, "domain_ids") != 0
                         : !list_has(rec, "domain_ids", dom))) {
        sp__msg_free(rec);
        return 0;
    }
    if (mt->n == mt->cap) {
        size_t cap = mt->cap ? 2 * mt->cap : 4;
        sp_msg_t **h = realloc(mt->hits, cap * sizeof(*h));
        if (!h) {
            sp__msg_free(rec);
            mt->rc = SP_ENOMEM;
            return 1;
        }
        mt->hits = h;
        mt->cap = cap;
    }
    mt->hits[mt->n++] = rec;
    return 0;
}

int sp__webhooks_enqueue_txn(sp_wtxn_t *w, uint64_t id, const sp_msg_t *m, sp_status_t status,
                             int64_t when, const char *data)
{
    match_t mt = {.type = sp__wh_event_type(status)};
    int64_t team = 0;
    uint8_t prefix[8];
    char *body = NULL;
    int rc;

    if (!mt.type || sp__msg_get_int(m, SP_F_TEAM, &team) != 0 || team <= 0) {
        return 0;
    }
    (void)sp__msg_get_int(m, SP_F_DOMAIN_ID, &mt.domain);
    sp__be64_put(prefix, (uint64_t)team);
    rc = sp__wtxn_scan(w, SP_DB_WEBHOOKS, prefix, 8, prefix, 8, match_each, &mt);
    if (rc > 0) {
        rc = mt.rc;
    }
    if (rc == 0 && mt.n > 0 && !(body = sp__wh_email_data(m, id, status, when, data))) {
        rc = SP_ENOMEM;
    }
    for (size_t i = 0; i < mt.n; i++) {
        if (rc == 0) {
            rc = call_add_txn(w, mt.hits[i], mt.type, body, when, NULL);
        }
        sp__msg_free(mt.hits[i]);
    }
    free(mt.hits);
    free(body);
    return rc;
}

/* ---- writes shared by the host API and the CLI ------------------------- */

int wh_secret_new(char out[SP_WH_SECRET_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[32];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return SP_ENOMEM;
    }
    memcpy(out, "whsec_", 6);
    for (size_t i = 0; i < sizeof(b); i++) {
        out[6 + 2 * i] = hex[b[i] >> 4];
        out[6 + 2 * i + 1] = hex[b[i] & 15];
    }
    out[SP_WH_SECRET_LEN] = '\0';
    return 0;
}

#define WHY(...) (snprintf(why, n, __VA_ARGS__), SP_EINVAL)

int wh_spec_check(const json_t *spec, bool create, char *why, size_t n)
{
    const char *key;
    const json_t *v, *e;
    size_t i;

    if (!json_is_object(spec)) {
        return WHY("expected a JSON object");
    }
    json_object_foreach((json_t *)spec, key, v)
    {
        if (strcmp(key, "url") == 0) {
            if (!json_is_string(v) || !sp__wh_url_ok(json_string_value(v))) {
                return WHY("url: expected an http:// or https:// URL of at most %d bytes",
                           SP_WH_URL_MAX);
            }
        } else if (strcmp(key, "description") == 0) {
            if (!json_is_string(v) || json_string_length(v) > SP_WH_DESC_MAX) {
                return WHY("description: expected a string of at most %d bytes",
                           SP_WH_DESC_MAX);
            }
        } else if (strcmp(key, "eventTypes") == 0) {
            if (!json_is_array(v) || json_array_size(v) > 64) {
                return WHY("eventTypes: expected an array of event types");
            }
            json_array_foreach(v, i, e)
            {
                if (!sp__wh_event_known(json_string_value(e))) {
                    return WHY("eventTypes[%zu]: unknown event type", i);
                }
            }
        } else if (strcmp(key, "domainIds") == 0) {
            if (!json_is_array(v) || json_array_size(v) > 256) {
                return WHY("domainIds: expected an array of domain ids");
            }
            json_array_foreach(v, i, e)
            {
                if (!json_is_integer(e) || json_integer_value(e) <= 0) {
                    return WHY("domainIds[%zu]: expected a positive integer", i);
                }
            }
        } else if (strcmp(key, "status") == 0) {
            int st = sp__wh_state_parse(json_string_value(v));
            if (st != SP_WH_ACTIVE && st != SP_WH_PAUSED) {
                return WHY("status: expected ACTIVE or PAUSED");
            }
        } else if (strcmp(key, "apiVersion") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) > 32) {
                return WHY("apiVersion: expected a short string");
            }
        } else {
            return WHY("%s: unknown field", key);
        }
    }
    if (create && !json_object_get(spec, "url")) {
        return WHY("url: required");
    }
    return 0;
}

/* Apply the members of a checked spec to a record. */
static int spec_apply(sp_msg_t *rec, const json_t *spec, int64_t now)
{
    const json_t *v, *e;
    size_t i;
    int rc = 0;

    if ((v = json_object_get(spec, "url"))) {
        rc = sp__msg_set(rec, "url", json_string_value(v), json_string_length(v));
    }
    if (rc == 0 && (v = json_object_get(spec, "description"))) {
        rc = sp__msg_set(rec, "description", json_string_value(v), json_string_length(v));
    }
    if (rc == 0 && (v = json_object_get(spec, "apiVersion"))) {
        rc = sp__msg_set(rec, "api_version", json_string_value(v), json_string_length(v));
    }
    if (rc == 0 && (v = json_object_get(spec, "eventTypes"))) {
        (void)sp__msg_del(rec, "event_types");
        json_array_foreach(v, i, e)
        {
            if (rc == 0 && !contains(rec, "event_types", json_string_value(e))) {
                rc = sp__msg_add(rec, "event_types", json_string_value(e),
                                 json_string_length(e));
            }
        }
    }
    if (rc == 0 && (v = json_object_get(spec, "domainIds"))) {
        (void)sp__msg_del(rec, "domain_ids");
        json_array_foreach(v, i, e)
        {
            char d[24];
            snprintf(d, sizeof(d), "%lld", (long long)json_integer_value(e));
            if (rc == 0 && !contains(rec, "domain_ids", d)) {
                rc = sp__msg_add(rec, "domain_ids", d, strlen(d));
            }
        }
    }
    if (rc == 0 && (v = json_object_get(spec, "status"))) {
        int st = sp__wh_state_parse(json_string_value(v));
        if (st == SP_WH_ACTIVE && wh_int(rec, "status") != SP_WH_ACTIVE) {
            rc = sp__msg_set_int(rec, "consecutive_failures", 0);
        }
        rc = rc ? rc : sp__msg_set_int(rec, "status", st);
    }
    return rc ? rc : sp__msg_set_int(rec, "updated_at", now);
}

static int job_put(sp_wtxn_t *w, wh_job_t *j, sp_msg_t **rec)
{
    uint8_t tk[8];
    const void *v;
    size_t vl;
    uint64_t id;
    int rc;

    if (j->id != 0) {
        return wh_get_txn(w, j->team, j->id, rec);
    }
    sp__be64_put(tk, (uint64_t)j->team);
    if (sp__wtxn_get(w, SP_DB_TEAMS, tk, 8, &v, &vl) != 0) {
        return SP_ENOTFOUND;
    }
    if ((rc = meta_next(w, "webhook_seq", &id)) != 0) {
        return rc;
    }
    if (!(*rec = sp__msg_new())) {
        return SP_ENOMEM;
    }
    j->id = id;
    rc = sp__msg_set_int(*rec, "id", (int64_t)id);
    rc = rc ? rc : sp__msg_set_int(*rec, "team", j->team);
    rc = rc ? rc : sp__msg_set(*rec, "secret", j->secret, strlen(j->secret));
    rc = rc ? rc : sp__msg_set_int(*rec, "status", SP_WH_ACTIVE);
    rc = rc ? rc : sp__msg_set_int(*rec, "consecutive_failures", 0);
    rc = rc ? rc : sp__msg_set_int(*rec, "created_at", j->now);
    rc = rc ? rc : sp__msg_set(*rec, "description", "", 0);
    return rc;
}

int wh_first_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    wh_first_t *f = arg;

    (void)v, (void)vl;
    if (kl != WH_KEY_LEN) {
        return 0;
    }
    memcpy(f->key, k, WH_KEY_LEN);
    f->found = true;
    return 1;
}

/* Delete the first key of `db` with prefix wh until none is left. */

static int del_prefix(sp_wtxn_t *w, sp_db_t db, uint64_t wh)
{
    uint8_t p[8];
    wh_first_t f;
    int rc;

    sp__be64_put(p, wh);
    while ((rc = sp__wtxn_scan(w, db, p, 8, p, 8, wh_first_each, &f)) == 1) {
        if ((rc = sp__wtxn_del(w, db, f.key, sizeof(f.key))) != 0) {
            return rc;
        }
    }
    return rc;
}

static int job_out(wh_job_t *j, json_t *o)
{
    if (!o) {
        return SP_ENOMEM;
    }
    free(j->out);
    j->out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return j->out ? 0 : SP_ENOMEM;
}

int wh_job_apply(sp_wtxn_t *w, void *arg)
{
    wh_job_t *j = arg;
    sp_msg_t *rec = NULL, *call = NULL;
    uint8_t k[WH_KEY_LEN];
    char data[96];
    int rc;

    switch (j->kind) {
    case WH_J_PUT:
        rc = job_put(w, j, &rec);
        rc = rc ? rc : spec_apply(rec, j->spec, j->now);
        rc = rc ? rc : wh_put_txn(w, rec);
        rc = rc ? rc : job_out(j, wh_json(rec, j->secret[0] != '\0'));
        break;
    case WH_J_DEL:
        wh_key(k, (uint64_t)j->team, j->id);
        rc = sp__wtxn_del(w, SP_DB_WEBHOOKS, k, sizeof(k));
        rc = rc ? rc : del_prefix(w, SP_DB_WEBHOOK_QUEUE, j->id);
        rc = rc ? rc : del_prefix(w, SP_DB_WEBHOOK_CALLS, j->id);
        break;
    case WH_J_TEST:
        rc = wh_get_txn(w, j->team, j->id, &rec);
        snprintf(data, sizeof(data), "{\"webhookId\":%llu,\"test\":true}",
                 (unsigned long long)j->id);
        rc = rc ? rc : call_add_txn(w, rec, "webhook.test", data, j->now, &call);
        rc = rc ? rc : job_out(j, wh_call_json(call));
        j->kick = rc == 0;
        break;
    default:
        rc = SP_EINVAL;
    }
    sp__msg_free(rec);
    sp__msg_free(call);
    return rc;
}

/* ---- host API backends --------------------------------------------------- */

typedef struct hjob {
    wh_job_t j;
    sp_json_cb cb;
    sp_done_fn done;
    void *arg;
} hjob_t;

static void hjob_done(void *arg, int status)
{
    hjob_t *h = arg;

    if (h->cb) {
        h->cb(h->arg, status, status == 0 ? h->j.out : NULL);
    } else if (h->done) {
        h->done(h->arg, status);
    }
    if (status == 0 && h->j.kick) {
        sp__webhooks_kick();
    }
    json_decref(h->j.spec);
    free(h->j.out);
    free(h);
}

static int hjob_run(hjob_t *h)
{
    int rc;

    h->j.now = sp__core->clock_ms();
    rc = sp__store_write(sp__core->store, wh_job_apply, hjob_done, h);
    if (rc != 0) {
        json_decref(h->j.spec);
        free(h);
    }
    return rc;
}

static hjob_t *hjob_new(wh_jkind_t kind, int64_t team, int64_t id)
{
    hjob_t *h;

    if (!sp__core || !sp__core->store) {
        return NULL;
    }
    if ((h = calloc(1, sizeof(*h)))) {
        h->j.kind = kind;
        h->j.team = team;
        h->j.id = (uint64_t)id;
    }
    return h;
}

/* Every domainIds member must be a domain of the team. */
static int spec_domains(const json_t *spec, int64_t team)
{
    const json_t *e;
    size_t i;

    json_array_foreach(json_object_get(spec, "domainIds"), i, e)
    {
        sp_domain_t d = {.size = sizeof(d)};
        if (sp__tenancy_domain_get(json_integer_value(e), &d) != 0 || d.team != team) {
            SP_LOGI("webhook: domainIds[%zu]: not a domain of team %lld", i, (long long)team);
            return SP_EINVAL;
        }
    }
    return 0;
}

int sp__webhook_put(sp_plugin_t *p, int64_t team, int64_t id, const char *spec_json,
                    sp_json_cb cb, void *arg)
{
    char why[160];
    hjob_t *h;
    json_t *spec;
    int rc;

    (void)p;
    if (!cb || !spec_json || team <= 0 || id < 0) {
        return SP_EINVAL;
    }
    if (!(spec = json_loads(spec_json, 0, NULL))) {
        SP_LOGI("webhook: spec is not JSON");
        return SP_EINVAL;
    }
    if ((rc = wh_spec_check(spec, id == 0, why, sizeof(why))) != 0 ||
        (rc = spec_domains(spec, team)) != 0) {
        if (rc == SP_EINVAL && why[0]) {
            SP_LOGI("webhook: %s", why);
        }
        json_decref(spec);
        return rc;
    }
    if (!(h = hjob_new(WH_J_PUT, team, id))) {
        json_decref(spec);
        return sp__core ? SP_ENOMEM : SP_ESTATE;
    }
    h->j.spec = spec;
    h->cb = cb;
    h->arg = arg;
    if (id == 0 && (rc = wh_secret_new(h->j.secret)) != 0) {
        json_decref(spec);
        free(h);
        return rc;
    }
    return hjob_run(h);
}

/* del and test: one write about an existing webhook; cb or done answers. */
static int by_id(wh_jkind_t kind, int64_t team, int64_t id, sp_json_cb cb, sp_done_fn done,
                 void *arg)
{
    hjob_t *h;

    if ((!cb && !done) || team <= 0) {
        return SP_EINVAL;
    }
    if (id <= 0) {
        return SP_ENOTFOUND;
    }
    if (!(h = hjob_new(kind, team, id))) {
        return sp__core ? SP_ENOMEM : SP_ESTATE;
    }
    h->cb = cb;
    h->done = done;
    h->arg = arg;
    return hjob_run(h);
}

int sp__webhook_del(sp_plugin_t *p, int64_t team, int64_t id, sp_done_fn done, void *arg)
{
    (void)p;
    return by_id(WH_J_DEL, team, id, NULL, done, arg);
}

int sp__webhook_test(sp_plugin_t *p, int64_t team, int64_t id, sp_json_cb cb, void *arg)
{
    (void)p;
    return by_id(WH_J_TEST, team, id, cb, NULL, arg);
}

typedef struct visit {
    int (*each)(void *arg, const char *json);
    void *arg;
    uint64_t skip;
    int stop;
} visit_t;

static int visit_json(visit_t *vi, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    if (!s) {
        return SP_ENOMEM;
    }
    vi->stop = vi->each(vi->arg, s);
    free(s);
    return vi->stop;
}

static int list_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    sp_msg_t *rec;
    int rc;

    (void)k;
    if (kl != WH_KEY_LEN || sp__msg_decode(v, vl, &rec) != 0) {
        return 0;
    }
    rc = visit_json(arg, wh_json(rec, false));
    sp__msg_free(rec);
    return rc;
}

int sp__webhook_list(int64_t team, int64_t id, int (*each)(void *arg, const char *json),
                     void *arg)
{
    visit_t vi = {.each = each, .arg = arg};
    uint8_t k[WH_KEY_LEN];
    sp_rtxn_t *r;
    const void *v;
    size_t vl;
    int rc;

    if (!sp__core || !sp__core->store) {
        return SP_ESTATE;
    }
    if (!each || id < 0) {
        return SP_EINVAL;
    }
    if ((rc = sp__store_read_begin(sp__core->store, &r)) != 0) {
        return rc;
    }
    wh_key(k, (uint64_t)team, (uint64_t)id);
    if (id > 0) {
        rc = sp__rtxn_get(r, SP_DB_WEBHOOKS, k, sizeof(k), &v, &vl);
        rc = rc ? rc : list_each(&vi, k, sizeof(k), v, vl);
    } else {
        rc = sp__rtxn_scan(r, SP_DB_WEBHOOKS, k, 8, k, 8, list_each, &vi);
    }
    sp__store_read_end(r);
    return rc < 0 ? rc : 0;
}

static int calls_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    visit_t *vi = arg;
    sp_msg_t *c;
    int rc;

    (void)k;
    if (kl != WH_KEY_LEN) {
        return 0;
    }
    if (vi->skip > 0) {
        vi->skip--;
        return 0;
    }
    if (sp__msg_decode(v, vl, &c) != 0) {
        return 0;
    }
    rc = visit_json(vi, wh_call_json(c));
    sp__msg_free(c);
    return rc;
}

int sp__webhook_calls(int64_t team, int64_t id, uint64_t skip,
                      int (*each)(void *arg, const char *json), void *arg)
{
    visit_t vi = {.each = each, .arg = arg, .skip = skip};
    uint8_t k[WH_KEY_LEN];
    sp_rtxn_t *r;
    const void *v;
    size_t vl;
    int rc;

    if (!sp__core || !sp__core->store) {
        return SP_ESTATE;
    }
    if (!each || id <= 0) {
        return id <= 0 ? SP_ENOTFOUND : SP_EINVAL;
    }
    if ((rc = sp__store_read_begin(sp__core->store, &r)) != 0) {
        return rc;
    }
    wh_key(k, (uint64_t)team, (uint64_t)id);
    rc = sp__rtxn_get(r, SP_DB_WEBHOOKS, k, sizeof(k), &v, &vl);
    if (rc == 0) {
        wh_key(k, (uint64_t)id, UINT64_MAX);
        rc = sp__rtxn_scan_rev(r, SP_DB_WEBHOOK_CALLS, k, sizeof(k), k, 8, calls_each, &vi);
    }
    sp__store_read_end(r);
    return rc < 0 ? rc : 0;
}
