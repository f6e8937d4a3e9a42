/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP route registry tests: pattern checks, literal-over-parameter matching,
 * 404 and 405 answers, percent-decoding and query parsing, response header
 * validation and the header block, respond-once and abort, request ids,
 * built-in routes and the metrics text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_core/http.h"
#include "sp_core/log.h"
#include "sp_core/plugin.h"

/* What the fake transport saw. */
typedef struct sent {
    int calls;
    int status;
    char headers[2048];
    char body[65536];
    size_t blen;
    void *conn;
} sent_t;

static sent_t g_sent;

static void fake_send(void *conn, sp_http_req_t *req, int status, const char *headers,
                      size_t hlen, const void *body, size_t blen)
{
    g_sent.calls++;
    g_sent.status = status;
    g_sent.conn = conn;
    assert_true(hlen < sizeof(g_sent.headers));
    memcpy(g_sent.headers, headers, hlen);
    g_sent.headers[hlen] = '\0';
    assert_true(blen < sizeof(g_sent.body));
    if (blen > 0) {
        memcpy(g_sent.body, body, blen);
    }
    g_sent.body[blen] = '\0';
    g_sent.blen = blen;
}

static const sp_http_transport_t g_tr = {.size = sizeof(sp_http_transport_t),
                                         .send = fake_send};

/* The handler under test records what it saw, then answers (or keeps the
 * request for later when g_keep is set). */
static char g_seen_route[128];
static char g_seen_param[128];
static const char *g_which;
static sp_http_req_t *g_kept;
static bool g_keep;

static void answer(sp_http_req_t *req, const char *which)
{
    const char *route = sp__http_route_of(req);
    const char *id = sp__http_param(req, "id");
    g_which = which;
    snprintf(g_seen_route, sizeof(g_seen_route), "%s", route != NULL ? route : "");
    snprintf(g_seen_param, sizeof(g_seen_param), "%s", id != NULL ? id : "");
    if (g_keep) {
        g_kept = req;
        return;
    }
    assert_int_equal(sp__http_respond(req, 200, "text/plain", which, strlen(which)), 0);
}

static void h_bulk(sp_http_req_t *req, void *ctx)
{
    answer(req, "bulk");
}

static void h_contact(sp_http_req_t *req, void *ctx)
{
    answer(req, "contact");
}

static void h_contact_put(sp_http_req_t *req, void *ctx)
{
    answer(req, "contact-put");
}

static void h_list(sp_http_req_t *req, void *ctx)
{
    answer(req, "list");
}

static void h_root(sp_http_req_t *req, void *ctx)
{
    answer(req, "root");
}

