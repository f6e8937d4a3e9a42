/* SPDX-License-Identifier: Apache-2.0 */
/* Teams, API keys and domains: their msgpack records, the writes that create
 * and change them, the reads, the server key file, and the API key check. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/tenancy.h"

#define RECORD_V 1
#define DEFAULT_REGION "us-east-1"
/* useSend's selector; keeping it lets DNS records carry over unchanged. */
#define DEFAULT_DKIM_SELECTOR "usesend"
#define RD_DEPTH_MAX 32
#define CLIENT_ID_TRIES 8

static const char *const domain_status_names[SP_DOM__COUNT] = {
    [SP_DOM_NOT_STARTED] = "NOT_STARTED", [SP_DOM_PENDING] = "PENDING",
    [SP_DOM_SUCCESS] = "SUCCESS",         [SP_DOM_FAILED] = "FAILED",
    [SP_DOM_TEMPORARY_FAILURE] = "TEMPORARY_FAILURE",
};

const char *sp__domain_status_name(int st)
{
    return st >= 0 && st < SP_DOM__COUNT ? domain_status_names[st] : NULL;
}

int sp__domain_status_parse(const char *s)
{
    for (int i = 0; s && i < SP_DOM__COUNT; i++) {
        if (strcmp(s, domain_status_names[i]) == 0) {
            return i;
        }
    }
    return SP_EINVAL;
}

static const char *perm_name(sp_permission_t p)
{
    return p == SP_PERM_FULL ? "FULL" : "SENDING";
}

/* ------------------------------------------------------------------------ */
/* Records: one table of fields per record type drives both directions. */

typedef enum { F_INT, F_STR, F_BIN, F_BOOL, F_PERM, F_DSTATUS } ftype_t;

typedef struct field {
    const char *name;
    ftype_t type;
    size_t off;
    size_t size; /* F_STR: buffer incl. NUL; F_BIN: exact length */
    bool req;
} field_t;

#define FLD(s, f, t, r) {#f, t, offsetof(s, f), sizeof(((s *)0)->f), r}

static const field_t team_fields[] = {
    FLD(sp_team_rec_t, name, F_STR, true),
    FLD(sp_team_rec_t, created_at, F_INT, false),
};

static const field_t key_fields[] = {
    FLD(sp_key_rec_t, client_id, F_STR, true),
    FLD(sp_key_rec_t, token_hash, F_BIN, true),
    FLD(sp_key_rec_t, partial_token, F_STR, false),
    FLD(sp_key_rec_t, name, F_STR, false),
    FLD(sp_key_rec_t, permission, F_PERM, true),
    FLD(sp_key_rec_t, domain_id, F_INT, false),
    FLD(sp_key_rec_t, team, F_INT, true),
    FLD(sp_key_rec_t, created_at, F_INT, false),
    FLD(sp_key_rec_t, revoked_at, F_INT, false),
};

static const field_t domain_fields[] = {
    FLD(sp_domain_rec_t, team, F_INT, true),
    FLD(sp_domain_rec_t, name, F_STR, true),
    FLD(sp_domain_rec_t, status, F_DSTATUS, true),
    FLD(sp_domain_rec_t, region, F_STR, false),
    FLD(sp_domain_rec_t, click_tracking, F_BOOL, false),
    FLD(sp_domain_rec_t, open_tracking, F_BOOL, false),
    FLD(sp_domain_rec_t, dkim_selector, F_STR, false),
    FLD(sp_domain_rec_t, created_at, F_INT, false),
    FLD(sp_domain_rec_t, dkim_algorithm, F_STR, false),
    FLD(sp_domain_rec_t, dkim_private_key, F_STR, false),
};

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(offsetof(sp_team_rec_t, id) == 0, "records start with their id");
_Static_assert(offsetof(sp_key_rec_t, id) == 0, "records start with their id");
_Static_assert(offsetof(sp_domain_rec_t, id) == 0, "records start with their id");

/* A strict msgpack reader for flat records. It allocates nothing and bounds
 * every length by the bytes left, so a damaged record cannot ask for memory. */
typedef struct {
    const uint8_t *p, *end;
} rd_t;

enum { K_UINT, K_INT, K_STR, K_BIN, K_BOOL, K_NIL, K_ARRAY, K_MAP, K_OTHER };

typedef struct {
    int k;
    uint64_t u;
    int64_t i;
    const uint8_t *data;
    size_t len; /* bytes; elements of arrays; pairs of maps */
} obj_t;

static int rd_be(rd_t *r, size_t n, uint64_t *v)
{
    if ((size_t)(r->end - r->p) < n) {
        return -1;
    }
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        *v = (*v << 8) | r->p[i];
    }
    r->p += n;
    return 0;
}

static int rd_data(rd_t *r, size_t n, obj_t *o)
{
    if ((size_t)(r->end - r->p) < n) {
        return -1;
    }
    o->data = r->p;
    o->len = n;
    r->p += n;
    return 0;
}

/* One object header and the payload of scalars (not container elements). */
static int rd_obj(rd_t *r, obj_t *o)
{
    uint64_t v;
    uint8_t c;

    if (r->p >= r->end) {
        return -1;
    }
    c = *r->p++;
    memset(o, 0, sizeof(*o));
    if (c <= 0x7f) {
        o->k = K_UINT;
        o->u = c;
        return 0;
    }
    if (c >= 0xe0) {
        o->k = K_INT;
        o->i = (int8_t)c;
        return 0;
    }
    if (c <= 0x8f || c == 0xde || c == 0xdf) {
        o->k = K_MAP;
        if (c <= 0x8f) {
            o->len = c & 0x0f;
            return 0;
        }
        if (rd_be(r, c == 0xde ? 2 : 4, &v) != 0) {
            return -1;
        }
        o->len = (size_t)v;
        return 0;
    }
    if (c <= 0x9f || c == 0xdc || c == 0xdd) {
        o->k = K_ARRAY;
        if (c <= 0x9f) {
            o->len = c & 0x0f;
            return 0;
        }
        if (rd_be(r, c == 0xdc ? 2 : 4, &v) != 0) {
            return -1;
        }
        o->len = (size_t)v;
        return 0;
    }
    if (c <= 0xbf) {
        o->k = K_STR;
        return rd_data(r, c & 0x1f, o);
    }
    switch (c) {
    case 0xc0:
        o->k = K_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        o->k = K_BOOL;
        o->u = c == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        o->k = K_BIN;
        return rd_be(r, (size_t)1 << (c - 0xc4), &v) || rd_data(r, (size_t)v, o);
    case 0xd9:
    case 0xda:
    case 0xdb:
        o->k = K_STR;
        return rd_be(r, (size_t)1 << (c - 0xd9), &v) || rd_data(r, (size_t)v, o);
    case 0xc7:
    case 0xc8:
    case 0xc9:
        o->k = K_OTHER; /* ext: length, type byte, data */
        return rd_be(r, (size_t)1 << (c - 0xc7), &v) || rd_be(r, 1, &o->u) ||
               rd_data(r, (size_t)v, o);
    case 0xca:
        o->k = K_OTHER;
        return rd_be(r, 4, &v);
    case 0xcb:
        o->k = K_OTHER;
        return rd_be(r, 8, &v);
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        o->k = K_UINT;
        return rd_be(r, (size_t)1 << (c - 0xcc), &o->u);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        size_t n = (size_t)1 << (c - 0xd0);
        if (rd_be(r, n, &v) != 0) {
            return -1;
        }
        o->k = K_INT;
        /* Sign-extend the n-byte two's complement value. */
        if (n < 8 && (v >> (n * 8 - 1)) & 1) {
            v |= ~(uint64_t)0 << (n * 8);
        }
        o->i = (int64_t)v;
        return 0;
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        o->k = K_OTHER; /* fixext: type byte, 1..16 bytes */
        return rd_be(r, 1, &o->u) || rd_data(r, (size_t)1 << (c - 0xd4), o);
    default:
        return -1; /* 0xc1 is never used */
    }
}

