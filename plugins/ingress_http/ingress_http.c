/* SPDX-License-Identifier: Apache-2.0 */
/* ingress_http: the HTTP/1.1 server. It owns the listeners and connections
 * on the core's libuv loop, parses requests (http_parse.c), hands each one
 * to the core's route registry, and writes the answers back strictly in
 * request order per connection (pipelining), with limits and per-connection
 * timers so that one slow or hostile client cannot stall the others. On the
 * HTTPS listeners a TLS layer (tls.c) sits between the socket and the same
 * connection code. */
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <uv.h>

#include <sp/sp_plugin.h>

#include "http_parse.h"
#include "tls.h"

#define READ_BUF (64u * 1024u)            /* per connection */
#define WRITE_HIGH_WATER (1024u * 1024u)  /* stop parsing while more is unsent */
#define LINGER_MS 2000u                   /* read and drop after a final answer */
#define MAX_LISTENERS 16                  /* per list: listen, tls_listen */
#define HSTS "Strict-Transport-Security"

typedef struct hconf {
    char *listen;
    uint64_t max_header_size;
    uint64_t max_body_size;
    uint64_t header_timeout;
    uint64_t body_timeout;
    uint64_t keepalive_timeout;
    int64_t max_connections;
    int64_t max_pipeline;
    char *tls_listen;
    char *tls_cert;
    char *tls_key;
    char *tls_min_version;
} hconf_t;

static const sp_conf_item_t g_schema[] = {
    {SP_CONF_STR, "listen", offsetof(hconf_t, listen), "127.0.0.1:3000", 0,
     "address:port to listen on; several separated by commas ([::1]:3000 for IPv6)"},
    {SP_CONF_SIZE, "max_header_size", offsetof(hconf_t, max_header_size), "16K", 0,
     "largest request line plus headers (431 beyond)"},
    {SP_CONF_SIZE, "max_body_size", offsetof(hconf_t, max_body_size), "64M", 0,
     "largest request body (413 beyond)"},
    {SP_CONF_DURATION, "header_timeout", offsetof(hconf_t, header_timeout), "10s", 0,
     "time to receive a request's headers (408 beyond)"},
    {SP_CONF_DURATION, "body_timeout", offsetof(hconf_t, body_timeout), "30s", 0,
     "longest pause while a body arrives or an answer is sent (408 beyond)"},
    {SP_CONF_DURATION, "keepalive_timeout", offsetof(hconf_t, keepalive_timeout), "5s", 0,
     "idle time before a kept-alive connection is closed"},
    {SP_CONF_INT, "max_connections", offsetof(hconf_t, max_connections), "1024", 0,
     "open connections at most (503 beyond)"},
    {SP_CONF_INT, "max_pipeline", offsetof(hconf_t, max_pipeline), "32", 0,
     "unanswered requests per connection before reading pauses"},
    {SP_CONF_STR, "tls_listen", offsetof(hconf_t, tls_listen), NULL, 0,
     "address:port list for HTTPS, like listen; empty: no TLS"},
    {SP_CONF_STR, "tls_cert", offsetof(hconf_t, tls_cert), NULL, 0,
     "PEM certificate chain for tls_listen (the server's certificate first)"},
    {SP_CONF_STR, "tls_key", offsetof(hconf_t, tls_key), NULL, 0,
     "PEM private key of tls_cert"},
    {SP_CONF_STR, "tls_min_version", offsetof(hconf_t, tls_min_version), "1.2", 0,
     "oldest TLS version accepted: 1.2 or 1.3"},
    {0},
};

typedef enum {
    T_NONE = 0,
    T_HEADER,    /* a request (or a fresh connection) must send its headers */
    T_BODY,      /* the body must make progress */
    T_IDLE,      /* keep-alive between requests */
    T_WRITE,     /* the client must read our answers */
    T_LINGER,    /* after the final answer */
} tkind_t;

struct server;

/* One request of a connection, in arrival order, until its answer is
 * written. */
typedef struct slot {
    struct slot *next;
    sp_http_req_t *req; /* until the core answered (or the slot is aborted) */
    char *out;          /* the whole answer once ready */
    size_t outlen;
    bool ready;
    bool close_after;   /* Connection: close */
    bool head;
    bool keepalive10;   /* HTTP/1.0 with keep-alive: say so */
} slot_t;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    struct server *srv;
    hp_t hp;
    char *rbuf;
    size_t rlen;
    slot_t *head, *tail;
    size_t nslots;
    size_t writing;        /* uv_write requests in flight */
    int open_handles;      /* tcp, timer: freed when both closed */
    tkind_t tkind;
    char remote[64];
    uint64_t nreq;         /* requests begun on this connection */
    bool closing;
    bool reading;
    bool in_parse;         /* inside hp_feed: no re-entrant parse */
    bool stop_parsing;     /* no more requests will be read */
    bool eof;
    bool final_sent;       /* the last answer is queued: linger, then close */
    bool lingering;
    bool rejected;         /* over max_connections: 503 and close */
    bool continue_owed;    /* 100 Continue to send when earlier answers are out */
    bool tls_more;         /* TLS: rbuf filled up, more plaintext may be decrypted */
    tls_conn_t *tls;       /* NULL on plain HTTP */
    struct conn *prev, *next;
} conn_t;

