/* SPDX-License-Identifier: Apache-2.0 */
/* The plugin loader: checks a shared object's descriptor before any of its
 * code runs, fills its configuration through its schema, runs init, and
 * undoes all of it on failure or unload; also the per-plugin counters. */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sp_core/conf.h"
#include "sp_core/core.h"
#include "sp_core/http.h"
#include "sp_core/log.h"
#include "sp_core/pipeline.h"
#include "sp_core/plugin.h"

#define DESC_SIZE_MAX 4096u          /* larger is not a descriptor but garbage */
#define CONF_SIZE_MAX (64u * 1024u)  /* a config struct, not a data blob */
#define SCHEMA_ITEMS_MAX 1024u
#define NAME_MAX_LEN 64u
#define COUNTER_NAME_MAX 64u

typedef struct sp_plugin_counter {
    struct sp_plugin_counter *next;
    uint64_t value;
    char name[COUNTER_NAME_MAX + 1];
} sp_plugin_counter_t;

/* Counters may be bumped from pool threads by careless plugins; one lock
 * for all of them is plenty for a metric. */
static pthread_mutex_t counters_mu = PTHREAD_MUTEX_INITIALIZER;

static bool keep_mapped(void)
{
    const char *v = getenv("SP_KEEP_PLUGINS_MAPPED");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* Names end up in file names, metric names and KV key prefixes. */
static bool name_ok(const char *s)
{
    size_t n = 0;
    if (s == NULL || s[0] == '\0') {
        return false;
    }
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            return false;
        }
    }
    return n <= NAME_MAX_LEN;
}

static char *path_join(const char *dir, size_t dirlen, const char *a, const char *b)
{
    size_t la = strlen(a), lb = b != NULL ? strlen(b) : 0;
    char *s = malloc(dirlen + 1 + la + lb + 1);
    if (s == NULL) {
        return NULL;
    }
    memcpy(s, dir, dirlen);
    s[dirlen] = '/';
    memcpy(s + dirlen + 1, a, la);
    if (lb > 0) {
        memcpy(s + dirlen + 1 + la, b, lb);
    }
    s[dirlen + 1 + la + lb] = '\0';
    return s;
}

/* pc->path (relative to the config file's directory), else
 * plugin_dir/NAME.so. The result always contains a '/', so dlopen never
 * searches the library path. */
static char *resolve_path(const sp_config_t *cfg, const sp_plugin_conf_t *pc)
{
    const char *file = cfg != NULL ? cfg->file : NULL;
    const char *dir;

    if (pc->path != NULL && pc->path[0] != '\0') {
        const char *slash;
        if (pc->path[0] == '/') {
            return strdup(pc->path);
        }
        slash = file != NULL ? strrchr(file, '/') : NULL;
        if (slash == NULL) {
            return path_join(".", 1, pc->path, NULL);
        }
        return path_join(file, slash == file ? 0 : (size_t)(slash - file), pc->path, NULL);
    }
    dir = cfg != NULL ? cfg->plugin_dir : NULL;
#ifdef SP_INSTALL_PLUGIN_DIR
    if (dir == NULL) {
        dir = SP_INSTALL_PLUGIN_DIR;
    }
#endif
    if (dir == NULL) {
        dir = ".";
    }
    return path_join(dir, strlen(dir), pc->name, ".so");
}

static void counters_free(sp_plugin_t *p)
{
    sp_plugin_counter_t *c = p->counters;
    while (c != NULL) {
        sp_plugin_counter_t *n = c->next;
        free(c);
        c = n;
    }
    p->counters = NULL;
}

/* Undo whatever part of a load or a whole load: registrations, timers,
 * configuration, the mapping, the instance. */
