/* SPDX-License-Identifier: Apache-2.0 */
/* api_usesend: the useSend-compatible public emails API. This file holds the
 * descriptor, the route table, authentication, key permissions, the per-team
 * rate limit and the JSON reply helpers; the handlers are in emails.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* ---- configuration ---------------------------------------------------- */

static const sp_conf_item_t api_schema[] = {
    {SP_CONF_SIZE, "max_attachment_size", offsetof(api_conf_t, max_attachment_size), "10M", 0,
     "largest decoded attachment accepted"},
    {SP_CONF_SIZE, "max_attachments_total", offsetof(api_conf_t, max_attachments_total), "40M",
     0, "largest decoded size of all attachments of one email"},
    {SP_CONF_INT, "rate_limit", offsetof(api_conf_t, rate_limit), "-1", 0,
     "requests per minute per team; 0 turns the limit off, -1 uses settings.api_rate_limit"},
    {SP_CONF_DURATION, "idempotency_ttl", offsetof(api_conf_t, idempotency_ttl), "24h", 0,
     "how long an Idempotency-Key is remembered"},
    {0},
};

static int api_conf_check(const void *conf, char *err, size_t errlen)
{
    const api_conf_t *c = conf;
    if (c->max_attachment_size == 0 || c->max_attachments_total == 0) {
        snprintf(err, errlen, "attachment limits must be larger than 0");
        return -1;
    }
    if (c->max_attachment_size > c->max_attachments_total) {
        snprintf(err, errlen, "max_attachment_size is larger than max_attachments_total");
        return -1;
    }
    if (c->rate_limit < -1) {
        snprintf(err, errlen, "rate_limit must be -1, 0 or a positive number");
        return -1;
    }
    if (c->idempotency_ttl < 1000) {
        snprintf(err, errlen, "idempotency_ttl must be at least 1s");
        return -1;
    }
    return 0;
}

/* ---- replies ---------------------------------------------------------- */

static void set_rl_headers(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    char v[32];
    if (!c->has_rl) {
        return;
    }
    snprintf(v, sizeof(v), "%llu", (unsigned long long)c->rl.limit);
    (void)api->http_set_header(c->req, "X-RateLimit-Limit", v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)c->rl.remaining);
    (void)api->http_set_header(c->req, "X-RateLimit-Remaining", v);
    snprintf(v, sizeof(v), "%lld", (long long)c->rl.reset_s);
    (void)api->http_set_header(c->req, "X-RateLimit-Reset", v);
}

void api_reply(api_ctx_t *c, int status, json_t *body)
{
    static const char oom[] =
        "{\"error\":{\"code\":\"INTERNAL_SERVER_ERROR\",\"message\":\"out of memory\"}}";
    const sp_host_api_t *api = c->a->api;
    char *txt = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;

    set_rl_headers(c);
    if (txt == NULL) {
        (void)api->http_respond(c->req, 500, "application/json", oom, sizeof(oom) - 1);
    } else {
        (void)api->http_respond(c->req, status, "application/json", txt, strlen(txt));
    }
    free(txt);
    json_decref(body);
}

void api_reply_err(api_ctx_t *c, api_err_t *err)
{
    if (err->status >= 500) {
        c->a->api->log(c->a->p, SP_LOG_WARN, "%s %s: %d %s", c->a->api->http_method(c->req),
                       c->a->api->http_path(c->req), err->status, err->message);
    }
    api_reply(c, err->status, api_err_body(err));
    api_err_clear(err);
}

void api_fail(api_ctx_t *c, int status, const char *fmt, ...)
{
    api_err_t err = {0};
    va_list ap;
    err.status = status;
    err.code = api_status_code(status);
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof(err.message), fmt, ap);
    va_end(ap);
    api_reply_err(c, &err);
}

void api_fail_field(api_ctx_t *c, const char *field, long index, const char *msg)
{
    api_err_t err = {0};
    json_t *it = json_object(), *path = json_array();

    api_err_set(&err, 400, "%s: %s", field, msg);
    json_array_append_new(path, json_string(field));
    if (index >= 0) {
        json_array_append_new(path, json_integer(index));
    }
    json_object_set_new(it, "path", path);
    json_object_set_new(it, "message", json_string(msg));
    err.issues = json_array();
    json_array_append_new(err.issues, it);
    api_reply_err(c, &err);
}

