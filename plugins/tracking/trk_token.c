/* SPDX-License-Identifier: Apache-2.0 */
/* Tracking tokens (see trk_token.h). */
#include "trk_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define TRK_VERSION 1
#define TRK_HEAD 5 /* version, kind, index (2), id length */
#define TRK_RAW_MAX (TRK_HEAD + TRK_ID_MAX + TRK_MAC_LEN)

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char label[] = "sendpipe-tracking-v1"; /* with its NUL */

static bool id_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '-' || c == '_';
}

static int mac_of(const uint8_t *key, size_t klen, const uint8_t *msg, size_t len,
                  uint8_t out[TRK_MAC_LEN])
{
    uint8_t buf[sizeof(label) + TRK_RAW_MAX];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    if (len > TRK_RAW_MAX || klen == 0 || klen > 1024) {
        return -1;
    }
    memcpy(buf, label, sizeof(label));
    memcpy(buf + sizeof(label), msg, len);
    if (HMAC(EVP_sha256(), key, (int)klen, buf, sizeof(label) + len, md, &mdlen) == NULL ||
        mdlen < TRK_MAC_LEN) {
        return -1;
    }
    memcpy(out, md, TRK_MAC_LEN);
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

static size_t b64u_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
        out[o++] = b64u[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64u_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Strict: no padding, no other characters, unused trailing bits zero (so
 * each byte string has exactly one text). Returns the length or -1. */
static int b64u_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (n % 4 == 1) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int v = b64u_val((unsigned char)in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) {
                return -1;
            }
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) {
        return -1;
    }
    return (int)o;
}

int trk_token_make(const uint8_t *key, size_t klen, trk_kind_t kind, const char *id,
                   size_t idlen, unsigned index, char *out, size_t cap)
{
    uint8_t raw[TRK_RAW_MAX];
    size_t n;

    if (!key || !id || !out || idlen == 0 || idlen > TRK_ID_MAX || index > TRK_INDEX_MAX ||
        (kind != TRK_OPEN && kind != TRK_CLICK)) {
        return -1;
    }
    for (size_t i = 0; i < idlen; i++) {
        if (!id_char((unsigned char)id[i])) {
            return -1;
        }
    }
    raw[0] = TRK_VERSION;
    raw[1] = (uint8_t)kind;
    raw[2] = (uint8_t)(index >> 8);
    raw[3] = (uint8_t)index;
    raw[4] = (uint8_t)idlen;
    memcpy(raw + TRK_HEAD, id, idlen);
    n = TRK_HEAD + idlen;
    if (mac_of(key, klen, raw, n, raw + n) != 0) {
        return -1;
    }
    n += TRK_MAC_LEN;
    if ((n + 2) / 3 * 4 + 1 > cap) {
        return -1;
    }
    return (int)b64u_encode(raw, n, out);
}

int trk_token_parse(const uint8_t *key, size_t klen, trk_kind_t kind, const char *tok,
                    size_t len, char id[TRK_ID_MAX + 1], unsigned *index)
{
    uint8_t raw[TRK_RAW_MAX];
    uint8_t want[TRK_MAC_LEN];
    size_t idlen;
    int n;

    if (!key || !tok || !id || !index || len >= TRK_TOKEN_MAX) {
        return -1;
    }
    n = b64u_decode(tok, len, raw, sizeof(raw));
    if (n < TRK_HEAD + 1 + TRK_MAC_LEN || raw[0] != TRK_VERSION || raw[1] != (uint8_t)kind) {
        return -1;
    }
    idlen = raw[4];
    if (idlen == 0 || idlen > TRK_ID_MAX || (size_t)n != TRK_HEAD + idlen + TRK_MAC_LEN) {
        return -1;
    }
    if (mac_of(key, klen, raw, TRK_HEAD + idlen, want) != 0 ||
        CRYPTO_memcmp(want, raw + TRK_HEAD + idlen, TRK_MAC_LEN) != 0) {
        return -1;
    }
    for (size_t i = 0; i < idlen; i++) {
        if (!id_char(raw[TRK_HEAD + i])) {
            return -1;
        }
    }
    if (kind == TRK_OPEN && (raw[2] != 0 || raw[3] != 0)) {
        return -1;
    }
    memcpy(id, raw + TRK_HEAD, idlen);
    id[idlen] = '\0';
    *index = (unsigned)raw[2] << 8 | raw[3];
    return 0;
}

char *trk_location(const char *link, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out, *o;

    if (!link || memchr(link, '\0', len) != NULL || len > (SIZE_MAX - 1) / 3) {
        return NULL;
    }
    out = malloc(len * 3 + 1);
    if (!out) {
        return NULL;
    }
    o = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)link[i];
        if (c <= 0x20 || c >= 0x7f) {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    *o = '\0';
    return out;
}
