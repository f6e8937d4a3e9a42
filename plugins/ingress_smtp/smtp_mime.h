/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 5322 / MIME message to the fields of a sendpipe record, through
 * GMime 3. No libuv, no host API: the unit tests and the fuzz target call
 * it directly. */
#ifndef SP_PLUGINS_INGRESS_SMTP_SMTP_MIME_H
#define SP_PLUGINS_INGRESS_SMTP_SMTP_MIME_H

#include <stdbool.h>
#include <stddef.h>

/* A list of NUL-terminated strings (malloc). */
typedef struct smtp_strs {
    char **v;
    size_t n;
} smtp_strs_t;

typedef struct smtp_att {
    char *name;          /* file name, or "attachment-N" */
    unsigned char *data; /* decoded bytes (malloc, may be NULL when len is 0) */
    size_t len;
} smtp_att_t;

typedef struct smtp_parsed {
    char *from;          /* first From mailbox, "Name <addr>" or "addr" */
    char *from_addr;     /* its bare address */
    smtp_strs_t to, cc, reply_to; /* "Name <addr>" or "addr" each */
    smtp_strs_t to_addrs, cc_addrs; /* bare addresses, lower case */
    char *subject;       /* RFC 2047 decoded, UTF-8; NULL if absent */
    char *text, *html;   /* first text/plain and text/html bodies, UTF-8 */
    smtp_strs_t headers; /* custom headers, "Name: value" */
    smtp_att_t *att;
    size_t natt;
} smtp_parsed_t;

/* Process-wide set-up of GMime (call once before parsing; idempotent). */
void smtp_mime_init(void);
void smtp_mime_shutdown(void);

/* Parse a message. 0, -1 (not a message: err says why, one line), or
 * SP-style -ENOMEM as -2. *out must be released with smtp_parsed_free. */
int smtp_mime_parse(const void *buf, size_t len, smtp_parsed_t *out, char *err, size_t errlen);

void smtp_parsed_free(smtp_parsed_t *p);

/* Add s (copied) to l. 0 or -1 (no memory). */
int smtp_strs_add(smtp_strs_t *l, const char *s);
bool smtp_strs_has(const smtp_strs_t *l, const char *s);
void smtp_strs_free(smtp_strs_t *l);

#endif /* SP_PLUGINS_INGRESS_SMTP_SMTP_MIME_H */