/* Skip n objects, containers included, to a bounded depth. */
static int rd_skip(rd_t *r, size_t n, int depth)
{
    obj_t o;

    if (depth > RD_DEPTH_MAX) {
        return -1;
    }
    while (n-- > 0) {
        if (rd_obj(r, &o) != 0) {
            return -1;
        }
        if (o.k == K_ARRAY || o.k == K_MAP) {
            /* Every element takes at least one byte. */
            size_t elems = o.k == K_MAP ? o.len * 2 : o.len;
            if (elems > (size_t)(r->end - r->p)) {
                return -1;
            }
            if (rd_skip(r, elems, depth + 1) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

static bool obj_int(const obj_t *o, int64_t *v)
{
    if (o->k == K_UINT && o->u <= (uint64_t)INT64_MAX) {
        *v = (int64_t)o->u;
        return true;
    }
    if (o->k == K_INT) {
        *v = o->i;
        return true;
    }
    return false;
}

static bool obj_is(const obj_t *o, const char *s)
{
    size_t n = strlen(s);
    return o->k == K_STR && o->len == n && memcmp(o->data, s, n) == 0;
}

static int field_index(const field_t *f, size_t nf, const obj_t *k)
{
    for (size_t i = 0; i < nf; i++) {
        if (obj_is(k, f[i].name)) {
            return (int)i;
        }
    }
    return -1;
}

static int field_set(const field_t *f, void *rec, const obj_t *v)
{
    uint8_t *p = (uint8_t *)rec + f->off;
    int64_t i;
    char s[32];

    switch (f->type) {
    case F_INT:
        if (!obj_int(v, &i)) {
            return -1;
        }
        memcpy(p, &i, sizeof(i));
        return 0;
    case F_STR:
        if (v->k != K_STR || v->len >= f->size || (v->len && memchr(v->data, 0, v->len))) {
            return -1;
        }
        memcpy(p, v->data, v->len);
        p[v->len] = '\0';
        return 0;
    case F_BIN:
        if (v->k != K_BIN || v->len != f->size) {
            return -1;
        }
        memcpy(p, v->data, v->len);
        return 0;
    case F_BOOL:
        if (v->k != K_BOOL) {
            return -1;
        }
        *(bool *)p = v->u != 0;
        return 0;
    case F_PERM:
    case F_DSTATUS: {
        int e;
        if (v->k != K_STR || v->len >= sizeof(s)) {
            return -1;
        }
        memcpy(s, v->data, v->len);
        s[v->len] = '\0';
        if (f->type == F_PERM) {
            if (strcmp(s, "FULL") == 0) {
                e = SP_PERM_FULL;
            } else if (strcmp(s, "SENDING") == 0) {
                e = SP_PERM_SENDING;
            } else {
                return -1;
            }
            *(sp_permission_t *)p = (sp_permission_t)e;
        } else {
            if ((e = sp__domain_status_parse(s)) < 0) {
                return -1;
            }
            *(int *)p = e;
        }
        return 0;
    }
    }
    return -1;
}

/* Decode into rec (zeroed first). Unknown fields are skipped; a record of an
 * unknown major version, a missing required field or a field of the wrong
 * type is SP_ECORRUPT. */
static int rec_decode(const void *buf, size_t len, const field_t *f, size_t nf, void *rec,
                      size_t recsize)
{
    rd_t r = {.p = buf, .end = (const uint8_t *)buf + len};
    uint32_t seen = 0;
    bool seen_v = false;
    obj_t m, k, v;

    memset(rec, 0, recsize);
    if (!buf || rd_obj(&r, &m) != 0 || m.k != K_MAP) {
        return SP_ECORRUPT;
    }
    for (size_t i = 0; i < m.len; i++) {
        int fi;
        if (rd_obj(&r, &k) != 0 || k.k != K_STR) {
            return SP_ECORRUPT;
        }
        if (obj_is(&k, "v")) {
            int64_t ver;
            if (seen_v || rd_obj(&r, &v) != 0 || !obj_int(&v, &ver) || ver != RECORD_V) {
                return SP_ECORRUPT;
            }
            seen_v = true;
        } else if ((fi = field_index(f, nf, &k)) >= 0) {
            if ((seen & (1u << fi)) || rd_obj(&r, &v) != 0) {
                return SP_ECORRUPT;
            }
            /* nil reads as the zero value (absent) */
            if (v.k != K_NIL && field_set(&f[fi], rec, &v) != 0) {
                return SP_ECORRUPT;
            }
            seen |= 1u << fi;
        } else if (rd_skip(&r, 1, 0) != 0) {
            return SP_ECORRUPT;
        }
    }
    if (!seen_v || r.p != r.end) {
        return SP_ECORRUPT;
    }
    for (size_t i = 0; i < nf; i++) {
        if (f[i].req && !(seen & (1u << i))) {
            return SP_ECORRUPT;
        }
    }
    return 0;
}

static int pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int field_pack(msgpack_packer *pk, const field_t *f, const void *rec)
{
    const uint8_t *p = (const uint8_t *)rec + f->off;
    int64_t i;

    if (pack_cstr(pk, f->name) != 0) {
        return -1;
    }
    switch (f->type) {
    case F_INT:
        memcpy(&i, p, sizeof(i));
        return msgpack_pack_int64(pk, i);
    case F_STR:
        return pack_cstr(pk, (const char *)p);
    case F_BIN:
        return msgpack_pack_bin(pk, f->size) || msgpack_pack_bin_body(pk, p, f->size);
    case F_BOOL:
        return *(const bool *)p ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case F_PERM:
        return pack_cstr(pk, perm_name(*(const sp_permission_t *)p));
    case F_DSTATUS: {
        const char *n = sp__domain_status_name(*(const int *)p);
        return n ? pack_cstr(pk, n) : -1;
    }
    }
    return -1;
}

/* Encode rec. With `old` (the record being replaced), fields this version
 * does not know are carried over byte for byte, so a newer writer's
 * additions survive an older one's update. *buf is malloc'd. */
static int rec_encode(const field_t *f, size_t nf, const void *rec, const void *old,
                      size_t oldlen, char **buf, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t unknown = 0;
    rd_t r = {0};
    obj_t m, k;
    int bad = 0;

    if (old) {
        r.p = old;
        r.end = r.p + oldlen;
        if (rd_obj(&r, &m) != 0 || m.k != K_MAP) {
            return SP_ECORRUPT;
        }
        for (size_t i = 0; i < m.len; i++) {
            if (rd_obj(&r, &k) != 0 || k.k != K_STR || rd_skip(&r, 1, 0) != 0) {
                return SP_ECORRUPT;
            }
            unknown += !obj_is(&k, "v") && field_index(f, nf, &k) < 0;
        }
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bad |= msgpack_pack_map(&pk, nf + 1 + unknown);
    bad |= pack_cstr(&pk, "v") || msgpack_pack_int64(&pk, RECORD_V);
    for (size_t i = 0; i < nf; i++) {
        bad |= field_pack(&pk, &f[i], rec);
    }
    if (unknown > 0) {
        r.p = old;
        (void)rd_obj(&r, &m);
        for (size_t i = 0; i < m.len; i++) {
            const uint8_t *start = r.p;
            (void)rd_obj(&r, &k);
            bool keep = !obj_is(&k, "v") && field_index(f, nf, &k) < 0;
            (void)rd_skip(&r, 1, 0);
            if (keep) {
                bad |= msgpack_sbuffer_write(&sb, (const char *)start, (size_t)(r.p - start));
            }
        }
    }
    if (bad || sb.size == 0) {
        msgpack_sbuffer_destroy(&sb);
        return SP_ENOMEM;
    }
    *len = sb.size;
    *buf = msgpack_sbuffer_release(&sb);
    return 0;
}

/* Encode and put under a be64 id. */
static int rec_put(sp_wtxn_t *w, sp_db_t db, int64_t id, const field_t *f, size_t nf,
                   const void *rec, const void *old, size_t oldlen)
{
    uint8_t key[8];
    char *buf = NULL;
    size_t len = 0;
    int rc;

    if ((rc = rec_encode(f, nf, rec, old, oldlen, &buf, &len)) != 0) {
        return rc;
    }
    sp__be64_put(key, (uint64_t)id);
    rc = sp__wtxn_put(w, db, key, 8, buf, len);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Validation */

static bool is_digits(const char *s)
{
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int sp__tenancy_domain_name_norm(const char *in, char out[SP_DOMAIN_NAME_MAX + 1])
{
    size_t n, label = 0, labels = 1, last_start = 0;
    bool last_digits = true;

    if (!in || (n = strlen(in)) == 0 || n > SP_DOMAIN_NAME_MAX) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? lower(in[i]) : '.';
        if (c == '.') {
            /* Empty labels (leading, trailing or double dots) are refused. */
            if (label == 0 || label > 63 || out[i - 1] == '-' || out[last_start] == '-') {
                return SP_EINVAL;
            }
            if (i < n) {
                labels++;
                out[i] = '.';
                label = 0;
                last_start = i + 1;
                last_digits = true;
            }
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return SP_EINVAL;
        }
        last_digits = last_digits && c >= '0' && c <= '9';
        out[i] = c;
        label++;
    }
    /* A single label is not a mail domain; an all-digit top label is an
     * address, not a name. */
    if (labels < 2 || last_digits) {
        return SP_EINVAL;
    }
    out[n] = '\0';
    return 0;
}

int sp__tenancy_team_name_check(const char *name)
{
    size_t n;

    if (!name || (n = strlen(name)) == 0 || n > SP_TEAM_NAME_MAX || is_digits(name) ||
        name[0] == ' ' || name[n - 1] == ' ') {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) {
            return SP_EINVAL;
        }
    }
    return 0;
}

static int key_name_check(const char *name)
{
    size_t n = strlen(name);

    if (n > SP_KEY_NAME_MAX) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) {
            return SP_EINVAL;
        }
    }
    return 0;
}

static int region_check(const char *r)
{
    size_t n = strlen(r);

    if (n == 0 || n > SP_REGION_MAX) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = r[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return SP_EINVAL;
        }
    }
    return 0;
}

/* The name index key of a team: its name folded to lower case (ASCII). */
static size_t team_key(const char *name, char out[SP_TEAM_NAME_MAX + 1])
{
    size_t n = strlen(name);

    for (size_t i = 0; i < n; i++) {
        out[i] = lower(name[i]);
    }
    out[n] = '\0';
    return n;
}

/* ------------------------------------------------------------------------ */
/* Tokens and the server key */

static bool all_of(const char *s, size_t n, bool hex_only)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= '0' && c <= '9') || (hex_only ? (c >= 'a' && c <= 'f')
                                                      : (c >= 'a' && c <= 'z'));
        if (!ok) {
            return false;
        }
    }
    return true;
}

