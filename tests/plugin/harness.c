/* SPDX-License-Identifier: Apache-2.0 */
/* Test host for plugin tests: builds a minimal core by hand and drives the
 * real loader and pipeline; see harness.h. */
#include <dlfcn.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#include "sp_core/log.h"
#include "sp_core/msg.h"
#include "sp_core/store.h"

void h_so_path(char *out, size_t outlen, const char *name)
{
    snprintf(out, outlen, "%s/%s.so", SP_TEST_PLUGIN_SO_DIR, name);
}

int h_setup_rc(h_env_t *h, bool with_store, const char *plugins_yaml)
{
    char *yaml = NULL;
    char logpath[256];
    sp_config_t *cfg = NULL;
    sp_core_t *core;
    int rc;

    memset(h, 0, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "/tmp/sp_plugin_test.XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(logpath, sizeof(logpath), "%s/test.log", h->dir);
    assert_int_equal(sp__log_open(logpath, SP_LOG_DEBUG), 0);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    assert_true(asprintf(&yaml, "data_dir: %s\nplugin_dir: %s\nplugins:\n%s\n", h->dir,
                         SP_TEST_PLUGIN_SO_DIR, plugins_yaml != NULL ? plugins_yaml : "") > 0);
    rc = sp__config_parse(yaml, strlen(yaml), "test.yaml", h->dir, &cfg, h->err,
                          sizeof(h->err));
    free(yaml);
    core = calloc(1, sizeof(*core));
    assert_non_null(core);
    core->loop = &h->loop;
    core->cfg = cfg;
    core->clock_ms = sp__now_ms;
    h->core = core;
    h->with_store = with_store;
    sp__core = core;
    if (rc < 0) {
        return rc;
    }
    assert_int_equal(sp__pipeline_new(&core->pipeline, &h->loop), 0);
    if (with_store) {
        sp_store_opts_t so = {.map_size = 16u << 20, .sync = false, .max_batch = 64};
        assert_int_equal(sp__store_open(&core->store, cfg->data_dir, &so, &h->loop), 0);
    }
    /* One spare slot for tests that load an extra entry by hand. */
    core->plugins = calloc(cfg->nplugins + 2, sizeof(*core->plugins));
    assert_non_null(core->plugins);
    return 0;
}

void h_setup(h_env_t *h, bool with_store, const char *plugins_yaml)
{
    int rc = h_setup_rc(h, with_store, plugins_yaml);
    if (rc < 0) {
        fail_msg("config: %s", h->err);
    }
}

int h_load(h_env_t *h)
{
    sp_core_t *core = h->core;
    for (size_t i = 0; i < core->cfg->nplugins; i++) {
        sp_plugin_t *p = NULL;
        int rc = sp__plugin_load(core, &core->cfg->plugins[i], (int)i, &p, h->err,
                                 sizeof(h->err));
        if (rc < 0) {
            assert_null(p);
            return rc;
        }
        assert_non_null(p);
        core->plugins[core->nplugins++] = p;
    }
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void dump_log(const h_env_t *h)
{
    char path[256];
    char buf[4096];
    size_t n;
    FILE *f;
    snprintf(path, sizeof(path), "%s/test.log", h->dir);
    f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        fwrite(buf, 1, n, stderr);
    }
    fclose(f);
}

bool h_log_contains(const h_env_t *h, const char *needle)
{
    char path[256];
    char *buf;
    long len;
    bool found;
    FILE *f;
    snprintf(path, sizeof(path), "%s/test.log", h->dir);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    found = strstr(buf, needle) != NULL;
    free(buf);
    return found;
}

void h_teardown(h_env_t *h)
{
    sp_core_t *core = h->core;
    if (core != NULL) {
        for (size_t i = core->nplugins; i > 0; i--) {
            sp__plugin_unload(core->plugins[i - 1]);
        }
        free(core->plugins);
        if (core->store != NULL) {
            while (sp__store_pending(core->store) > 0) {
                uv_run(&h->loop, UV_RUN_ONCE);
            }
            sp__store_close(core->store);
        }
        sp__pipeline_free(core->pipeline);
        sp__config_free(core->cfg);
        if (sp__core == core) {
            sp__core = NULL;
        }
        free(core);
        h->core = NULL;
    }
    /* Close callbacks (pipeline, timers, tokens, store) run here. */
    for (int i = 0; i < 8; i++) {
        uv_run(&h->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(uv_loop_close(&h->loop), 0);
    sp__log_close();
    if (getenv("SP_TEST_VERBOSE") != NULL) {
        dump_log(h);
    }
    assert_int_equal(nftw(h->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS), 0);
}

sp_plugin_t *h_plugin(h_env_t *h, const char *name)
{
    for (size_t i = 0; i < h->core->nplugins; i++) {
        if (strcmp(h->core->plugins[i]->name, name) == 0) {
            return h->core->plugins[i];
        }
    }
    return NULL;
}

sp_test_probe_t *h_probe(h_env_t *h, const char *name)
{
    sp_plugin_t *p = h_plugin(h, name);
    assert_non_null(p);
    return dlsym(p->handle, "sp_test_probe");
}

static void watchdog_fired(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

void h_wait(h_env_t *h, const int *flag, int want, uint64_t timeout_ms)
{
    uv_timer_t wd;
    bool fired = false;
    uv_timer_init(&h->loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, watchdog_fired, timeout_ms, 0);
    while (*flag < want && !fired) {
        uv_run(&h->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&h->loop, UV_RUN_NOWAIT);
    if (fired) {
        fail_msg("timed out after %llu ms waiting for %d (have %d)",
                 (unsigned long long)timeout_ms, want, *flag);
    }
}

void h_wait_pred(h_env_t *h, bool (*pred)(h_env_t *h, void *arg), void *arg,
                 uint64_t timeout_ms)
{
    uv_timer_t wd;
    bool fired = false;
    uv_timer_init(&h->loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, watchdog_fired, timeout_ms, 0);
    while (!pred(h, arg) && !fired) {
        uv_run(&h->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&h->loop, UV_RUN_NOWAIT);
    if (fired) {
        fail_msg("timed out after %llu ms waiting for a condition",
                 (unsigned long long)timeout_ms);
    }
}

static void h_done(sp_txn_t *txn, const sp_run_result_t *res, void *arg)
{
    h_run_t *r = arg;
    (void)txn;
    r->done_calls++;
    r->res = *res;
    assert_non_null(res->text);
    snprintf(r->text, sizeof(r->text), "%s", res->text);
    r->res.text = r->text;
    if (res->plugin != NULL) {
        snprintf(r->plugin, sizeof(r->plugin), "%s", res->plugin);
        r->res.plugin = r->plugin;
    }
}

sp_txn_t *h_start(h_env_t *h, sp_msg_t *msg, sp_stage_t first, sp_stage_t last, h_run_t *r)
{
    sp_txn_t *txn;
    memset(r, 0, sizeof(*r));
    txn = sp__txn_new(h->core->pipeline, msg);
    assert_non_null(txn);
    assert_int_equal(sp__pipeline_run(h->core->pipeline, txn, first, last, h_done, r), 0);
    return txn;
}

sp_txn_t *h_run_txn(h_env_t *h, sp_msg_t *msg, sp_stage_t first, sp_stage_t last, h_run_t *r)
{
    sp_txn_t *txn = h_start(h, msg, first, last, r);
    h_wait(h, &r->done_calls, 1, 5000);
    assert_int_equal(r->done_calls, 1);
    return txn;
}

void h_run(h_env_t *h, sp_msg_t *msg, sp_stage_t first, sp_stage_t last, h_run_t *r)
{
    sp__txn_free(h_run_txn(h, msg, first, last, r));
}

sp_msg_t *h_msg(const char *subject)
{
    sp_msg_t *m = sp__msg_new();
    assert_non_null(m);
    if (subject != NULL) {
        assert_int_equal(sp__msg_set(m, SP_F_SUBJECT, subject, strlen(subject)), 0);
    }
    return m;
}

void h_trace(const sp_msg_t *m, char *out, size_t outlen)
{
    size_t n = sp__msg_count(m, "trace");
    size_t w = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = sp__msg_get_at(m, "trace", i, &len);
        int k = snprintf(out + w, outlen - w, "%s%s", i > 0 ? "," : "", s);
        if (k < 0 || (size_t)k >= outlen - w) {
            break;
        }
        w += (size_t)k;
    }
}
