/* SPDX-License-Identifier: Apache-2.0 */
/* suppression: applies the team's suppression list at accept (useSend's
 * send step 2). Every To, Cc and Bcc recipient is looked up (lower-cased and
 * trimmed, as a whole string, and, unless match_bare_address is off, also
 * the bare address inside "Name <...>"). If every To recipient is
 * suppressed, the message is recorded as SUPPRESSED and never sent (verdict
 * DROP: the API still answers 200 with its id, SMTP 250); otherwise the
 * suppressed recipients are removed from the message and it goes on.
 *
 * The list itself lives in the core (host API suppress_*); the core feeds it
 * from Permanent bounces and complaints. */
#include <stdio.h>
#include <string.h>

#include <sp/sp_plugin.h>

#include "supp_addr.h"

#define SUPPRESSED_TEXT "All TO recipients are suppressed. No emails to send."
#define SUPPRESSED_ALL_TEXT "All recipients are suppressed. No emails to send."
/* Late in the accept stage: after the hooks that authenticate, validate or
 * rate-limit (they refuse before a message could be recorded). */
#define HOOK_PRIORITY 50
#define ADDR_MAX 320

typedef struct supp_conf {
    bool match_bare_address;
} supp_conf_t;

typedef struct supp {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const supp_conf_t *conf;
} supp_t;

static const sp_conf_item_t supp_schema[] = {
    {SP_CONF_BOOL, "match_bare_address", offsetof(supp_conf_t, match_bare_address), "true", 0,
     "also look up the address inside \"Name <addr>\" (useSend compares the whole string "
     "only)"},
    {0},
};

/* 0 suppressed, SP_ENOTFOUND not, another error: the list could not be read. */
static int lookup(const supp_t *s, int64_t team, const char *v, size_t len)
{
    const sp_host_api_t *api = s->api;
    char bare[ADDR_MAX + 1];
    const char *b;
    size_t bl;
    int rc = api->suppress_check(team, v, NULL);

    if (rc != SP_ENOTFOUND || !s->conf->match_bare_address ||
        !supp_bare_addr(v, len, &b, &bl) || bl > ADDR_MAX) {
        return rc;
    }
    memcpy(bare, b, bl);
    bare[bl] = '\0';
    return api->suppress_check(team, bare, NULL);
}

typedef struct field_scan {
    size_t n;          /* items */
    size_t suppressed; /* of them on the list */
    unsigned char *hit; /* per item, from api->calloc (NULL when n == 0) */
} field_scan_t;

static int scan_field(const supp_t *s, int64_t team, const sp_msg_t *m, const char *field,
                      field_scan_t *fs)
{
    const sp_host_api_t *api = s->api;

    fs->n = api->msg_count(m, field);
    fs->suppressed = 0;
    fs->hit = NULL;
    if (fs->n == 0) {
        return 0;
    }
    if ((fs->hit = api->calloc(fs->n, 1)) == NULL) {
        return SP_ENOMEM;
    }
    for (size_t i = 0; i < fs->n; i++) {
        size_t len;
        const char *v = api->msg_get_at(m, field, i, &len);
        int rc = v != NULL && strlen(v) == len ? lookup(s, team, v, len) : SP_ENOTFOUND;
        if (rc == 0) {
            fs->hit[i] = 1;
            fs->suppressed++;
        } else if (rc != SP_ENOTFOUND) {
            return rc;
        }
    }
    return 0;
}

/* Rewrite the list field without its suppressed items. */
static int drop_items(const supp_t *s, sp_msg_t *m, const char *field, const field_scan_t *fs)
{
    const sp_host_api_t *api = s->api;
    char **keep = api->calloc(fs->n, sizeof(*keep));
    size_t *lens = api->calloc(fs->n, sizeof(*lens));
    size_t nk = 0;
    int rc = keep != NULL && lens != NULL ? 0 : SP_ENOMEM;

    for (size_t i = 0; i < fs->n && rc == 0; i++) {
        const char *v;
        if (fs->hit[i]) {
            continue;
        }
        v = api->msg_get_at(m, field, i, &lens[nk]);
        if ((keep[nk] = api->alloc(lens[nk] + 1)) == NULL) {
            rc = SP_ENOMEM;
            break;
        }
        memcpy(keep[nk], v, lens[nk] + 1);
        nk++;
    }
    if (rc == 0) {
        rc = api->msg_del(m, field);
    }
    for (size_t i = 0; i < nk && rc == 0; i++) {
        rc = api->msg_add(m, field, keep[i], lens[i]);
    }
    for (size_t i = 0; i < nk; i++) {
        api->free(keep[i]);
    }
    api->free(keep);
    api->free(lens);
    return rc;
}

