/* SPDX-License-Identifier: Apache-2.0 */
/* Stored templates: one record per template in SP_DB_TEMPLATES, keyed by
 * team(be64) || id (13 characters, the time-ordered id of id.c), valued by a
 * message record (msg.c's msgpack map, whose "v" is the record version) with
 * the fields id, name, subject, html, text, created_at, updated_at. The host
 * API reads them (template_load, for the api_usesend check and the render
 * plugin); `sendpipe templates ...` writes them, beside a running server like
 * the tenancy commands (LMDB serialises writers across processes). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "sp_core/cli_store.h"
#include "sp_core/conf.h"
#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/templates.h"
#include "sp_core/tenancy.h"

#define KEY_LEN (8 + SP_ID_STRLEN)
#define ID_TRIES 8

static const char *const str_fields[] = {"id", "name", "subject", "html", "text"};
#define NSTR (sizeof(str_fields) / sizeof(str_fields[0]))

/* The canonical (lower-case) form of an id string, or SP_EINVAL. */
static int id_norm(const char *id, char out[SP_ID_STRLEN + 1])
{
    uint64_t v;

    if (!id || sp__id_parse(id, strlen(id), &v) != 0) {
        return SP_EINVAL;
    }
    sp__id_str(v, out);
    return 0;
}

static void make_key(int64_t team, const char *id, uint8_t key[KEY_LEN])
{
    sp__be64_put(key, (uint64_t)team);
    memcpy(key + 8, id, SP_ID_STRLEN);
}

