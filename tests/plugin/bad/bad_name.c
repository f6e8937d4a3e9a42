/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: its descriptor names another plugin than the file is loaded as. */
#include <sp/sp_plugin.h>

static int bad_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    (void)p;
    (void)api;
    (void)conf;
    (void)ctx;
    return 0;
}

SP_PLUGIN_DEFINE(.name = "someone_else", .init = bad_init);
