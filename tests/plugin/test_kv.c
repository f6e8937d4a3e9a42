/* SPDX-License-Identifier: Apache-2.0 */
/* The plugin key/value store through real plugins and a real store: writes
 * that complete after the commit (suspend/resume), reads, prefix scans with
 * the namespace stripped, deletes, and two plugins that never see each
 * other's keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "sp_core/msg.h"

static int setup(void **state)
{
    h_env_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    *state = h;
    h_setup(h, true, "  - name: kv_one\n"
                     "  - name: kv_two\n");
    if (h_load(h) != 0) {
        fail_msg("load: %s", h->err);
    }
    return 0;
}

static int teardown(void **state)
{
    h_env_t *h = *state;
    h_teardown(h);
    free(h);
    return 0;
}

/* Run one operation; returns the verdict, reply text into out. */
static sp_verdict_t kv(h_env_t *h, const char *target, const char *op, const void *key,
                       size_t klen, const char *val, int limit, char *out, size_t outlen)
{
    sp_msg_t *m = sp__msg_new();
    h_run_t r;
    assert_non_null(m);
    assert_int_equal(sp__msg_set(m, "kv_target", target, strlen(target)), 0);
    assert_int_equal(sp__msg_set(m, "kv_op", op, strlen(op)), 0);
    if (key != NULL) {
        assert_int_equal(sp__msg_set(m, "kv_key", key, klen), 0);
    }
    if (val != NULL) {
        assert_int_equal(sp__msg_set(m, "kv_val", val, strlen(val)), 0);
    }
    if (limit > 0) {
        assert_int_equal(sp__msg_set_int(m, "kv_limit", limit), 0);
    }
    h_run(h, m, SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    snprintf(out, outlen, "%s", r.res.text);
    return r.res.verdict;
}

#define KS(s) (s), strlen(s)

static void test_put_get_scan_del(void **state)
{
    h_env_t *h = *state;
    char out[600];
    char want[64];

    assert_int_equal(kv(h, "kv_one", "put", KS("b"), "2", 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "status 0");
    assert_int_equal(kv(h, "kv_one", "put", KS("a"), "1", 0, out, sizeof(out)), SP_CONTINUE);
    assert_int_equal(kv(h, "kv_one", "put", KS("ab"), "3", 0, out, sizeof(out)), SP_CONTINUE);
    assert_int_equal(kv(h, "kv_one", "put", KS("e"), "", 0, out, sizeof(out)), SP_CONTINUE);

    assert_int_equal(kv(h, "kv_one", "get", KS("a"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "1");
    assert_int_equal(kv(h, "kv_one", "get", KS("e"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "");
    /* overwrite */
    assert_int_equal(kv(h, "kv_one", "put", KS("a"), "11", 0, out, sizeof(out)), SP_CONTINUE);
    assert_int_equal(kv(h, "kv_one", "get", KS("a"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "11");

    /* scans: byte order, namespace stripped, prefix bound, visitor stop */
    assert_int_equal(kv(h, "kv_one", "scan", NULL, 0, NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "0:a=11,ab=3,b=2,e=");
    assert_int_equal(kv(h, "kv_one", "scan", KS("a"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "0:a=11,ab=3");
    assert_int_equal(kv(h, "kv_one", "scan", NULL, 0, NULL, 2, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "0:a=11,ab=3");
    assert_int_equal(kv(h, "kv_one", "scan", KS("zz"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "0:");

    /* delete, then it is gone, and a second delete reports not found */
    assert_int_equal(kv(h, "kv_one", "del", KS("a"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "status 0");
    assert_int_equal(kv(h, "kv_one", "get", KS("a"), NULL, 0, out, sizeof(out)), SP_REJECT);
    snprintf(want, sizeof(want), "get %d", SP_ENOTFOUND);
    assert_string_equal(out, want);
    assert_int_equal(kv(h, "kv_one", "del", KS("a"), NULL, 0, out, sizeof(out)), SP_REJECT);
    snprintf(want, sizeof(want), "status %d", SP_ENOTFOUND);
    assert_string_equal(out, want);
    assert_int_equal(kv(h, "kv_one", "scan", NULL, 0, NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "0:ab=3,b=2,e=");
}

static void test_namespaces(void **state)
{
    h_env_t *h = *state;
    char out[600];
    char want[64];
    /* keys with a NUL byte inside cannot escape the namespace either */
    static const char nul_key[] = {'k', '\0', 'x'};

    assert_int_equal(kv(h, "kv_one", "put", KS("k"), "one", 0, out, sizeof(out)), SP_CONTINUE);
    assert_int_equal(kv(h, "kv_one", "put", nul_key, sizeof(nul_key), "nul", 0, out,
                        sizeof(out)),
                     SP_CONTINUE);
    snprintf(want, sizeof(want), "get %d", SP_ENOTFOUND);
    assert_int_equal(kv(h, "kv_two", "get", KS("k"), NULL, 0, out, sizeof(out)), SP_REJECT);
    assert_string_equal(out, want);
    assert_int_equal(kv(h, "kv_two", "scan", NULL, 0, NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "0:");
    assert_int_equal(kv(h, "kv_two", "put", KS("k"), "two", 0, out, sizeof(out)), SP_CONTINUE);
    assert_int_equal(kv(h, "kv_one", "get", KS("k"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "one");
    assert_int_equal(kv(h, "kv_two", "get", KS("k"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "two");
    assert_int_equal(kv(h, "kv_one", "get", nul_key, sizeof(nul_key), NULL, 0, out,
                        sizeof(out)),
                     SP_CONTINUE);
    assert_string_equal(out, "nul");
    assert_int_equal(kv(h, "kv_two", "del", KS("k"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_int_equal(kv(h, "kv_one", "get", KS("k"), NULL, 0, out, sizeof(out)), SP_CONTINUE);
    assert_string_equal(out, "one");
}

static void test_limits(void **state)
{
    h_env_t *h = *state;
    const sp_host_api_t *api = sp__host_api();
    sp_plugin_t *p = h_plugin(h, "kv_one");
    char big[600], out[600], want[64];
    void *v = NULL;
    size_t vl = 0;
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    /* a key too long for LMDB is refused at once; done never runs */
    assert_int_equal(kv(h, "kv_one", "put", KS(big), "x", 0, out, sizeof(out)), SP_REJECT);
    snprintf(want, sizeof(want), "submit %d", SP_ETOOBIG);
    assert_string_equal(out, want);
    assert_int_equal(api->kv_get(p, big, strlen(big), &v, &vl), SP_ETOOBIG);
    assert_int_equal(api->kv_get(p, NULL, 3, &v, &vl), SP_EINVAL);
    assert_int_equal(api->kv_get(p, "a", 1, NULL, &vl), SP_EINVAL);
    assert_int_equal(api->kv_scan(p, "a", 1, NULL, NULL), SP_EINVAL);
    assert_int_equal(api->kv_put(p, "a", 1, NULL, 4, NULL, NULL), SP_EINVAL);
    assert_int_equal(api->kv_del(NULL, "a", 1, NULL, NULL), SP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_scan_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