/* The public view of a record: the string fields, absent when empty. */
static int public_view(const sp_msg_t *rec, sp_msg_t **out)
{
    sp_msg_t *m = sp__msg_new();
    int rc = m ? 0 : SP_ENOMEM;

    for (size_t i = 0; i < NSTR && rc == 0; i++) {
        size_t l;
        const char *v = sp__msg_get(rec, str_fields[i], &l);
        if (v && l > 0) {
            rc = sp__msg_set(m, str_fields[i], v, l);
        }
    }
    if (rc != 0) {
        sp__msg_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int sp__templates_load_in(sp_store_t *st, int64_t team, const char *id, sp_msg_t **out)
{
    char nid[SP_ID_STRLEN + 1];
    uint8_t key[KEY_LEN];
    sp_msg_t *rec = NULL;
    sp_rtxn_t *r;
    const void *v;
    size_t vl;
    int rc;

    if (!st || !out) {
        return SP_EINVAL;
    }
    if (team <= 0 || id_norm(id, nid) != 0) {
        return SP_ENOTFOUND;
    }
    make_key(team, nid, key);
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        return rc;
    }
    rc = sp__rtxn_get(r, SP_DB_TEMPLATES, key, sizeof(key), &v, &vl);
    if (rc == 0) {
        rc = sp__msg_decode(v, vl, &rec);
    }
    sp__store_read_end(r);
    if (rc != 0) {
        return rc;
    }
    rc = public_view(rec, out);
    sp__msg_free(rec);
    return rc;
}

int sp__templates_load(int64_t team, const char *id, sp_msg_t **out)
{
    if (!sp__core || !sp__core->store) {
        return SP_ESTATE;
    }
    return sp__templates_load_in(sp__core->store, team, id, out);
}

/* ------------------------------------------------------------------------ */
/* The CLI */

enum {
    O_TEAM = 1 << 0,
    O_NAME = 1 << 1,
    O_SUBJECT = 1 << 2,
    O_HTML = 1 << 3,
    O_TEXT = 1 << 4,
    O_JSON = 1 << 5,
};

/* A value given on the command line: inline or read from a file. */
typedef struct val {
    bool set;
    char *p; /* owned */
    size_t len;
} val_t;

typedef struct cli {
    const char *config;
    const char *team;
    const char *html_file, *text_file;
    val_t name, subject, html, text;
    bool json;
    unsigned given;
    int argc;
    char **argv;
    sp_cli_store_t s;
} cli_t;

typedef enum { J_ADD, J_UPDATE, J_DEL } jkind_t;

typedef struct job {
    jkind_t kind;
    const cli_t *c;
    int64_t team;
    char id[SP_ID_STRLEN + 1]; /* in (update, del) or out (add) */
    int64_t now;
} job_t;

static int cli_open(cli_t *c)
{
    return sp__cli_store_open(&c->s, c->config);
}

static void cli_close(cli_t *c)
{
    sp__cli_store_close(&c->s);
    free(c->name.p);
    free(c->subject.p);
    free(c->html.p);
    free(c->text.p);
}

static int put_val(sp_msg_t *m, const char *field, const val_t *v)
{
    return v->set ? sp__msg_set(m, field, v->p, v->len) : 0;
}

static bool has_body(const sp_msg_t *m)
{
    size_t hl = 0, tl = 0;

    (void)sp__msg_get(m, "html", &hl);
    (void)sp__msg_get(m, "text", &tl);
    return hl > 0 || tl > 0;
}

static int put_rec(sp_wtxn_t *w, const uint8_t *key, const sp_msg_t *m)
{
    void *buf;
    size_t len;
    int rc = sp__msg_encode(m, &buf, &len);

    if (rc == 0) {
        rc = sp__wtxn_put(w, SP_DB_TEMPLATES, key, KEY_LEN, buf, len);
        free(buf);
    }
    return rc;
}

static int job_add(sp_wtxn_t *w, job_t *j)
{
    uint8_t key[KEY_LEN];
    const void *v;
    size_t vl;
    sp_msg_t *m;
    int rc;

    sp__be64_put(key, (uint64_t)j->team);
    if (sp__wtxn_get(w, SP_DB_TEAMS, key, 8, &v, &vl) != 0) {
        return SP_ENOTFOUND; /* the team went away meanwhile */
    }
    /* Another process may hand out the same id in the same millisecond. */
    for (int i = 0;; i++) {
        if (i == ID_TRIES) {
            return SP_EEXIST;
        }
        sp__id_str(sp__id_next(j->now), j->id);
        make_key(j->team, j->id, key);
        if (sp__wtxn_get(w, SP_DB_TEMPLATES, key, sizeof(key), &v, &vl) == SP_ENOTFOUND) {
            break;
        }
    }
    if (!(m = sp__msg_new())) {
        return SP_ENOMEM;
    }
    rc = sp__msg_set(m, "id", j->id, SP_ID_STRLEN);
    rc = rc ? rc : put_val(m, "name", &j->c->name);
    rc = rc ? rc : sp__msg_set(m, "subject", j->c->subject.p ? j->c->subject.p : "",
                               j->c->subject.len);
    rc = rc ? rc : sp__msg_set(m, "html", j->c->html.p ? j->c->html.p : "", j->c->html.len);
    rc = rc ? rc : sp__msg_set(m, "text", j->c->text.p ? j->c->text.p : "", j->c->text.len);
    rc = rc ? rc : sp__msg_set_int(m, "created_at", j->now);
    rc = rc ? rc : sp__msg_set_int(m, "updated_at", j->now);
    rc = rc ? rc : put_rec(w, key, m);
    sp__msg_free(m);
    return rc;
}

static int job_update(sp_wtxn_t *w, job_t *j)
{
    uint8_t key[KEY_LEN];
    const void *v;
    size_t vl;
    sp_msg_t *m;
    int rc;

    make_key(j->team, j->id, key);
    if ((rc = sp__wtxn_get(w, SP_DB_TEMPLATES, key, sizeof(key), &v, &vl)) != 0) {
        return rc;
    }
    if ((rc = sp__msg_decode(v, vl, &m)) != 0) {
        return rc;
    }
    rc = put_val(m, "name", &j->c->name);
    rc = rc ? rc : put_val(m, "subject", &j->c->subject);
    rc = rc ? rc : put_val(m, "html", &j->c->html);
    rc = rc ? rc : put_val(m, "text", &j->c->text);
    if (rc == 0 && !has_body(m)) {
        rc = SP_EINVAL;
    }
    rc = rc ? rc : sp__msg_set_int(m, "updated_at", j->now);
    rc = rc ? rc : put_rec(w, key, m);
    sp__msg_free(m);
    return rc;
}

static int job_apply(sp_wtxn_t *w, void *arg)
{
    job_t *j = arg;
    uint8_t key[KEY_LEN];

    switch (j->kind) {
    case J_ADD:
        return job_add(w, j);
    case J_UPDATE:
        return job_update(w, j);
    case J_DEL:
        make_key(j->team, j->id, key);
        return sp__wtxn_del(w, SP_DB_TEMPLATES, key, sizeof(key));
    }
    return SP_EINVAL;
}

/* Run the job as one durable write. */
static int run_job(cli_t *c, job_t *j)
{
    j->c = c;
    j->now = sp__now_ms();
    return sp__cli_store_write(&c->s, job_apply, j);
}

/* --team (a team id or name) to its id; prints the error itself. */
static int team_arg(cli_t *c, sp_team_rec_t *t)
{
    sp_rtxn_t *r;
    int rc;

    if ((rc = sp__store_read_begin(c->s.st, &r)) == 0) {
        rc = sp__tenancy_team_resolve(r, c->team, t);
        sp__store_read_end(r);
    }
    if (rc == SP_ENOTFOUND) {
        fprintf(stderr, "sendpipe: no team '%s' (see 'sendpipe teams list')\n", c->team);
    } else if (rc != 0) {
        fprintf(stderr, "sendpipe: team '%s': %s\n", c->team, sp__strerror(rc));
    }
    return rc;
}

typedef struct find {
    const char *id;
    int64_t team; /* out */
    sp_msg_t *rec; /* out */
    int rc;
} find_t;

static int find_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    find_t *f = arg;

    if (kl != KEY_LEN || memcmp((const uint8_t *)k + 8, f->id, SP_ID_STRLEN) != 0) {
        return 0;
    }
    f->team = (int64_t)sp__be64_get(k);
    f->rc = sp__msg_decode(v, vl, &f->rec);
    return 1;
}

