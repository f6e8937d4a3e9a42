/* SPDX-License-Identifier: Apache-2.0 */
/* `sendpipe suppressions list|add|rm`: a team's suppression list from the
 * command line, beside a running server (LMDB serialises writers across
 * processes), as the other store-writing commands. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_core/cli_store.h"
#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/suppress.h"
#include "sp_core/tenancy.h"

typedef struct cli {
    const char *config;
    const char *team;
    const char *reason;
    const char *search;
    bool json;
    int argc;
    char **argv;
    sp_cli_store_t s;
} cli_t;

/* One durable write for every address given: rm reports per address. */
typedef struct job {
    bool del;
    int64_t team;
    sp_suppress_reason_t reason;
    int64_t now;
    int n;
    char **emails;
    int *rc; /* per address */
} job_t;

static int job_apply(sp_wtxn_t *w, void *arg)
{
    job_t *j = arg;

    for (int i = 0; i < j->n; i++) {
        if (j->del) {
            char norm[SP_SUPPRESS_EMAIL_MAX + 1];
            uint8_t key[8 + SP_SUPPRESS_EMAIL_MAX];
            size_t n;
            (void)sp__suppress_norm(j->emails[i], norm); /* checked before */
            n = strlen(norm);
            sp__be64_put(key, (uint64_t)j->team);
            memcpy(key + 8, norm, n);
            j->rc[i] = sp__wtxn_del(w, SP_DB_SUPPRESSIONS, key, 8 + n);
            if (j->rc[i] < 0 && j->rc[i] != SP_ENOTFOUND) {
                return j->rc[i];
            }
        } else {
            j->rc[i] = sp__suppress_put_txn(w, j->team, j->emails[i], j->reason, NULL, j->now);
            if (j->rc[i] < 0) {
                return j->rc[i];
            }
        }
    }
    return 0;
}

/* --team (a team id or name) to its id; prints the error itself. */
static int team_arg(cli_t *c, int64_t *team)
{
    sp_team_rec_t t;
    sp_rtxn_t *r;
    int rc;

    if ((rc = sp__cli_store_read(&c->s, &r)) != 0) {
        return rc;
    }
    rc = sp__tenancy_team_resolve(r, c->team, &t);
    sp__store_read_end(r);
    if (rc == SP_ENOTFOUND) {
        fprintf(stderr, "sendpipe: no team '%s' (see 'sendpipe teams list')\n", c->team);
    } else if (rc != 0) {
        fprintf(stderr, "sendpipe: team '%s': %s\n", c->team, sp__strerror(rc));
    } else {
        *team = t.id;
    }
    return rc;
}

static const char *iso_time(int64_t ms, char buf[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    size_t n;

    if (ms <= 0 || !gmtime_r(&t, &tm) || (n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
        return "-";
    }
    snprintf(buf + n, 40 - n, ".%03dZ", (int)(ms % 1000));
    return buf;
}

/* A JSON string (the address may hold any byte above 0x1f). */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            printf("\\%c", ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            printf("\\u%04x", ch);
        } else {
            putchar(ch);
        }
    }
    putchar('"');
}

typedef struct list_ctx {
    bool json;
    size_t n;
} list_ctx_t;

static int list_each(void *arg, const sp_suppression_t *s)
{
    list_ctx_t *lc = arg;
    char tb[40];

    if (lc->json) {
        printf("%s{\"email\":", lc->n ? ",\n " : "");
        json_str(s->email);
        printf(",\"reason\":\"%s\",\"source\":", sp__suppress_reason_name(s->reason));
        if (s->source[0]) {
            json_str(s->source);
        } else {
            printf("null");
        }
        printf(",\"createdAt\":\"%s\"}", iso_time(s->created_ms, tb));
    } else {
        printf("%s\t%s\t%s\t%s\n", s->email, sp__suppress_reason_name(s->reason),
               s->source[0] ? s->source : "-", iso_time(s->created_ms, tb));
    }
    lc->n++;
    return 0;
}

static int cmd_list(cli_t *c)
{
    list_ctx_t lc = {.json = c->json};
    int64_t team;
    int rc;

    if (c->reason) {
        fprintf(stderr, "sendpipe: suppressions list does not take --reason\n");
        return 2;
    }
    if (sp__cli_store_open(&c->s, c->config) != 0 || team_arg(c, &team) != 0) {
        return 1;
    }
    printf("%s", c->json ? "[" : "EMAIL\tREASON\tSOURCE\tCREATED\n");
    rc = sp__suppress_list_in(c->s.st, team, c->search, 0, list_each, &lc);
    if (c->json) {
        printf("]\n");
    }
    if (rc < 0) {
        fprintf(stderr, "sendpipe: listing suppressions failed: %s\n", sp__strerror(rc));
        return 1;
    }
    return 0;
}

