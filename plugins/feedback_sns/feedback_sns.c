/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L
/* feedback_sns: the Amazon SNS endpoint for SES event feedback,
 * `POST /api/ses_callback` (and `GET`, which answers {"data":"Hello"} as
 * upstream's check expects).
 *
 * A POST is checked in this order, and nothing is recorded or fetched until
 * every earlier step passed: body size and JSON shape (413/400), TopicArn in
 * the allow-list (403), SigningCertURL shape (https, sns.<region>.amazonaws.com,
 * *.pem; 403 without fetching), the certificate (memory cache, then the
 * plugin's key/value store, then the `certificates` directory, then a fetch;
 * every copy is chain-, expiry- and name-checked at each use; 503 if it
 * cannot be had now), the signature (403). Then by Type:
 *  - Notification: the Message is an SES event; its status is recorded with
 *    emit_status and the answer (200) waits for that commit, so a store
 *    failure (500) makes SNS retry. The SNS MessageId is remembered after the
 *    commit, so a redelivery is recorded once.
 *  - SubscriptionConfirmation: the SubscribeURL (an SNS host again) is
 *    fetched; 200 once AWS answered 200.
 *  - UnsubscribeConfirmation: logged. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ses_event.h"
#include "sns_verify.h"

#define FSNS_MAX_CERTS 64
#define FSNS_MAX_PEM ((size_t)64 << 10)
#define FSNS_MAX_EXTRA 32

typedef struct fsns_conf {
    char *topic_arns;
    bool allow_any_topic;
    char *certificates;
    char *trust_ca_file;
    bool check_cert_expiry;
    uint64_t max_body_size;
    uint64_t fetch_timeout;
} fsns_conf_t;

typedef struct cert_entry {
    char *url;
    X509 *leaf;
    STACK_OF(X509) *chain;
    struct cert_entry *next;
} cert_entry_t;

typedef struct op op_t;

typedef struct fsns {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const fsns_conf_t *conf;
    X509_STORE *store;
    STACK_OF(X509) *extra; /* intermediates from the certificates directory */
    char **topics;
    size_t ntopics;
    cert_entry_t *certs;
    size_t ncerts;
    op_t *ops; /* requests waiting for a fetch or a commit */
} fsns_t;

struct op {
    fsns_t *s;
    sp_http_req_t *req;
    sns_msg_t m;
    ses_event_t ev;
    char msg_id[128];
    char *mid_key;
    size_t mid_klen;
    uint64_t fetch;
    bool fetching;
    char *pem;         /* the signing certificate while its issuer is fetched */
    size_t pem_len;
    bool pem_fetched;  /* it came from SigningCertURL: keep it in the kv store */
    bool aia_tried;
    op_t *prev, *next;
};

static const sp_conf_item_t fsns_schema[] = {
    {SP_CONF_STR, "topic_arns", offsetof(fsns_conf_t, topic_arns), "", 0,
     "comma-separated SNS TopicArns whose messages are accepted"},
    {SP_CONF_BOOL, "allow_any_topic", offsetof(fsns_conf_t, allow_any_topic), "false", 0,
     "accept every TopicArn (any AWS account's signed topic could then post events)"},
    {SP_CONF_STR, "certificates", offsetof(fsns_conf_t, certificates), "", 0,
     "directory of signing certificates named <sha256 hex of SigningCertURL>.pem, used "
     "as already fetched; other .pem files there are intermediate CA certificates"},
    {SP_CONF_STR, "trust_ca_file", offsetof(fsns_conf_t, trust_ca_file), "", 0,
     "trust only this PEM file's certificates instead of the system store (tests)"},
    {SP_CONF_BOOL, "check_cert_expiry", offsetof(fsns_conf_t, check_cert_expiry), "true", 0,
     "refuse signing certificates outside their validity period"},
    {SP_CONF_SIZE, "max_body_size", offsetof(fsns_conf_t, max_body_size), "256K", 0,
     "largest SNS POST body accepted (413 above)"},
    {SP_CONF_DURATION, "fetch_timeout", offsetof(fsns_conf_t, fetch_timeout), "10s", 0,
     "time limit of a certificate or SubscribeURL fetch"},
    {0},
};

