/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP route registry and request objects: routes by method and pattern,
 * dispatch with the 400/404/405 answers, the response header block, the
 * access log, per-route metrics, and the built-in /healthz, /readyz and
 * /metrics routes. Loop thread only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include <uv.h>

#include "sp_core/core.h"
#include "sp_core/http.h"
#include "sp_core/log.h"

#define MAX_SEGS 32          /* path segments a pattern may have */
#define METHOD_MAX 16
#define REQID_MAX 64
#define LOG_PATH_MAX 256     /* access log: longer raw paths are cut */
#define LOG_UA_MAX 256
#define UNMATCHED "none"     /* metrics label of requests no route took */

/* ---------------------------------------------------------------------- */
/* Growable string buffer */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool err;
} sbuf_t;

static void sb_reserve(sbuf_t *b, size_t more)
{
    size_t ncap;
    char *np;
    if (b->err || b->cap - b->len > more) {
        return;
    }
    ncap = b->cap > 0 ? b->cap : 256;
    while (ncap - b->len <= more) {
        ncap *= 2;
    }
    np = realloc(b->p, ncap);
    if (np == NULL) {
        b->err = true;
        return;
    }
    b->p = np;
    b->cap = ncap;
}

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    if (!b->err) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
    }
}

static void sb_str(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_printf(sbuf_t *b, const char *fmt, ...) SP_PRINTF(2, 3);
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = true;
        return;
    }
    sb_reserve(b, (size_t)n);
    if (b->err) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---------------------------------------------------------------------- */
/* State */

typedef struct route {
    char method[METHOD_MAX];
    char *pattern;
    char *segs[MAX_SEGS]; /* literal text, or the parameter name */
    uint32_t params;      /* bit i: segment i is a parameter */
    size_t nseg;
    uint32_t rank;        /* literal segments, first segment highest bit */
    sp_http_handler_fn fn;
    uint32_t flags;
    sp_plugin_t *owner;   /* NULL: a core route */
} route_t;

/* Latency buckets in seconds (Prometheus "le"). */
static const double g_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                              0.25,  0.5,    1,     2.5,  5,    10};
#define NLE (sizeof(g_le) / sizeof(g_le[0]))

typedef struct metric {
    char *route;
    int status;
    uint64_t count;
    uint64_t buckets[NLE]; /* not cumulative; summed when written */
    double sum;
} metric_t;

typedef struct kv {
    char *name;
    char *value;
} kv_t;

struct sp_http_req {
    sp_plugin_t *ingress;
    const sp_http_transport_t *tr;
    void *conn;
    char method[METHOD_MAX];
    char *target;        /* raw request target, NUL-terminated */
    size_t tlen;
    char *path;          /* target up to '?' (or absolute-form path) */
    const char *rawq;    /* in target, after '?'; NULL if none */
    kv_t *hdr;
    size_t nhdr, caphdr;
    kv_t params[MAX_SEGS];
    size_t nparams;
    kv_t *query;         /* parsed on first http_query */
    size_t nquery;
    bool query_parsed;
    char *body;
    size_t blen;
    char *remote;
    char *route;         /* matched pattern (copy), NULL if none */
    uint32_t route_flags;
    char reqid[REQID_MAX + 1];
    uint64_t start_ns;
    sbuf_t rh;           /* response headers set by the handler */
    bool dispatched;
    bool aborted;
};

/* The set of live requests (pointer hash set, linear probing with backward
 * shift deletion): respond and abort look a request up before touching it,
 * so a second respond is refused without reading freed memory. */
typedef struct live {
    sp_http_req_t **slot;
    size_t cap, n; /* cap is a power of two */
} live_t;

static struct {
    route_t *routes;
    size_t nroutes, caproutes;
    metric_t *metrics;
    size_t nmetrics, capmetrics;
    live_t live;
    sp_core_t *core;
    uint64_t rng;
    bool rng_seeded;
} g;

/* ---------------------------------------------------------------------- */
/* Live set */

static size_t live_hash(const sp_http_req_t *r, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)r;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & (cap - 1);
}

static bool live_has(const sp_http_req_t *r)
{
    if (r == NULL || g.live.cap == 0) {
        return false;
    }
    for (size_t i = live_hash(r, g.live.cap);; i = (i + 1) & (g.live.cap - 1)) {
        if (g.live.slot[i] == NULL) {
            return false;
        }
        if (g.live.slot[i] == r) {
            return true;
        }
    }
}

static void live_put_slot(sp_http_req_t **slot, size_t cap, sp_http_req_t *r)
{
    size_t i = live_hash(r, cap);
    while (slot[i] != NULL) {
        i = (i + 1) & (cap - 1);
    }
    slot[i] = r;
}

