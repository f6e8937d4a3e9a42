/* SPDX-License-Identifier: Apache-2.0 */
/* AWS Signature Version 4 (docs.aws.amazon.com/IAM/latest/UserGuide/
 * create-signed-request.html): canonical request, string to sign, signing
 * key, Authorization. Paths are normalized (every service but S3), then
 * each byte outside the unreserved set is percent-encoded; query pairs are
 * decoded, re-encoded and sorted; header names are lower-cased, values
 * trimmed with inner whitespace runs collapsed, repeats joined with ','. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sigv4.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_chr(sbuf_t *b, char c)
{
    sb_add(b, &c, 1);
}

/* Take the string out of b: NULL (and b freed) after an allocation failure. */
static char *sb_take(sbuf_t *b)
{
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    if (b->p == NULL) {
        return strdup("");
    }
    return b->p;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static void uri_encode(sbuf_t *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            sb_chr(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_add(b, e, 3);
        }
    }
}

static int hexval(char c)
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

/* Percent-decode s[0..n) into b (malformed escapes stay as they are). */
static void uri_decode(sbuf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            sb_chr(b, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
            i += 2;
        } else {
            sb_chr(b, s[i]);
        }
    }
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        memset(md, 0, sizeof(md));
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

/* ---------------------------------------------------------------------- */
/* Path */

