/* SPDX-License-Identifier: Apache-2.0 */
/* `sendpipe webhooks ...`: manage a team's webhooks and read their delivery
 * log, beside a running server (LMDB serialises writers across processes;
 * the server's dispatcher picks calls queued here up within a second). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_core/cli_store.h"
#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/tenancy.h"
#include "webhooks_int.h"

typedef struct cli {
    const char *config, *team, *url, *events, *description, *api_version;
    const char *domains[64];
    size_t ndomains;
    bool json;
    long limit;
    int argc;
    char **argv;
    sp_cli_store_t s;
} cli_t;

static int open_store(cli_t *c)
{
    return sp__cli_store_open(&c->s, c->config);
}

static int team_arg(cli_t *c, int64_t *team)
{
    sp_team_rec_t t = {0};
    sp_rtxn_t *r;
    int rc;

    if ((rc = sp__cli_store_read(&c->s, &r)) != 0) {
        return rc;
    }
    rc = sp__tenancy_team_resolve(r, c->team, &t);
    sp__store_read_end(r);
    if (rc != 0) {
        fprintf(stderr, "sendpipe: no team '%s' (see 'sendpipe teams list')\n", c->team);
        return rc;
    }
    *team = t.id;
    return 0;
}

/* The webhook named by the positional ID; prints the error itself. */
static int wh_arg(cli_t *c, sp_msg_t **rec)
{
    char *end;
    unsigned long long id = strtoull(c->argv[0], &end, 10);
    sp_rtxn_t *r;
    int rc;

    if (*c->argv[0] == '\0' || *end != '\0' || id == 0) {
        fprintf(stderr, "sendpipe: '%s' is not a webhook id (see 'sendpipe webhooks list')\n",
                c->argv[0]);
        return SP_EINVAL;
    }
    if ((rc = sp__cli_store_read(&c->s, &r)) != 0) {
        return rc;
    }
    rc = wh_find(r, id, rec);
    sp__store_read_end(r);
    if (rc != 0) {
        fprintf(stderr, "sendpipe: no webhook %llu\n", id);
    }
    return rc;
}

static int run(cli_t *c, wh_job_t *j)
{
    int rc;

    j->now = sp__now_ms();
    rc = sp__cli_store_write(&c->s, wh_job_apply, j);
    json_decref(j->spec);
    j->spec = NULL;
    if (rc != 0) {
        fprintf(stderr, "sendpipe: webhook: %s\n",
                rc == SP_ENOTFOUND ? "not found (removed meanwhile?)" : sp__strerror(rc));
    }
    return rc;
}

static int cmd_add(cli_t *c)
{
    wh_job_t j = {.kind = WH_J_PUT};
    json_t *ev = json_array(), *dom = json_array(), *o;
    char why[160];

    if (!c->team || !c->url) {
        fprintf(stderr, "sendpipe: webhooks add needs --team TEAM and --url URL\n");
        json_decref(ev);
        json_decref(dom);
        return 2;
    }
    j.spec = json_pack("{s:s, s:s, s:o, s:o}", "url", c->url, "description",
                       c->description ? c->description : "", "eventTypes", ev, "domainIds",
                       dom);
    if (j.spec && c->api_version) {
        json_object_set_new(j.spec, "apiVersion", json_string(c->api_version));
    }
    for (const char *p = c->events; j.spec && p && *p;) {
        size_t n = strcspn(p, ",");
        if (n > 0) {
            json_array_append_new(ev, json_stringn(p, n));
        }
        p += n + (p[n] == ',');
    }
    if (!j.spec || wh_spec_check(j.spec, true, why, sizeof(why)) != 0) {
        fprintf(stderr, "sendpipe: webhooks add: %s\n", j.spec ? why : "out of memory");
        if (j.spec && strstr(why, "eventTypes")) {
            fprintf(stderr, "known event types:");
            for (size_t i = 0; sp__wh_event_types[i]; i++) {
                fprintf(stderr, " %s", sp__wh_event_types[i]);
            }
            fprintf(stderr, "\n");
        }
        json_decref(j.spec);
        return 1;
    }
    if (open_store(c) != 0 || team_arg(c, &j.team) != 0) {
        json_decref(j.spec);
        return 1;
    }
    for (size_t i = 0; i < c->ndomains; i++) {
        sp_domain_t d = {.size = sizeof(d)};
        if (sp__tenancy_domain_find_in(c->s.st, j.team, c->domains[i], &d) != 0) {
            fprintf(stderr, "sendpipe: no domain '%s' in team %s\n", c->domains[i], c->team);
            json_decref(j.spec);
            return 1;
        }
        json_array_append_new(dom, json_integer(d.id));
    }
    if (wh_secret_new(j.secret) != 0 || run(c, &j) != 0) {
        free(j.out);
        return 1;
    }
    o = json_loads(j.out, 0, NULL);
    if (c->json) {
        printf("%s\n", j.out);
    } else {
        printf("created webhook %lld for team %lld (%s)\n", (long long)j.id,
               (long long)j.team, c->url);
        printf("signing secret (shown once):\n%s\n",
               json_string_value(json_object_get(o, "secret")));
    }
    json_decref(o);
    free(j.out);
    return 0;
}