typedef struct server {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const hconf_t *conf;
    uv_loop_t *loop;
    uv_tcp_t listeners[2 * MAX_LISTENERS];
    bool listener_tls[2 * MAX_LISTENERS];
    size_t nlisteners;
    tls_server_t *tls;     /* NULL without tls_listen */
    uv_signal_t *reload;   /* SIGHUP: reload tls_cert and tls_key */
    bool listening_tls;    /* listen_one: the list being opened is tls_listen */
    int open_listeners;
    conn_t *conns;
    size_t nconns;         /* counted against max_connections */
    size_t nrejected;
    size_t nalive;         /* connections not freed yet (closing ones too) */
    bool finishing;        /* fini ran: free when the last handle closes */
    sp_http_transport_t tr;
    hp_ops_t ops;
    char date[40];
    time_t date_at;
    char tls_in[READ_BUF]; /* encrypted input, fed to the connection's TLS at once */
} server_t;

static void conn_close(conn_t *c);
static void process(conn_t *c);
static void flush(conn_t *c);
static void after_change(conn_t *c);

/* ---------------------------------------------------------------------- */
/* Small helpers */

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Error"
                                                                                   : "Error";
    }
}

static const char *http_date(server_t *s)
{
    time_t now = time(NULL);
    if (now != s->date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_at = now;
    }
    return s->date;
}

static void set_timer(conn_t *c, tkind_t kind, uint64_t ms);

static void arm(conn_t *c, tkind_t kind)
{
    const hconf_t *cf = c->srv->conf;
    switch (kind) {
    case T_HEADER: set_timer(c, kind, cf->header_timeout); break;
    case T_BODY: set_timer(c, kind, cf->body_timeout); break;
    case T_IDLE: set_timer(c, kind, cf->keepalive_timeout); break;
    case T_WRITE: set_timer(c, kind, cf->body_timeout); break;
    case T_LINGER: set_timer(c, kind, LINGER_MS); break;
    case T_NONE: set_timer(c, kind, 0); break;
    }
}

/* ---------------------------------------------------------------------- */
/* Writing */

typedef struct wreq {
    uv_write_t w;
    conn_t *c;
    char *buf;
} wreq_t;

static void on_written(uv_write_t *w, int status)
{
    wreq_t *wr = w->data;
    conn_t *c = wr->c;
    free(wr->buf);
    free(wr);
    c->writing--;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->tkind == T_WRITE) {
        c->tkind = T_NONE; /* progress: the write timeout starts again */
    }
    after_change(c);
}

/* Queue bytes on the socket; takes buf. */
static int write_raw(conn_t *c, char *buf, size_t len)
{
    wreq_t *wr = malloc(sizeof(*wr));
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    if (wr == NULL) {
        free(buf);
        return UV_ENOMEM;
    }
    wr->c = c;
    wr->buf = buf;
    wr->w.data = wr;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        free(buf);
        free(wr);
        return UV_EPIPE;
    }
    c->writing++;
    return 0;
}

/* Send what the TLS layer has for the peer (handshake, records, alerts). */
static int tls_send_output(conn_t *c)
{
    size_t len;
    char *buf = tls_conn_take_output(c->tls, &len);
    if (buf == NULL) {
        return len == 0 ? 0 : UV_ENOMEM;
    }
    return write_raw(c, buf, len);
}

/* Queue an answer's bytes, encrypted on TLS connections; takes buf. */
static int write_out(conn_t *c, char *buf, size_t len)
{
    int rc;
    if (c->tls == NULL) {
        return write_raw(c, buf, len);
    }
    rc = tls_conn_write(c->tls, buf, len);
    free(buf);
    if (rc < 0) {
        return UV_EPIPE;
    }
    return tls_send_output(c);
}

/* True if the header block has a field of that name. */
static bool has_header(const char *headers, size_t hlen, const char *name)
{
    size_t nl = strlen(name);
    const char *p = headers, *end = headers + hlen;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            return true;
        }
        if (eol == NULL) {
            break;
        }
        p = eol + 1;
    }
    return false;
}

/* Build a whole answer: status line, Date, Connection, HSTS on TLS (unless
 * the route set its own), the core's header block, blank line, body (not for
 * HEAD, 1xx, 204, 304). */
