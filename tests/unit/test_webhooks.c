/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the pure parts of outgoing webhooks: event names, URL check,
 * backoff with jitter, the v1 signature, and the payload bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include <sp/sp_errno.h>

#include "sp_core/msg.h"
#include "sp_core/webhooks.h"

static void test_event_names(void **state)
{
    (void)state;
    assert_string_equal(sp__wh_event_type(SP_ST_QUEUED), "email.queued");
    assert_string_equal(sp__wh_event_type(SP_ST_DELIVERY_DELAYED), "email.delivery_delayed");
    assert_string_equal(sp__wh_event_type(SP_ST_RENDERING_FAILURE), "email.rendering_failure");
    assert_string_equal(sp__wh_event_type(SP_ST_SUPPRESSED), "email.suppressed");
    assert_null(sp__wh_event_type(SP_ST__COUNT));
    for (int st = 0; st < SP_ST__COUNT; st++) {
        assert_true(sp__wh_event_known(sp__wh_event_type((sp_status_t)st)));
    }
    assert_true(sp__wh_event_known("webhook.test"));
    assert_true(sp__wh_event_known("contact.created"));
    assert_false(sp__wh_event_known("email.nope"));
    assert_false(sp__wh_event_known(NULL));
    assert_int_equal(sp__wh_state_parse("AUTO_DISABLED"), SP_WH_AUTO_DISABLED);
    assert_int_equal(sp__wh_state_parse("active"), -1);
}

static void test_url(void **state)
{
    (void)state;
    assert_true(sp__wh_url_ok("https://example.com/hook"));
    assert_true(sp__wh_url_ok("http://127.0.0.1:8080/x?y=1"));
    assert_false(sp__wh_url_ok("ftp://example.com/"));
    assert_false(sp__wh_url_ok("https://"));
    assert_false(sp__wh_url_ok("https:///path"));
    assert_false(sp__wh_url_ok("http://exa mple.com/"));
    assert_false(sp__wh_url_ok("http://example.com/\r\nX: y"));
    assert_false(sp__wh_url_ok("example.com"));
    assert_false(sp__wh_url_ok(NULL));
}

static void test_backoff(void **state)
{
    (void)state;
    /* Doubling from the base, jittered into [d/2, d], capped. */
    assert_int_equal(sp__wh_backoff(1000, 60000, 1, 0), 500);
    assert_int_equal(sp__wh_backoff(1000, 60000, 1, UINT32_MAX), 1000);
    assert_int_equal(sp__wh_backoff(1000, 60000, 3, UINT32_MAX), 4000);
    assert_int_equal(sp__wh_backoff(1000, 60000, 3, 0), 2000);
    assert_int_equal(sp__wh_backoff(1000, 60000, 30, UINT32_MAX), 60000);
    assert_int_equal(sp__wh_backoff(1000, 60000, 200, 0), 30000);
    for (uint32_t a = 1; a < 10; a++) {
        uint64_t d = sp__wh_backoff(10000, 600000, a, 0x7fffffffu);
        assert_true(d >= sp__wh_backoff(10000, 600000, a, 0));
        assert_true(d <= sp__wh_backoff(10000, 600000, a, UINT32_MAX));
    }
}

static void test_sign(void **state)
{
    char secret[SP_WH_SECRET_LEN + 1] = "whsec_";
    char sig[SP_WH_SIG_LEN + 1];
    const char body[] = "{\"a\":1}";

    (void)state;
    for (int i = 0; i < 32; i++) {
        strcat(secret, "ab");
    }
    assert_int_equal(sp__wh_sign(secret, 1700000000000LL, body, strlen(body), sig), 0);
    /* python3: hmac.new(secret, b'1700000000000.{"a":1}', sha256).hexdigest() */
    assert_string_equal(sig, "v1=3465965bf2202827f8c40f3e8286091ea09d020793a5102e1af2b6879d3a1522");
}

