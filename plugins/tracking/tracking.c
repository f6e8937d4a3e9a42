/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L
/* tracking: sendpipe's own open and click tracking (docs/tracking.md).
 *
 * Transform stage (priority 50, before `mime` builds the message from the
 * html): for a message whose domain has openTracking or clickTracking, the
 * html's http(s) links become `<base>/t/c/<token>` and a 1x1 pixel
 * `<base>/t/o/<token>` is added at the end of the body. Each token carries
 * the message id and the link index under an HMAC (trk_token.c). The
 * original links are stored in the plugin's key/value namespace under the
 * message id, and the message waits for that commit before it goes on: a
 * click can always be answered once the message has left.
 *
 * Routes: GET /t/o/{token} answers a transparent GIF and records OPENED;
 * GET /t/c/{token} answers 302 to the link stored for that message and
 * index and records CLICKED. A token that does not verify, or names a
 * message or link that is not stored, gets 404: the redirect target never
 * comes from the request. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <sp/sp_plugin.h>

#include "trk_html.h"
#include "trk_prefetch.h"
#include "trk_token.h"

#define TRK_PRIORITY 50 /* before mime (100) */
#define TRK_KEY_LEN 32
#define TRK_KEY_FILE "tracking.key"
#define TRK_UA_MAX 512

typedef struct trk_conf {
    char *base_url;
    char *secret;
    int64_t max_links;
    uint64_t max_html_size;
    bool trust_proxy;
} trk_conf_t;

typedef struct trk {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const trk_conf_t *conf;
    char *base; /* no trailing '/'; NULL: tracking is off */
    uint8_t key[TRK_KEY_LEN];
} trk_t;

/* A transaction waiting for its links to be stored. */
typedef struct pend {
    trk_t *t;
    sp_token_t tok;
    bool cancelled;
} pend_t;

/* A hit waiting for its event to be recorded. */
typedef struct hit {
    trk_t *t;
    sp_http_req_t *req;
    char *location; /* click: the redirect target; open: NULL */
} hit_t;

static const sp_conf_item_t trk_schema[] = {
    {SP_CONF_STR, "base_url", offsetof(trk_conf_t, base_url), "", 0,
     "public base URL of the tracking links (default: settings.public_url, i.e. "
     "USESEND_DOMAIN; https:// is assumed without a scheme)"},
    {SP_CONF_STR, "secret", offsetof(trk_conf_t, secret), "", SP_CONF_SECRET,
     "key of the links' HMAC (default: derived from settings.secret, else a random key "
     "kept in data_dir/tracking.key)"},
    {SP_CONF_INT, "max_links", offsetof(trk_conf_t, max_links), "200", 0,
     "rewrite at most this many links of a message (later ones are left as they are)"},
    {SP_CONF_SIZE, "max_html_size", offsetof(trk_conf_t, max_html_size), "2M", 0,
     "larger html is sent untouched (no pixel, no rewritten links)"},
    {SP_CONF_BOOL, "trust_proxy", offsetof(trk_conf_t, trust_proxy), "false", 0,
     "take the client address from the last X-Forwarded-For entry (only behind a proxy "
     "that sets it)"},
    {0},
};

/* GIF89a, 1x1, one transparent pixel. */
static const unsigned char pixel_gif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00,
    0x3b};
_Static_assert(sizeof(pixel_gif) == 43, "the pixel is a 43-byte GIF");

/* ---- transform ------------------------------------------------------------ */

static void pend_cancel(sp_token_t tok, void *arg)
{
    pend_t *pd = arg;
    (void)tok;
    pd->cancelled = true; /* the put still completes and frees pd */
}

static void links_stored(void *arg, int status)
{
    pend_t *pd = arg;
    trk_t *t = pd->t;
    if (!pd->cancelled) {
        if (status < 0) {
            t->api->log(t->p, SP_LOG_WARN, "storing tracked links failed: %s",
                        t->api->strerror(status));
        }
        t->api->resume(pd->tok, status == 0 ? SP_CONTINUE : SP_DEFER);
    }
    t->api->free(pd);
}

