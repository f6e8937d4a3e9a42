/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the api_usesend plugin's pure parts: payload validation,
 * ISO 8601, strict base64, the from-domain rule, bearer tokens, key
 * permissions, idempotency fingerprints and the rate limiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit.h"
#include "validate.h"

static const api_limits_t LIM = {.max_attachment_size = 16, .max_attachments_total = 24};

/* ---- helpers ---------------------------------------------------------- */

static json_t *js(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (v == NULL) {
        fail_msg("bad test JSON: %s: %s", text, je.text);
    }
    return v;
}

/* Parse one payload; returns rc, leaves err filled on failure. */
static int parse1(const char *text, api_email_t *e, api_err_t *err)
{
    json_t *v = js(text);
    int rc;
    memset(err, 0, sizeof(*err));
    rc = api_email_parse(v, -1, &LIM, e, err);
    json_decref(v);
    return rc;
}

/* Expect a 400 whose message starts with `prefix`; the first issue's path
 * is the JSON text `path`. */
static void expect_bad(const char *text, const char *prefix, const char *path)
{
    api_email_t e;
    api_err_t err;
    int rc = parse1(text, &e, &err);
    if (rc != SP_EINVAL) {
        fail_msg("accepted: %s", text);
    }
    assert_int_equal(err.status, 400);
    assert_string_equal(err.code, "BAD_REQUEST");
    if (strncmp(err.message, prefix, strlen(prefix)) != 0) {
        fail_msg("message '%s' does not start with '%s' (input %s)", err.message, prefix, text);
    }
    assert_non_null(err.issues);
    if (path != NULL) {
        json_t *want = js(path);
        json_t *got = json_object_get(json_array_get(err.issues, 0), "path");
        if (!json_equal(want, got)) {
            char *g = json_dumps(got, JSON_ENCODE_ANY);
            fail_msg("issue path %s, expected %s (input %s)", g, path, text);
        }
        json_decref(want);
    }
    api_err_clear(&err);
}

#define OKBASE "\"to\":\"a@b.c\",\"from\":\"x@example.com\",\"subject\":\"s\""

/* ---- payloads --------------------------------------------------------- */

static void test_payload_minimal(void **state)
{
    api_email_t e;
    api_err_t err;
    (void)state;
    assert_int_equal(parse1("{" OKBASE ",\"html\":\"<p>Hi</p>\"}", &e, &err), 0);
    assert_string_equal(e.from, "x@example.com");
    assert_int_equal(e.to.n, 1);
    assert_string_equal(e.to.v[0], "a@b.c");
    assert_string_equal(e.subject, "s");
    assert_string_equal(e.html, "<p>Hi</p>");
    assert_null(e.text);
    assert_int_equal(e.cc.n, 0);
    assert_false(e.has_scheduled_at);
    api_email_free(&e);
}

static void test_payload_full(void **state)
{
    api_email_t e;
    api_err_t err;
    (void)state;
    assert_int_equal(parse1("{\"to\":[\"a@b.c\",\"C <c@d.e>\"],\"from\":\"Acme <x@example.com>\","
                            "\"subject\":\"s\",\"text\":\"t\",\"cc\":\"cc@x.y\","
                            "\"bcc\":[\"b1@x.y\",\"b2@x.y\"],\"replyTo\":\"r@x.y\","
                            "\"headers\":{\"X-Tag\":\"v 1\"},\"scheduledAt\":"
                            "\"2030-01-02T03:04:05.678Z\",\"inReplyToId\":\"abc\","
                            "\"variables\":{\"b\":\"2\",\"a\":\"1\"},\"unknown\":42,"
                            "\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGVsbG8=\"},"
                            "{\"filename\":\"b.bin\",\"content\":\"AAE=\"}]}",
                            &e, &err),
                     0);
    assert_int_equal(e.to.n, 2);
    assert_string_equal(e.to.v[1], "C <c@d.e>");
    assert_int_equal(e.cc.n, 1);
    assert_int_equal(e.bcc.n, 2);
    assert_int_equal(e.reply_to.n, 1);
    assert_int_equal(e.headers.n, 1);
    assert_string_equal(e.headers.v[0], "X-Tag: v 1");
    assert_true(e.has_scheduled_at);
    assert_int_equal(e.scheduled_at, 1893553445678LL);
    assert_string_equal(e.in_reply_to_id, "abc");
    assert_string_equal(e.variables_json, "{\"a\":\"1\",\"b\":\"2\"}");
    assert_int_equal(e.nattachments, 2);
    assert_string_equal(e.attachments[0].filename, "a.txt");
    assert_int_equal(e.attachments[0].len, 5);
    assert_memory_equal(e.attachments[0].data, "hello", 5);
    assert_int_equal(e.attachments[1].len, 2);
    assert_memory_equal(e.attachments[1].data, "\x00\x01", 2);
    api_email_free(&e);
}

