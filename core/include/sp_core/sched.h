/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler: one timer armed for the earliest queue entry; due messages
 * run render..egress with bounded concurrency; outcomes update the record and
 * the queue index in one store write (retry with backoff and jitter). */
#ifndef SP_CORE_SCHED_H
#define SP_CORE_SCHED_H

#include <stddef.h>
#include <stdint.h>

struct sp_core;
typedef struct sp_sched sp_sched_t;

int sp__sched_new(sp_sched_t **out, struct sp_core *core);
/* Scan the queue now (start-up: resumes whatever a previous run left). */
void sp__sched_start(sp_sched_t *s);
/* A queue entry due at due_ms was committed: re-arm if it is earlier. */
void sp__sched_kick(sp_sched_t *s, int64_t due_ms);
/* Stop starting deliveries (drain); in-flight ones finish. */
void sp__sched_stop(sp_sched_t *s);
/* Deliveries in flight. */
size_t sp__sched_inflight(const sp_sched_t *s);
/* Keep the scheduler away from message id while an API change of it is
 * being committed (cancel, reschedule): SP_ESTATE if a delivery of it is in
 * flight, else 0 and the id is held until sp__sched_release. */
int sp__sched_hold(sp_sched_t *s, uint64_t id);
void sp__sched_release(sp_sched_t *s, uint64_t id);
/* Free; requires no delivery in flight. Closes its timer (uv_run after). */
void sp__sched_free(sp_sched_t *s);

/* Delay before attempt `attempt` (1-based) failed: base * 2^(attempt-1),
 * capped at max, with "full jitter" in [delay/2, delay]. `rnd` in [0,1). */
uint64_t sp__sched_backoff(uint64_t base_ms, uint64_t max_ms, unsigned attempt, double rnd);

#endif
