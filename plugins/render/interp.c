/* SPDX-License-Identifier: Apache-2.0 */
/* Template variable interpolation in one pass over the source: a value is
 * never scanned again, so a variable cannot inject further placeholders, and
 * the output is bounded by `max` however the source and values combine.
 *
 * A placeholder is
 *     "{{" ws* NAME ws* [ "," ws* "fallback" ws* "=" FALLBACK ] "}}"
 * NAME: 1..INTERP_NAME_MAX of [A-Za-z0-9_.]; "fallback" in any case; ws:
 * space, tab, CR, LF; FALLBACK: any text up to the first "}}", without its
 * surrounding ws. Anything else starting with "{{" is copied as written. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sp/sp_errno.h>

#include "interp.h"

typedef struct out {
    char *p;
    size_t len, cap, max;
    int err;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->err != 0 || n == 0) {
        return;
    }
    if (n > o->max - o->len) {
        o->err = SP_ETOOBIG;
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        char *np;
        while (cap < o->len + n + 1) {
            cap = cap > SIZE_MAX / 2 ? o->len + n + 1 : cap * 2;
        }
        if (!(np = realloc(o->p, cap))) {
            o->err = SP_ENOMEM;
            return;
        }
        o->p = np;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_escaped(out_t *o, const char *s, size_t n)
{
    size_t start = 0;

    for (size_t i = 0; i < n; i++) {
        const char *e;
        switch (s[i]) {
        case '&':
            e = "&amp;";
            break;
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&#39;";
            break;
        default:
            continue;
        }
        put(o, s + start, i - start);
        put(o, e, strlen(e));
        start = i + 1;
    }
    put(o, s + start, n - start);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_name(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.';
}

/* Offset of the first "cc" in s[from..len), or SIZE_MAX. (memchr rather than
 * memmem: sanitizers check memmem's whole haystack on every call.) */
static size_t find2(const char *s, size_t from, size_t len, char c)
{
    while (from + 1 < len) {
        const char *p = memchr(s + from, c, len - from - 1);
        if (!p) {
            break;
        }
        from = (size_t)(p - s);
        if (s[from + 1] == c) {
            return from;
        }
        from += 2;
    }
    return SIZE_MAX;
}

typedef struct ph {
    const char *name;
    size_t nlen;
    bool has_fallback;
    const char *fb;
    size_t fblen;
    size_t end; /* offset just past "}}" */
} ph_t;

/* Parse a placeholder starting at s[i] == "{{". true if it is one. *close
 * caches the offset of the first "}}" at or after the last call's i + 2
 * (SIZE_MAX: none left), so a long run of failed openings costs one scan. */
static bool parse(const char *s, size_t len, size_t i, size_t *close_at, ph_t *ph)
{
    size_t j = i + 2, close, name_end;

    if (*close_at != SIZE_MAX && *close_at < j) {
        *close_at = find2(s, j, len, '}');
    }
    if (*close_at == SIZE_MAX) {
        return false;
    }
    close = *close_at;
    while (j < close && is_ws(s[j])) {
        j++;
    }
    ph->name = s + j;
    name_end = close - j > INTERP_NAME_MAX ? j + INTERP_NAME_MAX + 1 : close;
    while (j < name_end && is_name(s[j])) {
        j++;
    }
    ph->nlen = (size_t)(s + j - ph->name);
    if (ph->nlen == 0 || ph->nlen > INTERP_NAME_MAX) {
        return false;
    }
    while (j < close && is_ws(s[j])) {
        j++;
    }
    ph->has_fallback = false;
    if (j < close) {
        size_t fe = close;
        if (s[j] != ',') {
            return false;
        }
        j++;
        while (j < close && is_ws(s[j])) {
            j++;
        }
        if (close - j < 8 || strncasecmp(s + j, "fallback", 8) != 0) {
            return false;
        }
        j += 8;
        while (j < close && is_ws(s[j])) {
            j++;
        }
        if (j >= close || s[j] != '=') {
            return false;
        }
        j++;
        while (j < close && is_ws(s[j])) {
            j++;
        }
        while (fe > j && is_ws(s[fe - 1])) {
            fe--;
        }
        ph->has_fallback = true;
        ph->fb = s + j;
        ph->fblen = fe - j;
    }
    ph->end = close + 2;
    return true;
}

int interp_render(const char *src, size_t len, bool html, interp_lookup_fn lookup, void *arg,
                  size_t max, char **out, size_t *outlen)
{
    out_t o = {.max = max};
    size_t i = 0, lit = 0, close_at = 0;

    while (i + 1 < len && o.err == 0) {
        size_t open = find2(src, i, len, '{');
        const char *v;
        size_t vlen = 0;
        ph_t ph;

        if (open == SIZE_MAX) {
            break;
        }
        i = open;
        if (!parse(src, len, i, &close_at, &ph)) {
            /* Not a placeholder: copy one '{' and look again from the next
             * one ("{{{name}}}" keeps its outer braces). */
            i++;
            continue;
        }
        put(&o, src + lit, i - lit);
        v = lookup ? lookup(arg, ph.name, ph.nlen, &vlen) : NULL;
        if (v && vlen > 0) {
            if (html) {
                put_escaped(&o, v, vlen);
            } else {
                put(&o, v, vlen);
            }
        } else if (ph.has_fallback) {
            put(&o, ph.fb, ph.fblen);
        } else if (!v) {
            put(&o, src + i, ph.end - i); /* unknown: left as written */
        }
        i = lit = ph.end;
    }
    put(&o, src + lit, len - lit);
    if (o.err == 0 && !o.p) {
        if (!(o.p = malloc(1))) {
            o.err = SP_ENOMEM;
        }
    }
    if (o.err != 0) {
        free(o.p);
        return o.err;
    }
    o.p[o.len] = '\0';
    *out = o.p;
    *outlen = o.len;
    return 0;
}

const char *interp_vars_lookup(void *arg, const char *name, size_t nlen, size_t *vlen)
{
    const interp_vars_t *vs = arg;
    const interp_var_t *ci = NULL;

    for (size_t i = 0; i < vs->n; i++) {
        const interp_var_t *v = &vs->v[i];
        if (v->nlen != nlen) {
            continue;
        }
        if (memcmp(v->name, name, nlen) == 0) {
            *vlen = v->vlen;
            return v->value;
        }
        if (!ci && strncasecmp(v->name, name, nlen) == 0) {
            ci = v;
        }
    }
    if (ci) {
        *vlen = ci->vlen;
        return ci->value;
    }
    return NULL;
}