static void canonical_path(sbuf_t *b, const char *path)
{
    const char *segs[128];
    size_t lens[128];
    size_t nseg = 0;
    size_t n = strlen(path);
    bool trailing = n > 0 && path[n - 1] == '/';
    const char *p = path;
    while (*p != '\0') {
        const char *e;
        while (*p == '/') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        e = strchr(p, '/');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l == 1 && p[0] == '.') {
            /* "." is dropped */
        } else if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (nseg > 0) {
                nseg--;
            }
        } else if (nseg < sizeof(segs) / sizeof(segs[0])) {
            segs[nseg] = p;
            lens[nseg] = l;
            nseg++;
        }
        p += l;
    }
    sb_chr(b, '/');
    for (size_t i = 0; i < nseg; i++) {
        uri_encode(b, segs[i], lens[i], false);
        if (i + 1 < nseg || trailing) {
            sb_chr(b, '/');
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Query */

typedef struct qpair {
    char *key;
    char *val;
} qpair_t;

static int qpair_cmp(const void *a, const void *b)
{
    const qpair_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : strcmp(x->val, y->val);
}

static char *encode_component(const char *s, size_t n)
{
    sbuf_t dec = {0}, enc = {0};
    char *d;
    uri_decode(&dec, s, n);
    d = sb_take(&dec);
    if (d == NULL) {
        return NULL;
    }
    uri_encode(&enc, d, dec.len, false);
    free(d);
    return sb_take(&enc);
}

static int canonical_query(sbuf_t *b, const char *q)
{
    qpair_t *pairs = NULL;
    size_t np = 0, cap = 0;
    int rc = 0;
    const char *p = q;
    if (q == NULL || *q == '\0') {
        return 0;
    }
    while (rc == 0) {
        const char *amp = strchr(p, '&');
        size_t l = amp != NULL ? (size_t)(amp - p) : strlen(p);
        if (l > 0) {
            const char *eq = memchr(p, '=', l);
            size_t kl = eq != NULL ? (size_t)(eq - p) : l;
            if (np == cap) {
                size_t nc = cap != 0 ? cap * 2 : 8;
                qpair_t *np2 = realloc(pairs, nc * sizeof(*pairs));
                if (np2 == NULL) {
                    rc = -1;
                    break;
                }
                pairs = np2;
                cap = nc;
            }
            pairs[np].key = encode_component(p, kl);
            pairs[np].val = eq != NULL ? encode_component(eq + 1, l - kl - 1) : strdup("");
            np++;
            if (pairs[np - 1].key == NULL || pairs[np - 1].val == NULL) {
                rc = -1;
            }
        }
        if (amp == NULL) {
            break;
        }
        p = amp + 1;
    }
    if (rc == 0) {
        qsort(pairs, np, sizeof(*pairs), qpair_cmp);
        for (size_t i = 0; i < np; i++) {
            if (i > 0) {
                sb_chr(b, '&');
            }
            sb_str(b, pairs[i].key);
            sb_chr(b, '=');
            sb_str(b, pairs[i].val);
        }
    }
    for (size_t i = 0; i < np; i++) {
        free(pairs[i].key);
        free(pairs[i].val);
    }
    free(pairs);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Headers */

typedef struct hdr {
    char *name; /* lower case */
    size_t idx; /* original order, for a stable sort */
    const char *value;
} hdr_t;

static int hdr_cmp(const void *a, const void *b)
{
    const hdr_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0) {
        return c;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trim and collapse every run of whitespace (obs-fold included) to one space. */
static void canonical_value(sbuf_t *b, const char *v)
{
    bool pending_space = false, any = false;
    for (; *v != '\0'; v++) {
        if (is_ws(*v)) {
            pending_space = any;
            continue;
        }
        if (pending_space) {
            sb_chr(b, ' ');
            pending_space = false;
        }
        sb_chr(b, *v);
        any = true;
    }
}

int sigv4_canonical_request(const sigv4_request_t *r, char **out, char **signed_headers)
{
    sbuf_t b = {0}, sh = {0};
    hdr_t *h = NULL;
    char hash[65];
    int rc = 0;

    sb_str(&b, r->method);
    sb_chr(&b, '\n');
    canonical_path(&b, r->path != NULL ? r->path : "");
    sb_chr(&b, '\n');
    if (canonical_query(&b, r->query) < 0) {
        b.oom = true;
    }
    sb_chr(&b, '\n');
    if (r->nheaders > 0) {
        h = calloc(r->nheaders, sizeof(*h));
        if (h == NULL) {
            b.oom = true;
        }
    }
    for (size_t i = 0; h != NULL && i < r->nheaders; i++) {
        h[i].idx = i;
        h[i].value = r->headers[i].value;
        h[i].name = strdup(r->headers[i].name);
        if (h[i].name == NULL) {
            b.oom = true;
            continue;
        }
        for (char *c = h[i].name; *c != '\0'; c++) {
            if (*c >= 'A' && *c <= 'Z') {
                *c = (char)(*c - 'A' + 'a');
            }
        }
    }
    if (h != NULL && !b.oom) {
        qsort(h, r->nheaders, sizeof(*h), hdr_cmp);
        for (size_t i = 0; i < r->nheaders; i++) {
            bool first = i == 0 || strcmp(h[i].name, h[i - 1].name) != 0;
            bool last = i + 1 == r->nheaders || strcmp(h[i].name, h[i + 1].name) != 0;
            if (first) {
                sb_str(&b, h[i].name);
                sb_chr(&b, ':');
                if (sh.len > 0) {
                    sb_chr(&sh, ';');
                }
                sb_str(&sh, h[i].name);
            } else {
                sb_chr(&b, ',');
            }
            canonical_value(&b, h[i].value != NULL ? h[i].value : "");
            if (last) {
                sb_chr(&b, '\n');
            }
        }
    }
    for (size_t i = 0; h != NULL && i < r->nheaders; i++) {
        free(h[i].name);
    }
    free(h);
    sb_chr(&b, '\n');
    sb_add(&b, sh.p != NULL ? sh.p : "", sh.len);
    sb_chr(&b, '\n');
    sigv4_sha256_hex(r->body != NULL ? r->body : "", r->body != NULL ? r->body_len : 0, hash);
    sb_str(&b, hash);

    *out = sb_take(&b);
    if (*out == NULL) {
        rc = -1;
    }
    if (signed_headers != NULL) {
        *signed_headers = sb_take(&sh);
        if (*signed_headers == NULL) {
            rc = -1;
        }
    } else {
        free(sh.p);
    }
    if (rc < 0) {
        free(*out);
        *out = NULL;
        if (signed_headers != NULL) {
            free(*signed_headers);
            *signed_headers = NULL;
        }
    }
    return rc;
}

int sigv4_string_to_sign(const char *amz_date, const char *region, const char *service,
                         const char *creq, char **out)
{
    sbuf_t b = {0};
    char hash[65];
    sigv4_sha256_hex(creq, strlen(creq), hash);
    sb_str(&b, "AWS4-HMAC-SHA256\n");
    sb_str(&b, amz_date);
    sb_chr(&b, '\n');
    sb_add(&b, amz_date, strnlen(amz_date, 8));
    sb_chr(&b, '/');
    sb_str(&b, region);
    sb_chr(&b, '/');
    sb_str(&b, service);
    sb_str(&b, "/aws4_request\n");
    sb_str(&b, hash);
    *out = sb_take(&b);
    return *out != NULL ? 0 : -1;
}

static void hmac(const unsigned char *key, size_t klen, const char *msg, size_t mlen,
                 unsigned char out[32])
{
    unsigned int olen = 0;
    if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &olen) ==
        NULL) {
        memset(out, 0, 32);
    }
}

void sigv4_signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char key[32])
{
    unsigned char k[32];
    size_t sl = strlen(secret);
    char *first = malloc(sl + 5);
    if (first == NULL) {
        memset(key, 0, 32);
        return;
    }
    memcpy(first, "AWS4", 4);
    memcpy(first + 4, secret, sl + 1);
    hmac((const unsigned char *)first, sl + 4, date8, strnlen(date8, 8), k);
    OPENSSL_cleanse(first, sl + 4);
    free(first);
    hmac(k, 32, region, strlen(region), k);
    hmac(k, 32, service, strlen(service), k);
    hmac(k, 32, "aws4_request", 12, key);
    OPENSSL_cleanse(k, sizeof(k));
}

int sigv4_authorization(const sigv4_key_t *k, const char *amz_date, const sigv4_request_t *r,
                        char **out)
{
    char *creq = NULL, *sh = NULL, *sts = NULL;
    unsigned char key[32], sig[32];
    char date8[9];
    static const char hex[] = "0123456789abcdef";
    char sighex[65];
    sbuf_t b = {0};

    *out = NULL;
    if (sigv4_canonical_request(r, &creq, &sh) < 0) {
        return -1;
    }
    if (sigv4_string_to_sign(amz_date, k->region, k->service, creq, &sts) < 0) {
        free(creq);
        free(sh);
        return -1;
    }
    snprintf(date8, sizeof(date8), "%.8s", amz_date);
    sigv4_signing_key(k->secret_key, date8, k->region, k->service, key);
    hmac(key, sizeof(key), sts, strlen(sts), sig);
    OPENSSL_cleanse(key, sizeof(key));
    for (int i = 0; i < 32; i++) {
        sighex[2 * i] = hex[sig[i] >> 4];
        sighex[2 * i + 1] = hex[sig[i] & 15];
    }
    sighex[64] = '\0';
    sb_str(&b, "AWS4-HMAC-SHA256 Credential=");
    sb_str(&b, k->access_key);
    sb_chr(&b, '/');
    sb_str(&b, date8);
    sb_chr(&b, '/');
    sb_str(&b, k->region);
    sb_chr(&b, '/');
    sb_str(&b, k->service);
    sb_str(&b, "/aws4_request, SignedHeaders=");
    sb_str(&b, sh);
    sb_str(&b, ", Signature=");
    sb_str(&b, sighex);
    free(creq);
    free(sh);
    free(sts);
    *out = sb_take(&b);
    return *out != NULL ? 0 : -1;
}

void sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}
