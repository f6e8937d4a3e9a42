/* SPDX-License-Identifier: Apache-2.0 */
/* YAML configuration into a positioned tree, ${VAR} substitution, value
 * parsers and schema validation. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "sp_core/conf.h"
#include "sp_core/log.h"

/*
 * Limits against hostile or broken input. The tree builder is iterative but
 * node_free() and the schema walkers recurse once per nesting level, and each
 * node costs memory, so depth and node count are bounded as well as size.
 */
#define CONF_MAX_INPUT ((size_t)1 << 20)
#define CONF_MAX_DEPTH 32
#define CONF_MAX_NODES 100000
/* ${A:-${B:-...}}: nesting of defaults. */
#define CONF_MAX_SUBST_DEPTH 8
/* A single scalar after substitution, and all scalars of one tree together. */
#define CONF_MAX_SCALAR ((size_t)1 << 20)
#define CONF_MAX_SUBST_TOTAL ((size_t)16 << 20)

/* Longest quoted value or key shown in an error message. */
#define CONF_MSG_VALUE_MAX 64

void sp__conf_error(char *err, size_t errlen, const char *file, int line, int col,
                    const char *path, const char *fmt, ...)
{
    char reason[512];
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (file == NULL) {
        file = "<config>";
    }
    if (line > 0 && path != NULL && path[0] != '\0') {
        snprintf(err, errlen, "%s:%d:%d: key '%s': %s", file, line, col, path, reason);
    } else if (line > 0) {
        snprintf(err, errlen, "%s:%d:%d: %s", file, line, col, reason);
    } else if (path != NULL && path[0] != '\0') {
        snprintf(err, errlen, "%s: key '%s': %s", file, path, reason);
    } else {
        snprintf(err, errlen, "%s: %s", file, reason);
    }
}

void sp__conf_quote(char *out, size_t outlen, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    size_t w;

    if (outlen < 8) {
        if (outlen > 0) {
            out[0] = '\0';
        }
        return;
    }
    out[0] = '"';
    if (len > CONF_MSG_VALUE_MAX) {
        w = sp__json_escape(out + 1, outlen - 5, s, CONF_MSG_VALUE_MAX);
        memcpy(out + 1 + w, "...\"", 5);
    } else {
        w = sp__json_escape(out + 1, outlen - 2, s, len);
        memcpy(out + 1 + w, "\"", 2);
    }
}

bool sp__conf_is_null(const sp_node_t *n)
{
    if (n == NULL) {
        return true;
    }
    if (n->type != SP_NODE_SCALAR || n->quoted) {
        return false;
    }
    return n->value[0] == '\0' || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0 ||
           strcmp(n->value, "Null") == 0 || strcmp(n->value, "NULL") == 0;
}

sp_node_t *sp__conf_get(const sp_node_t *map, const char *key)
{
    sp_node_t *c;

    if (map == NULL || map->type != SP_NODE_MAP || key == NULL) {
        return NULL;
    }
    for (c = map->child; c != NULL; c = c->next) {
        if (strcmp(c->key, key) == 0) {
            return c;
        }
    }
    return NULL;
}

static void node_free(sp_node_t *n)
{
    while (n != NULL) {
        sp_node_t *next = n->next;

        node_free(n->child);
        free(n->key);
        free(n->value);
        free(n);
        n = next;
    }
}

void sp__conf_free(sp_node_t *root)
{
    char *file;

    if (root == NULL) {
        return;
    }
    /* The file name is shared by every node and owned by the root. */
    file = (char *)root->file;
    node_free(root);
    free(file);
}

/* ------------------------------------------------------------------------ */
/* ${VAR} substitution */

typedef struct dstr {
    char *p;
    size_t len;
    size_t cap;
} dstr_t;

static int ds_add(dstr_t *d, const char *s, size_t n)
{
    if (d == NULL) {
        return 0; /* discarding: a default that is not used */
    }
    if (n > CONF_MAX_SCALAR || d->len + n > CONF_MAX_SCALAR) {
        return SP_ETOOBIG;
    }
    if (d->len + n + 1 > d->cap) {
        size_t cap = d->cap ? d->cap : 64;
        char *p;

        while (cap < d->len + n + 1) {
            cap *= 2;
        }
        p = realloc(d->p, cap);
        if (p == NULL) {
            return SP_ENOMEM;
        }
        d->p = p;
        d->cap = cap;
    }
    memcpy(d->p + d->len, s, n);
    d->len += n;
    d->p[d->len] = '\0';
    return 0;
}