static char *build(conn_t *c, const slot_t *s, int status, const char *headers, size_t hlen,
                   const void *body, size_t blen, size_t *outlen)
{
    char top[320];
    const char *conn_hdr = s->close_after ? "Connection: close\r\n"
                           : s->keepalive10 ? "Connection: keep-alive\r\n"
                                            : "";
    /* One year, no includeSubDomains: the appliance does not own the
     * other names under its domain. */
    const char *hsts = c->tls != NULL && !has_header(headers, hlen, HSTS)
                           ? HSTS ": max-age=31536000\r\n"
                           : "";
    int n = snprintf(top, sizeof(top), "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s", status,
                     reason(status), http_date(c->srv), conn_hdr, hsts);
    bool nobody = s->head || status < 200 || status == 204 || status == 304;
    size_t total;
    char *out;
    if (nobody) {
        blen = 0;
    }
    total = (size_t)n + hlen + 2 + blen;
    out = malloc(total);
    if (out == NULL) {
        return NULL;
    }
    memcpy(out, top, (size_t)n);
    memcpy(out + n, headers, hlen);
    memcpy(out + (size_t)n + hlen, "\r\n", 2);
    if (blen > 0) {
        memcpy(out + (size_t)n + hlen + 2, body, blen);
    }
    *outlen = total;
    return out;
}

static slot_t *slot_add(conn_t *c)
{
    slot_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    if (c->tail != NULL) {
        c->tail->next = s;
    } else {
        c->head = s;
    }
    c->tail = s;
    c->nslots++;
    return s;
}

/* An answer of the plugin itself (parse errors, limits, timeouts): JSON,
 * the security headers, and the connection closes after it. */
static void queue_error(conn_t *c, int status, const char *code, const char *msg)
{
    char hdr[512], body[256];
    int bl = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                      code, msg);
    int hl = snprintf(hdr, sizeof(hdr),
                      "Content-Type: application/json\r\nContent-Length: %d\r\n"
                      "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"
                      "Referrer-Policy: strict-origin-when-cross-origin\r\n",
                      bl);
    slot_t *s = slot_add(c);
    c->stop_parsing = true;
    if (s == NULL) {
        conn_close(c);
        return;
    }
    s->close_after = true;
    s->out = build(c, s, status, hdr, (size_t)hl, body, (size_t)bl, &s->outlen);
    if (s->out == NULL) {
        conn_close(c);
        return;
    }
    s->ready = true;
    c->srv->api->log(c->srv->p, SP_LOG_DEBUG, "%s: %d %s", c->remote, status, msg);
    flush(c);
}

/* Write every answer that is ready, in order. */
static void flush(conn_t *c)
{
    while (!c->closing && c->head != NULL && c->head->ready) {
        slot_t *s = c->head;
        c->head = s->next;
        if (c->head == NULL) {
            c->tail = NULL;
        }
        c->nslots--;
        if (write_out(c, s->out, s->outlen) < 0) {
            free(s);
            conn_close(c);
            return;
        }
        if (s->close_after) {
            c->final_sent = true;
            c->stop_parsing = true;
        }
        free(s);
        if (c->final_sent) {
            /* Nothing after a final answer is written; later requests
             * (none are parsed after one) would be aborted at close. */
            break;
        }
    }
    if (!c->closing && c->continue_owed && c->nslots == 0 && hp_in_request(&c->hp)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        char *b = malloc(sizeof(cont) - 1);
        c->continue_owed = false;
        if (b == NULL || (memcpy(b, cont, sizeof(cont) - 1), write_out(c, b, sizeof(cont) - 1))) {
            conn_close(c);
            return;
        }
    }
    after_change(c);
}

/* ---------------------------------------------------------------------- */
/* The core's side: answers */

static void tr_send(void *connp, sp_http_req_t *req, int status, const char *headers,
                    size_t hlen, const void *body, size_t blen)
{
    conn_t *c = connp;
    slot_t *s;
    for (s = c->head; s != NULL && s->req != req; s = s->next) {
    }
    if (s == NULL) {
        return; /* aborted requests are never sent; nothing else can get here */
    }
    s->req = NULL;
    s->out = build(c, s, status, headers, hlen, body, blen, &s->outlen);
    if (s->out == NULL) {
        conn_close(c);
        return;
    }
    s->ready = true;
    flush(c);
}

/* ---------------------------------------------------------------------- */
/* Parsing events */

static void ev_begin(void *arg)
{
    conn_t *c = arg;
    c->nreq++;
    arm(c, T_HEADER);
}

static int ev_headers(void *arg, hp_req_t *r)
{
    conn_t *c = arg;
    if (r->expect_continue) {
        /* The interim answer must not overtake earlier final ones. */
        c->continue_owed = true;
        flush(c);
    }
    if (r->chunked || (r->content_length != UINT64_MAX && r->content_length > 0)) {
        arm(c, T_BODY);
    }
    return 0;
}

static void ev_progress(void *arg)
{
    conn_t *c = arg;
    arm(c, T_BODY);
}

