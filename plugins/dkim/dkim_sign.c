/* SPDX-License-Identifier: Apache-2.0 */
/* DKIM signing with libopendkim (Debian libopendkim-dev): maintained, used by
 * the OpenDKIM milter, and it does RFC 6376 canonicalisation and RFC 8463
 * Ed25519 so that we do not have to. */
#include "dkim_sign.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <opendkim/dkim.h>
#include <openssl/bio.h>
#include <openssl/evp.h>

#include <sp/sp_errno.h>

#define SIG_PREFIX "DKIM-Signature: "

const char *const dks_default_headers[] = {
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding", "Reply-To", "In-Reply-To", "References", "List-Unsubscribe",
    "List-Unsubscribe-Post", NULL};

struct dks_lib {
    DKIM_LIB *lib;
};

/* ------------------------------------------------------------------------ */
/* Allocation tracking.
 *
 * libopendkim 2.11 (Debian's 2.11.0~beta2) does not release an Ed25519
 * signing handle's key state in dkim_free(): it frees the struct dkim_crypto
 * but not the EVP_PKEY, the BIO and the signature buffer it points to, about
 * 1.2 KiB per signature (RSA handles are released fully). The library takes
 * an allocator at dkim_init() and a closure per handle, so every block
 * carries a small header and the blocks of one signature are listed in that
 * signature's arena. When the library frees its key state while the
 * signature buffer it points to is still allocated, the cleanup was skipped:
 * the key and BIO are taken over, and freed with every block still listed
 * once dkim_free() has returned. */

#define ARENA_MAGIC 0x646b696d61726e61ULL /* "dkimarna" */

typedef struct blk {
    uint64_t magic;
    struct arena *arena; /* NULL: library-wide (dkim_init, options) */
    struct blk *prev, *next;
    size_t size;
    uint64_t pad; /* keeps the payload 16-byte aligned */
} blk_t;

typedef struct arena {
    blk_t *head;
    EVP_PKEY *orphan_pkey;
    BIO *orphan_bio;
} arena_t;

_Static_assert(sizeof(blk_t) % 16 == 0, "payload alignment");

/* The OpenSSL build's struct dkim_crypto of libopendkim 2.11 (its
 * dkim-types.h). Only read, and only after the checks in orphan_check. */
struct dkim_crypto_211 {
    unsigned char crypto_pad;
    int crypto_keysize;
    size_t crypto_inlen;
    size_t crypto_outlen;
    EVP_PKEY *crypto_pkey;
    void *crypto_key;
    BIO *crypto_keydata;
    unsigned char *crypto_in;
    unsigned char *crypto_out;
};

static void *arena_malloc(void *closure, size_t n)
{
    arena_t *a = closure;
    blk_t *b = malloc(sizeof(*b) + n);

    if (!b) {
        return NULL;
    }
    b->magic = ARENA_MAGIC;
    b->arena = a;
    b->size = n;
    b->prev = NULL;
    b->next = a ? a->head : NULL;
    if (a) {
        if (a->head) {
            a->head->prev = b;
        }
        a->head = b;
    }
    return b + 1;
}

static blk_t *arena_find(const arena_t *a, const void *p)
{
    for (blk_t *b = a->head; b; b = b->next) {
        if ((const void *)(b + 1) == p) {
            return b;
        }
    }
    return NULL;
}

/* b is being freed: is it a key state whose cleanup was skipped? Its size
 * matches, it has a key but no RSA key, and its signature buffer is still a
 * live block of this arena of exactly the recorded length (64 for Ed25519). */
