/* SPDX-License-Identifier: Apache-2.0 */
/* SMTP command lines, MAIL/RCPT arguments, base64 and the DATA state
 * machine: pure functions over bytes (see smtp_proto.h). */
#include "smtp_proto.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- command lines ---------------------------------------------------- */

smtp_line_res_t smtp_line_next(smtp_lines_t *st, const char *buf, size_t len, size_t max,
                               size_t *consumed, size_t *linelen)
{
    const char *nl = memchr(buf, '\n', len);
    size_t n;

    *consumed = 0;
    *linelen = 0;
    if (st->discarding) {
        /* The rest of a line already answered as too long. */
        if (nl == NULL) {
            *consumed = len;
            return SMTP_LINE_MORE;
        }
        st->discarding = false;
        *consumed = (size_t)(nl - buf) + 1;
        return SMTP_LINE_MORE;
    }
    if (nl == NULL) {
        if (len >= max) {
            /* Answer at once rather than when (if ever) the LF comes. */
            st->discarding = true;
            *consumed = len;
            return SMTP_LINE_TOOLONG;
        }
        return SMTP_LINE_MORE;
    }
    n = (size_t)(nl - buf);
    *consumed = n + 1;
    if (n + 1 > max) {
        return SMTP_LINE_TOOLONG;
    }
    if (n == 0 || buf[n - 1] != '\r') {
        return SMTP_LINE_BARELF;
    }
    *linelen = n - 1;
    return SMTP_LINE_OK;
}

static const struct {
    const char *name;
    smtp_verb_t verb;
} g_verbs[] = {
    {"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO}, {"MAIL", SMTP_VERB_MAIL},
    {"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA}, {"RSET", SMTP_VERB_RSET},
    {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT}, {"HELP", SMTP_VERB_HELP},
    {"VRFY", SMTP_VERB_VRFY}, {"EXPN", SMTP_VERB_EXPN}, {"STARTTLS", SMTP_VERB_STARTTLS},
    {"AUTH", SMTP_VERB_AUTH}, {"BDAT", SMTP_VERB_BDAT},
};

int smtp_cmd_parse(const char *line, size_t len, smtp_cmd_t *out)
{
    size_t v = 0, a;

    out->verb = SMTP_VERB_UNKNOWN;
    out->arg = NULL;
    out->arglen = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return -1;
        }
    }
    while (v < len && line[v] != ' ') {
        v++;
    }
    a = v;
    while (a < len && line[a] == ' ') {
        a++;
    }
    for (size_t i = 0; i < sizeof(g_verbs) / sizeof(g_verbs[0]); i++) {
        if (strlen(g_verbs[i].name) == v && strncasecmp(line, g_verbs[i].name, v) == 0) {
            out->verb = g_verbs[i].verb;
            break;
        }
    }
    out->arg = line + a;
    out->arglen = len - a;
    /* Trailing spaces are common ("DATA ") and mean nothing. */
    while (out->arglen > 0 && (out->arg[out->arglen - 1] == ' ' ||
                               out->arg[out->arglen - 1] == '\t')) {
        out->arglen--;
    }
    return 0;
}

/* ---- addresses -------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t l;
    uint32_t cp;
    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        l = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        l = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        l = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < l) {
        return 0;
    }
    for (size_t i = 1; i < l; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return l;
}

bool smtp_addr_ok(const char *addr, size_t len)
{
    const unsigned char *s = (const unsigned char *)addr;
    size_t at = len, i;

    if (len == 0 || len > SMTP_MAX_PATH) {
        return false;
    }
    for (i = 0; i < len;) {
        size_t l = utf8_len(s + i, len - i);
        if (l == 0) {
            return false;
        }
        if (l == 1) {
            unsigned char c = s[i];
            if (c <= 0x20 || c == 0x7f || strchr("<>()[],;:\\\"", c) != NULL) {
                /* Brackets are allowed only in a domain literal, below. */
                if (!((c == '[' || c == ']' || c == ':') && at < len)) {
                    return false;
                }
            }
            if (c == '@') {
                if (at != len) {
                    return false; /* quoted local parts are not supported */
                }
                at = i;
            }
        }
        i += l;
    }
    if (at == len || at == 0 || at > 64 || len - at - 1 == 0 || len - at - 1 > 255) {
        return false;
    }
    if (s[at + 1] == '[') {
        return s[len - 1] == ']' && len - at - 1 > 2;
    }
    if (memchr(s + at + 1, '[', len - at - 1) != NULL ||
        memchr(s + at + 1, ']', len - at - 1) != NULL ||
        memchr(s + at + 1, ':', len - at - 1) != NULL || s[at + 1] == '.' ||
        s[len - 1] == '.' || s[at - 1] == '.' || s[0] == '.') {
        return false;
    }
    for (i = at + 1; i + 1 < len; i++) {
        if (s[i] == '.' && s[i + 1] == '.') {
            return false;
        }
    }
    return true;
}

