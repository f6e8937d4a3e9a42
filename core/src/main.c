/* SPDX-License-Identifier: Apache-2.0 */
/* The sendpipe command: serve, check-config, backup, version, and read-only
 * views of the store (outbox, messages). Commands are one table so later
 * subsystems add theirs in one line. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_core/suppress.h"
#include "sp_core/webhooks.h"
#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/tenancy.h"
#include "sp_core/templates.h"
#include "sp_core/cli_store.h"

#define OUTBOX_NS "egress_outbox"

typedef struct cli {
    const char *config; /* -c */
    long limit;         /* --limit */
    int argc;           /* positional arguments after the command */
    char **argv;
} cli_t;

typedef struct command {
    const char *name;
    const char *sub; /* sub-command or NULL */
    int (*fn)(cli_t *c);
    const char *usage;
    const char *help;
} command_t;

static const char *config_path(const cli_t *c)
{
    return sp__cli_config_path(c->config);
}

static int load_config(const cli_t *c, sp_config_t **cfg)
{
    char err[1024];
    const char *path = config_path(c);
    if (sp__config_load(path, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sendpipe: %s\n", err);
        return -1;
    }
    return 0;
}

/* ---- serve ------------------------------------------------------------ */

typedef struct server {
    uv_loop_t *loop;
    sp_core_t *core;
    uv_signal_t sig_term, sig_int, sig_hup;
    bool stopping;
} server_t;

static void on_stopped(void *arg)
{
    server_t *s = arg;
    SP_LOGI("drained, stopping");
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
    /* The store's completion handle stays open until sp__core_free. */
    uv_stop(s->loop);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (s->stopping) {
        SP_LOGW("signal %d during shutdown ignored; still draining", signum);
        return;
    }
    s->stopping = true;
    SP_LOGI("signal %d: stop accepting, draining for up to %llu ms", signum,
            (unsigned long long)s->core->cfg->shutdown_grace_ms);
    sp__core_stop(s->core, s->core->cfg->shutdown_grace_ms, on_stopped, s);
}

/* SIGHUP: reopen the log file (rotation) and apply the log level of the
 * configuration file as it is now. Everything else needs a restart: plugins
 * and the store are not swapped under running messages. */
static void on_hup(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    sp_config_t *cfg = NULL;
    char err[1024];
    int rc = sp__log_reopen();
    if (rc < 0) {
        SP_LOGE("SIGHUP: reopening log failed: %s", sp__strerror(rc));
    }
    if (sp__config_load(s->core->cfg->file, &cfg, err, sizeof(err)) < 0) {
        SP_LOGE("SIGHUP: configuration not reloaded: %s", err);
        return;
    }
    sp__log_set_level(cfg->log_level);
    sp__config_free(cfg);
    SP_LOGI("SIGHUP: log reopened, log level reloaded");
}

static int cmd_serve(cli_t *c)
{
    server_t s = {0};
    sp_config_t *cfg;
    char err[1024];
    bool logs_to_file;
    sigset_t sigs;
    int rc;

    if (load_config(c, &cfg) < 0) {
        return 1;
    }
    rc = sp__log_open(cfg->log_file, cfg->log_level);
    if (rc < 0) {
        fprintf(stderr, "sendpipe: log %s: %s\n", cfg->log_file, sp__strerror(rc));
        sp__config_free(cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    s.loop = uv_default_loop();
    logs_to_file = cfg->log_file != NULL && strcmp(cfg->log_file, "-") != 0;
    /* Listeners open during start-up, before the handlers below exist: hold
     * the signals until then, or an early SIGHUP would kill the process
     * with its default action. Threads started meanwhile (the store writer)
     * inherit the mask and leave these signals to the loop thread. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    rc = sp__core_init(&s.core, cfg, s.loop, err, sizeof(err));
    if (rc < 0) {
        /* One line on stderr; the JSON log gets it too when it is a file. */
        if (logs_to_file) {
            SP_LOGE("start-up failed: %s", err);
        }
        fprintf(stderr, "sendpipe: %s\n", err);
        sp__log_close();
        uv_loop_close(s.loop);
        return 1;
    }
    uv_signal_init(s.loop, &s.sig_term);
    uv_signal_init(s.loop, &s.sig_int);
    uv_signal_init(s.loop, &s.sig_hup);
    s.sig_term.data = s.sig_int.data = s.sig_hup.data = &s;
    uv_signal_start(&s.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&s.sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&s.sig_hup, on_hup, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    {
        char pid[32], np[32];
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        snprintf(np, sizeof(np), "%zu", s.core->nplugins);
        const char *fields[] = {"pid", pid, "data_dir", s.core->cfg->data_dir, "plugins", np,
                                "version", SP_VERSION_STRING, NULL};
        sp__log_fields(SP_LOG_INFO, fields, "sendpipe started");
    }
    uv_run(s.loop, UV_RUN_DEFAULT);
    sp__core_free(s.core);
    /* Close callbacks of what the core and plugins closed; anything still
     * open now is a leak, reported below rather than waited for. */
    for (int i = 0; i < 8 && uv_run(s.loop, UV_RUN_NOWAIT) != 0; i++) {
    }
    rc = uv_loop_close(s.loop);
    if (rc != 0) {
        SP_LOGW("loop closed with handles still open: %s", uv_strerror(rc));
    }
    SP_LOGI("sendpipe stopped");
    sp__log_close();
    return 0;
}

/* ---- check-config ----------------------------------------------------- */

static int cmd_check_config(cli_t *c)
{
    sp_config_t *cfg;
    char err[1024];
    if (c->argc > 0) {
        c->config = c->argv[0];
    }
    if (load_config(c, &cfg) < 0) {
        return 1;
    }
    for (size_t i = 0; i < cfg->nplugins; i++) {
        if (sp__plugin_check(cfg, &cfg->plugins[i], (int)i, err, sizeof(err)) < 0) {
            fprintf(stderr, "sendpipe: %s\n", err);
            sp__config_free(cfg);
            return 1;
        }
    }
    printf("%s: ok (%zu plugins)\n", cfg->file, cfg->nplugins);
    sp__config_free(cfg);
    return 0;
}

/* ---- backup ----------------------------------------------------------- */

/* Copy the API-key server secret beside the store: a backup without it
 * keeps the key records but no key would authenticate. Missing is fine. */
static int copy_secret(const char *dir, const char *dest)
{
    char from[4096], to[4096], buf[256];
    int in, out, rc = 0;
    ssize_t n;
    snprintf(from, sizeof(from), "%s/keys.secret", dir);
    snprintf(to, sizeof(to), "%s/keys.secret", dest);
    in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = -errno;
        close(in);
        return rc;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            rc = -EIO;
            break;
        }
    }
    if (n < 0) {
        rc = -errno;
    }
    if (rc == 0 && fsync(out) < 0) {
        rc = -errno;
    }
    close(in);
    close(out);
    return rc;
}

static int cmd_backup(cli_t *c)
{
    sp_config_t *cfg;
    int rc;
    if (c->argc != 1) {
        fprintf(stderr, "usage: sendpipe backup [-c FILE] DEST\n");
        return 2;
    }
    if (load_config(c, &cfg) < 0) {
        return 1;
    }
    rc = sp__store_backup(cfg->data_dir, c->argv[0]);
    if (rc == 0) {
        rc = copy_secret(cfg->data_dir, c->argv[0]);
    }
    if (rc < 0) {
        fprintf(stderr, "sendpipe: backup of %s to %s failed: %s\n", cfg->data_dir, c->argv[0],
                sp__strerror(rc));
    } else {
        printf("backup of %s written to %s\n", cfg->data_dir, c->argv[0]);
    }
    sp__config_free(cfg);
    return rc < 0 ? 1 : 0;
}

static int cmd_version(cli_t *c)
{
    printf("sendpipe %s (plugin ABI %d.%d, libuv %s)\n", SP_VERSION_STRING, SP_ABI_MAJOR,
           SP_ABI_MINOR, uv_version_string());
    return 0;
}

/* ---- read-only store views ------------------------------------------- */

typedef struct view {
    sp_config_t *cfg;
    sp_store_t *st;
    sp_rtxn_t *r;
} view_t;

static int view_open(cli_t *c, view_t *v)
{
    sp_store_opts_t so = {.read_only = true};
    int rc;
    memset(v, 0, sizeof(*v));
    if (load_config(c, &v->cfg) < 0) {
        return -1;
    }
    so.map_size = v->cfg->map_size;
    rc = sp__store_open(&v->st, v->cfg->data_dir, &so, NULL);
    if (rc == 0) {
        rc = sp__store_read_begin(v->st, &v->r);
    }
    if (rc < 0) {
        fprintf(stderr, "sendpipe: store %s: %s\n", v->cfg->data_dir, sp__strerror(rc));
        if (v->st != NULL) {
            sp__store_close(v->st);
        }
        sp__config_free(v->cfg);
        return -1;
    }
    return 0;
}

static void view_close(view_t *v)
{
    sp__store_read_end(v->r);
    sp__store_close(v->st);
    sp__config_free(v->cfg);
}

static void print_summary(const char *id, const sp_msg_t *m)
{
    int64_t st = -1;
    const char *name;
    const char *from = sp__msg_get(m, SP_F_FROM, NULL);
    const char *subj = sp__msg_get(m, SP_F_SUBJECT, NULL);
    const char *to = sp__msg_get_at(m, SP_F_TO, 0, NULL);
    (void)sp__msg_get_int(m, SP_F_STATUS, &st);
    name = st >= 0 ? sp__status_name((sp_status_t)st) : NULL;
    printf("%s\t%s\t%s\t%s\t%s\n", id, name != NULL ? name : "-", from != NULL ? from : "",
           to != NULL ? to : "", subj != NULL ? subj : "");
}

typedef struct list_ctx {
    long left;
    size_t skip; /* key prefix length to strip */
} list_ctx_t;

static int list_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    list_ctx_t *lc = arg;
    sp_msg_t *m;
    char id[SP_ID_STRLEN + 1];
    if (lc->left-- <= 0) {
        return 1;
    }
    if (lc->skip == 0 && kl == 8) {
        sp__id_str(sp__be64_get(k), id);
    } else {
        size_t n = kl - lc->skip < SP_ID_STRLEN ? kl - lc->skip : SP_ID_STRLEN;
        memcpy(id, (const char *)k + lc->skip, n);
        id[n] = '\0';
    }
    if (sp__msg_decode(v, vl, &m) < 0) {
        printf("%s\t(unreadable record)\n", id);
        return 0;
    }
    print_summary(id, m);
    sp__msg_free(m);
    return 0;
}

