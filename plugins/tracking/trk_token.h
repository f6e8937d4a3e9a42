/* SPDX-License-Identifier: Apache-2.0 */
/* Tracking tokens: what the open pixel and the click URLs carry.
 *
 * A token is the base64url text (no padding) of
 *   version (1 byte, 1) | kind (1 byte, 'o' or 'c') | link index (2 bytes,
 *   big-endian; 0 for opens) | id length (1 byte) | message id |
 *   MAC (16 bytes)
 * where MAC is HMAC-SHA256 under the plugin's key of the label
 * "sendpipe-tracking-v1" and a NUL byte followed by every byte before the
 * MAC, truncated to 128 bits. Pure C with OpenSSL's libcrypto: no host API. */
#ifndef TRK_TOKEN_H
#define TRK_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRK_MAC_LEN 16
#define TRK_ID_MAX 64      /* longest message id a token carries */
#define TRK_TOKEN_MAX 160  /* longest token text, NUL included */
#define TRK_INDEX_MAX 0xffffu

typedef enum { TRK_OPEN = 'o', TRK_CLICK = 'c' } trk_kind_t;

/* Write the token of (kind, id, index) into out (NUL-terminated). Returns
 * its length, or -1 (id empty, too long or not [0-9A-Za-z_-], index too big,
 * out too small, or the HMAC failed). */
int trk_token_make(const uint8_t *key, size_t klen, trk_kind_t kind, const char *id,
                   size_t idlen, unsigned index, char *out, size_t cap);

/* Check a token of the given kind: strict base64url, layout, id characters,
 * then the MAC in constant time. 0 and id (NUL-terminated), *index set; -1
 * for anything else (no detail: every bad token looks the same). */
int trk_token_parse(const uint8_t *key, size_t klen, trk_kind_t kind, const char *tok,
                    size_t len, char id[TRK_ID_MAX + 1], unsigned *index);

/* A stored link made fit for a Location header: bytes <= 0x20 and >= 0x7f
 * percent-encoded, everything else kept. Returns a malloc'd string or NULL
 * (out of memory, or a NUL byte inside). */
char *trk_location(const char *link, size_t len);

#endif
