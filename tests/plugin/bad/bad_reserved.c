/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: a reserved descriptor slot is not NULL. */
#include <sp/sp_plugin.h>

static int bad_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    (void)p;
    (void)api;
    (void)conf;
    (void)ctx;
    return 0;
}

static int something;

SP_PLUGIN_DEFINE(.name = "bad_reserved", .init = bad_init, .reserved = {[3] = &something});