static int setup(void **state)
{
    sp__log_set_level(SP_LOG_ERROR);
    memset(&g_sent, 0, sizeof(g_sent));
    g_keep = false;
    g_kept = NULL;
    g_which = NULL;
    assert_int_equal(sp__http_init(NULL), 0);
    assert_int_equal(sp__http_route(NULL, "POST", "/contacts/bulk", h_bulk, 0), 0);
    assert_int_equal(sp__http_route(NULL, "GET", "/contacts/{id}", h_contact, 0), 0);
    assert_int_equal(sp__http_route(NULL, "PUT", "/contacts/{id}", h_contact_put, 0), 0);
    assert_int_equal(sp__http_route(NULL, "GET", "/contacts", h_list, 0), 0);
    assert_int_equal(sp__http_route(NULL, "GET", "/", h_root, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    sp__http_free();
    return 0;
}

/* Build, dispatch and return what the transport saw. */
static sp_http_req_t *mkreq(const char *method, const char *target)
{
    sp_http_req_t *r = sp__http_req_new(NULL, &g_tr, (void *)&g_sent, method, target,
                                        strlen(target), "127.0.0.1:5555");
    assert_non_null(r);
    return r;
}

static int run(const char *method, const char *target)
{
    memset(&g_sent, 0, sizeof(g_sent));
    g_which = NULL;
    sp__http_dispatch(mkreq(method, target));
    return g_sent.status;
}

static bool has_header(const char *line)
{
    return strstr(g_sent.headers, line) != NULL;
}

static void test_patterns(void **state)
{
    sp_plugin_t fake = {.name = (char *)"fake", .in_init = false};
    assert_int_equal(sp__http_route(NULL, "GET", "nope", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", NULL, h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/a//b", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/a/", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/a/{}", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/a/{x-y}", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/a/{x}/{x}", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/a b", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/a%20b", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/a?b", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "get", "/x", h_root, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/x", NULL, 0), SP_EINVAL);
    assert_int_equal(sp__http_route(NULL, "GET", "/x", h_root, 0x80), SP_EINVAL);
    /* Same method and shape, whatever the parameter is called. */
    assert_int_equal(sp__http_route(NULL, "GET", "/contacts/{other}", h_root, 0), SP_EEXIST);
    assert_int_equal(sp__http_route(NULL, "POST", "/contacts/bulk", h_root, 0), SP_EEXIST);
    /* Registration belongs to init. */
    assert_int_equal(sp__http_route(&fake, "GET", "/late", h_root, 0), SP_ESTATE);
    fake.in_init = true;
    assert_int_equal(sp__http_route(&fake, "GET", "/mine/{a}/{b}", h_root, 0), 0);
    assert_int_equal(run("GET", "/mine/1/2"), 200);
    sp__http_routes_remove(&fake);
    assert_int_equal(run("GET", "/mine/1/2"), 404);
}

static int count_route(void *arg, const char *method, const char *pattern, const char *owner)
{
    int *n = arg;
    if (strcmp(pattern, "/healthz") == 0) {
        assert_string_equal(method, "GET");
        assert_string_equal(owner, "core");
    }
    (*n)++;
    return 0;
}

static int stop_at_two(void *arg, const char *method, const char *pattern, const char *owner)
{
    int *n = arg;
    return ++*n == 2 ? 1 : 0;
}

static void test_route_each(void **state)
{
    int n = 0;
    assert_int_equal(sp__http_route_each(count_route, &n), 0);
    assert_int_equal(n, 8); /* 3 built-in + 5 */
    n = 0;
    assert_int_equal(sp__http_route_each(stop_at_two, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(sp__http_route_each(NULL, NULL), SP_EINVAL);
}

static void test_literal_over_param(void **state)
{
    assert_int_equal(run("POST", "/contacts/bulk"), 200);
    assert_string_equal(g_which, "bulk");
    assert_string_equal(g_seen_route, "/contacts/bulk");
    /* GET has no literal route: the parameter route takes "bulk". */
    assert_int_equal(run("GET", "/contacts/bulk"), 200);
    assert_string_equal(g_which, "contact");
    assert_string_equal(g_seen_param, "bulk");
    assert_string_equal(g_seen_route, "/contacts/{id}");
    assert_int_equal(run("GET", "/contacts/42?x=1"), 200);
    assert_string_equal(g_seen_param, "42");
    assert_int_equal(run("GET", "/contacts"), 200);
    assert_string_equal(g_which, "list");
    assert_int_equal(run("GET", "/"), 200);
    assert_string_equal(g_which, "root");
    assert_int_equal(run("GET", "/?a=b"), 200);
    assert_string_equal(g_which, "root");
    /* Absolute form targets route by their path. */
    assert_int_equal(run("GET", "http://example.com/contacts/7"), 200);
    assert_string_equal(g_seen_param, "7");
    assert_int_equal(run("GET", "http://example.com"), 200);
    assert_string_equal(g_which, "root");
    /* HEAD falls back to GET. */
    assert_int_equal(run("HEAD", "/contacts"), 200);
    assert_string_equal(g_which, "list");
}

static void test_404_405(void **state)
{
    assert_int_equal(run("GET", "/nope"), 404);
    assert_null(g_which);
    assert_string_equal(g_sent.body,
                        "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no such path\"}}");
    assert_true(has_header("Content-Type: application/json\r\n"));
    assert_int_equal(run("GET", "/contacts/"), 404);  /* empty parameter */
    assert_int_equal(run("GET", "/contacts/1/2"), 404);
    assert_int_equal(run("GET", "//"), 404);
    assert_int_equal(run("DELETE", "/contacts/1"), 405);
    assert_non_null(strstr(g_sent.body, "\"code\":\"METHOD_NOT_ALLOWED\""));
    assert_true(has_header("Allow: GET, PUT, HEAD\r\n"));
    assert_int_equal(run("GET", "/contacts/bulk"), 200);
    assert_int_equal(run("DELETE", "/contacts/bulk"), 405);
    assert_true(has_header("Allow: POST, GET, PUT, HEAD\r\n"));
    assert_int_equal(run("POST", "/healthz"), 405);
    assert_true(has_header("Allow: GET, HEAD\r\n"));
    /* 33 segments: more than any pattern may have. */
    assert_int_equal(
        run("GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6"), 404);
}

static void test_percent_decoding(void **state)
{
    assert_int_equal(run("GET", "/contacts/a%2Fb%20c"), 200);
    assert_string_equal(g_seen_param, "a/b c");
    assert_int_equal(run("GET", "/contacts/a+b"), 200);
    assert_string_equal(g_seen_param, "a+b"); /* '+' is literal in a path */
    assert_int_equal(run("GET", "/contacts/%e2%82%ac"), 200);
    assert_string_equal(g_seen_param, "\xe2\x82\xac");
    /* Bad escapes and NUL anywhere in the target are 400 before routing. */
    assert_int_equal(run("GET", "/contacts/%zz"), 400);
    assert_null(g_which);
    assert_non_null(strstr(g_sent.body, "\"code\":\"BAD_REQUEST\""));
    assert_int_equal(run("GET", "/contacts/%4"), 400);
    assert_int_equal(run("GET", "/contacts/%"), 400);
    assert_int_equal(run("GET", "/contacts/%00"), 400);
    assert_int_equal(run("GET", "/contacts/1?a=%0"), 400);
    assert_int_equal(run("GET", "/contacts/1?a=%00"), 400);
    assert_int_equal(run("GET", "/contacts/1?a=\x01"), 400);
    assert_int_equal(run("GET", "*"), 400);
    {
        static const char t[] = "/contacts/1\0/x";
        memset(&g_sent, 0, sizeof(g_sent));
        sp__http_dispatch(
            sp__http_req_new(NULL, &g_tr, NULL, "GET", t, sizeof(t) - 1, "127.0.0.1"));
        assert_int_equal(g_sent.status, 400);
    }
}

static void test_query(void **state)
{
    sp_http_req_t *r;
    g_keep = true;
    run("GET", "/contacts/1?a=1&b=hello+world&c=%41%42&flag&&a=2&e=&x%3Dy=z");
    r = g_kept;
    assert_non_null(r);
    assert_string_equal(sp__http_query(r, "a"), "1"); /* the first wins */
    assert_string_equal(sp__http_query(r, "b"), "hello world");
    assert_string_equal(sp__http_query(r, "c"), "AB");
    assert_string_equal(sp__http_query(r, "flag"), "");
    assert_string_equal(sp__http_query(r, "e"), "");
    assert_string_equal(sp__http_query(r, "x=y"), "z");
    assert_null(sp__http_query(r, "missing"));
    assert_null(sp__http_query(r, NULL));
    assert_string_equal(sp__http_path(r), "/contacts/1");
    assert_string_equal(sp__http_method(r), "GET");
    assert_string_equal(sp__http_remote(r), "127.0.0.1:5555");
    assert_int_equal(sp__http_respond(r, 204, NULL, NULL, 0), 0);
    assert_int_equal(g_sent.status, 204);
    assert_null(strstr(g_sent.headers, "Content-Length"));
    /* No query at all. */
    run("GET", "/contacts/2");
    assert_null(sp__http_query(g_kept, "a"));
    assert_int_equal(sp__http_respond(g_kept, 200, NULL, NULL, 0), 0);
}

static void test_headers_and_body(void **state)
{
    sp_http_req_t *r = mkreq("PUT", "/contacts/9");
    char *body = malloc(5);
    size_t blen;
    assert_non_null(body);
    memcpy(body, "hello", 5);
    assert_int_equal(sp__http_req_add_header(r, "Content-Type", 12, "text/plain", 10), 0);
    assert_int_equal(sp__http_req_add_header(r, "X-Dup", 5, "one", 3), 0);
    assert_int_equal(sp__http_req_add_header(r, "x-dup", 5, "two", 3), 0);
    assert_int_equal(sp__http_req_add_header(r, NULL, 0, "v", 1), SP_EINVAL);
    assert_int_equal(sp__http_req_set_body(r, NULL, 3), SP_EINVAL);
    assert_int_equal(sp__http_req_set_body(r, body, 5), 0);
    g_keep = true;
    sp__http_dispatch(r);
    assert_ptr_equal(g_kept, r);
    assert_string_equal(sp__http_header(r, "content-type"), "text/plain");
    assert_string_equal(sp__http_header(r, "X-DUP"), "one");
    assert_null(sp__http_header(r, "Absent"));
    assert_memory_equal(sp__http_body(r, &blen), "hello", 6); /* NUL-terminated */
    assert_int_equal(blen, 5);
    /* After dispatch the ingress may only abort. */
    assert_int_equal(sp__http_req_add_header(r, "A", 1, "b", 1), SP_ESTATE);
    assert_int_equal(sp__http_req_set_body(r, NULL, 0), SP_ESTATE);
    /* Response header validation. */
    assert_int_equal(sp__http_set_header(r, "X-Ok", "fine value"), 0);
    assert_int_equal(sp__http_set_header(r, "X-Bad", "a\r\nSet-Cookie: x"), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "X-Bad", "a\nb"), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "X Bad", "v"), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "X-Bad:", "v"), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "", "v"), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "X-Bad\r", "v"), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "X-Bad", NULL), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "Content-Length", "5"), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "transfer-encoding", "chunked"), SP_EINVAL);
    assert_int_equal(sp__http_set_header(r, "X-Frame-Options", "SAMEORIGIN"), 0);
    assert_int_equal(sp__http_respond(r, 201, "application/json", "{}", 2), 0);
    assert_int_equal(g_sent.status, 201);
    assert_string_equal(g_sent.body, "{}");
    assert_true(has_header("Content-Type: application/json\r\n"));
    assert_true(has_header("Content-Length: 2\r\n"));
    assert_true(has_header("X-Content-Type-Options: nosniff\r\n"));
    assert_true(has_header("Referrer-Policy: strict-origin-when-cross-origin\r\n"));
    assert_true(has_header("X-Ok: fine value\r\n"));
    /* The handler's own X-Frame-Options replaces the default. */
    assert_true(has_header("X-Frame-Options: SAMEORIGIN\r\n"));
    assert_null(strstr(g_sent.headers, "DENY"));
    assert_null(strstr(g_sent.headers, "X-Bad"));
}

