/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the SMTP ingress's command side (line splitter, verb
 * parser, MAIL/RCPT arguments, strict base64) on arbitrary client bytes,
 * checking the invariants the session relies on. */
/* The checks below are the point of the target: keep them in every build. */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "../../plugins/ingress_smtp/smtp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    smtp_lines_t st = {0};
    size_t off = 0;

    while (off < size) {
        size_t used = 0, len = 0;
        smtp_line_res_t r = smtp_line_next(&st, buf + off, size - off, SMTP_MAX_LINE, &used,
                                           &len);
        assert(used <= size - off);
        if (r == SMTP_LINE_OK) {
            const char *line = buf + off;
            smtp_cmd_t c;
            assert(len + 2 <= SMTP_MAX_LINE && len + 2 <= used);
            if (smtp_cmd_parse(line, len, &c) == 0) {
                assert(c.arg >= line && c.arg + c.arglen <= line + len);
                if (c.verb == SMTP_VERB_MAIL) {
                    smtp_mail_t m;
                    if (smtp_parse_mail(c.arg, c.arglen, &m) == 0) {
                        size_t n = strlen(m.addr);
                        assert(n <= SMTP_MAX_PATH);
                        assert(n == 0 || smtp_addr_ok(m.addr, n));
                    }
                } else if (c.verb == SMTP_VERB_RCPT) {
                    char a[SMTP_MAX_PATH + 1];
                    if (smtp_parse_rcpt(c.arg, c.arglen, a) == 0) {
                        assert(smtp_addr_ok(a, strlen(a)));
                        assert(strpbrk(a, " <>\r\n") == NULL);
                    }
                } else if (c.verb == SMTP_VERB_AUTH) {
                    unsigned char out[SMTP_MAX_LINE];
                    char back[SMTP_MAX_LINE * 2];
                    long n = smtp_b64_decode(c.arg, c.arglen, out);
                    if (n >= 0) {
                        /* Strict base64 round-trips exactly. */
                        assert((size_t)n <= c.arglen / 4 * 3);
                        assert(smtp_b64_encode(out, (size_t)n, back) == c.arglen);
                        assert(memcmp(back, c.arg, c.arglen) == 0);
                    }
                }
            }
        }
        if (used == 0) {
            break;
        }
        off += used;
    }
    return 0;
}
