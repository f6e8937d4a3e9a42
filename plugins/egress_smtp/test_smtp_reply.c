/* SPDX-License-Identifier: Apache-2.0 */
/* unit.smtp_reply: the relay client's reply parser, EHLO keywords, queue
 * ids of real servers' answers, and dot-stuffing, on fixed examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_reply.h"

static smtp_reply_res_t parse(const char *s, smtp_reply_t *r, size_t *used)
{
    return smtp_reply_parse(s, strlen(s), r, used);
}

static void test_multiline(void **state)
{
    smtp_reply_t r;
    size_t used;
    char line[256];
    const char *s = "550-5.1.1 <x@example.com>: Recipient address rejected:\r\n"
                    "550 5.1.1 User unknown\r\n250 next";
    (void)state;
    assert_int_equal(parse(s, &r, &used), SMTP_REPLY_OK);
    assert_int_equal(r.code, 550);
    assert_string_equal(r.enh, "5.1.1");
    assert_int_equal(r.nlines, 2);
    assert_int_equal(used, strlen(s) - strlen("250 next"));
    smtp_reply_line(&r, line, sizeof(line));
    assert_string_equal(line, "550 5.1.1 <x@example.com>: Recipient address rejected: "
                              "5.1.1 User unknown");
    /* Incomplete, malformed, mixed codes, too long. */
    assert_int_equal(parse("250-a\r\n250 b", &r, &used), SMTP_REPLY_MORE);
    assert_int_equal(parse("25x ok\r\n", &r, &used), SMTP_REPLY_BAD);
    assert_int_equal(parse("250-a\r\n251 b\r\n", &r, &used), SMTP_REPLY_BAD);
    assert_int_equal(parse("150 too low\r\n", &r, &used), SMTP_REPLY_BAD);
    assert_int_equal(parse("250\n", &r, &used), SMTP_REPLY_OK);
    assert_int_equal(r.textlen, 0);
    {
        char *big = malloc(SMTP_REPLY_MAX_LINE + 10);
        assert_non_null(big);
        memcpy(big, "250 ", 4);
        memset(big + 4, 'a', SMTP_REPLY_MAX_LINE + 5);
        big[SMTP_REPLY_MAX_LINE + 9] = '\0';
        assert_int_equal(parse(big, &r, &used), SMTP_REPLY_TOO_LONG);
        free(big);
    }
}

static void test_ehlo(void **state)
{
    smtp_reply_t r;
    smtp_ehlo_t f;
    size_t used;
    (void)state;
    assert_int_equal(parse("250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                           "250-starttls\r\n250-AUTH=LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
                           "250-8BITMIME\r\n250 SMTPUTF8\r\n",
                           &r, &used),
                     SMTP_REPLY_OK);
    smtp_ehlo_parse(&r, &f);
    assert_true(f.pipelining && f.starttls && f.size && f.eightbitmime && f.smtputf8);
    assert_true(f.enhancedstatuscodes && f.auth_login);
    assert_false(f.auth_plain);
    assert_int_equal(f.size_max, 10240000);
    /* The greeting line is not a keyword. */
    assert_int_equal(parse("250 PIPELINING\r\n", &r, &used), SMTP_REPLY_OK);
    smtp_ehlo_parse(&r, &f);
    assert_false(f.pipelining);
    assert_int_equal(parse("250-x\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n", &r, &used),
                     SMTP_REPLY_OK);
    smtp_ehlo_parse(&r, &f);
    assert_true(f.auth_plain && f.auth_login);
}

static const char *qid(const char *s, char *out, size_t outlen)
{
    smtp_reply_t r;
    size_t used;
    assert_int_equal(parse(s, &r, &used), SMTP_REPLY_OK);
    return smtp_reply_queue_id(&r, out, outlen) > 0 ? out : NULL;
}

static void test_queue_id(void **state)
{
    char id[128];
    (void)state;
    assert_string_equal(qid("250 2.0.0 Ok: queued as 4Fq3x12ZB\r\n", id, sizeof(id)),
                        "4Fq3x12ZB");
    assert_string_equal(qid("250 OK id=1rXy2A-000Abc-9Z\r\n", id, sizeof(id)),
                        "1rXy2A-000Abc-9Z");
    assert_string_equal(qid("250 Ok 0100018f5e2a-b1c2-000000\r\n", id, sizeof(id)),
                        "0100018f5e2a-b1c2-000000");
    assert_string_equal(qid("250 2.0.0 06asa7c5s0000\r\n", id, sizeof(id)), "06asa7c5s0000");
    assert_string_equal(qid("250 2.0.0 <abc123@mx>\r\n", id, sizeof(id)), "abc123@mx");
    assert_null(qid("250 2.0.0 Ok\r\n", id, sizeof(id)));
    assert_null(qid("250 Great success\r\n", id, sizeof(id)));
    assert_null(qid("550 5.0.0 queued as X1\r\n", id, sizeof(id)));
    assert_null(qid("250 2.0.0 Ok: queued as 4Fq3x12ZB\r\n", id, 4)); /* too small */
}

static void stuff(const char *in, const char *want)
{
    char out[256];
    size_t n = smtp_dot_stuff(in, strlen(in), out);
    assert_true(n <= SMTP_STUFFED_MAX(strlen(in)));
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_dot_stuff(void **state)
{
    (void)state;
    stuff("", ".\r\n");
    stuff("a\r\n", "a\r\n.\r\n");
    stuff("a", "a\r\n.\r\n");
    stuff(".\r\n", "..\r\n.\r\n");
    stuff("x\r\n.y\r\n..z", "x\r\n..y\r\n...z\r\n.\r\n");
    stuff("bare\nlf\n.", "bare\r\nlf\r\n..\r\n.\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multiline),
        cmocka_unit_test(test_ehlo),
        cmocka_unit_test(test_queue_id),
        cmocka_unit_test(test_dot_stuff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
