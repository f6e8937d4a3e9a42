/* SPDX-License-Identifier: Apache-2.0 */
/* The core context: loop, configuration, store, pipeline, plugins,
 * scheduler; submission and status changes. */
#ifndef SP_CORE_CORE_H
#define SP_CORE_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include <sp/sp_plugin.h>

#include "conf.h"
#include "pipeline.h"
#include "plugin.h"
#include "store.h"

typedef struct sp_sched sp_sched_t;

typedef struct sp_core_stats {
    uint64_t submitted;      /* messages accepted and stored */
    uint64_t rejected;       /* refused at accept (REJECT) */
    uint64_t deferred;       /* refused at accept (DEFER) or store errors */
    uint64_t dropped;        /* stored as suppressed at accept */
    uint64_t delivered;      /* egress accepted */
    uint64_t retried;        /* delivery deferred and rescheduled */
    uint64_t failed;         /* final failures */
    uint64_t events;         /* status changes recorded */
} sp_core_stats_t;

typedef struct sp_core {
    uv_loop_t *loop;
    sp_config_t *cfg;        /* owned */
    sp_store_t *store;
    sp_pipeline_t *pipeline;
    sp_sched_t *sched;
    sp_plugin_t **plugins;   /* YAML order */
    size_t nplugins;
    bool stopping;           /* drain started: new submissions refused */
    sp_core_stats_t stats;
    int64_t (*clock_ms)(void); /* wall clock; tests may inject */
} sp_core_t;

/* The process's core (the host API has no context argument). */
extern sp_core_t *sp__core;

/* Open the store, load the plugins, start the scheduler. On failure err has
 * one line and everything opened is closed again. Takes ownership of cfg. */
int sp__core_init(sp_core_t **out, sp_config_t *cfg, uv_loop_t *loop, char *err,
                  size_t errlen);
/* Begin the drain: refuse new submissions, stop the scheduler from starting
 * deliveries. done(arg) runs once the store and pipeline are
 * idle, or when grace_ms passes (then suspended hooks are cancelled first). */
void sp__core_stop(sp_core_t *core, uint64_t grace_ms, void (*done)(void *arg), void *arg);
/* Unload plugins, close the store, free. Call after stop's done ran. */
void sp__core_free(sp_core_t *core);

/* Backends of the host API's submit and emit_status. */
int sp__core_submit(sp_core_t *core, sp_plugin_t *p, sp_msg_t **msgs, size_t n,
                    bool all_or_nothing, sp_submit_cb cb, void *arg);
int sp__core_emit_status(sp_core_t *core, const char *msg_id, sp_status_t st,
                         const char *data_json, sp_done_fn done, void *arg);

/* Prometheus text of the core counters; *out malloc'd. */
int sp__core_metrics(sp_core_t *core, char **out, size_t *len);

int64_t sp__now_ms(void);

/* A change to a stored message, applied inside a store write. */
typedef struct sp_status_update {
    int status;              /* new sp_status_t, or -1 to leave it */
    int attempts;            /* new attempt count, or -1 */
    const char *last_error;  /* or NULL */
    const char *provider_id; /* or NULL */
    int64_t when;            /* event time, ms */
    const char *data;        /* event JSON, NULL = "{}" */
    bool final;              /* the outcome of sendpipe's own delivery: it replaces
                                QUEUED/SCHEDULED whatever its rank */
} sp_status_update_t;

/* Writer thread: apply u to message id (status by precedence, event row when
 * u->status >= 0). *applied = the status now recorded as latest, or -1 when
 * precedence kept the old one; *team (may be NULL) = the message's team.
 * SP_ENOTFOUND for an unknown id. */
int sp__core_update_status(sp_wtxn_t *w, uint64_t id, const sp_status_update_t *u,
                           int *applied, int64_t *team);
/* Writer thread: append an event row (id || next seq). */
int sp__core_record_event(sp_wtxn_t *w, uint64_t id, int status, int64_t when,
                          const char *data);

#endif