static void test_respond_once_and_abort(void **state)
{
    sp_http_req_t *r;
    g_keep = true;
    run("GET", "/contacts/1");
    r = g_kept;
    assert_int_equal(g_sent.calls, 0);
    assert_int_equal(sp__http_respond(r, 200, "text/plain", "a", 1), 0);
    assert_int_equal(g_sent.calls, 1);
    /* The request is gone: a second answer is refused without touching it. */
    assert_int_equal(sp__http_respond(r, 200, "text/plain", "b", 1), SP_ESTATE);
    assert_int_equal(sp__http_set_header(r, "X-A", "b"), SP_EINVAL);
    assert_int_equal(g_sent.calls, 1);
    assert_int_equal(sp__http_respond(NULL, 200, NULL, NULL, 0), SP_ESTATE);

    /* Abort, then the handler's answer only frees (ASan checks the leak). */
    run("GET", "/contacts/2");
    r = g_kept;
    sp__http_req_abort(r);
    assert_int_equal(sp__http_respond(r, 200, "text/plain", "late", 4), 0);
    assert_int_equal(g_sent.calls, 0);
    assert_int_equal(sp__http_respond(r, 200, "text/plain", "late", 4), SP_ESTATE);
    sp__http_req_abort(r); /* after the end: ignored */

    /* Aborting a request never dispatched frees it at once. */
    r = mkreq("GET", "/contacts/3");
    sp__http_req_abort(r);
    assert_int_equal(sp__http_respond(r, 200, NULL, NULL, 0), SP_ESTATE);

    /* A broken answer still ends the request, as a 500. */
    run("GET", "/contacts/4");
    assert_int_equal(sp__http_respond(g_kept, 99, NULL, NULL, 0), SP_EINVAL);
    assert_int_equal(g_sent.status, 500);
    run("GET", "/contacts/5");
    assert_int_equal(sp__http_respond(g_kept, 200, "text/plain\r\nX: y", "a", 1), SP_EINVAL);
    assert_int_equal(g_sent.status, 500);
    assert_null(strstr(g_sent.headers, "X: y"));

    /* One never answered: sp__http_free (teardown) releases it. */
    run("GET", "/contacts/6");
    assert_non_null(g_kept);
}

