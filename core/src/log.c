/* SPDX-License-Identifier: Apache-2.0 */
/* JSON-lines logger, JSON string escaping and error-code messages. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* GNU strerror_r, strerrorname_np */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sp_core/log.h"

/*
 * Writers never take a lock: they read the fd and issue one write(2). The fd
 * number of an owned log file never changes while the file is open, because
 * reopen dup2()s the new file onto it, which is atomic. The mutex only
 * serialises open/reopen/close against each other.
 */
static atomic_int g_fd = 2;
static atomic_int g_level = SP_LOG_INFO;
static bool g_owned;  /* g_fd is our file (not stderr); guarded by g_mu */
static char *g_path;  /* guarded by g_mu */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const g_level_names[] = {"error", "warn", "info", "debug"};

static const char g_trunc_marker[] = "...[truncated]";

static int open_log_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    return fd < 0 ? -errno : fd;
}

int sp__log_open(const char *path, sp_log_level_t level)
{
    char *copy = NULL;
    int fd;

    sp__log_set_level(level);
    if (path == NULL || strcmp(path, "-") == 0) {
        sp__log_close();
        return 0;
    }
    copy = strdup(path);
    if (copy == NULL) {
        return -ENOMEM;
    }
    fd = open_log_file(path);
    if (fd < 0) {
        free(copy);
        return fd;
    }
    pthread_mutex_lock(&g_mu);
    if (g_owned) {
        /* Keep the fd number stable so that concurrent writers are safe. */
        if (dup2(fd, atomic_load(&g_fd)) < 0) {
            int e = -errno;

            pthread_mutex_unlock(&g_mu);
            close(fd);
            free(copy);
            return e;
        }
        close(fd);
    } else {
        atomic_store(&g_fd, fd);
        g_owned = true;
    }
    free(g_path);
    g_path = copy;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

int sp__log_reopen(void)
{
    int fd;
    int rc = 0;

    pthread_mutex_lock(&g_mu);
    if (!g_owned || g_path == NULL) {
        pthread_mutex_unlock(&g_mu);
        return 0;
    }
    fd = open_log_file(g_path);
    if (fd < 0) {
        /* Keep writing to the old file rather than losing lines. */
        pthread_mutex_unlock(&g_mu);
        return fd;
    }
    if (dup2(fd, atomic_load(&g_fd)) < 0) {
        rc = -errno;
    }
    close(fd);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void sp__log_close(void)
{
    pthread_mutex_lock(&g_mu);
    if (g_owned) {
        int fd = atomic_exchange(&g_fd, 2);

        close(fd);
        g_owned = false;
    }
    free(g_path);
    g_path = NULL;
    pthread_mutex_unlock(&g_mu);
}

void sp__log_set_level(sp_log_level_t level)
{
    if ((int)level < (int)SP_LOG_ERROR) {
        level = SP_LOG_ERROR;
    } else if (level > SP_LOG_DEBUG) {
        level = SP_LOG_DEBUG;
    }
    atomic_store(&g_level, (int)level);
}

sp_log_level_t sp__log_get_level(void)
{
    return (sp_log_level_t)atomic_load(&g_level);
}

int sp__log_level_parse(const char *s)
{
    size_t i;

    if (s == NULL) {
        return -1;
    }
    for (i = 0; i < sizeof(g_level_names) / sizeof(g_level_names[0]); i++) {
        if (strcasecmp(s, g_level_names[i]) == 0) {
            return (int)i;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        return SP_LOG_WARN;
    }
    return -1;
}

/*
 * Length of the valid UTF-8 sequence starting at s (1..4), or 0 if the bytes
 * there are not one (overlong forms, surrogates and code points above
 * U+10FFFF are invalid, per RFC 3629).
 */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return (n >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
        unsigned char hi = c == 0xed ? 0x9f : 0xbf;

        if (n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80) {
            return 3;
        }
        return 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;

        if (n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
            (s[3] & 0xc0) == 0x80) {
            return 4;
        }
        return 0;
    }
    return 0;
}

/*
 * Escape in[0..inlen) into out, writing only whole escapes and whole UTF-8
 * sequences so that a truncated result is still valid JSON string content.
 * *consumed receives the number of input bytes represented in the output.
 * Invalid UTF-8 bytes become U+FFFD, one per byte.
 */
static size_t json_escape_ex(char *out, size_t outlen, const char *in, size_t inlen,
                             size_t *consumed)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    size_t o = 0;

    if (outlen == 0) {
        *consumed = 0;
        return 0;
    }
    while (i < inlen) {
        char tmp[8];
        size_t tlen;
        size_t adv = 1;
        unsigned char c = s[i];

        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tlen = 2;
        } else if (c < 0x20) {
            tmp[0] = '\\';
            tlen = 2;
            switch (c) {
            case '\n':
                tmp[1] = 'n';
                break;
            case '\r':
                tmp[1] = 'r';
                break;
            case '\t':
                tmp[1] = 't';
                break;
            case '\b':
                tmp[1] = 'b';
                break;
            case '\f':
                tmp[1] = 'f';
                break;
            default:
                memcpy(tmp + 1, "u00", 3);
                tmp[4] = hex[c >> 4];
                tmp[5] = hex[c & 0xf];
                tlen = 6;
                break;
            }
        } else if (c < 0x80) {
            tmp[0] = (char)c;
            tlen = 1;
        } else {
            adv = utf8_seq_len(s + i, inlen - i);
            if (adv == 0) {
                memcpy(tmp, "\\ufffd", 6);
                tlen = 6;
                adv = 1;
            } else {
                memcpy(tmp, s + i, adv);
                tlen = adv;
            }
        }
        if (o + tlen > outlen - 1) {
            break;
        }
        memcpy(out + o, tmp, tlen);
        o += tlen;
        i += adv;
    }
    out[o] = '\0';
    *consumed = i;
    return o;
}

