/* SPDX-License-Identifier: Apache-2.0 */
/* egress_smtp: relay each message to one smarthost over SMTP, on the core's
 * libuv loop. A pool of at most `max_connections` connections to the relay
 * is kept; each is set up once (greeting, EHLO, STARTTLS or implicit TLS
 * through OpenSSL memory BIOs, EHLO again, AUTH), then carries up to
 * `max_messages_per_connection` transactions (RSET before each reuse) and
 * is closed with QUIT after `idle_timeout` without work. With PIPELINING
 * the envelope (MAIL, every RCPT, DATA) goes out in one write and the
 * replies are read in order (RFC 2920). Outcomes: 2xx after the end of
 * DATA is SENT with the relay's queue id; 4xx, connection, TLS and timeout
 * failures defer; 5xx rejects (RCPT/DATA: BOUNCED, else REJECTED). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include <sp/sp_plugin.h>

#include "bounce_report.h"
#include "smtp_reply.h"

#define IN_MAX (512u * 1024u) /* unparsed reply bytes kept at most */
#define QUIT_TIMEOUT_MS 5000u
#define LINE_MAX_OUT 1024u    /* a reply line kept for the record */

typedef struct es_conf {
    char *relay;
    char *tls;
    bool tls_verify;
    char *ca_file;
    char *username;
    char *password;
    bool auth_plaintext;
    char *helo;
    int64_t max_connections;
    int64_t max_messages_per_connection;
    uint64_t connect_timeout;
    uint64_t command_timeout;
    uint64_t data_timeout;
    uint64_t idle_timeout;
} es_conf_t;

typedef enum { TLS_STARTTLS, TLS_IMPLICIT, TLS_NONE } tls_mode_t;

typedef enum {
    C_RESOLVE,
    C_CONNECT,
    C_TLS,      /* handshake running */
    C_GREET,
    C_EHLO,
    C_HELO,
    C_STARTTLS,
    C_AUTH,     /* AUTH PLAIN, or the password of AUTH LOGIN, sent */
    C_AUTH_USER, /* AUTH LOGIN sent: 334 for the user name */
    C_AUTH_PASS, /* user name sent: 334 for the password */
    C_BUSY,     /* between steps of our own (no reply expected) */
    C_IDLE,     /* in the pool, waiting for a message */
    C_RSET,
    C_MAIL,
    C_RCPT,
    C_DATA,
    C_BODY,
    C_QUIT,
} cstate_t;

typedef struct es es_t;
typedef struct conn conn_t;

typedef struct job {
    struct job *next; /* the wait queue */
    es_t *es;
    sp_txn_t *txn;
    sp_token_t tok;
    conn_t *conn;
    char id[64];      /* message id, for the log */
    char *from;
    char **rcpt;
    size_t nrcpt;
    char *data;       /* dot-stuffed, ".\r\n" at the end */
    size_t datalen;
    size_t msglen;    /* for SIZE= */
    bool eightbit, utf8, retried, need_fresh;
    /* the current transaction */
    size_t ridx, rcpt_ok, ntemp, nperm;
    int mail_code;
    char fail[LINE_MAX_OUT]; /* the first reply that spoils the transaction */
    int fail_code;
    br_refusals_t *refused;  /* recipients refused with 5xx in this transaction */
} job_t;

struct conn {
    conn_t *next, *prev;
    es_t *es;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    struct addrinfo *ai, *ai_cur;
    int refs;          /* handles open and requests in flight */
    bool tcp_init, closing, tls_on;
    cstate_t st;
    SSL *ssl;
    BIO *rbio, *wbio;
    char *in;
    size_t inlen, incap;
    smtp_ehlo_t feat;
    job_t *job;
    unsigned ntxn;     /* transactions started on this connection */
    bool reused;       /* the current job is not the connection's first */
    bool rset_piped;   /* RSET went out in one write with the envelope */
};

/* Bounce reports waiting for their message's SENT event, at most. */
#define BOUNCE_PENDING_MAX 4096

struct es {
    br_pending_t *bounces; /* per-recipient bounce reports, by message id */
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const es_conf_t *c;
    tls_mode_t mode;
    char host[256];
    char port[8];
    bool host_is_ip;
    char helo[256];
    SSL_CTX *ctx;
    conn_t *conns;
    size_t nconns;
    job_t *qhead, *qtail;
    bool finishing;
};

static const sp_conf_item_t g_schema[] = {
    {SP_CONF_STR, "relay", offsetof(es_conf_t, relay), NULL, SP_CONF_REQUIRED,
     "the smarthost as host:port (port 25, or 465 with tls: implicit, if left out)"},
    {SP_CONF_STR, "tls", offsetof(es_conf_t, tls), "starttls", 0,
     "starttls (required: no STARTTLS offered means defer), implicit, or none"},
    {SP_CONF_BOOL, "tls_verify", offsetof(es_conf_t, tls_verify), "true", 0,
     "verify the relay's certificate chain and host name"},
    {SP_CONF_STR, "ca_file", offsetof(es_conf_t, ca_file), "", 0,
     "PEM file of CA certificates to trust instead of the system store"},
    {SP_CONF_STR, "username", offsetof(es_conf_t, username), "", 0,
     "AUTH user name (empty: no AUTH)"},
    {SP_CONF_STR, "password", offsetof(es_conf_t, password), "", SP_CONF_SECRET,
     "AUTH password"},
    {SP_CONF_BOOL, "auth_plaintext", offsetof(es_conf_t, auth_plaintext), "false", 0,
     "allow AUTH without TLS (only with tls: none)"},
    {SP_CONF_STR, "helo", offsetof(es_conf_t, helo), "", 0,
     "name sent in EHLO (empty: this host's name)"},
    {SP_CONF_INT, "max_connections", offsetof(es_conf_t, max_connections), "4", 0,
     "connections to the relay at most"},
    {SP_CONF_INT, "max_messages_per_connection",
     offsetof(es_conf_t, max_messages_per_connection), "100", 0,
     "messages sent over one connection before it is closed"},
    {SP_CONF_DURATION, "connect_timeout", offsetof(es_conf_t, connect_timeout), "30s", 0,
     "TCP connect and TLS handshake"},
    {SP_CONF_DURATION, "command_timeout", offsetof(es_conf_t, command_timeout), "5m", 0,
     "waiting for the answer to a command (greeting, EHLO, AUTH, MAIL, RCPT, DATA)"},
    {SP_CONF_DURATION, "data_timeout", offsetof(es_conf_t, data_timeout), "10m", 0,
     "sending the message and waiting for the answer to its end"},
    {SP_CONF_DURATION, "idle_timeout", offsetof(es_conf_t, idle_timeout), "10s", 0,
     "how long an unused connection stays in the pool"},
    {0},
};

static void es_pump(es_t *es);
static void conn_fail(conn_t *c, const char *fmt, ...) SP_PRINTF(2, 3);
static void conn_next(conn_t *c);
static void conn_close(conn_t *c);
static void send_envelope(conn_t *c);

