/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: registers hooks outside init (from a hook and from fini),
 * which the host refuses with SP_ESTATE. */
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

SP_EXPORT sp_test_probe_t sp_test_probe;

typedef struct lh_ctx {
    sp_plugin_t *p;
    const sp_host_api_t *api;
} lh_ctx_t;

static sp_verdict_t lh_hook(sp_txn_t *txn, void *ctx);

static void lh_event(const sp_event_t *ev, void *ctx)
{
    (void)ev;
    (void)ctx;
}

static sp_verdict_t lh_hook(sp_txn_t *txn, void *ctx)
{
    lh_ctx_t *c = ctx;
    (void)txn;
    sp_test_probe.hook_calls++;
    SP_TEST_PROBE_RECORD(&sp_test_probe, c->api->hook(c->p, SP_STAGE_EGRESS, lh_hook, 0));
    SP_TEST_PROBE_RECORD(&sp_test_probe, c->api->on_event(c->p, lh_event));
    return SP_CONTINUE;
}

static lh_ctx_t lh_state;

static int lh_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    (void)conf;
    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    lh_state.p = p;
    lh_state.api = api;
    *ctx = &lh_state;
    /* suspend outside a hook is refused too (token 0) */
    SP_TEST_PROBE_RECORD(&sp_test_probe, (int)api->suspend(NULL, 0, NULL, NULL));
    return api->hook(p, SP_STAGE_ACCEPT, lh_hook, 0);
}

static void lh_fini(sp_plugin_t *p, void *ctx)
{
    lh_ctx_t *c = ctx;
    sp_test_probe.fini_calls++;
    SP_TEST_PROBE_RECORD(&sp_test_probe, c->api->hook(p, SP_STAGE_ACCEPT, lh_hook, 0));
}

SP_PLUGIN_DEFINE(.name = "bad_late_hook", .init = lh_init, .fini = lh_fini);
