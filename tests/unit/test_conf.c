/* SPDX-License-Identifier: Apache-2.0 */
/* Tests of the YAML tree, ${VAR} substitution, value parsers, schemas and the
 * core configuration (sp__config_*). */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sp_core/conf.h"

#ifndef SP_TEST_SOURCE_DIR
#error "SP_TEST_SOURCE_DIR must be defined by the build"
#endif

static char g_err[1024];

static sp_node_t *parse_ok(const char *yaml)
{
    sp_node_t *root = NULL;
    int rc = sp__conf_parse(yaml, strlen(yaml), "t.yaml", &root, g_err, sizeof(g_err));

    if (rc != 0) {
        fail_msg("parse failed (%d): %s", rc, g_err);
    }
    assert_non_null(root);
    return root;
}

/* Parse must fail with SP_ECONFIG and an error containing `want`. */
static void parse_err(const char *yaml, const char *want)
{
    sp_node_t *root = (sp_node_t *)0x1;
    int rc = sp__conf_parse(yaml, strlen(yaml), "t.yaml", &root, g_err, sizeof(g_err));

    if (rc != SP_ECONFIG) {
        fail_msg("expected SP_ECONFIG for <<%s>>, got %d", yaml, rc);
    }
    assert_null(root);
    if (strstr(g_err, want) == NULL) {
        fail_msg("error <<%s>> does not contain <<%s>>", g_err, want);
    }
}

