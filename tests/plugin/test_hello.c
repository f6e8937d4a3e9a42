/* SPDX-License-Identifier: Apache-2.0 */
/* The hello example plugin through the real loader. The .so is the one
 * built in this tree, or the one named by SP_HELLO_SO (the out-of-tree
 * test builds it against an installed SDK and runs this binary). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "sp_core/msg.h"

static const char *hello_path(char *buf, size_t len)
{
    const char *env = getenv("SP_HELLO_SO");
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    h_so_path(buf, len, "hello");
    return buf;
}

static int teardown(void **state)
{
    h_env_t *h = *state;
    if (h != NULL) {
        h_teardown(h);
        free(h);
    }
    *state = NULL;
    return 0;
}

static h_env_t *env_with(void **state, const char *config, int *rc)
{
    char path[512], yaml[1024];
    h_env_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    *state = h;
    snprintf(yaml, sizeof(yaml), "  - name: hello\n    path: %s\n%s",
             hello_path(path, sizeof(path)), config);
    h_setup(h, false, yaml);
    *rc = h_load(h);
    return h;
}

static void test_adds_header(void **state)
{
    int rc;
    h_env_t *h = env_with(state, "    config:\n      greeting: hi there\n", &rc);
    sp_event_t ev = {.size = sizeof(ev), .msg_id = "abc", .status = SP_ST_DELIVERED,
                     .status_name = "DELIVERED", .data = "{}"};
    char metrics[512];
    size_t len;
    sp_txn_t *txn;
    h_run_t r;
    const char *hdr;

    if (rc != 0) {
        fail_msg("load: %s", h->err);
    }
    txn = h_run_txn(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_int_equal(sp__msg_count(sp__txn_msg(txn), SP_F_HEADERS), 1);
    hdr = sp__msg_get_at(sp__txn_msg(txn), SP_F_HEADERS, 0, &len);
    assert_non_null(hdr);
    assert_string_equal(hdr, "X-Hello: hi there");
    assert_int_equal(len, strlen("X-Hello: hi there"));
    sp__txn_free(txn);

    sp__pipeline_emit(h->core->pipeline, &ev);
    assert_true(h_log_contains(h, "message abc is now DELIVERED\",\"plugin\":\"hello\""));
    sp__plugin_metrics(h_plugin(h, "hello"), metrics, sizeof(metrics));
    assert_non_null(strstr(metrics, "sendpipe_plugin_hello_messages_total 1\n"));
    assert_non_null(strstr(metrics, "sendpipe_plugin_hello_events_total 1\n"));
}

static void test_default_greeting(void **state)
{
    int rc;
    h_env_t *h = env_with(state, "", &rc);
    sp_txn_t *txn;
    h_run_t r;
    assert_int_equal(rc, 0);
    txn = h_run_txn(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_string_equal(sp__msg_get_at(sp__txn_msg(txn), SP_F_HEADERS, 0, NULL),
                        "X-Hello: hello");
    sp__txn_free(txn);
}

static void test_bad_greeting(void **state)
{
    int rc;
    h_env_t *h = env_with(state, "    config:\n      greeting: \"two\\nlines\"\n", &rc);
    assert_int_equal(rc, SP_ECONFIG);
    assert_non_null(strstr(h->err, "invalid configuration: greeting must be one line"));
    teardown(state);
    h = env_with(state, "    config:\n      salutation: hi\n", &rc);
    assert_int_equal(rc, SP_ECONFIG);
    assert_non_null(strstr(h->err, "unknown key"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_adds_header, teardown),
        cmocka_unit_test_teardown(test_default_greeting, teardown),
        cmocka_unit_test_teardown(test_bad_greeting, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
