/* SPDX-License-Identifier: Apache-2.0 */
/* unit.sigv4: every case of AWS's SigV4 test suite and of the botocore-signed
 * SES requests (shared/vectors/sigv4-test-suite, sigv4-ses-botocore) must give
 * the expected canonical request, string to sign and Authorization value.
 * Usage: test_sigv4 VECTORS_DIR */

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "sigv4.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static const char *g_service;
static int g_cases, g_failed;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL) {
        *len = (size_t)n;
    }
    return buf;
}

static bool check(const char *name, const char *what, const char *want, const char *got)
{
    if (got != NULL && strcmp(want, got) == 0) {
        return true;
    }
    fprintf(stderr, "FAIL %s: %s\n--- expected\n%s\n--- got\n%s\n---\n", name, what, want,
            got != NULL ? got : "(null)");
    return false;
}

/* One case: <dir>/<name>.req with .creq, .sts and .authz next to it. */
static void run_case(const char *req_path)
{
    char base[4096], path[4200];
    size_t reqlen;
    char *req, *creq_want, *sts_want, *authz_want;
    char *line, *p, *end;
    sigv4_header_t hdrs[32];
    static char names[32][128], vals[32][2048];
    size_t nh = 0;
    char *method, *target, *query = NULL, *amz_date = NULL;
    const char *body = "";
    size_t body_len = 0;
    const char *name;

    snprintf(base, sizeof(base), "%.*s", (int)(strlen(req_path) - 4), req_path);
    name = strrchr(base, '/') != NULL ? strrchr(base, '/') + 1 : base;
    req = slurp(req_path, &reqlen);
    snprintf(path, sizeof(path), "%s.creq", base);
    creq_want = slurp(path, NULL);
    snprintf(path, sizeof(path), "%s.sts", base);
    sts_want = slurp(path, NULL);
    snprintf(path, sizeof(path), "%s.authz", base);
    authz_want = slurp(path, NULL);
    g_cases++;
    if (req == NULL || creq_want == NULL || sts_want == NULL || authz_want == NULL) {
        fprintf(stderr, "FAIL %s: missing .req/.creq/.sts/.authz\n", name);
        g_failed++;
        goto out;
    }
    /* Request line: METHOD SP target [SP HTTP/1.1]; the target may hold a
     * raw space or UTF-8 (get-space, get-utf8). */
    end = req + reqlen;
    line = req;
    p = strchr(line, '\n');
    if (p == NULL) {
        p = end;
    }
    *p = '\0';
    method = line;
    target = strchr(line, ' ');
    if (target == NULL) {
        fprintf(stderr, "FAIL %s: bad request line\n", name);
        g_failed++;
        goto out;
    }
    *target++ = '\0';
    {
        size_t tl = strlen(target);
        if (tl > 9 && strcmp(target + tl - 9, " HTTP/1.1") == 0) {
            target[tl - 9] = '\0';
        }
    }
    query = strchr(target, '?');
    if (query != NULL) {
        *query++ = '\0';
    }
    /* Headers "Name:value", continuation lines start with whitespace; then
     * an empty line and the body. Folded values keep their line breaks:
     * the signer collapses them. */
    p = p < end ? p + 1 : end;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl != NULL ? nl : end;
        size_t l = (size_t)(eol - p);
        if (l == 0) {
            body = p + 1;
            body_len = (size_t)(end - body);
            break;
        }
        if ((*p == ' ' || *p == '\t') && nh > 0) {
            size_t vl = strlen(vals[nh - 1]);
            snprintf(vals[nh - 1] + vl, sizeof(vals[0]) - vl, "\n%.*s", (int)l, p);
        } else {
            char *colon = memchr(p, ':', l);
            if (colon == NULL || nh == sizeof(hdrs) / sizeof(hdrs[0])) {
                fprintf(stderr, "FAIL %s: bad header line %.*s\n", name, (int)l, p);
                g_failed++;
                goto out;
            }
            snprintf(names[nh], sizeof(names[0]), "%.*s", (int)(colon - p), p);
            snprintf(vals[nh], sizeof(vals[0]), "%.*s", (int)(eol - colon - 1), colon + 1);
            nh++;
        }
        p = eol + 1;
    }
    if (strcmp(name, "get-vanilla-with-session-token") == 0 && nh < 32) {
        /* The signer holds temporary credentials: it adds the token header
         * (value in the .sreq) before signing, as the plugin does. */
        char *sreq, *t;
        snprintf(path, sizeof(path), "%s.sreq", base);
        sreq = slurp(path, NULL);
        t = sreq != NULL ? strstr(sreq, "X-Amz-Security-Token:") : NULL;
        if (t != NULL) {
            t += strlen("X-Amz-Security-Token:");
            snprintf(names[nh], sizeof(names[0]), "X-Amz-Security-Token");
            snprintf(vals[nh], sizeof(vals[0]), "%.*s", (int)strcspn(t, "\n"), t);
            nh++;
        }
        free(sreq);
    }
    for (size_t i = 0; i < nh; i++) {
        hdrs[i].name = names[i];
        hdrs[i].value = vals[i];
        if (strcasecmp(names[i], "X-Amz-Date") == 0) {
            amz_date = vals[i];
        }
    }
    if (amz_date == NULL) {
        fprintf(stderr, "FAIL %s: no X-Amz-Date\n", name);
        g_failed++;
        goto out;
    }
    {
        sigv4_request_t r = {.method = method, .path = target, .query = query,
                             .headers = hdrs, .nheaders = nh, .body = body,
                             .body_len = body_len};
        sigv4_key_t k = {.access_key = "AKIDEXAMPLE", .secret_key = SECRET,
                         .region = "us-east-1", .service = g_service};
        char *creq = NULL, *sts = NULL, *authz = NULL;
        bool ok = sigv4_canonical_request(&r, &creq, NULL) == 0 &&
                  check(name, "canonical request", creq_want, creq);
        ok = ok && sigv4_string_to_sign(amz_date, "us-east-1", g_service, creq, &sts) == 0 &&
             check(name, "string to sign", sts_want, sts);
        ok = ok && sigv4_authorization(&k, amz_date, &r, &authz) == 0 &&
             check(name, "authorization", authz_want, authz);
        if (!ok) {
            g_failed++;
        } else {
            printf("ok %s\n", name);
        }
        free(creq);
        free(sts);
        free(authz);
    }
