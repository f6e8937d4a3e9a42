/* SPDX-License-Identifier: Apache-2.0 */
/* dkim: the sign stage. Signs the built message (SP_F_MIME) with the sending
 * domain's key from the core's store and prepends the DKIM-Signature field.
 * A domain without a key sends unsigned (or waits for one, with
 * `required: true`). The signature is computed on a pool thread: RSA-2048
 * costs about a millisecond, too long for the loop. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include <sp/sp_plugin.h>

#include "dkim_sign.h"

#define HDRS_MAX 64

typedef struct dkim_conf {
    char *signed_headers;
    bool oversign_from;
    uint64_t expire; /* ms; 0: no x= */
    bool required;
} dkim_conf_t;

typedef struct dkim_plugin {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const dkim_conf_t *conf;
    dks_lib_t *lib;
    char *hdrbuf;                /* signed_headers, split in place */
    const char *hdrs[HDRS_MAX + 1];
    atomic_uint inflight;        /* jobs whose done has not run */
} dkim_plugin_t;

/* One message being signed. Owned by the work: the done callback frees it,
 * also after a cancel (the pool thread may still be signing then). */
typedef struct job {
    dkim_plugin_t *dp;
    sp_txn_t *txn; /* valid until resume or cancel */
    sp_token_t tok;
    bool cancelled;
    char *mime; /* a copy: the message may go away with a cancel */
    size_t mime_len;
    sp_msg_t *key;
    char id[64];
    char *hdr;
    size_t hdr_len;
    int rc;
    char err[256];
} job_t;

static const sp_conf_item_t dkim_schema[] = {
    {SP_CONF_STR, "signed_headers", offsetof(dkim_conf_t, signed_headers), NULL, 0,
     "comma-separated header fields to sign when present (default: From, To, Cc, Subject, "
     "Date, Message-ID, MIME-Version, Content-Type, Content-Transfer-Encoding, Reply-To, "
     "In-Reply-To, References, List-Unsubscribe, List-Unsubscribe-Post); must include From"},
    {SP_CONF_BOOL, "oversign_from", offsetof(dkim_conf_t, oversign_from), "true", 0,
     "list From once more in h= so that no second From can be added after signing"},
    {SP_CONF_DURATION, "expire", offsetof(dkim_conf_t, expire), "0", 0,
     "signature lifetime (x= tag); 0 leaves x= out"},
    {SP_CONF_BOOL, "required", offsetof(dkim_conf_t, required), "false", 0,
     "never send unsigned: a message whose domain has no key (or whose signing fails) is "
     "deferred and retried until it can be signed or reaches the maximum age"},
    {0},
};

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
        *--e = '\0';
    }
    return s;
}

static bool hdr_name_ok(const char *s)
{
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        /* RFC 5322 field names: printable ASCII but ':'. */
        if (*s <= 0x20 || *s >= 0x7f || *s == ':') {
            return false;
        }
    }
    return true;
}

