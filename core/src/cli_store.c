/* SPDX-License-Identifier: Apache-2.0 */
/* The store plumbing of the store-writing commands (see cli_store.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sp_core/cli_store.h"
#include "sp_core/log.h"

const char *sp__cli_config_path(const char *given)
{
    const char *env = getenv("SENDPIPE_CONFIG");
    struct stat sb;

    if (given != NULL) {
        return given;
    }
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    if (stat("conf/sendpipe.yaml", &sb) == 0) {
        return "conf/sendpipe.yaml";
    }
    return SP_CLI_DEFAULT_CONFIG_SYSTEM;
}

int sp__cli_store_open(sp_cli_store_t *cs, const char *config)
{
    char err[1024];
    sp_store_opts_t so = {0};
    int rc;

    if (sp__config_load(sp__cli_config_path(config), &cs->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sendpipe: %s\n", err);
        return -1;
    }
    if ((rc = uv_loop_init(&cs->loop)) != 0) {
        fprintf(stderr, "sendpipe: %s\n", uv_strerror(rc));
        return -1;
    }
    cs->loop_ok = true;
    so.map_size = cs->cfg->map_size;
    so.sync = cs->cfg->sync;
    so.max_batch = 1;
    if ((rc = sp__store_open(&cs->st, cs->cfg->data_dir, &so, &cs->loop)) != 0) {
        fprintf(stderr, "sendpipe: store %s: %s\n", cs->cfg->data_dir, sp__strerror(rc));
        cs->st = NULL;
        return -1;
    }
    return 0;
}

void sp__cli_store_close(sp_cli_store_t *cs)
{
    if (cs->st != NULL) {
        sp__store_close(cs->st);
        cs->st = NULL;
    }
    if (cs->loop_ok) {
        uv_run(&cs->loop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&cs->loop);
        cs->loop_ok = false;
    }
    sp__config_free(cs->cfg);
    cs->cfg = NULL;
}

typedef struct write_wait {
    bool done;
    int rc;
} write_wait_t;

typedef struct write_job {
    int (*apply)(sp_wtxn_t *w, void *arg);
    void *arg;
    write_wait_t wait;
} write_job_t;

static int job_apply(sp_wtxn_t *w, void *arg)
{
    write_job_t *j = arg;
    return j->apply(w, j->arg);
}

static void job_done(void *arg, int status)
{
    write_job_t *j = arg;
    j->wait.rc = status;
    j->wait.done = true;
}

int sp__cli_store_write(sp_cli_store_t *cs, int (*apply)(sp_wtxn_t *w, void *arg), void *arg)
{
    write_job_t j = {.apply = apply, .arg = arg};
    int rc = sp__store_write(cs->st, job_apply, job_done, &j);

    if (rc != 0) {
        return rc;
    }
    while (!j.wait.done) {
        uv_run(&cs->loop, UV_RUN_ONCE);
    }
    return j.wait.rc;
}

int sp__cli_store_read(sp_cli_store_t *cs, sp_rtxn_t **r)
{
    int rc = sp__store_read_begin(cs->st, r);

    if (rc != 0) {
        fprintf(stderr, "sendpipe: store %s: %s\n", cs->cfg->data_dir, sp__strerror(rc));
    }
    return rc;
}

int sp__cli_subcommand(int argc, char **argv, const char *group, const void *table, size_t n,
                       size_t stride, void (*usage)(FILE *f), int *status)
{
    bool help;
    for (size_t i = 0; argc > 1 && i < n; i++) {
        const char *name = *(const char *const *)((const char *)table + i * stride);
        if (strcmp(name, argv[1]) == 0) {
            return (int)i;
        }
    }
    help = argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
                        strcmp(argv[1], "help") == 0);
    if (!help) {
        if (argc > 1) {
            fprintf(stderr, "sendpipe: unknown command '%s %s'\n", group, argv[1]);
        } else {
            fprintf(stderr, "sendpipe: %s needs a sub-command first\n", group);
        }
    }
    usage(help ? stdout : stderr);
    *status = help ? 0 : 2;
    return -1;
}