/* ---------------------------------------------------------------------- */
/* Configuration */

static int parse_relay(const char *relay, tls_mode_t mode, char *host, size_t hostlen,
                       char *port, size_t portlen)
{
    const char *h = relay, *colon, *he;
    size_t hl;
    if (relay == NULL || relay[0] == '\0') {
        return -1;
    }
    if (h[0] == '[') {
        he = strchr(h, ']');
        if (he == NULL) {
            return -1;
        }
        h++;
        colon = he[1] == ':' ? he + 1 : NULL;
        if (he[1] != '\0' && colon == NULL) {
            return -1;
        }
    } else {
        colon = strrchr(h, ':');
        he = colon != NULL ? colon : h + strlen(h);
    }
    hl = (size_t)(he - h);
    if (hl == 0 || hl >= hostlen) {
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (colon != NULL) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || v < 1 || v > 65535) {
            return -1;
        }
        snprintf(port, portlen, "%ld", v);
    } else {
        snprintf(port, portlen, "%s", mode == TLS_IMPLICIT ? "465" : "25");
    }
    return 0;
}

static int parse_mode(const char *s, tls_mode_t *m)
{
    if (s == NULL || strcmp(s, "starttls") == 0) {
        *m = TLS_STARTTLS;
    } else if (strcmp(s, "implicit") == 0) {
        *m = TLS_IMPLICIT;
    } else if (strcmp(s, "none") == 0) {
        *m = TLS_NONE;
    } else {
        return -1;
    }
    return 0;
}

