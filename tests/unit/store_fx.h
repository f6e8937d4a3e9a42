/* SPDX-License-Identifier: Apache-2.0 */
/* A cmocka fixture for unit tests of core modules that keep state in the
 * store: a temporary directory with an open store (no fsync) and its loop,
 * and one synchronous write. Include once per test file. */
#ifndef SP_TESTS_UNIT_STORE_FX_H
#define SP_TESTS_UNIT_STORE_FX_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "sp_core/store.h"

typedef struct fx {
    char dir[256];
    uv_loop_t loop;
    sp_store_t *st;
} fx_t;

static int fx_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int fx_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    sp_store_opts_t o = {.sync = false, .max_batch = 64};

    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sp_unit_XXXXXX");
    if (!mkdtemp(fx->dir) || uv_loop_init(&fx->loop) != 0 ||
        sp__store_open(&fx->st, fx->dir, &o, &fx->loop) != 0) {
        return -1;
    }
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;

    sp__store_close(fx->st);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&fx->loop);
    nftw(fx->dir, fx_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

typedef struct fx_wr {
    sp_store_apply_fn apply;
    void *arg;
    int rc;
    int done;
} fx_wr_t;

static int fx_apply(sp_wtxn_t *w, void *arg)
{
    fx_wr_t *x = arg;
    return x->apply(w, x->arg);
}

static void fx_done(void *arg, int status)
{
    fx_wr_t *x = arg;
    x->rc = status;
    x->done = 1;
}

/* apply(w, arg) as one durable write; its status (-1: not queued). */
static int fx_write(fx_t *fx, sp_store_apply_fn apply, void *arg)
{
    fx_wr_t x = {.apply = apply, .arg = arg};

    if (sp__store_write(fx->st, fx_apply, fx_done, &x) != 0) {
        return -1;
    }
    while (!x.done) {
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    return x.rc;
}

#endif
