/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: desc_size (20) too small to hold the mandatory fields. */
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
    .abi_major = SP_ABI_MAJOR,
    .abi_minor = SP_ABI_MINOR,
    .desc_size = 20,
    .name = "bad_short",
    .init = bad_init,
};
