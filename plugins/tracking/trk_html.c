/* SPDX-License-Identifier: Apache-2.0 */
/* Html rewriting for open and click tracking (see trk_html.h). */
#define _POSIX_C_SOURCE 200809L
#include "trk_html.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/HTMLparser.h>
#include <libxml/HTMLtree.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>

#include "trk_token.h"

typedef struct walk {
    const trk_opts_t *o;
    trk_result_t *r;
    xmlNodePtr body; /* first <body>, where the pixel goes */
    bool oom;
} walk_t;

static bool has_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        if (strncasecmp(p, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

static bool html_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

bool trk_link_trackable(const char *href)
{
    const char *p = href;
    size_t n;

    if (!href) {
        return false;
    }
    while (html_space(*p)) {
        p++;
    }
    if (strncasecmp(p, "http://", 7) != 0 && strncasecmp(p, "https://", 8) != 0) {
        return false;
    }
    n = strlen(href);
    if (n > TRK_LINK_MAX || has_ci(href, "unsubscribe") || strstr(href, "{{") != NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)href[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* base + "/t/" + kind + "/" + token, malloc'd. */
static char *track_url(const trk_opts_t *o, trk_kind_t kind, unsigned index)
{
    char tok[TRK_TOKEN_MAX];
    size_t n;
    char *u;

    if (trk_token_make(o->key, o->klen, kind, o->id, o->idlen, index, tok, sizeof(tok)) < 0) {
        return NULL;
    }
    n = strlen(o->base) + strlen(tok) + 8;
    u = malloc(n);
    if (u) {
        snprintf(u, n, "%s/t/%c/%s", o->base, (char)kind, tok);
    }
    return u;
}

/* A copy without the white space around it, which HTML ignores and a
 * Location header must not have. */
static char *trimmed(const char *s)
{
    size_t len;
    while (html_space(*s)) {
        s++;
    }
    len = strlen(s);
    while (len > 0 && html_space(s[len - 1])) {
        len--;
    }
    return strndup(s, len);
}

static void link_node(walk_t *w, xmlNodePtr n)
{
    xmlChar *href;
    char *orig, *url, **nl;

    if (w->r->nlinks >= w->o->max_links || w->r->nlinks > TRK_INDEX_MAX ||
        xmlHasProp(n, (const xmlChar *)TRK_NO_TRACK_ATTR) != NULL) {
        return;
    }
    href = xmlGetProp(n, (const xmlChar *)"href");
    if (!href || !trk_link_trackable((const char *)href)) {
        xmlFree(href);
        return;
    }
    orig = trimmed((const char *)href);
    xmlFree(href);
    url = track_url(w->o, TRK_CLICK, (unsigned)w->r->nlinks);
    nl = realloc(w->r->links, (w->r->nlinks + 1) * sizeof(*nl));
    if (!orig || !url || !nl) {
        free(orig);
        free(url);
        if (nl) {
            w->r->links = nl;
        }
        w->oom = true;
        return;
    }
    w->r->links = nl;
    if (xmlSetProp(n, (const xmlChar *)"href", (const xmlChar *)url) == NULL) {
        free(orig);
        free(url);
        w->oom = true;
        return;
    }
    free(url);
    w->r->links[w->r->nlinks++] = orig;
}

static void walk(walk_t *w, xmlNodePtr n, int depth)
{
    for (; n != NULL && !w->oom; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) {
            continue;
        }
        if (!w->body && xmlStrcasecmp(n->name, (const xmlChar *)"body") == 0) {
            w->body = n;
        }
        if (w->o->click && (xmlStrcasecmp(n->name, (const xmlChar *)"a") == 0 ||
                            xmlStrcasecmp(n->name, (const xmlChar *)"area") == 0)) {
            link_node(w, n);
        }
        /* libxml2 limits the depth it builds; this bound only guards the
         * stack against a tree made some other way. */
        if (depth < 512) {
            walk(w, n->children, depth + 1);
        }
    }
}

static int add_pixel(walk_t *w, xmlDocPtr doc)
{
    char *url = track_url(w->o, TRK_OPEN, 0);
    xmlNodePtr img, parent;

    if (!url) {
        return -1;
    }
    img = xmlNewDocNode(doc, NULL, (const xmlChar *)"img", NULL);
    if (!img || !xmlNewProp(img, (const xmlChar *)"src", (const xmlChar *)url) ||
        !xmlNewProp(img, (const xmlChar *)"width", (const xmlChar *)"1") ||
        !xmlNewProp(img, (const xmlChar *)"height", (const xmlChar *)"1") ||
        !xmlNewProp(img, (const xmlChar *)"alt", (const xmlChar *)"") ||
        !xmlNewProp(img, (const xmlChar *)"style",
                    (const xmlChar *)"border:0;width:1px;height:1px")) {
        xmlFreeNode(img);
        free(url);
        return -1;
    }
    free(url);
    parent = w->body ? w->body : xmlDocGetRootElement(doc);
    if ((parent ? xmlAddChild(parent, img) : xmlAddChild((xmlNodePtr)doc, img)) == NULL) {
        xmlFreeNode(img);
        return -1;
    }
    w->r->pixel = true;
    return 0;
}

/* The tree as UTF-8 html (no added DOCTYPE, no re-encoding to entities). */
static int serialise(xmlDocPtr doc, trk_result_t *r)
{
    /* No encoder: the tree's own UTF-8 goes out as it is. */
    xmlOutputBufferPtr ob = xmlAllocOutputBuffer(NULL);
    const xmlChar *content;
    size_t n;
    int rc = -1;

    if (!ob) {
        return -1;
    }
    htmlDocContentDumpFormatOutput(ob, doc, "UTF-8", 0);
    if (xmlOutputBufferFlush(ob) >= 0 && !ob->error) {
        content = xmlOutputBufferGetContent(ob);
        n = xmlOutputBufferGetSize(ob);
        r->html = malloc(n + 1);
        if (r->html && content) {
            memcpy(r->html, content, n);
            r->html[n] = '\0';
            r->len = n;
            rc = 0;
        }
    }
    xmlOutputBufferClose(ob);
    return rc;
}

int trk_html_rewrite(const char *html, size_t len, const trk_opts_t *o, trk_result_t *out)
{
    walk_t w = {.o = o, .r = out};
    xmlDocPtr doc;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (!html || !o || !o->base || len > (size_t)INT32_MAX) {
        return -1;
    }
    doc = htmlReadMemory(html, (int)len, NULL, "UTF-8",
                         HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                             HTML_PARSE_NONET | HTML_PARSE_NODEFDTD |
                             HTML_PARSE_IGNORE_ENC);
    if (!doc) {
        return -1;
    }
    walk(&w, doc->children, 0);
    if (!w.oom && (!o->open || add_pixel(&w, doc) == 0)) {
        rc = serialise(doc, out);
    }
    xmlFreeDoc(doc);
    if (rc != 0) {
        trk_result_free(out);
    }
    return rc;
}

void trk_result_free(trk_result_t *r)
{
    if (!r) {
        return;
    }
    for (size_t i = 0; i < r->nlinks; i++) {
        free(r->links[i]);
    }
    free(r->links);
    free(r->html);
    memset(r, 0, sizeof(*r));
}
