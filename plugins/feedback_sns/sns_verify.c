/* SPDX-License-Identifier: Apache-2.0 */
/* SNS message verification as AWS documents it ("Verifying the signatures of
 * Amazon SNS messages"): the string to sign is "key\nvalue\n" for each signed
 * key of the message type, in byte order, values JSON-decoded, ending with a
 * newline after the Type value (the newline upstream's first validator
 * missed). OpenSSL 3 does the RSA and X.509 work. */
#include "sns_verify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#define SNS_CERT_NAME "sns.amazonaws.com"

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
}

/* Read a string field; absent or null leaves it !present. -1 if it has
 * another type. */
static int get_str(json_t *root, const char *key, sns_str_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    memset(out, 0, sizeof(*out));
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        seterr(err, errlen, "field %s must be a string", key);
        return -1;
    }
    out->p = json_string_value(v);
    out->n = json_string_length(v);
    out->present = true;
    return 0;
}

static int need(const sns_str_t *s, const char *key, char *err, size_t errlen)
{
    if (!s->present) {
        seterr(err, errlen, "field %s is missing", key);
        return -1;
    }
    return 0;
}

int sns_parse(const void *body, size_t len, sns_msg_t *m, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root;

    memset(m, 0, sizeof(*m));
    root = json_loadb(body, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "body is not JSON: %s at line %d column %d", je.text,
                     je.line, je.column);
        }
        return -1;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        seterr(err, errlen, "body must be a JSON object");
        return -1;
    }
    m->root = root;
    if (get_str(root, "Type", &m->type_s, err, errlen) < 0 ||
        need(&m->type_s, "Type", err, errlen) < 0) {
        goto fail;
    }
    if (strcmp(m->type_s.p, "Notification") == 0) {
        m->type = SNS_NOTIFICATION;
    } else if (strcmp(m->type_s.p, "SubscriptionConfirmation") == 0) {
        m->type = SNS_SUBSCRIPTION_CONFIRMATION;
    } else if (strcmp(m->type_s.p, "UnsubscribeConfirmation") == 0) {
        m->type = SNS_UNSUBSCRIBE_CONFIRMATION;
    } else {
        seterr(err, errlen, "unknown Type \"%.64s\"", m->type_s.p);
        goto fail;
    }
    if (get_str(root, "Message", &m->message, err, errlen) < 0 ||
        get_str(root, "MessageId", &m->message_id, err, errlen) < 0 ||
        get_str(root, "Subject", &m->subject, err, errlen) < 0 ||
        get_str(root, "Timestamp", &m->timestamp, err, errlen) < 0 ||
        get_str(root, "Token", &m->token, err, errlen) < 0 ||
        get_str(root, "TopicArn", &m->topic_arn, err, errlen) < 0 ||
        get_str(root, "Signature", &m->signature, err, errlen) < 0 ||
        get_str(root, "SignatureVersion", &m->sig_version, err, errlen) < 0 ||
        get_str(root, "SigningCertURL", &m->cert_url, err, errlen) < 0 ||
        get_str(root, "UnsubscribeURL", &m->unsubscribe_url, err, errlen) < 0 ||
        get_str(root, "SubscribeURL", &m->subscribe_url, err, errlen) < 0) {
        goto fail;
    }
    /* Lambda's spelling of the URL fields; they are never signed. */
    if (!m->cert_url.present && get_str(root, "SigningCertUrl", &m->cert_url, err, errlen) < 0) {
        goto fail;
    }
    if (!m->unsubscribe_url.present &&
        get_str(root, "UnsubscribeUrl", &m->unsubscribe_url, err, errlen) < 0) {
        goto fail;
    }
    if (!m->subscribe_url.present &&
        get_str(root, "SubscribeUrl", &m->subscribe_url, err, errlen) < 0) {
        goto fail;
    }
    if (need(&m->message, "Message", err, errlen) < 0 ||
        need(&m->message_id, "MessageId", err, errlen) < 0 ||
        need(&m->timestamp, "Timestamp", err, errlen) < 0 ||
        need(&m->topic_arn, "TopicArn", err, errlen) < 0 ||
        need(&m->signature, "Signature", err, errlen) < 0 ||
        need(&m->sig_version, "SignatureVersion", err, errlen) < 0 ||
        need(&m->cert_url, "SigningCertURL", err, errlen) < 0) {
        goto fail;
    }
    if (m->type != SNS_NOTIFICATION && (need(&m->token, "Token", err, errlen) < 0 ||
                                        need(&m->subscribe_url, "SubscribeURL", err, errlen) < 0)) {
        goto fail;
    }
    if (m->message_id.n == 0 || m->message_id.n > 128 ||
        memchr(m->message_id.p, '\0', m->message_id.n) != NULL) {
        seterr(err, errlen, "field MessageId must be 1 to 128 characters");
        goto fail;
    }
    return 0;