out:
    free(req);
    free(creq_want);
    free(sts_want);
    free(authz_want);
}

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    size_t n = strlen(path);
    (void)st;
    (void)ftw;
    if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".req") == 0) {
        run_case(path);
    }
    return 0;
}

static int run_dir(const char *vectors, const char *sub, const char *service, int min_cases)
{
    char dir[4096];
    int before = g_cases;
    struct stat st;
    snprintf(dir, sizeof(dir), "%s/%s", vectors, sub);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "FAIL: vectors directory %s is missing (the shared/vectors checkout "
                        "must sit next to the repository)\n", dir);
        return -1;
    }
    g_service = service;
    if (nftw(dir, visit, 16, FTW_PHYS) != 0) {
        fprintf(stderr, "FAIL: walking %s\n", dir);
        return -1;
    }
    if (g_cases - before < min_cases) {
        fprintf(stderr, "FAIL: only %d cases in %s, expected at least %d\n",
                g_cases - before, dir, min_cases);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    /* A known answer first: the signing key example of the AWS docs. */
    {
        unsigned char key[32];
        char hex[65];
        static const char *want =
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9";
        sigv4_signing_key(SECRET, "20150830", "us-east-1", "iam", key);
        for (int i = 0; i < 32; i++) {
            snprintf(hex + 2 * i, 3, "%02x", key[i]);
        }
        if (strcmp(hex, want) != 0) {
            fprintf(stderr, "FAIL signing key: %s\n", hex);
            g_failed++;
        }
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
        return 2;
    }
    if (run_dir(argv[1], "sigv4-test-suite", "service", 31) < 0 ||
        run_dir(argv[1], "sigv4-ses-botocore", "ses", 4) < 0) {
        rc = 1;
    }
    printf("%d cases, %d failed\n", g_cases, g_failed);
    return rc != 0 || g_failed != 0 ? 1 : 0;
}