/* ---- answers ------------------------------------------------------------ */

static const char *status_code(int status)
{
    switch (status) {
    case 400:
        return "BAD_REQUEST";
    case 403:
        return "FORBIDDEN";
    case 413:
        return "PAYLOAD_TOO_LARGE";
    case 502:
        return "BAD_GATEWAY";
    case 503:
        return "SERVICE_UNAVAILABLE";
    default:
        return status < 500 ? "BAD_REQUEST" : "INTERNAL_SERVER_ERROR";
    }
}

static void respond_json(fsns_t *s, sp_http_req_t *req, int status, json_t *body)
{
    char *txt = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (txt == NULL) {
        static const char oom[] =
            "{\"error\":{\"code\":\"INTERNAL_SERVER_ERROR\",\"message\":\"out of memory\"}}";
        s->api->http_respond(req, 500, "application/json", oom, sizeof(oom) - 1);
    } else {
        s->api->http_respond(req, status, "application/json", txt, strlen(txt));
    }
    free(txt);
    json_decref(body);
}

static void respond_ok(fsns_t *s, sp_http_req_t *req, const char *data)
{
    respond_json(s, req, 200, json_pack("{s:s}", "data", data));
}

static void respond_err(fsns_t *s, sp_http_req_t *req, int status, const char *msg)
{
    respond_json(s, req, status,
                 json_pack("{s:{s:s,s:s}}", "error", "code", status_code(status), "message",
                           msg));
}

/* ---- request state -------------------------------------------------------- */

static op_t *op_new(fsns_t *s, sp_http_req_t *req)
{
    op_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return NULL;
    }
    op->s = s;
    op->req = req;
    op->next = s->ops;
    if (s->ops != NULL) {
        s->ops->prev = op;
    }
    s->ops = op;
    return op;
}

static void op_free(op_t *op)
{
    fsns_t *s = op->s;
    if (op->prev != NULL) {
        op->prev->next = op->next;
    } else {
        s->ops = op->next;
    }
    if (op->next != NULL) {
        op->next->prev = op->prev;
    }
    sns_msg_free(&op->m);
    ses_event_free(&op->ev);
    free(op->mid_key);
    free(op->pem);
    free(op);
}

/* Answer and end the request. */
static void op_done_err(op_t *op, int status, const char *msg)
{
    respond_err(op->s, op->req, status, msg);
    op_free(op);
}

static void op_done_ok(op_t *op, const char *data)
{
    respond_ok(op->s, op->req, data);
    op_free(op);
}

