/* SPDX-License-Identifier: Apache-2.0 */
/* The per-team suppression list. One entry per address in
 * SP_DB_SUPPRESSIONS, keyed by team(be64) || the lower-cased, trimmed
 * address (no terminator), valued by a message record (msg.c's msgpack map)
 * with the integer fields "reason" (sp_suppress_reason_t) and "created_at"
 * (ms) and the string field "source" (the message id that caused it, absent
 * for manual entries). Keys sort by address, so a team's list is one range
 * read in address order.
 *
 * Writers: the event feed (effects.c, inside the status change's store
 * write), the host API (suppress_add/del, one store write each) and
 * `sendpipe suppressions` (beside a running server, like the tenancy
 * commands). Readers use read snapshots from any thread. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_core/cli_store.h"
#include "sp_core/core.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/suppress.h"
#include "sp_core/tenancy.h"

#define KEY_MAX (8 + SP_SUPPRESS_EMAIL_MAX)

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int sp__suppress_normn(const char *in, size_t len, char out[SP_SUPPRESS_EMAIL_MAX + 1])
{
    size_t a = 0, b = len, n;

    if (in == NULL) {
        return SP_EINVAL;
    }
    while (a < b && is_space((unsigned char)in[a])) {
        a++;
    }
    while (b > a && is_space((unsigned char)in[b - 1])) {
        b--;
    }
    n = b - a;
    if (n == 0 || n > SP_SUPPRESS_EMAIL_MAX) {
        return SP_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[a + i];
        if (c < 0x20 || c == 0x7f) {
            return SP_EINVAL;
        }
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    out[n] = '\0';
    return 0;
}

int sp__suppress_norm(const char *in, char out[SP_SUPPRESS_EMAIL_MAX + 1])
{
    return sp__suppress_normn(in, in != NULL ? strlen(in) : 0, out);
}

const char *sp__suppress_reason_name(sp_suppress_reason_t r)
{
    switch (r) {
    case SP_SUPPRESS_HARD_BOUNCE:
        return "HARD_BOUNCE";
    case SP_SUPPRESS_COMPLAINT:
        return "COMPLAINT";
    case SP_SUPPRESS_MANUAL:
        return "MANUAL";
    }
    return NULL;
}

int sp__suppress_reason_parse(const char *s)
{
    for (int r = SP_SUPPRESS_HARD_BOUNCE; r <= SP_SUPPRESS_MANUAL; r++) {
        if (s != NULL && strcmp(s, sp__suppress_reason_name((sp_suppress_reason_t)r)) == 0) {
            return r;
        }
    }
    return -1;
}

/* team || normalised address; the key length. */
static size_t make_key(int64_t team, const char *norm, uint8_t key[KEY_MAX])
{
    size_t n = strlen(norm);

    sp__be64_put(key, (uint64_t)team);
    memcpy(key + 8, norm, n);
    return 8 + n;
}

static bool reason_ok(sp_suppress_reason_t r)
{
    return sp__suppress_reason_name(r) != NULL;
}

int sp__suppress_put_txn(sp_wtxn_t *w, int64_t team, const char *email,
                         sp_suppress_reason_t reason, const char *source, int64_t now_ms)
{
    char norm[SP_SUPPRESS_EMAIL_MAX + 1];
    uint8_t key[KEY_MAX];
    size_t kl, sl = source != NULL ? strlen(source) : 0;
    sp_msg_t *m;
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (w == NULL || team <= 0 || !reason_ok(reason) || sl > SP_SUPPRESS_SOURCE_MAX ||
        sp__suppress_norm(email, norm) != 0) {
        return SP_EINVAL;
    }
    kl = make_key(team, norm, key);
    if ((m = sp__msg_new()) == NULL) {
        return SP_ENOMEM;
    }
    rc = sp__msg_set_int(m, "reason", (int64_t)reason);
    rc = rc ? rc : sp__msg_set_int(m, "created_at", now_ms);
    if (rc == 0 && sl > 0) {
        rc = sp__msg_set(m, "source", source, sl);
    }
    rc = rc ? rc : sp__msg_encode(m, &buf, &len);
    sp__msg_free(m);
    if (rc == 0) {
        rc = sp__wtxn_put(w, SP_DB_SUPPRESSIONS, key, kl, buf, len);
    }
    free(buf);
    return rc;
}