int sp__tenancy_token_parse(const char *tok, size_t len, char client_id[SP_KEY_CLIENT_ID_LEN + 1],
                            char secret[SP_KEY_SECRET_LEN + 1])
{
    const char *u1, *u2, *cid, *sec;

    if (!tok || len > SP_KEY_TOKEN_MAX || memchr(tok, 0, len)) {
        return SP_EINVAL;
    }
    /* Exactly three parts: the secret and the client id are fixed-length and
     * underscore-free, so the last two underscores are the separators. */
    if (len < SP_KEY_CLIENT_ID_LEN + SP_KEY_SECRET_LEN + 2) {
        return SP_EINVAL;
    }
    u2 = tok + len - SP_KEY_SECRET_LEN - 1;
    u1 = u2 - SP_KEY_CLIENT_ID_LEN - 1;
    if (*u2 != '_' || *u1 != '_' || memchr(tok, '_', (size_t)(u1 - tok))) {
        return SP_EINVAL;
    }
    /* Not checked against "us", but a space or control byte is a pasting
     * mistake, not a prefix. */
    for (const char *p = tok; p < u1; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return SP_EINVAL;
        }
    }
    cid = u1 + 1;
    sec = u2 + 1;
    if (!all_of(cid, SP_KEY_CLIENT_ID_LEN, false) || !all_of(sec, SP_KEY_SECRET_LEN, true)) {
        return SP_EINVAL;
    }
    memcpy(client_id, cid, SP_KEY_CLIENT_ID_LEN);
    client_id[SP_KEY_CLIENT_ID_LEN] = '\0';
    memcpy(secret, sec, SP_KEY_SECRET_LEN);
    secret[SP_KEY_SECRET_LEN] = '\0';
    return 0;
}

int sp__tenancy_token_hash(const uint8_t skey[SP_TENANCY_SECRET_LEN], const char *secret,
                           size_t len, uint8_t out[32])
{
    unsigned int olen = 0;

    if (!HMAC(EVP_sha256(), skey, SP_TENANCY_SECRET_LEN, (const unsigned char *)secret, len, out,
              &olen) ||
        olen != 32) {
        return -EIO;
    }
    return 0;
}

