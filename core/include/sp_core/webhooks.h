/* SPDX-License-Identifier: Apache-2.0 */
/* Outgoing webhooks: endpoints per team (SP_DB_WEBHOOKS), calls queued in the
 * same store write as the status change they report (SP_DB_WEBHOOK_CALLS,
 * SP_DB_WEBHOOK_QUEUE), and the dispatcher that delivers them through the
 * core's outbound HTTP (one call in flight per webhook, in order).
 *
 * Store layout (big-endian integers):
 *   SP_DB_WEBHOOKS       team(be64) || webhook id(be64) -> webhook record
 *   SP_DB_WEBHOOK_CALLS  webhook id(be64) || call id(be64) -> call record
 *   SP_DB_WEBHOOK_QUEUE  webhook id(be64) || call id(be64) -> empty (not finished)
 *   SP_DB_META           "webhook_seq", "webhook_call_seq" -> be64 last id
 * Records are msg.c records (msgpack maps). Webhook and call ids come from
 * counters in META, bumped inside the write, so they are unique and ordered
 * across processes (the CLI writes beside a running server). */
#ifndef SP_CORE_WEBHOOKS_H
#define SP_CORE_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

#include "store.h"

struct sp_core;

/* Inside a store write: queue an `email.<status>` call for every ACTIVE
 * webhook of the message's team whose filters match. `m` is the message
 * record as stored after the change; `data` the event's JSON (NULL = {}). */
int sp__webhooks_enqueue_txn(sp_wtxn_t *w, uint64_t id, const sp_msg_t *m, sp_status_t status,
                             int64_t when, const char *data);

/* Start the dispatcher (after the store and outbound HTTP are up) and stop it
 * (in-flight calls are cancelled and stay queued for the next start). */
int sp__webhooks_start(struct sp_core *core);
void sp__webhooks_stop(void);
/* Something was queued: look at the queue soon (loop thread). */
void sp__webhooks_kick(void);

/* Host API backends (contracts in sp_plugin.h). */
int sp__webhook_put(sp_plugin_t *p, int64_t team, int64_t id, const char *spec_json,
                    sp_json_cb cb, void *arg);
int sp__webhook_del(sp_plugin_t *p, int64_t team, int64_t id, sp_done_fn done, void *arg);
int sp__webhook_list(int64_t team, int64_t id, int (*each)(void *arg, const char *json),
                     void *arg);
int sp__webhook_calls(int64_t team, int64_t id, uint64_t skip,
                      int (*each)(void *arg, const char *json), void *arg);
int sp__webhook_test(sp_plugin_t *p, int64_t team, int64_t id, sp_json_cb cb, void *arg);

/* `sendpipe webhooks ...` (argv[0] == "webhooks"). Exit status. */
int sp__webhooks_cli(int argc, char **argv);

/* ---- shared by webhooks*.c ------------------------------------------ */

#define SP_WH_VERSION "2026-01-18" /* payload version unless the webhook has apiVersion */
#define SP_WH_SECRET_LEN (6 + 64)  /* "whsec_" + 64 hex */
#define SP_WH_SIG_LEN (3 + 64)     /* "v1=" + 64 hex */
#define SP_WH_URL_MAX 2048
#define SP_WH_DESC_MAX 500
#define SP_WH_RESPONSE_MAX 4096 /* bytes of a response kept in the log */

/* Webhook states (record field "status"). */
typedef enum { SP_WH_ACTIVE = 0, SP_WH_PAUSED, SP_WH_AUTO_DISABLED } sp_wh_state_t;
const char *sp__wh_state_name(int st); /* NULL if out of range */
int sp__wh_state_parse(const char *s); /* -1 if unknown */

/* Call states (record field "status"). */
typedef enum {
    SP_WHC_PENDING = 0,
    SP_WHC_DELIVERED,
    SP_WHC_FAILED,
    SP_WHC_DISCARDED
} sp_whc_state_t;
const char *sp__whc_state_name(int st);

/* ---- pure parts (webhooks_payload.c) --------------------------------- */

/* "email.<status lower-case>" ("email.queued", "email.delivery_delayed"). */
const char *sp__wh_event_type(sp_status_t st);
/* Whether `type` is an event a webhook may subscribe to (contract §5.6 list
 * plus email.scheduled). */
bool sp__wh_event_known(const char *type);
/* The names sp__wh_event_known accepts, NULL-terminated. */
extern const char *const sp__wh_event_types[];
/* An http:// or https:// URL with a host, no spaces or control characters,
 * at most SP_WH_URL_MAX bytes. */
bool sp__wh_url_ok(const char *url);
/* Delay before the next attempt after `attempt` (1-based) failed:
 * base * 2^(attempt-1) capped at max, then jittered into [d/2, d] by rnd. */
uint64_t sp__wh_backoff(uint64_t base_ms, uint64_t max_ms, uint32_t attempt, uint32_t rnd);
/* "v1=" + hex HMAC-SHA256(secret, "<ts_ms>.<body>") into out. 0 or SP_ENOMEM. */
int sp__wh_sign(const char *secret, int64_t ts_ms, const char *body, size_t len,
                char out[SP_WH_SIG_LEN + 1]);
/* "2026-01-18T10:00:00.000Z" */
void sp__wh_iso(int64_t ms, char out[32]);
/* The email `data` object of a status change as JSON text (malloc'd), or
 * NULL on ENOMEM. `event` is the event's JSON (NULL = {}). */
char *sp__wh_email_data(const sp_msg_t *m, uint64_t id, sp_status_t st, int64_t when,
                        const char *event);
/* The POST body (malloc'd JSON text), or NULL when data_json is not JSON or
 * memory runs out. */
char *sp__wh_body(uint64_t call_id, const char *type, const char *version, int64_t created_ms,
                  int64_t team, const char *data_json, uint32_t attempt);

#endif /* SP_CORE_WEBHOOKS_H */
