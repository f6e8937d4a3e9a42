/* SPDX-License-Identifier: Apache-2.0 */
/* Pure validation for the useSend emails API: JSON text in, a checked
 * payload struct or one error (first problem plus every issue) out. */
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* ---- errors ----------------------------------------------------------- */

const char *api_status_code(int status)
{
    switch (status) {
    case 400:
        return "BAD_REQUEST";
    case 401:
        return "UNAUTHORIZED";
    case 403:
        return "FORBIDDEN";
    case 404:
        return "NOT_FOUND";
    case 405:
        return "METHOD_NOT_ALLOWED";
    case 409:
        return "NOT_UNIQUE";
    case 413:
        return "PAYLOAD_TOO_LARGE";
    case 429:
        return "RATE_LIMITED";
    case 503:
        return "SERVICE_UNAVAILABLE";
    default:
        return status >= 400 && status < 500 ? "BAD_REQUEST" : "INTERNAL_SERVER_ERROR";
    }
}

void api_err_set(api_err_t *err, int status, const char *fmt, ...)
{
    va_list ap;
    err->status = status;
    err->code = api_status_code(status);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

void api_err_clear(api_err_t *err)
{
    if (err->issues != NULL) {
        json_decref(err->issues);
    }
    memset(err, 0, sizeof(*err));
}

json_t *api_err_body(const api_err_t *err)
{
    json_t *e = json_object();
    json_t *body = json_object();
    if (e == NULL || body == NULL) {
        json_decref(e);
        json_decref(body);
        return NULL;
    }
    json_object_set_new(e, "code", json_string(err->code != NULL ? err->code
                                                                 : api_status_code(err->status)));
    json_object_set_new(e, "message", json_string(err->message));
    if (err->issues != NULL) {
        json_object_set(e, "issues", err->issues);
    }
    json_object_set_new(body, "error", e);
    return body;
}

int api_json_parse(const void *body, size_t len, json_t **out, api_err_t *err)
{
    json_error_t je;
    json_t *v = NULL;
    *out = NULL;
    if (body != NULL && len > 0) {
        /* DECODE_ANY: a bare scalar is valid JSON and gets a schema error
         * ("Expected object"), as upstream does, rather than "malformed". */
        v = json_loadb(body, len, JSON_DECODE_ANY, &je);
    }
    if (v == NULL) {
        api_err_set(err, 400, "Malformed JSON in request body");
        return SP_EINVAL;
    }
    *out = v;
    return 0;
}

/* ---- issue collection ------------------------------------------------- */

/* One element of an issue path: a member name, or an array index when s is
 * NULL. */
typedef struct pe {
    const char *s;
    long i;
} pe_t;

typedef struct vctx {
    api_err_t *err;
    int index; /* batch element, or -1 */
    bool failed;
    bool oom;
} vctx_t;

static const char *type_name(const json_t *v)
{
    if (v == NULL) {
        return "undefined";
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

static void render_path(const vctx_t *c, const pe_t *path, size_t n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    if (c->index >= 0) {
        o += (size_t)snprintf(buf, len, "emails[%d]", c->index);
    }
    for (size_t k = 0; k < n && o < len; k++) {
        if (path[k].s != NULL) {
            o += (size_t)snprintf(buf + o, len - o, "%s%s", o > 0 ? "." : "", path[k].s);
        } else {
            o += (size_t)snprintf(buf + o, len - o, "[%ld]", path[k].i);
        }
    }
}

static void issue(vctx_t *c, const pe_t *path, size_t n, const char *fmt, ...) SP_PRINTF(4, 5);

static void issue(vctx_t *c, const pe_t *path, size_t n, const char *fmt, ...)
{
    char msg[384], where[128];
    va_list ap;
    json_t *it, *p;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->err->status == 0) {
        render_path(c, path, n, where, sizeof(where));
        if (where[0] != '\0') {
            api_err_set(c->err, 400, "%s: %s", where, msg);
        } else {
            api_err_set(c->err, 400, "%s", msg);
        }
    }
    c->failed = true;
    if (c->err->issues == NULL) {
        c->err->issues = json_array();
    }
    it = json_object();
    p = json_array();
    if (c->err->issues == NULL || it == NULL || p == NULL) {
        json_decref(it);
        json_decref(p);
        c->oom = true;
        return;
    }
    if (c->index >= 0) {
        json_array_append_new(p, json_integer(c->index));
    }
    for (size_t k = 0; k < n; k++) {
        json_array_append_new(p, path[k].s != NULL ? json_string(path[k].s)
                                                   : json_integer(path[k].i));
    }
    json_object_set_new(it, "path", p);
    json_object_set_new(it, "message", json_string(msg));
    json_array_append_new(c->err->issues, it);
}

/* ---- field helpers ---------------------------------------------------- */

static bool has_crlf(const char *s, size_t n)
{
    return memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL;
}

static char *dup_n(vctx_t *c, const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL) {
        c->oom = true;
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* A required or optional non-empty string; header-bound ones refuse CR/LF. */
static char *get_str(vctx_t *c, const json_t *obj, const char *key, bool required,
                     bool header_safe, bool nullable)
{
    const json_t *v = json_object_get(obj, key);
    pe_t path[1] = {{key, 0}};
    const char *s;
    size_t n;

    if (v == NULL || (nullable && json_is_null(v))) {
        if (required) {
            issue(c, path, 1, "Required");
        }
        return NULL;
    }
    if (!json_is_string(v)) {
        issue(c, path, 1, "Expected string, received %s", type_name(v));
        return NULL;
    }
    s = json_string_value(v);
    n = json_string_length(v);
    if (n == 0) {
        issue(c, path, 1, "String must contain at least 1 character(s)");
        return NULL;
    }
    if (header_safe && has_crlf(s, n)) {
        issue(c, path, 1, "Must not contain CR or LF");
        return NULL;
    }
    return dup_n(c, s, n);
}

static int list_add(vctx_t *c, api_strlist_t *l, const char *s, size_t n)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (nv == NULL) {
        c->oom = true;
        return -1;
    }
    l->v = nv;
    l->v[l->n] = dup_n(c, s, n);
    if (l->v[l->n] == NULL) {
        return -1;
    }
    l->n++;
    return 0;
}

static void list_free(api_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* string | string[] of addresses. */
static void get_addrs(vctx_t *c, const json_t *obj, const char *key, bool required,
                      api_strlist_t *out)
{
    const json_t *v = json_object_get(obj, key);
    pe_t path[2] = {{key, 0}, {NULL, 0}};
    size_t i;
    const json_t *it;

    if (v == NULL || (!required && json_is_null(v))) {
        if (required) {
            issue(c, path, 1, "Required");
        }
        return;
    }
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) {
            issue(c, path, 1, "String must contain at least 1 character(s)");
        } else if (has_crlf(json_string_value(v), json_string_length(v))) {
            issue(c, path, 1, "Must not contain CR or LF");
        } else {
            (void)list_add(c, out, json_string_value(v), json_string_length(v));
        }
        return;
    }
    if (!json_is_array(v)) {
        issue(c, path, 1, "Expected string or array of strings, received %s", type_name(v));
        return;
    }
    if (required && json_array_size(v) == 0) {
        issue(c, path, 1, "Array must contain at least 1 element(s)");
        return;
    }
    json_array_foreach(v, i, it)
    {
        path[1].i = (long)i;
        if (!json_is_string(it)) {
            issue(c, path, 2, "Expected string, received %s", type_name(it));
        } else if (json_string_length(it) == 0) {
            issue(c, path, 2, "String must contain at least 1 character(s)");
        } else if (has_crlf(json_string_value(it), json_string_length(it))) {
            issue(c, path, 2, "Must not contain CR or LF");
        } else if (list_add(c, out, json_string_value(it), json_string_length(it)) < 0) {
            return;
        }
    }
}

/* html is coerced to a string as upstream does for the SMTP proxy: numbers
 * become text, booleans and the strings "true"/"false" mean absent. */
static char *get_html(vctx_t *c, const json_t *obj)
{
    const json_t *v = json_object_get(obj, "html");
    pe_t path[1] = {{"html", 0}};
    char num[64];
    const char *s;
    size_t n;

    if (v == NULL || json_is_null(v) || json_is_boolean(v)) {
        return NULL;
    }
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return dup_n(c, num, strlen(num));
    }
    if (json_is_real(v)) {
        snprintf(num, sizeof(num), "%.15g", json_real_value(v));
        return dup_n(c, num, strlen(num));
    }
    if (!json_is_string(v)) {
        issue(c, path, 1, "Expected string, received %s", type_name(v));
        return NULL;
    }
    s = json_string_value(v);
    n = json_string_length(v);
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        return NULL;
    }
    if (n == 0) {
        issue(c, path, 1, "String must contain at least 1 character(s)");
        return NULL;
    }
    return dup_n(c, s, n);
}

