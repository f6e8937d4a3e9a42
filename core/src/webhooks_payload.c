/* SPDX-License-Identifier: Apache-2.0 */
/* The pure parts of outgoing webhooks: event names, URL check, backoff,
 * signature, and the JSON bodies of contract §5.6. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sp_core/msg.h"
#include "sp_core/webhooks.h"

const char *const sp__wh_event_types[] = {
    "email.queued",         "email.scheduled",  "email.sent",
    "email.delivery_delayed", "email.delivered", "email.bounced",
    "email.rejected",       "email.rendering_failure", "email.complained",
    "email.failed",         "email.cancelled",  "email.suppressed",
    "email.opened",         "email.clicked",    "contact.created",
    "contact.updated",      "contact.deleted",  "domain.created",
    "domain.verified",      "domain.updated",   "domain.deleted",
    "webhook.test",         NULL};

static const char *const g_state_names[] = {"ACTIVE", "PAUSED", "AUTO_DISABLED"};
static const char *const g_call_names[] = {"PENDING", "DELIVERED", "FAILED", "DISCARDED"};

const char *sp__wh_state_name(int st)
{
    return st >= 0 && st < 3 ? g_state_names[st] : NULL;
}

int sp__wh_state_parse(const char *s)
{
    for (int i = 0; s && i < 3; i++) {
        if (strcmp(s, g_state_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *sp__whc_state_name(int st)
{
    return st >= 0 && st < 4 ? g_call_names[st] : "UNKNOWN";
}

const char *sp__wh_event_type(sp_status_t st)
{
    static const char *const names[SP_ST__COUNT] = {
        [SP_ST_SCHEDULED] = "email.scheduled",
        [SP_ST_CANCELLED] = "email.cancelled",
        [SP_ST_RENDERING_FAILURE] = "email.rendering_failure",
        [SP_ST_QUEUED] = "email.queued",
        [SP_ST_SENT] = "email.sent",
        [SP_ST_REJECTED] = "email.rejected",
        [SP_ST_DELIVERY_DELAYED] = "email.delivery_delayed",
        [SP_ST_DELIVERED] = "email.delivered",
        [SP_ST_BOUNCED] = "email.bounced",
        [SP_ST_OPENED] = "email.opened",
        [SP_ST_CLICKED] = "email.clicked",
        [SP_ST_COMPLAINED] = "email.complained",
        [SP_ST_FAILED] = "email.failed",
        [SP_ST_SUPPRESSED] = "email.suppressed",
    };
    return (unsigned)st < SP_ST__COUNT ? names[st] : NULL;
}

bool sp__wh_event_known(const char *type)
{
    for (size_t i = 0; type && sp__wh_event_types[i]; i++) {
        if (strcmp(type, sp__wh_event_types[i]) == 0) {
            return true;
        }
    }
    return false;
}

bool sp__wh_url_ok(const char *url)
{
    const char *host;
    size_t n;

    if (!url || (n = strlen(url)) > SP_WH_URL_MAX) {
        return false;
    }
    if (strncmp(url, "https://", 8) == 0) {
        host = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        host = url + 7;
    } else {
        return false;
    }
    if (*host == '\0' || *host == '/' || *host == ':' || *host == '?' || *host == '#' ||
        *host == '@') {
        return false;
    }
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

uint64_t sp__wh_backoff(uint64_t base_ms, uint64_t max_ms, uint32_t attempt, uint32_t rnd)
{
    uint64_t d = base_ms;

    for (uint32_t i = 1; i < attempt && d < max_ms; i++) {
        d *= 2;
    }
    if (d > max_ms) {
        d = max_ms;
    }
    /* Full range [d/2, d]: retries of many calls spread out. */
    return d / 2 + (d - d / 2) * (uint64_t)rnd / UINT32_MAX;
}

int sp__wh_sign(const char *secret, int64_t ts_ms, const char *body, size_t len,
                char out[SP_WH_SIG_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    char ts[24];
    int tl = snprintf(ts, sizeof(ts), "%lld.", (long long)ts_ms);
    char *buf = malloc((size_t)tl + len + 1);

    if (!buf) {
        return SP_ENOMEM;
    }
    memcpy(buf, ts, (size_t)tl);
    memcpy(buf + tl, body, len);
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)buf,
              (size_t)tl + len, mac, &ml) ||
        ml != 32) {
        free(buf);
        return SP_ENOMEM;
    }
    free(buf);
    memcpy(out, "v1=", 3);
    for (unsigned i = 0; i < 32; i++) {
        out[3 + 2 * i] = hex[mac[i] >> 4];
        out[3 + 2 * i + 1] = hex[mac[i] & 15];
    }
    out[SP_WH_SIG_LEN] = '\0';
    return 0;
}

