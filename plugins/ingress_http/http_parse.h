/* SPDX-License-Identifier: Apache-2.0 */
/* Request parsing for the HTTP ingress: libhttp-parser driven over a byte
 * stream, with the size limits and the per-request bookkeeping (target,
 * headers, body, keep-alive, Expect). No libuv here, so the fuzz target
 * compiles it alone. */
#ifndef SP_INGRESS_HTTP_PARSE_H
#define SP_INGRESS_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

/* One header: offsets into the request's arena (names and values are
 * NUL-terminated there). */
typedef struct hp_hdr {
    size_t name, nlen;
    size_t value, vlen;
} hp_hdr_t;

/* One request, complete once handed to ops->request. */
typedef struct hp_req {
    char method[24];
    unsigned http_major, http_minor;
    char *arena;          /* target at offset 0, then header names and values */
    size_t alen, acap;
    size_t tlen;          /* target length */
    hp_hdr_t *hdr;
    size_t nhdr, caphdr;
    char *body;           /* from ops->alloc; the owner may take it (set NULL) */
    size_t blen, bcap;
    uint64_t content_length; /* declared, UINT64_MAX if none */
    bool chunked;
    bool keep_alive;      /* the connection may carry another request */
    bool expect_continue; /* "Expect: 100-continue" */
    bool in_value;        /* parsing: the last header callback was a value */
} hp_req_t;

/* What the owner does with parsing events. */
typedef struct hp_ops {
    /* Body buffers (the plugin passes api->alloc and friends, since the
     * body's ownership moves to the core). */
    void *(*alloc)(size_t n);
    void *(*realloc)(void *p, size_t n);
    void (*free)(void *p);
    /* The first byte of a request arrived. May be NULL. */
    void (*begin)(void *arg);
    /* Headers complete: 0 to read the body, or an HTTP status that refuses
     * the request (parsing stops with that error). May be NULL. */
    int (*headers)(void *arg, hp_req_t *r);
    /* Body bytes arrived (progress, for timeouts). May be NULL. */
    void (*progress)(void *arg);
    /* A request is complete; r is the owner's (release with hp_req_free).
     * Return true to pause parsing after it. */
    bool (*request)(void *arg, hp_req_t *r);
} hp_ops_t;

typedef struct hp {
    http_parser parser;
    const hp_ops_t *ops;
    void *arg;
    size_t max_header;  /* bytes of request line and headers */
    size_t max_body;
    hp_req_t *cur;      /* the request being parsed, or NULL between requests */
    size_t header_bytes;
    bool in_body;       /* headers of cur are complete */
    bool paused;
    bool upgrade;       /* the stream stopped being HTTP after the last request */
    int err_status;     /* 0, or the HTTP status to answer before closing */
    const char *err_code;
    const char *err_msg;
} hp_t;

/* Process-wide setup: libhttp-parser's own header limit is global. */
void hp_global_init(size_t max_header);

void hp_init(hp_t *h, const hp_ops_t *ops, void *arg, size_t max_header, size_t max_body);
/* Parse bytes. Returns how many were consumed: all of them, unless the
 * parser paused (h->paused; feed the rest after hp_resume), stopped after
 * an upgrade (h->upgrade) or failed (h->err_status set: answer it, close).
 * Callbacks of ops run inside. */
size_t hp_feed(hp_t *h, const char *data, size_t len);
void hp_resume(hp_t *h);
/* True while a request is partly read. */
bool hp_in_request(const hp_t *h);
/* Free the request in progress, if any. */
void hp_free(hp_t *h);

const char *hp_req_target(const hp_req_t *r);
const char *hp_req_header(const hp_req_t *r, const char *name);
void hp_req_free(const hp_ops_t *ops, hp_req_t *r);

#endif
