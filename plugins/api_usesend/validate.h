/* SPDX-License-Identifier: Apache-2.0 */
/* Pure checks of the useSend emails API: JSON payload validation, ISO 8601
 * times, strict base64, the from-domain rule, bearer tokens, key permissions
 * and the idempotency fingerprint. Nothing here touches the host API, so the
 * unit tests and the fuzz target link these sources directly. */
#ifndef SP_API_USESEND_VALIDATE_H
#define SP_API_USESEND_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <sp/sp_plugin.h>

/* Upstream's limits: attachments per email, emails per batch. */
#define API_MAX_ATTACHMENTS 10
#define API_MAX_BATCH 100
/* Idempotency-Key length bounds (§1.4). */
#define API_IDEM_KEY_MAX 256

/* A failed request: HTTP status, error code, the first problem (naming the
 * field) and, for schema failures, every issue as [{path, message}]. Pass a
 * zeroed one to the functions below: the first problem found sets the
 * message, later ones only add issues. */
typedef struct api_err {
    int status;
    const char *code;  /* "BAD_REQUEST", ...: static */
    char message[512];
    json_t *issues;    /* JSON array or NULL; owned */
} api_err_t;

/* Size limits applied while decoding attachments. */
typedef struct api_limits {
    uint64_t max_attachment_size;  /* decoded bytes of one attachment */
    uint64_t max_attachments_total; /* decoded bytes of all attachments of one email */
} api_limits_t;

typedef struct api_strlist {
    char **v;
    size_t n;
} api_strlist_t;

typedef struct api_attachment {
    char *filename;
    unsigned char *data;
    size_t len;
} api_attachment_t;

/* One validated email payload (§1.6). Strings are owned NUL-terminated
 * copies; absent optional fields are NULL. */
typedef struct api_email {
    char *from;
    api_strlist_t to, cc, bcc, reply_to;
    char *subject;
    char *text;
    char *html;
    api_strlist_t headers; /* "Name: value" */
    api_attachment_t *attachments;
    size_t nattachments;
    bool has_scheduled_at;
    int64_t scheduled_at; /* ms since the epoch */
    char *in_reply_to_id;
    char *template_id;
    char *variables_json; /* compact JSON object text */
} api_email_t;

/* Route access classes, checked against a key's permission. */
typedef enum {
    API_ACCESS_SEND = 0,  /* send emails */
    API_ACCESS_READ,      /* read, reschedule and cancel emails */
    API_ACCESS_MANAGE     /* everything else (domains, contacts, ...): FULL keys only */
} api_access_t;

/* HTTP status -> error code of the one error shape ("BAD_REQUEST", ...). */
const char *api_status_code(int status);

/* Set err to status/code/message (printf-style); issues stay untouched. */
void api_err_set(api_err_t *err, int status, const char *fmt, ...) SP_PRINTF(3, 4);
/* Release err->issues and clear err. */
void api_err_clear(api_err_t *err);
/* The error body {"error":{"code","message"[,"issues"]}}: a new reference. */
json_t *api_err_body(const api_err_t *err);

/* Parse a request body. Empty or malformed JSON: 400 "Malformed JSON in
 * request body". 0 and *out (new reference), or SP_EINVAL with err set. */
int api_json_parse(const void *body, size_t len, json_t **out, api_err_t *err);

/* Validate one email payload object. `index` >= 0 marks a batch element:
 * issue paths then start with it and messages name "emails[index]". 0 and
 * *out filled (free with api_email_free), or SP_EINVAL (err: 400 with every
 * issue) or SP_ENOMEM. */
int api_email_parse(const json_t *obj, int index, const api_limits_t *lim, api_email_t *out,
                    api_err_t *err);
void api_email_free(api_email_t *e);

/* Validate a batch body: a JSON array of 1..API_MAX_BATCH payloads. One bad
 * element fails the whole batch. 0 and *out (array of *n, free with
 * api_email_batch_free), or SP_EINVAL / SP_ENOMEM. */
int api_email_batch_parse(const json_t *arr, const api_limits_t *lim, api_email_t **out,
                          size_t *n, api_err_t *err);
void api_email_batch_free(api_email_t *v, size_t n);

/* Strict ISO 8601 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|+HHMM|+HH),
 * seconds required, real calendar dates only. 0 and *ms, or SP_EINVAL. */
int api_iso8601_parse(const char *s, size_t len, int64_t *ms);
/* ms since the epoch -> "2025-01-02T03:04:05.678Z" (buf >= 32 bytes). */
void api_iso8601_format(int64_t ms, char *buf, size_t len);

/* Strict RFC 4648 base64 (standard alphabet, padding required, no
 * whitespace). Returns the decoded length (>= 0) into *out (malloc'd, may be
 * NULL for empty input) or SP_EINVAL; SP_ETOOBIG if it would exceed max. */
int api_b64_decode(const char *s, size_t len, uint64_t max, unsigned char **out, size_t *outlen);

/* The domain of a From value: inside <...> if present, else after the last
 * '@'; lower-cased into dom. 0 or SP_EINVAL ("From email is invalid"). */
int api_from_domain(const char *from, char *dom, size_t domlen);

/* The token of an Authorization header: its second space-separated word.
 * 0 and *tok, *len, or SP_ENOTFOUND (no header or no second word). */
int api_bearer_token(const char *header, const char **tok, size_t *len);

/* May a key with `perm` use a route of class `need`? */
bool api_perm_allows(sp_permission_t perm, api_access_t need);

/* SHA-256 hex of the canonical JSON of v (keys sorted, compact). hex must
 * hold 65 bytes. 0 or SP_ENOMEM. */
int api_fingerprint(const json_t *v, char hex[65]);

/* Idempotency-Key length check (1..API_IDEM_KEY_MAX). */
bool api_idem_key_ok(const char *key);

/* Parse a decimal integer query value in [lo, hi]. 0 or SP_EINVAL. */
int api_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);

#endif
