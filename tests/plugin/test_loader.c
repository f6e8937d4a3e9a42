/* SPDX-License-Identifier: Apache-2.0 */
/* The loader with real shared objects: a good plugin's life cycle, path
 * resolution, every deliberately broken plugin refused with its one-line
 * error, configuration checks, registration outside init, the host API
 * table and the per-plugin counters. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#include "sp_core/log.h"
#include "sp_core/msg.h"

static int teardown(void **state)
{
    h_env_t *h = *state;
    if (h != NULL) {
        h_teardown(h);
        free(h);
    }
    *state = NULL;
    return 0;
}

static h_env_t *env(void **state, const char *yaml)
{
    h_env_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    *state = h;
    h_setup(h, false, yaml);
    return h;
}

/* Map a plugin from the test too, so its probe outlives the loader's
 * dlclose (the library stays mapped while we hold a reference). */
static void *pin(const char *name)
{
    char path[512];
    void *hd;
    h_so_path(path, sizeof(path), name);
    hd = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(hd);
    return hd;
}

static sp_test_probe_t *pinned_probe(void *hd)
{
    sp_test_probe_t *pr = dlsym(hd, "sp_test_probe");
    assert_non_null(pr);
    return pr;
}

/* Unload one plugin of the core and take it out of the list. */
static void unload(h_env_t *h, const char *name)
{
    sp_core_t *core = h->core;
    for (size_t i = 0; i < core->nplugins; i++) {
        if (strcmp(core->plugins[i]->name, name) == 0) {
            sp__plugin_unload(core->plugins[i]);
            memmove(&core->plugins[i], &core->plugins[i + 1],
                    (core->nplugins - i - 1) * sizeof(core->plugins[0]));
            core->nplugins--;
            return;
        }
    }
    fail_msg("%s not loaded", name);
}

static void assert_no_registrations(const h_env_t *h)
{
    for (int s = 0; s < SP_STAGE__COUNT; s++) {
        assert_int_equal(sp__pipeline_nhooks(h->core->pipeline, (sp_stage_t)s), 0);
    }
    assert_int_equal(sp__pipeline_nevents(h->core->pipeline), 0);
}

/* ---------------------------------------------------------------------- */

static void test_good_lifecycle(void **state)
{
    h_env_t *h = env(state, "  - name: rec_a\n"
                            "    priority: 3\n"
                            "    timeout: 250ms\n"
                            "    config:\n"
                            "      accept: accept\n"
                            "      render: continue\n"
                            "      events: true\n");
    void *hd = pin("rec_a");
    sp_test_probe_t *pr = pinned_probe(hd);
    char path[512];
    sp_plugin_t *p;

    assert_int_equal(h_load(h), 0);
    assert_string_equal(h->err, "");
    p = h_plugin(h, "rec_a");
    assert_non_null(p);
    h_so_path(path, sizeof(path), "rec_a");
    assert_string_equal(p->path, path);
    assert_string_equal(p->desc.name, "rec_a");
    assert_string_equal(p->desc.version, "1.0");
    assert_int_equal(p->desc.abi_major, SP_ABI_MAJOR);
    assert_int_equal(p->desc.desc_size, sizeof(sp_plugin_desc_t));
    assert_true(p->initialized);
    assert_false(p->in_init);
    assert_int_equal(p->order, 0);
    assert_int_equal(p->priority, 3);
    assert_int_equal(p->timeout_ms, 250);
    assert_non_null(p->conf);
    assert_non_null(p->ctx);
    assert_ptr_equal(p->core, h->core);
    assert_int_equal(pr->init_calls, 1);
    assert_int_equal(sp__pipeline_nhooks(h->core->pipeline, SP_STAGE_ACCEPT), 1);
    assert_int_equal(sp__pipeline_nhooks(h->core->pipeline, SP_STAGE_RENDER), 1);
    assert_int_equal(sp__pipeline_nevents(h->core->pipeline), 1);
    assert_true(h_log_contains(h, "\"plugin\":\"rec_a\""));

    unload(h, "rec_a");
    assert_int_equal(pr->fini_calls, 1);
    assert_no_registrations(h);
    dlclose(hd);
}