/* add and rm: every address checked first, then one write. */
static int cmd_write(cli_t *c, bool del)
{
    char norm[SP_SUPPRESS_EMAIL_MAX + 1];
    job_t j = {.del = del, .reason = SP_SUPPRESS_MANUAL, .n = c->argc, .emails = c->argv};
    int missing = 0, rc;

    if (c->search || (del && c->reason) || c->json) {
        fprintf(stderr, "sendpipe: suppressions %s takes --team%s and addresses\n",
                del ? "rm" : "add", del ? "" : ", --reason");
        return 2;
    }
    if (c->reason) {
        int r = sp__suppress_reason_parse(c->reason);
        if (r < 0) {
            fprintf(stderr, "sendpipe: --reason must be HARD_BOUNCE, COMPLAINT or MANUAL\n");
            return 2;
        }
        j.reason = (sp_suppress_reason_t)r;
    }
    for (int i = 0; i < c->argc; i++) {
        if (sp__suppress_norm(c->argv[i], norm) != 0) {
            fprintf(stderr, "sendpipe: '%s' is not an address (1 to %d bytes, no control "
                            "characters)\n", c->argv[i], SP_SUPPRESS_EMAIL_MAX);
            return 1;
        }
    }
    if (sp__cli_store_open(&c->s, c->config) != 0 || team_arg(c, &j.team) != 0) {
        return 1;
    }
    if ((j.rc = calloc((size_t)c->argc, sizeof(*j.rc))) == NULL) {
        fprintf(stderr, "sendpipe: out of memory\n");
        return 1;
    }
    j.now = sp__now_ms();
    rc = sp__cli_store_write(&c->s, job_apply, &j);
    if (rc != 0) {
        fprintf(stderr, "sendpipe: %s failed: %s\n", del ? "removing" : "adding",
                sp__strerror(rc));
        free(j.rc);
        return 1;
    }
    for (int i = 0; i < c->argc; i++) {
        (void)sp__suppress_norm(c->argv[i], norm);
        if (j.rc[i] == SP_ENOTFOUND) {
            fprintf(stderr, "sendpipe: %s is not on the list of team %s\n", norm, c->team);
            missing++;
        } else {
            printf("%s %s%s%s\n", del ? "removed" : "suppressed", norm, del ? "" : " ",
                   del ? "" : sp__suppress_reason_name(j.reason));
        }
    }
    free(j.rc);
    return missing ? 1 : 0;
}

static int cmd_add(cli_t *c)
{
    return cmd_write(c, false);
}

static int cmd_rm(cli_t *c)
{
    return cmd_write(c, true);
}

typedef struct command {
    const char *sub;
    int (*fn)(cli_t *c);
    int min_args, max_args;
    const char *usage;
    const char *help;
} command_t;

static const command_t commands[] = {
    {"list", cmd_list, 0, 0, "suppressions list [-c FILE] --team TEAM [--search TEXT] [--json]",
     "a team's suppressed addresses in address order (--search: containing TEXT)"},
    {"add", cmd_add, 1, 1000, "suppressions add [-c FILE] --team TEAM [--reason REASON] EMAIL...",
     "suppress addresses (REASON: MANUAL, the default, HARD_BOUNCE or COMPLAINT)"},
    {"rm", cmd_rm, 1, 1000, "suppressions rm [-c FILE] --team TEAM EMAIL...",
     "remove addresses from the list"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        fprintf(f, "  sendpipe %s\n      %s\n", commands[i].usage, commands[i].help);
    }
    fprintf(f, "TEAM is a team id or name; addresses are compared lower-cased and trimmed. "
               "See docs/suppressions.md.\n");
}

int sp__suppress_cli(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"team", required_argument, NULL, 't'},
        {"reason", required_argument, NULL, 'r'}, {"search", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const command_t *cmd = NULL;
    cli_t c = {0};
    int o, rc = 0;

    if (argc < 1 || !argv || !argv[0]) {
        return 2;
    }
    {
        int st = 0;
        int i = sp__cli_subcommand(argc, argv, "suppressions", commands, NCOMMANDS, sizeof(commands[0]),
                                   usage, &st);
        if (i < 0) {
            return st;
        }
        cmd = &commands[i];
    }
    optind = 0;
    opterr = 0;
    while (rc == 0 && (o = getopt_long(argc - 1, argv + 1, "c:t:r:s:jh", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            c.config = optarg;
            break;
        case 't':
            c.team = optarg;
            break;
        case 'r':
            c.reason = optarg;
            break;
        case 's':
            c.search = optarg;
            break;
        case 'j':
            c.json = true;
            break;
        case 'h':
            printf("usage: sendpipe %s\n  %s\n", cmd->usage, cmd->help);
            return 0;
        default:
            fprintf(stderr, "sendpipe: suppressions %s: unknown option or missing value: %s\n",
                    cmd->sub, argv[optind > 1 ? optind : 1]);
            rc = 2;
            break;
        }
    }
    c.argc = argc - 1 - optind;
    c.argv = argv + 1 + optind;
    if (rc == 0 && (c.argc < cmd->min_args || c.argc > cmd->max_args)) {
        rc = 2;
    }
    if (rc == 0 && !c.team) {
        fprintf(stderr, "sendpipe: suppressions %s needs --team TEAM\n", cmd->sub);
        rc = 2;
    }
    if (rc != 0) {
        fprintf(stderr, "usage: sendpipe %s\n", cmd->usage);
        return 2;
    }
    sp__log_set_level(SP_LOG_ERROR);
    rc = cmd->fn(&c);
    sp__cli_store_close(&c.s);
    return rc;
}
