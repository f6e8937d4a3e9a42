/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to webhooks*.c: records, the writes the host API and the CLI
 * share, and the dispatcher's hooks. Layout in sp_core/webhooks.h. */
#ifndef SP_CORE_WEBHOOKS_INT_H
#define SP_CORE_WEBHOOKS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "sp_core/store.h"
#include "sp_core/webhooks.h"

#define WH_KEY_LEN 16

void wh_key(uint8_t k[WH_KEY_LEN], uint64_t a, uint64_t b);
int64_t wh_int(const sp_msg_t *m, const char *f);
const char *wh_str(const sp_msg_t *m, const char *f);
/* A scan visitor that keeps the first key (WH_KEY_LEN long) and stops. */
typedef struct wh_first {
    uint8_t key[WH_KEY_LEN];
    bool found;
} wh_first_t;
int wh_first_each(void *arg, const void *k, size_t kl, const void *v, size_t vl);
/* The webhook `id` of any team (read snapshot). 0, SP_ENOTFOUND. */
int wh_find(sp_rtxn_t *r, uint64_t id, sp_msg_t **out);
int wh_get_txn(sp_wtxn_t *w, int64_t team, uint64_t id, sp_msg_t **out);
int wh_put_txn(sp_wtxn_t *w, const sp_msg_t *rec);
/* Public JSON of a webhook (with the secret only when asked) and a call. */
json_t *wh_json(const sp_msg_t *rec, bool secret);
json_t *wh_call_json(const sp_msg_t *call);

/* One write of the host API or the CLI. */
typedef enum { WH_J_PUT = 0, WH_J_DEL, WH_J_TEST } wh_jkind_t;
typedef struct wh_job {
    wh_jkind_t kind;
    int64_t team;
    uint64_t id;       /* 0 with WH_J_PUT: create */
    json_t *spec;      /* WH_J_PUT: checked with wh_spec_check */
    char secret[SP_WH_SECRET_LEN + 1];
    int64_t now;
    char *out;         /* malloc'd JSON of the result (webhook, or call for TEST) */
    bool kick;         /* a call was queued */
} wh_job_t;

/* Check a create/update spec; one line into why. 0 or SP_EINVAL. */
int wh_spec_check(const json_t *spec, bool create, char *why, size_t n);
int wh_secret_new(char out[SP_WH_SECRET_LEN + 1]);
int wh_job_apply(sp_wtxn_t *w, void *arg);

#endif