static int print_json_record(const void *v, size_t vl)
{
    sp_msg_t *m;
    char *json;
    size_t jl;
    if (sp__msg_decode(v, vl, &m) < 0) {
        fprintf(stderr, "sendpipe: record is unreadable\n");
        return -1;
    }
    if (sp__msg_to_json(m, &json, &jl) < 0) {
        sp__msg_free(m);
        return -1;
    }
    fwrite(json, 1, jl, stdout);
    free(json);
    sp__msg_free(m);
    return 0;
}

static int cmd_outbox_list(cli_t *c)
{
    view_t v;
    list_ctx_t lc = {.left = c->limit > 0 ? c->limit : 100, .skip = sizeof(OUTBOX_NS)};
    if (view_open(c, &v) < 0) {
        return 1;
    }
    (void)sp__rtxn_scan(v.r, SP_DB_KV, OUTBOX_NS, sizeof(OUTBOX_NS), OUTBOX_NS,
                        sizeof(OUTBOX_NS), list_each, &lc);
    view_close(&v);
    return 0;
}

/* The built message bytes (SP_F_MIME) of a record, exactly as they left. */
static int print_raw_record(const void *val, size_t vl)
{
    sp_msg_t *m = NULL;
    const char *mime;
    size_t ml;
    int rc = sp__msg_decode(val, vl, &m);
    if (rc < 0) {
        fprintf(stderr, "sendpipe: record unreadable: %s\n", sp__strerror(rc));
        return rc;
    }
    mime = sp__msg_get(m, SP_F_MIME, &ml);
    if (mime == NULL) {
        fprintf(stderr, "sendpipe: no built message in this record (mime plugin not loaded?)\n");
        rc = SP_ENOTFOUND;
    } else {
        fwrite(mime, 1, ml, stdout);
    }
    sp__msg_free(m);
    return rc;
}

