/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of message records: fields, msgpack codec, events, JSON,
 * statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "sp_core/msg.h"

/* ------------------------------------------------------------------------ */
/* A strict JSON syntax checker (RFC 8259), enough to prove the output parses. */

typedef struct {
    const char *p, *end;
} js_t;

static bool js_value(js_t *j, int depth);

static void js_ws(js_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) {
        j->p++;
    }
}

static bool js_lit(js_t *j, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, s, n) != 0) {
        return false;
    }
    j->p += n;
    return true;
}

static bool js_hex4(js_t *j)
{
    for (int i = 0; i < 4; i++) {
        char c = j->p < j->end ? *j->p++ : 0;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

static bool js_string(js_t *j)
{
    if (j->p >= j->end || *j->p++ != '"') {
        return false;
    }
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"') {
            return true;
        }
        if (c < 0x20) {
            return false;
        }
        if (c == '\\') {
            char e = j->p < j->end ? *j->p++ : 0;
            if (e == 'u') {
                if (!js_hex4(j)) {
                    return false;
                }
            } else if (!strchr("\"\\/bfnrt", e) || e == 0) {
                return false;
            }
        } else if (c >= 0x80) {
            /* Continuation bytes must follow a lead byte. */
            int more = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : -1;
            if (more < 0 || c > 0xf4) {
                return false;
            }
            for (int i = 0; i < more; i++) {
                if (j->p >= j->end || ((unsigned char)*j->p & 0xc0) != 0x80) {
                    return false;
                }
                j->p++;
            }
        }
    }
    return false;
}

static bool js_number(js_t *j)
{
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-') {
        j->p++;
    }
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
        return false;
    }
    if (*j->p == '0') {
        j->p++;
    } else {
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
            return false;
        }
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) {
            j->p++;
        }
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
            return false;
        }
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    }
    return j->p > s;
}

static bool js_value(js_t *j, int depth)
{
    if (depth > 64) {
        return false;
    }
    js_ws(j);
    if (j->p >= j->end) {
        return false;
    }
    switch (*j->p) {
    case '{':
        j->p++;
        js_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return true;
        }
        for (;;) {
            js_ws(j);
            if (!js_string(j)) {
                return false;
            }
            js_ws(j);
            if (j->p >= j->end || *j->p++ != ':' || !js_value(j, depth + 1)) {
                return false;
            }
            js_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            return j->p < j->end && *j->p++ == '}';
        }
    case '[':
        j->p++;
        js_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return true;
        }
        for (;;) {
            if (!js_value(j, depth + 1)) {
                return false;
            }
            js_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            return j->p < j->end && *j->p++ == ']';
        }
    case '"':
        return js_string(j);
    case 't':
        return js_lit(j, "true");
    case 'f':
        return js_lit(j, "false");
    case 'n':
        return js_lit(j, "null");
    default:
        return js_number(j);
    }
}

static bool json_ok(const char *s, size_t len)
{
    js_t j = {.p = s, .end = s + len};
    if (!js_value(&j, 0)) {
        return false;
    }
    js_ws(&j);
    return j.p == j.end;
}

/* ------------------------------------------------------------------------ */

static const char bin[] = {'a', '\0', (char)0xff, (char)0xc3, 'z', (char)0x80, '\n', '"'};

/* A message with every kind of field, including awkward values. */
static sp_msg_t *sample(void)
{
    sp_msg_t *m = sp__msg_new();

    assert_non_null(m);
    assert_int_equal(sp__msg_set(m, "from", "Ann <ann@example.com>", 21), 0);
    assert_int_equal(sp__msg_set(m, "subject", "h\xc3\xa9llo \xe2\x82\xac", 10), 0);
    assert_int_equal(sp__msg_set(m, "empty", "", 0), 0);
    assert_int_equal(sp__msg_set(m, "raw", bin, sizeof(bin)), 0);
    assert_int_equal(sp__msg_add(m, "to", "a@example.com", 13), 0);
    assert_int_equal(sp__msg_add(m, "to", "", 0), 0);
    assert_int_equal(sp__msg_add(m, "to", bin, sizeof(bin)), 0);
    assert_int_equal(sp__msg_add(m, "headers", "X-A: 1", 6), 0);
    assert_int_equal(sp__msg_set_int(m, "team", 7), 0);
    assert_int_equal(sp__msg_set_int(m, "neg", -1), 0);
    assert_int_equal(sp__msg_set_int(m, "min", INT64_MIN), 0);
    assert_int_equal(sp__msg_set_int(m, "max", INT64_MAX), 0);
    assert_int_equal(sp__msg_set_int(m, "zero", 0), 0);
    assert_int_equal(sp__msg_set_int(m, "b128", 128), 0);
    assert_int_equal(sp__msg_set_int(m, "n33", -33), 0);
    return m;
}