static bool mid_in_flight(fsns_t *s, const op_t *self)
{
    for (op_t *o = s->ops; o != NULL; o = o->next) {
        if (o != self && o->mid_key != NULL && self->mid_key != NULL &&
            o->mid_klen == self->mid_klen && memcmp(o->mid_key, self->mid_key, o->mid_klen) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- notifications ------------------------------------------------------- */

static void mid_stored(void *arg, int status)
{
    op_t *op = arg;
    if (status < 0) {
        /* The event is committed; only the duplicate guard is missing. */
        op->s->api->log(op->s->p, SP_LOG_WARN, "remembering SNS MessageId failed: %s",
                        op->s->api->strerror(status));
    }
    op_done_ok(op, "Success");
}

static void emitted(void *arg, int status)
{
    op_t *op = arg;
    fsns_t *s = op->s;
    const sp_host_api_t *api = s->api;

    if (status == SP_ENOTFOUND) {
        api->log(s->p, SP_LOG_INFO, "SES %s event for unknown message %s ignored", op->ev.type,
                 op->msg_id);
        op_done_ok(op, "Success");
        return;
    }
    if (status < 0) {
        api->log(s->p, SP_LOG_ERROR, "recording SES %s event for %s failed: %s", op->ev.type,
                 op->msg_id, api->strerror(status));
        op_done_err(op, 500, "the event could not be recorded; retry later");
        return;
    }
    api->counter_add(s->p, "events", 1);
    if (api->kv_put(s->p, op->mid_key, op->mid_klen, "1", 1, mid_stored, op) < 0) {
        mid_stored(op, SP_ENOMEM);
    }
}

typedef struct seen_scan {
    sp_status_t st;
    bool seen;
} seen_scan_t;

static int seen_each(void *arg, sp_status_t st, int64_t time_ms, const char *data)
{
    seen_scan_t *d = arg;
    (void)time_ms;
    (void)data;
    if (st == d->st) {
        d->seen = true;
        return 1;
    }
    return 0;
}

static void handle_notification(op_t *op)
{
    fsns_t *s = op->s;
    const sp_host_api_t *api = s->api;
    char err[160];
    void *val = NULL;
    size_t vlen = 0;
    int rc;

    op->mid_klen = 4 + op->m.message_id.n;
    op->mid_key = malloc(op->mid_klen);
    if (op->mid_key == NULL) {
        op_done_err(op, 500, "out of memory");
        return;
    }
    memcpy(op->mid_key, "mid:", 4);
    memcpy(op->mid_key + 4, op->m.message_id.p, op->m.message_id.n);
    if (mid_in_flight(s, op)) {
        api->http_set_header(op->req, "Retry-After", "1");
        op_done_err(op, 503, "this SNS MessageId is being processed; retry later");
        return;
    }
    rc = api->kv_get(s->p, op->mid_key, op->mid_klen, &val, &vlen);
    if (rc == 0) {
        api->free(val);
        api->counter_add(s->p, "duplicates", 1);
        op_done_ok(op, "Success");
        return;
    }
    if (rc != SP_ENOTFOUND) {
        op_done_err(op, 500, "the store cannot be read; retry later");
        return;
    }
    rc = ses_event_parse(op->m.message.p, op->m.message.n, &op->ev, err, sizeof(err));
    if (rc < 0) {
        /* Signed by SNS, so a 4xx would only make SNS retry it: a topic
         * that carries more than SES events. */
        api->log(s->p, SP_LOG_INFO, "SNS notification %.*s ignored: %s", (int)op->m.message_id.n,
                 op->m.message_id.p, err);
        api->counter_add(s->p, "ignored", 1);
        op_done_ok(op, "Success");
        return;
    }
    if (rc == 0) {
        api->log(s->p, SP_LOG_INFO, "SES event type \"%.64s\" ignored", op->ev.type);
        api->counter_add(s->p, "ignored", 1);
        op_done_ok(op, "Success");
        return;
    }
    rc = SP_ENOTFOUND;
    if (op->ev.ses_message_id != NULL) {
        rc = api->msg_find_provider(op->ev.ses_message_id, op->msg_id, sizeof(op->msg_id));
    }
    if (rc != 0 && op->ev.header_id[0] != '\0') {
        snprintf(op->msg_id, sizeof(op->msg_id), "%s", op->ev.header_id);
        rc = 0;
    }
    if (rc != 0) {
        api->log(s->p, SP_LOG_INFO, "SES %s event for unknown message (SES id %.128s) ignored",
                 op->ev.type, op->ev.ses_message_id != NULL ? op->ev.ses_message_id : "none");
        api->counter_add(s->p, "unknown_message", 1);
        op_done_ok(op, "Success");
        return;
    }
    if (op->ev.status == SP_ST_DELIVERY_DELAYED || op->ev.status == SP_ST_SENT) {
        seen_scan_t d = {op->ev.status, false};
        (void)api->msg_events(op->msg_id, seen_each, &d);
        if (d.seen) {
            /* As upstream: one DELIVERY_DELAYED per message. SENT was
             * already recorded when the egress handed the message over;
             * SES's own Send event would repeat it. */
            emitted(op, 0);
            return;
        }
    }
    rc = api->emit_status(s->p, op->msg_id, op->ev.status, op->ev.data_json, emitted, op);
    if (rc < 0) {
        emitted(op, rc);
    }
}

/* ---- subscription -------------------------------------------------------- */

static void subscribe_fetched(void *arg, const sp_fetch_res_t *res)
{
    op_t *op = arg;
    fsns_t *s = op->s;
    char topic[256];

    op->fetching = false;
    snprintf(topic, sizeof(topic), "%.*s", (int)op->m.topic_arn.n, op->m.topic_arn.p);
    if (res->status != 0 || res->http_status != 200) {
        s->api->log(s->p, SP_LOG_WARN, "confirming the subscription to %s failed: %s (HTTP %ld)",
                    topic, res->status != 0 ? s->api->strerror(res->status) : "answer",
                    res->http_status);
        op_done_err(op, 502, "confirming the subscription at SubscribeURL failed");
        return;
    }
    s->api->log(s->p, SP_LOG_INFO, "subscription to %s confirmed", topic);
    s->api->counter_add(s->p, "subscriptions_confirmed", 1);
    op_done_ok(op, "Success");
}

static void handle_subscription(op_t *op)
{
    fsns_t *s = op->s;
    char err[160];
    char *url;
    sp_fetch_req_t fr = {.size = sizeof(fr), .method = "GET"};
    int rc;

    if (!sns_subscribe_url_ok(op->m.subscribe_url.p, op->m.subscribe_url.n, err, sizeof(err))) {
        s->api->log(s->p, SP_LOG_WARN, "SubscribeURL refused: %s", err);
        op_done_err(op, 403, err);
        return;
    }
    url = strndup(op->m.subscribe_url.p, op->m.subscribe_url.n);
    if (url == NULL) {
        op_done_err(op, 500, "out of memory");
        return;
    }
    fr.url = url;
    fr.timeout_ms = (uint32_t)s->conf->fetch_timeout;
    fr.max_body = 64 << 10;
    rc = s->api->http_fetch(s->p, &fr, subscribe_fetched, op, &op->fetch);
    free(url);
    if (rc < 0) {
        s->api->log(s->p, SP_LOG_WARN, "cannot fetch SubscribeURL: %s", s->api->strerror(rc));
        op_done_err(op, 503, "outbound HTTP is not available; retry later");
        return;
    }
    op->fetching = true;
}

/* ---- after the certificate ------------------------------------------------ */

static void with_cert(op_t *op, X509 *leaf)
{
    fsns_t *s = op->s;
    char err[160];
    char topic[256];

    if (sns_verify_signature(&op->m, leaf, err, sizeof(err)) < 0) {
        s->api->log(s->p, SP_LOG_WARN, "SNS message refused: %s", err);
        s->api->counter_add(s->p, "bad_signature", 1);
        op_done_err(op, 403, err);
        return;
    }
    switch (op->m.type) {
    case SNS_NOTIFICATION:
        handle_notification(op);
        break;
    case SNS_SUBSCRIPTION_CONFIRMATION:
        handle_subscription(op);
        break;
    case SNS_UNSUBSCRIBE_CONFIRMATION:
        snprintf(topic, sizeof(topic), "%.*s", (int)op->m.topic_arn.n, op->m.topic_arn.p);
        s->api->log(s->p, SP_LOG_INFO, "unsubscribed from %s", topic);
        op_done_ok(op, "Success");
        break;
    }
}

/* ---- certificates -------------------------------------------------------- */

static cert_entry_t *cache_find(fsns_t *s, const char *url, size_t n)
{
    for (cert_entry_t *e = s->certs; e != NULL; e = e->next) {
        if (strlen(e->url) == n && memcmp(e->url, url, n) == 0) {
            return e;
        }
    }
    return NULL;
}

static void cert_entry_free(cert_entry_t *e)
{
    X509_free(e->leaf);
    sk_X509_pop_free(e->chain, X509_free);
    free(e->url);
    free(e);
}

/* Keep a parsed certificate (ownership of leaf and chain passes). */
static cert_entry_t *cache_add(fsns_t *s, const char *url, size_t n, X509 *leaf,
                               STACK_OF(X509) *chain)
{
    cert_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->url = strndup(url, n)) == NULL) {
        free(e);
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        return NULL;
    }
    e->leaf = leaf;
    e->chain = chain;
    if (s->ncerts >= FSNS_MAX_CERTS) {
        /* Drop the oldest (the list's tail). */
        cert_entry_t **pp = &s->certs;
        while ((*pp)->next != NULL) {
            pp = &(*pp)->next;
        }
        cert_entry_free(*pp);
        *pp = NULL;
        s->ncerts--;
    }
    e->next = s->certs;
    s->certs = e;
    s->ncerts++;
    return e;
}

/* Parse and check a PEM for op's URL; cache it. NULL with the reason in err. */
static cert_entry_t *cert_accept(op_t *op, const void *pem, size_t len, char *err, size_t errlen,
                                 int *why)
{
    fsns_t *s = op->s;
    X509 *leaf;
    STACK_OF(X509) *chain;

    *why = -1;
    if (sns_pem_load(pem, len, &leaf, &chain) < 0) {
        snprintf(err, errlen, "signing certificate is not a PEM certificate");
        return NULL;
    }
    *why = sns_cert_check(leaf, chain, s->extra, s->store, s->conf->check_cert_expiry, err,
                          errlen);
    if (*why < 0) {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        return NULL;
    }
    return cache_add(s, op->m.cert_url.p, op->m.cert_url.n, leaf, chain);
}

static void cert_kv_stored(void *arg, int status)
{
    fsns_t *s = arg;
    if (status < 0) {
        s->api->log(s->p, SP_LOG_WARN, "caching a signing certificate failed: %s",
                    s->api->strerror(status));
    }
}

static size_t cert_key(const op_t *op, char *key, size_t cap)
{
    size_t n = op->m.cert_url.n;
    if (5 + n > cap) {
        return 0;
    }
    memcpy(key, "cert:", 5);
    memcpy(key + 5, op->m.cert_url.p, n);
    return 5 + n;
}

/* Keep a certificate fetched from its SigningCertURL for restarts. */
static void cert_persist(op_t *op, const void *pem, size_t len)
{
    fsns_t *s = op->s;
    char key[600];
    size_t klen = cert_key(op, key, sizeof(key));
    if (klen > 0 && s->api->kv_put(s->p, key, klen, pem, len, cert_kv_stored, s) < 0) {
        cert_kv_stored(s, SP_ENOMEM);
    }
    s->api->counter_add(s->p, "certificates_fetched", 1);
}

static void issuer_fetched(void *arg, const sp_fetch_res_t *res)
{
    op_t *op = arg;
    fsns_t *s = op->s;
    char err[200];
    cert_entry_t *e;
    X509 *x = NULL;
    int why;

    op->fetching = false;
    if (res->status == 0 && res->http_status == 200) {
        x = sns_cert_parse_any(res->body, res->body_len);
    }
    if (x == NULL) {
        s->api->log(s->p, SP_LOG_WARN, "fetching the signing certificate's issuer failed: %s "
                    "(HTTP %ld)", res->status != 0 ? s->api->strerror(res->status) : "answer",
                    res->http_status);
        op_done_err(op, 503, "the signing certificate's issuer cannot be fetched now; retry "
                             "later");
        return;
    }
    /* Untrusted: only a candidate for chain building. */
    if (sk_X509_num(s->extra) >= FSNS_MAX_EXTRA || sk_X509_push(s->extra, x) <= 0) {
        X509_free(x);
    }
    e = cert_accept(op, op->pem, op->pem_len, err, sizeof(err), &why);
    if (e == NULL) {
        s->api->log(s->p, SP_LOG_WARN, "signing certificate refused: %s", err);
        op_done_err(op, 403, err);
        return;
    }
    if (op->pem_fetched) {
        cert_persist(op, op->pem, op->pem_len);
    }
    with_cert(op, e->leaf);
}

/* SNS serves the leaf alone and its Amazon intermediate is not in the
 * system store: fetch the issuer named by the certificate's Authority
 * Information Access (an amazontrust.com URL only). True if a fetch is on
 * its way (it ends the request). */
static bool try_issuer(op_t *op, const void *pem, size_t len, bool fetched)
{
    fsns_t *s = op->s;
    char url[512];
    X509 *leaf;
    STACK_OF(X509) *chain;
    bool ok;
    sp_fetch_req_t fr = {.size = sizeof(fr), .method = "GET"};

    if (op->aia_tried || sns_pem_load(pem, len, &leaf, &chain) < 0) {
        return false;
    }
    ok = sns_aia_issuer_url(leaf, url, sizeof(url));
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    if (!ok || (op->pem = malloc(len)) == NULL) {
        return false;
    }
    memcpy(op->pem, pem, len);
    op->pem_len = len;
    op->pem_fetched = fetched;
    op->aia_tried = true;
    fr.url = url;
    fr.timeout_ms = (uint32_t)s->conf->fetch_timeout;
    fr.max_body = FSNS_MAX_PEM;
    if (s->api->http_fetch(s->p, &fr, issuer_fetched, op, &op->fetch) < 0) {
        return false;
    }
    op->fetching = true;
    return true;
}

static void cert_fetched(void *arg, const sp_fetch_res_t *res)
{
    op_t *op = arg;
    fsns_t *s = op->s;
    char err[200];
    cert_entry_t *e;
    int why;

    op->fetching = false;
    if (res->status != 0 || res->http_status != 200) {
        s->api->log(s->p, SP_LOG_WARN, "fetching the signing certificate failed: %s (HTTP %ld)",
                    res->status != 0 ? s->api->strerror(res->status) : "answer",
                    res->http_status);
        op_done_err(op, 503, "the signing certificate cannot be fetched now; retry later");
        return;
    }
    e = cache_find(s, op->m.cert_url.p, op->m.cert_url.n);
    if (e == NULL) {
        e = cert_accept(op, res->body, res->body_len, err, sizeof(err), &why);
        if (e == NULL && why == -2 && try_issuer(op, res->body, res->body_len, true)) {
            return;
        }
        if (e == NULL) {
            s->api->log(s->p, SP_LOG_WARN, "fetched signing certificate refused: %s", err);
            op_done_err(op, 403, err);
            return;
        }
        cert_persist(op, res->body, res->body_len);
    }
    with_cert(op, e->leaf);
}

/* The `certificates` directory's file for op's URL, if there is one. */
static int dir_lookup(op_t *op, void **pem, size_t *len)
{
    fsns_t *s = op->s;
    unsigned char md[32];
    char path[4096], hex[65];
    FILE *f;
    long sz;
    void *buf;

    if (s->conf->certificates == NULL || s->conf->certificates[0] == '\0') {
        return SP_ENOTFOUND;
    }
    if (EVP_Digest(op->m.cert_url.p, op->m.cert_url.n, md, NULL, EVP_sha256(), NULL) != 1) {
        return SP_ENOMEM;
    }
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    snprintf(path, sizeof(path), "%s/%s.pem", s->conf->certificates, hex);
    f = fopen(path, "rb");
    if (f == NULL) {
        return SP_ENOTFOUND;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || (size_t)sz > FSNS_MAX_PEM ||
        fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t)sz + 1)) == NULL) {
        fclose(f);
        return SP_EINVAL;
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        fclose(f);
        return SP_EINVAL;
    }
    fclose(f);
    *pem = buf;
    *len = (size_t)sz;
    return 0;
}

