/* SPDX-License-Identifier: Apache-2.0 */
/* DKIM signatures per second through the dkim plugin's signing code
 * (plugins/dkim/dkim_sign.c: libopendkim, relaxed/relaxed, the plugin's
 * default header list), for RSA-2048 and Ed25519, on 1..N threads sharing
 * one library handle as the plugin's pool threads do.
 *
 *   bench_dkim [--seconds S] [--threads N] [--size BYTES]
 *
 * Prints a Markdown table: one row per algorithm and thread count through
 * the plugin's path, then two single-thread OpenSSL rows per algorithm that
 * show where a signature's time goes: parsing the PEM key (libopendkim does
 * it for every signature: it takes the key as bytes) and the bare signature
 * with a key parsed once. */
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dkim_sign.h"

typedef struct run {
    dks_lib_t *lib;
    const char *alg, *pem, *msg;
    size_t len;
    double seconds;
    atomic_ulong count;
    atomic_int failed;
} run_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *keygen(const char *alg)
{
    EVP_PKEY *k = strcmp(alg, "rsa-sha256") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                                 : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *bm;
    char *pem;

    if (!k || !b || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1) {
        fprintf(stderr, "bench_dkim: key generation failed\n");
        exit(1);
    }
    BIO_get_mem_ptr(b, &bm);
    if (!(pem = malloc(bm->length + 1))) {
        exit(1);
    }
    memcpy(pem, bm->data, bm->length);
    pem[bm->length] = '\0';
    BIO_free(b);
    EVP_PKEY_free(k);
    return pem;
}

/* A plain message like the mime plugin builds: headers and a text body. */
static char *message(size_t size, size_t *len)
{
    static const char head[] =
        "From: Sender <sender@bench.example>\r\nTo: rcpt@example.net\r\n"
        "Subject: Benchmark message\r\nDate: Wed, 25 Nov 2026 05:00:00 +0000\r\n"
        "Message-ID: <bench.1@bench.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
    size_t hl = sizeof(head) - 1, n = hl;
    char *m = malloc(hl + size + 80);

    memcpy(m, head, hl);
    while (n < hl + size) {
        n += (size_t)sprintf(m + n, "The quick brown fox jumps over the lazy dog %zu.\r\n", n);
    }
    *len = n;
    return m;
}

/* Operations per second of op(pem, key) for `seconds`. */
static double rate(double seconds, int (*op)(const char *, EVP_PKEY *), const char *pem,
                   EVP_PKEY *k)
{
    double t0 = now_s(), end = t0 + seconds;
    unsigned long n = 0;

    while (now_s() < end) {
        if (op(pem, k) != 0) {
            fprintf(stderr, "bench_dkim: OpenSSL operation failed\n");
            exit(1);
        }
        n++;
    }
    return n / (now_s() - t0);
}

static EVP_PKEY *pem_parse(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    return k;
}

static int op_parse(const char *pem, EVP_PKEY *k)
{
    (void)k;
    EVP_PKEY *x = pem_parse(pem);
    EVP_PKEY_free(x);
    return x ? 0 : -1;
}

/* What DKIM signs: the canonical header block, a few hundred bytes (RSA
 * hashes it with SHA-256; Ed25519 signs its SHA-256, RFC 8463). */
static int op_sign(const char *pem, EVP_PKEY *k)
{
    static const unsigned char data[400] = {1};
    unsigned char in[32], sig[512];
    size_t sl = sizeof(sig);
    unsigned int hl = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ed = EVP_PKEY_is_a(k, "ED25519");
    int rc = -1;

    (void)pem;
    EVP_Digest(data, sizeof(data), in, &hl, EVP_sha256(), NULL);
    if (c && EVP_DigestSignInit(c, NULL, ed ? NULL : EVP_sha256(), NULL, k) == 1 &&
        EVP_DigestSign(c, sig, &sl, ed ? in : data, ed ? sizeof(in) : sizeof(data)) == 1) {
        rc = 0;
    }
    EVP_MD_CTX_free(c);
    return rc;
}

static void *worker(void *arg)
{
    run_t *r = arg;
    double end = now_s() + r->seconds;
    char err[256];

    while (now_s() < end) {
        char *h = NULL;
        size_t hl;
        if (dks_sign(r->lib, "bench", "bench.example", "sendpipe", r->alg, r->pem, r->msg, r->len,
                     &h, &hl, err, sizeof(err)) != 0) {
            fprintf(stderr, "bench_dkim: %s\n", err);
            atomic_store(&r->failed, 1);
            return NULL;
        }
        free(h);
        atomic_fetch_add(&r->count, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    int threads = 1;
    size_t size = 2048, len;
    char err[256];
    dks_lib_t *lib;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atof(argv[i + 1]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--size") == 0) {
            size = (size_t)atol(argv[i + 1]);
        }
    }
    if (threads < 1 || threads > 256 || seconds <= 0) {
        fprintf(stderr, "usage: bench_dkim [--seconds S] [--threads N] [--size BYTES]\n");
        return 2;
    }
    char *msg = message(size, &len);
    dks_opts_t o = {.oversign_from = true};
    if (dks_lib_new(&o, &lib, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_dkim: %s\n", err);
        return 1;
    }
    static const char *const algs[] = {"rsa-sha256", "ed25519-sha256"};
    printf("| algorithm | what | threads | message bytes | per second | us per op per thread |\n");
    printf("|---|---|---:|---:|---:|---:|\n");
    for (size_t a = 0; a < 2; a++) {
        char *pem = keygen(algs[a]);
        for (int t = 1; t <= threads; t *= 2) {
            run_t r = {.lib = lib, .alg = algs[a], .pem = pem, .msg = msg, .len = len,
                       .seconds = seconds};
            pthread_t th[256];
            double t0 = now_s();
            for (int i = 0; i < t; i++) {
                pthread_create(&th[i], NULL, worker, &r);
            }
            for (int i = 0; i < t; i++) {
                pthread_join(th[i], NULL);
            }
            double el = now_s() - t0;
            if (atomic_load(&r.failed)) {
                return 1;
            }
            unsigned long n = atomic_load(&r.count);
            printf("| %s | dkim plugin signature | %d | %zu | %.0f | %.1f |\n", algs[a], t, len,
                   n / el, el * 1e6 * t / (double)(n ? n : 1));
            fflush(stdout);
            if (t < threads && t * 2 > threads) {
                t = threads / 2; /* end on the requested count */
            }
        }
        EVP_PKEY *k = pem_parse(pem);
        double r = rate(seconds, op_parse, pem, k);
        printf("| %s | OpenSSL: PEM key parse only | 1 | - | %.0f | %.1f |\n", algs[a], r,
               1e6 / r);
        r = rate(seconds, op_sign, pem, k);
        printf("| %s | OpenSSL: signature only, key parsed once | 1 | - | %.0f | %.1f |\n",
               algs[a], r, 1e6 / r);
        fflush(stdout);
        EVP_PKEY_free(k);
        free(pem);
    }
    dks_lib_free(lib);
    free(msg);
    return 0;
}
