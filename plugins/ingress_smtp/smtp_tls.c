/* SPDX-License-Identifier: Apache-2.0 */
/* The SMTP ingress's TLS context and self-signed certificate (OpenSSL 3). */
#include "smtp_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <sp/sp_errno.h>

static void ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
    }
    snprintf(err, errlen, "%s%s%s", what, buf[0] != '\0' ? ": " : "", buf);
    ERR_clear_error();
}

/* A P-256 key and a ten-year certificate for hostname, written to path
 * (key first, mode 0600, through a temporary file renamed into place). */
static int make_selfsigned(const char *path, const char *hostname, char *err, size_t errlen)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *nm;
    X509_EXTENSION *ext = NULL;
    char tmp[4096], san[300];
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    FILE *f = NULL;
    int fd = -1, rc = SP_ECONFIG;

    if (pk == NULL || x == NULL) {
        ssl_err(err, errlen, "cannot generate a key");
        goto out;
    }
    if (RAND_bytes(serial, sizeof(serial)) != 1) {
        ssl_err(err, errlen, "no random bytes");
        goto out;
    }
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    snprintf(san, sizeof(san), "DNS:%s", hostname);
    if (bn == NULL || X509_set_version(x, 2) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 24 * 3600) == NULL ||
        X509_set_pubkey(x, pk) != 1) {
        ssl_err(err, errlen, "cannot build the certificate");
        goto out;
    }
    nm = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)hostname,
                                   -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, nm) != 1) {
        ssl_err(err, errlen, "cannot name the certificate");
        goto out;
    }
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1 || X509_sign(x, pk, EVP_sha256()) == 0) {
        ssl_err(err, errlen, "cannot sign the certificate");
        goto out;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        goto out;
    }
    if (PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_X509(f, x) != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        ssl_err(err, errlen, "cannot write the certificate");
        fclose(f);
        unlink(tmp);
        goto out;
    }
    fclose(f);
    if (rename(tmp, path) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    X509_EXTENSION_free(ext);
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

int smtp_tls_ctx_new(const char *cert, const char *key, const char *selfsigned_path,
                     const char *hostname, SSL_CTX **out, bool *generated, char *err,
                     size_t errlen)
{
    SSL_CTX *ctx;
    struct stat st;
    bool own = (cert == NULL || cert[0] == '\0') && (key == NULL || key[0] == '\0');

    *out = NULL;
    *generated = false;
    if (own) {
        if (stat(selfsigned_path, &st) != 0) {
            int rc = make_selfsigned(selfsigned_path, hostname, err, errlen);
            if (rc < 0) {
                return rc;
            }
            *generated = true;
        }
        cert = key = selfsigned_path;
    } else if (cert == NULL || cert[0] == '\0' || key == NULL || key[0] == '\0') {
        snprintf(err, errlen, "tls_cert and tls_key must be given together");
        return SP_ECONFIG;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_err(err, errlen, "SSL_CTX_new");
        return SP_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_err(err, errlen, cert);
        SSL_CTX_free(ctx);
        return SP_ECONFIG;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err(err, errlen, key);
        SSL_CTX_free(ctx);
        return SP_ECONFIG;
    }
    *out = ctx;
    return 0;
}

int smtp_tls_start(smtp_tls_t *t, SSL_CTX *ctx)
{
    memset(t, 0, sizeof(*t));
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        memset(t, 0, sizeof(*t));
        ERR_clear_error();
        return SP_ENOMEM;
    }
    /* An empty read BIO means "try again", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both now */
    SSL_set_accept_state(t->ssl);
    return 0;
}

void smtp_tls_free(smtp_tls_t *t)
{
    if (t->ssl != NULL) {
        SSL_free(t->ssl);
    }
    memset(t, 0, sizeof(*t));
}