size_t sp__json_escape(char *out, size_t outlen, const char *in, size_t inlen)
{
    size_t consumed;

    if (in == NULL) {
        inlen = 0;
    }
    return json_escape_ex(out, outlen, in, inlen, &consumed);
}

/* Longest line written, newline included. Longer messages are cut. */
#define LOG_LINE_MAX 8192
/* Room kept for the plugin name and extra fields; the message gets the rest. */
#define LOG_TAIL_MAX 2048
/* Part of the tail held back for the "fields_truncated" marker. */
#define LOG_TAIL_SPARE 32

typedef struct line_buf {
    char *p;
    size_t len;
    size_t cap;
} line_buf_t;

/* Append raw bytes if they fit entirely; false if not. */
static bool lb_raw(line_buf_t *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        return false;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

/* Append "key":"escaped value" only if it fits entirely. */
static bool lb_member(line_buf_t *b, const char *key, const char *val)
{
    size_t save = b->len;
    size_t klen = strlen(key);
    size_t vlen = val ? strlen(val) : 0;
    size_t room;
    size_t consumed;
    size_t w;

    if (!lb_raw(b, ",\"", 2)) {
        goto undo;
    }
    /* Keys are escaped too: they come from code, but must never break JSON. */
    room = b->cap - b->len + 1;
    w = json_escape_ex(b->p + b->len, room, key, klen, &consumed);
    if (consumed != klen) {
        goto undo;
    }
    b->len += w;
    if (val == NULL) {
        if (!lb_raw(b, "\":null", 6)) {
            goto undo;
        }
        return true;
    }
    if (!lb_raw(b, "\":\"", 3)) {
        goto undo;
    }
    room = b->cap - b->len + 1;
    w = json_escape_ex(b->p + b->len, room, val, vlen, &consumed);
    if (consumed != vlen) {
        goto undo;
    }
    b->len += w;
    if (!lb_raw(b, "\"", 1)) {
        goto undo;
    }
    return true;
undo:
    b->len = save;
    return false;
}

static bool is_reserved_key(const char *k)
{
    return strcmp(k, "time") == 0 || strcmp(k, "level") == 0 || strcmp(k, "msg") == 0 ||
           strcmp(k, "plugin") == 0;
}

static void write_all(const char *p, size_t n)
{
    int fd = atomic_load(&g_fd);

    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return; /* nowhere to report a failing log */
        }
        p += w;
        n -= (size_t)w;
    }
}