static bool is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static void get_headers(vctx_t *c, const json_t *obj, api_strlist_t *out)
{
    const json_t *v = json_object_get(obj, "headers");
    pe_t path[2] = {{"headers", 0}, {NULL, 0}};
    const char *name;
    const json_t *val;

    if (v == NULL || json_is_null(v)) {
        return;
    }
    if (!json_is_object(v)) {
        issue(c, path, 1, "Expected object, received %s", type_name(v));
        return;
    }
    json_object_foreach((json_t *)v, name, val)
    {
        size_t nl = strlen(name), vl;
        char *line;
        bool token = nl > 0;
        path[1].s = name;
        for (size_t k = 0; k < nl && token; k++) {
            token = is_tchar((unsigned char)name[k]);
        }
        if (!token) {
            /* CR/LF in a name is the injection case: say so plainly. */
            issue(c, path, 2, has_crlf(name, nl) ? "Header name must not contain CR or LF"
                                                 : "Invalid header name");
            continue;
        }
        if (!json_is_string(val)) {
            issue(c, path, 2, "Expected string, received %s", type_name(val));
            continue;
        }
        vl = json_string_length(val);
        if (vl == 0) {
            issue(c, path, 2, "String must contain at least 1 character(s)");
            continue;
        }
        if (has_crlf(json_string_value(val), vl)) {
            issue(c, path, 2, "Header value must not contain CR or LF");
            continue;
        }
        line = malloc(nl + 2 + vl + 1);
        if (line == NULL) {
            c->oom = true;
            return;
        }
        memcpy(line, name, nl);
        memcpy(line + nl, ": ", 2);
        memcpy(line + nl + 2, json_string_value(val), vl + 1);
        if (list_add(c, out, line, nl + 2 + vl) < 0) {
            free(line);
            return;
        }
        free(line);
    }
}

