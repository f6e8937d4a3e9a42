/* SPDX-License-Identifier: Apache-2.0 */
/* Outbound HTTP for plugins: libcurl's multi interface driven by the core's
 * libuv loop (socket and timer callbacks), behind the host API's http_fetch. */
#ifndef SP_CORE_FETCH_H
#define SP_CORE_FETCH_H

#include <stdint.h>

#include <sp/sp_plugin.h>

int sp__fetch_start(sp_plugin_t *p, const sp_fetch_req_t *req, sp_fetch_cb cb, void *arg,
                    uint64_t *handle);
void sp__fetch_cancel(uint64_t handle);

#endif /* SP_CORE_FETCH_H */
