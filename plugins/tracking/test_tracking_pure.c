/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the tracking plugin's pure parts: tokens (round trip, every
 * kind of alteration refused), the html rewriter (which links, the pixel,
 * what stays as it was) and the prefetch classifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trk_html.h"
#include "trk_prefetch.h"
#include "trk_token.h"

static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t key2[32] = "fedcba9876543210fedcba9876543210";

static int parse(const char *tok, trk_kind_t kind, char id[TRK_ID_MAX + 1], unsigned *idx)
{
    return trk_token_parse(key, sizeof(key), kind, tok, strlen(tok), id, idx);
}

static void token_round_trip(void **state)
{
    char tok[TRK_TOKEN_MAX], id[TRK_ID_MAX + 1];
    unsigned idx = 99;
    (void)state;

    assert_true(trk_token_make(key, sizeof(key), TRK_CLICK, "0abc123xyz789", 13, 7, tok,
                               sizeof(tok)) > 0);
    assert_null(strpbrk(tok, "+/="));
    assert_int_equal(parse(tok, TRK_CLICK, id, &idx), 0);
    assert_string_equal(id, "0abc123xyz789");
    assert_int_equal(idx, 7);
    /* The kind is signed: a click token is no open token. */
    assert_int_equal(parse(tok, TRK_OPEN, id, &idx), -1);
    /* Another key does not verify it. */
    assert_int_equal(trk_token_parse(key2, sizeof(key2), TRK_CLICK, tok, strlen(tok), id, &idx),
                     -1);

    assert_true(trk_token_make(key, sizeof(key), TRK_OPEN, "m1", 2, 0, tok, sizeof(tok)) > 0);
    assert_int_equal(parse(tok, TRK_OPEN, id, &idx), 0);
    assert_string_equal(id, "m1");
    assert_int_equal(idx, 0);

    /* Bad inputs to make. */
    assert_int_equal(trk_token_make(key, sizeof(key), TRK_OPEN, "", 0, 0, tok, sizeof(tok)), -1);
    assert_int_equal(trk_token_make(key, sizeof(key), TRK_OPEN, "a/b", 3, 0, tok, sizeof(tok)),
                     -1);
    assert_int_equal(
        trk_token_make(key, sizeof(key), TRK_CLICK, "ab", 2, 70000, tok, sizeof(tok)), -1);
    assert_int_equal(trk_token_make(key, sizeof(key), TRK_CLICK, "ab", 2, 1, tok, 8), -1);
}

static void token_alterations(void **state)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char tok[TRK_TOKEN_MAX], other[TRK_TOKEN_MAX], bad[TRK_TOKEN_MAX + 8],
        id[TRK_ID_MAX + 1];
    unsigned idx;
    size_t n;
    (void)state;

    n = (size_t)trk_token_make(key, sizeof(key), TRK_CLICK, "msgone", 6, 2, tok, sizeof(tok));
    /* Every single-character change of every position is refused. */
    for (size_t i = 0; i < n; i++) {
        for (const char *a = alphabet; *a; a++) {
            if (*a == tok[i]) {
                continue;
            }
            memcpy(bad, tok, n + 1);
            bad[i] = *a;
            assert_int_equal(parse(bad, TRK_CLICK, id, &idx), -1);
        }
    }
    /* Truncated, extended, padded, other alphabets. */
    for (size_t k = 0; k < n; k++) {
        memcpy(bad, tok, k);
        bad[k] = '\0';
        assert_int_equal(parse(bad, TRK_CLICK, id, &idx), -1);
    }
    snprintf(bad, sizeof(bad), "%sA", tok);
    assert_int_equal(parse(bad, TRK_CLICK, id, &idx), -1);
    snprintf(bad, sizeof(bad), "%s=", tok);
    assert_int_equal(parse(bad, TRK_CLICK, id, &idx), -1);
    memcpy(bad, tok, n + 1);
    bad[0] = '+';
    assert_int_equal(parse(bad, TRK_CLICK, id, &idx), -1);
    assert_int_equal(parse("", TRK_CLICK, id, &idx), -1);

    /* Another message's token with this one's index: its own id comes out,
     * never this message's. */
    trk_token_make(key, sizeof(key), TRK_CLICK, "msgtwo", 6, 2, other, sizeof(other));
    assert_int_equal(parse(other, TRK_CLICK, id, &idx), 0);
    assert_string_equal(id, "msgtwo");
}