static void find_cert(op_t *op)
{
    fsns_t *s = op->s;
    const sp_host_api_t *api = s->api;
    char err[200], key[600];
    size_t klen;
    cert_entry_t *e;
    void *pem = NULL;
    size_t len = 0;
    char *url;
    sp_fetch_req_t fr = {.size = sizeof(fr), .method = "GET"};
    int rc, why;
    bool pending = false;

    e = cache_find(s, op->m.cert_url.p, op->m.cert_url.n);
    if (e != NULL) {
        /* Checked again at each use: it may have expired since. */
        if (sns_cert_check(e->leaf, e->chain, s->extra, s->store, s->conf->check_cert_expiry,
                           err, sizeof(err)) < 0) {
            op_done_err(op, 403, err);
            return;
        }
        with_cert(op, e->leaf);
        return;
    }
    klen = cert_key(op, key, sizeof(key));
    if (klen == 0) {
        op_done_err(op, 403, "SigningCertURL is too long");
        return;
    }
    if (api->kv_get(s->p, key, klen, &pem, &len) == 0) {
        e = cert_accept(op, pem, len, err, sizeof(err), &why);
        pending = e == NULL && why == -2 && try_issuer(op, pem, len, false);
        api->free(pem);
    } else if (dir_lookup(op, &pem, &len) == 0) {
        e = cert_accept(op, pem, len, err, sizeof(err), &why);
        pending = e == NULL && why == -2 && try_issuer(op, pem, len, false);
        free(pem);
    } else {
        url = strndup(op->m.cert_url.p, op->m.cert_url.n);
        if (url == NULL) {
            op_done_err(op, 500, "out of memory");
            return;
        }
        fr.url = url;
        fr.timeout_ms = (uint32_t)s->conf->fetch_timeout;
        fr.max_body = FSNS_MAX_PEM;
        rc = api->http_fetch(s->p, &fr, cert_fetched, op, &op->fetch);
        free(url);
        if (rc < 0) {
            api->log(s->p, SP_LOG_WARN, "cannot fetch the signing certificate: %s",
                     api->strerror(rc));
            op_done_err(op, 503, "the signing certificate is not cached and cannot be fetched "
                                 "now; retry later");
            return;
        }
        op->fetching = true;
        return;
    }
    if (pending) {
        return;
    }
    if (e == NULL) {
        api->log(s->p, SP_LOG_WARN, "cached signing certificate refused: %s", err);
        op_done_err(op, 403, err);
        return;
    }
    with_cert(op, e->leaf);
}