static void test_email_data(void **state)
{
    sp_msg_t *m = sp__msg_new();
    json_t *d;
    char *s;

    (void)state;
    assert_int_equal(sp__msg_set_int(m, SP_F_TEAM, 7), 0);
    assert_int_equal(sp__msg_set(m, SP_F_FROM, "Ann <ann@x.test>", 16), 0);
    assert_int_equal(sp__msg_add(m, SP_F_TO, "bob@y.test", 10), 0);
    assert_int_equal(sp__msg_add(m, SP_F_TO, "\xff\xfe", 2), 0); /* not UTF-8 */
    assert_int_equal(sp__msg_set(m, SP_F_SUBJECT, "Hi", 2), 0);
    assert_int_equal(sp__msg_set_int(m, SP_F_DOMAIN_ID, 3), 0);

    s = sp__wh_email_data(m, 1, SP_ST_BOUNCED, 1700000000123LL,
                          "{\"bounceType\":\"Permanent\",\"bounceSubType\":\"General\","
                          "\"bouncedRecipients\":[{\"emailAddress\":\"bob@y.test\","
                          "\"diagnosticCode\":\"550 no such user\"}]}");
    assert_non_null(s);
    d = json_loads(s, 0, NULL);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "BOUNCED");
    assert_string_equal(json_string_value(json_object_get(d, "from")), "Ann <ann@x.test>");
    assert_string_equal(json_string_value(json_object_get(d, "subject")), "Hi");
    assert_int_equal(json_integer_value(json_object_get(d, "domainId")), 3);
    assert_string_equal(json_string_value(json_object_get(d, "occurredAt")),
                        "2023-11-14T22:13:20.123Z");
    assert_int_equal(json_array_size(json_object_get(d, "to")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "to"), 1)), "");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(d, "bounce"), "type")), "Permanent");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(d, "bounce"), "subType")), "General");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(d, "bounce"), "message")),
        "550 no such user");
    json_decref(d);
    free(s);

    s = sp__wh_email_data(m, 1, SP_ST_CLICKED, 1,
                          "{\"timestamp\":\"t\",\"link\":\"https://l.test/\","
                          "\"userAgent\":\"UA\",\"ipAddress\":\"192.0.2.1\"}");
    d = json_loads(s, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "click"), "url")),
                        "https://l.test/");
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "click"), "ip")),
                        "192.0.2.1");
    json_decref(d);
    free(s);

    /* FAILED carries the error; garbage event data is ignored. */
    s = sp__wh_email_data(m, 1, SP_ST_FAILED, 1, "{\"error\":\"boom\"}");
    d = json_loads(s, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(d, "error")), "boom");
    json_decref(d);
    free(s);
    s = sp__wh_email_data(m, 1, SP_ST_OPENED, 1, "not json");
    assert_non_null(s);
    free(s);
    sp__msg_free(m);
}

static void test_body(void **state)
{
    char *s = sp__wh_body(42, "email.sent", NULL, 1700000000000LL, 7, "{\"id\":\"x\"}", 3);
    json_t *b;

    (void)state;
    assert_non_null(s);
    assert_string_equal(s, "{\"id\":\"42\",\"type\":\"email.sent\",\"version\":\"2026-01-18\","
                           "\"createdAt\":\"2023-11-14T22:13:20.000Z\",\"teamId\":7,"
                           "\"data\":{\"id\":\"x\"},\"attempt\":3}");
    free(s);
    s = sp__wh_body(1, "webhook.test", "2025-01-01", 0, 1, NULL, 1);
    b = json_loads(s, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(b, "version")), "2025-01-01");
    json_decref(b);
    free(s);
    assert_null(sp__wh_body(1, "x", NULL, 0, 1, "{bad", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_names), cmocka_unit_test(test_url),
        cmocka_unit_test(test_backoff),     cmocka_unit_test(test_sign),
        cmocka_unit_test(test_email_data),  cmocka_unit_test(test_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
