/* SPDX-License-Identifier: Apache-2.0 */
/* The core configuration: sendpipe.yaml into sp_config_t, with defaults,
 * ranges, path resolution and the useSend environment variables. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_core/conf.h"
#include "sp_core/log.h"

#ifndef SP_INSTALL_PLUGIN_DIR
#define SP_INSTALL_PLUGIN_DIR NULL
#endif
#ifndef SP_BUILD_PLUGIN_DIR
#define SP_BUILD_PLUGIN_DIR NULL
#endif

/* The one table of settings; docs/configuration.md lists the same rows. */
static const sp_setting_def_t g_settings[] = {
    {"public_url", "USESEND_DOMAIN", NULL, NULL, false, false,
     "Public base URL of this server (tracking links, webhooks, dashboard)."},
    {"secret", "NEXTAUTH_SECRET", NULL, NULL, true, false,
     "Secret that signs sessions and tracking URLs."},
    {"aws_access_key", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", NULL, false, false,
     "AWS access key id for SES."},
    {"aws_secret_key", "AWS_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", NULL, true, false,
     "AWS secret access key for SES."},
    {"aws_session_token", "AWS_SESSION_TOKEN", NULL, NULL, true, false,
     "AWS session token, for temporary credentials."},
    {"aws_region", "AWS_DEFAULT_REGION", NULL, NULL, false, false, "AWS region of SES."},
    {"github_id", "GITHUB_ID", NULL, NULL, false, false, "GitHub OAuth client id."},
    {"github_secret", "GITHUB_SECRET", NULL, NULL, true, false, "GitHub OAuth client secret."},
    {"google_client_id", "GOOGLE_CLIENT_ID", NULL, NULL, false, false,
     "Google OAuth client id."},
    {"google_client_secret", "GOOGLE_CLIENT_SECRET", NULL, NULL, true, false,
     "Google OAuth client secret."},
    {"api_rate_limit", "API_RATE_LIMIT", NULL, "100", false, true,
     "API requests per minute per key."},
    {"auth_email_rate_limit", "AUTH_EMAIL_RATE_LIMIT", NULL, NULL, false, true,
     "Sign-in emails per minute."},
    {"discord_webhook_url", "DISCORD_WEBHOOK_URL", NULL, NULL, true, false,
     "Discord webhook that receives alerts."},
};

#define NSETTINGS (sizeof(g_settings) / sizeof(g_settings[0]))

#define PLUGIN_NAME_MAX 64
#define MIN_MAP_SIZE ((uint64_t)1 << 20)
#define MAX_COUNT 100000

const sp_setting_def_t *sp__config_settings_table(size_t *n)
{
    if (n != NULL) {
        *n = NSETTINGS;
    }
    return g_settings;
}

/* ------------------------------------------------------------------------ */
/* Paths */

static bool is_dir(const char *p)
{
    struct stat st;

    return p != NULL && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Collapse "//", "." and ".." of an absolute path without touching the
 * file system. */
static char *path_normalize(const char *abs)
{
    size_t n = strlen(abs);
    char *out = malloc(n + 2);
    size_t o = 0;
    const char *p = abs;

    if (out == NULL) {
        return NULL;
    }
    while (*p != '\0') {
        const char *s;
        size_t len;

        while (*p == '/') {
            p++;
        }
        s = p;
        while (*p != '\0' && *p != '/') {
            p++;
        }
        len = (size_t)(p - s);
        if (len == 0 || (len == 1 && s[0] == '.')) {
            continue;
        }
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[o - 1] != '/') {
                o--;
            }
            if (o > 0) {
                o--; /* the slash before the dropped component */
            }
            continue;
        }
        out[o++] = '/';
        memcpy(out + o, s, len);
        o += len;
    }
    if (o == 0) {
        out[o++] = '/';
    }
    out[o] = '\0';
    return out;
}