static int live_add(sp_http_req_t *r)
{
    if ((g.live.n + 1) * 2 > g.live.cap) {
        size_t ncap = g.live.cap > 0 ? g.live.cap * 2 : 64;
        sp_http_req_t **ns = calloc(ncap, sizeof(*ns));
        if (ns == NULL) {
            return SP_ENOMEM;
        }
        for (size_t i = 0; i < g.live.cap; i++) {
            if (g.live.slot[i] != NULL) {
                live_put_slot(ns, ncap, g.live.slot[i]);
            }
        }
        free(g.live.slot);
        g.live.slot = ns;
        g.live.cap = ncap;
    }
    live_put_slot(g.live.slot, g.live.cap, r);
    g.live.n++;
    return 0;
}

static void live_del(const sp_http_req_t *r)
{
    size_t mask = g.live.cap - 1, i, j;
    if (g.live.cap == 0) {
        return;
    }
    for (i = live_hash(r, g.live.cap); g.live.slot[i] != r; i = (i + 1) & mask) {
        if (g.live.slot[i] == NULL) {
            return;
        }
    }
    g.live.slot[i] = NULL;
    g.live.n--;
    /* Backward shift: move later members of the probe run into the hole
     * when their home slot does not lie cyclically in (i, j]. */
    for (j = (i + 1) & mask; g.live.slot[j] != NULL; j = (j + 1) & mask) {
        size_t home = live_hash(g.live.slot[j], g.live.cap);
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            g.live.slot[i] = g.live.slot[j];
            g.live.slot[j] = NULL;
            i = j;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Small helpers */

static bool is_tchar(unsigned char c)
{
    /* RFC 9110 section 5.6.2 token characters. */
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!is_tchar((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

/* Literal pattern segments: RFC 3986 pchar without '%' (patterns are
 * compared with raw paths, and labels in /metrics need no escaping). */
static bool is_literal_char(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    return c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Percent-decode in[0..len) into out (room for len + 1). Returns the decoded
 * length, or -1 for a bad escape or a NUL (raw or decoded). */
static long pct_decode(const char *in, size_t len, char *out, bool plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3) {
                return -1;
            }
            hi = hexval((unsigned char)in[i + 1]);
            lo = hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return -1;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '\0') {
            return -1;
        } else {
            out[o++] = (plus_space && c == '+') ? ' ' : (char)c;
        }
    }
    out[o] = '\0';
    return (long)o;
}

/* True if every '%' in s[0..len) starts a valid escape of a non-NUL byte
 * and s holds no control character. */
static bool escapes_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
        if (c == '%') {
            int hi, lo;
            if (len - i < 3) {
                return false;
            }
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return false;
            }
        }
    }
    return true;
}

static uint64_t rng_next(void)
{
    uint64_t z;
    if (!g.rng_seeded) {
        if (getrandom(&g.rng, sizeof(g.rng), GRND_NONBLOCK) != (ssize_t)sizeof(g.rng)) {
            g.rng = uv_hrtime() ^ ((uint64_t)getpid() << 32);
        }
        g.rng_seeded = true;
    }
    /* splitmix64: request ids need to be unique, not secret. */
    z = (g.rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static bool reqid_ok(const char *s)
{
    size_t n = 0;
    if (s == NULL) {
        return false;
    }
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n >= REQID_MAX) {
            return false;
        }
    }
    return n > 0;
}

/* ---------------------------------------------------------------------- */
/* Routes */

static void route_clear(route_t *r)
{
    free(r->pattern);
    for (size_t i = 0; i < r->nseg; i++) {
        free(r->segs[i]);
    }
    memset(r, 0, sizeof(*r));
}

/* Parse a pattern into r (segments, parameter mask, rank). */
static int route_parse(route_t *r, const char *pattern)
{
    const char *s = pattern;
    if (pattern == NULL || pattern[0] != '/') {
        return SP_EINVAL;
    }
    r->pattern = strdup(pattern);
    if (r->pattern == NULL) {
        return SP_ENOMEM;
    }
    if (strcmp(pattern, "/") == 0) {
        return 0;
    }
    while (*s == '/') {
        const char *b = s + 1, *e = strchr(b, '/');
        size_t len = e != NULL ? (size_t)(e - b) : strlen(b);
        bool param = len >= 2 && b[0] == '{' && b[len - 1] == '}';
        const char *txt = param ? b + 1 : b;
        size_t tl = param ? len - 2 : len;
        if (len == 0 || tl == 0 || r->nseg == MAX_SEGS) {
            return SP_EINVAL;
        }
        for (size_t i = 0; i < tl; i++) {
            unsigned char c = (unsigned char)txt[i];
            bool ok = param ? ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                               (c >= 'A' && c <= 'Z') || c == '_')
                            : is_literal_char(c);
            if (!ok) {
                return SP_EINVAL;
            }
        }
        r->segs[r->nseg] = strndup(txt, tl);
        if (r->segs[r->nseg] == NULL) {
            return SP_ENOMEM;
        }
        if (param) {
            for (size_t i = 0; i < r->nseg; i++) {
                if ((r->params & (1u << i)) && strcmp(r->segs[i], r->segs[r->nseg]) == 0) {
                    free(r->segs[r->nseg]);
                    r->segs[r->nseg] = NULL;
                    return SP_EINVAL; /* the same parameter twice */
                }
            }
            r->params |= 1u << r->nseg;
        } else {
            r->rank |= 1u << (MAX_SEGS - 1 - r->nseg);
        }
        r->nseg++;
        s = b + len;
    }
    return 0;
}

