/* SPDX-License-Identifier: Apache-2.0 */
/* ingress_lines: a test-only ingress plugin. It listens on a loopback TCP port
 * and takes one command per line, so integration tests can submit through the
 * real host API (submit, durable commit, acknowledgement) before the HTTP and
 * SMTP ingress exist:
 *
 *   SEND <from> <to> <subject...>          -> OK <id> | ERR <code> <text>
 *   SCHED <delay_ms> <from> <to> <subj...> -> OK <id> | ERR <code> <text>
 *
 * Commands of one connection are answered in order, one at a time. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <sp/sp_plugin.h>

typedef struct lines_conf {
    int64_t port;
    char *host;
} lines_conf_t;

typedef struct lines {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    uv_tcp_t server;
    bool listening;
    struct conn *conns; /* open connections, closed in fini */
} lines_t;

typedef struct conn {
    uv_tcp_t tcp;
    lines_t *ln;
    char buf[8192];
    size_t len;
    bool busy;    /* a submission is outstanding */
    bool closing;
    bool gone;    /* closed while busy: free when the answer arrives */
    struct conn *prev, *next;
} conn_t;

static const sp_conf_item_t lines_schema[] = {
    {SP_CONF_INT, "port", offsetof(lines_conf_t, port), NULL, SP_CONF_REQUIRED,
     "TCP port to listen on"},
    {SP_CONF_STR, "host", offsetof(lines_conf_t, host), "127.0.0.1", 0, "address to bind"},
    {0},
};

static void process(conn_t *c);

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (c->busy) {
        c->gone = true; /* the submit callback frees it */
    } else {
        free(c);
    }
}

