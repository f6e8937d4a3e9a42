/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes through the message and event record
 * decoders; whatever decodes must re-encode to bytes that decode to an equal
 * record, deterministically. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_core/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_msg: %s\n", what);
        abort();
    }
}

static void msg_round_trip(const uint8_t *data, size_t size)
{
    sp_msg_t *m = NULL, *m2 = NULL, *d;
    void *buf = NULL, *buf2 = NULL;
    size_t len, len2, jl;
    char *js;
    int rc = sp__msg_decode(data, size, &m);

    if (rc != 0) {
        check(rc == SP_ECORRUPT && m == NULL, "decode failed with a code other than ECORRUPT");
        return;
    }
    check(sp__msg_encode(m, &buf, &len) == 0, "encode of a decoded record failed");
    check(sp__msg_decode(buf, len, &m2) == 0, "re-encoded record does not decode");
    check(sp__msg_equal(m, m2), "re-decoded record differs");
    check(sp__msg_encode(m2, &buf2, &len2) == 0, "second encode failed");
    check(len == len2 && memcmp(buf, buf2, len) == 0, "encoding is not deterministic");
    d = sp__msg_dup(m);
    check(d != NULL && sp__msg_equal(m, d), "dup differs");
    check(sp__msg_to_json(m, &js, &jl) == 0 && strlen(js) == jl && js[0] == '{',
          "to_json failed");
    free(js);
    sp__msg_free(d);
    free(buf2);
    free(buf);
    sp__msg_free(m2);
    sp__msg_free(m);
}

static void event_round_trip(const uint8_t *data, size_t size)
{
    int st, st2;
    int64_t t, t2;
    char *d = NULL, *d2 = NULL;
    void *buf;
    size_t len;
    int rc = sp__event_decode(data, size, &st, &t, &d);

    if (rc != 0) {
        check(rc == SP_ECORRUPT, "event decode failed with a code other than ECORRUPT");
        return;
    }
    check(sp__event_encode(st, t, d, &buf, &len) == 0, "event encode failed");
    check(sp__event_decode(buf, len, &st2, &t2, &d2) == 0, "re-encoded event does not decode");
    check(st == st2 && t == t2 && strcmp(d, d2) == 0, "re-decoded event differs");
    free(d2);
    free(buf);
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msg_round_trip(data, size);
    event_round_trip(data, size);
    return 0;
}