static bool ev_request(void *arg, hp_req_t *r)
{
    conn_t *c = arg;
    server_t *s = c->srv;
    const sp_host_api_t *api = s->api;
    sp_http_req_t *req;
    slot_t *sl;
    int rc = 0;

    c->continue_owed = false;
    if (c->closing) {
        hp_req_free(&s->ops, r);
        return true;
    }
    sl = slot_add(c);
    if (sl == NULL) {
        hp_req_free(&s->ops, r);
        conn_close(c);
        return true;
    }
    sl->head = strcmp(r->method, "HEAD") == 0;
    sl->close_after = !r->keep_alive;
    sl->keepalive10 = r->keep_alive && r->http_minor == 0;
    if (sl->close_after) {
        c->stop_parsing = true;
    }
    req = api->http_req_new(s->p, &s->tr, c, r->method, hp_req_target(r), r->tlen, c->remote);
    if (req == NULL) {
        rc = SP_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < r->nhdr; i++) {
        rc = api->http_req_add_header(req, r->arena + r->hdr[i].name, r->hdr[i].nlen,
                                      r->arena + r->hdr[i].value, r->hdr[i].vlen);
    }
    if (rc == 0 && r->body != NULL) {
        rc = api->http_req_set_body(req, r->body, r->blen);
        if (rc == 0) {
            r->body = NULL; /* the request owns it now */
        }
    }
    hp_req_free(&s->ops, r);
    if (rc < 0) {
        if (req != NULL) {
            api->http_req_abort(req);
        }
        /* Answer in place of the request, in its turn. */
        sl->close_after = true;
        c->stop_parsing = true;
        {
            static const char hdr[] = "Content-Type: application/json\r\nContent-Length: 61\r\n";
            static const char body[] =
                "{\"error\":{\"code\":\"SERVICE_UNAVAILABLE\",\"message\":\"busy\"}}    ";
            sl->out = build(c, sl, 503, hdr, sizeof(hdr) - 1, body, 61, &sl->outlen);
        }
        if (sl->out == NULL) {
            conn_close(c);
            return true;
        }
        sl->ready = true;
        flush(c);
        return true;
    }
    sl->req = req;
    api->http_dispatch(req); /* may answer at once (tr_send) */
    return c->closing || c->stop_parsing || c->nslots >= (size_t)s->conf->max_pipeline ||
           c->tcp.write_queue_size > WRITE_HIGH_WATER;
}

/* ---------------------------------------------------------------------- */
/* TLS */

/* The handshake or a record failed: the alert OpenSSL made is on its way;
 * close once it is sent, as after a final answer, unless answers are still
 * owed (they cannot be sent any more). */
static void tls_failed(conn_t *c)
{
    char why[128];
    tls_conn_describe(c->tls, why, sizeof(why));
    c->srv->api->log(c->srv->p, SP_LOG_DEBUG, "%s: TLS: %s", c->remote, why);
    c->rlen = 0;
    c->tls_more = false;
    if (c->nslots > 0 || hp_in_request(&c->hp)) {
        conn_close(c);
        return;
    }
    c->stop_parsing = true;
    c->final_sent = true;
    after_change(c);
}

/* Decrypt into rbuf as far as there is room (advancing the handshake on
 * the way) and send whatever the TLS layer has for the peer. */
