/* SPDX-License-Identifier: Apache-2.0 */
/* Message records (named string, list and integer fields), their msgpack
 * codec, event records, JSON rendering and the status table. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <msgpack.h>

#include "sp_core/msg.h"

/* Nesting allowed inside values kept as raw msgpack. */
#define RAW_DEPTH_MAX 32

enum { F_STR = 1, F_LIST, F_INT, F_RAW };

/* Bytes with a NUL after the last one (not counted in len). */
typedef struct {
    char *p;
    size_t len;
} bytes_t;

typedef struct {
    char name[SP_MSG_NAME_MAX + 1];
    int type;
    union {
        bytes_t s; /* F_STR; F_RAW: one msgpack value this version cannot represent */
        struct {
            bytes_t *v;
            size_t n, cap;
        } l;
        int64_t i;
    } u;
} field_t;

struct sp_msg {
    field_t *f; /* insertion order, which is also the encoding order */
    size_t n, cap;
};

/* ------------------------------------------------------------------------ */
/* Fields */

static bool name_ok(const char *s, size_t len)
{
    if (len == 0 || len > SP_MSG_NAME_MAX || (len == 1 && s[0] == 'v')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

static bool cname_ok(const char *s)
{
    return s && name_ok(s, strnlen(s, SP_MSG_NAME_MAX + 1));
}

static int bytes_dup(const void *p, size_t len, bytes_t *out)
{
    if (len > SP_MSG_VALUE_MAX) {
        return SP_ETOOBIG;
    }
    if (!(out->p = malloc(len + 1))) {
        return SP_ENOMEM;
    }
    if (len > 0) {
        memcpy(out->p, p, len);
    }
    out->p[len] = '\0';
    out->len = len;
    return 0;
}

static void field_clear(field_t *f)
{
    switch (f->type) {
    case F_STR:
    case F_RAW:
        free(f->u.s.p);
        break;
    case F_LIST:
        for (size_t i = 0; i < f->u.l.n; i++) {
            free(f->u.l.v[i].p);
        }
        free(f->u.l.v);
        break;
    default:
        break;
    }
    memset(&f->u, 0, sizeof(f->u));
    f->type = 0;
}

static field_t *find(const sp_msg_t *m, const char *name)
{
    if (!m || !name) {
        return NULL;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->f[i].name, name) == 0) {
            return &m->f[i];
        }
    }
    return NULL;
}

/* A new, empty field at the end (the caller checked name and limits). */
static field_t *field_append(sp_msg_t *m, const char *name, size_t nlen)
{
    field_t *f;

    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        field_t *nf = realloc(m->f, cap * sizeof(*nf));
        if (!nf) {
            return NULL;
        }
        m->f = nf;
        m->cap = cap;
    }
    f = &m->f[m->n++];
    memset(f, 0, sizeof(*f));
    memcpy(f->name, name, nlen);
    f->name[nlen] = '\0';
    return f;
}

sp_msg_t *sp__msg_new(void)
{
    return calloc(1, sizeof(sp_msg_t));
}

void sp__msg_free(sp_msg_t *m)
{
    if (!m) {
        return;
    }
    for (size_t i = 0; i < m->n; i++) {
        field_clear(&m->f[i]);
    }
    free(m->f);
    free(m);
}

/* Find the field to (re)write, or make room for it. */
static int slot(sp_msg_t *m, const char *field, field_t **out)
{
    field_t *f;

    if (!m || !cname_ok(field)) {
        return SP_EINVAL;
    }
    if ((f = find(m, field))) {
        *out = f;
        return 0;
    }
    if (m->n >= SP_MSG_FIELDS_MAX) {
        return SP_ETOOBIG;
    }
    if (!(f = field_append(m, field, strlen(field)))) {
        return SP_ENOMEM;
    }
    *out = f;
    return 0;
}

int sp__msg_set(sp_msg_t *m, const char *field, const void *val, size_t len)
{
    bytes_t b;
    field_t *f;
    int rc;

    if (!m || !cname_ok(field) || (!val && len > 0)) {
        return SP_EINVAL;
    }
    /* Copy first so that a failure leaves the message unchanged. */
    if ((rc = bytes_dup(val, len, &b)) != 0) {
        return rc;
    }
    if ((rc = slot(m, field, &f)) != 0) {
        free(b.p);
        return rc;
    }
    field_clear(f);
    f->type = F_STR;
    f->u.s = b;
    return 0;
}