static void get_variables(vctx_t *c, const json_t *obj, char **out)
{
    const json_t *v = json_object_get(obj, "variables");
    pe_t path[2] = {{"variables", 0}, {NULL, 0}};
    const char *name;
    const json_t *val;
    bool ok = true;

    if (v == NULL || json_is_null(v)) {
        return;
    }
    if (!json_is_object(v)) {
        issue(c, path, 1, "Expected object, received %s", type_name(v));
        return;
    }
    json_object_foreach((json_t *)v, name, val)
    {
        if (!json_is_string(val)) {
            path[1].s = name;
            issue(c, path, 2, "Expected string, received %s", type_name(val));
            ok = false;
        }
    }
    if (ok) {
        *out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        if (*out == NULL) {
            c->oom = true;
        }
    }
}

static void get_attachments(vctx_t *c, const json_t *obj, const api_limits_t *lim,
                            api_email_t *e)
{
    const json_t *v = json_object_get(obj, "attachments");
    pe_t path[3] = {{"attachments", 0}, {NULL, 0}, {NULL, 0}};
    uint64_t total = 0;
    size_t i;
    const json_t *it;

    if (v == NULL || json_is_null(v)) {
        return;
    }
    if (!json_is_array(v)) {
        issue(c, path, 1, "Expected array, received %s", type_name(v));
        return;
    }
    if (json_array_size(v) > API_MAX_ATTACHMENTS) {
        issue(c, path, 1, "Array must contain at most %d element(s)", API_MAX_ATTACHMENTS);
        return;
    }
    e->attachments = calloc(json_array_size(v) + 1, sizeof(*e->attachments));
    if (e->attachments == NULL) {
        c->oom = true;
        return;
    }
    json_array_foreach(v, i, it)
    {
        const json_t *fn, *ct;
        api_attachment_t *a;
        size_t fl;
        int rc;
        uint64_t room;

        path[1].i = (long)i;
        if (!json_is_object(it)) {
            issue(c, path, 2, "Expected object, received %s", type_name(it));
            continue;
        }
        fn = json_object_get(it, "filename");
        ct = json_object_get(it, "content");
        path[2].s = "filename";
        if (fn == NULL) {
            issue(c, path, 3, "Required");
        } else if (!json_is_string(fn)) {
            issue(c, path, 3, "Expected string, received %s", type_name(fn));
            fn = NULL;
        } else if ((fl = json_string_length(fn)) == 0) {
            issue(c, path, 3, "String must contain at least 1 character(s)");
            fn = NULL;
        } else if (has_crlf(json_string_value(fn), fl)) {
            issue(c, path, 3, "Must not contain CR or LF");
            fn = NULL;
        }
        path[2].s = "content";
        if (ct == NULL) {
            issue(c, path, 3, "Required");
            continue;
        }
        if (!json_is_string(ct)) {
            issue(c, path, 3, "Expected string, received %s", type_name(ct));
            continue;
        }
        if (json_string_length(ct) == 0) {
            issue(c, path, 3, "String must contain at least 1 character(s)");
            continue;
        }
        if (fn == NULL) {
            continue;
        }
        a = &e->attachments[e->nattachments];
        room = lim->max_attachments_total - total;
        rc = api_b64_decode(json_string_value(ct), json_string_length(ct),
                            lim->max_attachment_size < room ? lim->max_attachment_size : room,
                            &a->data, &a->len);
        if (rc == SP_ETOOBIG) {
            if (lim->max_attachment_size <= room) {
                issue(c, path, 3, "Attachment \"%s\" is larger than %llu bytes",
                      json_string_value(fn), (unsigned long long)lim->max_attachment_size);
            } else {
                issue(c, path, 3, "Attachments are larger than %llu bytes in total",
                      (unsigned long long)lim->max_attachments_total);
            }
            continue;
        }
        if (rc == SP_ENOMEM) {
            c->oom = true;
            return;
        }
        if (rc < 0) {
            issue(c, path, 3, "Invalid base64 in attachment \"%s\"", json_string_value(fn));
            continue;
        }
        total += a->len;
        a->filename = dup_n(c, json_string_value(fn), json_string_length(fn));
        e->nattachments++;
        if (a->filename == NULL) {
            return;
        }
    }
}