static void plugin_destroy(sp_plugin_t *p)
{
    size_t n, running;
    if (p->core != NULL) {
        sp__pipeline_remove_plugin(p->core->pipeline, p);
    }
    sp__http_routes_remove(p);
    n = sp__host_timers_close(p);
    if (n > 0) {
        sp__log_src(SP_LOG_WARN, p->name, "%zu timer(s) still running at unload; stopped", n);
    }
    n = p->nwork;
    running = sp__host_work_detach(p);
    if (n > 0) {
        sp__log_src(SP_LOG_WARN, p->name, "%zu queued work item(s) at unload; their done "
                    "callbacks will not run", n);
    }
    if (p->conf != NULL) {
        sp__conf_schema_free(p->desc.conf, p->conf);
        free(p->conf);
        p->conf = NULL;
    }
    if (p->handle != NULL) {
        if (running > 0) {
            /* A pool thread may still be executing the library's code. */
            sp__log_src(SP_LOG_WARN, p->name, "%zu work item(s) still running; library left "
                        "mapped", running);
        } else if (!keep_mapped()) {
            dlclose(p->handle);
        }
        p->handle = NULL;
    }
    counters_free(p);
    free(p->name);
    free(p->path);
    free(p);
}

static int load_fail(sp_plugin_t *p, char *err, size_t errlen, int rc, const char *fmt, ...)
    SP_PRINTF(5, 6);

static int load_fail(sp_plugin_t *p, char *err, size_t errlen, int rc, const char *fmt, ...)
{
    char reason[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "plugin %s (%s): %s", p->name, p->path != NULL ? p->path : "?",
                 reason);
    }
    plugin_destroy(p);
    return rc;
}

static size_t conf_type_size(sp_conf_type_t t, size_t *align)
{
    switch (t) {
    case SP_CONF_STR:
        *align = alignof(char *);
        return sizeof(char *);
    case SP_CONF_INT:
        *align = alignof(int64_t);
        return sizeof(int64_t);
    case SP_CONF_BOOL:
        *align = alignof(bool);
        return sizeof(bool);
    case SP_CONF_SIZE:
    case SP_CONF_DURATION:
        *align = alignof(uint64_t);
        return sizeof(uint64_t);
    }
    *align = 1;
    return 0;
}

/* The schema writes through offsets into a buffer of conf_size bytes: make
 * sure every write lands inside it, aligned, before the core does one. */
static int check_schema(const sp_plugin_desc_t *d, char *why, size_t whylen)
{
    size_t i;
    if (d->conf_size > CONF_SIZE_MAX) {
        snprintf(why, whylen, "conf_size %zu is too large", d->conf_size);
        return SP_EABI;
    }
    if (d->conf == NULL) {
        return 0;
    }
    for (i = 0; i < SCHEMA_ITEMS_MAX && d->conf[i].name != NULL; i++) {
        const sp_conf_item_t *it = &d->conf[i];
        size_t align;
        size_t sz = conf_type_size(it->type, &align);
        if (sz == 0) {
            snprintf(why, whylen, "schema key '%s' has unknown type %d", it->name,
                     (int)it->type);
            return SP_EABI;
        }
        if (it->offset > d->conf_size || d->conf_size - it->offset < sz ||
            it->offset % align != 0) {
            snprintf(why, whylen, "schema key '%s' lies outside conf_size (%zu)", it->name,
                     d->conf_size);
            return SP_EABI;
        }
    }
    if (i == SCHEMA_ITEMS_MAX) {
        snprintf(why, whylen, "schema has no terminating {0} item");
        return SP_EABI;
    }
    return 0;
}

/* Size of the data symbol at addr per the ELF symbol table; SIZE_MAX if
 * unknown (then only desc_size bounds the reads). */
static size_t symbol_size(const void *addr)
{
    Dl_info info;
    const ElfW(Sym) *es = NULL;
    if (dladdr1(addr, &info, (void **)&es, RTLD_DL_SYMENT) == 0 || es == NULL ||
        info.dli_saddr != addr || es->st_size == 0) {
        return SIZE_MAX;
    }
    return (size_t)es->st_size;
}

static bool config_empty(const sp_node_t *n)
{
    if (n == NULL) {
        return true;
    }
    if (n->type == SP_NODE_SCALAR) {
        return !n->quoted && (n->value == NULL || n->value[0] == '\0' ||
                              strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0);
    }
    return n->n == 0 && n->child == NULL;
}

