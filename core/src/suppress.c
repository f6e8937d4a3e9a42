/* SPDX-License-Identifier: Apache-2.0 */
/* The per-team suppression list. */
#include <ctype.h>
#include <string.h>

#include "sp_core/suppress.h"

int sp__suppress_norm(const char *in, char out[SP_SUPPRESS_EMAIL_MAX + 1])
{
    (void)in;
    (void)out;
    return SP_EINVAL;
}

const char *sp__suppress_reason_name(sp_suppress_reason_t r)
{
    switch (r) {
    case SP_SUPPRESS_HARD_BOUNCE:
        return "HARD_BOUNCE";
    case SP_SUPPRESS_COMPLAINT:
        return "COMPLAINT";
    case SP_SUPPRESS_MANUAL:
        return "MANUAL";
    }
    return NULL;
}

int sp__suppress_reason_parse(const char *s)
{
    for (int r = SP_SUPPRESS_HARD_BOUNCE; r <= SP_SUPPRESS_MANUAL; r++) {
        if (s != NULL && strcmp(s, sp__suppress_reason_name((sp_suppress_reason_t)r)) == 0) {
            return r;
        }
    }
    return -1;
}

int sp__suppress_put_txn(sp_wtxn_t *w, int64_t team, const char *email,
                         sp_suppress_reason_t reason, const char *source, int64_t now_ms)
{
    (void)w, (void)team, (void)email, (void)reason, (void)source, (void)now_ms;
    return 0;
}

int sp__suppress_check(int64_t team, const char *email, sp_suppress_reason_t *reason)
{
    (void)team, (void)email, (void)reason;
    return SP_ENOTFOUND;
}

int sp__suppress_add(sp_plugin_t *p, int64_t team, const char *email,
                     sp_suppress_reason_t reason, const char *source, sp_done_fn done,
                     void *arg)
{
    (void)p, (void)team, (void)email, (void)reason, (void)source, (void)done, (void)arg;
    return SP_ESTATE;
}

int sp__suppress_del(sp_plugin_t *p, int64_t team, const char *email, sp_done_fn done,
                     void *arg)
{
    (void)p, (void)team, (void)email, (void)done, (void)arg;
    return SP_ESTATE;
}

int sp__suppress_list(int64_t team, const char *search, uint64_t skip,
                      int (*each)(void *arg, const sp_suppression_t *s), void *arg)
{
    (void)team, (void)search, (void)skip, (void)each, (void)arg;
    return 0;
}

int sp__suppress_cli(int argc, char **argv)
{
    (void)argc, (void)argv;
    return 2;
}