static void get_scheduled(vctx_t *c, const json_t *obj, api_email_t *e)
{
    const json_t *v = json_object_get(obj, "scheduledAt");
    pe_t path[1] = {{"scheduledAt", 0}};
    if (v == NULL || json_is_null(v)) {
        return;
    }
    if (!json_is_string(v)) {
        issue(c, path, 1, "Expected string, received %s", type_name(v));
        return;
    }
    if (api_iso8601_parse(json_string_value(v), json_string_length(v), &e->scheduled_at) < 0) {
        issue(c, path, 1, "Invalid datetime");
        return;
    }
    e->has_scheduled_at = true;
}

/* ---- payloads --------------------------------------------------------- */

void api_email_free(api_email_t *e)
{
    if (e == NULL) {
        return;
    }
    free(e->from);
    list_free(&e->to);
    list_free(&e->cc);
    list_free(&e->bcc);
    list_free(&e->reply_to);
    free(e->subject);
    free(e->text);
    free(e->html);
    list_free(&e->headers);
    for (size_t i = 0; i < e->nattachments; i++) {
        free(e->attachments[i].filename);
        free(e->attachments[i].data);
    }
    free(e->attachments);
    free(e->in_reply_to_id);
    free(e->template_id);
    free(e->variables_json);
    memset(e, 0, sizeof(*e));
}

