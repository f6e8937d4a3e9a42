/* SPDX-License-Identifier: Apache-2.0 */
/* The /api/v1/emails handlers: send and batch through the core's durable
 * submit, read one email with its events, list, reschedule and cancel. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"

#define MAX_EMAIL_ID 64
#define ID_EPOCH_MS 1577836800000LL

/* ---- request body ----------------------------------------------------- */

/* The JSON body, or an error sent. A declared non-JSON Content-Type is
 * refused (upstream silently validated such bodies as {}). */
static json_t *body_json(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    const char *ct = api->http_header(c->req, "Content-Type");
    api_err_t err = {0};
    const void *body;
    size_t len;
    json_t *v;

    if (ct != NULL) {
        size_t n = strcspn(ct, "; \t");
        bool json = (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
                    (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
        if (!json) {
            api_fail(c, 400, "Content-Type must be application/json");
            return NULL;
        }
    }
    body = api->http_body(c->req, &len);
    if (api_json_parse(body, len, &v, &err) < 0) {
        api_reply_err(c, &err);
        return NULL;
    }
    return v;
}

/* A semantic (non-schema) error about one field of element `index`. */
static void field_err(api_err_t *err, int status, int index, const char *field,
                      const char *fmt, ...) SP_PRINTF(5, 6);

static void field_err(api_err_t *err, int status, int index, const char *field,
                      const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    json_t *it = json_object(), *path = json_array();

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (index >= 0) {
        api_err_set(err, status, "emails[%d]: %s", index, msg);
        json_array_append_new(path, json_integer(index));
    } else {
        api_err_set(err, status, "%s", msg);
    }
    if (field != NULL) {
        json_array_append_new(path, json_string(field));
    }
    json_object_set_new(it, "path", path);
    json_object_set_new(it, "message", json_string(msg));
    err->issues = json_array();
    json_array_append_new(err->issues, it);
}

/* ---- the checks that need the store ----------------------------------- */

static bool msg_in_scope(const api_ctx_t *c, const sp_msg_t *m)
{
    const sp_host_api_t *api = c->a->api;
    int64_t team = -1, dom = 0;
    if (api->msg_get_int(m, SP_F_TEAM, &team) < 0 || team != c->auth.team) {
        return false;
    }
    if (c->auth.domain_id != 0) {
        return api->msg_get_int(m, SP_F_DOMAIN_ID, &dom) == 0 && dom == c->auth.domain_id;
    }
    return true;
}

/* From-domain, key restriction, template and inReplyToId rules of one
 * payload (§1.6 step 1 and 4). 0 with *dom filled, or an error in err. */
static int check_email(api_ctx_t *c, const api_email_t *e, int index, sp_domain_t *dom,
                       api_err_t *err)
{
    const sp_host_api_t *api = c->a->api;
    char name[256];
    int rc;

    if (api_from_domain(e->from, name, sizeof(name)) < 0) {
        field_err(err, 400, index, "from", "From email is invalid");
        return SP_EINVAL;
    }
    memset(dom, 0, sizeof(*dom));
    dom->size = sizeof(*dom);
    rc = api->domain_find(c->auth.team, name, dom);
    if (rc == SP_ENOTFOUND) {
        field_err(err, 400, index, "from",
                  "Domain: %s of from email is wrong. Use the domain verified by useSend",
                  name);
        return SP_EINVAL;
    }
    if (rc < 0) {
        api_err_set(err, 503, "Domain lookup failed: %s", api->strerror(rc));
        return rc;
    }
    if (c->auth.domain_id != 0 && dom->id != c->auth.domain_id) {
        field_err(err, 403, index, "from", "API key does not have access to domain: %s", name);
        return SP_EINVAL;
    }
    if (!dom->verified) {
        field_err(err, 400, index, "from", "Domain: %s is not verified", name);
        return SP_EINVAL;
    }
    if (e->template_id != NULL) {
        /* Only the team's own templates (DECISIONS #9). The render plugin
         * loads it again at due time: it may be removed meanwhile. */
        sp_msg_t *t = NULL;
        rc = api->template_load(c->auth.team, e->template_id, &t);
        api->msg_free(t);
        if (rc == SP_ENOTFOUND || rc == SP_ECORRUPT) {
            field_err(err, 400, index, "templateId", "Template not found: %s", e->template_id);
            return SP_EINVAL;
        }
        if (rc < 0) {
            api_err_set(err, 503, "Template lookup failed: %s", api->strerror(rc));
            return rc;
        }
    }
    if (e->in_reply_to_id != NULL) {
        sp_msg_t *m = NULL;
        bool ok = false;
        rc = api->msg_load(e->in_reply_to_id, &m);
        if (rc == 0) {
            int64_t team = -1;
            ok = api->msg_get_int(m, SP_F_TEAM, &team) == 0 && team == c->auth.team;
            api->msg_free(m);
        } else if (rc != SP_ENOTFOUND && rc != SP_EINVAL && rc != SP_ECORRUPT) {
            api_err_set(err, 503, "Email lookup failed: %s", api->strerror(rc));
            return rc;
        }
        if (!ok) {
            field_err(err, 400, index, "inReplyToId", "\"inReplyToId\" is invalid: no email %s",
                      e->in_reply_to_id);
            return SP_EINVAL;
        }
    }
    return 0;
}

/* ---- building messages ------------------------------------------------ */

static int add_list(const sp_host_api_t *api, sp_msg_t *m, const char *f, const api_strlist_t *l)
{
    int rc = 0;
    for (size_t i = 0; i < l->n && rc == 0; i++) {
        rc = api->msg_add(m, f, l->v[i], strlen(l->v[i]));
    }
    return rc;
}

static int set_str(const sp_host_api_t *api, sp_msg_t *m, const char *f, const char *v)
{
    return v != NULL ? api->msg_set(m, f, v, strlen(v)) : 0;
}

static sp_msg_t *build_msg(api_ctx_t *c, const api_email_t *e, const sp_domain_t *dom)
{
    const sp_host_api_t *api = c->a->api;
    sp_msg_t *m = api->msg_new();
    int rc;

    if (m == NULL) {
        return NULL;
    }
    rc = api->msg_set_int(m, SP_F_TEAM, c->auth.team);
    rc = rc ? rc : api->msg_set_int(m, SP_F_DOMAIN_ID, dom->id);
    rc = rc ? rc : api->msg_set_int(m, SP_F_API_KEY_ID, c->auth.key_id);
    rc = rc ? rc : set_str(api, m, SP_F_FROM, e->from);
    rc = rc ? rc : add_list(api, m, SP_F_TO, &e->to);
    rc = rc ? rc : add_list(api, m, SP_F_CC, &e->cc);
    rc = rc ? rc : add_list(api, m, SP_F_BCC, &e->bcc);
    rc = rc ? rc : add_list(api, m, SP_F_REPLY_TO, &e->reply_to);
    rc = rc ? rc : set_str(api, m, SP_F_SUBJECT, e->subject);
    rc = rc ? rc : set_str(api, m, SP_F_TEXT, e->text);
    rc = rc ? rc : set_str(api, m, SP_F_HTML, e->html);
    rc = rc ? rc : add_list(api, m, SP_F_HEADERS, &e->headers);
    rc = rc ? rc : set_str(api, m, SP_F_IN_REPLY_TO_ID, e->in_reply_to_id);
    rc = rc ? rc : set_str(api, m, SP_F_TEMPLATE_ID, e->template_id);
    rc = rc ? rc : set_str(api, m, SP_F_VARIABLES, e->variables_json);
    if (rc == 0 && e->has_scheduled_at) {
        rc = api->msg_set_int(m, SP_F_SCHEDULED_AT, e->scheduled_at);
    }
    for (size_t i = 0; i < e->nattachments && rc == 0; i++) {
        const api_attachment_t *at = &e->attachments[i];
        rc = api->msg_add(m, SP_F_ATTACHMENT_NAMES, at->filename, strlen(at->filename));
        /* An empty attachment still needs its slot: the lists are parallel. */
        rc = rc ? rc
                : api->msg_add(m, SP_F_ATTACHMENT_DATA,
                               at->data != NULL ? (const void *)at->data : "", at->len);
    }
    if (rc != 0) {
        api->msg_free(m);
        return NULL;
    }
    return m;
}

/* ---- send ------------------------------------------------------------- */

json_t *api_ids_body(const json_t *ids, bool batch)
{
    json_t *b = json_object();
    if (b == NULL) {
        return NULL;
    }
    if (batch) {
        json_t *arr = json_array();
        size_t i;
        json_t *id;
        json_array_foreach(ids, i, id)
        {
            json_t *o = json_object();
            json_object_set(o, "emailId", id);
            json_array_append_new(arr, o);
        }
        json_object_set_new(b, "data", arr);
    } else {
        json_object_set(b, "emailId", json_array_get(ids, 0));
    }
    return b;
}

/* The reply for a refused submission: the first REJECT, else DEFER, else
 * store error of the batch decides. */
static void submit_failed(api_call_t *call, const sp_submit_result_t *r)
{
    api_err_t err = {0};
    int status;

    if (r->status == 0 && r->verdict == SP_REJECT) {
        status = r->code >= 400 && r->code < 600 ? r->code : 400;
    } else if (r->status == 0 && r->verdict == SP_DEFER) {
        status = r->code >= 400 && r->code < 600 ? r->code : 503;
    } else {
        status = 503;
    }
    if (call->batch) {
        api_err_set(&err, status, "emails[%d]: %s", r->index, r->text);
    } else {
        api_err_set(&err, status, "%s", r->text);
    }
    api_reply_err(&call->c, &err);
}

static void submitted(void *arg, const sp_submit_result_t *res, size_t n)
{
    api_call_t *call = arg;
    const sp_submit_result_t *bad = NULL;
    const sp_host_api_t *api = call->c.a->api;

    for (size_t i = 0; i < n; i++) {
        const sp_submit_result_t *r = &res[i];
        if (r->status == 0 && r->verdict == SP_REJECT) {
            bad = r;
            break;
        }
        if (bad == NULL && (r->status != 0 || r->verdict == SP_DEFER || r->id == NULL)) {
            bad = r;
        }
    }
    if (bad != NULL) {
        api->counter_add(call->c.a->p, "refused", n);
        submit_failed(call, bad);
        api_call_free(call);
        return;
    }
    call->ids = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(call->ids, json_null());
    }
    for (size_t i = 0; i < n; i++) {
        size_t at = res[i].index >= 0 && (size_t)res[i].index < n ? (size_t)res[i].index : i;
        json_array_set_new(call->ids, at, json_string(res[i].id));
    }
    api->counter_add(call->c.a->p, "accepted", n);
    if (call->idem != NULL) {
        api_idem_finish(call);
        return;
    }
    api_reply(&call->c, 200, api_ids_body(call->ids, call->batch));
    api_call_free(call);
}

/* Shared path of every send route. */
static void send_emails(api_ctx_t *c, bool batch, bool need_schedule)
{
    const sp_host_api_t *api = c->a->api;
    api_err_t err = {0};
    api_email_t one, *emails = NULL;
    size_t n = 0;
    sp_msg_t **msgs = NULL;
    api_call_t *call = NULL;
    json_t *body = body_json(c);
    int rc;

    if (body == NULL) {
        return;
    }
    if (batch) {
        rc = api_email_batch_parse(body, &c->a->lim, &emails, &n, &err);
    } else {
        rc = api_email_parse(body, -1, &c->a->lim, &one, &err);
        if (rc == 0) {
            emails = &one;
            n = 1;
        }
    }
    if (rc < 0) {
        json_decref(body);
        api_reply_err(c, &err);
        return;
    }
    if (need_schedule && !emails[0].has_scheduled_at) {
        field_err(&err, 400, -1, "scheduledAt", "scheduledAt: Required");
        goto fail;
    }
    call = api_call_new(c);
    if (call == NULL) {
        api_err_set(&err, 503, "out of memory");
        goto fail;
    }
    call->batch = batch;
    switch (api_idem_begin(call, body, batch)) {
    case API_IDEM_NEW:
        break;
    case API_IDEM_REPLAYED:
    case API_IDEM_FAILED:
        api_call_free(call);
        call = NULL;
        goto done;
    }
    msgs = calloc(n, sizeof(*msgs));
    if (msgs == NULL) {
        api_err_set(&err, 503, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        sp_domain_t dom;
        if (check_email(c, &emails[i], batch ? (int)i : -1, &dom, &err) < 0) {
            goto fail;
        }
        msgs[i] = build_msg(c, &emails[i], &dom);
        if (msgs[i] == NULL) {
            api_err_set(&err, 503, "out of memory");
            goto fail;
        }
    }
    rc = api->submit(c->a->p, msgs, n, true, submitted, call);
    if (rc < 0) {
        api_err_set(&err, 503, "Email could not be queued: %s", api->strerror(rc));
        goto fail;
    }
    /* The core owns the messages now; the answer comes from submitted(). */
    free(msgs);
    msgs = NULL;
    call = NULL;
    goto done;

fail:
    api_call_free(call);
    api_reply_err(c, &err);
done:
    if (msgs != NULL) {
        for (size_t i = 0; i < n; i++) {
            if (msgs[i] != NULL) {
                api->msg_free(msgs[i]);
            }
        }
        free(msgs);
    }
    if (batch) {
        api_email_batch_free(emails, n);
    } else {
        api_email_free(&one);
    }
    json_decref(body);
}

void api_h_send(api_ctx_t *c)
{
    send_emails(c, false, false);
}

void api_h_send_legacy(api_ctx_t *c)
{
    send_emails(c, false, false);
}

void api_h_schedule_legacy(api_ctx_t *c)
{
    send_emails(c, false, true);
}

void api_h_batch(api_ctx_t *c)
{
    send_emails(c, true, false);
}

/* ---- reading ---------------------------------------------------------- */

static void put_time(json_t *o, const char *key, int64_t ms)
{
    char buf[40];
    api_iso8601_format(ms, buf, sizeof(buf));
    json_object_set_new(o, key, json_string(buf));
}

static json_t *str_or_null(const sp_host_api_t *api, const sp_msg_t *m, const char *f)
{
    size_t len;
    const char *v = api->msg_get(m, f, &len);
    return v != NULL ? json_stringn(v, len) : json_null();
}

static json_t *list_json(const sp_host_api_t *api, const sp_msg_t *m, const char *f)
{
    json_t *arr = json_array();
    size_t n = api->msg_count(m, f);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *v = api->msg_get_at(m, f, i, &len);
        if (v != NULL) {
            json_array_append_new(arr, json_stringn(v, len));
        }
    }
    return arr;
}

/* The email object shared by GET and list (§1.6, DECISIONS #6). updatedAt
 * is filled by the caller once the events are known. */
static json_t *email_json(const sp_host_api_t *api, const sp_msg_t *m)
{
    json_t *o = json_object();
    int64_t v;
    const char *st_name = NULL;

    json_object_set_new(o, "id", str_or_null(api, m, SP_F_ID));
    json_object_set_new(o, "teamId", api->msg_get_int(m, SP_F_TEAM, &v) == 0 ? json_integer(v)
                                                                             : json_null());
    json_object_set_new(o, "domainId", api->msg_get_int(m, SP_F_DOMAIN_ID, &v) == 0
                                           ? json_integer(v)
                                           : json_null());
    json_object_set_new(o, "from", str_or_null(api, m, SP_F_FROM));
    json_object_set_new(o, "to", list_json(api, m, SP_F_TO));
    json_object_set_new(o, "cc", list_json(api, m, SP_F_CC));
    json_object_set_new(o, "bcc", list_json(api, m, SP_F_BCC));
    json_object_set_new(o, "replyTo", list_json(api, m, SP_F_REPLY_TO));
    json_object_set_new(o, "subject", str_or_null(api, m, SP_F_SUBJECT));
    json_object_set_new(o, "html", str_or_null(api, m, SP_F_HTML));
    json_object_set_new(o, "text", str_or_null(api, m, SP_F_TEXT));
    if (api->msg_get_int(m, SP_F_STATUS, &v) == 0 && v >= 0 && v < SP_ST__COUNT) {
        st_name = api->status_name((sp_status_t)v);
    }
    json_object_set_new(o, "latestStatus", st_name != NULL ? json_string(st_name) : json_null());
    if (api->msg_get_int(m, SP_F_SCHEDULED_AT, &v) == 0) {
        put_time(o, "scheduledAt", v);
    } else {
        json_object_set_new(o, "scheduledAt", json_null());
    }
    if (api->msg_get_int(m, SP_F_CREATED_AT, &v) != 0) {
        v = 0;
    }
    put_time(o, "createdAt", v);
    put_time(o, "updatedAt", v);
    return o;
}

typedef struct events_ctx {
    const sp_host_api_t *api;
    const char *id;
    json_t *arr; /* NULL: only the latest time is wanted */
    int64_t last;
} events_ctx_t;

static int event_each(void *arg, sp_status_t st, int64_t time_ms, const char *data)
{
    events_ctx_t *ec = arg;
    json_t *ev, *d;
    const char *name;

    if (time_ms > ec->last) {
        ec->last = time_ms;
    }
    if (ec->arr == NULL) {
        return 0;
    }
    ev = json_object();
    name = ec->api->status_name(st);
    json_object_set_new(ev, "emailId", json_string(ec->id));
    json_object_set_new(ev, "status", name != NULL ? json_string(name) : json_null());
    put_time(ev, "createdAt", time_ms);
    d = data != NULL ? json_loads(data, JSON_DECODE_ANY, NULL) : NULL;
    json_object_set_new(ev, "data", d != NULL ? d : json_object());
    json_array_append_new(ec->arr, ev);
    return 0;
}

/* Events (when arr is set) and updatedAt: the time of the latest event. */
static void add_events(const sp_host_api_t *api, json_t *o, bool with_events)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    events_ctx_t ec = {.api = api, .id = id, .arr = with_events ? json_array() : NULL};
    if (id != NULL) {
        (void)api->msg_events(id, event_each, &ec);
    }
    if (ec.last > 0) {
        put_time(o, "updatedAt", ec.last);
    }
    if (with_events) {
        json_object_set_new(o, "emailEvents", ec.arr);
    }
}

