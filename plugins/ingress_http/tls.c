/* SPDX-License-Identifier: Apache-2.0 */
/* The TLS layer of the HTTP ingress: an OpenSSL server context per plugin
 * and, per connection, an SSL object whose input and output are memory BIOs
 * that the connection code fills from and drains to the socket. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <sp/sp_errno.h>

#include "tls.h"

/* Forward secrecy and AEAD only, for TLS 1.2 (TLS 1.3 suites are all of
 * that kind and keep OpenSSL's default list). */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

struct tls_server {
    SSL_CTX *ctx;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* from the peer: owned by ssl */
    BIO *wbio; /* to the peer: owned by ssl */
    bool failed;
    char why[96];
};

int tls_version_parse(const char *s, int *version)
{
    if (s == NULL || strcmp(s, "1.2") == 0) {
        *version = TLS1_2_VERSION;
        return 0;
    }
    if (strcmp(s, "1.3") == 0) {
        *version = TLS1_3_VERSION;
        return 0;
    }
    return SP_EINVAL;
}

/* The reason of the last OpenSSL error, and an empty error queue: the queue
 * is per thread and SSL_get_error() needs it empty before each call. */
static void ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", r != NULL ? r : "unknown OpenSSL error");
    ERR_clear_error();
}

/* An encrypted key would otherwise make OpenSSL prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return 0;
}

/* ALPN: the only protocol spoken here is HTTP/1.1. A client that does not
 * offer it (h2 only) gets no ALPN answer rather than a failed handshake, as
 * RFC 7301 allows. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "http/1.1";
    unsigned int i = 0;
    (void)ssl;
    (void)arg;
    while (i < inlen) {
        unsigned int n = in[i];
        if (n == sizeof(h11) - 1 && i + 1 + n <= inlen && memcmp(in + i + 1, h11, n) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Name the file when it cannot even be opened: OpenSSL's own reason for a
 * missing file is less plain than errno's. */
static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return SP_ECONFIG;
    }
    fclose(f);
    return 0;
}

int tls_server_new(const char *cert, const char *key, const char *min_version,
                   tls_server_t **out, char *err, size_t errlen)
{
    static const unsigned char sid_ctx[] = "sendpipe-http";
    char why[128];
    tls_server_t *t;
    int ver, rc;

    *out = NULL;
    if (tls_version_parse(min_version, &ver) < 0) {
        snprintf(err, errlen, "tls_min_version: expected 1.2 or 1.3, got \"%s\"", min_version);
        return SP_ECONFIG;
    }
    if (cert == NULL || cert[0] == '\0' || key == NULL || key[0] == '\0') {
        snprintf(err, errlen, "tls_listen needs tls_cert and tls_key");
        return SP_ECONFIG;
    }
    if ((rc = readable("tls_cert", cert, err, errlen)) < 0 ||
        (rc = readable("tls_key", key, err, errlen)) < 0) {
        return rc;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return SP_ENOMEM;
    }
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (t->ctx == NULL) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "TLS context: %s", why);
        free(t);
        return SP_ENOMEM;
    }
    /* Set-up calls that can only fail for lack of memory on these
     * constants are checked together. */
    if (SSL_CTX_set_min_proto_version(t->ctx, ver) != 1 ||
        SSL_CTX_set_cipher_list(t->ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_session_id_context(t->ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1 ||
        SSL_CTX_set_dh_auto(t->ctx, 1) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "TLS context: %s", why);
        rc = SP_ENOMEM;
        goto fail;
    }
    SSL_CTX_set_security_level(t->ctx, 2);
    /* No renegotiation (a CPU lever for clients, and needless here);
     * the server's cipher order; idle keep-alive connections drop their
     * record buffers. */
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                    SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(t->ctx, no_password);
    SSL_CTX_set_alpn_select_cb(t->ctx, alpn_select, NULL);

    if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "tls_cert %s: %s", cert, why);
        rc = SP_ECONFIG;
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "tls_key %s: %s", key, why);
        rc = SP_ECONFIG;
        goto fail;
    }
    if (SSL_CTX_check_private_key(t->ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "tls_key %s does not match tls_cert %s", key, cert);
        rc = SP_ECONFIG;
        goto fail;
    }
    *out = t;
    return 0;

fail:
    tls_server_free(t);
    return rc;
}

void tls_server_free(tls_server_t *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->ctx);
    free(t);
}