/* Every environment variable the tests touch, restored to unset. */
static const char *const g_env_vars[] = {
    "USESEND_DOMAIN",    "NEXTAUTH_SECRET",       "AWS_ACCESS_KEY",       "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_KEY",    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",    "AWS_DEFAULT_REGION",
    "GITHUB_ID",         "GITHUB_SECRET",         "GOOGLE_CLIENT_ID",     "GOOGLE_CLIENT_SECRET",
    "API_RATE_LIMIT",    "AUTH_EMAIL_RATE_LIMIT", "DISCORD_WEBHOOK_URL",  "SP_PLUGIN_DIR",
    "SENDPIPE_DATA_DIR", "SENDPIPE_LOG_LEVEL",    "SENDPIPE_LOG_FILE",    "SP_T_A",
    "SP_T_EMPTY",        "SP_T_UNSET",            NULL,
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; g_env_vars[i] != NULL; i++) {
        unsetenv(g_env_vars[i]);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tree */

static void test_tree_positions(void **state)
{
    const char *yaml = "# comment\n"
                       "name: demo\n"
                       "server:\n"
                       "  port: 8080\n"
                       "  host: \"::1\"\n"
                       "list:\n"
                       "  - a\n"
                       "  - {k: v}\n"
                       "empty:\n";
    sp_node_t *root = parse_ok(yaml);
    sp_node_t *n;
    sp_node_t *srv;
    sp_node_t *list;

    (void)state;
    assert_int_equal(root->type, SP_NODE_MAP);
    assert_int_equal(root->n, 4);
    assert_string_equal(root->file, "t.yaml");
    n = sp__conf_get(root, "name");
    assert_non_null(n);
    assert_int_equal(n->type, SP_NODE_SCALAR);
    assert_string_equal(n->value, "demo");
    assert_false(n->quoted);
    assert_int_equal(n->key_line, 2);
    assert_int_equal(n->key_col, 1);
    assert_int_equal(n->line, 2);
    assert_int_equal(n->col, 7);
    assert_ptr_equal(n->file, root->file);

    srv = sp__conf_get(root, "server");
    assert_int_equal(srv->type, SP_NODE_MAP);
    assert_int_equal(srv->n, 2);
    assert_int_equal(srv->line, 4); /* a block map starts at its first key */
    n = sp__conf_get(srv, "port");
    assert_string_equal(n->value, "8080");
    assert_int_equal(n->key_line, 4);
    assert_int_equal(n->key_col, 3);
    assert_int_equal(n->line, 4);
    assert_int_equal(n->col, 9);
    n = sp__conf_get(srv, "host");
    assert_string_equal(n->value, "::1");
    assert_true(n->quoted);
    assert_int_equal(n->col, 9);

    list = sp__conf_get(root, "list");
    assert_int_equal(list->type, SP_NODE_SEQ);
    assert_int_equal(list->n, 2);
    assert_null(list->child->key);
    assert_string_equal(list->child->value, "a");
    assert_int_equal(list->child->line, 7);
    assert_int_equal(list->child->col, 5);
    n = list->child->next;
    assert_int_equal(n->type, SP_NODE_MAP);
    assert_int_equal(n->line, 8);
    assert_int_equal(n->col, 5);
    assert_string_equal(sp__conf_get(n, "k")->value, "v");
    assert_int_equal(sp__conf_get(n, "k")->col, 9);
    assert_null(n->next);

    n = sp__conf_get(root, "empty");
    assert_true(sp__conf_is_null(n));
    assert_null(sp__conf_get(root, "nope"));
    assert_null(sp__conf_get(n, "x"));
    assert_null(sp__conf_get(NULL, "x"));
    sp__conf_free(root);
    sp__conf_free(NULL);
}

static void test_tree_null_and_empty(void **state)
{
    sp_node_t *root;

    (void)state;
    root = parse_ok("");
    assert_int_equal(root->type, SP_NODE_MAP);
    assert_int_equal(root->n, 0);
    sp__conf_free(root);
    root = parse_ok("# only a comment\n");
    assert_int_equal(root->type, SP_NODE_MAP);
    sp__conf_free(root);

    root = parse_ok("a: ~\nb: null\nc: ''\nd: \"null\"\ne: |\n  text\n");
    assert_true(sp__conf_is_null(sp__conf_get(root, "a")));
    assert_true(sp__conf_is_null(sp__conf_get(root, "b")));
    assert_false(sp__conf_is_null(sp__conf_get(root, "c")));
    assert_false(sp__conf_is_null(sp__conf_get(root, "d")));
    assert_string_equal(sp__conf_get(root, "e")->value, "text\n");
    assert_true(sp__conf_is_null(NULL));
    assert_false(sp__conf_is_null(root));
    sp__conf_free(root);
}

static void test_env_subst(void **state)
{
    sp_node_t *root;

    (void)state;
    setenv("SP_T_A", "hello", 1);
    setenv("SP_T_EMPTY", "", 1);
    root = parse_ok("a: ${SP_T_A}\n"
                    "b: x-${SP_T_A}-${SP_T_A}-y\n"
                    "c: ${SP_T_UNSET:-def ault}\n"
                    "d: ${SP_T_EMPTY:-used}\n"
                    "e: '${SP_T_EMPTY}'\n"
                    "f: $${SP_T_A} and $${\n"
                    "g: cost $5 and $$ and $\n"
                    "h: ${SP_T_UNSET:-${SP_T_A}}\n"
                    "i: ${SP_T_A:-${SP_T_UNSET}}\n"
                    "j: \"${SP_T_A}\"\n"
                    "k: ${SP_T_UNSET:-}\n"
                    "l: ${SP_T_UNSET:-a:-b}\n");
    assert_string_equal(sp__conf_get(root, "a")->value, "hello");
    assert_string_equal(sp__conf_get(root, "b")->value, "x-hello-hello-y");
    assert_string_equal(sp__conf_get(root, "c")->value, "def ault");
    assert_string_equal(sp__conf_get(root, "d")->value, "used");
    assert_string_equal(sp__conf_get(root, "e")->value, "");
    assert_false(sp__conf_is_null(sp__conf_get(root, "e")));
    assert_string_equal(sp__conf_get(root, "f")->value, "${SP_T_A} and ${");
    assert_string_equal(sp__conf_get(root, "g")->value, "cost $5 and $$ and $");
    assert_string_equal(sp__conf_get(root, "h")->value, "hello");
    assert_string_equal(sp__conf_get(root, "i")->value, "hello");
    assert_string_equal(sp__conf_get(root, "j")->value, "hello");
    assert_true(sp__conf_is_null(sp__conf_get(root, "k")));
    assert_string_equal(sp__conf_get(root, "l")->value, "a:-b");
    sp__conf_free(root);

    /* Keys are not substituted. */
    root = parse_ok("${SP_T_A}: 1\n");
    assert_non_null(sp__conf_get(root, "${SP_T_A}"));
    sp__conf_free(root);
}

static void test_env_subst_errors(void **state)
{
    (void)state;
    parse_err("x: 1\ny: ${SP_T_UNSET}\n", "t.yaml:2:4: undefined environment variable 'SP_T_UNSET'");
    parse_err("x: pre ${SP_T_UNSET} post\n", "SP_T_UNSET");
    parse_err("x: [a, '${SP_T_UNSET}']\n", "t.yaml:1:8: undefined environment variable");
    parse_err("x: ${SP_T_A\n", "t.yaml:1:4: unterminated ${SP_T_A");
    parse_err("x: ${SP_T_A:-abc\n", "unterminated ${SP_T_A:-...}");
    parse_err("x: ${1A}\n", "invalid variable name");
    parse_err("x: ${}\n", "invalid variable name");
    parse_err("x: ${SP_T_A?err}\n", "unsupported ${SP_T_A...} form");
    parse_err("x: ${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-x}}}}}}}}}\n", "nested more than");
    /* An unused default is still checked for syntax. */
    setenv("SP_T_A", "v", 1);
    parse_err("x: ${SP_T_A:-${}\n", "invalid variable name");
}

static void test_refused_constructs(void **state)
{
    (void)state;
    parse_err("a: &x 1\nb: 2\n", "t.yaml:1:4: anchors (&name) are not allowed");
    parse_err("a: [1]\nb: *x\n", "t.yaml:2:4: aliases (*name) are not allowed");
    parse_err("base: &b {k: 1}\nother: *b\n", "anchors");
    parse_err("a: !!str 1\n", "t.yaml:1:4: tags (!tag) are not allowed");
    parse_err("a: !custom {x: 1}\n", "tags");
    parse_err("a: 1\n---\nb: 2\n", "t.yaml:2:1: multiple YAML documents");
    parse_err("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key \"a\" (first at line 1, column 1)");
    parse_err("m:\n  x: 1\n  y: 2\n  x: 3\n  y: 4\n", "t.yaml:4:3: duplicate key \"x\"");
    parse_err("{a: 1, a: 2}\n", "t.yaml:1:8: duplicate key");
    parse_err("? [a, b]\n: 1\n", "t.yaml:1:3: map keys must be plain scalars");
    parse_err("{{a: 1}: 2}\n", "map keys must be plain scalars");
    parse_err("a: \"x\\0y\"\n", "t.yaml:1:4: NUL character");
    parse_err("a: [1, 2\n", "t.yaml:");
    parse_err("a: [1, 2\n", "YAML syntax error");
    parse_err("a: b: c\n", "t.yaml:1:5: YAML syntax error");
    parse_err("a: \xff\n", "t.yaml:");
    /* "---" alone is one document: fine. */
    sp__conf_free(parse_ok("---\na: 1\n"));
    sp__conf_free(parse_ok("---\na: 1\n...\n"));
}

static void test_limits(void **state)
{
    char *buf;
    size_t n;
    sp_node_t *root = NULL;

    (void)state;
    /* 32 levels of nesting are fine, 33 are not. */
    buf = malloc(256);
    assert_non_null(buf);
    n = 0;
    for (int i = 0; i < 32; i++) {
        buf[n++] = '[';
    }
    buf[n++] = '1';
    for (int i = 0; i < 32; i++) {
        buf[n++] = ']';
    }
    buf[n] = '\0';
    sp__conf_free(parse_ok(buf));
    memmove(buf + 1, buf, n + 1);
    buf[0] = '[';
    strcat(buf, "]");
    parse_err(buf, "nesting deeper than 32 levels");
    free(buf);

    /* Size: one byte over 1 MiB is refused before parsing. */
    n = ((size_t)1 << 20) + 1;
    buf = malloc(n + 1);
    assert_non_null(buf);
    memset(buf, '#', n);
    buf[n] = '\0';
    assert_int_equal(sp__conf_parse(buf, n, "big.yaml", &root, g_err, sizeof(g_err)),
                     SP_ECONFIG);
    assert_null(root);
    assert_non_null(strstr(g_err, "big.yaml: configuration larger than"));
    /* Exactly 1 MiB of comment is accepted. */
    assert_int_equal(sp__conf_parse(buf, n - 1, "big.yaml", &root, g_err, sizeof(g_err)), 0);
    sp__conf_free(root);
    free(buf);

    /* Node count: a flow list of 100001 items. */
    n = 100001;
    buf = malloc(n * 2 + 4);
    assert_non_null(buf);
    buf[0] = '[';
    for (size_t i = 0; i < n; i++) {
        buf[1 + 2 * i] = '1';
        buf[2 + 2 * i] = ',';
    }
    buf[2 * n] = ']';
    buf[2 * n + 1] = '\0';
    parse_err(buf, "too many nodes");
    free(buf);
}

static void test_dup_keys_large_map(void **state)
{
    /* Many keys: the duplicate check must still find the one repeat. */
    size_t cap = 20000 * 16;
    char *buf = malloc(cap);
    size_t o = 0;
    sp_node_t *root;

    (void)state;
    assert_non_null(buf);
    for (int i = 0; i < 20000; i++) {
        o += (size_t)snprintf(buf + o, cap - o, "k%d: %d\n", i, i);
    }
    root = parse_ok(buf);
    assert_int_equal(root->n, 20000);
    assert_string_equal(sp__conf_get(root, "k19999")->value, "19999");
    sp__conf_free(root);
    snprintf(buf + o, cap - o, "k777: again\n");
    parse_err(buf, "t.yaml:20001:1: duplicate key \"k777\" (first at line 778, column 1)");
    free(buf);
}

static void test_load_file(void **state)
{
    char dir[] = "/tmp/sp_test_conf.XXXXXX";
    char path[128];
    sp_node_t *root = NULL;
    FILE *fp;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/c.yaml", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("a:\n  b: 1\n", fp);
    fclose(fp);
    assert_int_equal(sp__conf_load(path, &root, g_err, sizeof(g_err)), 0);
    assert_string_equal(root->file, path);
    assert_string_equal(sp__conf_get(sp__conf_get(root, "a"), "b")->value, "1");
    sp__conf_free(root);

    unlink(path);
    assert_int_equal(sp__conf_load(path, &root, g_err, sizeof(g_err)), -ENOENT);
    assert_null(root);
    assert_non_null(strstr(g_err, "c.yaml: cannot open"));
    assert_int_equal(sp__conf_load(dir, &root, g_err, sizeof(g_err)), -EINVAL);
    assert_non_null(strstr(g_err, "not a regular file"));
    rmdir(dir);
}

/* ------------------------------------------------------------------------ */
/* Value parsers */

static void test_parse_bool(void **state)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "ON"};
    static const char *const no[] = {"false", "FALSE", "no", "No", "off", "Off"};
    static const char *const bad[] = {"", "1", "0", "y", "n", "tru", "yess", " true", "true ",
                                      "enable"};
    bool b;

    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        b = false;
        assert_int_equal(sp__conf_parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        b = true;
        assert_int_equal(sp__conf_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sp__conf_parse_bool(bad[i], &b), SP_EINVAL);
    }
    assert_int_equal(sp__conf_parse_bool(NULL, &b), SP_EINVAL);
}