static void orphan_check(arena_t *a, const blk_t *b)
{
    struct dkim_crypto_211 c;
    const blk_t *out;

    if (b->size != sizeof(c) || a->orphan_pkey) {
        return;
    }
    memcpy(&c, b + 1, sizeof(c));
    if (!c.crypto_pkey || c.crypto_key || !c.crypto_out || c.crypto_outlen == 0 ||
        c.crypto_keysize != (int)(c.crypto_outlen * 8)) {
        return;
    }
    out = arena_find(a, c.crypto_out);
    if (out && out != b && out->size == c.crypto_outlen) {
        a->orphan_pkey = c.crypto_pkey;
        a->orphan_bio = c.crypto_keydata;
    }
}

static void blk_release(blk_t *b)
{
    arena_t *a = b->arena;

    if (a) {
        orphan_check(a, b);
        if (b->prev) {
            b->prev->next = b->next;
        } else {
            a->head = b->next;
        }
        if (b->next) {
            b->next->prev = b->prev;
        }
    }
    b->magic = 0;
    free(b);
}

static void arena_free(void *closure, void *p)
{
    (void)closure; /* the block knows its arena */
    if (p) {
        blk_t *b = (blk_t *)p - 1;
        if (b->magic == ARENA_MAGIC) {
            blk_release(b);
        }
    }
}

/* After dkim_free(): whatever is left was leaked by the library. */
static void arena_reclaim(arena_t *a)
{
    while (a->head) {
        blk_t *b = a->head;
        b->arena = NULL; /* no more orphan checks: these are the leftovers */
        a->head = b->next;
        b->magic = 0;
        free(b);
    }
    EVP_PKEY_free(a->orphan_pkey);
    BIO_free(a->orphan_bio);
    a->orphan_pkey = NULL;
    a->orphan_bio = NULL;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* libopendkim takes header lists as the NULL-terminated array itself (and
 * matches the names case-insensitively). */
static int set_list(DKIM_LIB *lib, dkim_opts_t opt, const char *const *list)
{
    return dkim_options(lib, DKIM_OP_SETOPT, opt, (void *)list, sizeof(list)) == DKIM_STAT_OK
               ? 0
               : SP_EINVAL;
}

int dks_lib_new(const dks_opts_t *o, dks_lib_t **out, char *err, size_t errlen)
{
    static const char *const from_only[] = {"From", NULL};
    const char *const *hdrs = o && o->headers ? o->headers : dks_default_headers;
    unsigned int flags = DKIM_LIBFLAGS_FIXCRLF;
    bool from = false;
    dks_lib_t *l;

    for (size_t i = 0; hdrs[i]; i++) {
        from = from || strcasecmp(hdrs[i], "From") == 0;
    }
    if (!from) {
        seterr(err, errlen, "the signed headers must include From");
        return SP_EINVAL;
    }
    if (!(l = calloc(1, sizeof(*l)))) {
        return SP_ENOMEM;
    }
    if (!(l->lib = dkim_init(arena_malloc, arena_free))) {
        free(l);
        seterr(err, errlen, "dkim_init failed");
        return SP_ENOMEM;
    }
    if (dkim_options(l->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) !=
            DKIM_STAT_OK ||
        set_list(l->lib, DKIM_OPTS_SIGNHDRS, hdrs) != 0 ||
        (o && o->oversign_from && set_list(l->lib, DKIM_OPTS_OVERSIGNHDRS, from_only) != 0)) {
        seterr(err, errlen, "libopendkim refused the header lists");
        dks_lib_free(l);
        return SP_EINVAL;
    }
    if (o && o->expire_s) {
        uint64_t ttl = o->expire_s;
        if (dkim_options(l->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNATURETTL, &ttl, sizeof(ttl)) !=
            DKIM_STAT_OK) {
            seterr(err, errlen, "libopendkim refused the expiry");
            dks_lib_free(l);
            return SP_EINVAL;
        }
    }
    if (o && o->fixed_time) {
        uint64_t t = o->fixed_time;
        if (dkim_options(l->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t, sizeof(t)) !=
            DKIM_STAT_OK) {
            seterr(err, errlen, "libopendkim refused the fixed time");
            dks_lib_free(l);
            return SP_EINVAL;
        }
    }
    *out = l;
    return 0;
}

void dks_lib_free(dks_lib_t *l)
{
    if (l) {
        if (l->lib) {
            dkim_close(l->lib);
        }
        free(l);
    }
}

/* libopendkim folds with a bare LF; a message on the wire wants CRLF. */
static int to_crlf(const unsigned char *v, size_t vl, char **hdr, size_t *hdrlen)
{
    size_t lf = 0, n, o = 0;
    char *h;

    for (size_t i = 0; i < vl; i++) {
        lf += v[i] == '\n' && (i == 0 || v[i - 1] != '\r');
    }
    n = strlen(SIG_PREFIX) + vl + lf + 2;
    if (!(h = malloc(n + 1))) {
        return SP_ENOMEM;
    }
    memcpy(h, SIG_PREFIX, strlen(SIG_PREFIX));
    o = strlen(SIG_PREFIX);
    for (size_t i = 0; i < vl; i++) {
        if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r')) {
            h[o++] = '\r';
        }
        h[o++] = (char)v[i];
    }
    h[o++] = '\r';
    h[o++] = '\n';
    h[o] = '\0';
    *hdr = h;
    *hdrlen = o;
    return 0;
}