static int email_parse(vctx_t *c, const json_t *obj, const api_limits_t *lim, api_email_t *e)
{
    memset(e, 0, sizeof(*e));
    if (!json_is_object(obj)) {
        issue(c, NULL, 0, "Expected object, received %s", type_name(obj));
        return SP_EINVAL;
    }
    get_addrs(c, obj, "to", true, &e->to);
    e->from = get_str(c, obj, "from", true, true, false);
    e->subject = get_str(c, obj, "subject", false, true, false);
    e->template_id = get_str(c, obj, "templateId", false, false, false);
    get_variables(c, obj, &e->variables_json);
    get_addrs(c, obj, "replyTo", false, &e->reply_to);
    get_addrs(c, obj, "cc", false, &e->cc);
    get_addrs(c, obj, "bcc", false, &e->bcc);
    e->text = get_str(c, obj, "text", false, false, true);
    e->html = get_html(c, obj);
    get_headers(c, obj, &e->headers);
    get_attachments(c, obj, lim, e);
    get_scheduled(c, obj, e);
    e->in_reply_to_id = get_str(c, obj, "inReplyToId", false, false, true);
    /* Object rules; a template alone is enough (DECISIONS #9). Checked only
     * when the members themselves were well-formed, as zod refines after
     * the shape passed. */
    if (!c->failed && e->subject == NULL && e->template_id == NULL) {
        issue(c, NULL, 0, "Either subject or templateId must be provided.");
    }
    if (!c->failed && e->text == NULL && e->html == NULL && e->template_id == NULL) {
        issue(c, NULL, 0, "Either text or html content must be provided.");
    }
    if (c->oom) {
        api_email_free(e);
        return SP_ENOMEM;
    }
    if (c->failed) {
        api_email_free(e);
        return SP_EINVAL;
    }
    return 0;
}

int api_email_parse(const json_t *obj, int index, const api_limits_t *lim, api_email_t *out,
                    api_err_t *err)
{
    vctx_t c = {.err = err, .index = index};
    int rc = email_parse(&c, obj, lim, out);
    if (rc == SP_ENOMEM) {
        api_err_set(err, 500, "out of memory");
    }
    return rc;
}

void api_email_batch_free(api_email_t *v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        api_email_free(&v[i]);
    }
    free(v);
}

