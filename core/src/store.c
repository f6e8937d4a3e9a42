/* SPDX-License-Identifier: Apache-2.0 */
/* The LMDB store: one shared environment per directory, a group-commit writer
 * thread, read snapshots, and hot backups. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "sp_core/log.h"
#include "sp_core/store.h"

#define DEFAULT_MAP_SIZE (1ull << 30)
#define DEFAULT_MAX_BATCH 1024u
#define MAX_DBS 64 /* named databases: room for later subsystems */
#define MAX_READERS 256
/* How long a map resize waits for this process's readers to finish. */
#define RESIZE_WAIT_NS (2ull * 1000 * 1000 * 1000)
/* Reset read transactions kept for mdb_txn_renew (saves a reader-table lock). */
#define READ_POOL_MAX 32
#define KEY_MAX 511 /* LMDB's default maximum key size */

static const char *const db_names[SP_DB__COUNT] = {
    [SP_DB_META] = "meta",   [SP_DB_MESSAGES] = "messages", [SP_DB_QUEUE] = "queue",
    [SP_DB_EVENTS] = "events", [SP_DB_KV] = "kv",           [SP_DB_COUNTERS] = "counters",
    [SP_DB_TEAM_MSGS] = "team_msgs",
    [SP_DB_TEAMS] = "teams", [SP_DB_TEAM_NAMES] = "team_names", [SP_DB_API_KEYS] = "api_keys",
    [SP_DB_KEY_CLIENTS] = "key_clients", [SP_DB_DOMAINS] = "domains",
    [SP_DB_DOMAIN_NAMES] = "domain_names", [SP_DB_TEMPLATES] = "templates",
    [SP_DB_PROVIDER_IDS] = "provider_ids", [SP_DB_SUPPRESSIONS] = "suppressions",
    [SP_DB_WEBHOOKS] = "webhooks", [SP_DB_WEBHOOK_CALLS] = "webhook_calls",
    [SP_DB_WEBHOOK_QUEUE] = "webhook_queue", [SP_DB_DAILY] = "daily",
    [SP_DB_CUMULATED] = "cumulated",
};

/* LMDB forbids opening one environment twice in a process: closing the second
 * handle drops the process's fcntl locks on lock.mdb, after which another
 * process could wrongly reset the reader table. So environments are shared
 * through a registry keyed by the directory's device and inode, and a
 * read-only store or a backup reuses the environment a writer already has. */
typedef struct env env_t;

struct sp_rtxn {
    env_t *e;
    MDB_txn *txn;
    sp_rtxn_t *next; /* read pool link */
};

struct env {
    env_t *next;
    dev_t dev;
    ino_t ino;
    unsigned refs;
    bool rdonly;
    MDB_env *env;
    MDB_dbi dbi[SP_DB__COUNT];
    size_t psize;
    /* The reader gate: mdb_env_set_mapsize() needs every transaction of this
     * process to be finished, and LMDB does not check it. Readers enter the
     * gate; a resize closes it and waits for them to leave. */
    uv_mutex_t mu;
    uv_cond_t cv;
    unsigned readers;
    bool resizing;
    sp_rtxn_t *pool;
    unsigned npool;
};

static pthread_mutex_t envs_mu = PTHREAD_MUTEX_INITIALIZER;
static env_t *envs;
static pthread_once_t envs_once = PTHREAD_ONCE_INIT;

typedef struct req {
    struct req *next;
    sp_store_apply_fn apply;
    sp_store_done_fn done;
    void *arg;
    int status;
} req_t;

struct sp_wtxn {
    MDB_txn *txn;
    env_t *e;
    int err;   /* sticky: first LMDB failure of this request (child txn unusable) */
    int fatal; /* sticky: a failure that fails the whole batch (map full) */
};

struct sp_store {
    env_t *e;
    uv_loop_t *loop;
    uv_async_t async;
    bool read_only;
    bool writer_started;
    uint32_t max_batch;
    uint64_t map_max;
    uv_thread_t thr;
    uv_mutex_t mu; /* queue, completions, stopping */
    uv_cond_t cv;
    req_t *q_head, *q_tail;
    req_t *d_head, *d_tail;
    bool stopping;
    atomic_size_t pending;
    _Atomic uint64_t commits, requests, failed_commits, last_batch, map_size, map_used;
    _Atomic uint64_t hist[8];
};

/* The one place where LMDB and system errors become sendpipe codes. The
 * MDB_READERS_FULL retry lives in the transaction-begin helpers below; if it
 * is still full after mdb_reader_check() the caller gets SP_EBUSY. */
static int mdb_err(int rc, const char *what)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return SP_ENOTFOUND;
    case MDB_MAP_FULL:
    case ENOSPC:
    case EDQUOT:
        return SP_ESTOREFULL;
    case MDB_KEYEXIST:
        return SP_EEXIST;
    case MDB_BAD_VALSIZE:
        return SP_EINVAL;
    case MDB_TXN_FULL:
        return SP_ETOOBIG;
    case MDB_READERS_FULL:
        return SP_EBUSY;
    case ENOMEM:
        return SP_ENOMEM;
    default:
        SP_LOGE("store: %s: %s (%d)", what, mdb_strerror(rc), rc);
        return SP_ESTORE;
    }
}

