/* SPDX-License-Identifier: Apache-2.0 */
/* unit.dkim_sign: the plugin's signing function against the RFC 8463
 * Appendix A example. Signs unsigned.eml with the RFC's Ed25519 and RSA keys
 * at the RFC's timestamp and checks the result with libopendkim's verifier
 * fed the RFC's DNS records (file query method, no network).
 *
 * Why b= is not compared with the RFC's: a signature also covers its own
 * DKIM-Signature field (with b= empty), and the RFC's field carries tags in
 * another order and extra tags (i=, q=, and h= with from/subject/date
 * oversigned, separated by " : "), which libopendkim does not produce. So
 * the signed data differ even though message, key and time are the same;
 * what is exactly comparable is the body hash bh=, checked below, and
 * Ed25519's determinism (same input, same b=), also checked. The Python
 * integration test additionally verifies these signatures with dkimpy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <opendkim/dkim.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <sp/sp_errno.h>

#include "dkim_sign.h"

#define RFC_TIME 1528637909ULL
#define RFC_BH "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
#define DOMAIN "football.example.com"

static char *slurp(const char *name, size_t *len)
{
    char path[1024];
    FILE *f;
    long n;
    char *b;

    snprintf(path, sizeof(path), "%s/rfc8463/%s", DKIM_TESTDATA, name);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    if (len) {
        *len = (size_t)n;
    }
    return b;
}

/* The RFC gives the Ed25519 key as a base64 seed; the store keeps PKCS#8
 * PEM, so convert it the way the core writes keys. */
static char *ed25519_pem(void)
{
    char *b64 = slurp("ed25519-brisbane.private.b64", NULL);
    unsigned char seed[64];
    BUF_MEM *bm;
    EVP_PKEY *k;
    BIO *b;
    char *pem;
    int n;

    b64[strcspn(b64, "\r\n")] = '\0';
    n = EVP_DecodeBlock(seed, (const unsigned char *)b64, (int)strlen(b64));
    free(b64);
    assert_true(n >= 32);
    k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    assert_non_null(k);
    b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    BIO_get_mem_ptr(b, &bm);
    pem = malloc(bm->length + 1); /* not strndup: bm->data has no NUL */
    assert_non_null(pem);
    memcpy(pem, bm->data, bm->length);
    pem[bm->length] = '\0';
    BIO_free(b);
    EVP_PKEY_free(k);
    return pem;
}

/* Signatures of msg that pass, per libopendkim with the RFC's records. */
static int verify_count(const char *msg, size_t len, int *total)
{
    char path[1024];
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    DKIM_SIGINFO **sigs = NULL;
    int nsigs = 0, ok = 0;
    dkim_query_t q = DKIM_QUERY_FILE;
    DKIM_STAT st;
    DKIM *d;

    assert_non_null(lib);
    snprintf(path, sizeof(path), "%s/rfc8463/dns-txt-records.txt", DKIM_TESTDATA);
    assert_int_equal(dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &q, sizeof(q)),
                     DKIM_STAT_OK);
    assert_int_equal(dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, path, strlen(path)),
                     DKIM_STAT_OK);
    d = dkim_verify(lib, (const unsigned char *)"t", NULL, &st);
    assert_non_null(d);
    assert_int_equal(dkim_chunk(d, (unsigned char *)msg, len), DKIM_STAT_OK);
    assert_int_equal(dkim_chunk(d, NULL, 0), DKIM_STAT_OK);
    (void)dkim_eom(d, NULL); /* the per-signature results are what counts */
    if (dkim_getsiglist(d, &sigs, &nsigs) == DKIM_STAT_OK) {
        for (int i = 0; i < nsigs; i++) {
            ok += DKIM_SIG_CHECK(sigs[i]) ? 1 : 0;
        }
    }
    if (total) {
        *total = nsigs;
    }
    dkim_free(d);
    dkim_close(lib);
    return ok;
}

typedef struct signed_msg {
    char *hdr, *all;
    size_t hdr_len, len;
} signed_msg_t;

static void sign_with(dks_lib_t *l, const char *sel, const char *alg, const char *pem,
                      const char *msg, size_t len, signed_msg_t *out)
{
    char err[256] = "";
    int rc = dks_sign(l, "t", DOMAIN, sel, alg, pem, msg, len, &out->hdr, &out->hdr_len, err,
                      sizeof(err));
    if (rc != 0) {
        fail_msg("dks_sign: %d %s", rc, err);
    }
    out->len = out->hdr_len + len;
    out->all = malloc(out->len + 1);
    assert_non_null(out->all);
    memcpy(out->all, out->hdr, out->hdr_len);
    memcpy(out->all + out->hdr_len, msg, len);
    out->all[out->len] = '\0';
}

