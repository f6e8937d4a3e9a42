/* SPDX-License-Identifier: Apache-2.0 */
/* The pipeline engine: stage hooks in order, the stage table of verdict
 * semantics, suspend/resume with single-use tokens, timeouts, cross-thread
 * resume, event hooks. */
#ifndef SP_CORE_PIPELINE_H
#define SP_CORE_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include <sp/sp_plugin.h>

typedef struct sp_pipeline sp_pipeline_t;

/* Outcome of running a transaction through a range of stages. */
typedef struct sp_run_result {
    sp_verdict_t verdict; /* CONTINUE (all stages passed), or REJECT/DEFER/DROP */
    sp_stage_t stage;     /* stage that decided (last stage when CONTINUE) */
    int code;             /* reply code set by the deciding hook, 0 if none */
    const char *text;     /* reply text, never NULL (core text when no hook set one);
                             valid until the txn is freed */
    int status;           /* sp_status_t chosen by stage table / txn_set_status, -1 if none */
    uint64_t retry_in_ms; /* DEFER hint from txn_set_retry_in, 0 = policy */
    const char *plugin;   /* name of the deciding plugin, NULL for stage defaults */
} sp_run_result_t;
/* When every stage passed (CONTINUE): code/text are the reply of the hook
 * whose ACCEPT ended the last stage that had one ("accepted" otherwise),
 * plugin is that hook's plugin (NULL if no hook accepted), status is -1. */

typedef void (*sp_run_done_fn)(sp_txn_t *txn, const sp_run_result_t *res, void *arg);

/* Pipeline statistics, for /metrics. */
typedef struct sp_pipeline_stats {
    uint64_t verdicts[SP_STAGE__COUNT][SP_VERDICT__COUNT]; /* per hook call */
    uint64_t timeouts;       /* suspended hooks that timed out */
    uint64_t dead_resumes;   /* resumes of used/dead tokens (ignored) */
    uint64_t bad_verdicts;   /* out-of-range returns turned into DEFER */
    uint64_t active;         /* transactions currently running */
    uint64_t suspended;      /* transactions currently suspended */
} sp_pipeline_stats_t;

/* Create/destroy. One pipeline per process is the process's token registry:
 * sp__pipeline_resume() finds it without an argument, so a second
 * sp__pipeline_new() while one exists fails with SP_EBUSY. */
int sp__pipeline_new(sp_pipeline_t **out, uv_loop_t *loop);
/* Frees the pipeline; all transactions must have ended (any still suspended
 * are cancelled first, with an error log). Closes its uv handles: the memory
 * is released in their close callbacks, so the caller must run the loop
 * (uv_run, UV_RUN_NOWAIT is enough) before uv_loop_close(). Resumes queued
 * from threads and not yet delivered are dropped. */
void sp__pipeline_free(sp_pipeline_t *pl);

/* Registration (the loader calls these for api->hook / api->on_event).
 * Order within a stage: effective priority first (lower runs first), then
 * the plugin's `order` (YAML position), then registration order. The
 * effective priority is the hook's `priority` argument plus the plugin
 * entry's YAML `priority` (p->priority), so an operator can move all of a
 * plugin's hooks. p may be NULL for hooks of the core itself (order 0).
 * Returns 0, SP_EINVAL (bad stage, NULL fn, priority outside -100..100),
 * SP_ENOMEM. */
int sp__pipeline_add_hook(sp_pipeline_t *pl, sp_stage_t stage, sp_plugin_t *p, sp_hook_fn fn,
                          int priority);
int sp__pipeline_add_event(sp_pipeline_t *pl, sp_plugin_t *p, sp_event_fn fn);
/* Remove every registration of p (failed init, unload). */
void sp__pipeline_remove_plugin(sp_pipeline_t *pl, sp_plugin_t *p);
/* Number of hooks in a stage. */
size_t sp__pipeline_nhooks(const sp_pipeline_t *pl, sp_stage_t stage);
/* Number of event hooks. */
size_t sp__pipeline_nevents(const sp_pipeline_t *pl);

/* Transactions. The txn owns msg from now on (on NULL, out of memory, the
 * caller still owns it). */
sp_txn_t *sp__txn_new(sp_pipeline_t *pl, sp_msg_t *msg);
sp_msg_t *sp__txn_msg(sp_txn_t *txn);
/* Detach and return the message (the txn no longer frees it). */
sp_msg_t *sp__txn_take_msg(sp_txn_t *txn);
/* Free: runs every txn_set_data free function once, frees the message if
 * still owned. Not allowed while the txn is running. */
void sp__txn_free(sp_txn_t *txn);
/* Caller-owned tag (the core stores its own per-txn context here). */
void sp__txn_set_udata(sp_txn_t *txn, void *udata);
void *sp__txn_udata(const sp_txn_t *txn);

/* Run stages first..last (inclusive) in order. done() is called exactly once
 * on the loop thread, possibly before this returns. Per stage the stage table
 * (docs/architecture.md) maps hook verdicts onto the outcome. Returns 0,
 * SP_EINVAL (bad range, NULL done), or SP_ESTATE if the txn is already
 * running (done not called). A run may be started again on the same txn
 * (e.g. from done), which overwrites the previous result's text. */
int sp__pipeline_run(sp_pipeline_t *pl, sp_txn_t *txn, sp_stage_t first, sp_stage_t last,
                     sp_run_done_fn done, void *arg);

/* Host API backends (same contracts as in sp_plugin.h). */
sp_stage_t sp__txn_stage(const sp_txn_t *txn);
int sp__txn_set_reply(sp_txn_t *txn, int code, const char *text);
int sp__txn_set_status(sp_txn_t *txn, sp_status_t st);
int sp__txn_set_retry_in(sp_txn_t *txn, uint64_t ms);
int sp__txn_set_data(sp_txn_t *txn, sp_plugin_t *p, void *data, void (*free_fn)(void *));
void *sp__txn_get_data(sp_txn_t *txn, sp_plugin_t *p);
sp_token_t sp__txn_suspend(sp_txn_t *txn, uint32_t timeout_ms, sp_cancel_fn cancel, void *arg);
int sp__pipeline_resume(sp_token_t tok, sp_verdict_t v);
/* Any thread. Queued and delivered by the loop (one coalescing uv_async,
 * unref'd so it never keeps uv_run alive: a live token's timeout timer does
 * that). 0 once queued, SP_ENOMEM, SP_ESHUTDOWN when no pipeline exists. */
int sp__pipeline_resume_from_thread(sp_token_t tok, sp_verdict_t v);

/* Deliver an event to every event hook (in registration order). */
void sp__pipeline_emit(sp_pipeline_t *pl, const sp_event_t *ev);

/* Shutdown: cancel every suspended transaction now (cancel_fn runs once
 * each, the txn ends with DEFER "shutting down"). Suspensions made by the
 * done callbacks this triggers are left alone. */
void sp__pipeline_cancel_all(sp_pipeline_t *pl);
/* Abandon one transaction (client gone): if it is suspended, its cancel_fn
 * runs once and the run ends with DEFER and text `why` (NULL: "cancelled").
 * 0, or SP_ESTATE if the txn is not suspended. */
int sp__txn_cancel(sp_txn_t *txn, const char *why);
void sp__pipeline_stats(const sp_pipeline_t *pl, sp_pipeline_stats_t *out);

/* Stage names ("accept", "render", ...) and parsing; verdict names. */
const char *sp__stage_name(sp_stage_t s);
int sp__stage_parse(const char *s); /* -1 if unknown */
const char *sp__verdict_name(sp_verdict_t v);

#endif