static int secret_path(const char *dir, const char *name, char out[PATH_MAX])
{
    if (!dir || (size_t)snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
        return SP_EINVAL;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Make the key file whole under a temporary name, then link() it into place:
 * link never replaces, so of two racing processes exactly one key wins and
 * nobody ever reads a half-written file. */
static int secret_create(const char *dir, const char *path)
{
    char tmp[PATH_MAX], name[64];
    uint8_t key[SP_TENANCY_SECRET_LEN];
    int fd, rc = 0;

    snprintf(name, sizeof(name), SP_TENANCY_SECRET_FILE ".%ld.tmp", (long)getpid());
    if ((rc = secret_path(dir, name, tmp)) != 0) {
        return rc;
    }
    if (RAND_bytes(key, sizeof(key)) != 1) {
        return -EIO;
    }
    unlink(tmp); /* left by a crashed run of this pid */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || (rc = write_all(fd, key, sizeof(key))) != 0 || fsync(fd) != 0) {
        rc = rc ? rc : -errno;
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (link(tmp, path) != 0 && errno != EEXIST) {
        rc = -errno;
    }
    unlink(tmp);
    if (rc == 0 && (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        (void)fsync(fd);
        close(fd);
    }
out:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

static int secret_read(const char *path, uint8_t key[SP_TENANCY_SECRET_LEN], struct stat *sb)
{
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int rc = 0;

    if (fd < 0) {
        return errno == ENOENT ? SP_ENOTFOUND : -errno;
    }
    if (fstat(fd, sb) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(sb->st_mode) || sb->st_size != SP_TENANCY_SECRET_LEN) {
        rc = SP_ECORRUPT;
        goto out;
    }
    while (got < SP_TENANCY_SECRET_LEN) {
        ssize_t n = read(fd, key + got, SP_TENANCY_SECRET_LEN - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n < 0 ? -errno : SP_ECORRUPT;
            goto out;
        }
        got += (size_t)n;
    }
out:
    close(fd);
    return rc;
}

int sp__tenancy_secret(const char *data_dir, bool create, uint8_t key[SP_TENANCY_SECRET_LEN])
{
    char path[PATH_MAX];
    struct stat sb;
    int rc;

    if (!key || (rc = secret_path(data_dir, SP_TENANCY_SECRET_FILE, path)) != 0) {
        return SP_EINVAL;
    }
    rc = secret_read(path, key, &sb);
    if (rc == SP_ENOTFOUND && create) {
        if ((rc = secret_create(data_dir, path)) != 0) {
            SP_LOGE("tenancy: cannot create %s: %s", path, sp__strerror(rc));
            return rc;
        }
        rc = secret_read(path, key, &sb);
    }
    if (rc == 0 && (sb.st_mode & 077)) {
        SP_LOGW("tenancy: %s is readable by others (mode %03o); it should be 0600", path,
                (unsigned)(sb.st_mode & 0777));
    }
    return rc;
}

/* The server process checks a key per API request: keep the key in memory
 * and only stat() the file to notice it being replaced (a restore) or
 * removed. A few directories at most (tests open several stores). */
#define SECRET_CACHE 4

typedef struct {
    char dir[PATH_MAX];
    struct stat sb;
    uint8_t key[SP_TENANCY_SECRET_LEN];
    bool used;
} secret_slot_t;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static secret_slot_t cache[SECRET_CACHE];
static unsigned cache_next;

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static int secret_cached(const char *dir, uint8_t key[SP_TENANCY_SECRET_LEN])
{
    char path[PATH_MAX];
    struct stat sb;
    secret_slot_t *s = NULL;
    int rc;

    if (secret_path(dir, SP_TENANCY_SECRET_FILE, path) != 0 || strlen(dir) >= PATH_MAX) {
        return SP_EINVAL;
    }
    rc = stat(path, &sb) != 0 ? (errno == ENOENT ? SP_ENOTFOUND : -errno) : 0;
    pthread_mutex_lock(&cache_mu);
    for (unsigned i = 0; i < SECRET_CACHE; i++) {
        if (cache[i].used && strcmp(cache[i].dir, dir) == 0) {
            s = &cache[i];
            break;
        }
    }
    if (rc != 0) {
        /* Gone: forget it, so a new file is never mistaken for the old one
         * even if it gets the same inode. */
        if (s) {
            OPENSSL_cleanse(s, sizeof(*s));
        }
        pthread_mutex_unlock(&cache_mu);
        return rc;
    }
    if (s && same_file(&s->sb, &sb)) {
        memcpy(key, s->key, SP_TENANCY_SECRET_LEN);
        pthread_mutex_unlock(&cache_mu);
        return 0;
    }
    pthread_mutex_unlock(&cache_mu);
    if ((rc = secret_read(path, key, &sb)) != 0) {
        return rc;
    }
    pthread_mutex_lock(&cache_mu);
    if (!s) {
        s = &cache[cache_next++ % SECRET_CACHE];
    }
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    s->sb = sb;
    memcpy(s->key, key, SP_TENANCY_SECRET_LEN);
    s->used = true;
    pthread_mutex_unlock(&cache_mu);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Writes */

static int next_id(sp_wtxn_t *w, const char *counter, int64_t *id)
{
    const void *v;
    size_t vl;
    uint8_t buf[8];
    uint64_t next = 1;
    int rc = sp__wtxn_get(w, SP_DB_META, counter, strlen(counter), &v, &vl);

    if (rc == 0) {
        if (vl != 8) {
            return SP_ECORRUPT;
        }
        next = sp__be64_get(v);
    } else if (rc != SP_ENOTFOUND) {
        return rc;
    }
    if (next == 0 || next >= (uint64_t)INT64_MAX) {
        return SP_ECORRUPT;
    }
    sp__be64_put(buf, next + 1);
    if ((rc = sp__wtxn_put(w, SP_DB_META, counter, strlen(counter), buf, 8)) != 0) {
        return rc;
    }
    *id = (int64_t)next;
    return 0;
}

static int wget_id(sp_wtxn_t *w, sp_db_t db, int64_t id, const void **v, size_t *vl)
{
    uint8_t key[8];

    if (id <= 0) {
        return SP_ENOTFOUND;
    }
    sp__be64_put(key, (uint64_t)id);
    return sp__wtxn_get(w, db, key, 8, v, vl);
}

int sp__tenancy_team_add(sp_wtxn_t *w, const char *name, int64_t now_ms, int64_t *id)
{
    char k[SP_TEAM_NAME_MAX + 1];
    sp_team_rec_t t = {0};
    uint8_t idb[8];
    size_t kl;
    int rc;

    if (!w || !id || sp__tenancy_team_name_check(name) != 0) {
        return SP_EINVAL;
    }
    kl = team_key(name, k);
    if ((rc = sp__wtxn_get(w, SP_DB_TEAM_NAMES, k, kl, NULL, NULL)) != SP_ENOTFOUND) {
        return rc == 0 ? SP_EEXIST : rc;
    }
    if ((rc = next_id(w, "next_team_id", &t.id)) != 0) {
        return rc;
    }
    snprintf(t.name, sizeof(t.name), "%s", name);
    t.created_at = now_ms;
    if ((rc = rec_put(w, SP_DB_TEAMS, t.id, team_fields, NFIELDS(team_fields), &t, NULL, 0)) !=
        0) {
        return rc;
    }
    sp__be64_put(idb, (uint64_t)t.id);
    if ((rc = sp__wtxn_put(w, SP_DB_TEAM_NAMES, k, kl, idb, 8)) != 0) {
        return rc;
    }
    *id = t.id;
    return 0;
}

static const char client_alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";

/* 10 characters of [0-9a-z], uniform: bytes >= 252 (7 * 36) are redrawn. */
static int client_id_new(char out[SP_KEY_CLIENT_ID_LEN + 1])
{
    uint8_t b[32];
    size_t n = 0;

    while (n < SP_KEY_CLIENT_ID_LEN) {
        if (RAND_bytes(b, sizeof(b)) != 1) {
            return -EIO;
        }
        for (size_t i = 0; i < sizeof(b) && n < SP_KEY_CLIENT_ID_LEN; i++) {
            if (b[i] < 252) {
                out[n++] = client_alphabet[b[i] % 36];
            }
        }
    }
    out[n] = '\0';
    return 0;
}

int sp__tenancy_key_add(sp_wtxn_t *w, int64_t team, const char *name, sp_permission_t perm,
                        int64_t domain_id, const uint8_t skey[SP_TENANCY_SECRET_LEN],
                        int64_t now_ms, int64_t *id, char token[SP_KEY_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    sp_key_rec_t k = {0};
    uint8_t raw[SP_KEY_SECRET_LEN / 2], idb[8];
    char secret[SP_KEY_SECRET_LEN + 1];
    const void *v;
    size_t vl;
    int rc, tries;

    if (!w || !skey || !id || !token || (perm != SP_PERM_FULL && perm != SP_PERM_SENDING) ||
        domain_id < 0 || (name && key_name_check(name) != 0)) {
        return SP_EINVAL;
    }
    if ((rc = wget_id(w, SP_DB_TEAMS, team, NULL, NULL)) != 0) {
        return rc;
    }
    if (domain_id > 0) {
        sp_domain_rec_t d;
        if ((rc = wget_id(w, SP_DB_DOMAINS, domain_id, &v, &vl)) != 0) {
            return rc == SP_ENOTFOUND ? SP_EINVAL : rc;
        }
        if ((rc = rec_decode(v, vl, domain_fields, NFIELDS(domain_fields), &d, sizeof(d))) != 0) {
            return rc;
        }
        if (d.team != team) {
            return SP_EINVAL;
        }
    }
    /* 36^10 client ids: a collision is rare, but the index must stay unique. */
    for (tries = 0; tries < CLIENT_ID_TRIES; tries++) {
        if ((rc = client_id_new(k.client_id)) != 0) {
            return rc;
        }
        rc = sp__wtxn_get(w, SP_DB_KEY_CLIENTS, k.client_id, SP_KEY_CLIENT_ID_LEN, NULL, NULL);
        if (rc == SP_ENOTFOUND) {
            break;
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (tries == CLIENT_ID_TRIES) {
        return SP_EEXIST;
    }
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return -EIO;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        secret[2 * i] = hex[raw[i] >> 4];
        secret[2 * i + 1] = hex[raw[i] & 15];
    }
    secret[SP_KEY_SECRET_LEN] = '\0';
    rc = sp__tenancy_token_hash(skey, secret, SP_KEY_SECRET_LEN, k.token_hash);
    if (rc == 0) {
        rc = next_id(w, "next_key_id", &k.id);
    }
    if (rc != 0) {
        goto out;
    }
    snprintf(token, SP_KEY_TOKEN_LEN + 1, "us_%s_%s", k.client_id, secret);
    /* useSend's partial token: the first 6 and the last 3 characters. */
    snprintf(k.partial_token, sizeof(k.partial_token), "%.6s...%s", token,
             token + SP_KEY_TOKEN_LEN - 3);
    snprintf(k.name, sizeof(k.name), "%s", name ? name : "");
    k.permission = perm;
    k.domain_id = domain_id;
    k.team = team;
    k.created_at = now_ms;
    rc = rec_put(w, SP_DB_API_KEYS, k.id, key_fields, NFIELDS(key_fields), &k, NULL, 0);
    if (rc == 0) {
        sp__be64_put(idb, (uint64_t)k.id);
        rc = sp__wtxn_put(w, SP_DB_KEY_CLIENTS, k.client_id, SP_KEY_CLIENT_ID_LEN, idb, 8);
    }
    if (rc == 0) {
        *id = k.id;
    } else {
        OPENSSL_cleanse(token, SP_KEY_TOKEN_LEN + 1);
    }
out:
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

int sp__tenancy_key_revoke(sp_wtxn_t *w, int64_t id, int64_t now_ms)
{
    sp_key_rec_t k;
    const void *v;
    size_t vl;
    int rc;

    if (!w) {
        return SP_EINVAL;
    }
    if ((rc = wget_id(w, SP_DB_API_KEYS, id, &v, &vl)) != 0 ||
        (rc = rec_decode(v, vl, key_fields, NFIELDS(key_fields), &k, sizeof(k))) != 0) {
        return rc;
    }
    if (k.revoked_at != 0) {
        return SP_ESTATE;
    }
    k.revoked_at = now_ms > 0 ? now_ms : 1;
    return rec_put(w, SP_DB_API_KEYS, id, key_fields, NFIELDS(key_fields), &k, v, vl);
}

int sp__tenancy_domain_add(sp_wtxn_t *w, int64_t team, const char *name, const char *region,
                           int status, int64_t now_ms, int64_t *id)
{
    sp_domain_rec_t d = {0};
    uint8_t idb[8];
    size_t nl;
    int rc;

    if (!w || !id || !sp__domain_status_name(status) ||
        sp__tenancy_domain_name_norm(name, d.name) != 0 ||
        (region && region_check(region) != 0)) {
        return SP_EINVAL;
    }
    if ((rc = wget_id(w, SP_DB_TEAMS, team, NULL, NULL)) != 0) {
        return rc;
    }
    nl = strlen(d.name);
    if ((rc = sp__wtxn_get(w, SP_DB_DOMAIN_NAMES, d.name, nl, NULL, NULL)) != SP_ENOTFOUND) {
        return rc == 0 ? SP_EEXIST : rc;
    }
    if ((rc = next_id(w, "next_domain_id", &d.id)) != 0) {
        return rc;
    }
    d.team = team;
    d.status = status;
    snprintf(d.region, sizeof(d.region), "%s", region ? region : DEFAULT_REGION);
    snprintf(d.dkim_selector, sizeof(d.dkim_selector), "%s", DEFAULT_DKIM_SELECTOR);
    d.created_at = now_ms;
    rc = rec_put(w, SP_DB_DOMAINS, d.id, domain_fields, NFIELDS(domain_fields), &d, NULL, 0);
    if (rc != 0) {
        return rc;
    }
    sp__be64_put(idb, (uint64_t)d.id);
    if ((rc = sp__wtxn_put(w, SP_DB_DOMAIN_NAMES, d.name, nl, idb, 8)) != 0) {
        return rc;
    }
    *id = d.id;
    return 0;
}

/* A domain record inside a write, with its stored bytes (for rec_put). */
static int domain_wload(sp_wtxn_t *w, int64_t id, sp_domain_rec_t *d, const void **v,
                        size_t *vl)
{
    int rc = wget_id(w, SP_DB_DOMAINS, id, v, vl);
    if (rc == 0) {
        rc = rec_decode(*v, *vl, domain_fields, NFIELDS(domain_fields), d, sizeof(*d));
    }
    return rc;
}

int sp__tenancy_domain_set_status(sp_wtxn_t *w, int64_t id, int status)
{
    sp_domain_rec_t d;
    const void *v;
    size_t vl;
    int rc;

    if (!w || !sp__domain_status_name(status)) {
        return SP_EINVAL;
    }
    if ((rc = domain_wload(w, id, &d, &v, &vl)) != 0) {
        return rc;
    }
    d.status = status;
    return rec_put(w, SP_DB_DOMAINS, id, domain_fields, NFIELDS(domain_fields), &d, v, vl);
}

int sp__tenancy_domain_set_tracking(sp_wtxn_t *w, int64_t id, int open, int click,
                                    sp_domain_rec_t *out)
{
    sp_domain_rec_t d;
    const void *v;
    size_t vl;
    int rc;

    if (!w) {
        return SP_EINVAL;
    }
    if ((rc = domain_wload(w, id, &d, &v, &vl)) != 0) {
        return rc;
    }
    if (open >= 0) {
        d.open_tracking = open != 0;
    }
    if (click >= 0) {
        d.click_tracking = click != 0;
    }
    d.id = id;
    rc = rec_put(w, SP_DB_DOMAINS, id, domain_fields, NFIELDS(domain_fields), &d, v, vl);
    if (rc == 0 && out) {
        *out = d;
    }
    return rc;
}

int sp__tenancy_domain_del(sp_wtxn_t *w, int64_t id)
{
    sp_domain_rec_t d;
    uint8_t key[8];
    const void *v;
    size_t vl;
    int rc;

    if (!w) {
        return SP_EINVAL;
    }
    if ((rc = wget_id(w, SP_DB_DOMAINS, id, &v, &vl)) != 0 ||
        (rc = rec_decode(v, vl, domain_fields, NFIELDS(domain_fields), &d, sizeof(d))) != 0) {
        return rc;
    }
    sp__be64_put(key, (uint64_t)id);
    if ((rc = sp__wtxn_del(w, SP_DB_DOMAINS, key, 8)) != 0) {
        return rc;
    }
    rc = sp__wtxn_del(w, SP_DB_DOMAIN_NAMES, d.name, strlen(d.name));
    return rc == SP_ENOTFOUND ? 0 : rc;
}

/* ------------------------------------------------------------------------ */
/* Reads */

static int rget_rec(sp_rtxn_t *r, sp_db_t db, int64_t id, const field_t *f, size_t nf, void *rec,
                    size_t recsize)
{
    uint8_t key[8];
    const void *v;
    size_t vl;
    int rc;

    if (!r || !rec) {
        return SP_EINVAL;
    }
    if (id <= 0) {
        return SP_ENOTFOUND;
    }
    sp__be64_put(key, (uint64_t)id);
    if ((rc = sp__rtxn_get(r, db, key, 8, &v, &vl)) != 0) {
        return rc;
    }
    if ((rc = rec_decode(v, vl, f, nf, rec, recsize)) != 0) {
        return rc;
    }
    memcpy(rec, &id, sizeof(id)); /* every record struct starts with its id */
    return 0;
}

/* The id an index entry points at. */
static int rget_index(sp_rtxn_t *r, sp_db_t db, const void *k, size_t kl, int64_t *id)
{
    const void *v;
    size_t vl;
    int rc = sp__rtxn_get(r, db, k, kl, &v, &vl);

    if (rc != 0) {
        return rc;
    }
    if (vl != 8) {
        return SP_ECORRUPT;
    }
    *id = (int64_t)sp__be64_get(v);
    return 0;
}

int sp__tenancy_team_get(sp_rtxn_t *r, int64_t id, sp_team_rec_t *out)
{
    return rget_rec(r, SP_DB_TEAMS, id, team_fields, NFIELDS(team_fields), out, sizeof(*out));
}

int sp__tenancy_team_find(sp_rtxn_t *r, const char *name, sp_team_rec_t *out)
{
    char k[SP_TEAM_NAME_MAX + 1];
    int64_t id;
    int rc;

    if (!r || !out || !name) {
        return SP_EINVAL;
    }
    if (sp__tenancy_team_name_check(name) != 0) {
        return SP_ENOTFOUND;
    }
    if ((rc = rget_index(r, SP_DB_TEAM_NAMES, k, team_key(name, k), &id)) != 0) {
        return rc;
    }
    return sp__tenancy_team_get(r, id, out);
}

int sp__tenancy_team_resolve(sp_rtxn_t *r, const char *ref, sp_team_rec_t *out)
{
    if (!ref) {
        return SP_EINVAL;
    }
    if (is_digits(ref)) {
        char *end;
        errno = 0;
        long long id = strtoll(ref, &end, 10);
        if (errno != 0 || *end != '\0') {
            return SP_ENOTFOUND;
        }
        return sp__tenancy_team_get(r, (int64_t)id, out);
    }
    return sp__tenancy_team_find(r, ref, out);
}

typedef struct each_ctx {
    sp_db_t db;
    int64_t team; /* filter, 0 = all */
    void *arg;
    int (*team_fn)(void *arg, const sp_team_rec_t *t);
    int (*key_fn)(void *arg, const sp_key_rec_t *k);
    int (*domain_fn)(void *arg, const sp_domain_rec_t *d);
    union {
        sp_team_rec_t t;
        sp_key_rec_t k;
        sp_domain_rec_t d;
    } rec;
} each_ctx_t;

static int each_rec(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    each_ctx_t *c = arg;
    int64_t id;
    int rc;

    if (kl != 8) {
        return 0;
    }
    id = (int64_t)sp__be64_get(k);
    if (c->team_fn) {
        rc = rec_decode(v, vl, team_fields, NFIELDS(team_fields), &c->rec.t, sizeof(c->rec.t));
        c->rec.t.id = id;
    } else if (c->key_fn) {
        rc = rec_decode(v, vl, key_fields, NFIELDS(key_fields), &c->rec.k, sizeof(c->rec.k));
        c->rec.k.id = id;
    } else {
        rc = rec_decode(v, vl, domain_fields, NFIELDS(domain_fields), &c->rec.d,
                        sizeof(c->rec.d));
        c->rec.d.id = id;
    }
    if (rc != 0) {
        SP_LOGW("tenancy: skipping an unreadable record (id %lld)", (long long)id);
        return 0;
    }
    if (c->team_fn) {
        return c->team_fn(c->arg, &c->rec.t);
    }
    if (c->key_fn) {
        return c->team > 0 && c->rec.k.team != c->team ? 0 : c->key_fn(c->arg, &c->rec.k);
    }
    return c->team > 0 && c->rec.d.team != c->team ? 0 : c->domain_fn(c->arg, &c->rec.d);
}

static int scan_recs(sp_rtxn_t *r, each_ctx_t *c)
{
    int rc;

    if (!r || (!c->team_fn && !c->key_fn && !c->domain_fn)) {
        return SP_EINVAL;
    }
    /* The records are large; keep them off the caller's stack. */
    each_ctx_t *h = malloc(sizeof(*h));
    if (!h) {
        return SP_ENOMEM;
    }
    *h = *c;
    rc = sp__rtxn_scan(r, c->db, NULL, 0, NULL, 0, each_rec, h);
    free(h);
    return rc;
}

int sp__tenancy_team_each(sp_rtxn_t *r, int (*each)(void *arg, const sp_team_rec_t *t),
                          void *arg)
{
    each_ctx_t c = {.db = SP_DB_TEAMS, .team_fn = each, .arg = arg};
    return scan_recs(r, &c);
}

int sp__tenancy_key_get(sp_rtxn_t *r, int64_t id, sp_key_rec_t *out)
{
    return rget_rec(r, SP_DB_API_KEYS, id, key_fields, NFIELDS(key_fields), out, sizeof(*out));
}

int sp__tenancy_key_each(sp_rtxn_t *r, int64_t team,
                         int (*each)(void *arg, const sp_key_rec_t *k), void *arg)
{
    each_ctx_t c = {.db = SP_DB_API_KEYS, .team = team, .key_fn = each, .arg = arg};
    return scan_recs(r, &c);
}

int sp__tenancy_domain_rec_get(sp_rtxn_t *r, int64_t id, sp_domain_rec_t *out)
{
    return rget_rec(r, SP_DB_DOMAINS, id, domain_fields, NFIELDS(domain_fields), out,
                    sizeof(*out));
}

int sp__tenancy_domain_rec_find(sp_rtxn_t *r, const char *name, sp_domain_rec_t *out)
{
    char n[SP_DOMAIN_NAME_MAX + 1];
    int64_t id;
    int rc;

    if (!r || !out || !name) {
        return SP_EINVAL;
    }
    if (sp__tenancy_domain_name_norm(name, n) != 0) {
        return SP_ENOTFOUND;
    }
    if ((rc = rget_index(r, SP_DB_DOMAIN_NAMES, n, strlen(n), &id)) != 0) {
        return rc;
    }
    return sp__tenancy_domain_rec_get(r, id, out);
}

int sp__tenancy_domain_each(sp_rtxn_t *r, int64_t team,
                            int (*each)(void *arg, const sp_domain_rec_t *d), void *arg)
{
    each_ctx_t c = {.db = SP_DB_DOMAINS, .team = team, .domain_fn = each, .arg = arg};
    return scan_recs(r, &c);
}

/* ------------------------------------------------------------------------ */
/* Host API backends */

/* Copy what fits the caller's struct: a plugin built against an older SDK
 * passes a smaller size and gets only the members it knows. */
static int fill_domain(const sp_domain_rec_t *d, sp_domain_t *out)
{
    sp_domain_t o;
    size_t n;

    memset(&o, 0, sizeof(o));
    o.size = out->size;
    o.id = d->id;
    o.team = d->team;
    snprintf(o.name, sizeof(o.name), "%s", d->name);
    o.verified = d->status == SP_DOM_SUCCESS;
    snprintf(o.region, sizeof(o.region), "%s", d->region);
    o.open_tracking = d->open_tracking;
    o.click_tracking = d->click_tracking;
    n = out->size < sizeof(o) ? out->size : sizeof(o);
    memcpy(out, &o, n);
    return 0;
}

static bool out_size_ok(uint32_t size)
{
    return size >= sizeof(uint32_t) + sizeof(int64_t);
}

int sp__tenancy_domain_find_in(sp_store_t *st, int64_t team, const char *name, sp_domain_t *out)
{
    sp_domain_rec_t d;
    sp_rtxn_t *r;
    int rc;

    if (!st || !name || !out || !out_size_ok(out->size)) {
        return SP_EINVAL;
    }
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        return rc;
    }
    rc = sp__tenancy_domain_rec_find(r, name, &d);
    sp__store_read_end(r);
    if (rc == 0 && d.team != team) {
        rc = SP_ENOTFOUND; /* another team's domain does not exist for this one */
    }
    return rc == 0 ? fill_domain(&d, out) : rc;
}

int sp__tenancy_domain_get_in(sp_store_t *st, int64_t id, sp_domain_t *out)
{
    sp_domain_rec_t d;
    sp_rtxn_t *r;
    int rc;

    if (!st || !out || !out_size_ok(out->size)) {
        return SP_EINVAL;
    }
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        return rc;
    }
    rc = sp__tenancy_domain_rec_get(r, id, &d);
    sp__store_read_end(r);
    return rc == 0 ? fill_domain(&d, out) : rc;
}

int sp__tenancy_domain_find(int64_t team, const char *name, sp_domain_t *out)
{
    if (!sp__core || !sp__core->store) {
        return SP_ESTATE;
    }
    return sp__tenancy_domain_find_in(sp__core->store, team, name, out);
}

int sp__tenancy_domain_get(int64_t id, sp_domain_t *out)
{
    if (!sp__core || !sp__core->store) {
        return SP_ESTATE;
    }
    return sp__tenancy_domain_get_in(sp__core->store, id, out);
}

static atomic_bool secret_warned;

/* Every way a token can be wrong ends in the same SP_ENOTFOUND. The HMAC is
 * computed before the lookup, so an unknown client id costs what a wrong
 * secret costs. Store failures are not the token's fault: they are returned
 * as they are, so the caller answers 5xx rather than "invalid key". */
static int auth_key(sp_store_t *st, const char *dir, const char *token, size_t len,
                    sp_auth_t *out)
{
    char cid[SP_KEY_CLIENT_ID_LEN + 1], secret[SP_KEY_SECRET_LEN + 1];
    uint8_t skey[SP_TENANCY_SECRET_LEN], mac[32];
    sp_key_rec_t k;
    sp_auth_t a;
    sp_rtxn_t *r = NULL;
    int64_t id;
    int rc;

    if (!token || !out || out->size < sizeof(uint32_t)) {
        return SP_EINVAL;
    }
    if (sp__tenancy_token_parse(token, len, cid, secret) != 0) {
        return SP_ENOTFOUND;
    }
    rc = secret_cached(dir, skey);
    if (rc != 0) {
        /* No key file means no key was ever made here (or the file was lost
         * in a restore): nothing can match. */
        if (!atomic_exchange(&secret_warned, true)) {
            sp__log(rc == SP_ENOTFOUND ? SP_LOG_WARN : SP_LOG_ERROR,
                    "tenancy: %s/" SP_TENANCY_SECRET_FILE ": %s; no API key can be accepted "
                    "(none was created here, or the file was lost)",
                    dir ? dir : "?", sp__strerror(rc));
        }
        goto out;
    }
    rc = sp__tenancy_token_hash(skey, secret, SP_KEY_SECRET_LEN, mac);
    if (rc != 0) {
        goto out;
    }
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        goto out;
    }
    rc = rget_index(r, SP_DB_KEY_CLIENTS, cid, SP_KEY_CLIENT_ID_LEN, &id);
    if (rc == 0) {
        rc = sp__tenancy_key_get(r, id, &k);
    }
    if (rc == 0 && CRYPTO_memcmp(mac, k.token_hash, sizeof(mac)) != 0) {
        rc = SP_ENOTFOUND;
    }
    if (rc == 0 && k.revoked_at != 0) {
        rc = SP_ENOTFOUND;
    }
    if (rc == 0) {
        sp_team_rec_t t;
        rc = sp__tenancy_team_get(r, k.team, &t);
    }
    if (rc == 0 && k.domain_id > 0) {
        /* A restriction to a domain that is gone (or moved) fails closed. */
        sp_domain_rec_t d;
        rc = sp__tenancy_domain_rec_get(r, k.domain_id, &d);
        if (rc == 0 && d.team != k.team) {
            rc = SP_ENOTFOUND;
        }
    }
    if (rc == SP_ECORRUPT) {
        SP_LOGE("tenancy: an API key record of client id %s is unreadable", cid);
        rc = SP_ENOTFOUND;
    }
    if (rc == 0) {
        memset(&a, 0, sizeof(a));
        a.size = out->size;
        a.team = k.team;
        a.key_id = k.id;
        a.permission = k.permission;
        a.domain_id = k.domain_id;
        memcpy(out, &a, out->size < sizeof(a) ? out->size : sizeof(a));
    }
out:
    if (r) {
        sp__store_read_end(r);
    }
    OPENSSL_cleanse(skey, sizeof(skey));
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

int sp__tenancy_auth_key_in(sp_store_t *st, const char *token, size_t len, sp_auth_t *out)
{
    if (!st) {
        return SP_EINVAL;
    }
    return auth_key(st, sp__store_dir(st), token, len, out);
}

int sp__tenancy_auth_key(const char *token, size_t len, sp_auth_t *out)
{
    if (!sp__core || !sp__core->store || !sp__core->cfg) {
        return SP_ESTATE;
    }
    return auth_key(sp__core->store, sp__core->cfg->data_dir, token, len, out);
}

/* ------------------------------------------------------------------------ */
/* DKIM keys */

const char *sp__tenancy_dkim_alg_norm(const char *s)
{
    if (!s) {
        return NULL;
    }
    if (strcmp(s, "rsa") == 0 || strcmp(s, SP_DKIM_RSA) == 0) {
        return SP_DKIM_RSA;
    }
    if (strcmp(s, "ed25519") == 0 || strcmp(s, SP_DKIM_ED25519) == 0) {
        return SP_DKIM_ED25519;
    }
    return NULL;
}

int sp__tenancy_dkim_selector_check(const char *s)
{
    size_t n, label = 0;

    if (!s || (n = strlen(s)) == 0 || n > SP_DKIM_SELECTOR_MAX) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-' || s[i - label] == '-') {
                return SP_EINVAL;
            }
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-')) {
            return SP_EINVAL;
        }
        label++;
    }
    return 0;
}

/* Never prompt for a passphrase: stored keys have none. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static EVP_PKEY *dkim_key_load(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = NULL;

    if (b) {
        k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
        BIO_free(b);
    }
    return k;
}

int sp__tenancy_dkim_keygen(const char *algorithm, char *pem, size_t size)
{
    EVP_PKEY *k = NULL;
    BUF_MEM *bm = NULL;
    BIO *b = NULL;
    int rc = -EIO;

    if (!algorithm || !pem || size == 0) {
        return SP_EINVAL;
    }
    if (strcmp(algorithm, SP_DKIM_RSA) == 0) {
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    } else if (strcmp(algorithm, SP_DKIM_ED25519) == 0) {
        k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    } else {
        return SP_EINVAL;
    }
    /* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"). */
    if (!k || !(b = BIO_new(BIO_s_secmem())) ||
        PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1) {
        goto out;
    }
    BIO_get_mem_ptr(b, &bm);
    if (!bm || bm->length == 0) {
        goto out;
    }
    if (bm->length >= size) {
        rc = SP_ETOOBIG;
        goto out;
    }
    memcpy(pem, bm->data, bm->length);
    pem[bm->length] = '\0';
    rc = 0;
out:
    BIO_free(b); /* a secure-heap BIO is cleansed as it is freed */
    EVP_PKEY_free(k);
    return rc;
}

int sp__tenancy_dkim_txt(const char *algorithm, const char *pem, char *out, size_t size)
{
    unsigned char raw[SP_DKIM_TXT_MAX], *p = raw;
    char b64[SP_DKIM_TXT_MAX * 4 / 3 + 4];
    const char *k_tag;
    EVP_PKEY *k;
    size_t rl = 0;
    int rc = SP_EINVAL;

    if (!algorithm || !pem || !out || !(k = dkim_key_load(pem))) {
        return SP_EINVAL;
    }
    if (strcmp(algorithm, SP_DKIM_RSA) == 0 && EVP_PKEY_is_a(k, "RSA")) {
        int n = i2d_PUBKEY(k, NULL);
        k_tag = "rsa";
        if (n > 0 && (size_t)n <= sizeof(raw) && i2d_PUBKEY(k, &p) == n) {
            rl = (size_t)n;
        }
    } else if (strcmp(algorithm, SP_DKIM_ED25519) == 0 && EVP_PKEY_is_a(k, "ED25519")) {
        k_tag = "ed25519";
        rl = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(k, raw, &rl) != 1 || rl != 32) {
            rl = 0;
        }
    } else {
        goto out;
    }
    if (rl == 0) {
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)b64, raw, (int)rl);
    rc = (size_t)snprintf(out, size, "v=DKIM1; k=%s; p=%s", k_tag, b64) < size ? 0 : SP_ETOOBIG;
out:
    EVP_PKEY_free(k);
    return rc;
}