void api_fail_rc(api_ctx_t *c, int rc, const char *what)
{
    const char *why = c->a->api->strerror(rc);
    switch (rc) {
    case SP_ENOTFOUND:
        api_fail(c, 404, "%s", what);
        break;
    case SP_ESTOREFULL:
    case SP_ESTORE:
    case SP_EBUSY:
    case SP_ENOMEM:
    case SP_ESHUTDOWN:
    case SP_ETIMEDOUT:
    case SP_ECANCELED:
        api_fail(c, 503, "%s: %s", what, why);
        break;
    default:
        api_fail(c, rc < 0 && rc > -200 ? 503 : 500, "%s: %s", what, why);
        break;
    }
}

/* ---- waiting requests ------------------------------------------------- */

api_call_t *api_call_new(api_ctx_t *c)
{
    api_t *a = c->a;
    api_call_t *call = calloc(1, sizeof(*call));
    if (call == NULL) {
        return NULL;
    }
    call->c = *c;
    call->next = a->calls;
    if (a->calls != NULL) {
        a->calls->prevp = &call->next;
    }
    call->prevp = &a->calls;
    a->calls = call;
    return call;
}

void api_call_free(api_call_t *call)
{
    if (call == NULL) {
        return;
    }
    *call->prevp = call->next;
    if (call->next != NULL) {
        call->next->prevp = call->prevp;
    }
    if (call->idem != NULL) {
        api_idem_release(call);
    }
    json_decref(call->ids);
    free(call->email_id);
    free(call);
}

/* ---- routes ----------------------------------------------------------- */

#define ACCESS_PUBLIC (-1)

typedef struct route_def {
    const char *method;
    const char *pattern;
    int access; /* api_access_t, or ACCESS_PUBLIC */
    void (*fn)(api_ctx_t *c);
    uint32_t flags;
} route_def_t;

static void h_health(api_ctx_t *c)
{
    json_t *b = json_object();
    json_object_set_new(b, "data", json_string("Healthy"));
    api_reply(c, 200, b);
}

enum {
    R_HEALTH,
    R_DOC,
    R_SEND,
    R_BATCH,
    R_LIST,
    R_GET,
    R_UPDATE,
    R_CANCEL,
    R_SEND_LEGACY,
    R_SCHEDULE_LEGACY,
    R_SUPP_LIST,
    R_SUPP_ADD,
    R_SUPP_DEL,
    R_WH_LIST,
    R_WH_ADD,
    R_WH_GET,
    R_WH_UPDATE,
    R_WH_DEL,
    R_WH_TEST,
    R_WH_CALLS,
    R_AN_SERIES,
    R_AN_REP,
    R__COUNT
};

static const route_def_t routes[R__COUNT] = {
    [R_HEALTH] = {"GET", "/api/health", ACCESS_PUBLIC, h_health, SP_HTTP_ROUTE_NOLOG},
    [R_DOC] = {"GET", "/api/v1/doc", ACCESS_PUBLIC, api_h_doc, 0},
    [R_SEND] = {"POST", "/api/v1/emails", API_ACCESS_SEND, api_h_send, 0},
    [R_BATCH] = {"POST", "/api/v1/emails/batch", API_ACCESS_SEND, api_h_batch, 0},
    [R_LIST] = {"GET", "/api/v1/emails", API_ACCESS_READ, api_h_list, 0},
    [R_GET] = {"GET", "/api/v1/emails/{emailId}", API_ACCESS_READ, api_h_get, 0},
    [R_UPDATE] = {"PATCH", "/api/v1/emails/{emailId}", API_ACCESS_READ, api_h_update, 0},
    [R_CANCEL] = {"POST", "/api/v1/emails/{emailId}/cancel", API_ACCESS_READ, api_h_cancel, 0},
    [R_SEND_LEGACY] = {"POST", "/api/send", API_ACCESS_SEND, api_h_send_legacy, 0},
    [R_SCHEDULE_LEGACY] = {"POST", "/api/schedule", API_ACCESS_SEND, api_h_schedule_legacy, 0},
    [R_SUPP_LIST] = {"GET", "/api/v1/suppressions", API_ACCESS_MANAGE, api_h_supp_list, 0},
    [R_SUPP_ADD] = {"POST", "/api/v1/suppressions", API_ACCESS_MANAGE, api_h_supp_add, 0},
    [R_SUPP_DEL] = {"DELETE", "/api/v1/suppressions/{email}", API_ACCESS_MANAGE, api_h_supp_del, 0},
    [R_WH_LIST] = {"GET", "/api/v1/webhooks", API_ACCESS_MANAGE, api_h_wh_list, 0},
    [R_WH_ADD] = {"POST", "/api/v1/webhooks", API_ACCESS_MANAGE, api_h_wh_add, 0},
    [R_WH_GET] = {"GET", "/api/v1/webhooks/{webhookId}", API_ACCESS_MANAGE, api_h_wh_get, 0},
    [R_WH_UPDATE] = {"PATCH", "/api/v1/webhooks/{webhookId}", API_ACCESS_MANAGE, api_h_wh_update, 0},
    [R_WH_DEL] = {"DELETE", "/api/v1/webhooks/{webhookId}", API_ACCESS_MANAGE, api_h_wh_del, 0},
    [R_WH_TEST] = {"POST", "/api/v1/webhooks/{webhookId}/test", API_ACCESS_MANAGE, api_h_wh_test, 0},
    [R_WH_CALLS] = {"GET", "/api/v1/webhooks/{webhookId}/calls", API_ACCESS_MANAGE, api_h_wh_calls, 0},
    [R_AN_SERIES] = {"GET", "/api/v1/analytics/email-time-series", API_ACCESS_READ, api_h_an_series, 0},
    [R_AN_REP] = {"GET", "/api/v1/analytics/reputation-metrics", API_ACCESS_READ, api_h_an_reputation, 0},
};

