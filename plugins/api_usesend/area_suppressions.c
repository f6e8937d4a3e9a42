/* SPDX-License-Identifier: Apache-2.0 */
/* The suppression list API (beyond upstream, which has it only in the
 * dashboard): GET /api/v1/suppressions (paged, searchable), POST (one
 * address or many), DELETE /api/v1/suppressions/{email}. FULL keys only.
 * The list is the core's (host API suppress_*); see docs/suppressions.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"

#define SUPP_ADDR_MAX 320
#define SUPP_LIMIT_MAX 100
#define SUPP_LIMIT_DEFAULT 50
#define SUPP_BULK_MAX 1000

static const char *const reason_names[] = {
    [SP_SUPPRESS_HARD_BOUNCE] = "HARD_BOUNCE",
    [SP_SUPPRESS_COMPLAINT] = "COMPLAINT",
    [SP_SUPPRESS_MANUAL] = "MANUAL",
};

static json_t *entry_json(const char *email, sp_suppress_reason_t reason, const char *source,
                          int64_t created_ms)
{
    json_t *o = json_object();
    char ts[40];

    api_iso8601_format(created_ms, ts, sizeof(ts));
    json_object_set_new(o, "email", json_string(email));
    json_object_set_new(o, "reason",
                        json_string((unsigned)reason <= SP_SUPPRESS_MANUAL ? reason_names[reason]
                                                                           : "MANUAL"));
    json_object_set_new(o, "source",
                        source != NULL && source[0] != '\0' ? json_string(source) : json_null());
    json_object_set_new(o, "createdAt", json_string(ts));
    return o;
}

/* Trim and lower-case an address as the core stores it; false when it is
 * not one: empty, too long, control characters or spaces inside, or not
 * local@domain. */
static bool addr_norm(const char *in, char out[SUPP_ADDR_MAX + 1])
{
    size_t a = 0, b = strlen(in), n;
    const char *at;

    while (a < b && strchr(" \t\r\n\v\f", in[a]) != NULL) {
        a++;
    }
    while (b > a && strchr(" \t\r\n\v\f", in[b - 1]) != NULL) {
        b--;
    }
    n = b - a;
    if (n == 0 || n > SUPP_ADDR_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[a + i];
        if (ch <= 0x20 || ch == 0x7f || ch == '<' || ch == '>' || ch == ',') {
            return false;
        }
        out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
    }
    out[n] = '\0';
    at = strrchr(out, '@');
    return at != NULL && at != out && at[1] != '\0';
}

/* ---- GET /api/v1/suppressions ----------------------------------------- */

typedef struct list_ctx {
    uint64_t limit, count;
    json_t *data;
} list_ctx_t;

static int list_each(void *arg, const sp_suppression_t *s)
{
    list_ctx_t *lc = arg;

    if (lc->count < lc->limit) {
        json_array_append_new(lc->data,
                              entry_json(s->email, s->reason, s->source, s->created_ms));
    }
    lc->count++;
    return 0;
}

/* An integer query parameter in [lo, hi]; false after answering 400. */
static bool query_num(api_ctx_t *c, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v = c->a->api->http_query(c->req, name);
    char msg[96];

    if (v == NULL || *v == '\0') {
        return true;
    }
    if (api_parse_int(v, lo, hi, out) < 0) {
        snprintf(msg, sizeof(msg), "Expected an integer from %lld to %lld", (long long)lo,
                 (long long)hi);
        api_fail_field(c, name, -1, msg);
        return false;
    }
    return true;
}