/* "<path>" or a bare path at arg; *used is how much was taken. */
static int take_path(const char *arg, size_t len, char *out, size_t *outlen, size_t *used)
{
    size_t i = 0, b, e;
    while (i < len && arg[i] == ' ') {
        i++; /* "MAIL FROM: <a@b>" is common enough to accept */
    }
    if (i < len && arg[i] == '<') {
        const char *gt = memchr(arg + i, '>', len - i);
        if (gt == NULL) {
            return SMTP_ESYNTAX;
        }
        b = i + 1;
        e = (size_t)(gt - arg);
        *used = e + 1;
    } else {
        b = i;
        e = i;
        while (e < len && arg[e] != ' ') {
            e++;
        }
        if (e == b) {
            return SMTP_ESYNTAX;
        }
        *used = e;
    }
    if (e - b > SMTP_MAX_PATH) {
        return SMTP_EADDR;
    }
    if (e > b && arg[b] == '@') {
        return SMTP_EADDR; /* source routes (RFC 5321 4.1.2) are not supported */
    }
    memcpy(out, arg + b, e - b);
    out[e - b] = '\0';
    *outlen = e - b;
    return 0;
}

/* Next "KEY[=VALUE]" parameter; 0 at the end, 1 when one was found. */
static int next_param(const char *s, size_t len, size_t *pos, const char **k, size_t *klen,
                      const char **v, size_t *vlen)
{
    size_t i = *pos, e;
    while (i < len && s[i] == ' ') {
        i++;
    }
    if (i >= len) {
        *pos = i;
        return 0;
    }
    e = i;
    while (e < len && s[e] != ' ') {
        e++;
    }
    *k = s + i;
    *v = memchr(s + i, '=', e - i);
    if (*v != NULL) {
        *klen = (size_t)(*v - (s + i));
        (*v)++;
        *vlen = (size_t)(s + e - *v);
    } else {
        *klen = e - i;
        *vlen = 0;
    }
    *pos = e;
    return 1;
}

static bool kw(const char *s, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(s, want, n) == 0;
}

int smtp_parse_mail(const char *arg, size_t len, smtp_mail_t *out)
{
    size_t used = 0, alen = 0, pos;
    const char *k, *v;
    size_t kl, vl;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len < 5 || strncasecmp(arg, "FROM:", 5) != 0) {
        return SMTP_ESYNTAX;
    }
    rc = take_path(arg + 5, len - 5, out->addr, &alen, &used);
    if (rc < 0) {
        return rc;
    }
    if (alen > 0 && !smtp_addr_ok(out->addr, alen)) {
        return SMTP_EADDR;
    }
    pos = 5 + used;
    if (pos < len && arg[pos] != ' ') {
        return SMTP_ESYNTAX;
    }
    while (next_param(arg, len, &pos, &k, &kl, &v, &vl)) {
        if (kw(k, kl, "SIZE")) {
            uint64_t n = 0;
            if (v == NULL || vl == 0 || vl > 19) {
                return SMTP_ESYNTAX;
            }
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    return SMTP_ESYNTAX;
                }
                n = n * 10 + (uint64_t)(v[i] - '0');
            }
            out->has_size = true;
            out->size = n;
        } else if (kw(k, kl, "BODY")) {
            if (v != NULL && kw(v, vl, "8BITMIME")) {
                out->body_8bit = true;
            } else if (v == NULL || !kw(v, vl, "7BIT")) {
                return SMTP_EPARAM;
            }
        } else if (kw(k, kl, "SMTPUTF8") && v == NULL) {
            out->smtputf8 = true;
        } else if (kw(k, kl, "AUTH") && v != NULL) {
            /* RFC 4954 5: the client's idea of the submitter; ignored. */
        } else {
            return SMTP_EPARAM;
        }
    }
    return 0;
}

int smtp_parse_rcpt(const char *arg, size_t len, char addr[SMTP_MAX_PATH + 1])
{
    size_t used = 0, alen = 0, pos;
    const char *k, *v;
    size_t kl, vl;
    int rc;

    addr[0] = '\0';
    if (len < 3 || strncasecmp(arg, "TO:", 3) != 0) {
        return SMTP_ESYNTAX;
    }
    rc = take_path(arg + 3, len - 3, addr, &alen, &used);
    if (rc < 0) {
        return rc;
    }
    if (!smtp_addr_ok(addr, alen)) {
        return SMTP_EADDR;
    }
    pos = 3 + used;
    if (pos < len && arg[pos] != ' ') {
        return SMTP_ESYNTAX;
    }
    if (next_param(arg, len, &pos, &k, &kl, &v, &vl)) {
        return SMTP_EPARAM; /* no DSN: NOTIFY and ORCPT are not offered */
    }
    return 0;
}

