/* SPDX-License-Identifier: Apache-2.0 */
/* `sendpipe teams|keys|domains ...`: manage tenancy from the command line,
 * as a second process beside a running server (LMDB serialises writers
 * across processes with its lock file). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>

#include "sp_core/cli_store.h"
#include "sp_core/conf.h"
#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/tenancy.h"


/* Options, as a mask of what each command accepts. */
enum {
    O_TEAM = 1 << 0,
    O_NAME = 1 << 1,
    O_PERM = 1 << 2,
    O_DOMAIN = 1 << 3,
    O_REGION = 1 << 4,
    O_VERIFIED = 1 << 5,
    O_DKIM_ALG = 1 << 6,
    O_DKIM_SEL = 1 << 7,
    O_ROTATE = 1 << 8,
    O_JSON = 1 << 9,
    O_OPEN_TRACKING = 1 << 10,  /* domains add --open-tracking */
    O_CLICK_TRACKING = 1 << 11, /* domains add --click-tracking */
    O_OPEN = 1 << 12,           /* domains tracking --open on|off */
    O_CLICK = 1 << 13,          /* domains tracking --click on|off */
};

typedef struct cli {
    const char *config;
    const char *team;
    const char *name;
    const char *perm;
    const char *domain;
    const char *region;
    const char *dkim_alg;
    const char *dkim_sel;
    const char *open;  /* --open on|off */
    const char *click; /* --click on|off */
    bool verified;
    bool rotate;
    bool json;
    unsigned given; /* O_* seen */
    int argc;       /* positional arguments after the sub-command */
    char **argv;
    sp_cli_store_t s;
} cli_t;

typedef struct command {
    const char *word;
    const char *sub;
    int (*fn)(cli_t *c);
    int nargs;
    unsigned opts;
    const char *usage;
    const char *help;
} command_t;

/* ------------------------------------------------------------------------ */
/* Configuration, store, one write at a time */

static int cli_open(cli_t *c)
{
    return sp__cli_store_open(&c->s, c->config);
}

static void cli_close(cli_t *c)
{
    sp__cli_store_close(&c->s);
}

typedef enum {
    J_TEAM_ADD,
    J_KEY_ADD,
    J_KEY_REVOKE,
    J_DOMAIN_ADD,
    J_DOMAIN_STATUS,
    J_DOMAIN_DEL,
    J_DOMAIN_DKIM,
    J_DOMAIN_TRACKING
} jkind_t;

typedef struct job {
    jkind_t kind;
    int64_t team, id, domain_id, now;
    const char *name, *region;
    const char *dkim_sel, *dkim_alg, *dkim_pem; /* J_DOMAIN_ADD, J_DOMAIN_DKIM */
    int status;
    int open, click; /* J_DOMAIN_ADD, J_DOMAIN_TRACKING: 1 on, 0 off, -1 unchanged */
    sp_domain_rec_t *out_dom; /* J_DOMAIN_TRACKING: the record as written */
    sp_permission_t perm;
    uint8_t skey[SP_TENANCY_SECRET_LEN];
    int64_t out_id;
    char token[SP_KEY_TOKEN_LEN + 1];
} job_t;

static int job_apply(sp_wtxn_t *w, void *arg)
{
    job_t *j = arg;

    switch (j->kind) {
    case J_TEAM_ADD:
        return sp__tenancy_team_add(w, j->name, j->now, &j->out_id);
    case J_KEY_ADD:
        return sp__tenancy_key_add(w, j->team, j->name, j->perm, j->domain_id, j->skey, j->now,
                                   &j->out_id, j->token);
    case J_KEY_REVOKE:
        return sp__tenancy_key_revoke(w, j->id, j->now);
    case J_DOMAIN_ADD: {
        /* The domain and its key in one transaction: never one without the
         * other. */
        int rc = sp__tenancy_domain_add(w, j->team, j->name, j->region, j->status, j->now,
                                        &j->out_id);
        if (rc == 0 && j->dkim_pem) {
            rc = sp__tenancy_domain_set_dkim(w, j->out_id, j->dkim_sel, j->dkim_alg, j->dkim_pem);
        }
        if (rc == 0 && (j->open > 0 || j->click > 0)) {
            rc = sp__tenancy_domain_set_tracking(w, j->out_id, j->open, j->click, NULL);
        }
        return rc;
    }
    case J_DOMAIN_DKIM:
        return sp__tenancy_domain_set_dkim(w, j->id, j->dkim_sel, j->dkim_alg, j->dkim_pem);
    case J_DOMAIN_STATUS:
        return sp__tenancy_domain_set_status(w, j->id, j->status);
    case J_DOMAIN_DEL:
        return sp__tenancy_domain_del(w, j->id);
    case J_DOMAIN_TRACKING:
        return sp__tenancy_domain_set_tracking(w, j->id, j->open, j->click, j->out_dom);
    }
    return SP_EINVAL;
}