/* The template named by the positional ID (in --team when given, else in
 * any team); prints the error itself. */
static int tpl_arg(cli_t *c, find_t *f)
{
    sp_team_rec_t t = {0};
    char id[SP_ID_STRLEN + 1];
    sp_rtxn_t *r;
    int rc;

    memset(f, 0, sizeof(*f));
    f->rc = SP_ENOTFOUND;
    if (id_norm(c->argv[0], id) != 0) {
        fprintf(stderr, "sendpipe: '%s' is not a template id (see 'sendpipe templates list')\n",
                c->argv[0]);
        return SP_EINVAL;
    }
    f->id = id;
    if (c->team && team_arg(c, &t) != 0) {
        return SP_ENOTFOUND;
    }
    if ((rc = sp__store_read_begin(c->s.st, &r)) != 0) {
        fprintf(stderr, "sendpipe: store %s: %s\n", c->s.cfg->data_dir, sp__strerror(rc));
        return rc;
    }
    if (c->team) {
        uint8_t key[KEY_LEN];
        const void *v;
        size_t vl;
        make_key(t.id, id, key);
        if (sp__rtxn_get(r, SP_DB_TEMPLATES, key, sizeof(key), &v, &vl) == 0) {
            (void)find_each(f, key, sizeof(key), v, vl);
        }
    } else {
        rc = sp__rtxn_scan(r, SP_DB_TEMPLATES, NULL, 0, NULL, 0, find_each, f);
    }
    sp__store_read_end(r);
    if (rc < 0 || f->rc != 0) {
        rc = rc < 0 ? rc : f->rc;
        if (rc == SP_ENOTFOUND) {
            fprintf(stderr, "sendpipe: no template %s%s%s\n", id, c->team ? " in team " : "",
                    c->team ? c->team : "");
        } else {
            fprintf(stderr, "sendpipe: template %s: %s\n", id, sp__strerror(rc));
        }
        sp__msg_free(f->rec);
        f->rec = NULL;
        return rc;
    }
    f->id = NULL; /* points into this frame */
    return 0;
}