typedef struct subst {
    const char *s;
    size_t n;
    size_t i;
    char why[256]; /* reason on failure */
} subst_t;

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/*
 * Copy text to out, expanding ${NAME} and ${NAME:-default} (default used when
 * NAME is unset or empty, as in the shell; it may itself hold ${...}). "$${"
 * is a literal "${". With out == NULL the text is only checked for syntax and
 * unset variables are not errors. In a default (nested) a '}' ends the text.
 */
static int subst_run(subst_t *c, dstr_t *out, int depth, bool nested)
{
    int rc;

    if (depth > CONF_MAX_SUBST_DEPTH) {
        snprintf(c->why, sizeof(c->why), "${...} defaults nested more than %d deep",
                 CONF_MAX_SUBST_DEPTH);
        return SP_ECONFIG;
    }
    while (c->i < c->n) {
        const char *s = c->s;
        size_t start;
        size_t nlen;
        char name[256];
        const char *val;

        if (nested && s[c->i] == '}') {
            return 0;
        }
        if (s[c->i] != '$') {
            /* Copy a run of ordinary bytes at once. */
            start = c->i;
            while (c->i < c->n && s[c->i] != '$' && !(nested && s[c->i] == '}')) {
                c->i++;
            }
            rc = ds_add(out, s + start, c->i - start);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        if (c->i + 2 < c->n && s[c->i + 1] == '$' && s[c->i + 2] == '{') {
            rc = ds_add(out, "${", 2);
            if (rc < 0) {
                return rc;
            }
            c->i += 3;
            continue;
        }
        if (c->i + 1 >= c->n || s[c->i + 1] != '{') {
            rc = ds_add(out, "$", 1);
            if (rc < 0) {
                return rc;
            }
            c->i++;
            continue;
        }
        c->i += 2;
        start = c->i;
        while (c->i < c->n && is_name_char(s[c->i])) {
            c->i++;
        }
        nlen = c->i - start;
        if (nlen == 0 || !is_name_start(s[start])) {
            snprintf(c->why, sizeof(c->why),
                     "invalid variable name in ${...} (expected [A-Za-z_][A-Za-z0-9_]*)");
            return SP_ECONFIG;
        }
        if (nlen >= sizeof(name)) {
            snprintf(c->why, sizeof(c->why), "variable name in ${...} is too long");
            return SP_ECONFIG;
        }
        memcpy(name, s + start, nlen);
        name[nlen] = '\0';
        val = out != NULL ? getenv(name) : NULL;
        if (c->i < c->n && s[c->i] == '}') {
            c->i++;
            if (out == NULL) {
                continue;
            }
            if (val == NULL) {
                snprintf(c->why, sizeof(c->why),
                         "undefined environment variable '%.64s' (write ${%.64s:-default} to "
                         "give a default)",
                         name, name);
                return SP_ECONFIG;
            }
            rc = ds_add(out, val, strlen(val));
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        if (c->i + 1 < c->n && s[c->i] == ':' && s[c->i + 1] == '-') {
            bool use_default = out != NULL && (val == NULL || val[0] == '\0');

            c->i += 2;
            if (out != NULL && !use_default) {
                rc = ds_add(out, val, strlen(val));
                if (rc < 0) {
                    return rc;
                }
            }
            rc = subst_run(c, use_default ? out : NULL, depth + 1, true);
            if (rc < 0) {
                return rc;
            }
            if (c->i >= c->n) {
                snprintf(c->why, sizeof(c->why), "unterminated ${%.64s:-...}", name);
                return SP_ECONFIG;
            }
            c->i++; /* the closing brace */
            continue;
        }
        if (c->i >= c->n) {
            snprintf(c->why, sizeof(c->why), "unterminated ${%.64s", name);
        } else {
            snprintf(c->why, sizeof(c->why),
                     "unsupported ${%.64s...} form (use ${NAME} or ${NAME:-default})", name);
        }
        return SP_ECONFIG;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tree builder over libyaml events */

typedef struct frame {
    sp_node_t *node; /* open container */
    sp_node_t *last; /* its last child */
    char *key;       /* pending key of a map, owned until attached */
    int key_line, key_col;
} frame_t;

typedef struct builder {
    const char *fname; /* name used in messages */
    char *file;        /* shared copy stored in nodes; owned by root once set */
    sp_node_t *root;
    frame_t stack[CONF_MAX_DEPTH];
    int depth;
    size_t nodes;
    size_t subst_total;
    char *err;
    size_t errlen;
} builder_t;

static int mark_line(const yaml_mark_t *m)
{
    return m->line >= 0x7ffffffe ? 0x7fffffff : (int)m->line + 1;
}

static int mark_col(const yaml_mark_t *m)
{
    return m->column >= 0x7ffffffe ? 0x7fffffff : (int)m->column + 1;
}

static int b_fail(builder_t *b, const yaml_mark_t *m, const char *fmt, ...) SP_PRINTF(3, 4);

static int b_fail(builder_t *b, const yaml_mark_t *m, const char *fmt, ...)
{
    char reason[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    sp__conf_error(b->err, b->errlen, b->fname, mark_line(m), mark_col(m), NULL, "%s",
                   reason);
    return SP_ECONFIG;
}

static int b_oom(builder_t *b)
{
    sp__conf_error(b->err, b->errlen, b->fname, 0, 0, NULL, "out of memory");
    return SP_ENOMEM;
}

/* Reject anchors and explicit tags on any node. */
static int check_props(builder_t *b, const yaml_event_t *ev, const yaml_char_t *anchor,
                       const yaml_char_t *tag)
{
    if (anchor != NULL) {
        return b_fail(b, &ev->start_mark, "anchors (&name) are not allowed in configuration");
    }
    if (tag != NULL) {
        return b_fail(b, &ev->start_mark, "tags (!tag) are not allowed in configuration");
    }
    return 0;
}

/* Copy a scalar, refusing embedded NUL (a "\0" escape would cut the value). */
static int scalar_copy(builder_t *b, const yaml_event_t *ev, char **out)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;

    if (memchr(v, '\0', len) != NULL) {
        return b_fail(b, &ev->start_mark, "NUL character in a value");
    }
    *out = strndup(v, len);
    return *out == NULL ? b_oom(b) : 0;
}

static int scalar_subst(builder_t *b, const yaml_event_t *ev, char **out)
{
    subst_t c = {(const char *)ev->data.scalar.value, ev->data.scalar.length, 0, ""};
    dstr_t d = {NULL, 0, 0};
    int rc;

    if (memchr(c.s, '\0', c.n) != NULL) {
        return b_fail(b, &ev->start_mark, "NUL character in a value");
    }
    rc = ds_add(&d, "", 0);
    if (rc == 0) {
        rc = subst_run(&c, &d, 0, false);
    }
    if (rc == 0 && b->subst_total + d.len > CONF_MAX_SUBST_TOTAL) {
        rc = SP_ETOOBIG;
    }
    if (rc < 0) {
        free(d.p);
        if (rc == SP_ENOMEM) {
            return b_oom(b);
        }
        if (rc == SP_ETOOBIG) {
            return b_fail(b, &ev->start_mark, "value too long after ${...} substitution");
        }
        return b_fail(b, &ev->start_mark, "%s", c.why);
    }
    b->subst_total += d.len;
    *out = d.p;
    return 0;
}

static sp_node_t *node_new(builder_t *b, sp_node_type_t type, const yaml_event_t *ev)
{
    sp_node_t *n;

    if (b->nodes >= CONF_MAX_NODES) {
        b_fail(b, &ev->start_mark, "too many nodes (limit %d)", CONF_MAX_NODES);
        return NULL;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        b_oom(b);
        return NULL;
    }
    b->nodes++;
    n->type = type;
    n->line = mark_line(&ev->start_mark);
    n->col = mark_col(&ev->start_mark);
    n->file = b->file;
    return n;
}

/* Attach a new node under the open container (or as the root). */
static void attach(builder_t *b, sp_node_t *n)
{
    frame_t *f;

    if (b->depth == 0) {
        b->root = n;
        return;
    }
    f = &b->stack[b->depth - 1];
    if (f->node->type == SP_NODE_MAP) {
        n->key = f->key;
        n->key_line = f->key_line;
        n->key_col = f->key_col;
        f->key = NULL;
    }
    if (f->last == NULL) {
        f->node->child = n;
    } else {
        f->last->next = n;
    }
    f->last = n;
    f->node->n++;
}

/* True when the next node of the open map is a key, not a value. */
static bool expecting_key(const builder_t *b)
{
    const frame_t *f;

    if (b->depth == 0) {
        return false;
    }
    f = &b->stack[b->depth - 1];
    return f->node->type == SP_NODE_MAP && f->key == NULL;
}

static int cmp_key_pos(const void *pa, const void *pb)
{
    const sp_node_t *a = *(const sp_node_t *const *)pa;
    const sp_node_t *b = *(const sp_node_t *const *)pb;
    int c = strcmp(a->key, b->key);

    if (c != 0) {
        return c;
    }
    if (a->key_line != b->key_line) {
        return a->key_line < b->key_line ? -1 : 1;
    }
    return a->key_col < b->key_col ? -1 : (a->key_col > b->key_col);
}

/* Duplicate keys: sort (n log n, maps may be large) and report the repeat
 * that comes first in the file. */
static int check_dup_keys(builder_t *b, const sp_node_t *map)
{
    const sp_node_t **v;
    const sp_node_t *best = NULL;
    const sp_node_t *first = NULL;
    const sp_node_t *c;
    size_t i = 0;
    char q[CONF_MSG_VALUE_MAX * 6 + 8];

    if (map->n < 2) {
        return 0;
    }
    v = malloc(map->n * sizeof(*v));
    if (v == NULL) {
        return b_oom(b);
    }
    for (c = map->child; c != NULL; c = c->next) {
        v[i++] = c;
    }
    qsort(v, map->n, sizeof(*v), cmp_key_pos);
    for (i = 1; i < map->n; i++) {
        if (strcmp(v[i - 1]->key, v[i]->key) != 0) {
            continue;
        }
        if (best == NULL || v[i]->key_line < best->key_line ||
            (v[i]->key_line == best->key_line && v[i]->key_col < best->key_col)) {
            size_t j = i - 1;

            /* The first occurrence is the start of this run of equal keys. */
            while (j > 0 && strcmp(v[j - 1]->key, v[i]->key) == 0) {
                j--;
            }
            best = v[i];
            first = v[j];
        }
    }
    free(v);
    if (best == NULL) {
        return 0;
    }
    sp__conf_quote(q, sizeof(q), best->key);
    sp__conf_error(b->err, b->errlen, b->fname, best->key_line, best->key_col, NULL,
                   "duplicate key %s (first at line %d, column %d)", q, first->key_line,
                   first->key_col);
    return SP_ECONFIG;
}

static int on_event(builder_t *b, const yaml_event_t *ev, int *docs)
{
    sp_node_t *n;
    int rc;

    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*docs > 1) {
            return b_fail(b, &ev->start_mark,
                          "multiple YAML documents are not allowed in configuration");
        }
        return 0;
    case YAML_ALIAS_EVENT:
        return b_fail(b, &ev->start_mark, "aliases (*name) are not allowed in configuration");
    case YAML_SCALAR_EVENT:
        rc = check_props(b, ev, ev->data.scalar.anchor, ev->data.scalar.tag);
        if (rc < 0) {
            return rc;
        }
        if (expecting_key(b)) {
            frame_t *f = &b->stack[b->depth - 1];

            rc = scalar_copy(b, ev, &f->key);
            f->key_line = mark_line(&ev->start_mark);
            f->key_col = mark_col(&ev->start_mark);
            return rc;
        }
        n = node_new(b, SP_NODE_SCALAR, ev);
        if (n == NULL) {
            return b->nodes >= CONF_MAX_NODES ? SP_ECONFIG : SP_ENOMEM;
        }
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        attach(b, n);
        return scalar_subst(b, ev, &n->value);
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        bool is_map = ev->type == YAML_MAPPING_START_EVENT;

        rc = is_map ? check_props(b, ev, ev->data.mapping_start.anchor,
                                  ev->data.mapping_start.tag)
                    : check_props(b, ev, ev->data.sequence_start.anchor,
                                  ev->data.sequence_start.tag);
        if (rc < 0) {
            return rc;
        }
        if (expecting_key(b)) {
            return b_fail(b, &ev->start_mark, "map keys must be plain scalars");
        }
        if (b->depth >= CONF_MAX_DEPTH) {
            return b_fail(b, &ev->start_mark, "nesting deeper than %d levels", CONF_MAX_DEPTH);
        }
        n = node_new(b, is_map ? SP_NODE_MAP : SP_NODE_SEQ, ev);
        if (n == NULL) {
            return b->nodes >= CONF_MAX_NODES ? SP_ECONFIG : SP_ENOMEM;
        }
        attach(b, n);
        b->stack[b->depth].node = n;
        b->stack[b->depth].last = NULL;
        b->stack[b->depth].key = NULL;
        b->depth++;
        return 0;
    }
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        if (b->depth == 0) {
            return b_fail(b, &ev->start_mark, "unbalanced end of collection");
        }
        n = b->stack[b->depth - 1].node;
        b->depth--;
        return n->type == SP_NODE_MAP ? check_dup_keys(b, n) : 0;
    default:
        return 0;
    }
}

static int yaml_fail(builder_t *b, const yaml_parser_t *p, const char *buf, size_t len)
{
    const yaml_mark_t *m = &p->problem_mark;
    char q[CONF_MSG_VALUE_MAX + 8];

    if (p->error == YAML_MEMORY_ERROR) {
        return b_oom(b);
    }
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset only: turn it into line:column. */
        yaml_mark_t at = {0, 0, 0};

        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (buf[i] == '\n') {
                at.line++;
                at.column = 0;
            } else {
                at.column++;
            }
        }
        sp__conf_error(b->err, b->errlen, b->fname, mark_line(&at), mark_col(&at), NULL,
                       "%s (byte offset %zu)", p->problem ? p->problem : "cannot read input",
                       p->problem_offset);
        return SP_ECONFIG;
    }
    if (p->context != NULL) {
        snprintf(q, sizeof(q), " %s", p->context);
    } else {
        q[0] = '\0';
    }
    sp__conf_error(b->err, b->errlen, b->fname, mark_line(m), mark_col(m), NULL,
                   "YAML syntax error: %s%s", p->problem ? p->problem : "invalid YAML", q);
    return SP_ECONFIG;
}