/* Run the job as one durable write. */
static int run_job(cli_t *c, job_t *j)
{
    j->now = sp__now_ms();
    return sp__cli_store_write(&c->s, job_apply, j);
}

static int read_begin(cli_t *c, sp_rtxn_t **r)
{
    return sp__cli_store_read(&c->s, r);
}

/* ------------------------------------------------------------------------ */
/* Output helpers */

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

static int no_team(const char *ref, int rc)
{
    if (rc == SP_ENOTFOUND) {
        fprintf(stderr, "sendpipe: no team '%s' (see 'sendpipe teams list')\n", ref);
    } else {
        fprintf(stderr, "sendpipe: team '%s': %s\n", ref, sp__strerror(rc));
    }
    return 1;
}

/* Resolve --team to a record in a short read transaction. */
static int team_lookup(cli_t *c, const char *ref, sp_team_rec_t *t)
{
    sp_rtxn_t *r;
    int rc;

    if (read_begin(c, &r) != 0) {
        return -1;
    }
    rc = sp__tenancy_team_resolve(r, ref, t);
    sp__store_read_end(r);
    if (rc != 0) {
        no_team(ref, rc);
        return -1;
    }
    return 0;
}

static bool is_id(const char *s)
{
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

static int parse_id(const char *s, int64_t *id)
{
    char *end;
    long long v;

    if (!is_id(s)) {
        return SP_EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end || v <= 0) {
        return SP_EINVAL;
    }
    *id = (int64_t)v;
    return 0;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return false;
        }
    }
    return n <= SP_KEY_NAME_MAX;
}

/* A domain by id or by name. */
static int domain_lookup(sp_rtxn_t *r, const char *ref, sp_domain_rec_t *d)
{
    int64_t id;

    if (parse_id(ref, &id) == 0) {
        return sp__tenancy_domain_rec_get(r, id, d);
    }
    return sp__tenancy_domain_rec_find(r, ref, d);
}

/* ------------------------------------------------------------------------ */
/* teams */

static int cmd_teams_create(cli_t *c)
{
    job_t j = {.kind = J_TEAM_ADD, .name = c->argv[0]};
    int rc;

    if (sp__tenancy_team_name_check(j.name) != 0) {
        fprintf(stderr,
                "sendpipe: invalid team name '%s': 1 to %d characters, no control characters, "
                "no leading or trailing space, not only digits\n",
                j.name, SP_TEAM_NAME_MAX);
        return 1;
    }
    if (cli_open(c) != 0) {
        return 1;
    }
    rc = run_job(c, &j);
    if (rc == SP_EEXIST) {
        fprintf(stderr, "sendpipe: a team named '%s' already exists\n", j.name);
    } else if (rc != 0) {
        fprintf(stderr, "sendpipe: creating team '%s' failed: %s\n", j.name, sp__strerror(rc));
    } else {
        printf("created team %lld (%s)\n", (long long)j.out_id, j.name);
    }
    return rc == 0 ? 0 : 1;
}

static int print_team(void *arg, const sp_team_rec_t *t)
{
    char tb[32];

    (void)arg;
    printf("%lld\t%s\t%s\n", (long long)t->id, t->name, iso_time(t->created_at, tb));
    return 0;
}

