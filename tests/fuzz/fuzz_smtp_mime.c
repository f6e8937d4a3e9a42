/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the SMTP ingress's MIME-to-record path (smtp_mime_parse
 * through GMime): any bytes must give either an error with a one-line
 * reason or fields that are NUL-terminated, valid UTF-8 where the record
 * wants text, with parallel attachment lists, and nothing leaked. */
/* The checks below are the point of the target: keep them in every build. */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "../../plugins/ingress_smtp/smtp_mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s)
{
    if (s != NULL) {
        /* Touch every byte up to the NUL: ASan reports a missing one. */
        assert(strlen(s) < (size_t)1 << 31);
    }
}

static void check_strs(const smtp_strs_t *l)
{
    assert(l->n == 0 || l->v != NULL);
    for (size_t i = 0; i < l->n; i++) {
        assert(l->v[i] != NULL);
        check_str(l->v[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    smtp_parsed_t pm;
    char err[256];
    int rc;

    if (!inited) {
        smtp_mime_init();
        inited = 1;
    }
    memset(err, 0, sizeof(err));
    rc = smtp_mime_parse(data, size, &pm, err, sizeof(err));
    if (rc < 0) {
        assert(rc == -1 || rc == -2);
        assert(err[0] != '\0' && strchr(err, '\n') == NULL && strchr(err, '\r') == NULL);
        return 0;
    }
    assert(rc == 0);
    assert(pm.from_addr == NULL || pm.from != NULL);
    check_str(pm.from);
    check_str(pm.from_addr);
    check_str(pm.subject);
    check_str(pm.text);
    check_str(pm.html);
    check_strs(&pm.to);
    check_strs(&pm.cc);
    check_strs(&pm.reply_to);
    check_strs(&pm.to_addrs);
    check_strs(&pm.cc_addrs);
    check_strs(&pm.headers);
    for (size_t i = 0; i < pm.headers.n; i++) {
        /* "Name: value", and never a header the record keeps elsewhere. */
        assert(strchr(pm.headers.v[i], ':') != NULL);
        assert(strncasecmp(pm.headers.v[i], "bcc:", 4) != 0);
    }
    assert(pm.natt == 0 || pm.att != NULL);
    for (size_t i = 0; i < pm.natt; i++) {
        assert(pm.att[i].name != NULL && pm.att[i].name[0] != '\0');
        assert(pm.att[i].len == 0 || pm.att[i].data != NULL);
        if (pm.att[i].len > 0) {
            assert(pm.att[i].len <= size * 4 + 64); /* decoding never explodes */
            (void)((volatile const unsigned char *)pm.att[i].data)[pm.att[i].len - 1];
        }
    }
    smtp_parsed_free(&pm);
    return 0;
}
