/* SPDX-License-Identifier: Apache-2.0 */
/* The SMTP client's pure parts: the reply parser (RFC 5321 4.2 multi-line
 * replies, enhanced status codes of RFC 3463), EHLO keywords (RFC 5321
 * 4.1.1.1 and the extensions the relay uses), the queue id in a 250 answer
 * to the end of DATA, and dot-stuffing of the message (RFC 5321 4.5.2).
 * No I/O, no allocation: fuzzed by tests/fuzz/fuzz_smtp_reply.c. */
#ifndef SP_PLUGINS_EGRESS_SMTP_SMTP_REPLY_H
#define SP_PLUGINS_EGRESS_SMTP_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest reply line accepted, CRLF included. RFC 5321 says 512; real
 * servers send longer texts, so this is generous but bounded. */
#define SMTP_REPLY_MAX_LINE 2048
/* Most lines in one reply (an EHLO answer has a dozen). */
#define SMTP_REPLY_MAX_LINES 128
/* Text kept of one reply (lines joined by '\n'); longer is cut. */
#define SMTP_REPLY_MAX_TEXT 4096

typedef struct smtp_reply {
    int code;                         /* 200..599 */
    char enh[12];                     /* "5.1.1" of the first line, or "" */
    char text[SMTP_REPLY_MAX_TEXT];   /* each line's text after "250-"/"250 ", '\n' between */
    size_t textlen;
    size_t nlines;
} smtp_reply_t;

typedef enum {
    SMTP_REPLY_MORE = 0,      /* no whole reply yet: read more */
    SMTP_REPLY_OK = 1,        /* one reply parsed; *used bytes consumed */
    SMTP_REPLY_BAD = -1,      /* not an SMTP reply (bad code, mixed codes) */
    SMTP_REPLY_TOO_LONG = -2, /* a line or the reply is over the limits */
} smtp_reply_res_t;

/* Parse the first whole reply in buf. Lines end with CRLF (a bare LF is
 * accepted). */
smtp_reply_res_t smtp_reply_parse(const char *buf, size_t len, smtp_reply_t *r, size_t *used);

/* "550 5.1.1 text" with the lines joined by spaces, control bytes and
 * non-ASCII replaced by '?', cut to outlen - 1. Returns the length. */
size_t smtp_reply_line(const smtp_reply_t *r, char *out, size_t outlen);

/* What an EHLO answer offers. */
typedef struct smtp_ehlo {
    bool pipelining, starttls, eightbitmime, smtputf8, enhancedstatuscodes;
    bool size;          /* SIZE advertised */
    uint64_t size_max;  /* its limit, 0 = none given */
    bool auth_plain, auth_login;
} smtp_ehlo_t;

void smtp_ehlo_parse(const smtp_reply_t *r, smtp_ehlo_t *f);

/* The queue id in the answer to the end of DATA ("250 2.0.0 Ok: queued as
 * 4XyZ", "250 OK id=1q2w3e-...", "250 Ok <id>", "250 2.0.0 <id>"), written
 * NUL-terminated to out. Returns its length, 0 if none is recognisable. */
size_t smtp_reply_queue_id(const smtp_reply_t *r, char *out, size_t outlen);

/* Worst-case size of smtp_dot_stuff's output for len input bytes. */
#define SMTP_STUFFED_MAX(len) (2 * (size_t)(len) + 5)

/* The DATA payload for a message: bare LF made CRLF, a '.' starting a line
 * doubled, a CRLF added if the message does not end with one, then
 * ".\r\n". out must hold SMTP_STUFFED_MAX(len) bytes. Returns the length. */
size_t smtp_dot_stuff(const char *in, size_t len, char *out);

#endif /* SP_PLUGINS_EGRESS_SMTP_SMTP_REPLY_H */