/* Steps 1-4 of a load: everything up to (not including) init. On failure
 * everything is undone and err holds the line. core may be NULL (check
 * only: no duplicate check against loaded plugins). */
static int plugin_open(const sp_config_t *cfg, struct sp_core *core, const sp_plugin_conf_t *pc,
                       int order, sp_plugin_t **out, char *err, size_t errlen)
{
    sp_plugin_t *p;
    const unsigned char *sym;
    uint32_t head[3];
    size_t ncopy, symsize;
    struct stat sb;
    bool stat_ok;
    char why[512];
    int rc;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (pc == NULL || out == NULL) {
        return SP_EINVAL;
    }
    *out = NULL;
    if (!name_ok(pc->name)) {
        snprintf(err, errlen, "plugin %s: invalid plugin name (letters, digits, '_' and '-', "
                 "at most %u)", pc->name != NULL ? pc->name : "(none)", NAME_MAX_LEN);
        return SP_ECONFIG;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(pc->name)) == NULL) {
        free(p);
        snprintf(err, errlen, "plugin %s: out of memory", pc->name);
        return SP_ENOMEM;
    }
    p->core = core;
    p->order = order;
    p->priority = pc->priority;
    p->timeout_ms = pc->timeout_ms;
    p->path = resolve_path(cfg, pc);
    if (p->path == NULL) {
        return load_fail(p, err, errlen, SP_ENOMEM, "out of memory");
    }

    /* 1. Map it; RTLD_NOW so a missing symbol fails here, not mid-message. */
    stat_ok = stat(p->path, &sb) == 0;
    if (stat_ok && !S_ISREG(sb.st_mode)) {
        return load_fail(p, err, errlen, SP_ECONFIG, "not a regular file");
    }
    (void)dlerror();
    p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (p->handle == NULL) {
        const char *e = dlerror();
        return load_fail(p, err, errlen, stat_ok ? SP_EABI : SP_ECONFIG, "%s",
                         e != NULL ? e : "dlopen failed");
    }
    (void)dlerror();
    sym = dlsym(p->handle, "sp_plugin_desc");
    if (sym == NULL) {
        return load_fail(p, err, errlen, SP_EABI, "missing symbol sp_plugin_desc");
    }

    /* 2. Version and size first, then never a byte past desc_size (nor past
     * the symbol itself, when the dynamic symbol table says how big it is). */
    symsize = symbol_size(sym);
    if (symsize < sizeof(head)) {
        return load_fail(p, err, errlen, SP_EABI, "descriptor too short (%zu bytes)", symsize);
    }
    memcpy(head, sym, sizeof(head));
    if (head[0] != SP_ABI_MAJOR) {
        return load_fail(p, err, errlen, SP_EABI, "ABI major %u, host %u", head[0],
                         SP_ABI_MAJOR);
    }
    if (head[1] > SP_ABI_MINOR) {
        return load_fail(p, err, errlen, SP_EABI, "ABI minor %u is newer than the host's %u",
                         head[1], SP_ABI_MINOR);
    }
    if (head[2] < offsetof(sp_plugin_desc_t, reserved)) {
        return load_fail(p, err, errlen, SP_EABI, "descriptor too short (%u bytes)", head[2]);
    }
    if (head[2] > DESC_SIZE_MAX) {
        return load_fail(p, err, errlen, SP_EABI, "descriptor too large (%u bytes)", head[2]);
    }
    if (head[2] > symsize) {
        return load_fail(p, err, errlen, SP_EABI,
                         "desc_size %u is larger than the descriptor symbol (%zu bytes)",
                         head[2], symsize);
    }
    ncopy = head[2] < sizeof(p->desc) ? head[2] : sizeof(p->desc);
    memcpy(&p->desc, sym, ncopy);

    /* 3. Reserved slots, flags, name, uniqueness. */
    for (size_t i = 0; i < sizeof(p->desc.reserved) / sizeof(p->desc.reserved[0]); i++) {
        if (offsetof(sp_plugin_desc_t, reserved) + (i + 1) * sizeof(void *) <= ncopy &&
            p->desc.reserved[i] != NULL) {
            return load_fail(p, err, errlen, SP_EABI, "reserved descriptor slot %zu is not NULL",
                             i);
        }
    }
    if (p->desc.flags != 0) {
        return load_fail(p, err, errlen, SP_EABI, "unknown descriptor flags 0x%x",
                         p->desc.flags);
    }
    if (p->desc.name == NULL) {
        return load_fail(p, err, errlen, SP_EABI, "descriptor has no name");
    }
    if (strcmp(p->desc.name, p->name) != 0) {
        return load_fail(p, err, errlen, SP_ECONFIG,
                         "descriptor name '%.64s' does not match the configured name",
                         p->desc.name);
    }
    if (p->desc.init == NULL) {
        return load_fail(p, err, errlen, SP_EABI, "descriptor has no init function");
    }
    for (size_t i = 0; core != NULL && i < core->nplugins; i++) {
        if (core->plugins[i] != NULL && strcmp(core->plugins[i]->name, p->name) == 0) {
            return load_fail(p, err, errlen, SP_ECONFIG, "a plugin named %s is already loaded",
                             p->name);
        }
    }

    /* 4. Configuration: schema into a zeroed struct, then conf_check. */
    rc = check_schema(&p->desc, why, sizeof(why));
    if (rc < 0) {
        return load_fail(p, err, errlen, rc, "%s", why);
    }
    if (p->desc.conf == NULL && !config_empty(pc->config)) {
        return load_fail(p, err, errlen, SP_ECONFIG, "plugin takes no configuration");
    }
    if (p->desc.conf_size > 0) {
        p->conf = calloc(1, p->desc.conf_size);
        if (p->conf == NULL) {
            return load_fail(p, err, errlen, SP_ENOMEM, "out of memory");
        }
    }
    if (p->desc.conf != NULL) {
        char path[64];
        snprintf(path, sizeof(path), "plugins[%d].config", order);
        rc = sp__conf_apply_schema(pc->config, cfg != NULL ? cfg->file : NULL, path,
                                   p->desc.conf, p->conf, why, sizeof(why));
        if (rc < 0) {
            return load_fail(p, err, errlen, rc == SP_ENOMEM ? rc : SP_ECONFIG, "%s", why);
        }
    }
    if (p->desc.conf_check != NULL) {
        char cerr[256];
        memset(cerr, 0, sizeof(cerr));
        if (p->desc.conf_check(p->conf, cerr, sizeof(cerr)) != 0) {
            cerr[sizeof(cerr) - 1] = '\0';
            return load_fail(p, err, errlen, SP_ECONFIG, "invalid configuration: %s",
                             cerr[0] != '\0' ? cerr : "conf_check failed");
        }
    }

    *out = p;
    return 0;
}