/* Same method and the same shape (parameter names aside): ambiguous. */
static bool route_same(const route_t *a, const route_t *b)
{
    if (strcmp(a->method, b->method) != 0 || a->nseg != b->nseg || a->params != b->params) {
        return false;
    }
    for (size_t i = 0; i < a->nseg; i++) {
        if (!(a->params & (1u << i)) && strcmp(a->segs[i], b->segs[i]) != 0) {
            return false;
        }
    }
    return true;
}

int sp__http_route(sp_plugin_t *p, const char *method, const char *pattern,
                   sp_http_handler_fn fn, uint32_t flags)
{
    route_t r = {0};
    size_t ml;
    int rc;

    if (method == NULL || fn == NULL || (flags & ~SP_HTTP_ROUTE_NOLOG) != 0) {
        return SP_EINVAL;
    }
    if (p != NULL && !p->in_init) {
        return SP_ESTATE;
    }
    ml = strlen(method);
    if (ml == 0 || ml >= METHOD_MAX) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < ml; i++) {
        if (method[i] < 'A' || method[i] > 'Z') {
            return SP_EINVAL;
        }
    }
    memcpy(r.method, method, ml + 1);
    rc = route_parse(&r, pattern);
    if (rc < 0) {
        route_clear(&r);
        return rc;
    }
    for (size_t i = 0; i < g.nroutes; i++) {
        if (route_same(&g.routes[i], &r)) {
            route_clear(&r);
            return SP_EEXIST;
        }
    }
    if (g.nroutes == g.caproutes) {
        size_t ncap = g.caproutes > 0 ? g.caproutes * 2 : 16;
        route_t *nr = realloc(g.routes, ncap * sizeof(*nr));
        if (nr == NULL) {
            route_clear(&r);
            return SP_ENOMEM;
        }
        g.routes = nr;
        g.caproutes = ncap;
    }
    r.fn = fn;
    r.flags = flags;
    r.owner = p;
    g.routes[g.nroutes++] = r;
    return 0;
}

int sp__http_route_each(int (*each)(void *arg, const char *method, const char *pattern,
                                    const char *owner),
                        void *arg)
{
    if (each == NULL) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < g.nroutes; i++) {
        const route_t *r = &g.routes[i];
        int rc = each(arg, r->method, r->pattern, r->owner != NULL ? r->owner->name : "core");
        if (rc != 0) {
            return rc < 0 ? rc : 0;
        }
    }
    return 0;
}

void sp__http_routes_remove(sp_plugin_t *p)
{
    size_t o = 0;
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < g.nroutes; i++) {
        if (g.routes[i].owner == p) {
            route_clear(&g.routes[i]);
        } else {
            g.routes[o++] = g.routes[i];
        }
    }
    g.nroutes = o;
}

void sp__http_routes_free(void)
{
    for (size_t i = 0; i < g.nroutes; i++) {
        route_clear(&g.routes[i]);
    }
    free(g.routes);
    g.routes = NULL;
    g.nroutes = g.caproutes = 0;
}

/* Split path into segments (pointers into path, lengths). Returns the count,
 * or -1 when there are more than MAX_SEGS. "/" has none; "/a/" has two, the
 * second empty (no route matches an empty segment). */
static int split_path(const char *path, const char **seg, size_t *len)
{
    int n = 0;
    const char *s = path;
    if (strcmp(path, "/") == 0) {
        return 0;
    }
    while (*s == '/') {
        const char *b = s + 1, *e = strchr(b, '/');
        if (n == MAX_SEGS) {
            return -1;
        }
        seg[n] = b;
        len[n] = e != NULL ? (size_t)(e - b) : strlen(b);
        s = b + len[n];
        n++;
    }
    return n;
}

static bool route_matches(const route_t *r, const char **seg, const size_t *len, size_t n)
{
    if (r->nseg != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (len[i] == 0) {
            return false;
        }
        if (!(r->params & (1u << i)) &&
            (strlen(r->segs[i]) != len[i] || memcmp(r->segs[i], seg[i], len[i]) != 0)) {
            return false;
        }
    }
    return true;
}

/* The best route for method among those matching the path (highest rank:
 * a literal segment beats a parameter at the first position they differ). */
static const route_t *route_find(const char *method, const char **seg, const size_t *len,
                                 size_t n)
{
    const route_t *best = NULL;
    for (size_t i = 0; i < g.nroutes; i++) {
        const route_t *r = &g.routes[i];
        if (strcmp(r->method, method) == 0 && route_matches(r, seg, len, n) &&
            (best == NULL || r->rank > best->rank)) {
            best = r;
        }
    }
    return best;
}

