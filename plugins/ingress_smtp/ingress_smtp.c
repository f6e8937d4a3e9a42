/* SPDX-License-Identifier: Apache-2.0 */
/* ingress_smtp: SMTP submission (RFC 5321, 6409) on the core's libuv loop.
 * Plain listeners offer STARTTLS, tls_listen ones speak TLS at once; TLS
 * runs over memory BIOs so libuv keeps the socket. AUTH PLAIN/LOGIN takes
 * an API key as the password; each message is parsed (smtp_mime.c),
 * checked against the key's team and domains, submitted, and answered
 * 250 only after the core's durable commit. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <uv.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <sp/sp_plugin.h>

#include "smtp_mime.h"
#include "smtp_proto.h"
#include "smtp_tls.h"

#define READ_BUF (64u * 1024u)
#define LINGER_MS 2000u
#define MAX_LISTENERS 16
#define MAX_CIDRS 64

typedef struct sconf {
    char *listen;
    char *tls_listen;
    char *hostname;
    char *tls_cert;
    char *tls_key;
    bool allow_plain_auth;
    char *username;
    char *trusted_networks;
    int64_t trusted_team;
    uint64_t max_message_size;
    int64_t max_recipients;
    int64_t max_errors;
    uint64_t idle_timeout;
    uint64_t tls_timeout;
    uint64_t greeting_delay;
    int64_t max_sessions;
} sconf_t;

static const sp_conf_item_t g_schema[] = {
    {SP_CONF_STR, "listen", offsetof(sconf_t, listen), "127.0.0.1:2587", 0,
     "host:port list for plain SMTP with STARTTLS (empty: none)"},
    {SP_CONF_STR, "tls_listen", offsetof(sconf_t, tls_listen), "", 0,
     "host:port list for implicit TLS (SMTPS; empty: none)"},
    {SP_CONF_STR, "hostname", offsetof(sconf_t, hostname), "", 0,
     "name in the greeting and the self-signed certificate (empty: the host name)"},
    {SP_CONF_STR, "tls_cert", offsetof(sconf_t, tls_cert), "", 0,
     "PEM certificate chain (empty: a self-signed one in the data directory)"},
    {SP_CONF_STR, "tls_key", offsetof(sconf_t, tls_key), "", SP_CONF_SECRET,
     "PEM private key of tls_cert"},
    {SP_CONF_BOOL, "allow_plain_auth", offsetof(sconf_t, allow_plain_auth), "false", 0,
     "allow AUTH without TLS (only for trusted links)"},
    {SP_CONF_STR, "username", offsetof(sconf_t, username), "usesend", 0,
     "the AUTH user name; the password is an API key"},
    {SP_CONF_STR, "trusted_networks", offsetof(sconf_t, trusted_networks), "", 0,
     "CIDR list whose clients may submit without AUTH, as trusted_team"},
    {SP_CONF_INT, "trusted_team", offsetof(sconf_t, trusted_team), "0", 0,
     "team id of submissions from trusted_networks"},
    {SP_CONF_SIZE, "max_message_size", offsetof(sconf_t, max_message_size), "10M", 0,
     "largest message (552 beyond)"},
    {SP_CONF_INT, "max_recipients", offsetof(sconf_t, max_recipients), "100", 0,
     "recipients per message (452 beyond)"},
    {SP_CONF_INT, "max_errors", offsetof(sconf_t, max_errors), "10", 0,
     "refused commands before the session is closed (421)"},
    {SP_CONF_DURATION, "idle_timeout", offsetof(sconf_t, idle_timeout), "5m", 0,
     "time to wait for the client's next command or data (421)"},
    {SP_CONF_DURATION, "tls_timeout", offsetof(sconf_t, tls_timeout), "30s", 0,
     "time for a TLS handshake to complete"},
    {SP_CONF_DURATION, "greeting_delay", offsetof(sconf_t, greeting_delay), "0ms", 0,
     "wait before the greeting; a client that talks first is refused (554)"},
    {SP_CONF_INT, "max_sessions", offsetof(sconf_t, max_sessions), "256", 0,
     "concurrent sessions (421 beyond)"},
    {0},
};

typedef struct cidr {
    int family;
    unsigned char addr[16];
    int bits;
} cidr_t;

typedef enum { T_NONE = 0, T_GREET, T_IDLE, T_TLS, T_LINGER } tkind_t;

typedef enum {
    P_CMD = 0,
    P_AUTH_PLAIN,
    P_AUTH_LOGIN_USER,
    P_AUTH_LOGIN_PASS,
    P_DATA,
} phase_t;

struct server;

typedef struct sess {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    struct server *srv;
    struct sess *prev, *next;
    int open_handles;
    char remote[80];
    struct sockaddr_storage peer;
    smtp_tls_t tls;
    bool tls_on;
    bool implicit_tls;
    char *in;
    size_t inlen;
    char *out;
    size_t outlen, outcap;
    size_t writing;
    tkind_t tkind;
    phase_t phase;
    smtp_lines_t lines;
    smtp_data_t data;
    bool greeted;
    bool helo;   /* HELO or EHLO done */
    bool esmtp;  /* EHLO: the client may pipeline */
    bool authed;
    bool trusted;
    sp_auth_t auth;
    char login_user[400];
    bool in_mail;
    smtp_mail_t mail;
    char **rcpts;
    size_t nrcpt;
    int errors;
    bool closing;   /* handles are being closed */
    bool finishing; /* the last answer is queued: flush, then linger and close */
    bool lingering;
    bool reading;
    bool eof;
    bool submitting;
    bool in_submit; /* inside api->submit: its callback may run at once */
    bool overflow; /* over max_sessions: 421 and close */
} sess_t;

typedef struct server {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const sconf_t *conf;
    uv_loop_t *loop;
    uv_tcp_t listeners[MAX_LISTENERS];
    bool listener_tls[MAX_LISTENERS];
    size_t nlisteners;
    int open_listeners;
    SSL_CTX *ssl_ctx;
    uv_signal_t *reload;     /* SIGHUP: reload a configured certificate */
    char hostname[256];
    cidr_t cidrs[MAX_CIDRS];
    size_t ncidrs;
    sess_t *sessions;
    size_t nsessions; /* counted against max_sessions */
    size_t nalive;    /* not freed yet */
    bool finishing;
    bool mime_up;
} server_t;

static void sess_close(sess_t *s);
static void process(sess_t *s);
static void after_change(sess_t *s);

/* ---------------------------------------------------------------------- */
/* Addresses and networks */

/* "host:port", "[v6]:port" or "port". */
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
    memset(addr, 0, sizeof(*addr));
    if (strchr(host, ':') != NULL) {
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr) == 0 ? 0 : SP_EINVAL;
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) == 0 ? 0 : SP_EINVAL;
}

/* Call fn for each comma-separated, trimmed item of list; the count. */
static int each_item(const char *list, int (*fn)(void *arg, const char *s, size_t n), void *arg)
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
        if (e > b) {
            rc = fn(arg, b, (size_t)(e - b));
            if (rc < 0) {
                return rc;
            }
            count++;
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return count;
}