static void test_payload_html_coercion(void **state)
{
    api_email_t e;
    api_err_t err;
    (void)state;
    assert_int_equal(parse1("{" OKBASE ",\"html\":42}", &e, &err), 0);
    assert_string_equal(e.html, "42");
    api_email_free(&e);
    assert_int_equal(parse1("{" OKBASE ",\"html\":false,\"text\":\"t\"}", &e, &err), 0);
    assert_null(e.html);
    api_email_free(&e);
    assert_int_equal(parse1("{" OKBASE ",\"html\":\"true\",\"text\":\"t\"}", &e, &err), 0);
    assert_null(e.html);
    api_email_free(&e);
    assert_int_equal(parse1("{" OKBASE ",\"html\":null,\"text\":\"t\"}", &e, &err), 0);
    assert_null(e.html);
    api_email_free(&e);
    /* "false" alone leaves no content at all. */
    expect_bad("{" OKBASE ",\"html\":\"false\"}", "Either text or html", "[]");
    expect_bad("{" OKBASE ",\"html\":{}}", "html: Expected string", "[\"html\"]");
    expect_bad("{" OKBASE ",\"html\":\"\"}", "html: String must contain", "[\"html\"]");
}

static void test_payload_required(void **state)
{
    (void)state;
    expect_bad("{\"from\":\"x@example.com\",\"subject\":\"s\",\"text\":\"t\"}", "to: Required",
               "[\"to\"]");
    expect_bad("{\"to\":\"a@b.c\",\"subject\":\"s\",\"text\":\"t\"}", "from: Required",
               "[\"from\"]");
    expect_bad("{\"to\":\"a@b.c\",\"from\":\"x@example.com\",\"text\":\"t\"}",
               "Either subject or templateId must be provided.", "[]");
    expect_bad("{" OKBASE "}", "Either text or html content must be provided.", "[]");
    expect_bad("[1]", "Expected object, received array", "[]");
    expect_bad("\"x\"", "Expected object, received string", "[]");
}

static void test_payload_template_alone(void **state)
{
    api_email_t e;
    api_err_t err;
    (void)state;
    /* DECISIONS #9: templateId is enough, without subject or content. */
    assert_int_equal(parse1("{\"to\":\"a@b.c\",\"from\":\"x@e.com\",\"templateId\":\"t1\"}", &e,
                            &err),
                     0);
    assert_string_equal(e.template_id, "t1");
    assert_null(e.subject);
    api_email_free(&e);
}

static void test_payload_types(void **state)
{
    (void)state;
    expect_bad("{\"to\":5,\"from\":\"x@e.com\",\"subject\":\"s\",\"text\":\"t\"}",
               "to: Expected string or array of strings, received number", "[\"to\"]");
    expect_bad("{\"to\":[\"a@b.c\",7],\"from\":\"x@e.com\",\"subject\":\"s\",\"text\":\"t\"}",
               "to[1]: Expected string, received number", "[\"to\",1]");
    expect_bad("{\"to\":[],\"from\":\"x@e.com\",\"subject\":\"s\",\"text\":\"t\"}",
               "to: Array must contain at least 1", "[\"to\"]");
    expect_bad("{\"to\":\"a@b.c\",\"from\":null,\"subject\":\"s\",\"text\":\"t\"}",
               "from: Expected string, received null", "[\"from\"]");
    expect_bad("{" OKBASE ",\"text\":1}", "text: Expected string, received number",
               "[\"text\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"subject\":\"\"}", "subject: String must contain",
               "[\"subject\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"cc\":{}}", "cc: Expected string or array",
               "[\"cc\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"headers\":[]}", "headers: Expected object",
               "[\"headers\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"headers\":{\"X-A\":\"\"}}",
               "headers.X-A: String must contain", "[\"headers\",\"X-A\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"variables\":{\"a\":1}}",
               "variables.a: Expected string", "[\"variables\",\"a\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"scheduledAt\":\"tomorrow\"}",
               "scheduledAt: Invalid datetime", "[\"scheduledAt\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"scheduledAt\":17}", "scheduledAt: Expected string",
               "[\"scheduledAt\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"inReplyToId\":3}", "inReplyToId: Expected string",
               "[\"inReplyToId\"]");
}

