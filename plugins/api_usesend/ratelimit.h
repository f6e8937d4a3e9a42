/* SPDX-License-Identifier: Apache-2.0 */
/* Per-team request counting for the API rate limit: a fixed window that
 * opens at a team's first request and lasts window_ms (as upstream's Redis
 * INCR + EXPIRE), kept in memory. Pure: time is passed in. */
#ifndef SP_API_USESEND_RATELIMIT_H
#define SP_API_USESEND_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct api_rl api_rl_t;

/* What one request learnt: the X-RateLimit-* values and, when refused, how
 * long to wait. */
typedef struct api_rl_info {
    uint64_t limit;
    uint64_t remaining;
    int64_t reset_s;     /* unix seconds when the window ends */
    int64_t retry_after; /* seconds (>= 1) until the window ends */
} api_rl_info_t;

/* A limiter with windows of window_ms. NULL on out of memory. */
api_rl_t *api_rl_new(int64_t window_ms);
void api_rl_free(api_rl_t *rl);

/* Count one request of `team` at now_ms against `limit` requests per window.
 * True if allowed; info is filled either way. limit 0 means no limit (always
 * true, info->limit 0). A request that cannot be counted for lack of memory
 * is allowed (fail open, as upstream does when Redis is down). */
bool api_rl_hit(api_rl_t *rl, int64_t team, uint64_t limit, int64_t now_ms,
                api_rl_info_t *info);

/* Number of teams with an open window (tests). */
uint64_t api_rl_size(const api_rl_t *rl);

#endif