/* Authentication, permission and rate limit, then the handler. */
static void dispatch(api_t *a, sp_http_req_t *req, const route_def_t *r)
{
    const sp_host_api_t *api = a->api;
    api_ctx_t c = {.a = a, .req = req};
    const char *tok;
    size_t toklen;
    int rc;

    if (r->access == ACCESS_PUBLIC) {
        r->fn(&c);
        return;
    }
    if (api_bearer_token(api->http_header(req, "Authorization"), &tok, &toklen) < 0) {
        api_fail(&c, 401, "No Authorization header provided");
        return;
    }
    c.auth.size = sizeof(c.auth);
    rc = api->auth_key(tok, toklen, &c.auth);
    if (rc == SP_ENOTFOUND || rc == SP_EINVAL) {
        api_fail(&c, 403, "Invalid API token");
        return;
    }
    if (rc < 0) {
        api_fail_rc(&c, rc, "Authentication failed");
        return;
    }
    if (a->rate_limit > 0) {
        c.has_rl = true;
        if (!api_rl_hit(a->rl, c.auth.team, a->rate_limit, api->now_ms(), &c.rl)) {
            char ra[32];
            snprintf(ra, sizeof(ra), "%lld", (long long)c.rl.retry_after);
            (void)api->http_set_header(req, "Retry-After", ra);
            api->counter_add(a->p, "rate_limited", 1);
            api_fail(&c, 429, "Rate limit exceeded. Try again in %lld seconds.",
                     (long long)c.rl.retry_after);
            return;
        }
    }
    if (!api_perm_allows(c.auth.permission, (api_access_t)r->access)) {
        api_fail(&c, 403, "API key does not have permission for this operation");
        return;
    }
    r->fn(&c);
}

/* The registry passes only the plugin context, so each route gets a small
 * trampoline that names its table row. */
#define TRAMPOLINE(idx)                                                                    \
    static void route_##idx(sp_http_req_t *req, void *ctx)                                  \
    {                                                                                       \
        dispatch(ctx, req, &routes[idx]);                                                   \
    }
TRAMPOLINE(R_HEALTH)
TRAMPOLINE(R_DOC)
TRAMPOLINE(R_SEND)
TRAMPOLINE(R_BATCH)
TRAMPOLINE(R_LIST)
TRAMPOLINE(R_GET)
TRAMPOLINE(R_UPDATE)
TRAMPOLINE(R_CANCEL)
TRAMPOLINE(R_SEND_LEGACY)
TRAMPOLINE(R_SCHEDULE_LEGACY)
TRAMPOLINE(R_SUPP_LIST)
TRAMPOLINE(R_SUPP_ADD)
TRAMPOLINE(R_SUPP_DEL)
TRAMPOLINE(R_WH_LIST)
TRAMPOLINE(R_WH_ADD)
TRAMPOLINE(R_WH_GET)
TRAMPOLINE(R_WH_UPDATE)
TRAMPOLINE(R_WH_DEL)
TRAMPOLINE(R_WH_TEST)
TRAMPOLINE(R_WH_CALLS)
TRAMPOLINE(R_AN_SERIES)
TRAMPOLINE(R_AN_REP)