/* An entry's record into s (source borrowed from *rec, which the caller
 * frees). */
static int entry_decode(const void *v, size_t vl, sp_msg_t **rec, sp_suppression_t *s)
{
    int64_t reason = SP_SUPPRESS_MANUAL, created = 0;
    int rc = sp__msg_decode(v, vl, rec);

    if (rc != 0) {
        return rc;
    }
    (void)sp__msg_get_int(*rec, "reason", &reason);
    (void)sp__msg_get_int(*rec, "created_at", &created);
    s->reason = reason >= SP_SUPPRESS_HARD_BOUNCE && reason <= SP_SUPPRESS_MANUAL
                    ? (sp_suppress_reason_t)reason
                    : SP_SUPPRESS_MANUAL;
    s->created_ms = created;
    s->source = sp__msg_get(*rec, "source", NULL);
    if (s->source == NULL) {
        s->source = "";
    }
    return 0;
}

static sp_store_t *store_of_core(void)
{
    return sp__core != NULL ? sp__core->store : NULL;
}

int sp__suppress_check_in(sp_store_t *st, int64_t team, const char *email,
                          sp_suppress_reason_t *reason)
{
    char norm[SP_SUPPRESS_EMAIL_MAX + 1];
    uint8_t key[KEY_MAX];
    size_t kl;
    sp_rtxn_t *r;
    const void *v;
    size_t vl;
    int rc;

    if (st == NULL) {
        return SP_ESTATE;
    }
    if (team <= 0 || sp__suppress_norm(email, norm) != 0) {
        return SP_ENOTFOUND;
    }
    kl = make_key(team, norm, key);
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        return rc;
    }
    rc = sp__rtxn_get(r, SP_DB_SUPPRESSIONS, key, kl, &v, &vl);
    if (rc == 0 && reason != NULL) {
        sp_msg_t *rec = NULL;
        sp_suppression_t s = {0};
        rc = entry_decode(v, vl, &rec, &s);
        *reason = rc == 0 ? s.reason : SP_SUPPRESS_MANUAL;
        sp__msg_free(rec);
        rc = 0; /* present: an unreadable record still suppresses */
    }
    sp__store_read_end(r);
    return rc;
}

int sp__suppress_check(int64_t team, const char *email, sp_suppress_reason_t *reason)
{
    return sp__suppress_check_in(store_of_core(), team, email, reason);
}

/* ------------------------------------------------------------------------ */
/* Host API writes */

typedef struct wreq {
    sp_done_fn done;
    void *arg;
    int64_t team;
    bool del;
    sp_suppress_reason_t reason;
    int64_t now;
    char email[SP_SUPPRESS_EMAIL_MAX + 1];
    char source[SP_SUPPRESS_SOURCE_MAX + 1];
} wreq_t;

static int wreq_apply(sp_wtxn_t *w, void *arg)
{
    wreq_t *q = arg;
    uint8_t key[KEY_MAX];

    if (q->del) {
        return sp__wtxn_del(w, SP_DB_SUPPRESSIONS, key, make_key(q->team, q->email, key));
    }
    return sp__suppress_put_txn(w, q->team, q->email, q->reason, q->source, q->now);
}

static void wreq_done(void *arg, int status)
{
    wreq_t *q = arg;

    if (q->done != NULL) {
        q->done(q->arg, status);
    }
    free(q);
}

