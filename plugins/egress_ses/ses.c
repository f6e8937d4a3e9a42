/* SPDX-License-Identifier: Apache-2.0 */
/* egress_ses: delivers through Amazon SES v2 SendEmail with Content.Raw (the
 * message the mime/dkim stages built, base64), signed with SigV4, sent with
 * the core's http_fetch on the loop. The answer is classified by
 * ses_classify (ses_response.c); see docs/ses.md. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include <sp/sp_plugin.h>

#include "ses_response.h"
#include "sigv4.h"

#define SES_SEND_PATH "/v2/email/outbound-emails"

typedef struct ses_conf {
    char *region;
    char *endpoint;
    char *configuration_set;
    char *ca_file;
    uint64_t timeout_ms;
} ses_conf_t;

typedef struct ses_pending ses_pending_t;

typedef struct ses {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    char region[64];
    char *endpoint;     /* without a trailing '/' */
    char *host;         /* authority of the endpoint: the signed Host header */
    char *base_path;    /* path part of the endpoint ("" usually) */
    const char *configuration_set;
    const char *ca_file;
    uint32_t timeout_ms;
    ses_pending_t *pending;
} ses_t;

struct ses_pending {
    ses_t *ses;
    sp_txn_t *txn;
    sp_token_t tok;
    uint64_t handle;
    char id[40];
    ses_pending_t *prev, *next;
};

static const sp_conf_item_t ses_schema[] = {
    {SP_CONF_STR, "region", offsetof(ses_conf_t, region), "", 0,
     "AWS region of SES (default: setting aws_region, else us-east-1)"},
    {SP_CONF_STR, "endpoint", offsetof(ses_conf_t, endpoint), "", 0,
     "base URL instead of https://email.<region>.amazonaws.com (else $AWS_SES_ENDPOINT)"},
    {SP_CONF_STR, "configuration_set", offsetof(ses_conf_t, configuration_set), "", 0,
     "SES configuration set for event publishing (empty: none)"},
    {SP_CONF_STR, "ca_file", offsetof(ses_conf_t, ca_file), "", 0,
     "PEM file of trusted CAs for the endpoint (empty: the system store)"},
    {SP_CONF_DURATION, "timeout", offsetof(ses_conf_t, timeout_ms), "30s", 0,
     "whole SendEmail request, connect included"},
    {0},
};

/* ---------------------------------------------------------------------- */
/* The request */

/* The addr-spec of "Name <addr>" or "addr". */
static void addr_spec(const char *s, size_t n, const char **out, size_t *outlen)
{
    const char *lt = NULL, *gt = NULL;
    for (size_t i = n; i > 0; i--) {
        if (s[i - 1] == '>' && gt == NULL) {
            gt = s + i - 1;
        } else if (s[i - 1] == '<' && gt != NULL) {
            lt = s + i - 1;
            break;
        }
    }
    if (lt != NULL) {
        s = lt + 1;
        n = (size_t)(gt - s);
    }
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    *out = s;
    *outlen = n;
}

static int add_addresses(const sp_host_api_t *api, sp_msg_t *m, const char *field, json_t *dest,
                         const char *key)
{
    size_t n = api->msg_count(m, field);
    json_t *arr;
    if (n == 0) {
        return 0;
    }
    arr = json_array();
    if (arr == NULL || json_object_set_new(dest, key, arr) < 0) {
        return SP_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len, al;
        const char *v = api->msg_get_at(m, field, i, &len);
        const char *a;
        if (v == NULL) {
            continue;
        }
        addr_spec(v, len, &a, &al);
        if (al == 0) {
            continue;
        }
        if (json_array_append_new(arr, json_stringn(a, al)) < 0) {
            return SP_ENOMEM;
        }
    }
    return 0;
}

