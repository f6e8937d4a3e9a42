/* SPDX-License-Identifier: Apache-2.0 */
/* The plugin loader and the host API table. */
#ifndef SP_CORE_PLUGIN_H
#define SP_CORE_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

#include "conf.h"

struct sp_core;
struct sp_plugin_counter;
struct sp_work;

/* One loaded plugin instance (the SDK's opaque sp_plugin_t). */
struct sp_plugin {
    char *name;             /* from the YAML; equals desc.name */
    char *path;             /* resolved .so path */
    void *handle;           /* dlopen handle */
    sp_plugin_desc_t desc;  /* copy of the first desc_size bytes, rest zero */
    void *conf;             /* filled config struct (conf_size bytes) or NULL */
    void *ctx;              /* plugin context from init */
    int order;              /* position in the YAML plugins list */
    int priority;           /* -100..100 */
    uint64_t timeout_ms;    /* hook timeout */
    bool in_init;           /* registration allowed */
    bool initialized;       /* init returned 0: fini is owed */
    void (*stop_fn)(void *ctx); /* reserved for a drain notification */
    struct sp_core *core;
    struct sp_plugin_counter *counters; /* api->counter_add, creation order */
    struct sp_timer *timers;            /* live api->timer_start timers */
    struct sp_work *works;              /* api->queue_work requests in flight */
    size_t nwork;                       /* how many */
};

/* The host API table (static, filled once). */
const sp_host_api_t *sp__host_api(void);

/* Load one plugin: resolve path (pc->path or plugin_dir/NAME.so), dlopen
 * RTLD_NOW|RTLD_LOCAL, check the descriptor (ABI major ==, minor <=,
 * desc_size >= offsetof(sp_plugin_desc_t, reserved), read no byte past
 * desc_size, reserved slots present within desc_size NULL, name == pc->name,
 * no other plugin of that name loaded), validate and fill the
 * config through the schema, conf_check, then init. On any failure every
 * registration is undone, the library is closed, and err holds one line:
 * "plugin NAME (PATH): reason". Returns 0, SP_EABI, SP_ECONFIG, SP_EINVAL,
 * or init's error. */
int sp__plugin_load(struct sp_core *core, const sp_plugin_conf_t *pc, int order,
                    sp_plugin_t **out, char *err, size_t errlen);
/* Check one plugin entry without running it (`sendpipe check-config`): the
 * same steps as sp__plugin_load up to and including conf_check, then
 * everything is closed again; init is never called. Same err line and
 * return codes. (Duplicates are the config parser's job here.) */
int sp__plugin_check(const sp_config_t *cfg, const sp_plugin_conf_t *pc, int order, char *err,
                     size_t errlen);
/* Call the plugin's fini (once; later calls do nothing). A plugin may close
 * its own libuv handles in fini, and their close callbacks are plugin code:
 * run the loop to let them finish before sp__plugin_unload unmaps it. */
void sp__plugin_fini(sp_plugin_t *p);
/* fini (if not done yet), remove its registrations, close timers the plugin
 * left running and detach its queued work (both with a warning), free
 * config, dlclose (skipped when the environment variable
 * SP_KEEP_PLUGINS_MAPPED is set, for sanitizer symbolization, or while a
 * work item of the plugin is still running on a pool thread). Timer handles
 * are closed asynchronously: run the loop afterwards. */
void sp__plugin_unload(sp_plugin_t *p);

/* Backend of api->counter_add. Names are kept with every byte outside
 * [A-Za-z0-9_] replaced by '_'; empty names or names over 64 bytes are
 * refused with a warning. Any thread. */
void sp__plugin_counter_add(sp_plugin_t *p, const char *name, uint64_t delta);
/* Prometheus text of the plugin's counters, one line each:
 * "sendpipe_plugin_<plugin>_<name>_total <value>\n" (no second "_total"
 * when the name already ends with it). snprintf semantics: writes at most
 * buflen bytes (NUL-terminated when buflen > 0; buf may be NULL when buflen
 * is 0) and returns the length the whole text needs. */
size_t sp__plugin_metrics(const sp_plugin_t *p, char *buf, size_t buflen);

/* Close every timer p still has (host_api.c); returns how many there were. */
size_t sp__host_timers_close(sp_plugin_t *p);
/* Detach p's queue_work requests still in flight (their done callbacks will
 * not be called) and cancel those not started yet. Returns how many are
 * still running plugin code on a pool thread: the library must then stay
 * mapped. */
size_t sp__host_work_detach(sp_plugin_t *p);

#endif