int dks_sign(dks_lib_t *l, const char *id, const char *domain, const char *selector,
             const char *algorithm, const char *key_pem, const char *msg, size_t len,
             char **hdr, size_t *hdrlen, char *err, size_t errlen)
{
    DKIM_STAT st = DKIM_STAT_OK;
    dkim_alg_t alg;
    unsigned char *v = NULL;
    size_t vl = 0;
    DKIM *d;
    int rc;

    if (!l || !domain || !selector || !algorithm || !key_pem || !msg || !hdr || !hdrlen) {
        return SP_EINVAL;
    }
    if (strcmp(algorithm, "rsa-sha256") == 0) {
        alg = DKIM_SIGN_RSASHA256;
    } else if (strcmp(algorithm, "ed25519-sha256") == 0) {
        alg = DKIM_SIGN_ED25519SHA256;
    } else {
        seterr(err, errlen, "unknown algorithm '%s'", algorithm);
        return SP_EINVAL;
    }
    arena_t arena = {0};

    d = dkim_sign(l->lib, (const unsigned char *)(id ? id : "-"), &arena,
                  (dkim_sigkey_t)key_pem, (const unsigned char *)selector,
                  (const unsigned char *)domain, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, alg,
                  -1, &st);
    if (!d) {
        seterr(err, errlen, "dkim_sign: %s", dkim_getresultstr(st));
        arena_reclaim(&arena);
        return st == DKIM_STAT_NORESOURCE ? SP_ENOMEM : SP_EINVAL;
    }
    /* dkim_chunk parses headers and body itself; a NULL chunk ends it. */
    st = dkim_chunk(d, (unsigned char *)msg, len);
    if (st == DKIM_STAT_OK) {
        st = dkim_chunk(d, NULL, 0);
    }
    if (st == DKIM_STAT_OK) {
        st = dkim_eom(d, NULL);
    }
    if (st == DKIM_STAT_OK) {
        st = dkim_getsighdr_d(d, strlen(SIG_PREFIX), &v, &vl);
    }
    if (st != DKIM_STAT_OK) {
        const char *why = dkim_geterror(d);
        seterr(err, errlen, "signing failed: %s%s%s", dkim_getresultstr(st),
               why && *why ? ": " : "", why && *why ? why : "");
        dkim_free(d);
        arena_reclaim(&arena);
        /* libopendkim reports an unreadable key as "resource unavailable"
         * too: past dkim_sign(), every failure is the input's. */
        return SP_EINVAL;
    }
    rc = to_crlf(v, vl, hdr, hdrlen); /* v belongs to the handle */
    dkim_free(d);
    arena_reclaim(&arena);
    return rc;
}