static void conn_close(conn_t *c)
{
    if (!c->closing) {
        c->closing = true;
        if (c->prev != NULL) {
            c->prev->next = c->next;
        } else {
            c->ln->conns = c->next;
        }
        if (c->next != NULL) {
            c->next->prev = c->prev;
        }
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static void on_written(uv_write_t *w, int status)
{
    free(w->data);
    free(w);
}

static void reply(conn_t *c, const char *fmt, ...) SP_PRINTF(2, 3);
static void reply(conn_t *c, const char *fmt, ...)
{
    va_list ap;
    char *s = malloc(600);
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b;
    int n;
    if (s == NULL || w == NULL) {
        free(s);
        free(w);
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(s, 600, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= 600) {
        n = 599;
    }
    b = uv_buf_init(s, (unsigned)n);
    w->data = s;
    if (c->closing || uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        free(s);
        free(w);
    }
}

static void submitted(void *arg, const sp_submit_result_t *res, size_t n)
{
    conn_t *c = arg;
    c->busy = false;
    if (c->gone) {
        free(c);
        return;
    }
    if (res[0].status == 0) {
        reply(c, "OK %s\n", res[0].id);
    } else {
        reply(c, "ERR %d %s\n", res[0].code, res[0].text);
    }
    process(c);
}

/* Split "a b rest..." into tokens in place. */
static char *next_tok(char **s)
{
    char *t = *s, *e;
    while (*t == ' ') {
        t++;
    }
    if (*t == '\0') {
        return NULL;
    }
    e = strchr(t, ' ');
    if (e != NULL) {
        *e = '\0';
        *s = e + 1;
    } else {
        *s = t + strlen(t);
    }
    return t;
}

static void handle_line(conn_t *c, char *line)
{
    const sp_host_api_t *api = c->ln->api;
    char *rest = line, *cmd, *from, *to;
    int64_t delay = -1;
    sp_msg_t *m;
    int rc;

    cmd = next_tok(&rest);
    if (cmd == NULL) {
        reply(c, "ERR 400 empty line\n");
        return;
    }
    if (strcmp(cmd, "SCHED") == 0) {
        char *d = next_tok(&rest);
        delay = d != NULL ? strtoll(d, NULL, 10) : -1;
        if (delay < 0) {
            reply(c, "ERR 400 SCHED needs a delay in ms\n");
            return;
        }
    } else if (strcmp(cmd, "SEND") != 0) {
        reply(c, "ERR 400 unknown command\n");
        return;
    }
    from = next_tok(&rest);
    to = next_tok(&rest);
    if (from == NULL || to == NULL) {
        reply(c, "ERR 400 usage: SEND from to subject\n");
        return;
    }
    m = api->msg_new();
    if (m == NULL || api->msg_set(m, SP_F_FROM, from, strlen(from)) < 0 ||
        api->msg_add(m, SP_F_TO, to, strlen(to)) < 0 ||
        api->msg_set(m, SP_F_SUBJECT, rest, strlen(rest)) < 0 ||
        api->msg_set(m, SP_F_TEXT, "test body", 9) < 0 ||
        (delay >= 0 && api->msg_set_int(m, SP_F_SCHEDULED_AT, api->now_ms() + delay) < 0)) {
        if (m != NULL) {
            api->msg_free(m);
        }
        reply(c, "ERR 503 out of memory\n");
        return;
    }
    c->busy = true;
    rc = api->submit(c->ln->p, &m, 1, true, submitted, c);
    if (rc < 0) {
        c->busy = false;
        api->msg_free(m);
        reply(c, "ERR 503 %s\n", api->strerror(rc));
    }
}

/* Answer complete lines one at a time, in order. */
static void process(conn_t *c)
{
    while (!c->busy && !c->closing) {
        char *nl = memchr(c->buf, '\n', c->len);
        size_t linelen;
        if (nl == NULL) {
            if (c->len == sizeof(c->buf)) {
                reply(c, "ERR 400 line too long\n");
                conn_close(c);
            }
            return;
        }
        linelen = (size_t)(nl - c->buf);
        *nl = '\0';
        if (linelen > 0 && c->buf[linelen - 1] == '\r') {
            c->buf[linelen - 1] = '\0';
        }
        handle_line(c, c->buf);
        memmove(c->buf, nl + 1, c->len - linelen - 1);
        c->len -= linelen + 1;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    conn_t *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    process(c);
}

static void on_conn(uv_stream_t *server, int status)
{
    lines_t *ln = server->data;
    conn_t *c;
    if (status < 0 || (c = calloc(1, sizeof(*c))) == NULL) {
        return;
    }
    c->ln = ln;
    c->next = ln->conns;
    if (ln->conns != NULL) {
        ln->conns->prev = c;
    }
    ln->conns = c;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
    }
}

static void server_closed(uv_handle_t *h);

static int lines_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const lines_conf_t *c = conf;
    struct sockaddr_in addr;
    lines_t *ln;
    int rc;
    if (!SP_API_HAS(api, uv_loop)) {
        return SP_EABI;
    }
    ln = calloc(1, sizeof(*ln));
    if (ln == NULL) {
        return SP_ENOMEM;
    }
    ln->p = p;
    ln->api = api;
    *ctx = ln;
    uv_tcp_init(api->uv_loop(), &ln->server);
    ln->server.data = ln;
    ln->listening = true;
    rc = uv_ip4_addr(c->host, (int)c->port, &addr);
    if (rc == 0) {
        rc = uv_tcp_bind(&ln->server, (const struct sockaddr *)&addr, 0);
    }
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&ln->server, 128, on_conn);
    }
    if (rc < 0) {
        api->log(p, SP_LOG_ERROR, "listen on %s:%lld: %s", c->host, (long long)c->port,
                 uv_strerror(rc));
        /* fini is not called after a failed init: close here; the close
         * callback runs before the core unmaps the library (it runs the
         * loop first). */
        uv_close((uv_handle_t *)&ln->server, server_closed);
        *ctx = NULL;
        return rc;
    }
    api->log(p, SP_LOG_INFO, "listening on %s:%lld", c->host, (long long)c->port);
    return 0;
}

static void server_closed(uv_handle_t *h)
{
    free(h->data);
}

static void lines_fini(sp_plugin_t *p, void *ctx)
{
    lines_t *ln = ctx;
    if (ln == NULL) {
        return;
    }
    while (ln->conns != NULL) {
        conn_close(ln->conns);
    }
    if (ln->listening) {
        uv_close((uv_handle_t *)&ln->server, server_closed);
    } else {
        free(ln);
    }
}

SP_PLUGIN_DEFINE(.name = "ingress_lines", .version = "test",
                 .description = "test ingress: one SEND command per line over TCP",
                 .conf = lines_schema, .conf_size = sizeof(lines_conf_t), .init = lines_init,
                 .fini = lines_fini);