static void location_encoding(void **state)
{
    char *l;
    (void)state;
    l = trk_location("https://x.test/a b?q=ü", strlen("https://x.test/a b?q=ü"));
    assert_string_equal(l, "https://x.test/a%20b?q=%C3%BC");
    free(l);
    assert_null(trk_location("a\0b", 3));
}

static void trackable(void **state)
{
    (void)state;
    assert_true(trk_link_trackable("https://example.com/x"));
    assert_true(trk_link_trackable("  HTTP://example.com"));
    assert_false(trk_link_trackable("mailto:a@example.com"));
    assert_false(trk_link_trackable("tel:+123"));
    assert_false(trk_link_trackable("#top"));
    assert_false(trk_link_trackable("/relative"));
    assert_false(trk_link_trackable("javascript:alert(1)"));
    assert_false(trk_link_trackable("https://example.com/UnSubscribe?u=1"));
    assert_false(trk_link_trackable("https://example.com/{{name}}"));
    assert_false(trk_link_trackable("https://example.com/a\nb"));
    assert_false(trk_link_trackable(NULL));
}

static trk_opts_t opts(bool open, bool click)
{
    trk_opts_t o = {.base = "https://t.example",
                    .key = key,
                    .klen = sizeof(key),
                    .id = "mid1",
                    .idlen = 4,
                    .open = open,
                    .click = click,
                    .max_links = 100};
    return o;
}

static size_t count(const char *hay, const char *needle)
{
    size_t c = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
        c++;
    }
    return c;
}

static void rewrite_links(void **state)
{
    static const char html[] =
        "<html><body><p>Grüße <a href=\"https://a.example/x?y=1&amp;z=2\">one</a>"
        "<a href=\"mailto:m@example.com\">mail</a> <a href=\"#anchor\">here</a>"
        "<a href=\"https://a.example/unsubscribe?u=1\">unsub</a>"
        "<a href=\"http://b.example/\" data-sp-no-track>keep</a>"
        "<a href=\"HTTP://c.example/{{ x }}\">tpl</a>"
        "<area href=\"http://d.example/map\">"
        "<a href=\"http://e.example/two\">two</a>"
        "<a href=\"  https://f.example/sp  \">spaced</a></p></body></html>";
    trk_opts_t o = opts(true, true);
    trk_result_t r;
    char id[TRK_ID_MAX + 1];
    unsigned idx;
    const char *p;
    (void)state;

    assert_int_equal(trk_html_rewrite(html, sizeof(html) - 1, &o, &r), 0);
    assert_int_equal(r.nlinks, 4);
    assert_string_equal(r.links[0], "https://a.example/x?y=1&z=2");
    assert_string_equal(r.links[1], "http://d.example/map");
    assert_string_equal(r.links[2], "http://e.example/two");
    assert_string_equal(r.links[3], "https://f.example/sp"); /* trimmed */
    assert_true(r.pixel);
    assert_int_equal(count(r.html, "https://t.example/t/c/"), 4);
    assert_int_equal(count(r.html, "https://t.example/t/o/"), 1);
    assert_non_null(strstr(r.html, "mailto:m@example.com"));
    assert_non_null(strstr(r.html, "href=\"#anchor\""));
    assert_non_null(strstr(r.html, "https://a.example/unsubscribe?u=1"));
    assert_non_null(strstr(r.html, "http://b.example/"));
    assert_non_null(strstr(r.html, "Grüße")); /* UTF-8 kept, not entities */
    assert_null(strstr(r.html, "<!DOCTYPE"));
    /* The pixel is the body's last child. */
    p = strstr(r.html, "<img");
    assert_non_null(p);
    assert_true(strstr(r.html, "</p>") < p && p < strstr(r.html, "</body>"));
    /* The second rewritten link carries index 1 of this message. */
    p = strstr(r.html, "map");
    assert_null(p); /* the original is gone from the html */
    p = strstr(r.html, "/t/c/");
    p = strstr(p + 1, "/t/c/") + 5;
    {
        char tok[TRK_TOKEN_MAX];
        size_t n = strcspn(p, "\"");
        memcpy(tok, p, n);
        tok[n] = '\0';
        assert_int_equal(parse(tok, TRK_CLICK, id, &idx), 0);
        assert_string_equal(id, "mid1");
        assert_int_equal(idx, 1);
    }
    trk_result_free(&r);
}

