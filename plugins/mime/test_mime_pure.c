/* SPDX-License-Identifier: Apache-2.0 */
/* unit.mime_pure: the mime plugin's pure parts on fixed examples: HTML to
 * text (html_text.c) and the textual header editing of complete messages
 * (raw_headers.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "html_text.h"
#include "raw_headers.h"

static void html_is(const char *html, const char *want)
{
    char *t = mime_html_to_text(html, strlen(html));
    assert_non_null(t);
    assert_string_equal(t, want);
    free(t);
}

static void test_html_text(void **state)
{
    (void)state;
    html_is("", "");
    html_is("plain words", "plain words");
    html_is("<p>a</p><p>b</p>", "a\n\nb");
    html_is("<div>a</div><div>b</div>c", "a\nb\nc");
    html_is("a<br>b<br><br>c", "a\nb\n\nc");
    html_is("<p>x &amp; y &lt;z&gt; &eacute; &#x2713;</p>", "x & y <z> \xc3\xa9 \xe2\x9c\x93");
    html_is("<a href=\"https://e.test/\">site</a>", "site (https://e.test/)");
    html_is("<a href=\"https://e.test/\">https://e.test/</a>", "https://e.test/");
    html_is("<a href=\"mailto:a@e.test\">a@e.test</a>", "a@e.test");
    html_is("<a href=\"#top\">top</a>", "top");
    html_is("<a href=\"https://e.test/i\"><img src=x></a>", "https://e.test/i");
    html_is("<img alt=\"Logo\"> text", "Logo text");
    html_is("<ul><li>one</li><li>two</li></ul>", "* one\n* two");
    html_is("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc");
    html_is("<pre>  keep\n   this</pre>after", "  keep\n   this\n\nafter");
    html_is("<head><title>T</title><style>s{}</style></head><body>x<script>y()</script>"
            "<noscript>n</noscript><template>t</template></body>",
            "x");
    html_is("  lots   of\n\n white\tspace  ", "lots of white space");
    html_is("<p>unclosed <b>bold<p>next", "unclosed bold\n\nnext");
}

static const mime_raw_add_t add = {
    .message_id = "id1@acme.test", .date = "Thu, 01 Jan 2026 00:00:00 +0000", .email_id = "id1"};

static void edit_is(const char *in, const char *want, const char *want_id)
{
    char *out = NULL, *id = NULL;
    size_t n = 0;
    assert_int_equal(mime_raw_edit(in, strlen(in), &add, &out, &n, &id), 0);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_string_equal(id, want_id);
    free(out);
    free(id);
}

static void test_raw_edit(void **state)
{
    (void)state;
    /* added at the end of the header block; Bcc (folded) removed */
    edit_is("From: a@x\r\nBcc: b@x,\r\n c@x\r\nSubject: s\r\n\r\nbody\r\n",
            "From: a@x\r\nSubject: s\r\nMessage-ID: <id1@acme.test>\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nX-Usesend-Email-ID: id1\r\n\r\nbody\r\n",
            "id1@acme.test");
    /* own Message-ID and Date kept; LF and bare CR made CRLF; forged ids gone */
    edit_is("Message-ID:  <own@c.test> \nDate: whenever\nX-Usesend-Email-ID: f\n"
            "x-unsend-email-id: g\nBCC : h@x\n\nl1\rl2",
            "Message-ID:  <own@c.test> \r\nDate: whenever\r\nX-Usesend-Email-ID: id1\r\n\r\n"
            "l1\r\nl2\r\n",
            "own@c.test");
    /* an unusable Message-ID is replaced */
    edit_is("Message-ID: no brackets\r\n\r\nb\r\n",
            "Message-ID: <id1@acme.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            "X-Usesend-Email-ID: id1\r\n\r\nb\r\n",
            "id1@acme.test");
    /* a block ending at a line that is no field gets an empty line */
    edit_is("Date: d\r\nnot a field\r\nBcc: stays in the body\r\n",
            "Date: d\r\nMessage-ID: <id1@acme.test>\r\nX-Usesend-Email-ID: id1\r\n\r\n"
            "not a field\r\nBcc: stays in the body\r\n",
            "id1@acme.test");
    /* a leading folded line cannot join our fields */
    edit_is(" x\r\n",
            "Message-ID: <id1@acme.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            "X-Usesend-Email-ID: id1\r\n\r\n x\r\n",
            "id1@acme.test");
    /* headers only, no final line end */
    edit_is("Date: d",
            "Date: d\r\nMessage-ID: <id1@acme.test>\r\nX-Usesend-Email-ID: id1\r\n",
            "id1@acme.test");
}

static void test_raw_message_id(void **state)
{
    const char *m = "Subject: s\r\nMessage-ID:\r\n <a.b@c>\r\n\r\nMessage-ID: <body@x>\r\n";
    char *id = mime_raw_message_id(m, strlen(m));
    (void)state;
    assert_non_null(id);
    assert_string_equal(id, "a.b@c");
    free(id);
    m = "Subject: s\r\n\r\nMessage-ID: <b@x>\r\n"; /* in the body: not a field */
    assert_null(mime_raw_message_id(m, strlen(m)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_text),
        cmocka_unit_test(test_raw_edit),
        cmocka_unit_test(test_raw_message_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
