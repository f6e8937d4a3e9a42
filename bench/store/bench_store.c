/* SPDX-License-Identifier: Apache-2.0 */
/* Store benchmark: durable commits per second of ~1 KB message records with
 * group commit against one fsync per message, at several client counts. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>

#include <uv.h>

#include "sp_core/msg.h"
#include "sp_core/store.h"

#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6
#define MAX_CELLS 8

typedef struct bench bench_t;

/* One closed-loop client: it submits a write, and the next one only when
 * the previous write's done callback ran. */
typedef struct {
    bench_t *b;
    uint64_t id;
} sub_t;

struct bench {
    uv_loop_t loop;
    sp_store_t *st;
    const void *rec;
    size_t reclen;
    bool stopping;
    uint64_t done_in_window;
    size_t in_flight;
    int err;
    uint64_t t0, t1;
};

typedef struct {
    double rate;
    double mean_batch;
    uint64_t commits;
} result_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the core's submit does per message: the record and its queue entry. */
static int apply_rec(sp_wtxn_t *w, void *arg)
{
    sub_t *s = arg;
    uint8_t k[8], q[16];
    int rc;

    sp__be64_put(k, s->id);
    if ((rc = sp__wtxn_put(w, SP_DB_MESSAGES, k, sizeof(k), s->b->rec, s->b->reclen)) != 0) {
        return rc;
    }
    sp__be64_put(q, (uint64_t)now_ms());
    sp__be64_put(q + 8, s->id);
    return sp__wtxn_put(w, SP_DB_QUEUE, q, sizeof(q), NULL, 0);
}

static void on_done(void *arg, int status);

static void submit_one(sub_t *s)
{
    bench_t *b = s->b;
    int rc;

    s->id = sp__id_next(now_ms());
    if ((rc = sp__store_write(b->st, apply_rec, on_done, s)) != 0) {
        b->err = rc;
        b->stopping = true;
        return;
    }
    b->in_flight++;
}

static void on_done(void *arg, int status)
{
    sub_t *s = arg;
    bench_t *b = s->b;

    b->in_flight--;
    if (status != 0 && b->err == 0) {
        b->err = status;
        b->stopping = true;
    }
    if (!b->stopping) {
        b->done_in_window++;
        submit_one(s);
    }
}

