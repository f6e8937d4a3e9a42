/* SPDX-License-Identifier: Apache-2.0 */
/* A 400 naming one request field (body member or query parameter) in the
 * one error shape (DECISIONS #1), for the area_*.c handlers. */
#ifndef SP_API_USESEND_AREA_FAIL_H
#define SP_API_USESEND_AREA_FAIL_H

#include "api.h"

/* Answer 400 "<field>: <msg>" with issues [{path:[field(, index)], message}];
 * index < 0: no index in the path. */
static inline void area_bad_field(api_ctx_t *c, const char *field, long index, const char *msg)
{
    api_err_t err = {0};
    json_t *it = json_object(), *path = json_array();

    api_err_set(&err, 400, "%s: %s", field, msg);
    json_array_append_new(path, json_string(field));
    if (index >= 0) {
        json_array_append_new(path, json_integer(index));
    }
    json_object_set_new(it, "path", path);
    json_object_set_new(it, "message", json_string(msg));
    err.issues = json_array();
    json_array_append_new(err.issues, it);
    api_reply_err(c, &err);
}

#endif