int sp__tenancy_domain_set_dkim(sp_wtxn_t *w, int64_t id, const char *selector,
                                const char *algorithm, const char *pem)
{
    char txt[SP_DKIM_TXT_MAX];
    sp_domain_rec_t *d;
    const char *alg = sp__tenancy_dkim_alg_norm(algorithm);
    const void *v;
    size_t vl;
    int rc;

    if (!w || !alg || !pem || strlen(pem) >= SP_DKIM_KEY_MAX ||
        sp__tenancy_dkim_selector_check(selector) != 0 ||
        sp__tenancy_dkim_txt(alg, pem, txt, sizeof(txt)) != 0) {
        return SP_EINVAL;
    }
    if ((rc = wget_id(w, SP_DB_DOMAINS, id, &v, &vl)) != 0) {
        return rc;
    }
    if (!(d = malloc(sizeof(*d)))) {
        return SP_ENOMEM;
    }
    rc = rec_decode(v, vl, domain_fields, NFIELDS(domain_fields), d, sizeof(*d));
    if (rc == 0) {
        snprintf(d->dkim_selector, sizeof(d->dkim_selector), "%s", selector);
        snprintf(d->dkim_algorithm, sizeof(d->dkim_algorithm), "%s", alg);
        snprintf(d->dkim_private_key, sizeof(d->dkim_private_key), "%s", pem);
        rc = rec_put(w, SP_DB_DOMAINS, id, domain_fields, NFIELDS(domain_fields), d, v, vl);
    }
    OPENSSL_cleanse(d, sizeof(*d));
    free(d);
    return rc;
}