int api_email_batch_parse(const json_t *arr, const api_limits_t *lim, api_email_t **out,
                          size_t *n, api_err_t *err)
{
    vctx_t c = {.err = err, .index = -1};
    api_email_t *v;
    size_t cnt;

    *out = NULL;
    *n = 0;
    if (!json_is_array(arr)) {
        issue(&c, NULL, 0, "Expected array, received %s", type_name(arr));
        return SP_EINVAL;
    }
    cnt = json_array_size(arr);
    if (cnt == 0) {
        api_err_set(err, 400, "No emails provided for bulk send");
        return SP_EINVAL;
    }
    if (cnt > API_MAX_BATCH) {
        issue(&c, NULL, 0, "Cannot send more than %d emails in a single bulk request",
              API_MAX_BATCH);
        return SP_EINVAL;
    }
    v = calloc(cnt, sizeof(*v));
    if (v == NULL) {
        api_err_set(err, 500, "out of memory");
        return SP_ENOMEM;
    }
    for (size_t i = 0; i < cnt; i++) {
        vctx_t ec = {.err = err, .index = (int)i};
        int r = email_parse(&ec, json_array_get(arr, i), lim, &v[i]);
        if (r == SP_ENOMEM) {
            api_email_batch_free(v, cnt);
            api_err_clear(err);
            api_err_set(err, 500, "out of memory");
            return SP_ENOMEM;
        }
        if (r < 0) {
            c.failed = true;
        }
    }
    if (c.failed) {
        api_email_batch_free(v, cnt);
        return SP_EINVAL;
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* ---- ISO 8601 --------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    *y = (int64_t)yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y += *m <= 2;
}

static int digits(const char *s, size_t len, size_t at, size_t n, unsigned *out)
{
    unsigned v = 0;
    if (at + n > len) {
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        if (s[at + k] < '0' || s[at + k] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned)(s[at + k] - '0');
    }
    *out = v;
    return 0;
}

static bool leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int api_iso8601_parse(const char *s, size_t len, int64_t *ms)
{
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, mo, d, h, mi, se, oh = 0, om = 0, frac = 0;
    size_t p = 19;
    int64_t t, off = 0;

    if (s == NULL || digits(s, len, 0, 4, &y) < 0 || len < 20 || s[4] != '-' ||
        digits(s, len, 5, 2, &mo) < 0 || s[7] != '-' || digits(s, len, 8, 2, &d) < 0 ||
        s[10] != 'T' || digits(s, len, 11, 2, &h) < 0 || s[13] != ':' ||
        digits(s, len, 14, 2, &mi) < 0 || s[16] != ':' || digits(s, len, 17, 2, &se) < 0) {
        return SP_EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap(y)) || h > 23 ||
        mi > 59 || se > 59) {
        return SP_EINVAL;
    }
    if (s[p] == '.') {
        size_t nd = 0;
        p++;
        while (p < len && s[p] >= '0' && s[p] <= '9') {
            /* Milliseconds kept; further digits are checked and dropped. */
            if (nd < 3) {
                frac = frac * 10 + (unsigned)(s[p] - '0');
            }
            nd++;
            p++;
        }
        if (nd == 0 || nd > 9) {
            return SP_EINVAL;
        }
        for (; nd < 3; nd++) {
            frac *= 10;
        }
    }
    if (p < len && s[p] == 'Z') {
        p++;
    } else if (p < len && (s[p] == '+' || s[p] == '-')) {
        int sign = s[p] == '-' ? -1 : 1;
        if (digits(s, len, p + 1, 2, &oh) < 0) {
            return SP_EINVAL;
        }
        p += 3;
        if (p < len && s[p] == ':') {
            if (digits(s, len, p + 1, 2, &om) < 0) {
                return SP_EINVAL;
            }
            p += 3;
        } else if (p < len) {
            if (digits(s, len, p, 2, &om) < 0) {
                return SP_EINVAL;
            }
            p += 2;
        }
        if (oh > 23 || om > 59) {
            return SP_EINVAL;
        }
        off = sign * ((int64_t)oh * 60 + om) * 60000;
    } else {
        return SP_EINVAL;
    }
    if (p != len) {
        return SP_EINVAL;
    }
    t = days_from_civil(y, mo, d) * 86400000 + ((int64_t)h * 3600 + mi * 60 + se) * 1000 + frac;
    *ms = t - off;
    return 0;
}

void api_iso8601_format(int64_t ms, char *buf, size_t len)
{
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t rem = ms - days * 86400000, y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ", (long long)y, m, d,
             (long long)(rem / 3600000), (long long)(rem / 60000 % 60),
             (long long)(rem / 1000 % 60), (long long)(rem % 1000));
}

/* ---- base64 ----------------------------------------------------------- */

static bool b64_char(unsigned char ch)
{
    return isalnum(ch) || ch == '+' || ch == '/';
}