/* The SendEmail JSON body; NULL on out of memory. *nrcpt = destinations. */
static char *build_body(ses_t *s, sp_msg_t *m, const char *mime, size_t mime_len,
                        size_t *nrcpt)
{
    const sp_host_api_t *api = s->api;
    json_t *root = json_object(), *dest = json_object();
    size_t flen;
    const char *from = api->msg_get(m, SP_F_FROM, &flen);
    char *b64 = NULL, *out = NULL;
    int rc = root != NULL && dest != NULL ? 0 : SP_ENOMEM;

    *nrcpt = api->msg_count(m, SP_F_TO) + api->msg_count(m, SP_F_CC) +
             api->msg_count(m, SP_F_BCC);
    if (rc == 0 && from != NULL && flen > 0) {
        /* As given; SES wants a non-ASCII display name MIME-encoded, so
         * then only the address goes here (the From header keeps the name). */
        bool ascii = true;
        for (size_t i = 0; i < flen; i++) {
            ascii = ascii && (unsigned char)from[i] < 0x80;
        }
        if (!ascii) {
            addr_spec(from, flen, &from, &flen);
        }
        rc = json_object_set_new(root, "FromEmailAddress", json_stringn(from, flen));
    }
    if (rc == 0) {
        rc = add_addresses(api, m, SP_F_TO, dest, "ToAddresses");
    }
    if (rc == 0) {
        rc = add_addresses(api, m, SP_F_CC, dest, "CcAddresses");
    }
    if (rc == 0) {
        rc = add_addresses(api, m, SP_F_BCC, dest, "BccAddresses");
    }
    if (rc == 0) {
        rc = json_object_set(root, "Destination", dest);
    }
    if (rc == 0) {
        size_t cap = 4 * ((mime_len + 2) / 3) + 1;
        b64 = malloc(cap);
        if (b64 == NULL) {
            rc = SP_ENOMEM;
        } else {
            EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)mime, (int)mime_len);
            rc = json_object_set_new(root, "Content",
                                     json_pack("{s:{s:s}}", "Raw", "Data", b64));
        }
    }
    if (rc == 0 && s->configuration_set[0] != '\0') {
        rc = json_object_set_new(root, "ConfigurationSetName",
                                 json_string(s->configuration_set));
    }
    if (rc == 0) {
        out = json_dumps(root, JSON_COMPACT);
    }
    free(b64);
    json_decref(dest);
    json_decref(root);
    return out;
}

/* ---------------------------------------------------------------------- */
/* Completion */

static void pending_unlink(ses_pending_t *pd)
{
    ses_t *s = pd->ses;
    if (pd->prev != NULL) {
        pd->prev->next = pd->next;
    } else if (s->pending == pd) {
        s->pending = pd->next;
    }
    if (pd->next != NULL) {
        pd->next->prev = pd->prev;
    }
    pd->prev = pd->next = NULL;
}

static void ses_cancel(sp_token_t tok, void *arg)
{
    ses_pending_t *pd = arg;
    ses_t *s = pd->ses;
    (void)tok;
    s->api->http_fetch_cancel(pd->handle);
    pending_unlink(pd);
    s->api->free(pd);
}

static void ses_done(void *arg, const sp_fetch_res_t *res)
{
    ses_pending_t *pd = arg;
    ses_t *s = pd->ses;
    const sp_host_api_t *api = s->api;
    ses_outcome_t o;
    sp_txn_t *txn = pd->txn;

    ses_classify(res->status, res->error, res->http_status, res->headers, res->headers_len,
                 res->body, res->body_len, &o);
    switch (o.verdict) {
    case SP_ACCEPT:
        if (o.message_id[0] != '\0' &&
            api->msg_set(api->txn_msg(txn), SP_F_PROVIDER_ID, o.message_id,
                         strlen(o.message_id)) < 0) {
            api->log(s->p, SP_LOG_WARN, "message %s: keeping SES MessageId failed", pd->id);
        }
        api->txn_set_reply(txn, o.code, o.text);
        api->counter_add(s->p, "sent", 1);
        api->log(s->p, SP_LOG_DEBUG, "message %s: %s (%llu ms)", pd->id, o.text,
                 (unsigned long long)res->elapsed_ms);
        break;
    case SP_DEFER:
        api->txn_set_reply(txn, o.code, o.text);
        if (o.retry_after_ms > 0) {
            api->txn_set_retry_in(txn, (uint64_t)o.retry_after_ms);
        }
        api->counter_add(s->p, "deferred", 1);
        api->log(s->p, SP_LOG_INFO, "message %s deferred: %s", pd->id, o.text);
        break;
    default:
        api->txn_set_reply(txn, o.code, o.text);
        api->txn_set_status(txn, (sp_status_t)o.status);
        api->counter_add(s->p, "rejected", 1);
        api->log(s->p, SP_LOG_INFO, "message %s refused: %s", pd->id, o.text);
        break;
    }
    pending_unlink(pd);
    api->resume(pd->tok, o.verdict);
    api->free(pd);
}

/* ---------------------------------------------------------------------- */
/* The egress hook */

static sp_verdict_t fail_now(const sp_host_api_t *api, sp_txn_t *txn, sp_status_t st,
                             const char *text)
{
    api->txn_set_reply(txn, 0, text);
    api->txn_set_status(txn, st);
    return SP_REJECT;
}

