/* SPDX-License-Identifier: Apache-2.0 */
/* Operator alerts to a Discord webhook. */
#include <stdarg.h>

#include "sp_core/alerts.h"

int sp__alerts_start(struct sp_core *core)
{
    (void)core;
    return 0;
}

void sp__alerts_stop(void)
{
}

void sp__alerts_event(const sp_event_t *ev)
{
    (void)ev;
}

void sp__alert(const char *kind, const char *fmt, ...)
{
    (void)kind;
    (void)fmt;
}
