/* SPDX-License-Identifier: Apache-2.0 */
/* Test plugin for the plugin KV store. Its accept hook performs the
 * operation the message names when its field "kv_target" names this plugin:
 * "kv_op" (put, get, del, scan), "kv_key", "kv_val", "kv_limit". Writes
 * suspend until the commit and resume with ACCEPT (status 0) or REJECT; the
 * reply text carries the result. Built twice (KV_NAME) to check that
 * namespaces do not mix. */
#include <stdio.h>
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

#ifndef KV_NAME
#define KV_NAME "kv_one"
#endif

SP_EXPORT sp_test_probe_t sp_test_probe;

typedef struct kv_ctx {
    sp_plugin_t *p;
    const sp_host_api_t *api;
} kv_ctx_t;

typedef struct kv_op {
    kv_ctx_t *c;
    sp_txn_t *txn;
    sp_token_t tok;
} kv_op_t;

typedef struct scan_buf {
    char out[256];
    size_t len;
    int limit; /* stop after this many, 0: all */
    int seen;
} scan_buf_t;

static void kv_written(void *arg, int status)
{
    kv_op_t *op = arg;
    const sp_host_api_t *api = op->c->api;
    char text[64];
    snprintf(text, sizeof(text), "status %d", status);
    /* The txn stays valid until the token is resumed. */
    api->txn_set_reply(op->txn, 0, text);
    SP_TEST_PROBE_RECORD(&sp_test_probe, api->resume(op->tok, status == 0 ? SP_ACCEPT
                                                                          : SP_REJECT));
    api->free(op);
}

static int kv_each(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    scan_buf_t *b = arg;
    int n = snprintf(b->out + b->len, sizeof(b->out) - b->len, "%s%.*s=%.*s",
                     b->len > 0 ? "," : "", (int)klen, (const char *)key, (int)vlen,
                     (const char *)val);
    if (n > 0 && (size_t)n < sizeof(b->out) - b->len) {
        b->len += (size_t)n;
    }
    b->seen++;
    return b->limit > 0 && b->seen >= b->limit ? 1 : 0;
}

static sp_verdict_t kv_hook(sp_txn_t *txn, void *ctx)
{
    kv_ctx_t *c = ctx;
    const sp_host_api_t *api = c->api;
    sp_msg_t *m = api->txn_msg(txn);
    size_t kl = 0, vl = 0;
    const char *op = api->msg_get(m, "kv_op", NULL);
    const char *key = api->msg_get(m, "kv_key", &kl);
    const char *val = api->msg_get(m, "kv_val", &vl);
    int64_t limit = 0;
    char text[300];
    int rc;

    const char *target = api->msg_get(m, "kv_target", NULL);

    sp_test_probe.hook_calls++;
    if (op == NULL || target == NULL || strcmp(target, KV_NAME) != 0) {
        return SP_CONTINUE;
    }
    if (strcmp(op, "get") == 0) {
        void *v = NULL;
        size_t len = 0;
        rc = api->kv_get(c->p, key, kl, &v, &len);
        if (rc != 0) {
            snprintf(text, sizeof(text), "get %d", rc);
            api->txn_set_reply(txn, 0, text);
            return SP_REJECT;
        }
        snprintf(text, sizeof(text), "%.*s", (int)len, (const char *)v);
        api->free(v);
        api->txn_set_reply(txn, 0, text);
        return SP_ACCEPT;
    }
    if (strcmp(op, "scan") == 0) {
        scan_buf_t b;
        memset(&b, 0, sizeof(b));
        (void)api->msg_get_int(m, "kv_limit", &limit);
        b.limit = (int)limit;
        rc = api->kv_scan(c->p, key, kl, kv_each, &b);
        snprintf(text, sizeof(text), "%d:%s", rc, b.out);
        api->txn_set_reply(txn, 0, text);
        return SP_ACCEPT;
    }
    if (strcmp(op, "put") == 0 || strcmp(op, "del") == 0) {
        kv_op_t *o = api->calloc(1, sizeof(*o));
        if (o == NULL) {
            return SP_DEFER;
        }
        o->c = c;
        o->txn = txn;
        o->tok = api->suspend(txn, 0, NULL, NULL);
        if (op[0] == 'p') {
            rc = api->kv_put(c->p, key, kl, val, vl, kv_written, o);
        } else {
            rc = api->kv_del(c->p, key, kl, kv_written, o);
        }
        if (rc != 0) {
            /* done will never run: answer now through the token */
            snprintf(text, sizeof(text), "submit %d", rc);
            api->txn_set_reply(txn, 0, text);
            api->resume(o->tok, SP_REJECT);
            api->free(o);
        }
        return SP_PENDING;
    }
    return SP_REJECT;
}

static int kv_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    kv_ctx_t *c;
    (void)conf;
    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    c = api->calloc(1, sizeof(*c));
    if (c == NULL) {
        return SP_ENOMEM;
    }
    c->p = p;
    c->api = api;
    if (api->hook(p, SP_STAGE_ACCEPT, kv_hook, 0) != 0) {
        api->free(c);
        return SP_EINVAL;
    }
    *ctx = c;
    return 0;
}

static void kv_fini(sp_plugin_t *p, void *ctx)
{
    kv_ctx_t *c = ctx;
    (void)p;
    c->api->free(c);
}

SP_PLUGIN_DEFINE(.name = KV_NAME, .version = "1.0", .init = kv_init, .fini = kv_fini);
