/* SPDX-License-Identifier: Apache-2.0 */
/* The pipeline engine: ordered stage hooks, the stage table that gives each
 * verdict its meaning, single-use resume tokens with timeouts, cross-thread
 * resume and event hooks. */
#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_core/alerts.h"
#include "sp_core/webhooks.h"
#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/pipeline.h"
#include "sp_core/plugin.h"

#define REPLY_MAX 512              /* bytes of reply text kept, NUL included */
#define DEFAULT_TIMEOUT_MS 30000u  /* when neither the call nor the plugin sets one */
#define TOKEN_BUCKETS_MIN 64u

/* ---------------------------------------------------------------------- */
/* The stage table: what each verdict does in each stage. The engine below
 * never tests a stage by name; it only looks things up here. */

typedef enum {
    ACT_NEXT_HOOK,  /* no opinion: the next hook of the stage runs */
    ACT_NEXT_STAGE, /* stage satisfied: the rest of the stage is skipped */
    ACT_STOP        /* the run ends with this verdict */
} action_t;

typedef struct verdict_rule {
    action_t act;
    int status; /* default sp_status_t when the hook chose none; -1: none */
} verdict_rule_t;

typedef struct stage_rule {
    const char *name;
    verdict_rule_t on[SP_PENDING]; /* indexed by CONTINUE..DROP */
    /* Outcome when every hook said CONTINUE (or there is none): CONTINUE
     * means proceed to the next stage, anything else ends the run. */
    sp_verdict_t all_continue;
    const char *all_continue_text;
} stage_rule_t;

#define R_NEXT {ACT_NEXT_HOOK, -1}
#define R_PASS {ACT_NEXT_STAGE, -1}
#define R_STOP(st) {ACT_STOP, (st)}

static const stage_rule_t stage_table[SP_STAGE__COUNT] = {
    [SP_STAGE_ACCEPT] = {"accept",
                         {R_NEXT, R_PASS, R_STOP(-1), R_STOP(-1), R_STOP(SP_ST_SUPPRESSED)},
                         SP_CONTINUE, NULL},
    [SP_STAGE_RENDER] = {"render",
                         {R_NEXT, R_PASS, R_STOP(SP_ST_RENDERING_FAILURE), R_STOP(-1),
                          R_STOP(SP_ST_CANCELLED)},
                         SP_CONTINUE, NULL},
    [SP_STAGE_TRANSFORM] = {"transform",
                            {R_NEXT, R_PASS, R_STOP(SP_ST_FAILED), R_STOP(-1),
                             R_STOP(SP_ST_CANCELLED)},
                            SP_CONTINUE, NULL},
    [SP_STAGE_SIGN] = {"sign",
                       {R_NEXT, R_PASS, R_STOP(SP_ST_FAILED), R_STOP(-1), R_STOP(SP_ST_CANCELLED)},
                       SP_CONTINUE, NULL},
    /* ACCEPT here means "sent"; nobody claiming the message is temporary,
     * so it is retried once an egress plugin is there to take it. */
    [SP_STAGE_EGRESS] = {"egress",
                         {R_NEXT, R_PASS, R_STOP(SP_ST_REJECTED), R_STOP(-1),
                          R_STOP(SP_ST_CANCELLED)},
                         SP_DEFER, "no egress plugin accepted the message"},
};

/* Upper case like the SDK's names (and the status names) */
static const char *const verdict_names[SP_VERDICT__COUNT] = {
    [SP_CONTINUE] = "CONTINUE", [SP_ACCEPT] = "ACCEPT", [SP_REJECT] = "REJECT",
    [SP_DEFER] = "DEFER",       [SP_DROP] = "DROP",     [SP_PENDING] = "PENDING",
};

/* Default reply text "<verb> <plugin>" when the deciding hook set none. */
static const char *const verdict_verbs[SP_PENDING] = {
    [SP_CONTINUE] = "accepted", [SP_ACCEPT] = "accepted by", [SP_REJECT] = "rejected by",
    [SP_DEFER] = "deferred by", [SP_DROP] = "dropped by",
};

/* ---------------------------------------------------------------------- */
/* Types */

typedef struct hook {
    sp_plugin_t *p;
    sp_hook_fn fn;
    int prio;     /* effective priority */
    int order;    /* plugin YAML position */
    uint64_t seq; /* registration order, the last tie-breaker */
} hook_t;

