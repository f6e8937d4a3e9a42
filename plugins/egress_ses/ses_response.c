/* SPDX-License-Identifier: Apache-2.0 */
/* SES v2 answers to verdicts. The error type comes from the x-amzn-ErrorType
 * header, else the JSON body's __type / code / Code / type; per the AWS
 * restJson protocol anything after ':' and before a '#' is dropped. The
 * mapping (docs/ses.md has the table):
 *   2xx                                   ACCEPT (MessageId -> provider id)
 *   transport error, 5xx, 429, throttling,
 *   SendingPaused, credentials/signature  DEFER (Retry-After honoured)
 *   MessageRejected, MailFromDomainNotVerified,
 *   NotFound (identity)                   REJECT, status REJECTED
 *   BadRequest, AccountSuspended, other 4xx REJECT, status FAILED */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "ses_response.h"

#define RETRY_AFTER_MAX_MS (24LL * 3600 * 1000)

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int ses_header_value(const char *headers, size_t len, const char *name, char *out,
                     size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = headers, *end = headers + len;
    if (headers == NULL || outlen == 0) {
        return -1;
    }
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol != NULL ? eol : end;
        if ((size_t)(le - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = le;
            size_t n;
            while (v < ve && is_ws(*v)) {
                v++;
            }
            while (ve > v && is_ws(ve[-1])) {
                ve--;
            }
            n = (size_t)(ve - v);
            if (n >= outlen) {
                n = outlen - 1;
            }
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
        p = le + 1;
    }
    return -1;
}

/* Copy s into out as one printable line (controls become spaces), cut to fit. */
static void copy_line(char *out, size_t outlen, const char *s, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    out[j] = '\0';
}

/* "aws.ses#MessageRejected:http://..." -> "MessageRejected" */
static void normalize_type(char *t)
{
    char *hash = strrchr(t, '#');
    char *colon;
    if (hash != NULL) {
        memmove(t, hash + 1, strlen(hash + 1) + 1);
    }
    colon = strchr(t, ':');
    if (colon != NULL) {
        *colon = '\0';
    }
}

static const char *json_str(json_t *o, const char *k1, const char *k2, const char *k3,
                            const char *k4)
{
    const char *keys[] = {k1, k2, k3, k4};
    for (size_t i = 0; i < 4; i++) {
        json_t *v = keys[i] != NULL ? json_object_get(o, keys[i]) : NULL;
        if (json_is_string(v) && json_string_length(v) > 0) {
            return json_string_value(v);
        }
    }
    return NULL;
}

static bool type_is(const char *t, const char *const *names)
{
    for (; *names != NULL; names++) {
        if (strcasecmp(t, *names) == 0) {
            return true;
        }
    }
    return false;
}

static int64_t retry_after(const char *headers, size_t len)
{
    char v[64];
    char *end;
    long long s;
    if (ses_header_value(headers, len, "Retry-After", v, sizeof(v)) < 0 || v[0] < '0' ||
        v[0] > '9') {
        return -1; /* absent, or an HTTP-date: the scheduler's backoff applies */
    }
    s = strtoll(v, &end, 10);
    if (*end != '\0' || s < 0) {
        return -1;
    }
    if (s > RETRY_AFTER_MAX_MS / 1000) {
        return RETRY_AFTER_MAX_MS;
    }
    return s * 1000;
}

void ses_classify(int transport, const char *transport_error, long http_status,
                  const char *headers, size_t headers_len, const char *body, size_t body_len,
                  ses_outcome_t *out)
{
    static const char *const throttled[] = {"ThrottlingException", "TooManyRequestsException",
                                            "LimitExceededException", "Throttling",
                                            "SendingPausedException", "ServiceUnavailable",
                                            "InternalFailure", "RequestTimeout", NULL};
    static const char *const credentials[] = {
        "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch",
        "ExpiredTokenException", "AccessDeniedException", "IncompleteSignature",
        "MissingAuthenticationToken", "InvalidClientTokenId", NULL};
    static const char *const rejected[] = {"MessageRejected",
                                           "MailFromDomainNotVerifiedException",
                                           "NotFoundException", NULL};
    json_t *doc = NULL;
    const char *msg = NULL;
    char hdr_type[128];

    memset(out, 0, sizeof(*out));
    out->status = -1;
    out->retry_after_ms = -1;
    out->code = transport == 0 && http_status > 0 && http_status < 1000 ? (int)http_status : 0;
    if (headers == NULL) {
        headers = "";
        headers_len = 0;
    }
    if (body == NULL) {
        body = "";
        body_len = 0;
    }

    if (transport != 0) {
        out->verdict = SP_DEFER;
        snprintf(out->text, sizeof(out->text), "SES unreachable: %s",
                 transport_error != NULL && transport_error[0] != '\0' ? transport_error
                                                                        : "transport error");
        copy_line(out->text, sizeof(out->text), out->text, strlen(out->text));
        return;
    }
    if (body_len > 0) {
        doc = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, NULL);
        if (doc != NULL && !json_is_object(doc)) {
            json_decref(doc);
            doc = NULL;
        }
    }

    if (http_status >= 200 && http_status < 300) {
        const char *id = doc != NULL ? json_str(doc, "MessageId", NULL, NULL, NULL) : NULL;
        out->verdict = SP_ACCEPT;
        if (id != NULL) {
            copy_line(out->message_id, sizeof(out->message_id), id, strlen(id));
            snprintf(out->text, sizeof(out->text), "SES accepted: %s", out->message_id);
        } else {
            /* SES took it: sending again would duplicate the mail. */
            snprintf(out->text, sizeof(out->text), "SES accepted (no MessageId in the answer)");
        }
        json_decref(doc);
        return;
    }

    if (ses_header_value(headers, headers_len, "x-amzn-ErrorType", hdr_type,
                         sizeof(hdr_type)) == 0 && hdr_type[0] != '\0') {
        copy_line(out->error_type, sizeof(out->error_type), hdr_type, strlen(hdr_type));
    } else if (doc != NULL) {
        const char *t = json_str(doc, "__type", "code", "Code", "type");
        if (t != NULL) {
            copy_line(out->error_type, sizeof(out->error_type), t, strlen(t));
        }
    }
    normalize_type(out->error_type);
    if (doc != NULL) {
        msg = json_str(doc, "message", "Message", "detail", NULL);
    }
    out->retry_after_ms = retry_after(headers, headers_len);

    {
        char what[400];
        if (msg != NULL) {
            copy_line(what, sizeof(what), msg, strlen(msg));
        } else {
            copy_line(what, sizeof(what), body, body_len < 200 ? body_len : 200);
        }
        if (out->error_type[0] != '\0') {
            snprintf(out->text, sizeof(out->text), "SES %s: %s", out->error_type, what);
        } else {
            snprintf(out->text, sizeof(out->text), "SES HTTP %ld: %s", http_status, what);
        }
    }
    json_decref(doc);

    if (out->error_type[0] != '\0' && type_is(out->error_type, rejected)) {
        out->verdict = SP_REJECT;
        out->status = SP_ST_REJECTED;
    } else if (http_status == 429 || http_status >= 500 || http_status < 400 ||
               http_status == 408 || http_status == 401 || http_status == 403 ||
               (out->error_type[0] != '\0' && (type_is(out->error_type, throttled) ||
                                              type_is(out->error_type, credentials)))) {
        /* Throttled, paused, down, or our credentials were refused (they
         * can be fixed or refreshed): the message waits, up to max_age. */
        out->verdict = SP_DEFER;
    } else {
        /* BadRequestException, AccountSuspendedException, other 4xx. */
        out->verdict = SP_REJECT;
        out->status = SP_ST_FAILED;
    }
}
