/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: YAML configuration into a tree, through a plugin-style
 * schema, and as a full core configuration; everything is freed. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_core/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz_conf {
    char *host;
    int64_t port;
    bool tls;
    uint64_t size;
    uint64_t timeout;
} fz_conf_t;

static const sp_conf_item_t g_schema[] = {
    {SP_CONF_STR, "host", offsetof(fz_conf_t, host), "localhost", 0, "h"},
    {SP_CONF_INT, "port", offsetof(fz_conf_t, port), "25", 0, "p"},
    {SP_CONF_BOOL, "tls", offsetof(fz_conf_t, tls), NULL, SP_CONF_REQUIRED, "t"},
    {SP_CONF_SIZE, "size", offsetof(fz_conf_t, size), "1M", 0, "s"},
    {SP_CONF_DURATION, "timeout", offsetof(fz_conf_t, timeout), "30s", SP_CONF_SECRET, "d"},
    {0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    sp_node_t *root = NULL;
    sp_config_t *cfg = NULL;

    if (sp__conf_parse((const char *)data, size, "fuzz.yaml", &root, err, sizeof(err)) == 0) {
        const sp_node_t *plugins = sp__conf_get(root, "plugins");
        fz_conf_t fc;

        /* Each plugin's config block, and the root itself, through a schema. */
        for (const sp_node_t *p = plugins ? plugins->child : NULL; p != NULL; p = p->next) {
            memset(&fc, 0, sizeof(fc));
            if (sp__conf_apply_schema(sp__conf_get(p, "config"), NULL, "plugins[].config",
                                      g_schema, &fc, err, sizeof(err)) == 0) {
                sp__conf_schema_free(g_schema, &fc);
            }
        }
        memset(&fc, 0, sizeof(fc));
        if (sp__conf_apply_schema(root, NULL, "", g_schema, &fc, err, sizeof(err)) == 0) {
            sp__conf_schema_free(g_schema, &fc);
        }
        sp__conf_free(root);
    }
    if (sp__config_parse((const char *)data, size, "fuzz.yaml", "/nonexistent/base", &cfg, err,
                         sizeof(err)) == 0) {
        for (size_t i = 0; i < cfg->nsettings; i++) {
            (void)sp__config_setting(cfg, cfg->settings[i].key);
        }
        sp__config_free(cfg);
    }
    return 0;
}
