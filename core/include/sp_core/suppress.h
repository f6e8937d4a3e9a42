/* SPDX-License-Identifier: Apache-2.0 */
/* The per-team suppression list (SP_DB_SUPPRESSIONS): backends of the host
 * API's suppress_* members, the feed from bounce/complaint events, and the
 * `sendpipe suppressions` command. */
#ifndef SP_CORE_SUPPRESS_H
#define SP_CORE_SUPPRESS_H

#include <stddef.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

#include "store.h"

/* Longest address kept (bytes, after trimming). */
#define SP_SUPPRESS_EMAIL_MAX 320
/* Longest source (the id of the message that caused an entry). */
#define SP_SUPPRESS_SOURCE_MAX 64

/* Trim ASCII white space and lower-case ASCII letters of `in` into out (the
 * whole string: "Name <a@b>" stays that, lower-cased). SP_EINVAL when the
 * result is empty, longer than SP_SUPPRESS_EMAIL_MAX, or holds a control
 * character. Bytes above 0x7f are kept as they are. */
int sp__suppress_norm(const char *in, char out[SP_SUPPRESS_EMAIL_MAX + 1]);
int sp__suppress_normn(const char *in, size_t len, char out[SP_SUPPRESS_EMAIL_MAX + 1]);
/* "HARD_BOUNCE", "COMPLAINT", "MANUAL"; parse returns -1 for anything else. */
const char *sp__suppress_reason_name(sp_suppress_reason_t r);
int sp__suppress_reason_parse(const char *s);

/* Inside a store write: add or replace an entry (the event feed and the
 * host API both use this). */
int sp__suppress_put_txn(sp_wtxn_t *w, int64_t team, const char *email,
                         sp_suppress_reason_t reason, const char *source, int64_t now_ms);

/* Host API backends (contracts in sp_plugin.h). */
int sp__suppress_check(int64_t team, const char *email, sp_suppress_reason_t *reason);
int sp__suppress_add(sp_plugin_t *p, int64_t team, const char *email,
                     sp_suppress_reason_t reason, const char *source, sp_done_fn done,
                     void *arg);
int sp__suppress_del(sp_plugin_t *p, int64_t team, const char *email, sp_done_fn done,
                     void *arg);
int sp__suppress_list(int64_t team, const char *search, uint64_t skip,
                      int (*each)(void *arg, const sp_suppression_t *s), void *arg);
/* The same reads on a given store (the CLI, tests). */
int sp__suppress_check_in(sp_store_t *st, int64_t team, const char *email,
                          sp_suppress_reason_t *reason);
int sp__suppress_list_in(sp_store_t *st, int64_t team, const char *search, uint64_t skip,
                         int (*each)(void *arg, const sp_suppression_t *s), void *arg);

/* `sendpipe suppressions ...` (argv[0] == "suppressions"). Exit status. */
int sp__suppress_cli(int argc, char **argv);

#endif /* SP_CORE_SUPPRESS_H */