static void signed_free(signed_msg_t *s)
{
    free(s->hdr);
    free(s->all);
}

/* Every line of the header ends in CRLF, continuation lines start with a
 * tab, and the whole ends with exactly one CRLF. */
static void assert_crlf_folded(const char *h, size_t n)
{
    assert_true(n > 4);
    assert_memory_equal(h + n - 2, "\r\n", 2);
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '\n') {
            assert_true(i > 0 && h[i - 1] == '\r');
            assert_true(i + 1 == n || h[i + 1] == '\t' || h[i + 1] == ' ');
        }
        if (h[i] == '\r') {
            assert_true(i + 1 < n && h[i + 1] == '\n');
        }
    }
}

static void test_rfc8463_ed25519(void **state)
{
    dks_opts_t o = {.fixed_time = RFC_TIME};
    char *pem = ed25519_pem(), err[256];
    size_t len;
    char *msg = slurp("unsigned.eml", &len);
    signed_msg_t a = {0}, b = {0};
    dks_lib_t *l;
    int total;

    (void)state;
    assert_int_equal(dks_lib_new(&o, &l, err, sizeof(err)), 0);
    sign_with(l, "brisbane", "ed25519-sha256", pem, msg, len, &a);
    assert_crlf_folded(a.hdr, a.hdr_len);
    assert_true(strncmp(a.hdr, "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;", 57) ==
                0);
    assert_non_null(strstr(a.hdr, "d=" DOMAIN ";"));
    assert_non_null(strstr(a.hdr, "s=brisbane;"));
    assert_non_null(strstr(a.hdr, "t=1528637909;"));
    assert_null(strstr(a.hdr, "x="));
    /* The body hash is the RFC's, byte for byte. */
    assert_non_null(strstr(a.hdr, RFC_BH ";"));
    assert_non_null(strstr(a.hdr, "h=From:To:Subject:Date:Message-ID;"));
    assert_int_equal(verify_count(a.all, a.len, &total), 1);
    assert_int_equal(total, 1);

    /* Ed25519 is deterministic: the same message, key and time sign alike. */
    sign_with(l, "brisbane", "ed25519-sha256", pem, msg, len, &b);
    assert_int_equal(a.hdr_len, b.hdr_len);
    assert_memory_equal(a.hdr, b.hdr, a.hdr_len);

    /* One changed body byte, one changed Subject byte: both fail. */
    char *p = strstr(a.all, "We lost");
    assert_non_null(p);
    p[3] = 'L';
    assert_int_equal(verify_count(a.all, a.len, NULL), 0);
    p[3] = 'l';
    p = strstr(a.all, "Subject: Is dinner");
    assert_non_null(p);
    p[9] = 'i';
    assert_int_equal(verify_count(a.all, a.len, NULL), 0);
    p[9] = 'I';
    assert_int_equal(verify_count(a.all, a.len, NULL), 1);

    signed_free(&a);
    signed_free(&b);
    dks_lib_free(l);
    free(msg);
    free(pem);
}

