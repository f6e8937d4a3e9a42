/* SPDX-License-Identifier: Apache-2.0 */
/* Template variable interpolation: {{name}} and {{name,fallback=text}}.
 * Pure code (no host API), shared by the render plugin, its unit test and the
 * fuzz target. The syntax is documented in docs/templates.md. */
#ifndef SP_RENDER_INTERP_H
#define SP_RENDER_INTERP_H

#include <stdbool.h>
#include <stddef.h>

#define INTERP_NAME_MAX 128 /* bytes of a variable name */

/* The value of a variable (name compared case-insensitively by the callee),
 * or NULL if there is none. *vlen gets its length. */
typedef const char *(*interp_lookup_fn)(void *arg, const char *name, size_t nlen,
                                        size_t *vlen);

/* A variable set: `n` names and values, for interp_vars_lookup. */
typedef struct interp_var {
    const char *name;
    size_t nlen;
    const char *value;
    size_t vlen;
} interp_var_t;

typedef struct interp_vars {
    const interp_var_t *v;
    size_t n;
} interp_vars_t;

/* interp_lookup_fn over an interp_vars_t: an exact match first, else the
 * first name equal ignoring ASCII case. */
const char *interp_vars_lookup(void *arg, const char *name, size_t nlen, size_t *vlen);

/* Render src[0..len) into a new malloc'd, NUL-terminated buffer (*out,
 * *outlen without the NUL). html: variable values are HTML-escaped (& < > "
 * '); fallbacks and everything else are copied as written. 0, SP_ETOOBIG
 * (the result would exceed max bytes), SP_ENOMEM. */
int interp_render(const char *src, size_t len, bool html, interp_lookup_fn lookup, void *arg,
                  size_t max, char **out, size_t *outlen);

#endif
