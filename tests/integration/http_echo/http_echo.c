/* SPDX-License-Identifier: Apache-2.0 */
/* http_echo: a test-only plugin with routes for the HTTP ingress tests and
 * the HTTP benchmark:
 *
 *   POST /test/echo          -> 200 {"length":N,"sha256":"<hex>"} of the body
 *   GET  /test/slow?ms=N     -> 200 {"slept":N} after N ms (answer ordering)
 *   POST /test/submit        -> submits one message; 200 {"emailId":"..."}
 *                               once the commit is durable
 *   GET  /test/echo/{name}   -> 200 {"name":...,"q":...} (parameter, query)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <sp/sp_plugin.h>

typedef struct echo {
    sp_plugin_t *p;
    const sp_host_api_t *api;
} echo_t;

static const sp_host_api_t *g_api;

static void json_reply(sp_http_req_t *req, int status, const char *body)
{
    g_api->http_respond(req, status, "application/json", body, strlen(body));
}

static void h_echo(sp_http_req_t *req, void *ctx)
{
    size_t len;
    const unsigned char *b = g_api->http_body(req, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1], out[256];
    if (EVP_Digest(b, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        json_reply(req, 500, "{}");
        return;
    }
    for (unsigned int i = 0; i < mdlen; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    hex[2 * mdlen] = '\0';
    snprintf(out, sizeof(out), "{\"length\":%zu,\"sha256\":\"%s\"}", len, hex);
    json_reply(req, 200, out);
}

typedef struct slow {
    sp_http_req_t *req;
    long ms;
    sp_timer_t *t;
} slow_t;

static void slow_done(void *arg)
{
    slow_t *s = arg;
    char out[64];
    snprintf(out, sizeof(out), "{\"slept\":%ld}", s->ms);
    json_reply(s->req, 200, out);
    g_api->timer_stop(s->t);
    free(s);
}

static void h_slow(sp_http_req_t *req, void *ctx)
{
    echo_t *e = ctx;
    const char *q = g_api->http_query(req, "ms");
    slow_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        json_reply(req, 503, "{}");
        return;
    }
    s->req = req;
    s->ms = q != NULL ? strtol(q, NULL, 10) : 0;
    s->t = g_api->timer_start(e->p, (uint64_t)(s->ms > 0 ? s->ms : 0), 0, slow_done, s);
    if (s->t == NULL) {
        free(s);
        json_reply(req, 503, "{}");
    }
}

static void submitted(void *arg, const sp_submit_result_t *res, size_t n)
{
    sp_http_req_t *req = arg;
    char out[160];
    if (n == 1 && res[0].status == 0 && res[0].id != NULL) {
        snprintf(out, sizeof(out), "{\"emailId\":\"%s\"}", res[0].id);
        json_reply(req, 200, out);
    } else {
        json_reply(req, 503,
                   "{\"error\":{\"code\":\"SERVICE_UNAVAILABLE\",\"message\":\"not stored\"}}");
    }
}

static void h_submit(sp_http_req_t *req, void *ctx)
{
    echo_t *e = ctx;
    size_t len;
    const char *body = g_api->http_body(req, &len);
    sp_msg_t *m = g_api->msg_new();
    int rc;
    if (m == NULL || g_api->msg_set(m, SP_F_FROM, "bench@example.com", 17) < 0 ||
        g_api->msg_add(m, SP_F_TO, "sink@example.com", 16) < 0 ||
        g_api->msg_set(m, SP_F_SUBJECT, "http submit", 11) < 0 ||
        g_api->msg_set(m, SP_F_TEXT, body, len) < 0) {
        if (m != NULL) {
            g_api->msg_free(m);
        }
        json_reply(req, 503, "{}");
        return;
    }
    rc = g_api->submit(e->p, &m, 1, true, submitted, req);
    if (rc < 0) {
        g_api->msg_free(m);
        json_reply(req, 503,
                   "{\"error\":{\"code\":\"SERVICE_UNAVAILABLE\",\"message\":\"refused\"}}");
    }
}

static void h_name(sp_http_req_t *req, void *ctx)
{
    const char *name = g_api->http_param(req, "name");
    const char *q = g_api->http_query(req, "q");
    char out[512];
    /* Test data is plain ASCII; no JSON escaping needed here. */
    snprintf(out, sizeof(out), "{\"name\":\"%s\",\"q\":\"%s\",\"route\":\"%s\"}", name,
             q != NULL ? q : "", g_api->http_route_of(req));
    json_reply(req, 200, out);
}

static int echo_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    echo_t *e;
    int rc;
    if (!SP_API_HAS(api, http_respond)) {
        return SP_EABI;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return SP_ENOMEM;
    }
    e->p = p;
    e->api = api;
    g_api = api;
    rc = api->http_route(p, "POST", "/test/echo", h_echo, 0);
    if (rc == 0) {
        rc = api->http_route(p, "GET", "/test/slow", h_slow, 0);
    }
    if (rc == 0) {
        rc = api->http_route(p, "POST", "/test/submit", h_submit, 0);
    }
    if (rc == 0) {
        rc = api->http_route(p, "GET", "/test/echo/{name}", h_name, 0);
    }
    if (rc < 0) {
        free(e);
        return rc;
    }
    *ctx = e;
    return 0;
}

static void echo_fini(sp_plugin_t *p, void *ctx)
{
    free(ctx);
}

SP_PLUGIN_DEFINE(.name = "http_echo", .version = "test",
                 .description = "test routes for the HTTP ingress", .init = echo_init,
                 .fini = echo_fini);
