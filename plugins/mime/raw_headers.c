/* SPDX-License-Identifier: Apache-2.0 */
/* Header-block editing of a complete message (see raw_headers.h). The
 * message is first brought to CRLF line ends; then the header block is
 * split into fields (a field is its first line plus the folded lines that
 * start with a space or tab) without unfolding or re-encoding anything, so
 * what is kept stays byte-identical. */
#include "raw_headers.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A buffer that only grows; its capacity is reserved up front. */
typedef struct rbuf {
    char *p;
    size_t n;
} rbuf_t;

static void put(rbuf_t *b, const void *s, size_t n)
{
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(rbuf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

/* CRLF line ends: a bare CR or a bare LF is a line end too, and a final line
 * without one gets CRLF. Returns a malloc'd buffer. */
static char *to_crlf(const char *in, size_t len, size_t *outlen)
{
    char *o = malloc(len * 2 + 3);
    size_t n = 0;
    if (o == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '\r') {
            o[n++] = '\r';
            o[n++] = '\n';
            if (i + 1 < len && in[i + 1] == '\n') {
                i++;
            }
        } else if (c == '\n') {
            o[n++] = '\r';
            o[n++] = '\n';
        } else {
            o[n++] = c;
        }
    }
    if (n > 0 && o[n - 1] != '\n') {
        o[n++] = '\r';
        o[n++] = '\n';
    }
    *outlen = n;
    return o;
}

/* One header field of a CRLF message: [start, end) including its final
 * CRLF; the name is [start, start + nlen); the value follows the colon. */
typedef struct field {
    size_t start, end;
    size_t nlen;
    size_t vstart;
} field_t;

/* Length of the field name if the line at p (of n bytes, no CRLF) starts a
 * field: printable ASCII except ':' (RFC 5322 ftext), optional blanks (the
 * obsolete syntax), then ':'. 0 if it does not. *vstart receives the offset
 * after the colon. */
static size_t field_name(const char *p, size_t n, size_t *vstart)
{
    size_t i = 0, nlen;
    while (i < n && (unsigned char)p[i] >= 33 && (unsigned char)p[i] <= 126 && p[i] != ':') {
        i++;
    }
    nlen = i;
    while (i < n && (p[i] == ' ' || p[i] == '\t')) {
        i++;
    }
    if (nlen == 0 || i >= n || p[i] != ':') {
        return 0;
    }
    *vstart = i + 1;
    return nlen;
}

static bool name_is(const char *msg, const field_t *f, const char *name)
{
    return f->nlen == strlen(name) && strncasecmp(msg + f->start, name, f->nlen) == 0;
}

/* The "<id>" of a Message-ID value [v, end) (folded lines included): blanks
 * and line breaks around it, 1 to 250 printable characters without blanks,
 * '<' or '>' inside. Returns a malloc'd copy without brackets, or NULL. */
static char *usable_id(const char *v, const char *end)
{
    const char *a, *b;
    char *id;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')) {
        v++;
    }
    if (v >= end || *v != '<') {
        return NULL;
    }
    a = ++v;
    while (v < end && *v != '>') {
        unsigned char c = (unsigned char)*v;
        if (c <= 32 || c >= 127 || c == '<') {
            return NULL;
        }
        v++;
    }
    if (v >= end || v == a || v - a > 250) {
        return NULL;
    }
    b = v++;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')) {
        v++;
    }
    if (v != end) {
        return NULL;
    }
    id = malloc((size_t)(b - a) + 1);
    if (id != NULL) {
        memcpy(id, a, (size_t)(b - a));
        id[b - a] = '\0';
    }
    return id;
}

typedef enum { END_EMPTY_LINE, END_OTHER_LINE, END_OF_DATA } hdr_end_t;

/* Split the header block of a CRLF message into fields. Returns the number
 * of fields (into *fields, malloc'd; may be NULL when 0), the offset where
 * the block ends (*hend: the empty line, the first line that is not a
 * field, or the end) and how it ends; -1 when out of memory. */