static int cmd_teams_list(cli_t *c)
{
    sp_rtxn_t *r;
    int rc;

    if (cli_open(c) != 0 || read_begin(c, &r) != 0) {
        return 1;
    }
    printf("ID\tNAME\tCREATED\n");
    rc = sp__tenancy_team_each(r, print_team, NULL);
    sp__store_read_end(r);
    if (rc < 0) {
        fprintf(stderr, "sendpipe: listing teams failed: %s\n", sp__strerror(rc));
    }
    return rc < 0 ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* keys */

static int cmd_keys_create(cli_t *c)
{
    job_t j = {.kind = J_KEY_ADD, .name = c->name, .perm = SP_PERM_FULL};
    sp_team_rec_t t;
    char dname[SP_DOMAIN_NAME_MAX + 1] = "";
    int rc;

    if (!c->team) {
        fprintf(stderr, "sendpipe: keys create needs --team TEAM\n");
        return 2;
    }
    if (c->perm) {
        if (strcasecmp(c->perm, "full") == 0) {
            j.perm = SP_PERM_FULL;
        } else if (strcasecmp(c->perm, "sending") == 0) {
            j.perm = SP_PERM_SENDING;
        } else {
            fprintf(stderr, "sendpipe: --permission: expected full or sending\n");
            return 2;
        }
    }
    if (c->name && !name_ok(c->name)) {
        fprintf(stderr, "sendpipe: --name: at most %d characters, no control characters\n",
                SP_KEY_NAME_MAX);
        return 1;
    }
    if (cli_open(c) != 0 || team_lookup(c, c->team, &t) != 0) {
        return 1;
    }
    j.team = t.id;
    if (c->domain) {
        sp_domain_rec_t d;
        sp_rtxn_t *r;
        if (read_begin(c, &r) != 0) {
            return 1;
        }
        rc = sp__tenancy_domain_rec_find(r, c->domain, &d);
        sp__store_read_end(r);
        if (rc != 0 || d.team != t.id) {
            fprintf(stderr, "sendpipe: '%s' is not a domain of team %lld (%s)\n", c->domain,
                    (long long)t.id, t.name);
            return 1;
        }
        j.domain_id = d.id;
        snprintf(dname, sizeof(dname), "%s", d.name);
    }
    if ((rc = sp__tenancy_secret(c->s.cfg->data_dir, true, j.skey)) != 0) {
        fprintf(stderr, "sendpipe: %s/%s: %s\n", c->s.cfg->data_dir, SP_TENANCY_SECRET_FILE,
                sp__strerror(rc));
        return 1;
    }
    rc = run_job(c, &j);
    OPENSSL_cleanse(j.skey, sizeof(j.skey));
    if (rc == SP_ENOTFOUND) {
        return no_team(c->team, rc);
    }
    if (rc == SP_EINVAL) {
        fprintf(stderr, "sendpipe: the domain was removed meanwhile, or the name is invalid\n");
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "sendpipe: creating the key failed: %s\n", sp__strerror(rc));
        return 1;
    }
    printf("created API key %lld for team %lld (%s), permission %s, %s%s\n",
           (long long)j.out_id, (long long)t.id, t.name,
           j.perm == SP_PERM_FULL ? "FULL" : "SENDING", dname[0] ? "only domain " : "any domain",
           dname);
    printf("%s\n", j.token);
    fflush(stdout);
    fprintf(stderr, "Store this key now: it cannot be shown again.\n");
    OPENSSL_cleanse(j.token, sizeof(j.token));
    return 0;
}

typedef struct keys_ctx {
    sp_rtxn_t *r;
} keys_ctx_t;

static int print_key(void *arg, const sp_key_rec_t *k)
{
    keys_ctx_t *kc = arg;
    char tb[32], rb[32], dom[SP_DOMAIN_NAME_MAX + 32];
    sp_domain_rec_t d;

    if (k->domain_id == 0) {
        snprintf(dom, sizeof(dom), "*");
    } else if (sp__tenancy_domain_rec_get(kc->r, k->domain_id, &d) == 0) {
        snprintf(dom, sizeof(dom), "%s", d.name);
    } else {
        snprintf(dom, sizeof(dom), "(removed domain %lld)", (long long)k->domain_id);
    }
    printf("%lld\t%lld\t%s\t%s\t%s\t%s\t%s\t%s%s\n", (long long)k->id, (long long)k->team,
           k->name[0] ? k->name : "-", k->partial_token,
           k->permission == SP_PERM_FULL ? "FULL" : "SENDING", dom, iso_time(k->created_at, tb),
           k->revoked_at ? "revoked " : "active", k->revoked_at ? iso_time(k->revoked_at, rb) : "");
    return 0;
}

static int cmd_keys_list(cli_t *c)
{
    keys_ctx_t kc;
    sp_team_rec_t t = {0};
    int rc;

    if (cli_open(c) != 0 || (c->team && team_lookup(c, c->team, &t) != 0) ||
        read_begin(c, &kc.r) != 0) {
        return 1;
    }
    printf("ID\tTEAM\tNAME\tTOKEN\tPERMISSION\tDOMAIN\tCREATED\tSTATUS\n");
    rc = sp__tenancy_key_each(kc.r, t.id, print_key, &kc);
    sp__store_read_end(kc.r);
    if (rc < 0) {
        fprintf(stderr, "sendpipe: listing keys failed: %s\n", sp__strerror(rc));
    }
    return rc < 0 ? 1 : 0;
}

static int cmd_keys_revoke(cli_t *c)
{
    job_t j = {.kind = J_KEY_REVOKE};
    int rc;

    if (parse_id(c->argv[0], &j.id) != 0) {
        fprintf(stderr, "sendpipe: '%s' is not a key id (see 'sendpipe keys list')\n",
                c->argv[0]);
        return 1;
    }
    if (cli_open(c) != 0) {
        return 1;
    }
    rc = run_job(c, &j);
    if (rc == SP_ENOTFOUND) {
        fprintf(stderr, "sendpipe: no API key %lld\n", (long long)j.id);
        return 1;
    }
    if (rc == SP_ESTATE) {
        printf("API key %lld was already revoked\n", (long long)j.id);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "sendpipe: revoking key %lld failed: %s\n", (long long)j.id,
                sp__strerror(rc));
        return 1;
    }
    printf("revoked API key %lld\n", (long long)j.id);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* domains */