static int es_conf_check(const void *conf, char *err, size_t errlen)
{
    const es_conf_t *c = conf;
    tls_mode_t m;
    char host[256], port[8];
    bool user = c->username != NULL && c->username[0] != '\0';
    bool pass = c->password != NULL && c->password[0] != '\0';

    if (parse_mode(c->tls, &m) < 0) {
        snprintf(err, errlen, "tls must be starttls, implicit or none");
        return -1;
    }
    if (parse_relay(c->relay, m, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(err, errlen, "relay must be host:port (or [ipv6]:port)");
        return -1;
    }
    if (c->max_connections < 1 || c->max_connections > 1000) {
        snprintf(err, errlen, "max_connections must be between 1 and 1000");
        return -1;
    }
    if (c->max_messages_per_connection < 1) {
        snprintf(err, errlen, "max_messages_per_connection must be at least 1");
        return -1;
    }
    if (user != pass) {
        snprintf(err, errlen, "username and password must be given together");
        return -1;
    }
    if (user && m == TLS_NONE && !c->auth_plaintext) {
        snprintf(err, errlen,
                 "credentials with tls: none are sent in clear: set auth_plaintext: true");
        return -1;
    }
    if (c->auth_plaintext && m != TLS_NONE) {
        snprintf(err, errlen, "auth_plaintext applies only to tls: none");
        return -1;
    }
    if (c->connect_timeout == 0 || c->command_timeout == 0 || c->data_timeout == 0 ||
        c->idle_timeout == 0) {
        snprintf(err, errlen, "timeouts must be greater than zero");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Jobs */

static void job_free(job_t *j)
{
    if (j == NULL) {
        return;
    }
    for (size_t i = 0; i < j->nrcpt; i++) {
        free(j->rcpt[i]);
    }
    free(j->rcpt);
    free(j->from);
    free(j->data);
    br_refusals_free(j->refused);
    free(j);
}

static void queue_push(es_t *es, job_t *j, bool front)
{
    j->next = NULL;
    if (es->qhead == NULL) {
        es->qhead = es->qtail = j;
    } else if (front) {
        j->next = es->qhead;
        es->qhead = j;
    } else {
        es->qtail->next = j;
        es->qtail = j;
    }
}

static bool queue_remove(es_t *es, job_t *j)
{
    job_t **pp = &es->qhead, *prev = NULL;
    while (*pp != NULL) {
        if (*pp == j) {
            *pp = j->next;
            if (es->qtail == j) {
                es->qtail = prev;
            }
            return true;
        }
        prev = *pp;
        pp = &(*pp)->next;
    }
    return false;
}

/* End a job with its verdict: reply, status, counters, resume, free. */
static void job_finish(job_t *j, sp_verdict_t v, sp_status_t st, int code, const char *text,
                       const char *provider_id)
{
    es_t *es = j->es;
    const sp_host_api_t *api = es->api;
    sp_msg_t *m = api->txn_msg(j->txn);

    switch (v) {
    case SP_ACCEPT:
        if (m != NULL && provider_id != NULL &&
            api->msg_set(m, SP_F_PROVIDER_ID, provider_id, strlen(provider_id)) < 0) {
            v = SP_DEFER;
            api->txn_set_reply(j->txn, 0, "out of memory");
            break;
        }
        api->counter_add(es->p, "sent", 1);
        api->log(es->p, SP_LOG_INFO, "message %s relayed to %s: %s", j->id, es->host,
                 provider_id != NULL ? provider_id : "");
        break;
    case SP_REJECT:
        api->txn_set_reply(j->txn, code, text);
        api->txn_set_status(j->txn, st);
        api->counter_add(es->p, st == SP_ST_BOUNCED ? "bounced" : "rejected", 1);
        api->log(es->p, SP_LOG_WARN, "message %s refused by %s: %s", j->id, es->host, text);
        break;
    default:
        api->txn_set_reply(j->txn, code, text);
        api->counter_add(es->p, "deferred", 1);
        api->log(es->p, SP_LOG_INFO, "message %s deferred: %s", j->id, text);
        break;
    }
    api->resume(j->tok, v);
    job_free(j);
}

/* A reply as a verdict: 4xx defers, 5xx rejects with `perm_status`. */
static void job_finish_reply(job_t *j, int code, const char *line, sp_status_t perm_status)
{
    if (code >= 500) {
        job_finish(j, SP_REJECT, perm_status, code, line, NULL);
    } else {
        job_finish(j, SP_DEFER, SP_ST_QUEUED, code, line, NULL);
    }
}

static void job_cancel(sp_token_t tok, void *arg)
{
    job_t *j = arg;
    es_t *es = j->es;
    (void)tok;
    es->api->log(es->p, SP_LOG_DEBUG, "message %s: delivery abandoned", j->id);
    if (j->conn != NULL) {
        conn_t *c = j->conn;
        /* Mid-transaction: the session state is unknown, drop it. */
        c->job = NULL;
        j->conn = NULL;
        conn_close(c);
    } else {
        (void)queue_remove(es, j);
    }
    job_free(j);
    es_pump(es); /* a connection slot may have come free */
}

/* ---------------------------------------------------------------------- */
/* Connections: handles and bytes */

static void conn_unref(conn_t *c)
{
    es_t *es = c->es;
    if (--c->refs > 0 || !c->closing) {
        return;
    }
    if (c->ai != NULL) {
        uv_freeaddrinfo(c->ai);
    }
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
    }
    free(c->in);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        es->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    free(c);
    if (es->finishing && es->conns == NULL) {
        SSL_CTX_free(es->ctx);
        free(es);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

/* Close now (no QUIT): handles closed, the connection freed when the last
 * callback has run. A job still attached must have been dealt with. */
static void conn_close(conn_t *c)
{
    es_t *es = c->es;
    if (c->closing) {
        return;
    }
    c->closing = true;
    es->nconns--;
    if (c->st == C_RESOLVE) {
        uv_cancel((uv_req_t *)&c->gai); /* its callback still runs */
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->tcp_init) {
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        c->tcp_init = false;
    }
    conn_unref(c); /* the reference the connection holds on itself */
}

static void on_timer(uv_timer_t *t);

static void conn_arm(conn_t *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

typedef struct wreq {
    uv_write_t w;
    conn_t *c;
    char buf[];
} wreq_t;

static void on_written(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    conn_t *c = wr->c;
    free(wr);
    if (status < 0 && !c->closing) {
        conn_fail(c, "writing to %s: %s", c->es->host, uv_strerror(status));
    }
    conn_unref(c);
}

static int send_raw(conn_t *c, const char *data, size_t len)
{
    wreq_t *wr;
    uv_buf_t b;
    int rc;
    if (len == 0) {
        return 0;
    }
    wr = malloc(sizeof(*wr) + len);
    if (wr == NULL) {
        return SP_ENOMEM;
    }
    memcpy(wr->buf, data, len);
    wr->c = c;
    b = uv_buf_init(wr->buf, (unsigned)len);
    rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        free(wr);
        return rc;
    }
    c->refs++;
    return 0;
}

/* Whatever the TLS engine has to send. */
static int tls_drain(conn_t *c)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(c->wbio, buf, sizeof(buf))) > 0) {
        int rc = send_raw(c, buf, (size_t)n);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* Send bytes of the SMTP session (through TLS when it is on). Failure
 * closes the connection (the job is handled): returns false then. */
static bool conn_send(conn_t *c, const char *data, size_t len)
{
    int rc = 0;
    if (c->tls_on) {
        size_t off = 0;
        while (off < len) {
            size_t chunk = len - off > (1u << 20) ? (1u << 20) : len - off;
            int n = SSL_write(c->ssl, data + off, (int)chunk);
            if (n <= 0) {
                ERR_clear_error();
                rc = SP_ESTATE;
                break;
            }
            off += (size_t)n;
        }
        if (rc == 0) {
            rc = tls_drain(c);
        }
    } else {
        rc = send_raw(c, data, len);
    }
    if (rc < 0) {
        conn_fail(c, "sending to %s: %s", c->es->host,
                  rc == SP_ESTATE ? "TLS error" : uv_strerror(rc));
        return false;
    }
    return true;
}

static bool conn_cmd(conn_t *c, cstate_t st, const char *fmt, ...) SP_PRINTF(3, 4);
static bool conn_cmd(conn_t *c, cstate_t st, const char *fmt, ...)
{
    char line[1100];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 2) {
        conn_fail(c, "command too long");
        return false;
    }
    memcpy(line + n, "\r\n", 2);
    c->st = st;
    conn_arm(c, c->es->c->command_timeout);
    return conn_send(c, line, (size_t)n + 2);
}

/* ---------------------------------------------------------------------- */
/* Failures */

static const char *state_name(cstate_t st)
{
    static const char *const names[] = {
        "resolving", "connecting", "TLS handshake", "greeting", "EHLO", "HELO", "STARTTLS",
        "AUTH", "AUTH LOGIN", "AUTH LOGIN", "session", "idle", "RSET", "MAIL FROM", "RCPT TO",
        "DATA", "end of data", "QUIT"};
    return (size_t)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

/* The connection is unusable: close it and defer its job, or (a pooled
 * connection that broke before the message went out) retry the job once on
 * a fresh connection. */
static void conn_fail(conn_t *c, const char *fmt, ...)
{
    es_t *es = c->es;
    job_t *j = c->job;
    char why[LINE_MAX_OUT];
    va_list ap;
    if (c->closing) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->job = NULL;
    if (j != NULL) {
        j->conn = NULL;
    }
    conn_close(c);
    if (j == NULL) {
        es->api->log(es->p, SP_LOG_DEBUG, "pooled connection to %s closed: %s", es->host, why);
    } else if (c->reused && !j->retried && c->st != C_BODY) {
        es->api->log(es->p, SP_LOG_INFO,
                     "message %s: pooled connection to %s broke (%s); retrying on a new one",
                     j->id, es->host, why);
        j->retried = true;
        j->need_fresh = true;
        queue_push(es, j, true);
    } else {
        job_finish(j, SP_DEFER, SP_ST_QUEUED, 0, why, NULL);
    }
    es_pump(es);
}

/* A reply that ends the connection's set-up (greeting, EHLO, AUTH): the
 * job gets it (4xx defer, 5xx reject), the connection says QUIT. */
static void conn_setup_refused(conn_t *c, const smtp_reply_t *r, const char *what)
{
    es_t *es = c->es;
    job_t *j = c->job;
    char line[LINE_MAX_OUT], text[LINE_MAX_OUT + 64];
    smtp_reply_line(r, line, sizeof(line));
    snprintf(text, sizeof(text), "%s: %s", what, line);
    c->job = NULL;
    if (j != NULL) {
        j->conn = NULL;
        job_finish_reply(j, r->code, text, SP_ST_REJECTED);
    } else {
        es->api->log(es->p, SP_LOG_INFO, "connection to %s: %s", es->host, text);
    }
    if (!c->closing) {
        if (conn_cmd(c, C_QUIT, "QUIT")) {
            conn_arm(c, QUIT_TIMEOUT_MS);
        }
    }
    es_pump(es);
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    es_t *es = c->es;
    if (c->st == C_IDLE) {
        es->api->log(es->p, SP_LOG_DEBUG, "connection to %s idle: QUIT", es->host);
        if (conn_cmd(c, C_QUIT, "QUIT")) {
            conn_arm(c, QUIT_TIMEOUT_MS);
        }
        return;
    }
    if (c->st == C_QUIT) {
        conn_close(c);
        return;
    }
    conn_fail(c, "timed out in %s with %s", state_name(c->st), es->host);
}

/* ---------------------------------------------------------------------- */
/* Session */

static int b64(const char *in, size_t len, char *out, size_t outlen)
{
    if (4 * ((len + 2) / 3) + 1 > outlen) {
        return -1;
    }
    return EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
}

/* After EHLO (and TLS): AUTH if configured, then the job. */
static void after_hello(conn_t *c)
{
    es_t *es = c->es;
    const es_conf_t *cf = es->c;
    if (cf->username[0] != '\0') {
        if (!c->tls_on && !(es->mode == TLS_NONE && cf->auth_plaintext)) {
            conn_fail(c, "will not send credentials to %s without TLS", es->host);
            return;
        }
        if (c->feat.auth_plain) {
            char raw[1024], enc[1400];
            int n = snprintf(raw, sizeof(raw), "%c%s%c%s", 0, cf->username, 0, cf->password);
            int e = n > 0 && (size_t)n < sizeof(raw) ? b64(raw, (size_t)n, enc, sizeof(enc))
                                                     : -1;
            OPENSSL_cleanse(raw, sizeof(raw));
            if (e < 0) {
                conn_fail(c, "credentials too long");
                return;
            }
            (void)conn_cmd(c, C_AUTH, "AUTH PLAIN %s", enc);
            OPENSSL_cleanse(enc, sizeof(enc));
        } else if (c->feat.auth_login) {
            (void)conn_cmd(c, C_AUTH_USER, "AUTH LOGIN");
        } else {
            conn_fail(c, "%s offers no AUTH PLAIN or LOGIN", es->host);
        }
        return;
    }
    c->st = C_BUSY;
    conn_next(c);
}

static void tls_failed(conn_t *c)
{
    long vr = c->ssl != NULL ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "";
    if (vr != X509_V_OK) {
        ERR_clear_error();
        conn_fail(c, "TLS with %s failed: certificate verification: %s", c->es->host,
                  X509_verify_cert_error_string(vr));
        return;
    }
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
    }
    ERR_clear_error();
    conn_fail(c, "TLS handshake with %s failed%s%s", c->es->host, buf[0] ? ": " : "", buf);
}

static int tls_begin(conn_t *c)
{
    es_t *es = c->es;
    c->ssl = SSL_new(es->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        ERR_clear_error();
        return SP_ENOMEM;
    }
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    if (!es->host_is_ip) {
        (void)SSL_set_tlsext_host_name(c->ssl, es->host);
    }
    if (es->c->tls_verify) {
        int ok = es->host_is_ip
                     ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), es->host)
                     : SSL_set1_host(c->ssl, es->host);
        if (ok != 1) {
            ERR_clear_error();
            return SP_EINVAL;
        }
    }
    SSL_set_connect_state(c->ssl);
    c->st = C_TLS;
    conn_arm(c, es->c->connect_timeout);
    (void)SSL_do_handshake(c->ssl);
    return tls_drain(c);
}