int sp__msg_add(sp_msg_t *m, const char *field, const void *val, size_t len)
{
    field_t *f;
    bytes_t b;
    int rc;

    if (!m || !cname_ok(field) || (!val && len > 0)) {
        return SP_EINVAL;
    }
    f = find(m, field);
    if (f && f->type != F_LIST) {
        return SP_EINVAL;
    }
    if (f && f->u.l.n >= SP_MSG_LIST_MAX) {
        return SP_ETOOBIG;
    }
    if (!f && m->n >= SP_MSG_FIELDS_MAX) {
        return SP_ETOOBIG;
    }
    if ((rc = bytes_dup(val, len, &b)) != 0) {
        return rc;
    }
    if (!f) {
        if (!(f = field_append(m, field, strlen(field)))) {
            free(b.p);
            return SP_ENOMEM;
        }
        f->type = F_LIST;
    }
    if (f->u.l.n == f->u.l.cap) {
        size_t cap = f->u.l.cap ? f->u.l.cap * 2 : 4;
        bytes_t *nv = realloc(f->u.l.v, cap * sizeof(*nv));
        if (!nv) {
            free(b.p);
            if (f->u.l.n == 0) {
                /* Do not leave a new empty list behind. */
                (void)sp__msg_del(m, field);
            }
            return SP_ENOMEM;
        }
        f->u.l.v = nv;
        f->u.l.cap = cap;
    }
    f->u.l.v[f->u.l.n++] = b;
    return 0;
}

int sp__msg_set_int(sp_msg_t *m, const char *field, int64_t v)
{
    field_t *f;
    int rc;

    if ((rc = slot(m, field, &f)) != 0) {
        return rc;
    }
    field_clear(f);
    f->type = F_INT;
    f->u.i = v;
    return 0;
}

int sp__msg_del(sp_msg_t *m, const char *field)
{
    field_t *f;

    if (!m || !field) {
        return SP_EINVAL;
    }
    if (!(f = find(m, field))) {
        return SP_ENOTFOUND;
    }
    field_clear(f);
    memmove(f, f + 1, (size_t)(&m->f[m->n] - (f + 1)) * sizeof(*f));
    m->n--;
    return 0;
}

const char *sp__msg_get(const sp_msg_t *m, const char *field, size_t *len)
{
    const field_t *f = find(m, field);

    if (!f || f->type != F_STR) {
        if (len) {
            *len = 0;
        }
        return NULL;
    }
    if (len) {
        *len = f->u.s.len;
    }
    return f->u.s.p;
}

size_t sp__msg_count(const sp_msg_t *m, const char *field)
{
    const field_t *f = find(m, field);

    return (f && f->type == F_LIST) ? f->u.l.n : 0;
}

const char *sp__msg_get_at(const sp_msg_t *m, const char *field, size_t i, size_t *len)
{
    const field_t *f = find(m, field);

    if (!f || f->type != F_LIST || i >= f->u.l.n) {
        if (len) {
            *len = 0;
        }
        return NULL;
    }
    if (len) {
        *len = f->u.l.v[i].len;
    }
    return f->u.l.v[i].p;
}

int sp__msg_get_int(const sp_msg_t *m, const char *field, int64_t *out)
{
    const field_t *f = find(m, field);

    if (!f || f->type != F_INT) {
        return SP_ENOTFOUND;
    }
    if (out) {
        *out = f->u.i;
    }
    return 0;
}

static int field_copy(field_t *dst, const field_t *src)
{
    int rc = 0;

    memcpy(dst->name, src->name, sizeof(dst->name));
    dst->type = src->type;
    switch (src->type) {
    case F_STR:
    case F_RAW:
        rc = bytes_dup(src->u.s.p, src->u.s.len, &dst->u.s);
        break;
    case F_LIST:
        dst->u.l.n = dst->u.l.cap = 0;
        dst->u.l.v = NULL;
        if (src->u.l.n == 0) {
            break;
        }
        if (!(dst->u.l.v = malloc(src->u.l.n * sizeof(bytes_t)))) {
            return SP_ENOMEM;
        }
        dst->u.l.cap = src->u.l.n;
        for (size_t i = 0; i < src->u.l.n && rc == 0; i++) {
            if ((rc = bytes_dup(src->u.l.v[i].p, src->u.l.v[i].len, &dst->u.l.v[i])) == 0) {
                dst->u.l.n++;
            }
        }
        break;
    default:
        dst->u.i = src->u.i;
        break;
    }
    return rc;
}

