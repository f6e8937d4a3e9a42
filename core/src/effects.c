/* SPDX-License-Identifier: Apache-2.0 */
/* Consequences of a status change, in the same store write: analytics
 * counters, the suppression feed and queued webhook calls. The event data
 * is parsed with jansson (the same library the API plugin uses). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sp_core/analytics.h"
#include "sp_core/effects.h"
#include "sp_core/msg.h"
#include "sp_core/store.h"
#include "sp_core/suppress.h"
#include "sp_core/webhooks.h"

typedef struct seen {
    int status;
    unsigned n;
} seen_t;

static int count_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    seen_t *s = arg;
    int st = -1;
    int64_t t = 0;
    char *data = NULL;
    (void)k;
    (void)kl;
    if (sp__event_decode(v, vl, &st, &t, &data) == 0 && st == s->status) {
        s->n++;
    }
    free(data);
    return 0;
}

/* Events of `status` recorded for message id (including the one just
 * written). */
static unsigned events_of(sp_wtxn_t *w, uint64_t id, int status)
{
    uint8_t key[8];
    seen_t s = {.status = status, .n = 0};
    sp__be64_put(key, id);
    (void)sp__wtxn_scan(w, SP_DB_EVENTS, key, 8, key, 8, count_each, &s);
    return s.n;
}

/* Add every `member[].emailAddress` of the event data to the team's list. */
static int feed(sp_wtxn_t *w, int64_t team, const json_t *list, sp_suppress_reason_t reason,
                const char *source, int64_t when)
{
    size_t i;
    const json_t *r;
    json_array_foreach(list, i, r)
    {
        const char *addr = json_string_value(json_object_get(r, "emailAddress"));
        if (addr == NULL) {
            continue;
        }
        int rc = sp__suppress_put_txn(w, team, addr, reason, source, when);
        if (rc < 0 && rc != SP_EINVAL) {
            return rc;
        }
    }
    return 0;
}

int sp__effects_apply(sp_wtxn_t *w, uint64_t id, const sp_msg_t *m, sp_status_t status,
                      int64_t when, const char *data)
{
    int64_t team = 0, domain = 0;
    bool first = true, hard = false;
    json_t *d = NULL;
    char ids[SP_ID_STRLEN + 1];
    int rc = 0;
    (void)sp__msg_get_int(m, SP_F_TEAM, &team);
    (void)sp__msg_get_int(m, SP_F_DOMAIN_ID, &domain);
    sp__id_str(id, ids);
    if (status == SP_ST_OPENED || status == SP_ST_CLICKED) {
        first = events_of(w, id, status) <= 1;
    }
    if ((status == SP_ST_BOUNCED || status == SP_ST_COMPLAINED) && data != NULL) {
        d = json_loads(data, 0, NULL);
    }
    if (status == SP_ST_BOUNCED && d != NULL) {
        const char *bt = json_string_value(json_object_get(d, "bounceType"));
        hard = bt != NULL && strcmp(bt, "Permanent") == 0;
        if (hard) {
            rc = feed(w, team, json_object_get(d, "bouncedRecipients"),
                      SP_SUPPRESS_HARD_BOUNCE, ids, when);
        }
    } else if (status == SP_ST_COMPLAINED && d != NULL) {
        rc = feed(w, team, json_object_get(d, "complainedRecipients"), SP_SUPPRESS_COMPLAINT,
                  ids, when);
    }
    json_decref(d);
    if (rc == 0) {
        rc = sp__analytics_count_txn(w, team, domain, status, first, hard, when);
    }
    if (rc == 0) {
        rc = sp__webhooks_enqueue_txn(w, id, m, status, when, data);
    }
    return rc;
}
