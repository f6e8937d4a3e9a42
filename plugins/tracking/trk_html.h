/* SPDX-License-Identifier: Apache-2.0 */
/* The html rewriting of open and click tracking: libxml2's HTML parser reads
 * the html (broken markup, entities, implied elements), the tree is changed,
 * and libxml2 writes it back as UTF-8. Pure C with libxml2 and libcrypto:
 * no host API. */
#ifndef TRK_HTML_H
#define TRK_HTML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The attribute that keeps a link as it is. */
#define TRK_NO_TRACK_ATTR "data-sp-no-track"
#define TRK_LINK_MAX 4096 /* longer hrefs are left alone */

typedef struct trk_opts {
    const char *base;   /* public base URL, e.g. "https://mail.example.com" (no trailing /) */
    const uint8_t *key; /* HMAC key of the tokens */
    size_t klen;
    const char *id;     /* message id */
    size_t idlen;
    bool open;          /* add the pixel */
    bool click;         /* rewrite links */
    size_t max_links;   /* rewrite at most this many links (later ones stay) */
} trk_opts_t;

typedef struct trk_result {
    char *html;     /* malloc'd, NUL-terminated */
    size_t len;
    char **links;   /* the original href of link i, malloc'd each */
    size_t nlinks;
    bool pixel;     /* the pixel was added */
} trk_result_t;

/* May link `href` (an attribute value as parsed) be rewritten? http or https
 * scheme (case-insensitive, after leading white space), no "unsubscribe"
 * (case-insensitive) anywhere, no "{{" left from templates, no control
 * characters, at most TRK_LINK_MAX bytes. */
bool trk_link_trackable(const char *href);

/* Rewrite html for o. 0 and *out filled (free with trk_result_free); -1 when
 * the html cannot be parsed or memory ran out (then send it untouched). */
int trk_html_rewrite(const char *html, size_t len, const trk_opts_t *o, trk_result_t *out);
void trk_result_free(trk_result_t *r);

#endif