int sp__conf_parse(const char *buf, size_t len, const char *fname, sp_node_t **root, char *err,
                   size_t errlen)
{
    builder_t b;
    yaml_parser_t parser;
    yaml_event_t ev;
    int docs = 0;
    int rc = 0;
    bool done = false;

    *root = NULL;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    memset(&b, 0, sizeof(b));
    b.fname = fname != NULL ? fname : "<config>";
    b.err = err;
    b.errlen = errlen;
    if (buf == NULL) {
        buf = "";
        len = 0;
    }
    if (len > CONF_MAX_INPUT) {
        sp__conf_error(err, errlen, b.fname, 0, 0, NULL,
                       "configuration larger than %zu bytes", CONF_MAX_INPUT);
        return SP_ECONFIG;
    }
    b.file = strdup(b.fname);
    if (b.file == NULL) {
        return b_oom(&b);
    }
    if (!yaml_parser_initialize(&parser)) {
        free(b.file);
        return b_oom(&b);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = yaml_fail(&b, &parser, buf, len);
            break;
        }
        rc = on_event(&b, &ev, &docs);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc < 0) {
            break;
        }
    }
    yaml_parser_delete(&parser);
    for (int i = 0; i < b.depth; i++) {
        free(b.stack[i].key);
    }
    if (rc == 0 && b.root == NULL) {
        /* An empty file is an empty map: every setting takes its default. */
        b.root = calloc(1, sizeof(*b.root));
        if (b.root == NULL) {
            rc = b_oom(&b);
        } else {
            b.root->type = SP_NODE_MAP;
            b.root->line = 1;
            b.root->col = 1;
            b.root->file = b.file;
        }
    }
    if (rc < 0) {
        node_free(b.root);
        free(b.file);
        return rc;
    }
    *root = b.root;
    return 0;
}