static void test_path_resolution(void **state)
{
    h_env_t *h = env(state, "");
    char sub[256], link[300], real[512], want[400];
    sp_plugin_conf_t pc;
    sp_plugin_t *p = NULL;

    /* pc->path relative to the config file's directory */
    snprintf(sub, sizeof(sub), "%s/sub", h->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(link, sizeof(link), "%s/rec_b.so", sub);
    h_so_path(real, sizeof(real), "rec_b");
    assert_int_equal(symlink(real, link), 0);
    memset(&pc, 0, sizeof(pc));
    pc.name = "rec_b";
    pc.path = "sub/rec_b.so";
    pc.timeout_ms = 1000;
    assert_int_equal(sp__plugin_load(h->core, &pc, 0, &p, h->err, sizeof(h->err)), 0);
    snprintf(want, sizeof(want), "%s/sub/rec_b.so", h->dir);
    assert_string_equal(p->path, want);
    sp__plugin_unload(p);

    /* absolute path */
    pc.path = real;
    assert_int_equal(sp__plugin_load(h->core, &pc, 0, &p, h->err, sizeof(h->err)), 0);
    assert_string_equal(p->path, real);
    sp__plugin_unload(p);

    /* no path: plugin_dir/NAME.so */
    pc.path = NULL;
    assert_int_equal(sp__plugin_load(h->core, &pc, 0, &p, h->err, sizeof(h->err)), 0);
    assert_string_equal(p->path, real);
    sp__plugin_unload(p);

    /* a directory is refused before dlopen */
    pc.path = sub;
    assert_int_equal(sp__plugin_load(h->core, &pc, 0, &p, h->err, sizeof(h->err)), SP_ECONFIG);
    assert_null(p);
    snprintf(want, sizeof(want), "plugin rec_b (%s): not a regular file", sub);
    assert_string_equal(h->err, want);

    /* names that cannot be file or metric names */
    pc.path = NULL;
    pc.name = "../etc";
    assert_int_equal(sp__plugin_load(h->core, &pc, 0, &p, h->err, sizeof(h->err)), SP_ECONFIG);
    assert_non_null(strstr(h->err, "invalid plugin name"));
    assert_int_equal(sp__plugin_load(h->core, NULL, 0, &p, h->err, sizeof(h->err)), SP_EINVAL);
    assert_no_registrations(h);
}

static void test_missing_file(void **state)
{
    h_env_t *h = env(state, "  - name: nosuch\n");
    char path[512], want[1200];
    assert_int_equal(h_load(h), SP_ECONFIG);
    h_so_path(path, sizeof(path), "nosuch");
    snprintf(want, sizeof(want), "plugin nosuch (%s): %s: cannot open shared object file", path,
             path);
    assert_memory_equal(h->err, want, strlen(want));
    assert_int_equal(h->core->nplugins, 0);
}

/* Each broken plugin is refused with exactly one line, and leaves nothing
 * registered behind. */
static void test_bad_plugins(void **state)
{
    char reason_big[128], reason_minor[128];
    const struct {
        const char *name;
        int rc;
        const char *reason;
        bool prefix_only;
    } cases[] = {
        {"bad_abi_major", SP_EABI, "ABI major 2, host 1", false},
        {"bad_abi_minor", SP_EABI, reason_minor, false},
        {"bad_short", SP_EABI, "descriptor too short (20 bytes)", false},
        /* sanitizers may pad the symbol, so its size is not checked here */
        {"bad_bigdesc", SP_EABI, reason_big, true},
        {"bad_reserved", SP_EABI, "reserved descriptor slot 3 is not NULL", false},
        {"bad_name", SP_ECONFIG,
         "descriptor name 'someone_else' does not match the configured name", false},
        {"bad_nosym", SP_EABI, "missing symbol sp_plugin_desc", false},
        {"bad_init", SP_EINVAL, "init failed: invalid argument", false},
        {"bad_confcheck", SP_ECONFIG, "invalid configuration: limit must be below 10, got 100",
         false},
    };
    snprintf(reason_minor, sizeof(reason_minor), "ABI minor %d is newer than the host's %d",
             SP_ABI_MINOR + 1, SP_ABI_MINOR);
    snprintf(reason_big, sizeof(reason_big),
             "desc_size %zu is larger than the descriptor symbol (",
             sizeof(sp_plugin_desc_t) + 64);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        h_env_t h;
        char yaml[128], path[512], want[1024];
        snprintf(yaml, sizeof(yaml), "  - name: %s\n", cases[i].name);
        h_setup(&h, false, yaml);
        assert_int_equal(h_load(&h), cases[i].rc);
        h_so_path(path, sizeof(path), cases[i].name);
        snprintf(want, sizeof(want), "plugin %s (%s): %s", cases[i].name, path,
                 cases[i].reason);
        if (cases[i].prefix_only) {
            assert_memory_equal(h.err, want, strlen(want));
        } else {
            assert_string_equal(h.err, want);
        }
        assert_null(strchr(h.err, '\n'));
        assert_int_equal(h.core->nplugins, 0);
        assert_no_registrations(&h);
        h_teardown(&h);
    }
}