static void encode(const sp_msg_t *m, void **buf, size_t *len)
{
    assert_int_equal(sp__msg_encode(m, buf, len), 0);
    assert_non_null(*buf);
    assert_true(*len > 0);
}

static void test_fields(void **state)
{
    sp_msg_t *m = sample();
    const char *s;
    size_t len;
    int64_t v;

    (void)state;
    s = sp__msg_get(m, "raw", &len);
    assert_non_null(s);
    assert_int_equal(len, sizeof(bin));
    assert_memory_equal(s, bin, sizeof(bin));
    assert_int_equal(s[len], '\0');
    s = sp__msg_get(m, "empty", &len);
    assert_non_null(s);
    assert_int_equal(len, 0);
    assert_string_equal(s, "");
    assert_int_equal(sp__msg_count(m, "to"), 3);
    s = sp__msg_get_at(m, "to", 1, &len);
    assert_non_null(s);
    assert_int_equal(len, 0);
    s = sp__msg_get_at(m, "to", 2, &len);
    assert_memory_equal(s, bin, sizeof(bin));
    assert_null(sp__msg_get_at(m, "to", 3, &len));
    assert_int_equal(len, 0);
    assert_null(sp__msg_get_at(m, "from", 0, NULL));
    assert_int_equal(sp__msg_get_int(m, "min", &v), 0);
    assert_true(v == INT64_MIN);
    /* Wrong-type reads. */
    assert_null(sp__msg_get(m, "to", &len));
    assert_null(sp__msg_get(m, "team", NULL));
    assert_int_equal(sp__msg_get_int(m, "from", &v), SP_ENOTFOUND);
    assert_int_equal(sp__msg_get_int(m, "nope", &v), SP_ENOTFOUND);
    assert_int_equal(sp__msg_count(m, "from"), 0);
    assert_int_equal(sp__msg_count(m, "nope"), 0);
    assert_null(sp__msg_get(m, "nope", NULL));
    /* Replacement keeps one field. */
    assert_int_equal(sp__msg_set(m, "from", "b@example.com", 13), 0);
    assert_string_equal(sp__msg_get(m, "from", NULL), "b@example.com");
    /* Delete. */
    assert_int_equal(sp__msg_del(m, "from"), 0);
    assert_null(sp__msg_get(m, "from", NULL));
    assert_int_equal(sp__msg_del(m, "from"), SP_ENOTFOUND);
    assert_int_equal(sp__msg_del(m, "to"), 0);
    assert_int_equal(sp__msg_count(m, "to"), 0);
    sp__msg_free(m);
    sp__msg_free(NULL);
}

static void test_type_conflicts(void **state)
{
    sp_msg_t *m = sp__msg_new();
    int64_t v;

    (void)state;
    assert_int_equal(sp__msg_set(m, "s", "x", 1), 0);
    assert_int_equal(sp__msg_add(m, "s", "y", 1), SP_EINVAL);
    assert_string_equal(sp__msg_get(m, "s", NULL), "x");
    assert_int_equal(sp__msg_set_int(m, "i", 5), 0);
    assert_int_equal(sp__msg_add(m, "i", "y", 1), SP_EINVAL);
    assert_int_equal(sp__msg_get_int(m, "i", &v), 0);
    assert_int_equal(v, 5);
    /* set and set_int replace whatever the field held. */
    assert_int_equal(sp__msg_add(m, "l", "a", 1), 0);
    assert_int_equal(sp__msg_set(m, "l", "b", 1), 0);
    assert_int_equal(sp__msg_count(m, "l"), 0);
    assert_string_equal(sp__msg_get(m, "l", NULL), "b");
    assert_int_equal(sp__msg_set_int(m, "l", 9), 0);
    assert_null(sp__msg_get(m, "l", NULL));
    assert_int_equal(sp__msg_set(m, "i", "now a string", 12), 0);
    assert_int_equal(sp__msg_get_int(m, "i", &v), SP_ENOTFOUND);
    /* NULL value with a length. */
    assert_int_equal(sp__msg_set(m, "n", NULL, 1), SP_EINVAL);
    assert_int_equal(sp__msg_add(m, "n", NULL, 1), SP_EINVAL);
    assert_int_equal(sp__msg_set(m, "n", NULL, 0), 0);
    assert_int_equal(sp__msg_set(NULL, "n", "x", 1), SP_EINVAL);
    sp__msg_free(m);
}

