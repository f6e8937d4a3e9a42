/* SPDX-License-Identifier: Apache-2.0 */
/* Outgoing webhooks: endpoints per team (SP_DB_WEBHOOKS), calls queued in the
 * same store write as the status change they report (SP_DB_WEBHOOK_CALLS,
 * SP_DB_WEBHOOK_QUEUE), and the dispatcher that delivers them through the
 * core's outbound HTTP (one call in flight per webhook, in order). */
#ifndef SP_CORE_WEBHOOKS_H
#define SP_CORE_WEBHOOKS_H

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

#endif /* SP_CORE_WEBHOOKS_H */