/* base/p (or p if absolute), normalised. */
static char *path_resolve(const char *base, const char *p)
{
    char *joined;
    char *out;

    if (p[0] == '/') {
        return path_normalize(p);
    }
    if (asprintf(&joined, "%s/%s", base, p) < 0) {
        return NULL;
    }
    out = path_normalize(joined);
    free(joined);
    return out;
}

/* Absolute directory path: realpath when it exists, else the realpath of its
 * parent plus the last component, else a lexical normalisation. */
static char *path_resolve_real(const char *base, const char *p)
{
    char *abs = path_resolve(base, p);
    char *real;
    char *slash;
    char *out = NULL;

    if (abs == NULL) {
        return NULL;
    }
    real = realpath(abs, NULL);
    if (real != NULL) {
        free(abs);
        return real;
    }
    slash = strrchr(abs, '/');
    if (slash != NULL && slash != abs && slash[1] != '\0') {
        *slash = '\0';
        real = realpath(abs, NULL);
        if (real != NULL) {
            if (asprintf(&out, "%s%s%s", real, strcmp(real, "/") == 0 ? "" : "/",
                         slash + 1) < 0) {
                out = NULL;
            }
            free(real);
            free(abs);
            return out;
        }
        *slash = '/';
    }
    return abs;
}

static char *dir_of(const char *path)
{
    char *d = strdup(path);
    char *slash;

    if (d == NULL) {
        return NULL;
    }
    slash = strrchr(d, '/');
    if (slash == NULL) {
        free(d);
        return strdup(".");
    }
    if (slash == d) {
        slash[1] = '\0';
    } else {
        *slash = '\0';
    }
    return d;
}

static char *cwd_dup(void)
{
    char *c = getcwd(NULL, 0);

    return c != NULL ? c : strdup("/");
}

/* The plugin directory when the YAML does not name one: $SP_PLUGIN_DIR, the
 * "plugins" directory beside the executable, the install directory, the
 * build directory; the first that exists, else the first configured. */
