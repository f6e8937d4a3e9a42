/* SPDX-License-Identifier: Apache-2.0 */
/* What a recorded status change sets off inside the same store write:
 * analytics counters, the suppression feed (Permanent bounces, complaints)
 * and queued webhook calls. Nothing here may be lost by a crash between the
 * status change and its consequences, so all of it commits together. */
#ifndef SP_CORE_EFFECTS_H
#define SP_CORE_EFFECTS_H

#include <stdint.h>

#include <sp/sp_plugin.h>

#include "store.h"

/* Inside a store write, after the event row of message `id` was written:
 * `m` is the record as stored after the change, `status` the event's status
 * (whether or not it became the latest), `data` its JSON (NULL = {}). */
int sp__effects_apply(sp_wtxn_t *w, uint64_t id, const sp_msg_t *m, sp_status_t status,
                      int64_t when, const char *data);

#endif /* SP_CORE_EFFECTS_H */
