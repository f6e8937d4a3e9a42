/* SPDX-License-Identifier: Apache-2.0 */
/* DKIM signing of a whole CRLF message with libopendkim, free of the plugin
 * API so that tests and the benchmark drive the same code as the plugin. */
#ifndef SP_DKIM_SIGN_H
#define SP_DKIM_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Library-wide settings, fixed at dks_lib_new(). */
typedef struct dks_opts {
    /* Header fields to sign when present (NULL: dks_default_headers); must
     * include From. */
    const char *const *headers;
    bool oversign_from;  /* list From once more in h=: no From can be added */
    uint64_t expire_s;   /* x= this many seconds after t=; 0: no x= */
    uint64_t fixed_time; /* t= (tests, benchmarks); 0: the clock */
} dks_opts_t;

extern const char *const dks_default_headers[];

typedef struct dks_lib dks_lib_t;

/* 0 or a negative SP_E* code; err gets one line. The handle may be used by
 * several threads at once (each dks_sign has its own libopendkim handle). */
int dks_lib_new(const dks_opts_t *o, dks_lib_t **out, char *err, size_t errlen);
void dks_lib_free(dks_lib_t *l);

/* Sign msg (RFC 5322, CRLF) for domain/selector with the PEM key of
 * algorithm "rsa-sha256" or "ed25519-sha256", relaxed/relaxed. *hdr gets a
 * malloc'd "DKIM-Signature: ...\r\n" (folded with CRLF + tab), ready to be
 * prepended. 0, SP_EINVAL (bad algorithm, key or message), SP_ENOMEM; err
 * gets one line (never key material). The key must be of the algorithm:
 * libopendkim does not check (the core's store only holds matching pairs). */
int dks_sign(dks_lib_t *l, const char *id, const char *domain, const char *selector,
             const char *algorithm, const char *key_pem, const char *msg, size_t len,
             char **hdr, size_t *hdrlen, char *err, size_t errlen);

#endif
