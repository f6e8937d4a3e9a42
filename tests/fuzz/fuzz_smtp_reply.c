/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the SMTP relay client's pure side (plugins/egress_smtp/
 * smtp_reply.c): the reply parser on arbitrary server bytes, EHLO
 * keywords, the queue id of a 250, the printable reply line, and
 * dot-stuffing with a check that unstuffing gives the message back. */
/* The checks below are the point of the target: keep them in every build. */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/egress_smtp/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reply(const smtp_reply_t *r)
{
    char line[SMTP_REPLY_MAX_TEXT + 16], qid[128];
    smtp_ehlo_t f;
    size_t n, q;

    assert(r->code >= 200 && r->code <= 599);
    assert(r->nlines >= 1 && r->nlines <= SMTP_REPLY_MAX_LINES);
    assert(r->textlen < sizeof(r->text) && r->text[r->textlen] == '\0');
    if (r->enh[0] != '\0') {
        assert(r->enh[0] == (char)('0' + r->code / 100) && r->enh[1] == '.');
        assert(strncmp(r->text, r->enh, strlen(r->enh)) == 0);
    }
    n = smtp_reply_line(r, line, sizeof(line));
    assert(n == strlen(line) && n >= 3);
    for (size_t i = 0; i < n; i++) {
        assert((unsigned char)line[i] >= 0x20 && (unsigned char)line[i] < 0x7f);
    }
    n = smtp_reply_line(r, line, 5);
    assert(n <= 4 && line[n] == '\0');
    smtp_ehlo_parse(r, &f);
    if (r->code != 250) {
        assert(!f.pipelining && !f.starttls && !f.auth_plain && !f.size);
    }
    q = smtp_reply_queue_id(r, qid, sizeof(qid));
    assert(q == strlen(qid) && q < sizeof(qid));
    if (q > 0) {
        assert(r->code / 100 == 2);
        assert(strpbrk(qid, " <>\r\n") == NULL);
    }
    q = smtp_reply_queue_id(r, qid, 1);
    assert(q == 0 && qid[0] == '\0');
}

/* Undo smtp_dot_stuff: the message as sent, CRLF line ends. */
static size_t unstuff(const char *s, size_t len, char *out)
{
    size_t o = 0;
    int bol = 1;
    assert(len >= 3 && memcmp(s + len - 3, ".\r\n", 3) == 0);
    len -= 3;
    for (size_t i = 0; i < len; i++) {
        if (bol && s[i] == '.') {
            assert(i + 1 < len && s[i + 1] == '.'); /* no line is a lone dot */
            i++;
        }
        out[o++] = s[i];
        bol = s[i] == '\n';
        if (s[i] == '\n') {
            assert(i > 0 && s[i - 1] == '\r'); /* every LF is in a CRLF */
        }
    }
    assert(len == 0 || bol); /* the body ends with CRLF */
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    smtp_reply_t *r = malloc(sizeof(*r));
    size_t off = 0;
    char *st, *un, *norm;
    size_t sl, ul, nl = 0;

    assert(r != NULL);
    while (off < size) {
        size_t used = 0;
        smtp_reply_res_t res = smtp_reply_parse(buf + off, size - off, r, &used);
        if (res != SMTP_REPLY_OK) {
            assert(used == 0);
            break;
        }
        assert(used > 0 && used <= size - off);
        assert(buf[off + used - 1] == '\n');
        check_reply(r);
        off += used;
    }

    /* Dot-stuffing the input as a message. */
    st = malloc(SMTP_STUFFED_MAX(size));
    un = malloc(SMTP_STUFFED_MAX(size));
    norm = malloc(2 * size + 2);
    assert(st != NULL && un != NULL && norm != NULL);
    sl = smtp_dot_stuff(buf, size, st);
    assert(sl <= SMTP_STUFFED_MAX(size));
    /* The terminator appears only at the very end. */
    for (size_t i = 0; i + 5 <= sl; i++) {
        if (memcmp(st + i, "\r\n.\r\n", 5) == 0) {
            assert(i + 5 == sl);
        }
    }
    ul = unstuff(st, sl, un);
    for (size_t i = 0; i < size; i++) {
        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) {
            norm[nl++] = '\r';
        }
        norm[nl++] = buf[i];
    }
    if (nl > 0 && norm[nl - 1] != '\n') {
        norm[nl++] = '\r';
        norm[nl++] = '\n';
    }
    assert(ul == nl && memcmp(un, norm, nl) == 0);
    free(norm);
    free(un);
    free(st);
    free(r);
    return 0;
}