/* Load a message of the caller's team (and key domain); 404 otherwise.
 * NULL after an answer was sent. */
static sp_msg_t *load_owned(api_ctx_t *c, const char *id)
{
    const sp_host_api_t *api = c->a->api;
    sp_msg_t *m = NULL;
    int rc;

    if (id == NULL || strlen(id) < 3 || strlen(id) > MAX_EMAIL_ID) {
        api_fail(c, 404, "Email not found");
        return NULL;
    }
    rc = api->msg_load(id, &m);
    if (rc == SP_ENOTFOUND || rc == SP_EINVAL || rc == SP_ECORRUPT) {
        api_fail(c, 404, "Email not found");
        return NULL;
    }
    if (rc < 0) {
        api_fail_rc(c, rc, "Email lookup failed");
        return NULL;
    }
    if (!msg_in_scope(c, m)) {
        api->msg_free(m);
        api_fail(c, 404, "Email not found");
        return NULL;
    }
    return m;
}

void api_h_get(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    sp_msg_t *m = load_owned(c, api->http_param(c->req, "emailId"));
    json_t *o;

    if (m == NULL) {
        return;
    }
    o = email_json(api, m);
    api->msg_free(m);
    add_events(api, o, true);
    api_reply(c, 200, o);
}

typedef struct list_ctx {
    api_ctx_t *c;
    int64_t domain; /* 0: any */
    uint64_t skip, limit, count;
    json_t *data;
} list_ctx_t;