/* Split "A, B, C" into dp->hdrs. 0, or -1 with err set. */
static int hdrs_parse(const char *list, char **buf, const char **hdrs, char *err, size_t errlen)
{
    size_t n = 0;
    bool from = false;
    char *save = NULL, *tok;

    if (!(*buf = strdup(list))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (tok = strtok_r(*buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *h = trim(tok);
        if (!hdr_name_ok(h)) {
            snprintf(err, errlen, "signed_headers: '%s' is not a header field name", h);
            return -1;
        }
        if (n == HDRS_MAX) {
            snprintf(err, errlen, "signed_headers: more than %d names", HDRS_MAX);
            return -1;
        }
        from = from || strcasecmp(h, "From") == 0;
        hdrs[n++] = h;
    }
    hdrs[n] = NULL;
    if (!from) {
        snprintf(err, errlen, "signed_headers must include From");
        return -1;
    }
    return 0;
}

static int dkim_conf_check(const void *conf, char *err, size_t errlen)
{
    const dkim_conf_t *c = conf;
    const char *hdrs[HDRS_MAX + 1];
    char *buf = NULL;
    int rc = 0;

    if (c->signed_headers) {
        rc = hdrs_parse(c->signed_headers, &buf, hdrs, err, errlen);
        free(buf);
    }
    if (rc == 0 && c->expire != 0 && c->expire < 1000) {
        snprintf(err, errlen, "expire: at least 1s (or 0 for none)");
        rc = -1;
    }
    return rc;
}

static void job_free(job_t *j)
{
    const sp_host_api_t *api = j->dp->api;

    if (j->key) {
        api->msg_free(j->key); /* the core's copy of the key */
    }
    free(j->mime);
    free(j->hdr);
    free(j);
}

static const char *key_str(const sp_host_api_t *api, const sp_msg_t *k, const char *f)
{
    size_t n;
    const char *v = api->msg_get(k, f, &n);
    /* The key message's strings are NUL-terminated copies of store text. */
    return v && n > 0 && strlen(v) == n ? v : NULL;
}

static void sign_work(void *arg)
{
    job_t *j = arg;
    const sp_host_api_t *api = j->dp->api;

    j->rc = dks_sign(j->dp->lib, j->id, key_str(api, j->key, "domain"),
                     key_str(api, j->key, "selector"), key_str(api, j->key, "algorithm"),
                     key_str(api, j->key, "private_key"), j->mime, j->mime_len, &j->hdr,
                     &j->hdr_len, j->err, sizeof(j->err));
    /* OpenSSL keeps per-thread state (the error queue) that a pool thread,
     * never joined, would hold until exit: release it after each use. */
    OPENSSL_thread_stop();
}

/* The verdict when a message cannot be signed. */
static sp_verdict_t unsigned_verdict(dkim_plugin_t *dp, sp_txn_t *txn, const char *why)
{
    if (dp->conf->required) {
        dp->api->counter_add(dp->p, "deferred", 1);
        dp->api->txn_set_reply(txn, 451, why);
        return SP_DEFER;
    }
    dp->api->counter_add(dp->p, "unsigned", 1);
    return SP_CONTINUE;
}

static void sign_done(void *arg, int status)
{
    job_t *j = arg;
    dkim_plugin_t *dp = j->dp;
    const sp_host_api_t *api = dp->api;
    sp_verdict_t v = SP_CONTINUE;

    atomic_fetch_sub(&dp->inflight, 1);
    if (j->cancelled) {
        job_free(j);
        return;
    }
    if (status < 0 || j->rc < 0) {
        api->log(dp->p, SP_LOG_ERROR, "message %s: signing failed: %s", j->id,
                 status < 0 ? api->strerror(status) : j->err);
        api->counter_add(dp->p, "failed", 1);
        v = unsigned_verdict(dp, j->txn, "DKIM signing failed");
    } else {
        /* The signature goes first: nothing above it, everything below it
         * as signed. */
        size_t n = j->hdr_len + j->mime_len;
        char *out = malloc(n);
        int rc = out ? 0 : SP_ENOMEM;
        if (out) {
            memcpy(out, j->hdr, j->hdr_len);
            memcpy(out + j->hdr_len, j->mime, j->mime_len);
            rc = api->msg_set(api->txn_msg(j->txn), SP_F_MIME, out, n);
            free(out);
        }
        if (rc < 0) {
            api->log(dp->p, SP_LOG_WARN, "message %s: cannot store the signed message: %s",
                     j->id, api->strerror(rc));
            v = SP_DEFER;
        } else {
            api->counter_add(dp->p, "signed", 1);
        }
    }
    api->resume(j->tok, v);
    job_free(j);
}

static void sign_cancel(sp_token_t tok, void *arg)
{
    job_t *j = arg;

    (void)tok;
    j->cancelled = true; /* sign_done frees it when the pool is through */
}

/* The domain to sign for: the record's domain_id, else the From address's
 * domain among the team's domains. 0 if none. */
static int64_t domain_of(const sp_host_api_t *api, const sp_msg_t *m)
{
    int64_t id = 0, team = 0;
    sp_domain_t d;
    const char *from, *at, *end;
    char name[sizeof(d.name)];
    size_t n;

    if (api->msg_get_int(m, SP_F_DOMAIN_ID, &id) == 0 && id > 0) {
        return id;
    }
    if (api->msg_get_int(m, SP_F_TEAM, &team) != 0 || !(from = api->msg_get(m, SP_F_FROM, &n))) {
        return 0;
    }
    /* "Name <addr>" or "addr": the domain runs from the last '@' to '>'. */
    end = memchr(from, '<', n) ? memchr(from, '>', n) : NULL;
    end = end ? end : from + n;
    at = NULL;
    for (const char *p = from; p < end; p++) {
        at = *p == '@' ? p : at;
    }
    if (!at || (size_t)(end - at - 1) >= sizeof(name) || end - at - 1 <= 0) {
        return 0;
    }
    memcpy(name, at + 1, (size_t)(end - at - 1));
    name[end - at - 1] = '\0';
    memset(&d, 0, sizeof(d));
    d.size = sizeof(d);
    return api->domain_find(team, trim(name), &d) == 0 ? d.id : 0;
}

static sp_verdict_t dkim_sign_hook(sp_txn_t *txn, void *ctx)
{
    dkim_plugin_t *dp = ctx;
    const sp_host_api_t *api = dp->api;
    sp_msg_t *m = api->txn_msg(txn), *key = NULL;
    size_t len, idlen;
    const char *mime = api->msg_get(m, SP_F_MIME, &len);
    const char *id = api->msg_get(m, SP_F_ID, &idlen);
    int64_t dom;
    job_t *j;
    int rc;

    if (!mime || len == 0) {
        /* Nothing was built (no mime plugin): egress reports it. */
        api->log(dp->p, SP_LOG_DEBUG, "message %.*s: no built message to sign", (int)idlen,
                 id ? id : "?");
        api->counter_add(dp->p, "unsigned", 1);
        return SP_CONTINUE;
    }
    dom = domain_of(api, m);
    rc = dom > 0 ? api->domain_dkim(dom, &key) : SP_ENOTFOUND;
    if (rc == SP_ENOTFOUND) {
        api->log(dp->p, SP_LOG_DEBUG, "message %.*s: domain %lld has no DKIM key; not signed",
                 (int)idlen, id ? id : "?", (long long)dom);
        return unsigned_verdict(dp, txn, "the sending domain has no DKIM key");
    }
    if (rc < 0) {
        api->log(dp->p, SP_LOG_WARN, "message %.*s: reading the DKIM key failed: %s", (int)idlen,
                 id ? id : "?", api->strerror(rc));
        api->txn_set_reply(txn, 503, "DKIM key lookup failed");
        return SP_DEFER;
    }
    if (!(j = calloc(1, sizeof(*j))) || !(j->mime = malloc(len))) {
        free(j);
        api->msg_free(key);
        return SP_DEFER;
    }
    j->dp = dp;
    j->txn = txn;
    j->key = key;
    memcpy(j->mime, mime, len);
    j->mime_len = len;
    snprintf(j->id, sizeof(j->id), "%.*s", (int)(idlen < 63 ? idlen : 63), id ? id : "-");
    if ((j->tok = api->suspend(txn, 0, sign_cancel, j)) == 0) {
        job_free(j);
        return SP_DEFER;
    }
    atomic_fetch_add(&dp->inflight, 1);
    if ((rc = api->queue_work(dp->p, sign_work, sign_done, j)) < 0) {
        /* Its done will not run: finish here. */
        atomic_fetch_sub(&dp->inflight, 1);
        api->txn_set_reply(txn, 503, api->strerror(rc));
        api->resume(j->tok, SP_DEFER);
        job_free(j);
    }
    return SP_PENDING;
}

static void dkim_fini(sp_plugin_t *p, void *ctx)
{
    dkim_plugin_t *dp = ctx;

    (void)p;
    if (!dp) {
        return;
    }
    if (atomic_load(&dp->inflight) > 0) {
        /* A pool thread may still be signing with the library handle. */
        dp->api->log(dp->p, SP_LOG_WARN, "%u signature(s) in flight at unload; kept in memory",
                     atomic_load(&dp->inflight));
        return;
    }
    dks_lib_free(dp->lib);
    free(dp->hdrbuf);
    free(dp);
}

static int dkim_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const dkim_conf_t *c = conf;
    dks_opts_t o = {.oversign_from = c->oversign_from, .expire_s = c->expire / 1000};
    dkim_plugin_t *dp;
    char err[256] = "";
    int rc;

    if (!SP_API_HAS(api, domain_dkim)) {
        api->log(p, SP_LOG_ERROR, "this sendpipe has no domain_dkim (ABI 1.2 needed)");
        return SP_EABI;
    }
    if (!(dp = calloc(1, sizeof(*dp)))) {
        return SP_ENOMEM;
    }
    dp->p = p;
    dp->api = api;
    dp->conf = c;
    if (c->signed_headers) {
        if (hdrs_parse(c->signed_headers, &dp->hdrbuf, dp->hdrs, err, sizeof(err)) != 0) {
            api->log(p, SP_LOG_ERROR, "%s", err);
            free(dp->hdrbuf);
            free(dp);
            return SP_ECONFIG;
        }
        o.headers = dp->hdrs;
    }
    if ((rc = dks_lib_new(&o, &dp->lib, err, sizeof(err))) != 0) {
        api->log(p, SP_LOG_ERROR, "libopendkim: %s", err);
        free(dp->hdrbuf);
        free(dp);
        return rc;
    }
    if ((rc = api->hook(p, SP_STAGE_SIGN, dkim_sign_hook, 0)) < 0) {
        dks_lib_free(dp->lib);
        free(dp->hdrbuf);
        free(dp);
        return rc;
    }
    *ctx = dp;
    return 0;
}

SP_PLUGIN_DEFINE(.name = "dkim", .version = "0.1.0",
                 .description = "DKIM-signs outgoing messages with each domain's key",
                 .conf = dkim_schema, .conf_size = sizeof(dkim_conf_t),
                 .conf_check = dkim_conf_check, .init = dkim_init, .fini = dkim_fini);
