/* SPDX-License-Identifier: Apache-2.0 */
/* Test plugin: its accept hook suspends and another thread resumes it,
 * either a thread of its own (joined when the txn data is freed) or a pool
 * thread through queue_work. */
#include <pthread.h>
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

SP_EXPORT sp_test_probe_t sp_test_probe;

typedef struct th_conf {
    bool pool; /* queue_work instead of a thread of our own */
} th_conf_t;

typedef struct th_ctx {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const th_conf_t *conf;
} th_ctx_t;

typedef struct th_job {
    const sp_host_api_t *api;
    sp_token_t tok;
    pthread_t thr;
    int rc;
} th_job_t;

static const sp_conf_item_t th_schema[] = {
    {SP_CONF_BOOL, "pool", offsetof(th_conf_t, pool), "false", 0, "use queue_work"},
    {0},
};

static void *th_main(void *arg)
{
    th_job_t *j = arg;
    j->rc = j->api->resume_from_thread(j->tok, SP_ACCEPT);
    return NULL;
}

static void th_work(void *arg)
{
    th_main(arg);
}

static void th_work_done(void *arg, int status)
{
    th_job_t *j = arg;
    SP_TEST_PROBE_RECORD(&sp_test_probe, status);
    j->api->free(j);
}

static void th_join(void *arg)
{
    th_job_t *j = arg;
    pthread_join(j->thr, NULL);
    sp_test_probe.data_frees++;
    j->api->free(j);
}

static sp_verdict_t th_hook(sp_txn_t *txn, void *ctx)
{
    th_ctx_t *c = ctx;
    const sp_host_api_t *api = c->api;
    th_job_t *j = api->calloc(1, sizeof(*j));
    sp_test_probe.hook_calls++;
    if (j == NULL) {
        return SP_DEFER;
    }
    j->api = api;
    j->tok = api->suspend(txn, 0, NULL, NULL);
    if (j->tok == 0) {
        api->free(j);
        return SP_DEFER;
    }
    if (c->conf->pool) {
        if (api->queue_work(c->p, th_work, th_work_done, j) != 0) {
            api->free(j);
            return SP_DEFER; /* suspended but answered: the core cancels the token */
        }
        return SP_PENDING;
    }
    if (pthread_create(&j->thr, NULL, th_main, j) != 0) {
        api->free(j);
        return SP_DEFER;
    }
    api->txn_set_data(txn, c->p, j, th_join);
    return SP_PENDING;
}

static int th_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    th_ctx_t *c;
    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    sp_test_probe.init_calls++;
    c = api->calloc(1, sizeof(*c));
    if (c == NULL) {
        return SP_ENOMEM;
    }
    c->p = p;
    c->api = api;
    c->conf = conf;
    *ctx = c;
    if (api->hook(p, SP_STAGE_ACCEPT, th_hook, 0) != 0) {
        api->free(c);
        return SP_EINVAL;
    }
    return 0;
}

static void th_fini(sp_plugin_t *p, void *ctx)
{
    th_ctx_t *c = ctx;
    (void)p;
    sp_test_probe.fini_calls++;
    c->api->free(c);
}

SP_PLUGIN_DEFINE(.name = "async_thread", .version = "1.0", .conf = th_schema,
                 .conf_size = sizeof(th_conf_t), .init = th_init, .fini = th_fini);
