/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: its conf_check refuses the configuration. */
#include <stdio.h>

#include <sp/sp_plugin.h>

typedef struct cc_conf {
    int64_t limit;
} cc_conf_t;

static const sp_conf_item_t cc_schema[] = {
    {SP_CONF_INT, "limit", offsetof(cc_conf_t, limit), "100", 0, "must be below 10"},
    {0},
};

static int cc_check(const void *conf, char *err, size_t errlen)
{
    const cc_conf_t *c = conf;
    if (c->limit >= 10) {
        snprintf(err, errlen, "limit must be below 10, got %lld", (long long)c->limit);
        return -1;
    }
    return 0;
}

static int cc_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    (void)p;
    (void)api;
    (void)conf;
    (void)ctx;
    return 0;
}

SP_PLUGIN_DEFINE(.name = "bad_confcheck", .conf = cc_schema, .conf_size = sizeof(cc_conf_t),
                 .conf_check = cc_check, .init = cc_init);