void api_h_supp_list(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    const char *search = api->http_query(c->req, "search");
    int64_t page = 1, limit = SUPP_LIMIT_DEFAULT;
    list_ctx_t lc = {0};
    uint64_t skip;
    json_t *b;
    int rc;

    if (!query_num(c, "page", 1, INT32_MAX, &page) ||
        !query_num(c, "limit", 1, SUPP_LIMIT_MAX, &limit)) {
        return;
    }
    if (search != NULL && strlen(search) > SUPP_ADDR_MAX) {
        api_fail_field(c, "search", -1, "At most 320 characters");
        return;
    }
    skip = (uint64_t)(page - 1) * (uint64_t)limit;
    lc.limit = (uint64_t)limit;
    lc.data = json_array();
    rc = api->suppress_list(c->auth.team, search, skip, list_each, &lc);
    if (rc < 0) {
        json_decref(lc.data);
        api_fail_rc(c, rc, "Listing suppressions failed");
        return;
    }
    if (lc.count == 0 && skip > 0) {
        /* Past the end: count what there is. */
        lc.limit = 0;
        rc = api->suppress_list(c->auth.team, search, 0, list_each, &lc);
        if (rc < 0) {
            json_decref(lc.data);
            api_fail_rc(c, rc, "Listing suppressions failed");
            return;
        }
    } else {
        lc.count += skip;
    }
    b = json_object();
    json_object_set_new(b, "data", lc.data);
    json_object_set_new(b, "count", json_integer((json_int_t)lc.count));
    api_reply(c, 200, b);
}

/* ---- POST /api/v1/suppressions ---------------------------------------- */

typedef struct add_req {
    api_call_t *call;
    size_t pending;
    int status;      /* first failure */
    json_t *entries; /* the answer's objects, in request order */
    bool bulk;
} add_req_t;

static void add_done(void *arg, int status)
{
    add_req_t *ar = arg;
    api_call_t *call = ar->call;

    if (status < 0 && ar->status == 0) {
        ar->status = status;
    }
    if (--ar->pending > 0) {
        return;
    }
    if (ar->status < 0) {
        api_fail_rc(&call->c, ar->status, "Adding suppressions failed");
        json_decref(ar->entries);
    } else if (ar->bulk) {
        json_t *b = json_object();
        json_object_set_new(b, "data", ar->entries);
        api_reply(&call->c, 200, b);
    } else {
        json_t *one = json_incref(json_array_get(ar->entries, 0));
        json_decref(ar->entries);
        api_reply(&call->c, 200, one);
    }
    api_call_free(call);
    free(ar);
}

/* The request body as a JSON object, or false after answering. */
static bool body_object(api_ctx_t *c, json_t **out)
{
    const sp_host_api_t *api = c->a->api;
    const char *ct = api->http_header(c->req, "Content-Type");
    api_err_t err = {0};
    size_t len;
    const void *body = api->http_body(c->req, &len);

    if (ct != NULL && strncasecmp(ct, "application/json", 16) != 0) {
        api_fail(c, 400, "Content-Type must be application/json");
        return false;
    }
    if (api_json_parse(body, len, out, &err) < 0) {
        api_reply_err(c, &err);
        return false;
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        api_fail(c, 400, "Expected a JSON object");
        return false;
    }
    return true;
}

/* Collect the addresses of {"email"} or {"emails":[..]} into norm[] (an
 * array of SUPP_ADDR_MAX + 1 strings); false after answering 400. */
static bool collect(api_ctx_t *c, json_t *body, bool *bulk, char (**norm)[SUPP_ADDR_MAX + 1],
                    size_t *n)
{
    json_t *one = json_object_get(body, "email"), *many = json_object_get(body, "emails");
    size_t i;
    json_t *it;

    *bulk = many != NULL;
    if ((one != NULL) == (many != NULL)) {
        api_fail_field(c, "email", -1, "Give either email or emails");
        return false;
    }
    if (*bulk && (!json_is_array(many) || json_array_size(many) == 0 ||
                  json_array_size(many) > SUPP_BULK_MAX)) {
        api_fail_field(c, "emails", -1, "Expected an array of 1 to 1000 addresses");
        return false;
    }
    *n = *bulk ? json_array_size(many) : 1;
    if ((*norm = calloc(*n, sizeof(**norm))) == NULL) {
        api_fail(c, 503, "out of memory");
        return false;
    }
    if (!*bulk) {
        if (!json_is_string(one) || !addr_norm(json_string_value(one), (*norm)[0])) {
            api_fail_field(c, "email", -1, "Invalid email");
            return false;
        }
        return true;
    }
    json_array_foreach(many, i, it)
    {
        if (!json_is_string(it) || !addr_norm(json_string_value(it), (*norm)[i])) {
            api_fail_field(c, "emails", (long)i, "Invalid email");
            return false;
        }
    }
    return true;
}