static void test_unresolved_symbol(void **state)
{
    h_env_t *h = env(state, "  - name: bad_unresolved\n");
    char path[512], want[600];
    assert_int_equal(h_load(h), SP_EABI);
    h_so_path(path, sizeof(path), "bad_unresolved");
    snprintf(want, sizeof(want), "plugin bad_unresolved (%s): ", path);
    assert_memory_equal(h->err, want, strlen(want));
    assert_non_null(strstr(h->err, "undefined symbol: sp_test_no_such_function"));
}

/* init registered hooks and an event hook, then failed: all undone, fini
 * not called, its log line tagged with its name. */
static void test_init_failure_undone(void **state)
{
    h_env_t *h = env(state, "  - name: bad_init\n");
    void *hd = pin("bad_init");
    sp_test_probe_t *pr = pinned_probe(hd);
    assert_int_equal(h_load(h), SP_EINVAL);
    assert_int_equal(pr->init_calls, 1);
    assert_int_equal(pr->nrc, 3);
    assert_int_equal(pr->rc[0], 0);
    assert_int_equal(pr->rc[1], 0);
    assert_int_equal(pr->rc[2], 0);
    assert_int_equal(pr->fini_calls, 0);
    assert_no_registrations(h);
    assert_true(h_log_contains(h, "refusing to start: on purpose\",\"plugin\":\"bad_init\""));
    dlclose(hd);
}