static int wreq_submit(int64_t team, const char *email, bool del, sp_suppress_reason_t reason,
                       const char *source, sp_done_fn done, void *arg)
{
    sp_store_t *st = store_of_core();
    wreq_t *q;
    int rc;

    if (team <= 0 || (!del && !reason_ok(reason)) ||
        (source != NULL && strlen(source) > SP_SUPPRESS_SOURCE_MAX)) {
        return SP_EINVAL;
    }
    if (st == NULL) {
        return SP_ESTATE;
    }
    if ((q = calloc(1, sizeof(*q))) == NULL) {
        return SP_ENOMEM;
    }
    if (sp__suppress_norm(email, q->email) != 0) {
        free(q);
        return SP_EINVAL;
    }
    q->done = done;
    q->arg = arg;
    q->team = team;
    q->del = del;
    q->reason = reason;
    q->now = sp__core->clock_ms != NULL ? sp__core->clock_ms() : sp__now_ms();
    snprintf(q->source, sizeof(q->source), "%s", source != NULL ? source : "");
    rc = sp__store_write(st, wreq_apply, wreq_done, q);
    if (rc < 0) {
        free(q);
    }
    return rc;
}

int sp__suppress_add(sp_plugin_t *p, int64_t team, const char *email,
                     sp_suppress_reason_t reason, const char *source, sp_done_fn done,
                     void *arg)
{
    (void)p;
    return wreq_submit(team, email, false, reason, source, done, arg);
}

int sp__suppress_del(sp_plugin_t *p, int64_t team, const char *email, sp_done_fn done,
                     void *arg)
{
    (void)p;
    return wreq_submit(team, email, true, SP_SUPPRESS_MANUAL, NULL, done, arg);
}

/* ------------------------------------------------------------------------ */
/* Listing */

typedef struct list_ctx {
    int64_t team;
    char search[SP_SUPPRESS_EMAIL_MAX + 1]; /* "" = all */
    uint64_t skip;
    int (*each)(void *arg, const sp_suppression_t *s);
    void *arg;
    int stop;
} list_ctx_t;

static int list_each(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    list_ctx_t *lc = arg;
    char email[SP_SUPPRESS_EMAIL_MAX + 1];
    sp_suppression_t s = {.size = sizeof(s), .team = lc->team};
    sp_msg_t *rec = NULL;

    if (kl <= 8 || kl > KEY_MAX) {
        return 0;
    }
    memcpy(email, (const uint8_t *)k + 8, kl - 8);
    email[kl - 8] = '\0';
    if (lc->search[0] != '\0' && strstr(email, lc->search) == NULL) {
        return 0;
    }
    if (lc->skip > 0) {
        lc->skip--;
        return 0;
    }
    if (entry_decode(v, vl, &rec, &s) != 0) {
        s.reason = SP_SUPPRESS_MANUAL;
        s.source = "";
        s.created_ms = 0;
    }
    s.email = email;
    lc->stop = lc->each(lc->arg, &s);
    sp__msg_free(rec);
    return lc->stop != 0;
}

int sp__suppress_list_in(sp_store_t *st, int64_t team, const char *search, uint64_t skip,
                         int (*each)(void *arg, const sp_suppression_t *s), void *arg)
{
    list_ctx_t lc = {.team = team, .skip = skip, .each = each, .arg = arg};
    uint8_t prefix[8];
    sp_rtxn_t *r;
    int rc;

    if (each == NULL) {
        return SP_EINVAL;
    }
    if (st == NULL) {
        return SP_ESTATE;
    }
    if (search != NULL && strspn(search, " \t\r\n\v\f") < strlen(search) &&
        sp__suppress_norm(search, lc.search) != 0) {
        return 0; /* nothing stored is longer, or holds control characters */
    }
    if (team <= 0) {
        return 0;
    }
    sp__be64_put(prefix, (uint64_t)team);
    if ((rc = sp__store_read_begin(st, &r)) != 0) {
        return rc;
    }
    rc = sp__rtxn_scan(r, SP_DB_SUPPRESSIONS, prefix, 8, prefix, 8, list_each, &lc);
    sp__store_read_end(r);
    return rc < 0 ? rc : 0;
}

int sp__suppress_list(int64_t team, const char *search, uint64_t skip,
                      int (*each)(void *arg, const sp_suppression_t *s), void *arg)
{
    return sp__suppress_list_in(store_of_core(), team, search, skip, each, arg);
}