/* ---- routes -------------------------------------------------------------- */

static bool topic_allowed(fsns_t *s, const sns_str_t *arn)
{
    if (s->conf->allow_any_topic) {
        return true;
    }
    for (size_t i = 0; i < s->ntopics; i++) {
        if (strlen(s->topics[i]) == arn->n && memcmp(s->topics[i], arn->p, arn->n) == 0) {
            return true;
        }
    }
    return false;
}

static void on_post(sp_http_req_t *req, void *ctx)
{
    fsns_t *s = ctx;
    const sp_host_api_t *api = s->api;
    size_t len = 0;
    const void *body = api->http_body(req, &len);
    char err[200];
    op_t *op;

    api->counter_add(s->p, "requests", 1);
    if (len > s->conf->max_body_size) {
        respond_err(s, req, 413, "SNS message body too large");
        return;
    }
    op = op_new(s, req);
    if (op == NULL) {
        respond_err(s, req, 500, "out of memory");
        return;
    }
    if (sns_parse(body, len, &op->m, err, sizeof(err)) < 0) {
        op_done_err(op, 400, err);
        return;
    }
    if (!topic_allowed(s, &op->m.topic_arn)) {
        api->log(s->p, SP_LOG_WARN, "SNS message for a TopicArn not in topic_arns refused");
        api->counter_add(s->p, "bad_topic", 1);
        op_done_err(op, 403, "TopicArn is not allowed (configure topic_arns)");
        return;
    }
    if (!sns_cert_url_ok(op->m.cert_url.p, op->m.cert_url.n, err, sizeof(err))) {
        api->log(s->p, SP_LOG_WARN, "SNS message refused: %s", err);
        api->counter_add(s->p, "bad_cert_url", 1);
        op_done_err(op, 403, err);
        return;
    }
    find_cert(op);
}

