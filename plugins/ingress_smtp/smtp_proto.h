/* SPDX-License-Identifier: Apache-2.0 */
/* SMTP protocol pieces with no I/O: command lines, MAIL/RCPT arguments,
 * strict base64, and the DATA state machine (dot-unstuffing, line ends,
 * size and NUL checks). Kept free of libuv and OpenSSL so the fuzz targets
 * and unit tests drive them directly. */
#ifndef SP_PLUGINS_INGRESS_SMTP_SMTP_PROTO_H
#define SP_PLUGINS_INGRESS_SMTP_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1: a path is at most 256 octets, a command line 512. */
#define SMTP_MAX_PATH 256
#define SMTP_MAX_LINE 512

typedef enum {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_HELP,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
    SMTP_VERB_BDAT,
} smtp_verb_t;

/* One command: the verb and its argument (a slice of the line). */
typedef struct smtp_cmd {
    smtp_verb_t verb;
    const char *arg;
    size_t arglen;
} smtp_cmd_t;

/* Results of the line splitter. */
typedef enum {
    SMTP_LINE_MORE = 0,  /* no complete line yet */
    SMTP_LINE_OK,        /* a line (without its CRLF) */
    SMTP_LINE_TOOLONG,   /* a line longer than the limit was consumed */
    SMTP_LINE_BARELF,    /* a line ended by LF alone was consumed */
} smtp_line_res_t;

/* Line splitter state: a too-long line is dropped up to its LF. */
typedef struct smtp_lines {
    bool discarding;
} smtp_lines_t;

/* Take the next command line from buf[0..len). *consumed is how many bytes
 * to drop from the buffer (set for every result but MORE, and for MORE when
 * a too-long line is being discarded); *linelen is the line's length
 * without CRLF (OK only). `max` counts the CRLF, as RFC 5321 does. */
smtp_line_res_t smtp_line_next(smtp_lines_t *st, const char *buf, size_t len, size_t max,
                               size_t *consumed, size_t *linelen);

/* Split a command line into verb and argument. Verbs are case-insensitive;
 * the argument is what follows one or more spaces. NUL bytes or other
 * control characters in the line give SMTP_VERB_UNKNOWN with arg NULL.
 * Returns 0, or -1 for a line with control characters. */
int smtp_cmd_parse(const char *line, size_t len, smtp_cmd_t *out);

/* MAIL FROM parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8). */
typedef struct smtp_mail {
    char addr[SMTP_MAX_PATH + 1]; /* "" for the null reverse-path <> */
    bool has_size;
    uint64_t size;
    bool smtputf8;
    bool body_8bit;
} smtp_mail_t;

/* Errors of the argument parsers: which reply to give. */
#define SMTP_ESYNTAX (-1) /* 501 5.5.4 syntax error in parameters */
#define SMTP_EADDR (-2)   /* 553 5.1.3 / 501 5.1.7 bad address */
#define SMTP_EPARAM (-3)  /* 555 5.5.4 unknown parameter or value */

/* Parse "FROM:<addr> [params]" (the text after the MAIL verb). */
int smtp_parse_mail(const char *arg, size_t len, smtp_mail_t *out);

/* Parse "TO:<addr>" (the text after the RCPT verb) into addr (NUL
 * terminated, at most SMTP_MAX_PATH bytes). The null path and the
 * "<Postmaster>" form without a domain are refused (submission only). */
int smtp_parse_rcpt(const char *arg, size_t len, char addr[SMTP_MAX_PATH + 1]);

/* True if `addr` (len bytes) is local@domain with a plausible domain and
 * no spaces, controls or brackets; non-ASCII is allowed only as valid
 * UTF-8 (SMTPUTF8). */
bool smtp_addr_ok(const char *addr, size_t len);

/* Strict base64 (RFC 4648, padding required, no whitespace). Decodes into
 * out (room for len/4*3 bytes). Returns the decoded length or -1. */
long smtp_b64_decode(const char *in, size_t len, unsigned char *out);

/* base64 of in into out (room for 4*((len+2)/3)+1), NUL terminated. */
size_t smtp_b64_encode(const unsigned char *in, size_t len, char *out);

/* ---- DATA ------------------------------------------------------------ */

typedef enum {
    SMTP_DATA_MORE = 0, /* all input consumed, the end not seen yet */
    SMTP_DATA_END,      /* <CRLF>.<CRLF> seen; *consumed stops right after it */
    SMTP_DATA_SMUGGLE,  /* a "." line touching a bare LF or CR: refuse, close */
    SMTP_DATA_NOMEM,
} smtp_data_res_t;

/* The DATA state machine. Line ends are CRLF; a bare LF inside the message
 * is taken as a line end and stored as CRLF, but the end of data must be
 * exactly <CRLF>.<CRLF> (a "." line next to a bare LF or CR is the SMTP
 * smuggling pattern and ends the session). A leading dot is removed from
 * every line (RFC 5321 4.5.2). Bytes beyond `max` are counted, not kept. */
typedef struct smtp_data {
    int state;
    bool prev_crlf;     /* the previous line ended with CRLF */
    bool too_big;       /* more than max bytes: the buffer was dropped */
    bool has_nul;       /* a NUL byte was seen */
    uint64_t size;      /* bytes of the unstuffed message so far */
    uint64_t max;
    unsigned char *buf; /* the unstuffed message while not too_big */
    size_t len, cap;
} smtp_data_t;

void smtp_data_init(smtp_data_t *d, uint64_t max);
smtp_data_res_t smtp_data_feed(smtp_data_t *d, const char *in, size_t n, size_t *consumed);
void smtp_data_free(smtp_data_t *d);

#endif /* SP_PLUGINS_INGRESS_SMTP_SMTP_PROTO_H */