static sp_verdict_t supp_accept(sp_txn_t *txn, void *ctx)
{
    static const char *const fields[] = {SP_F_TO, SP_F_CC, SP_F_BCC};
    supp_t *s = ctx;
    const sp_host_api_t *api = s->api;
    sp_msg_t *m = api->txn_msg(txn);
    field_scan_t fs[3] = {{0}};
    sp_verdict_t v = SP_CONTINUE;
    int64_t team = 0;
    size_t removed = 0;
    int rc = 0;

    if (api->msg_get_int(m, SP_F_TEAM, &team) != 0 || team <= 0) {
        return SP_CONTINUE; /* no team, no list */
    }
    for (size_t f = 0; f < 3 && rc == 0; f++) {
        rc = scan_field(s, team, m, fields[f], &fs[f]);
    }
    if (rc != 0) {
        api->log(s->p, SP_LOG_WARN, "reading the suppression list failed: %s",
                 api->strerror(rc));
        api->txn_set_reply(txn, 503, "suppression list unavailable, try again later");
        v = SP_DEFER;
    } else if ((fs[0].n > 0 && fs[0].suppressed == fs[0].n) ||
               (fs[0].n == 0 && fs[1].suppressed + fs[2].suppressed > 0 &&
                fs[1].suppressed + fs[2].suppressed == fs[1].n + fs[2].n)) {
        /* Recorded as addressed, never sent. Without any To (SMTP Bcc
         * only), when nobody would be left. */
        api->txn_set_status(txn, SP_ST_SUPPRESSED);
        api->txn_set_reply(txn, 200, fs[0].n > 0 ? SUPPRESSED_TEXT : SUPPRESSED_ALL_TEXT);
        api->counter_add(s->p, "suppressed_messages", 1);
        v = SP_DROP;
    } else {
        for (size_t f = 0; f < 3 && rc == 0; f++) {
            if (fs[f].suppressed > 0) {
                rc = drop_items(s, m, fields[f], &fs[f]);
                removed += fs[f].suppressed;
            }
        }
        if (rc != 0) {
            api->txn_set_reply(txn, 503, "out of memory, try again later");
            v = SP_DEFER;
        } else if (removed > 0) {
            api->counter_add(s->p, "removed_recipients", removed);
        }
    }
    for (size_t f = 0; f < 3; f++) {
        api->free(fs[f].hit);
    }
    return v;
}

static int supp_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    supp_t *s;
    int rc;

    if (!SP_API_HAS(api, suppress_list)) {
        api->log(p, SP_LOG_ERROR, "the host lacks the suppression list API (ABI 1.3)");
        return SP_EABI;
    }
    if ((s = api->calloc(1, sizeof(*s))) == NULL) {
        return SP_ENOMEM;
    }
    s->p = p;
    s->api = api;
    s->conf = conf;
    rc = api->hook(p, SP_STAGE_ACCEPT, supp_accept, HOOK_PRIORITY);
    if (rc < 0) {
        api->free(s);
        return rc;
    }
    *ctx = s;
    return 0;
}

static void supp_fini(sp_plugin_t *p, void *ctx)
{
    supp_t *s = ctx;

    (void)p;
    if (s != NULL) {
        s->api->free(s);
    }
}

SP_PLUGIN_DEFINE(.name = "suppression", .version = SP_VERSION_STRING,
                 .description = "per-team suppression list at accept: all To suppressed -> "
                                "SUPPRESSED, suppressed recipients removed",
                 .conf = supp_schema, .conf_size = sizeof(supp_conf_t), .init = supp_init,
                 .fini = supp_fini);