static int list_each(void *arg, const sp_msg_t *m)
{
    list_ctx_t *lc = arg;
    const sp_host_api_t *api = lc->c->a->api;
    int64_t dom = 0;

    if (lc->domain != 0 && (api->msg_get_int(m, SP_F_DOMAIN_ID, &dom) != 0 || dom != lc->domain)) {
        return 0;
    }
    if (lc->count >= lc->skip && lc->count < lc->skip + lc->limit) {
        json_array_append_new(lc->data, email_json(api, m));
    }
    lc->count++;
    return 0;
}

static int query_time(api_ctx_t *c, const char *name, bool *has, int64_t *ms)
{
    const char *v = c->a->api->http_query(c->req, name);
    api_err_t err = {0};
    *has = false;
    if (v == NULL || *v == '\0') {
        return 0;
    }
    if (api_iso8601_parse(v, strlen(v), ms) < 0) {
        field_err(&err, 400, -1, name, "%s: Invalid datetime", name);
        api_reply_err(c, &err);
        return -1;
    }
    *has = true;
    return 0;
}

static int query_int(api_ctx_t *c, const char *name, int64_t lo, int64_t hi, int64_t def,
                     int64_t *out)
{
    const char *v = c->a->api->http_query(c->req, name);
    api_err_t err = {0};
    *out = def;
    if (v == NULL || *v == '\0') {
        return 0;
    }
    if (api_parse_int(v, lo, hi, out) < 0) {
        field_err(&err, 400, -1, name, "%s: Expected an integer from %lld to %lld", name,
                  (long long)lo, (long long)hi);
        api_reply_err(c, &err);
        return -1;
    }
    return 0;
}