typedef struct lst {
    bool json;
    size_t n;
} lst_t;

static int list_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    lst_t *l = arg;
    sp_msg_t *rec;
    json_t *o;
    char *s;

    (void)k;
    if (kl != WH_KEY_LEN || sp__msg_decode(v, vl, &rec) != 0) {
        return 0;
    }
    o = wh_json(rec, false);
    if (o && l->json) {
        s = json_dumps(o, JSON_COMPACT);
        printf("%s%s", l->n ? ",\n " : "", s ? s : "{}");
        free(s);
    } else if (o) {
        char *ev = json_dumps(json_object_get(o, "eventTypes"), JSON_COMPACT);
        char *dom = json_dumps(json_object_get(o, "domainIds"), JSON_COMPACT);
        printf("%lld\t%lld\t%s\t%s\t%lld\t%s\t%s\t%s\n", (long long)wh_int(rec, "id"),
               (long long)wh_int(rec, "team"),
               json_string_value(json_object_get(o, "status")), wh_str(rec, "url"),
               (long long)wh_int(rec, "consecutive_failures"), ev ? ev : "[]",
               dom ? dom : "[]", wh_str(rec, "description"));
        free(ev);
        free(dom);
    }
    l->n++;
    json_decref(o);
    sp__msg_free(rec);
    return 0;
}

static int cmd_list(cli_t *c)
{
    lst_t l = {.json = c->json};
    int64_t team = 0;
    uint8_t p[8];
    sp_rtxn_t *r;
    int rc;

    if (open_store(c) != 0 || (c->team && team_arg(c, &team) != 0) ||
        sp__cli_store_read(&c->s, &r) != 0) {
        return 1;
    }
    sp__be64_put(p, (uint64_t)team);
    printf("%s", c->json ? "[" : "ID\tTEAM\tSTATUS\tURL\tFAILURES\tEVENTS\tDOMAINS\tDESCRIPTION\n");
    rc = sp__rtxn_scan(r, SP_DB_WEBHOOKS, c->team ? p : NULL, c->team ? 8 : 0, c->team ? p : NULL,
                       c->team ? 8 : 0, list_each, &l);
    sp__store_read_end(r);
    printf("%s", c->json ? "]\n" : "");
    if (rc < 0) {
        fprintf(stderr, "sendpipe: listing webhooks failed: %s\n", sp__strerror(rc));
    }
    return rc < 0 ? 1 : 0;
}

/* rm, test, pause, resume: one write under the webhook's team. */
static int cmd_one(cli_t *c, wh_jkind_t kind, const char *status)
{
    wh_job_t j = {.kind = kind};
    sp_msg_t *rec = NULL;
    int rc;

    if (open_store(c) != 0 || wh_arg(c, &rec) != 0) {
        return 1;
    }
    j.team = wh_int(rec, "team");
    j.id = (uint64_t)wh_int(rec, "id");
    sp__msg_free(rec);
    if (status) {
        j.spec = json_pack("{s:s}", "status", status);
    }
    if ((rc = run(c, &j)) == 0) {
        if (kind == WH_J_DEL) {
            printf("removed webhook %llu\n", (unsigned long long)j.id);
        } else if (kind == WH_J_TEST) {
            json_t *o = json_loads(j.out, 0, NULL);
            printf("queued webhook.test call %s for webhook %llu\n",
                   json_string_value(json_object_get(o, "id")), (unsigned long long)j.id);
            json_decref(o);
        } else {
            printf("webhook %llu is %s\n", (unsigned long long)j.id, status);
        }
    }
    free(j.out);
    return rc == 0 ? 0 : 1;
}

static int cmd_rm(cli_t *c)
{
    return cmd_one(c, WH_J_DEL, NULL);
}

static int cmd_test(cli_t *c)
{
    return cmd_one(c, WH_J_TEST, NULL);
}

static int cmd_pause(cli_t *c)
{
    return cmd_one(c, WH_J_PUT, "PAUSED");
}

static int cmd_resume(cli_t *c)
{
    return cmd_one(c, WH_J_PUT, "ACTIVE");
}

typedef struct calls {
    bool json;
    long left;
    size_t n;
} calls_t;

static int calls_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    calls_t *cl = arg;
    sp_msg_t *m;
    json_t *o;

    (void)k;
    if (kl != WH_KEY_LEN || sp__msg_decode(v, vl, &m) != 0) {
        return 0;
    }
    if ((o = wh_call_json(m))) {
        if (cl->json) {
            char *s = json_dumps(o, JSON_COMPACT);
            printf("%s%s", cl->n ? ",\n " : "", s ? s : "{}");
            free(s);
        } else {
            char t[32];
            sp__wh_iso(wh_int(m, "created_at"), t);
            printf("%lld\t%s\t%s\t%s\t%lld\t%lld\t%lld\t%s\n", (long long)wh_int(m, "id"), t,
                   wh_str(m, "type"), json_string_value(json_object_get(o, "status")),
                   (long long)wh_int(m, "attempt"), (long long)wh_int(m, "response_status"),
                   (long long)wh_int(m, "response_time_ms"), wh_str(m, "last_error"));
        }
        cl->n++;
        json_decref(o);
    }
    sp__msg_free(m);
    return --cl->left == 0;
}

