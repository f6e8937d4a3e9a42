/* SPDX-License-Identifier: Apache-2.0 */
/* Stored templates per team (SP_DB_TEMPLATES), the host API's template_load
 * and the `sendpipe templates` CLI. */
#ifndef SP_CORE_TEMPLATES_H
#define SP_CORE_TEMPLATES_H

#include <stdint.h>

#include <sp/sp_plugin.h>

#include "store.h"

#define SP_TEMPLATE_NAME_MAX 100          /* bytes */
#define SP_TEMPLATE_SUBJECT_MAX 998       /* bytes, no CR or LF */
#define SP_TEMPLATE_BODY_MAX (1024 * 1024) /* bytes of html, and of text */

/* A template of `team` by id (the 13-character id, any case) as a new
 * message with "id", "name", "subject", "html", "text" (absent when empty).
 * 0, SP_ENOTFOUND (unknown, malformed id, another team's), SP_ECORRUPT,
 * SP_ESTATE (no running core). Any thread. */
int sp__templates_load(int64_t team, const char *id, sp_msg_t **out);
/* Same against an explicit store (tests, CLI). */
int sp__templates_load_in(sp_store_t *st, int64_t team, const char *id, sp_msg_t **out);

/* `sendpipe templates ...`: argv[0] is "templates", argv[1] the sub-command.
 * Returns the process exit code. */
int sp__templates_cli(int argc, char **argv);

#endif /* SP_CORE_TEMPLATES_H */