static void on_get(sp_http_req_t *req, void *ctx)
{
    respond_ok(ctx, req, "Hello");
}

/* ---- life cycle ---------------------------------------------------------- */

static int split_topics(fsns_t *s, const char *list)
{
    const char *p = list != NULL ? list : "";
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        const char *end = e != NULL ? e : p + strlen(p);
        const char *a = p, *b = end;
        char **nt;
        while (a < b && (*a == ' ' || *a == '\t')) {
            a++;
        }
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) {
            b--;
        }
        if (b > a) {
            nt = realloc(s->topics, (s->ntopics + 1) * sizeof(*nt));
            if (nt == NULL) {
                return SP_ENOMEM;
            }
            s->topics = nt;
            if ((s->topics[s->ntopics] = strndup(a, (size_t)(b - a))) == NULL) {
                return SP_ENOMEM;
            }
            s->ntopics++;
        }
        p = e != NULL ? e + 1 : end;
    }
    return 0;
}

static bool hash_name(const char *n)
{
    size_t i;
    for (i = 0; i < 64; i++) {
        if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f'))) {
            return false;
        }
    }
    return strcmp(n + 64, ".pem") == 0;
}

/* Other .pem files of the certificates directory: intermediate CAs. */
static int load_intermediates(fsns_t *s)
{
    const char *dir = s->conf->certificates;
    DIR *d;
    struct dirent *de;
    int count = 0;

    if (dir == NULL || dir[0] == '\0') {
        return 0;
    }
    d = opendir(dir);
    if (d == NULL) {
        s->api->log(s->p, SP_LOG_ERROR, "certificates: cannot open directory %s", dir);
        return SP_EINVAL;
    }
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        char path[4096];
        FILE *f;
        X509 *x;
        if (n < 5 || strcmp(de->d_name + n - 4, ".pem") != 0 || hash_name(de->d_name)) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
            if (sk_X509_push(s->extra, x) <= 0) {
                X509_free(x);
            } else {
                count++;
            }
        }
        fclose(f);
    }
    closedir(d);
    if (count > 0) {
        s->api->log(s->p, SP_LOG_INFO, "certificates: %d intermediate CA certificates loaded",
                    count);
    }
    return 0;
}

