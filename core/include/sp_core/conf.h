/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration: YAML (libyaml) into a neutral tree with positions, ${VAR}
 * substitution, schema validation for the core and for plugins. */
#ifndef SP_CORE_CONF_H
#define SP_CORE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

typedef enum { SP_NODE_SCALAR = 1, SP_NODE_MAP, SP_NODE_SEQ } sp_node_type_t;

/* A YAML node. Children of a map carry their key in `key`. Positions are
 * 1-based. Scalars have had ${VAR} / ${VAR:-default} substituted. */
typedef struct sp_node {
    sp_node_type_t type;
    char *key;             /* key when the node is a map member, else NULL */
    char *value;           /* scalar text (after substitution), else NULL */
    bool quoted;           /* scalar was quoted in the YAML */
    int line, col;         /* position of the value */
    int key_line, key_col; /* position of the key (map members) */
    struct sp_node *child; /* first child (map, seq) */
    struct sp_node *next;  /* next sibling */
    size_t n;              /* number of children */
    const char *file;      /* file name, shared by all nodes of a tree */
} sp_node_t;

/* Parse YAML text into a tree. Errors: one line "FILE:LINE:COL: reason" in
 * err. Returns 0 or SP_ECONFIG. Anchors/aliases and multiple documents are
 * refused; duplicate map keys are an error; an undefined ${VAR} without a
 * default is an error naming the variable ("$${" is a literal "${"; a
 * default is used when the variable is unset or empty). Explicit tags and
 * non-scalar keys are refused too. Limits: 1 MiB of input, nesting 32 deep,
 * 100000 nodes. An empty document is an empty map. `quoted` is true for every
 * non-plain style (quoted and block scalars). SP_ENOMEM when memory runs out;
 * sp__conf_free(*root) releases the tree. */
int sp__conf_parse(const char *buf, size_t len, const char *fname, sp_node_t **root, char *err,
                   size_t errlen);
/* Read a file (regular, at most 1 MiB) and parse it; open/read failures are
 * -errno with "PATH: cannot open: reason" in err. */
int sp__conf_load(const char *path, sp_node_t **root, char *err, size_t errlen);
void sp__conf_free(sp_node_t *root);
/* Member of a map by key, or NULL. */
sp_node_t *sp__conf_get(const sp_node_t *map, const char *key);

/* True if n is absent or a plain (unquoted) null scalar: empty, "~" or
 * "null"/"Null"/"NULL". Such a value counts as "not set". */
bool sp__conf_is_null(const sp_node_t *n);

/* Write one error line "FILE:LINE:COL: key 'PATH': reason" into err. line <= 0
 * drops the position, an empty or NULL path drops the key part. */
void sp__conf_error(char *err, size_t errlen, const char *file, int line, int col,
                    const char *path, const char *fmt, ...) SP_PRINTF(7, 8);
/* s as a double-quoted, JSON-escaped string for messages, cut at 64 bytes
 * with "..." (out should hold at least 400 bytes to never cut shorter). */
void sp__conf_quote(char *out, size_t outlen, const char *s);

/* Value parsers used by schemas; 0 or SP_EINVAL. */
int sp__conf_parse_bool(const char *s, bool *out);
int sp__conf_parse_int(const char *s, int64_t *out);
int sp__conf_parse_size(const char *s, uint64_t *out);     /* 512, 64K, 10M, 1G, 1T */
int sp__conf_parse_duration(const char *s, uint64_t *ms);  /* 250ms, 30s, 5m, 2h, 1d, bare = s */

/* Validate a map node against a plugin schema and fill a zeroed struct.
 * `path` names the map in messages (e.g. "plugins[2].config"). `map` may be
 * NULL (no config block: defaults apply). Unknown keys, wrong types and
 * missing required keys are errors "FILE:LINE:COL: key 'PATH.KEY': reason".
 * Strings are allocated with malloc; release them with sp__conf_schema_free. */
int sp__conf_apply_schema(const sp_node_t *map, const char *file, const char *path,
                          const sp_conf_item_t *schema, void *out, char *err, size_t errlen);
