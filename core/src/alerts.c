/* SPDX-License-Identifier: Apache-2.0 */
/* Operator alerts to a Discord webhook (DISCORD_WEBHOOK_URL).
 *
 * Kinds: "egress_failed" (a message reached FAILED), "webhook_disabled" (an
 * endpoint was auto-disabled), "store_full" (the map is more than 90 % used,
 * checked 1 s after start, then every 30 s). Each kind sends at most one alert per minute; alerts
 * over that are counted and the next one says how many were held back.
 * At most 3 requests are in flight; the body is Discord's {"content": ...},
 * cut to its 2000-character limit. The URL is a secret setting: never
 * logged. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sp_core/alerts.h"
#include "sp_core/conf.h"
#include "sp_core/core.h"
#include "sp_core/fetch.h"
#include "sp_core/log.h"
#include "sp_core/store.h"

#define ALERT_WINDOW_MS 60000
#define ALERT_INFLIGHT_MAX 3
#define ALERT_TEXT_MAX 1900 /* Discord allows 2000 characters of content */
#define STORE_CHECK_MS 30000 /* after a first look 1 s after start */
#define STORE_FULL_PCT 90

typedef struct kind_state {
    const char *kind;
    int64_t last_ms;   /* last alert sent, 0 = never */
    uint64_t held;     /* alerts held back since */
} kind_state_t;

static struct {
    sp_core_t *core;
    const char *url; /* setting, owned by the configuration */
    kind_state_t kinds[4];
    unsigned inflight;
    uv_timer_t store_timer;
    bool timer_on;
    bool store_alerted;
    uint64_t sent, dropped, failed;
} g = {.kinds = {{"egress_failed", 0, 0}, {"webhook_disabled", 0, 0}, {"store_full", 0, 0},
                 {"other", 0, 0}}};

static kind_state_t *kind_of(const char *kind)
{
    size_t n = sizeof(g.kinds) / sizeof(g.kinds[0]);
    for (size_t i = 0; i + 1 < n; i++) {
        if (strcmp(g.kinds[i].kind, kind) == 0) {
            return &g.kinds[i];
        }
    }
    return &g.kinds[n - 1];
}

static void posted(void *arg, const sp_fetch_res_t *res)
{
    (void)arg;
    g.inflight--;
    if (res->status != 0 || res->http_status < 200 || res->http_status > 299) {
        g.failed++;
        SP_LOGW("alert not delivered to the Discord webhook: %s (HTTP %ld)",
                res->status != 0 ? res->error : "answer", res->http_status);
    }
}

static void post(const char *kind, const char *text, uint64_t held)
{
    char content[ALERT_TEXT_MAX + 128];
    json_t *body;
    char *json;
    int n;
    if (held > 0) {
        n = snprintf(content, sizeof(content), "**sendpipe %s**: %.*s (%llu more held back)",
                     kind, ALERT_TEXT_MAX, text, (unsigned long long)held);
    } else {
        n = snprintf(content, sizeof(content), "**sendpipe %s**: %.*s", kind, ALERT_TEXT_MAX,
                     text);
    }
    if (n < 0) {
        return;
    }
    body = json_pack("{s:s}", "content", content);
    json = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (json == NULL) {
        g.dropped++;
        return;
    }
    static const char *const headers[] = {"Content-Type: application/json",
                                          "User-Agent: sendpipe-alerts/1.0", NULL};
    sp_fetch_req_t req = {.size = sizeof(req), .method = "POST", .url = g.url,
                          .headers = headers, .body = json, .body_len = strlen(json),
                          .timeout_ms = 10000, .max_body = 4096};
    if (sp__fetch_start(NULL, &req, posted, NULL, NULL) == 0) {
        g.inflight++;
        g.sent++;
    } else {
        g.dropped++;
    }
    free(json);
}

void sp__alert(const char *kind, const char *fmt, ...)
{
    char text[ALERT_TEXT_MAX + 1];
    va_list ap;
    kind_state_t *k;
    int64_t now;
    va_start(ap, fmt);
    (void)vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    SP_LOGW("alert %s: %s", kind, text);
    if (g.url == NULL || g.core == NULL) {
        return;
    }
    k = kind_of(kind);
    now = g.core->clock_ms();
    if ((k->last_ms != 0 && now - k->last_ms < ALERT_WINDOW_MS) ||
        g.inflight >= ALERT_INFLIGHT_MAX) {
        k->held++;
        g.dropped++;
        return;
    }
    post(kind, text, k->held);
    k->last_ms = now;
    k->held = 0;
}

void sp__alerts_event(const sp_event_t *ev)
{
    const char *err = NULL;
    json_t *d;
    if (ev->status != SP_ST_FAILED) {
        return;
    }
    d = json_loads(ev->data != NULL ? ev->data : "{}", 0, NULL);
    err = json_string_value(json_object_get(d, "error"));
    sp__alert("egress_failed", "message %s (team %lld) failed: %s", ev->msg_id,
              (long long)ev->team, err != NULL ? err : "no reason given");
    json_decref(d);
}

static void store_check(uv_timer_t *t)
{
    sp_store_stats_t s;
    (void)t;
    if (g.core == NULL || g.core->store == NULL) {
        return;
    }
    sp__store_stats(g.core->store, &s);
    if (s.map_size == 0) {
        return;
    }
    uint64_t pct = s.map_used * 100 / s.map_size;
    if (pct >= STORE_FULL_PCT && !g.store_alerted) {
        g.store_alerted = true;
        sp__alert("store_full", "the store uses %llu%% of its %llu MiB map",
                  (unsigned long long)pct, (unsigned long long)(s.map_size >> 20));
    } else if (pct + 5 < STORE_FULL_PCT) {
        g.store_alerted = false;
    }
}

void sp__alerts_stats(uint64_t *sent, uint64_t *held, uint64_t *failed)
{
    *sent = g.sent;
    *held = g.dropped;
    *failed = g.failed;
}

int sp__alerts_start(sp_core_t *core)
{
    const char *url = sp__config_setting(core->cfg, "discord_webhook_url");
    g.core = core;
    g.url = (url != NULL && url[0] != '\0') ? url : NULL;
    for (size_t i = 0; i < sizeof(g.kinds) / sizeof(g.kinds[0]); i++) {
        g.kinds[i].last_ms = 0;
        g.kinds[i].held = 0;
    }
    g.store_alerted = false;
    if (uv_timer_init(core->loop, &g.store_timer) == 0) {
        g.timer_on = true;
        uv_unref((uv_handle_t *)&g.store_timer);
        uv_timer_start(&g.store_timer, store_check, 1000, STORE_CHECK_MS);
    }
    if (g.url != NULL) {
        SP_LOGI("alerts go to the configured Discord webhook");
    }
    return 0;
}

void sp__alerts_stop(void)
{
    if (g.timer_on) {
        uv_timer_stop(&g.store_timer);
        uv_close((uv_handle_t *)&g.store_timer, NULL);
        g.timer_on = false;
    }
    g.core = NULL;
    g.url = NULL;
}
