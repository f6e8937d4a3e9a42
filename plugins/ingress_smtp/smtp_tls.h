/* SPDX-License-Identifier: Apache-2.0 */
/* TLS for the SMTP ingress: the server context (TLS 1.2 or later), the
 * self-signed certificate made at first start when none is configured,
 * and one session driven through memory BIOs so that libuv owns the
 * socket. */
#ifndef SP_PLUGINS_INGRESS_SMTP_SMTP_TLS_H
#define SP_PLUGINS_INGRESS_SMTP_SMTP_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* Make the server context from cert/key PEM files. If both are empty,
 * use (and at first start create) `selfsigned_path`, a PEM holding a
 * P-256 key and a certificate for `hostname`; *generated says whether it
 * was made now. err gets one line on failure. */
int smtp_tls_ctx_new(const char *cert, const char *key, const char *selfsigned_path,
                     const char *hostname, SSL_CTX **out, bool *generated, char *err,
                     size_t errlen);

/* One TLS session over memory BIOs. */
typedef struct smtp_tls {
    SSL *ssl;
    BIO *rbio; /* network -> TLS */
    BIO *wbio; /* TLS -> network */
    bool handshake_done;
} smtp_tls_t;

int smtp_tls_start(smtp_tls_t *t, SSL_CTX *ctx);
void smtp_tls_free(smtp_tls_t *t);

#endif /* SP_PLUGINS_INGRESS_SMTP_SMTP_TLS_H */
