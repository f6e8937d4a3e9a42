/* SPDX-License-Identifier: Apache-2.0 */
/* Stored templates: not implemented yet. */
#include <stdio.h>

#include "sp_core/templates.h"

int sp__templates_load(int64_t team, const char *id, sp_msg_t **out)
{
    (void)team;
    (void)id;
    (void)out;
    return SP_ENOTFOUND;
}

int sp__templates_cli(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sendpipe templates: not available in this build\n");
    return 2;
}