static char *links_json(const trk_result_t *r)
{
    json_t *a = json_array();
    char *s;
    if (!a) {
        return NULL;
    }
    for (size_t i = 0; i < r->nlinks; i++) {
        json_t *v = json_string(r->links[i]);
        if (!v) {
            /* Not UTF-8: keep the index, the click will answer 404. */
            v = json_null();
        }
        if (json_array_append_new(a, v) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

static sp_verdict_t trk_transform(sp_txn_t *txn, void *ctx)
{
    trk_t *t = ctx;
    const sp_host_api_t *api = t->api;
    sp_msg_t *m = api->txn_msg(txn);
    sp_domain_t d = {.size = sizeof(d)};
    trk_opts_t o = {0};
    trk_result_t r;
    size_t idlen = 0, hlen = 0;
    const char *id, *html;
    int64_t dom = 0;
    char *json;
    pend_t *pd;
    int rc;

    if (!t->base || api->msg_get(m, SP_F_RAW, NULL) != NULL ||
        api->msg_get_int(m, SP_F_DOMAIN_ID, &dom) != 0 || dom <= 0 ||
        api->domain_get(dom, &d) != 0 || (!d.open_tracking && !d.click_tracking)) {
        return SP_CONTINUE;
    }
    id = api->msg_get(m, SP_F_ID, &idlen);
    html = api->msg_get(m, SP_F_HTML, &hlen);
    if (!id || idlen == 0 || idlen > TRK_ID_MAX || !html || hlen == 0) {
        return SP_CONTINUE;
    }
    if (hlen > t->conf->max_html_size) {
        api->log(t->p, SP_LOG_INFO, "message %s: html of %zu bytes is over max_html_size, not "
                 "tracked", id, hlen);
        api->counter_add(t->p, "too_large", 1);
        return SP_CONTINUE;
    }
    o.base = t->base;
    o.key = t->key;
    o.klen = sizeof(t->key);
    o.id = id;
    o.idlen = idlen;
    o.open = d.open_tracking;
    o.click = d.click_tracking;
    o.max_links = (size_t)t->conf->max_links;
    if (trk_html_rewrite(html, hlen, &o, &r) != 0) {
        api->log(t->p, SP_LOG_WARN, "message %s: the html could not be rewritten; sent "
                 "untracked", id);
        api->counter_add(t->p, "rewrite_failed", 1);
        return SP_CONTINUE;
    }
    json = links_json(&r);
    if (!json || (rc = api->msg_set(m, SP_F_HTML, r.html, r.len)) < 0) {
        free(json);
        trk_result_free(&r);
        api->txn_set_reply(txn, 0, "out of memory adding tracking");
        return SP_DEFER;
    }
    api->counter_add(t->p, "messages", 1);
    api->counter_add(t->p, "links", r.nlinks);
    trk_result_free(&r);
    pd = api->calloc(1, sizeof(*pd));
    if (!pd) {
        free(json);
        return SP_DEFER;
    }
    pd->t = t;
    pd->tok = api->suspend(txn, 0, pend_cancel, pd);
    if (pd->tok == 0) {
        free(json);
        api->free(pd);
        return SP_DEFER;
    }
    rc = api->kv_put(t->p, id, idlen, json, strlen(json), links_stored, pd);
    free(json);
    if (rc < 0) {
        api->txn_set_reply(txn, 503, api->strerror(rc));
        api->resume(pd->tok, SP_DEFER);
        api->free(pd);
    }
    return SP_PENDING;
}

/* ---- hits ------------------------------------------------------------------ */

static void respond_404(trk_t *t, sp_http_req_t *req)
{
    static const char body[] =
        "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"unknown tracking link\"}}";
    t->api->http_set_header(req, "Cache-Control", "no-store");
    t->api->http_respond(req, 404, "application/json", body, sizeof(body) - 1);
}

/* The client's address: the connection's, or with trust_proxy the last
 * X-Forwarded-For entry. */
static void client_ip(trk_t *t, sp_http_req_t *req, char *out, size_t cap)
{
    const char *xff = t->conf->trust_proxy ? t->api->http_header(req, "X-Forwarded-For") : NULL;
    if (xff) {
        const char *last = strrchr(xff, ',');
        char buf[80];
        last = last ? last + 1 : xff;
        while (*last == ' ' || *last == '\t') {
            last++;
        }
        snprintf(buf, sizeof(buf), "%s", last);
        buf[strcspn(buf, " \t")] = '\0';
        if (trk_ip_of(buf, out, cap) == 0) {
            return;
        }
    }
    if (trk_ip_of(t->api->http_remote(req), out, cap) != 0) {
        snprintf(out, cap, "%s", "");
    }
}

/* A JSON string of untrusted header text: cut to TRK_UA_MAX bytes; bytes
 * that are not printable ASCII become '?' if the text is not UTF-8. */
static json_t *text_json(const char *s)
{
    char buf[TRK_UA_MAX + 1];
    json_t *v;
    size_t n = s ? strlen(s) : 0;

    if (n > TRK_UA_MAX) {
        n = TRK_UA_MAX;
    }
    memcpy(buf, s ? s : "", n);
    buf[n] = '\0';
    v = json_stringn(buf, n);
    if (v) {
        return v;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f) {
            buf[i] = '?';
        }
    }
    return json_stringn(buf, n);
}

static void iso_now(int64_t ms, char out[40])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char b[32];
    gmtime_r(&s, &tm);
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%s.%03dZ", b, (int)(ms % 1000));
}

static char *event_data(trk_t *t, sp_http_req_t *req, const char *link, unsigned index,
                        const char **prefetch)
{
    const char *ua = t->api->http_header(req, "User-Agent");
    char ip[64], ts[40];
    json_t *o;
    char *s = NULL;

    client_ip(t, req, ip, sizeof(ip));
    *prefetch = trk_prefetch_classify(ua, ip[0] ? ip : NULL);
    iso_now(t->api->now_ms(), ts);
    o = json_object();
    if (o && json_object_set_new(o, "timestamp", json_string(ts)) == 0 &&
        json_object_set_new(o, "userAgent", text_json(ua)) == 0 &&
        json_object_set_new(o, "ipAddress", json_string(ip)) == 0 &&
        json_object_set_new(o, "prefetch", *prefetch ? json_string(*prefetch) : json_null()) ==
            0 &&
        json_object_set_new(o, "source", json_string("sendpipe")) == 0 &&
        (!link || (json_object_set_new(o, "link", json_string(link)) == 0 &&
                   json_object_set_new(o, "linkIndex", json_integer(index)) == 0))) {
        s = json_dumps(o, JSON_COMPACT);
    }
    json_decref(o);
    return s;
}

static void hit_done(void *arg, int status)
{
    hit_t *h = arg;
    trk_t *t = h->t;
    const sp_host_api_t *api = t->api;

    if (status < 0 && status != SP_ENOTFOUND) {
        api->log(t->p, SP_LOG_WARN, "recording a tracking event failed: %s",
                 api->strerror(status));
    }
    api->http_set_header(h->req, "Cache-Control", "no-store, no-cache, must-revalidate, private");
    api->http_set_header(h->req, "Referrer-Policy", "no-referrer");
    if (h->location) {
        static const char body[] = "{\"data\":\"redirect\"}";
        api->http_set_header(h->req, "Location", h->location);
        api->http_respond(h->req, 302, "application/json", body, sizeof(body) - 1);
    } else {
        api->http_set_header(h->req, "Expires", "0");
        api->http_respond(h->req, 200, "image/gif", pixel_gif, sizeof(pixel_gif));
    }
    free(h->location);
    free(h);
}

/* The links stored for a message, or NULL (404). */
static json_t *links_of(trk_t *t, const char *id)
{
    void *val = NULL;
    size_t vlen = 0;
    json_t *a;

    if (t->api->kv_get(t->p, id, strlen(id), &val, &vlen) != 0) {
        return NULL;
    }
    a = json_loadb(val, vlen, 0, NULL);
    t->api->free(val);
    if (a && !json_is_array(a)) {
        json_decref(a);
        a = NULL;
    }
    return a;
}

static void on_hit(trk_t *t, sp_http_req_t *req, trk_kind_t kind)
{
    const sp_host_api_t *api = t->api;
    const char *tok = api->http_param(req, "token");
    const char *link = NULL, *prefetch = NULL;
    char id[TRK_ID_MAX + 1];
    unsigned index = 0;
    json_t *links;
    char *data;
    hit_t *h;
    int rc;

    if (!tok || trk_token_parse(t->key, sizeof(t->key), kind, tok, strlen(tok), id, &index) != 0 ||
        (links = links_of(t, id)) == NULL) {
        api->counter_add(t->p, "bad_token", 1);
        respond_404(t, req);
        return;
    }
    if (kind == TRK_CLICK) {
        link = json_string_value(json_array_get(links, index));
        if (!link || !trk_link_trackable(link)) {
            json_decref(links);
            api->counter_add(t->p, "bad_token", 1);
            respond_404(t, req);
            return;
        }
    }
    h = calloc(1, sizeof(*h));
    data = h ? event_data(t, req, link, index, &prefetch) : NULL;
    if (h && link) {
        h->location = trk_location(link, strlen(link));
    }
    json_decref(links);
    if (!h || !data || (link && !h->location)) {
        free(data);
        if (h) {
            free(h->location);
        }
        free(h);
        static const char oom[] =
            "{\"error\":{\"code\":\"INTERNAL_SERVER_ERROR\",\"message\":\"out of memory\"}}";
        api->http_respond(req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    h->t = t;
    h->req = req;
    api->counter_add(t->p, kind == TRK_OPEN ? "opens" : "clicks", 1);
    if (prefetch) {
        api->counter_add(t->p, "prefetches", 1);
    }
    rc = api->emit_status(t->p, id, kind == TRK_OPEN ? SP_ST_OPENED : SP_ST_CLICKED, data,
                          hit_done, h);
    free(data);
    if (rc < 0) {
        hit_done(h, rc);
    }
}

static void on_open(sp_http_req_t *req, void *ctx)
{
    on_hit(ctx, req, TRK_OPEN);
}

static void on_click(sp_http_req_t *req, void *ctx)
{
    on_hit(ctx, req, TRK_CLICK);
}

/* ---- life cycle ------------------------------------------------------------ */

/* The key file in data_dir: made once (0600, O_EXCL), then reused. */
static int key_file(trk_t *t, uint8_t key[TRK_KEY_LEN])
{
    char path[4096];
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/%s", t->api->data_dir(), TRK_KEY_FILE);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        bool ok = RAND_bytes(key, TRK_KEY_LEN) == 1 &&
                  write(fd, key, TRK_KEY_LEN) == TRK_KEY_LEN && fsync(fd) == 0;
        close(fd);
        if (!ok) {
            unlink(path);
            return -EIO;
        }
        return 0;
    }
    if (errno != EEXIST) {
        return -errno;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    n = read(fd, key, TRK_KEY_LEN);
    close(fd);
    return n == TRK_KEY_LEN ? 0 : SP_ECORRUPT;
}

static int key_setup(trk_t *t)
{
    const char *secret = t->conf->secret && t->conf->secret[0] ? t->conf->secret
                                                               : t->api->setting("secret");
    static const char info[] = "sendpipe tracking links";
    unsigned len = 0;
    int rc;

    if (secret && secret[0]) {
        /* Derived, so the secret itself never signs anything here. */
        if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)info,
                 sizeof(info) - 1, t->key, &len) == NULL ||
            len != TRK_KEY_LEN) {
            return -EIO;
        }
        return 0;
    }
    if ((rc = key_file(t, t->key)) < 0) {
        t->api->log(t->p, SP_LOG_ERROR, "%s/%s: cannot create or read the tracking key: %s",
                    t->api->data_dir(), TRK_KEY_FILE, t->api->strerror(rc));
    }
    return rc;
}