static sp_verdict_t ses_egress(sp_txn_t *txn, void *ctx)
{
    ses_t *s = ctx;
    const sp_host_api_t *api = s->api;
    sp_msg_t *m = api->txn_msg(txn);
    const char *access = api->setting("aws_access_key");
    const char *secret = api->setting("aws_secret_key");
    const char *token = api->setting("aws_session_token");
    size_t mime_len, nrcpt = 0, idlen = 0;
    const char *mime = api->msg_get(m, SP_F_MIME, &mime_len);
    const char *id = api->msg_get(m, SP_F_ID, &idlen);
    char amz_date[17], *body, *authz = NULL, *url;
    char h_host[300], h_date[40], *h_token = NULL, *h_authz = NULL;
    const char *hdrs[7];
    sigv4_header_t sh[4];
    size_t nsh = 0;
    ses_pending_t *pd;
    int rc;

    if (mime == NULL || mime_len == 0) {
        return fail_now(api, txn, SP_ST_FAILED, "no message was built: load the mime plugin");
    }
    if (access == NULL || access[0] == '\0' || secret == NULL || secret[0] == '\0') {
        /* Fixable without touching the message: wait for the operator. */
        api->txn_set_reply(txn, 0, "SES credentials missing: set AWS_ACCESS_KEY_ID and "
                                   "AWS_SECRET_ACCESS_KEY");
        return SP_DEFER;
    }
    body = build_body(s, m, mime, mime_len, &nrcpt);
    if (body == NULL) {
        return SP_DEFER;
    }
    if (nrcpt == 0) {
        free(body);
        return fail_now(api, txn, SP_ST_FAILED, "message has no recipients");
    }

    sigv4_amz_date(time(NULL), amz_date);
    snprintf(h_host, sizeof(h_host), "Host: %s", s->host);
    snprintf(h_date, sizeof(h_date), "X-Amz-Date: %s", amz_date);
    sh[nsh++] = (sigv4_header_t){"Content-Type", "application/json"};
    sh[nsh++] = (sigv4_header_t){"Host", s->host};
    sh[nsh++] = (sigv4_header_t){"X-Amz-Date", amz_date};
    if (token != NULL && token[0] != '\0') {
        sh[nsh++] = (sigv4_header_t){"X-Amz-Security-Token", token};
    }
    {
        size_t pl = strlen(s->base_path) + sizeof(SES_SEND_PATH);
        char *path = malloc(pl);
        sigv4_key_t k = {.access_key = access, .secret_key = secret, .region = s->region,
                         .service = "ses"};
        if (path != NULL) {
            snprintf(path, pl, "%s%s", s->base_path, SES_SEND_PATH);
            sigv4_request_t r = {.method = "POST", .path = path, .headers = sh,
                                 .nheaders = nsh, .body = body, .body_len = strlen(body)};
            rc = sigv4_authorization(&k, amz_date, &r, &authz);
            free(path);
        }
    }
    url = malloc(strlen(s->endpoint) + sizeof(SES_SEND_PATH));
    if (authz != NULL) {
        h_authz = malloc(strlen(authz) + 16);
    }
    if (token != NULL && token[0] != '\0') {
        h_token = malloc(strlen(token) + 32);
    }
    pd = api->calloc(1, sizeof(*pd));
    if (url == NULL || h_authz == NULL || pd == NULL ||
        (token != NULL && token[0] != '\0' && h_token == NULL)) {
        free(body);
        free(authz);
        free(url);
        free(h_authz);
        free(h_token);
        api->free(pd);
        return SP_DEFER;
    }
    sprintf(url, "%s%s", s->endpoint, SES_SEND_PATH);
    sprintf(h_authz, "Authorization: %s", authz);
    size_t nh = 0;
    hdrs[nh++] = "Content-Type: application/json";
    hdrs[nh++] = h_host;
    hdrs[nh++] = h_date;
    if (h_token != NULL) {
        sprintf(h_token, "X-Amz-Security-Token: %s", token);
        hdrs[nh++] = h_token;
    }
    hdrs[nh++] = h_authz;
    hdrs[nh] = NULL;

    pd->ses = s;
    pd->txn = txn;
    snprintf(pd->id, sizeof(pd->id), "%.*s", (int)(idlen < 39 ? idlen : 39), id != NULL ? id : "");
    pd->tok = api->suspend(txn, 0, ses_cancel, pd);
    if (pd->tok == 0) {
        rc = SP_ENOMEM;
    } else {
        sp_fetch_req_t req = {.size = sizeof(req), .method = "POST", .url = url,
                              .headers = hdrs, .body = body, .body_len = strlen(body),
                              .timeout_ms = s->timeout_ms,
                              .ca_file = s->ca_file[0] != '\0' ? s->ca_file : NULL,
                              .max_body = 64 * 1024};
        rc = api->http_fetch(s->p, &req, ses_done, pd, &pd->handle);
    }
    /* The request is copied by http_fetch; the signature never reaches a log. */
    free(body);
    free(url);
    if (authz != NULL) {
        OPENSSL_cleanse(authz, strlen(authz));
    }
    free(authz);
    free(h_authz);
    free(h_token);
    if (pd->tok == 0) {
        api->free(pd);
        return SP_DEFER;
    }
    if (rc < 0) {
        api->txn_set_reply(txn, 0, api->strerror(rc));
        api->resume(pd->tok, SP_DEFER);
        api->free(pd);
        return SP_PENDING;
    }
    pd->next = s->pending;
    if (s->pending != NULL) {
        s->pending->prev = pd;
    }
    s->pending = pd;
    return SP_PENDING;
}

