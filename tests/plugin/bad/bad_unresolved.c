/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: calls a function nothing defines, so RTLD_NOW must fail. */
#include <sp/sp_plugin.h>

extern int sp_test_no_such_function(void);

static int bad_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    (void)p;
    (void)api;
    (void)conf;
    (void)ctx;
    return sp_test_no_such_function();
}

SP_PLUGIN_DEFINE(.name = "bad_unresolved", .init = bad_init);