void api_h_list(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    list_ctx_t lc = {.c = c};
    int64_t page, limit, dom, from = 0, to = 0, start = 0, end = 0;
    bool has_start, has_end;
    json_t *b;
    size_t i;
    json_t *o;
    int rc;

    if (query_int(c, "page", 1, INT32_MAX, 1, &page) < 0 ||
        query_int(c, "limit", 1, 50, 50, &limit) < 0 ||
        query_int(c, "domainId", 1, INT64_MAX, 0, &dom) < 0 ||
        query_time(c, "startDate", &has_start, &start) < 0 ||
        query_time(c, "endDate", &has_end, &end) < 0) {
        return;
    }
    /* A domain-restricted key sees its domain only, whatever was asked. */
    lc.domain = c->auth.domain_id != 0 ? c->auth.domain_id : dom;
    lc.skip = (uint64_t)(page - 1) * (uint64_t)limit;
    lc.limit = (uint64_t)limit;
    lc.data = json_array();
    /* Both bounds apply (DECISIONS #7); endDate is inclusive. The core's
     * range is [from, to) with 0 meaning unbounded. */
    if (has_start && start > 0) {
        from = start;
    }
    if (has_end) {
        to = end + 1;
    }
    /* No message predates the id epoch (2020-01-01, docs/architecture.md);
     * an end before it is an empty range, not the core's "unbounded". */
    if ((has_end && end < ID_EPOCH_MS) || (has_start && has_end && end < start)) {
        rc = 0; /* an empty range */
    } else {
        rc = api->msg_list(c->auth.team, from, to, 0, list_each, &lc);
    }
    if (rc < 0) {
        json_decref(lc.data);
        api_fail_rc(c, rc, "Listing emails failed");
        return;
    }
    json_array_foreach(lc.data, i, o)
    {
        add_events(api, o, false);
    }
    b = json_object();
    json_object_set_new(b, "data", lc.data);
    json_object_set_new(b, "count", json_integer((json_int_t)lc.count));
    api_reply(c, 200, b);
}