static long split_fields(const char *m, size_t len, field_t **fields, size_t *hend,
                         hdr_end_t *how)
{
    field_t *fv = NULL;
    size_t nf = 0, cap = 0, pos = 0;
    *how = END_OF_DATA;
    while (pos < len) {
        const char *eol = memchr(m + pos, '\n', len - pos); /* CRLF: '\r' before it */
        size_t ll = (size_t)(eol - (m + pos)) - 1;          /* line length without CRLF */
        size_t next = (size_t)(eol - m) + 1;
        size_t vstart = 0, nlen;
        if (ll == 0) {
            *how = END_EMPTY_LINE;
            break;
        }
        if (m[pos] == ' ' || m[pos] == '\t') {
            if (nf == 0) {
                *how = END_OTHER_LINE;
                break;
            }
            fv[nf - 1].end = next;
            pos = next;
            continue;
        }
        nlen = field_name(m + pos, ll, &vstart);
        if (nlen == 0) {
            *how = END_OTHER_LINE;
            break;
        }
        if (nf == cap) {
            size_t nc = cap ? cap * 2 : 32;
            field_t *g = realloc(fv, nc * sizeof(*g));
            if (g == NULL) {
                free(fv);
                return -1;
            }
            fv = g;
            cap = nc;
        }
        fv[nf].start = pos;
        fv[nf].end = next;
        fv[nf].nlen = nlen;
        fv[nf].vstart = pos + vstart;
        nf++;
        pos = next;
    }
    *hend = pos;
    *fields = fv;
    return (long)nf;
}

static bool drop_always(const char *m, const field_t *f)
{
    return name_is(m, f, "Bcc") || name_is(m, f, "Resent-Bcc") ||
           name_is(m, f, "X-Usesend-Email-ID") || name_is(m, f, "X-Unsend-Email-ID");
}

int mime_raw_edit(const char *in, size_t len, const mime_raw_add_t *add, char **out,
                  size_t *outlen, char **msgid)
{
    size_t nlen = 0, hend = 0;
    char *m = to_crlf(in, len, &nlen);
    char *id = NULL;
    field_t *fv = NULL;
    bool has_date = false;
    hdr_end_t how;
    long nf;
    rbuf_t b;

    *out = NULL;
    *outlen = 0;
    *msgid = NULL;
    if (m == NULL) {
        return -1;
    }
    nf = split_fields(m, nlen, &fv, &hend, &how);
    if (nf < 0) {
        free(m);
        return -1;
    }
    b.n = 0;
    b.p = malloc(nlen + 64 + 2 * 3 + strlen(add->message_id) + strlen(add->date) +
                 strlen(add->email_id) + 2);
    if (b.p == NULL) {
        free(fv);
        free(m);
        return -1;
    }
    for (long i = 0; i < nf; i++) {
        const field_t *f = &fv[i];
        if (drop_always(m, f)) {
            continue;
        }
        if (name_is(m, f, "Message-ID")) {
            char *v = usable_id(m + f->vstart, m + f->end);
            if (v == NULL) {
                continue; /* unusable: replaced by ours */
            }
            if (id == NULL) {
                id = v;
            } else {
                free(v);
            }
        } else if (name_is(m, f, "Date")) {
            has_date = true;
        }
        put(&b, m + f->start, f->end - f->start);
    }
    if (id == NULL) {
        id = strdup(add->message_id);
        if (id == NULL) {
            free(b.p);
            free(fv);
            free(m);
            return -1;
        }
        puts_(&b, "Message-ID: <");
        puts_(&b, add->message_id);
        puts_(&b, ">\r\n");
    }
    if (!has_date) {
        puts_(&b, "Date: ");
        puts_(&b, add->date);
        puts_(&b, "\r\n");
    }
    puts_(&b, "X-Usesend-Email-ID: ");
    puts_(&b, add->email_id);
    puts_(&b, "\r\n");
    if (how == END_OTHER_LINE) {
        puts_(&b, "\r\n");
    }
    put(&b, m + hend, nlen - hend);
    free(fv);
    free(m);
    *out = b.p;
    *outlen = b.n;
    *msgid = id;
    return 0;
}

char *mime_raw_message_id(const char *in, size_t len)
{
    size_t nlen = 0, hend = 0;
    char *m = to_crlf(in, len, &nlen);
    char *id = NULL;
    field_t *fv = NULL;
    hdr_end_t how;
    long nf;
    if (m == NULL) {
        return NULL;
    }
    nf = split_fields(m, nlen, &fv, &hend, &how);
    for (long i = 0; i < nf && id == NULL; i++) {
        if (name_is(m, &fv[i], "Message-ID")) {
            id = usable_id(m + fv[i].vstart, m + fv[i].end);
        }
    }
    free(fv);
    free(m);
    return id;
}
