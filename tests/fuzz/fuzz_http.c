/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes through the HTTP ingress's request
 * parsing (plugins/ingress_http/http_parse.c over libhttp-parser), fed in
 * pieces and with pauses, and every complete request through the core's
 * route registry (target split, percent-decoding, query parsing, routing,
 * the response header block). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"
#include "sp_core/http.h"
#include "sp_core/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_http: %s\n", what);
        abort();
    }
}

typedef struct run {
    unsigned pause_every; /* pause after every Nth request (0: never) */
    unsigned nreq;
    unsigned answered;
} run_t;

static void fake_send(void *conn, sp_http_req_t *req, int status, const char *headers,
                      size_t hlen, const void *body, size_t blen)
{
    run_t *r = conn;
    check(status >= 200 && status <= 599, "status out of range");
    check(hlen >= 2 && memcmp(headers + hlen - 2, "\r\n", 2) == 0, "header block not ended");
    /* Every CR is part of a CRLF and every LF follows a CR: no injected
     * line can come out of request data. */
    for (size_t i = 0; i < hlen; i++) {
        if (headers[i] == '\r') {
            check(i + 1 < hlen && headers[i + 1] == '\n', "bare CR in headers");
        } else if (headers[i] == '\n') {
            check(i > 0 && headers[i - 1] == '\r', "bare LF in headers");
        } else {
            check(headers[i] != '\0', "NUL in headers");
        }
    }
    check(body != NULL || blen == 0, "body NULL with a length");
    r->answered++;
}

static const sp_http_transport_t g_tr = {.size = sizeof(sp_http_transport_t),
                                         .send = fake_send};

static void handler(sp_http_req_t *req, void *ctx)
{
    static const char *const names[] = {"a", "q", "", "x y", "id"};
    size_t blen;
    const char *v = sp__http_param(req, "id");
    check(v == NULL || sp__http_route_of(req) != NULL, "a parameter without a route");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        v = sp__http_query(req, names[i]);
        (void)v;
    }
    (void)sp__http_body(req, &blen);
    (void)sp__http_header(req, "content-type");
    /* Echo request data into a header: it must be refused if unsafe. */
    v = sp__http_query(req, "h");
    if (v != NULL) {
        (void)sp__http_set_header(req, "X-Echo", v);
    }
    (void)sp__http_respond(req, 200, "text/plain", "ok", 2);
}

static bool on_request(void *arg, hp_req_t *hr)
{
    run_t *r = arg;
    sp_http_req_t *req;
    check(hp_req_target(hr)[hr->tlen] == '\0', "target not terminated");
    check(strlen(hr->method) > 0, "empty method");
    for (size_t i = 0; i < hr->nhdr; i++) {
        check(hr->arena[hr->hdr[i].name + hr->hdr[i].nlen] == '\0', "name not terminated");
        check(hr->arena[hr->hdr[i].value + hr->hdr[i].vlen] == '\0', "value not terminated");
    }
    r->nreq++;
    req = sp__http_req_new(NULL, &g_tr, r, hr->method, hp_req_target(hr), hr->tlen,
                           "127.0.0.1:1");
    if (req != NULL) {
        for (size_t i = 0; i < hr->nhdr; i++) {
            (void)sp__http_req_add_header(req, hr->arena + hr->hdr[i].name, hr->hdr[i].nlen,
                                          hr->arena + hr->hdr[i].value, hr->hdr[i].vlen);
        }
        if (hr->body != NULL && sp__http_req_set_body(req, hr->body, hr->blen) == 0) {
            hr->body = NULL;
        }
        sp__http_dispatch(req);
    }
    hp_req_free(&(hp_ops_t){.free = free}, hr);
    return r->pause_every > 0 && r->nreq % r->pause_every == 0;
}

static const hp_ops_t g_ops = {
    .alloc = malloc, .realloc = realloc, .free = free, .request = on_request};

static void setup_once(void)
{
    static bool done;
    if (done) {
        return;
    }
    done = true;
    sp__log_set_level(SP_LOG_ERROR);
    hp_global_init(2048);
    check(sp__http_init(NULL) == 0, "http init");
    check(sp__http_route(NULL, "GET", "/x/{id}", handler, 0) == 0, "route");
    check(sp__http_route(NULL, "POST", "/x/{id}", handler, 0) == 0, "route");
    check(sp__http_route(NULL, "GET", "/x/lit", handler, 0) == 0, "route");
    check(sp__http_route(NULL, "GET", "/", handler, 0) == 0, "route");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_t r = {0};
    hp_t h;
    size_t step, off = 0, answered_before;

    setup_once();
    if (size < 2) {
        return 0;
    }
    /* Byte 0: piece size (1..256); byte 1: pause pattern. */
    step = (size_t)data[0] + 1;
    r.pause_every = data[1] % 4;
    data += 2;
    size -= 2;
    hp_init(&h, &g_ops, &r, 2048, 8192);
    answered_before = r.answered;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        size_t used = hp_feed(&h, (const char *)data + off, n);
        check(used <= n, "consumed more than given");
        off += used;
        if (h.err_status != 0) {
            check(h.err_status >= 400 && h.err_status <= 599, "error status");
            check(h.err_code != NULL && h.err_msg != NULL, "error without a code");
            break;
        }
        if (h.upgrade) {
            break;
        }
        if (h.paused) {
            hp_resume(&h);
        } else {
            check(used == n, "unpaused parser left bytes");
        }
    }
    hp_free(&h);
    check(r.answered - answered_before == r.nreq, "a request was not answered");
    return 0;
}