/* ---------------------------------------------------------------------- */
/* Requests */

static void kv_free(kv_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
}

static void req_free(sp_http_req_t *req)
{
    live_del(req);
    kv_free(req->hdr, req->nhdr);
    free(req->hdr);
    kv_free(req->params, req->nparams);
    kv_free(req->query, req->nquery);
    free(req->query);
    free(req->target);
    free(req->path);
    free(req->body);
    free(req->remote);
    free(req->route);
    free(req->rh.p);
    free(req);
}

/* The path part of a target: origin form "/p?q", or absolute form
 * "http://host/p?q" (RFC 9112 section 3.2.2) reduced to "/p". */
static const char *target_path(const char *t, size_t *plen)
{
    const char *q;
    if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
        const char *auth = strstr(t, "://") + 3;
        t = auth + strcspn(auth, "/?");
        if (*t != '/') {
            *plen = 0;
            return t; /* empty path: "/" */
        }
    }
    q = strchr(t, '?');
    *plen = q != NULL ? (size_t)(q - t) : strlen(t);
    return t;
}

sp_http_req_t *sp__http_req_new(sp_plugin_t *p, const sp_http_transport_t *tr, void *conn,
                                const char *method, const char *target, size_t tlen,
                                const char *remote_addr)
{
    sp_http_req_t *req;
    const char *path;
    size_t ml, plen;

    if (tr == NULL || tr->send == NULL || method == NULL || (target == NULL && tlen > 0)) {
        return NULL;
    }
    ml = strlen(method);
    if (ml >= METHOD_MAX) {
        ml = METHOD_MAX - 1; /* never routed: no route has such a method */
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        return NULL;
    }
    req->ingress = p;
    req->tr = tr;
    req->conn = conn;
    memcpy(req->method, method, ml);
    req->start_ns = uv_hrtime();
    req->target = malloc(tlen + 1);
    req->remote = strdup(remote_addr != NULL ? remote_addr : "");
    if (req->target == NULL || req->remote == NULL) {
        goto fail;
    }
    if (tlen > 0) {
        memcpy(req->target, target, tlen);
    }
    req->target[tlen] = '\0';
    req->tlen = tlen;
    /* A NUL inside the target hides the rest from string functions; the
     * dispatch refuses such a target, the path just stops there. */
    path = target_path(req->target, &plen);
    if (plen == 0) {
        req->path = strdup("/");
    } else {
        req->path = strndup(path, plen);
    }
    if (req->path == NULL) {
        goto fail;
    }
    if (path[plen] == '?') {
        req->rawq = path + plen + 1;
    }
    if (live_add(req) < 0) {
        goto fail;
    }
    return req;
fail:
    free(req->target);
    free(req->remote);
    free(req->path);
    free(req);
    return NULL;
}

int sp__http_req_add_header(sp_http_req_t *req, const char *name, size_t nlen,
                            const char *value, size_t vlen)
{
    kv_t h;
    if (req == NULL || name == NULL || nlen == 0 || (value == NULL && vlen > 0)) {
        return SP_EINVAL;
    }
    if (req->dispatched) {
        return SP_ESTATE;
    }
    if (req->nhdr == req->caphdr) {
        size_t ncap = req->caphdr > 0 ? req->caphdr * 2 : 16;
        kv_t *nh = realloc(req->hdr, ncap * sizeof(*nh));
        if (nh == NULL) {
            return SP_ENOMEM;
        }
        req->hdr = nh;
        req->caphdr = ncap;
    }
    h.name = strndup(name, nlen);
    h.value = malloc(vlen + 1);
    if (h.name == NULL || h.value == NULL) {
        free(h.name);
        free(h.value);
        return SP_ENOMEM;
    }
    if (vlen > 0) {
        memcpy(h.value, value, vlen);
    }
    h.value[vlen] = '\0';
    req->hdr[req->nhdr++] = h;
    return 0;
}

int sp__http_req_set_body(sp_http_req_t *req, void *body, size_t len)
{
    char *b;
    if (req == NULL || (body == NULL && len > 0) || len == SIZE_MAX) {
        return SP_EINVAL;
    }
    if (req->dispatched) {
        return SP_ESTATE;
    }
    if (body == NULL) {
        free(req->body);
        req->body = NULL;
        req->blen = 0;
        return 0;
    }
    /* One more byte for the NUL the SDK promises; api->alloc is malloc. */
    b = realloc(body, len + 1);
    if (b == NULL) {
        return SP_ENOMEM;
    }
    b[len] = '\0';
    free(req->body);
    req->body = b;
    req->blen = len;
    return 0;
}