sp_msg_t *sp__msg_dup(const sp_msg_t *m)
{
    sp_msg_t *d;

    if (!m || !(d = sp__msg_new())) {
        return NULL;
    }
    if (m->n > 0) {
        if (!(d->f = calloc(m->n, sizeof(field_t)))) {
            free(d);
            return NULL;
        }
        d->cap = m->n;
    }
    for (size_t i = 0; i < m->n; i++) {
        int rc = field_copy(&d->f[i], &m->f[i]);
        d->n++;
        if (rc != 0) {
            sp__msg_free(d);
            return NULL;
        }
    }
    return d;
}

static bool bytes_eq(const bytes_t *a, const bytes_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

bool sp__msg_equal(const sp_msg_t *a, const sp_msg_t *b)
{
    if (!a || !b) {
        return a == b;
    }
    if (a->n != b->n) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        const field_t *x = &a->f[i], *y = find(b, a->f[i].name);
        if (!y || x->type != y->type) {
            return false;
        }
        switch (x->type) {
        case F_STR:
        case F_RAW:
            if (!bytes_eq(&x->u.s, &y->u.s)) {
                return false;
            }
            break;
        case F_LIST:
            if (x->u.l.n != y->u.l.n) {
                return false;
            }
            for (size_t j = 0; j < x->u.l.n; j++) {
                if (!bytes_eq(&x->u.l.v[j], &y->u.l.v[j])) {
                    return false;
                }
            }
            break;
        default:
            if (x->u.i != y->u.i) {
                return false;
            }
            break;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* UTF-8 */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0], lo = 0x80, hi = 0xbf;
    size_t len;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }
    return len;
}

static bool utf8_valid(const void *s, size_t n)
{
    const uint8_t *p = s;

    while (n > 0) {
        size_t l;

        /* Message text is mostly ASCII: skip it eight bytes at a time. */
        if (n >= 8) {
            uint64_t w;

            memcpy(&w, p, sizeof(w));
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                p += 8;
                n -= 8;
                continue;
            }
        }
        l = utf8_seq(p, n);
        if (l == 0) {
            return false;
        }
        p += l;
        n -= l;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Encoding (msgpack-c's packer) */

/* Valid UTF-8 goes out as msgpack str, anything else as bin; both decode to
 * the same bytes, so the round trip is exact either way. */
static int pack_bytes(msgpack_packer *pk, const void *p, size_t len)
{
    if (utf8_valid(p, len)) {
        return msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, p, len);
    }
    return msgpack_pack_bin(pk, len) || msgpack_pack_bin_body(pk, p, len);
}

/* Start a buffer of roughly the right size so big bodies are not copied by
 * repeated doubling. */
static int sbuf_init(msgpack_sbuffer *sb, size_t est)
{
    msgpack_sbuffer_init(sb);
    if (!(sb->data = malloc(est))) {
        return SP_ENOMEM;
    }
    sb->alloc = est;
    return 0;
}

int sp__msg_encode(const sp_msg_t *m, void **buf, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t est = 16;
    int bad = 0;

    if (!m || !buf || !len) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < m->n; i++) {
        const field_t *f = &m->f[i];
        est += SP_MSG_NAME_MAX + 10;
        if (f->type == F_STR || f->type == F_RAW) {
            est += f->u.s.len;
        } else if (f->type == F_LIST) {
            for (size_t j = 0; j < f->u.l.n; j++) {
                est += f->u.l.v[j].len + 5;
            }
        }
    }
    if (sbuf_init(&sb, est) != 0) {
        return SP_ENOMEM;
    }
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bad |= msgpack_pack_map(&pk, m->n + 1);
    bad |= msgpack_pack_str(&pk, 1) || msgpack_pack_str_body(&pk, "v", 1);
    bad |= msgpack_pack_int64(&pk, SP_MSG_VERSION);
    for (size_t i = 0; i < m->n && !bad; i++) {
        const field_t *f = &m->f[i];
        size_t nl = strlen(f->name);
        bad |= msgpack_pack_str(&pk, nl) || msgpack_pack_str_body(&pk, f->name, nl);
        switch (f->type) {
        case F_STR:
            bad |= pack_bytes(&pk, f->u.s.p, f->u.s.len);
            break;
        case F_LIST:
            bad |= msgpack_pack_array(&pk, f->u.l.n);
            for (size_t j = 0; j < f->u.l.n && !bad; j++) {
                bad |= pack_bytes(&pk, f->u.l.v[j].p, f->u.l.v[j].len);
            }
            break;
        case F_INT:
            bad |= msgpack_pack_int64(&pk, f->u.i);
            break;
        default:
            /* Already one complete msgpack value. */
            bad |= msgpack_sbuffer_write(&sb, f->u.s.p, f->u.s.len);
            break;
        }
    }
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return SP_ENOMEM;
    }
    *len = sb.size;
    *buf = msgpack_sbuffer_release(&sb);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding
 *
 * A small strict reader instead of msgpack_unpack(): the unpacker allocates
 * for the element count an array header declares before reading the
 * elements, so five input bytes can ask for gigabytes. This reader allocates
 * nothing but the record itself, bounds every count by the bytes left and
 * the nesting depth by RAW_DEPTH_MAX. */