/* --dkim-algorithm / --dkim-selector, checked before anything is opened.
 * def_*: what to use when the option is absent. 0 or 2 (usage). */
static int dkim_opts(const cli_t *c, const char *def_alg, const char *def_sel, const char **alg,
                     const char **sel)
{
    *alg = c->dkim_alg ? sp__tenancy_dkim_alg_norm(c->dkim_alg) : def_alg;
    *sel = c->dkim_sel ? c->dkim_sel : def_sel;
    if (!*alg) {
        fprintf(stderr, "sendpipe: --dkim-algorithm: expected rsa or ed25519\n");
        return 2;
    }
    if (sp__tenancy_dkim_selector_check(*sel) != 0) {
        fprintf(stderr,
                "sendpipe: --dkim-selector: letters, digits and '-' in dot-separated labels, at "
                "most %d characters\n",
                SP_DKIM_SELECTOR_MAX);
        return 2;
    }
    return 0;
}

/* A new key on the heap (cleansed and freed by key_free); prints why not. */
static char *key_new(const char *alg)
{
    char *pem = malloc(SP_DKIM_KEY_MAX);
    int rc;

    if (!pem) {
        fprintf(stderr, "sendpipe: out of memory\n");
        return NULL;
    }
    if ((rc = sp__tenancy_dkim_keygen(alg, pem, SP_DKIM_KEY_MAX)) != 0) {
        fprintf(stderr, "sendpipe: generating a %s key failed: %s\n", alg, sp__strerror(rc));
        free(pem);
        return NULL;
    }
    return pem;
}

static void key_free(char *pem)
{
    if (pem) {
        OPENSSL_cleanse(pem, SP_DKIM_KEY_MAX);
        free(pem);
    }
}

/* The store holds private keys: say so if others may read its directory. */
static void data_dir_mode_check(const cli_t *c)
{
    struct stat sb;

    if (stat(c->s.cfg->data_dir, &sb) == 0 && (sb.st_mode & 077)) {
        fprintf(stderr,
                "sendpipe: warning: %s (mode %03o) holds DKIM private keys; make it 0700 "
                "(chmod 700)\n",
                c->s.cfg->data_dir, (unsigned)(sb.st_mode & 0777));
    }
}

static int cmd_domains_add(cli_t *c)
{
    job_t j = {.kind = J_DOMAIN_ADD,
               .region = c->region,
               .open = (c->given & O_OPEN_TRACKING) ? 1 : -1,
               .click = (c->given & O_CLICK_TRACKING) ? 1 : -1};
    char name[SP_DOMAIN_NAME_MAX + 1];
    sp_team_rec_t t;
    int rc;

    if (!c->team) {
        fprintf(stderr, "sendpipe: domains add needs --team TEAM\n");
        return 2;
    }
    if (sp__tenancy_domain_name_norm(c->argv[0], name) != 0) {
        fprintf(stderr,
                "sendpipe: '%s' is not a valid domain name (letters, digits and '-' in labels "
                "of 1 to 63, at least two labels, at most %d characters; IDNs as xn--)\n",
                c->argv[0], SP_DOMAIN_NAME_MAX);
        return 1;
    }
    j.name = name;
    j.status = c->verified ? SP_DOM_SUCCESS : SP_DOM_PENDING;
    if ((rc = dkim_opts(c, SP_DKIM_RSA, SP_DKIM_DEFAULT_SELECTOR, &j.dkim_alg, &j.dkim_sel)) !=
        0) {
        return rc;
    }
    if (cli_open(c) != 0 || team_lookup(c, c->team, &t) != 0) {
        return 1;
    }
    j.team = t.id;
    /* Before the write: an RSA key takes a while, the writer is shared. */
    char *pem = key_new(j.dkim_alg);
    if (!pem) {
        return 1;
    }
    j.dkim_pem = pem;
    rc = run_job(c, &j);
    key_free(pem);
    if (rc == SP_EEXIST) {
        fprintf(stderr, "sendpipe: domain %s already exists (names are unique across teams)\n",
                name);
    } else if (rc == SP_EINVAL) {
        fprintf(stderr, "sendpipe: --region: letters, digits and '-', at most %d characters\n",
                SP_REGION_MAX);
    } else if (rc == SP_ENOTFOUND) {
        no_team(c->team, rc);
    } else if (rc != 0) {
        fprintf(stderr, "sendpipe: adding domain %s failed: %s\n", name, sp__strerror(rc));
    } else {
        printf("added domain %lld %s to team %lld (%s), status %s\n", (long long)j.out_id, name,
               (long long)t.id, t.name, sp__domain_status_name(j.status));
        printf("DKIM key %s, selector %s: publish it ('sendpipe domains dkim %s')\n",
               j.dkim_alg, j.dkim_sel, name);
        printf("open tracking %s, click tracking %s\n", j.open > 0 ? "on" : "off",
               j.click > 0 ? "on" : "off");
        data_dir_mode_check(c);
    }
    return rc == 0 ? 0 : 1;
}

