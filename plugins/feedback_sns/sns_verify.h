/* SPDX-License-Identifier: Apache-2.0 */
/* The pure half of the SNS endpoint: parse an SNS envelope, build the string
 * AWS signs, check certificate and subscribe URLs, verify a signature against
 * a certificate, verify a certificate's chain and name. No host API: also
 * compiled into the unit test and the fuzz target. */
#ifndef FEEDBACK_SNS_VERIFY_H
#define FEEDBACK_SNS_VERIFY_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <openssl/x509.h>

typedef enum {
    SNS_NOTIFICATION = 1,
    SNS_SUBSCRIPTION_CONFIRMATION,
    SNS_UNSUBSCRIBE_CONFIRMATION,
} sns_type_t;

/** A string value of the envelope, borrowed from `root` (may contain NUL). */
typedef struct sns_str {
    const char *p;
    size_t n;
    bool present;
} sns_str_t;

typedef struct sns_msg {
    json_t *root; /**< owned; sns_msg_free releases it */
    sns_type_t type;
    sns_str_t type_s, message, message_id, subject, timestamp, token, subscribe_url,
        topic_arn, signature, sig_version, cert_url, unsubscribe_url;
} sns_msg_t;

/** Parse an SNS POST body. 0, or -1 with a one-line reason in err. On
 * success free with sns_msg_free. */
int sns_parse(const void *body, size_t len, sns_msg_t *m, char *err, size_t errlen);
void sns_msg_free(sns_msg_t *m);

/** The string to sign (AWS "key\nvalue\n" for each signed key of the type,
 * ending in a newline). *out from malloc, caller frees. 0 or -1 (memory). */
int sns_string_to_sign(const sns_msg_t *m, char **out, size_t *len);

/** True if host[0..n) is exactly "sns.<region>.amazonaws.com", region
 * [a-z]{2}(-gov)?-[a-z]+-[0-9]. */
bool sns_host_ok(const char *host, size_t n);

/** A SigningCertURL we may fetch: https, no userinfo or port, an SNS host, a
 * path of [A-Za-z0-9._/-] ending in ".pem", no query or fragment. */
bool sns_cert_url_ok(const char *url, size_t n, char *err, size_t errlen);

/** A SubscribeURL we may fetch: https, no userinfo or port, an SNS host,
 * printable ASCII, no fragment. */
bool sns_subscribe_url_ok(const char *url, size_t n, char *err, size_t errlen);

/** Verify m's Signature (SignatureVersion "1": SHA1withRSA, "2":
 * SHA256withRSA) with cert's public key. 0, or -1 with the reason. */
int sns_verify_signature(const sns_msg_t *m, X509 *cert, char *err, size_t errlen);

/** Load the certificates of a PEM buffer: the first is *leaf, any others go
 * into *chain (untrusted intermediates; may come back NULL). 0 or -1. */
int sns_pem_load(const void *pem, size_t len, X509 **leaf, STACK_OF(X509) **chain);

/** A trust store: the system's default paths, or only ca_file when given.
 * With ca_file, a certificate in it is a trust anchor even if it is not
 * self-signed (X509_V_FLAG_PARTIAL_CHAIN), so a test can pin a leaf. */
X509_STORE *sns_store_new(const char *ca_file, char *err, size_t errlen);

/** The caIssuers URL of cert's Authority Information Access, if it may be
 * fetched: http or https, a host under amazontrust.com (no userinfo or
 * port), a path of [A-Za-z0-9._/-]. True with the URL in out. */
bool sns_aia_issuer_url(X509 *cert, char *out, size_t outlen);
bool sns_aia_url_ok(const char *url, size_t n);

/** One certificate from DER or PEM bytes, or NULL. */
X509 *sns_cert_parse_any(const void *buf, size_t len);

/** Verify cert: chain to a trust anchor of `store` (with `chain` and
 * `extra` as untrusted intermediates, either may be NULL), validity period
 * unless !check_time, and the name sns.amazonaws.com (SAN dNSName, or CN when
 * there is no SAN). 0, or -1 with the reason; -2 when only the issuer of a
 * certificate was not found (an intermediate may be fetched). */
int sns_cert_check(X509 *cert, STACK_OF(X509) *chain, STACK_OF(X509) *extra,
                   X509_STORE *store, bool check_time, char *err, size_t errlen);

#endif
