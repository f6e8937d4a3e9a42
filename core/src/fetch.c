/* SPDX-License-Identifier: Apache-2.0 */
/* Outbound HTTP (ABI 1.2): not wired to libcurl yet. */
#include "sp_core/fetch.h"

int sp__fetch_start(sp_plugin_t *p, const sp_fetch_req_t *req, sp_fetch_cb cb, void *arg,
                    uint64_t *handle)
{
    (void)p;
    (void)req;
    (void)cb;
    (void)arg;
    (void)handle;
    return SP_ESTATE;
}

void sp__fetch_cancel(uint64_t handle)
{
    (void)handle;
}