/* ---------------------------------------------------------------------- */
/* Lifecycle */

static int set_endpoint(ses_t *s, const char *ep)
{
    size_t n = strlen(ep);
    const char *auth, *slash;
    while (n > 0 && ep[n - 1] == '/') {
        n--;
    }
    if (strncmp(ep, "https://", 8) == 0) {
        auth = ep + 8;
    } else if (strncmp(ep, "http://", 7) == 0) {
        auth = ep + 7;
    } else {
        return SP_EINVAL;
    }
    if ((size_t)(auth - ep) >= n) {
        return SP_EINVAL;
    }
    s->endpoint = strndup(ep, n);
    slash = memchr(auth, '/', n - (size_t)(auth - ep));
    if (slash == NULL) {
        slash = ep + n;
    }
    s->host = strndup(auth, (size_t)(slash - auth));
    s->base_path = strndup(slash, (size_t)(ep + n - slash));
    if (s->endpoint == NULL || s->host == NULL || s->base_path == NULL) {
        return SP_ENOMEM;
    }
    return s->host[0] != '\0' ? 0 : SP_EINVAL;
}

static void ses_free(ses_t *s)
{
    free(s->endpoint);
    free(s->host);
    free(s->base_path);
    s->api->free(s);
}

static int ses_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const ses_conf_t *c = conf;
    const char *region = c->region, *ep = c->endpoint, *env;
    char dflt[128];
    ses_t *s;
    int rc;

    if (!SP_API_HAS(api, http_fetch_cancel)) {
        api->log(p, SP_LOG_ERROR, "egress_ses needs a host with http_fetch (ABI 1.2)");
        return SP_EABI;
    }
    s = api->calloc(1, sizeof(*s));
    if (s == NULL) {
        return SP_ENOMEM;
    }
    s->p = p;
    s->api = api;
    if (region == NULL || region[0] == '\0') {
        region = api->setting("aws_region");
    }
    if (region == NULL || region[0] == '\0') {
        region = "us-east-1";
    }
    snprintf(s->region, sizeof(s->region), "%s", region);
    if (ep == NULL || ep[0] == '\0') {
        env = getenv("AWS_SES_ENDPOINT");
        ep = env != NULL && env[0] != '\0' ? env : NULL;
    }
    if (ep == NULL) {
        snprintf(dflt, sizeof(dflt), "https://email.%s.amazonaws.com", s->region);
        ep = dflt;
    }
    rc = set_endpoint(s, ep);
    if (rc < 0) {
        api->log(p, SP_LOG_ERROR, "endpoint %s: must be an http:// or https:// URL", ep);
        ses_free(s);
        return rc == SP_ENOMEM ? rc : SP_ECONFIG;
    }
    s->configuration_set = c->configuration_set != NULL ? c->configuration_set : "";
    s->ca_file = c->ca_file != NULL ? c->ca_file : "";
    s->timeout_ms = c->timeout_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)c->timeout_ms;
    {
        const char *ak = api->setting("aws_access_key");
        const char *sk = api->setting("aws_secret_key");
        if (ak == NULL || ak[0] == '\0' || sk == NULL || sk[0] == '\0') {
            api->log(p, SP_LOG_WARN, "AWS credentials are not set (AWS_ACCESS_KEY_ID, "
                                     "AWS_SECRET_ACCESS_KEY): messages wait until they are");
        }
    }
    rc = api->hook(p, SP_STAGE_EGRESS, ses_egress, 0);
    if (rc < 0) {
        ses_free(s);
        return rc;
    }
    api->log(p, SP_LOG_INFO, "sending through SES at %s (region %s)", s->endpoint, s->region);
    *ctx = s;
    return 0;
}

static void ses_fini(sp_plugin_t *p, void *ctx)
{
    ses_t *s = ctx;
    (void)p;
    if (s == NULL) {
        return;
    }
    /* Suspended sends are normally cancelled before this; whatever is left
     * must not call back into freed state. */
    while (s->pending != NULL) {
        ses_pending_t *pd = s->pending;
        s->api->http_fetch_cancel(pd->handle);
        pending_unlink(pd);
        s->api->free(pd);
    }
    ses_free(s);
}

SP_PLUGIN_DEFINE(.name = "egress_ses", .version = SP_VERSION_STRING,
                 .description = "egress through Amazon SES v2 (SendEmail, raw MIME, SigV4)",
                 .conf = ses_schema, .conf_size = sizeof(ses_conf_t), .init = ses_init,
                 .fini = ses_fini);
