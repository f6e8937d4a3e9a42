/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: ABI minor newer than the host's. */
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
    .abi_minor = SP_ABI_MINOR + 1,
    .desc_size = sizeof(sp_plugin_desc_t),
    .name = "bad_abi_minor",
    .init = bad_init,
};
