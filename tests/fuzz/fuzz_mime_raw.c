/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the mime plugin's textual header editing of messages that
 * arrived complete (plugins/mime/raw_headers.c). Checks: CRLF line ends
 * only, no Bcc or forged X-Usesend-Email-ID left in the header block,
 * exactly one X-Usesend-Email-ID with our value, a usable Message-ID equal
 * to the one reported, and editing the result again changes nothing. */
/* The checks below are the point of the target: keep them in every build. */
#undef NDEBUG
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../plugins/mime/raw_headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool starts_field(const char *l, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(l, name, k) != 0) {
        return false;
    }
    while (k < n && (l[k] == ' ' || l[k] == '\t')) {
        k++; /* the obsolete "Name :" form */
    }
    return k < n && l[k] == ':';
}

static void check_out(const char *o, size_t n, const char *msgid)
{
    size_t pos = 0;
    int ours = 0, mids = 0;
    bool first = true;
    if (n > 0) {
        assert(n >= 2 && o[n - 2] == '\r' && o[n - 1] == '\n');
    }
    for (size_t i = 0; i < n; i++) {
        if (o[i] == '\r') {
            assert(i + 1 < n && o[i + 1] == '\n');
        } else if (o[i] == '\n') {
            assert(i > 0 && o[i - 1] == '\r');
        }
    }
    /* the header block: up to the first empty line */
    while (pos < n) {
        const char *l = o + pos;
        const char *e = memchr(l, '\r', n - pos);
        size_t ll = (size_t)(e - l);
        if (ll == 0) {
            break;
        }
        if (!(first && (l[0] == ' ' || l[0] == '\t'))) {
            assert(!starts_field(l, ll, "Bcc"));
            assert(!starts_field(l, ll, "X-Unsend-Email-ID"));
        }
        if (starts_field(l, ll, "X-Usesend-Email-ID")) {
            ours++;
            assert(ll == strlen("X-Usesend-Email-ID: fuzzid"));
            assert(
                   memcmp(l, "X-Usesend-Email-ID: fuzzid", ll) == 0);
        }
        if (starts_field(l, ll, "Message-ID")) {
            mids++;
        }
        first = false;
        pos += ll + 2;
    }
    assert(ours == 1);
    assert(mids >= 1);
    assert(msgid != NULL && msgid[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const mime_raw_add_t add = {.message_id = "fuzzid@example.test",
                                .date = "Thu, 01 Jan 2026 00:00:00 +0000",
                                .email_id = "fuzzid"};
    char *out = NULL, *id = NULL, *out2 = NULL, *id2 = NULL, *id3;
    size_t n = 0, n2 = 0;

    if (mime_raw_edit((const char *)data, size, &add, &out, &n, &id) < 0) {
        return 0; /* out of memory only */
    }
    check_out(out, n, id);
    id3 = mime_raw_message_id(out, n);
    assert(id3 != NULL && strcmp(id3, id) == 0);
    /* idempotent: the edited message needs no further edit */
    assert(mime_raw_edit(out, n, &add, &out2, &n2, &id2) == 0);
    assert(n2 == n && memcmp(out, out2, n) == 0);
    assert(strcmp(id, id2) == 0);
    free(out);
    free(out2);
    free(id);
    free(id2);
    free(id3);
    return 0;
}