typedef struct ev_hook {
    sp_plugin_t *p;
    sp_event_fn fn;
} ev_hook_t;

typedef struct tok_entry {
    sp_token_t tok;
    sp_txn_t *txn;
    sp_cancel_fn cancel;
    void *arg;
    uint64_t timeout_ms;
    uv_timer_t timer;          /* freed with the entry in its close callback */
    struct tok_entry *chain;   /* hash bucket */
    struct tok_entry *prev, *next; /* all live tokens, oldest first */
} tok_entry_t;

typedef struct xresume {
    sp_token_t tok;
    sp_verdict_t v;
    struct xresume *next;
} xresume_t;

struct sp_pipeline {
    uv_loop_t *loop;
    hook_t *hooks[SP_STAGE__COUNT];
    size_t nhooks[SP_STAGE__COUNT];
    size_t caphooks[SP_STAGE__COUNT];
    uint64_t seq;
    ev_hook_t *ev;
    size_t nev, capev;
    /* live tokens: hash by id, plus a list in creation order */
    tok_entry_t **buckets;
    size_t nbuckets;
    size_t ntok;
    tok_entry_t *oldest, *newest;
    /* resumes from other threads, guarded by g_mu */
    uv_async_t async;
    xresume_t *xhead, *xtail;
    sp_pipeline_stats_t stats;
};

typedef struct txn_slot {
    sp_plugin_t *p;
    void *data;
    void (*free_fn)(void *);
} txn_slot_t;

struct sp_txn {
    sp_pipeline_t *pl;
    sp_msg_t *msg;
    void *udata;
    txn_slot_t *slots;
    size_t nslots, capslots;

    /* run state */
    bool running;
    bool in_hook;      /* this txn's hook is executing right now */
    bool sync_resumed; /* its token was resumed before the hook returned */
    sp_verdict_t sync_v;
    sp_stage_t stage, last;
    size_t idx;        /* cursor: the hook of `stage` being run (nginx's phase_handler) */
    sp_plugin_t *cur;  /* plugin of that hook */
    tok_entry_t *tok;  /* live suspension of that hook, or NULL */
    sp_run_done_fn done;
    void *done_arg;

    /* what the current hook decided besides its verdict */
    int code;
    bool has_text;
    bool has_status;
    int status;
    uint64_t retry_in;
    char text[REPLY_MAX];

    /* the last ACCEPT, reported when every stage passes */
    sp_plugin_t *acc_plugin;
    int acc_code;
    bool acc_has_text;
    char acc_text[REPLY_MAX];

    char res_text[REPLY_MAX + 64];
};

/* The process's pipeline: the API's resume() carries no context. Written on
 * the loop thread only; g_mu also guards it for resume_from_thread. */
static sp_pipeline_t *g_pl;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
/* Tokens are never reused, even across pipelines (tests make many). */
static sp_token_t g_next_tok;

static void run_loop(sp_txn_t *txn);

static const char *plugin_name(const sp_plugin_t *p)
{
    return p != NULL && p->name != NULL ? p->name : "core";
}

/* ---------------------------------------------------------------------- */
/* Names */

const char *sp__stage_name(sp_stage_t s)
{
    if ((unsigned)s >= SP_STAGE__COUNT) {
        return "unknown";
    }
    return stage_table[s].name;
}

int sp__stage_parse(const char *s)
{
    if (s == NULL) {
        return -1;
    }
    for (int i = 0; i < SP_STAGE__COUNT; i++) {
        if (strcmp(s, stage_table[i].name) == 0) {
            return i;
        }
    }
    return -1;
}

const char *sp__verdict_name(sp_verdict_t v)
{
    if ((unsigned)v >= SP_VERDICT__COUNT) {
        return "invalid";
    }
    return verdict_names[v];
}

/* ---------------------------------------------------------------------- */
/* Token table */

static size_t tok_hash(sp_token_t tok, size_t nbuckets)
{
    /* splitmix64 finaliser: consecutive ids spread over the buckets */
    uint64_t x = tok;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (size_t)(x & (nbuckets - 1));
}

static void tok_grow(sp_pipeline_t *pl)
{
    size_t n = pl->nbuckets * 2;
    tok_entry_t **b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return; /* longer chains, still correct */
    }
    for (tok_entry_t *e = pl->oldest; e != NULL; e = e->next) {
        size_t h = tok_hash(e->tok, n);
        e->chain = b[h];
        b[h] = e;
    }
    free(pl->buckets);
    pl->buckets = b;
    pl->nbuckets = n;
}

