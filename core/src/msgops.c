/* SPDX-License-Identifier: Apache-2.0 */
/* Operations on stored messages for API plugins: load, events, list a team's
 * messages newest first, reschedule and cancel. Reschedule and cancel hold
 * the message away from the scheduler until their write is committed, so a
 * message is never both cancelled and sent. */
#include <stdlib.h>
#include <string.h>

#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/msgops.h"
#include "sp_core/sched.h"

static int parse_id(const char *id, uint64_t *out)
{
    if (id == NULL || sp__id_parse(id, strlen(id), out) < 0) {
        return SP_ENOTFOUND;
    }
    return 0;
}

int sp__msgops_load(sp_core_t *core, const char *id, sp_msg_t **out)
{
    uint64_t n;
    uint8_t key[8];
    const void *v;
    size_t vl;
    sp_rtxn_t *r;
    int rc = parse_id(id, &n);
    if (rc < 0) {
        return rc;
    }
    sp__be64_put(key, n);
    rc = sp__store_read_begin(core->store, &r);
    if (rc < 0) {
        return rc;
    }
    rc = sp__rtxn_get(r, SP_DB_MESSAGES, key, 8, &v, &vl);
    if (rc == 0) {
        rc = sp__msg_decode(v, vl, out);
    }
    sp__store_read_end(r);
    return rc;
}

int sp__msgops_find_provider(sp_core_t *core, const char *provider_id, char *id_out,
                             size_t id_len)
{
    size_t pl = provider_id != NULL ? strlen(provider_id) : 0;
    const void *v;
    size_t vl;
    sp_rtxn_t *r;
    int rc;
    if (pl == 0 || pl > SP_PROVIDER_ID_MAX) {
        return SP_ENOTFOUND;
    }
    if (id_len < SP_ID_STRLEN + 1) {
        return SP_ETOOBIG;
    }
    rc = sp__store_read_begin(core->store, &r);
    if (rc < 0) {
        return rc;
    }
    rc = sp__rtxn_get(r, SP_DB_PROVIDER_IDS, provider_id, pl, &v, &vl);
    if (rc == 0 && vl != 8) {
        rc = SP_ECORRUPT;
    }
    if (rc == 0) {
        sp__id_str(sp__be64_get(v), id_out);
    }
    sp__store_read_end(r);
    return rc;
}

typedef struct events_ctx {
    int (*each)(void *arg, sp_status_t st, int64_t time_ms, const char *data);
    void *arg;
} events_ctx_t;

static int events_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    events_ctx_t *c = arg;
    int status, stop;
    int64_t when;
    char *data = NULL;
    if (sp__event_decode(v, vl, &status, &when, &data) < 0) {
        return 0; /* an unreadable event row does not hide the others */
    }
    stop = c->each(c->arg, (sp_status_t)status, when, data != NULL ? data : "{}");
    free(data);
    return stop;
}

int sp__msgops_events(sp_core_t *core, const char *id,
                      int (*each)(void *arg, sp_status_t st, int64_t time_ms, const char *data),
                      void *arg)
{
    uint64_t n;
    uint8_t key[8];
    const void *v;
    size_t vl;
    sp_rtxn_t *r;
    events_ctx_t c = {.each = each, .arg = arg};
    int rc = parse_id(id, &n);
    if (rc < 0 || each == NULL) {
        return rc < 0 ? rc : SP_EINVAL;
    }
    sp__be64_put(key, n);
    rc = sp__store_read_begin(core->store, &r);
    if (rc < 0) {
        return rc;
    }
    rc = sp__rtxn_get(r, SP_DB_MESSAGES, key, 8, &v, &vl);
    if (rc == 0) {
        rc = sp__rtxn_scan(r, SP_DB_EVENTS, key, 8, key, 8, events_each, &c);
        if (rc > 0) {
            rc = 0;
        }
    }
    sp__store_read_end(r);
    return rc;
}

typedef struct list_ctx {
    sp_rtxn_t *r;
    int64_t from_ms;
    uint64_t skip;
    int (*each)(void *arg, const sp_msg_t *m);
    void *arg;
    int err;
} list_ctx_t;

static int list_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    list_ctx_t *c = arg;
    const void *rec;
    size_t rl;
    sp_msg_t *m;
    int64_t created = 0;
    int stop;
    if (kl != 16) {
        return 0;
    }
    if (sp__rtxn_get(c->r, SP_DB_MESSAGES, (const uint8_t *)k + 8, 8, &rec, &rl) < 0 ||
        sp__msg_decode(rec, rl, &m) < 0) {
        return 0;
    }
    (void)sp__msg_get_int(m, SP_F_CREATED_AT, &created);
    if (c->from_ms > 0 && created < c->from_ms) {
        sp__msg_free(m);
        return 1; /* newest first: everything after this is older still */
    }
    if (c->skip > 0) {
        c->skip--;
        sp__msg_free(m);
        return 0;
    }
    stop = c->each(c->arg, m);
    sp__msg_free(m);
    return stop;
}

int sp__msgops_list(sp_core_t *core, int64_t team, int64_t from_ms, int64_t to_ms, uint64_t skip,
                    int (*each)(void *arg, const sp_msg_t *m), void *arg)
{
    uint8_t prefix[8], upto[16];
    list_ctx_t c = {.from_ms = from_ms, .skip = skip, .each = each, .arg = arg};
    int rc;
    if (each == NULL) {
        return SP_EINVAL;
    }
    if (to_ms > 0 && sp__id_floor(to_ms) == 0) {
        return 0; /* before the first possible id: an empty range */
    }
    sp__be64_put(prefix, (uint64_t)team);
    memcpy(upto, prefix, 8);
    /* Ids order by creation time: the newest id created before to_ms is
     * below the floor id of to_ms. */
    sp__be64_put(upto + 8, to_ms > 0 ? sp__id_floor(to_ms) - 1 : UINT64_MAX);
    rc = sp__store_read_begin(core->store, &c.r);
    if (rc < 0) {
        return rc;
    }
    rc = sp__rtxn_scan_rev(c.r, SP_DB_TEAM_MSGS, upto, 16, prefix, 8, list_each, &c);
    sp__store_read_end(c.r);
    return rc < 0 ? rc : 0;
}