static void tls_pull(conn_t *c)
{
    bool was = tls_conn_established(c->tls);
    size_t got = 0;
    tls_stop_t why;
    int rc = tls_conn_read(c->tls, c->rbuf + c->rlen, READ_BUF - c->rlen, &got, &why);
    c->rlen += got;
    c->tls_more = rc == 0 && why == TLS_STOP_FULL;
    if (tls_send_output(c) < 0) {
        conn_close(c);
        return;
    }
    if (rc < 0) {
        tls_failed(c);
        return;
    }
    if (why == TLS_STOP_CLOSED) {
        c->eof = true; /* close_notify: like the end of the TCP stream */
    }
    if (!was && tls_conn_established(c->tls)) {
        char desc[128];
        tls_conn_describe(c->tls, desc, sizeof(desc));
        c->srv->api->log(c->srv->p, SP_LOG_DEBUG, "%s: TLS %s", c->remote, desc);
        if (c->rejected) {
            /* Over max_connections: the 503 needed the handshake first. */
            queue_error(c, 503, "SERVICE_UNAVAILABLE", "too many connections");
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    conn_t *c = h->data;
    if (c->tls != NULL) {
        /* Encrypted bytes go into the TLS input buffer at once. */
        *b = uv_buf_init(c->srv->tls_in, READ_BUF);
        return;
    }
    if (c->lingering) {
        /* Dropped bytes: reuse the start of the buffer. */
        *b = uv_buf_init(c->rbuf, READ_BUF);
        return;
    }
    *b = uv_buf_init(c->rbuf + c->rlen, (unsigned)(READ_BUF - c->rlen));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = st->data;
    if (c->closing) {
        return;
    }
    if (n < 0) {
        if (n != UV_EOF || c->lingering || hp_in_request(&c->hp)) {
            conn_close(c);
            return;
        }
        /* The client finished sending: answer what it asked, then close. */
        c->eof = true;
        uv_read_stop(st);
        c->reading = false;
        process(c);
        return;
    }
    if (c->lingering || n == 0) {
        return;
    }
    if (c->tls != NULL) {
        if (tls_conn_failed(c->tls)) {
            return; /* only the alert goes out now */
        }
        if (tls_conn_feed(c->tls, b->base, (size_t)n) < 0) {
            conn_close(c);
            return;
        }
        tls_pull(c);
        if (c->closing) {
            return;
        }
        process(c);
        return;
    }
    c->rlen += (size_t)n;
    process(c);
}

/* Parse what is buffered, as far as the pipeline limit allows. */
static void process(conn_t *c)
{
    if (c->in_parse || c->closing) {
        return;
    }
    c->in_parse = true;
    while (!c->closing && !c->stop_parsing) {
        size_t used;
        if (c->tls_more && c->rlen < READ_BUF) {
            tls_pull(c); /* what did not fit in rbuf before */
            if (c->closing || c->stop_parsing) {
                break;
            }
        }
        if (c->rlen == 0) {
            break;
        }
        if (c->hp.paused) {
            if (c->nslots >= (size_t)c->srv->conf->max_pipeline ||
                c->tcp.write_queue_size > WRITE_HIGH_WATER) {
                break;
            }
            hp_resume(&c->hp);
        }
        used = hp_feed(&c->hp, c->rbuf, c->rlen);
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= used;
        if (c->closing) {
            break;
        }
        if (c->hp.err_status != 0) {
            queue_error(c, c->hp.err_status, c->hp.err_code, c->hp.err_msg);
            break;
        }
        if (c->hp.upgrade) {
            c->stop_parsing = true;
            break;
        }
        if (!c->hp.paused && !c->tls_more) {
            break; /* everything consumed */
        }
    }
    if (c->stop_parsing) {
        c->rlen = 0;
    }
    c->in_parse = false;
    after_change(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    /* Nothing to do: the linger timer or the client's EOF ends it. */
}

/* After any change: reading on or off, the right timer, and the end of the
 * connection once everything is answered. */
static void after_change(conn_t *c)
{
    bool want_read;
    if (c->closing || c->in_parse) {
        return;
    }
    if (c->final_sent && c->writing == 0) {
        if (c->eof) {
            conn_close(c); /* the client sends nothing more: nothing to drop */
        } else if (!c->lingering) {
            /* Lingering close: FIN after the answer, then drop what the
             * client still sends for a while, so that a reset does not
             * destroy the answer before the client read it. */
            c->lingering = true;
            c->stop_parsing = true;
            hp_free(&c->hp);
            /* TLS: close_notify before the FIN, so the client knows the
             * answer was not cut short. */
            if (c->tls != NULL && (tls_conn_shutdown(c->tls) < 0 || tls_send_output(c) < 0)) {
                conn_close(c);
                return;
            }
            if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
                conn_close(c);
                return;
            }
            arm(c, T_LINGER);
            if (!c->reading && !c->eof) {
                c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
            }
        }
        return;
    }
    if (c->final_sent) {
        arm(c, T_WRITE);
        return;
    }
    if (c->hp.paused && !c->stop_parsing && c->nslots < (size_t)c->srv->conf->max_pipeline &&
        c->tcp.write_queue_size <= WRITE_HIGH_WATER) {
        if (c->rlen > 0 || c->tls_more) {
            process(c); /* it comes back here */
            return;
        }
        hp_resume(&c->hp); /* paused right at the end of what was read */
    }
    if ((c->eof || c->stop_parsing) && c->nslots == 0 && c->writing == 0 &&
        !hp_in_request(&c->hp)) {
        conn_close(c); /* e.g. after an upgrade request, or the client's EOF */
        return;
    }
    if (c->eof && hp_in_request(&c->hp) && c->rlen == 0 && !c->tls_more) {
        conn_close(c); /* TLS close_notify in the middle of a request */
        return;
    }
    want_read = !c->eof && !c->stop_parsing && !c->hp.paused && c->rlen < READ_BUF &&
                c->nslots < (size_t)c->srv->conf->max_pipeline &&
                c->tcp.write_queue_size <= WRITE_HIGH_WATER;
    if (want_read && !c->reading) {
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    } else if (!want_read && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (c->tls != NULL && !tls_conn_established(c->tls)) {
        /* The handshake has header_timeout from the accept, whatever it
         * writes: it is armed once and never restarted. */
        if (c->tkind != T_HEADER) {
            arm(c, T_HEADER);
        }
    } else if (hp_in_request(&c->hp)) {
        if (c->tkind != T_HEADER && c->tkind != T_BODY) {
            arm(c, c->hp.in_body ? T_BODY : T_HEADER);
        }
    } else if (c->writing > 0) {
        if (c->tkind != T_WRITE) {
            arm(c, T_WRITE);
        }
    } else if (c->nslots > 0) {
        arm(c, T_NONE); /* the handlers are working: our turn, not the client's */
    } else if (c->nreq == 0) {
        if (c->tkind != T_HEADER) {
            arm(c, T_HEADER);
        }
    } else if (c->tkind != T_IDLE) {
        arm(c, T_IDLE);
    }
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    tkind_t k = c->tkind;
    c->tkind = T_NONE;
    if (c->closing) {
        return;
    }
    if ((k == T_HEADER || k == T_BODY) && hp_in_request(&c->hp)) {
        hp_free(&c->hp);
        queue_error(c, 408, "REQUEST_TIMEOUT", "the request took too long to arrive");
        return;
    }
    /* Idle keep-alive, a fresh connection that sent nothing, a client that
     * does not read, the end of lingering: just close. */
    conn_close(c);
}

static void set_timer(conn_t *c, tkind_t kind, uint64_t ms)
{
    c->tkind = kind;
    if (kind == T_NONE) {
        uv_timer_stop(&c->timer);
    } else {
        uv_timer_start(&c->timer, on_timer, ms, 0);
    }
}

/* ---------------------------------------------------------------------- */
/* Connections */

/* After fini, once the last handle closed. The SSL objects of connections
 * hold their own references to the TLS context. */
static void server_free(server_t *s)
{
    tls_server_free(s->tls);
    free(s);
}

static void conn_free_maybe(uv_handle_t *h)
{
    conn_t *c = h->data;
    server_t *s = c->srv;
    if (--c->open_handles > 0) {
        return;
    }
    hp_free(&c->hp);
    tls_conn_free(c->tls);
    free(c->rbuf);
    free(c);
    s->nalive--;
    if (s->finishing && s->nalive == 0 && s->open_listeners == 0) {
        server_free(s);
    }
}

static void conn_close(conn_t *c)
{
    server_t *s = c->srv;
    slot_t *sl;
    if (c->closing) {
        return;
    }
    c->closing = true;
    /* Requests still with a handler: their answers will only free them. */
    while ((sl = c->head) != NULL) {
        c->head = sl->next;
        if (sl->req != NULL) {
            s->api->http_req_abort(sl->req);
        }
        free(sl->out);
        free(sl);
    }
    c->tail = NULL;
    c->nslots = 0;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c->rejected) {
        s->nrejected--;
    } else {
        s->nconns--;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_free_maybe);
    uv_close((uv_handle_t *)&c->tcp, conn_free_maybe);
}

static void remote_name(conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[48] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
            snprintf(c->remote, sizeof(c->remote), "[%s]:%d", ip, port);
            return;
        }
        uv_ip4_name((const struct sockaddr_in *)&ss, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    }
    snprintf(c->remote, sizeof(c->remote), "%s:%d", ip, port);
}

static void dropped_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *ls, int status)
{
    server_t *s = ls->data;
    bool tls = s->listener_tls[(uv_tcp_t *)ls - s->listeners];
    conn_t *c;
    bool over, flooded;
    if (status < 0) {
        s->api->log(s->p, SP_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    over = s->nconns >= (size_t)s->conf->max_connections;
    flooded = over && s->nrejected >= (size_t)s->conf->max_connections;
    c = flooded ? NULL : calloc(1, sizeof(*c));
    if (c != NULL && !over) {
        c->rbuf = malloc(READ_BUF);
    }
    if (c != NULL && tls) {
        c->tls = tls_conn_new(s->tls);
    }
    if (c == NULL || (!over && c->rbuf == NULL) || (tls && c->tls == NULL)) {
        /* No memory, or flooded even past the 503s: take and drop it. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (c != NULL) {
            tls_conn_free(c->tls);
            free(c->rbuf);
        }
        free(c);
        if (t != NULL) {
            uv_tcp_init(s->loop, t);
            t->data = NULL;
            (void)uv_accept(ls, (uv_stream_t *)t);
            uv_close((uv_handle_t *)t, dropped_closed);
        }
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    s->nalive++;
    c->rejected = over;
    if (over) {
        s->nrejected++;
    } else {
        s->nconns++;
    }
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    hp_init(&c->hp, &s->ops, c, (size_t)s->conf->max_header_size,
            (size_t)s->conf->max_body_size);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    remote_name(c);
    if (over) {
        if (c->rbuf == NULL) {
            c->rbuf = malloc(READ_BUF); /* for lingering reads */
        }
        if (c->rbuf == NULL) {
            conn_close(c);
            return;
        }
        s->api->log(s->p, SP_LOG_WARN, "%s: over max_connections (%lld), answering 503",
                    c->remote, (long long)s->conf->max_connections);
        if (c->tls == NULL) {
            queue_error(c, 503, "SERVICE_UNAVAILABLE", "too many connections");
            return;
        }
        /* TLS: tls_pull answers once the handshake is done. */
    }
    after_change(c);
}

/* ---------------------------------------------------------------------- */
/* Listeners, init, fini */

/* "host:port", "[v6]:port" or "port" into addr. */
static int parse_addr(const char *spec, size_t len, struct sockaddr_storage *addr)
{
    char host[64], buf[128];
    const char *colon;
    long port;
    char *end;
    if (len == 0 || len >= sizeof(buf)) {
        return SP_EINVAL;
    }
    memcpy(buf, spec, len);
    buf[len] = '\0';
    colon = strrchr(buf, ':');
    if (colon == NULL) {
        snprintf(host, sizeof(host), "0.0.0.0");
        colon = buf - 1;
    } else if (buf[0] == '[') {
        const char *rb = strchr(buf, ']');
        if (rb == NULL || rb + 1 != colon || (size_t)(rb - buf - 1) >= sizeof(host)) {
            return SP_EINVAL;
        }
        memcpy(host, buf + 1, (size_t)(rb - buf - 1));
        host[rb - buf - 1] = '\0';
    } else {
        if ((size_t)(colon - buf) >= sizeof(host)) {
            return SP_EINVAL;
        }
        memcpy(host, buf, (size_t)(colon - buf));
        host[colon - buf] = '\0';
        if (host[0] == '\0') {
            snprintf(host, sizeof(host), "0.0.0.0");
        }
    }
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535) {
        return SP_EINVAL;
    }
    if (strchr(host, ':') != NULL) {
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr) == 0 ? 0 : SP_EINVAL;
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) == 0 ? 0 : SP_EINVAL;
}