static void test_payload_all_issues_listed(void **state)
{
    api_email_t e;
    api_err_t err;
    (void)state;
    assert_int_equal(parse1("{\"to\":1,\"from\":2,\"subject\":3,\"text\":\"t\"}", &e, &err),
                     SP_EINVAL);
    assert_int_equal(json_array_size(err.issues), 3);
    assert_string_equal(err.message, "to: Expected string or array of strings, received number");
    api_err_clear(&err);
}

static void test_payload_crlf(void **state)
{
    (void)state;
    expect_bad("{\"to\":\"a@b.c\",\"from\":\"x@e.com\",\"subject\":\"s\\r\\nBcc: v@x\","
               "\"text\":\"t\"}",
               "subject: Must not contain CR or LF", "[\"subject\"]");
    expect_bad("{\"to\":\"a@b.c\\nBcc: v@x\",\"from\":\"x@e.com\",\"subject\":\"s\","
               "\"text\":\"t\"}",
               "to: Must not contain CR or LF", "[\"to\"]");
    expect_bad("{\"to\":[\"a@b.c\",\"d\\r\"],\"from\":\"x@e.com\",\"subject\":\"s\","
               "\"text\":\"t\"}",
               "to[1]: Must not contain CR or LF", "[\"to\",1]");
    expect_bad("{\"to\":\"a@b.c\",\"from\":\"x@e.com\\r\\n\",\"subject\":\"s\",\"text\":\"t\"}",
               "from: Must not contain CR or LF", "[\"from\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"headers\":{\"X-A\":\"v\\r\\nBcc: evil@x\"}}",
               "headers.X-A: Header value must not contain CR or LF", "[\"headers\",\"X-A\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"headers\":{\"X-A\\r\\nBcc\":\"v\"}}",
               "headers.X-A\r\nBcc: Header name must not contain CR or LF", NULL);
    expect_bad("{" OKBASE ",\"text\":\"t\",\"headers\":{\"X A\":\"v\"}}",
               "headers.X A: Invalid header name", "[\"headers\",\"X A\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"replyTo\":\"r@x\\n\"}",
               "replyTo: Must not contain CR or LF", "[\"replyTo\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"attachments\":[{\"filename\":\"a\\n.txt\","
               "\"content\":\"AA==\"}]}",
               "attachments[0].filename: Must not contain CR or LF",
               "[\"attachments\",0,\"filename\"]");
}