int sp__conf_load(const char *path, sp_node_t **root, char *err, size_t errlen)
{
    struct stat st;
    char *buf;
    size_t len = 0;
    int fd;
    int rc;

    *root = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        sp__conf_error(err, errlen, path, 0, 0, NULL, "cannot open: %s", sp__strerror(rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        close(fd);
        sp__conf_error(err, errlen, path, 0, 0, NULL, "cannot stat: %s", sp__strerror(rc));
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        sp__conf_error(err, errlen, path, 0, 0, NULL, "not a regular file");
        return -EINVAL;
    }
    if ((uint64_t)st.st_size > CONF_MAX_INPUT) {
        close(fd);
        sp__conf_error(err, errlen, path, 0, 0, NULL, "configuration larger than %zu bytes",
                       CONF_MAX_INPUT);
        return SP_ECONFIG;
    }
    buf = malloc(CONF_MAX_INPUT + 1);
    if (buf == NULL) {
        close(fd);
        return SP_ENOMEM;
    }
    /* Read to EOF rather than trusting st_size: the file may be changing. */
    for (;;) {
        ssize_t r = read(fd, buf + len, CONF_MAX_INPUT + 1 - len);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = -errno;
            close(fd);
            free(buf);
            sp__conf_error(err, errlen, path, 0, 0, NULL, "read error: %s", sp__strerror(rc));
            return rc;
        }
        if (r == 0 || len + (size_t)r > CONF_MAX_INPUT) {
            len += (size_t)r;
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    rc = sp__conf_parse(buf, len, path, root, err, errlen);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Value parsers. Internally SP_ETOOBIG tells overflow apart from junk so that
 * messages can say which; the public functions fold both into SP_EINVAL. */

static int parse_digits(const char **ps, uint64_t *out)
{
    const char *s = *ps;
    uint64_t v = 0;
    bool big = false;

    if (*s < '0' || *s > '9') {
        return SP_EINVAL;
    }
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');

        if (v > (UINT64_MAX - d) / 10) {
            big = true;
        } else {
            v = v * 10 + d;
        }
        s++;
    }
    *ps = s;
    *out = v;
    return big ? SP_ETOOBIG : 0;
}

static const char *skip_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    return s;
}

static int parse_int_ex(const char *s, int64_t *out)
{
    bool neg = false;
    uint64_t mag;
    int rc;

    if (s == NULL) {
        return SP_EINVAL;
    }
    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    rc = parse_digits(&s, &mag);
    if (rc == SP_EINVAL || *s != '\0') {
        return SP_EINVAL;
    }
    if (rc == SP_ETOOBIG) {
        return SP_ETOOBIG;
    }
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) {
            return SP_ETOOBIG;
        }
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX) {
            return SP_ETOOBIG;
        }
        *out = (int64_t)mag;
    }
    return 0;
}

