/* SPDX-License-Identifier: Apache-2.0 */
/* Test plugin that plays many roles: for each stage its config names the
 * verdict to return (no key: no hook), and every call is appended to the
 * message's "trace" list as "<name>:<stage>". Built several times under
 * different names (REC_NAME) so one pipeline can hold several. */
#include <stdlib.h>
#include <string.h>

#include <sp/sp_plugin.h>

#include "probe.h"

#ifndef REC_NAME
#define REC_NAME "rec_a"
#endif

SP_EXPORT sp_test_probe_t sp_test_probe;

typedef struct rec_conf {
    char *stage[SP_STAGE__COUNT]; /* verdict per stage, NULL: no hook */
    int64_t priority;
    char *reply;
    int64_t code;
    char *status;
    bool data;
    bool events;
    uint64_t retry_in;
} rec_conf_t;

typedef struct rec {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const rec_conf_t *conf;
    int verdict[SP_STAGE__COUNT];
    int status; /* -1: none */
} rec_t;

static const sp_conf_item_t rec_schema[] = {
    {SP_CONF_STR, "accept", offsetof(rec_conf_t, stage[SP_STAGE_ACCEPT]), NULL, 0, "verdict"},
    {SP_CONF_STR, "render", offsetof(rec_conf_t, stage[SP_STAGE_RENDER]), NULL, 0, "verdict"},
    {SP_CONF_STR, "transform", offsetof(rec_conf_t, stage[SP_STAGE_TRANSFORM]), NULL, 0,
     "verdict"},
    {SP_CONF_STR, "sign", offsetof(rec_conf_t, stage[SP_STAGE_SIGN]), NULL, 0, "verdict"},
    {SP_CONF_STR, "egress", offsetof(rec_conf_t, stage[SP_STAGE_EGRESS]), NULL, 0, "verdict"},
    {SP_CONF_INT, "priority", offsetof(rec_conf_t, priority), "0", 0, "hook priority"},
    {SP_CONF_STR, "reply", offsetof(rec_conf_t, reply), NULL, 0, "reply text"},
    {SP_CONF_INT, "code", offsetof(rec_conf_t, code), "0", 0, "reply code"},
    {SP_CONF_STR, "status", offsetof(rec_conf_t, status), NULL, 0, "status to set"},
    {SP_CONF_BOOL, "data", offsetof(rec_conf_t, data), "false", 0, "attach txn data"},
    {SP_CONF_BOOL, "events", offsetof(rec_conf_t, events), "false", 0, "event hook"},
    {SP_CONF_DURATION, "retry_in", offsetof(rec_conf_t, retry_in), "0", 0, "retry hint"},
    {0},
};

static const char *const verdict_words[] = {"continue", "accept", "reject", "defer", "drop"};

/* -1: unknown; 42: a garbage verdict on purpose */
static int parse_verdict(const char *s)
{
    if (strcmp(s, "garbage") == 0) {
        return 42;
    }
    for (int i = 0; i < 5; i++) {
        if (strcmp(s, verdict_words[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static int rec_conf_check(const void *conf, char *err, size_t errlen)
{
    const rec_conf_t *c = conf;
    for (int s = 0; s < SP_STAGE__COUNT; s++) {
        if (c->stage[s] != NULL && parse_verdict(c->stage[s]) < 0) {
            size_t i = 0;
            const char *m = "unknown verdict";
            for (; m[i] != '\0' && i + 1 < errlen; i++) {
                err[i] = m[i];
            }
            err[i] = '\0';
            return -1;
        }
    }
    return 0;
}

static void data_free(void *d)
{
    sp_test_probe.data_frees++;
    free(d);
}

static sp_verdict_t rec_hook(sp_txn_t *txn, void *ctx)
{
    rec_t *r = ctx;
    const sp_host_api_t *api = r->api;
    sp_stage_t st = api->txn_stage(txn);
    static const char *const names[] = {"accept", "render", "transform", "sign", "egress"};
    char line[64];
    size_t n = strlen(REC_NAME);
    int v = r->verdict[st];

    sp_test_probe.hook_calls++;
    api->counter_add(r->p, "hooks", 1);
    memcpy(line, REC_NAME, n);
    line[n] = ':';
    strcpy(line + n + 1, names[st]);
    api->msg_add(api->txn_msg(txn), "trace", line, strlen(line));
    if (r->conf->data) {
        int *d = malloc(sizeof(*d));
        if (d != NULL) {
            *d = (int)st;
            if (api->txn_set_data(txn, r->p, d, data_free) != 0) {
                free(d);
            }
        }
    }
    if (v != SP_CONTINUE && (r->conf->reply != NULL || r->conf->code != 0)) {
        api->txn_set_reply(txn, (int)r->conf->code, r->conf->reply);
    }
    if (r->status >= 0) {
        api->txn_set_status(txn, (sp_status_t)r->status);
    }
    if (r->conf->retry_in > 0) {
        api->txn_set_retry_in(txn, r->conf->retry_in);
    }
    return (sp_verdict_t)v;
}

static void rec_event(const sp_event_t *ev, void *ctx)
{
    rec_t *r = ctx;
    (void)r;
    sp_test_probe.events++;
    sp_test_probe.last_event_status = (int)ev->status;
}

static int rec_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const rec_conf_t *c = conf;
    rec_t *r;

    memset(&sp_test_probe, 0, sizeof(sp_test_probe));
    sp_test_probe.init_calls++;
    r = api->calloc(1, sizeof(*r));
    if (r == NULL) {
        return SP_ENOMEM;
    }
    r->p = p;
    r->api = api;
    r->conf = c;
    r->status = -1;
    if (c->status != NULL) {
        for (int i = 0; i < SP_ST__COUNT; i++) {
            if (strcmp(api->status_name((sp_status_t)i), c->status) == 0) {
                r->status = i;
            }
        }
    }
    for (int s = 0; s < SP_STAGE__COUNT; s++) {
        if (c->stage[s] == NULL) {
            continue;
        }
        r->verdict[s] = parse_verdict(c->stage[s]);
        if (api->hook(p, (sp_stage_t)s, rec_hook, (int)c->priority) != 0) {
            api->free(r);
            return SP_EINVAL;
        }
    }
    if (c->events && api->on_event(p, rec_event) != 0) {
        api->free(r);
        return SP_EINVAL;
    }
    *ctx = r;
    return 0;
}

static void rec_fini(sp_plugin_t *p, void *ctx)
{
    rec_t *r = ctx;
    (void)p;
    sp_test_probe.fini_calls++;
    r->api->free(r);
}

SP_PLUGIN_DEFINE(.name = REC_NAME, .version = "1.0", .description = "test recorder",
                 .conf = rec_schema, .conf_size = sizeof(rec_conf_t),
                 .conf_check = rec_conf_check, .init = rec_init, .fini = rec_fini);
