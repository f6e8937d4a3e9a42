/* SPDX-License-Identifier: Apache-2.0 */
/* The plugin loader and the host API table. */
#ifndef SP_CORE_PLUGIN_H
#define SP_CORE_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

#include "conf.h"

struct sp_core;

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
/* fini (if initialized), free config, dlclose (skipped when the environment
 * variable SP_KEEP_PLUGINS_MAPPED is set, for sanitizer symbolization). */
void sp__plugin_unload(sp_plugin_t *p);

#endif