static void error_body(char *out, size_t outlen, const char *code, const char *msg)
{
    snprintf(out, outlen, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
}

static void respond_error(sp_http_req_t *req, int status, const char *code, const char *msg)
{
    char body[256];
    error_body(body, sizeof(body), code, msg);
    (void)sp__http_respond(req, status, "application/json", body, strlen(body));
}

/* Percent-decode the route parameters into req->params. */
static int bind_params(sp_http_req_t *req, const route_t *r, const char **seg,
                       const size_t *len)
{
    for (size_t i = 0; i < r->nseg; i++) {
        kv_t *kv;
        if (!(r->params & (1u << i))) {
            continue;
        }
        kv = &req->params[req->nparams];
        kv->name = strdup(r->segs[i]);
        kv->value = malloc(len[i] + 1);
        if (kv->name == NULL || kv->value == NULL) {
            free(kv->name);
            free(kv->value);
            return SP_ENOMEM;
        }
        req->nparams++;
        if (pct_decode(seg[i], len[i], kv->value, false) < 0) {
            return SP_EINVAL;
        }
    }
    return 0;
}

static void respond_405(sp_http_req_t *req, const char **seg, const size_t *len, size_t n)
{
    char allow[256] = "";
    size_t al = 0;
    bool get = false, head = false;
    for (size_t i = 0; i < g.nroutes; i++) {
        const route_t *r = &g.routes[i];
        char needle[METHOD_MAX + 2];
        if (!route_matches(r, seg, len, n)) {
            continue;
        }
        snprintf(needle, sizeof(needle), "%s,", r->method);
        if (strstr(allow, needle) != NULL || al + strlen(needle) + 1 >= sizeof(allow)) {
            continue;
        }
        get = get || strcmp(r->method, "GET") == 0;
        head = head || strcmp(r->method, "HEAD") == 0;
        al += (size_t)snprintf(allow + al, sizeof(allow) - al, "%s", needle);
    }
    if (get && !head && al + 6 < sizeof(allow)) {
        al += (size_t)snprintf(allow + al, sizeof(allow) - al, "HEAD,");
    }
    if (al > 0) {
        allow[al - 1] = '\0';
    }
    /* "Allow: A, B" reads better than "A,B"; both are valid lists. */
    {
        char pretty[512];
        size_t o = 0;
        for (size_t i = 0; allow[i] != '\0' && o + 3 < sizeof(pretty); i++) {
            pretty[o++] = allow[i];
            if (allow[i] == ',') {
                pretty[o++] = ' ';
            }
        }
        pretty[o] = '\0';
        (void)sp__http_set_header(req, "Allow", pretty);
    }
    respond_error(req, 405, "METHOD_NOT_ALLOWED", "method not allowed for this path");
}

void sp__http_dispatch(sp_http_req_t *req)
{
    const char *seg[MAX_SEGS];
    size_t len[MAX_SEGS];
    const char *xid;
    const route_t *r;
    int n, rc;
    sp_http_handler_fn fn;
    void *ctx;

    if (!live_has(req) || req->dispatched) {
        return;
    }
    req->dispatched = true;
    xid = sp__http_header(req, "X-Request-Id");
    if (reqid_ok(xid)) {
        snprintf(req->reqid, sizeof(req->reqid), "%s", xid);
    } else {
        snprintf(req->reqid, sizeof(req->reqid), "%016llx", (unsigned long long)rng_next());
    }
    if (memchr(req->target, '\0', req->tlen) != NULL || req->path[0] != '/' ||
        !escapes_ok(req->target, req->tlen)) {
        respond_error(req, 400, "BAD_REQUEST", "malformed request target");
        return;
    }
    n = split_path(req->path, seg, len);
    if (n < 0) {
        respond_error(req, 404, "NOT_FOUND", "no such path");
        return;
    }
    r = route_find(req->method, seg, len, (size_t)n);
    if (r == NULL && strcmp(req->method, "HEAD") == 0) {
        r = route_find("GET", seg, len, (size_t)n);
    }
    if (r == NULL) {
        for (size_t i = 0; i < g.nroutes; i++) {
            if (route_matches(&g.routes[i], seg, len, (size_t)n)) {
                respond_405(req, seg, len, (size_t)n);
                return;
            }
        }
        respond_error(req, 404, "NOT_FOUND", "no such path");
        return;
    }
    rc = bind_params(req, r, seg, len);
    if (rc == 0) {
        req->route = strdup(r->pattern);
        rc = req->route != NULL ? 0 : SP_ENOMEM;
    }
    if (rc < 0) {
        if (rc == SP_ENOMEM) {
            respond_error(req, 500, "INTERNAL_SERVER_ERROR", "out of memory");
        } else {
            respond_error(req, 400, "BAD_REQUEST", "malformed path parameter");
        }
        return;
    }
    req->route_flags = r->flags;
    fn = r->fn;
    ctx = r->owner != NULL ? r->owner->ctx : (void *)g.core;
    fn(req, ctx);
}

void sp__http_req_abort(sp_http_req_t *req)
{
    if (!live_has(req)) {
        return;
    }
    if (!req->dispatched) {
        req_free(req); /* nobody else holds it */
        return;
    }
    req->aborted = true;
}

/* ---------------------------------------------------------------------- */
/* Accessors */

const char *sp__http_method(const sp_http_req_t *req)
{
    return req != NULL ? req->method : NULL;
}

const char *sp__http_path(const sp_http_req_t *req)
{
    return req != NULL ? req->path : NULL;
}

const char *sp__http_param(const sp_http_req_t *req, const char *name)
{
    if (req == NULL || name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < req->nparams; i++) {
        if (strcmp(req->params[i].name, name) == 0) {
            return req->params[i].value;
        }
    }
    return NULL;
}

/* Split the raw query on '&' into decoded name/value pairs, once. Pieces
 * that do not decode are skipped (dispatch already refused bad escapes). */
static void query_parse(sp_http_req_t *req)
{
    const char *s = req->rawq;
    size_t cap = 0;
    req->query_parsed = true;
    while (s != NULL && *s != '\0' && *s != '#') {
        size_t plen = strcspn(s, "&#");
        const char *eq = memchr(s, '=', plen);
        size_t nl = eq != NULL ? (size_t)(eq - s) : plen;
        size_t vl = eq != NULL ? plen - nl - 1 : 0;
        if (plen > 0) {
            kv_t kv = {malloc(nl + 1), malloc(vl + 1)};
            if (req->nquery == cap) {
                size_t ncap = cap > 0 ? cap * 2 : 8;
                kv_t *nq = realloc(req->query, ncap * sizeof(*nq));
                if (nq == NULL) {
                    free(kv.name);
                    free(kv.value);
                    return;
                }
                req->query = nq;
                cap = ncap;
            }
            if (kv.name == NULL || kv.value == NULL ||
                pct_decode(s, nl, kv.name, true) < 0 ||
                pct_decode(eq != NULL ? eq + 1 : "", vl, kv.value, true) < 0) {
                free(kv.name);
                free(kv.value);
            } else {
                req->query[req->nquery++] = kv;
            }
        }
        s += plen;
        if (*s == '&') {
            s++;
        }
    }
}

const char *sp__http_query(const sp_http_req_t *req, const char *name)
{
    sp_http_req_t *mut = (sp_http_req_t *)req; /* the lazy parse is invisible */
    if (req == NULL || name == NULL) {
        return NULL;
    }
    if (!req->query_parsed) {
        query_parse(mut);
    }
    for (size_t i = 0; i < req->nquery; i++) {
        if (strcmp(req->query[i].name, name) == 0) {
            return req->query[i].value;
        }
    }
    return NULL;
}

const char *sp__http_header(const sp_http_req_t *req, const char *name)
{
    if (req == NULL || name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < req->nhdr; i++) {
        if (strcasecmp(req->hdr[i].name, name) == 0) {
            return req->hdr[i].value;
        }
    }
    return NULL;
}

const void *sp__http_body(const sp_http_req_t *req, size_t *len)
{
    if (req == NULL) {
        if (len != NULL) {
            *len = 0;
        }
        return NULL;
    }
    if (len != NULL) {
        *len = req->blen;
    }
    return req->body != NULL ? req->body : "";
}

const char *sp__http_remote(const sp_http_req_t *req)
{
    return req != NULL ? req->remote : NULL;
}

const char *sp__http_route_of(const sp_http_req_t *req)
{
    return req != NULL ? req->route : NULL;
}

/* ---------------------------------------------------------------------- */
/* Responses */

static bool value_ok(const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\r' || *v == '\n') {
            return false;
        }
    }
    return true;
}

