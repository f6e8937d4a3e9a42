/* SPDX-License-Identifier: Apache-2.0 */
/* The store: one LMDB environment with named databases, written by one
 * writer thread with group commit, read from any thread. */
#ifndef SP_CORE_STORE_H
#define SP_CORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Named databases. Keys are big-endian so memcmp order is numeric order. */
typedef enum {
    SP_DB_META = 0,  /* "schema" -> u32 version, "created" -> i64 */
    SP_DB_MESSAGES,  /* id(be64) -> msgpack message record */
    SP_DB_QUEUE,     /* due_ms(be64) || id(be64) -> empty */
    SP_DB_EVENTS,    /* id(be64) || seq(be32) -> msgpack event record */
    SP_DB_KV,        /* plugin name || 0x00 || key -> value */
    SP_DB_COUNTERS,  /* team(be64) || day(be32) || metric name -> u64 (be64) */
    SP_DB_TEAM_MSGS, /* team(be64) || id(be64) -> empty: a team's messages in time order */
    SP_DB_TEAMS,        /* team id(be64) -> msgpack team record */
    SP_DB_TEAM_NAMES,   /* lower-case team name -> team id(be64) */
    SP_DB_API_KEYS,     /* key id(be64) -> msgpack API key record */
    SP_DB_KEY_CLIENTS,  /* client id (10 chars) -> key id(be64) */
    SP_DB_DOMAINS,      /* domain id(be64) -> msgpack domain record */
    SP_DB_DOMAIN_NAMES, /* lower-case domain name -> domain id(be64) */
    SP_DB_TEMPLATES,    /* team(be64) || template id string -> msgpack template record */
    SP_DB_PROVIDER_IDS, /* provider message id string -> message id(be64) */
    SP_DB_SUPPRESSIONS, /* team(be64) || lower-case address -> msgpack entry */
    SP_DB_WEBHOOKS,     /* team(be64) || webhook id(be64) -> msgpack webhook record */
    SP_DB_WEBHOOK_CALLS, /* webhook id(be64) || call id(be64) -> msgpack call record */
    SP_DB_WEBHOOK_QUEUE, /* webhook id(be64) || call id(be64) -> empty: calls not finished */
    SP_DB_DAILY,        /* team(be64) || domain(be64) || day(be32) -> SP_AN__COUNT x be64 */
    SP_DB_CUMULATED,    /* team(be64) || domain(be64) -> SP_CUM__COUNT x be64 */
    SP_DB__COUNT
} sp_db_t;

#define SP_STORE_SCHEMA_VERSION 1u

typedef struct sp_store sp_store_t;
typedef struct sp_wtxn sp_wtxn_t; /* write transaction (writer thread only) */
typedef struct sp_rtxn sp_rtxn_t; /* read snapshot (any thread, not shared) */

typedef struct sp_store_opts {
    uint64_t map_size;  /* bytes; 0 = 1 GiB */
    bool sync;          /* false: MDB_NOSYNC (benchmarks/tests only, logged) */
    uint32_t max_batch; /* max write requests per commit; 1 = one fsync each */
    bool read_only;     /* CLI readers: no writer thread, no loop needed */
    uint64_t map_max;   /* on MDB_MAP_FULL the failed batch gets SP_ESTOREFULL and the map
                           doubles up to this many bytes (once this process's readers are
                           done); 0 or <= map_size: no growth, map_size is a hard cap */
} sp_store_opts_t;

/* Open (creating) the environment in `dir`. `loop` receives completions; it
 * may be NULL when read_only. Checks the schema version in META (a newer one
 * is SP_ECORRUPT). A directory is opened once per process: a read-only open
 * (or a backup) shares an environment already open here, a second writer is
 * SP_EBUSY. read_only on a directory without a store is SP_ENOTFOUND. */
int sp__store_open(sp_store_t **out, const char *dir, const sp_store_opts_t *opts,
                   uv_loop_t *loop);
/* Stop accepting writes, let the writer finish every queued request (their
 * done callbacks run on the loop), join the thread, close the environment.
 * Must be called on the loop thread; runs the loop internally is NOT done:
 * callers first wait for sp__store_pending() == 0, then close. */
void sp__store_close(sp_store_t *st);
/* The directory the environment was opened from (as given to open), or NULL.
 * Valid while the store is open. */
const char *sp__store_dir(const sp_store_t *st);
/* Requests submitted but not yet completed on the loop. */
size_t sp__store_pending(const sp_store_t *st);

/* A write request. apply() runs on the writer thread inside a nested
 * transaction of the batch's transaction: if it returns < 0, only its own
 * changes are rolled back and done() gets that status. done() runs on the
 * loop thread after the batch committed durably (status 0 or apply's error),
 * or failed (status SP_ESTOREFULL / SP_ESTORE for every request in it). */