static void test_payload_attachments(void **state)
{
    api_email_t e;
    api_err_t err;
    char big[2048];
    (void)state;
    expect_bad("{" OKBASE ",\"text\":\"t\",\"attachments\":[{\"filename\":\"a.pdf\","
               "\"content\":\"not base64!\"}]}",
               "attachments[0].content: Invalid base64 in attachment \"a.pdf\"",
               "[\"attachments\",0,\"content\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"attachments\":[{\"filename\":\"a.pdf\"}]}",
               "attachments[0].content: Required", "[\"attachments\",0,\"content\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"attachments\":[{\"content\":\"AA==\"}]}",
               "attachments[0].filename: Required", "[\"attachments\",0,\"filename\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"attachments\":{}}",
               "attachments: Expected array", "[\"attachments\"]");
    expect_bad("{" OKBASE ",\"text\":\"t\",\"attachments\":[1]}",
               "attachments[0]: Expected object", "[\"attachments\",0]");
    /* 11 attachments: one too many. */
    strcpy(big, "{" OKBASE ",\"text\":\"t\",\"attachments\":[");
    for (int i = 0; i < 11; i++) {
        strcat(big, i ? ",{\"filename\":\"f\",\"content\":\"AA==\"}"
                      : "{\"filename\":\"f\",\"content\":\"AA==\"}");
    }
    strcat(big, "]}");
    expect_bad(big, "attachments: Array must contain at most 10", "[\"attachments\"]");
    /* Exactly 10 are fine. */
    strcpy(big, "{" OKBASE ",\"text\":\"t\",\"attachments\":[");
    for (int i = 0; i < 10; i++) {
        strcat(big, i ? ",{\"filename\":\"f\",\"content\":\"AA==\"}"
                      : "{\"filename\":\"f\",\"content\":\"AA==\"}");
    }
    strcat(big, "]}");
    assert_int_equal(parse1(big, &e, &err), 0);
    assert_int_equal(e.nattachments, 10);
    api_email_free(&e);
    /* The per-attachment limit is 16 bytes: 16 pass, 17 fail. */
    assert_int_equal(parse1("{" OKBASE ",\"text\":\"t\",\"attachments\":[{\"filename\":\"f\","
                            "\"content\":\"MDEyMzQ1Njc4OWFiY2RlZg==\"}]}",
                            &e, &err),
                     0);
    assert_int_equal(e.attachments[0].len, 16);
    api_email_free(&e);
    expect_bad("{" OKBASE ",\"text\":\"t\",\"attachments\":[{\"filename\":\"f.bin\","
               "\"content\":\"MDEyMzQ1Njc4OWFiY2RlZmc=\"}]}",
               "attachments[0].content: Attachment \"f.bin\" is larger than 16 bytes", NULL);
    /* The total limit is 24: 16 + 9 is over. */
    expect_bad("{" OKBASE ",\"text\":\"t\",\"attachments\":[{\"filename\":\"f\","
               "\"content\":\"MDEyMzQ1Njc4OWFiY2RlZg==\"},{\"filename\":\"g\","
               "\"content\":\"MDEyMzQ1Njc4\"}]}",
               "attachments[1].content: Attachments are larger than 24 bytes in total", NULL);
}

static void test_batch(void **state)
{
    json_t *v;
    api_email_t *emails;
    size_t n;
    api_err_t err = {0};
    char *big;
    size_t off = 0;
    (void)state;

    v = js("[{" OKBASE ",\"text\":\"1\"},{" OKBASE ",\"text\":\"2\"}]");
    assert_int_equal(api_email_batch_parse(v, &LIM, &emails, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(emails[1].text, "2");
    api_email_batch_free(emails, n);
    json_decref(v);

    v = js("[]");
    assert_int_equal(api_email_batch_parse(v, &LIM, &emails, &n, &err), SP_EINVAL);
    assert_string_equal(err.message, "No emails provided for bulk send");
    api_err_clear(&err);
    json_decref(v);

    v = js("{}");
    assert_int_equal(api_email_batch_parse(v, &LIM, &emails, &n, &err), SP_EINVAL);
    assert_string_equal(err.message, "Expected array, received object");
    api_err_clear(&err);
    json_decref(v);

    /* Element 3 of 5 is bad: the message names it, the path starts with 3. */
    v = js("[{" OKBASE ",\"text\":\"0\"},{" OKBASE ",\"text\":\"1\"},{" OKBASE ",\"text\":\"2\"},"
           "{\"from\":\"x@e.com\",\"subject\":\"s\",\"text\":\"3\"},{" OKBASE ",\"text\":\"4\"}]");
    assert_int_equal(api_email_batch_parse(v, &LIM, &emails, &n, &err), SP_EINVAL);
    assert_null(emails);
    assert_int_equal(n, 0);
    assert_string_equal(err.message, "emails[3].to: Required");
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_array_get(err.issues, 0), "path"), 0)),
                     3);
    api_err_clear(&err);
    json_decref(v);

    /* 100 pass, 101 fail. */
    big = malloc(101 * 128);
    assert_non_null(big);
    big[off++] = '[';
    for (int i = 0; i < 101; i++) {
        off += (size_t)sprintf(big + off, "%s{" OKBASE ",\"text\":\"%d\"}", i ? "," : "", i);
        if (i == 99) {
            strcpy(big + off, "]");
            v = js(big);
            assert_int_equal(api_email_batch_parse(v, &LIM, &emails, &n, &err), 0);
            assert_int_equal(n, 100);
            api_email_batch_free(emails, n);
            json_decref(v);
        }
    }
    strcpy(big + off, "]");
    v = js(big);
    assert_int_equal(api_email_batch_parse(v, &LIM, &emails, &n, &err), SP_EINVAL);
    assert_string_equal(err.message, "Cannot send more than 100 emails in a single bulk request");
    api_err_clear(&err);
    json_decref(v);
    free(big);
}

