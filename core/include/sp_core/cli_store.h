/* SPDX-License-Identifier: Apache-2.0 */
/* What the store-writing commands (teams, keys, domains, templates) share:
 * the configuration search order, opening the store beside a running server,
 * and one synchronous durable write. */
#ifndef SP_CORE_CLI_STORE_H
#define SP_CORE_CLI_STORE_H

#include <stdbool.h>
#include <stdio.h>

#include <uv.h>

#include "conf.h"
#include "store.h"

#define SP_CLI_DEFAULT_CONFIG_SYSTEM "/etc/sendpipe/sendpipe.yaml"

typedef struct sp_cli_store {
    sp_config_t *cfg;
    uv_loop_t loop;
    bool loop_ok;
    sp_store_t *st;
} sp_cli_store_t;

/* -c FILE, else $SENDPIPE_CONFIG, else ./conf/sendpipe.yaml, else
 * /etc/sendpipe/sendpipe.yaml. */
const char *sp__cli_config_path(const char *given);

/* Load the configuration and open the store read-write (a store the server
 * has not created yet gets its databases here; LMDB lets this process write
 * beside a running server). Prints the error and returns -1 on failure. */
int sp__cli_store_open(sp_cli_store_t *cs, const char *config);

/* Close whatever open() opened; safe on a zeroed or half-opened value. */
void sp__cli_store_close(sp_cli_store_t *cs);

/* Queue apply(w, arg) on the store's writer and run the private loop until
 * the commit is durable. Returns the write's status. */
int sp__cli_store_write(sp_cli_store_t *cs, int (*apply)(sp_wtxn_t *w, void *arg), void *arg);

/* The sub-command argv[1] of the command group `group` ("templates"): the
 * index of the table entry whose first member (a `const char *` name)
 * equals it, entries `stride` bytes apart. Otherwise -1 with *status: 0
 * after printing usage to stdout for -h/--help/help, 2 after an error line
 * and usage on stderr. */
int sp__cli_subcommand(int argc, char **argv, const char *group, const void *table, size_t n,
                       size_t stride, void (*usage)(FILE *f), int *status);

/* A read snapshot; prints the error itself. */
int sp__cli_store_read(sp_cli_store_t *cs, sp_rtxn_t **r);

#endif /* SP_CORE_CLI_STORE_H */
