/* SPDX-License-Identifier: Apache-2.0 */
/* hello: the smallest useful sendpipe plugin. It adds "X-Hello: <greeting>"
 * to every message at the accept stage, logs every status change, and counts
 * what it did (sendpipe_plugin_hello_*_total on /metrics). */
#include <stdio.h>
#include <string.h>

#include <sp/sp_plugin.h>

/* The configuration struct the core fills from the YAML `config:` block. */
typedef struct hello_conf {
    char *greeting;
} hello_conf_t;

static const sp_conf_item_t hello_schema[] = {
    {SP_CONF_STR, "greeting", offsetof(hello_conf_t, greeting), "hello", 0,
     "Value of the X-Hello header added to every message."},
    {0},
};

/* Plugin-global state, made in init and released in fini. */
typedef struct hello {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    char header[256];
    size_t len;
} hello_t;

/* A header value must stay on one line and leave room for the name. */
static int hello_check(const void *conf, char *err, size_t errlen)
{
    const hello_conf_t *c = conf;
    if (strlen(c->greeting) > 200 || strpbrk(c->greeting, "\r\n") != NULL) {
        snprintf(err, errlen, "greeting must be one line of at most 200 bytes");
        return -1;
    }
    return 0;
}

static sp_verdict_t hello_accept(sp_txn_t *txn, void *ctx)
{
    hello_t *h = ctx;
    int rc = h->api->msg_add(h->api->txn_msg(txn), SP_F_HEADERS, h->header, h->len);
    if (rc != 0) {
        /* A greeting is not worth refusing mail over: log and let it pass. */
        h->api->log(h->p, SP_LOG_WARN, "could not add the header: %s", h->api->strerror(rc));
        h->api->counter_add(h->p, "errors", 1);
        return SP_CONTINUE;
    }
    h->api->counter_add(h->p, "messages", 1);
    return SP_CONTINUE;
}

static void hello_event(const sp_event_t *ev, void *ctx)
{
    hello_t *h = ctx;
    h->api->log(h->p, SP_LOG_INFO, "message %s is now %s", ev->msg_id ? ev->msg_id : "?",
                ev->status_name ? ev->status_name : "?");
    h->api->counter_add(h->p, "events", 1);
}

static int hello_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const hello_conf_t *c = conf;
    hello_t *h = api->calloc(1, sizeof(*h));
    int rc;

    if (h == NULL) {
        return SP_ENOMEM;
    }
    h->p = p;
    h->api = api;
    h->len = (size_t)snprintf(h->header, sizeof(h->header), "X-Hello: %s", c->greeting);
    /* Registration is allowed only here, during init. */
    rc = api->hook(p, SP_STAGE_ACCEPT, hello_accept, 0);
    if (rc == 0) {
        rc = api->on_event(p, hello_event);
    }
    if (rc != 0) {
        api->log(p, SP_LOG_ERROR, "registration failed: %s", api->strerror(rc));
        api->free(h);
        return rc;
    }
    *ctx = h;
    return 0;
}

static void hello_fini(sp_plugin_t *p, void *ctx)
{
    hello_t *h = ctx;
    (void)p;
    h->api->free(h);
}

SP_PLUGIN_DEFINE(.name = "hello", .version = "1.0.0",
                 .description = "Adds an X-Hello header to every message",
                 .conf = hello_schema, .conf_size = sizeof(hello_conf_t),
                 .conf_check = hello_check, .init = hello_init, .fini = hello_fini);
