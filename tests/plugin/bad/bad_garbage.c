/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: answers with things that are not verdicts (mode chosen by config). */
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

SP_EXPORT sp_test_probe_t sp_test_probe;

typedef struct gb_conf {
    char *mode; /* big, negative, pending, resume_garbage, resume_pending, answer_after_suspend */
} gb_conf_t;

typedef struct gb_ctx {
    const sp_host_api_t *api;
    const gb_conf_t *conf;
} gb_ctx_t;

static const sp_conf_item_t gb_schema[] = {
    {SP_CONF_STR, "mode", offsetof(gb_conf_t, mode), "big", 0, "which garbage"},
    {0},
};

static void gb_cancel(sp_token_t tok, void *arg)
{
    (void)tok;
    (void)arg;
    sp_test_probe.cancel_calls++;
}

static sp_verdict_t gb_hook(sp_txn_t *txn, void *ctx)
{
    gb_ctx_t *c = ctx;
    const char *m = c->conf->mode;
    sp_token_t tok;
    sp_test_probe.hook_calls++;
    if (strcmp(m, "big") == 0) {
        return (sp_verdict_t)42;
    }
    if (strcmp(m, "negative") == 0) {
        return (sp_verdict_t)-1;
    }
    if (strcmp(m, "pending") == 0) {
        return SP_PENDING;
    }
    tok = c->api->suspend(txn, 0, gb_cancel, NULL);
    if (strcmp(m, "resume_garbage") == 0) {
        SP_TEST_PROBE_RECORD(&sp_test_probe, c->api->resume(tok, (sp_verdict_t)99));
        return SP_PENDING;
    }
    if (strcmp(m, "resume_pending") == 0) {
        SP_TEST_PROBE_RECORD(&sp_test_probe, c->api->resume(tok, SP_PENDING));
        return SP_PENDING;
    }
    return SP_ACCEPT; /* answer_after_suspend */
}

static int gb_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    gb_ctx_t *c;
    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    c = api->calloc(1, sizeof(*c));
    if (c == NULL) {
        return SP_ENOMEM;
    }
    c->api = api;
    c->conf = conf;
    if (api->hook(p, SP_STAGE_ACCEPT, gb_hook, 0) != 0) {
        api->free(c);
        return SP_EINVAL;
    }
    *ctx = c;
    return 0;
}

static void gb_fini(sp_plugin_t *p, void *ctx)
{
    gb_ctx_t *c = ctx;
    (void)p;
    c->api->free(c);
}

SP_PLUGIN_DEFINE(.name = "bad_garbage", .conf = gb_schema, .conf_size = sizeof(gb_conf_t),
                 .init = gb_init, .fini = gb_fini);
