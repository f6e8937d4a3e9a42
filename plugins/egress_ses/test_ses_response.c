/* SPDX-License-Identifier: Apache-2.0 */
/* unit.ses_response: SES v2 answers (shapes from shared/vectors/ses-api)
 * to verdicts, statuses, texts and Retry-After. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "ses_response.h"

static ses_outcome_t classify(long code, const char *headers, const char *body)
{
    ses_outcome_t o;
    ses_classify(0, NULL, code, headers, strlen(headers), body, strlen(body), &o);
    printf("%ld -> verdict %d status %d type '%s' text '%s' retry %lld\n", code, o.verdict,
           o.status, o.error_type, o.text, (long long)o.retry_after_ms);
    return o;
}

int main(void)
{
    ses_outcome_t o;
    char v[64];

    o = classify(200, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
                 "{\n  \"MessageId\": \"EXAMPLEf3f73d99b-c63fb06f-d263-41f8-a0fb-d0dc67d56c07"
                 "-000000\"\n}");
    assert(o.verdict == SP_ACCEPT && o.code == 200);
    assert(strcmp(o.message_id,
                  "EXAMPLEf3f73d99b-c63fb06f-d263-41f8-a0fb-d0dc67d56c07-000000") == 0);

    o = classify(200, "", "not json");
    assert(o.verdict == SP_ACCEPT && o.message_id[0] == '\0');

    /* the ses-api vector: MessageRejected, header type */
    o = classify(400,
                 "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                 "x-amzn-RequestId: e0abcdfa-c866-11e0-b6d0-273d09173b49\r\n"
                 "x-amzn-ErrorType: MessageRejected\r\n\r\n",
                 "{\"message\":\"Email address is not verified. The following identities "
                 "failed the check in region US-EAST-1: sender@example.com\"}");
    assert(o.verdict == SP_REJECT && o.status == SP_ST_REJECTED && o.code == 400);
    assert(strncmp(o.text, "SES MessageRejected: Email address is not verified.", 51) == 0);

    /* type with the restJson suffix and namespace */
    o = classify(400, "X-Amzn-Errortype: MailFromDomainNotVerifiedException:http://internal.amazon.com/x\r\n",
                 "{}");
    assert(o.verdict == SP_REJECT && o.status == SP_ST_REJECTED);
    assert(strcmp(o.error_type, "MailFromDomainNotVerifiedException") == 0);
    o = classify(400, "", "{\"__type\":\"com.amazonaws.sesv2#AccountSuspendedException\","
                          "\"message\":\"suspended\"}");
    assert(o.verdict == SP_REJECT && o.status == SP_ST_FAILED);
    assert(strcmp(o.error_type, "AccountSuspendedException") == 0);
    o = classify(404, "x-amzn-ErrorType: NotFoundException\r\n", "{\"message\":\"no identity\"}");
    assert(o.verdict == SP_REJECT && o.status == SP_ST_REJECTED);
    o = classify(400, "", "{\"code\":\"BadRequestException\",\"message\":\"bad\"}");
    assert(o.verdict == SP_REJECT && o.status == SP_ST_FAILED);

    /* temporary */
    o = classify(429, "x-amzn-ErrorType: TooManyRequestsException\r\nRetry-After: 3\r\n",
                 "{\"message\":\"Maximum sending rate exceeded.\"}");
    assert(o.verdict == SP_DEFER && o.retry_after_ms == 3000);
    o = classify(400, "x-amzn-ErrorType: ThrottlingException\r\n", "{\"message\":\"Rate exceeded\"}");
    assert(o.verdict == SP_DEFER && o.retry_after_ms == -1);
    o = classify(400, "x-amzn-ErrorType: LimitExceededException\r\n", "{}");
    assert(o.verdict == SP_DEFER);
    o = classify(400, "x-amzn-ErrorType: SendingPausedException\r\n", "{}");
    assert(o.verdict == SP_DEFER);
    o = classify(500, "", "{\"message\":\"InternalFailure\"}");
    assert(o.verdict == SP_DEFER && o.code == 500);
    o = classify(503, "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", "");
    assert(o.verdict == SP_DEFER && o.retry_after_ms == -1);
    o = classify(403, "x-amzn-ErrorType: UnrecognizedClientException\r\n",
                 "{\"message\":\"The security token included in the request is invalid.\"}");
    assert(o.verdict == SP_DEFER);
    o = classify(429, "Retry-After: 99999999999\r\n", "");
    assert(o.verdict == SP_DEFER && o.retry_after_ms == 24LL * 3600 * 1000);
    /* other 4xx without a type: permanent */
    o = classify(413, "", "too big");
    assert(o.verdict == SP_REJECT && o.status == SP_ST_FAILED);
    assert(strcmp(o.text, "SES HTTP 413: too big") == 0);

    /* transport */
    ses_classify(SP_ETIMEDOUT, "Operation timed out after 30000 ms\nx", 0, NULL, 0, NULL, 0, &o);
    assert(o.verdict == SP_DEFER && o.code == 0 && strchr(o.text, '\n') == NULL);

    assert(ses_header_value("A: 1\r\nRetry-After:  7 \r\n", 24, "retry-after", v, sizeof(v)) == 0);
    assert(strcmp(v, "7") == 0);
    assert(ses_header_value("A: 1\r\n", 6, "B", v, sizeof(v)) == -1);
    printf("ok\n");
    return 0;
}
