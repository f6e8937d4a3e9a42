/* SPDX-License-Identifier: Apache-2.0 */
/* Stored-message operations behind the host API's msg_load, msg_events,
 * msg_list, msg_reschedule and msg_cancel (same contracts as sp_plugin.h). */
#ifndef SP_CORE_MSGOPS_H
#define SP_CORE_MSGOPS_H

#include <stdint.h>

#include <sp/sp_plugin.h>

struct sp_core;

int sp__msgops_load(struct sp_core *core, const char *id, sp_msg_t **out);
/* Provider ids longer than this are not indexed (LMDB key limit). */
#define SP_PROVIDER_ID_MAX 255
/* The message a provider id was recorded for (SP_DB_PROVIDER_IDS). */
int sp__msgops_find_provider(struct sp_core *core, const char *provider_id, char *id_out,
                             size_t id_len);
int sp__msgops_events(struct sp_core *core, const char *id,
                      int (*each)(void *arg, sp_status_t st, int64_t time_ms, const char *data),
                      void *arg);
int sp__msgops_list(struct sp_core *core, int64_t team, int64_t from_ms, int64_t to_ms,
                    uint64_t skip, int (*each)(void *arg, const sp_msg_t *m), void *arg);
int sp__msgops_reschedule(struct sp_core *core, const char *id, int64_t team, int64_t due_ms,
                          sp_done_fn done, void *arg);
int sp__msgops_cancel(struct sp_core *core, const char *id, int64_t team, sp_done_fn done,
                      void *arg);

#endif