static int base_setup(trk_t *t)
{
    const char *b = t->conf->base_url && t->conf->base_url[0] ? t->conf->base_url
                                                               : t->api->setting("public_url");
    size_t n, cap;

    if (!b || !b[0]) {
        t->api->log(t->p, SP_LOG_WARN, "no base_url and no public_url (USESEND_DOMAIN): "
                                       "messages are sent without tracking");
        return 0;
    }
    if (strpbrk(b, " \t\r\n\"<>'") != NULL) {
        t->api->log(t->p, SP_LOG_ERROR, "base_url: not a URL");
        return SP_EINVAL;
    }
    cap = strlen(b) + 9;
    t->base = malloc(cap);
    if (!t->base) {
        return SP_ENOMEM;
    }
    if (strncmp(b, "http://", 7) == 0 || strncmp(b, "https://", 8) == 0) {
        snprintf(t->base, cap, "%s", b);
    } else {
        snprintf(t->base, cap, "https://%s", b);
    }
    n = strlen(t->base);
    while (n > 0 && t->base[n - 1] == '/') {
        t->base[--n] = '\0';
    }
    t->api->log(t->p, SP_LOG_INFO, "tracking links point to %s/t/", t->base);
    return 0;
}

static void trk_fini(sp_plugin_t *p, void *ctx)
{
    trk_t *t = ctx;
    (void)p;
    if (t) {
        OPENSSL_cleanse(t->key, sizeof(t->key));
        free(t->base);
        free(t);
    }
}