static bool db_ok(sp_db_t db)
{
    return (int)db >= 0 && db < SP_DB__COUNT;
}

/* ------------------------------------------------------------------------ */
/* Environment registry */

static void envs_prepare(void)
{
    pthread_mutex_lock(&envs_mu);
}

static void envs_parent(void)
{
    pthread_mutex_unlock(&envs_mu);
}

/* An environment must never be used across fork(): the child forgets them
 * (their memory stays allocated, like any mapping inherited from the parent). */
static void envs_child(void)
{
    envs = NULL;
    pthread_mutex_unlock(&envs_mu);
}

static void envs_init(void)
{
    pthread_atfork(envs_prepare, envs_parent, envs_child);
}

static void gate_enter(env_t *e)
{
    uv_mutex_lock(&e->mu);
    while (e->resizing) {
        uv_cond_wait(&e->cv, &e->mu);
    }
    e->readers++;
    uv_mutex_unlock(&e->mu);
}

static void gate_leave(env_t *e)
{
    uv_mutex_lock(&e->mu);
    if (--e->readers == 0 && e->resizing) {
        uv_cond_broadcast(&e->cv);
    }
    uv_mutex_unlock(&e->mu);
}

/* Change the map size (0: adopt the size another process set) once no
 * transaction of this process is open. Only the writer thread (between
 * batches) or a reader outside any transaction calls this. */
static int gate_resize(env_t *e, size_t size)
{
    int rc = 0;

    uv_mutex_lock(&e->mu);
    while (e->resizing) {
        uv_cond_wait(&e->cv, &e->mu);
    }
    e->resizing = true;
    while (e->readers > 0) {
        if (uv_cond_timedwait(&e->cv, &e->mu, RESIZE_WAIT_NS) != 0) {
            rc = SP_EBUSY;
            break;
        }
    }
    if (rc == 0) {
        rc = mdb_err(mdb_env_set_mapsize(e->env, size), "resize map");
    }
    e->resizing = false;
    uv_cond_broadcast(&e->cv);
    uv_mutex_unlock(&e->mu);
    return rc;
}

