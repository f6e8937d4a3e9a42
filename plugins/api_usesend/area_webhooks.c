/* SPDX-License-Identifier: Apache-2.0 */
/* The webhooks API (FULL keys only): a team's endpoints, a test call and
 * the delivery log, through the host's webhook_* members. The core checks
 * every spec again; the checks here exist to name the field at fault. */
#include <stdlib.h>
#include <string.h>

#include "api.h"

static const char *const event_types[] = {
    "email.queued",      "email.scheduled",        "email.sent",      "email.delivery_delayed",
    "email.delivered",   "email.bounced",          "email.rejected",  "email.rendering_failure",
    "email.complained",  "email.failed",           "email.cancelled", "email.suppressed",
    "email.opened",      "email.clicked",          "contact.created", "contact.updated",
    "contact.deleted",   "domain.created",         "domain.verified", "domain.updated",
    "domain.deleted",    "webhook.test",           NULL};

/* A 400 naming one field, in the plugin's error shape. */
static void bad_field(api_ctx_t *c, const char *field, const char *msg)
{
    api_fail_field(c, field, -1, msg);
}

static bool known_event(const char *s)
{
    for (size_t i = 0; s && event_types[i]; i++) {
        if (strcmp(s, event_types[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* The request body as a checked webhook spec, or NULL after answering. */
static json_t *spec_of(api_ctx_t *c, bool create)
{
    api_err_t err = {0};
    size_t len, i;
    const void *body = c->a->api->http_body(c->req, &len);
    json_t *spec = NULL, *v, *e;
    const char *key;

    if (api_json_parse(body, len, &spec, &err) < 0) {
        api_reply_err(c, &err);
        return NULL;
    }
    if (!json_is_object(spec)) {
        json_decref(spec);
        api_fail(c, 400, "Expected object");
        return NULL;
    }
    json_object_foreach(spec, key, v)
    {
        const char *why = NULL;
        if (strcmp(key, "url") == 0) {
            const char *u = json_string_value(v);
            if (!u || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) ||
                strlen(u) > 2048) {
                why = "Expected an http:// or https:// URL";
            }
        } else if (strcmp(key, "description") == 0) {
            why = json_is_string(v) && json_string_length(v) <= 500
                      ? NULL
                      : "Expected a string of at most 500 characters";
        } else if (strcmp(key, "eventTypes") == 0) {
            why = json_is_array(v) ? NULL : "Expected an array of event types";
            json_array_foreach(v, i, e)
            {
                if (!known_event(json_string_value(e))) {
                    why = "Unknown event type";
                }
            }
        } else if (strcmp(key, "domainIds") == 0) {
            why = json_is_array(v) ? NULL : "Expected an array of domain ids";
            json_array_foreach(v, i, e)
            {
                if (!json_is_integer(e) || json_integer_value(e) <= 0) {
                    why = "Expected positive integer domain ids";
                }
            }
        } else if (strcmp(key, "status") == 0) {
            const char *s = json_string_value(v);
            why = s && (strcmp(s, "ACTIVE") == 0 || strcmp(s, "PAUSED") == 0)
                      ? NULL
                      : "Expected ACTIVE or PAUSED";
        } else if (strcmp(key, "apiVersion") == 0) {
            why = json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 32
                      ? NULL
                      : "Expected a version string";
        } else {
            why = "Unknown field";
        }
        if (why) {
            bad_field(c, key, why);
            json_decref(spec);
            return NULL;
        }
    }
    if (create && !json_object_get(spec, "url")) {
        bad_field(c, "url", "Required");
        json_decref(spec);
        return NULL;
    }
    return spec;
}

/* The {webhookId} of the route, or 0 after answering 404. */
static int64_t id_of(api_ctx_t *c)
{
    const char *s = c->a->api->http_param(c->req, "webhookId");
    char *end = NULL;
    long long v = s ? strtoll(s, &end, 10) : 0;

    if (!s || *s < '0' || *s > '9' || *end != '\0' || v <= 0) {
        api_fail(c, 404, "Webhook not found");
        return 0;
    }
    return (int64_t)v;
}

static int collect(void *arg, const char *json)
{
    json_t *v = json_loads(json, 0, NULL);

    if (v) {
        json_array_append_new(arg, v);
    }
    return 0;
}

/* Answer a webhook_put / webhook_test completion. */
static void answered(void *arg, int status, const char *json)
{
    api_call_t *call = arg;
    json_t *v = status == 0 ? json_loads(json, 0, NULL) : NULL;

    if (status == SP_EINVAL) {
        /* Everything else was checked above: the core refuses domains of
         * other teams (and unknown ones). */
        bad_field(&call->c, "domainIds", "Not a domain of this team");
    } else if (status < 0) {
        api_fail_rc(&call->c, status, "Webhook not found");
    } else {
        api_reply(&call->c, 200, v);
    }
    api_call_free(call);
}

static void put(api_ctx_t *c, int64_t id)
{
    json_t *spec = spec_of(c, id == 0);
    api_call_t *call;
    char *txt;
    int rc;

    if (!spec) {
        return;
    }
    txt = json_dumps(spec, JSON_COMPACT);
    json_decref(spec);
    if (!txt || !(call = api_call_new(c))) {
        free(txt);
        api_fail(c, 503, "out of memory");
        return;
    }
    rc = c->a->api->webhook_put(c->a->p, c->auth.team, id, txt, answered, call);
    free(txt);
    if (rc < 0) {
        answered(call, rc, NULL);
    }
}

void api_h_wh_list(api_ctx_t *c)
{
    json_t *data = json_array();
    int rc = c->a->api->webhook_list(c->auth.team, 0, collect, data);

    if (rc < 0) {
        json_decref(data);
        api_fail_rc(c, rc, "Webhooks could not be listed");
        return;
    }
    api_reply(c, 200, json_pack("{s:o, s:I}", "data", data, "count",
                                (json_int_t)json_array_size(data)));
}

void api_h_wh_add(api_ctx_t *c)
{
    put(c, 0);
}

void api_h_wh_get(api_ctx_t *c)
{
    int64_t id = id_of(c);
    json_t *data = json_array();
    int rc;

    if (id == 0) {
        json_decref(data);
        return;
    }
    rc = c->a->api->webhook_list(c->auth.team, id, collect, data);
    if (rc < 0 || json_array_size(data) != 1) {
        json_decref(data);
        api_fail_rc(c, rc < 0 ? rc : SP_ENOTFOUND, "Webhook not found");
        return;
    }
    api_reply(c, 200, json_incref(json_array_get(data, 0)));
    json_decref(data);
}

void api_h_wh_update(api_ctx_t *c)
{
    int64_t id = id_of(c);

    if (id != 0) {
        put(c, id);
    }
}

static void deleted(void *arg, int status)
{
    api_call_t *call = arg;

    if (status < 0) {
        api_fail_rc(&call->c, status, "Webhook not found");
    } else {
        api_reply(&call->c, 200, json_pack("{s:s, s:b}", "id", call->email_id, "deleted", 1));
    }
    api_call_free(call);
}

void api_h_wh_del(api_ctx_t *c)
{
    int64_t id = id_of(c);
    api_call_t *call;
    int rc;

    if (id == 0) {
        return;
    }
    if (!(call = api_call_new(c)) ||
        !(call->email_id = strdup(c->a->api->http_param(c->req, "webhookId")))) {
        api_call_free(call);
        api_fail(c, 503, "out of memory");
        return;
    }
    rc = c->a->api->webhook_del(c->a->p, c->auth.team, id, deleted, call);
    if (rc < 0) {
        deleted(call, rc);
    }
}

void api_h_wh_test(api_ctx_t *c)
{
    int64_t id = id_of(c);
    api_call_t *call;
    int rc;

    if (id == 0) {
        return;
    }
    if (!(call = api_call_new(c))) {
        api_fail(c, 503, "out of memory");
        return;
    }
    rc = c->a->api->webhook_test(c->a->p, c->auth.team, id, answered, call);
    if (rc < 0) {
        answered(call, rc, NULL);
    }
}

typedef struct page {
    json_t *data;
    size_t left;
} page_t;

static int page_each(void *arg, const char *json)
{
    page_t *pg = arg;

    (void)collect(pg->data, json);
    return --pg->left == 0;
}

/* ?page= (1-based) and ?limit= (1..100, default 50). */
void api_h_wh_calls(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    const char *ps = api->http_query(c->req, "page"), *ls = api->http_query(c->req, "limit");
    long long pg = ps ? strtoll(ps, NULL, 10) : 1, lim = ls ? strtoll(ls, NULL, 10) : 50;
    int64_t id = id_of(c);
    page_t p;
    int rc;

    if (id == 0) {
        return;
    }
    if (pg < 1 || pg > 1000000 || lim < 1 || lim > 100) {
        bad_field(c, pg < 1 || pg > 1000000 ? "page" : "limit",
                  "Expected page >= 1 and limit 1..100");
        return;
    }
    p.data = json_array();
    p.left = (size_t)lim;
    rc = api->webhook_calls(c->auth.team, id, (uint64_t)((pg - 1) * lim), page_each, &p);
    if (rc < 0) {
        json_decref(p.data);
        api_fail_rc(c, rc, "Webhook not found");
        return;
    }
    api_reply(c, 200, json_pack("{s:o}", "data", p.data));
}