tls_conn_t *tls_conn_new(tls_server_t *t)
{
    tls_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->ssl = SSL_new(t->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return NULL;
    }
    /* An empty input BIO means "not yet", never end of stream: the end of
     * the TCP stream is the caller's business. */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    return c;
}

void tls_conn_free(tls_conn_t *c)
{
    if (c == NULL) {
        return;
    }
    SSL_free(c->ssl); /* and both BIOs */
    free(c);
}

static void fail(tls_conn_t *c, int sslerr)
{
    c->failed = true;
    if (sslerr == SSL_ERROR_SSL) {
        ssl_reason(c->why, sizeof(c->why));
    } else {
        snprintf(c->why, sizeof(c->why), "TLS error %d", sslerr);
        ERR_clear_error();
    }
}

int tls_conn_feed(tls_conn_t *c, const void *data, size_t len)
{
    size_t w = 0;
    if (len == 0) {
        return 0;
    }
    if (BIO_write_ex(c->rbio, data, len, &w) != 1 || w != len) {
        ERR_clear_error();
        return SP_ENOMEM;
    }
    return 0;
}

int tls_conn_read(tls_conn_t *c, char *buf, size_t cap, size_t *nread, tls_stop_t *why)
{
    *nread = 0;
    *why = TLS_STOP_INPUT;
    if (c->failed) {
        return -EPROTO;
    }
    while (*nread < cap) {
        size_t got = 0;
        int r, e;
        ERR_clear_error();
        r = SSL_read_ex(c->ssl, buf + *nread, cap - *nread, &got);
        if (r == 1) {
            *nread += got;
            continue;
        }
        e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            return 0;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            *why = TLS_STOP_CLOSED;
            return 0;
        }
        /* WANT_WRITE cannot happen: the output BIO grows as needed. */
        fail(c, e);
        return -EPROTO;
    }
    *why = TLS_STOP_FULL;
    return 0;
}

int tls_conn_write(tls_conn_t *c, const void *data, size_t len)
{
    size_t w = 0;
    int r;
    if (c->failed || !SSL_is_init_finished(c->ssl)) {
        return SP_ESTATE;
    }
    if (len == 0) {
        return 0;
    }
    ERR_clear_error();
    r = SSL_write_ex(c->ssl, data, len, &w);
    if (r != 1 || w != len) {
        int e = SSL_get_error(c->ssl, r);
        fail(c, e);
        return e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL ? -EPROTO : SP_ENOMEM;
    }
    return 0;
}

int tls_conn_shutdown(tls_conn_t *c)
{
    if (c->failed || !SSL_is_init_finished(c->ssl)) {
        return 0;
    }
    ERR_clear_error();
    if (SSL_shutdown(c->ssl) < 0) {
        fail(c, SSL_ERROR_SSL);
        return -EPROTO;
    }
    return 0;
}

char *tls_conn_take_output(tls_conn_t *c, size_t *len)
{
    size_t n = BIO_ctrl_pending(c->wbio), got = 0;
    char *buf;
    *len = n;
    if (n == 0) {
        return NULL;
    }
    buf = malloc(n);
    if (buf == NULL) {
        return NULL;
    }
    if (BIO_read_ex(c->wbio, buf, n, &got) != 1 || got != n) {
        /* A memory BIO hands out what it reported pending; anything else
         * is a broken invariant, treated like a lack of memory. */
        ERR_clear_error();
        free(buf);
        return NULL;
    }
    return buf;
}

bool tls_conn_established(const tls_conn_t *c)
{
    return SSL_is_init_finished(c->ssl) == 1;
}

bool tls_conn_failed(const tls_conn_t *c)
{
    return c->failed;
}

void tls_conn_describe(const tls_conn_t *c, char *out, size_t outlen)
{
    const unsigned char *alpn = NULL;
    unsigned int alen = 0;
    if (c->failed) {
        snprintf(out, outlen, "%s", c->why);
        return;
    }
    SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
    if (alpn == NULL || alen == 0) {
        alpn = (const unsigned char *)"-";
        alen = 1;
    }
    snprintf(out, outlen, "%s %s %.*s", SSL_get_version(c->ssl),
             SSL_get_cipher_name(c->ssl) != NULL ? SSL_get_cipher_name(c->ssl) : "-",
             (int)alen, (const char *)alpn);
}
