/* SPDX-License-Identifier: Apache-2.0 */
/* Outbound HTTP for plugins: libcurl's multi interface driven by the core's
 * libuv loop (socket and timer callbacks), behind the host API's http_fetch. */
#ifndef SP_CORE_FETCH_H
#define SP_CORE_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <sp/sp_plugin.h>

/* Set up the multi handle on loop (curl_global_init runs once per process). */
int sp__fetch_init(uv_loop_t *loop);
/* Complete every pending fetch with SP_ECANCELED, then close the multi
 * handle and all uv handles (their close callbacks run on the next loop
 * turn). Called after the plugins' fini, before they are unloaded. */
void sp__fetch_shutdown(void);
/* Fetches started and not yet completed or cancelled. */
size_t sp__fetch_active(void);

int sp__fetch_start(sp_plugin_t *p, const sp_fetch_req_t *req, sp_fetch_cb cb, void *arg,
                    uint64_t *handle);
void sp__fetch_cancel(uint64_t handle);

#endif /* SP_CORE_FETCH_H */