static void tok_insert(sp_pipeline_t *pl, tok_entry_t *e)
{
    size_t h;
    if (pl->ntok >= pl->nbuckets) {
        tok_grow(pl);
    }
    h = tok_hash(e->tok, pl->nbuckets);
    e->chain = pl->buckets[h];
    pl->buckets[h] = e;
    e->prev = pl->newest;
    e->next = NULL;
    if (pl->newest != NULL) {
        pl->newest->next = e;
    } else {
        pl->oldest = e;
    }
    pl->newest = e;
    pl->ntok++;
}

static tok_entry_t *tok_find(const sp_pipeline_t *pl, sp_token_t tok)
{
    if (tok == 0) {
        return NULL;
    }
    for (tok_entry_t *e = pl->buckets[tok_hash(tok, pl->nbuckets)]; e != NULL; e = e->chain) {
        if (e->tok == tok) {
            return e;
        }
    }
    return NULL;
}

static void tok_entry_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Unlink a token, stop its timer and detach it from its txn. The entry is
 * freed once the timer handle is closed; it must not be used after the
 * caller is done with its fields. */
static void tok_kill(sp_pipeline_t *pl, tok_entry_t *e)
{
    tok_entry_t **pp = &pl->buckets[tok_hash(e->tok, pl->nbuckets)];
    while (*pp != e) {
        pp = &(*pp)->chain;
    }
    *pp = e->chain;
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        pl->oldest = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        pl->newest = e->prev;
    }
    pl->ntok--;
    pl->stats.suspended--;
    e->txn->tok = NULL;
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, tok_entry_closed);
}

/* Kill a token and call its cancel function (once: the token is gone
 * before the plugin runs). */
static void tok_cancel(sp_pipeline_t *pl, tok_entry_t *e)
{
    sp_cancel_fn cancel = e->cancel;
    void *arg = e->arg;
    sp_token_t tok = e->tok;
    tok_kill(pl, e);
    if (cancel != NULL) {
        cancel(tok, arg);
    }
}

/* ---------------------------------------------------------------------- */
/* Running */

static void hook_begin(sp_txn_t *txn, sp_plugin_t *p)
{
    txn->cur = p;
    txn->code = 0;
    txn->has_text = false;
    txn->has_status = false;
    txn->status = -1;
    txn->retry_in = 0;
    txn->sync_resumed = false;
}

/* Replace the current hook's reply text with a core message. */
static void force_text(sp_txn_t *txn, const char *fmt, ...) SP_PRINTF(2, 3);

static void force_text(sp_txn_t *txn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(txn->text, sizeof(txn->text), fmt, ap);
    va_end(ap);
    txn->has_text = true;
}

/* End the run and hand the outcome to done(). The txn may be freed by
 * done(), so nothing touches it afterwards. */
static void finish(sp_txn_t *txn, sp_verdict_t v, sp_plugin_t *p, const char *stage_text,
                   int status)
{
    sp_run_result_t res;
    sp_pipeline_t *pl = txn->pl;

    memset(&res, 0, sizeof(res));
    res.verdict = v;
    res.stage = txn->stage > txn->last ? txn->last : txn->stage;
    res.status = -1;
    if (v == SP_CONTINUE) {
        p = txn->acc_plugin;
        res.code = txn->acc_code;
        if (txn->acc_has_text) {
            snprintf(txn->res_text, sizeof(txn->res_text), "%s", txn->acc_text);
        } else {
            snprintf(txn->res_text, sizeof(txn->res_text), "accepted");
        }
    } else {
        res.code = txn->code;
        if (stage_text != NULL) {
            snprintf(txn->res_text, sizeof(txn->res_text), "%s", stage_text);
        } else if (txn->has_text) {
            snprintf(txn->res_text, sizeof(txn->res_text), "%s", txn->text);
        } else {
            snprintf(txn->res_text, sizeof(txn->res_text), "%s %s", verdict_verbs[v],
                     plugin_name(p));
        }
        if (v == SP_REJECT || v == SP_DROP) {
            res.status = txn->has_status ? txn->status : status;
        }
        if (v == SP_DEFER) {
            res.retry_in_ms = txn->retry_in;
        }
    }
    res.text = txn->res_text;
    res.plugin = p != NULL ? plugin_name(p) : NULL;
    txn->running = false;
    txn->cur = NULL;
    pl->stats.active--;
    txn->done(txn, &res, txn->done_arg);
}