void sp__wh_iso(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms < 0 || !gmtime_r(&t, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    char buf[96];
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    snprintf(out, 32, "%.31s", buf);
}

/* Copy event member `from` (a string) to obj[to] when present. */
static void copy_str(json_t *obj, const char *to, const json_t *ev, const char *from)
{
    const json_t *v = json_object_get(ev, from);

    if (json_is_string(v)) {
        json_object_set_new(obj, to, json_string(json_string_value(v)));
    }
}

/* SES's sub-object shape (sendpipe's own tracking and delivery emit the
 * same): bounce{bounceType, bounceSubType, bouncedRecipients[].diagnosticCode},
 * open/click{timestamp, userAgent, ipAddress, link}. */
static void add_detail(json_t *d, sp_status_t st, const json_t *ev)
{
    json_t *o;

    if (!json_is_object(ev)) {
        return;
    }
    if (st == SP_ST_BOUNCED && (o = json_object())) {
        const json_t *r0 = json_array_get(json_object_get(ev, "bouncedRecipients"), 0);
        copy_str(o, "type", ev, "bounceType");
        copy_str(o, "subType", ev, "bounceSubType");
        if (json_is_string(json_object_get(ev, "message"))) {
            copy_str(o, "message", ev, "message");
        } else if (json_is_string(json_object_get(r0, "diagnosticCode"))) {
            copy_str(o, "message", r0, "diagnosticCode");
        } else {
            json_object_set_new(o, "message", json_string(""));
        }
        json_object_set_new(d, "bounce", o);
    } else if ((st == SP_ST_OPENED || st == SP_ST_CLICKED) && (o = json_object())) {
        copy_str(o, "timestamp", ev, "timestamp");
        if (st == SP_ST_CLICKED) {
            copy_str(o, "url", ev, "link");
        }
        copy_str(o, "userAgent", ev, "userAgent");
        copy_str(o, "ip", ev, "ipAddress");
        json_object_set_new(d, st == SP_ST_OPENED ? "open" : "click", o);
    }
    copy_str(d, "error", ev, "error");
}

/* A string field as JSON, "" when absent or not UTF-8. */
static json_t *jfield(const sp_msg_t *m, const char *field)
{
    size_t l = 0;
    const char *v = sp__msg_get(m, field, &l);
    json_t *j = v ? json_stringn(v, l) : NULL;

    return j ? j : json_string("");
}

char *sp__wh_email_data(const sp_msg_t *m, uint64_t id, sp_status_t st, int64_t when,
                        const char *event)
{
    char ids[SP_ID_STRLEN + 1], iso[32];
    const char *status = sp__status_name(st);
    json_t *d = json_object(), *to = json_array(), *ev = NULL;
    int64_t dom = 0;
    size_t n = sp__msg_count(m, SP_F_TO);
    char *out;

    if (!d || !to) {
        json_decref(d);
        json_decref(to);
        return NULL;
    }
    sp__id_str(id, ids);
    sp__wh_iso(when, iso);
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *v = sp__msg_get_at(m, SP_F_TO, i, &l);
        json_t *j = v ? json_stringn(v, l) : NULL;
        json_array_append_new(to, j ? j : json_string(""));
    }
    json_object_set_new(d, "id", json_string(ids));
    json_object_set_new(d, "status", json_string(status ? status : "UNKNOWN"));
    json_object_set_new(d, "from", jfield(m, SP_F_FROM));
    json_object_set_new(d, "to", to);
    json_object_set_new(d, "occurredAt", json_string(iso));
    if (sp__msg_get_int(m, SP_F_DOMAIN_ID, &dom) == 0 && dom > 0) {
        json_object_set_new(d, "domainId", json_integer(dom));
    } else {
        json_object_set_new(d, "domainId", json_null());
    }
    json_object_set_new(d, "subject", jfield(m, SP_F_SUBJECT));
    if (event) {
        ev = json_loads(event, JSON_DECODE_ANY, NULL);
    }
    add_detail(d, st, ev);
    json_decref(ev);
    out = json_dumps(d, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(d);
    return out;
}

char *sp__wh_body(uint64_t call_id, const char *type, const char *version, int64_t created_ms,
                  int64_t team, const char *data_json, uint32_t attempt)
{
    char cid[24], iso[32];
    json_t *data = data_json ? json_loads(data_json, JSON_DECODE_ANY, NULL) : json_object();
    json_t *b;
    char *out;

    if (!data) {
        return NULL;
    }
    snprintf(cid, sizeof(cid), "%llu", (unsigned long long)call_id);
    sp__wh_iso(created_ms, iso);
    b = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:i}", "id", cid, "type", type, "version",
                  version && *version ? version : SP_WH_VERSION, "createdAt", iso, "teamId",
                  (json_int_t)team, "data", data, "attempt", (int)attempt);
    if (!b) {
        return NULL;
    }
    out = json_dumps(b, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(b);
    return out;
}
