/* SPDX-License-Identifier: Apache-2.0 */
/* The TLS layer of the HTTP ingress: OpenSSL over memory buffers, so that
 * the caller keeps the socket (libuv) and the HTTP code sees plain bytes.
 * No libuv here; every function is for the loop thread only. */
#ifndef SP_INGRESS_HTTP_TLS_H
#define SP_INGRESS_HTTP_TLS_H

#include <stdbool.h>
#include <stddef.h>

/* One listener's settings: certificate, key, versions (an SSL_CTX). */
typedef struct tls_server tls_server_t;
/* One connection's TLS state (an SSL and its two memory BIOs). */
typedef struct tls_conn tls_conn_t;

/* Why tls_conn_read stopped. */
typedef enum {
    TLS_STOP_INPUT = 0, /* it needs more bytes from the peer */
    TLS_STOP_FULL,      /* buf is full; more plaintext may be waiting */
    TLS_STOP_CLOSED,    /* the peer sent close_notify: nothing more comes */
} tls_stop_t;

/* "1.2" or "1.3" into an OpenSSL protocol version. 0 or SP_EINVAL. */
int tls_version_parse(const char *s, int *version);

/* Load the certificate chain and the key (PEM files) and check that they
 * match. On failure returns SP_ECONFIG (or SP_ENOMEM) and writes one line
 * naming the file and the reason into err. */
int tls_server_new(const char *cert, const char *key, const char *min_version,
                   tls_server_t **out, char *err, size_t errlen);
void tls_server_free(tls_server_t *t);

/* A server-side connection waiting for a ClientHello. NULL if out of
 * memory. */
tls_conn_t *tls_conn_new(tls_server_t *t);
void tls_conn_free(tls_conn_t *c);

/* Bytes from the socket. 0 or SP_ENOMEM. */
int tls_conn_feed(tls_conn_t *c, const void *data, size_t len);

/* Advance the handshake and decrypt into buf, as much as there is room
 * for. Returns 0 with *nread set (possibly 0) and *why, or -EPROTO when the
 * peer broke the protocol or the handshake failed (an alert may be waiting
 * in the output: send it, then close). */
int tls_conn_read(tls_conn_t *c, char *buf, size_t cap, size_t *nread, tls_stop_t *why);

/* Encrypt all of data. Only once established. 0, SP_ESTATE (not
 * established, or failed before), -EPROTO or SP_ENOMEM. */
int tls_conn_write(tls_conn_t *c, const void *data, size_t len);

/* Queue a close_notify alert (no-op after a failure). 0 or -EPROTO. */
int tls_conn_shutdown(tls_conn_t *c);

/* The bytes to send to the peer, all of them, as one buffer from malloc
 * (the caller frees it); NULL with *len 0 when there are none, NULL with
 * *len non-zero when out of memory. */
char *tls_conn_take_output(tls_conn_t *c, size_t *len);

/* The handshake completed. */
bool tls_conn_established(const tls_conn_t *c);
/* A fatal error happened: nothing but the pending alert may be sent. */
bool tls_conn_failed(const tls_conn_t *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384 http/1.1", for the debug log; or the
 * reason of the failure once failed. */
void tls_conn_describe(const tls_conn_t *c, char *out, size_t outlen);

#endif