static void test_names_and_limits(void **state)
{
    static const char *const bad[] = {"", "v", "A", "a-b", "a b", "to\n", "\xc3\xa9"};
    char name[80];
    sp_msg_t *m = sp__msg_new();

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sp__msg_set(m, bad[i], "x", 1), SP_EINVAL);
        assert_int_equal(sp__msg_add(m, bad[i], "x", 1), SP_EINVAL);
        assert_int_equal(sp__msg_set_int(m, bad[i], 1), SP_EINVAL);
    }
    assert_int_equal(sp__msg_set(m, NULL, "x", 1), SP_EINVAL);
    memset(name, 'a', 65);
    name[65] = '\0';
    assert_int_equal(sp__msg_set(m, name, "x", 1), SP_EINVAL);
    name[64] = '\0';
    assert_int_equal(sp__msg_set(m, name, "x", 1), 0);
    assert_int_equal(sp__msg_set(m, "ses.message_id_2", "x", 1), 0);
    sp__msg_free(m);

    /* 256 fields fit, the 257th does not; replacing one still works. */
    m = sp__msg_new();
    for (int i = 0; i < SP_MSG_FIELDS_MAX; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        assert_int_equal(sp__msg_set_int(m, name, i), 0);
    }
    assert_int_equal(sp__msg_set_int(m, "one_more", 1), SP_ETOOBIG);
    assert_int_equal(sp__msg_set(m, "one_more", "x", 1), SP_ETOOBIG);
    assert_int_equal(sp__msg_add(m, "one_more", "x", 1), SP_ETOOBIG);
    assert_int_equal(sp__msg_set(m, "f0", "x", 1), 0);
    sp__msg_free(m);

    /* A list holds SP_MSG_LIST_MAX items. */
    m = sp__msg_new();
    for (int i = 0; i < SP_MSG_LIST_MAX; i++) {
        assert_int_equal(sp__msg_add(m, "to", "r", 1), 0);
    }
    assert_int_equal(sp__msg_add(m, "to", "r", 1), SP_ETOOBIG);
    assert_int_equal(sp__msg_count(m, "to"), SP_MSG_LIST_MAX);
    {
        void *buf;
        size_t len;
        sp_msg_t *d;
        encode(m, &buf, &len);
        assert_int_equal(sp__msg_decode(buf, len, &d), 0);
        assert_true(sp__msg_equal(m, d));
        sp__msg_free(d);
        free(buf);
    }
    sp__msg_free(m);
}

