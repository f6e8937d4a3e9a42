/* SPDX-License-Identifier: Apache-2.0 */
/* unit.fetch: the core's outbound HTTP (core/src/fetch.c, libcurl multi on
 * libuv) against a small HTTP/1.1 server on loopback run by this test on
 * its own threads: answers, copied request bodies, headers of the final
 * response, redirects (not followed unless asked), the body cap, timeouts,
 * refused connections, cancel (unknown, pending, twice), callbacks never
 * inside http_fetch, and shutdown completing what is left with SP_ECANCELED
 * and closing every handle. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sp_core/fetch.h"

static int g_port;

/* ---------------------------------------------------------------------- */
/* The server: one thread per connection, Connection: close. */

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, int code, const char *extra, const char *body, size_t blen)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", code,
                     blen, extra);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, blen);
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    size_t len = 0;
    char *end = NULL;
    char method[16] = "", path[256] = "";
    size_t clen = 0;
    while (end == NULL && len < sizeof(buf) - 1) {
        ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0) {
            close(fd);
            return NULL;
        }
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL) {
        close(fd);
        return NULL;
    }
    sscanf(buf, "%15s %255s", method, path);
    {
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (cl != NULL && cl < end) {
            clen = strtoul(cl + 17, NULL, 10);
        }
    }
    end += 4;
    while ((size_t)(buf + len - end) < clen && len < sizeof(buf) - 1) {
        ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    if (strcmp(path, "/ok") == 0) {
        respond(fd, 200, "X-Test: yes\r\n", "hello", 5);
    } else if (strcmp(path, "/echo") == 0) {
        char extra[64];
        snprintf(extra, sizeof(extra), "X-Method: %s\r\n", method);
        respond(fd, 201, extra, end, clen);
    } else if (strcmp(path, "/redirect") == 0) {
        respond(fd, 302, "Location: /ok\r\n", "", 0);
    } else if (strcmp(path, "/redirect-ftp") == 0) {
        respond(fd, 302, "Location: ftp://127.0.0.1/x\r\n", "", 0);
    } else if (strcmp(path, "/loop") == 0) {
        respond(fd, 302, "Location: /loop\r\n", "", 0);
    } else if (strcmp(path, "/big") == 0) {
        size_t n = (size_t)2 << 20;
        char *b = calloc(1, n);
        respond(fd, 200, "", b, n);
        free(b);
    } else if (strcmp(path, "/stream") == 0) {
        /* no Content-Length: the cap must stop it while reading */
        const char *h = "HTTP/1.1 200 X\r\nConnection: close\r\n\r\n";
        char chunk[4096];
        memset(chunk, 'x', sizeof(chunk));
        send_all(fd, h, strlen(h));
        for (int i = 0; i < 64; i++) {
            send_all(fd, chunk, sizeof(chunk));
        }
    } else if (strcmp(path, "/slow") == 0) {
        /* never answers: wait until the client goes away */
        while (recv(fd, buf, sizeof(buf), 0) > 0) {
        }
    } else {
        respond(fd, 404, "", "no", 2);
    }
    close(fd);
    return NULL;
}

static void *server_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        pthread_t t;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) == 0) {
            pthread_detach(t);
        } else {
            close(fd);
        }
    }
    return NULL;
}

static int start_server(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    pthread_t t;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 64) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
        return -1;
    }
    if (pthread_create(&t, NULL, server_main, (void *)(intptr_t)lfd) != 0) {
        return -1;
    }
    pthread_detach(t);
    return ntohs(a.sin_port);
}

/* ---------------------------------------------------------------------- */
/* Client side */

typedef struct result {
    int calls;
    int status;
    long http;
    char body[256];
    size_t body_len;
    char headers[1024];
    char error[256];
} result_t;

static void on_done(void *arg, const sp_fetch_res_t *res)
{
    result_t *r = arg;
    r->calls++;
    r->status = res->status;
    r->http = res->http_status;
    r->body_len = res->body_len;
    snprintf(r->body, sizeof(r->body), "%.*s", (int)(res->body_len < 255 ? res->body_len : 255),
             (const char *)res->body);
    snprintf(r->headers, sizeof(r->headers), "%s", res->headers);
    snprintf(r->error, sizeof(r->error), "%s", res->error);
    assert_int_equal(((const char *)res->body)[res->body_len], '\0');
    assert_int_equal(strlen(res->headers), res->headers_len);
}

