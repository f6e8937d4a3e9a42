/* SPDX-License-Identifier: Apache-2.0 */
/* egress_outbox: the development egress. It "delivers" a message by keeping
 * the final record in the store (the plugin's key/value namespace, keyed by
 * message id), where `sendpipe outbox list/show` and later the dashboard show
 * it. It is the default egress, so mail flows with no account anywhere. */
#include <stdio.h>
#include <string.h>

#include <sp/sp_plugin.h>

typedef struct outbox_conf {
    bool enabled;
} outbox_conf_t;

typedef struct outbox {
    sp_plugin_t *p;
    const sp_host_api_t *api;
} outbox_t;

typedef struct pending {
    outbox_t *ob;
    sp_token_t tok;
    bool cancelled;
} pending_t;

static const sp_conf_item_t outbox_schema[] = {
    {SP_CONF_BOOL, "enabled", offsetof(outbox_conf_t, enabled), "true", 0,
     "accept messages for delivery (false: pass them to the next egress plugin)"},
    {0},
};

static void outbox_cancel(sp_token_t tok, void *arg)
{
    pending_t *pd = arg;
    /* The store write still completes later; only its resume is void now. */
    pd->cancelled = true;
}

static void outbox_stored(void *arg, int status)
{
    pending_t *pd = arg;
    outbox_t *ob = pd->ob;
    if (!pd->cancelled) {
        if (status < 0) {
            ob->api->log(ob->p, SP_LOG_WARN, "storing message failed: %s",
                         ob->api->strerror(status));
        }
        ob->api->resume(pd->tok, status == 0 ? SP_ACCEPT : SP_DEFER);
    }
    if (status == 0) {
        ob->api->counter_add(ob->p, "stored", 1);
    }
    ob->api->free(pd);
}

static sp_verdict_t outbox_egress(sp_txn_t *txn, void *ctx)
{
    outbox_t *ob = ctx;
    const sp_host_api_t *api = ob->api;
    sp_msg_t *m = api->txn_msg(txn);
    size_t idlen;
    const char *id = api->msg_get(m, SP_F_ID, &idlen);
    char pid[64];
    void *rec;
    size_t reclen;
    pending_t *pd;
    int rc;

    if (id == NULL || idlen == 0) {
        api->txn_set_reply(txn, 500, "message has no id");
        return SP_REJECT;
    }
    snprintf(pid, sizeof(pid), "outbox-%.*s", (int)idlen, id);
    if (api->msg_set(m, SP_F_PROVIDER_ID, pid, strlen(pid)) < 0) {
        return SP_DEFER;
    }
    if (api->msg_encode(m, &rec, &reclen) < 0) {
        return SP_DEFER;
    }
    pd = api->calloc(1, sizeof(*pd));
    if (pd == NULL) {
        api->free(rec);
        return SP_DEFER;
    }
    pd->ob = ob;
    pd->tok = api->suspend(txn, 0, outbox_cancel, pd);
    if (pd->tok == 0) {
        api->free(rec);
        api->free(pd);
        return SP_DEFER;
    }
    rc = api->kv_put(ob->p, id, idlen, rec, reclen, outbox_stored, pd);
    api->free(rec);
    if (rc < 0) {
        /* kv_put failed synchronously: its callback will not run. */
        api->txn_set_reply(txn, 503, api->strerror(rc));
        api->resume(pd->tok, SP_DEFER);
        api->free(pd);
    }
    return SP_PENDING;
}

static int outbox_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const outbox_conf_t *c = conf;
    outbox_t *ob = api->calloc(1, sizeof(*ob));
    if (ob == NULL) {
        return SP_ENOMEM;
    }
    ob->p = p;
    ob->api = api;
    if (c->enabled) {
        int rc = api->hook(p, SP_STAGE_EGRESS, outbox_egress, 0);
        if (rc < 0) {
            /* fini is not called after a failed init */
            api->free(ob);
            return rc;
        }
    }
    *ctx = ob;
    return 0;
}

static void outbox_fini(sp_plugin_t *p, void *ctx)
{
    outbox_t *ob = ctx;
    if (ob != NULL) {
        ob->api->free(ob);
    }
}

SP_PLUGIN_DEFINE(.name = "egress_outbox", .version = SP_VERSION_STRING,
                 .description = "development egress: keeps delivered messages in the store",
                 .conf = outbox_schema, .conf_size = sizeof(outbox_conf_t), .init = outbox_init,
                 .fini = outbox_fini);