/* Apply a valid verdict (CONTINUE..DROP) of the current hook. Returns true
 * if the run goes on (call run_loop), false if it ended. */
static bool apply(sp_txn_t *txn, sp_verdict_t v)
{
    const verdict_rule_t *r = &stage_table[txn->stage].on[v];
    txn->pl->stats.verdicts[txn->stage][v]++;
    switch (r->act) {
    case ACT_NEXT_HOOK:
        txn->idx++;
        return true;
    case ACT_NEXT_STAGE:
        txn->acc_plugin = txn->cur;
        txn->acc_code = txn->code;
        txn->acc_has_text = txn->has_text;
        if (txn->has_text) {
            memcpy(txn->acc_text, txn->text, sizeof(txn->acc_text));
        }
        txn->stage++;
        txn->idx = 0;
        return true;
    case ACT_STOP:
    default:
        finish(txn, v, txn->cur, NULL, r->status);
        return false;
    }
}

/* An out-of-range answer is a plugin bug: fail temporarily, never open. */
static sp_verdict_t bad_verdict(sp_txn_t *txn, int v, const char *how)
{
    txn->pl->stats.bad_verdicts++;
    sp__log_src(SP_LOG_ERROR, plugin_name(txn->cur), "%s hook %s (%d); deferring",
                sp__stage_name(txn->stage), how, v);
    force_text(txn, "plugin %s failed", plugin_name(txn->cur));
    return SP_DEFER;
}

/* Drive the txn from its cursor until it suspends or ends. A loop, not
 * recursion: resumes that happen inside a hook are picked up here. */
static void run_loop(sp_txn_t *txn)
{
    sp_pipeline_t *pl = txn->pl;
    for (;;) {
        const stage_rule_t *rule;
        hook_t h;
        sp_verdict_t v;

        if (txn->stage > txn->last) {
            finish(txn, SP_CONTINUE, NULL, NULL, -1);
            return;
        }
        rule = &stage_table[txn->stage];
        if (txn->idx >= pl->nhooks[txn->stage]) {
            if (rule->all_continue == SP_CONTINUE) {
                txn->stage++;
                txn->idx = 0;
                continue;
            }
            hook_begin(txn, NULL);
            finish(txn, rule->all_continue, NULL, rule->all_continue_text, -1);
            return;
        }
        h = pl->hooks[txn->stage][txn->idx];
        hook_begin(txn, h.p);
        txn->in_hook = true;
        v = h.fn(txn, h.p != NULL ? h.p->ctx : NULL);
        txn->in_hook = false;

        if (txn->sync_resumed) {
            /* resume() ran inside the hook: its verdict wins */
            if (v != SP_PENDING) {
                sp__log_src(SP_LOG_WARN, plugin_name(h.p),
                            "hook resumed its own token and returned %s, not pending",
                            sp__verdict_name(v));
            }
            v = txn->sync_v;
        } else if (txn->tok != NULL && v == SP_PENDING) {
            return; /* resume, timeout or cancel continues the run */
        } else if (txn->tok != NULL) {
            /* Suspended, then answered anyway: the token must still end in
             * exactly one resume or cancel, so cancel it. */
            tok_cancel(pl, txn->tok);
            v = bad_verdict(txn, (int)v, "suspended but did not return pending");
        } else if (v == SP_PENDING) {
            v = bad_verdict(txn, (int)v, "returned pending without suspending");
        } else if ((unsigned)v >= SP_PENDING) {
            v = bad_verdict(txn, (int)v, "returned an invalid verdict");
        }
        if (!apply(txn, v)) {
            return;
        }
    }
}