/* The handshake finished: implicit TLS waits for the greeting, STARTTLS
 * says EHLO again. */
static void tls_up(conn_t *c)
{
    es_t *es = c->es;
    c->tls_on = true;
    es->api->log(es->p, SP_LOG_DEBUG, "%s: %s %s", es->host, SSL_get_version(c->ssl),
                 SSL_get_cipher_name(c->ssl));
    if (es->mode == TLS_IMPLICIT) {
        c->st = C_GREET;
        conn_arm(c, es->c->command_timeout);
    } else {
        memset(&c->feat, 0, sizeof(c->feat));
        (void)conn_cmd(c, C_EHLO, "EHLO %s", es->helo);
    }
}

static void record_fail(job_t *j, const smtp_reply_t *r, const char *prefix)
{
    char line[LINE_MAX_OUT];
    if (j->fail_code != 0) {
        return;
    }
    smtp_reply_line(r, line, sizeof(line));
    snprintf(j->fail, sizeof(j->fail), "%s%s", prefix, line);
    j->fail_code = r->code;
}

/* The envelope is answered: go on to the body, or end the job. */
static bool envelope_ok(const job_t *j)
{
    return j->mail_code / 100 == 2 && j->rcpt_ok > 0 && j->ntemp == 0;
}

/* The transaction cannot go on: the job's verdict from its replies. */
static void txn_refused(conn_t *c, const smtp_reply_t *data_reply)
{
    job_t *j = c->job;
    char line[LINE_MAX_OUT];
    c->job = NULL;
    j->conn = NULL;
    if (j->mail_code / 100 != 2) {
        /* j->fail holds the MAIL reply */
        job_finish_reply(j, j->mail_code, j->fail, SP_ST_REJECTED);
    } else if (j->ntemp > 0 || j->rcpt_ok == 0) {
        job_finish_reply(j, j->fail_code, j->fail, SP_ST_BOUNCED);
    } else if (data_reply != NULL) {
        smtp_reply_line(data_reply, line, sizeof(line));
        job_finish_reply(j, data_reply->code, line, SP_ST_BOUNCED);
    } else {
        job_finish(j, SP_DEFER, SP_ST_QUEUED, 0, "transaction failed", NULL);
    }
}

static void send_rcpt(conn_t *c)
{
    job_t *j = c->job;
    (void)conn_cmd(c, C_RCPT, "RCPT TO:<%s>", j->rcpt[j->ridx]);
}