static const char *iso_time(int64_t ms, char buf[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || !gmtime_r(&t, &tm)) {
        return "-";
    }
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static const char *str_of(const sp_msg_t *m, const char *f)
{
    const char *v = sp__msg_get(m, f, NULL);

    return v ? v : "";
}

static int64_t int_of(const sp_msg_t *m, const char *f)
{
    int64_t v = 0;

    (void)sp__msg_get_int(m, f, &v);
    return v;
}

/* One JSON object: the team, then the record's fields (all of them with
 * bodies, or without html and text for listings). */
static int print_json(int64_t team, const sp_msg_t *rec, bool bodies)
{
    static const char *const order[] = {"id", "name", "subject", "html", "text"};
    sp_msg_t *m = sp__msg_new();
    char *json = NULL;
    size_t jl;
    int rc = m ? sp__msg_set_int(m, "team", team) : SP_ENOMEM;

    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && rc == 0; i++) {
        size_t l;
        const char *v = sp__msg_get(rec, order[i], &l);
        if (bodies || i < 3) {
            rc = sp__msg_set(m, order[i], v ? v : "", v ? l : 0);
        }
    }
    rc = rc ? rc : sp__msg_set_int(m, "created_at", int_of(rec, "created_at"));
    rc = rc ? rc : sp__msg_set_int(m, "updated_at", int_of(rec, "updated_at"));
    rc = rc ? rc : sp__msg_to_json(m, &json, &jl);
    if (rc == 0) {
        fwrite(json, 1, jl, stdout);
    }
    free(json);
    sp__msg_free(m);
    return rc;
}

