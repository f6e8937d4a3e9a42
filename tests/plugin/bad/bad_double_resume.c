/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: resumes its token twice, later from a timer or at once inside the hook. */
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

SP_EXPORT sp_test_probe_t sp_test_probe;

typedef struct dr_conf {
    bool sync;
} dr_conf_t;

typedef struct dr_ctx {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const dr_conf_t *conf;
    sp_token_t tok;
    sp_timer_t *timer;
} dr_ctx_t;

static const sp_conf_item_t dr_schema[] = {
    {SP_CONF_BOOL, "sync", offsetof(dr_conf_t, sync), "false", 0, "resume inside the hook"},
    {0},
};

static void dr_twice(dr_ctx_t *c)
{
    SP_TEST_PROBE_RECORD(&sp_test_probe, c->api->resume(c->tok, SP_ACCEPT));
    SP_TEST_PROBE_RECORD(&sp_test_probe, c->api->resume(c->tok, SP_REJECT));
}

static void dr_fire(void *arg)
{
    dr_ctx_t *c = arg;
    c->api->timer_stop(c->timer);
    c->timer = NULL;
    dr_twice(c);
}

static sp_verdict_t dr_hook(sp_txn_t *txn, void *ctx)
{
    dr_ctx_t *c = ctx;
    sp_test_probe.hook_calls++;
    c->tok = c->api->suspend(txn, 0, NULL, NULL);
    sp_test_probe.last_tok = c->tok;
    if (c->conf->sync) {
        dr_twice(c);
    } else {
        c->timer = c->api->timer_start(c->p, 1, 0, dr_fire, c);
    }
    return SP_PENDING;
}

static int dr_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    dr_ctx_t *c;
    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    c = api->calloc(1, sizeof(*c));
    if (c == NULL) {
        return SP_ENOMEM;
    }
    c->p = p;
    c->api = api;
    c->conf = conf;
    if (api->hook(p, SP_STAGE_ACCEPT, dr_hook, 0) != 0) {
        api->free(c);
        return SP_EINVAL;
    }
    *ctx = c;
    return 0;
}

static void dr_fini(sp_plugin_t *p, void *ctx)
{
    dr_ctx_t *c = ctx;
    (void)p;
    c->api->free(c);
}

SP_PLUGIN_DEFINE(.name = "bad_double_resume", .conf = dr_schema, .conf_size = sizeof(dr_conf_t),
                 .init = dr_init, .fini = dr_fini);
