/* SPDX-License-Identifier: Apache-2.0 */
/* Fixed-window request counter per team: a chained hash table whose expired
 * windows are swept as the table grows. */
#include "ratelimit.h"

#include <stdlib.h>

#define RL_BUCKETS 256

typedef struct rl_entry {
    struct rl_entry *next;
    int64_t team;
    int64_t start_ms;
    uint64_t count;
} rl_entry_t;

struct api_rl {
    int64_t window_ms;
    uint64_t size;
    uint64_t sweep_at; /* sweep expired windows when size reaches this */
    rl_entry_t *b[RL_BUCKETS];
};

api_rl_t *api_rl_new(int64_t window_ms)
{
    api_rl_t *rl = calloc(1, sizeof(*rl));
    if (rl != NULL) {
        rl->window_ms = window_ms > 0 ? window_ms : 60000;
        rl->sweep_at = RL_BUCKETS;
    }
    return rl;
}

void api_rl_free(api_rl_t *rl)
{
    if (rl == NULL) {
        return;
    }
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        rl_entry_t *e = rl->b[i];
        while (e != NULL) {
            rl_entry_t *n = e->next;
            free(e);
            e = n;
        }
    }
    free(rl);
}

static size_t bucket(int64_t team)
{
    uint64_t h = (uint64_t)team * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 56) % RL_BUCKETS;
}

static void sweep(api_rl_t *rl, int64_t now_ms)
{
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        rl_entry_t **pp = &rl->b[i];
        while (*pp != NULL) {
            rl_entry_t *e = *pp;
            if (now_ms - e->start_ms >= rl->window_ms) {
                *pp = e->next;
                free(e);
                rl->size--;
            } else {
                pp = &e->next;
            }
        }
    }
    /* Amortised: the next sweep waits until the live set has doubled. */
    rl->sweep_at = rl->size * 2 > RL_BUCKETS ? rl->size * 2 : RL_BUCKETS;
}

bool api_rl_hit(api_rl_t *rl, int64_t team, uint64_t limit, int64_t now_ms,
                api_rl_info_t *info)
{
    size_t bi = bucket(team);
    rl_entry_t *e;
    int64_t end_ms, left_ms;

    info->limit = limit;
    info->remaining = 0;
    info->reset_s = now_ms / 1000;
    info->retry_after = 0;
    if (limit == 0) {
        return true;
    }
    for (e = rl->b[bi]; e != NULL && e->team != team; e = e->next) {
    }
    if (e != NULL && now_ms - e->start_ms >= rl->window_ms) {
        e->start_ms = now_ms;
        e->count = 0;
    }
    if (e == NULL) {
        if (rl->size >= rl->sweep_at) {
            sweep(rl, now_ms);
        }
        e = calloc(1, sizeof(*e));
        if (e == NULL) {
            info->remaining = limit;
            info->reset_s = (now_ms + rl->window_ms) / 1000;
            return true;
        }
        e->team = team;
        e->start_ms = now_ms;
        e->next = rl->b[bi];
        rl->b[bi] = e;
        rl->size++;
    }
    end_ms = e->start_ms + rl->window_ms;
    left_ms = end_ms - now_ms;
    info->reset_s = (end_ms + 999) / 1000;
    info->retry_after = left_ms > 0 ? (left_ms + 999) / 1000 : 1;
    if (e->count >= limit) {
        return false;
    }
    e->count++;
    info->remaining = limit - e->count;
    return true;
}

uint64_t api_rl_size(const api_rl_t *rl)
{
    return rl->size;
}