static uv_loop_t g_loop;

static void url(char *out, size_t n, const char *path)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", g_port, path);
}

static int start(const char *method, const char *path, const char *body, uint32_t flags,
                 uint32_t timeout_ms, size_t max_body, result_t *r, uint64_t *h)
{
    char u[128];
    const char *hdrs[] = {"X-Client: test", NULL};
    url(u, sizeof(u), path);
    sp_fetch_req_t req = {.size = sizeof(req), .method = method, .url = u, .headers = hdrs,
                          .body = body, .body_len = body != NULL ? strlen(body) : 0,
                          .timeout_ms = timeout_ms, .flags = flags, .max_body = max_body};
    return sp__fetch_start(NULL, &req, on_done, r, h);
}

static void run_until(result_t *r, int calls)
{
    for (int i = 0; i < 2000 && r->calls < calls; i++) {
        uv_run(&g_loop, UV_RUN_ONCE);
    }
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(uv_loop_init(&g_loop), 0);
    assert_int_equal(sp__fetch_init(&g_loop), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sp__fetch_shutdown();
    for (int i = 0; i < 16 && uv_run(&g_loop, UV_RUN_NOWAIT) != 0; i++) {
    }
    /* every handle the fetch code opened is closed */
    assert_int_equal(uv_loop_close(&g_loop), 0);
    return 0;
}

static void test_get_ok(void **state)
{
    result_t r = {0};
    uint64_t h = 0;
    (void)state;
    assert_int_equal(start("GET", "/ok", NULL, 0, 0, 0, &r, &h), 0);
    assert_true(h != 0);
    /* never called back from inside http_fetch */
    assert_int_equal(r.calls, 0);
    run_until(&r, 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.http, 200);
    assert_string_equal(r.body, "hello");
    assert_non_null(strstr(r.headers, "X-Test: yes"));
    assert_string_equal(r.error, "");
    /* cancelling a finished fetch is harmless */
    sp__fetch_cancel(h);
    assert_int_equal(sp__fetch_active(), 0);
}

static void test_post_body_copied(void **state)
{
    result_t r = {0};
    char body[] = "{\"a\":1}";
    (void)state;
    assert_int_equal(start("POST", "/echo", body, 0, 0, 0, &r, NULL), 0);
    memset(body, 'Z', sizeof(body) - 1); /* the caller's buffer is not used later */
    run_until(&r, 1);
    assert_int_equal(r.http, 201);
    assert_string_equal(r.body, "{\"a\":1}");
    assert_non_null(strstr(r.headers, "X-Method: POST"));
}

static void test_put_method(void **state)
{
    result_t r = {0};
    (void)state;
    assert_int_equal(start("PUT", "/echo", "x", 0, 0, 0, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.http, 201);
    assert_non_null(strstr(r.headers, "X-Method: PUT"));
}

static void test_redirect(void **state)
{
    result_t r = {0};
    (void)state;
    assert_int_equal(start("GET", "/redirect", NULL, 0, 0, 0, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.http, 302); /* a 3xx is the answer */
    memset(&r, 0, sizeof(r));
    assert_int_equal(start("GET", "/redirect", NULL, SP_FETCH_FOLLOW, 0, 0, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.http, 200);
    assert_string_equal(r.body, "hello");
    /* only the final response's headers */
    assert_null(strstr(r.headers, "302"));
    assert_non_null(strstr(r.headers, "X-Test: yes"));
    /* never to another protocol, never forever */
    memset(&r, 0, sizeof(r));
    assert_int_equal(start("GET", "/redirect-ftp", NULL, SP_FETCH_FOLLOW, 0, 0, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.status, SP_EBUSY);
    memset(&r, 0, sizeof(r));
    assert_int_equal(start("GET", "/loop", NULL, SP_FETCH_FOLLOW, 0, 0, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.status, SP_EBUSY);
    assert_int_equal(r.http, 0);
}

static void test_body_cap(void **state)
{
    result_t r = {0};
    (void)state;
    /* 2 MiB with Content-Length against the 1 MiB default */
    assert_int_equal(start("GET", "/big", NULL, 0, 0, 0, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.status, SP_ETOOBIG);
    assert_int_equal(r.http, 0);
    assert_int_equal(r.body_len, 0);
    /* streamed without a length, cap 10 KiB: nothing half-read is handed out */
    memset(&r, 0, sizeof(r));
    assert_int_equal(start("GET", "/stream", NULL, 0, 0, 10240, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.status, SP_ETOOBIG);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(r.body, "");
    assert_string_equal(r.headers, "");
    /* under the cap */
    memset(&r, 0, sizeof(r));
    assert_int_equal(start("GET", "/ok", NULL, 0, 0, 5, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.status, 0);
}

static void test_timeout(void **state)
{
    result_t r = {0};
    uint64_t t0 = uv_hrtime();
    (void)state;
    assert_int_equal(start("GET", "/slow", NULL, 0, 300, 0, &r, NULL), 0);
    run_until(&r, 1);
    assert_int_equal(r.status, SP_ETIMEDOUT);
    assert_true(r.error[0] != '\0');
    assert_true((uv_hrtime() - t0) / 1000000 >= 250);
    assert_true((uv_hrtime() - t0) / 1000000 < 5000);
}

static void test_refused(void **state)
{
    result_t r = {0};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    char u[128];
    (void)state;
    /* a port that was just free: nobody listens */
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s);
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/", ntohs(a.sin_port));
    sp_fetch_req_t req = {.size = sizeof(req), .method = "GET", .url = u};
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), 0);
    assert_int_equal(r.calls, 0);
    run_until(&r, 1);
    assert_int_equal(r.status, SP_EBUSY);
}

static void test_invalid(void **state)
{
    result_t r = {0};
    const char *bad_hdr[] = {"X-Evil: a\r\nInjected: b", NULL};
    (void)state;
    sp_fetch_req_t req = {.size = sizeof(req), .method = "GET", .url = "ftp://127.0.0.1/"};
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), SP_EINVAL);
    req.url = "127.0.0.1/x";
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), SP_EINVAL);
    req.url = "http://127.0.0.1/a b";
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), SP_EINVAL);
    req.url = "http://127.0.0.1/";
    req.method = "G ET";
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), SP_EINVAL);
    req.method = "GET";
    req.headers = bad_hdr;
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), SP_EINVAL);
    req.headers = NULL;
    req.size = 4;
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), SP_EINVAL);
    assert_int_equal(sp__fetch_active(), 0);
    assert_int_equal(r.calls, 0);
}