fail:
    sns_msg_free(m);
    return -1;
}

void sns_msg_free(sns_msg_t *m)
{
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_pair(sbuf_t *b, const char *key, const sns_str_t *v)
{
    sb_put(b, key, strlen(key));
    sb_put(b, "\n", 1);
    sb_put(b, v->p != NULL ? v->p : "", v->n);
    sb_put(b, "\n", 1);
}

int sns_string_to_sign(const sns_msg_t *m, char **out, size_t *len)
{
    sbuf_t b = {0};

    sb_pair(&b, "Message", &m->message);
    sb_pair(&b, "MessageId", &m->message_id);
    if (m->type == SNS_NOTIFICATION) {
        if (m->subject.present) {
            sb_pair(&b, "Subject", &m->subject);
        }
    } else {
        sb_pair(&b, "SubscribeURL", &m->subscribe_url);
    }
    sb_pair(&b, "Timestamp", &m->timestamp);
    if (m->type != SNS_NOTIFICATION) {
        sb_pair(&b, "Token", &m->token);
    }
    sb_pair(&b, "TopicArn", &m->topic_arn);
    sb_pair(&b, "Type", &m->type_s);
    if (b.oom) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.n;
    return 0;
}

static bool lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

bool sns_host_ok(const char *host, size_t n)
{
    static const char pre[] = "sns.", suf[] = ".amazonaws.com";
    const size_t plen = sizeof(pre) - 1, slen = sizeof(suf) - 1;
    const char *r, *end;
    size_t i = 0;

    if (n <= plen + slen || memcmp(host, pre, plen) != 0 ||
        memcmp(host + n - slen, suf, slen) != 0) {
        return false;
    }
    /* region: [a-z]{2}(-gov)?-[a-z]+-[0-9] */
    r = host + plen;
    end = host + n - slen;
    if (end - r < 2 || !lower(r[0]) || !lower(r[1])) {
        return false;
    }
    i = 2;
    if ((size_t)(end - r) > i + 4 && memcmp(r + i, "-gov-", 5) == 0) {
        i += 4;
    }
    if ((size_t)(end - r) <= i || r[i] != '-') {
        return false;
    }
    i++;
    if ((size_t)(end - r) <= i || !lower(r[i])) {
        return false;
    }
    while ((size_t)(end - r) > i && lower(r[i])) {
        i++;
    }
    if ((size_t)(end - r) != i + 2 || r[i] != '-' || !digit(r[i + 1])) {
        return false;
    }
    return true;
}

/* Split "https://host/rest": host must be an SNS host (no userinfo, no port).
 * *rest points at the first character after the host. */
static bool https_sns(const char *what, const char *url, size_t n, const char **rest, char *err,
                      size_t errlen)
{
    static const char scheme[] = "https://";
    const size_t sl = sizeof(scheme) - 1;
    size_t h = sl;

    if (n < sl || memcmp(url, scheme, sl) != 0) {
        seterr(err, errlen, "%s must start with https://", what);
        return false;
    }
    while (h < n && url[h] != '/' && url[h] != '?' && url[h] != '#') {
        if (url[h] == '@' || url[h] == ':' || url[h] == '\\' || url[h] == '%') {
            seterr(err, errlen, "%s host part has userinfo, a port or an escape", what);
            return false;
        }
        h++;
    }
    if (!sns_host_ok(url + sl, h - sl)) {
        seterr(err, errlen, "%s host is not sns.<region>.amazonaws.com", what);
        return false;
    }
    *rest = url + h;
    return true;
}

bool sns_cert_url_ok(const char *url, size_t n, char *err, size_t errlen)
{
    const char *rest, *end = url + n;

    if (memchr(url, '\0', n) != NULL) {
        seterr(err, errlen, "SigningCertURL contains NUL");
        return false;
    }
    if (!https_sns("SigningCertURL", url, n, &rest, err, errlen)) {
        return false;
    }
    if (rest >= end || *rest != '/') {
        seterr(err, errlen, "SigningCertURL has no path");
        return false;
    }
    for (const char *c = rest; c < end; c++) {
        if (!(lower(*c) || digit(*c) || (*c >= 'A' && *c <= 'Z') || *c == '-' || *c == '_' ||
              *c == '.' || *c == '/')) {
            seterr(err, errlen, "SigningCertURL path has a character outside [A-Za-z0-9._/-]");
            return false;
        }
        if (*c == '.' && c + 1 < end && c[1] == '.') {
            seterr(err, errlen, "SigningCertURL path contains \"..\"");
            return false;
        }
    }
    if (end - rest < 5 || memcmp(end - 4, ".pem", 4) != 0) {
        seterr(err, errlen, "SigningCertURL path does not end in .pem");
        return false;
    }
    return true;
}

bool sns_subscribe_url_ok(const char *url, size_t n, char *err, size_t errlen)
{
    const char *rest;

    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f || url[i] == '#') {
            seterr(err, errlen, "SubscribeURL has a space, control, non-ASCII or '#' character");
            return false;
        }
    }
    return https_sns("SubscribeURL", url, n, &rest, err, errlen);
}