/* Read --html-file / --text-file ("-": standard input), at most max bytes. */
static int read_file(const char *path, size_t max, val_t *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf;
    size_t n = 0;

    if (!f) {
        fprintf(stderr, "sendpipe: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!(buf = malloc(max + 2))) {
        fprintf(stderr, "sendpipe: out of memory\n");
        if (f != stdin) {
            fclose(f);
        }
        return -1;
    }
    n = fread(buf, 1, max + 1, f);
    if (ferror(f)) {
        fprintf(stderr, "sendpipe: reading %s failed\n", path);
        n = max + 2;
    }
    if (f != stdin) {
        fclose(f);
    }
    if (n > max) {
        if (n == max + 1) {
            fprintf(stderr, "sendpipe: %s: larger than %zu bytes\n", path, max);
        }
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    free(out->p);
    out->p = buf;
    out->len = n;
    out->set = true;
    return 0;
}

static int set_val(val_t *v, const char *s)
{
    free(v->p);
    v->p = strdup(s);
    v->len = strlen(s);
    v->set = v->p != NULL;
    return v->set ? 0 : -1;
}

/* The given values against the limits; prints what is wrong. */
static int check_values(cli_t *c)
{
    if (c->html_file && read_file(c->html_file, SP_TEMPLATE_BODY_MAX, &c->html) != 0) {
        return -1;
    }
    if (c->text_file && read_file(c->text_file, SP_TEMPLATE_BODY_MAX, &c->text) != 0) {
        return -1;
    }
    if (c->name.set) {
        bool ok = c->name.len >= 1 && c->name.len <= SP_TEMPLATE_NAME_MAX;
        for (size_t i = 0; ok && i < c->name.len; i++) {
            ok = (unsigned char)c->name.p[i] >= 0x20 && c->name.p[i] != 0x7f;
        }
        if (!ok) {
            fprintf(stderr, "sendpipe: --name: 1 to %d bytes, no control characters\n",
                    SP_TEMPLATE_NAME_MAX);
            return -1;
        }
    }
    if (c->subject.set && (c->subject.len > SP_TEMPLATE_SUBJECT_MAX ||
                           strpbrk(c->subject.p, "\r\n") != NULL)) {
        fprintf(stderr, "sendpipe: --subject: at most %d bytes, no CR or LF\n",
                SP_TEMPLATE_SUBJECT_MAX);
        return -1;
    }
    if ((c->html.set && c->html.len > SP_TEMPLATE_BODY_MAX) ||
        (c->text.set && c->text.len > SP_TEMPLATE_BODY_MAX)) {
        fprintf(stderr, "sendpipe: --html and --text: at most %d bytes each\n",
                SP_TEMPLATE_BODY_MAX);
        return -1;
    }
    return 0;
}

static int cmd_add(cli_t *c)
{
    job_t j = {.kind = J_ADD};
    sp_team_rec_t t;
    int rc;

    if (!c->team || !c->name.set) {
        fprintf(stderr, "sendpipe: templates add needs --team TEAM and --name NAME\n");
        return 2;
    }
    if (check_values(c) != 0) {
        return 1;
    }
    if (c->html.len == 0 && c->text.len == 0) {
        fprintf(stderr, "sendpipe: a template needs html or text content (--html, "
                        "--html-file, --text, --text-file)\n");
        return 1;
    }
    if (cli_open(c) != 0 || team_arg(c, &t) != 0) {
        return 1;
    }
    j.team = t.id;
    rc = run_job(c, &j);
    if (rc != 0) {
        fprintf(stderr, "sendpipe: adding template '%s' failed: %s\n", c->name.p,
                rc == SP_ENOTFOUND ? "the team was removed" : sp__strerror(rc));
        return 1;
    }
    printf("%s\n", j.id);
    return 0;
}

typedef struct list_ctx {
    bool json;
    size_t n;
} list_ctx_t;

static int list_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    list_ctx_t *lc = arg;
    int64_t team = (int64_t)sp__be64_get(k);
    sp_msg_t *m;
    char tb[32];

    if (kl != KEY_LEN) {
        return 0;
    }
    if (sp__msg_decode(v, vl, &m) != 0) {
        if (!lc->json) {
            printf("%.*s\t(unreadable record)\n", SP_ID_STRLEN, (const char *)k + 8);
        }
        return 0;
    }
    if (lc->json) {
        printf("%s", lc->n ? ",\n " : "");
        (void)print_json(team, m, false);
    } else {
        printf("%s\t%lld\t%s\t%s\t%s\n", str_of(m, "id"), (long long)team, str_of(m, "name"),
               str_of(m, "subject"), iso_time(int_of(m, "updated_at"), tb));
    }
    lc->n++;
    sp__msg_free(m);
    return 0;
}

static int cmd_list(cli_t *c)
{
    list_ctx_t lc = {.json = c->json};
    sp_team_rec_t t;
    uint8_t prefix[8];
    sp_rtxn_t *r;
    int rc;

    if (!c->team) {
        fprintf(stderr, "sendpipe: templates list needs --team TEAM\n");
        return 2;
    }
    if (cli_open(c) != 0 || team_arg(c, &t) != 0) {
        return 1;
    }
    if ((rc = sp__store_read_begin(c->s.st, &r)) != 0) {
        fprintf(stderr, "sendpipe: store %s: %s\n", c->s.cfg->data_dir, sp__strerror(rc));
        return 1;
    }
    sp__be64_put(prefix, (uint64_t)t.id);
    printf("%s", c->json ? "[" : "ID\tTEAM\tNAME\tSUBJECT\tUPDATED\n");
    rc = sp__rtxn_scan(r, SP_DB_TEMPLATES, prefix, 8, prefix, 8, list_each, &lc);
    sp__store_read_end(r);
    if (c->json) {
        printf("]\n");
    }
    if (rc < 0) {
        fprintf(stderr, "sendpipe: listing templates failed: %s\n", sp__strerror(rc));
    }
    return rc < 0 ? 1 : 0;
}

static int cmd_show(cli_t *c)
{
    find_t f;
    char cb[32], ub[32];
    size_t hl = 0, tl = 0;
    const char *html, *text;

    if (cli_open(c) != 0 || tpl_arg(c, &f) != 0) {
        return 1;
    }
    if (c->json) {
        (void)print_json(f.team, f.rec, true);
        printf("\n");
    } else {
        html = sp__msg_get(f.rec, "html", &hl);
        text = sp__msg_get(f.rec, "text", &tl);
        printf("id: %s\nteam: %lld\nname: %s\nsubject: %s\ncreated: %s\nupdated: %s\n",
               str_of(f.rec, "id"), (long long)f.team, str_of(f.rec, "name"),
               str_of(f.rec, "subject"), iso_time(int_of(f.rec, "created_at"), cb),
               iso_time(int_of(f.rec, "updated_at"), ub));
        printf("--- html (%zu bytes)\n", hl);
        fwrite(html ? html : "", 1, hl, stdout);
        printf("%s--- text (%zu bytes)\n", hl && html[hl - 1] != '\n' ? "\n" : "", tl);
        fwrite(text ? text : "", 1, tl, stdout);
        printf("%s", tl && text[tl - 1] != '\n' ? "\n" : "");
    }
    sp__msg_free(f.rec);
    return 0;
}

/* update and rm: find the template, then write under its team. */
static int cmd_write(cli_t *c, jkind_t kind)
{
    job_t j = {.kind = kind};
    find_t f;
    int rc;

    if (kind == J_UPDATE) {
        if (!(c->given & (O_NAME | O_SUBJECT | O_HTML | O_TEXT))) {
            fprintf(stderr, "sendpipe: templates update: nothing to change (--name, --subject, "
                            "--html[-file], --text[-file])\n");
            return 2;
        }
        if (check_values(c) != 0) {
            return 1;
        }
    }
    if (cli_open(c) != 0 || tpl_arg(c, &f) != 0) {
        return 1;
    }
    j.team = f.team;
    snprintf(j.id, sizeof(j.id), "%s", str_of(f.rec, "id"));
    rc = run_job(c, &j);
    if (rc == SP_EINVAL) {
        fprintf(stderr, "sendpipe: a template needs html or text content\n");
    } else if (rc != 0) {
        fprintf(stderr, "sendpipe: template %s: %s\n", j.id,
                rc == SP_ENOTFOUND ? "removed meanwhile" : sp__strerror(rc));
    } else {
        printf("%s template %s (%s)\n", kind == J_DEL ? "removed" : "updated", j.id,
               c->name.set ? c->name.p : str_of(f.rec, "name"));
    }
    sp__msg_free(f.rec);
    return rc == 0 ? 0 : 1;
}

static int cmd_update(cli_t *c)
{
    return cmd_write(c, J_UPDATE);
}

static int cmd_rm(cli_t *c)
{
    return cmd_write(c, J_DEL);
}

/* ------------------------------------------------------------------------ */
/* Dispatch */

typedef struct command {
    const char *sub;
    int (*fn)(cli_t *c);
    int nargs;
    unsigned opts;
    const char *usage;
    const char *help;
} command_t;

#define BODY_OPTS "[--subject S] [--html S | --html-file F] [--text S | --text-file F]"

static const command_t commands[] = {
    {"add", cmd_add, 0, O_TEAM | O_NAME | O_SUBJECT | O_HTML | O_TEXT,
     "templates add [-c FILE] --team TEAM --name NAME " BODY_OPTS,
     "store a template (html or text required); prints its id"},
    {"list", cmd_list, 0, O_TEAM | O_JSON, "templates list [-c FILE] --team TEAM [--json]",
     "a team's templates, oldest first"},
    {"show", cmd_show, 1, O_TEAM | O_JSON, "templates show [-c FILE] [--team TEAM] [--json] ID",
     "one template with its content"},
    {"update", cmd_update, 1, O_TEAM | O_NAME | O_SUBJECT | O_HTML | O_TEXT,
     "templates update [-c FILE] [--team TEAM] [--name NAME] " BODY_OPTS " ID",
     "change a template's given parts (an empty value clears it)"},
    {"rm", cmd_rm, 1, O_TEAM, "templates rm [-c FILE] [--team TEAM] ID", "remove a template"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        fprintf(f, "  sendpipe %s\n      %s\n", commands[i].usage, commands[i].help);
    }
    fprintf(f, "TEAM is a team id or name; '-' as a file reads standard input. "
               "See docs/templates.md.\n");
}

int sp__templates_cli(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"team", required_argument, NULL, 't'},
        {"name", required_argument, NULL, 'n'},     {"subject", required_argument, NULL, 's'},
        {"html", required_argument, NULL, 'H'},     {"html-file", required_argument, NULL, 'F'},
        {"text", required_argument, NULL, 'T'},     {"text-file", required_argument, NULL, 'G'},
        {"json", no_argument, NULL, 'j'},           {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const command_t *cmd = NULL;
    cli_t c = {0};
    int o, rc = 0;

    if (argc < 1 || !argv || !argv[0]) {
        return 2;
    }
    {
        int st = 0;
        int i = sp__cli_subcommand(argc, argv, "templates", commands, NCOMMANDS, sizeof(commands[0]),
                                   usage, &st);
        if (i < 0) {
            return st;
        }
        cmd = &commands[i];
    }
    optind = 0;
    opterr = 0;
    while (rc == 0 && (o = getopt_long(argc - 1, argv + 1, "c:t:n:s:jh", opts, NULL)) != -1) {
        unsigned bit = 0;
        switch (o) {
        case 'c':
            c.config = optarg;
            continue;
        case 't':
            c.team = optarg;
            bit = O_TEAM;
            break;
        case 'n':
            rc = set_val(&c.name, optarg);
            bit = O_NAME;
            break;
        case 's':
            rc = set_val(&c.subject, optarg);
            bit = O_SUBJECT;
            break;
        case 'H':
        case 'F':
            if (c.given & O_HTML) {
                fprintf(stderr, "sendpipe: give --html or --html-file once\n");
                rc = 2;
            } else if (o == 'H') {
                rc = set_val(&c.html, optarg);
            } else {
                c.html_file = optarg;
            }
            bit = O_HTML;
            break;
        case 'T':
        case 'G':
            if (c.given & O_TEXT) {
                fprintf(stderr, "sendpipe: give --text or --text-file once\n");
                rc = 2;
            } else if (o == 'T') {
                rc = set_val(&c.text, optarg);
            } else {
                c.text_file = optarg;
            }
            bit = O_TEXT;
            break;
        case 'j':
            c.json = true;
            bit = O_JSON;
            break;
        case 'h':
            printf("usage: sendpipe %s\n  %s\n", cmd->usage, cmd->help);
            cli_close(&c);
            return 0;
        default:
            fprintf(stderr, "sendpipe: templates %s: unknown option or missing value: %s\n",
                    cmd->sub, argv[optind > 1 ? optind : 1]);
            rc = 2;
            break;
        }
        if (rc == 0 && !(cmd->opts & bit)) {
            fprintf(stderr, "sendpipe: templates %s does not take that option\n", cmd->sub);
            rc = 2;
        }
        c.given |= bit;
    }
    c.argc = argc - 1 - optind;
    c.argv = argv + 1 + optind;
    if (rc == 0 && c.argc != cmd->nargs) {
        rc = 2;
    }
    if (rc != 0) {
        fprintf(stderr, "usage: sendpipe %s\n", cmd->usage);
        cli_close(&c);
        return rc < 0 ? 1 : 2;
    }
    sp__log_set_level(SP_LOG_ERROR);
    rc = cmd->fn(&c);
    cli_close(&c);
    return rc;
}