static int outbox_get(cli_t *c, bool raw)
{
    view_t v;
    char key[sizeof(OUTBOX_NS) + 64];
    const void *val;
    size_t vl, idl;
    int rc;
    if (c->argc != 1 || (idl = strlen(c->argv[0])) > 64) {
        fprintf(stderr, "usage: sendpipe outbox %s [-c FILE] ID\n", raw ? "raw" : "show");
        return 2;
    }
    if (view_open(c, &v) < 0) {
        return 1;
    }
    memcpy(key, OUTBOX_NS, sizeof(OUTBOX_NS));
    memcpy(key + sizeof(OUTBOX_NS), c->argv[0], idl);
    rc = sp__rtxn_get(v.r, SP_DB_KV, key, sizeof(OUTBOX_NS) + idl, &val, &vl);
    if (rc < 0) {
        fprintf(stderr, "sendpipe: %s: not in the outbox\n", c->argv[0]);
    } else if (raw) {
        rc = print_raw_record(val, vl);
    } else {
        rc = print_json_record(val, vl);
        printf("\n");
    }
    view_close(&v);
    return rc < 0 ? 1 : 0;
}

static int cmd_outbox_show(cli_t *c)
{
    return outbox_get(c, false);
}

static int cmd_outbox_raw(cli_t *c)
{
    return outbox_get(c, true);
}

