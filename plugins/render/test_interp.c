/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the template interpolation (interp.c): every rule of the
 * syntax documented in docs/templates.md, escaping, the size bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sp/sp_errno.h>

#include "interp.h"

static const interp_var_t vars[] = {
    {"name", 4, "Ada", 3},
    {"html", 4, "<b>&\"'</b>", 10},
    {"empty", 5, "", 0},
    {"contact.name", 12, "Grace", 5},
    {"Mixed_Case", 10, "mc", 2},
    {"mixed_case", 10, "exact", 5},
    {"braces", 6, "{{name}}", 8},
    {"nul", 3, "a\0b", 3},
};
static interp_vars_t vs = {vars, sizeof(vars) / sizeof(vars[0])};

static char *render(const char *src, bool html, size_t max, int *rc, size_t *len)
{
    char *out = NULL;
    size_t l = 0;

    *rc = interp_render(src, strlen(src), html, interp_vars_lookup, &vs, max, &out, &l);
    if (len) {
        *len = l;
    }
    return out;
}

static void check(const char *src, bool html, const char *want)
{
    int rc;
    char *out = render(src, html, 1 << 20, &rc, NULL);

    assert_int_equal(rc, 0);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void test_plain(void **s)
{
    (void)s;
    check("", false, "");
    check("no placeholders at all", false, "no placeholders at all");
    check("Hi {{name}}!", false, "Hi Ada!");
    check("{{name}}{{name}}", false, "AdaAda");
    check("{{name}}", true, "Ada");
}

static void test_spaces(void **s)
{
    (void)s;
    check("{{ name }}", false, "Ada");
    check("{{\tname\n}}", false, "Ada");
    check("{{ missing , fallback = you }}", false, "you");
    check("{{missing,fallback=dear customer }}", false, "dear customer");
    check("{{missing ,FALLBACK=x}}", false, "x");
}

static void test_case_insensitive(void **s)
{
    (void)s;
    check("{{NAME}} {{Name}}", false, "Ada Ada");
    check("{{MIXED_CASE}}", false, "mc");       /* first case-insensitive match */
    check("{{mixed_case}}", false, "exact");    /* an exact match wins */
    check("{{CONTACT.Name}}", false, "Grace");  /* dots belong to names */
}

static void test_fallback(void **s)
{
    (void)s;
    check("{{missing,fallback=Friend}}", false, "Friend");
    check("{{empty,fallback=Friend}}", false, "Friend");
    check("{{name,fallback=Friend}}", false, "Ada");
    check("{{missing,fallback=}}", false, "");
    /* A fallback is template text: never escaped. */
    check("{{missing,fallback=<i>you</i>}}", true, "<i>you</i>");
    check("{{missing,fallback=a, b = c}}", false, "a, b = c");
}

static void test_empty_and_unknown(void **s)
{
    (void)s;
    check("[{{empty}}]", false, "[]");
    check("Hi {{missing}}!", false, "Hi {{missing}}!");
    check("Hi {{ missing }}!", true, "Hi {{ missing }}!");
}

static void test_escaping(void **s)
{
    (void)s;
    check("{{html}}", true, "&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;");
    check("{{html}}", false, "<b>&\"'</b>");
    check("<a title=\"{{html}}\">", true, "<a title=\"&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;\">");
}

static void test_not_placeholders(void **s)
{
    (void)s;
    const char *keep[] = {
        "{{}}", "{{ }}", "{{a b}}", "{{name", "name}}", "{name}", "{{na-me}}", "{{#if x}}",
        "{{name,}}", "{{name,fallback}}", "{{name,other=x}}", "{{name;fallback=x}}", "{{",
        "}}", "{", "{{{",
    };
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        check(keep[i], false, keep[i]);
    }
    check("{{{name}}}", false, "{Ada}");
    check("{{x {{name}}", false, "{{x Ada");
    check("{{name}}}", false, "Ada}");
}

static void test_no_rescan(void **s)
{
    (void)s;
    check("{{braces}}", false, "{{name}}");
    check("{{missing,fallback={{name}}}}", false, "{{name}}");
}

static void test_name_limit(void **s)
{
    char src[INTERP_NAME_MAX + 8];

    (void)s;
    src[0] = src[1] = '{';
    memset(src + 2, 'a', INTERP_NAME_MAX + 1);
    strcpy(src + 2 + INTERP_NAME_MAX + 1, "}}");
    check(src, false, src); /* too long: not a placeholder */
    strcpy(src + 2 + INTERP_NAME_MAX, "}}");
    check(src, false, src); /* longest name, unknown: left as written */
}

static void test_bytes(void **s)
{
    int rc;
    size_t len;
    char *out = render("[{{nul}}]", false, 100, &rc, &len);

    (void)s;
    assert_int_equal(rc, 0);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "[a\0b]", 5);
    free(out);
}

static void test_size_limit(void **s)
{
    int rc;
    size_t len;
    char *out;

    (void)s;
    out = render("Hi {{name}}", false, 6, &rc, &len);
    assert_int_equal(rc, 0);
    assert_int_equal(len, 6);
    free(out);
    out = render("Hi {{name}}", false, 5, &rc, &len);
    assert_int_equal(rc, SP_ETOOBIG);
    assert_null(out);
    out = render("{{html}}", true, 20, &rc, &len); /* escaping counts */
    assert_int_equal(rc, SP_ETOOBIG);
    out = render("", false, 0, &rc, &len);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "");
    free(out);
}

/* Many unclosed openings: one scan, not one per opening. */
static void test_many_openings(void **s)
{
    size_t n = 1 << 20;
    char *src = malloc(n + 1), *out = NULL;
    size_t len;

    (void)s;
    memset(src, '{', n);
    src[n] = '\0';
    assert_int_equal(interp_render(src, n, true, interp_vars_lookup, &vs, n, &out, &len), 0);
    assert_int_equal(len, n);
    free(out);
    memcpy(src + n - 2, "}}", 2);
    assert_int_equal(interp_render(src, n, true, interp_vars_lookup, &vs, n, &out, &len), 0);
    assert_int_equal(len, n);
    free(out);
    free(src);
}

static void test_no_lookup(void **s)
{
    char *out;
    size_t len;

    (void)s;
    assert_int_equal(interp_render("{{a}} {{b,fallback=c}}", 22, false, NULL, NULL, 100, &out,
                                   &len),
                     0);
    assert_string_equal(out, "{{a}} c");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),          cmocka_unit_test(test_spaces),
        cmocka_unit_test(test_case_insensitive), cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_empty_and_unknown), cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_not_placeholders), cmocka_unit_test(test_no_rescan),
        cmocka_unit_test(test_name_limit),     cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_size_limit),     cmocka_unit_test(test_many_openings),
        cmocka_unit_test(test_no_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