int sp__plugin_load(struct sp_core *core, const sp_plugin_conf_t *pc, int order,
                    sp_plugin_t **out, char *err, size_t errlen)
{
    sp_plugin_t *p;
    int rc;

    if (out != NULL) {
        *out = NULL;
    }
    if (core == NULL || out == NULL) {
        return SP_EINVAL;
    }
    rc = plugin_open(core->cfg, core, pc, order, &p, err, errlen);
    if (rc < 0) {
        return rc;
    }
    /* 5. init: the only time hooks may be registered. */
    p->in_init = true;
    rc = p->desc.init(p, sp__host_api(), p->conf, &p->ctx);
    p->in_init = false;
    if (rc != 0) {
        /* init cleans up after itself when it fails; fini is not owed. The
         * handles it closed have close callbacks in the library: let them
         * run before it is unmapped (loading happens outside the loop). */
        if (rc > 0) {
            rc = SP_EINVAL;
        }
        for (int i = 0; i < 16 && core->loop != NULL && uv_run(core->loop, UV_RUN_NOWAIT) != 0;
             i++) {
        }
        return load_fail(p, err, errlen, rc, "init failed: %s", sp__strerror(rc));
    }
    p->initialized = true;
    sp__log_src(SP_LOG_INFO, p->name, "loaded %s (version %s)", p->path,
                p->desc.version != NULL ? p->desc.version : "unknown");
    *out = p;
    return 0;
}

