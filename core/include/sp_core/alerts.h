/* SPDX-License-Identifier: Apache-2.0 */
/* Operator alerts to DISCORD_WEBHOOK_URL (setting discord_webhook_url):
 * egress failures, auto-disabled webhooks, store near full. Rate-limited;
 * sent through the core's outbound HTTP; never carry secrets. */
#ifndef SP_CORE_ALERTS_H
#define SP_CORE_ALERTS_H

#include <stdint.h>

#include <sp/sp_plugin.h>

struct sp_core;

int sp__alerts_start(struct sp_core *core);
void sp__alerts_stop(void);
/* Raise an alert of a kind ("egress_failed", "webhook_disabled",
 * "store_full"); one line of text. Loop thread. Rate-limited per kind and in
 * total; dropped (and counted) when over the limit or not configured. */
/* Every committed status change (loop thread): a FAILED delivery alerts. */
void sp__alerts_event(const sp_event_t *ev);
/* Counters for /metrics. */
void sp__alerts_stats(uint64_t *sent, uint64_t *held, uint64_t *failed);
void sp__alert(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* SP_CORE_ALERTS_H */