static int cmd_messages_list(cli_t *c)
{
    view_t v;
    list_ctx_t lc = {.left = c->limit > 0 ? c->limit : 100, .skip = 0};
    if (view_open(c, &v) < 0) {
        return 1;
    }
    (void)sp__rtxn_scan(v.r, SP_DB_MESSAGES, NULL, 0, NULL, 0, list_each, &lc);
    view_close(&v);
    return 0;
}

static int event_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    int *first = arg;
    int status;
    int64_t when;
    char *data = NULL;
    if (sp__event_decode(v, vl, &status, &when, &data) < 0) {
        return 0;
    }
    printf("%s{\"status\":\"%s\",\"time\":%lld,\"data\":%s}", *first ? "" : ",",
           sp__status_name((sp_status_t)status) ? sp__status_name((sp_status_t)status) : "?",
           (long long)when, data != NULL && data[0] != '\0' ? data : "{}");
    *first = 0;
    free(data);
    return 0;
}

static int cmd_messages_show(cli_t *c)
{
    view_t v;
    uint64_t id;
    uint8_t key[8];
    const void *val;
    size_t vl;
    int rc, first = 1;
    if (c->argc != 1) {
        fprintf(stderr, "usage: sendpipe messages show [-c FILE] ID\n");
        return 2;
    }
    if (sp__id_parse(c->argv[0], strlen(c->argv[0]), &id) < 0) {
        fprintf(stderr, "sendpipe: %s: not a message id\n", c->argv[0]);
        return 1;
    }
    if (view_open(c, &v) < 0) {
        return 1;
    }
    sp__be64_put(key, id);
    rc = sp__rtxn_get(v.r, SP_DB_MESSAGES, key, 8, &val, &vl);
    if (rc < 0) {
        fprintf(stderr, "sendpipe: %s: no such message\n", c->argv[0]);
    } else {
        printf("{\"record\":");
        rc = print_json_record(val, vl);
        printf(",\"events\":[");
        (void)sp__rtxn_scan(v.r, SP_DB_EVENTS, key, 8, key, 8, event_each, &first);
        printf("]}\n");
    }
    view_close(&v);
    return rc < 0 ? 1 : 0;
}

/* ---- dispatch --------------------------------------------------------- */

static int cmd_help(cli_t *c);