static int parse_cidr(const char *s, size_t n, cidr_t *out)
{
    char buf[80];
    char *slash, *end;
    long bits;
    if (n == 0 || n >= sizeof(buf)) {
        return SP_EINVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    slash = strchr(buf, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        bits = 128;
    } else {
        return SP_EINVAL;
    }
    if (slash != NULL) {
        long max = bits;
        bits = strtol(slash + 1, &end, 10);
        if (*end != '\0' || end == slash + 1 || bits < 0 || bits > max) {
            return SP_EINVAL;
        }
    }
    out->bits = (int)bits;
    return 0;
}

static bool cidr_match(const cidr_t *c, const struct sockaddr_storage *ss)
{
    const unsigned char *a;
    unsigned char mapped[4];
    int family = ss->ss_family;
    int full, rest;
    if (family == AF_INET) {
        a = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
    } else if (family == AF_INET6) {
        a = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (c->family == AF_INET && IN6_IS_ADDR_V4MAPPED(
                                        &((const struct sockaddr_in6 *)ss)->sin6_addr)) {
            memcpy(mapped, a + 12, 4);
            a = mapped;
            family = AF_INET;
        }
    } else {
        return false;
    }
    if (family != c->family) {
        return false;
    }
    full = c->bits / 8;
    rest = c->bits % 8;
    if (memcmp(a, c->addr, (size_t)full) != 0) {
        return false;
    }
    if (rest != 0) {
        unsigned char m = (unsigned char)(0xff << (8 - rest));
        return (a[full] & m) == (c->addr[full] & m);
    }
    return true;
}

static int check_listen(void *arg, const char *s, size_t n)
{
    struct sockaddr_storage a;
    (void)arg;
    return parse_addr(s, n, &a);
}

static int check_cidr(void *arg, const char *s, size_t n)
{
    cidr_t c;
    (void)arg;
    return parse_cidr(s, n, &c);
}

static int conf_check(const void *confp, char *err, size_t errlen)
{
    const sconf_t *c = confp;
    int n1 = each_item(c->listen, check_listen, NULL);
    int n2 = each_item(c->tls_listen, check_listen, NULL);
    int nc = each_item(c->trusted_networks, check_cidr, NULL);
    if (n1 < 0 || n2 < 0) {
        snprintf(err, errlen, "%s: expected host:port[, host:port...]",
                 n1 < 0 ? "listen" : "tls_listen");
        return -1;
    }
    if (n1 + n2 == 0) {
        snprintf(err, errlen, "listen and tls_listen are both empty");
        return -1;
    }
    if (n1 + n2 > MAX_LISTENERS) {
        snprintf(err, errlen, "at most %d listening addresses", MAX_LISTENERS);
        return -1;
    }
    if (nc < 0 || nc > MAX_CIDRS) {
        snprintf(err, errlen, "trusted_networks: expected up to %d CIDR blocks (10.0.0.0/8, ::1)",
                 MAX_CIDRS);
        return -1;
    }
    if (nc > 0 && c->trusted_team <= 0) {
        snprintf(err, errlen, "trusted_networks needs trusted_team (a team id)");
        return -1;
    }
    if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0')) {
        snprintf(err, errlen, "tls_cert and tls_key must be given together");
        return -1;
    }
    if (c->username[0] == '\0' || strlen(c->username) > 255) {
        snprintf(err, errlen, "username: 1 to 255 bytes");
        return -1;
    }
    if (strlen(c->hostname) > 200 || strpbrk(c->hostname, " \r\n\t") != NULL) {
        snprintf(err, errlen, "hostname: one word of at most 200 bytes");
        return -1;
    }
    if (c->max_message_size < 1024 || c->max_message_size > ((uint64_t)1 << 30)) {
        snprintf(err, errlen, "max_message_size: between 1K and 1G");
        return -1;
    }
    if (c->max_recipients < 1 || c->max_recipients > 100000) {
        snprintf(err, errlen, "max_recipients: between 1 and 100000");
        return -1;
    }
    if (c->max_errors < 1 || c->max_errors > 1000) {
        snprintf(err, errlen, "max_errors: between 1 and 1000");
        return -1;
    }
    if (c->idle_timeout == 0 || c->tls_timeout == 0) {
        snprintf(err, errlen, "idle_timeout and tls_timeout must be above zero");
        return -1;
    }
    if (c->max_sessions < 1 || c->max_sessions > 1000000) {
        snprintf(err, errlen, "max_sessions: between 1 and 1000000");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Output */

typedef struct wreq {
    uv_write_t w;
    sess_t *s;
    char *buf;
} wreq_t;

static void on_written(uv_write_t *w, int status)
{
    wreq_t *wr = w->data;
    sess_t *s = wr->s;
    free(wr->buf);
    free(wr);
    s->writing--;
    if (s->closing) {
        return;
    }
    if (status < 0) {
        sess_close(s);
        return;
    }
    after_change(s);
}

/* Queue bytes on the socket (copied). */
static int send_raw(sess_t *s, const void *data, size_t len)
{
    wreq_t *wr;
    uv_buf_t b;
    if (len == 0) {
        return 0;
    }
    wr = malloc(sizeof(*wr));
    if (wr == NULL) {
        return SP_ENOMEM;
    }
    wr->buf = malloc(len);
    if (wr->buf == NULL) {
        free(wr);
        return SP_ENOMEM;
    }
    memcpy(wr->buf, data, len);
    wr->s = s;
    wr->w.data = wr;
    b = uv_buf_init(wr->buf, (unsigned)len);
    if (uv_write(&wr->w, (uv_stream_t *)&s->tcp, &b, 1, on_written) < 0) {
        free(wr->buf);
        free(wr);
        return SP_ESTATE;
    }
    s->writing++;
    return 0;
}

/* Whatever the TLS engine wants to send. */
static int tls_drain(sess_t *s)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(s->tls.wbio, buf, sizeof(buf))) > 0) {
        int rc = send_raw(s, buf, (size_t)n);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* Write the buffered answers, through TLS when it is on. */
static void flush_out(sess_t *s)
{
    int rc = 0;
    if (s->closing || s->outlen == 0) {
        return;
    }
    if (s->tls_on) {
        size_t off = 0;
        while (off < s->outlen && rc == 0) {
            int n = SSL_write(s->tls.ssl, s->out + off, (int)(s->outlen - off));
            if (n <= 0) {
                rc = SP_ESTATE;
                break;
            }
            off += (size_t)n;
        }
        if (rc == 0) {
            rc = tls_drain(s);
        }
    } else {
        rc = send_raw(s, s->out, s->outlen);
    }
    s->outlen = 0;
    if (rc < 0) {
        sess_close(s);
    }
}

static void reply(sess_t *s, const char *fmt, ...) SP_PRINTF(2, 3);
static void reply(sess_t *s, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(line) - 3) {
        n = (int)sizeof(line) - 3;
    }
    for (int i = 0; i < n; i++) {
        if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0') {
            line[i] = ' '; /* one line per answer, whatever a hook wrote */
        }
    }
    line[n++] = '\r';
    line[n++] = '\n';
    if (s->outlen + (size_t)n > s->outcap) {
        size_t cap = s->outcap == 0 ? 4096 : s->outcap * 2;
        char *nb;
        while (cap < s->outlen + (size_t)n) {
            cap *= 2;
        }
        nb = realloc(s->out, cap);
        if (nb == NULL) {
            return;
        }
        s->out = nb;
        s->outcap = cap;
    }
    memcpy(s->out + s->outlen, line, (size_t)n);
    s->outlen += (size_t)n;
}

/* The session ends after this answer. */
static void final_reply(sess_t *s, const char *fmt, ...) SP_PRINTF(2, 3);
static void final_reply(sess_t *s, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    reply(s, "%s", line);
    s->finishing = true;
}

/* A refused command: counts towards max_errors. */
static void err_reply(sess_t *s, const char *fmt, ...) SP_PRINTF(2, 3);
static void err_reply(sess_t *s, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    reply(s, "%s", line);
    if (++s->errors >= s->srv->conf->max_errors) {
        s->srv->api->counter_add(s->srv->p, "error_limit", 1);
        final_reply(s, "421 4.7.0 %s Too many errors, closing connection", s->srv->hostname);
    }
}

/* ---------------------------------------------------------------------- */
/* Timers */