static void test_cancel(void **state)
{
    result_t r = {0}, r2 = {0};
    uint64_t h = 0;
    (void)state;
    sp__fetch_cancel(0);
    sp__fetch_cancel(987654321);
    assert_int_equal(start("GET", "/slow", NULL, 0, 0, 0, &r, &h), 0);
    for (int i = 0; i < 5; i++) {
        uv_run(&g_loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(sp__fetch_active(), 1);
    sp__fetch_cancel(h);
    sp__fetch_cancel(h);
    assert_int_equal(sp__fetch_active(), 0);
    /* cancel right after start, before the loop ran */
    assert_int_equal(start("GET", "/ok", NULL, 0, 0, 0, &r, &h), 0);
    sp__fetch_cancel(h);
    /* another fetch still completes, the cancelled ones never call back */
    assert_int_equal(start("GET", "/ok", NULL, 0, 0, 0, &r2, NULL), 0);
    run_until(&r2, 1);
    assert_int_equal(r2.http, 200);
    for (int i = 0; i < 20; i++) {
        uv_run(&g_loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(r.calls, 0);
}

static void test_shutdown(void **state)
{
    result_t r = {0};
    uv_loop_t loop;
    (void)state;
    /* a loop of its own, as the core's at exit */
    sp__fetch_shutdown();
    for (int i = 0; i < 16 && uv_run(&g_loop, UV_RUN_NOWAIT) != 0; i++) {
    }
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sp__fetch_init(&loop), 0);
    char u[128];
    url(u, sizeof(u), "/slow");
    sp_fetch_req_t req = {.size = sizeof(req), .method = "GET", .url = u};
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), 0);
    for (int i = 0; i < 10; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    sp__fetch_shutdown();
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, SP_ECANCELED);
    assert_int_equal(sp__fetch_start(NULL, &req, on_done, &r, NULL), SP_ESHUTDOWN);
    sp__fetch_cancel(1);
    for (int i = 0; i < 16 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++) {
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    /* the fixture's teardown expects a live module on g_loop again */
    assert_int_equal(sp__fetch_init(&g_loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_body_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
    };
    g_port = start_server();
    if (g_port <= 0) {
        fprintf(stderr, "cannot start the loopback server\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