void sp__conf_schema_free(const sp_conf_item_t *schema, void *out);
/* As sp__conf_apply_schema, plus: `line`/`col` is the position blamed when
 * `map` is NULL (e.g. the plugin entry of a missing `config:`; line 0 for
 * none), and `skip` is NULL or a NULL-terminated list of keys the caller
 * handles itself (they are neither unknown nor validated). On error every
 * string already stored is freed and its pointer reset to NULL. Returns 0,
 * SP_ECONFIG or SP_ENOMEM. */
int sp__conf_apply_schema_ex(const sp_node_t *map, const char *file, int line, int col,
                             const char *path, const sp_conf_item_t *schema,
                             const char *const *skip, void *out, char *err, size_t errlen);

/* One plugin entry of the YAML `plugins:` list. */
typedef struct sp_plugin_conf {
    char *name;          /* required */
    char *path;          /* optional; default PLUGIN_DIR/NAME.so */
    int priority;        /* -100..100, default 0 */
    uint64_t timeout_ms; /* hook timeout, default 30s */
    const sp_node_t *config; /* the `config:` map or NULL (borrowed from root) */
    int line, col;
} sp_plugin_conf_t;

/* Global settings, mostly the useSend environment variables (DESIGN §8). */
typedef struct sp_setting {
    const char *key;  /* "public_url" */
    const char *env;  /* "USESEND_DOMAIN" */
    char *value;      /* NULL when unset */
    bool secret;      /* never logged */
} sp_setting_t;

/* One row of the settings table: the YAML key under `settings:`, the
 * environment variables that fill it when the YAML leaves it unset (env, then
 * env_alt; an empty variable counts as unset), and its default. */
typedef struct sp_setting_def {
    const char *key;
    const char *env;
    const char *env_alt;     /* NULL if none */
    const char *def;         /* NULL if none */
    bool secret;             /* never logged or echoed in errors */
    bool integer;            /* must be a non-negative decimal integer */
    const char *description; /* one sentence for docs and `sendpipe --help` */
} sp_setting_def_t;

/* The settings table (static, in the order of sp_config_t.settings). */
const sp_setting_def_t *sp__config_settings_table(size_t *n);

typedef struct sp_config {
    char *file;       /* path it was loaded from (absolute) */
    char *data_dir;   /* absolute */
    char *plugin_dir; /* absolute; default: the build's plugin dir */
    char *log_file;   /* NULL = stderr */
    sp_log_level_t log_level;
    /* store */
    uint64_t map_size;  /* bytes, default 1G */
    bool sync;          /* fsync each commit (default true) */
    uint32_t max_batch; /* max requests per group commit, default 1024 */
    /* scheduler */
    uint32_t concurrency;   /* deliveries in flight, default 64 */
    uint64_t retry_base_ms; /* default 30s */
    uint64_t retry_max_ms;  /* default 1h */
    uint64_t max_age_ms;    /* default 24h */
    /* lifecycle */
    uint64_t shutdown_grace_ms; /* default 10s */
    /* outgoing webhooks (section `webhooks:`) */
    uint64_t wh_retry_base_ms;  /* first retry delay, doubling; default 10s */
    uint64_t wh_retry_max_ms;   /* longest retry delay; default 10m */
    uint32_t wh_attempts;       /* attempts per call; default 6 */
    uint32_t wh_disable_after;  /* consecutive failed calls that disable; default 30 */
    uint64_t wh_timeout_ms;     /* per request; default 10s */
    uint64_t wh_retention_ms;   /* finished calls kept this long; default 7d */
    /* settings */
    sp_setting_t *settings;
    size_t nsettings;
    /* plugins in YAML order */
    sp_plugin_conf_t *plugins;
    size_t nplugins;
    sp_node_t *root;
} sp_config_t;

/* Load and validate the core configuration. Unknown keys are errors. Relative
 * paths are resolved against the config file's directory. Environment
 * variables of DESIGN §8 fill settings the YAML leaves unset. */
int sp__config_load(const char *path, sp_config_t **out, char *err, size_t errlen);
/* Same from a buffer (tests, fuzzing); base_dir resolves relative paths. */
int sp__config_parse(const char *buf, size_t len, const char *fname, const char *base_dir,
                     sp_config_t **out, char *err, size_t errlen);
void sp__config_free(sp_config_t *cfg);
/* Value of a setting by key, or NULL. */
const char *sp__config_setting(const sp_config_t *cfg, const char *key);

#endif