static const command_t commands[] = {
    {"serve", NULL, cmd_serve, "serve [-c FILE]", "run the server"},
    {"check-config", NULL, cmd_check_config, "check-config [FILE]",
     "validate the configuration and the plugins' settings without starting"},
    {"backup", NULL, cmd_backup, "backup [-c FILE] DEST",
     "consistent hot copy of the store into directory DEST"},
    {"outbox", "list", cmd_outbox_list, "outbox list [-c FILE] [--limit N]",
     "messages kept by the outbox egress"},
    {"outbox", "show", cmd_outbox_show, "outbox show [-c FILE] ID", "one outbox message as JSON"},
    {"outbox", "raw", cmd_outbox_raw, "outbox raw [-c FILE] ID",
     "the message bytes exactly as they left (RFC 5322)"},
    {"messages", "list", cmd_messages_list, "messages list [-c FILE] [--limit N]",
     "stored messages with their status"},
    {"messages", "show", cmd_messages_show, "messages show [-c FILE] ID",
     "one message record and its events as JSON"},
    {"version", NULL, cmd_version, "version", "print the version"},
    {"help", NULL, cmd_help, "help", "this list"},
};

static int cmd_help(cli_t *c)
{
    printf("usage: sendpipe COMMAND [options]\n\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        printf("  sendpipe %-40s %s\n", commands[i].usage, commands[i].help);
    }
    printf("  sendpipe %-40s %s\n", "teams create|list ...", "teams (see docs/keys.md)");
    printf("  sendpipe %-40s %s\n", "keys create|list|revoke ...", "API keys");
    printf("  sendpipe %-40s %s\n", "domains add|list|rm|verify ...", "sending domains");
    printf("  sendpipe %-40s %s\n", "templates add|list|show|update|rm ...", "stored templates");
    printf("  sendpipe %-40s %s\n", "suppressions list|add|rm ...", "suppression list");
    printf("  sendpipe %-40s %s\n", "webhooks add|list|rm|test|calls ...", "outgoing webhooks");
    printf("\nThe configuration is -c FILE, else $SENDPIPE_CONFIG, else ./conf/sendpipe.yaml,"
           " else " SP_CLI_DEFAULT_CONFIG_SYSTEM ".\n");
    return 0;
}

int main(int argc, char **argv)
{
    cli_t c = {0};
    const command_t *cmd = NULL;
    int argi = 1;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"limit", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;

    if (argc < 2) {
        cmd_help(&c);
        return 2;
    }
    /* teams, keys and domains parse their own options */
    if (strcmp(argv[1], "teams") == 0 || strcmp(argv[1], "keys") == 0 ||
        strcmp(argv[1], "domains") == 0) {
        return sp__tenancy_cli(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "templates") == 0) {
        return sp__templates_cli(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "suppressions") == 0) {
        return sp__suppress_cli(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "webhooks") == 0) {
        return sp__webhooks_cli(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0) {
        return cmd_version(&c);
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        return cmd_help(&c);
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, argv[1]) != 0) {
            continue;
        }
        if (commands[i].sub == NULL) {
            cmd = &commands[i];
            argi = 2;
            break;
        }
        if (argc > 2 && strcmp(commands[i].sub, argv[2]) == 0) {
            cmd = &commands[i];
            argi = 3;
            break;
        }
    }
    if (cmd == NULL) {
        fprintf(stderr, "sendpipe: unknown command '%s%s%s' (see 'sendpipe help')\n", argv[1],
                argc > 2 ? " " : "", argc > 2 ? argv[2] : "");
        return 2;
    }
    optind = argi;
    while ((o = getopt_long(argc, argv, "c:n:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            c.config = optarg;
            break;
        case 'n': {
            char *end;
            errno = 0;
            c.limit = strtol(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || c.limit <= 0) {
                fprintf(stderr, "sendpipe: --limit: expected a positive number\n");
                return 2;
            }
            break;
        }
        case 'h':
            printf("usage: sendpipe %s\n  %s\n", cmd->usage, cmd->help);
            return 0;
        default:
            fprintf(stderr, "usage: sendpipe %s\n", cmd->usage);
            return 2;
        }
    }
    c.argc = argc - optind;
    c.argv = argv + optind;
    return cmd->fn(&c);
}
