/* SPDX-License-Identifier: Apache-2.0 */
/* event_log: an event plugin that writes one log line per status change
 * (message id, status, team, time, details). */
#include <stdio.h>
#include <string.h>

#include <sp/sp_plugin.h>

typedef struct event_log_conf {
    char *level; /* log level of the lines */
} event_log_conf_t;

typedef struct event_log {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    sp_log_level_t level;
} event_log_t;

static const sp_conf_item_t event_log_schema[] = {
    {SP_CONF_STR, "level", offsetof(event_log_conf_t, level), "info", 0,
     "log level of the status lines: error, warn, info or debug"},
    {0},
};

static int parse_level(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static int event_log_check(const void *conf, char *err, size_t errlen)
{
    const event_log_conf_t *c = conf;
    if (parse_level(c->level) < 0) {
        snprintf(err, errlen, "level: expected error, warn, info or debug, got \"%s\"", c->level);
        return -1;
    }
    return 0;
}

static void event_log_event(const sp_event_t *ev, void *ctx)
{
    event_log_t *el = ctx;
    el->api->log(el->p, el->level, "message %s status %s team %lld time %lld data %s",
                 ev->msg_id, ev->status_name, (long long)ev->team, (long long)ev->time_ms,
                 ev->data);
    el->api->counter_add(el->p, "events", 1);
}

static int event_log_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf,
                          void **ctx)
{
    const event_log_conf_t *c = conf;
    event_log_t *el = api->calloc(1, sizeof(*el));
    if (el == NULL) {
        return SP_ENOMEM;
    }
    el->p = p;
    el->api = api;
    el->level = (sp_log_level_t)parse_level(c->level);
    *ctx = el;
    return api->on_event(p, event_log_event);
}

static void event_log_fini(sp_plugin_t *p, void *ctx)
{
    event_log_t *el = ctx;
    if (el != NULL) {
        el->api->free(el);
    }
}

SP_PLUGIN_DEFINE(.name = "event_log", .version = SP_VERSION_STRING,
                 .description = "logs every status change", .conf = event_log_schema,
                 .conf_size = sizeof(event_log_conf_t), .conf_check = event_log_check,
                 .init = event_log_init, .fini = event_log_fini);