static void test_config_errors(void **state)
{
    h_env_t *h = env(state, "  - name: rec_a\n"
                            "    config:\n"
                            "      accept: accept\n"
                            "      nosuch: 1\n");
    char path[512], want[600];
    h_so_path(path, sizeof(path), "rec_a");
    assert_int_equal(h_load(h), SP_ECONFIG);
    snprintf(want, sizeof(want), "plugin rec_a (%s): ", path);
    assert_memory_equal(h->err, want, strlen(want));
    assert_non_null(strstr(h->err, "plugins[0].config.nosuch"));
    assert_non_null(strstr(h->err, "unknown key"));
    assert_no_registrations(h);
    teardown(state);

    /* a value of the wrong type */
    h = env(state, "  - name: rec_a\n"
                   "    config:\n"
                   "      code: many\n");
    assert_int_equal(h_load(h), SP_ECONFIG);
    assert_non_null(strstr(h->err, "plugins[0].config.code"));
    teardown(state);

    /* the plugin's own conf_check */
    h = env(state, "  - name: rec_a\n"
                   "    config:\n"
                   "      accept: maybe\n");
    assert_int_equal(h_load(h), SP_ECONFIG);
    snprintf(want, sizeof(want), "plugin rec_a (%s): invalid configuration: unknown verdict",
             path);
    assert_string_equal(h->err, want);
    teardown(state);

    /* no schema, but a config block */
    h = env(state, "  - name: bad_late_hook\n"
                   "    config:\n"
                   "      x: 1\n");
    h_so_path(path, sizeof(path), "bad_late_hook");
    assert_int_equal(h_load(h), SP_ECONFIG);
    snprintf(want, sizeof(want), "plugin bad_late_hook (%s): plugin takes no configuration",
             path);
    assert_string_equal(h->err, want);
    teardown(state);

    /* no schema and an empty config block is fine */
    h = env(state, "  - name: bad_late_hook\n"
                   "    config:\n");
    assert_int_equal(h_load(h), 0);
}

static void test_duplicate(void **state)
{
    h_env_t *h = env(state, "  - name: rec_a\n");
    sp_plugin_conf_t pc;
    sp_plugin_t *p = NULL;
    char path[512], want[600];
    assert_int_equal(h_load(h), 0);
    pc = h->core->cfg->plugins[0];
    assert_int_equal(sp__plugin_load(h->core, &pc, 1, &p, h->err, sizeof(h->err)), SP_ECONFIG);
    assert_null(p);
    h_so_path(path, sizeof(path), "rec_a");
    snprintf(want, sizeof(want), "plugin rec_a (%s): a plugin named rec_a is already loaded",
             path);
    assert_string_equal(h->err, want);
    /* the first one is untouched */
    assert_int_equal(h->core->nplugins, 1);
    assert_true(h->core->plugins[0]->initialized);
}

static void test_registration_outside_init(void **state)
{
    h_env_t *h = env(state, "  - name: bad_late_hook\n");
    void *hd = pin("bad_late_hook");
    sp_test_probe_t *pr = pinned_probe(hd);
    h_run_t r;
    assert_int_equal(h_load(h), 0);
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    assert_int_equal(r.res.verdict, SP_CONTINUE);
    assert_int_equal(pr->hook_calls, 1);
    assert_int_equal(pr->nrc, 3);
    assert_int_equal(pr->rc[0], 0);         /* suspend outside a hook: no token */
    assert_int_equal(pr->rc[1], SP_ESTATE); /* hook from a hook */
    assert_int_equal(pr->rc[2], SP_ESTATE); /* on_event from a hook */
    assert_int_equal(sp__pipeline_nhooks(h->core->pipeline, SP_STAGE_ACCEPT), 1);
    assert_int_equal(sp__pipeline_nhooks(h->core->pipeline, SP_STAGE_EGRESS), 0);
    assert_int_equal(sp__pipeline_nevents(h->core->pipeline), 0);
    unload(h, "bad_late_hook");
    assert_int_equal(pr->fini_calls, 1);
    assert_int_equal(pr->rc[3], SP_ESTATE); /* hook from fini */
    dlclose(hd);
}

/* ---------------------------------------------------------------------- */
/* Host API table */

static atomic_int g_work_runs;
static int g_done_status = 1;
static int g_done_calls;
static int g_fires;
static sp_timer_t *g_timer;

static void work_fn(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_work_runs, 1);
}

static void work_done(void *arg, int status)
{
    (void)arg;
    g_done_status = status;
    g_done_calls++;
}

static sp_verdict_t noop_hook(sp_txn_t *txn, void *ctx)
{
    (void)txn;
    (void)ctx;
    return SP_CONTINUE;
}

static void tick(void *arg)
{
    const sp_host_api_t *api = arg;
    if (++g_fires == 3) {
        api->timer_stop(g_timer); /* inside its own callback */
    }
}