int sp__plugin_check(const sp_config_t *cfg, const sp_plugin_conf_t *pc, int order, char *err,
                     size_t errlen)
{
    sp_plugin_t *p;
    int rc = plugin_open(cfg, NULL, pc, order, &p, err, errlen);
    if (rc < 0) {
        return rc;
    }
    plugin_destroy(p);
    return 0;
}

void sp__plugin_fini(sp_plugin_t *p)
{
    if (p == NULL) {
        return;
    }
    if (p->initialized && p->desc.fini != NULL) {
        p->desc.fini(p, p->ctx);
    }
    p->initialized = false;
    p->ctx = NULL;
    /* A timer left running would fire into state fini just freed. */
    if (sp__host_timers_close(p) > 0) {
        sp__log_src(SP_LOG_WARN, p->name, "timer(s) still running after fini; stopped");
    }
}

void sp__plugin_unload(sp_plugin_t *p)
{
    if (p == NULL) {
        return;
    }
    sp__plugin_fini(p);
    plugin_destroy(p);
}

/* ---------------------------------------------------------------------- */
/* Counters */

static void metric_name(char *out, size_t outlen, const char *s)
{
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < outlen; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_';
        out[i] = ok ? c : '_';
    }
    out[i] = '\0';
}

void sp__plugin_counter_add(sp_plugin_t *p, const char *name, uint64_t delta)
{
    char clean[COUNTER_NAME_MAX + 1];
    sp_plugin_counter_t *c, **tail;
    if (p == NULL || name == NULL) {
        return;
    }
    if (name[0] == '\0' || strlen(name) > COUNTER_NAME_MAX) {
        sp__log_src(SP_LOG_WARN, p->name, "counter name '%.80s' refused (1 to %u bytes)", name,
                    COUNTER_NAME_MAX);
        return;
    }
    metric_name(clean, sizeof(clean), name);
    pthread_mutex_lock(&counters_mu);
    for (tail = &p->counters; (c = *tail) != NULL; tail = &c->next) {
        if (strcmp(c->name, clean) == 0) {
            c->value += delta;
            pthread_mutex_unlock(&counters_mu);
            return;
        }
    }
    c = calloc(1, sizeof(*c));
    if (c != NULL) {
        memcpy(c->name, clean, sizeof(clean));
        c->value = delta;
        *tail = c;
    }
    pthread_mutex_unlock(&counters_mu);
}

size_t sp__plugin_metrics(const sp_plugin_t *p, char *buf, size_t buflen)
{
    char pname[NAME_MAX_LEN + 1];
    size_t total = 0;
    if (buf != NULL && buflen > 0) {
        buf[0] = '\0';
    }
    if (p == NULL || p->name == NULL) {
        return 0;
    }
    metric_name(pname, sizeof(pname), p->name);
    pthread_mutex_lock(&counters_mu);
    for (const sp_plugin_counter_t *c = p->counters; c != NULL; c = c->next) {
        size_t nl = strlen(c->name);
        bool has_total = nl >= 6 && strcmp(c->name + nl - 6, "_total") == 0;
        char *dst = buf != NULL && total < buflen ? buf + total : NULL;
        size_t room = dst != NULL ? buflen - total : 0;
        int n = snprintf(dst, room, "sendpipe_plugin_%s_%s%s %llu\n", pname, c->name,
                         has_total ? "" : "_total", (unsigned long long)c->value);
        if (n > 0) {
            total += (size_t)n;
        }
    }
    pthread_mutex_unlock(&counters_mu);
    return total;
}
