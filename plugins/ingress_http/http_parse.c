/* SPDX-License-Identifier: Apache-2.0 */
/* libhttp-parser glue for the HTTP ingress: builds one hp_req_t per request
 * from the parser's callbacks and enforces the header and body limits. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_parse.h"

#define BODY_FIRST_CHUNK (16u * 1024u) /* grow bodies as bytes come, not as declared */

static void fail(hp_t *h, int status, const char *code, const char *msg)
{
    if (h->err_status == 0) {
        h->err_status = status;
        h->err_code = code;
        h->err_msg = msg;
    }
}

static void req_free(const hp_ops_t *ops, hp_req_t *r)
{
    if (r == NULL) {
        return;
    }
    if (r->body != NULL) {
        ops->free(r->body);
    }
    free(r->arena);
    free(r->hdr);
    free(r);
}

void hp_req_free(const hp_ops_t *ops, hp_req_t *r)
{
    req_free(ops, r);
}

/* Append to the arena; the arena is always NUL-terminated. */
static int arena_add(hp_req_t *r, const char *s, size_t n)
{
    if (r->acap - r->alen <= n) {
        size_t ncap = r->acap > 0 ? r->acap : 512;
        char *na;
        while (ncap - r->alen <= n) {
            ncap *= 2;
        }
        na = realloc(r->arena, ncap);
        if (na == NULL) {
            return -1;
        }
        r->arena = na;
        r->acap = ncap;
    }
    memcpy(r->arena + r->alen, s, n);
    r->alen += n;
    r->arena[r->alen] = '\0';
    return 0;
}

/* Terminate the current string in the arena (names and values are stored
 * NUL-separated). */
static int arena_end(hp_req_t *r)
{
    return arena_add(r, "", 1);
}

