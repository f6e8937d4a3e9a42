/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: how a recipient string from a client is turned into the key
 * the suppression list is searched by: the core's normalisation
 * (sp__suppress_normn: trim, lower-case, limits) and the suppression
 * plugin's bare address of "Name <addr>" (plugins/suppression/supp_addr.c),
 * then the normalisation of that. Checks the bounds, that the result is
 * trimmed, lower-case and free of control bytes, that normalising twice
 * changes nothing, and that the bare address lies inside the input. */
/* The checks below are the point of the target: keep them in every build. */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "sp_core/suppress.h"

#include "../../plugins/suppression/supp_addr.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_norm(const char *in, size_t len)
{
    char out[SP_SUPPRESS_EMAIL_MAX + 1], again[SP_SUPPRESS_EMAIL_MAX + 1];
    size_t n;

    if (sp__suppress_normn(in, len, out) != 0) {
        return;
    }
    n = strlen(out);
    assert(n >= 1 && n <= SP_SUPPRESS_EMAIL_MAX && n <= len);
    assert(!is_space((unsigned char)out[0]) && !is_space((unsigned char)out[n - 1]));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        assert(c >= 0x20 && c != 0x7f && !(c >= 'A' && c <= 'Z'));
    }
    assert(sp__suppress_normn(out, n, again) == 0 && strcmp(out, again) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *b = NULL;
    size_t bl = 0;

    check_norm(s, size);
    if (supp_bare_addr(s, size, &b, &bl)) {
        assert(b > s && b + bl < s + size && bl > 0);
        assert(memchr(s, '<', (size_t)(b - s)) != NULL);
        assert(memchr(b + bl, '>', (size_t)(s + size - (b + bl))) != NULL);
        assert(!is_space((unsigned char)b[0]) && !is_space((unsigned char)b[bl - 1]));
        check_norm(b, bl);
    }
    return 0;
}
