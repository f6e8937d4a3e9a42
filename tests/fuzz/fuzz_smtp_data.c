/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the SMTP DATA state machine. The first byte chooses a chunk
 * size, so the same message is also fed split at every kind of boundary;
 * the result must not depend on the split, must never hold a bare LF, and
 * must stop right after <CRLF>.<CRLF>. */
/* The checks below are the point of the target: keep them in every build. */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "../../plugins/ingress_smtp/smtp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static smtp_data_res_t run(smtp_data_t *d, const char *in, size_t n, size_t step, size_t *total)
{
    size_t off = 0, used;
    smtp_data_res_t r = SMTP_DATA_MORE;
    while (off < n) {
        size_t k = n - off < step ? n - off : step;
        r = smtp_data_feed(d, in + off, k, &used);
        assert(used <= k);
        off += used;
        if (r != SMTP_DATA_MORE) {
            break;
        }
        assert(used == k);
    }
    *total = off;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smtp_data_t a, b;
    size_t ta, tb, step;
    smtp_data_res_t ra, rb;
    const char *in;

    if (size < 1) {
        return 0;
    }
    step = (size_t)data[0] % 7 + 1;
    in = (const char *)data + 1;
    size--;
    smtp_data_init(&a, 4096);
    smtp_data_init(&b, 4096);
    ra = run(&a, in, size, size > 0 ? size : 1, &ta);
    rb = run(&b, in, size, step, &tb);
    assert(ra == rb && ta == tb);
    assert(a.size == b.size && a.too_big == b.too_big && a.has_nul == b.has_nul);
    assert(a.len == b.len && (a.len == 0 || memcmp(a.buf, b.buf, a.len) == 0));
    assert(a.too_big == (a.size > 4096));
    for (size_t i = 0; i < a.len; i++) {
        assert(a.buf[i] != '\0');
        if (a.buf[i] == '\n') {
            assert(i > 0 && a.buf[i - 1] == '\r');
        }
    }
    if (ra == SMTP_DATA_END) {
        assert(ta >= 3 && memcmp(in + ta - 3, ".\r\n", 3) == 0);
        assert(ta == 3 || (ta >= 5 && memcmp(in + ta - 5, "\r\n", 2) == 0));
    }
    smtp_data_free(&a);
    smtp_data_free(&b);
    return 0;
}