static void test_host_api(void **state)
{
    h_env_t *h = env(state, "");
    const sp_host_api_t *api = sp__host_api();
    sp_plugin_t p = {.name = "tester", .core = h->core};
    void *const *fp;
    char *s;
    void *v = NULL;
    size_t vl;
    int64_t now;

    assert_int_equal(api->abi_major, SP_ABI_MAJOR);
    assert_int_equal(api->abi_minor, SP_ABI_MINOR);
    assert_int_equal(api->size, sizeof(sp_host_api_t));
    /* every member is filled */
    for (fp = (void *const *)&api->alloc; (const char *)fp < (const char *)api + api->size;
         fp++) {
        assert_non_null(*fp);
    }
    assert_true(SP_API_HAS(api, uv_loop));
    assert_true(SP_API_HAS(api, alloc));

    s = api->strdup("abc");
    assert_string_equal(s, "abc");
    api->free(s);
    assert_string_equal(api->strerror(SP_EINVAL), sp__strerror(SP_EINVAL));
    assert_string_equal(api->status_name(SP_ST_QUEUED), "QUEUED");
    assert_ptr_equal(api->uv_loop(), &h->loop);
    assert_string_equal(api->data_dir(), h->core->cfg->data_dir);
    assert_null(api->setting("no_such_setting"));
    now = api->now_ms();
    assert_true(now > 1600000000000LL);
    api->log(&p, SP_LOG_WARN, "hello %d from %s", 42, "the test");
    assert_true(h_log_contains(h, "hello 42 from the test\",\"plugin\":\"tester\""));
    {
        char big[5000];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        api->log(&p, (sp_log_level_t)77, "%s", big);
    }

    /* registration outside init, and bad arguments */
    assert_int_equal(api->hook(NULL, SP_STAGE_ACCEPT, noop_hook, 0), SP_EINVAL);
    assert_int_equal(api->hook(&p, SP_STAGE__COUNT, noop_hook, 0), SP_EINVAL);
    assert_int_equal(api->hook(&p, SP_STAGE_ACCEPT, noop_hook, 0), SP_ESTATE);
    assert_int_equal(api->on_event(&p, NULL), SP_EINVAL);
    p.in_init = true;
    assert_int_equal(api->hook(&p, SP_STAGE_ACCEPT, noop_hook, 500), SP_EINVAL);
    p.in_init = false;

    /* no store in this core */
    assert_int_equal(api->kv_get(&p, "k", 1, &v, &vl), SP_ESTATE);
    assert_int_equal(api->kv_put(&p, "k", 1, "v", 1, NULL, NULL), SP_ESTATE);

    /* queue_work: work on the pool, done on the loop */
    assert_int_equal(api->queue_work(&p, NULL, work_done, NULL), SP_EINVAL);
    assert_int_equal(api->queue_work(&p, work_fn, work_done, NULL), 0);
    assert_int_equal(p.nwork, 1);
    h_wait(h, &g_done_calls, 1, 5000);
    assert_int_equal(atomic_load(&g_work_runs), 1);
    assert_int_equal(g_done_status, 0);
    assert_int_equal(p.nwork, 0);

    /* a repeating timer stopped from its own callback */
    assert_null(api->timer_start(&p, 1, 0, NULL, NULL));
    g_timer = api->timer_start(&p, 1, 1, tick, (void *)api);
    assert_non_null(g_timer);
    h_wait(h, &g_fires, 3, 5000);
    assert_null(p.timers);
    /* timers left running are closed at unload */
    assert_non_null(api->timer_start(&p, 100000, 0, tick, (void *)api));
    assert_non_null(api->timer_start(&p, 100000, 0, tick, (void *)api));
    assert_int_equal(sp__host_timers_close(&p), 2);
    assert_null(p.timers);
    api->timer_stop(NULL);
    assert_int_equal(g_fires, 3);
}

