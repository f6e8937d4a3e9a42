/* SPDX-License-Identifier: Apache-2.0 */
/* Stored templates per team (SP_DB_TEMPLATES), the host API's template_load
 * and the `sendpipe templates` CLI. */
#ifndef SP_CORE_TEMPLATES_H
#define SP_CORE_TEMPLATES_H

#include <stdint.h>

#include <sp/sp_plugin.h>

int sp__templates_load(int64_t team, const char *id, sp_msg_t **out);
int sp__templates_cli(int argc, char **argv);

#endif /* SP_CORE_TEMPLATES_H */
