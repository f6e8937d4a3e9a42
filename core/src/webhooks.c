/* SPDX-License-Identifier: Apache-2.0 */
/* Outgoing webhooks. */
#include "sp_core/webhooks.h"

int sp__webhooks_enqueue_txn(sp_wtxn_t *w, uint64_t id, const sp_msg_t *m, sp_status_t status,
                             int64_t when, const char *data)
{
    (void)w, (void)id, (void)m, (void)status, (void)when, (void)data;
    return 0;
}

int sp__webhooks_start(struct sp_core *core)
{
    (void)core;
    return 0;
}

void sp__webhooks_stop(void)
{
}

void sp__webhooks_kick(void)
{
}

int sp__webhook_put(sp_plugin_t *p, int64_t team, int64_t id, const char *spec_json,
                    sp_json_cb cb, void *arg)
{
    (void)p, (void)team, (void)id, (void)spec_json, (void)cb, (void)arg;
    return SP_ESTATE;
}

int sp__webhook_del(sp_plugin_t *p, int64_t team, int64_t id, sp_done_fn done, void *arg)
{
    (void)p, (void)team, (void)id, (void)done, (void)arg;
    return SP_ESTATE;
}

int sp__webhook_list(int64_t team, int64_t id, int (*each)(void *arg, const char *json),
                     void *arg)
{
    (void)team, (void)id, (void)each, (void)arg;
    return 0;
}

int sp__webhook_calls(int64_t team, int64_t id, uint64_t skip,
                      int (*each)(void *arg, const char *json), void *arg)
{
    (void)team, (void)id, (void)skip, (void)each, (void)arg;
    return 0;
}

int sp__webhook_test(sp_plugin_t *p, int64_t team, int64_t id, sp_json_cb cb, void *arg)
{
    (void)p, (void)team, (void)id, (void)cb, (void)arg;
    return SP_ESTATE;
}

int sp__webhooks_cli(int argc, char **argv)
{
    (void)argc, (void)argv;
    return 2;
}