static void test_counters(void **state)
{
    h_env_t *h = env(state, "  - name: rec_a\n"
                            "    config:\n"
                            "      accept: continue\n");
    const sp_host_api_t *api = sp__host_api();
    const char *want = "sendpipe_plugin_rec_a_hooks_total 2\n"
                       "sendpipe_plugin_rec_a_a_b_c_total 5\n"
                       "sendpipe_plugin_rec_a_sent_total 7\n";
    char buf[512], small[20];
    char longname[80];
    sp_plugin_t *p;
    h_run_t r;
    size_t n;

    assert_int_equal(h_load(h), 0);
    p = h_plugin(h, "rec_a");
    assert_int_equal(sp__plugin_metrics(p, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    h_run(h, h_msg("x"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    h_run(h, h_msg("y"), SP_STAGE_ACCEPT, SP_STAGE_ACCEPT, &r);
    api->counter_add(p, "a-b.c", 2);
    api->counter_add(p, "a_b_c", 3); /* same metric once cleaned */
    api->counter_add(p, "sent_total", 7);
    api->counter_add(p, "", 1);
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    api->counter_add(p, longname, 1);
    api->counter_add(p, NULL, 1);
    n = sp__plugin_metrics(p, buf, sizeof(buf));
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
    /* snprintf semantics */
    assert_int_equal(sp__plugin_metrics(p, NULL, 0), strlen(want));
    assert_int_equal(sp__plugin_metrics(p, small, sizeof(small)), strlen(want));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, want, sizeof(small) - 1);
    assert_true(h_log_contains(h, "counter name"));
}

/* check-config: the same checks without init, and nothing left behind */
static void test_check_only(void **state)
{
    h_env_t *h = env(state, "  - name: rec_a\n"
                            "    config: {accept: accept}\n"
                            "  - name: bad_abi_major\n"
                            "  - name: rec_b\n"
                            "    config: {accept: nope}\n");
    void *hd = pin("rec_a");
    sp_test_probe_t *pr = pinned_probe(hd);
    const sp_config_t *cfg = h->core->cfg;
    char path[512], want[1024];
    memset(pr, 0, sizeof(*pr));
    assert_int_equal(sp__plugin_check(cfg, &cfg->plugins[0], 0, h->err, sizeof(h->err)), 0);
    assert_string_equal(h->err, "");
    assert_int_equal(pr->init_calls, 0);
    assert_int_equal(sp__plugin_check(cfg, &cfg->plugins[1], 1, h->err, sizeof(h->err)),
                     SP_EABI);
    h_so_path(path, sizeof(path), "bad_abi_major");
    snprintf(want, sizeof(want), "plugin bad_abi_major (%s): ABI major 2, host 1", path);
    assert_string_equal(h->err, want);
    assert_int_equal(sp__plugin_check(cfg, &cfg->plugins[2], 2, h->err, sizeof(h->err)),
                     SP_ECONFIG);
    assert_non_null(strstr(h->err, "invalid configuration: unknown verdict"));
    assert_no_registrations(h);
    dlclose(hd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_good_lifecycle, teardown),
        cmocka_unit_test_teardown(test_path_resolution, teardown),
        cmocka_unit_test_teardown(test_missing_file, teardown),
        cmocka_unit_test(test_bad_plugins),
        cmocka_unit_test_teardown(test_unresolved_symbol, teardown),
        cmocka_unit_test_teardown(test_init_failure_undone, teardown),
        cmocka_unit_test_teardown(test_config_errors, teardown),
        cmocka_unit_test_teardown(test_duplicate, teardown),
        cmocka_unit_test_teardown(test_registration_outside_init, teardown),
        cmocka_unit_test_teardown(test_host_api, teardown),
        cmocka_unit_test_teardown(test_counters, teardown),
        cmocka_unit_test_teardown(test_check_only, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
