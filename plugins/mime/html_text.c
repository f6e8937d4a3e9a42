/* SPDX-License-Identifier: Apache-2.0 */
/* HTML to readable text (see html_text.h). libxml2's HTML parser does the
 * hard part (broken markup, implied elements, entities, encodings); this
 * walks the tree and lays the text out. */
#include "html_text.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

typedef struct tbuf {
    char *p;
    size_t n, cap;
    bool oom;
    int nl_pending;     /* line breaks owed before the next text (0..2) */
    bool space_pending; /* white space seen since the last text */
    int pre;            /* depth of <pre> elements */
} tbuf_t;

static void add(tbuf_t *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        char *q;
        while (nc < b->n + n + 1) {
            nc *= 2;
        }
        q = realloc(b->p, nc);
        if (q == NULL) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static bool at_line_start(const tbuf_t *b)
{
    return b->n == 0 || b->p[b->n - 1] == '\n';
}

/* Before visible text: the owed line breaks (none at the very start), or
 * one space if white space separated it from the previous text. */
static void flush(tbuf_t *b)
{
    if (b->nl_pending > 0) {
        if (b->n > 0) {
            int have = 0;
            for (size_t i = b->n; i > 0 && b->p[i - 1] == '\n' && have < 2; i--) {
                have++;
            }
            for (int i = have; i < b->nl_pending; i++) {
                add(b, "\n", 1);
            }
        }
        b->nl_pending = 0;
        b->space_pending = false;
    } else if (b->space_pending) {
        if (!at_line_start(b)) {
            add(b, " ", 1);
        }
        b->space_pending = false;
    }
}

static void brk(tbuf_t *b, int n)
{
    if (b->nl_pending < n) {
        b->nl_pending = n;
    }
    b->space_pending = false;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void text(tbuf_t *b, const char *s)
{
    if (b->pre > 0) {
        if (*s != '\0') {
            flush(b);
            add(b, s, strlen(s));
        }
        return;
    }
    while (*s != '\0') {
        if (is_ws(*s)) {
            b->space_pending = true;
            s++;
            continue;
        }
        const char *e = s;
        while (*e != '\0' && !is_ws(*e)) {
            e++;
        }
        flush(b);
        add(b, s, (size_t)(e - s));
        s = e;
    }
}

static bool name_in(const char *name, const char *const *set)
{
    for (; *set != NULL; set++) {
        if (strcmp(name, *set) == 0) {
            return true;
        }
    }
    return false;
}

static const char *const skipped[] = {"head", "script", "style", "template", "noscript",
                                      "title", "svg", "iframe", "object", NULL};
static const char *const para[] = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                                   "pre", "hr", "table", NULL};
static const char *const block[] = {
    "div",     "li",      "tr",   "ul",       "ol",         "dl",     "dt",
    "dd",      "section", "article", "header", "footer",     "nav",    "aside",
    "main",    "figure",  "figcaption", "form", "address", "center", "fieldset",
    "details", "summary", "caption", "body",  NULL};

static void walk(tbuf_t *b, xmlNode *n);

static void link_tail(tbuf_t *b, xmlNode *n, size_t start)
{
    xmlChar *href = xmlGetProp(n, (const xmlChar *)"href");
    const char *h = (const char *)href;
    if (h != NULL) {
        while (is_ws(*h)) {
            h++;
        }
        size_t hl = strlen(h);
        while (hl > 0 && is_ws(h[hl - 1])) {
            hl--;
        }
        bool useful = hl > 0 && h[0] != '#' && strncmp(h, "javascript:", 11) != 0;
        if (useful) {
            const char *t = b->p != NULL ? b->p + start : "";
            size_t tl = b->n - start;
            bool same = (tl == hl && memcmp(t, h, hl) == 0) ||
                        (hl > 7 && strncmp(h, "mailto:", 7) == 0 && tl == hl - 7 &&
                         memcmp(t, h + 7, tl) == 0);
            if (tl == 0) {
                flush(b);
                add(b, h, hl);
            } else if (!same) {
                add(b, " (", 2);
                add(b, h, hl);
                add(b, ")", 1);
            }
        }
    }
    xmlFree(href);
}

static void element(tbuf_t *b, xmlNode *n)
{
    const char *name = (const char *)n->name;
    if (name_in(name, skipped)) {
        return;
    }
    if (strcmp(name, "br") == 0) {
        if (b->n > 0) {
            if (b->nl_pending == 0) {
                add(b, "\n", 1);
            } else {
                b->nl_pending++;
            }
        }
        b->space_pending = false;
        return;
    }
    if (strcmp(name, "img") == 0) {
        xmlChar *alt = xmlGetProp(n, (const xmlChar *)"alt");
        if (alt != NULL) {
            text(b, (const char *)alt);
        }
        xmlFree(alt);
        return;
    }
    bool is_para = name_in(name, para);
    bool is_block = is_para || name_in(name, block);
    if (is_block) {
        brk(b, is_para ? 2 : 1);
    }
    if (strcmp(name, "li") == 0) {
        flush(b);
        add(b, "* ", 2);
    }
    if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0) {
        b->space_pending = true;
    }
    if (strcmp(name, "pre") == 0) {
        b->pre++;
    }
    if (strcmp(name, "a") == 0) {
        flush(b);
        size_t start = b->n;
        walk(b, n->children);
        link_tail(b, n, start);
    } else {
        walk(b, n->children);
    }
    if (strcmp(name, "pre") == 0) {
        b->pre--;
    }
    if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0) {
        b->space_pending = true;
    }
    if (is_block) {
        brk(b, is_para ? 2 : 1);
    }
}

static void walk(tbuf_t *b, xmlNode *n)
{
    for (; n != NULL && !b->oom; n = n->next) {
        if (n->type == XML_ELEMENT_NODE) {
            element(b, n);
        } else if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
                   n->content != NULL) {
            text(b, (const char *)n->content);
        }
    }
}

char *mime_html_to_text(const char *html, size_t len)
{
    tbuf_t b = {0};
    htmlDocPtr doc = NULL;
    if (len > 0 && len <= (size_t)0x7fffffff) {
        doc = htmlReadMemory(html, (int)len, NULL, "UTF-8",
                             HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                 HTML_PARSE_NONET | HTML_PARSE_IGNORE_ENC);
    }
    if (doc != NULL) {
        walk(&b, xmlDocGetRootElement(doc));
        xmlFreeDoc(doc);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (b.p == NULL) {
        return calloc(1, 1);
    }
    return b.p;
}