static void on_timer(uv_timer_t *t);

static void arm(sess_t *s, tkind_t kind)
{
    const sconf_t *c = s->srv->conf;
    uint64_t ms = 0;
    s->tkind = kind;
    switch (kind) {
    case T_GREET: ms = c->greeting_delay; break;
    case T_IDLE: ms = c->idle_timeout; break;
    case T_TLS: ms = c->tls_timeout; break;
    case T_LINGER: ms = LINGER_MS; break;
    case T_NONE: uv_timer_stop(&s->timer); return;
    }
    uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void greet(sess_t *s)
{
    s->greeted = true;
    if (s->overflow) {
        /* Over max_sessions on an implicit-TLS port: the refusal comes over
         * TLS, where the client can read it. */
        final_reply(s, "421 4.3.2 %s Too many connections, try again later", s->srv->hostname);
    } else {
        reply(s, "220 %s ESMTP sendpipe", s->srv->hostname);
    }
    flush_out(s);
}

static void on_timer(uv_timer_t *t)
{
    sess_t *s = t->data;
    tkind_t k = s->tkind;
    s->tkind = T_NONE;
    if (s->closing) {
        return;
    }
    switch (k) {
    case T_GREET:
        greet(s);
        break;
    case T_IDLE:
        s->srv->api->counter_add(s->srv->p, "idle_timeouts", 1);
        final_reply(s, "421 4.4.2 %s Idle timeout, closing connection", s->srv->hostname);
        flush_out(s);
        break;
    case T_TLS:
    case T_LINGER:
    case T_NONE:
        sess_close(s);
        return;
    }
    after_change(s);
}

/* ---------------------------------------------------------------------- */
/* Transactions */

static void txn_reset(sess_t *s)
{
    for (size_t i = 0; i < s->nrcpt; i++) {
        free(s->rcpts[i]);
    }
    free(s->rcpts);
    s->rcpts = NULL;
    s->nrcpt = 0;
    s->in_mail = false;
    memset(&s->mail, 0, sizeof(s->mail));
    smtp_data_free(&s->data);
}

static bool has_auth(const sess_t *s)
{
    return s->authed || s->trusted;
}

static const sp_auth_t *auth_of(const sess_t *s, sp_auth_t *tmp)
{
    if (s->authed) {
        return &s->auth;
    }
    memset(tmp, 0, sizeof(*tmp));
    tmp->size = sizeof(*tmp);
    tmp->team = s->srv->conf->trusted_team;
    tmp->permission = SP_PERM_SENDING;
    return tmp;
}

static void submitted(void *arg, const sp_submit_result_t *res, size_t n);

static void free_maybe(sess_t *s)
{
    server_t *srv = s->srv;
    if (s->open_handles > 0 || s->submitting) {
        return;
    }
    txn_reset(s);
    smtp_tls_free(&s->tls);
    free(s->in);
    free(s->out);
    free(s);
    srv->nalive--;
    if (srv->finishing && srv->nalive == 0 && srv->open_listeners == 0) {
        if (srv->ssl_ctx != NULL) {
            SSL_CTX_free(srv->ssl_ctx);
        }
        free(srv);
    }
}

/* Build the record from the parsed message; a reply is sent on failure
 * and NULL returned. */
static sp_msg_t *build(sess_t *s, const smtp_parsed_t *pm, const sp_auth_t *auth,
                       const sp_domain_t *dom)
{
    const sp_host_api_t *api = s->srv->api;
    sp_msg_t *m = api->msg_new();
    int rc;

    if (m == NULL) {
        return NULL;
    }
    rc = api->msg_set_int(m, SP_F_TEAM, auth->team);
    rc = rc ? rc : api->msg_set_int(m, SP_F_DOMAIN_ID, dom->id);
    if (rc == 0 && auth->key_id != 0) {
        rc = api->msg_set_int(m, SP_F_API_KEY_ID, auth->key_id);
    }
    rc = rc ? rc : api->msg_set(m, SP_F_FROM, pm->from, strlen(pm->from));
    for (size_t i = 0; rc == 0 && i < pm->to.n; i++) {
        rc = api->msg_add(m, SP_F_TO, pm->to.v[i], strlen(pm->to.v[i]));
    }
    for (size_t i = 0; rc == 0 && i < pm->cc.n; i++) {
        rc = api->msg_add(m, SP_F_CC, pm->cc.v[i], strlen(pm->cc.v[i]));
    }
    /* DECISIONS #14: envelope recipients named in neither To nor Cc are
     * blind copies. */
    for (size_t i = 0; rc == 0 && i < s->nrcpt; i++) {
        bool named = false;
        for (size_t j = 0; !named && j < pm->to_addrs.n; j++) {
            named = strcasecmp(pm->to_addrs.v[j], s->rcpts[i]) == 0;
        }
        for (size_t j = 0; !named && j < pm->cc_addrs.n; j++) {
            named = strcasecmp(pm->cc_addrs.v[j], s->rcpts[i]) == 0;
        }
        if (!named) {
            rc = api->msg_add(m, SP_F_BCC, s->rcpts[i], strlen(s->rcpts[i]));
        }
    }
    for (size_t i = 0; rc == 0 && i < pm->reply_to.n; i++) {
        rc = api->msg_add(m, SP_F_REPLY_TO, pm->reply_to.v[i], strlen(pm->reply_to.v[i]));
    }
    if (rc == 0 && pm->subject != NULL) {
        rc = api->msg_set(m, SP_F_SUBJECT, pm->subject, strlen(pm->subject));
    }
    if (rc == 0 && pm->text != NULL) {
        rc = api->msg_set(m, SP_F_TEXT, pm->text, strlen(pm->text));
    }
    if (rc == 0 && pm->html != NULL) {
        rc = api->msg_set(m, SP_F_HTML, pm->html, strlen(pm->html));
    }
    for (size_t i = 0; rc == 0 && i < pm->headers.n; i++) {
        rc = api->msg_add(m, SP_F_HEADERS, pm->headers.v[i], strlen(pm->headers.v[i]));
    }
    for (size_t i = 0; rc == 0 && i < pm->natt; i++) {
        rc = api->msg_add(m, SP_F_ATTACHMENT_NAMES, pm->att[i].name, strlen(pm->att[i].name));
        /* The lists are parallel: an empty attachment keeps its slot. */
        rc = rc ? rc
                : api->msg_add(m, SP_F_ATTACHMENT_DATA,
                               pm->att[i].data != NULL ? (const void *)pm->att[i].data : "",
                               pm->att[i].len);
    }
    rc = rc ? rc : api->msg_set(m, SP_F_RAW, s->data.buf, s->data.len);
    if (rc != 0) {
        api->msg_free(m);
        if (rc == SP_ETOOBIG) {
            reply(s, "552 5.3.4 The message has too many parts or recipients to be stored");
        } else {
            reply(s, "451 4.3.0 Could not build the message: %s", api->strerror(rc));
        }
        return NULL;
    }
    return m;
}

/* Messages up to this size are parsed on the loop: GMime needs well under
 * a millisecond for them, and the pool's thread hops cost more per message
 * than that stall saves (bench/smtp_ingest). */
#define PARSE_INLINE_MAX (64 * 1024)

/* A message handed to a pool thread for MIME parsing. The session waits
 * (s->submitting) and keeps data.buf unchanged until parse_done. */
typedef struct parse_job {
    sess_t *s;
    const void *buf;
    size_t len;
    smtp_parsed_t pm;
    int rc;
    char err[256];
} parse_job_t;

static void data_parsed(sess_t *s, smtp_parsed_t *pm);

static void parse_work(void *arg)
{
    parse_job_t *j = arg;
    j->rc = smtp_mime_parse(j->buf, j->len, &j->pm, j->err, sizeof(j->err));
}

/* Back on the loop: the parsed fields become the record there, as the host
 * API (domain_find, msg_*, submit) is loop-thread only. */
static void parse_done(void *arg, int status)
{
    parse_job_t *j = arg;
    sess_t *s = j->s;

    s->submitting = false;
    if (s->closing) {
        if (status == 0 && j->rc == 0) {
            smtp_parsed_free(&j->pm);
        }
        free(j);
        free_maybe(s); /* the client left while the parser ran */
        return;
    }
    if (status < 0) {
        reply(s, "451 4.3.0 Could not parse the message: %s", s->srv->api->strerror(status));
        txn_reset(s);
    } else if (j->rc < 0) {
        reply(s, j->rc == -2 ? "451 4.3.0 %s" : "554 5.6.0 %s", j->err);
        txn_reset(s);
    } else {
        data_parsed(s, &j->pm);
    }
    free(j);
    process(s);
}

/* The end of DATA: check, then parse; on a pool thread when large (a 10 MiB
 * message takes GMime long enough to stall every other session). */
static void data_done(sess_t *s)
{
    server_t *srv = s->srv;
    parse_job_t *j;
    int rc;

    s->phase = P_CMD;
    if (s->data.too_big) {
        reply(s, "552 5.3.4 Message size exceeds the fixed maximum of %llu bytes",
              (unsigned long long)srv->conf->max_message_size);
        txn_reset(s);
        return;
    }
    if (s->data.has_nul) {
        reply(s, "554 5.6.0 NUL bytes are not allowed in a message");
        txn_reset(s);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        reply(s, "451 4.3.0 Out of memory");
        txn_reset(s);
        return;
    }
    j->s = s;
    j->buf = s->data.buf != NULL ? (const void *)s->data.buf : "";
    j->len = s->data.len;
    rc = SP_EINVAL;
    if (j->len > PARSE_INLINE_MAX) {
        s->submitting = true;
        rc = srv->api->queue_work(srv->p, parse_work, parse_done, j);
    }
    if (rc < 0) {
        /* Small (the pool's two thread hops would cost more than the
         * parse), or no pool (shutting down): parse here. */
        parse_work(j);
        s->submitting = false;
        if (j->rc < 0) {
            reply(s, j->rc == -2 ? "451 4.3.0 %s" : "554 5.6.0 %s", j->err);
            txn_reset(s);
        } else {
            data_parsed(s, &j->pm);
        }
        free(j);
    }
}

/* The parsed message: check the From domain, build the record, submit. */
static void data_parsed(sess_t *s, smtp_parsed_t *pmp)
{
    server_t *srv = s->srv;
    const sp_host_api_t *api = srv->api;
    smtp_parsed_t pm = *pmp;
    sp_auth_t tmp;
    const sp_auth_t *auth = auth_of(s, &tmp);
    sp_domain_t dom;
    const char *at;
    sp_msg_t *m;
    int rc;

    if (pm.from_addr == NULL || (at = strrchr(pm.from_addr, '@')) == NULL || at[1] == '\0') {
        reply(s, "554 5.6.0 The message has no From address");
        goto out;
    }
    memset(&dom, 0, sizeof(dom));
    dom.size = sizeof(dom);
    rc = api->domain_find(auth->team, at + 1, &dom);
    if (rc == SP_ENOTFOUND) {
        reply(s, "550 5.7.1 Domain %s of the From address is not a domain of this team",
              at + 1);
        goto out;
    }
    if (rc < 0) {
        reply(s, "451 4.3.0 Domain lookup failed: %s", api->strerror(rc));
        goto out;
    }
    if (auth->domain_id != 0 && dom.id != auth->domain_id) {
        reply(s, "550 5.7.1 This API key may not send from domain %s", at + 1);
        goto out;
    }
    if (!dom.verified) {
        reply(s, "550 5.7.1 Domain %s is not verified", at + 1);
        goto out;
    }
    m = build(s, &pm, auth, &dom);
    if (m == NULL) {
        goto out;
    }
    s->submitting = true;
    s->in_submit = true;
    rc = api->submit(srv->p, &m, 1, true, submitted, s);
    s->in_submit = false;
    if (rc < 0) {
        s->submitting = false;
        api->msg_free(m);
        if (rc == SP_ESHUTDOWN) {
            final_reply(s, "421 4.3.2 %s Server shutting down, try again later", srv->hostname);
        } else {
            reply(s, "451 4.3.0 Temporary failure: %s", api->strerror(rc));
        }
        goto out;
    }
    smtp_parsed_free(&pm);
    return; /* submitted() answers and resets the transaction */
out:
    smtp_parsed_free(&pm);
    txn_reset(s);
}

static void submitted(void *arg, const sp_submit_result_t *res, size_t n)
{
    sess_t *s = arg;
    const sp_host_api_t *api = s->srv->api;
    (void)n;
    s->submitting = false;
    if (s->closing) {
        free_maybe(s); /* the client left while the commit ran */
        return;
    }
    if (res[0].status == 0) {
        reply(s, "250 2.0.0 %s", res[0].id);
        api->counter_add(s->srv->p, "messages", 1);
    } else if (res[0].status == SP_ESTOREFULL) {
        reply(s, "452 4.3.1 Insufficient system storage, try again later");
    } else if (res[0].verdict == SP_REJECT) {
        reply(s, "550 5.7.1 %s", res[0].text);
    } else if (res[0].verdict == SP_DEFER || res[0].status == SP_EBUSY) {
        reply(s, "451 4.7.1 %s", res[0].text);
    } else {
        reply(s, "451 4.3.0 %s", res[0].text);
    }
    txn_reset(s);
    if (!s->in_submit) {
        process(s); /* else the caller's loop goes on */
    }
}

/* ---------------------------------------------------------------------- */
/* Commands */

static void do_ehlo(sess_t *s, const smtp_cmd_t *c, bool ehlo)
{
    const sconf_t *cf = s->srv->conf;
    if (c->arglen == 0) {
        err_reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
        return;
    }
    txn_reset(s);
    s->helo = true;
    s->esmtp = ehlo;
    if (!ehlo) {
        reply(s, "250 %s", s->srv->hostname);
        return;
    }
    reply(s, "250-%s Hello %s", s->srv->hostname, s->remote);
    reply(s, "250-PIPELINING");
    reply(s, "250-SIZE %llu", (unsigned long long)cf->max_message_size);
    reply(s, "250-8BITMIME");
    reply(s, "250-SMTPUTF8");
    if (!s->tls_on && s->srv->ssl_ctx != NULL) {
        reply(s, "250-STARTTLS");
    }
    if (s->tls_on || cf->allow_plain_auth) {
        reply(s, "250-AUTH PLAIN LOGIN");
    }
    reply(s, "250 ENHANCEDSTATUSCODES");
}

/* user and password checked; answers 235 or 535. */
static void auth_check(sess_t *s, const char *user, size_t ulen, const char *pass, size_t plen)
{
    server_t *srv = s->srv;
    const char *want = srv->conf->username;
    sp_auth_t a;
    int rc = SP_ENOTFOUND;

    s->phase = P_CMD;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    if (ulen == strlen(want) && memcmp(user, want, ulen) == 0 && plen > 0) {
        rc = srv->api->auth_key(pass, plen, &a);
    }
    if (rc < 0) {
        srv->api->counter_add(srv->p, "auth_failures", 1);
        srv->api->log(srv->p, SP_LOG_INFO, "%s: authentication failed", s->remote);
        err_reply(s, "535 5.7.8 Authentication credentials invalid");
        return;
    }
    s->authed = true;
    s->auth = a;
    reply(s, "235 2.7.0 Authentication successful");
}

/* base64 of one AUTH step into out (NUL terminated); -1 after answering. */
static long auth_decode(sess_t *s, const char *in, size_t len, unsigned char *out)
{
    long n;
    if (len == 1 && in[0] == '*') {
        s->phase = P_CMD;
        err_reply(s, "501 5.7.0 Authentication cancelled");
        return -1;
    }
    if (len == 1 && in[0] == '=') {
        out[0] = '\0';
        return 0;
    }
    n = len == 0 ? -1 : smtp_b64_decode(in, len, out);
    if (n < 0) {
        s->phase = P_CMD;
        err_reply(s, "501 5.5.2 Invalid base64 data");
        return -1;
    }
    out[n] = '\0';
    return n;
}

static void auth_plain(sess_t *s, const char *in, size_t len)
{
    unsigned char buf[SMTP_MAX_LINE];
    const unsigned char *z1, *z2;
    long n = auth_decode(s, in, len, buf);
    size_t ulen;
    if (n < 0) {
        return;
    }
    /* authzid NUL authcid NUL passwd (RFC 4616); authzid empty or authcid */
    z1 = memchr(buf, '\0', (size_t)n);
    z2 = z1 != NULL ? memchr(z1 + 1, '\0', (size_t)(buf + n - z1 - 1)) : NULL;
    if (z1 == NULL || z2 == NULL) {
        s->phase = P_CMD;
        err_reply(s, "501 5.5.2 Malformed PLAIN response");
        return;
    }
    ulen = (size_t)(z2 - z1 - 1);
    if (z1 != buf && ((size_t)(z1 - buf) != ulen || memcmp(buf, z1 + 1, ulen) != 0)) {
        s->phase = P_CMD;
        err_reply(s, "535 5.7.8 Authentication credentials invalid");
        return;
    }
    auth_check(s, (const char *)z1 + 1, ulen, (const char *)z2 + 1,
               (size_t)(buf + n - z2 - 1));
}

static void do_auth(sess_t *s, const smtp_cmd_t *c)
{
    const char *arg = c->arg;
    size_t mlen = 0, rest;
    if (!s->helo) {
        err_reply(s, "503 5.5.1 Send EHLO first");
        return;
    }
    if (s->authed) {
        err_reply(s, "503 5.5.1 Already authenticated");
        return;
    }
    if (s->in_mail) {
        err_reply(s, "503 5.5.1 AUTH is not allowed during a mail transaction");
        return;
    }
    if (!s->tls_on && !s->srv->conf->allow_plain_auth) {
        err_reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
        return;
    }
    while (mlen < c->arglen && arg[mlen] != ' ') {
        mlen++;
    }
    rest = mlen;
    while (rest < c->arglen && arg[rest] == ' ') {
        rest++;
    }
    if (mlen == 5 && strncasecmp(arg, "PLAIN", 5) == 0) {
        if (rest == c->arglen) {
            s->phase = P_AUTH_PLAIN;
            reply(s, "334 ");
            return;
        }
        auth_plain(s, arg + rest, c->arglen - rest);
        return;
    }
    if (mlen == 5 && strncasecmp(arg, "LOGIN", 5) == 0) {
        if (rest == c->arglen) {
            s->phase = P_AUTH_LOGIN_USER;
            reply(s, "334 VXNlcm5hbWU6"); /* "Username:" */
            return;
        }
        if (auth_decode(s, arg + rest, c->arglen - rest, (unsigned char *)s->login_user) < 0) {
            return;
        }
        s->phase = P_AUTH_LOGIN_PASS;
        reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
        return;
    }
    err_reply(s, "504 5.5.4 Unrecognized authentication type");
}

static void auth_step(sess_t *s, const char *line, size_t len)
{
    unsigned char buf[SMTP_MAX_LINE];
    long n;
    switch (s->phase) {
    case P_AUTH_PLAIN:
        auth_plain(s, line, len);
        return;
    case P_AUTH_LOGIN_USER:
        if (auth_decode(s, line, len, (unsigned char *)s->login_user) < 0) {
            return;
        }
        s->phase = P_AUTH_LOGIN_PASS;
        reply(s, "334 UGFzc3dvcmQ6");
        return;
    case P_AUTH_LOGIN_PASS:
        n = auth_decode(s, line, len, buf);
        if (n < 0) {
            return;
        }
        auth_check(s, s->login_user, strlen(s->login_user), (const char *)buf, (size_t)n);
        return;
    default:
        return;
    }
}

static void do_mail(sess_t *s, const smtp_cmd_t *c)
{
    int rc;
    if (!s->helo) {
        err_reply(s, "503 5.5.1 Send EHLO first");
        return;
    }
    if (!has_auth(s)) {
        err_reply(s, "530 5.7.0 Authentication required");
        return;
    }
    if (s->in_mail) {
        err_reply(s, "503 5.5.1 Nested MAIL command");
        return;
    }
    rc = smtp_parse_mail(c->arg, c->arglen, &s->mail);
    if (rc == SMTP_EADDR) {
        err_reply(s, "553 5.1.7 Bad sender address syntax");
        return;
    }
    if (rc == SMTP_EPARAM) {
        err_reply(s, "555 5.5.4 Unsupported MAIL parameter");
        return;
    }
    if (rc < 0) {
        err_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    if (s->mail.has_size && s->mail.size > s->srv->conf->max_message_size) {
        reply(s, "552 5.3.4 Message size exceeds the fixed maximum of %llu bytes",
              (unsigned long long)s->srv->conf->max_message_size);
        return;
    }
    s->in_mail = true;
    reply(s, "250 2.1.0 Sender OK");
}

static void do_rcpt(sess_t *s, const smtp_cmd_t *c)
{
    char addr[SMTP_MAX_PATH + 1];
    char **nr;
    int rc;
    if (!has_auth(s)) {
        err_reply(s, "530 5.7.0 Authentication required");
        return;
    }
    if (!s->in_mail) {
        err_reply(s, "503 5.5.1 Need MAIL before RCPT");
        return;
    }
    rc = smtp_parse_rcpt(c->arg, c->arglen, addr);
    if (rc == SMTP_EADDR) {
        err_reply(s, "553 5.1.3 Bad recipient address syntax");
        return;
    }
    if (rc == SMTP_EPARAM) {
        err_reply(s, "555 5.5.4 Unsupported RCPT parameter");
        return;
    }
    if (rc < 0) {
        err_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    for (size_t i = 0; i < s->nrcpt; i++) {
        if (strcasecmp(s->rcpts[i], addr) == 0) {
            reply(s, "250 2.1.5 Recipient OK");
            return;
        }
    }
    if (s->nrcpt >= (size_t)s->srv->conf->max_recipients) {
        reply(s, "452 4.5.3 Too many recipients");
        return;
    }
    nr = realloc(s->rcpts, (s->nrcpt + 1) * sizeof(*nr));
    if (nr == NULL || (nr[s->nrcpt] = strdup(addr)) == NULL) {
        if (nr != NULL) {
            s->rcpts = nr;
        }
        reply(s, "452 4.3.0 Out of memory");
        return;
    }
    s->rcpts = nr;
    s->nrcpt++;
    reply(s, "250 2.1.5 Recipient OK");
}

static void do_data(sess_t *s, const smtp_cmd_t *c)
{
    if (!has_auth(s)) {
        err_reply(s, "530 5.7.0 Authentication required");
        return;
    }
    if (!s->in_mail) {
        err_reply(s, "503 5.5.1 Need MAIL command");
        return;
    }
    if (s->nrcpt == 0) {
        err_reply(s, "554 5.5.1 No valid recipients");
        return;
    }
    if (c->arglen > 0) {
        err_reply(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    smtp_data_init(&s->data, s->srv->conf->max_message_size);
    s->phase = P_DATA;
    reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void do_starttls(sess_t *s, const smtp_cmd_t *c)
{
    if (s->tls_on || s->srv->ssl_ctx == NULL) {
        err_reply(s, "503 5.5.1 TLS already active");
        return;
    }
    if (c->arglen > 0) {
        err_reply(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    if (!s->helo) {
        err_reply(s, "503 5.5.1 Send EHLO first");
        return;
    }
    if (s->inlen > 0) {
        /* Commands behind STARTTLS would be taken as sent over TLS
         * (CVE-2011-0411): the client is not to be trusted. */
        final_reply(s, "554 5.5.0 Commands sent after STARTTLS before the handshake");
        return;
    }
    reply(s, "220 2.0.0 Ready to start TLS");
    flush_out(s);
    if (smtp_tls_start(&s->tls, s->srv->ssl_ctx) < 0) {
        sess_close(s);
        return;
    }
    s->tls_on = true;
    /* RFC 3207 4.2: forget everything learnt before the handshake. */
    txn_reset(s);
    s->helo = s->esmtp = false;
    s->authed = false;
    arm(s, T_TLS);
}

/* One command line. Returns true if the client must wait for this answer
 * before sending more (RFC 2920 3.1: the last command of a group). */
static bool handle_line(sess_t *s, const char *line, size_t len)
{
    smtp_cmd_t c;
    if (s->phase == P_AUTH_PLAIN || s->phase == P_AUTH_LOGIN_USER ||
        s->phase == P_AUTH_LOGIN_PASS) {
        auth_step(s, line, len);
        return true;
    }
    if (smtp_cmd_parse(line, len, &c) < 0) {
        if (memchr(line, '\0', len) != NULL) {
            err_reply(s, "500 5.5.2 NUL bytes are not allowed in commands");
        } else {
            err_reply(s, "500 5.5.2 Control characters are not allowed in commands");
        }
        return false;
    }
    switch (c.verb) {
    case SMTP_VERB_EHLO: do_ehlo(s, &c, true); return true;
    case SMTP_VERB_HELO: do_ehlo(s, &c, false); return true;
    case SMTP_VERB_MAIL: do_mail(s, &c); return false;
    case SMTP_VERB_RCPT: do_rcpt(s, &c); return false;
    case SMTP_VERB_DATA: do_data(s, &c); return true;
    case SMTP_VERB_RSET:
        txn_reset(s);
        reply(s, "250 2.0.0 Reset OK");
        return false;
    case SMTP_VERB_NOOP: reply(s, "250 2.0.0 OK"); return false;
    case SMTP_VERB_QUIT:
        final_reply(s, "221 2.0.0 %s Bye", s->srv->hostname);
        return true;
    case SMTP_VERB_HELP:
        reply(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY "
                 "HELP QUIT");
        return false;
    case SMTP_VERB_VRFY:
        reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
        return false;
    case SMTP_VERB_EXPN: err_reply(s, "502 5.5.1 EXPN is not supported"); return false;
    case SMTP_VERB_BDAT: err_reply(s, "502 5.5.1 CHUNKING is not supported"); return true;
    case SMTP_VERB_STARTTLS: do_starttls(s, &c); return true;
    case SMTP_VERB_AUTH: do_auth(s, &c); return true;
    case SMTP_VERB_UNKNOWN: break;
    }
    err_reply(s, "500 5.5.2 Command not recognized");
    return false;
}

static void drop_in(sess_t *s, size_t n)
{
    memmove(s->in, s->in + n, s->inlen - n);
    s->inlen -= n;
}

static void early_talker(sess_t *s)
{
    s->srv->api->counter_add(s->srv->p, "early_talkers", 1);
    s->inlen = 0;
    final_reply(s, "554 5.5.0 %s Protocol error: data sent before the server's answer",
                s->srv->hostname);
}

/* Handle what the client sent, in order, until it is used up or the
 * session waits for the store. */
static void process(sess_t *s)
{
    while (!s->closing && !s->finishing && !s->submitting && s->inlen > 0 &&
           (!s->tls_on || s->tls.handshake_done)) {
        char line[SMTP_MAX_LINE + 1];
        size_t used = 0, llen = 0;
        smtp_line_res_t r;
        bool wait;

        if (s->phase == P_DATA) {
            smtp_data_res_t d = smtp_data_feed(&s->data, s->in, s->inlen, &used);
            drop_in(s, used);
            if (d == SMTP_DATA_MORE) {
                break;
            }
            if (d == SMTP_DATA_SMUGGLE) {
                s->inlen = 0;
                txn_reset(s);
                final_reply(s, "554 5.5.0 Bare LF or CR next to the end-of-data dot; refusing "
                               "the message");
                break;
            }
            if (d == SMTP_DATA_NOMEM) {
                txn_reset(s);
                final_reply(s, "451 4.3.0 Out of memory");
                break;
            }
            data_done(s);
            continue;
        }
        r = smtp_line_next(&s->lines, s->in, s->inlen, SMTP_MAX_LINE, &used, &llen);
        if (r == SMTP_LINE_OK) {
            memcpy(line, s->in, llen);
            line[llen] = '\0';
        }
        drop_in(s, used);
        if (r == SMTP_LINE_MORE) {
            if (used == 0) {
                break;
            }
            continue;
        }
        if (r == SMTP_LINE_TOOLONG) {
            s->phase = P_CMD;
            err_reply(s, "500 5.5.6 Line too long (at most %d bytes)", SMTP_MAX_LINE);
            continue;
        }
        if (r == SMTP_LINE_BARELF) {
            err_reply(s, "500 5.5.2 Command lines must end with CRLF");
            continue;
        }
        wait = handle_line(s, line, llen);
        if ((wait || !s->esmtp) && s->inlen > 0 && !s->finishing && !s->submitting &&
            s->phase != P_DATA) {
            early_talker(s);
        } else if (s->phase == P_DATA && s->inlen > 0) {
            early_talker(s); /* the message came before the 354 */
        }
    }
    flush_out(s);
    after_change(s);
}

/* ---------------------------------------------------------------------- */
/* Reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char scratch[READ_BUF]; /* the loop is single-threaded */
    (void)h;
    (void)suggested;
    *b = uv_buf_init(scratch, sizeof(scratch));
}

static int in_append(sess_t *s, const char *data, size_t n)
{
    char *nb = realloc(s->in, s->inlen + n);
    if (nb == NULL && s->inlen + n > 0) {
        return SP_ENOMEM;
    }
    s->in = nb;
    memcpy(s->in + s->inlen, data, n);
    s->inlen += n;
    return 0;
}

/* Feed network bytes through TLS; plaintext goes to s->in. */
static int tls_input(sess_t *s, const char *data, size_t n)
{
    char buf[16384];
    int r;
    if (n > 0 && BIO_write(s->tls.rbio, data, (int)n) != (int)n) {
        return SP_ENOMEM;
    }
    if (!s->tls.handshake_done) {
        r = SSL_do_handshake(s->tls.ssl);
        if (r != 1) {
            int e = SSL_get_error(s->tls.ssl, r);
            (void)tls_drain(s);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                return 0;
            }
            s->srv->api->log(s->srv->p, SP_LOG_DEBUG, "%s: TLS handshake failed", s->remote);
            ERR_clear_error();
            return SP_EINVAL;
        }
        s->tls.handshake_done = true;
        s->srv->api->log(s->srv->p, SP_LOG_DEBUG, "%s: %s %s", s->remote,
                         SSL_get_version(s->tls.ssl), SSL_get_cipher_name(s->tls.ssl));
        if (s->tkind == T_TLS) {
            s->tkind = T_NONE;
        }
        if (!s->greeted) {
            greet(s); /* implicit TLS: the greeting comes over TLS */
        }
    }
    for (;;) {
        r = SSL_read(s->tls.ssl, buf, sizeof(buf));
        if (r > 0) {
            if (in_append(s, buf, (size_t)r) < 0) {
                return SP_ENOMEM;
            }
            continue;
        }
        r = SSL_get_error(s->tls.ssl, r);
        if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE) {
            break;
        }
        ERR_clear_error();
        if (r == SSL_ERROR_ZERO_RETURN) {
            s->eof = true;
            break;
        }
        return SP_EINVAL;
    }
    return tls_drain(s);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sess_t *s = st->data;
    if (s->closing) {
        return;
    }
    if (n < 0) {
        /* EOF or reset. A session in DATA stores nothing. */
        s->eof = true;
        sess_close(s);
        return;
    }
    if (n == 0) {
        return;
    }
    if (s->finishing || s->lingering) {
        return; /* after the last answer: read and drop */
    }
    if (!s->greeted && !s->implicit_tls) {
        early_talker(s); /* it spoke before the greeting */
        flush_out(s);
        after_change(s);
        return;
    }
    if (s->tls_on) {
        if (tls_input(s, b->base, (size_t)n) < 0) {
            sess_close(s);
            return;
        }
        if (s->closing) {
            return;
        }
    } else if (in_append(s, b->base, (size_t)n) < 0) {
        sess_close(s);
        return;
    }
    if (s->tkind == T_IDLE) {
        s->tkind = T_NONE; /* progress: the idle timer starts again */
    }
    process(s);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* After any change: reading on or off, the right timer, the end. */
static void after_change(sess_t *s)
{
    bool want_read;
    if (s->closing) {
        return;
    }
    if (s->eof && !s->submitting && s->outlen == 0 && s->writing == 0) {
        /* The client ended TLS (close_notify) and what it sent before is
         * answered: nothing more can come (nodemailer then waits for our
         * close). */
        sess_close(s);
        return;
    }
    if (s->finishing && s->outlen == 0 && s->writing == 0) {
        if (s->eof) {
            sess_close(s);
            return;
        }
        if (!s->lingering) {
            /* FIN after the last answer, then drop what still comes for a
             * while, so that a reset does not destroy the answer. */
            s->lingering = true;
            if (s->tls_on && s->tls.handshake_done) {
                (void)SSL_shutdown(s->tls.ssl);
                (void)tls_drain(s);
            }
            if (uv_shutdown(&s->shut, (uv_stream_t *)&s->tcp, on_shutdown) < 0) {
                sess_close(s);
                return;
            }
            arm(s, T_LINGER);
        }
    }
    want_read = !s->eof && !s->submitting;
    if (want_read && !s->reading) {
        s->reading = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) == 0;
    } else if (!want_read && s->reading) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
    if (s->lingering || s->tkind == T_GREET) {
        return;
    }
    if (s->finishing) {
        if (s->tkind != T_IDLE) {
            arm(s, T_IDLE); /* the client must read the last answer */
        }
        return;
    }
    if (s->tls_on && !s->tls.handshake_done) {
        if (s->tkind != T_TLS) {
            arm(s, T_TLS);
        }
    } else if (s->submitting) {
        arm(s, T_NONE); /* our turn, not the client's */
    } else if (s->tkind != T_IDLE) {
        arm(s, T_IDLE);
    }
}

/* ---------------------------------------------------------------------- */
/* Sessions */

static void handle_closed(uv_handle_t *h)
{
    sess_t *s = h->data;
    s->open_handles--;
    free_maybe(s);
}

static void sess_close(sess_t *s)
{
    server_t *srv = s->srv;
    if (s->closing) {
        return;
    }
    s->closing = true;
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        srv->sessions = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    if (!s->overflow) {
        srv->nsessions--;
    }
    if (s->phase == P_DATA) {
        srv->api->log(srv->p, SP_LOG_INFO, "%s: connection lost during DATA; nothing stored",
                      s->remote);
    }
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, handle_closed);
    uv_close((uv_handle_t *)&s->tcp, handle_closed);
}

static void remote_name(sess_t *s)
{
    int len = sizeof(s->peer);
    char ip[48] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&s->peer, &len) == 0) {
        if (s->peer.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->peer;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
            snprintf(s->remote, sizeof(s->remote), "[%s]:%d", ip, port);
            return;
        }
        uv_ip4_name((const struct sockaddr_in *)&s->peer, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in *)&s->peer)->sin_port);
    }
    snprintf(s->remote, sizeof(s->remote), "%s:%d", ip, port);
}