static void rewrite_flags(void **state)
{
    static const char frag[] = "<p>Hi <a href=\"https://a.example/\">a</a></p>";
    trk_opts_t o = opts(true, false);
    trk_result_t r;
    (void)state;

    /* Open only: links untouched, pixel added even without <body>. */
    assert_int_equal(trk_html_rewrite(frag, sizeof(frag) - 1, &o, &r), 0);
    assert_int_equal(r.nlinks, 0);
    assert_true(r.pixel);
    assert_non_null(strstr(r.html, "href=\"https://a.example/\""));
    assert_non_null(strstr(r.html, "/t/o/"));
    trk_result_free(&r);

    /* Click only: no pixel. */
    o = opts(false, true);
    assert_int_equal(trk_html_rewrite(frag, sizeof(frag) - 1, &o, &r), 0);
    assert_int_equal(r.nlinks, 1);
    assert_false(r.pixel);
    assert_null(strstr(r.html, "/t/o/"));
    trk_result_free(&r);

    /* The cap. */
    o = opts(false, true);
    o.max_links = 0;
    assert_int_equal(trk_html_rewrite(frag, sizeof(frag) - 1, &o, &r), 0);
    assert_int_equal(r.nlinks, 0);
    assert_non_null(strstr(r.html, "href=\"https://a.example/\""));
    trk_result_free(&r);
}

static void prefetch(void **state)
{
    (void)state;
    assert_string_equal(trk_prefetch_classify("Mozilla/5.0", "203.0.113.9"),
                        "apple-mail-privacy");
    assert_string_equal(
        trk_prefetch_classify("Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15", "17.58.1.2"),
        "apple-mail-privacy");
    assert_string_equal(trk_prefetch_classify("Mozilla/5.0 x", "::ffff:17.1.2.3"),
                        "apple-mail-privacy");
    assert_string_equal(trk_prefetch_classify("Mozilla/5.0 x", "2620:149:1::1"),
                        "apple-mail-privacy");
    assert_string_equal(
        trk_prefetch_classify("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                              "(via ggpht.com GoogleImageProxy)",
                              "66.249.84.1"),
        "proxy");
    assert_string_equal(trk_prefetch_classify("Barracuda Sentinel (EE)", "1.2.3.4"),
                        "scanner");
    assert_string_equal(trk_prefetch_classify("Mozilla/5.0 Proofpoint", NULL), "scanner");
    assert_string_equal(trk_prefetch_classify(NULL, "1.2.3.4"), "bot");
    assert_string_equal(trk_prefetch_classify("curl/8.0", "1.2.3.4"), "bot");
    assert_null(trk_prefetch_classify(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36",
        "198.51.100.7"));
    assert_null(trk_prefetch_classify("Mozilla/5.0 (iPhone)", "2001:db8::1"));
}

static void ip_of(void **state)
{
    char ip[64];
    (void)state;
    assert_int_equal(trk_ip_of("127.0.0.1:5555", ip, sizeof(ip)), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(trk_ip_of("[2001:db8::1]:80", ip, sizeof(ip)), 0);
    assert_string_equal(ip, "2001:db8::1");
    assert_int_equal(trk_ip_of("2001:db8::2", ip, sizeof(ip)), 0);
    assert_string_equal(ip, "2001:db8::2");
    assert_int_equal(trk_ip_of("10.0.0.1", ip, sizeof(ip)), 0);
    assert_int_equal(trk_ip_of("evil", ip, sizeof(ip)), -1);
    assert_int_equal(trk_ip_of("[::1", ip, sizeof(ip)), -1);
    assert_int_equal(trk_ip_of("127.0.0.1:1", ip, 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_round_trip), cmocka_unit_test(token_alterations),
        cmocka_unit_test(location_encoding), cmocka_unit_test(trackable),
        cmocka_unit_test(rewrite_links),    cmocka_unit_test(rewrite_flags),
        cmocka_unit_test(prefetch),         cmocka_unit_test(ip_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
