/* SPDX-License-Identifier: Apache-2.0 */
/* AWS Signature Version 4 as pure functions (no host API, no clock): the
 * canonical request, the string to sign, the signing key and the
 * Authorization header value. Checked against AWS's own test suite and
 * botocore-signed SES requests (plugins/egress_ses/test_sigv4.c). */
#ifndef SES_SIGV4_H
#define SES_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct sigv4_header {
    const char *name;
    const char *value; /* may hold obs-fold line breaks; trimmed and collapsed */
} sigv4_header_t;

typedef struct sigv4_request {
    const char *method;
    const char *path;               /* raw path, no query ("" = "/") */
    const char *query;              /* raw query without '?', or NULL */
    const sigv4_header_t *headers;  /* every one is signed */
    size_t nheaders;
    const void *body;
    size_t body_len;
} sigv4_request_t;

typedef struct sigv4_key {
    const char *access_key;
    const char *secret_key;
    const char *region;
    const char *service;
} sigv4_key_t;

/* Canonical request; *signed_headers (may be NULL) gets "a;b;c". Both
 * malloc'd. 0 or -1 (out of memory). */
int sigv4_canonical_request(const sigv4_request_t *r, char **out, char **signed_headers);
/* "AWS4-HMAC-SHA256\n<amz_date>\n<date>/<region>/<service>/aws4_request\n<hex sha256(creq)>" */
int sigv4_string_to_sign(const char *amz_date, const char *region, const char *service,
                         const char *creq, char **out);
/* HMAC chain "AWS4"+secret -> date (8 chars of amz_date) -> region -> service -> "aws4_request". */
void sigv4_signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char key[32]);
/* The whole Authorization header value for r, signed at amz_date
 * ("YYYYMMDDTHHMMSSZ", which must also be r's X-Amz-Date header). */
int sigv4_authorization(const sigv4_key_t *k, const char *amz_date, const sigv4_request_t *r,
                        char **out);
/* "YYYYMMDDTHHMMSSZ" of t (UTC). */
void sigv4_amz_date(time_t t, char out[17]);
/* Lower-case hex SHA-256 of data. */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

#endif
