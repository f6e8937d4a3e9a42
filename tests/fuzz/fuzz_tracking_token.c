/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes as a tracking token (the {token} of
 * /t/o/ and /t/c/) through the tracking plugin's parser, for both kinds; and
 * as a stored link through the Location encoder. Nothing may verify that
 * was not made with the key; whatever verifies must round-trip. */
#undef NDEBUG
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trk_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char id[TRK_ID_MAX + 1], again[TRK_TOKEN_MAX];
    const char *s = (const char *)data;
    unsigned idx;
    char *loc;

    for (int k = 0; k < 2; k++) {
        trk_kind_t kind = k == 0 ? TRK_OPEN : TRK_CLICK;
        if (trk_token_parse(key, sizeof(key), kind, s, size, id, &idx) == 0) {
            /* Only a token made with the key gets here: it is canonical. */
            int n = trk_token_make(key, sizeof(key), kind, id, strlen(id), idx, again,
                                   sizeof(again));
            assert(n > 0 && (size_t)n == size && memcmp(again, data, size) == 0);
        }
    }
    /* A token made from the input's first bytes as an id parses back. */
    if (size > 0 && size <= TRK_ID_MAX &&
        trk_token_make(key, sizeof(key), TRK_CLICK, s, size, size, again, sizeof(again)) > 0) {
        assert(trk_token_parse(key, sizeof(key), TRK_CLICK, again, strlen(again), id, &idx) ==
               0);
        assert(strlen(id) == size && memcmp(id, data, size) == 0 && idx == size);
    }
    loc = trk_location(s, size);
    if (loc) {
        for (const char *p = loc; *p; p++) {
            assert((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f);
        }
        free(loc);
    }
    return 0;
}