static const sp_http_handler_fn trampolines[R__COUNT] = {
    [R_HEALTH] = route_R_HEALTH,
    [R_DOC] = route_R_DOC,
    [R_SEND] = route_R_SEND,
    [R_BATCH] = route_R_BATCH,
    [R_LIST] = route_R_LIST,
    [R_GET] = route_R_GET,
    [R_UPDATE] = route_R_UPDATE,
    [R_CANCEL] = route_R_CANCEL,
    [R_SEND_LEGACY] = route_R_SEND_LEGACY,
    [R_SCHEDULE_LEGACY] = route_R_SCHEDULE_LEGACY,
    [R_SUPP_LIST] = route_R_SUPP_LIST,
    [R_SUPP_ADD] = route_R_SUPP_ADD,
    [R_SUPP_DEL] = route_R_SUPP_DEL,
    [R_WH_LIST] = route_R_WH_LIST,
    [R_WH_ADD] = route_R_WH_ADD,
    [R_WH_GET] = route_R_WH_GET,
    [R_WH_UPDATE] = route_R_WH_UPDATE,
    [R_WH_DEL] = route_R_WH_DEL,
    [R_WH_TEST] = route_R_WH_TEST,
    [R_WH_CALLS] = route_R_WH_CALLS,
    [R_AN_SERIES] = route_R_AN_SERIES,
    [R_AN_REP] = route_R_AN_REP,
};

/* ---- life cycle ------------------------------------------------------- */

static uint64_t rate_limit_of(const sp_host_api_t *api, const api_conf_t *conf)
{
    const char *s;
    int64_t v;
    if (conf->rate_limit >= 0) {
        return (uint64_t)conf->rate_limit;
    }
    s = api->setting("api_rate_limit");
    if (s == NULL || api_parse_int(s, 0, INT64_MAX, &v) < 0) {
        return 100;
    }
    return (uint64_t)v;
}

static void api_free(api_t *a)
{
    while (a->calls != NULL) {
        api_call_free(a->calls);
    }
    api_idem_fini(a);
    api_rl_free(a->rl);
    json_decref(a->doc);
    free(a);
}

static int api_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const api_conf_t *c = conf;
    api_t *a;
    int rc = 0;

    if (!SP_API_HAS(api, msg_cancel)) {
        api->log(p, SP_LOG_ERROR, "the host lacks the HTTP and message API (ABI 1.1)");
        return SP_EABI;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return SP_ENOMEM;
    }
    a->p = p;
    a->api = api;
    a->conf = c;
    a->lim.max_attachment_size = c->max_attachment_size;
    a->lim.max_attachments_total = c->max_attachments_total;
    a->rate_limit = rate_limit_of(api, c);
    a->rl = api_rl_new(60000);
    if (a->rl == NULL) {
        free(a);
        return SP_ENOMEM;
    }
    rc = api_doc_load(a);
    if (rc < 0) {
        api->log(p, SP_LOG_ERROR, "the embedded OpenAPI document does not parse");
        api_free(a);
        return rc;
    }
    /* Every route served must be documented: refuse to start otherwise. */
    for (size_t i = 0; i < R__COUNT; i++) {
        if (api_doc_has(a->doc, routes[i].method, routes[i].pattern) < 0) {
            api->log(p, SP_LOG_ERROR, "route %s %s has no entry in the OpenAPI document",
                     routes[i].method, routes[i].pattern);
            api_free(a);
            return SP_EINVAL;
        }
    }
    rc = api_idem_init(a);
    for (size_t i = 0; i < R__COUNT && rc == 0; i++) {
        rc = api->http_route(p, routes[i].method, routes[i].pattern, trampolines[i],
                             routes[i].flags);
        if (rc < 0) {
            api->log(p, SP_LOG_ERROR, "cannot register %s %s: %s", routes[i].method,
                     routes[i].pattern, api->strerror(rc));
        }
    }
    if (rc < 0) {
        api_free(a);
        return rc;
    }
    api->log(p, SP_LOG_INFO, "emails API ready (rate limit %llu/min per team%s)",
             (unsigned long long)a->rate_limit, a->rate_limit == 0 ? ": off" : "");
    *ctx = a;
    return 0;
}

static void api_fini(sp_plugin_t *p, void *ctx)
{
    api_t *a = ctx;
    if (a != NULL) {
        api_free(a);
    }
}

SP_PLUGIN_DEFINE(.name = "api_usesend", .version = SP_VERSION_STRING,
                 .description = "useSend-compatible REST API: send, batch, read, list, "
                                "reschedule and cancel emails",
                 .conf = api_schema, .conf_size = sizeof(api_conf_t),
                 .conf_check = api_conf_check, .init = api_init, .fini = api_fini);
