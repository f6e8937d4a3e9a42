/* SPDX-License-Identifier: Apache-2.0 */
/* Test plugin: its accept hook suspends and a timer resumes it later with
 * the configured verdict; its cancel function releases the timer. */
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

SP_EXPORT sp_test_probe_t sp_test_probe;

typedef struct at_conf {
    uint64_t delay;   /* ms until the timer resumes */
    uint64_t timeout; /* suspend timeout, 0: the plugin's */
    char *verdict;
} at_conf_t;

typedef struct at_ctx {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const at_conf_t *conf;
    sp_verdict_t verdict;
} at_ctx_t;

typedef struct at_pending {
    at_ctx_t *c;
    sp_token_t tok;
    sp_timer_t *timer;
} at_pending_t;

static const sp_conf_item_t at_schema[] = {
    {SP_CONF_DURATION, "delay", offsetof(at_conf_t, delay), "5ms", 0, "resume after"},
    {SP_CONF_DURATION, "timeout", offsetof(at_conf_t, timeout), "0", 0, "suspend timeout"},
    {SP_CONF_STR, "verdict", offsetof(at_conf_t, verdict), "accept", 0, "verdict"},
    {0},
};

static void at_fire(void *arg)
{
    at_pending_t *pd = arg;
    const sp_host_api_t *api = pd->c->api;
    int rc;
    api->timer_stop(pd->timer); /* allowed inside its own callback */
    rc = api->resume(pd->tok, pd->c->verdict);
    SP_TEST_PROBE_RECORD(&sp_test_probe, rc);
    api->free(pd);
}

static void at_cancel(sp_token_t tok, void *arg)
{
    at_pending_t *pd = arg;
    (void)tok;
    sp_test_probe.cancel_calls++;
    pd->c->api->timer_stop(pd->timer);
    pd->c->api->free(pd);
}

static sp_verdict_t at_hook(sp_txn_t *txn, void *ctx)
{
    at_ctx_t *c = ctx;
    at_pending_t *pd = c->api->calloc(1, sizeof(*pd));
    sp_test_probe.hook_calls++;
    if (pd == NULL) {
        return SP_DEFER;
    }
    pd->c = c;
    pd->tok = c->api->suspend(txn, (uint32_t)c->conf->timeout, at_cancel, pd);
    if (pd->tok == 0) {
        c->api->free(pd);
        return SP_DEFER;
    }
    sp_test_probe.last_tok = pd->tok;
    pd->timer = c->api->timer_start(c->p, c->conf->delay, 0, at_fire, pd);
    return SP_PENDING;
}

static int at_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    static const char *const words[] = {"continue", "accept", "reject", "defer", "drop"};
    const at_conf_t *cf = conf;
    at_ctx_t *c;
    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    sp_test_probe.init_calls++;
    c = api->calloc(1, sizeof(*c));
    if (c == NULL) {
        return SP_ENOMEM;
    }
    c->p = p;
    c->api = api;
    c->conf = cf;
    c->verdict = (sp_verdict_t)42;
    for (int i = 0; i < 5; i++) {
        if (strcmp(cf->verdict, words[i]) == 0) {
            c->verdict = (sp_verdict_t)i;
        }
    }
    *ctx = c;
    if (api->hook(p, SP_STAGE_ACCEPT, at_hook, 0) != 0) {
        api->free(c);
        return SP_EINVAL;
    }
    return 0;
}

static void at_fini(sp_plugin_t *p, void *ctx)
{
    at_ctx_t *c = ctx;
    (void)p;
    sp_test_probe.fini_calls++;
    c->api->free(c);
}

SP_PLUGIN_DEFINE(.name = "async_timer", .version = "1.0", .conf = at_schema,
                 .conf_size = sizeof(at_conf_t), .init = at_init, .fini = at_fini);