static int count_header(hp_t *h, size_t n)
{
    h->header_bytes += n;
    if (h->header_bytes > h->max_header) {
        fail(h, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE", "request headers are too large");
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    hp_t *h = p->data;
    hp_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
        return -1;
    }
    r->content_length = UINT64_MAX;
    h->cur = r;
    h->header_bytes = 0;
    h->in_body = false;
    if (h->ops->begin != NULL) {
        h->ops->begin(h->arg);
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    hp_t *h = p->data;
    hp_req_t *r = h->cur;
    if (r->tlen + len > h->max_header) {
        fail(h, 414, "URI_TOO_LONG", "request target is too long");
        return -1;
    }
    if (count_header(h, len) < 0) {
        return -1;
    }
    if (arena_add(r, at, len) < 0) {
        fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
        return -1;
    }
    r->tlen += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    hp_t *h = p->data;
    hp_req_t *r = h->cur;
    if (count_header(h, len) < 0) {
        return -1;
    }
    if (h->in_body) {
        return 0; /* chunked trailer fields are counted, never used */
    }
    if (r->nhdr == 0 || r->in_value) {
        /* A new header starts: close the previous string (the target or
         * the last value), 4 bytes for ": " and CRLF count as well. */
        if (count_header(h, 4) < 0) {
            return -1;
        }
        if (r->nhdr == r->caphdr) {
            size_t ncap = r->caphdr > 0 ? r->caphdr * 2 : 16;
            hp_hdr_t *nh = realloc(r->hdr, ncap * sizeof(*nh));
            if (nh == NULL) {
                fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
                return -1;
            }
            r->hdr = nh;
            r->caphdr = ncap;
        }
        if (arena_end(r) < 0) {
            fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
            return -1;
        }
        memset(&r->hdr[r->nhdr], 0, sizeof(r->hdr[0]));
        r->hdr[r->nhdr].name = r->alen;
        r->nhdr++;
        r->in_value = false;
    }
    if (arena_add(r, at, len) < 0) {
        fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
        return -1;
    }
    r->hdr[r->nhdr - 1].nlen += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    hp_t *h = p->data;
    hp_req_t *r = h->cur;
    hp_hdr_t *hd;
    if (count_header(h, len) < 0) {
        return -1;
    }
    if (h->in_body || r->nhdr == 0) {
        return 0;
    }
    hd = &r->hdr[r->nhdr - 1];
    if (!r->in_value) {
        if (arena_end(r) < 0) {
            fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
            return -1;
        }
        hd->value = r->alen;
        r->in_value = true;
    }
    if (arena_add(r, at, len) < 0) {
        fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
        return -1;
    }
    hd->vlen += len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    hp_t *h = p->data;
    hp_req_t *r = h->cur;
    const char *expect;
    int st;

    /* A header whose value was empty got no value callback. */
    for (size_t i = 0; i < r->nhdr; i++) {
        if (r->hdr[i].value == 0) {
            if (arena_end(r) < 0) {
                fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
                return -1;
            }
            r->hdr[i].value = r->alen;
        }
    }
    if (arena_end(r) < 0) {
        fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
        return -1;
    }
    strncpy(r->method, http_method_str((enum http_method)p->method), sizeof(r->method) - 1);
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    if (p->http_major != 1) {
        fail(h, 505, "HTTP_VERSION_NOT_SUPPORTED", "only HTTP/1.0 and HTTP/1.1 are served");
        return -1;
    }
    r->chunked = (p->flags & F_CHUNKED) != 0;
    if (!r->chunked && p->content_length != ULLONG_MAX) {
        r->content_length = p->content_length;
    }
    /* Upgrades (CONNECT, WebSocket) are not served: the request is answered
     * and the connection closed, since what follows is not HTTP. */
    r->keep_alive = http_should_keep_alive(p) != 0 && p->upgrade == 0;
    h->in_body = true;
    if (r->content_length != UINT64_MAX && r->content_length > h->max_body) {
        fail(h, 413, "PAYLOAD_TOO_LARGE", "request body is too large");
        return -1;
    }
    expect = hp_req_header(r, "Expect");
    if (expect != NULL) {
        if (strcasecmp(expect, "100-continue") != 0) {
            fail(h, 417, "EXPECTATION_FAILED", "only 100-continue is understood");
            return -1;
        }
        r->expect_continue = p->http_minor >= 1;
    }
    if (h->ops->headers != NULL) {
        st = h->ops->headers(h->arg, r);
        if (st != 0) {
            fail(h, st, st == 413 ? "PAYLOAD_TOO_LARGE" : "BAD_REQUEST", "request refused");
            return -1;
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    hp_t *h = p->data;
    hp_req_t *r = h->cur;
    if (len > h->max_body - r->blen) {
        fail(h, 413, "PAYLOAD_TOO_LARGE", "request body is too large");
        return -1;
    }
    if (r->bcap - r->blen < len) {
        size_t need = r->blen + len, ncap = r->bcap > 0 ? r->bcap : BODY_FIRST_CHUNK;
        void *nb;
        while (ncap < need) {
            ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
        }
        if (r->content_length != UINT64_MAX && ncap > r->content_length &&
            need <= r->content_length) {
            ncap = (size_t)r->content_length; /* never more than declared */
        }
        nb = r->body != NULL ? h->ops->realloc(r->body, ncap) : h->ops->alloc(ncap);
        if (nb == NULL) {
            fail(h, 503, "SERVICE_UNAVAILABLE", "out of memory");
            return -1;
        }
        r->body = nb;
        r->bcap = ncap;
    }
    memcpy(r->body + r->blen, at, len);
    r->blen += len;
    if (h->ops->progress != NULL) {
        h->ops->progress(h->arg);
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hp_t *h = p->data;
    hp_req_t *r = h->cur;
    h->cur = NULL;
    h->in_body = false;
    if (h->ops->request(h->arg, r)) {
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings g_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void hp_global_init(size_t max_header)
{
    /* The parser's own limit counts raw bytes (request line, whitespace);
     * keep it a little above ours so ours decides in the common case. */
    http_parser_set_max_header_size((uint32_t)(max_header > UINT32_MAX - 1024
                                                   ? UINT32_MAX
                                                   : max_header + 1024));
}

void hp_init(hp_t *h, const hp_ops_t *ops, void *arg, size_t max_header, size_t max_body)
{
    memset(h, 0, sizeof(*h));
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->parser.data = h;
    h->ops = ops;
    h->arg = arg;
    h->max_header = max_header;
    h->max_body = max_body;
}

size_t hp_feed(hp_t *h, const char *data, size_t len)
{
    size_t n;
    enum http_errno e;
    if (h->err_status != 0 || h->upgrade || h->paused || len == 0) {
        return 0;
    }
    n = http_parser_execute(&h->parser, &g_settings, data, len);
    e = HTTP_PARSER_ERRNO(&h->parser);
    if (e == HPE_PAUSED) {
        h->paused = true;
        return n;
    }
    if (e != HPE_OK) {
        if (e == HPE_HEADER_OVERFLOW) {
            fail(h, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE", "request headers are too large");
        } else if (e == HPE_INVALID_METHOD) {
            fail(h, 501, "NOT_IMPLEMENTED", "unknown request method");
        } else {
            fail(h, 400, "BAD_REQUEST", "malformed request");
        }
        return n;
    }
    if (h->parser.upgrade) {
        h->upgrade = true;
    }
    return n;
}

void hp_resume(hp_t *h)
{
    if (h->paused) {
        http_parser_pause(&h->parser, 0);
        h->paused = false;
    }
}

bool hp_in_request(const hp_t *h)
{
    return h->cur != NULL;
}

void hp_free(hp_t *h)
{
    req_free(h->ops, h->cur);
    h->cur = NULL;
}

const char *hp_req_target(const hp_req_t *r)
{
    return r->arena != NULL ? r->arena : "";
}

const char *hp_req_header(const hp_req_t *r, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < r->nhdr; i++) {
        if (r->hdr[i].nlen == nl && strncasecmp(r->arena + r->hdr[i].name, name, nl) == 0) {
            return r->arena + r->hdr[i].value;
        }
    }
    return NULL;
}