int sp__pipeline_run(sp_pipeline_t *pl, sp_txn_t *txn, sp_stage_t first, sp_stage_t last,
                     sp_run_done_fn done, void *arg)
{
    if (pl == NULL || txn == NULL || done == NULL || (unsigned)first >= SP_STAGE__COUNT ||
        (unsigned)last >= SP_STAGE__COUNT || first > last || txn->pl != pl) {
        return SP_EINVAL;
    }
    if (txn->running) {
        return SP_ESTATE;
    }
    txn->running = true;
    txn->stage = first;
    txn->last = last;
    txn->idx = 0;
    txn->done = done;
    txn->done_arg = arg;
    txn->acc_plugin = NULL;
    txn->acc_code = 0;
    txn->acc_has_text = false;
    pl->stats.active++;
    run_loop(txn);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Suspend and resume */

/* A suspension ended with v. If the hook is still on the stack (it resumed
 * or cancelled its own token), run_loop picks v up when the hook returns;
 * otherwise the run continues from the cursor here. */
static void end_suspension(sp_txn_t *txn, sp_verdict_t v)
{
    if (txn->in_hook) {
        txn->sync_resumed = true;
        txn->sync_v = v;
        return;
    }
    if (apply(txn, v)) {
        run_loop(txn);
    }
}

static void on_timeout(uv_timer_t *t)
{
    tok_entry_t *e = t->data;
    sp_txn_t *txn = e->txn;
    sp_pipeline_t *pl = txn->pl;
    const char *name = plugin_name(txn->cur);

    pl->stats.timeouts++;
    sp__log_src(SP_LOG_WARN, name, "%s hook timed out after %llu ms; deferring",
                sp__stage_name(txn->stage), (unsigned long long)e->timeout_ms);
    tok_cancel(pl, e);
    force_text(txn, "plugin %s timed out", name);
    end_suspension(txn, SP_DEFER);
}

sp_token_t sp__txn_suspend(sp_txn_t *txn, uint32_t timeout_ms, sp_cancel_fn cancel, void *arg)
{
    sp_pipeline_t *pl;
    tok_entry_t *e;
    uint64_t to = timeout_ms;

    /* One suspension per hook call, and only while the hook runs. */
    if (txn == NULL || !txn->in_hook || txn->tok != NULL || txn->sync_resumed) {
        return 0;
    }
    pl = txn->pl;
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return 0;
    }
    if (to == 0) {
        to = txn->cur != NULL && txn->cur->timeout_ms > 0 ? txn->cur->timeout_ms
                                                          : DEFAULT_TIMEOUT_MS;
    }
    e->tok = ++g_next_tok;
    e->txn = txn;
    e->cancel = cancel;
    e->arg = arg;
    e->timeout_ms = to;
    uv_timer_init(pl->loop, &e->timer);
    e->timer.data = e;
    uv_timer_start(&e->timer, on_timeout, to, 0);
    tok_insert(pl, e);
    txn->tok = e;
    pl->stats.suspended++;
    pl->stats.verdicts[txn->stage][SP_PENDING]++;
    return e->tok;
}

int sp__pipeline_resume(sp_token_t tok, sp_verdict_t v)
{
    sp_pipeline_t *pl = g_pl;
    tok_entry_t *e = pl != NULL ? tok_find(pl, tok) : NULL;
    sp_txn_t *txn;

    if (e == NULL) {
        if (pl != NULL) {
            pl->stats.dead_resumes++;
        }
        sp__log(SP_LOG_WARN, "resume of a dead token %llu (already resumed, timed out or "
                             "cancelled); ignored", (unsigned long long)tok);
        return SP_ECANCELED;
    }
    txn = e->txn;
    tok_kill(pl, e);
    if ((unsigned)v >= SP_PENDING) {
        v = bad_verdict(txn, (int)v, "resumed with an invalid verdict");
    }
    end_suspension(txn, v);
    return 0;
}

/* Cancel a live suspension and end its run with DEFER `why`. */
static void cancel_entry(sp_pipeline_t *pl, tok_entry_t *e, const char *why)
{
    sp_txn_t *txn = e->txn;
    tok_cancel(pl, e);
    force_text(txn, "%s", why);
    end_suspension(txn, SP_DEFER);
}

void sp__pipeline_cancel_all(sp_pipeline_t *pl)
{
    sp_token_t limit = g_next_tok;
    if (pl == NULL) {
        return;
    }
    /* New tokens get larger ids and go to the end of the list, so the ones
     * made by done callbacks during this loop stop it. */
    while (pl->oldest != NULL && pl->oldest->tok <= limit) {
        sp__log_src(SP_LOG_INFO, plugin_name(pl->oldest->txn->cur),
                    "cancelling suspended %s hook: shutting down",
                    sp__stage_name(pl->oldest->txn->stage));
        cancel_entry(pl, pl->oldest, "shutting down");
    }
}

int sp__txn_cancel(sp_txn_t *txn, const char *why)
{
    if (txn == NULL || txn->tok == NULL) {
        return SP_ESTATE;
    }
    cancel_entry(txn->pl, txn->tok, why != NULL ? why : "cancelled");
    return 0;
}

