/* SPDX-License-Identifier: Apache-2.0 */
/* SMTP replies, EHLO keywords, queue ids and dot-stuffing (see smtp_reply.h). */
#include "smtp_reply.h"

#include <stdio.h>
#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t n = strlen(b);
    if (alen != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

/* "5.1.1" at the start of t (class matching the code), followed by a space
 * or the end: its length, else 0. */
static size_t enh_len(const char *t, size_t tl, int code)
{
    size_t i = 0, n;
    if (tl < 5 || t[0] != (char)('0' + code / 100) || t[1] != '.') {
        return 0;
    }
    i = 2;
    for (int part = 0; part < 2; part++) {
        n = 0;
        while (i < tl && is_digit(t[i]) && n < 4) {
            i++;
            n++;
        }
        if (n == 0 || n > 3) {
            return 0;
        }
        if (part == 0) {
            if (i >= tl || t[i] != '.') {
                return 0;
            }
            i++;
        }
    }
    return (i == tl || t[i] == ' ') ? i : 0;
}

static void text_append(smtp_reply_t *r, const char *t, size_t tl)
{
    size_t room;
    if (r->nlines > 1 && r->textlen + 1 < sizeof(r->text)) {
        r->text[r->textlen++] = '\n';
    }
    room = sizeof(r->text) - 1 - r->textlen;
    if (tl > room) {
        tl = room;
    }
    memcpy(r->text + r->textlen, t, tl);
    r->textlen += tl;
    r->text[r->textlen] = '\0';
}

smtp_reply_res_t smtp_reply_parse(const char *buf, size_t len, smtp_reply_t *r, size_t *used)
{
    size_t off = 0;

    r->code = 0;
    r->enh[0] = '\0';
    r->text[0] = '\0';
    r->textlen = 0;
    r->nlines = 0;
    *used = 0;
    for (;;) {
        const char *ln = buf + off;
        const char *nl = memchr(ln, '\n', len - off);
        size_t tl, end;
        int code;
        bool last;

        if (nl == NULL) {
            return len - off >= SMTP_REPLY_MAX_LINE ? SMTP_REPLY_TOO_LONG : SMTP_REPLY_MORE;
        }
        end = (size_t)(nl - buf);
        if (end - off + 1 > SMTP_REPLY_MAX_LINE) {
            return SMTP_REPLY_TOO_LONG;
        }
        tl = end - off;
        if (tl > 0 && ln[tl - 1] == '\r') {
            tl--;
        }
        if (tl < 3 || !is_digit(ln[0]) || !is_digit(ln[1]) || !is_digit(ln[2]) ||
            (tl > 3 && ln[3] != ' ' && ln[3] != '-')) {
            return SMTP_REPLY_BAD;
        }
        code = (ln[0] - '0') * 100 + (ln[1] - '0') * 10 + (ln[2] - '0');
        if (code < 200 || code > 599) {
            return SMTP_REPLY_BAD;
        }
        if (r->nlines == 0) {
            r->code = code;
        } else if (code != r->code) {
            return SMTP_REPLY_BAD;
        }
        if (++r->nlines > SMTP_REPLY_MAX_LINES) {
            return SMTP_REPLY_TOO_LONG;
        }
        last = tl == 3 || ln[3] == ' ';
        if (tl > 4) {
            text_append(r, ln + 4, tl - 4);
            if (r->nlines == 1) {
                size_t el = enh_len(ln + 4, tl - 4, code);
                if (el > 0) {
                    memcpy(r->enh, ln + 4, el);
                    r->enh[el] = '\0';
                }
            }
        } else {
            text_append(r, "", 0);
        }
        off = end + 1;
        if (last) {
            *used = off;
            return SMTP_REPLY_OK;
        }
    }
}

size_t smtp_reply_line(const smtp_reply_t *r, char *out, size_t outlen)
{
    int n;
    size_t o;
    if (outlen == 0) {
        return 0;
    }
    n = snprintf(out, outlen, "%03d", r->code);
    if (n < 0) {
        out[0] = '\0';
        return 0;
    }
    o = (size_t)n < outlen ? (size_t)n : outlen - 1;
    if (r->textlen > 0 && o + 1 < outlen) {
        out[o++] = ' ';
    }
    for (size_t i = 0; i < r->textlen && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)r->text[i];
        out[o++] = c == '\n' ? ' ' : (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    while (o > 0 && out[o - 1] == ' ') {
        o--;
    }
    out[o] = '\0';
    return o;
}

/* One EHLO line: keyword, then its parameters. */
static void ehlo_line(const char *l, size_t ll, smtp_ehlo_t *f)
{
    size_t k = 0;
    const char *p;
    size_t pl;
    while (k < ll && l[k] != ' ' && l[k] != '=') {
        k++;
    }
    p = l + k + (k < ll ? 1 : 0);
    pl = ll - (size_t)(p - l);
    if (ieq(l, k, "PIPELINING")) {
        f->pipelining = true;
    } else if (ieq(l, k, "STARTTLS")) {
        f->starttls = true;
    } else if (ieq(l, k, "8BITMIME")) {
        f->eightbitmime = true;
    } else if (ieq(l, k, "SMTPUTF8")) {
        f->smtputf8 = true;
    } else if (ieq(l, k, "ENHANCEDSTATUSCODES")) {
        f->enhancedstatuscodes = true;
    } else if (ieq(l, k, "SIZE")) {
        uint64_t v = 0;
        bool ok = pl > 0;
        for (size_t i = 0; i < pl; i++) {
            if (!is_digit(p[i]) || v > (UINT64_MAX - 9) / 10) {
                ok = false;
                break;
            }
            v = v * 10 + (uint64_t)(p[i] - '0');
        }
        f->size = true;
        f->size_max = ok ? v : 0;
    } else if (ieq(l, k, "AUTH")) {
        size_t i = 0;
        while (i < pl) {
            size_t s;
            while (i < pl && p[i] == ' ') {
                i++;
            }
            s = i;
            while (i < pl && p[i] != ' ') {
                i++;
            }
            if (ieq(p + s, i - s, "PLAIN")) {
                f->auth_plain = true;
            } else if (ieq(p + s, i - s, "LOGIN")) {
                f->auth_login = true;
            }
        }
    }
}

void smtp_ehlo_parse(const smtp_reply_t *r, smtp_ehlo_t *f)
{
    const char *t = r->text, *end = r->text + r->textlen;
    const char *nl;
    memset(f, 0, sizeof(*f));
    if (r->code != 250) {
        return;
    }
    /* The first line is the server's name and greeting. */
    nl = memchr(t, '\n', (size_t)(end - t));
    while (nl != NULL) {
        t = nl + 1;
        nl = memchr(t, '\n', (size_t)(end - t));
        ehlo_line(t, (size_t)((nl != NULL ? nl : end) - t), f);
    }
}

static bool id_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '-' || c == '_' || c == '@' || c == '+' || c == '=' || c == '/';
}

/* The token at t (angle brackets dropped) into out; its length or 0. */
static size_t take_token(const char *t, size_t tl, bool need_digit, bool whole, char *out,
                         size_t outlen)
{
    size_t i = 0, s, e;
    bool digit = false;
    if (i < tl && t[i] == '<') {
        i++;
    }
    s = i;
    while (i < tl && id_char(t[i])) {
        digit |= is_digit(t[i]);
        i++;
    }
    e = i;
    if (i < tl && t[i] == '>' && s > 0) {
        i++;
    }
    if (e == s || e - s >= outlen || (need_digit && !digit)) {
        return 0;
    }
    if (whole && i != tl) {
        return 0;
    }
    if (!whole && i < tl && t[i] != ' ' && t[i] != ',' && t[i] != ';' && t[i] != ')') {
        return 0;
    }
    memcpy(out, t + s, e - s);
    out[e - s] = '\0';
    return e - s;
}

static const char *ifind(const char *h, size_t hl, const char *n)
{
    size_t nl = strlen(n);
    for (size_t i = 0; i + nl <= hl; i++) {
        if (ieq(h + i, nl, n)) {
            return h + i;
        }
    }
    return NULL;
}

size_t smtp_reply_queue_id(const smtp_reply_t *r, char *out, size_t outlen)
{
    const char *t = r->text, *nl = memchr(r->text, '\n', r->textlen), *hit;
    size_t tl = nl != NULL ? (size_t)(nl - t) : r->textlen;
    size_t el = strlen(r->enh), n;

    if (outlen == 0) {
        return 0;
    }
    out[0] = '\0';
    if (r->code / 100 != 2) {
        return 0;
    }
    if (el > 0) {
        t += el;
        tl -= el;
    }
    while (tl > 0 && *t == ' ') {
        t++;
        tl--;
    }
    while (tl > 0 && t[tl - 1] == ' ') {
        tl--;
    }
    if ((hit = ifind(t, tl, "queued as ")) != NULL) {
        size_t off = (size_t)(hit - t) + 10;
        if ((n = take_token(t + off, tl - off, false, false, out, outlen)) > 0) {
            return n;
        }
    }
    if ((hit = ifind(t, tl, "id=")) != NULL && (hit == t || hit[-1] == ' ')) {
        size_t off = (size_t)(hit - t) + 3;
        if ((n = take_token(t + off, tl - off, false, false, out, outlen)) > 0) {
            return n;
        }
    }
    /* "<id>" or "Ok <id>": one token with a digit in it. */
    if (tl > 3 && ieq(t, 3, "ok ")) {
        t += 3;
        tl -= 3;
    }
    return take_token(t, tl, true, true, out, outlen);
}

size_t smtp_dot_stuff(const char *in, size_t len, char *out)
{
    size_t o = 0;
    bool bol = true;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (bol && c == '.') {
            out[o++] = '.';
        }
        if (c == '\n' && (i == 0 || in[i - 1] != '\r')) {
            out[o++] = '\r';
        }
        out[o++] = c;
        bol = c == '\n';
    }
    if (!bol) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    memcpy(out + o, ".\r\n", 3);
    return o + 3;
}