static void test_rfc8463_rsa(void **state)
{
    dks_opts_t o = {.fixed_time = RFC_TIME, .oversign_from = true};
    char *pem = slurp("rsa-test.private.pem", NULL), err[256];
    size_t len;
    char *msg = slurp("unsigned.eml", &len);
    signed_msg_t a = {0};
    dks_lib_t *l;

    (void)state;
    assert_int_equal(dks_lib_new(&o, &l, err, sizeof(err)), 0);
    sign_with(l, "test", "rsa-sha256", pem, msg, len, &a);
    assert_crlf_folded(a.hdr, a.hdr_len);
    assert_true(strncmp(a.hdr, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;", 53) == 0);
    assert_non_null(strstr(a.hdr, RFC_BH ";"));
    assert_null(strstr(a.hdr, "x="));
    /* Oversigned From: listed twice, the second one matching no field. */
    assert_non_null(strstr(a.hdr, "h=From:To:Subject:Date:Message-ID:From;"));
    assert_int_equal(verify_count(a.all, a.len, NULL), 1);
    /* A second From added after signing breaks the signature. */
    {
        const char *extra = "From: Mallory <m@evil.example>\r\n";
        size_t el = strlen(extra);
        char *body = strstr(a.all, "\r\n\r\n");
        size_t hl = (size_t)(body - a.all) + 2;
        char *m2 = malloc(a.len + el);
        assert_non_null(m2);
        memcpy(m2, a.all, hl);
        memcpy(m2 + hl, extra, el);
        memcpy(m2 + hl + el, a.all + hl, a.len - hl);
        assert_int_equal(verify_count(m2, a.len + el, NULL), 0);
        free(m2);
    }
    signed_free(&a);
    dks_lib_free(l);
    free(msg);
    free(pem);
}

/* x= is t= plus the lifetime; a signature past it does not verify. */
static void test_expire(void **state)
{
    dks_opts_t o = {.fixed_time = RFC_TIME, .expire_s = 3600};
    char *pem = slurp("rsa-test.private.pem", NULL), err[256];
    size_t len;
    char *msg = slurp("unsigned.eml", &len);
    signed_msg_t a = {0};
    dks_lib_t *l;

    (void)state;
    assert_int_equal(dks_lib_new(&o, &l, err, sizeof(err)), 0);
    sign_with(l, "test", "rsa-sha256", pem, msg, len, &a);
    assert_non_null(strstr(a.hdr, "x=1528641509;"));
    assert_int_equal(verify_count(a.all, a.len, NULL), 0); /* expired in 2018 */
    signed_free(&a);
    dks_lib_free(l);
    free(msg);
    free(pem);
}

/* The tooling itself: the RFC's own signed message passes both signatures. */
static void test_rfc8463_signed_eml(void **state)
{
    size_t len;
    char *msg = slurp("signed.eml", &len);
    int total;

    (void)state;
    assert_int_equal(verify_count(msg, len, &total), 2);
    assert_int_equal(total, 2);
    free(msg);
}

/* Only present fields are listed; the configured list is honoured. */
static void test_header_selection(void **state)
{
    static const char *const hdrs[] = {"from", "subject", "X-Custom", NULL};
    static const char msg[] = "From: a@football.example.com\r\nTo: b@example.net\r\n"
                              "Subject: hi\r\nX-Custom: 1\r\n\r\nbody\r\n";
    dks_opts_t o = {.headers = hdrs};
    char *pem = slurp("rsa-test.private.pem", NULL), err[256];
    signed_msg_t a = {0};
    dks_lib_t *l;

    (void)state;
    assert_int_equal(dks_lib_new(&o, &l, err, sizeof(err)), 0);
    sign_with(l, "test", "rsa-sha256", pem, msg, sizeof(msg) - 1, &a);
    assert_non_null(strstr(a.hdr, "h=From:Subject:X-Custom;"));
    assert_int_equal(verify_count(a.all, a.len, NULL), 1);
    signed_free(&a);
    dks_lib_free(l);
    free(pem);
}

static void test_refusals(void **state)
{
    static const char *const no_from[] = {"To", "Subject", NULL};
    static const char msg[] = "From: a@football.example.com\r\n\r\nx\r\n";
    char *pem = slurp("rsa-test.private.pem", NULL), err[256] = "", *h = NULL;
    dks_opts_t o = {.headers = no_from};
    size_t hl;
    dks_lib_t *l = NULL;

    (void)state;
    assert_int_equal(dks_lib_new(&o, &l, err, sizeof(err)), SP_EINVAL);
    assert_non_null(strstr(err, "From"));
    assert_int_equal(dks_lib_new(NULL, &l, err, sizeof(err)), 0);
    assert_int_equal(dks_sign(l, "t", DOMAIN, "test", "rsa-sha1", pem, msg, sizeof(msg) - 1, &h,
                              &hl, err, sizeof(err)),
                     SP_EINVAL);
    assert_int_equal(dks_sign(l, "t", DOMAIN, "test", "rsa-sha256", "not a key", msg,
                              sizeof(msg) - 1, &h, &hl, err, sizeof(err)),
                     SP_EINVAL);
    /* (A key of the other algorithm is not detected here: libopendkim does
     * not check it, and the core's store refuses such a pair.) */
    assert_null(h);
    assert_null(strstr(err, "PRIVATE")); /* no key material in messages */
    dks_lib_free(l);
    free(pem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8463_ed25519),  cmocka_unit_test(test_rfc8463_rsa),
        cmocka_unit_test(test_rfc8463_signed_eml), cmocka_unit_test(test_header_selection),
        cmocka_unit_test(test_expire),           cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