/* The TRACKING column: "open,click", "open", "click" or "-". */
static const char *tracking_word(const sp_domain_rec_t *d)
{
    if (d->open_tracking && d->click_tracking) {
        return "open,click";
    }
    return d->open_tracking ? "open" : d->click_tracking ? "click" : "-";
}

static int print_domain(void *arg, const sp_domain_rec_t *d)
{
    char tb[32];

    (void)arg;
    printf("%lld\t%lld\t%s\t%s\t%s\t%s\t", (long long)d->id, (long long)d->team, d->name,
           sp__domain_status_name(d->status), d->region, iso_time(d->created_at, tb));
    if (d->dkim_private_key[0]) {
        printf("%s %s\t", d->dkim_selector, d->dkim_algorithm);
    } else {
        printf("-\t");
    }
    printf("%s\n", tracking_word(d));
    return 0;
}

static int cmd_domains_list(cli_t *c)
{
    sp_team_rec_t t = {0};
    sp_rtxn_t *r;
    int rc;

    if (cli_open(c) != 0 || (c->team && team_lookup(c, c->team, &t) != 0) ||
        read_begin(c, &r) != 0) {
        return 1;
    }
    printf("ID\tTEAM\tNAME\tSTATUS\tREGION\tCREATED\tDKIM\tTRACKING\n");
    rc = sp__tenancy_domain_each(r, t.id, print_domain, NULL);
    sp__store_read_end(r);
    if (rc < 0) {
        fprintf(stderr, "sendpipe: listing domains failed: %s\n", sp__strerror(rc));
    }
    return rc < 0 ? 1 : 0;
}

/* Find the domain named on the command line; prints the error itself. */
static int domain_arg(cli_t *c, sp_domain_rec_t *d)
{
    sp_rtxn_t *r;
    int rc;

    if (read_begin(c, &r) != 0) {
        return -1;
    }
    rc = domain_lookup(r, c->argv[0], d);
    sp__store_read_end(r);
    if (rc == SP_ENOTFOUND) {
        fprintf(stderr, "sendpipe: no domain '%s' (see 'sendpipe domains list')\n", c->argv[0]);
    } else if (rc != 0) {
        fprintf(stderr, "sendpipe: domain '%s': %s\n", c->argv[0], sp__strerror(rc));
    }
    return rc;
}

typedef struct restricted {
    int64_t domain;
    char list[256];
    size_t n;
} restricted_t;

static int collect_restricted(void *arg, const sp_key_rec_t *k)
{
    restricted_t *rs = arg;
    size_t l = strlen(rs->list);

    if (k->domain_id == rs->domain && k->revoked_at == 0) {
        if (l < sizeof(rs->list) - 24) {
            snprintf(rs->list + l, sizeof(rs->list) - l, "%s%lld", rs->n ? ", " : "",
                     (long long)k->id);
        }
        rs->n++;
    }
    return 0;
}

static int cmd_domains_rm(cli_t *c)
{
    job_t j = {.kind = J_DOMAIN_DEL};
    restricted_t rs = {0};
    sp_domain_rec_t d;
    sp_rtxn_t *r;
    int rc;

    if (cli_open(c) != 0 || domain_arg(c, &d) != 0 || read_begin(c, &r) != 0) {
        return 1;
    }
    /* Keys limited to this domain would stop working (auth fails closed on a
     * missing domain): make the operator revoke them knowingly. */
    rs.domain = d.id;
    rc = sp__tenancy_key_each(r, d.team, collect_restricted, &rs);
    sp__store_read_end(r);
    if (rc < 0) {
        fprintf(stderr, "sendpipe: listing keys failed: %s\n", sp__strerror(rc));
        return 1;
    }
    if (rs.n > 0) {
        fprintf(stderr,
                "sendpipe: domain %s: %zu active API key(s) are restricted to it (%s); revoke "
                "them first with 'sendpipe keys revoke ID'\n",
                d.name, rs.n, rs.list);
        return 1;
    }
    j.id = d.id;
    rc = run_job(c, &j);
    if (rc == SP_ENOTFOUND) {
        fprintf(stderr, "sendpipe: no domain '%s'\n", c->argv[0]);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "sendpipe: removing domain %s failed: %s\n", d.name, sp__strerror(rc));
        return 1;
    }
    printf("removed domain %lld %s\n", (long long)d.id, d.name);
    return 0;
}

