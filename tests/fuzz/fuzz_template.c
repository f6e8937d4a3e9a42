/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the render plugin's {{variable}} interpolation
 * (plugins/render/interp.c). Input: variable lines "name=value" up to the
 * first NUL byte, then the template; the first byte's low bit picks HTML
 * escaping. Checks the bound, the termination, and that text without "{{"
 * or without any variable comes out as it went in (fallbacks aside). */
/* The checks below are the point of the target: keep them in every build. */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sp/sp_errno.h>

#include "../../plugins/render/interp.h"

#define MAX_VARS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const char *nul = size ? memchr(buf, '\0', size) : NULL;
    interp_var_t v[MAX_VARS];
    interp_vars_t vs = {v, 0};
    const char *tpl = buf, *p = buf;
    size_t tlen = size, max, olen = 0;
    bool html = size > 0 && (data[0] & 1);
    char *out = NULL;
    int rc;

    if (nul) {
        /* name=value lines before the NUL */
        while (p < nul && vs.n < MAX_VARS) {
            const char *eol = memchr(p, '\n', (size_t)(nul - p));
            const char *end = eol ? eol : nul;
            const char *eq = memchr(p, '=', (size_t)(end - p));
            if (eq) {
                v[vs.n++] = (interp_var_t){p, (size_t)(eq - p), eq + 1, (size_t)(end - eq - 1)};
            }
            p = eol ? eol + 1 : nul;
        }
        tpl = nul + 1;
        tlen = size - (size_t)(tpl - buf);
    }
    max = tlen * 2 + 64;
    rc = interp_render(tpl, tlen, html, interp_vars_lookup, &vs, max, &out, &olen);
    assert(rc == 0 || rc == SP_ETOOBIG);
    if (rc == 0) {
        assert(out != NULL && olen <= max && out[olen] == '\0');
        if (tlen < 2 || !memmem(tpl, tlen, "{{", 2)) {
            assert(olen == tlen && memcmp(out, tpl, tlen) == 0);
        }
        free(out);
    } else {
        assert(out == NULL);
    }
    /* With no variables and no lookup, placeholders without a fallback stay
     * as written, so the output is never longer than the input. */
    out = NULL;
    rc = interp_render(tpl, tlen, html, NULL, NULL, tlen, &out, &olen);
    assert(rc == 0 && olen <= tlen);
    free(out);
    return 0;
}