void api_h_supp_add(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    char (*norm)[SUPP_ADDR_MAX + 1] = NULL;
    sp_suppress_reason_t reason = SP_SUPPRESS_MANUAL;
    json_t *body = NULL, *jr;
    add_req_t *ar = NULL;
    size_t n = 0;
    int64_t now;
    bool bulk;

    if (!body_object(c, &body) || !collect(c, body, &bulk, &norm, &n)) {
        goto out;
    }
    jr = json_object_get(body, "reason");
    if (jr != NULL && !json_is_null(jr)) {
        const char *r = json_string_value(jr);
        size_t i = 0;
        while (i < 3 && (r == NULL || strcmp(r, reason_names[i]) != 0)) {
            i++;
        }
        if (i == 3) {
            api_fail_field(c, "reason", -1,
                           "Invalid enum value. Expected 'HARD_BOUNCE' | 'COMPLAINT' | 'MANUAL'");
            goto out;
        }
        reason = (sp_suppress_reason_t)i;
    }
    ar = calloc(1, sizeof(*ar));
    if (ar == NULL || (ar->call = api_call_new(c)) == NULL ||
        (ar->entries = json_array()) == NULL) {
        if (ar != NULL) {
            api_call_free(ar->call);
        }
        free(ar);
        api_fail(c, 503, "out of memory");
        goto out;
    }
    ar->bulk = bulk;
    ar->pending = 1; /* held until every write is queued */
    now = api->now_ms();
    for (size_t i = 0; i < n; i++) {
        int rc = api->suppress_add(c->a->p, c->auth.team, norm[i], reason, NULL, add_done, ar);
        if (rc < 0) {
            ar->status = ar->status != 0 ? ar->status : rc;
            break;
        }
        ar->pending++;
        json_array_append_new(ar->entries, entry_json(norm[i], reason, NULL, now));
    }
    add_done(ar, 0);
out:
    free(norm);
    json_decref(body);
}

/* ---- DELETE /api/v1/suppressions/{email} ------------------------------ */

static void del_done(void *arg, int status)
{
    api_call_t *call = arg;
    json_t *b;

    if (status == SP_ENOTFOUND) {
        api_fail(&call->c, 404, "Suppression not found");
    } else if (status < 0) {
        api_fail_rc(&call->c, status, "Removing the suppression failed");
    } else {
        b = json_object();
        json_object_set_new(b, "email", json_string(call->email_id));
        json_object_set_new(b, "deleted", json_true());
        api_reply(&call->c, 200, b);
    }
    api_call_free(call);
}

void api_h_supp_del(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    const char *email = api->http_param(c->req, "email");
    char norm[SUPP_ADDR_MAX + 1];
    api_call_t *call;
    int rc;

    /* Anything stored can be removed, even an entry the feed took as a
     * whole "Name <addr>" string: only emptiness and length are checked. */
    size_t a = 0, b = email != NULL ? strlen(email) : 0;
    while (a < b && strchr(" \t\r\n\v\f", email[a]) != NULL) {
        a++;
    }
    while (b > a && strchr(" \t\r\n\v\f", email[b - 1]) != NULL) {
        b--;
    }
    if (b == a || b - a > SUPP_ADDR_MAX) {
        api_fail(c, 404, "Suppression not found");
        return;
    }
    for (size_t i = a; i < b; i++) {
        unsigned char ch = (unsigned char)email[i];
        norm[i - a] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
    }
    norm[b - a] = '\0';
    call = api_call_new(c);
    if (call == NULL || (call->email_id = strdup(norm)) == NULL) {
        api_call_free(call);
        api_fail(c, 503, "out of memory");
        return;
    }
    rc = api->suppress_del(c->a->p, c->auth.team, norm, del_done, call);
    if (rc == SP_EINVAL) {
        rc = SP_ENOTFOUND; /* nothing like it can be stored */
    }
    if (rc < 0) {
        del_done(call, rc);
    }
}