static void test_request_id(void **state)
{
    static const char *const bad[] = {
        "", "has space", "semi;colon", "a\x01", "\xc3\xa9t\xc3\xa9",
        "0123456789012345678901234567890123456789012345678901234567890123X",
    };
    sp_http_req_t *r = mkreq("GET", "/healthz");
    char a[32], b[32];
    assert_int_equal(sp__http_req_add_header(r, "x-request-id", 12, "abc.DEF_1-2", 11), 0);
    sp__http_dispatch(r);
    assert_int_equal(g_sent.status, 200);
    assert_true(has_header("X-Request-Id: abc.DEF_1-2\r\n"));
    /* 64 characters is still fine. */
    r = mkreq("GET", "/healthz");
    assert_int_equal(
        sp__http_req_add_header(
            r, "X-Request-Id", 12,
            "0123456789012345678901234567890123456789012345678901234567890123", 64),
        0);
    sp__http_dispatch(r);
    assert_true(has_header("X-Request-Id: 0123456789012345678901234567890123456789"
                           "012345678901234567890123\r\n"));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *v;
        r = mkreq("GET", "/healthz");
        assert_int_equal(sp__http_req_add_header(r, "X-Request-Id", 12, bad[i], strlen(bad[i])),
                         0);
        sp__http_dispatch(r);
        v = strstr(g_sent.headers, "X-Request-Id: ");
        assert_non_null(v);
        v += 14;
        assert_int_equal(strspn(v, "0123456789abcdef"), 16);
        assert_memory_equal(v + 16, "\r\n", 2);
    }
    run("GET", "/healthz");
    snprintf(a, sizeof(a), "%.16s", strstr(g_sent.headers, "X-Request-Id: ") + 14);
    run("GET", "/healthz");
    snprintf(b, sizeof(b), "%.16s", strstr(g_sent.headers, "X-Request-Id: ") + 14);
    assert_string_not_equal(a, b);
}