/* "on"/"off" (and the usual spellings) to 1/0; -1 for anything else. */
static int on_off(const char *s)
{
    static const char *const on[] = {"on", "true", "yes", "1"};
    static const char *const off[] = {"off", "false", "no", "0"};

    for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
        if (strcasecmp(s, on[i]) == 0) {
            return 1;
        }
        if (strcasecmp(s, off[i]) == 0) {
            return 0;
        }
    }
    return -1;
}

static int cmd_domains_tracking(cli_t *c)
{
    job_t j = {.kind = J_DOMAIN_TRACKING, .open = -1, .click = -1};
    sp_domain_rec_t *d = calloc(1, sizeof(*d));
    int rc = 1;

    if (!d) {
        fprintf(stderr, "sendpipe: out of memory\n");
        return 1;
    }
    if ((c->open && (j.open = on_off(c->open)) < 0) ||
        (c->click && (j.click = on_off(c->click)) < 0)) {
        fprintf(stderr, "sendpipe: domains tracking: --open and --click take on or off\n");
        free(d);
        return 2;
    }
    if (cli_open(c) != 0 || domain_arg(c, d) != 0) {
        free(d);
        return 1;
    }
    j.id = d->id;
    j.out_dom = d;
    if ((j.open >= 0 || j.click >= 0) && (rc = run_job(c, &j)) != 0) {
        fprintf(stderr, "sendpipe: changing tracking of domain %s failed: %s\n", d->name,
                sp__strerror(rc));
        free(d);
        return 1;
    }
    printf("domain %lld %s: open tracking %s, click tracking %s\n", (long long)d->id, d->name,
           d->open_tracking ? "on" : "off", d->click_tracking ? "on" : "off");
    free(d);
    return 0;
}

static int cmd_domains_verify(cli_t *c)
{
    job_t j = {.kind = J_DOMAIN_STATUS, .status = SP_DOM_SUCCESS};
    sp_domain_rec_t d;
    int rc;

    if (cli_open(c) != 0 || domain_arg(c, &d) != 0) {
        return 1;
    }
    j.id = d.id;
    rc = run_job(c, &j);
    if (rc != 0) {
        fprintf(stderr, "sendpipe: verifying domain %s failed: %s\n", d.name, sp__strerror(rc));
        return 1;
    }
    printf("domain %lld %s marked verified (SUCCESS) by hand: DNS records are not checked\n",
           (long long)d.id, d.name);
    return 0;
}

/* The record to publish, as "key: value" lines or one JSON object. Every
 * value is plain ASCII without quotes or backslashes (validated names,
 * base64), so the JSON needs no escaping. */
static int print_dkim(const cli_t *c, const char *domain, const char *sel, const char *alg,
                      const char *pem)
{
    char txt[SP_DKIM_TXT_MAX];
    int rc = sp__tenancy_dkim_txt(alg, pem, txt, sizeof(txt));

    if (rc != 0) {
        fprintf(stderr, "sendpipe: domain %s: the stored DKIM key is unusable (%s); replace it "
                        "with 'sendpipe domains dkim %s --rotate'\n",
                domain, sp__strerror(rc), domain);
        return 1;
    }
    if (c->json) {
        printf("{\"domain\":\"%s\",\"selector\":\"%s\",\"algorithm\":\"%s\","
               "\"name\":\"%s._domainkey.%s\",\"type\":\"TXT\",\"value\":\"%s\"}\n",
               domain, sel, alg, sel, domain, txt);
    } else {
        printf("domain: %s\nselector: %s\nalgorithm: %s\nname: %s._domainkey.%s\ntype: TXT\n"
               "value: %s\n",
               domain, sel, alg, sel, domain, txt);
    }
    return 0;
}