int sp__http_set_header(sp_http_req_t *req, const char *name, const char *value)
{
    if (!live_has(req) || !is_token(name) || value == NULL || !value_ok(value)) {
        return SP_EINVAL;
    }
    /* Framing belongs to the core and the transport: a handler's own
     * Content-Length or Transfer-Encoding would desynchronise the stream. */
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
        strcasecmp(name, "Connection") == 0) {
        return SP_EINVAL;
    }
    sb_printf(&req->rh, "%s: %s\r\n", name, value);
    if (req->rh.err) {
        return SP_ENOMEM;
    }
    return 0;
}

/* True if the handler set a header of that name. */
static bool handler_has(const sp_http_req_t *req, const char *name)
{
    size_t nl = strlen(name);
    const char *s = req->rh.p;
    while (s != NULL && *s != '\0') {
        if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
            return true;
        }
        s = strstr(s, "\r\n");
        if (s != NULL) {
            s += 2;
        }
    }
    return false;
}

static metric_t *metric_get(const char *route, int status)
{
    metric_t *m;
    for (size_t i = 0; i < g.nmetrics; i++) {
        if (g.metrics[i].status == status && strcmp(g.metrics[i].route, route) == 0) {
            return &g.metrics[i];
        }
    }
    if (g.nmetrics == g.capmetrics) {
        size_t ncap = g.capmetrics > 0 ? g.capmetrics * 2 : 16;
        metric_t *nm = realloc(g.metrics, ncap * sizeof(*nm));
        if (nm == NULL) {
            return NULL;
        }
        g.metrics = nm;
        g.capmetrics = ncap;
    }
    m = &g.metrics[g.nmetrics];
    memset(m, 0, sizeof(*m));
    m->route = strdup(route);
    if (m->route == NULL) {
        return NULL;
    }
    m->status = status;
    g.nmetrics++;
    return m;
}