void sp__log_emitv(sp_log_level_t lvl, const char *src, const char *const *fields,
                   const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX + 1];
    char tailbuf[LOG_TAIL_MAX + 1];
    char msg[LOG_LINE_MAX];
    line_buf_t tail = {tailbuf, 0, LOG_TAIL_MAX - LOG_TAIL_SPARE};
    line_buf_t lb = {line, 0, LOG_LINE_MAX};
    struct timespec ts;
    struct tm tm;
    char head[96];
    size_t hlen;
    size_t mlen;
    size_t room;
    size_t consumed;
    size_t w;
    bool cut;
    int n;

    if ((int)lvl > atomic_load(&g_level) || (int)lvl < 0) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(head, sizeof(head),
                 "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000L, g_level_names[lvl]);
    hlen = n > 0 && (size_t)n < sizeof(head) ? (size_t)n : 0;

    /* The tail (plugin and fields) is built first so the message knows its
     * budget. A field that does not fit whole is dropped, and said so. */
    if (src != NULL) {
        lb_member(&tail, "plugin", src);
    }
    for (size_t i = 0; fields != NULL && fields[i] != NULL; i += 2) {
        const char *k = fields[i];
        const char *v = fields[i + 1];
        char alt[64];

        if (is_reserved_key(k)) {
            snprintf(alt, sizeof(alt), "_%s", k);
            k = alt;
        }
        /* A NULL value is written as null; only a NULL key ends the list. */
        if (!lb_member(&tail, k, v)) {
            tail.cap = LOG_TAIL_MAX; /* the spare bytes always hold the marker */
            lb_member(&tail, "fields_truncated", "true");
            break;
        }
    }

    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0) {
        n = 0;
        msg[0] = '\0';
    }
    mlen = strlen(msg);
    cut = (size_t)n >= sizeof(msg);

    lb_raw(&lb, head, hlen);
    /* Room for the message: whole line minus head, tail, closing quote, the
     * marker, the closing brace and the newline. */
    room = LOG_LINE_MAX - lb.len - tail.len - 1 - (sizeof(g_trunc_marker) - 1) - 2;
    w = json_escape_ex(line + lb.len, room + 1, msg, mlen, &consumed);
    lb.len += w;
    if (cut || consumed < mlen) {
        lb_raw(&lb, g_trunc_marker, sizeof(g_trunc_marker) - 1);
    }
    lb_raw(&lb, "\"", 1);
    lb_raw(&lb, tail.p, tail.len);
    lb_raw(&lb, "}\n", 2);
    write_all(line, lb.len);
}

void sp__log(sp_log_level_t lvl, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sp__log_emitv(lvl, NULL, NULL, fmt, ap);
    va_end(ap);
}

void sp__log_src(sp_log_level_t lvl, const char *src, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sp__log_emitv(lvl, src, NULL, fmt, ap);
    va_end(ap);
}

void sp__log_fields(sp_log_level_t lvl, const char *const *fields, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sp__log_emitv(lvl, NULL, fields, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */

#define SP__ERR_MSG_CASE(code, name, msg)                                                  \
    case code:                                                                             \
        return msg;
#define SP__ERR_NAME_CASE(code, name, msg)                                                 \
    case code:                                                                             \
        return "SP_" #name;

const char *sp__strerror(int err)
{
    static _Thread_local char buf[64];

    switch (err) {
        SP_ERRNO_MAP(SP__ERR_MSG_CASE)
    default:
        break;
    }
    if (err == 0) {
        return "success";
    }
    if (err < 0 && err > -4096) {
        /* GNU strerror_r returns a static string or fills buf. */
        return strerror_r(-err, buf, sizeof(buf));
    }
    snprintf(buf, sizeof(buf), "unknown error %d", err);
    return buf;
}

const char *sp__err_name(int err)
{
    switch (err) {
        SP_ERRNO_MAP(SP__ERR_NAME_CASE)
    default:
        break;
    }
    if (err == 0) {
        return "OK";
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    if (err < 0 && err > -4096) {
        const char *s = strerrorname_np(-err);

        if (s != NULL) {
            return s;
        }
    }
#endif
    return "UNKNOWN";
}