typedef int (*sp_store_apply_fn)(sp_wtxn_t *w, void *arg);
typedef void (*sp_store_done_fn)(void *arg, int status);
/* Queue a write. Any thread. 0, or SP_ESHUTDOWN after close began (then done
 * is never called). */
int sp__store_write(sp_store_t *st, sp_store_apply_fn apply, sp_store_done_fn done, void *arg);

/* Inside apply(): */
int sp__wtxn_put(sp_wtxn_t *w, sp_db_t db, const void *k, size_t kl, const void *v, size_t vl);
/* Get: *v valid until the end of apply(). 0 or SP_ENOTFOUND. */
int sp__wtxn_get(sp_wtxn_t *w, sp_db_t db, const void *k, size_t kl, const void **v, size_t *vl);
int sp__wtxn_del(sp_wtxn_t *w, sp_db_t db, const void *k, size_t kl); /* 0 or SP_ENOTFOUND */
/* Largest key with the given prefix (e.g. last event seq of a message). */
int sp__wtxn_last(sp_wtxn_t *w, sp_db_t db, const void *prefix, size_t pl, const void **k,
                  size_t *kl);

/* Forward scan inside apply(), as sp__rtxn_scan (declared below). Pointers
 * are valid until the next write of this apply(): do not write while
 * scanning. */
typedef int (*sp_store_each_fn)(void *arg, const void *k, size_t kl, const void *v, size_t vl);
int sp__wtxn_scan(sp_wtxn_t *w, sp_db_t db, const void *from, size_t fl, const void *prefix,
                  size_t pl, sp_store_each_fn each, void *arg);

/* Reads. */
int sp__store_read_begin(sp_store_t *st, sp_rtxn_t **out);
void sp__store_read_end(sp_rtxn_t *r);
int sp__rtxn_get(sp_rtxn_t *r, sp_db_t db, const void *k, size_t kl, const void **v, size_t *vl);
/* Visit keys >= from (from may be NULL) while they start with prefix (plen 0:
 * no prefix bound); each returns non-zero to stop. Returns 0, or the first
 * non-zero value each returned, or an error. */
int sp__rtxn_scan(sp_rtxn_t *r, sp_db_t db, const void *from, size_t fl, const void *prefix,
                  size_t pl, sp_store_each_fn each, void *arg);
/* Visit keys <= upto (upto NULL/0: from the last key) in descending order
 * while they start with prefix; as sp__rtxn_scan otherwise. */
int sp__rtxn_scan_rev(sp_rtxn_t *r, sp_db_t db, const void *upto, size_t ul, const void *prefix,
                      size_t pl, sp_store_each_fn each, void *arg);
/* Number of entries of a database. */
int sp__rtxn_count(sp_rtxn_t *r, sp_db_t db, uint64_t *n);

/* Consistent hot copy of the environment into directory dest (must be empty
 * or not exist), compacting. Works while a server is running. */
int sp__store_backup(const char *dir, const char *dest);

/* Counters (read on the loop thread; updated by the writer with atomics). */
typedef struct sp_store_stats {
    uint64_t commits;          /* transactions committed */
    uint64_t requests;         /* write requests completed */
    uint64_t failed_commits;   /* commits that failed (map/disk full, I/O) */
    uint64_t batch_hist[8];    /* batch sizes: 1, 2-3, 4-15, 16-63, 64-255, 256-1023, 1024+, unused */
    uint64_t last_batch;
    uint64_t map_size;
    uint64_t map_used;         /* bytes of the map in use (last_pgno * page) */
} sp_store_stats_t;
void sp__store_stats(const sp_store_t *st, sp_store_stats_t *out);

/* Key codec helpers. */
static inline void sp__be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}
static inline uint64_t sp__be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}
static inline void sp__be32_put(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}
static inline uint32_t sp__be32_get(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Time-ordered message ids: 44 bits of ms since 2020-01-01 UTC, 20 bits of
 * sequence; strictly increasing within a process (loop thread). */
uint64_t sp__id_next(int64_t now_ms);
/* The smallest id that can be handed out at time ms (range bounds). */
uint64_t sp__id_floor(int64_t ms);
/* Seed the generator so new ids are greater than `last` (after restart). */
void sp__id_seed(uint64_t last);
#define SP_ID_STRLEN 13
/* Crockford base32, lower case, fixed width: string order == numeric order. */
void sp__id_str(uint64_t id, char out[SP_ID_STRLEN + 1]);
int sp__id_parse(const char *s, size_t len, uint64_t *out); /* 0 or SP_EINVAL */

#endif