static bool b64char(char c)
{
    return lower(c) || digit(c) || (c >= 'A' && c <= 'Z') || c == '+' || c == '/';
}

/* Strict base64 (padded, no whitespace) into a new buffer. */
static unsigned char *b64_decode(const char *s, size_t n, size_t *outlen)
{
    size_t pad = 0;
    unsigned char *out;
    int r;

    if (n == 0 || n % 4 != 0 || n > 8192) {
        return NULL;
    }
    if (s[n - 1] == '=') {
        pad = s[n - 2] == '=' ? 2 : 1;
    }
    for (size_t i = 0; i < n - pad; i++) {
        if (!b64char(s[i])) {
            return NULL;
        }
    }
    out = malloc(n / 4 * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (r < 0 || (size_t)r < pad) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)r - pad;
    return out;
}

int sns_verify_signature(const sns_msg_t *m, X509 *cert, char *err, size_t errlen)
{
    const EVP_MD *md;
    EVP_PKEY *key;
    EVP_MD_CTX *ctx = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0, slen = 0;
    char *sts = NULL;
    int rc = -1;

    if (m->sig_version.n == 1 && m->sig_version.p[0] == '1') {
        md = EVP_sha1();
    } else if (m->sig_version.n == 1 && m->sig_version.p[0] == '2') {
        md = EVP_sha256();
    } else {
        seterr(err, errlen, "unsupported SignatureVersion (1 and 2 are known)");
        return -1;
    }
    sig = b64_decode(m->signature.p, m->signature.n, &siglen);
    if (sig == NULL) {
        seterr(err, errlen, "Signature is not valid base64");
        return -1;
    }
    key = X509_get0_pubkey(cert);
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        seterr(err, errlen, "signing certificate has no RSA key");
        goto out;
    }
    if (sns_string_to_sign(m, &sts, &slen) < 0 || (ctx = EVP_MD_CTX_new()) == NULL) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, key) != 1 ||
        EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)sts, slen) != 1) {
        seterr(err, errlen, "signature does not verify");
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    free(sts);
    free(sig);
    return rc;
}