static void observe(const sp_http_req_t *req, int status, double secs)
{
    metric_t *m = metric_get(req->route != NULL ? req->route : UNMATCHED, status);
    if (m == NULL) {
        return;
    }
    m->count++;
    m->sum += secs;
    for (size_t i = 0; i < NLE; i++) {
        if (secs <= g_le[i]) {
            m->buckets[i]++;
            break;
        }
    }
}

static void access_log(const sp_http_req_t *req, int status, size_t bytes, double secs)
{
    char st[16], by[32], dur[32];
    char path[LOG_PATH_MAX + 1], ua[LOG_UA_MAX + 1];
    const char *uah = sp__http_header(req, "User-Agent");
    const char *f[24];
    size_t n = 0;

    /* Below info nothing is written: skip the formatting too. */
    if (sp__log_get_level() < SP_LOG_INFO) {
        return;
    }
    snprintf(st, sizeof(st), "%d", status);
    snprintf(by, sizeof(by), "%zu", bytes);
    snprintf(dur, sizeof(dur), "%.3f", secs * 1000.0);
    snprintf(path, sizeof(path), "%s", req->path);
    snprintf(ua, sizeof(ua), "%s", uah != NULL ? uah : "");
    f[n++] = "request_id";
    f[n++] = req->reqid;
    f[n++] = "method";
    f[n++] = req->method;
    f[n++] = "path";
    f[n++] = path;
    f[n++] = "route";
    f[n++] = req->route;
    f[n++] = "status";
    f[n++] = st;
    f[n++] = "bytes";
    f[n++] = by;
    f[n++] = "duration_ms";
    f[n++] = dur;
    f[n++] = "remote";
    f[n++] = req->remote;
    f[n++] = "user_agent";
    f[n++] = uah != NULL ? ua : NULL;
    if (req->aborted) {
        f[n++] = "aborted";
        f[n++] = "true";
    }
    f[n] = NULL;
    sp__log_fields(SP_LOG_INFO, f, "http request");
}

int sp__http_respond(sp_http_req_t *req, int status, const char *content_type,
                     const void *body, size_t len)
{
    static const char *const sec[][2] = {
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "strict-origin-when-cross-origin"},
    };
    char errbody[128];
    sbuf_t h = {0};
    int rc = 0;
    double secs;

    if (!live_has(req)) {
        return SP_ESTATE; /* answered already (and freed), or never made */
    }
    if (status < 200 || status > 599 || (body == NULL && len > 0) ||
        (content_type != NULL && (!value_ok(content_type) || content_type[0] == '\0'))) {
        /* A broken answer still ends the request, as a 500. */
        rc = SP_EINVAL;
        status = 500;
        error_body(errbody, sizeof(errbody), "INTERNAL_SERVER_ERROR", "invalid response");
        content_type = "application/json";
        body = errbody;
        len = strlen(errbody);
    }
    if (status == 204 || status == 304) {
        len = 0; /* no content, and no Content-Length (RFC 9110 8.6) */
    }
    sb_reserve(&h, 320 + req->rh.len);
    if (content_type != NULL) {
        sb_printf(&h, "Content-Type: %s\r\n", content_type);
    }
    if (status != 204 && status != 304) {
        sb_printf(&h, "Content-Length: %zu\r\n", len);
    }
    sb_printf(&h, "X-Request-Id: %s\r\n", req->reqid[0] != '\0' ? req->reqid : "-");
    for (size_t i = 0; i < sizeof(sec) / sizeof(sec[0]); i++) {
        if (!handler_has(req, sec[i][0])) {
            sb_printf(&h, "%s: %s\r\n", sec[i][0], sec[i][1]);
        }
    }
    if (req->rh.len > 0) {
        sb_add(&h, req->rh.p, req->rh.len);
    }
    if (h.err) {
        static const char oom[] = "Content-Length: 0\r\n";
        status = 500;
        rc = SP_ENOMEM;
        if (!req->aborted) {
            req->tr->send(req->conn, req, status, oom, sizeof(oom) - 1, NULL, 0);
        }
        len = 0;
    } else if (!req->aborted) {
        req->tr->send(req->conn, req, status, h.p, h.len, len > 0 ? body : NULL, len);
    }
    free(h.p);
    secs = (double)(uv_hrtime() - req->start_ns) / 1e9;
    if (!(req->route_flags & SP_HTTP_ROUTE_NOLOG)) {
        access_log(req, status, len, secs);
    }
    observe(req, status, secs);
    req_free(req);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Metrics */