static void test_json_parse_and_error_body(void **state)
{
    api_err_t err = {0};
    json_t *v, *b;
    char *txt;
    (void)state;
    assert_int_equal(api_json_parse("{\"a\":", 5, &v, &err), SP_EINVAL);
    assert_null(v);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.message, "Malformed JSON in request body");
    b = api_err_body(&err);
    txt = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(txt, "{\"error\":{\"code\":\"BAD_REQUEST\",\"message\":\"Malformed JSON "
                             "in request body\"}}");
    free(txt);
    json_decref(b);
    api_err_clear(&err);
    assert_int_equal(api_json_parse("", 0, &v, &err), SP_EINVAL);
    api_err_clear(&err);
    assert_int_equal(api_json_parse(NULL, 0, &v, &err), SP_EINVAL);
    api_err_clear(&err);
    assert_int_equal(api_json_parse("{} x", 4, &v, &err), SP_EINVAL);
    api_err_clear(&err);
    assert_int_equal(api_json_parse(" {\"a\":1} ", 9, &v, &err), 0);
    json_decref(v);

    /* Codes of the one error shape. */
    assert_string_equal(api_status_code(401), "UNAUTHORIZED");
    assert_string_equal(api_status_code(403), "FORBIDDEN");
    assert_string_equal(api_status_code(404), "NOT_FOUND");
    assert_string_equal(api_status_code(405), "METHOD_NOT_ALLOWED");
    assert_string_equal(api_status_code(409), "NOT_UNIQUE");
    assert_string_equal(api_status_code(429), "RATE_LIMITED");
    assert_string_equal(api_status_code(500), "INTERNAL_SERVER_ERROR");
    assert_string_equal(api_status_code(503), "SERVICE_UNAVAILABLE");
}

/* ---- ISO 8601 --------------------------------------------------------- */

static int64_t iso(const char *s)
{
    int64_t ms = 0;
    if (api_iso8601_parse(s, strlen(s), &ms) < 0) {
        fail_msg("refused: %s", s);
    }
    return ms;
}

static void bad_iso(const char *s)
{
    int64_t ms;
    if (api_iso8601_parse(s, strlen(s), &ms) != SP_EINVAL) {
        fail_msg("accepted: %s", s);
    }
}