int sns_pem_load(const void *pem, size_t len, X509 **leaf, STACK_OF(X509) **chain)
{
    BIO *bio;
    X509 *x;

    *leaf = NULL;
    *chain = NULL;
    if (len > INT32_MAX) {
        return -1;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return -1;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (*leaf == NULL) {
            *leaf = x;
            continue;
        }
        if (*chain == NULL) {
            *chain = sk_X509_new_null();
        }
        if (*chain == NULL || sk_X509_push(*chain, x) <= 0) {
            X509_free(x);
            break;
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    return *leaf != NULL ? 0 : -1;
}

X509_STORE *sns_store_new(const char *ca_file, char *err, size_t errlen)
{
    X509_STORE *st = X509_STORE_new();
    if (st == NULL) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    if (ca_file != NULL && ca_file[0] != '\0') {
        if (X509_STORE_load_file(st, ca_file) != 1) {
            seterr(err, errlen, "cannot load trust_ca_file %s", ca_file);
            goto fail;
        }
        X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
    } else if (X509_STORE_set_default_paths(st) != 1) {
        seterr(err, errlen, "cannot load the system trust store");
        goto fail;
    }
    ERR_clear_error();
    return st;
fail:
    ERR_clear_error();
    X509_STORE_free(st);
    return NULL;
}

int sns_cert_check(X509 *cert, STACK_OF(X509) *chain, STACK_OF(X509) *extra,
                   X509_STORE *store, bool check_time, char *err, size_t errlen)
{
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *untrusted = NULL;
    int rc = -1;

    untrusted = chain != NULL ? sk_X509_dup(chain) : sk_X509_new_null();
    if (untrusted == NULL) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; extra != NULL && i < sk_X509_num(extra); i++) {
        if (sk_X509_push(untrusted, sk_X509_value(extra, i)) <= 0) {
            seterr(err, errlen, "out of memory");
            goto out;
        }
    }
    ctx = X509_STORE_CTX_new();
    if (ctx == NULL || X509_STORE_CTX_init(ctx, store, cert, untrusted) != 1) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    if (!check_time) {
        X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME);
    }
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx);
        seterr(err, errlen, "signing certificate does not verify: %s",
               X509_verify_cert_error_string(e));
        if (e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
            e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) {
            rc = -2;
        }
        goto out;
    }
    if (X509_check_host(cert, SNS_CERT_NAME, sizeof(SNS_CERT_NAME) - 1,
                        X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1) {
        seterr(err, errlen, "signing certificate is not issued to %s", SNS_CERT_NAME);
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    return rc;
}

bool sns_aia_url_ok(const char *url, size_t n)
{
    static const char suf[] = ".amazontrust.com";
    const size_t slen = sizeof(suf) - 1;
    size_t h, start;

    if (n > 7 && memcmp(url, "http://", 7) == 0) {
        start = 7;
    } else if (n > 8 && memcmp(url, "https://", 8) == 0) {
        start = 8;
    } else {
        return false;
    }
    for (h = start; h < n && url[h] != '/'; h++) {
        if (!(lower(url[h]) || digit(url[h]) || url[h] == '-' || url[h] == '.')) {
            return false; /* userinfo, port, query, escapes */
        }
    }
    if (h - start <= slen || memcmp(url + h - slen, suf, slen) != 0 || h >= n) {
        return false;
    }
    for (size_t i = h; i < n; i++) {
        char c = url[i];
        if (!(lower(c) || digit(c) || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' ||
              c == '.' || c == '/') ||
            (c == '.' && i + 1 < n && url[i + 1] == '.')) {
            return false;
        }
    }
    return true;
}

bool sns_aia_issuer_url(X509 *cert, char *out, size_t outlen)
{
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(cert, NID_info_access, NULL, NULL);
    bool found = false;

    for (int i = 0; aia != NULL && i < sk_ACCESS_DESCRIPTION_num(aia) && !found; i++) {
        ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        const unsigned char *u;
        int n;
        if (OBJ_obj2nid(ad->method) != NID_ad_ca_issuers || ad->location->type != GEN_URI) {
            continue;
        }
        u = ASN1_STRING_get0_data(ad->location->d.uniformResourceIdentifier);
        n = ASN1_STRING_length(ad->location->d.uniformResourceIdentifier);
        if (n > 0 && (size_t)n < outlen && memchr(u, '\0', (size_t)n) == NULL &&
            sns_aia_url_ok((const char *)u, (size_t)n)) {
            memcpy(out, u, (size_t)n);
            out[n] = '\0';
            found = true;
        }
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    ERR_clear_error();
    return found;
}

X509 *sns_cert_parse_any(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    X509 *x;
    BIO *bio;

    if (len == 0 || len > INT32_MAX) {
        return NULL;
    }
    x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL && (bio = BIO_new_mem_buf(buf, (int)len)) != NULL) {
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    ERR_clear_error();
    return x;
}