static void fsns_fini(sp_plugin_t *p, void *ctx)
{
    fsns_t *s = ctx;
    (void)p;
    if (s == NULL) {
        return;
    }
    while (s->ops != NULL) {
        /* Their requests end with the core; a fetch must not call back. */
        if (s->ops->fetching) {
            s->api->http_fetch_cancel(s->ops->fetch);
        }
        op_free(s->ops);
    }
    while (s->certs != NULL) {
        cert_entry_t *e = s->certs;
        s->certs = e->next;
        cert_entry_free(e);
    }
    for (size_t i = 0; i < s->ntopics; i++) {
        free(s->topics[i]);
    }
    free(s->topics);
    sk_X509_pop_free(s->extra, X509_free);
    X509_STORE_free(s->store);
    free(s);
}

static int fsns_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    fsns_t *s;
    char err[300];
    int rc;

    if (!SP_API_HAS(api, msg_find_provider)) {
        api->log(p, SP_LOG_ERROR, "this core is too old (host ABI 1.2 is needed)");
        return SP_EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return SP_ENOMEM;
    }
    s->p = p;
    s->api = api;
    s->conf = conf;
    *ctx = s;
    s->extra = sk_X509_new_null();
    if (s->extra == NULL || split_topics(s, s->conf->topic_arns) < 0) {
        fsns_fini(p, s);
        return SP_ENOMEM;
    }
    s->store = sns_store_new(s->conf->trust_ca_file, err, sizeof(err));
    if (s->store == NULL) {
        api->log(p, SP_LOG_ERROR, "%s", err);
        fsns_fini(p, s);
        return SP_EINVAL;
    }
    if ((rc = load_intermediates(s)) < 0) {
        fsns_fini(p, s);
        return rc;
    }
    if (s->ntopics == 0 && !s->conf->allow_any_topic) {
        api->log(p, SP_LOG_WARN, "topic_arns is empty: every SNS message will be refused");
    }
    if (s->conf->allow_any_topic) {
        api->log(p, SP_LOG_WARN, "allow_any_topic: signed messages of any AWS account's topic "
                                 "are accepted");
    }
    if ((rc = api->http_route(p, "POST", "/api/ses_callback", on_post, 0)) < 0 ||
        (rc = api->http_route(p, "GET", "/api/ses_callback", on_get, 0)) < 0) {
        api->log(p, SP_LOG_ERROR, "cannot register /api/ses_callback: %s", api->strerror(rc));
        fsns_fini(p, s);
        return rc;
    }
    return 0;
}

static int fsns_conf_check(const void *conf, char *err, size_t errlen)
{
    const fsns_conf_t *c = conf;
    if (c->max_body_size < 1024 || c->max_body_size > ((uint64_t)16 << 20)) {
        snprintf(err, errlen, "max_body_size: between 1K and 16M");
        return -1;
    }
    if (c->fetch_timeout < 100 || c->fetch_timeout > 120000) {
        snprintf(err, errlen, "fetch_timeout: between 100ms and 2m");
        return -1;
    }
    return 0;
}

SP_PLUGIN_DEFINE(.name = "feedback_sns", .version = "0.1.0",
                 .description = "Amazon SNS endpoint for SES event feedback (/api/ses_callback)",
                 .conf = fsns_schema, .conf_size = sizeof(fsns_conf_t),
                 .conf_check = fsns_conf_check, .init = fsns_init, .fini = fsns_fini);
