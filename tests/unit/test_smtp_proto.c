/* SPDX-License-Identifier: Apache-2.0 */
/* unit.smtp_proto: the SMTP ingress's command-line splitter, MAIL/RCPT
 * argument parsers, strict base64, and the DATA state machine (dot
 * unstuffing, bare LF, smuggling, NUL, size limit, split input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* The glob in tests/unit builds one source per test: compile the module in. */
#include "../../plugins/ingress_smtp/smtp_proto.c"

static void test_lines(void **state)
{
    smtp_lines_t st = {0};
    size_t used, len;
    char big[600];
    (void)state;
    assert_int_equal(smtp_line_next(&st, "EHLO x", 6, 512, &used, &len), SMTP_LINE_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(smtp_line_next(&st, "EHLO x\r\nNOOP", 12, 512, &used, &len), SMTP_LINE_OK);
    assert_int_equal(used, 8);
    assert_int_equal(len, 6);
    assert_int_equal(smtp_line_next(&st, "EHLO x\n", 7, 512, &used, &len), SMTP_LINE_BARELF);
    assert_int_equal(used, 7);
    /* 512 bytes with the CRLF is the most; 513 is too long. */
    memset(big, 'a', sizeof(big));
    memcpy(big + 510, "\r\n", 2);
    assert_int_equal(smtp_line_next(&st, big, 512, 512, &used, &len), SMTP_LINE_OK);
    assert_int_equal(len, 510);
    memset(big, 'a', sizeof(big));
    memcpy(big + 511, "\r\n", 2);
    assert_int_equal(smtp_line_next(&st, big, 513, 512, &used, &len), SMTP_LINE_TOOLONG);
    assert_int_equal(used, 513);
    /* No LF in sight: answered at once, then the rest dropped up to the LF. */
    memset(big, 'a', sizeof(big));
    assert_int_equal(smtp_line_next(&st, big, 600, 512, &used, &len), SMTP_LINE_TOOLONG);
    assert_int_equal(used, 600);
    assert_int_equal(smtp_line_next(&st, "aaa", 3, 512, &used, &len), SMTP_LINE_MORE);
    assert_int_equal(used, 3);
    assert_int_equal(smtp_line_next(&st, "a\r\nNOOP\r\n", 9, 512, &used, &len), SMTP_LINE_MORE);
    assert_int_equal(used, 3);
    assert_int_equal(smtp_line_next(&st, "NOOP\r\n", 6, 512, &used, &len), SMTP_LINE_OK);
}

static void test_cmd(void **state)
{
    smtp_cmd_t c;
    (void)state;
    assert_int_equal(smtp_cmd_parse("ehlo  client.test ", 18, &c), 0);
    assert_int_equal(c.verb, SMTP_VERB_EHLO);
    assert_int_equal(c.arglen, 11);
    assert_memory_equal(c.arg, "client.test", 11);
    assert_int_equal(smtp_cmd_parse("StartTLS", 8, &c), 0);
    assert_int_equal(c.verb, SMTP_VERB_STARTTLS);
    assert_int_equal(smtp_cmd_parse("XYZZY a", 7, &c), 0);
    assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
    assert_int_equal(smtp_cmd_parse("DATAX", 5, &c), 0);
    assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
    assert_int_equal(smtp_cmd_parse("NOOP\0", 5, &c), -1);
    assert_int_equal(smtp_cmd_parse("NOOP\x1b", 5, &c), -1);
}

static int mail(const char *s, smtp_mail_t *m)
{
    return smtp_parse_mail(s, strlen(s), m);
}

static void test_mail_rcpt(void **state)
{
    smtp_mail_t m;
    char a[SMTP_MAX_PATH + 1];
    char longaddr[400];
    (void)state;
    assert_int_equal(mail("FROM:<a@b.test> SIZE=1234 BODY=8BITMIME SMTPUTF8", &m), 0);
    assert_string_equal(m.addr, "a@b.test");
    assert_true(m.has_size);
    assert_int_equal(m.size, 1234);
    assert_true(m.body_8bit);
    assert_true(m.smtputf8);
    assert_int_equal(mail("from: <a@b.test>", &m), 0);
    assert_int_equal(mail("FROM:<>", &m), 0);
    assert_string_equal(m.addr, "");
    assert_int_equal(mail("FROM:a@b.test", &m), 0);
    assert_int_equal(mail("FROM:<a@b.test> AUTH=<>", &m), 0);
    assert_int_equal(mail("TO:<a@b.test>", &m), SMTP_ESYNTAX);
    assert_int_equal(mail("FROM:<a@b.test", &m), SMTP_ESYNTAX);
    assert_int_equal(mail("FROM:<a@b.test> SIZE=x", &m), SMTP_ESYNTAX);
    assert_int_equal(mail("FROM:<a@b.test> SIZE=99999999999999999999", &m), SMTP_ESYNTAX);
    assert_int_equal(mail("FROM:<a@b.test> BODY=BINARYMIME", &m), SMTP_EPARAM);
    assert_int_equal(mail("FROM:<a@b.test> RET=FULL", &m), SMTP_EPARAM);
    assert_int_equal(mail("FROM:<a b@c.test>", &m), SMTP_EADDR);
    assert_int_equal(mail("FROM:<@relay:a@b.test>", &m), SMTP_EADDR);
    assert_int_equal(mail("FROM:<ab.test>", &m), SMTP_EADDR);
    memset(longaddr, 'a', sizeof(longaddr));
    memcpy(longaddr, "FROM:<", 6);
    memcpy(longaddr + 300, "@b.test>", 9);
    assert_int_equal(mail(longaddr, &m), SMTP_EADDR);

    assert_int_equal(smtp_parse_rcpt("TO:<x@y.test>", 13, a), 0);
    assert_string_equal(a, "x@y.test");
    assert_int_equal(smtp_parse_rcpt("To:<jörg@exämple.com>", 23, a), 0);
    assert_int_equal(smtp_parse_rcpt("TO:<>", 5, a), SMTP_EADDR);
    assert_int_equal(smtp_parse_rcpt("TO:<x@y.test> NOTIFY=NEVER", 26, a), SMTP_EPARAM);
    assert_int_equal(smtp_parse_rcpt("TO:<x@@y>", 9, a), SMTP_EADDR);
    assert_int_equal(smtp_parse_rcpt("TO:<x@y..z>", 11, a), SMTP_EADDR);
    assert_int_equal(smtp_parse_rcpt("TO:<x@[127.0.0.1]>", 18, a), 0);
    assert_int_equal(smtp_parse_rcpt("TO:<\xff@y.z>", 10, a), SMTP_EADDR);
    assert_int_equal(smtp_parse_rcpt("FROM:<x@y.z>", 12, a), SMTP_ESYNTAX);
}

static void test_b64(void **state)
{
    unsigned char out[64];
    char enc[64];
    (void)state;
    assert_int_equal(smtp_b64_decode("AHVzZXNlbmQAeA==", 16, out), 10);
    assert_memory_equal(out, "\0usesend\0x", 10);
    assert_int_equal(smtp_b64_decode("YWJj", 4, out), 3);
    assert_int_equal(smtp_b64_decode("YWI=", 4, out), 2);
    assert_int_equal(smtp_b64_decode("YWJ", 3, out), -1);
    assert_int_equal(smtp_b64_decode("Y=Jj", 4, out), -1);
    assert_int_equal(smtp_b64_decode("YW==YWJj", 8, out), -1);
    assert_int_equal(smtp_b64_decode("YWJ!", 4, out), -1);
    assert_int_equal(smtp_b64_decode("YWJj YWJj", 9, out), -1);
    assert_int_equal(smtp_b64_decode("YR==", 4, out), -1); /* stray bits */
    assert_int_equal(smtp_b64_encode((const unsigned char *)"usesend", 7, enc), 12);
    assert_string_equal(enc, "dXNlc2VuZA==");
}

/* Feed `in` in chunks of `step` bytes; the result of the last call. */
static smtp_data_res_t feed(smtp_data_t *d, const char *in, size_t n, size_t step,
                            size_t *total)
{
    size_t off = 0, used;
    smtp_data_res_t r = SMTP_DATA_MORE;
    while (off < n) {
        size_t k = n - off < step ? n - off : step;
        r = smtp_data_feed(d, in + off, k, &used);
        off += used;
        if (r != SMTP_DATA_MORE) {
            break;
        }
    }
    *total = off;
    return r;
}

static void test_data(void **state)
{
    static const char msg[] = "Subject: x\r\n\r\n..leading\r\nbare\nlf\r\n.\r\nNOOP\r\n";
    static const char want[] = "Subject: x\r\n\r\n.leading\r\nbare\r\nlf\r\n";
    (void)state;
    for (size_t step = 1; step <= sizeof(msg); step++) {
        smtp_data_t d;
        size_t used;
        smtp_data_init(&d, 1000);
        assert_int_equal(feed(&d, msg, sizeof(msg) - 1, step, &used), SMTP_DATA_END);
        assert_int_equal(used, sizeof(msg) - 1 - 6); /* NOOP stays */
        assert_int_equal(d.len, sizeof(want) - 1);
        assert_memory_equal(d.buf, want, d.len);
        assert_false(d.has_nul);
        smtp_data_free(&d);
    }
}

static void test_data_edges(void **state)
{
    smtp_data_t d;
    size_t used;
    char big[3000];
    (void)state;
    /* An empty message. */
    smtp_data_init(&d, 100);
    assert_int_equal(smtp_data_feed(&d, ".\r\n", 3, &used), SMTP_DATA_END);
    assert_int_equal(d.len, 0);
    smtp_data_free(&d);
    /* The smuggling patterns end the session. */
    const char *bad[] = {"a\n.\r\n", "a\r\n.\n", "a\r\n.\rx", "a\n.\n"};
    for (size_t i = 0; i < 4; i++) {
        smtp_data_init(&d, 100);
        assert_int_equal(smtp_data_feed(&d, bad[i], strlen(bad[i]), &used), SMTP_DATA_SMUGGLE);
        smtp_data_free(&d);
    }
    /* A bare CR is content. */
    smtp_data_init(&d, 100);
    assert_int_equal(smtp_data_feed(&d, "a\rb\r\n.\r\n", 8, &used), SMTP_DATA_END);
    assert_memory_equal(d.buf, "a\rb\r\n", 5);
    smtp_data_free(&d);
    /* NUL is flagged and not kept. */
    smtp_data_init(&d, 100);
    assert_int_equal(smtp_data_feed(&d, "a\0b\r\n.\r\n", 8, &used), SMTP_DATA_END);
    assert_true(d.has_nul);
    assert_memory_equal(d.buf, "ab\r\n", 4);
    smtp_data_free(&d);
    /* Over the limit: counted, dropped, still ended properly. */
    memset(big, 'x', sizeof(big));
    smtp_data_init(&d, 1024);
    assert_int_equal(smtp_data_feed(&d, big, sizeof(big), &used), SMTP_DATA_MORE);
    assert_true(d.too_big);
    assert_null(d.buf);
    assert_int_equal(smtp_data_feed(&d, "\r\n.\r\n", 5, &used), SMTP_DATA_END);
    assert_int_equal(d.size, sizeof(big) + 2);
    smtp_data_free(&d);
    /* Exactly at the limit is fine. */
    smtp_data_init(&d, 4);
    assert_int_equal(smtp_data_feed(&d, "ab\r\n.\r\n", 7, &used), SMTP_DATA_END);
    assert_false(d.too_big);
    smtp_data_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),     cmocka_unit_test(test_cmd),
        cmocka_unit_test(test_mail_rcpt), cmocka_unit_test(test_b64),
        cmocka_unit_test(test_data),      cmocka_unit_test(test_data_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