static void dropped_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *ls, int status)
{
    server_t *srv = ls->data;
    sess_t *s;
    size_t li = (size_t)((uv_tcp_t *)ls - srv->listeners);
    if (status < 0) {
        srv->api->log(srv->p, SP_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        /* No memory: take the connection and drop it. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (t != NULL) {
            uv_tcp_init(srv->loop, t);
            (void)uv_accept(ls, (uv_stream_t *)t);
            uv_close((uv_handle_t *)t, dropped_closed);
        }
        return;
    }
    s->srv = srv;
    uv_tcp_init(srv->loop, &s->tcp);
    uv_timer_init(srv->loop, &s->timer);
    s->tcp.data = s;
    s->timer.data = s;
    s->open_handles = 2;
    srv->nalive++;
    s->next = srv->sessions;
    if (srv->sessions != NULL) {
        srv->sessions->prev = s;
    }
    srv->sessions = s;
    s->overflow = srv->nsessions >= (size_t)srv->conf->max_sessions;
    if (!s->overflow) {
        srv->nsessions++;
    }
    if (uv_accept(ls, (uv_stream_t *)&s->tcp) < 0) {
        sess_close(s);
        return;
    }
    (void)uv_tcp_nodelay(&s->tcp, 1);
    remote_name(s);
    if (s->overflow) {
        srv->api->counter_add(srv->p, "sessions_refused", 1);
        srv->api->log(srv->p, SP_LOG_WARN, "%s: over max_sessions (%lld), answering 421",
                      s->remote, (long long)srv->conf->max_sessions);
    }
    if (s->overflow && !(li < srv->nlisteners && srv->listener_tls[li])) {
        s->greeted = true;
        final_reply(s, "421 4.3.2 %s Too many connections, try again later", srv->hostname);
        flush_out(s);
        after_change(s);
        return;
    }
    for (size_t i = 0; i < srv->ncidrs && !s->overflow; i++) {
        if (cidr_match(&srv->cidrs[i], &s->peer)) {
            s->trusted = true;
            break;
        }
    }
    if (li < srv->nlisteners && srv->listener_tls[li]) {
        s->implicit_tls = true;
        if (smtp_tls_start(&s->tls, srv->ssl_ctx) < 0) {
            sess_close(s);
            return;
        }
        s->tls_on = true;
        arm(s, T_TLS);
    } else if (srv->conf->greeting_delay > 0) {
        arm(s, T_GREET);
    } else {
        greet(s);
    }
    after_change(s);
}

/* ---------------------------------------------------------------------- */
/* Listeners, init, fini */

static void listener_closed(uv_handle_t *h)
{
    server_t *srv = h->data;
    if (--srv->open_listeners == 0 && srv->finishing && srv->nalive == 0) {
        if (srv->ssl_ctx != NULL) {
            SSL_CTX_free(srv->ssl_ctx);
        }
        free(srv);
    }
}

typedef struct lctx {
    server_t *srv;
    bool tls;
} lctx_t;

static int listen_one(void *arg, const char *spec, size_t n)
{
    lctx_t *lc = arg;
    server_t *srv = lc->srv;
    struct sockaddr_storage a;
    uv_tcp_t *t = &srv->listeners[srv->nlisteners];
    char name[128];
    int rc = parse_addr(spec, n, &a);
    if (rc < 0) {
        return rc;
    }
    snprintf(name, sizeof(name), "%.*s", (int)n, spec);
    uv_tcp_init(srv->loop, t);
    t->data = srv;
    srv->listener_tls[srv->nlisteners] = lc->tls;
    srv->nlisteners++;
    srv->open_listeners++;
    rc = uv_tcp_bind(t, (const struct sockaddr *)&a, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)t, 511, on_connection);
    }
    if (rc < 0) {
        srv->api->log(srv->p, SP_LOG_ERROR, "listen on %s: %s", name, uv_strerror(rc));
        return rc;
    }
    srv->api->log(srv->p, SP_LOG_INFO, "listening on %s (%s)", name,
                  lc->tls ? "SMTP over TLS" : "SMTP with STARTTLS");
    return 0;
}

static int add_cidr(void *arg, const char *s, size_t n)
{
    server_t *srv = arg;
    if (srv->ncidrs >= MAX_CIDRS) {
        return SP_EINVAL;
    }
    return parse_cidr(s, n, &srv->cidrs[srv->ncidrs++]);
}

static void smtp_fini(sp_plugin_t *p, void *ctx);
static void on_reload(uv_signal_t *h, int signum);

static int smtp_init(sp_plugin_t *p, const sp_host_api_t *api, const void *confp, void **ctx)
{
    const sconf_t *conf = confp;
    server_t *srv;
    char path[4096], err[512];
    bool generated = false;
    lctx_t lc;
    int rc;

    if (!SP_API_HAS(api, uv_loop) || !SP_API_HAS(api, auth_key) ||
        !SP_API_HAS(api, domain_find)) {
        return SP_EABI;
    }
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return SP_ENOMEM;
    }
    srv->p = p;
    srv->api = api;
    srv->conf = conf;
    srv->loop = api->uv_loop();
    if (conf->hostname[0] != '\0') {
        snprintf(srv->hostname, sizeof(srv->hostname), "%s", conf->hostname);
    } else if (gethostname(srv->hostname, sizeof(srv->hostname) - 1) != 0 ||
               srv->hostname[0] == '\0') {
        snprintf(srv->hostname, sizeof(srv->hostname), "localhost");
    }
    (void)each_item(conf->trusted_networks, add_cidr, srv);
    snprintf(path, sizeof(path), "%s/smtp-selfsigned.pem", api->data_dir());
    rc = smtp_tls_ctx_new(conf->tls_cert, conf->tls_key, path, srv->hostname, &srv->ssl_ctx,
                          &generated, err, sizeof(err));
    if (rc < 0) {
        api->log(p, SP_LOG_ERROR, "TLS: %s", err);
        free(srv);
        return rc;
    }
    if (generated) {
        api->log(p, SP_LOG_WARN,
                 "generated a self-signed certificate for %s in %s; set tls_cert and tls_key "
                 "for production",
                 srv->hostname, path);
    } else if (conf->tls_cert[0] == '\0') {
        api->log(p, SP_LOG_INFO, "using the self-signed certificate %s", path);
    }
    if (conf->tls_cert[0] != '\0') {
        srv->reload = malloc(sizeof(*srv->reload));
        if (srv->reload != NULL && uv_signal_init(srv->loop, srv->reload) == 0) {
            srv->reload->data = srv;
            uv_unref((uv_handle_t *)srv->reload);
            (void)uv_signal_start(srv->reload, on_reload, SIGHUP);
        } else {
            free(srv->reload);
            srv->reload = NULL;
        }
    }
    smtp_mime_init();
    srv->mime_up = true;
    *ctx = srv;
    lc.srv = srv;
    lc.tls = false;
    rc = each_item(conf->listen, listen_one, &lc);
    if (rc >= 0) {
        lc.tls = true;
        rc = each_item(conf->tls_listen, listen_one, &lc);
    }
    if (rc < 0) {
        smtp_fini(p, srv); /* fini is not called after a failed init */
        *ctx = NULL;
        return rc;
    }
    return 0;
}