/* Call fn for each comma-separated item of the listen list. */
static int each_listen(const char *list, int (*fn)(void *arg, const char *s, size_t n),
                       void *arg)
{
    const char *p = list;
    int count = 0;
    while (p != NULL && *p != '\0') {
        size_t n = strcspn(p, ",");
        const char *b = p, *e = p + n;
        int rc;
        while (b < e && (*b == ' ' || *b == '\t')) {
            b++;
        }
        while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        rc = fn(arg, b, (size_t)(e - b));
        if (rc < 0) {
            return rc;
        }
        count++;
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return count;
}

static int check_one(void *arg, const char *spec, size_t n)
{
    struct sockaddr_storage a;
    return parse_addr(spec, n, &a);
}

static int conf_check(const void *confp, char *err, size_t errlen)
{
    const hconf_t *c = confp;
    int n = each_listen(c->listen, check_one, NULL);
    int ntls = each_listen(c->tls_listen, check_one, NULL);
    int version;
    if (ntls < 0) {
        snprintf(err, errlen, "tls_listen: expected host:port[, host:port...], got \"%s\"",
                 c->tls_listen);
        return -1;
    }
    /* An HTTPS-only server may leave listen empty. */
    if (n < 0 || (n == 0 && ntls == 0)) {
        snprintf(err, errlen, "listen: expected host:port[, host:port...], got \"%s\"",
                 c->listen != NULL ? c->listen : "");
        return -1;
    }
    if (n > MAX_LISTENERS || ntls > MAX_LISTENERS) {
        snprintf(err, errlen, "%s: at most %d addresses",
                 n > MAX_LISTENERS ? "listen" : "tls_listen", MAX_LISTENERS);
        return -1;
    }
    if (ntls > 0) {
        /* Load the files now, so that check-config and start-up both stop
         * with a line naming the file; init loads them again for use. */
        tls_server_t *t;
        if (tls_server_new(c->tls_cert, c->tls_key, c->tls_min_version, &t, err, errlen) < 0) {
            return -1;
        }
        tls_server_free(t);
    } else if (c->tls_min_version != NULL && tls_version_parse(c->tls_min_version, &version) < 0) {
        snprintf(err, errlen, "tls_min_version: expected 1.2 or 1.3, got \"%s\"",
                 c->tls_min_version);
        return -1;
    }
    if (c->max_header_size < 1024 || c->max_header_size > (1u << 20)) {
        snprintf(err, errlen, "max_header_size: between 1K and 1M");
        return -1;
    }
    if (c->max_body_size < 1 || c->max_body_size > (uint64_t)1 << 32) {
        snprintf(err, errlen, "max_body_size: between 1 and 4G");
        return -1;
    }
    if (c->header_timeout == 0 || c->body_timeout == 0 || c->keepalive_timeout == 0) {
        snprintf(err, errlen, "timeouts must be above zero");
        return -1;
    }
    if (c->max_connections < 1 || c->max_connections > 1000000) {
        snprintf(err, errlen, "max_connections: between 1 and 1000000");
        return -1;
    }
    if (c->max_pipeline < 1 || c->max_pipeline > 1024) {
        snprintf(err, errlen, "max_pipeline: between 1 and 1024");
        return -1;
    }
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    server_t *s = h->data;
    if (--s->open_listeners == 0 && s->finishing && s->nalive == 0) {
        server_free(s);
    }
}

static int listen_one(void *arg, const char *spec, size_t n)
{
    server_t *s = arg;
    struct sockaddr_storage a;
    uv_tcp_t *t = &s->listeners[s->nlisteners];
    char name[128];
    int rc = parse_addr(spec, n, &a);
    if (rc < 0) {
        return rc;
    }
    snprintf(name, sizeof(name), "%.*s", (int)n, spec);
    uv_tcp_init(s->loop, t);
    t->data = s;
    s->listener_tls[s->nlisteners] = s->listening_tls;
    s->nlisteners++;
    s->open_listeners++;
    rc = uv_tcp_bind(t, (const struct sockaddr *)&a, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)t, 511, on_connection);
    }
    if (rc < 0) {
        s->api->log(s->p, SP_LOG_ERROR, "listen on %s: %s", name, uv_strerror(rc));
        return rc;
    }
    s->api->log(s->p, SP_LOG_INFO, "listening on %s://%s", s->listening_tls ? "https" : "http",
                name);
    return 0;
}