int sp__tenancy_domain_dkim_in(sp_store_t *st, int64_t domain_id, sp_msg_t **out)
{
    sp_domain_rec_t *d;
    sp_msg_t *m = NULL;
    sp_rtxn_t *r;
    int rc;

    if (!st || !out) {
        return SP_EINVAL;
    }
    if (!(d = malloc(sizeof(*d)))) {
        return SP_ENOMEM;
    }
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        free(d);
        return rc;
    }
    rc = sp__tenancy_domain_rec_get(r, domain_id, d);
    sp__store_read_end(r);
    if (rc == 0 && (!d->dkim_private_key[0] || !sp__tenancy_dkim_alg_norm(d->dkim_algorithm))) {
        rc = SP_ENOTFOUND; /* a domain from before keys existed: no key yet */
    }
    if (rc == 0 && !(m = sp__msg_new())) {
        rc = SP_ENOMEM;
    }
    if (rc == 0 &&
        ((rc = sp__msg_set(m, "domain", d->name, strlen(d->name))) != 0 ||
         (rc = sp__msg_set(m, "selector", d->dkim_selector, strlen(d->dkim_selector))) != 0 ||
         (rc = sp__msg_set(m, "algorithm", d->dkim_algorithm, strlen(d->dkim_algorithm))) != 0 ||
         (rc = sp__msg_set(m, "private_key", d->dkim_private_key,
                           strlen(d->dkim_private_key))) != 0)) {
        sp__msg_free(m);
        m = NULL;
    }
    OPENSSL_cleanse(d, sizeof(*d));
    free(d);
    if (rc == 0) {
        *out = m;
    }
    return rc;
}

int sp__tenancy_domain_dkim(int64_t domain_id, sp_msg_t **out)
{
    if (!sp__core || !sp__core->store) {
        return SP_ESTATE;
    }
    return sp__tenancy_domain_dkim_in(sp__core->store, domain_id, out);
}
