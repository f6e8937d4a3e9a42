/* SPDX-License-Identifier: Apache-2.0 */
/* Test host for plugin tests: a minimal hand-built core (loop, config from a
 * YAML string, pipeline, optional store) that loads real .so files through
 * the real loader, drives the loop with a watchdog, and records run results. */
#ifndef SP_TESTS_PLUGIN_HARNESS_H
#define SP_TESTS_PLUGIN_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <uv.h>

#include "sp_core/core.h"
#include "sp_core/pipeline.h"
#include "sp_core/plugin.h"

#include "probe.h"

/* Where the test plugins are built (CMake passes it). */
#ifndef SP_TEST_PLUGIN_SO_DIR
#error "SP_TEST_PLUGIN_SO_DIR must be defined"
#endif

typedef struct h_env {
    uv_loop_t loop;
    sp_core_t *core;
    char dir[128];      /* mkdtemp: data_dir */
    char err[1024];     /* last load error */
    bool with_store;
} h_env_t;

/* One recorded pipeline run. */
typedef struct h_run {
    int done_calls;
    sp_run_result_t res;
    char text[600];
    char plugin[80];
} h_run_t;

/* Build a core from "plugins:" YAML (the text after "plugins:\n", may be
 * empty); plugin_dir is the test .so directory and data_dir a fresh temp
 * directory. A store is opened when with_store. Fails the test on error. */
void h_setup(h_env_t *h, bool with_store, const char *plugins_yaml);
/* Same, returning the config error instead of failing (0 or negative). */
int h_setup_rc(h_env_t *h, bool with_store, const char *plugins_yaml);
/* Load every configured plugin in order into core->plugins; returns the
 * first error (message in h->err), leaving earlier plugins loaded. */
int h_load(h_env_t *h);
/* Unload plugins, free pipeline/store/config, close the loop (asserts
 * uv_loop_close() == 0) and remove the temp directory. */
void h_teardown(h_env_t *h);

/* The loaded plugin by name, or NULL. */
sp_plugin_t *h_plugin(h_env_t *h, const char *name);
/* The probe a test plugin exports (symbol sp_test_probe), or NULL. */
sp_test_probe_t *h_probe(h_env_t *h, const char *name);

/* Run the loop until *flag becomes true; the test fails after timeout_ms. */
void h_wait(h_env_t *h, const int *flag, int want, uint64_t timeout_ms);

/* Run the loop until pred(h, arg) is true; the test fails after
 * timeout_ms. The watchdog also keeps the loop alive while waiting. */
void h_wait_pred(h_env_t *h, bool (*pred)(h_env_t *h, void *arg), void *arg,
                 uint64_t timeout_ms);

/* Start a run of msg (owned by the new txn) over first..last, recording into
 * r. Returns the txn (free it with sp__txn_free after done). */
sp_txn_t *h_start(h_env_t *h, sp_msg_t *msg, sp_stage_t first, sp_stage_t last, h_run_t *r);
/* Start and wait for done (5 s watchdog); the caller frees the txn. */
sp_txn_t *h_run_txn(h_env_t *h, sp_msg_t *msg, sp_stage_t first, sp_stage_t last, h_run_t *r);
/* Same, then free the txn. */
void h_run(h_env_t *h, sp_msg_t *msg, sp_stage_t first, sp_stage_t last, h_run_t *r);
/* Convenience: a message with a subject. */
sp_msg_t *h_msg(const char *subject);

/* Trace recorded by the recorder plugins (msg list field "trace") joined
 * with ',' into out. */
void h_trace(const sp_msg_t *m, char *out, size_t outlen);

/* Whether the log written during this test (to a file in h->dir) contains
 * needle. Set SP_TEST_VERBOSE=1 to copy the log to stderr at teardown. */
bool h_log_contains(const h_env_t *h, const char *needle);

/* The .so path of a test plugin. */
void h_so_path(char *out, size_t outlen, const char *name);

#endif
