/* SPDX-License-Identifier: Apache-2.0 */
/* Textual editing of a message that arrived complete (SMTP ingress): its
 * bytes are kept, only the header block is touched. Pure functions (no
 * sendpipe or GMime calls) so the fuzz target can drive them. */
#ifndef SP_MIME_RAW_HEADERS_H
#define SP_MIME_RAW_HEADERS_H

#include <stddef.h>

/** What mime_raw_edit adds. Every string is one line of printable ASCII
 * (the caller guarantees it; CR and LF are never written from them). */
typedef struct mime_raw_add {
    const char *message_id; /**< without brackets; added when no usable Message-ID */
    const char *date;       /**< RFC 5322 date text; added when no Date field */
    const char *email_id;   /**< X-Usesend-Email-ID value; always replaces existing ones */
} mime_raw_add_t;

/** Edit a raw message: line ends become CRLF (a bare CR or LF counts as
 * one; the message ends with CRLF), every Bcc, X-Usesend-Email-ID and
 * X-Unsend-Email-ID field (with its folded lines) is removed, a Message-ID
 * field without a usable "<id>" is removed, then Message-ID (when none is
 * left), Date (when absent) and X-Usesend-Email-ID are appended at the end
 * of the header block. If the header block ends at a line that is not a
 * field (rather than at an empty line), an empty line is inserted after the
 * added fields so they can never merge with what follows. Everything else
 * is kept byte for byte. *out (malloc) and *outlen receive the message;
 * *msgid (malloc, may be NULL) the Message-ID the result carries, without
 * brackets. Returns 0, or -1 when out of memory. */
int mime_raw_edit(const char *in, size_t len, const mime_raw_add_t *add, char **out,
                  size_t *outlen, char **msgid);

/** The Message-ID of a raw message (first Message-ID field with a usable
 * "<id>"), without brackets, malloc'd; NULL if none or out of memory. */
char *mime_raw_message_id(const char *in, size_t len);

#endif