static char *default_plugin_dir(void)
{
    const char *env = getenv("SP_PLUGIN_DIR");
    const char *install = SP_INSTALL_PLUGIN_DIR;
    const char *build = SP_BUILD_PLUGIN_DIR;
    char exe[PATH_MAX];
    char *beside = NULL;
    char *out = NULL;
    ssize_t n;

    if (env != NULL && env[0] != '\0') {
        char *cwd = cwd_dup();

        if (cwd == NULL) {
            return NULL;
        }
        out = path_resolve(cwd, env);
        free(cwd);
        return out;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *d;

        exe[n] = '\0';
        d = dir_of(exe);
        if (d != NULL && asprintf(&beside, "%s/plugins", d) < 0) {
            beside = NULL;
        }
        free(d);
    }
    if (is_dir(beside)) {
        return beside;
    }
    if (is_dir(install)) {
        out = strdup(install);
    } else if (is_dir(build)) {
        out = strdup(build);
    } else if (install != NULL) {
        out = strdup(install);
    } else if (build != NULL) {
        out = strdup(build);
    } else if (beside != NULL) {
        return beside;
    } else {
        out = strdup("/usr/local/lib/sendpipe/plugins");
    }
    free(beside);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Sections */

typedef struct top_conf {
    char *data_dir;
    char *plugin_dir;
    uint64_t shutdown_grace;
} top_conf_t;

static const sp_conf_item_t g_top_schema[] = {
    {SP_CONF_STR, "data_dir", offsetof(top_conf_t, data_dir), "data", 0,
     "Directory of the store, relative to the config file."},
    {SP_CONF_STR, "plugin_dir", offsetof(top_conf_t, plugin_dir), NULL, 0,
     "Directory searched for NAME.so."},
    {SP_CONF_DURATION, "shutdown_grace", offsetof(top_conf_t, shutdown_grace), "10s", 0,
     "How long a shutdown waits for work in flight."},
    {0},
};

static const char *const g_top_sections[] = {"log",      "store",   "scheduler", "webhooks",
                                             "settings", "plugins", NULL};

typedef struct log_conf {
    char *level;
    char *file;
} log_conf_t;

static const sp_conf_item_t g_log_schema[] = {
    {SP_CONF_STR, "level", offsetof(log_conf_t, level), "info", 0,
     "error, warn, info or debug."},
    {SP_CONF_STR, "file", offsetof(log_conf_t, file), NULL, 0,
     "Log file; absent or \"-\" for stderr."},
    {0},
};

typedef struct store_conf {
    uint64_t map_size;
    bool sync;
    int64_t max_batch;
} store_conf_t;

static const sp_conf_item_t g_store_schema[] = {
    {SP_CONF_SIZE, "map_size", offsetof(store_conf_t, map_size), "1G", 0,
     "Largest size the store may grow to."},
    {SP_CONF_BOOL, "sync", offsetof(store_conf_t, sync), "true", 0,
     "fsync every commit (turn off only for tests and benchmarks)."},
    {SP_CONF_INT, "max_batch", offsetof(store_conf_t, max_batch), "1024", 0,
     "Most requests that share one commit."},
    {0},
};

typedef struct sched_conf {
    int64_t concurrency;
    uint64_t retry_base;
    uint64_t retry_max;
    uint64_t max_age;
} sched_conf_t;

static const sp_conf_item_t g_sched_schema[] = {
    {SP_CONF_INT, "concurrency", offsetof(sched_conf_t, concurrency), "64", 0,
     "Deliveries in flight."},
    {SP_CONF_DURATION, "retry_base", offsetof(sched_conf_t, retry_base), "30s", 0,
     "First retry delay; doubles on each attempt."},
    {SP_CONF_DURATION, "retry_max", offsetof(sched_conf_t, retry_max), "1h", 0,
     "Longest retry delay."},
    {SP_CONF_DURATION, "max_age", offsetof(sched_conf_t, max_age), "24h", 0,
     "A message still undelivered after this long fails."},
    {0},
};

typedef struct wh_conf {
    uint64_t retry_base;
    uint64_t retry_max;
    int64_t attempts;
    int64_t disable_after;
    uint64_t timeout;
    uint64_t retention;
} wh_conf_t;

static const sp_conf_item_t g_wh_schema[] = {
    {SP_CONF_DURATION, "retry_base", offsetof(wh_conf_t, retry_base), "10s", 0,
     "First webhook retry delay; doubles on each attempt, with jitter."},
    {SP_CONF_DURATION, "retry_max", offsetof(wh_conf_t, retry_max), "10m", 0,
     "Longest webhook retry delay."},
    {SP_CONF_INT, "attempts", offsetof(wh_conf_t, attempts), "6", 0,
     "Attempts per webhook call before it is FAILED."},
    {SP_CONF_INT, "disable_after", offsetof(wh_conf_t, disable_after), "30", 0,
     "Consecutive FAILED calls after which a webhook is AUTO_DISABLED."},
    {SP_CONF_DURATION, "timeout", offsetof(wh_conf_t, timeout), "10s", 0,
     "Time limit of one webhook request."},
    {SP_CONF_DURATION, "retention", offsetof(wh_conf_t, retention), "7d", 0,
     "How long finished webhook calls stay in the delivery log."},
    {0},
};

typedef struct plug_conf {
    char *name;
    char *path;
    int64_t priority;
    uint64_t timeout;
} plug_conf_t;

static const sp_conf_item_t g_plug_schema[] = {
    {SP_CONF_STR, "name", offsetof(plug_conf_t, name), NULL, SP_CONF_REQUIRED,
     "Plugin name, [a-z0-9_]+."},
    {SP_CONF_STR, "path", offsetof(plug_conf_t, path), NULL, 0,
     "Shared object; default PLUGIN_DIR/NAME.so."},
    {SP_CONF_INT, "priority", offsetof(plug_conf_t, priority), "0", 0,
     "Order inside a stage, -100..100, lower first."},
    {SP_CONF_DURATION, "timeout", offsetof(plug_conf_t, timeout), "30s", 0,
     "How long a hook may stay suspended."},
    {0},
};

static const char *const g_plug_skip[] = {"config", NULL};

typedef struct build {
    sp_config_t *cfg;
    const char *fname; /* for messages */
    const char *base;  /* directory relative paths resolve against */
    char *err;
    size_t errlen;
} build_t;

static int oom(build_t *b)
{
    sp__conf_error(b->err, b->errlen, b->fname, 0, 0, NULL, "out of memory");
    return SP_ENOMEM;
}

/* Range check of an integer already parsed from `key` of `map`. */
static int check_range(build_t *b, const sp_node_t *map, const char *path, const char *key,
                       int64_t v, int64_t lo, int64_t hi)
{
    const sp_node_t *n;
    char kp[128];

    if (v >= lo && v <= hi) {
        return 0;
    }
    n = sp__conf_get(map, key);
    snprintf(kp, sizeof(kp), "%s.%s", path, key);
    sp__conf_error(b->err, b->errlen, b->fname, n ? n->line : 0, n ? n->col : 0, kp,
                   "must be between %lld and %lld, got %lld", (long long)lo, (long long)hi,
                   (long long)v);
    return SP_ECONFIG;
}

static int section_log(build_t *b, const sp_node_t *map)
{
    log_conf_t lc = {0};
    int rc;
    int lvl;

    rc = sp__conf_apply_schema(map, b->fname, "log", g_log_schema, &lc, b->err, b->errlen);
    if (rc < 0) {
        return rc;
    }
    lvl = sp__log_level_parse(lc.level);
    if (lvl < 0) {
        const sp_node_t *n = sp__conf_get(map, "level");
        char q[400];

        sp__conf_quote(q, sizeof(q), lc.level);
        sp__conf_error(b->err, b->errlen, b->fname, n ? n->line : 0, n ? n->col : 0,
                       "log.level", "expected one of error, warn, info, debug, got %s", q);
        rc = SP_ECONFIG;
        goto out;
    }
    b->cfg->log_level = (sp_log_level_t)lvl;
    if (lc.file != NULL && lc.file[0] != '\0' && strcmp(lc.file, "-") != 0) {
        b->cfg->log_file = path_resolve(b->base, lc.file);
        if (b->cfg->log_file == NULL) {
            rc = oom(b);
        }
    }
out:
    sp__conf_schema_free(g_log_schema, &lc);
    return rc;
}

static int section_store(build_t *b, const sp_node_t *map)
{
    store_conf_t sc = {0};
    int rc;

    rc = sp__conf_apply_schema(map, b->fname, "store", g_store_schema, &sc, b->err, b->errlen);
    if (rc < 0) {
        return rc;
    }
    if (sc.map_size < MIN_MAP_SIZE) {
        const sp_node_t *n = sp__conf_get(map, "map_size");

        sp__conf_error(b->err, b->errlen, b->fname, n ? n->line : 0, n ? n->col : 0,
                       "store.map_size", "must be at least 1M, got %llu bytes",
                       (unsigned long long)sc.map_size);
        return SP_ECONFIG;
    }
    rc = check_range(b, map, "store", "max_batch", sc.max_batch, 1, MAX_COUNT);
    if (rc < 0) {
        return rc;
    }
    b->cfg->map_size = sc.map_size;
    b->cfg->sync = sc.sync;
    b->cfg->max_batch = (uint32_t)sc.max_batch;
    return 0;
}

static int section_scheduler(build_t *b, const sp_node_t *map)
{
    sched_conf_t sc = {0};
    int rc;

    rc = sp__conf_apply_schema(map, b->fname, "scheduler", g_sched_schema, &sc, b->err,
                               b->errlen);
    if (rc < 0) {
        return rc;
    }
    rc = check_range(b, map, "scheduler", "concurrency", sc.concurrency, 1, MAX_COUNT);
    if (rc < 0) {
        return rc;
    }
    if (sc.retry_base == 0 || sc.retry_base > sc.retry_max) {
        const sp_node_t *n = sp__conf_get(map, "retry_base");

        if (n == NULL) {
            n = sp__conf_get(map, "retry_max");
        }
        sp__conf_error(b->err, b->errlen, b->fname, n ? n->line : 0, n ? n->col : 0,
                       "scheduler.retry_base",
                       "must be more than 0 and not more than scheduler.retry_max");
        return SP_ECONFIG;
    }
    b->cfg->concurrency = (uint32_t)sc.concurrency;
    b->cfg->retry_base_ms = sc.retry_base;
    b->cfg->retry_max_ms = sc.retry_max;
    b->cfg->max_age_ms = sc.max_age;
    return 0;
}

static int section_webhooks(build_t *b, const sp_node_t *map)
{
    wh_conf_t wc = {0};
    int rc;

    rc = sp__conf_apply_schema(map, b->fname, "webhooks", g_wh_schema, &wc, b->err, b->errlen);
    if (rc == 0) {
        rc = check_range(b, map, "webhooks", "attempts", wc.attempts, 1, 100);
    }
    if (rc == 0) {
        rc = check_range(b, map, "webhooks", "disable_after", wc.disable_after, 1, MAX_COUNT);
    }
    if (rc < 0) {
        return rc;
    }
    if (wc.retry_base == 0 || wc.retry_base > wc.retry_max || wc.timeout == 0) {
        const sp_node_t *n = sp__conf_get(map, wc.timeout == 0 ? "timeout" : "retry_base");

        sp__conf_error(b->err, b->errlen, b->fname, n ? n->line : 0, n ? n->col : 0,
                       wc.timeout == 0 ? "webhooks.timeout" : "webhooks.retry_base",
                       wc.timeout == 0 ? "must be more than 0"
                                       : "must be more than 0 and not more than "
                                         "webhooks.retry_max");
        return SP_ECONFIG;
    }
    b->cfg->wh_retry_base_ms = wc.retry_base;
    b->cfg->wh_retry_max_ms = wc.retry_max;
    b->cfg->wh_attempts = (uint32_t)wc.attempts;
    b->cfg->wh_disable_after = (uint32_t)wc.disable_after;
    b->cfg->wh_timeout_ms = wc.timeout;
    b->cfg->wh_retention_ms = wc.retention;
    return 0;
}

static bool is_nonneg_int(const char *s)
{
    int64_t v;

    return sp__conf_parse_int(s, &v) == 0 && v >= 0;
}

static int section_settings(build_t *b, const sp_node_t *map)
{
    sp_config_t *cfg = b->cfg;
    const sp_node_t *c;
    char kp[256];
    char q[400];

    cfg->settings = calloc(NSETTINGS, sizeof(*cfg->settings));
    if (cfg->settings == NULL) {
        return oom(b);
    }
    cfg->nsettings = NSETTINGS;
    for (size_t i = 0; i < NSETTINGS; i++) {
        cfg->settings[i].key = g_settings[i].key;
        cfg->settings[i].env = g_settings[i].env;
        cfg->settings[i].secret = g_settings[i].secret;
    }
    if (map != NULL && sp__conf_is_null(map)) {
        map = NULL;
    }
    if (map != NULL && map->type != SP_NODE_MAP) {
        sp__conf_error(b->err, b->errlen, b->fname, map->line, map->col, "settings",
                       "expected a map");
        return SP_ECONFIG;
    }
    for (c = map ? map->child : NULL; c != NULL; c = c->next) {
        size_t i;

        sp__conf_quote(q, sizeof(q), c->key);
        snprintf(kp, sizeof(kp), "settings.%.*s", (int)strlen(q) - 2, q + 1);
        for (i = 0; i < NSETTINGS; i++) {
            if (strcmp(g_settings[i].key, c->key) == 0) {
                break;
            }
        }
        if (i == NSETTINGS) {
            sp__conf_error(b->err, b->errlen, b->fname, c->key_line, c->key_col, kp,
                           "unknown setting");
            return SP_ECONFIG;
        }
        if (sp__conf_is_null(c)) {
            continue;
        }
        if (c->type != SP_NODE_SCALAR) {
            sp__conf_error(b->err, b->errlen, b->fname, c->line, c->col, kp,
                           "expected a string");
            return SP_ECONFIG;
        }
        if (g_settings[i].integer && !is_nonneg_int(c->value)) {
            sp__conf_quote(q, sizeof(q), c->value);
            sp__conf_error(b->err, b->errlen, b->fname, c->line, c->col, kp,
                           "expected a non-negative integer, got %s", q);
            return SP_ECONFIG;
        }
        cfg->settings[i].value = strdup(c->value);
        if (cfg->settings[i].value == NULL) {
            return oom(b);
        }
    }
    /* The YAML wins; the environment fills what it left unset. */
    for (size_t i = 0; i < NSETTINGS; i++) {
        const sp_setting_def_t *d = &g_settings[i];
        const char *v;
        const char *from = d->env;

        if (cfg->settings[i].value != NULL) {
            continue;
        }
        v = getenv(d->env);
        if ((v == NULL || v[0] == '\0') && d->env_alt != NULL) {
            from = d->env_alt;
            v = getenv(d->env_alt);
        }
        if (v == NULL || v[0] == '\0') {
            v = d->def;
            from = NULL;
        }
        if (v == NULL) {
            continue;
        }
        if (from != NULL && d->integer && !is_nonneg_int(v)) {
            sp__conf_quote(q, sizeof(q), v);
            sp__conf_error(b->err, b->errlen, b->fname, 0, 0, NULL,
                           "environment variable %s (setting '%s'): expected a non-negative "
                           "integer, got %s",
                           from, d->key, q);
            return SP_ECONFIG;
        }
        cfg->settings[i].value = strdup(v);
        if (cfg->settings[i].value == NULL) {
            return oom(b);
        }
    }
    return 0;
}

static bool valid_plugin_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > PLUGIN_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

static int one_plugin(build_t *b, const sp_node_t *item, size_t idx, sp_plugin_conf_t *pc)
{
    plug_conf_t p = {0};
    const sp_node_t *n;
    const sp_node_t *conf;
    char path[64];
    char kp[96];
    char q[400];
    int rc;

    snprintf(path, sizeof(path), "plugins[%zu]", idx);
    pc->line = item->line;
    pc->col = item->col;
    if (item->type != SP_NODE_MAP) {
        sp__conf_error(b->err, b->errlen, b->fname, item->line, item->col, path,
                       "expected a map with at least 'name', got %s",
                       item->type == SP_NODE_SEQ ? "a list" : "a scalar");
        return SP_ECONFIG;
    }
    rc = sp__conf_apply_schema_ex(item, b->fname, item->line, item->col, path, g_plug_schema,
                                  g_plug_skip, &p, b->err, b->errlen);
    if (rc < 0) {
        return rc;
    }
    n = sp__conf_get(item, "name");
    snprintf(kp, sizeof(kp), "%s.name", path);
    if (!valid_plugin_name(p.name)) {
        sp__conf_quote(q, sizeof(q), p.name);
        sp__conf_error(b->err, b->errlen, b->fname, n->line, n->col, kp,
                       "plugin names are 1 to %d characters of [a-z0-9_], got %s",
                       PLUGIN_NAME_MAX, q);
        rc = SP_ECONFIG;
        goto out;
    }
    for (size_t i = 0; i < idx; i++) {
        if (strcmp(b->cfg->plugins[i].name, p.name) == 0) {
            sp__conf_error(b->err, b->errlen, b->fname, n->line, n->col, kp,
                           "duplicate plugin name '%s' (first at line %d)", p.name,
                           b->cfg->plugins[i].line);
            rc = SP_ECONFIG;
            goto out;
        }
    }
    rc = check_range(b, item, path, "priority", p.priority, -100, 100);
    if (rc < 0) {
        goto out;
    }
    if (p.timeout == 0) {
        n = sp__conf_get(item, "timeout");
        snprintf(kp, sizeof(kp), "%s.timeout", path);
        sp__conf_error(b->err, b->errlen, b->fname, n ? n->line : 0, n ? n->col : 0, kp,
                       "must be more than 0");
        rc = SP_ECONFIG;
        goto out;
    }
    conf = sp__conf_get(item, "config");
    if (conf != NULL && !sp__conf_is_null(conf) && conf->type != SP_NODE_MAP) {
        snprintf(kp, sizeof(kp), "%s.config", path);
        sp__conf_error(b->err, b->errlen, b->fname, conf->line, conf->col, kp,
                       "expected a map, got %s",
                       conf->type == SP_NODE_SEQ ? "a list" : "a scalar");
        rc = SP_ECONFIG;
        goto out;
    }
    pc->config = (conf != NULL && conf->type == SP_NODE_MAP) ? conf : NULL;
    if (p.path != NULL && p.path[0] != '\0') {
        pc->path = path_resolve(b->base, p.path);
        if (pc->path == NULL) {
            rc = oom(b);
            goto out;
        }
    }
    pc->name = p.name;
    p.name = NULL;
    pc->priority = (int)p.priority;
    pc->timeout_ms = p.timeout;
out:
    sp__conf_schema_free(g_plug_schema, &p);
    return rc;
}

static int section_plugins(build_t *b, const sp_node_t *seq)
{
    const sp_node_t *c;
    size_t i = 0;
    int rc;

    if (seq == NULL || sp__conf_is_null(seq)) {
        return 0;
    }
    if (seq->type != SP_NODE_SEQ) {
        sp__conf_error(b->err, b->errlen, b->fname, seq->line, seq->col, "plugins",
                       "expected a list of plugins");
        return SP_ECONFIG;
    }
    if (seq->n == 0) {
        return 0;
    }
    b->cfg->plugins = calloc(seq->n, sizeof(*b->cfg->plugins));
    if (b->cfg->plugins == NULL) {
        return oom(b);
    }
    for (c = seq->child; c != NULL; c = c->next, i++) {
        /* Count first, so a failing entry is freed with the others. */
        b->cfg->nplugins = i + 1;
        rc = one_plugin(b, c, i, &b->cfg->plugins[i]);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* Fill cfg from its tree (cfg->root, cfg->file already set). */
static int config_build(build_t *b)
{
    sp_config_t *cfg = b->cfg;
    const sp_node_t *root = cfg->root;
    top_conf_t top = {0};
    int rc;

    if (sp__conf_is_null(root)) {
        root = NULL; /* a document holding only "---" */
    } else if (root->type != SP_NODE_MAP) {
        sp__conf_error(b->err, b->errlen, b->fname, root->line, root->col, NULL,
                       "the configuration must be a map of settings");
        return SP_ECONFIG;
    }
    rc = sp__conf_apply_schema_ex(root, b->fname, 1, 1, NULL, g_top_schema, g_top_sections,
                                  &top, b->err, b->errlen);
    if (rc < 0) {
        return rc;
    }
    if (top.data_dir == NULL || top.data_dir[0] == '\0') {
        const sp_node_t *n = sp__conf_get(root, "data_dir");

        sp__conf_error(b->err, b->errlen, b->fname, n ? n->line : 0, n ? n->col : 0,
                       "data_dir", "must not be empty");
        rc = SP_ECONFIG;
        goto out;
    }
    cfg->data_dir = path_resolve_real(b->base, top.data_dir);
    if (cfg->data_dir == NULL) {
        rc = oom(b);
        goto out;
    }
    if (top.plugin_dir != NULL && top.plugin_dir[0] != '\0') {
        cfg->plugin_dir = path_resolve(b->base, top.plugin_dir);
    } else {
        cfg->plugin_dir = default_plugin_dir();
    }
    if (cfg->plugin_dir == NULL) {
        rc = oom(b);
        goto out;
    }
    cfg->shutdown_grace_ms = top.shutdown_grace;
    rc = section_log(b, sp__conf_get(root, "log"));
    if (rc == 0) {
        rc = section_store(b, sp__conf_get(root, "store"));
    }
    if (rc == 0) {
        rc = section_scheduler(b, sp__conf_get(root, "scheduler"));
    }
    if (rc == 0) {
        rc = section_webhooks(b, sp__conf_get(root, "webhooks"));
    }
    if (rc == 0) {
        rc = section_settings(b, sp__conf_get(root, "settings"));
    }
    if (rc == 0) {
        rc = section_plugins(b, sp__conf_get(root, "plugins"));
    }
out:
    sp__conf_schema_free(g_top_schema, &top);
    return rc;
}

static int config_from_tree(sp_node_t *root, const char *fname, const char *abs_file,
                            const char *base, sp_config_t **out, char *err, size_t errlen)
{
    sp_config_t *cfg = calloc(1, sizeof(*cfg));
    build_t b = {cfg, fname, base, err, errlen};
    int rc;

    if (cfg == NULL) {
        sp__conf_free(root);
        return oom(&b);
    }
    cfg->root = root;
    cfg->file = strdup(abs_file);
    if (cfg->file == NULL) {
        rc = oom(&b);
    } else {
        rc = config_build(&b);
    }
    if (rc < 0) {
        sp__config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int sp__config_parse(const char *buf, size_t len, const char *fname, const char *base_dir,
                     sp_config_t **out, char *err, size_t errlen)
{
    sp_node_t *root = NULL;
    char *base;
    char *abs = NULL;
    int rc;

    *out = NULL;
    if (fname == NULL) {
        fname = "<config>";
    }
    rc = sp__conf_parse(buf, len, fname, &root, err, errlen);
    if (rc < 0) {
        return rc;
    }
    base = cwd_dup();
    if (base != NULL && base_dir != NULL) {
        char *cwd = base;

        base = path_resolve_real(cwd, base_dir);
        free(cwd);
    }
    if (base != NULL) {
        abs = path_resolve(base, fname);
    }
    if (base == NULL || abs == NULL) {
        free(base);
        sp__conf_free(root);
        sp__conf_error(err, errlen, fname, 0, 0, NULL, "out of memory");
        return SP_ENOMEM;
    }
    rc = config_from_tree(root, fname, abs, base, out, err, errlen);
    free(abs);
    free(base);
    return rc;
}

int sp__config_load(const char *path, sp_config_t **out, char *err, size_t errlen)
{
    sp_node_t *root = NULL;
    char *abs;
    char *base;
    int rc;

    *out = NULL;
    abs = realpath(path, NULL);
    if (abs == NULL) {
        rc = -errno;
        sp__conf_error(err, errlen, path, 0, 0, NULL, "cannot open: %s", sp__strerror(rc));
        return rc;
    }
    base = dir_of(abs);
    if (base == NULL) {
        free(abs);
        sp__conf_error(err, errlen, path, 0, 0, NULL, "out of memory");
        return SP_ENOMEM;
    }
    rc = sp__conf_load(path, &root, err, errlen);
    if (rc == 0) {
        rc = config_from_tree(root, path, abs, base, out, err, errlen);
    }
    free(base);
    free(abs);
    return rc;
}

void sp__config_free(sp_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free(cfg->file);
    free(cfg->data_dir);
    free(cfg->plugin_dir);
    free(cfg->log_file);
    for (size_t i = 0; i < cfg->nsettings; i++) {
        free(cfg->settings[i].value);
    }
    free(cfg->settings);
    for (size_t i = 0; i < cfg->nplugins; i++) {
        free(cfg->plugins[i].name);
        free(cfg->plugins[i].path);
    }
    free(cfg->plugins);
    sp__conf_free(cfg->root);
    free(cfg);
}

const char *sp__config_setting(const sp_config_t *cfg, const char *key)
{
    if (cfg == NULL || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < cfg->nsettings; i++) {
        if (strcmp(cfg->settings[i].key, key) == 0) {
            return cfg->settings[i].value;
        }
    }
    return NULL;
}