static void on_reply(conn_t *c, const smtp_reply_t *r)
{
    es_t *es = c->es;
    job_t *j = c->job;
    char line[LINE_MAX_OUT];
    int cls = r->code / 100;

    switch (c->st) {
    case C_GREET:
        if (cls != 2) {
            conn_setup_refused(c, r, "greeting");
            return;
        }
        (void)conn_cmd(c, C_EHLO, "EHLO %s", es->helo);
        return;
    case C_EHLO:
        if (cls == 5 && !(es->mode == TLS_STARTTLS && !c->tls_on)) {
            (void)conn_cmd(c, C_HELO, "HELO %s", es->helo); /* an SMTP-only server */
            return;
        }
        if (cls != 2) {
            conn_setup_refused(c, r, "EHLO");
            return;
        }
        smtp_ehlo_parse(r, &c->feat);
        if (es->mode == TLS_STARTTLS && !c->tls_on) {
            if (!c->feat.starttls) {
                conn_fail(c, "%s does not offer STARTTLS; not sending in clear (tls: starttls)",
                          es->host);
                return;
            }
            (void)conn_cmd(c, C_STARTTLS, "STARTTLS");
            return;
        }
        after_hello(c);
        return;
    case C_HELO:
        if (cls != 2) {
            conn_setup_refused(c, r, "HELO");
            return;
        }
        memset(&c->feat, 0, sizeof(c->feat));
        after_hello(c);
        return;
    case C_STARTTLS:
        if (r->code != 220) {
            smtp_reply_line(r, line, sizeof(line));
            conn_fail(c, "STARTTLS refused by %s: %s", es->host, line);
            return;
        }
        if (c->inlen > 0) {
            conn_fail(c, "%s sent data after its STARTTLS answer", es->host);
            return;
        }
        if (tls_begin(c) < 0) {
            conn_fail(c, "cannot start TLS with %s", es->host);
        }
        return;
    case C_AUTH_USER:
    case C_AUTH_PASS: {
        const char *v = c->st == C_AUTH_USER ? es->c->username : es->c->password;
        char enc[1400];
        if (r->code != 334) {
            conn_setup_refused(c, r, "AUTH LOGIN");
            return;
        }
        if (b64(v, strlen(v), enc, sizeof(enc)) < 0) {
            conn_fail(c, "credentials too long");
            return;
        }
        (void)conn_cmd(c, c->st == C_AUTH_USER ? C_AUTH_PASS : C_AUTH, "%s", enc);
        OPENSSL_cleanse(enc, sizeof(enc));
        return;
    }
    case C_AUTH:
        if (cls != 2) {
            conn_setup_refused(c, r, "authentication failed");
            return;
        }
        c->st = C_BUSY;
        conn_next(c);
        return;
    case C_RSET:
        if (cls != 2) {
            smtp_reply_line(r, line, sizeof(line));
            conn_fail(c, "RSET refused by %s: %s", es->host, line);
            return;
        }
        if (c->rset_piped) {
            c->rset_piped = false;
            c->st = C_MAIL; /* the envelope's answers follow */
            return;
        }
        send_envelope(c);
        return;
    case C_MAIL:
        j->mail_code = r->code;
        if (cls != 2) {
            record_fail(j, r, "");
        }
        if (c->feat.pipelining) {
            c->st = C_RCPT; /* the RCPT and DATA answers follow */
        } else if (cls == 2) {
            send_rcpt(c);
        } else {
            txn_refused(c, NULL);
            c->st = C_BUSY;
            conn_next(c);
        }
        return;
    case C_RCPT:
        if (cls == 2) {
            j->rcpt_ok++;
        } else {
            smtp_reply_line(r, line, sizeof(line));
            if (cls == 4) {
                j->ntemp++;
            } else {
                j->nperm++;
            }
            if (j->mail_code / 100 == 2) {
                es->api->log(es->p, SP_LOG_INFO, "message %s: recipient <%s> refused: %s", j->id,
                             j->rcpt[j->ridx], line);
                if (cls == 5) {
                    (void)br_refusal_add(&j->refused, j->rcpt[j->ridx], line);
                }
            }
            /* A temporary refusal outranks permanent ones: the message is
             * retried for everybody. */
            if (cls == 4 && j->fail_code / 100 == 5 && j->mail_code / 100 == 2) {
                j->fail_code = 0;
            }
            record_fail(j, r, "");
        }
        j->ridx++;
        if (j->ridx < j->nrcpt) {
            if (!c->feat.pipelining) {
                send_rcpt(c);
            }
            return;
        }
        if (c->feat.pipelining) {
            c->st = C_DATA;
        } else if (envelope_ok(j)) {
            (void)conn_cmd(c, C_DATA, "DATA");
        } else {
            txn_refused(c, NULL);
            c->st = C_BUSY;
            conn_next(c);
        }
        return;
    case C_DATA:
        if (r->code == 354 && envelope_ok(j)) {
            c->st = C_BODY;
            conn_arm(c, es->c->data_timeout);
            (void)conn_send(c, j->data, j->datalen);
            return;
        }
        txn_refused(c, r->code == 354 ? NULL : r);
        if (r->code == 354) {
            /* Pipelined DATA was accepted although the envelope failed:
             * the session is in the message now; drop it. */
            conn_close(c);
            es_pump(es);
            return;
        }
        c->st = C_BUSY;
        conn_next(c);
        return;
    case C_BODY: {
        char qid[256];
        smtp_reply_line(r, line, sizeof(line));
        c->job = NULL;
        j->conn = NULL;
        if (cls == 2) {
            if (j->nperm > 0) {
                es->api->counter_add(es->p, "recipients_refused", j->nperm);
            }
            if (j->refused != NULL) {
                /* Reported as BOUNCED once SENT is recorded (on_event). */
                char *data = br_event_data(j->refused, es->host);
                if (data != NULL) {
                    (void)br_pending_put(&es->bounces, j->id, data, BOUNCE_PENDING_MAX);
                }
            }
            job_finish(j, SP_ACCEPT, SP_ST_SENT, r->code, NULL,
                       smtp_reply_queue_id(r, qid, sizeof(qid)) > 0 ? qid : line);
        } else {
            job_finish_reply(j, r->code, line, SP_ST_BOUNCED);
        }
        c->st = C_BUSY;
        conn_next(c);
        return;
    }
    case C_QUIT:
        conn_close(c);
        return;
    default:
        /* An answer nobody asked for (a 421 while idle, say). */
        smtp_reply_line(r, line, sizeof(line));
        conn_fail(c, "unexpected reply from %s: %s", es->host, line);
        return;
    }
}

static void conn_process(conn_t *c)
{
    size_t off = 0;
    while (!c->closing && off < c->inlen) {
        smtp_reply_t r;
        size_t used;
        smtp_reply_res_t res;
        if (c->st == C_TLS) {
            break;
        }
        res = smtp_reply_parse(c->in + off, c->inlen - off, &r, &used);
        if (res == SMTP_REPLY_MORE) {
            break;
        }
        if (res != SMTP_REPLY_OK) {
            conn_fail(c, "%s sent a malformed reply in %s", c->es->host, state_name(c->st));
            return;
        }
        off += used;
        if (c->st == C_STARTTLS) {
            /* Anything after the 220 would be read as if it came over TLS. */
            memmove(c->in, c->in + off, c->inlen - off);
            c->inlen -= off;
            off = 0;
        }
        on_reply(c, &r);
    }
    if (!c->closing && off > 0) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
}

static int in_append(conn_t *c, const char *data, size_t n)
{
    if (c->inlen + n > IN_MAX) {
        return SP_ETOOBIG;
    }
    if (c->inlen + n > c->incap) {
        size_t cap = c->incap == 0 ? 4096 : c->incap;
        char *nb;
        while (cap < c->inlen + n) {
            cap *= 2;
        }
        nb = realloc(c->in, cap);
        if (nb == NULL) {
            return SP_ENOMEM;
        }
        c->in = nb;
        c->incap = cap;
    }
    memcpy(c->in + c->inlen, data, n);
    c->inlen += n;
    return 0;
}