/* ---- reschedule and cancel -------------------------------------------- */

static void changed(void *arg, int status)
{
    api_call_t *call = arg;
    json_t *b;

    if (status == SP_ESTATE) {
        api_fail(&call->c, 400, "Email already processed");
    } else if (status == SP_ENOTFOUND) {
        api_fail(&call->c, 404, "Email not found");
    } else if (status < 0) {
        api_fail_rc(&call->c, status, "Email could not be changed");
    } else {
        b = json_object();
        json_object_set_new(b, "emailId", json_string(call->email_id));
        api_reply(&call->c, 200, b);
    }
    api_call_free(call);
}

/* Load, check ownership, then reschedule (due >= 0) or cancel (due < 0). */
static void change(api_ctx_t *c, bool cancel, int64_t due)
{
    const sp_host_api_t *api = c->a->api;
    const char *id = api->http_param(c->req, "emailId");
    sp_msg_t *m = load_owned(c, id);
    api_call_t *call;
    int rc;

    if (m == NULL) {
        return;
    }
    api->msg_free(m);
    call = api_call_new(c);
    if (call == NULL || (call->email_id = strdup(id)) == NULL) {
        api_call_free(call);
        api_fail(c, 503, "out of memory");
        return;
    }
    if (cancel) {
        rc = api->msg_cancel(id, c->auth.team, changed, call);
    } else {
        rc = api->msg_reschedule(id, c->auth.team, due, changed, call);
    }
    if (rc < 0) {
        /* The callback will not run: answer here. */
        changed(call, rc);
    }
}

void api_h_update(api_ctx_t *c)
{
    api_err_t err = {0};
    json_t *body = body_json(c), *v;
    int64_t due = 0;

    if (body == NULL) {
        return;
    }
    if (!json_is_object(body)) {
        field_err(&err, 400, -1, NULL, "Expected object");
    } else if ((v = json_object_get(body, "scheduledAt")) == NULL || json_is_null(v)) {
        field_err(&err, 400, -1, "scheduledAt", "scheduledAt: Required");
    } else if (!json_is_string(v) ||
               api_iso8601_parse(json_string_value(v), json_string_length(v), &due) < 0) {
        field_err(&err, 400, -1, "scheduledAt", "scheduledAt: Invalid datetime");
    }
    json_decref(body);
    if (err.status != 0) {
        api_reply_err(c, &err);
        return;
    }
    change(c, false, due < 0 ? 0 : due);
}

void api_h_cancel(api_ctx_t *c)
{
    /* No body is needed; the SDK sends {}. */
    change(c, true, -1);
}
