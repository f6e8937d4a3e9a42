/* SPDX-License-Identifier: Apache-2.0 */
/* Time-ordered 64-bit message ids and their fixed-width base32 text form. */
#include <stdatomic.h>

#include <sp/sp_errno.h>

#include "sp_core/store.h"

#define ID_EPOCH_MS 1577836800000LL /* 2020-01-01T00:00:00Z */
#define ID_SEQ_BITS 20
#define ID_MS_MAX ((1LL << 44) - 1)

static const char alphabet[33] = "0123456789abcdefghjkmnpqrstvwxyz";

/* Last id handed out. Atomic so that a stray call off the loop thread cannot
 * produce a duplicate. */
static _Atomic uint64_t last_id;

uint64_t sp__id_next(int64_t now_ms)
{
    int64_t ms = now_ms - ID_EPOCH_MS;
    uint64_t prev, next;

    if (ms < 0) {
        ms = 0;
    } else if (ms > ID_MS_MAX) {
        ms = ID_MS_MAX;
    }
    prev = atomic_load(&last_id);
    do {
        next = (uint64_t)ms << ID_SEQ_BITS;
        /* Clock went back, or this millisecond's sequence is used up: carry
         * on from the last id (borrowing from the next milliseconds). */
        if (next <= prev) {
            next = prev + 1;
        }
    } while (!atomic_compare_exchange_weak(&last_id, &prev, next));
    return next;
}

uint64_t sp__id_floor(int64_t ms)
{
    ms -= ID_EPOCH_MS;
    if (ms < 0) {
        return 0;
    }
    if (ms > ID_MS_MAX) {
        ms = ID_MS_MAX;
    }
    return (uint64_t)ms << ID_SEQ_BITS;
}

void sp__id_seed(uint64_t last)
{
    uint64_t prev = atomic_load(&last_id);

    while (prev < last && !atomic_compare_exchange_weak(&last_id, &prev, last)) {
    }
}

void sp__id_str(uint64_t id, char out[SP_ID_STRLEN + 1])
{
    /* 13 digits of 5 bits = 65 bits: the first digit carries the top 4. */
    for (int i = 0; i < SP_ID_STRLEN; i++) {
        out[i] = alphabet[(id >> (60 - 5 * i)) & 31];
    }
    out[SP_ID_STRLEN] = '\0';
}

static int digit(char c)
{
    if (c >= 'A' && c <= 'Z') {
        c = (char)(c - 'A' + 'a');
    }
    for (int i = 0; i < 32; i++) {
        if (alphabet[i] == c) {
            return i;
        }
    }
    return -1;
}

int sp__id_parse(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || len != SP_ID_STRLEN) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        int d = digit(s[i]);
        if (d < 0 || (i == 0 && d > 15)) {
            return SP_EINVAL;
        }
        v = (v << 5) | (uint64_t)d;
    }
    if (out) {
        *out = v;
    }
    return 0;
}