static void test_parse_int(void **state)
{
    static const struct {
        const char *s;
        int64_t v;
    } good[] = {
        {"0", 0},
        {"-0", 0},
        {"+5", 5},
        {"42", 42},
        {"007", 7},
        {"-17", -17},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
        {"-9223372036854775807", -INT64_MAX},
    };
    static const char *const bad[] = {
        "", "-", "+", "12a", " 1", "1 ", "0x10", "1.5", "1e3", "--1", "1_000",
        "9223372036854775808", "-9223372036854775809", "99999999999999999999999",
        "18446744073709551616",
    };
    int64_t v;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        v = 99;
        assert_int_equal(sp__conf_parse_int(good[i].s, &v), 0);
        assert_true(v == good[i].v);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 99;
        if (sp__conf_parse_int(bad[i], &v) != SP_EINVAL) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
        assert_true(v == 99);
    }
    assert_int_equal(sp__conf_parse_int(NULL, &v), SP_EINVAL);
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"512b", 512},
        {"64K", 65536},
        {"64k", 65536},
        {"64KB", 65536},
        {"64KiB", 65536},
        {"64 KiB", 65536},
        {"10M", 10485760},
        {"10mb", 10485760},
        {"1G", 1073741824},
        {"1GiB", 1073741824},
        {"1T", 1099511627776ull},
        {"2TB", 2199023255552ull},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183G", 17179869183ull << 30},
        {"16777215T", 16777215ull << 40},
    };
    static const char *const bad[] = {
        "", "K", "-1", "+1", "1.5G", "10X", "10KK", "10 K B", " 10", "10K ", "1P",
        "18446744073709551616", "17179869184G", "16777216T", "99999999999999999999K",
    };
    uint64_t v;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        v = 99;
        if (sp__conf_parse_size(good[i].s, &v) != 0 || v != good[i].v) {
            fail_msg("\"%s\" gave %llu", good[i].s, (unsigned long long)v);
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 99;
        if (sp__conf_parse_size(bad[i], &v) != SP_EINVAL) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
        assert_true(v == 99);
    }
    assert_int_equal(sp__conf_parse_size(NULL, &v), SP_EINVAL);
}

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"0", 0},
        {"0ms", 0},
        {"250ms", 250},
        {"30s", 30000},
        {"45", 45000},
        {"5m", 300000},
        {"2h", 7200000},
        {"1d", 86400000},
        {"10 s", 10000},
        {"1H", 3600000},
        {"18446744073709551615ms", UINT64_MAX},
        {"18446744073709551s", 18446744073709551000ull},
        {"213503982334d", 213503982334ull * 86400000ull},
    };
    static const char *const bad[] = {
        "", "ms", "s", "5x", "-5s", "1.5s", "5 m s", "5sec", "5mins", "1w", " 5s", "5s ",
        "18446744073709552s", "18446744073709551615", "213503982335d", "5124095576030432h",
    };
    uint64_t v;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        v = 99;
        if (sp__conf_parse_duration(good[i].s, &v) != 0 || v != good[i].ms) {
            fail_msg("\"%s\" gave %llu", good[i].s, (unsigned long long)v);
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 99;
        if (sp__conf_parse_duration(bad[i], &v) != SP_EINVAL) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
        assert_true(v == 99);
    }
    assert_int_equal(sp__conf_parse_duration(NULL, &v), SP_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Schemas */

typedef struct demo_conf {
    char *host;
    int64_t port;
    bool tls;
    uint64_t max_size;
    uint64_t timeout_ms;
    char *password;
    char *motd;
} demo_conf_t;

static const sp_conf_item_t g_demo_schema[] = {
    {SP_CONF_STR, "host", offsetof(demo_conf_t, host), NULL, SP_CONF_REQUIRED, "Host."},
    {SP_CONF_INT, "port", offsetof(demo_conf_t, port), "25", 0, "Port."},
    {SP_CONF_BOOL, "tls", offsetof(demo_conf_t, tls), "yes", 0, "TLS."},
    {SP_CONF_SIZE, "max_size", offsetof(demo_conf_t, max_size), "10M", 0, "Limit."},
    {SP_CONF_DURATION, "timeout", offsetof(demo_conf_t, timeout_ms), "30s", 0, "Timeout."},
    {SP_CONF_STR, "password", offsetof(demo_conf_t, password), NULL, SP_CONF_SECRET, "Pw."},
    {SP_CONF_STR, "motd", offsetof(demo_conf_t, motd), "hi", 0, "Banner."},
    {0},
};

static const char g_plugins_yaml[] = "plugins:\n"                 /* 1 */
                                     "  - name: first\n"          /* 2 */
                                     "  - name: demo\n"           /* 3 */
                                     "    config:\n"              /* 4 */
                                     "      host: mx.example\n"   /* 5 */
                                     "      port: %s\n"           /* 6 */
                                     "%s";                        /* 7.. */

/* Apply the demo schema to plugins[1].config of g_plugins_yaml. */
static int demo_apply(const char *port, const char *extra, demo_conf_t *dc)
{
    char yaml[1024];
    sp_node_t *root;
    const sp_node_t *cfg;
    int rc;

    snprintf(yaml, sizeof(yaml), g_plugins_yaml, port, extra);
    root = parse_ok(yaml);
    cfg = sp__conf_get(sp__conf_get(root, "plugins")->child->next, "config");
    assert_non_null(cfg);
    memset(dc, 0, sizeof(*dc));
    rc = sp__conf_apply_schema(cfg, "conf/sendpipe.yaml", "plugins[1].config", g_demo_schema,
                               dc, g_err, sizeof(g_err));
    sp__conf_free(root);
    return rc;
}

static void test_schema_fill(void **state)
{
    demo_conf_t dc;

    (void)state;
    assert_int_equal(demo_apply("2525", "      tls: off\n      max_size: 64KiB\n"
                                        "      timeout: 250ms\n      password: 's3cret'\n"
                                        "      motd: ''\n",
                                &dc),
                     0);
    assert_string_equal(dc.host, "mx.example");
    assert_true(dc.port == 2525);
    assert_false(dc.tls);
    assert_true(dc.max_size == 65536);
    assert_true(dc.timeout_ms == 250);
    assert_string_equal(dc.password, "s3cret");
    assert_string_equal(dc.motd, "");
    sp__conf_schema_free(g_demo_schema, &dc);
    assert_null(dc.host);
    assert_null(dc.password);

    /* Defaults, and "key:" with no value counts as absent. */
    assert_int_equal(demo_apply("", "      password:\n", &dc), 0);
    assert_true(dc.port == 25);
    assert_true(dc.tls);
    assert_true(dc.max_size == 10485760);
    assert_true(dc.timeout_ms == 30000);
    assert_null(dc.password);
    assert_string_equal(dc.motd, "hi");
    sp__conf_schema_free(g_demo_schema, &dc);
}

static void test_schema_errors(void **state)
{
    demo_conf_t dc;

    (void)state;
    assert_int_equal(demo_apply("abc", "", &dc), SP_ECONFIG);
    assert_string_equal(g_err, "conf/sendpipe.yaml:6:13: key 'plugins[1].config.port': "
                               "expected an integer, got \"abc\"");
    /* Nothing is left allocated on failure. */
    assert_null(dc.host);

    assert_int_equal(demo_apply("99999999999999999999", "", &dc), SP_ECONFIG);
    assert_non_null(strstr(g_err, "6:13: key 'plugins[1].config.port': expected an integer, "
                                  "got \"99999999999999999999\" (out of range)"));

    assert_int_equal(demo_apply("[1, 2]", "", &dc), SP_ECONFIG);
    assert_non_null(strstr(g_err, "6:13: key 'plugins[1].config.port': expected an integer, "
                                  "got a list"));

    assert_int_equal(demo_apply("1", "      tls: maybe\n", &dc), SP_ECONFIG);
    assert_non_null(strstr(g_err, ":7:12: key 'plugins[1].config.tls': expected a boolean"));

    assert_int_equal(demo_apply("1", "      max_size: 1Q\n", &dc), SP_ECONFIG);
    assert_non_null(strstr(g_err, ":7:17: key 'plugins[1].config.max_size': expected a size"));

    assert_int_equal(demo_apply("1", "      timeout: soon\n", &dc), SP_ECONFIG);
    assert_non_null(strstr(g_err, ":7:16: key 'plugins[1].config.timeout': expected a duration"
                                  " (e.g. 250ms, 30s, 5m, 2h, 1d), got \"soon\""));

    assert_int_equal(demo_apply("1", "      colour: blue\n", &dc), SP_ECONFIG);
    assert_non_null(strstr(g_err, "conf/sendpipe.yaml:7:7: key 'plugins[1].config.colour': "
                                  "unknown key (known keys: host, port, tls, max_size, timeout,"));

    assert_int_equal(demo_apply("1", "      motd: {a: 1}\n", &dc), SP_ECONFIG);
    assert_non_null(strstr(g_err, "expected a string, got a map"));
    assert_null(dc.host);
}

static void test_schema_required_and_shapes(void **state)
{
    sp_node_t *root;
    demo_conf_t dc = {0};
    const sp_node_t *p1;

    (void)state;
    root = parse_ok("plugins:\n"
                    "  - name: demo\n"
                    "    config:\n"
                    "      port: 1\n"
                    "  - name: bare\n"
                    "  - name: list\n"
                    "    config: [1]\n");
    p1 = sp__conf_get(root, "plugins")->child;

    /* Required key missing: the error points at the map. */
    assert_int_equal(sp__conf_apply_schema(sp__conf_get(p1, "config"), "c.yaml",
                                           "plugins[0].config", g_demo_schema, &dc, g_err,
                                           sizeof(g_err)),
                     SP_ECONFIG);
    assert_string_equal(g_err, "c.yaml:4:7: key 'plugins[0].config.host': missing required key");

    /* No config block at all: the caller's position (the plugin entry). */
    assert_int_equal(sp__conf_apply_schema_ex(NULL, "c.yaml", p1->next->line, p1->next->col,
                                              "plugins[1].config", g_demo_schema, NULL, &dc,
                                              g_err, sizeof(g_err)),
                     SP_ECONFIG);
    assert_string_equal(g_err, "c.yaml:5:5: key 'plugins[1].config.host': missing required key");
    assert_int_equal(sp__conf_apply_schema(NULL, "c.yaml", "plugins[1].config", g_demo_schema,
                                           &dc, g_err, sizeof(g_err)),
                     SP_ECONFIG);
    assert_string_equal(g_err, "c.yaml: key 'plugins[1].config.host': missing required key");

    /* A config that is not a map. */
    assert_int_equal(sp__conf_apply_schema(sp__conf_get(p1->next->next, "config"), NULL,
                                           "plugins[2].config", g_demo_schema, &dc, g_err,
                                           sizeof(g_err)),
                     SP_ECONFIG);
    assert_string_equal(g_err, "t.yaml:7:13: key 'plugins[2].config': expected a map, got a list");

    /* A schema without required keys accepts a missing map. */
    assert_int_equal(sp__conf_apply_schema(NULL, "c.yaml", "x", g_demo_schema + 1, &dc, g_err,
                                           sizeof(g_err)),
                     0);
    assert_true(dc.port == 25);
    sp__conf_schema_free(g_demo_schema, &dc);
    sp__conf_free(root);
}

static void test_schema_secret_and_bad_default(void **state)
{
    typedef struct {
        uint64_t n;
        char *s;
    } sc_t;
    static const sp_conf_item_t secret_schema[] = {
        {SP_CONF_SIZE, "n", offsetof(sc_t, n), NULL, SP_CONF_SECRET, "n"},
        {SP_CONF_STR, "s", offsetof(sc_t, s), "x", 0, "s"},
        {0},
    };
    static const sp_conf_item_t bad_default[] = {
        {SP_CONF_STR, "s", offsetof(sc_t, s), "x", 0, "s"},
        {SP_CONF_SIZE, "n", offsetof(sc_t, n), "lots", 0, "n"},
        {0},
    };
    static const sp_conf_item_t empty_schema[] = {{0}};
    sp_node_t *root = parse_ok("n: hunter2\n");
    sc_t sc = {0};

    (void)state;
    assert_int_equal(sp__conf_apply_schema(root, NULL, "", secret_schema, &sc, g_err,
                                           sizeof(g_err)),
                     SP_ECONFIG);
    assert_null(strstr(g_err, "hunter2"));
    assert_non_null(strstr(g_err, "t.yaml:1:4: key 'n': expected a size"));
    assert_non_null(strstr(g_err, "secret"));

    assert_int_equal(sp__conf_apply_schema(NULL, "d.yaml", "p", bad_default, &sc, g_err,
                                           sizeof(g_err)),
                     SP_ECONFIG);
    assert_non_null(strstr(g_err, "key 'p.n': the schema's default \"lots\" is not a size"));
    assert_null(sc.s); /* the default already stored was released */

    assert_int_equal(sp__conf_apply_schema(root, NULL, "p", empty_schema, &sc, g_err,
                                           sizeof(g_err)),
                     SP_ECONFIG);
    assert_non_null(strstr(g_err, "key 'p.n': unknown key (this map takes no keys)"));
    assert_int_equal(sp__conf_apply_schema(root, NULL, "p", NULL, &sc, g_err, sizeof(g_err)),
                     SP_ECONFIG);
    sp__conf_free(root);
}

/* ------------------------------------------------------------------------ */
/* Core configuration */

typedef struct cfx {
    char dir[64];
    char real[PATH_MAX];
} cfx_t;

static int cfg_setup(void **state)
{
    cfx_t *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return -1;
    }
    clear_env(NULL);
    snprintf(f->dir, sizeof(f->dir), "/tmp/sp_test_conf.XXXXXX");
    if (mkdtemp(f->dir) == NULL || realpath(f->dir, f->real) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int cfg_teardown(void **state)
{
    cfx_t *f = *state;
    char p[256];

    snprintf(p, sizeof(p), "%s/conf/sendpipe.yaml", f->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/conf", f->dir);
    rmdir(p);
    snprintf(p, sizeof(p), "%s/existing", f->dir);
    rmdir(p);
    rmdir(f->dir);
    free(f);
    clear_env(NULL);
    return 0;
}

static sp_config_t *cfg_ok(const cfx_t *f, const char *yaml)
{
    sp_config_t *cfg = NULL;
    int rc = sp__config_parse(yaml, strlen(yaml), "sendpipe.yaml", f->dir, &cfg, g_err,
                              sizeof(g_err));

    if (rc != 0) {
        fail_msg("config failed (%d): %s", rc, g_err);
    }
    assert_non_null(cfg);
    return cfg;
}

static void cfg_err(const cfx_t *f, const char *yaml, const char *want)
{
    sp_config_t *cfg = (sp_config_t *)0x1;
    int rc = sp__config_parse(yaml, strlen(yaml), "sendpipe.yaml", f->dir, &cfg, g_err,
                              sizeof(g_err));

    if (rc != SP_ECONFIG) {
        fail_msg("expected SP_ECONFIG for <<%s>>, got %d", yaml, rc);
    }
    assert_null(cfg);
    if (strstr(g_err, want) == NULL) {
        fail_msg("error <<%s>> does not contain <<%s>>", g_err, want);
    }
}

static void test_config_full(void **state)
{
    cfx_t *f = *state;
    const char *yaml = "data_dir: ./spool\n"
                       "plugin_dir: ../plugins\n"
                       "log: { level: debug, file: logs/sp.log }\n"
                       "store: { map_size: 64M, sync: false, max_batch: 10 }\n"
                       "scheduler:\n"
                       "  concurrency: 8\n"
                       "  retry_base: 5s\n"
                       "  retry_max: 10m\n"
                       "  max_age: 2d\n"
                       "shutdown_grace: 250ms\n"
                       "settings:\n"
                       "  public_url: https://mail.example.com\n"
                       "  secret: abc\n"
                       "  api_rate_limit: 7\n"
                       "plugins:\n"
                       "  - name: egress_outbox\n"
                       "  - name: http_api\n"
                       "    path: lib/http.so\n"
                       "    priority: -100\n"
                       "    timeout: 5s\n"
                       "    config:\n"
                       "      port: 3000\n"
                       "  - name: z9_\n"
                       "    priority: 100\n"
                       "    config:\n";
    sp_config_t *cfg = cfg_ok(f, yaml);
    char want[PATH_MAX + 64];
    size_t n;
    const sp_setting_def_t *tab = sp__config_settings_table(&n);

    (void)state;
    snprintf(want, sizeof(want), "%s/sendpipe.yaml", f->real);
    assert_string_equal(cfg->file, want);
    snprintf(want, sizeof(want), "%s/spool", f->real);
    assert_string_equal(cfg->data_dir, want);
    assert_non_null(strrchr(f->real, '/'));
    snprintf(want, sizeof(want), "%.*s/plugins", (int)(strrchr(f->real, '/') - f->real),
             f->real);
    assert_string_equal(cfg->plugin_dir, want);
    snprintf(want, sizeof(want), "%s/logs/sp.log", f->real);
    assert_string_equal(cfg->log_file, want);
    assert_int_equal(cfg->log_level, SP_LOG_DEBUG);
    assert_true(cfg->map_size == 64ull << 20);
    assert_false(cfg->sync);
    assert_int_equal(cfg->max_batch, 10);
    assert_int_equal(cfg->concurrency, 8);
    assert_true(cfg->retry_base_ms == 5000);
    assert_true(cfg->retry_max_ms == 600000);
    assert_true(cfg->max_age_ms == 2 * 86400000ull);
    assert_true(cfg->shutdown_grace_ms == 250);

    assert_int_equal(cfg->nsettings, n);
    assert_string_equal(sp__config_setting(cfg, "public_url"), "https://mail.example.com");
    assert_string_equal(sp__config_setting(cfg, "secret"), "abc");
    assert_string_equal(sp__config_setting(cfg, "api_rate_limit"), "7");
    assert_null(sp__config_setting(cfg, "aws_region"));
    assert_null(sp__config_setting(cfg, "no_such_setting"));
    assert_null(sp__config_setting(NULL, "secret"));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(cfg->settings[i].key, tab[i].key);
        assert_string_equal(cfg->settings[i].env, tab[i].env);
        assert_int_equal(cfg->settings[i].secret, tab[i].secret);
    }

    assert_int_equal(cfg->nplugins, 3);
    assert_string_equal(cfg->plugins[0].name, "egress_outbox");
    assert_null(cfg->plugins[0].path);
    assert_int_equal(cfg->plugins[0].priority, 0);
    assert_true(cfg->plugins[0].timeout_ms == 30000);
    assert_null(cfg->plugins[0].config);
    assert_int_equal(cfg->plugins[0].line, 16);
    assert_int_equal(cfg->plugins[0].col, 5);
    assert_string_equal(cfg->plugins[1].name, "http_api");
    snprintf(want, sizeof(want), "%s/lib/http.so", f->real);
    assert_string_equal(cfg->plugins[1].path, want);
    assert_int_equal(cfg->plugins[1].priority, -100);
    assert_true(cfg->plugins[1].timeout_ms == 5000);
    assert_non_null(cfg->plugins[1].config);
    assert_string_equal(sp__conf_get(cfg->plugins[1].config, "port")->value, "3000");
    assert_int_equal(cfg->plugins[2].priority, 100);
    assert_null(cfg->plugins[2].config); /* "config:" with nothing */
    sp__config_free(cfg);
    sp__config_free(NULL);
}

static void test_config_defaults(void **state)
{
    cfx_t *f = *state;
    sp_config_t *cfg = cfg_ok(f, "");
    char want[PATH_MAX + 64];

    snprintf(want, sizeof(want), "%s/data", f->real);
    assert_string_equal(cfg->data_dir, want);
    assert_non_null(cfg->plugin_dir);
    assert_int_equal(cfg->plugin_dir[0], '/');
    assert_null(cfg->log_file);
    assert_int_equal(cfg->log_level, SP_LOG_INFO);
    assert_true(cfg->map_size == 1ull << 30);
    assert_true(cfg->sync);
    assert_int_equal(cfg->max_batch, 1024);
    assert_int_equal(cfg->concurrency, 64);
    assert_true(cfg->retry_base_ms == 30000);
    assert_true(cfg->retry_max_ms == 3600000);
    assert_true(cfg->max_age_ms == 86400000);
    assert_true(cfg->shutdown_grace_ms == 10000);
    assert_int_equal(cfg->nplugins, 0);
    assert_null(cfg->plugins);
    assert_string_equal(sp__config_setting(cfg, "api_rate_limit"), "100");
    assert_null(sp__config_setting(cfg, "secret"));
    assert_non_null(cfg->root);
    sp__config_free(cfg);

    /* Empty sections and "---" alone are all defaults too. */
    cfg = cfg_ok(f, "log:\nstore: {}\nscheduler: ~\nsettings:\nplugins: []\n");
    assert_true(cfg->sync);
    assert_int_equal(cfg->nplugins, 0);
    sp__config_free(cfg);
    cfg = cfg_ok(f, "---\n");
    assert_int_equal(cfg->max_batch, 1024);
    sp__config_free(cfg);
    cfg = cfg_ok(f, "log: { file: '-' }\n");
    assert_null(cfg->log_file);
    sp__config_free(cfg);
}

static void test_config_errors(void **state)
{
    cfx_t *f = *state;

    cfg_err(f, "data_dir: x\nbogus: 1\n", "sendpipe.yaml:2:1: key 'bogus': unknown key");
    cfg_err(f, "- a\n- b\n", "sendpipe.yaml:1:1: the configuration must be a map");
    cfg_err(f, "log: info\n", "sendpipe.yaml:1:6: key 'log': expected a map, got a scalar");
    cfg_err(f, "log:\n  level: loud\n",
            "sendpipe.yaml:2:10: key 'log.level': expected one of error, warn, info, debug, "
            "got \"loud\"");
    cfg_err(f, "log:\n  colour: red\n", "2:3: key 'log.colour': unknown key");
    cfg_err(f, "data_dir: ''\n", "1:11: key 'data_dir': must not be empty");
    cfg_err(f, "store:\n  map_size: 512K\n",
            "2:13: key 'store.map_size': must be at least 1M, got 524288 bytes");
    cfg_err(f, "store:\n  max_batch: 0\n",
            "2:14: key 'store.max_batch': must be between 1 and 100000, got 0");
    cfg_err(f, "store:\n  max_batch: 100001\n", "must be between 1 and 100000, got 100001");
    cfg_err(f, "store:\n  sync: sometimes\n", "2:9: key 'store.sync': expected a boolean");
    cfg_err(f, "scheduler:\n  concurrency: 0\n",
            "2:16: key 'scheduler.concurrency': must be between 1 and 100000");
    cfg_err(f, "scheduler:\n  concurrency: -5\n", "got -5");
    cfg_err(f, "scheduler:\n  retry_base: 2h\n", "2:15: key 'scheduler.retry_base': must be");
    cfg_err(f, "scheduler:\n  retry_base: 0\n", "scheduler.retry_base");
    cfg_err(f, "shutdown_grace: forever\n", "1:17: key 'shutdown_grace': expected a duration");
    cfg_err(f, "plugins: egress_outbox\n", "1:10: key 'plugins': expected a list of plugins");
    cfg_err(f, "plugins: {name: x}\n", "expected a list of plugins");
    cfg_err(f, "plugins:\n  - egress_outbox\n",
            "2:5: key 'plugins[0]': expected a map with at least 'name', got a scalar");
    cfg_err(f, "plugins:\n  - name: a\n  - path: x.so\n",
            "3:5: key 'plugins[1].name': missing required key");
    cfg_err(f, "plugins:\n  - name: a\n  - name: b\n  - name: a\n",
            "4:11: key 'plugins[2].name': duplicate plugin name 'a' (first at line 2)");
    cfg_err(f, "plugins:\n  - name: Egress\n",
            "2:11: key 'plugins[0].name': plugin names are 1 to 64 characters of [a-z0-9_], "
            "got \"Egress\"");
    cfg_err(f, "plugins:\n  - name: 'a-b'\n", "plugin names are");
    cfg_err(f, "plugins:\n  - name: ''\n", "plugin names are");
    cfg_err(f, "plugins:\n  - name: a\n    priority: 101\n",
            "3:15: key 'plugins[0].priority': must be between -100 and 100, got 101");
    cfg_err(f, "plugins:\n  - name: a\n    priority: -101\n", "got -101");
    cfg_err(f, "plugins:\n  - name: a\n    timeout: 0s\n",
            "3:14: key 'plugins[0].timeout': must be more than 0");
    cfg_err(f, "plugins:\n  - name: a\n    config: yes\n",
            "3:13: key 'plugins[0].config': expected a map, got a scalar");
    cfg_err(f, "plugins:\n  - name: a\n    config: [1]\n", "expected a map, got a list");
    cfg_err(f, "plugins:\n  - name: a\n    conifg: {}\n",
            "3:5: key 'plugins[0].conifg': unknown key (known keys: name, path, priority, "
            "timeout, config)");
    cfg_err(f, "settings:\n  public_url: x\n  colour: red\n",
            "3:3: key 'settings.colour': unknown setting");
    cfg_err(f, "settings: [a]\n", "1:11: key 'settings': expected a map");
    cfg_err(f, "settings:\n  secret: {a: 1}\n", "2:11: key 'settings.secret': expected a string");
    cfg_err(f, "settings:\n  api_rate_limit: lots\n",
            "2:19: key 'settings.api_rate_limit': expected a non-negative integer, got \"lots\"");
    cfg_err(f, "settings:\n  auth_email_rate_limit: -1\n", "expected a non-negative integer");
    cfg_err(f, "data_dir: ${SP_T_UNSET}\n", "1:11: undefined environment variable 'SP_T_UNSET'");
}

static void test_config_settings_env(void **state)
{
    cfx_t *f = *state;
    sp_config_t *cfg;
    size_t n;
    const sp_setting_def_t *tab = sp__config_settings_table(&n);

    setenv("USESEND_DOMAIN", "https://env.example", 1);
    setenv("NEXTAUTH_SECRET", "env-secret", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIA-ALT", 1);
    setenv("AWS_SECRET_KEY", "primary", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "alternative", 1);
    setenv("AWS_DEFAULT_REGION", "", 1); /* empty counts as unset */
    setenv("API_RATE_LIMIT", "250", 1);
    setenv("DISCORD_WEBHOOK_URL", "https://discord/x", 1);

    cfg = cfg_ok(f, "settings:\n  public_url: https://yaml.example\n  aws_region: ~\n");
    /* YAML wins when set; the environment fills the rest. */
    assert_string_equal(sp__config_setting(cfg, "public_url"), "https://yaml.example");
    assert_string_equal(sp__config_setting(cfg, "secret"), "env-secret");
    assert_string_equal(sp__config_setting(cfg, "aws_access_key"), "AKIA-ALT");
    assert_string_equal(sp__config_setting(cfg, "aws_secret_key"), "primary");
    assert_null(sp__config_setting(cfg, "aws_region"));
    assert_string_equal(sp__config_setting(cfg, "api_rate_limit"), "250");
    assert_string_equal(sp__config_setting(cfg, "discord_webhook_url"), "https://discord/x");
    assert_null(sp__config_setting(cfg, "github_id"));
    sp__config_free(cfg);

    /* ${VAR} in YAML is the other way to reach the environment. */
    cfg = cfg_ok(f, "settings:\n  aws_region: ${AWS_DEFAULT_REGION:-eu-west-1}\n");
    assert_string_equal(sp__config_setting(cfg, "aws_region"), "eu-west-1");
    sp__config_free(cfg);

    setenv("API_RATE_LIMIT", "fast", 1);
    cfg_err(f, "", "environment variable API_RATE_LIMIT (setting 'api_rate_limit'): "
                   "expected a non-negative integer, got \"fast\"");
    /* The YAML value wins, so a bad environment value is then irrelevant. */
    cfg = cfg_ok(f, "settings: {api_rate_limit: 9}\n");
    assert_string_equal(sp__config_setting(cfg, "api_rate_limit"), "9");
    sp__config_free(cfg);

    /* The table: every secret the brief lists is marked. */
    for (size_t i = 0; i < n; i++) {
        bool want = strcmp(tab[i].key, "secret") == 0 || strcmp(tab[i].key, "aws_secret_key") == 0 ||
                    strcmp(tab[i].key, "aws_session_token") == 0 ||
                    strcmp(tab[i].key, "github_secret") == 0 ||
                    strcmp(tab[i].key, "google_client_secret") == 0 ||
                    strcmp(tab[i].key, "discord_webhook_url") == 0;

        assert_int_equal(tab[i].secret, want);
        assert_non_null(tab[i].env);
        assert_non_null(tab[i].description);
    }
    assert_int_equal(n, 13);
}

static void test_config_paths(void **state)
{
    cfx_t *f = *state;
    sp_config_t *cfg;
    char want[PATH_MAX + 64];
    char p[256];
    char yaml[512];

    /* An existing directory resolves through realpath. */
    snprintf(p, sizeof(p), "%s/existing", f->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    cfg = cfg_ok(f, "data_dir: ./existing/./\n");
    snprintf(want, sizeof(want), "%s/existing", f->real);
    assert_string_equal(cfg->data_dir, want);
    sp__config_free(cfg);

    /* Not yet existing: realpath of the parent plus the name. */
    cfg = cfg_ok(f, "data_dir: existing/../new-data\n");
    snprintf(want, sizeof(want), "%s/new-data", f->real);
    assert_string_equal(cfg->data_dir, want);
    sp__config_free(cfg);

    /* Neither exists: lexical normalisation. */
    cfg = cfg_ok(f, "data_dir: a//b/./c/../d\n");
    snprintf(want, sizeof(want), "%s/a/b/d", f->real);
    assert_string_equal(cfg->data_dir, want);
    sp__config_free(cfg);

    /* Absolute stays absolute. */
    snprintf(yaml, sizeof(yaml), "data_dir: %s/existing\nplugin_dir: /opt/sp/plugins/\n",
             f->dir);
    cfg = cfg_ok(f, yaml);
    snprintf(want, sizeof(want), "%s/existing", f->real);
    assert_string_equal(cfg->data_dir, want);
    assert_string_equal(cfg->plugin_dir, "/opt/sp/plugins");
    sp__config_free(cfg);

    /* SP_PLUGIN_DIR fills plugin_dir when the YAML does not set it. */
    setenv("SP_PLUGIN_DIR", "/srv/sp-plugins", 1);
    cfg = cfg_ok(f, "");
    assert_string_equal(cfg->plugin_dir, "/srv/sp-plugins");
    sp__config_free(cfg);
    cfg = cfg_ok(f, "plugin_dir: mine\n");
    snprintf(want, sizeof(want), "%s/mine", f->real);
    assert_string_equal(cfg->plugin_dir, want);
    sp__config_free(cfg);
    unsetenv("SP_PLUGIN_DIR");
}

static void test_config_load_file(void **state)
{
    cfx_t *f = *state;
    sp_config_t *cfg = NULL;
    char conf_dir[128];
    char path[256];
    char want[PATH_MAX + 64];
    FILE *fp;

    /* Relative paths follow the file's directory, not the working directory. */
    snprintf(conf_dir, sizeof(conf_dir), "%s/conf", f->dir);
    assert_int_equal(mkdir(conf_dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/sendpipe.yaml", conf_dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("data_dir: ../spool\nplugins:\n  - name: a\n    path: a.so\n", fp);
    fclose(fp);
    assert_int_equal(sp__config_load(path, &cfg, g_err, sizeof(g_err)), 0);
    snprintf(want, sizeof(want), "%s/spool", f->real);
    assert_string_equal(cfg->data_dir, want);
    snprintf(want, sizeof(want), "%s/conf/a.so", f->real);
    assert_string_equal(cfg->plugins[0].path, want);
    snprintf(want, sizeof(want), "%s/conf/sendpipe.yaml", f->real);
    assert_string_equal(cfg->file, want);
    sp__config_free(cfg);

    /* Errors name the path as given. */
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("store:\n  max_batch: many\n", fp);
    fclose(fp);
    assert_int_equal(sp__config_load(path, &cfg, g_err, sizeof(g_err)), SP_ECONFIG);
    assert_null(cfg);
    snprintf(want, sizeof(want), "%s:2:14: key 'store.max_batch': expected an integer, "
             "got \"many\"", path);
    assert_string_equal(g_err, want);

    unlink(path);
    assert_int_equal(sp__config_load(path, &cfg, g_err, sizeof(g_err)), -ENOENT);
    assert_null(cfg);
    assert_non_null(strstr(g_err, "cannot open"));
}

static void test_default_config_loads(void **state)
{
    sp_config_t *cfg = NULL;
    const char *path = SP_TEST_SOURCE_DIR "/conf/sendpipe.yaml";
    char src[PATH_MAX];
    char want[PATH_MAX + 64];
    int rc;

    (void)state;
    rc = sp__config_load(path, &cfg, g_err, sizeof(g_err));
    if (rc != 0) {
        fail_msg("%s", g_err);
    }
    assert_non_null(realpath(SP_TEST_SOURCE_DIR, src));
    snprintf(want, sizeof(want), "%s/data", src);
    assert_string_equal(cfg->data_dir, want);
    assert_int_equal(cfg->log_level, SP_LOG_INFO);
    assert_null(cfg->log_file);
    assert_true(cfg->sync);
    /* The embedded default: HTTP ingress first, egress (the outbox) last. */
    assert_true(cfg->nplugins >= 3);
    assert_string_equal(cfg->plugins[0].name, "ingress_http");
    assert_non_null(cfg->plugins[0].config);
    assert_string_equal(cfg->plugins[cfg->nplugins - 1].name, "egress_outbox");
    assert_null(cfg->plugins[cfg->nplugins - 1].config);
    {
        bool has_log = false;
        for (size_t i = 0; i < cfg->nplugins; i++) {
            has_log = has_log || strcmp(cfg->plugins[i].name, "event_log") == 0;
        }
        assert_true(has_log);
    }
    assert_string_equal(sp__config_setting(cfg, "api_rate_limit"), "100");
    sp__config_free(cfg);

    /* Its environment knobs. */
    setenv("SENDPIPE_DATA_DIR", "/var/lib/sendpipe-test", 1);
    setenv("SENDPIPE_LOG_LEVEL", "debug", 1);
    setenv("SENDPIPE_LOG_FILE", "/var/log/sp.log", 1);
    rc = sp__config_load(path, &cfg, g_err, sizeof(g_err));
    if (rc != 0) {
        fail_msg("%s", g_err);
    }
    assert_string_equal(cfg->data_dir, "/var/lib/sendpipe-test");
    assert_int_equal(cfg->log_level, SP_LOG_DEBUG);
    assert_string_equal(cfg->log_file, "/var/log/sp.log");
    sp__config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_positions),
        cmocka_unit_test(test_tree_null_and_empty),
        cmocka_unit_test_setup_teardown(test_env_subst, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_env_subst_errors, clear_env, clear_env),
        cmocka_unit_test(test_refused_constructs),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_dup_keys_large_map),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_schema_fill),
        cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_schema_required_and_shapes),
        cmocka_unit_test(test_schema_secret_and_bad_default),
        cmocka_unit_test_setup_teardown(test_config_full, cfg_setup, cfg_teardown),
        cmocka_unit_test_setup_teardown(test_config_defaults, cfg_setup, cfg_teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, cfg_setup, cfg_teardown),
        cmocka_unit_test_setup_teardown(test_config_settings_env, cfg_setup, cfg_teardown),
        cmocka_unit_test_setup_teardown(test_config_paths, cfg_setup, cfg_teardown),
        cmocka_unit_test_setup_teardown(test_config_load_file, cfg_setup, cfg_teardown),
        cmocka_unit_test_setup_teardown(test_default_config_loads, cfg_setup, cfg_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