static int trk_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    trk_t *t;
    int rc;

    if (!SP_API_HAS(api, analytics_cumulated)) {
        api->log(p, SP_LOG_ERROR, "this core is too old (host ABI 1.3 is needed)");
        return SP_EINVAL;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        return SP_ENOMEM;
    }
    t->p = p;
    t->api = api;
    t->conf = conf;
    xmlInitParser();
    if ((rc = base_setup(t)) < 0 || (rc = key_setup(t)) < 0) {
        trk_fini(p, t);
        return rc;
    }
    if ((rc = api->hook(p, SP_STAGE_TRANSFORM, trk_transform, TRK_PRIORITY)) < 0 ||
        (rc = api->http_route(p, "GET", "/t/o/{token}", on_open, 0)) < 0 ||
        (rc = api->http_route(p, "GET", "/t/c/{token}", on_click, 0)) < 0) {
        api->log(p, SP_LOG_ERROR, "registering hooks and routes: %s", api->strerror(rc));
        trk_fini(p, t);
        return rc;
    }
    *ctx = t;
    return 0;
}

static int trk_conf_check(const void *conf, char *err, size_t errlen)
{
    const trk_conf_t *c = conf;
    if (c->max_links < 0 || c->max_links > (int64_t)TRK_INDEX_MAX + 1) {
        snprintf(err, errlen, "max_links: between 0 and %u", TRK_INDEX_MAX + 1);
        return -1;
    }
    if (c->max_html_size > ((uint64_t)64 << 20)) {
        snprintf(err, errlen, "max_html_size: at most 64M");
        return -1;
    }
    return 0;
}

SP_PLUGIN_DEFINE(.name = "tracking", .version = SP_VERSION_STRING,
                 .description = "open pixel and click links with HMAC-signed tokens "
                                "(/t/o/{token}, /t/c/{token})",
                 .conf = trk_schema, .conf_size = sizeof(trk_conf_t),
                 .conf_check = trk_conf_check, .init = trk_init, .fini = trk_fini);