/* Network bytes through TLS; false if the connection failed. */
static bool tls_input(conn_t *c, const char *data, size_t n)
{
    char buf[16384];
    int r;
    if (BIO_write(c->rbio, data, (int)n) != (int)n) {
        conn_fail(c, "out of memory");
        return false;
    }
    if (c->st == C_TLS) {
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (tls_drain(c) < 0) {
                conn_fail(c, "sending to %s failed", c->es->host);
                return false;
            }
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                return true;
            }
            tls_failed(c);
            return false;
        }
        if (tls_drain(c) < 0) {
            conn_fail(c, "sending to %s failed", c->es->host);
            return false;
        }
        tls_up(c);
        if (c->closing) {
            return false;
        }
    }
    for (;;) {
        r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r > 0) {
            if (in_append(c, buf, (size_t)r) < 0) {
                conn_fail(c, "%s sent too much", c->es->host);
                return false;
            }
            continue;
        }
        r = SSL_get_error(c->ssl, r);
        ERR_clear_error();
        if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE) {
            break;
        }
        if (r == SSL_ERROR_ZERO_RETURN) {
            break; /* the TCP end follows */
        }
        conn_fail(c, "TLS error from %s", c->es->host);
        return false;
    }
    if (tls_drain(c) < 0) {
        conn_fail(c, "sending to %s failed", c->es->host);
        return false;
    }
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char scratch[65536]; /* the loop is single-threaded */
    (void)h;
    (void)suggested;
    *b = uv_buf_init(scratch, sizeof(scratch));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (c->closing || n == 0) {
        return;
    }
    if (n < 0) {
        if (c->st == C_QUIT) {
            conn_close(c);
        } else if (c->st == C_TLS) {
            tls_failed(c);
        } else {
            conn_fail(c, "%s closed the connection in %s%s%s", c->es->host, state_name(c->st),
                      n == UV_EOF ? "" : ": ", n == UV_EOF ? "" : uv_strerror((int)n));
        }
        return;
    }
    if (c->ssl != NULL) {
        if (!tls_input(c, b->base, (size_t)n)) {
            return;
        }
    } else if (in_append(c, b->base, (size_t)n) < 0) {
        conn_fail(c, "%s sent too much", c->es->host);
        return;
    }
    conn_process(c);
}

/* ---------------------------------------------------------------------- */
/* Connecting */

static void try_connect(conn_t *c);

static void on_tcp_retry(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (c->closing) {
        conn_unref(c);
        return;
    }
    c->refs--; /* the closed handle's; the connection's own keeps it alive */
    try_connect(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    es_t *es = c->es;
    if (c->closing) {
        conn_unref(c);
        return;
    }
    if (status < 0) {
        if (c->ai_cur != NULL && c->ai_cur->ai_next != NULL) {
            /* The next address, on the same handle once it has closed. */
            c->ai_cur = c->ai_cur->ai_next;
            c->tcp_init = false;
            uv_close((uv_handle_t *)&c->tcp, on_tcp_retry);
            conn_unref(c);
            return;
        }
        conn_fail(c, "connect to %s:%s: %s", es->host, es->port, uv_strerror(status));
        conn_unref(c);
        return;
    }
    conn_unref(c);
    es->api->counter_add(es->p, "connections_opened", 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_fail(c, "cannot read from %s", es->host);
        return;
    }
    if (es->mode == TLS_IMPLICIT) {
        if (tls_begin(c) < 0) {
            conn_fail(c, "cannot start TLS with %s", es->host);
        }
        return;
    }
    c->st = C_GREET;
    conn_arm(c, es->c->command_timeout);
}

static void try_connect(conn_t *c)
{
    es_t *es = c->es;
    int rc = uv_tcp_init((uv_loop_t *)es->api->uv_loop(), &c->tcp);
    if (rc < 0) {
        conn_fail(c, "socket: %s", uv_strerror(rc));
        return;
    }
    c->tcp.data = c;
    c->tcp_init = true;
    c->refs++;
    (void)uv_tcp_nodelay(&c->tcp, 1);
    c->creq.data = c;
    c->st = C_CONNECT;
    rc = uv_tcp_connect(&c->creq, &c->tcp, c->ai_cur->ai_addr, on_connect);
    if (rc < 0) {
        conn_fail(c, "connect to %s:%s: %s", es->host, es->port, uv_strerror(rc));
        return;
    }
    c->refs++;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    conn_t *c = req->data;
    es_t *es = c->es;
    c->ai = res;
    if (c->closing) {
        conn_unref(c);
        return;
    }
    if (status < 0 || res == NULL) {
        conn_fail(c, "cannot resolve %s: %s", es->host, uv_strerror(status));
        conn_unref(c);
        return;
    }
    c->ai_cur = res;
    try_connect(c);
    conn_unref(c);
}

/* A new connection that will carry job j once it is set up. */
static void conn_open(es_t *es, job_t *j)
{
    struct addrinfo hints;
    conn_t *c = calloc(1, sizeof(*c));
    int rc;
    if (c == NULL) {
        job_finish(j, SP_DEFER, SP_ST_QUEUED, 0, "out of memory", NULL);
        return;
    }
    c->es = es;
    c->next = es->conns;
    if (es->conns != NULL) {
        es->conns->prev = c;
    }
    es->conns = c;
    es->nconns++;
    c->refs = 1; /* the connection's own, dropped by conn_close */
    uv_timer_init((uv_loop_t *)es->api->uv_loop(), &c->timer);
    c->timer.data = c;
    c->refs++;
    c->job = j;
    j->conn = c;
    j->need_fresh = false;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->gai.data = c;
    c->st = C_RESOLVE;
    conn_arm(c, es->c->connect_timeout);
    rc = uv_getaddrinfo((uv_loop_t *)es->api->uv_loop(), &c->gai, on_resolved, es->host,
                        es->port, &hints);
    if (rc < 0) {
        c->st = C_BUSY;
        conn_fail(c, "cannot resolve %s: %s", es->host, uv_strerror(rc));
        return;
    }
    c->refs++;
}

/* ---------------------------------------------------------------------- */
/* Transactions */

static void send_envelope(conn_t *c)
{
    es_t *es = c->es;
    job_t *j = c->job;
    char params[96] = "";
    size_t pl = 0;
    char *buf;
    size_t len = 0, cap;

    j->ridx = j->rcpt_ok = j->ntemp = j->nperm = 0;
    br_refusals_free(j->refused);
    j->refused = NULL;
    j->mail_code = 0;
    j->fail_code = 0;
    j->fail[0] = '\0';
    if (c->feat.size) {
        pl += (size_t)snprintf(params + pl, sizeof(params) - pl, " SIZE=%zu", j->msglen);
    }
    if (j->eightbit && c->feat.eightbitmime) {
        pl += (size_t)snprintf(params + pl, sizeof(params) - pl, " BODY=8BITMIME");
    }
    if (j->utf8 && c->feat.smtputf8) {
        pl += (size_t)snprintf(params + pl, sizeof(params) - pl, " SMTPUTF8");
    }
    if (!c->feat.pipelining) {
        (void)conn_cmd(c, C_MAIL, "MAIL FROM:<%s>%s", j->from, params);
        return;
    }
    cap = strlen(j->from) + pl + 32 + 8 + 8;
    for (size_t i = 0; i < j->nrcpt; i++) {
        cap += strlen(j->rcpt[i]) + 14;
    }
    buf = malloc(cap);
    if (buf == NULL) {
        conn_fail(c, "out of memory");
        return;
    }
    if (c->rset_piped) {
        /* RFC 2920: RSET may lead a pipelined group; its answer comes first. */
        len += (size_t)snprintf(buf + len, cap - len, "RSET\r\n");
    }
    len += (size_t)snprintf(buf + len, cap - len, "MAIL FROM:<%s>%s\r\n", j->from, params);
    for (size_t i = 0; i < j->nrcpt; i++) {
        len += (size_t)snprintf(buf + len, cap - len, "RCPT TO:<%s>\r\n", j->rcpt[i]);
    }
    len += (size_t)snprintf(buf + len, cap - len, "DATA\r\n");
    c->st = c->rset_piped ? C_RSET : C_MAIL;
    conn_arm(c, es->c->command_timeout);
    (void)conn_send(c, buf, len);
    free(buf);
}

/* The connection is set up or finished a transaction: start its job, take
 * the next one from the queue, or rest in the pool. */
static void conn_next(conn_t *c)
{
    es_t *es = c->es;
    if (c->closing) {
        return;
    }
    if (c->job == NULL && es->qhead != NULL && !es->finishing &&
        c->ntxn < (unsigned)es->c->max_messages_per_connection) {
        /* A job that must not reuse a pooled connection waits for a new one. */
        job_t *j = es->qhead;
        if (!(j->need_fresh && c->ntxn > 0)) {
            queue_remove(es, j);
            c->job = j;
            j->conn = c;
        }
    }
    if (c->job != NULL) {
        c->reused = c->ntxn > 0;
        c->ntxn++;
        if (c->reused && c->feat.pipelining) {
            es->api->counter_add(es->p, "connections_reused", 1);
            c->rset_piped = true;
            send_envelope(c);
        } else if (c->reused) {
            es->api->counter_add(es->p, "connections_reused", 1);
            (void)conn_cmd(c, C_RSET, "RSET");
        } else {
            send_envelope(c);
        }
        return;
    }
    if (es->finishing || c->ntxn >= (unsigned)es->c->max_messages_per_connection) {
        if (conn_cmd(c, C_QUIT, "QUIT")) {
            conn_arm(c, QUIT_TIMEOUT_MS);
        }
        es_pump(es);
        return;
    }
    c->st = C_IDLE;
    conn_arm(c, es->c->idle_timeout);
    es_pump(es);
}

/* Hand waiting jobs to idle connections, or open new ones. */
static void es_pump(es_t *es)
{
    while (es->qhead != NULL && !es->finishing) {
        job_t *j = es->qhead;
        conn_t *idle = NULL;
        if (!j->need_fresh) {
            for (conn_t *c = es->conns; c != NULL; c = c->next) {
                if (!c->closing && c->st == C_IDLE) {
                    idle = c;
                    break;
                }
            }
        }
        if (idle != NULL) {
            uv_timer_stop(&idle->timer);
            idle->st = C_BUSY;
            conn_next(idle);
            continue;
        }
        if (es->nconns >= (size_t)es->c->max_connections) {
            /* A job needing a fresh connection may close an idle one. */
            if (j->need_fresh) {
                for (conn_t *c = es->conns; c != NULL; c = c->next) {
                    if (!c->closing && c->st == C_IDLE) {
                        idle = c;
                        break;
                    }
                }
                if (idle != NULL) {
                    conn_close(idle);
                    continue;
                }
            }
            return;
        }
        queue_remove(es, j);
        conn_open(es, j);
    }
}

/* ---------------------------------------------------------------------- */
/* The egress hook */

/* The addr-spec of "Name <addr>" or "addr", copied; NULL if unusable. */
static char *addr_spec(const char *s, size_t len, bool *utf8)
{
    const char *lt = NULL, *b = s, *e = s + len;
    char *out;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '<') {
            lt = s + i;
        }
    }
    if (lt != NULL) {
        const char *gt = memchr(lt, '>', (size_t)(e - lt));
        if (gt == NULL) {
            return NULL;
        }
        b = lt + 1;
        e = gt;
    }
    while (b < e && (*b == ' ' || *b == '\t')) {
        b++;
    }
    while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
        e--;
    }
    if (e - b > 512) {
        return NULL;
    }
    for (const char *q = b; q < e; q++) {
        unsigned char ch = (unsigned char)*q;
        if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>') {
            return NULL;
        }
        if (ch >= 0x80) {
            *utf8 = true;
        }
    }
    out = malloc((size_t)(e - b) + 1);
    if (out != NULL) {
        memcpy(out, b, (size_t)(e - b));
        out[e - b] = '\0';
    }
    return out;
}