static int schema_check(MDB_txn *txn, MDB_dbi meta, bool create)
{
    MDB_val k = {.mv_size = 6, .mv_data = "schema"};
    MDB_val v;
    uint8_t buf[8];
    int rc = mdb_get(txn, meta, &k, &v);

    if (rc == MDB_NOTFOUND && create) {
        sp__be32_put(buf, SP_STORE_SCHEMA_VERSION);
        v.mv_size = 4;
        v.mv_data = buf;
        if ((rc = mdb_put(txn, meta, &k, &v, 0)) != 0) {
            return mdb_err(rc, "write schema version");
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        sp__be64_put(buf, (uint64_t)((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000));
        k.mv_size = 7;
        k.mv_data = "created";
        v.mv_size = 8;
        rc = mdb_put(txn, meta, &k, &v, 0);
        return mdb_err(rc, "write creation time");
    }
    if (rc == MDB_NOTFOUND) {
        SP_LOGE("store: no schema version: not a sendpipe store");
        return SP_ECORRUPT;
    }
    if (rc != 0) {
        return mdb_err(rc, "read schema version");
    }
    if (v.mv_size != 4) {
        SP_LOGE("store: malformed schema version record");
        return SP_ECORRUPT;
    }
    uint32_t ver = sp__be32_get(v.mv_data);
    if (ver == 0 || ver > SP_STORE_SCHEMA_VERSION) {
        SP_LOGE("store: schema version %u is not supported (this build knows %u)", ver,
                SP_STORE_SCHEMA_VERSION);
        return SP_ECORRUPT;
    }
    return 0;
}

static int env_setup(env_t *e, const char *dir, bool rdonly, uint64_t map_size, bool sync)
{
    unsigned flags = MDB_NOTLS | (rdonly ? MDB_RDONLY : 0) | (sync ? 0 : MDB_NOSYNC);
    MDB_txn *txn = NULL;
    MDB_stat ms;
    int rc;

    if ((rc = mdb_env_create(&e->env)) != 0) {
        return mdb_err(rc, "create environment");
    }
    mdb_env_set_maxdbs(e->env, MAX_DBS);
    mdb_env_set_maxreaders(e->env, MAX_READERS);
    /* A reader adopts the size recorded in the file; only the writer sets it. */
    if (!rdonly && (rc = mdb_env_set_mapsize(e->env, (size_t)map_size)) != 0) {
        return mdb_err(rc, "set map size");
    }
    rc = mdb_env_open(e->env, dir, flags, 0600);
    if (rc == ENOENT && rdonly) {
        SP_LOGE("store: no store in %s", dir);
        return SP_ENOTFOUND;
    }
    if (rc != 0) {
        SP_LOGE("store: cannot open %s: %s", dir, mdb_strerror(rc));
        return mdb_err(rc, "open environment");
    }
    mdb_env_stat(e->env, &ms);
    e->psize = ms.ms_psize;
    if ((rc = mdb_txn_begin(e->env, NULL, rdonly ? MDB_RDONLY : 0, &txn)) != 0) {
        return mdb_err(rc, "begin startup transaction");
    }
    for (int i = 0; i < SP_DB__COUNT; i++) {
        rc = mdb_dbi_open(txn, db_names[i], rdonly ? 0 : MDB_CREATE, &e->dbi[i]);
        if (rc == MDB_NOTFOUND) {
            SP_LOGE("store: %s has no '%s' database: not a sendpipe store", dir, db_names[i]);
            mdb_txn_abort(txn);
            return SP_ECORRUPT;
        }
        if (rc != 0) {
            mdb_txn_abort(txn);
            return mdb_err(rc, "open database");
        }
    }
    if ((rc = schema_check(txn, e->dbi[SP_DB_META], !rdonly)) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    /* Commit even when read-only: it keeps the dbi handles for later txns. */
    if ((rc = mdb_txn_commit(txn)) != 0) {
        return mdb_err(rc, "commit startup transaction");
    }
    return 0;
}

static void env_free(env_t *e)
{
    while (e->pool) {
        sp_rtxn_t *r = e->pool;
        e->pool = r->next;
        mdb_txn_abort(r->txn);
        free(r);
    }
    if (e->env) {
        mdb_env_close(e->env);
    }
    uv_cond_destroy(&e->cv);
    uv_mutex_destroy(&e->mu);
    free(e);
}

/* Find or open the environment of `dir`. A writer needs it to itself (in this
 * process); read-only users share whatever is open. */
static int env_acquire(const char *dir, bool rdonly, uint64_t map_size, bool sync, env_t **out)
{
    struct stat sb;
    env_t *e;
    int rc;

    pthread_once(&envs_once, envs_init);
    if (stat(dir, &sb) != 0) {
        rc = errno;
        if (rc == ENOENT) {
            SP_LOGE("store: no store in %s", dir);
            return SP_ENOTFOUND;
        }
        SP_LOGE("store: %s: %s", dir, strerror(rc));
        return -rc;
    }
    if (!S_ISDIR(sb.st_mode)) {
        SP_LOGE("store: %s is not a directory", dir);
        return -ENOTDIR;
    }
    pthread_mutex_lock(&envs_mu);
    for (e = envs; e; e = e->next) {
        if (e->dev == sb.st_dev && e->ino == sb.st_ino) {
            break;
        }
    }
    if (e) {
        if (!rdonly) {
            SP_LOGE("store: %s is already open in this process", dir);
            rc = SP_EBUSY;
        } else {
            e->refs++;
            *out = e;
            rc = 0;
        }
        pthread_mutex_unlock(&envs_mu);
        return rc;
    }
    if (!(e = calloc(1, sizeof(*e)))) {
        pthread_mutex_unlock(&envs_mu);
        return SP_ENOMEM;
    }
    uv_mutex_init(&e->mu);
    uv_cond_init(&e->cv);
    e->dev = sb.st_dev;
    e->ino = sb.st_ino;
    e->rdonly = rdonly;
    e->refs = 1;
    if ((rc = env_setup(e, dir, rdonly, map_size, sync)) != 0) {
        pthread_mutex_unlock(&envs_mu);
        env_free(e);
        return rc;
    }
    e->next = envs;
    envs = e;
    pthread_mutex_unlock(&envs_mu);
    *out = e;
    return 0;
}

static void env_release(env_t *e)
{
    env_t **pp;

    pthread_mutex_lock(&envs_mu);
    if (--e->refs > 0) {
        pthread_mutex_unlock(&envs_mu);
        return;
    }
    for (pp = &envs; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    }
    pthread_mutex_unlock(&envs_mu);
    env_free(e);
}

/* ------------------------------------------------------------------------ */
/* Read snapshots */

/* Begin a read transaction inside the gate. Handles the two retryable
 * conditions once each: a reader table full of dead processes' slots, and a
 * map grown by another process. */
static int rtxn_begin(env_t *e, sp_rtxn_t **out)
{
    sp_rtxn_t *r = NULL;
    bool checked = false, resized = false;
    int rc;

    for (;;) {
        gate_enter(e);
        if (!r) {
            uv_mutex_lock(&e->mu);
            if (e->pool) {
                r = e->pool;
                e->pool = r->next;
                e->npool--;
            }
            uv_mutex_unlock(&e->mu);
        }
        if (!r && !(r = calloc(1, sizeof(*r)))) {
            gate_leave(e);
            return SP_ENOMEM;
        }
        r->e = e;
        if (r->txn) {
            rc = mdb_txn_renew(r->txn);
        } else if ((rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &r->txn)) != 0) {
            r->txn = NULL;
        }
        if (rc == 0) {
            *out = r;
            return 0;
        }
        gate_leave(e);
        if (rc == MDB_READERS_FULL && !checked) {
            int dead = 0;
            checked = true;
            mdb_reader_check(e->env, &dead);
            SP_LOGW("store: reader table full; cleared %d stale readers", dead);
            continue;
        }
        if (rc == MDB_MAP_RESIZED && !resized) {
            resized = true;
            if (r->txn) {
                mdb_txn_abort(r->txn);
                r->txn = NULL;
            }
            free(r);
            r = NULL;
            if (gate_resize(e, 0) == 0) {
                continue;
            }
            return SP_EBUSY;
        }
        break;
    }
    if (r->txn) {
        mdb_txn_abort(r->txn);
    }
    free(r);
    return mdb_err(rc, "begin read transaction");
}

int sp__store_read_begin(sp_store_t *st, sp_rtxn_t **out)
{
    if (!st || !out) {
        return SP_EINVAL;
    }
    return rtxn_begin(st->e, out);
}

void sp__store_read_end(sp_rtxn_t *r)
{
    env_t *e;

    if (!r) {
        return;
    }
    e = r->e;
    mdb_txn_reset(r->txn);
    uv_mutex_lock(&e->mu);
    if (e->npool < READ_POOL_MAX) {
        r->next = e->pool;
        e->pool = r;
        e->npool++;
        r = NULL;
    }
    uv_mutex_unlock(&e->mu);
    if (r) {
        mdb_txn_abort(r->txn);
        free(r);
    }
    gate_leave(e);
}

static int key_check(const void *k, size_t kl)
{
    return (!k || kl == 0 || kl > KEY_MAX) ? SP_EINVAL : 0;
}

int sp__rtxn_get(sp_rtxn_t *r, sp_db_t db, const void *k, size_t kl, const void **v, size_t *vl)
{
    MDB_val key = {.mv_size = kl, .mv_data = (void *)k}, val;
    int rc;

    if (!r || !db_ok(db) || key_check(k, kl) != 0) {
        return SP_EINVAL;
    }
    rc = mdb_get(r->txn, r->e->dbi[db], &key, &val);
    if (rc != 0) {
        return mdb_err(rc, "get");
    }
    if (v) {
        *v = val.mv_data;
    }
    if (vl) {
        *vl = val.mv_size;
    }
    return 0;
}

/* LMDB's default key order: memcmp over the common length, then shorter first. */
static int keycmp(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl;
}

/* Forward scan on any transaction (read snapshot or write). */
static int scan_fwd(MDB_txn *txn, MDB_dbi dbi, const void *from, size_t fl, const void *prefix,
                    size_t pl, sp_store_each_fn each, void *arg)
{
    MDB_cursor *c;
    MDB_val k, v;
    const void *start = NULL;
    size_t sl = 0;
    int rc, ret = 0;

    if (from && fl > 0) {
        start = from;
        sl = fl;
    }
    /* Keys below the prefix cannot match: start at the larger bound. */
    if (pl > 0 && (!start || keycmp(prefix, pl, start, sl) > 0)) {
        start = prefix;
        sl = pl;
    }
    if ((rc = mdb_cursor_open(txn, dbi, &c)) != 0) {
        return mdb_err(rc, "open cursor");
    }
    if (start) {
        k.mv_data = (void *)start;
        k.mv_size = sl;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    }
    while (rc == 0) {
        if (pl > 0 && (k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0)) {
            break;
        }
        if ((ret = each(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) != 0) {
            break;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        ret = mdb_err(rc, "scan");
    }
    mdb_cursor_close(c);
    return ret;
}

int sp__rtxn_scan(sp_rtxn_t *r, sp_db_t db, const void *from, size_t fl, const void *prefix,
                  size_t pl, sp_store_each_fn each, void *arg)
{
    if (!r || !db_ok(db) || !each || (pl > 0 && !prefix) || fl > KEY_MAX || pl > KEY_MAX) {
        return SP_EINVAL;
    }
    return scan_fwd(r->txn, r->e->dbi[db], from, fl, prefix, pl, each, arg);
}

int sp__wtxn_scan(sp_wtxn_t *w, sp_db_t db, const void *from, size_t fl, const void *prefix,
                  size_t pl, sp_store_each_fn each, void *arg)
{
    if (!w || !db_ok(db) || !each || (pl > 0 && !prefix) || fl > KEY_MAX || pl > KEY_MAX) {
        return SP_EINVAL;
    }
    if (w->err) {
        return w->err;
    }
    return scan_fwd(w->txn, w->e->dbi[db], from, fl, prefix, pl, each, arg);
}

int sp__rtxn_scan_rev(sp_rtxn_t *r, sp_db_t db, const void *upto, size_t ul, const void *prefix,
                      size_t pl, sp_store_each_fn each, void *arg)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc, ret = 0;

    if (!r || !db_ok(db) || !each || (pl > 0 && !prefix) || ul > KEY_MAX || pl > KEY_MAX ||
        (ul > 0 && !upto)) {
        return SP_EINVAL;
    }
    if ((rc = mdb_cursor_open(r->txn, r->e->dbi[db], &c)) != 0) {
        return mdb_err(rc, "open cursor");
    }
    if (ul > 0) {
        /* First key >= upto; step back unless it is upto itself. */
        k.mv_data = (void *)upto;
        k.mv_size = ul;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) {
            rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
        } else if (rc == 0 && keycmp(k.mv_data, k.mv_size, upto, ul) > 0) {
            rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
        }
    } else {
        rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    }
    while (rc == 0) {
        if (pl > 0 && (k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0)) {
            break;
        }
        if ((ret = each(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) != 0) {
            break;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        ret = mdb_err(rc, "scan");
    }
    mdb_cursor_close(c);
    return ret;
}

int sp__rtxn_count(sp_rtxn_t *r, sp_db_t db, uint64_t *n)
{
    MDB_stat ms;
    int rc;

    if (!r || !db_ok(db) || !n) {
        return SP_EINVAL;
    }
    if ((rc = mdb_stat(r->txn, r->e->dbi[db], &ms)) != 0) {
        return mdb_err(rc, "stat");
    }
    *n = ms.ms_entries;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Inside apply() */

/* Record a failure of this request. After MDB_MAP_FULL LMDB marks the
 * transaction broken, and the batch cannot commit anything meaningful. */
static int wtxn_fail(sp_wtxn_t *w, int rc, const char *what)
{
    int err = mdb_err(rc, what);

    if (rc == MDB_MAP_FULL && !w->fatal) {
        w->fatal = err;
    }
    if (!w->err) {
        w->err = err;
    }
    return err;
}

int sp__wtxn_put(sp_wtxn_t *w, sp_db_t db, const void *k, size_t kl, const void *v, size_t vl)
{
    MDB_val key = {.mv_size = kl, .mv_data = (void *)k};
    MDB_val val = {.mv_size = vl, .mv_data = (void *)v};
    int rc;

    if (!w || !db_ok(db) || key_check(k, kl) != 0 || (!v && vl > 0)) {
        return SP_EINVAL;
    }
    if (w->err) {
        return w->err;
    }
    if (vl == 0) {
        val.mv_data = "";
    }
    if ((rc = mdb_put(w->txn, w->e->dbi[db], &key, &val, 0)) != 0) {
        return wtxn_fail(w, rc, "put");
    }
    return 0;
}

int sp__wtxn_get(sp_wtxn_t *w, sp_db_t db, const void *k, size_t kl, const void **v, size_t *vl)
{
    MDB_val key = {.mv_size = kl, .mv_data = (void *)k}, val;
    int rc;

    if (!w || !db_ok(db) || key_check(k, kl) != 0) {
        return SP_EINVAL;
    }
    if (w->err) {
        return w->err;
    }
    rc = mdb_get(w->txn, w->e->dbi[db], &key, &val);
    if (rc == MDB_NOTFOUND) {
        return SP_ENOTFOUND;
    }
    if (rc != 0) {
        return wtxn_fail(w, rc, "get");
    }
    if (v) {
        *v = val.mv_data;
    }
    if (vl) {
        *vl = val.mv_size;
    }
    return 0;
}

int sp__wtxn_del(sp_wtxn_t *w, sp_db_t db, const void *k, size_t kl)
{
    MDB_val key = {.mv_size = kl, .mv_data = (void *)k};
    int rc;

    if (!w || !db_ok(db) || key_check(k, kl) != 0) {
        return SP_EINVAL;
    }
    if (w->err) {
        return w->err;
    }
    rc = mdb_del(w->txn, w->e->dbi[db], &key, NULL);
    if (rc == MDB_NOTFOUND) {
        return SP_ENOTFOUND;
    }
    if (rc != 0) {
        return wtxn_fail(w, rc, "delete");
    }
    return 0;
}

int sp__wtxn_last(sp_wtxn_t *w, sp_db_t db, const void *prefix, size_t pl, const void **k,
                  size_t *kl)
{
    uint8_t succ[KEY_MAX];
    size_t sl = 0;
    MDB_cursor *c;
    MDB_val key, val;
    int rc;

    if (!w || !db_ok(db) || pl > KEY_MAX || (pl > 0 && !prefix)) {
        return SP_EINVAL;
    }
    if (w->err) {
        return w->err;
    }
    /* The smallest key above every key with this prefix: the prefix with its
     * last non-0xff byte incremented and the rest cut. None if all 0xff. */
    if (pl > 0) {
        memcpy(succ, prefix, pl);
        for (sl = pl; sl > 0 && succ[sl - 1] == 0xff; sl--) {
        }
        if (sl > 0) {
            succ[sl - 1]++;
        }
    }
    if ((rc = mdb_cursor_open(w->txn, w->e->dbi[db], &c)) != 0) {
        return wtxn_fail(w, rc, "open cursor");
    }
    if (sl > 0) {
        key.mv_data = succ;
        key.mv_size = sl;
        rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
        if (rc == 0) {
            rc = mdb_cursor_get(c, &key, &val, MDB_PREV);
        } else if (rc == MDB_NOTFOUND) {
            rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
        }
    } else {
        rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        return SP_ENOTFOUND;
    }
    if (rc != 0) {
        return wtxn_fail(w, rc, "last");
    }
    if (pl > 0 && (key.mv_size < pl || memcmp(key.mv_data, prefix, pl) != 0)) {
        return SP_ENOTFOUND;
    }
    if (k) {
        *k = key.mv_data;
    }
    if (kl) {
        *kl = key.mv_size;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The writer */

static unsigned hist_bucket(size_t n)
{
    static const size_t lim[] = {1, 3, 15, 63, 255, 1023};
    unsigned i;

    for (i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
        if (n <= lim[i]) {
            return i;
        }
    }
    return 6;
}

static void update_map_stats(sp_store_t *st)
{
    MDB_envinfo info;

    if (mdb_env_info(st->e->env, &info) == 0) {
        atomic_store(&st->map_size, (uint64_t)info.me_mapsize);
        atomic_store(&st->map_used, (uint64_t)(info.me_last_pgno + 1) * st->e->psize);
    }
}

/* After MDB_MAP_FULL: double the map, up to map_max. The writer is between
 * batches, so the only transactions that can be open are readers, and the
 * gate waits for them. */
static void grow_map(sp_store_t *st)
{
    MDB_envinfo info;
    uint64_t cur, want;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    mdb_env_info(st->e->env, &info);
    cur = info.me_mapsize;
    if (st->map_max <= cur) {
        SP_LOGE("store: the map is full (%llu bytes) and may not grow: raise the store's "
                "map size; writes fail until space is freed",
                (unsigned long long)cur);
        return;
    }
    want = cur * 2 < st->map_max ? cur * 2 : st->map_max;
    want -= want % page;
    if (want <= cur) {
        return;
    }
    if (gate_resize(st->e, (size_t)want) == 0) {
        SP_LOGW("store: map grown from %llu to %llu bytes (limit %llu)",
                (unsigned long long)cur, (unsigned long long)want,
                (unsigned long long)st->map_max);
    } else {
        SP_LOGE("store: could not grow the map now (readers busy); will retry on next full map");
    }
    update_map_stats(st);
}

static int wtxn_begin(sp_store_t *st, MDB_txn **txn)
{
    int rc = mdb_txn_begin(st->e->env, NULL, 0, txn);

    /* Only if another process wrote to this environment and grew it. */
    if (rc == MDB_MAP_RESIZED && gate_resize(st->e, 0) == 0) {
        rc = mdb_txn_begin(st->e->env, NULL, 0, txn);
    }
    return rc;
}

static void run_batch(sp_store_t *st, req_t *head, size_t n)
{
    MDB_txn *parent = NULL, *child;
    int rc, fail = 0, mdb_fail = 0;
    req_t *r;

    if ((rc = wtxn_begin(st, &parent)) != 0) {
        mdb_fail = rc;
        fail = mdb_err(rc, "begin write transaction");
    }
    for (r = head; r && !fail; r = r->next) {
        sp_wtxn_t w = {.e = st->e};
        int s;

        if ((rc = mdb_txn_begin(st->e->env, parent, 0, &child)) != 0) {
            mdb_fail = rc;
            fail = mdb_err(rc, "begin nested transaction");
            break;
        }
        w.txn = child;
        s = r->apply(&w, r->arg);
        if (w.fatal) {
            mdb_txn_abort(child);
            mdb_fail = MDB_MAP_FULL;
            fail = w.fatal;
            break;
        }
        /* An ignored put failure leaves the child broken: never commit it. */
        if (s >= 0 && w.err) {
            s = w.err;
        }
        if (s < 0) {
            mdb_txn_abort(child);
            r->status = s;
            continue;
        }
        if ((rc = mdb_txn_commit(child)) != 0) {
            mdb_fail = rc;
            fail = mdb_err(rc, "commit nested transaction");
            break;
        }
        r->status = 0;
    }
    if (parent) {
        if (fail) {
            mdb_txn_abort(parent);
        } else if ((rc = mdb_txn_commit(parent)) != 0) {
            /* ENOSPC / EIO at commit: LMDB aborted the txn, the previous
             * meta page still describes a consistent database. */
            mdb_fail = rc;
            fail = mdb_err(rc, "commit");
        }
    }
    if (fail) {
        for (r = head; r; r = r->next) {
            r->status = fail;
        }
        atomic_fetch_add(&st->failed_commits, 1);
        if (fail == SP_ESTOREFULL) {
            SP_LOGE("store: commit of %zu requests failed: %s", n, mdb_strerror(mdb_fail));
        }
        if (mdb_fail == MDB_MAP_FULL) {
            grow_map(st);
        }
    } else {
        atomic_fetch_add(&st->commits, 1);
        atomic_fetch_add(&st->hist[hist_bucket(n)], 1);
        update_map_stats(st);
    }
    atomic_fetch_add(&st->requests, n);
    atomic_store(&st->last_batch, n);
}

static void writer_main(void *arg)
{
    sp_store_t *st = arg;

    pthread_setname_np(pthread_self(), "sp-store");

    for (;;) {
        req_t *head, *tail;
        size_t n = 1;

        uv_mutex_lock(&st->mu);
        while (!st->q_head && !st->stopping) {
            uv_cond_wait(&st->cv, &st->mu);
        }
        if (!st->q_head) {
            uv_mutex_unlock(&st->mu);
            break;
        }
        head = tail = st->q_head;
        while (n < st->max_batch && tail->next) {
            tail = tail->next;
            n++;
        }
        st->q_head = tail->next;
        if (!st->q_head) {
            st->q_tail = NULL;
        }
        tail->next = NULL;
        uv_mutex_unlock(&st->mu);

        run_batch(st, head, n);

        uv_mutex_lock(&st->mu);
        if (st->d_tail) {
            st->d_tail->next = head;
        } else {
            st->d_head = head;
        }
        st->d_tail = tail;
        uv_mutex_unlock(&st->mu);
        /* Coalescing: one callback may see several batches. */
        uv_async_send(&st->async);
    }
}

/* Run the done callbacks of every completed request (loop thread). A done
 * callback may close the store: the list is detached first and the store's
 * memory lives until the async handle's close callback. */
static void drain_completions(sp_store_t *st)
{
    req_t *r, *next;

    uv_mutex_lock(&st->mu);
    r = st->d_head;
    st->d_head = st->d_tail = NULL;
    uv_mutex_unlock(&st->mu);
    for (; r; r = next) {
        next = r->next;
        atomic_fetch_sub(&st->pending, 1);
        if (r->done) {
            r->done(r->arg, r->status);
        }
        free(r);
    }
}

static void on_async(uv_async_t *h)
{
    drain_completions(h->data);
}

static void on_async_closed(uv_handle_t *h)
{
    sp_store_t *st = h->data;

    uv_cond_destroy(&st->cv);
    uv_mutex_destroy(&st->mu);
    free(st);
}

int sp__store_write(sp_store_t *st, sp_store_apply_fn apply, sp_store_done_fn done, void *arg)
{
    req_t *r;
    bool wake;

    if (!st || !apply) {
        return SP_EINVAL;
    }
    if (st->read_only) {
        return SP_ESTATE;
    }
    if (!(r = malloc(sizeof(*r)))) {
        return SP_ENOMEM;
    }
    r->next = NULL;
    r->apply = apply;
    r->done = done;
    r->arg = arg;
    r->status = 0;
    uv_mutex_lock(&st->mu);
    if (st->stopping) {
        uv_mutex_unlock(&st->mu);
        free(r);
        return SP_ESHUTDOWN;
    }
    /* The writer only sleeps on an empty queue. */
    wake = st->q_head == NULL;
    if (st->q_tail) {
        st->q_tail->next = r;
    } else {
        st->q_head = r;
    }
    st->q_tail = r;
    atomic_fetch_add(&st->pending, 1);
    if (wake) {
        uv_cond_signal(&st->cv);
    }
    uv_mutex_unlock(&st->mu);
    return 0;
}

const char *sp__store_dir(const sp_store_t *st)
{
    const char *path = NULL;

    if (!st || !st->e || mdb_env_get_path(st->e->env, &path) != 0) {
        return NULL;
    }
    return path;
}

size_t sp__store_pending(const sp_store_t *st)
{
    /* C11 atomic_load takes a non-const pointer; the object is never const. */
    return st ? atomic_load(&((sp_store_t *)st)->pending) : 0;
}

/* ------------------------------------------------------------------------ */
/* Open and close */

int sp__store_open(sp_store_t **out, const char *dir, const sp_store_opts_t *opts,
                   uv_loop_t *loop)
{
    sp_store_opts_t o = {.sync = true};
    sp_store_t *st;
    int rc;

    if (!out || !dir || !*dir) {
        return SP_EINVAL;
    }
    *out = NULL;
    if (opts) {
        o = *opts;
    }
    if (!o.read_only && !loop) {
        return SP_EINVAL;
    }
    if (o.map_size == 0) {
        o.map_size = DEFAULT_MAP_SIZE;
    }
    if (o.max_batch == 0) {
        o.max_batch = DEFAULT_MAX_BATCH;
    }
    if (!o.read_only && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = errno;
        SP_LOGE("store: cannot create %s: %s", dir, strerror(rc));
        return -rc;
    }
    if (!(st = calloc(1, sizeof(*st)))) {
        return SP_ENOMEM;
    }
    st->read_only = o.read_only;
    st->max_batch = o.max_batch;
    st->map_max = o.map_max;
    st->loop = loop;
    if ((rc = env_acquire(dir, o.read_only, o.map_size, o.sync, &st->e)) != 0) {
        free(st);
        return rc;
    }
    update_map_stats(st);
    if (o.read_only) {
        *out = st;
        return 0;
    }
    if (!o.sync) {
        SP_LOGW("store: sync is off (MDB_NOSYNC): acknowledged writes can be lost on a crash; "
                "use only for tests and benchmarks");
    }
    uv_mutex_init(&st->mu);
    uv_cond_init(&st->cv);
    if ((rc = uv_async_init(loop, &st->async, on_async)) != 0) {
        uv_cond_destroy(&st->cv);
        uv_mutex_destroy(&st->mu);
        env_release(st->e);
        free(st);
        return rc;
    }
    st->async.data = st;
    if ((rc = uv_thread_create(&st->thr, writer_main, st)) != 0) {
        env_release(st->e);
        uv_close((uv_handle_t *)&st->async, on_async_closed);
        return rc;
    }
    st->writer_started = true;
    *out = st;
    return 0;
}

void sp__store_close(sp_store_t *st)
{
    if (!st) {
        return;
    }
    if (st->read_only) {
        env_release(st->e);
        free(st);
        return;
    }
    uv_mutex_lock(&st->mu);
    st->stopping = true;
    uv_cond_signal(&st->cv);
    uv_mutex_unlock(&st->mu);
    /* The writer empties the queue before it sees `stopping`. */
    uv_thread_join(&st->thr);
    drain_completions(st);
    env_release(st->e);
    st->e = NULL;
    uv_close((uv_handle_t *)&st->async, on_async_closed);
}

void sp__store_stats(const sp_store_t *st, sp_store_stats_t *out)
{
    sp_store_t *s = (sp_store_t *)st; /* atomics are read-only here */

    memset(out, 0, sizeof(*out));
    if (!s) {
        return;
    }
    out->commits = atomic_load(&s->commits);
    out->requests = atomic_load(&s->requests);
    out->failed_commits = atomic_load(&s->failed_commits);
    for (int i = 0; i < 8; i++) {
        out->batch_hist[i] = atomic_load(&s->hist[i]);
    }
    out->last_batch = atomic_load(&s->last_batch);
    out->map_size = atomic_load(&s->map_size);
    out->map_used = atomic_load(&s->map_used);
}

/* ------------------------------------------------------------------------ */
/* Backup */

static int dir_empty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int rc = 0;

    if (!d) {
        return -errno;
    }
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            rc = SP_EEXIST;
            break;
        }
    }
    closedir(d);
    return rc;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    int rc = 0;

    if (fd < 0) {
        return -errno;
    }
    if (fsync(fd) != 0) {
        rc = -errno;
    }
    close(fd);
    return rc;
}

int sp__store_backup(const char *dir, const char *dest)
{
    char file[PATH_MAX];
    bool created = false;
    env_t *e = NULL;
    int rc;

    if (!dir || !dest || !*dir || !*dest) {
        return SP_EINVAL;
    }
    if ((size_t)snprintf(file, sizeof(file), "%s/data.mdb", dest) >= sizeof(file)) {
        return SP_EINVAL;
    }
    if (mkdir(dest, 0700) == 0) {
        created = true;
    } else if (errno != EEXIST) {
        rc = -errno;
        SP_LOGE("store: backup: cannot create %s: %s", dest, strerror(-rc));
        return rc;
    } else if ((rc = dir_empty(dest)) != 0) {
        SP_LOGE("store: backup: %s exists and is not an empty directory", dest);
        return rc;
    }
    if ((rc = env_acquire(dir, true, 0, true, &e)) != 0) {
        goto fail;
    }
    /* The copy runs its own read transaction: count it as a reader so a
     * concurrent map resize in this process waits for it. */
    for (int tries = 0; tries < 2; tries++) {
        gate_enter(e);
        rc = mdb_env_copy2(e->env, dest, MDB_CP_COMPACT);
        gate_leave(e);
        if (rc == MDB_READERS_FULL) {
            int dead = 0;
            mdb_reader_check(e->env, &dead);
        } else if (rc == MDB_MAP_RESIZED) {
            gate_resize(e, 0);
        } else {
            break;
        }
        unlink(file);
    }
    env_release(e);
    if (rc != 0) {
        SP_LOGE("store: backup of %s to %s failed: %s", dir, dest, mdb_strerror(rc));
        rc = mdb_err(rc, "backup");
        goto fail;
    }
    /* mdb_env_copy2 does not fsync: make the copy durable before reporting. */
    if ((rc = fsync_path(file, O_RDONLY)) != 0 || (rc = fsync_path(dest, O_RDONLY)) != 0) {
        SP_LOGE("store: backup: fsync %s: %s", dest, strerror(-rc));
        goto fail;
    }
    return 0;

fail:
    unlink(file);
    if (created) {
        rmdir(dest);
    }
    return rc;
}
