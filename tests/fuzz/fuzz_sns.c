/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes as an SNS POST body through the
 * feedback_sns parser, the string-to-sign builder, the certificate and
 * subscribe URL checks and the signature check (against a throw-away RSA
 * key: nothing may verify); the Message field, and the bytes themselves, as
 * an SES event through the event mapping. */
#undef NDEBUG
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ses_event.h"
#include "sns_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *fuzz_cert(void)
{
    static X509 *cert;
    EVP_PKEY *key;
    if (cert != NULL) {
        return cert;
    }
    key = EVP_RSA_gen(1024);
    assert(key != NULL);
    cert = X509_new();
    assert(cert != NULL);
    assert(X509_set_pubkey(cert, key) == 1);
    EVP_PKEY_free(key);
    return cert;
}

static void check_event(const char *json, size_t len)
{
    ses_event_t ev;
    char err[200];
    int rc = ses_event_parse(json, len, &ev, err, sizeof(err));
    assert(rc >= -1 && rc <= 1);
    if (rc >= 0) {
        assert(ev.type != NULL);
    }
    if (rc == 1) {
        assert(ev.status > SP_ST_SCHEDULED && ev.status < SP_ST__COUNT);
        assert(ev.data_json != NULL && ev.data_json[0] == '{');
        assert(strpbrk(ev.header_id, " \t\r\n") == NULL);
    }
    ses_event_free(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sns_msg_t m;
    char err[200];
    char *sts;
    size_t slen;

    check_event((const char *)data, size);
    if (sns_parse(data, size, &m, err, sizeof(err)) != 0) {
        assert(err[0] != '\0');
        return 0;
    }
    assert(sns_string_to_sign(&m, &sts, &slen) == 0);
    /* Ends with "Type\n<type>\n". */
    assert(slen >= m.type_s.n + 6);
    assert(sts[slen - 1] == '\n');
    assert(memcmp(sts + slen - m.type_s.n - 1, m.type_s.p, m.type_s.n) == 0);
    assert(memcmp(sts, "Message\n", 8) == 0);
    free(sts);
    if (sns_cert_url_ok(m.cert_url.p, m.cert_url.n, err, sizeof(err))) {
        assert(m.cert_url.n > 12 && memcmp(m.cert_url.p, "https://sns.", 12) == 0);
        assert(memchr(m.cert_url.p, '@', m.cert_url.n) == NULL);
        assert(memcmp(m.cert_url.p + m.cert_url.n - 4, ".pem", 4) == 0);
    }
    if (m.subscribe_url.present &&
        sns_subscribe_url_ok(m.subscribe_url.p, m.subscribe_url.n, err, sizeof(err))) {
        assert(memcmp(m.subscribe_url.p, "https://sns.", 12) == 0);
    }
    assert(sns_verify_signature(&m, fuzz_cert(), err, sizeof(err)) == -1);
    check_event(m.message.p, m.message.n);
    sns_msg_free(&m);
    return 0;
}
