/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition of the core counters: store commits and batch
 * sizes, queue depth, stage verdicts, submissions and deliveries, and every
 * plugin's own counters. Served by the HTTP ingress at /metrics. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_core/alerts.h"
#include "sp_core/core.h"
#include "sp_core/sched.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int err;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) SP_PRINTF(2, 3);
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (b->err) {
        return;
    }
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->err = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

static void counter(sbuf_t *b, const char *name, const char *help, uint64_t v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
              (unsigned long long)v);
}

static void gauge(sbuf_t *b, const char *name, const char *help, uint64_t v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
              (unsigned long long)v);
}

int sp__core_metrics(sp_core_t *core, char **out, size_t *len)
{
    static const char *const batch_le[] = {"1", "3", "15", "63", "255", "1023", "+Inf"};
    sbuf_t b = {.cap = 8192};
    sp_store_stats_t ss;
    sp_pipeline_stats_t ps;
    uint64_t queued = 0, cum = 0;
    sp_rtxn_t *r;

    b.p = malloc(b.cap);
    if (b.p == NULL) {
        return SP_ENOMEM;
    }
    sp__store_stats(core->store, &ss);
    sp__pipeline_stats(core->pipeline, &ps);
    if (sp__store_read_begin(core->store, &r) == 0) {
        (void)sp__rtxn_count(r, SP_DB_QUEUE, &queued);
        sp__store_read_end(r);
    }

    counter(&b, "sendpipe_store_commits_total", "Store transactions committed.", ss.commits);
    counter(&b, "sendpipe_store_requests_total", "Store write requests completed.",
            ss.requests);
    counter(&b, "sendpipe_store_failed_commits_total",
            "Store commits that failed (map or disk full, I/O).", ss.failed_commits);
    sb_printf(&b, "# HELP sendpipe_store_batch_size Write requests per commit.\n"
                  "# TYPE sendpipe_store_batch_size histogram\n");
    for (size_t i = 0; i < 7; i++) {
        cum += ss.batch_hist[i];
        sb_printf(&b, "sendpipe_store_batch_size_bucket{le=\"%s\"} %llu\n", batch_le[i],
                  (unsigned long long)cum);
    }
    sb_printf(&b, "sendpipe_store_batch_size_count %llu\n", (unsigned long long)ss.commits);
    gauge(&b, "sendpipe_store_map_size_bytes", "LMDB map size.", ss.map_size);
    gauge(&b, "sendpipe_store_map_used_bytes", "LMDB map in use.", ss.map_used);

    sb_printf(&b, "# HELP sendpipe_queue_depth Messages in the queue by state.\n"
                  "# TYPE sendpipe_queue_depth gauge\n");
    {
        uint64_t inflight = core->sched != NULL ? sp__sched_inflight(core->sched) : 0;
        sb_printf(&b, "sendpipe_queue_depth{state=\"waiting\"} %llu\n",
                  (unsigned long long)(queued > inflight ? queued - inflight : 0));
        sb_printf(&b, "sendpipe_queue_depth{state=\"delivering\"} %llu\n",
                  (unsigned long long)inflight);
    }

    sb_printf(&b, "# HELP sendpipe_stage_verdicts_total Hook verdicts by stage.\n"
                  "# TYPE sendpipe_stage_verdicts_total counter\n");
    for (int s = 0; s < SP_STAGE__COUNT; s++) {
        for (int v = 0; v < SP_VERDICT__COUNT; v++) {
            sb_printf(&b, "sendpipe_stage_verdicts_total{stage=\"%s\",verdict=\"%s\"} %llu\n",
                      sp__stage_name((sp_stage_t)s), sp__verdict_name((sp_verdict_t)v),
                      (unsigned long long)ps.verdicts[s][v]);
        }
    }
    counter(&b, "sendpipe_hook_timeouts_total", "Suspended hooks that timed out.", ps.timeouts);
    counter(&b, "sendpipe_dead_resumes_total", "Resumes of used or dead tokens (ignored).",
            ps.dead_resumes);
    counter(&b, "sendpipe_bad_verdicts_total", "Out-of-range hook returns (counted as DEFER).",
            ps.bad_verdicts);
    gauge(&b, "sendpipe_txn_active", "Transactions running in the pipeline.", ps.active);
    gauge(&b, "sendpipe_txn_suspended", "Transactions waiting on a suspended hook.",
          ps.suspended);

    counter(&b, "sendpipe_submitted_total", "Messages accepted and stored.",
            core->stats.submitted);
    counter(&b, "sendpipe_rejected_total", "Messages refused at accept (permanent).",
            core->stats.rejected);
    counter(&b, "sendpipe_deferred_total", "Messages refused at accept (temporary).",
            core->stats.deferred);
    counter(&b, "sendpipe_dropped_total", "Messages stored as suppressed at accept.",
            core->stats.dropped);
    {
        uint64_t sent, held, failed;
        sp__alerts_stats(&sent, &held, &failed);
        counter(&b, "sendpipe_alerts_sent_total", "Alerts posted to the Discord webhook.", sent);
        counter(&b, "sendpipe_alerts_held_total",
                "Alerts held back by the rate limit or the in-flight cap.", held);
        counter(&b, "sendpipe_alerts_failed_total", "Alert posts that failed.", failed);
    }
    counter(&b, "sendpipe_delivered_total", "Messages handed to a provider.",
            core->stats.delivered);
    counter(&b, "sendpipe_retried_total", "Delivery attempts deferred and rescheduled.",
            core->stats.retried);
    counter(&b, "sendpipe_failed_total", "Messages that reached a final failure.",
            core->stats.failed);
    counter(&b, "sendpipe_events_total", "Status changes recorded.", core->stats.events);

    for (size_t i = 0; i < core->nplugins && !b.err; i++) {
        size_t need = sp__plugin_metrics(core->plugins[i], NULL, 0);
        if (need == 0) {
            continue;
        }
        if (b.cap - b.len <= need) {
            char *np = realloc(b.p, b.len + need + 1);
            if (np == NULL) {
                b.err = 1;
                break;
            }
            b.p = np;
            b.cap = b.len + need + 1;
        }
        b.len += sp__plugin_metrics(core->plugins[i], b.p + b.len, b.cap - b.len);
    }
    if (b.err) {
        free(b.p);
        return SP_ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