/* Shutdown: tell a client whose session is cut that it should come back
 * (RFC 5321 4.1.4: 421), without waiting. Written at once if the socket
 * takes it; a session with answers still queued gets nothing more. */
static void say_shutdown(sess_t *s)
{
    char line[300];
    int n;
    if (s->closing || s->writing > 0 || !s->greeted || (s->tls_on && !s->tls.handshake_done)) {
        return;
    }
    n = snprintf(line, sizeof(line), "421 4.3.2 %s Service shutting down\r\n",
                 s->srv->hostname);
    if (n <= 0 || (size_t)n >= sizeof(line)) {
        return;
    }
    if (s->tls_on) {
        char buf[4096];
        int m;
        if (SSL_write(s->tls.ssl, line, n) != n) {
            return;
        }
        while ((m = BIO_read(s->tls.wbio, buf, sizeof(buf))) > 0) {
            uv_buf_t b = uv_buf_init(buf, (unsigned)m);
            if (uv_try_write((uv_stream_t *)&s->tcp, &b, 1) != m) {
                return;
            }
        }
        return;
    }
    uv_buf_t b = uv_buf_init(line, (unsigned)n);
    (void)uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
}

static void reload_closed(uv_handle_t *h)
{
    free(h);
}

/* SIGHUP: load the configured certificate and key again (after a renewal)
 * and use them for new TLS sessions; sessions already in TLS keep theirs.
 * A file that does not load leaves the current certificate in place. */