/* Multiply with an overflow check. */
static int scale(uint64_t v, uint64_t mult, uint64_t *out)
{
    if (mult != 0 && v > UINT64_MAX / mult) {
        return SP_ETOOBIG;
    }
    *out = v * mult;
    return 0;
}

static int parse_size_ex(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1ull << 10},
        {"kb", 1ull << 10},
        {"kib", 1ull << 10},
        {"m", 1ull << 20},
        {"mb", 1ull << 20},
        {"mib", 1ull << 20},
        {"g", 1ull << 30},
        {"gb", 1ull << 30},
        {"gib", 1ull << 30},
        {"t", 1ull << 40},
        {"tb", 1ull << 40},
        {"tib", 1ull << 40},
    };
    uint64_t v;
    int rc;

    if (s == NULL) {
        return SP_EINVAL;
    }
    rc = parse_digits(&s, &v);
    if (rc == SP_EINVAL) {
        return rc;
    }
    s = skip_blanks(s);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(s, units[i].unit) == 0) {
            return rc < 0 ? rc : scale(v, units[i].mult, out);
        }
    }
    return SP_EINVAL;
}

static int parse_duration_ex(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    uint64_t v;
    int rc;

    if (s == NULL) {
        return SP_EINVAL;
    }
    rc = parse_digits(&s, &v);
    if (rc == SP_EINVAL) {
        return rc;
    }
    s = skip_blanks(s);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(s, units[i].unit) == 0) {
            return rc < 0 ? rc : scale(v, units[i].mult, ms);
        }
    }
    return SP_EINVAL;
}