/* ---- base64 ------------------------------------------------------------ */

static int b64v(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

long smtp_b64_decode(const char *in, size_t len, unsigned char *out)
{
    size_t o = 0;
    if (len % 4 != 0) {
        return -1;
    }
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *q = (const unsigned char *)in + i;
        int a = b64v(q[0]), b = b64v(q[1]), c, d;
        bool last = i + 4 == len;
        if (a < 0 || b < 0) {
            return -1;
        }
        if (last && q[2] == '=' && q[3] == '=') {
            if ((b & 0x0f) != 0) {
                return -1;
            }
            out[o++] = (unsigned char)((a << 2) | (b >> 4));
            break;
        }
        c = b64v(q[2]);
        if (c < 0) {
            return -1;
        }
        if (last && q[3] == '=') {
            if ((c & 0x03) != 0) {
                return -1;
            }
            out[o++] = (unsigned char)((a << 2) | (b >> 4));
            out[o++] = (unsigned char)(((b & 0x0f) << 4) | (c >> 2));
            break;
        }
        d = b64v(q[3]);
        if (d < 0) {
            return -1;
        }
        out[o++] = (unsigned char)((a << 2) | (b >> 4));
        out[o++] = (unsigned char)(((b & 0x0f) << 4) | (c >> 2));
        out[o++] = (unsigned char)(((c & 0x03) << 6) | d);
    }
    return (long)o;
}

size_t smtp_b64_encode(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

/* ---- DATA --------------------------------------------------------------- */

enum { S_BOL = 0, S_DOT, S_DOTCR, S_TEXT, S_CR };

void smtp_data_init(smtp_data_t *d, uint64_t max)
{
    memset(d, 0, sizeof(*d));
    d->state = S_BOL;
    d->prev_crlf = true; /* the DATA command line ended with CRLF */
    d->max = max;
}

void smtp_data_free(smtp_data_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->len = d->cap = 0;
}

static int put(smtp_data_t *d, const char *s, size_t n)
{
    d->size += n;
    if (d->too_big) {
        return 0;
    }
    if (d->size > d->max) {
        d->too_big = true;
        smtp_data_free(d);
        return 0;
    }
    if (d->len + n > d->cap) {
        size_t cap = d->cap < 4096 ? 4096 : d->cap;
        unsigned char *nb;
        while (cap < d->len + n) {
            cap *= 2;
        }
        nb = realloc(d->buf, cap);
        if (nb == NULL) {
            return -1;
        }
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, s, n);
    d->len += n;
    return 0;
}

smtp_data_res_t smtp_data_feed(smtp_data_t *d, const char *in, size_t n, size_t *consumed)
{
    size_t i = 0;
    int rc = 0;

    while (i < n && rc == 0) {
        char c = in[i];
        switch (d->state) {
        case S_BOL:
            if (c == '.') {
                d->state = S_DOT;
                i++;
                continue;
            }
            d->state = S_TEXT;
            continue; /* the same byte, as text */
        case S_DOT:
            if (c == '\r') {
                d->state = S_DOTCR;
                i++;
                continue;
            }
            if (c == '\n') {
                *consumed = i + 1;
                return SMTP_DATA_SMUGGLE;
            }
            d->state = S_TEXT; /* the leading dot is dropped */
            continue;
        case S_DOTCR:
            if (c == '\n' && d->prev_crlf) {
                *consumed = i + 1;
                return SMTP_DATA_END;
            }
            *consumed = i + 1;
            return SMTP_DATA_SMUGGLE;
        case S_CR:
            if (c == '\n') {
                rc = put(d, "\r\n", 2);
                d->prev_crlf = true;
                d->state = S_BOL;
                i++;
                continue;
            }
            /* A bare CR is content, not a line end. */
            rc = put(d, "\r", 1);
            d->state = S_TEXT;
            continue;
        default: { /* S_TEXT: take the run of ordinary bytes at once */
            size_t j = i;
            while (j < n && in[j] != '\r' && in[j] != '\n' && in[j] != '\0') {
                j++;
            }
            if (j > i) {
                rc = put(d, in + i, j - i);
                i = j;
                continue;
            }
            if (c == '\r') {
                d->state = S_CR;
            } else if (c == '\n') {
                rc = put(d, "\r\n", 2); /* bare LF: a line end, stored as CRLF */
                d->prev_crlf = false;
                d->state = S_BOL;
            } else {
                d->has_nul = true; /* refused at the end; not kept */
            }
            i++;
            continue;
        }
        }
    }
    *consumed = i;
    return rc == 0 ? SMTP_DATA_MORE : SMTP_DATA_NOMEM;
}