/* Build the job from the message. 0, or a verdict-worthy error in err. */
static int job_build(es_t *es, sp_msg_t *m, job_t *j, char *err, size_t errlen)
{
    const sp_host_api_t *api = es->api;
    static const char *const fields[] = {SP_F_TO, SP_F_CC, SP_F_BCC};
    size_t len, n = 0, cap = 0;
    const char *v;

    v = api->msg_get(m, SP_F_ID, &len);
    snprintf(j->id, sizeof(j->id), "%.*s", v != NULL ? (int)len : 1, v != NULL ? v : "?");
    v = api->msg_get(m, SP_F_FROM, &len);
    if (v == NULL || (j->from = addr_spec(v, len, &j->utf8)) == NULL) {
        snprintf(err, errlen, "the from address is missing or malformed");
        return SP_EINVAL;
    }
    for (size_t f = 0; f < 3; f++) {
        cap += api->msg_count(m, fields[f]);
    }
    j->rcpt = calloc(cap > 0 ? cap : 1, sizeof(char *));
    if (j->rcpt == NULL) {
        return SP_ENOMEM;
    }
    for (size_t f = 0; f < 3; f++) {
        size_t cnt = api->msg_count(m, fields[f]);
        for (size_t i = 0; i < cnt; i++) {
            bool dup = false;
            char *a;
            v = api->msg_get_at(m, fields[f], i, &len);
            if (v == NULL || (a = addr_spec(v, len, &j->utf8)) == NULL || a[0] == '\0') {
                if (v != NULL && len > 0) {
                    snprintf(err, errlen, "recipient address malformed: %.*s",
                             len > 200 ? 200 : (int)len, v);
                    return SP_EINVAL;
                }
                continue;
            }
            for (size_t k = 0; k < n && !dup; k++) {
                dup = strcasecmp(j->rcpt[k], a) == 0;
            }
            if (dup) {
                free(a);
                continue;
            }
            j->rcpt[n++] = a;
            j->nrcpt = n;
        }
    }
    if (n == 0) {
        snprintf(err, errlen, "the message has no recipients");
        return SP_EINVAL;
    }
    v = api->msg_get(m, SP_F_MIME, &len);
    if (v == NULL) {
        return SP_ENOTFOUND;
    }
    j->msglen = len;
    for (size_t i = 0; i < len && !j->eightbit; i++) {
        j->eightbit = (unsigned char)v[i] >= 0x80;
    }
    j->data = malloc(SMTP_STUFFED_MAX(len));
    if (j->data == NULL) {
        return SP_ENOMEM;
    }
    j->datalen = smtp_dot_stuff(v, len, j->data);
    return 0;
}

