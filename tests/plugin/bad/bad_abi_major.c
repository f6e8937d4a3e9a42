/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: built for ABI major 2, which the host (major 1) must refuse. */
#include <sp/sp_plugin.h>

static int bad_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    (void)p;
    (void)api;
    (void)conf;
    (void)ctx;
    return 0;
}

SP_EXPORT const sp_plugin_desc_t sp_plugin_desc = {
    .abi_major = SP_ABI_MAJOR + 1,
    .abi_minor = 0,
    .desc_size = sizeof(sp_plugin_desc_t),
    .name = "bad_abi_major",
    .init = bad_init,
};