static void http_fini(sp_plugin_t *p, void *ctx);
static void on_reload(uv_signal_t *h, int signum);

static int http_init(sp_plugin_t *p, const sp_host_api_t *api, const void *confp, void **ctx)
{
    const hconf_t *conf = confp;
    server_t *s;
    int rc;
    if (!SP_API_HAS(api, uv_loop) || !SP_API_HAS(api, http_req_abort)) {
        return SP_EABI;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return SP_ENOMEM;
    }
    s->p = p;
    s->api = api;
    s->conf = conf;
    s->loop = api->uv_loop();
    s->tr.size = sizeof(s->tr);
    s->tr.send = tr_send;
    s->ops.alloc = api->alloc;
    s->ops.realloc = api->realloc;
    s->ops.free = api->free;
    s->ops.begin = ev_begin;
    s->ops.headers = ev_headers;
    s->ops.progress = ev_progress;
    s->ops.request = ev_request;
    *ctx = s;
    hp_global_init((size_t)conf->max_header_size);
    if (each_listen(conf->tls_listen, check_one, NULL) > 0) {
        char err[256];
        rc = tls_server_new(conf->tls_cert, conf->tls_key, conf->tls_min_version, &s->tls, err,
                            sizeof(err));
        if (rc < 0) {
            api->log(p, SP_LOG_ERROR, "%s", err);
            http_fini(p, s);
            *ctx = NULL;
            return rc;
        }
    }
    rc = each_listen(conf->listen, listen_one, s);
    if (rc >= 0 && s->tls != NULL) {
        s->listening_tls = true;
        rc = each_listen(conf->tls_listen, listen_one, s);
        s->reload = malloc(sizeof(*s->reload));
        if (s->reload != NULL && uv_signal_init(s->loop, s->reload) == 0) {
            s->reload->data = s;
            uv_unref((uv_handle_t *)s->reload);
            (void)uv_signal_start(s->reload, on_reload, SIGHUP);
        } else {
            free(s->reload);
            s->reload = NULL;
        }
    }
    if (rc < 0) {
        /* The loader calls fini after a failed init? It does not: close
         * what was opened here. */
        http_fini(p, s);
        *ctx = NULL;
        return rc;
    }
    return 0;
}