/* ---- reschedule and cancel ------------------------------------------- */

typedef struct change {
    sp_core_t *core;
    uint64_t id;
    char ids[SP_ID_STRLEN + 1];
    int64_t team;
    int64_t due;     /* reschedule: new due; cancel: -1 */
    int64_t now;
    int64_t msg_team;
    sp_done_fn done;
    void *arg;
} change_t;

static int apply_change(sp_wtxn_t *w, void *arg)
{
    change_t *c = arg;
    uint8_t key[16];
    const void *v;
    size_t vl;
    sp_msg_t *m = NULL;
    int64_t team = -1, status = -1, sched_at = -1;
    int rc, applied;
    sp__be64_put(key, c->id);
    rc = sp__wtxn_get(w, SP_DB_MESSAGES, key, 8, &v, &vl);
    if (rc < 0) {
        return rc;
    }
    rc = sp__msg_decode(v, vl, &m);
    if (rc < 0) {
        return rc;
    }
    (void)sp__msg_get_int(m, SP_F_TEAM, &team);
    (void)sp__msg_get_int(m, SP_F_STATUS, &status);
    (void)sp__msg_get_int(m, SP_F_SCHEDULED_AT, &sched_at);
    if (team != c->team) {
        sp__msg_free(m);
        return SP_ENOTFOUND;
    }
    if (status != SP_ST_SCHEDULED || sched_at < 0) {
        sp__msg_free(m);
        return SP_ESTATE;
    }
    /* A scheduled message's queue key is its scheduled time. */
    sp__be64_put(key, (uint64_t)sched_at);
    sp__be64_put(key + 8, c->id);
    rc = sp__wtxn_del(w, SP_DB_QUEUE, key, 16);
    if (rc < 0) {
        sp__msg_free(m);
        return rc == SP_ENOTFOUND ? SP_ESTATE : rc;
    }
    if (c->due >= 0) {
        void *buf;
        size_t len;
        rc = sp__msg_set_int(m, SP_F_SCHEDULED_AT, c->due);
        if (rc == 0) {
            rc = sp__msg_encode(m, &buf, &len);
        }
        sp__msg_free(m);
        if (rc < 0) {
            return rc;
        }
        sp__be64_put(key, (uint64_t)c->due);
        sp__be64_put(key + 8, c->id);
        rc = sp__wtxn_put(w, SP_DB_QUEUE, key, 16, "", 0);
        if (rc == 0) {
            sp__be64_put(key, c->id);
            rc = sp__wtxn_put(w, SP_DB_MESSAGES, key, 8, buf, len);
        }
        free(buf);
        return rc;
    }
    sp__msg_free(m);
    {
        sp_status_update_t u = {.status = SP_ST_CANCELLED, .attempts = -1, .when = c->now};
        return sp__core_update_status(w, c->id, &u, &applied, &c->msg_team);
    }
}

static void done_change(void *arg, int status)
{
    change_t *c = arg;
    sp_core_t *core = c->core;
    if (core->sched != NULL) {
        sp__sched_release(core->sched, c->id);
    }
    if (status == 0) {
        if (c->due >= 0) {
            if (core->sched != NULL) {
                sp__sched_kick(core->sched, c->due);
            }
        } else {
            sp_event_t ev = {.size = sizeof(ev), .msg_id = c->ids, .status = SP_ST_CANCELLED,
                             .status_name = sp__status_name(SP_ST_CANCELLED), .time_ms = c->now,
                             .data = "{}", .team = c->msg_team};
            core->stats.events++;
            sp__pipeline_emit(core->pipeline, &ev);
        }
    }
    if (c->done != NULL) {
        c->done(c->arg, status);
    }
    free(c);
}

static int change(sp_core_t *core, const char *id, int64_t team, int64_t due, sp_done_fn done,
                  void *arg)
{
    change_t *c;
    uint64_t n;
    int rc = parse_id(id, &n);
    if (rc < 0) {
        return rc;
    }
    if (core->stopping) {
        return SP_ESHUTDOWN;
    }
    if (core->sched != NULL && (rc = sp__sched_hold(core->sched, n)) < 0) {
        return rc; /* being delivered right now */
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (core->sched != NULL) {
            sp__sched_release(core->sched, n);
        }
        return SP_ENOMEM;
    }
    c->core = core;
    c->id = n;
    sp__id_str(n, c->ids);
    c->team = team;
    c->due = due;
    c->now = core->clock_ms();
    c->done = done;
    c->arg = arg;
    rc = sp__store_write(core->store, apply_change, done_change, c);
    if (rc < 0) {
        if (core->sched != NULL) {
            sp__sched_release(core->sched, n);
        }
        free(c);
    }
    return rc;
}

int sp__msgops_reschedule(sp_core_t *core, const char *id, int64_t team, int64_t due_ms,
                          sp_done_fn done, void *arg)
{
    if (due_ms < 0) {
        return SP_EINVAL;
    }
    return change(core, id, team, due_ms, done, arg);
}

int sp__msgops_cancel(sp_core_t *core, const char *id, int64_t team, sp_done_fn done, void *arg)
{
    return change(core, id, team, -1, done, arg);
}