static int parse_bool_ex(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};

    if (s == NULL) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return SP_EINVAL;
}

int sp__conf_parse_bool(const char *s, bool *out)
{
    return parse_bool_ex(s, out) < 0 ? SP_EINVAL : 0;
}

int sp__conf_parse_int(const char *s, int64_t *out)
{
    return parse_int_ex(s, out) < 0 ? SP_EINVAL : 0;
}

int sp__conf_parse_size(const char *s, uint64_t *out)
{
    return parse_size_ex(s, out) < 0 ? SP_EINVAL : 0;
}

int sp__conf_parse_duration(const char *s, uint64_t *ms)
{
    return parse_duration_ex(s, ms) < 0 ? SP_EINVAL : 0;
}

/* ------------------------------------------------------------------------ */
/* Schemas */

static const char *type_expect(sp_conf_type_t t)
{
    switch (t) {
    case SP_CONF_STR:
        return "a string";
    case SP_CONF_INT:
        return "an integer";
    case SP_CONF_BOOL:
        return "a boolean (true/false, yes/no, on/off)";
    case SP_CONF_SIZE:
        return "a size (e.g. 512, 64K, 10M, 1G)";
    case SP_CONF_DURATION:
        return "a duration (e.g. 250ms, 30s, 5m, 2h, 1d)";
    }
    return "a value";
}

