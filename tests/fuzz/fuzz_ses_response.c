/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes as an SES v2 answer through the
 * egress_ses classifier (plugins/egress_ses/ses_response.c). The input is
 * "<status>\n<header block>\n\n<body>"; whatever comes in, the outcome must
 * be a real verdict with a status only for REJECT, one-line NUL-terminated
 * texts and a bounded Retry-After. */
#undef NDEBUG
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ses_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_line(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    assert(n < cap);
    for (size_t i = 0; i < n; i++) {
        assert((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *nl = memchr(p, '\n', size);
    const char *hdr, *sep, *body;
    long status = 0;
    ses_outcome_t o;
    char *copy;

    if (nl == NULL) {
        return 0;
    }
    for (const char *c = p; c < nl && c < p + 4; c++) {
        if (*c >= '0' && *c <= '9') {
            status = status * 10 + (*c - '0');
        }
    }
    hdr = nl + 1;
    sep = NULL;
    for (const char *c = hdr; c + 1 < end; c++) {
        if (c[0] == '\n' && c[1] == '\n') {
            sep = c;
            break;
        }
    }
    body = sep != NULL ? sep + 2 : end;
    /* NUL-terminated copies, as http_fetch hands them out */
    copy = malloc(size + 2);
    assert(copy != NULL);
    memcpy(copy, data, size);
    copy[size] = '\0';
    {
        size_t hl = (size_t)((sep != NULL ? sep : end) - hdr);
        size_t bl = (size_t)(end - body);
        char *h = malloc(hl + 1), *b = malloc(bl + 1);
        assert(h != NULL && b != NULL);
        memcpy(h, hdr, hl);
        h[hl] = '\0';
        memcpy(b, body, bl);
        b[bl] = '\0';
        ses_classify(0, "", status, h, hl, b, bl, &o);
        assert(o.verdict == SP_ACCEPT || o.verdict == SP_DEFER || o.verdict == SP_REJECT);
        assert((o.verdict == SP_REJECT) == (o.status >= 0));
        assert(o.status == -1 || o.status == SP_ST_REJECTED || o.status == SP_ST_FAILED);
        assert(o.retry_after_ms >= -1 && o.retry_after_ms <= 24LL * 3600 * 1000);
        if (status >= 200 && status < 300) {
            assert(o.verdict == SP_ACCEPT);
        }
        if (status >= 500) {
            assert(o.verdict != SP_ACCEPT);
        }
        one_line(o.text, sizeof(o.text));
        one_line(o.message_id, sizeof(o.message_id));
        one_line(o.error_type, sizeof(o.error_type));
        assert(strchr(o.error_type, ':') == NULL && strchr(o.error_type, '#') == NULL);
        /* the transport path as well */
        ses_classify(SP_EBUSY, copy, 0, NULL, 0, NULL, 0, &o);
        assert(o.verdict == SP_DEFER && o.code == 0);
        one_line(o.text, sizeof(o.text));
        free(h);
        free(b);
    }
    free(copy);
    return 0;
}
