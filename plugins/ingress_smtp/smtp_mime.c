/* SPDX-License-Identifier: Apache-2.0 */
/* A submitted message's MIME structure to record fields through GMime 3:
 * addresses (groups flattened), the decoded subject, the first plain and
 * HTML bodies converted to UTF-8, attachments as decoded bytes, and the
 * headers that are not part of the structure. */
#include "smtp_mime.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

int smtp_strs_add(smtp_strs_t *l, const char *s)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    char *d;
    if (nv == NULL) {
        return -1;
    }
    l->v = nv;
    d = strdup(s);
    if (d == NULL) {
        return -1;
    }
    l->v[l->n++] = d;
    return 0;
}

bool smtp_strs_has(const smtp_strs_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

void smtp_strs_free(smtp_strs_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void smtp_parsed_free(smtp_parsed_t *p)
{
    free(p->from);
    free(p->from_addr);
    smtp_strs_free(&p->to);
    smtp_strs_free(&p->cc);
    smtp_strs_free(&p->reply_to);
    smtp_strs_free(&p->to_addrs);
    smtp_strs_free(&p->cc_addrs);
    free(p->subject);
    free(p->text);
    free(p->html);
    smtp_strs_free(&p->headers);
    for (size_t i = 0; i < p->natt; i++) {
        free(p->att[i].name);
        free(p->att[i].data);
    }
    free(p->att);
    memset(p, 0, sizeof(*p));
}

void smtp_mime_init(void)
{
    g_mime_init();
}

void smtp_mime_shutdown(void)
{
    g_mime_shutdown();
}

typedef struct walk {
    smtp_parsed_t *p;
    int err;
} walk_t;

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    for (char *q = d; q != NULL && *q != '\0'; q++) {
        *q = (char)tolower((unsigned char)*q);
    }
    return d;
}

/* Mailboxes of a list (groups flattened) into disp and bare (lower case);
 * the first one also into *first / *first_addr when those are given. */
static int add_addrs(InternetAddressList *l, smtp_strs_t *disp, smtp_strs_t *bare, char **first,
                     char **first_addr)
{
    int n = l != NULL ? internet_address_list_length(l) : 0;
    for (int i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_list_get_address(l, i);
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            int rc = add_addrs(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)),
                               disp, bare, first, first_addr);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
            char *s = internet_address_to_string(ia, NULL, FALSE);
            char *low;
            int rc = 0;
            if (s == NULL || addr == NULL || addr[0] == '\0') {
                g_free(s);
                continue;
            }
            low = lower_dup(addr);
            if (low == NULL) {
                g_free(s);
                return -2;
            }
            if (first != NULL && *first == NULL) {
                *first = strdup(s);
                *first_addr = strdup(addr);
                if (*first == NULL || *first_addr == NULL) {
                    rc = -2;
                }
            }
            if (rc == 0 && disp != NULL && smtp_strs_add(disp, s) < 0) {
                rc = -2;
            }
            if (rc == 0 && bare != NULL && smtp_strs_add(bare, low) < 0) {
                rc = -2;
            }
            free(low);
            g_free(s);
            if (rc < 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* Decoded content of a leaf part (transfer encoding removed). */
static int part_bytes(GMimeObject *obj, unsigned char **data, size_t *len)
{
    GMimeStream *mem = g_mime_stream_mem_new();
    GByteArray *arr;
    int rc = 0;

    if (GMIME_IS_PART(obj)) {
        GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(obj));
        if (w != NULL && g_mime_data_wrapper_write_to_stream(w, mem) < 0) {
            rc = -1;
        }
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (m != NULL && g_mime_object_write_to_stream(GMIME_OBJECT(m), NULL, mem) < 0) {
            rc = -1;
        }
    }
    arr = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    *len = arr != NULL ? arr->len : 0;
    *data = NULL;
    if (rc == 0 && *len > 0) {
        *data = malloc(*len);
        if (*data == NULL) {
            rc = -2;
        } else {
            memcpy(*data, arr->data, *len);
        }
    }
    g_object_unref(mem);
    return rc;
}

static int add_attachment(walk_t *w, GMimeObject *obj, const char *fname)
{
    smtp_parsed_t *p = w->p;
    smtp_att_t *na = realloc(p->att, (p->natt + 1) * sizeof(*na));
    smtp_att_t *a;
    char gen[64];
    if (na == NULL) {
        return -2;
    }
    p->att = na;
    a = &p->att[p->natt];
    memset(a, 0, sizeof(*a));
    if (fname == NULL || fname[0] == '\0') {
        snprintf(gen, sizeof(gen), "attachment-%zu%s", p->natt + 1,
                 GMIME_IS_MESSAGE_PART(obj) ? ".eml" : "");
        fname = gen;
    }
    a->name = strdup(fname);
    if (a->name == NULL) {
        return -2;
    }
    if (part_bytes(obj, &a->data, &a->len) < 0) {
        free(a->name);
        return -2;
    }
    p->natt++;
    return 0;
}

static void visit(GMimeObject *parent, GMimeObject *part, gpointer data)
{
    walk_t *w = data;
    GMimeContentType *ct;
    const char *fname = NULL;
    bool attach = false;
    int rc = 0;

    (void)parent;
    if (w->err != 0 || GMIME_IS_MULTIPART(part)) {
        return;
    }
    if (GMIME_IS_MESSAGE_PART(part)) {
        w->err = add_attachment(w, part, NULL);
        return;
    }
    if (!GMIME_IS_PART(part)) {
        return;
    }
    fname = g_mime_part_get_filename(GMIME_PART(part));
    attach = g_mime_part_is_attachment(GMIME_PART(part)) || (fname != NULL && fname[0] != '\0');
    ct = g_mime_object_get_content_type(part);
    if (!attach && GMIME_IS_TEXT_PART(part) &&
        (g_mime_content_type_is_type(ct, "text", "plain") ? w->p->text == NULL
         : g_mime_content_type_is_type(ct, "text", "html") ? w->p->html == NULL
                                                           : false)) {
        char *t = g_mime_text_part_get_text(GMIME_TEXT_PART(part));
        char *d = strdup(t != NULL ? t : "");
        g_free(t);
        if (d == NULL) {
            w->err = -2;
            return;
        }
        if (g_mime_content_type_is_type(ct, "text", "plain")) {
            w->p->text = d;
        } else {
            w->p->html = d;
        }
        return;
    }
    rc = add_attachment(w, part, fname);
    if (rc < 0) {
        w->err = rc;
    }
}

/* Headers that make the structure or the envelope, or are recorded as
 * fields of their own; the rest are kept as custom headers. */
static bool structural(const char *name)
{
    static const char *const skip[] = {
        "from", "to", "cc", "bcc", "reply-to", "subject", "date", "mime-version",
        "content-type", "content-transfer-encoding", "content-disposition",
        "content-id", "content-description", "received", "return-path", "sender",
        "x-original-to", "delivered-to", NULL,
    };
    for (size_t i = 0; skip[i] != NULL; i++) {
        if (strcasecmp(name, skip[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int add_headers(GMimeObject *obj, smtp_strs_t *out)
{
    GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
    int n = hl != NULL ? g_mime_header_list_get_count(hl) : 0;
    for (int i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
        const char *name = g_mime_header_get_name(h);
        const char *value = g_mime_header_get_value(h);
        size_t nl, vl;
        char *line;
        int rc;
        if (name == NULL || structural(name)) {
            continue;
        }
        if (value == NULL) {
            value = "";
        }
        nl = strlen(name);
        vl = strlen(value);
        line = malloc(nl + vl + 3);
        if (line == NULL) {
            return -2;
        }
        memcpy(line, name, nl);
        memcpy(line + nl, ": ", 2);
        memcpy(line + nl + 2, value, vl + 1);
        for (char *q = line; *q != '\0'; q++) {
            if (*q == '\r' || *q == '\n') {
                *q = ' '; /* a record header is one line */
            }
        }
        rc = smtp_strs_add(out, line);
        free(line);
        if (rc < 0) {
            return -2;
        }
    }
    return 0;
}

int smtp_mime_parse(const void *buf, size_t len, smtp_parsed_t *out, char *err, size_t errlen)
{
    GMimeStream *stream;
    GMimeParser *parser;
    GMimeMessage *msg;
    walk_t w = {.p = out, .err = 0};
    const char *subj;
    int rc;

    memset(out, 0, sizeof(*out));
    /* The stream copies nothing: GMime reads the caller's buffer. */
    stream = g_mime_stream_mem_new_with_buffer(buf, len);
    parser = g_mime_parser_new_with_stream(stream);
    g_object_unref(stream);
    msg = g_mime_parser_construct_message(parser, NULL);
    g_object_unref(parser);
    if (msg == NULL) {
        snprintf(err, errlen, "the message could not be parsed");
        return -1;
    }
    rc = add_addrs(g_mime_message_get_from(msg), NULL, NULL, &out->from, &out->from_addr);
    rc = rc ? rc : add_addrs(g_mime_message_get_to(msg), &out->to, &out->to_addrs, NULL, NULL);
    rc = rc ? rc : add_addrs(g_mime_message_get_cc(msg), &out->cc, &out->cc_addrs, NULL, NULL);
    rc = rc ? rc : add_addrs(g_mime_message_get_reply_to(msg), &out->reply_to, NULL, NULL, NULL);
    subj = g_mime_message_get_subject(msg);
    if (rc == 0 && subj != NULL) {
        out->subject = strdup(subj);
        if (out->subject == NULL) {
            rc = -2;
        }
    }
    rc = rc ? rc : add_headers(GMIME_OBJECT(msg), &out->headers);
    if (rc == 0) {
        g_mime_message_foreach(msg, visit, &w);
        rc = w.err;
    }
    g_object_unref(msg);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory while parsing the message");
        smtp_parsed_free(out);
        return -2;
    }
    return 0;
}
