/* SPDX-License-Identifier: Apache-2.0 */
/* What an SES v2 SendEmail answer means for the message: a pure function of
 * the transport outcome, the HTTP status, the response headers and body (no
 * host API, no clock), so it can be unit-tested and fuzzed. */
#ifndef SES_RESPONSE_H
#define SES_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

typedef struct ses_outcome {
    sp_verdict_t verdict;   /* SP_ACCEPT, SP_DEFER or SP_REJECT */
    int status;             /* sp_status_t for SP_REJECT, else -1 */
    int code;               /* reply code: the HTTP status, 0 for transport errors */
    int64_t retry_after_ms; /* from Retry-After (seconds), -1 if none */
    char message_id[256];   /* MessageId of a 2xx, "" if none */
    char error_type[128];   /* e.g. "MessageRejected", "" if none */
    char text[640];         /* one line for logs and events, never a credential */
} ses_outcome_t;

/* transport: 0 when an HTTP answer arrived, else an SP_E* code with
 * transport_error describing it. headers: the raw header block. */
void ses_classify(int transport, const char *transport_error, long http_status,
                  const char *headers, size_t headers_len, const char *body, size_t body_len,
                  ses_outcome_t *out);

/* The value of header `name` (case-insensitive) in a raw header block, into
 * out (trimmed). 0, or -1 if absent. */
int ses_header_value(const char *headers, size_t len, const char *name, char *out,
                     size_t outlen);

#endif