static void on_stop(uv_timer_t *t)
{
    bench_t *b = t->data;

    b->stopping = true;
    b->t1 = uv_hrtime();
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A message-like record: addresses, subject, headers, a text body. */
static int make_record(void **buf, size_t *len)
{
    static const char para[] =
        "Hello Bob, this is the monthly account summary. Your plan renews on the first of "
        "next month and nothing needs to be done. ";
    char text[800];
    sp_msg_t *m = sp__msg_new();
    int rc;

    if (!m) {
        return SP_ENOMEM;
    }
    for (size_t i = 0; i < sizeof(text); i++) {
        text[i] = para[i % (sizeof(para) - 1)];
    }
    sp__msg_set(m, "id", "0h4m2v9q8r7s6", 13);
    sp__msg_set_int(m, "team", 42);
    sp__msg_set(m, "from", "Example Billing <billing@example.com>", 37);
    sp__msg_add(m, "to", "bob@example.org", 15);
    sp__msg_add(m, "reply_to", "support@example.com", 19);
    sp__msg_set(m, "subject", "Your monthly account summary", 28);
    sp__msg_add(m, "headers", "X-Campaign: monthly-2025-01", 27);
    sp__msg_set(m, "text", text, sizeof(text));
    sp__msg_set_int(m, "created_at", now_ms());
    sp__msg_set_int(m, "status", SP_ST_QUEUED);
    sp__msg_set_int(m, "attempts", 0);
    rc = sp__msg_encode(m, buf, len);
    sp__msg_free(m);
    return rc;
}

/* One timed round on an open store: every submitter runs closed-loop until
 * the timer fires; then the writes in flight finish (and are not counted). */
static int run_round(bench_t *b, sub_t *subs, unsigned nsub, double seconds,
                     uint64_t *done, uint64_t *ns)
{
    uv_timer_t stop;

    b->stopping = false;
    b->done_in_window = 0;
    b->t1 = 0;
    /* This loop sat idle during the other mode's round: refresh its clock or
     * the timer would be due at once. */
    uv_update_time(&b->loop);
    uv_timer_init(&b->loop, &stop);
    stop.data = b;
    uv_timer_start(&stop, on_stop, (uint64_t)(seconds * 1000), 0);
    b->t0 = uv_hrtime();
    for (unsigned i = 0; i < nsub; i++) {
        subs[i].b = b;
        submit_one(&subs[i]);
    }
    while (!b->stopping || b->in_flight > 0) {
        uv_run(&b->loop, UV_RUN_ONCE);
    }
    if (b->t1 == 0) {
        b->t1 = uv_hrtime();
    }
    uv_close((uv_handle_t *)&stop, NULL);
    uv_run(&b->loop, UV_RUN_NOWAIT);
    if (b->err != 0) {
        fprintf(stderr, "bench_store: a write failed: %d\n", b->err);
        return b->err;
    }
    *done += b->done_in_window;
    *ns += b->t1 - b->t0;
    return 0;
}

/* Both modes at one client count. Each has its own store (and writer); they
 * take turns in short rounds so that drift in the disk's fsync latency (a
 * shared machine) hits both alike. */
static int run_cell(const char *base, unsigned nsub, double seconds, unsigned rounds,
                    const void *rec, size_t reclen, result_t res[2])
{
    static const uint32_t batch[2] = {1, 1024};
    char dir[2][4096];
    bench_t b[2];
    uint64_t done[2] = {0, 0}, ns[2] = {0, 0}, commits0[2], requests0[2];
    sp_store_stats_t ss;
    sub_t *subs;
    int rc = 0;

    if (!(subs = calloc(nsub, sizeof(*subs)))) {
        return SP_ENOMEM;
    }
    for (int m = 0; m < 2; m++) {
        sp_store_opts_t o = {.map_size = 8ull << 30, .sync = true, .max_batch = batch[m]};
        uint64_t wd = 0, wn = 0;

        memset(&b[m], 0, sizeof(b[m]));
        b[m].rec = rec;
        b[m].reclen = reclen;
        snprintf(dir[m], sizeof(dir[m]), "%s/sp_bench_store_XXXXXX", base);
        if (!mkdtemp(dir[m])) {
            fprintf(stderr, "bench_store: mkdtemp under %s: %s\n", base, strerror(errno));
            return -errno;
        }
        uv_loop_init(&b[m].loop);
        if ((rc = sp__store_open(&b[m].st, dir[m], &o, &b[m].loop)) != 0) {
            fprintf(stderr, "bench_store: open store in %s: %d\n", dir[m], rc);
            return rc;
        }
        /* Warm-up, not counted: the first commits also create the file. */
        if ((rc = run_round(&b[m], subs, nsub, 0.2, &wd, &wn)) != 0) {
            return rc;
        }
        sp__store_stats(b[m].st, &ss);
        commits0[m] = ss.commits;
        requests0[m] = ss.requests;
    }
    for (unsigned r = 0; r < rounds && rc == 0; r++) {
        for (int m = 0; m < 2 && rc == 0; m++) {
            rc = run_round(&b[m], subs, nsub, seconds / rounds, &done[m], &ns[m]);
        }
    }
    for (int m = 0; m < 2; m++) {
        uint64_t commits, requests;

        sp__store_stats(b[m].st, &ss);
        commits = ss.commits - commits0[m];
        requests = ss.requests - requests0[m];
        res[m].rate = ns[m] ? (double)done[m] / ((double)ns[m] / 1e9) : 0;
        res[m].commits = commits;
        res[m].mean_batch = commits ? (double)requests / (double)commits : 0;
        sp__store_close(b[m].st);
        uv_run(&b[m].loop, UV_RUN_DEFAULT);
        uv_loop_close(&b[m].loop);
        nftw(dir[m], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    free(subs);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_store [--seconds S] [--rounds R] [--dir DIR] [--submitters N,...]\n"
            "                   [--check]\n"
            "  --seconds S     measured time per mode and client count (default 3; env\n"
            "                  SP_BENCH_SECONDS), split into R alternating rounds\n"
            "  --rounds R      rounds per cell, alternating the two modes (default 3)\n"
            "  --dir DIR       where the temporary stores go (default /var/tmp; env\n"
            "                  SP_BENCH_DIR); must be a real disk, not tmpfs\n"
            "  --submitters    closed-loop client counts (default 1,16,256)\n"
            "  --check         exit 1 unless group commit is >= 20x one fsync per\n"
            "                  message at the largest client count\n");
}

int main(int argc, char **argv)
{
    double seconds = 3;
    unsigned rounds = 3;
    const char *dir = "/var/tmp", *list = "1,16,256", *env;
    unsigned subs[MAX_CELLS];
    size_t ncells = 0;
    bool check = false;
    result_t one[MAX_CELLS], grp[MAX_CELLS];
    struct statfs sf;
    void *rec;
    size_t reclen;
    char *copy, *tok, *save;

    if ((env = getenv("SP_BENCH_SECONDS")) && *env) {
        seconds = atof(env);
    }
    if ((env = getenv("SP_BENCH_DIR")) && *env) {
        dir = env;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--submitters") == 0 && i + 1 < argc) {
            list = argv[++i];
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--check") == 0) {
            check = true;
        } else {
            usage();
            return 2;
        }
    }
    if (seconds <= 0 || rounds == 0 || rounds > 100) {
        usage();
        return 2;
    }
    copy = strdup(list);
    for (tok = strtok_r(copy, ",", &save); tok && ncells < MAX_CELLS;
         tok = strtok_r(NULL, ",", &save)) {
        long n = strtol(tok, NULL, 10);
        if (n <= 0 || n > 100000) {
            usage();
            free(copy);
            return 2;
        }
        subs[ncells++] = (unsigned)n;
    }
    free(copy);
    if (ncells == 0) {
        usage();
        return 2;
    }

    if (statfs(dir, &sf) != 0) {
        fprintf(stderr, "bench_store: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (sf.f_type == TMPFS_MAGIC_ || sf.f_type == RAMFS_MAGIC_) {
        fprintf(stderr, "bench_store: WARNING: %s is on tmpfs/ramfs: fsync costs nothing "
                        "there and the numbers say nothing about durability\n", dir);
    }
    if (make_record(&rec, &reclen) != 0) {
        return 1;
    }

    printf("# Store benchmark: durable commits per second\n\n");
    printf("Records of %zu bytes (msgpack message) plus a queue entry per write, "
           "sync=true (fsync per commit), stores in %s (filesystem magic 0x%lx). "
           "Closed-loop submitters driven from a uv loop; each mode measured %.1f s per "
           "row, in %u rounds alternating with the other mode, after a 0.2 s warm-up.\n\n",
           reclen, dir, (unsigned long)sf.f_type, seconds, rounds);
    for (size_t i = 0; i < ncells; i++) {
        result_t res[2];
        fprintf(stderr, "bench_store: %u submitters...\n", subs[i]);
        if (run_cell(dir, subs[i], seconds, rounds, rec, reclen, res) != 0) {
            free(rec);
            return 1;
        }
        one[i] = res[0];
        grp[i] = res[1];
    }
    free(rec);

    printf("| submitters | one fsync per message (rec/s) | group commit (rec/s) | ratio | "
           "mean batch size |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < ncells; i++) {
        printf("| %u | %.0f | %.0f | %.1fx | %.1f |\n", subs[i], one[i].rate, grp[i].rate,
               one[i].rate > 0 ? grp[i].rate / one[i].rate : 0, grp[i].mean_batch);
    }
    printf("\nMean batch size is requests per commit with group commit. Closed-loop clients "
           "settle into two alternating groups: while one batch is being fsync'd, the clients "
           "just acknowledged queue the next one, so a batch holds about half of them.\n");
    printf("\nBaseline: one commit per record with one submitter gives %.0f durable "
           "commits/s on this machine, i.e. %.3f ms per fsync'd commit; with max_batch 1 "
           "that is the ceiling whatever the number of clients.\n",
           one[0].rate, one[0].rate > 0 ? 1000.0 / one[0].rate : 0);
    {
        size_t last = ncells - 1;
        double ratio = one[last].rate > 0 ? grp[last].rate / one[last].rate : 0;
        bool met = ratio >= 20;
        printf("Target: at %u submitters group commit >= 20x one fsync per message: %.1fx, "
               "%s.\n",
               subs[last], ratio, met ? "met" : "NOT met");
        return (check && !met) ? 1 : 0;
    }
}