int sp__http_metrics(char **out, size_t *len)
{
    sbuf_t b = {0};
    if (out == NULL || len == NULL) {
        return SP_EINVAL;
    }
    sb_reserve(&b, 1024);
    sb_str(&b, "# HELP sendpipe_http_requests_total HTTP requests answered, by route pattern "
               "and status.\n# TYPE sendpipe_http_requests_total counter\n");
    for (size_t i = 0; i < g.nmetrics; i++) {
        const metric_t *m = &g.metrics[i];
        sb_printf(&b, "sendpipe_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                  m->route, m->status, (unsigned long long)m->count);
    }
    sb_str(&b, "# HELP sendpipe_http_request_duration_seconds Time from the parsed request "
               "to its response.\n# TYPE sendpipe_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < g.nmetrics; i++) {
        const metric_t *m = &g.metrics[i];
        uint64_t cum = 0;
        for (size_t j = 0; j < NLE; j++) {
            cum += m->buckets[j];
            sb_printf(&b,
                      "sendpipe_http_request_duration_seconds_bucket{route=\"%s\","
                      "status=\"%d\",le=\"%g\"} %llu\n",
                      m->route, m->status, g_le[j], (unsigned long long)cum);
        }
        sb_printf(&b,
                  "sendpipe_http_request_duration_seconds_bucket{route=\"%s\",status=\"%d\","
                  "le=\"+Inf\"} %llu\n",
                  m->route, m->status, (unsigned long long)m->count);
        sb_printf(&b,
                  "sendpipe_http_request_duration_seconds_sum{route=\"%s\",status=\"%d\"} "
                  "%.6f\n",
                  m->route, m->status, m->sum);
        sb_printf(&b,
                  "sendpipe_http_request_duration_seconds_count{route=\"%s\",status=\"%d\"} "
                  "%llu\n",
                  m->route, m->status, (unsigned long long)m->count);
    }
    if (b.err) {
        free(b.p);
        return SP_ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Built-in routes */

static void route_healthz(sp_http_req_t *req, void *ctx)
{
    static const char body[] = "{\"status\":\"ok\"}";
    (void)sp__http_respond(req, 200, "application/json", body, sizeof(body) - 1);
}

static void route_readyz(sp_http_req_t *req, void *ctx)
{
    static const char ready[] = "{\"status\":\"ready\"}";
    static const char stopping[] = "{\"status\":\"stopping\"}";
    sp_core_t *core = ctx;
    if (core != NULL && core->stopping) {
        (void)sp__http_respond(req, 503, "application/json", stopping, sizeof(stopping) - 1);
    } else {
        (void)sp__http_respond(req, 200, "application/json", ready, sizeof(ready) - 1);
    }
}

static void route_metrics(sp_http_req_t *req, void *ctx)
{
    sp_core_t *core = ctx;
    char *core_text = NULL, *http_text = NULL;
    size_t core_len = 0, http_len = 0;
    sbuf_t b = {0};
    int rc = 0;

    if (core != NULL) {
        rc = sp__core_metrics(core, &core_text, &core_len);
    }
    if (rc == 0) {
        rc = sp__http_metrics(&http_text, &http_len);
    }
    if (rc == 0) {
        sb_reserve(&b, core_len + http_len);
        if (core_len > 0) {
            sb_add(&b, core_text, core_len);
        }
        sb_add(&b, http_text, http_len);
    }
    if (rc < 0 || b.err) {
        respond_error(req, 500, "INTERNAL_SERVER_ERROR", "metrics unavailable");
    } else {
        (void)sp__http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p,
                               b.len);
    }
    free(core_text);
    free(http_text);
    free(b.p);
}

int sp__http_init(sp_core_t *core)
{
    int rc;
    g.core = core;
    rc = sp__http_route(NULL, "GET", "/healthz", route_healthz, SP_HTTP_ROUTE_NOLOG);
    if (rc == 0) {
        rc = sp__http_route(NULL, "GET", "/readyz", route_readyz, SP_HTTP_ROUTE_NOLOG);
    }
    if (rc == 0) {
        rc = sp__http_route(NULL, "GET", "/metrics", route_metrics, 0);
    }
    return rc;
}

void sp__http_free(void)
{
    if (g.live.n > 0) {
        /* A handler that never answered: its requests end here. */
        SP_LOGW("%zu HTTP requests were never answered; freeing them", g.live.n);
        for (size_t i = 0; i < g.live.cap; i++) {
            while (g.live.slot[i] != NULL) {
                req_free(g.live.slot[i]); /* the backward shift may refill slot i */
            }
        }
    }
    free(g.live.slot);
    sp__http_routes_free();
    for (size_t i = 0; i < g.nmetrics; i++) {
        free(g.metrics[i].route);
    }
    free(g.metrics);
    memset(&g, 0, sizeof(g));
}