static int cmd_calls(cli_t *c)
{
    calls_t cl = {.json = c->json, .left = c->limit > 0 ? c->limit : 50};
    uint8_t k[WH_KEY_LEN];
    sp_msg_t *rec = NULL;
    sp_rtxn_t *r;
    int rc;

    if (open_store(c) != 0 || wh_arg(c, &rec) != 0) {
        return 1;
    }
    wh_key(k, (uint64_t)wh_int(rec, "id"), UINT64_MAX);
    sp__msg_free(rec);
    if (sp__cli_store_read(&c->s, &r) != 0) {
        return 1;
    }
    printf("%s", c->json ? "[" : "CALL\tCREATED\tTYPE\tSTATUS\tATTEMPT\tHTTP\tMS\tERROR\n");
    rc = sp__rtxn_scan_rev(r, SP_DB_WEBHOOK_CALLS, k, sizeof(k), k, 8, calls_each, &cl);
    sp__store_read_end(r);
    printf("%s", c->json ? "]\n" : "");
    return rc < 0 ? 1 : 0;
}

typedef struct command {
    const char *sub;
    int (*fn)(cli_t *c);
    int nargs;
    const char *usage;
    const char *help;
} command_t;

static const command_t commands[] = {
    {"add", cmd_add, 0,
     "webhooks add [-c FILE] --team TEAM --url URL [--events T1,T2] [--domain NAME]... "
     "[--description D] [--api-version V] [--json]",
     "add an endpoint; prints its id and signing secret (shown only here)"},
    {"list", cmd_list, 0, "webhooks list [-c FILE] [--team TEAM] [--json]",
     "webhooks (of one team), with status and filters"},
    {"rm", cmd_rm, 1, "webhooks rm [-c FILE] ID", "remove a webhook and its calls"},
    {"test", cmd_test, 1, "webhooks test [-c FILE] ID",
     "queue a webhook.test call (the running server delivers it)"},
    {"calls", cmd_calls, 1, "webhooks calls [-c FILE] [--json] [-n N] ID",
     "the delivery log, newest first (default 50)"},
    {"pause", cmd_pause, 1, "webhooks pause [-c FILE] ID",
     "stop delivering (queued calls are discarded)"},
    {"resume", cmd_resume, 1, "webhooks resume [-c FILE] ID",
     "deliver again (also re-enables an AUTO_DISABLED webhook)"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        fprintf(f, "  sendpipe %s\n      %s\n", commands[i].usage, commands[i].help);
    }
    fprintf(f, "TEAM is a team id or name. See docs/events.md.\n");
}

int sp__webhooks_cli(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"team", required_argument, NULL, 't'},
        {"url", required_argument, NULL, 'u'},
        {"events", required_argument, NULL, 'e'},
        {"domain", required_argument, NULL, 'd'},
        {"description", required_argument, NULL, 'D'},
        {"api-version", required_argument, NULL, 'V'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const command_t *cmd = NULL;
    cli_t c = {0};
    int o, rc = 0;

    if (argc < 1 || !argv) {
        return 2;
    }
    {
        int st = 0;
        int i = sp__cli_subcommand(argc, argv, "webhooks", commands, NCOMMANDS, sizeof(commands[0]),
                                   usage, &st);
        if (i < 0) {
            return st;
        }
        cmd = &commands[i];
    }
    optind = 0;
    opterr = 0;
    while (rc == 0 && (o = getopt_long(argc - 1, argv + 1, "c:t:n:jh", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            c.config = optarg;
            break;
        case 't':
            c.team = optarg;
            break;
        case 'u':
            c.url = optarg;
            break;
        case 'e':
            c.events = optarg;
            break;
        case 'd':
            if (c.ndomains == sizeof(c.domains) / sizeof(c.domains[0])) {
                fprintf(stderr, "sendpipe: too many --domain\n");
                rc = 2;
            } else {
                c.domains[c.ndomains++] = optarg;
            }
            break;
        case 'D':
            c.description = optarg;
            break;
        case 'V':
            c.api_version = optarg;
            break;
        case 'n':
            c.limit = strtol(optarg, NULL, 10);
            break;
        case 'j':
            c.json = true;
            break;
        case 'h':
            printf("usage: sendpipe %s\n  %s\n", cmd->usage, cmd->help);
            return 0;
        default:
            fprintf(stderr, "sendpipe: webhooks %s: unknown option or missing value: %s\n",
                    cmd->sub, argv[optind > 1 ? optind : 1]);
            rc = 2;
        }
    }
    c.argc = argc - 1 - optind;
    c.argv = argv + 1 + optind;
    if (rc != 0 || c.argc != cmd->nargs) {
        fprintf(stderr, "usage: sendpipe %s\n", cmd->usage);
        return 2;
    }
    sp__log_set_level(SP_LOG_ERROR);
    rc = cmd->fn(&c);
    sp__cli_store_close(&c.s);
    return rc;
}