static void reload_closed(uv_handle_t *h)
{
    free(h);
}

/* SIGHUP: load tls_cert and tls_key again (after a renewal) for new
 * connections; connections already open keep the context they started
 * with. Files that do not load leave the current certificate in place. */
static void on_reload(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    tls_server_t *t = NULL;
    char err[256];
    (void)signum;
    if (tls_server_new(s->conf->tls_cert, s->conf->tls_key, s->conf->tls_min_version, &t, err,
                       sizeof(err)) < 0) {
        s->api->log(s->p, SP_LOG_ERROR, "SIGHUP: TLS certificate not reloaded: %s", err);
        return;
    }
    tls_server_free(s->tls);
    s->tls = t;
    s->api->counter_add(s->p, "tls_reloads", 1);
    s->api->log(s->p, SP_LOG_INFO, "SIGHUP: TLS certificate reloaded from %s",
                s->conf->tls_cert);
}

static void http_fini(sp_plugin_t *p, void *ctx)
{
    server_t *s = ctx;
    if (s == NULL) {
        return;
    }
    s->finishing = true;
    if (s->reload != NULL) {
        uv_close((uv_handle_t *)s->reload, reload_closed);
        s->reload = NULL;
    }
    while (s->conns != NULL) {
        conn_close(s->conns);
    }
    for (size_t i = 0; i < s->nlisteners; i++) {
        uv_close((uv_handle_t *)&s->listeners[i], listener_closed);
    }
    if (s->open_listeners == 0 && s->nalive == 0) {
        server_free(s);
    }
}

SP_PLUGIN_DEFINE(.name = "ingress_http", .version = SP_VERSION_STRING,
                 .description = "HTTP/1.1 server: listeners and connections for the routes "
                                "plugins register",
                 .conf = g_schema, .conf_size = sizeof(hconf_t), .conf_check = conf_check,
                 .init = http_init, .fini = http_fini);
