/* SPDX-License-Identifier: Apache-2.0 */
/* Message records: named fields (string, list, int) with a msgpack codec. */
#ifndef SP_CORE_MSG_H
#define SP_CORE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

#define SP_MSG_VERSION 1 /* major version of the record format ("v" key) */

/* Limits. Field names are 1..SP_MSG_NAME_MAX of [a-z0-9_.], and "v" is
 * reserved for the version. Setters return SP_EINVAL for a bad name (or a
 * type conflict in add), SP_ETOOBIG past a limit, SP_ENOMEM. */
#define SP_MSG_NAME_MAX 64
#define SP_MSG_FIELDS_MAX 256  /* fields per record, "v" not counted */
#define SP_MSG_LIST_MAX 100000 /* items per list field */
#define SP_MSG_VALUE_MAX 0xffffffffu /* bytes per string (msgpack str32) */

/* sp_msg_t is opaque outside msg.c; the functions below back the host API's
 * msg_* members one to one (same contracts as documented in sp_plugin.h). */
sp_msg_t *sp__msg_new(void);
void sp__msg_free(sp_msg_t *m);
int sp__msg_set(sp_msg_t *m, const char *field, const void *val, size_t len);
int sp__msg_add(sp_msg_t *m, const char *field, const void *val, size_t len);
int sp__msg_set_int(sp_msg_t *m, const char *field, int64_t v);
int sp__msg_del(sp_msg_t *m, const char *field);
const char *sp__msg_get(const sp_msg_t *m, const char *field, size_t *len);
size_t sp__msg_count(const sp_msg_t *m, const char *field);
const char *sp__msg_get_at(const sp_msg_t *m, const char *field, size_t i, size_t *len);
int sp__msg_get_int(const sp_msg_t *m, const char *field, int64_t *out);
/* Encode as a msgpack map {"v":1, field: str | [str] | int, ...}; strings
 * that are not valid UTF-8 are written as msgpack bin (they decode to the
 * same bytes). *buf is malloc'd. Any thread. */
int sp__msg_encode(const sp_msg_t *m, void **buf, size_t *len);
/* Decode; unknown fields are kept, an unknown major version or malformed
 * input (truncated, trailing bytes, duplicate or invalid field names, past a
 * limit) is SP_ECORRUPT. Values of a type this version does not model (nil,
 * bool, float, map, ext, arrays that are not all strings, integers above
 * INT64_MAX) are kept as raw msgpack: the getters do not see them, encode
 * writes them back verbatim, to_json renders them. Any thread. */
int sp__msg_decode(const void *buf, size_t len, sp_msg_t **out);
/* Deep copy. */
sp_msg_t *sp__msg_dup(const sp_msg_t *m);
/* Same fields with the same types and values (field order ignored). Fields
 * this version cannot represent (kept from a decoded record as raw msgpack)
 * compare by their bytes. */
bool sp__msg_equal(const sp_msg_t *a, const sp_msg_t *b);
/* Render as one JSON object (for the CLI): *out malloc'd. Binary-safe: bytes
 * that are not UTF-8 are escaped. */
int sp__msg_to_json(const sp_msg_t *m, char **out, size_t *len);

/* Event records (SP_DB_EVENTS values): {"v":1,"status":int,"time":i64,"data":str}. */
int sp__event_encode(int status, int64_t time_ms, const char *data, void **buf, size_t *len);
int sp__event_decode(const void *buf, size_t len, int *status, int64_t *time_ms, char **data);

/* Status names and precedence (contract §3). */
const char *sp__status_name(sp_status_t st);
int sp__status_parse(const char *s); /* -1 if unknown */
/* Whether `next` replaces `cur` as the latest status. */
int sp__status_supersedes(sp_status_t cur, sp_status_t next);

#endif