static void test_round_trip(void **state)
{
    sp_msg_t *m = sample(), *d, *e;
    void *buf, *buf2;
    size_t len, len2;

    (void)state;
    encode(m, &buf, &len);
    assert_int_equal(sp__msg_decode(buf, len, &d), 0);
    assert_true(sp__msg_equal(m, d));
    /* Byte-exact values survive, binary included. */
    {
        size_t l;
        const char *s = sp__msg_get(d, "raw", &l);
        assert_int_equal(l, sizeof(bin));
        assert_memory_equal(s, bin, l);
        assert_int_equal(s[l], '\0');
        s = sp__msg_get_at(d, "to", 2, &l);
        assert_memory_equal(s, bin, l);
    }
    /* Encoding is deterministic. */
    encode(d, &buf2, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    /* dup is deep and equal; a change makes them differ. */
    e = sp__msg_dup(d);
    assert_true(sp__msg_equal(d, e));
    assert_int_equal(sp__msg_add(e, "to", "x", 1), 0);
    assert_false(sp__msg_equal(d, e));
    assert_int_equal(sp__msg_count(d, "to"), 3);
    sp__msg_free(e);
    /* Field order does not matter for equality. */
    e = sp__msg_dup(d);
    assert_int_equal(sp__msg_del(e, "from"), 0);
    assert_int_equal(sp__msg_set(e, "from", "Ann <ann@example.com>", 21), 0);
    assert_true(sp__msg_equal(d, e));
    sp__msg_free(e);
    sp__msg_free(d);
    free(buf2);
    free(buf);

    /* The empty message. */
    e = sp__msg_new();
    encode(e, &buf, &len);
    assert_int_equal(len, 4); /* {"v":1} */
    assert_int_equal(sp__msg_decode(buf, len, &d), 0);
    assert_true(sp__msg_equal(e, d));
    sp__msg_free(d);
    sp__msg_free(e);
    free(buf);
    sp__msg_free(m);
}

/* What msgpack-c's own unpacker reads from our bytes. */
static void test_msgpack_interop(void **state)
{
    sp_msg_t *m = sample();
    msgpack_unpacked u;
    void *buf;
    size_t len, off = 0;
    bool saw_v = false, saw_bin = false;

    (void)state;
    encode(m, &buf, &len);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        assert_int_equal(kv->key.type, MSGPACK_OBJECT_STR);
        if (kv->key.via.str.size == 1 && kv->key.via.str.ptr[0] == 'v') {
            assert_int_equal(kv->val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
            assert_int_equal(kv->val.via.u64, 1);
            saw_v = true;
        }
        if (kv->key.via.str.size == 3 && memcmp(kv->key.via.str.ptr, "raw", 3) == 0) {
            /* Not UTF-8: written as bin. */
            assert_int_equal(kv->val.type, MSGPACK_OBJECT_BIN);
            saw_bin = true;
        }
        if (kv->key.via.str.size == 7 && memcmp(kv->key.via.str.ptr, "subject", 7) == 0) {
            assert_int_equal(kv->val.type, MSGPACK_OBJECT_STR);
        }
        if (kv->key.via.str.size == 2 && memcmp(kv->key.via.str.ptr, "to", 2) == 0) {
            assert_int_equal(kv->val.type, MSGPACK_OBJECT_ARRAY);
            assert_int_equal(kv->val.via.array.size, 3);
        }
    }
    assert_true(saw_v && saw_bin);
    msgpack_unpacked_destroy(&u);
    free(buf);
    sp__msg_free(m);
}

static void expect_corrupt(const void *buf, size_t len)
{
    sp_msg_t *d = (sp_msg_t *)1;
    assert_int_equal(sp__msg_decode(buf, len, &d), SP_ECORRUPT);
    assert_null(d);
}

static void test_decode_truncated_and_trailing(void **state)
{
    sp_msg_t *m = sample();
    uint8_t *buf, *big;
    size_t len;

    (void)state;
    encode(m, (void **)&buf, &len);
    for (size_t i = 0; i < len; i++) {
        expect_corrupt(buf, i);
    }
    big = malloc(len + 1);
    memcpy(big, buf, len);
    big[len] = 0xc0;
    expect_corrupt(big, len + 1);
    free(big);
    free(buf);
    sp__msg_free(m);
}

/* Pack a map with the given pairs, for hand-made records. */
static void pack_kv_str(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

static void test_decode_rejects(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    sp_msg_t *d;
    static const uint8_t not_map[] = {0x91, 0x01};
    static const uint8_t no_v[] = {0x80};
    static const uint8_t v2[] = {0x81, 0xa1, 'v', 0x02};
    static const uint8_t v0[] = {0x81, 0xa1, 'v', 0x00};
    static const uint8_t v_str[] = {0x81, 0xa1, 'v', 0xa1, '1'};
    static const uint8_t v_twice[] = {0x82, 0xa1, 'v', 0x01, 0xa1, 'v', 0x01};
    static const uint8_t dup[] = {0x83, 0xa1, 'v', 0x01, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02};
    static const uint8_t bad_name[] = {0x82, 0xa1, 'v', 0x01, 0xa1, 'A', 0x01};
    static const uint8_t empty_name[] = {0x82, 0xa1, 'v', 0x01, 0xa0, 0x01};
    static const uint8_t int_key[] = {0x82, 0xa1, 'v', 0x01, 0x01, 0x01};
    static const uint8_t never_used[] = {0x82, 0xa1, 'v', 0x01, 0xa1, 'a', 0xc1};
    /* array32 claiming 2^32-1 elements followed by nothing: must not
     * allocate for the claimed count. */
    static const uint8_t huge[] = {0x82, 0xa1, 'v', 0x01, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01};
    static const uint8_t v1_int8[] = {0x81, 0xa1, 'v', 0xd0, 0x01};

    (void)state;
    expect_corrupt(not_map, sizeof(not_map));
    expect_corrupt(no_v, sizeof(no_v));
    expect_corrupt(v2, sizeof(v2));
    expect_corrupt(v0, sizeof(v0));
    expect_corrupt(v_str, sizeof(v_str));
    expect_corrupt(v_twice, sizeof(v_twice));
    expect_corrupt(dup, sizeof(dup));
    expect_corrupt(bad_name, sizeof(bad_name));
    expect_corrupt(empty_name, sizeof(empty_name));
    expect_corrupt(int_key, sizeof(int_key));
    expect_corrupt(never_used, sizeof(never_used));
    expect_corrupt(huge, sizeof(huge));
    expect_corrupt(huge_map, sizeof(huge_map));
    expect_corrupt("", 0);
    assert_int_equal(sp__msg_decode(NULL, 1, &d), SP_EINVAL);
    /* A non-minimal integer encoding of the version is still version 1. */
    assert_int_equal(sp__msg_decode(v1_int8, sizeof(v1_int8), &d), 0);
    sp__msg_free(d);

    /* Deep nesting inside an unknown field is bounded. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_kv_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_kv_str(&pk, "deep");
    for (int i = 0; i < 1000; i++) {
        msgpack_pack_array(&pk, 1);
    }
    msgpack_pack_nil(&pk);
    expect_corrupt(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);

    /* 257 fields besides "v" are too many. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, SP_MSG_FIELDS_MAX + 2);
    pack_kv_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    for (int i = 0; i <= SP_MSG_FIELDS_MAX; i++) {
        char n[16];
        snprintf(n, sizeof(n), "f%d", i);
        pack_kv_str(&pk, n);
        msgpack_pack_int(&pk, i);
    }
    expect_corrupt(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Fields of types this version does not model (written by a newer minor
 * version) are kept verbatim. */
static void test_unknown_values_kept(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    sp_msg_t *d;
    void *buf;
    size_t len;
    char *js;
    size_t jl;

    (void)state;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    pack_kv_str(&pk, "x.float");
    msgpack_pack_double(&pk, 1.5);
    pack_kv_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_kv_str(&pk, "x.map");
    msgpack_pack_map(&pk, 2);
    pack_kv_str(&pk, "k");
    msgpack_pack_true(&pk);
    msgpack_pack_int(&pk, 3);
    msgpack_pack_nil(&pk);
    pack_kv_str(&pk, "x.mixed");
    msgpack_pack_array(&pk, 2);
    pack_kv_str(&pk, "s");
    msgpack_pack_int(&pk, 2);
    pack_kv_str(&pk, "x.big");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    pack_kv_str(&pk, "subject");
    pack_kv_str(&pk, "hi");

    assert_int_equal(sp__msg_decode(sb.data, sb.size, &d), 0);
    assert_null(sp__msg_get(d, "x.float", NULL));
    assert_int_equal(sp__msg_count(d, "x.mixed"), 0);
    assert_string_equal(sp__msg_get(d, "subject", NULL), "hi");
    /* Re-encoding keeps every value byte for byte (order: as read, v first). */
    encode(d, &buf, &len);
    {
        sp_msg_t *d2;
        assert_int_equal(sp__msg_decode(buf, len, &d2), 0);
        assert_true(sp__msg_equal(d, d2));
        sp__msg_free(d2);
    }
    assert_int_equal(len, sb.size);
    assert_int_equal(sp__msg_to_json(d, &js, &jl), 0);
    assert_true(json_ok(js, jl));
    assert_string_equal(js, "{\"x.float\":1.5,\"x.map\":{\"k\":true,\"3\":null},"
                            "\"x.mixed\":[\"s\",2],\"x.big\":18446744073709551615,"
                            "\"subject\":\"hi\"}");
    free(js);
    free(buf);
    sp__msg_free(d);
    msgpack_sbuffer_destroy(&sb);
}

static void test_json(void **state)
{
    sp_msg_t *m = sample();
    char *js;
    size_t jl;

    (void)state;
    assert_int_equal(sp__msg_to_json(m, &js, &jl), 0);
    assert_int_equal(strlen(js), jl);
    assert_true(json_ok(js, jl));
    /* Non-UTF-8 bytes are escaped as \u00XX; NUL, newline and quote too;
     * valid UTF-8 passes through. */
    assert_non_null(strstr(js, "\"raw\":\"a\\u0000\\u00ff\\u00c3z\\u0080\\n\\\"\""));
    assert_non_null(strstr(js, "\"subject\":\"h\xc3\xa9llo \xe2\x82\xac\""));
    assert_non_null(strstr(js, "\"min\":-9223372036854775808"));
    assert_non_null(strstr(js, "\"to\":[\"a@example.com\",\"\","));
    free(js);
    sp__msg_free(m);

    m = sp__msg_new();
    assert_int_equal(sp__msg_to_json(m, &js, &jl), 0);
    assert_string_equal(js, "{}");
    free(js);
    /* Surrogates, overlongs and stray continuation bytes are not UTF-8. */
    assert_int_equal(sp__msg_set(m, "s", "\xed\xa0\x80\xc0\xaf\x80\x7f\x01", 8), 0);
    assert_int_equal(sp__msg_to_json(m, &js, &jl), 0);
    assert_true(json_ok(js, jl));
    assert_string_equal(js, "{\"s\":\"\\u00ed\\u00a0\\u0080\\u00c0\\u00af\\u0080\x7f\\u0001\"}");
    free(js);
    sp__msg_free(m);
}

static void test_events(void **state)
{
    void *buf;
    uint8_t *b;
    size_t len;
    int st;
    int64_t t;
    char *data;

    (void)state;
    assert_int_equal(sp__event_encode(SP_ST_DELIVERED, 1700000000123LL, "{\"a\":1}", &buf, &len),
                     0);
    assert_int_equal(sp__event_decode(buf, len, &st, &t, &data), 0);
    assert_int_equal(st, SP_ST_DELIVERED);
    assert_true(t == 1700000000123LL);
    assert_string_equal(data, "{\"a\":1}");
    free(data);
    b = buf;
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(sp__event_decode(b, i, &st, &t, &data), SP_ECORRUPT);
    }
    free(buf);

    /* NULL data is an empty object; outputs are optional. */
    assert_int_equal(sp__event_encode(SP_ST_SCHEDULED, -5, NULL, &buf, &len), 0);
    assert_int_equal(sp__event_decode(buf, len, NULL, &t, &data), 0);
    assert_string_equal(data, "{}");
    assert_true(t == -5);
    free(data);
    free(buf);

    assert_int_equal(sp__event_encode(-1, 0, NULL, &buf, &len), SP_EINVAL);
    assert_int_equal(sp__event_encode(SP_ST__COUNT, 0, NULL, &buf, &len), SP_EINVAL);

    {
        /* Unknown keys are skipped; unknown status, missing keys, NUL in
         * data and a wrong version are corrupt. */
        static const uint8_t extra[] = {0x85, 0xa1, 'v', 1, 0xa6, 's', 't', 'a', 't', 'u', 's',
                                        3, 0xa4, 't', 'i', 'm', 'e', 0, 0xa4, 'd', 'a', 't',
                                        'a', 0xa0, 0xa1, 'z', 0x92, 0xc0, 0xc3};
        static const uint8_t bad_st[] = {0x84, 0xa1, 'v', 1, 0xa6, 's', 't', 'a', 't', 'u', 's',
                                         14, 0xa4, 't', 'i', 'm', 'e', 0, 0xa4, 'd', 'a', 't',
                                         'a', 0xa0};
        static const uint8_t no_time[] = {0x83, 0xa1, 'v', 1, 0xa6, 's', 't', 'a', 't', 'u', 's',
                                          3, 0xa4, 'd', 'a', 't', 'a', 0xa0};
        static const uint8_t nul[] = {0x84, 0xa1, 'v', 1, 0xa6, 's', 't', 'a', 't', 'u', 's',
                                      3, 0xa4, 't', 'i', 'm', 'e', 0, 0xa4, 'd', 'a', 't',
                                      'a', 0xa1, 0};
        static const uint8_t v2[] = {0x84, 0xa1, 'v', 2, 0xa6, 's', 't', 'a', 't', 'u', 's',
                                     3, 0xa4, 't', 'i', 'm', 'e', 0, 0xa4, 'd', 'a', 't',
                                     'a', 0xa0};
        assert_int_equal(sp__event_decode(extra, sizeof(extra), &st, &t, &data), 0);
        assert_int_equal(st, SP_ST_QUEUED);
        assert_string_equal(data, "");
        free(data);
        assert_int_equal(sp__event_decode(bad_st, sizeof(bad_st), &st, &t, &data), SP_ECORRUPT);
        assert_int_equal(sp__event_decode(no_time, sizeof(no_time), &st, &t, &data),
                         SP_ECORRUPT);
        assert_int_equal(sp__event_decode(nul, sizeof(nul), &st, &t, &data), SP_ECORRUPT);
        assert_int_equal(sp__event_decode(v2, sizeof(v2), &st, &t, &data), SP_ECORRUPT);
    }
}

static void test_status(void **state)
{
    static const char *const names[SP_ST__COUNT] = {
        "SCHEDULED", "CANCELLED", "RENDERING_FAILURE", "QUEUED", "SENT",
        "REJECTED", "DELIVERY_DELAYED", "DELIVERED", "BOUNCED", "OPENED",
        "CLICKED", "COMPLAINED", "FAILED", "SUPPRESSED",
    };

    (void)state;
    for (int i = 0; i < SP_ST__COUNT; i++) {
        assert_string_equal(sp__status_name((sp_status_t)i), names[i]);
        assert_int_equal(sp__status_parse(names[i]), i);
    }
    assert_int_equal(sp__status_parse("delivered"), SP_ST_DELIVERED);
    assert_int_equal(sp__status_parse("DELIVERED "), -1);
    assert_int_equal(sp__status_parse(""), -1);
    assert_int_equal(sp__status_parse(NULL), -1);
    assert_null(sp__status_name(SP_ST__COUNT));
    assert_null(sp__status_name((sp_status_t)-1));

    /* The full table: next wins iff it ranks higher, or cur is SCHEDULED. */
    for (int cur = 0; cur < SP_ST__COUNT; cur++) {
        for (int next = 0; next < SP_ST__COUNT; next++) {
            int want = next > cur || cur == SP_ST_SCHEDULED;
            assert_int_equal(!!sp__status_supersedes((sp_status_t)cur, (sp_status_t)next), want);
        }
    }
    /* Spot checks in words. */
    assert_true(sp__status_supersedes(SP_ST_SCHEDULED, SP_ST_CANCELLED));
    assert_true(sp__status_supersedes(SP_ST_QUEUED, SP_ST_SENT));
    assert_true(sp__status_supersedes(SP_ST_DELIVERED, SP_ST_OPENED));
    assert_false(sp__status_supersedes(SP_ST_CLICKED, SP_ST_OPENED));
    assert_false(sp__status_supersedes(SP_ST_DELIVERED, SP_ST_DELIVERY_DELAYED));
    assert_false(sp__status_supersedes(SP_ST_SENT, SP_ST_SENT));
    assert_true(sp__status_supersedes(SP_ST_COMPLAINED, SP_ST_SUPPRESSED));
    assert_false(sp__status_supersedes(SP_ST__COUNT, SP_ST_SENT));
    assert_false(sp__status_supersedes(SP_ST_SENT, SP_ST__COUNT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_type_conflicts),
        cmocka_unit_test(test_names_and_limits),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_msgpack_interop),
        cmocka_unit_test(test_decode_truncated_and_trailing),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_unknown_values_kept),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
