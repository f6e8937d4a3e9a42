/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes as the body of POST /api/v1/emails (or
 * /batch when it is an array) through the api_usesend validator; whatever is
 * accepted must satisfy the payload rules, whatever is refused must carry
 * the one error shape. The same bytes also go through the ISO 8601 parser
 * (round trip) and the strict base64 decoder. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_send_payload: %s\n", what);
        abort();
    }
}

static bool one_line(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}

static void check_email(const api_email_t *e, const api_limits_t *lim)
{
    uint64_t total = 0;
    check(e->from != NULL && e->from[0] != '\0' && one_line(e->from), "bad from accepted");
    check(e->to.n >= 1, "no recipient accepted");
    for (size_t i = 0; i < e->to.n; i++) {
        check(e->to.v[i][0] != '\0' && one_line(e->to.v[i]), "bad to accepted");
    }
    for (size_t i = 0; i < e->cc.n; i++) {
        check(one_line(e->cc.v[i]), "bad cc accepted");
    }
    for (size_t i = 0; i < e->bcc.n; i++) {
        check(one_line(e->bcc.v[i]), "bad bcc accepted");
    }
    for (size_t i = 0; i < e->reply_to.n; i++) {
        check(one_line(e->reply_to.v[i]), "bad replyTo accepted");
    }
    check(one_line(e->subject), "subject with CR/LF accepted");
    check(e->subject != NULL || e->template_id != NULL, "neither subject nor template");
    check(e->text != NULL || e->html != NULL || e->template_id != NULL, "no content");
    for (size_t i = 0; i < e->headers.n; i++) {
        const char *colon = strstr(e->headers.v[i], ": ");
        check(colon != NULL && colon != e->headers.v[i] && one_line(e->headers.v[i]),
              "bad header line accepted");
    }
    check(e->nattachments <= API_MAX_ATTACHMENTS, "too many attachments");
    for (size_t i = 0; i < e->nattachments; i++) {
        check(e->attachments[i].filename != NULL && one_line(e->attachments[i].filename),
              "bad attachment name");
        check(e->attachments[i].len <= lim->max_attachment_size, "attachment over limit");
        total += e->attachments[i].len;
    }
    check(total <= lim->max_attachments_total, "attachments over the total limit");
}

static void check_err(api_err_t *err)
{
    json_t *b;
    check(err->status == 400 && err->code != NULL && strcmp(err->code, "BAD_REQUEST") == 0,
          "refusal is not a 400 BAD_REQUEST");
    check(err->message[0] != '\0', "refusal without a message");
    b = api_err_body(err);
    check(b != NULL && json_is_object(json_object_get(b, "error")), "error body shape");
    json_decref(b);
    api_err_clear(err);
}

static void payload(const uint8_t *data, size_t size)
{
    const api_limits_t lim = {.max_attachment_size = 4096, .max_attachments_total = 8192};
    api_err_t err = {0};
    json_t *v;
    char h1[65], h2[65];

    if (api_json_parse(data, size, &v, &err) < 0) {
        check_err(&err);
        return;
    }
    check(api_fingerprint(v, h1) == 0 && api_fingerprint(v, h2) == 0 && strcmp(h1, h2) == 0,
          "fingerprint is not deterministic");
    if (json_is_array(v)) {
        api_email_t *emails;
        size_t n;
        if (api_email_batch_parse(v, &lim, &emails, &n, &err) == 0) {
            check(n >= 1 && n <= API_MAX_BATCH, "batch size out of range");
            for (size_t i = 0; i < n; i++) {
                check_email(&emails[i], &lim);
            }
            api_email_batch_free(emails, n);
        } else {
            check(emails == NULL && n == 0, "failed batch left output");
            check_err(&err);
        }
    } else {
        api_email_t e;
        if (api_email_parse(v, -1, &lim, &e, &err) == 0) {
            check_email(&e, &lim);
            api_email_free(&e);
        } else {
            check(err.issues != NULL, "schema refusal without issues");
            check_err(&err);
        }
    }
    json_decref(v);
}

static void scalars(const uint8_t *data, size_t size)
{
    int64_t ms, ms2;
    char buf[48];
    unsigned char *out;
    size_t n;

    if (api_iso8601_parse((const char *)data, size, &ms) == 0) {
        api_iso8601_format(ms, buf, sizeof(buf));
        check(api_iso8601_parse(buf, strlen(buf), &ms2) == 0 && ms2 == ms,
              "ISO 8601 round trip differs");
    }
    if (api_b64_decode((const char *)data, size, 1 << 20, &out, &n) == 0) {
        check(n <= size, "base64 output longer than input");
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    payload(data, size);
    scalars(data, size);
    return 0;
}