static void on_async(uv_async_t *a)
{
    sp_pipeline_t *pl = a->data;
    xresume_t *q;

    pthread_mutex_lock(&g_mu);
    q = pl->xhead;
    pl->xhead = pl->xtail = NULL;
    pthread_mutex_unlock(&g_mu);
    /* uv_async_send coalesces: drain everything queued so far. */
    while (q != NULL) {
        xresume_t *n = q->next;
        (void)sp__pipeline_resume(q->tok, q->v);
        free(q);
        q = n;
    }
}

int sp__pipeline_resume_from_thread(sp_token_t tok, sp_verdict_t v)
{
    xresume_t *x = malloc(sizeof(*x));
    if (x == NULL) {
        return SP_ENOMEM;
    }
    x->tok = tok;
    x->v = v;
    x->next = NULL;
    pthread_mutex_lock(&g_mu);
    if (g_pl == NULL) {
        pthread_mutex_unlock(&g_mu);
        free(x);
        return SP_ESHUTDOWN;
    }
    if (g_pl->xtail != NULL) {
        g_pl->xtail->next = x;
    } else {
        g_pl->xhead = x;
    }
    g_pl->xtail = x;
    uv_async_send(&g_pl->async);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Pipeline */

int sp__pipeline_new(sp_pipeline_t **out, uv_loop_t *loop)
{
    sp_pipeline_t *pl;
    int rc;
    if (out == NULL || loop == NULL) {
        return SP_EINVAL;
    }
    if (g_pl != NULL) {
        return SP_EBUSY;
    }
    pl = calloc(1, sizeof(*pl));
    if (pl == NULL) {
        return SP_ENOMEM;
    }
    pl->nbuckets = TOKEN_BUCKETS_MIN;
    pl->buckets = calloc(pl->nbuckets, sizeof(*pl->buckets));
    if (pl->buckets == NULL) {
        free(pl);
        return SP_ENOMEM;
    }
    pl->loop = loop;
    rc = uv_async_init(loop, &pl->async, on_async);
    if (rc < 0) {
        free(pl->buckets);
        free(pl);
        return rc; /* libuv errors are -errno on Unix */
    }
    pl->async.data = pl;
    /* The async handle must not keep uv_run(UV_RUN_DEFAULT) alive. */
    uv_unref((uv_handle_t *)&pl->async);
    pthread_mutex_lock(&g_mu);
    g_pl = pl;
    pthread_mutex_unlock(&g_mu);
    *out = pl;
    return 0;
}

static void pipeline_closed(uv_handle_t *h)
{
    free(h->data);
}

void sp__pipeline_free(sp_pipeline_t *pl)
{
    xresume_t *q;
    if (pl == NULL) {
        return;
    }
    if (pl->ntok > 0) {
        sp__log(SP_LOG_ERROR, "pipeline freed with %zu suspended transactions; cancelling",
                pl->ntok);
        /* done callbacks may suspend again; after a few rounds, drop the
         * rest silently rather than leave timers pointing at freed memory */
        for (int round = 0; round < 4 && pl->ntok > 0; round++) {
            sp__pipeline_cancel_all(pl);
        }
        while (pl->oldest != NULL) {
            tok_kill(pl, pl->oldest);
        }
    }
    pthread_mutex_lock(&g_mu);
    if (g_pl == pl) {
        g_pl = NULL;
    }
    q = pl->xhead;
    pl->xhead = pl->xtail = NULL;
    pthread_mutex_unlock(&g_mu);
    while (q != NULL) {
        xresume_t *n = q->next;
        free(q);
        q = n;
    }
    for (int s = 0; s < SP_STAGE__COUNT; s++) {
        free(pl->hooks[s]);
    }
    free(pl->ev);
    free(pl->buckets);
    pl->buckets = NULL;
    uv_close((uv_handle_t *)&pl->async, pipeline_closed);
}

int sp__pipeline_add_hook(sp_pipeline_t *pl, sp_stage_t stage, sp_plugin_t *p, sp_hook_fn fn,
                          int priority)
{
    hook_t h;
    hook_t *a;
    size_t i;
    if (pl == NULL || fn == NULL || (unsigned)stage >= SP_STAGE__COUNT || priority < -100 ||
        priority > 100) {
        return SP_EINVAL;
    }
    if (pl->nhooks[stage] == pl->caphooks[stage]) {
        size_t cap = pl->caphooks[stage] ? pl->caphooks[stage] * 2 : 8;
        a = realloc(pl->hooks[stage], cap * sizeof(*a));
        if (a == NULL) {
            return SP_ENOMEM;
        }
        pl->hooks[stage] = a;
        pl->caphooks[stage] = cap;
    }
    h.p = p;
    h.fn = fn;
    h.prio = priority + (p != NULL ? p->priority : 0);
    h.order = p != NULL ? p->order : 0;
    h.seq = pl->seq++;
    /* Sorted insert after every hook that sorts before or equal. */
    a = pl->hooks[stage];
    i = pl->nhooks[stage];
    while (i > 0 && (a[i - 1].prio > h.prio ||
                     (a[i - 1].prio == h.prio && a[i - 1].order > h.order))) {
        a[i] = a[i - 1];
        i--;
    }
    a[i] = h;
    pl->nhooks[stage]++;
    return 0;
}

int sp__pipeline_add_event(sp_pipeline_t *pl, sp_plugin_t *p, sp_event_fn fn)
{
    if (pl == NULL || fn == NULL) {
        return SP_EINVAL;
    }
    if (pl->nev == pl->capev) {
        size_t cap = pl->capev ? pl->capev * 2 : 8;
        ev_hook_t *a = realloc(pl->ev, cap * sizeof(*a));
        if (a == NULL) {
            return SP_ENOMEM;
        }
        pl->ev = a;
        pl->capev = cap;
    }
    pl->ev[pl->nev].p = p;
    pl->ev[pl->nev].fn = fn;
    pl->nev++;
    return 0;
}

void sp__pipeline_remove_plugin(sp_pipeline_t *pl, sp_plugin_t *p)
{
    size_t j;
    if (pl == NULL) {
        return;
    }
    for (int s = 0; s < SP_STAGE__COUNT; s++) {
        j = 0;
        for (size_t i = 0; i < pl->nhooks[s]; i++) {
            if (pl->hooks[s][i].p != p) {
                pl->hooks[s][j++] = pl->hooks[s][i];
            }
        }
        pl->nhooks[s] = j;
    }
    j = 0;
    for (size_t i = 0; i < pl->nev; i++) {
        if (pl->ev[i].p != p) {
            pl->ev[j++] = pl->ev[i];
        }
    }
    pl->nev = j;
}

size_t sp__pipeline_nhooks(const sp_pipeline_t *pl, sp_stage_t stage)
{
    if (pl == NULL || (unsigned)stage >= SP_STAGE__COUNT) {
        return 0;
    }
    return pl->nhooks[stage];
}

size_t sp__pipeline_nevents(const sp_pipeline_t *pl)
{
    return pl != NULL ? pl->nev : 0;
}

void sp__pipeline_emit(sp_pipeline_t *pl, const sp_event_t *ev)
{
    if (pl == NULL || ev == NULL) {
        return;
    }
    for (size_t i = 0; i < pl->nev; i++) {
        pl->ev[i].fn(ev, pl->ev[i].p != NULL ? pl->ev[i].p->ctx : NULL);
    }
    /* The change was committed with any webhook calls it queued. */
    sp__webhooks_kick();
    sp__alerts_event(ev);
}

void sp__pipeline_stats(const sp_pipeline_t *pl, sp_pipeline_stats_t *out)
{
    if (pl == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = pl->stats;
}

/* ---------------------------------------------------------------------- */
/* Transactions */

sp_txn_t *sp__txn_new(sp_pipeline_t *pl, sp_msg_t *msg)
{
    sp_txn_t *txn;
    if (pl == NULL) {
        return NULL;
    }
    txn = calloc(1, sizeof(*txn));
    if (txn == NULL) {
        return NULL;
    }
    txn->pl = pl;
    txn->msg = msg;
    txn->status = -1;
    return txn;
}

sp_msg_t *sp__txn_msg(sp_txn_t *txn)
{
    return txn != NULL ? txn->msg : NULL;
}

sp_msg_t *sp__txn_take_msg(sp_txn_t *txn)
{
    sp_msg_t *m;
    if (txn == NULL) {
        return NULL;
    }
    m = txn->msg;
    txn->msg = NULL;
    return m;
}

void sp__txn_free(sp_txn_t *txn)
{
    txn_slot_t *slots;
    size_t n;
    if (txn == NULL) {
        return;
    }
    if (txn->running) {
        /* A leak is better than freeing memory a hook or token still uses. */
        sp__log(SP_LOG_ERROR, "sp__txn_free on a running transaction; leaked");
        assert(!txn->running);
        return;
    }
    /* Detach first: a free function may look at the txn. */
    slots = txn->slots;
    n = txn->nslots;
    txn->slots = NULL;
    txn->nslots = txn->capslots = 0;
    for (size_t i = 0; i < n; i++) {
        if (slots[i].free_fn != NULL && slots[i].data != NULL) {
            slots[i].free_fn(slots[i].data);
        }
    }
    free(slots);
    if (txn->msg != NULL) {
        sp__msg_free(txn->msg);
    }
    free(txn);
}

void sp__txn_set_udata(sp_txn_t *txn, void *udata)
{
    if (txn != NULL) {
        txn->udata = udata;
    }
}

void *sp__txn_udata(const sp_txn_t *txn)
{
    return txn != NULL ? txn->udata : NULL;
}

sp_stage_t sp__txn_stage(const sp_txn_t *txn)
{
    if (txn == NULL) {
        return SP_STAGE_ACCEPT;
    }
    return txn->stage > txn->last ? txn->last : txn->stage;
}

int sp__txn_set_reply(sp_txn_t *txn, int code, const char *text)
{
    size_t len, i;
    if (txn == NULL || code < 0 || code > 999) {
        return SP_EINVAL;
    }
    if (!txn->running) {
        return SP_ESTATE;
    }
    txn->code = code;
    if (text == NULL) {
        txn->has_text = false;
        return 0;
    }
    len = strlen(text);
    if (len >= sizeof(txn->text)) {
        /* Cut before a UTF-8 continuation byte so the text stays valid. */
        len = sizeof(txn->text) - 1;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80) {
            len--;
        }
    }
    for (i = 0; i < len; i++) {
        txn->text[i] = (text[i] == '\r' || text[i] == '\n') ? ' ' : text[i];
    }
    txn->text[len] = '\0';
    txn->has_text = true;
    return 0;
}

int sp__txn_set_status(sp_txn_t *txn, sp_status_t st)
{
    if (txn == NULL || (unsigned)st >= SP_ST__COUNT) {
        return SP_EINVAL;
    }
    if (!txn->running) {
        return SP_ESTATE;
    }
    txn->status = (int)st;
    txn->has_status = true;
    return 0;
}

int sp__txn_set_retry_in(sp_txn_t *txn, uint64_t ms)
{
    if (txn == NULL) {
        return SP_EINVAL;
    }
    if (!txn->running) {
        return SP_ESTATE;
    }
    txn->retry_in = ms;
    return 0;
}

static txn_slot_t *slot_find(sp_txn_t *txn, const sp_plugin_t *p)
{
    for (size_t i = 0; i < txn->nslots; i++) {
        if (txn->slots[i].p == p) {
            return &txn->slots[i];
        }
    }
    return NULL;
}

int sp__txn_set_data(sp_txn_t *txn, sp_plugin_t *p, void *data, void (*free_fn)(void *))
{
    txn_slot_t *s;
    if (txn == NULL) {
        return SP_EINVAL;
    }
    s = slot_find(txn, p);
    if (s != NULL) {
        txn_slot_t old = *s;
        if (data == NULL) {
            *s = txn->slots[--txn->nslots];
        } else {
            s->data = data;
            s->free_fn = free_fn;
        }
        /* Setting the same pointer again only changes its free function. */
        if (old.data != NULL && old.data != data && old.free_fn != NULL) {
            old.free_fn(old.data);
        }
        return 0;
    }
    if (data == NULL) {
        return 0;
    }
    if (txn->nslots == txn->capslots) {
        size_t cap = txn->capslots ? txn->capslots * 2 : 4;
        txn_slot_t *a = realloc(txn->slots, cap * sizeof(*a));
        if (a == NULL) {
            return SP_ENOMEM;
        }
        txn->slots = a;
        txn->capslots = cap;
    }
    txn->slots[txn->nslots].p = p;
    txn->slots[txn->nslots].data = data;
    txn->slots[txn->nslots].free_fn = free_fn;
    txn->nslots++;
    return 0;
}

void *sp__txn_get_data(sp_txn_t *txn, sp_plugin_t *p)
{
    txn_slot_t *s;
    if (txn == NULL) {
        return NULL;
    }
    s = slot_find(txn, p);
    return s != NULL ? s->data : NULL;
}