static void on_reload(uv_signal_t *h, int signum)
{
    server_t *srv = h->data;
    const sconf_t *conf = srv->conf;
    SSL_CTX *ctx = NULL;
    bool generated = false;
    char err[256];
    (void)signum;
    if (smtp_tls_ctx_new(conf->tls_cert, conf->tls_key, "", srv->hostname, &ctx, &generated,
                         err, sizeof(err)) < 0) {
        srv->api->log(srv->p, SP_LOG_ERROR, "SIGHUP: TLS certificate not reloaded: %s", err);
        return;
    }
    SSL_CTX_free(srv->ssl_ctx); /* sessions hold their own references */
    srv->ssl_ctx = ctx;
    srv->api->counter_add(srv->p, "tls_reloads", 1);
    srv->api->log(srv->p, SP_LOG_INFO, "SIGHUP: TLS certificate reloaded from %s",
                  conf->tls_cert);
}

static void smtp_fini(sp_plugin_t *p, void *ctx)
{
    server_t *srv = ctx;
    (void)p;
    if (srv == NULL) {
        return;
    }
    srv->finishing = true;
    if (srv->mime_up) {
        smtp_mime_shutdown();
        srv->mime_up = false;
    }
    while (srv->sessions != NULL) {
        say_shutdown(srv->sessions);
        sess_close(srv->sessions);
    }
    for (size_t i = 0; i < srv->nlisteners; i++) {
        uv_close((uv_handle_t *)&srv->listeners[i], listener_closed);
    }
    if (srv->reload != NULL) {
        uv_close((uv_handle_t *)srv->reload, reload_closed);
        srv->reload = NULL;
    }
    if (srv->open_listeners == 0 && srv->nalive == 0) {
        if (srv->ssl_ctx != NULL) {
            SSL_CTX_free(srv->ssl_ctx);
        }
        free(srv);
    }
}

SP_PLUGIN_DEFINE(.name = "ingress_smtp", .version = SP_VERSION_STRING,
                 .description = "SMTP submission: STARTTLS, implicit TLS, AUTH with API keys",
                 .conf = g_schema, .conf_size = sizeof(sconf_t), .conf_check = conf_check,
                 .init = smtp_init, .fini = smtp_fini);
