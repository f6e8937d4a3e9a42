/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: suspends and never resumes; only its cancel function ever runs. */
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

SP_EXPORT sp_test_probe_t sp_test_probe;

typedef struct nv_conf {
    uint64_t timeout; /* passed to suspend; 0: the plugin's YAML timeout */
} nv_conf_t;

typedef struct nv_ctx {
    const sp_host_api_t *api;
    const nv_conf_t *conf;
} nv_ctx_t;

static const sp_conf_item_t nv_schema[] = {
    {SP_CONF_DURATION, "timeout", offsetof(nv_conf_t, timeout), "20ms", 0, "suspend timeout"},
    {0},
};

static void nv_cancel(sp_token_t tok, void *arg)
{
    nv_ctx_t *c = arg;
    sp_test_probe.cancel_calls++;
    /* The token is dead by now: a late resume must be refused. */
    SP_TEST_PROBE_RECORD(&sp_test_probe, c->api->resume(tok, SP_ACCEPT));
}

static sp_verdict_t nv_hook(sp_txn_t *txn, void *ctx)
{
    nv_ctx_t *c = ctx;
    sp_test_probe.hook_calls++;
    sp_test_probe.last_tok = c->api->suspend(txn, (uint32_t)c->conf->timeout, nv_cancel, c);
    return SP_PENDING;
}

static int nv_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    nv_ctx_t *c;
    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    c = api->calloc(1, sizeof(*c));
    if (c == NULL) {
        return SP_ENOMEM;
    }
    c->api = api;
    c->conf = conf;
    if (api->hook(p, SP_STAGE_ACCEPT, nv_hook, 0) != 0) {
        api->free(c);
        return SP_EINVAL;
    }
    *ctx = c;
    return 0;
}

static void nv_fini(sp_plugin_t *p, void *ctx)
{
    nv_ctx_t *c = ctx;
    (void)p;
    c->api->free(c);
}

SP_PLUGIN_DEFINE(.name = "bad_never", .conf = nv_schema, .conf_size = sizeof(nv_conf_t),
                 .init = nv_init, .fini = nv_fini);