static void test_iso8601(void **state)
{
    char buf[40];
    (void)state;
    assert_int_equal(iso("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(iso("1970-01-01T00:00:00.001Z"), 1);
    assert_int_equal(iso("2025-01-02T03:04:05.678Z"), 1735787045678LL);
    assert_int_equal(iso("2025-01-02T03:04:05.6Z"), 1735787045600LL);
    assert_int_equal(iso("2025-01-02T03:04:05.678999999Z"), 1735787045678LL);
    assert_int_equal(iso("2025-01-02T05:04:05.678+02:00"), 1735787045678LL);
    assert_int_equal(iso("2025-01-02T05:04:05.678+0200"), 1735787045678LL);
    assert_int_equal(iso("2025-01-02T05:04:05.678+02"), 1735787045678LL);
    assert_int_equal(iso("2025-01-01T21:34:05.678-05:30"), 1735787045678LL);
    assert_int_equal(iso("2024-02-29T00:00:00Z"), 1709164800000LL);
    assert_int_equal(iso("2000-02-29T23:59:59Z"), 951868799000LL);
    assert_int_equal(iso("1969-12-31T23:59:59Z"), -1000);
    bad_iso("");
    bad_iso("2025-01-02");
    bad_iso("2025-01-02T03:04Z");
    bad_iso("2025-01-02T03:04:05");
    bad_iso("2025-01-02T03:04:05z");
    bad_iso("2025-01-02 03:04:05Z");
    bad_iso("2025-13-02T03:04:05Z");
    bad_iso("2025-00-02T03:04:05Z");
    bad_iso("2025-01-32T03:04:05Z");
    bad_iso("2023-02-29T03:04:05Z");
    bad_iso("1900-02-29T03:04:05Z");
    bad_iso("2025-04-31T03:04:05Z");
    bad_iso("2025-01-02T24:00:00Z");
    bad_iso("2025-01-02T23:60:00Z");
    bad_iso("2025-01-02T23:00:60Z");
    bad_iso("2025-01-02T03:04:05.Z");
    bad_iso("2025-01-02T03:04:05.1234567890Z");
    bad_iso("2025-01-02T03:04:05Zjunk");
    bad_iso("2025-01-02T03:04:05+2400");
    bad_iso("2025-01-02T03:04:05+01:60");
    bad_iso("2025-01-02T03:04:05+1");
    bad_iso("2025-01-02T03:04:05+01:0");
    bad_iso("+2025-01-02T03:04:05Z");
    bad_iso("2025-1-02T03:04:05Z");

    api_iso8601_format(1735787045678LL, buf, sizeof(buf));
    assert_string_equal(buf, "2025-01-02T03:04:05.678Z");
    api_iso8601_format(0, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    api_iso8601_format(-1, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    api_iso8601_format(951868799000LL, buf, sizeof(buf));
    assert_string_equal(buf, "2000-02-29T23:59:59.000Z");
    /* Round trip over a spread of instants. */
    for (int64_t t = -86400000LL * 800; t < 86400000LL * 40000; t += 86400000LL * 37 + 12345) {
        api_iso8601_format(t, buf, sizeof(buf));
        assert_int_equal(iso(buf), t);
    }
}

/* ---- base64 ----------------------------------------------------------- */

static void test_base64(void **state)
{
    unsigned char *out;
    size_t n;
    (void)state;
    assert_int_equal(api_b64_decode("aGVsbG8=", 8, 100, &out, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "hello", 5);
    free(out);
    assert_int_equal(api_b64_decode("aGVsbA==", 8, 100, &out, &n), 0);
    assert_int_equal(n, 4);
    free(out);
    assert_int_equal(api_b64_decode("aGVs", 4, 100, &out, &n), 0);
    assert_int_equal(n, 3);
    free(out);
    assert_int_equal(api_b64_decode("+/+/", 4, 100, &out, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
    free(out);
    assert_int_equal(api_b64_decode("", 0, 100, &out, &n), 0);
    assert_int_equal(n, 0);
    assert_null(out);
    assert_int_equal(api_b64_decode("aGVsbG8", 7, 100, &out, &n), SP_EINVAL);
    assert_int_equal(api_b64_decode("aGVs bG8=", 9, 100, &out, &n), SP_EINVAL);
    assert_int_equal(api_b64_decode(" aGVsbG8", 8, 100, &out, &n), SP_EINVAL);
    assert_int_equal(api_b64_decode("aGVsbG8\n", 8, 100, &out, &n), SP_EINVAL);
    assert_int_equal(api_b64_decode("aG=sbG8=", 8, 100, &out, &n), SP_EINVAL);
    assert_int_equal(api_b64_decode("aGVsbG-_", 8, 100, &out, &n), SP_EINVAL);
    assert_int_equal(api_b64_decode("====", 4, 100, &out, &n), SP_EINVAL);
    assert_int_equal(api_b64_decode("A===", 4, 100, &out, &n), SP_EINVAL);
    assert_int_equal(api_b64_decode("aGVsbG8=", 8, 4, &out, &n), SP_ETOOBIG);
    assert_int_equal(api_b64_decode("aGVsbG8=", 8, 5, &out, &n), 0);
    free(out);
}

/* ---- from domain, bearer, permissions, fingerprint, ints --------------- */

static void test_from_domain(void **state)
{
    char d[256];
    (void)state;
    assert_int_equal(api_from_domain("hello@Example.COM", d, sizeof(d)), 0);
    assert_string_equal(d, "example.com");
    assert_int_equal(api_from_domain("Acme <hello@acme.io>", d, sizeof(d)), 0);
    assert_string_equal(d, "acme.io");
    assert_int_equal(api_from_domain("a@b.org <hello@acme.io>", d, sizeof(d)), 0);
    assert_string_equal(d, "acme.io");
    assert_int_equal(api_from_domain("\"x@y\" <z@w.net>", d, sizeof(d)), 0);
    assert_string_equal(d, "w.net");
    assert_int_equal(api_from_domain("Acme <hello@acme.io", d, sizeof(d)), SP_EINVAL);
    assert_int_equal(api_from_domain("no-at-sign", d, sizeof(d)), SP_EINVAL);
    assert_int_equal(api_from_domain("@acme.io", d, sizeof(d)), SP_EINVAL);
    assert_int_equal(api_from_domain("hello@", d, sizeof(d)), SP_EINVAL);
    assert_int_equal(api_from_domain("Acme <>", d, sizeof(d)), SP_EINVAL);
    assert_int_equal(api_from_domain("a@b c", d, sizeof(d)), SP_EINVAL);
    assert_int_equal(api_from_domain("a@bcdef", d, 4), SP_EINVAL);
}

static void test_bearer(void **state)
{
    const char *t;
    size_t n;
    (void)state;
    assert_int_equal(api_bearer_token(NULL, &t, &n), SP_ENOTFOUND);
    assert_int_equal(api_bearer_token("", &t, &n), SP_ENOTFOUND);
    assert_int_equal(api_bearer_token("Bearer", &t, &n), SP_ENOTFOUND);
    assert_int_equal(api_bearer_token("Bearer ", &t, &n), SP_ENOTFOUND);
    assert_int_equal(api_bearer_token("Bearer  us_x", &t, &n), SP_ENOTFOUND);
    assert_int_equal(api_bearer_token("Bearer us_abc_def", &t, &n), 0);
    assert_int_equal(n, 10);
    assert_memory_equal(t, "us_abc_def", 10);
    /* As upstream, the scheme word is not checked and a third word is ignored. */
    assert_int_equal(api_bearer_token("Token k1 extra", &t, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(t, "k1", 2);
}

static void test_permissions(void **state)
{
    (void)state;
    assert_true(api_perm_allows(SP_PERM_FULL, API_ACCESS_SEND));
    assert_true(api_perm_allows(SP_PERM_FULL, API_ACCESS_READ));
    assert_true(api_perm_allows(SP_PERM_FULL, API_ACCESS_MANAGE));
    assert_true(api_perm_allows(SP_PERM_SENDING, API_ACCESS_SEND));
    assert_true(api_perm_allows(SP_PERM_SENDING, API_ACCESS_READ));
    assert_false(api_perm_allows(SP_PERM_SENDING, API_ACCESS_MANAGE));
    assert_false(api_perm_allows((sp_permission_t)7, API_ACCESS_SEND));
}

static void test_fingerprint(void **state)
{
    char h1[65], h2[65], h3[65];
    json_t *a = js("{\"b\":1,\"a\":{\"y\":[1,2],\"x\":\"s\"}}");
    json_t *b = js("{\"a\":{\"x\":\"s\",\"y\":[1,2]},\"b\":1}");
    json_t *c = js("{\"a\":{\"x\":\"s\",\"y\":[2,1]},\"b\":1}");
    (void)state;
    assert_int_equal(api_fingerprint(a, h1), 0);
    assert_int_equal(api_fingerprint(b, h2), 0);
    assert_int_equal(api_fingerprint(c, h3), 0);
    assert_int_equal(strlen(h1), 64);
    assert_string_equal(h1, h2);
    assert_string_not_equal(h1, h3);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    /* sha256("{}") */
    a = js("{}");
    assert_int_equal(api_fingerprint(a, h1), 0);
    assert_string_equal(h1, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    json_decref(a);
}

static void test_idem_key_and_ints(void **state)
{
    char k[300];
    int64_t v;
    (void)state;
    assert_false(api_idem_key_ok(NULL));
    assert_false(api_idem_key_ok(""));
    memset(k, 'k', sizeof(k));
    k[256] = '\0';
    assert_true(api_idem_key_ok(k));
    k[256] = 'k';
    k[257] = '\0';
    assert_false(api_idem_key_ok(k));
    assert_true(api_idem_key_ok("a"));

    assert_int_equal(api_parse_int("50", 1, 50, &v), 0);
    assert_int_equal(v, 50);
    assert_int_equal(api_parse_int("51", 1, 50, &v), SP_EINVAL);
    assert_int_equal(api_parse_int("0", 1, 50, &v), SP_EINVAL);
    assert_int_equal(api_parse_int("-1", -5, 5, &v), 0);
    assert_int_equal(v, -1);
    assert_int_equal(api_parse_int("1x", 1, 50, &v), SP_EINVAL);
    assert_int_equal(api_parse_int("", 1, 50, &v), SP_EINVAL);
    assert_int_equal(api_parse_int(" 1", 1, 50, &v), SP_EINVAL);
    assert_int_equal(api_parse_int("99999999999999999999", 0, INT64_MAX, &v), SP_EINVAL);
}

/* ---- rate limiter ----------------------------------------------------- */

static void test_ratelimit(void **state)
{
    api_rl_t *rl = api_rl_new(60000);
    api_rl_info_t info;
    const int64_t t0 = 1700000000000LL;
    (void)state;
    assert_non_null(rl);
    for (int i = 0; i < 3; i++) {
        assert_true(api_rl_hit(rl, 1, 3, t0 + i * 1000, &info));
        assert_int_equal(info.limit, 3);
        assert_int_equal(info.remaining, (uint64_t)(2 - i));
        assert_int_equal(info.reset_s, (t0 + 60000) / 1000);
    }
    assert_false(api_rl_hit(rl, 1, 3, t0 + 10000, &info));
    assert_int_equal(info.remaining, 0);
    assert_int_equal(info.retry_after, 50);
    /* Another team has its own window. */
    assert_true(api_rl_hit(rl, 2, 3, t0 + 10000, &info));
    assert_int_equal(info.remaining, 2);
    /* Last millisecond of the window: still refused, retry in 1 s. */
    assert_false(api_rl_hit(rl, 1, 3, t0 + 59999, &info));
    assert_int_equal(info.retry_after, 1);
    /* A new window opens at the first request after the old one ended. */
    assert_true(api_rl_hit(rl, 1, 3, t0 + 60000, &info));
    assert_int_equal(info.remaining, 2);
    assert_int_equal(info.reset_s, (t0 + 120000) / 1000);
    /* Limit 0: no limit, never counted. */
    for (int i = 0; i < 1000; i++) {
        assert_true(api_rl_hit(rl, 3, 0, t0, &info));
    }
    assert_int_equal(info.limit, 0);
    assert_int_equal(api_rl_size(rl), 2);
    /* Expired windows are swept once the table grows. */
    for (int64_t team = 100; team < 1100; team++) {
        assert_true(api_rl_hit(rl, team, 5, t0, &info));
    }
    assert_int_equal(api_rl_size(rl), 1002);
    for (int64_t team = 5000; team < 7100; team++) {
        assert_true(api_rl_hit(rl, team, 5, t0 + 120000, &info));
    }
    assert_true(api_rl_size(rl) < 2100 + 1002);
    api_rl_free(rl);
    api_rl_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payload_minimal),
        cmocka_unit_test(test_payload_full),
        cmocka_unit_test(test_payload_html_coercion),
        cmocka_unit_test(test_payload_required),
        cmocka_unit_test(test_payload_template_alone),
        cmocka_unit_test(test_payload_types),
        cmocka_unit_test(test_payload_all_issues_listed),
        cmocka_unit_test(test_payload_crlf),
        cmocka_unit_test(test_payload_attachments),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_json_parse_and_error_body),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_from_domain),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_permissions),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_idem_key_and_ints),
        cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