static int cmd_domains_dkim(cli_t *c)
{
    job_t j = {.kind = J_DOMAIN_DKIM};
    sp_domain_rec_t *d = calloc(1, sizeof(*d));
    char *pem = NULL;
    bool has = false;
    int rc = 1;

    if (!d) {
        fprintf(stderr, "sendpipe: out of memory\n");
        return 1;
    }
    if (!c->rotate && (c->dkim_alg || c->dkim_sel)) {
        fprintf(stderr, "sendpipe: --dkim-algorithm and --dkim-selector go with --rotate\n");
        rc = 2;
        goto out;
    }
    if (cli_open(c) != 0 || domain_arg(c, d) != 0) {
        goto out;
    }
    has = d->dkim_private_key[0] && sp__tenancy_dkim_alg_norm(d->dkim_algorithm);
    if (!c->rotate) {
        if (!has) {
            fprintf(stderr,
                    "sendpipe: domain %s has no DKIM key (added before keys existed); make one "
                    "with 'sendpipe domains dkim %s --rotate'\n",
                    d->name, d->name);
            goto out;
        }
        rc = print_dkim(c, d->name, d->dkim_selector, d->dkim_algorithm, d->dkim_private_key);
        goto out;
    }
    /* A rotation keeps the algorithm and selector unless told otherwise. */
    if ((rc = dkim_opts(c, has ? d->dkim_algorithm : SP_DKIM_RSA,
                        has ? d->dkim_selector : SP_DKIM_DEFAULT_SELECTOR, &j.dkim_alg,
                        &j.dkim_sel)) != 0) {
        goto out;
    }
    rc = 1;
    if (!(pem = key_new(j.dkim_alg))) {
        goto out;
    }
    j.id = d->id;
    j.dkim_pem = pem;
    if ((rc = run_job(c, &j)) != 0) {
        fprintf(stderr, "sendpipe: replacing the DKIM key of %s failed: %s\n", d->name,
                sp__strerror(rc));
        rc = 1;
        goto out;
    }
    fprintf(stderr, "sendpipe: domain %s: new DKIM key (%s, selector %s); publish this record\n",
            d->name, j.dkim_alg, j.dkim_sel);
    if (has && strcmp(j.dkim_sel, d->dkim_selector) == 0) {
        fprintf(stderr, "sendpipe: the selector is unchanged: messages signed with the old key "
                        "fail verification once the record is replaced (see docs/dkim.md)\n");
    }
    data_dir_mode_check(c);
    rc = print_dkim(c, d->name, j.dkim_sel, j.dkim_alg, pem);
out:
    key_free(pem);
    OPENSSL_cleanse(d, sizeof(*d));
    free(d);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Dispatch */

static const command_t commands[] = {
    {"teams", "create", cmd_teams_create, 1, 0, "teams create [-c FILE] NAME", "create a team"},
    {"teams", "list", cmd_teams_list, 0, 0, "teams list [-c FILE]", "list teams"},
    {"keys", "create", cmd_keys_create, 0, O_TEAM | O_NAME | O_PERM | O_DOMAIN,
     "keys create [-c FILE] --team TEAM [--name NAME] [--permission full|sending] "
     "[--domain DOMAIN]",
     "create an API key (printed once); permission defaults to full"},
    {"keys", "list", cmd_keys_list, 0, O_TEAM, "keys list [-c FILE] [--team TEAM]",
     "list API keys (partial tokens only)"},
    {"keys", "revoke", cmd_keys_revoke, 1, 0, "keys revoke [-c FILE] ID", "revoke an API key"},
    {"domains", "add", cmd_domains_add, 1,
     O_TEAM | O_REGION | O_VERIFIED | O_DKIM_ALG | O_DKIM_SEL | O_OPEN_TRACKING |
         O_CLICK_TRACKING,
     "domains add [-c FILE] --team TEAM [--verified] [--region REGION] "
     "[--dkim-algorithm rsa|ed25519] [--dkim-selector SELECTOR] [--open-tracking] "
     "[--click-tracking] NAME",
     "add a sending domain (PENDING, or SUCCESS with --verified) with a new DKIM key "
     "(RSA-2048 and selector 'sendpipe' by default); tracking is off unless asked"},
    {"domains", "dkim", cmd_domains_dkim, 1, O_ROTATE | O_JSON | O_DKIM_ALG | O_DKIM_SEL,
     "domains dkim [-c FILE] [--json] [--rotate [--dkim-algorithm rsa|ed25519] "
     "[--dkim-selector SELECTOR]] NAME|ID",
     "print the DKIM DNS record to publish; --rotate replaces the key first"},
    {"domains", "list", cmd_domains_list, 0, O_TEAM, "domains list [-c FILE] [--team TEAM]",
     "list domains"},
    {"domains", "rm", cmd_domains_rm, 1, 0, "domains rm [-c FILE] NAME|ID", "remove a domain"},
    {"domains", "verify", cmd_domains_verify, 1, 0, "domains verify [-c FILE] NAME|ID",
     "mark a domain verified by hand (no DNS check yet)"},
    {"domains", "tracking", cmd_domains_tracking, 1, O_OPEN | O_CLICK,
     "domains tracking [-c FILE] [--open on|off] [--click on|off] NAME|ID",
     "turn a domain's open and click tracking on or off and print the new state "
     "(see docs/tracking.md)"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage_of(FILE *f, const char *word)
{
    fprintf(f, "usage:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (!word || strcmp(commands[i].word, word) == 0) {
            fprintf(f, "  sendpipe %s\n      %s\n", commands[i].usage, commands[i].help);
        }
    }
    fprintf(f, "TEAM is a team id or name. See docs/keys.md.\n");
}

int sp__tenancy_cli(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"team", required_argument, NULL, 't'},
        {"name", required_argument, NULL, 'n'},    {"permission", required_argument, NULL, 'p'},
        {"domain", required_argument, NULL, 'd'},  {"region", required_argument, NULL, 'r'},
        {"verified", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
        {"dkim-algorithm", required_argument, NULL, 'A'},
        {"dkim-selector", required_argument, NULL, 'S'},
        {"rotate", no_argument, NULL, 'R'},        {"json", no_argument, NULL, 'J'},
        {"open-tracking", no_argument, NULL, 'O'}, {"click-tracking", no_argument, NULL, 'K'},
        {"open", required_argument, NULL, 'o'},    {"click", required_argument, NULL, 'k'},
        {NULL, 0, NULL, 0}};
    const command_t *cmd = NULL;
    cli_t c = {0};
    int o, rc;
    bool known = false;

    if (argc < 1 || !argv || !argv[0]) {
        return 2;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].word, argv[0]) != 0) {
            continue;
        }
        known = true;
        if (argc > 1 && strcmp(commands[i].sub, argv[1]) == 0) {
            cmd = &commands[i];
            break;
        }
    }
    if (!known) {
        fprintf(stderr, "sendpipe: unknown command '%s'\n", argv[0]);
        return 2;
    }
    if (!cmd) {
        bool help = argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
                                 strcmp(argv[1], "help") == 0);
        if (!help && argc > 1 && argv[1][0] != '-') {
            fprintf(stderr, "sendpipe: unknown command '%s %s'\n", argv[0], argv[1]);
        } else if (!help) {
            fprintf(stderr, "sendpipe: %s needs a sub-command first\n", argv[0]);
        }
        usage_of(help ? stdout : stderr, argv[0]);
        return help ? 0 : 2;
    }
    /* argv[1] (the sub-command) plays getopt's program name. optind 0 makes
     * GNU getopt start afresh even if the caller parsed options before. */
    optind = 0;
    opterr = 0;
    while ((o = getopt_long(argc - 1, argv + 1, "c:t:n:p:d:r:h", opts, NULL)) != -1) {
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
            c.name = optarg;
            bit = O_NAME;
            break;
        case 'p':
            c.perm = optarg;
            bit = O_PERM;
            break;
        case 'd':
            c.domain = optarg;
            bit = O_DOMAIN;
            break;
        case 'r':
            c.region = optarg;
            bit = O_REGION;
            break;
        case 'V':
            c.verified = true;
            bit = O_VERIFIED;
            break;
        case 'A':
            c.dkim_alg = optarg;
            bit = O_DKIM_ALG;
            break;
        case 'S':
            c.dkim_sel = optarg;
            bit = O_DKIM_SEL;
            break;
        case 'R':
            c.rotate = true;
            bit = O_ROTATE;
            break;
        case 'J':
            c.json = true;
            bit = O_JSON;
            break;
        case 'O':
            bit = O_OPEN_TRACKING;
            break;
        case 'K':
            bit = O_CLICK_TRACKING;
            break;
        case 'o':
            c.open = optarg;
            bit = O_OPEN;
            break;
        case 'k':
            c.click = optarg;
            bit = O_CLICK;
            break;
        case 'h':
            printf("usage: sendpipe %s\n  %s\n", cmd->usage, cmd->help);
            return 0;
        default:
            fprintf(stderr, "sendpipe: %s %s: unknown option or missing value: %s\n",
                    cmd->word, cmd->sub, argv[optind > 1 ? optind : 1]);
            fprintf(stderr, "usage: sendpipe %s\n", cmd->usage);
            return 2;
        }
        if (!(cmd->opts & bit)) {
            fprintf(stderr, "sendpipe: %s %s does not take that option\nusage: sendpipe %s\n",
                    cmd->word, cmd->sub, cmd->usage);
            return 2;
        }
        c.given |= bit;
    }
    c.argc = argc - 1 - optind;
    c.argv = argv + 1 + optind;
    if (c.argc != cmd->nargs) {
        fprintf(stderr, "usage: sendpipe %s\n", cmd->usage);
        return 2;
    }
    /* Human output on stderr; keep the store's advisory warnings quiet. */
    sp__log_set_level(SP_LOG_ERROR);
    rc = cmd->fn(&c);
    cli_close(&c);
    return rc;
}