static sp_verdict_t es_egress(sp_txn_t *txn, void *ctx)
{
    es_t *es = ctx;
    const sp_host_api_t *api = es->api;
    const es_conf_t *cf = es->c;
    char err[300] = "";
    job_t *j;
    uint64_t to;
    int rc;

    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return SP_DEFER;
    }
    j->es = es;
    j->txn = txn;
    rc = job_build(es, api->txn_msg(txn), j, err, sizeof(err));
    if (rc == SP_ENOTFOUND) {
        job_free(j);
        api->txn_set_reply(txn, 0, "no message was built: load the mime plugin");
        api->txn_set_status(txn, SP_ST_FAILED);
        return SP_REJECT;
    }
    if (rc == SP_EINVAL) {
        job_free(j);
        api->txn_set_reply(txn, 0, err);
        api->txn_set_status(txn, SP_ST_FAILED);
        return SP_REJECT;
    }
    if (rc < 0) {
        job_free(j);
        api->txn_set_reply(txn, 0, api->strerror(rc));
        return SP_DEFER;
    }
    /* Our own timers end every step; the core's is a backstop above them,
     * counting a wait in the queue and one retry on a new connection. */
    to = 2 * (cf->connect_timeout + 8 * cf->command_timeout + cf->data_timeout);
    j->tok = api->suspend(txn, to > UINT32_MAX ? UINT32_MAX : (uint32_t)to, job_cancel, j);
    if (j->tok == 0) {
        job_free(j);
        return SP_DEFER;
    }
    queue_push(es, j, false);
    es_pump(es);
    return SP_PENDING;
}

/* ---------------------------------------------------------------------- */
/* init, fini */

static void es_fini(sp_plugin_t *p, void *ctx);

/* A message with recipients refused by the relay reached SENT: record the
 * per-recipient bounce after it. Any other status of that message (the
 * outcome did not commit as SENT) drops the report. */
static void es_on_event(const sp_event_t *ev, void *ctx)
{
    es_t *es = ctx;
    char *data;
    if (es == NULL || es->bounces == NULL || ev->msg_id == NULL) {
        return;
    }
    data = br_pending_take(&es->bounces, ev->msg_id);
    if (data == NULL) {
        return;
    }
    if (ev->status == SP_ST_SENT) {
        int rc = es->api->emit_status(es->p, ev->msg_id, SP_ST_BOUNCED, data, NULL, NULL);
        if (rc < 0) {
            es->api->log(es->p, SP_LOG_WARN, "message %s: per-recipient bounce not recorded: %s",
                         ev->msg_id, es->api->strerror(rc));
        } else {
            es->api->counter_add(es->p, "recipient_bounces", 1);
        }
    }
    free(data);
}

static int es_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const es_conf_t *c = conf;
    es_t *es;
    struct in6_addr a6;
    int rc;

    if (!SP_API_HAS(api, uv_loop)) {
        api->log(p, SP_LOG_ERROR, "the host has no event loop access");
        return SP_EABI;
    }
    es = calloc(1, sizeof(*es));
    if (es == NULL) {
        return SP_ENOMEM;
    }
    es->p = p;
    es->api = api;
    es->c = c;
    (void)parse_mode(c->tls, &es->mode);
    (void)parse_relay(c->relay, es->mode, es->host, sizeof(es->host), es->port,
                      sizeof(es->port));
    es->host_is_ip = inet_pton(AF_INET, es->host, &a6) == 1 ||
                     inet_pton(AF_INET6, es->host, &a6) == 1;
    if (c->helo != NULL && c->helo[0] != '\0') {
        snprintf(es->helo, sizeof(es->helo), "%s", c->helo);
    } else if (gethostname(es->helo, sizeof(es->helo) - 1) != 0 || es->helo[0] == '\0') {
        snprintf(es->helo, sizeof(es->helo), "localhost");
    }
    for (char *q = es->helo; *q != '\0'; q++) {
        if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f) {
            *q = '-';
        }
    }
    if (es->mode != TLS_NONE) {
        es->ctx = SSL_CTX_new(TLS_client_method());
        if (es->ctx == NULL) {
            free(es);
            return SP_ENOMEM;
        }
        SSL_CTX_set_min_proto_version(es->ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(es->ctx, SSL_OP_NO_RENEGOTIATION);
        if (c->ca_file != NULL && c->ca_file[0] != '\0') {
            if (SSL_CTX_load_verify_locations(es->ctx, c->ca_file, NULL) != 1) {
                api->log(p, SP_LOG_ERROR, "cannot load ca_file %s", c->ca_file);
                ERR_clear_error();
                SSL_CTX_free(es->ctx);
                free(es);
                return SP_ECONFIG;
            }
        } else if (SSL_CTX_set_default_verify_paths(es->ctx) != 1) {
            ERR_clear_error();
        }
        SSL_CTX_set_verify(es->ctx, c->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    }
    rc = api->hook(p, SP_STAGE_EGRESS, es_egress, 0);
    if (rc == 0) {
        rc = api->on_event(p, es_on_event);
    }
    if (rc < 0) {
        es_fini(p, es); /* fini is not called after a failed init */
        return rc;
    }
    api->log(p, SP_LOG_INFO, "relaying to %s:%s (tls: %s%s, %lld connections at most)",
             es->host, es->port, c->tls, es->mode != TLS_NONE && !c->tls_verify
                                           ? ", not verified" : "",
             (long long)c->max_connections);
    *ctx = es;
    return 0;
}

static void es_fini(sp_plugin_t *p, void *ctx)
{
    es_t *es = ctx;
    (void)p;
    if (es == NULL) {
        return;
    }
    es->finishing = true;
    br_pending_free(&es->bounces);
    /* The core cancelled every suspended delivery before; anything left in
     * the queue is only freed. */
    while (es->qhead != NULL) {
        job_t *j = es->qhead;
        es->qhead = j->next;
        job_free(j);
    }
    es->qtail = NULL;
    for (conn_t *c = es->conns; c != NULL; c = c->next) {
        if (c->job != NULL) {
            c->job->conn = NULL;
            job_free(c->job);
            c->job = NULL;
        }
    }
    for (conn_t *c = es->conns; c != NULL; c = c->next) {
        conn_close(c); /* never frees synchronously: the handles close first */
    }
    if (es->conns == NULL) {
        SSL_CTX_free(es->ctx);
        free(es);
    } /* else the last connection's close callback frees es */
}

SP_PLUGIN_DEFINE(.name = "egress_smtp", .version = SP_VERSION_STRING,
                 .description = "relay to a smarthost over SMTP (STARTTLS, AUTH, pooled)",
                 .conf = g_schema, .conf_size = sizeof(es_conf_t),
                 .conf_check = es_conf_check, .init = es_init, .fini = es_fini);