static const char *node_kind(const sp_node_t *n)
{
    return n->type == SP_NODE_MAP ? "a map" : n->type == SP_NODE_SEQ ? "a list" : "a scalar";
}

/* Store one value; 0, SP_EINVAL, SP_ETOOBIG, SP_ENOMEM or SP_ECONFIG (bad type). */
static int item_set(const sp_conf_item_t *it, const char *s, void *out)
{
    char *base = (char *)out + it->offset;

    switch (it->type) {
    case SP_CONF_STR: {
        char *copy = strdup(s);

        if (copy == NULL) {
            return SP_ENOMEM;
        }
        free(*(char **)base);
        *(char **)base = copy;
        return 0;
    }
    case SP_CONF_INT: {
        int64_t v;
        int rc = parse_int_ex(s, &v);

        if (rc == 0) {
            memcpy(base, &v, sizeof(v));
        }
        return rc;
    }
    case SP_CONF_BOOL: {
        bool v;
        int rc = parse_bool_ex(s, &v);

        if (rc == 0) {
            memcpy(base, &v, sizeof(v));
        }
        return rc;
    }
    case SP_CONF_SIZE:
    case SP_CONF_DURATION: {
        uint64_t v;
        int rc = it->type == SP_CONF_SIZE ? parse_size_ex(s, &v) : parse_duration_ex(s, &v);

        if (rc == 0) {
            memcpy(base, &v, sizeof(v));
        }
        return rc;
    }
    }
    return SP_ECONFIG;
}

static void join_path(char *out, size_t outlen, const char *path, const char *key)
{
    char q[CONF_MSG_VALUE_MAX * 6 + 8];

    /* Keys come from the file: escape them so the message stays one line. */
    sp__json_escape(q, sizeof(q), key, strlen(key) > CONF_MSG_VALUE_MAX ? CONF_MSG_VALUE_MAX
                                                                         : strlen(key));
    if (path != NULL && path[0] != '\0') {
        snprintf(out, outlen, "%s.%s", path, q);
    } else {
        snprintf(out, outlen, "%s", q);
    }
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        if (strcmp(list[i], s) == 0) {
            return true;
        }
    }
    return false;
}

/* "a, b, c" of the keys a map accepts, for "unknown key" messages. */
static void known_keys(char *out, size_t outlen, const sp_conf_item_t *schema,
                       const char *const *skip)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; schema != NULL && schema[i].name != NULL; i++) {
        int n = snprintf(out + o, outlen - o, "%s%s", o ? ", " : "", schema[i].name);

        if (n < 0 || (size_t)n >= outlen - o) {
            out[o] = '\0';
            return;
        }
        o += (size_t)n;
    }
    for (size_t i = 0; skip != NULL && skip[i] != NULL; i++) {
        int n = snprintf(out + o, outlen - o, "%s%s", o ? ", " : "", skip[i]);

        if (n < 0 || (size_t)n >= outlen - o) {
            out[o] = '\0';
            return;
        }
        o += (size_t)n;
    }
}