static void test_builtins_and_metrics(void **state)
{
    char *text;
    size_t len;
    assert_int_equal(run("GET", "/healthz"), 200);
    assert_string_equal(g_sent.body, "{\"status\":\"ok\"}");
    assert_int_equal(run("GET", "/readyz"), 200);
    assert_string_equal(g_sent.body, "{\"status\":\"ready\"}");
    assert_int_equal(run("HEAD", "/healthz"), 200);
    assert_true(has_header("Content-Length: 15\r\n"));
    run("GET", "/nope");
    run("GET", "/contacts/1");
    run("GET", "/contacts/2");
    assert_int_equal(run("GET", "/metrics"), 200);
    assert_true(has_header("Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(g_sent.body, "# TYPE sendpipe_http_requests_total counter\n"));
    assert_non_null(
        strstr(g_sent.body, "sendpipe_http_requests_total{route=\"/healthz\",status=\"200\"} 2\n"));
    assert_non_null(strstr(g_sent.body,
                           "sendpipe_http_requests_total{route=\"/contacts/{id}\",status=\"200\"}"
                           " 2\n"));
    assert_non_null(
        strstr(g_sent.body, "sendpipe_http_requests_total{route=\"none\",status=\"404\"} 1\n"));
    /* The /metrics request itself is counted when it ends, after its text. */
    assert_null(strstr(g_sent.body, "route=\"/metrics\""));
    assert_int_equal(sp__http_metrics(&text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_non_null(
        strstr(text, "sendpipe_http_requests_total{route=\"/metrics\",status=\"200\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE sendpipe_http_request_duration_seconds histogram\n"));
    assert_non_null(strstr(text, "sendpipe_http_request_duration_seconds_bucket{route=\"/contacts/"
                                 "{id}\",status=\"200\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(text, "sendpipe_http_request_duration_seconds_count{route=\"/contacts/"
                                 "{id}\",status=\"200\"} 2\n"));
    assert_non_null(strstr(text, "le=\"0.001\"}"));
    assert_non_null(strstr(text, "le=\"10\"}"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_patterns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_each, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literal_over_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_405, setup, teardown),
        cmocka_unit_test_setup_teardown(test_percent_decoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_respond_once_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builtins_and_metrics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