typedef struct {
    const uint8_t *p, *end;
} rd_t;

enum { K_UINT, K_INT, K_STR, K_BIN, K_ARRAY, K_MAP, K_NIL, K_BOOL, K_FLOAT32, K_FLOAT64, K_EXT };

typedef struct {
    int k;
    uint64_t u;          /* K_UINT; K_BOOL; K_FLOAT* bit pattern; K_EXT type */
    int64_t i;           /* K_INT */
    const uint8_t *data; /* K_STR, K_BIN, K_EXT */
    size_t len;          /* bytes, or elements of K_ARRAY / pairs of K_MAP */
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

/* One object header, and the payload of scalars (not the elements of
 * containers). */
static int rd_obj(rd_t *r, obj_t *o)
{
    static const uint8_t fixext_len[] = {1, 2, 4, 8, 16};
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
    if (c <= 0x8f) {
        o->k = K_MAP;
        o->len = c & 0x0f;
        return 0;
    }
    if (c <= 0x9f) {
        o->k = K_ARRAY;
        o->len = c & 0x0f;
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
    case 0xc7:
    case 0xc8:
    case 0xc9:
        o->k = K_EXT;
        return rd_be(r, (size_t)1 << (c - 0xc7), &v) || rd_be(r, 1, &o->u) ||
               rd_data(r, (size_t)v, o);
    case 0xca:
        o->k = K_FLOAT32;
        return rd_be(r, 4, &o->u);
    case 0xcb:
        o->k = K_FLOAT64;
        return rd_be(r, 8, &o->u);
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        o->k = K_UINT;
        return rd_be(r, (size_t)1 << (c - 0xcc), &o->u);
    case 0xd0:
        o->k = K_INT;
        if (rd_be(r, 1, &v)) {
            return -1;
        }
        o->i = (int8_t)(uint8_t)v;
        return 0;
    case 0xd1:
        o->k = K_INT;
        if (rd_be(r, 2, &v)) {
            return -1;
        }
        o->i = (int16_t)(uint16_t)v;
        return 0;
    case 0xd2:
        o->k = K_INT;
        if (rd_be(r, 4, &v)) {
            return -1;
        }
        o->i = (int32_t)(uint32_t)v;
        return 0;
    case 0xd3:
        o->k = K_INT;
        if (rd_be(r, 8, &v)) {
            return -1;
        }
        o->i = (int64_t)v;
        return 0;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        o->k = K_EXT;
        return rd_be(r, 1, &o->u) || rd_data(r, fixext_len[c - 0xd4], o);
    case 0xd9:
    case 0xda:
    case 0xdb:
        o->k = K_STR;
        return rd_be(r, (size_t)1 << (c - 0xd9), &v) || rd_data(r, (size_t)v, o);
    case 0xdc:
    case 0xdd:
        o->k = K_ARRAY;
        if (rd_be(r, c == 0xdc ? 2 : 4, &v)) {
            return -1;
        }
        o->len = (size_t)v;
        return 0;
    case 0xde:
    case 0xdf:
        o->k = K_MAP;
        if (rd_be(r, c == 0xde ? 2 : 4, &v)) {
            return -1;
        }
        o->len = (size_t)v;
        return 0;
    default: /* 0xc1 is never used */
        return -1;
    }
}

/* Step over one complete value. Every element consumes at least one byte,
 * so a lying count runs out of input instead of looping. */
static int rd_skip(rd_t *r, int depth)
{
    obj_t o;
    size_t n;

    if (depth > RAW_DEPTH_MAX || rd_obj(r, &o) != 0) {
        return -1;
    }
    if (o.k != K_ARRAY && o.k != K_MAP) {
        return 0;
    }
    n = o.k == K_MAP ? o.len * 2 : o.len;
    for (size_t i = 0; i < n; i++) {
        if (rd_skip(r, depth + 1) != 0) {
            return -1;
        }
    }
    return 0;
}

static bool is_bytes(const obj_t *o)
{
    return o->k == K_STR || o->k == K_BIN;
}

static bool is_int(const obj_t *o, int64_t *v)
{
    if (o->k == K_INT) {
        *v = o->i;
        return true;
    }
    if (o->k == K_UINT && o->u <= INT64_MAX) {
        *v = (int64_t)o->u;
        return true;
    }
    return false;
}

/* Decode one field value into f. SP_ECORRUPT or SP_ENOMEM. */
static int decode_value(rd_t *r, field_t *f)
{
    const uint8_t *start = r->p;
    rd_t save;
    obj_t o, it;
    size_t i;
    int rc;

    if (rd_obj(r, &o) != 0) {
        return SP_ECORRUPT;
    }
    if (is_bytes(&o)) {
        f->type = F_STR;
        return bytes_dup(o.data, o.len, &f->u.s) == 0 ? 0 : SP_ENOMEM;
    }
    if (is_int(&o, &f->u.i)) {
        f->type = F_INT;
        return 0;
    }
    if (o.k == K_ARRAY && o.len <= SP_MSG_LIST_MAX) {
        /* A list if every element is a string; checked before allocating. */
        save = *r;
        for (i = 0; i < o.len; i++) {
            if (rd_obj(r, &it) != 0) {
                return SP_ECORRUPT;
            }
            if (!is_bytes(&it)) {
                break;
            }
        }
        if (i == o.len) {
            *r = save;
            f->type = F_LIST;
            if (o.len > 0 && !(f->u.l.v = calloc(o.len, sizeof(bytes_t)))) {
                return SP_ENOMEM;
            }
            f->u.l.cap = o.len;
            for (i = 0; i < o.len; i++) {
                rd_obj(r, &it);
                if (bytes_dup(it.data, it.len, &f->u.l.v[i]) != 0) {
                    return SP_ENOMEM;
                }
                f->u.l.n++;
            }
            return 0;
        }
    }
    /* Anything else (nil, bool, float, map, ext, mixed arrays, uint64 above
     * INT64_MAX) was written by a newer minor version: keep its bytes so a
     * read-modify-write does not lose it. */
    r->p = start;
    if (rd_skip(r, 1) != 0) {
        return SP_ECORRUPT;
    }
    f->type = F_RAW;
    rc = bytes_dup(start, (size_t)(r->p - start), &f->u.s);
    return rc == 0 ? 0 : SP_ENOMEM;
}

static bool is_key(const obj_t *k, const char *name)
{
    size_t n = strlen(name);
    return k->k == K_STR && k->len == n && memcmp(k->data, name, n) == 0;
}

static bool is_version(const obj_t *o)
{
    int64_t v;
    return is_int(o, &v) && v == SP_MSG_VERSION;
}

int sp__msg_decode(const void *buf, size_t len, sp_msg_t **out)
{
    rd_t r = {0};
    bool seen_v = false;
    sp_msg_t *m;
    obj_t o, k;
    int rc = SP_ECORRUPT;

    if (!out || (!buf && len > 0)) {
        return SP_EINVAL;
    }
    *out = NULL;
    if (!buf) {
        return SP_ECORRUPT;
    }
    r.p = buf;
    r.end = r.p + len;
    if (rd_obj(&r, &o) != 0 || o.k != K_MAP || o.len > SP_MSG_FIELDS_MAX + 1) {
        return SP_ECORRUPT;
    }
    if (!(m = sp__msg_new())) {
        return SP_ENOMEM;
    }
    for (size_t i = 0; i < o.len; i++) {
        char name[SP_MSG_NAME_MAX + 1];
        field_t *f;

        if (rd_obj(&r, &k) != 0 || k.k != K_STR) {
            goto fail;
        }
        if (is_key(&k, "v")) {
            obj_t v;
            if (seen_v || rd_obj(&r, &v) != 0 || !is_version(&v)) {
                goto fail;
            }
            seen_v = true;
            continue;
        }
        if (!name_ok((const char *)k.data, k.len)) {
            goto fail;
        }
        memcpy(name, k.data, k.len);
        name[k.len] = '\0';
        if (find(m, name) || m->n >= SP_MSG_FIELDS_MAX) {
            goto fail;
        }
        if (!(f = field_append(m, name, k.len))) {
            rc = SP_ENOMEM;
            goto fail;
        }
        if ((rc = decode_value(&r, f)) != 0) {
            goto fail;
        }
        rc = SP_ECORRUPT;
    }
    if (!seen_v || r.p != r.end) {
        rc = SP_ECORRUPT;
        goto fail;
    }
    *out = m;
    return 0;

fail:
    sp__msg_free(m);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Event records */

int sp__event_encode(int status, int64_t time_ms, const char *data, void **buf, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t dl;
    int bad = 0;

    if (status < 0 || status >= SP_ST__COUNT || !buf || !len) {
        return SP_EINVAL;
    }
    if (!data) {
        data = "{}";
    }
    dl = strlen(data);
    if (dl > SP_MSG_VALUE_MAX) {
        return SP_ETOOBIG;
    }
    if (sbuf_init(&sb, dl + 48) != 0) {
        return SP_ENOMEM;
    }
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bad |= msgpack_pack_map(&pk, 4);
    bad |= msgpack_pack_str(&pk, 1) || msgpack_pack_str_body(&pk, "v", 1);
    bad |= msgpack_pack_int64(&pk, SP_MSG_VERSION);
    bad |= msgpack_pack_str(&pk, 6) || msgpack_pack_str_body(&pk, "status", 6);
    bad |= msgpack_pack_int64(&pk, status);
    bad |= msgpack_pack_str(&pk, 4) || msgpack_pack_str_body(&pk, "time", 4);
    bad |= msgpack_pack_int64(&pk, time_ms);
    bad |= msgpack_pack_str(&pk, 4) || msgpack_pack_str_body(&pk, "data", 4);
    bad |= pack_bytes(&pk, data, dl);
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return SP_ENOMEM;
    }
    *len = sb.size;
    *buf = msgpack_sbuffer_release(&sb);
    return 0;
}

int sp__event_decode(const void *buf, size_t len, int *status, int64_t *time_ms, char **data)
{
    rd_t r = {0};
    bool seen_v = false, seen_st = false, seen_t = false, seen_d = false;
    int64_t st = 0, t = 0;
    obj_t o, k, v, d = {0};

    if (!buf && len > 0) {
        return SP_EINVAL;
    }
    if (!buf) {
        return SP_ECORRUPT;
    }
    r.p = buf;
    r.end = r.p + len;
    if (rd_obj(&r, &o) != 0 || o.k != K_MAP) {
        return SP_ECORRUPT;
    }
    for (size_t i = 0; i < o.len; i++) {
        if (rd_obj(&r, &k) != 0 || k.k != K_STR) {
            return SP_ECORRUPT;
        }
        if (is_key(&k, "v")) {
            if (seen_v || rd_obj(&r, &v) != 0 || !is_version(&v)) {
                return SP_ECORRUPT;
            }
            seen_v = true;
        } else if (is_key(&k, "status")) {
            if (seen_st || rd_obj(&r, &v) != 0 || !is_int(&v, &st) || st < 0 ||
                st >= SP_ST__COUNT) {
                return SP_ECORRUPT;
            }
            seen_st = true;
        } else if (is_key(&k, "time")) {
            if (seen_t || rd_obj(&r, &v) != 0 || !is_int(&v, &t)) {
                return SP_ECORRUPT;
            }
            seen_t = true;
        } else if (is_key(&k, "data")) {
            /* A C string on the way out: an embedded NUL would not survive. */
            if (seen_d || rd_obj(&r, &d) != 0 || !is_bytes(&d) ||
                (d.len > 0 && memchr(d.data, 0, d.len))) {
                return SP_ECORRUPT;
            }
            seen_d = true;
        } else if (rd_skip(&r, 1) != 0) {
            return SP_ECORRUPT;
        }
    }
    if (!seen_v || !seen_st || !seen_t || !seen_d || r.p != r.end) {
        return SP_ECORRUPT;
    }
    if (data) {
        bytes_t b;
        if (bytes_dup(d.data, d.len, &b) != 0) {
            return SP_ENOMEM;
        }
        *data = b.p;
    }
    if (status) {
        *status = (int)st;
    }
    if (time_ms) {
        *time_ms = t;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* JSON */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sb_t;

static void sb_put(sb_t *b, const void *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->cap - b->len <= n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= n) {
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sb_t *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* A JSON string. Well-formed UTF-8 is copied; each byte that is not part of
 * one is written as \u00XX (its Latin-1 reading), so any bytes give valid
 * JSON and the original byte values stay visible. */
static void json_str(sb_t *b, const void *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = s;
    size_t i = 0, run = 0;

    sb_put(b, "\"", 1);
    while (i < n) {
        uint8_t c = p[i];
        size_t l = utf8_seq(p + i, n - i);
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};

        if (l > 1 || (l == 1 && c >= 0x20 && c != '"' && c != '\\')) {
            run += l;
            i += l;
            continue;
        }
        sb_put(b, p + i - run, run);
        run = 0;
        switch (c) {
        case '"':
            sb_puts(b, "\\\"");
            break;
        case '\\':
            sb_puts(b, "\\\\");
            break;
        case '\n':
            sb_puts(b, "\\n");
            break;
        case '\r':
            sb_puts(b, "\\r");
            break;
        case '\t':
            sb_puts(b, "\\t");
            break;
        default:
            sb_put(b, esc, 6);
            break;
        }
        i++;
    }
    sb_put(b, p + i - run, run);
    sb_put(b, "\"", 1);
}

static void json_int(sb_t *b, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    sb_put(b, tmp, (size_t)n);
}

/* One raw msgpack value (validated when it was decoded) as JSON. */
static void json_raw(sb_t *b, rd_t *r, int depth)
{
    char tmp[40];
    obj_t o;
    int n;

    if (depth > RAW_DEPTH_MAX || rd_obj(r, &o) != 0) {
        sb_puts(b, "null");
        return;
    }
    switch (o.k) {
    case K_UINT:
        n = snprintf(tmp, sizeof(tmp), "%" PRIu64, o.u);
        sb_put(b, tmp, (size_t)n);
        break;
    case K_INT:
        json_int(b, o.i);
        break;
    case K_STR:
    case K_BIN:
        json_str(b, o.data, o.len);
        break;
    case K_BOOL:
        sb_puts(b, o.u ? "true" : "false");
        break;
    case K_FLOAT32:
    case K_FLOAT64: {
        double d;
        if (o.k == K_FLOAT32) {
            uint32_t u32 = (uint32_t)o.u;
            float f;
            memcpy(&f, &u32, sizeof(f));
            d = f;
        } else {
            memcpy(&d, &o.u, sizeof(d));
        }
        if (!isfinite(d)) {
            sb_puts(b, "null");
            break;
        }
        n = snprintf(tmp, sizeof(tmp), "%.17g", d);
        sb_put(b, tmp, (size_t)n);
        break;
    }
    case K_ARRAY:
        sb_put(b, "[", 1);
        for (size_t i = 0; i < o.len; i++) {
            if (i > 0) {
                sb_put(b, ",", 1);
            }
            json_raw(b, r, depth + 1);
        }
        sb_put(b, "]", 1);
        break;
    case K_MAP:
        sb_put(b, "{", 1);
        for (size_t i = 0; i < o.len; i++) {
            const uint8_t *ks = r->p;
            obj_t k;
            if (i > 0) {
                sb_put(b, ",", 1);
            }
            if (rd_obj(r, &k) == 0 && is_bytes(&k)) {
                json_str(b, k.data, k.len);
            } else {
                /* A non-string key: its JSON text, as a string. */
                sb_t kb = {0};
                r->p = ks;
                json_raw(&kb, r, depth + 1);
                json_str(b, kb.p ? kb.p : "", kb.len);
                b->oom |= kb.oom;
                free(kb.p);
            }
            sb_put(b, ":", 1);
            json_raw(b, r, depth + 1);
        }
        sb_put(b, "}", 1);
        break;
    default: /* nil, ext */
        sb_puts(b, "null");
        break;
    }
}

int sp__msg_to_json(const sp_msg_t *m, char **out, size_t *len)
{
    sb_t b = {0};

    if (!m || !out) {
        return SP_EINVAL;
    }
    sb_put(&b, "{", 1);
    for (size_t i = 0; i < m->n; i++) {
        const field_t *f = &m->f[i];
        if (i > 0) {
            sb_put(&b, ",", 1);
        }
        json_str(&b, f->name, strlen(f->name));
        sb_put(&b, ":", 1);
        switch (f->type) {
        case F_STR:
            json_str(&b, f->u.s.p, f->u.s.len);
            break;
        case F_LIST:
            sb_put(&b, "[", 1);
            for (size_t j = 0; j < f->u.l.n; j++) {
                if (j > 0) {
                    sb_put(&b, ",", 1);
                }
                json_str(&b, f->u.l.v[j].p, f->u.l.v[j].len);
            }
            sb_put(&b, "]", 1);
            break;
        case F_INT:
            json_int(&b, f->u.i);
            break;
        default: {
            rd_t r = {.p = (const uint8_t *)f->u.s.p,
                      .end = (const uint8_t *)f->u.s.p + f->u.s.len};
            json_raw(&b, &r, 0);
            break;
        }
        }
    }
    sb_put(&b, "}", 1);
    if (b.oom) {
        free(b.p);
        return SP_ENOMEM;
    }
    *out = b.p;
    if (len) {
        *len = b.len;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Statuses */

static const char *const status_names[SP_ST__COUNT] = {
    [SP_ST_SCHEDULED] = "SCHEDULED",
    [SP_ST_CANCELLED] = "CANCELLED",
    [SP_ST_RENDERING_FAILURE] = "RENDERING_FAILURE",
    [SP_ST_QUEUED] = "QUEUED",
    [SP_ST_SENT] = "SENT",
    [SP_ST_REJECTED] = "REJECTED",
    [SP_ST_DELIVERY_DELAYED] = "DELIVERY_DELAYED",
    [SP_ST_DELIVERED] = "DELIVERED",
    [SP_ST_BOUNCED] = "BOUNCED",
    [SP_ST_OPENED] = "OPENED",
    [SP_ST_CLICKED] = "CLICKED",
    [SP_ST_COMPLAINED] = "COMPLAINED",
    [SP_ST_FAILED] = "FAILED",
    [SP_ST_SUPPRESSED] = "SUPPRESSED",
};

const char *sp__status_name(sp_status_t st)
{
    return ((int)st >= 0 && st < SP_ST__COUNT) ? status_names[st] : NULL;
}

int sp__status_parse(const char *s)
{
    if (!s) {
        return -1;
    }
    for (int i = 0; i < SP_ST__COUNT; i++) {
        if (strcasecmp(s, status_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* The enum is declared in precedence order, so the rank is the value. */
int sp__status_supersedes(sp_status_t cur, sp_status_t next)
{
    if ((int)cur < 0 || cur >= SP_ST__COUNT || (int)next < 0 || next >= SP_ST__COUNT) {
        return 0;
    }
    return next > cur || cur == SP_ST_SCHEDULED;
}
