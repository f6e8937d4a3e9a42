/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: registers hooks, then fails init; the loader must undo the registrations. */
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

SP_EXPORT sp_test_probe_t sp_test_probe;

static sp_verdict_t bad_hook(sp_txn_t *txn, void *ctx)
{
    (void)txn;
    (void)ctx;
    return SP_ACCEPT;
}

static void bad_event(const sp_event_t *ev, void *ctx)
{
    (void)ev;
    (void)ctx;
}

static int bad_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    (void)conf;
    (void)ctx;
    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    sp_test_probe.init_calls++;
    SP_TEST_PROBE_RECORD(&sp_test_probe, api->hook(p, SP_STAGE_ACCEPT, bad_hook, 0));
    SP_TEST_PROBE_RECORD(&sp_test_probe, api->hook(p, SP_STAGE_EGRESS, bad_hook, 0));
    SP_TEST_PROBE_RECORD(&sp_test_probe, api->on_event(p, bad_event));
    api->log(p, SP_LOG_ERROR, "refusing to start: %s", "on purpose");
    return SP_EINVAL;
}

static void bad_fini(sp_plugin_t *p, void *ctx)
{
    (void)p;
    (void)ctx;
    sp_test_probe.fini_calls++;
}

SP_PLUGIN_DEFINE(.name = "bad_init", .init = bad_init, .fini = bad_fini);