int api_b64_decode(const char *s, size_t len, uint64_t max, unsigned char **out, size_t *outlen)
{
    size_t pad = 0, dlen;
    unsigned char *buf;
    int n;

    *out = NULL;
    *outlen = 0;
    if (len % 4 != 0) {
        return SP_EINVAL;
    }
    if (len == 0) {
        return 0;
    }
    if (len > INT_MAX) {
        return SP_ETOOBIG;
    }
    if (s[len - 1] == '=') {
        pad = s[len - 2] == '=' ? 2 : 1;
    }
    /* EVP_DecodeBlock alone skips surrounding whitespace and reads '=' as a
     * zero digit anywhere; the alphabet and padding position are checked
     * here first so only canonical RFC 4648 text is accepted. */
    for (size_t k = 0; k < len - pad; k++) {
        if (!b64_char((unsigned char)s[k])) {
            return SP_EINVAL;
        }
    }
    dlen = len / 4 * 3 - pad;
    if (dlen > max) {
        return SP_ETOOBIG;
    }
    buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL) {
        return SP_ENOMEM;
    }
    n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
    if (n < 0 || (size_t)n != len / 4 * 3) {
        free(buf);
        return SP_EINVAL;
    }
    *out = buf;
    *outlen = dlen;
    return 0;
}

/* ---- from domain, bearer, permissions, fingerprint --------------------- */

int api_from_domain(const char *from, char *dom, size_t domlen)
{
    const char *lt = strchr(from, '<'), *addr = from, *end = from + strlen(from), *at;
    size_t n;

    if (lt != NULL) {
        const char *gt = strchr(lt + 1, '>');
        if (gt == NULL) {
            return SP_EINVAL;
        }
        addr = lt + 1;
        end = gt;
    }
    at = NULL;
    for (const char *q = addr; q < end; q++) {
        if (*q == '@') {
            at = q;
        }
    }
    if (at == NULL || at == addr) {
        return SP_EINVAL;
    }
    n = (size_t)(end - at - 1);
    if (n == 0 || n >= domlen) {
        return SP_EINVAL;
    }
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)at[1 + k];
        if (ch <= ' ' || ch == '@' || ch == '<' || ch == '>' || ch == 0x7f) {
            return SP_EINVAL;
        }
        dom[k] = (char)tolower(ch);
    }
    dom[n] = '\0';
    return 0;
}

int api_bearer_token(const char *header, const char **tok, size_t *len)
{
    const char *sp, *end;
    if (header == NULL) {
        return SP_ENOTFOUND;
    }
    /* As upstream: split on single spaces and take element 1. */
    sp = strchr(header, ' ');
    if (sp == NULL) {
        return SP_ENOTFOUND;
    }
    sp++;
    end = strchr(sp, ' ');
    *len = end != NULL ? (size_t)(end - sp) : strlen(sp);
    *tok = sp;
    return *len > 0 ? 0 : SP_ENOTFOUND;
}

bool api_perm_allows(sp_permission_t perm, api_access_t need)
{
    switch (perm) {
    case SP_PERM_FULL:
        return true;
    case SP_PERM_SENDING:
        return need == API_ACCESS_SEND || need == API_ACCESS_READ;
    }
    return false;
}

int api_fingerprint(const json_t *v, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char *txt = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (txt == NULL) {
        return SP_ENOMEM;
    }
    if (EVP_Digest(txt, strlen(txt), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        free(txt);
        return SP_ENOMEM;
    }
    free(txt);
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    return 0;
}

bool api_idem_key_ok(const char *key)
{
    size_t n = key != NULL ? strlen(key) : 0;
    return n >= 1 && n <= API_IDEM_KEY_MAX;
}

int api_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v;
    if (s == NULL || *s == '\0' || !(isdigit((unsigned char)*s) || *s == '-')) {
        return SP_EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        return SP_EINVAL;
    }
    *out = v;
    return 0;
}