int sp__conf_apply_schema_ex(const sp_node_t *map, const char *file, int line, int col,
                             const char *path, const sp_conf_item_t *schema,
                             const char *const *skip, void *out, char *err, size_t errlen)
{
    char kp[512];
    char q[CONF_MSG_VALUE_MAX * 6 + 8];
    char known[256];
    const sp_node_t *c;
    size_t nitems = 0;
    bool *seen = NULL;
    int rc = 0;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (map != NULL) {
        if (file == NULL) {
            file = map->file;
        }
        line = map->line;
        col = map->col;
        if (sp__conf_is_null(map)) {
            map = NULL; /* "config:" with nothing after it */
        } else if (map->type != SP_NODE_MAP) {
            sp__conf_error(err, errlen, file, line, col, path, "expected a map, got %s",
                           node_kind(map));
            return SP_ECONFIG;
        }
    }
    while (schema != NULL && schema[nitems].name != NULL) {
        nitems++;
    }
    if (nitems > 0) {
        seen = calloc(nitems, sizeof(*seen));
        if (seen == NULL) {
            return SP_ENOMEM;
        }
    }
    for (c = map ? map->child : NULL; c != NULL; c = c->next) {
        const sp_conf_item_t *it = NULL;
        size_t i;

        if (in_list(skip, c->key)) {
            continue;
        }
        for (i = 0; i < nitems; i++) {
            if (strcmp(schema[i].name, c->key) == 0) {
                it = &schema[i];
                break;
            }
        }
        join_path(kp, sizeof(kp), path, c->key);
        if (it == NULL) {
            known_keys(known, sizeof(known), schema, skip);
            if (known[0] != '\0') {
                sp__conf_error(err, errlen, file, c->key_line, c->key_col, kp,
                               "unknown key (known keys: %s)", known);
            } else {
                sp__conf_error(err, errlen, file, c->key_line, c->key_col, kp,
                               "unknown key (this map takes no keys)");
            }
            rc = SP_ECONFIG;
            goto fail;
        }
        if (sp__conf_is_null(c)) {
            continue; /* "key:" alone: as if absent, so the default applies */
        }
        if (c->type != SP_NODE_SCALAR) {
            sp__conf_error(err, errlen, file, c->line, c->col, kp, "expected %s, got %s",
                           type_expect(it->type), node_kind(c));
            rc = SP_ECONFIG;
            goto fail;
        }
        rc = item_set(it, c->value, out);
        if (rc == SP_ENOMEM) {
            goto fail;
        }
        if (rc < 0) {
            if (it->flags & SP_CONF_SECRET) {
                snprintf(q, sizeof(q), "a value not shown here (secret)");
            } else {
                sp__conf_quote(q, sizeof(q), c->value);
            }
            sp__conf_error(err, errlen, file, c->line, c->col, kp, "expected %s, got %s%s",
                           type_expect(it->type), q,
                           rc == SP_ETOOBIG ? " (out of range)" : "");
            rc = SP_ECONFIG;
            goto fail;
        }
        seen[i] = true;
    }
    for (size_t i = 0; i < nitems; i++) {
        const sp_conf_item_t *it = &schema[i];

        if (seen[i]) {
            continue;
        }
        join_path(kp, sizeof(kp), path, it->name);
        if (it->def != NULL) {
            rc = item_set(it, it->def, out);
            if (rc == SP_ENOMEM) {
                goto fail;
            }
            if (rc < 0) {
                sp__conf_quote(q, sizeof(q), it->def);
                sp__conf_error(err, errlen, file, line, col, kp,
                               "the schema's default %s is not %s", q, type_expect(it->type));
                rc = SP_ECONFIG;
                goto fail;
            }
        } else if (it->flags & SP_CONF_REQUIRED) {
            sp__conf_error(err, errlen, file, line, col, kp, "missing required key");
            rc = SP_ECONFIG;
            goto fail;
        }
    }
    free(seen);
    return 0;
fail:
    if (rc == SP_ENOMEM) {
        sp__conf_error(err, errlen, file, line, col, path, "out of memory");
    }
    free(seen);
    sp__conf_schema_free(schema, out);
    return rc;
}

int sp__conf_apply_schema(const sp_node_t *map, const char *file, const char *path,
                          const sp_conf_item_t *schema, void *out, char *err, size_t errlen)
{
    return sp__conf_apply_schema_ex(map, file, 0, 0, path, schema, NULL, out, err, errlen);
}

void sp__conf_schema_free(const sp_conf_item_t *schema, void *out)
{
    if (schema == NULL || out == NULL) {
        return;
    }
    for (size_t i = 0; schema[i].name != NULL; i++) {
        if (schema[i].type == SP_CONF_STR) {
            char **p = (char **)((char *)out + schema[i].offset);

            free(*p);
            *p = NULL;
        }
    }
}
