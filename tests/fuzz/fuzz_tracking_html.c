/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes as a message's html through the tracking
 * plugin's rewriter (libxml2's HTML parser, the link rules, the pixel, the
 * serialiser). Every recorded link must be one the rules allow, and every
 * rewritten href must carry a token that verifies to its index. */
#undef NDEBUG
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "trk_html.h"
#include "trk_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char base[] = "https://t.example";
    trk_opts_t o = {.base = base,
                    .key = key,
                    .klen = sizeof(key),
                    .id = "fuzzmsg",
                    .idlen = 7,
                    .open = size > 0 && (data[0] & 1),
                    .click = true,
                    .max_links = 50};
    trk_result_t r;
    unsigned n = 0;

    if (size > (1u << 20)) {
        return 0;
    }
    if (trk_html_rewrite((const char *)data, size, &o, &r) != 0) {
        return 0;
    }
    assert(r.html != NULL && strlen(r.html) <= r.len);
    assert(r.nlinks <= o.max_links);
    for (size_t i = 0; i < r.nlinks; i++) {
        assert(trk_link_trackable(r.links[i]));
    }
    for (const char *p = strstr(r.html, "https://t.example/t/c/"); p;
         p = strstr(p + 1, "https://t.example/t/c/")) {
        char id[TRK_ID_MAX + 1];
        unsigned idx;
        const char *tok = p + sizeof(base) - 1 + 5;
        size_t tl = strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
        if (trk_token_parse(key, sizeof(key), TRK_CLICK, tok, tl, id, &idx) == 0) {
            assert(strcmp(id, "fuzzmsg") == 0 && idx < r.nlinks);
            n++;
        }
    }
    assert(n >= r.nlinks);
    trk_result_free(&r);
    return 0;
}
