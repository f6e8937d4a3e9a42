/* SPDX-License-Identifier: Apache-2.0 */
/** @file sp_plugin.h
 * The sendpipe plugin SDK: the only header a plugin includes.
 *
 * A plugin is a shared object that exports one symbol, `sp_plugin_desc`, a
 * constant descriptor made with SP_PLUGIN_DEFINE(). The core checks the
 * descriptor (ABI major equal, ABI minor not newer than the host, size large
 * enough, reserved slots NULL, name equal to the configured name) before any
 * plugin code runs, validates the plugin's `config:` block against the
 * descriptor's schema, fills a zeroed config struct, calls `conf_check`, then
 * `init` with the host API table. Plugins link against nothing of the core:
 * every call into sendpipe goes through that table.
 *
 * Ownership rules (they hold for every function below unless its comment says
 * otherwise):
 *  1. The core owns every sp_txn_t, sp_msg_t handed to a hook, and every
 *     string it returns. Such pointers are borrowed: valid until the hook
 *     returns, or, when the hook returned SP_PENDING, until the token is
 *     resumed or cancelled.
 *  2. Data passed into the core as `const` pointers is copied if kept; the
 *     caller keeps ownership.
 *  3. Buffers the core returns to the plugin with "caller frees" (kv_get,
 *     msg_encode) come from api->alloc and must be released with api->free.
 *  4. Plugin-global state is created in `init` (returned through `ctx`) and
 *     released in `fini`.
 *  5. Per-message plugin state is attached with txn_set_data(); the core
 *     calls its free function exactly once when the transaction ends.
 *
 * Threads: unless a comment says "any thread", a function may be called only
 * on the loop thread, i.e. from a hook, a callback the core invoked, or
 * `init`/`fini`. Work handed to queue_work() runs on a pool thread and may
 * call only functions marked "any thread".
 *
 * Errors: functions that can fail return int, 0 on success, a negative
 * -errno or SP_E* code (sp_errno.h) on failure. If a function that takes a
 * callback fails, that callback is never called.
 */
#ifndef SP_SP_PLUGIN_H
#define SP_SP_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_errno.h"

#ifdef __cplusplus
extern "C" {
#endif

/** ABI major: the loader requires equality. */
#define SP_ABI_MAJOR 1
/** ABI minor: the loader requires plugin minor <= host minor. Each member
 * appended to sp_host_api_t bumps it. */
#define SP_ABI_MINOR 3

/** Version of the SDK (and of the sendpipe release it ships with). */
#define SP_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define SP_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define SP_EXPORT __attribute__((visibility("default")))
#else
#define SP_PRINTF(fmt_idx, arg_idx)
#define SP_EXPORT
#endif

/* ------------------------------------------------------------------------ */
/** @name Verdicts, stages, statuses */

/** What a stage hook decides. Meaning per stage is in docs/architecture.md
 * ("stage table"); in short: */
typedef enum {
    SP_CONTINUE = 0, /**< no objection: next hook of this stage */
    SP_ACCEPT = 1,   /**< stage satisfied: skip the rest of this stage (egress: sent) */
    SP_REJECT = 2,   /**< permanent failure: HTTP 4xx / SMTP 5xx, or a final failed status */
    SP_DEFER = 3,    /**< temporary failure: HTTP 429/503 / SMTP 4xx, or retry later */
    SP_DROP = 4,     /**< accepted and recorded, never delivered (e.g. suppressed) */
    SP_PENDING = 5,  /**< not a verdict: the hook called suspend() and will resume */
    SP_VERDICT__COUNT
} sp_verdict_t;

/** Decision stages, in pipeline order. */
typedef enum {
    SP_STAGE_ACCEPT = 0,    /**< per submission, before the durable commit and the ack */
    SP_STAGE_RENDER = 1,    /**< at due time: template variables */
    SP_STAGE_TRANSFORM = 2, /**< after render: tracking, List-Unsubscribe */
    SP_STAGE_SIGN = 3,      /**< after transform: DKIM */
    SP_STAGE_EGRESS = 4,    /**< last: hand the message to a provider */
    SP_STAGE__COUNT
} sp_stage_t;

/** Message statuses (useSend's 14), in precedence order: a new status replaces
 * the current one only if it ranks higher, or if the current is SCHEDULED. */
typedef enum {
    SP_ST_SCHEDULED = 0,
    SP_ST_CANCELLED,
    SP_ST_RENDERING_FAILURE,
    SP_ST_QUEUED,
    SP_ST_SENT,
    SP_ST_REJECTED,
    SP_ST_DELIVERY_DELAYED,
    SP_ST_DELIVERED,
    SP_ST_BOUNCED,
    SP_ST_OPENED,
    SP_ST_CLICKED,
    SP_ST_COMPLAINED,
    SP_ST_FAILED,
    SP_ST_SUPPRESSED,
    SP_ST__COUNT
} sp_status_t;

/** Log levels. */
typedef enum { SP_LOG_ERROR = 0, SP_LOG_WARN, SP_LOG_INFO, SP_LOG_DEBUG } sp_log_level_t;

/* ------------------------------------------------------------------------ */
/** @name Opaque types */

typedef struct sp_plugin sp_plugin_t; /**< one loaded plugin instance */
typedef struct sp_txn sp_txn_t;       /**< one message travelling one pipeline run */
typedef struct sp_msg sp_msg_t;       /**< a message record: named fields */
typedef struct sp_timer sp_timer_t;   /**< a plugin timer */
typedef uint64_t sp_token_t;          /**< single-use resume token; 0 is never valid */
typedef struct sp_http_req sp_http_req_t; /**< one HTTP request (ABI 1.1) */

/* ------------------------------------------------------------------------ */
/** @name Well-known message fields
 * A message is a set of named fields. A field holds a byte string, a list of
 * byte strings, or a 64-bit integer. Field names are plain ASCII. Plugins may
 * add their own fields; prefix them with the plugin name ("ses.message_id").
 */
#define SP_F_ID "id"                     /**< string, set by the core at submit */
#define SP_F_TEAM "team"                 /**< integer team id */
#define SP_F_FROM "from"                 /**< string: "Name <addr>" or "addr" */
#define SP_F_TO "to"                     /**< list */
#define SP_F_CC "cc"                     /**< list */
#define SP_F_BCC "bcc"                   /**< list */
#define SP_F_REPLY_TO "reply_to"         /**< list */
#define SP_F_SUBJECT "subject"           /**< string */
#define SP_F_TEXT "text"                 /**< string */
#define SP_F_HTML "html"                 /**< string */
#define SP_F_HEADERS "headers"           /**< list of "Name: value" */
#define SP_F_RAW "raw"                   /**< string: RFC 5322 bytes, if the client sent them */
#define SP_F_SCHEDULED_AT "scheduled_at" /**< integer, ms since the epoch */
#define SP_F_CREATED_AT "created_at"     /**< integer, ms since the epoch, set by the core */
#define SP_F_STATUS "status"             /**< integer sp_status_t, maintained by the core */
#define SP_F_ATTEMPTS "attempts"         /**< integer, delivery attempts so far */
#define SP_F_LAST_ERROR "last_error"     /**< string, last delivery error */
#define SP_F_PROVIDER_ID "provider_id"   /**< string, id given by the egress provider */
/* ABI 1.2: fields the ingress plugins set and the delivery plugins read. */
#define SP_F_DOMAIN_ID "domain_id"       /**< integer: the sending domain's id */
#define SP_F_API_KEY_ID "api_key_id"     /**< integer: the API key that submitted it */
#define SP_F_IN_REPLY_TO_ID "in_reply_to_id" /**< string: id of an earlier message */
#define SP_F_ATTACHMENT_NAMES "attachment_names" /**< list: file names */
#define SP_F_ATTACHMENT_DATA "attachment_data" /**< list: decoded bytes, parallel to names */
#define SP_F_TEMPLATE_ID "template_id"   /**< string: a stored template of the team */
#define SP_F_VARIABLES "variables"       /**< string: JSON object of template variables */
/** string: the RFC 5322 message as it will leave (CRLF line ends). Built at
 * the end of the transform stage (plugin `mime`), signed in the sign stage
 * (DKIM prepends its header), sent by the egress stage. Not stored. */
#define SP_F_MIME "mime"
/** string: the Message-ID the built message carries, without angle brackets. */
#define SP_F_MESSAGE_ID "message_id"

/* ------------------------------------------------------------------------ */
/** @name Configuration schema */

/** Types of plugin configuration values and the C type each fills. */
typedef enum {
    SP_CONF_STR = 1, /**< `char *`, NUL-terminated, core-owned until fini */
    SP_CONF_INT,     /**< `int64_t` */
    SP_CONF_BOOL,    /**< `bool` (true/false/yes/no/on/off) */
    SP_CONF_SIZE,    /**< `uint64_t` bytes; accepts 512, 64K, 10M, 1G */
    SP_CONF_DURATION /**< `uint64_t` milliseconds; accepts 250ms, 30s, 5m, 2h, 1d */
} sp_conf_type_t;

/** Flags of a schema item. */
#define SP_CONF_REQUIRED 0x1u /**< startup fails if the key is absent and has no default */
#define SP_CONF_SECRET 0x2u   /**< the value is never logged */

/** One configuration key. A schema is an array ended by an item with
 * name == NULL. */
typedef struct sp_conf_item {
    sp_conf_type_t type;
    const char *name;        /**< snake_case key under the plugin's `config:` */
    size_t offset;           /**< offsetof() into the plugin's config struct */
    const char *def;         /**< default, written as in YAML; NULL for none */
    uint32_t flags;          /**< SP_CONF_* */
    const char *description; /**< one sentence for documentation and logs */
} sp_conf_item_t;

/* ------------------------------------------------------------------------ */
/** @name Callbacks */

/** A stage hook. Returns a verdict, or SP_PENDING after api->suspend(). */
typedef sp_verdict_t (*sp_hook_fn)(sp_txn_t *txn, void *ctx);

/** Called once if a suspended transaction is abandoned (timeout, shutdown).
 * The plugin must release its in-flight state; its token is now dead. */
typedef void (*sp_cancel_fn)(sp_token_t tok, void *arg);

/** A status change, handed to event hooks. Borrowed: valid during the call. */
typedef struct sp_event {
    uint32_t size;         /**< sizeof(sp_event_t) of the core that built it */
    const char *msg_id;    /**< message id string */
    sp_status_t status;    /**< the new status */
    const char *status_name; /**< "DELIVERED", ... */
    int64_t time_ms;       /**< when it happened, ms since the epoch */
    const char *data;      /**< JSON object with details, never NULL ("{}") */
    int64_t team;          /**< team id of the message */
} sp_event_t;

/** An event hook: fire-and-forget, may not suspend. */
typedef void (*sp_event_fn)(const sp_event_t *ev, void *ctx);

/** Result of one message of a submit() call. */
typedef struct sp_submit_result {
    int status;           /**< 0 stored; else SP_E* / -errno (nothing stored) */
    sp_verdict_t verdict; /**< accept-stage outcome: CONTINUE/ACCEPT stored, DROP
                             stored as suppressed, REJECT/DEFER not stored */
    int code;             /**< reply code a hook set (0 if none) */
    const char *text;     /**< reply text a hook set, or a core message; never NULL */
    const char *id;       /**< message id when stored, else NULL */
    int index;            /**< position in the submitted batch */
} sp_submit_result_t;

/** Completion of submit(): one result per message, all in one call. Runs on
 * the loop thread after the commit is durable (or failed). The array is
 * borrowed for the duration of the call. */
typedef void (*sp_submit_cb)(void *arg, const sp_submit_result_t *res, size_t n);

/** Generic completion with a status (0 or negative error). */
typedef void (*sp_done_fn)(void *arg, int status);

/** kv_scan visitor; return non-zero to stop. Pointers valid during the call. */
typedef int (*sp_kv_each_fn)(void *arg, const void *key, size_t klen, const void *val,
                             size_t vlen);

/* ------------------------------------------------------------------------ */
/** @name HTTP routes and tenancy (ABI 1.1) */

/** A route handler. Runs on the loop thread. It must end the request with
 * exactly one http_respond(), now or later (then the request stays valid
 * until that call). */
typedef void (*sp_http_handler_fn)(sp_http_req_t *req, void *ctx);

/** How the HTTP ingress plugin receives the response of a request it
 * dispatched. Filled by that plugin; must outlive its requests. */
typedef struct sp_http_transport {
    uint32_t size; /**< sizeof(sp_http_transport_t) */
    /** The response: status, header lines ("Name: value\r\n" each, already
     * validated), body. Called once per request, on the loop thread, unless
     * the request was aborted. Buffers are borrowed for the call. */
    void (*send)(void *conn, sp_http_req_t *req, int status, const char *headers, size_t hlen,
                 const void *body, size_t blen);
} sp_http_transport_t;

/** Route flags. */
#define SP_HTTP_ROUTE_NOLOG 0x1u /**< do not access-log (health checks) */

/** Permissions of an API key. */
typedef enum { SP_PERM_SENDING = 0, SP_PERM_FULL = 1 } sp_permission_t;

/** An authenticated API key. */
typedef struct sp_auth {
    uint32_t size;      /**< sizeof(sp_auth_t) of the caller */
    int64_t team;       /**< team id */
    int64_t key_id;     /**< API key id */
    sp_permission_t permission;
    int64_t domain_id;  /**< the single domain the key is limited to, 0 = any */
} sp_auth_t;

/** A sending domain of a team. */
typedef struct sp_domain {
    uint32_t size;      /**< sizeof(sp_domain_t) of the caller */
    int64_t id;
    int64_t team;
    char name[256];     /**< lower case */
    bool verified;      /**< status SUCCESS */
    char region[32];
    /* ABI 1.3: filled only when the caller's size covers them. */
    bool open_tracking;  /**< add sendpipe's open pixel to html */
    bool click_tracking; /**< rewrite html links through sendpipe's click URL */
} sp_domain_t;

/* ------------------------------------------------------------------------ */
/** @name Outbound HTTP (ABI 1.2)
 * libcurl's multi interface driven by the core's loop: the loop never blocks.
 * TLS peers are verified against the system trust store (or `ca_file`);
 * redirects are never followed unless asked. */

/** Follow redirects (at most 5; http/https only). Default: a 3xx is the answer. */
#define SP_FETCH_FOLLOW 0x1u

/** One request. Every pointer is copied during http_fetch(). */
typedef struct sp_fetch_req {
    uint32_t size;              /**< sizeof(sp_fetch_req_t) of the caller */
    const char *method;         /**< "GET", "POST", "PUT", ... */
    const char *url;            /**< http:// or https:// only */
    const char *const *headers; /**< "Name: value" strings, NULL-terminated; may be NULL */
    const void *body;           /**< request body, may be NULL */
    size_t body_len;
    uint32_t timeout_ms;        /**< whole request including connect; 0 = 30 s */
    uint32_t flags;             /**< SP_FETCH_* */
    const char *ca_file;        /**< trust this PEM file instead of the system store; NULL = system */
    size_t max_body;            /**< response body cap, 0 = 1 MiB; larger fails with SP_ETOOBIG */
} sp_fetch_req_t;

/** The outcome, borrowed for the duration of the callback. */
typedef struct sp_fetch_res {
    uint32_t size;        /**< sizeof(sp_fetch_res_t) of the core */
    int status;           /**< 0: an HTTP answer arrived (any code); else SP_ETIMEDOUT,
                               SP_ETOOBIG, SP_ECANCELED (shutdown) or SP_EBUSY (network, TLS) */
    long http_status;     /**< 200, 404, ...; 0 when status != 0 */
    const char *error;    /**< transport error text ("" when status == 0) */
    const char *headers;  /**< the final response's header block, NUL-terminated */
    size_t headers_len;
    const void *body;     /**< response body, NUL-terminated for convenience */
    size_t body_len;
    uint64_t elapsed_ms;  /**< from the call to the answer */
} sp_fetch_res_t;

/** Completion of http_fetch(): exactly once (unless cancelled), on the loop. */
typedef void (*sp_fetch_cb)(void *arg, const sp_fetch_res_t *res);

/* ------------------------------------------------------------------------ */
/** @name Feedback state (ABI 1.3): suppression list, webhooks, analytics */

/** Why an address is on a team's suppression list. */
typedef enum {
    SP_SUPPRESS_HARD_BOUNCE = 0, /**< a Permanent bounce */
    SP_SUPPRESS_COMPLAINT = 1,   /**< a complaint */
    SP_SUPPRESS_MANUAL = 2       /**< added by an operator or the API */
} sp_suppress_reason_t;

/** One suppression entry, borrowed for the duration of a callback. */
typedef struct sp_suppression {
    uint32_t size;          /**< sizeof(sp_suppression_t) of the core */
    int64_t team;
    const char *email;      /**< lower-cased and trimmed */
    sp_suppress_reason_t reason;
    const char *source;     /**< message id that caused it, or "" */
    int64_t created_ms;
} sp_suppression_t;

/** Completion carrying a JSON document (borrowed for the call; NULL when
 * status != 0). */
typedef void (*sp_json_cb)(void *arg, int status, const char *json);

/** Counters of one team/domain/day, indexes of the analytics arrays. */
typedef enum {
    SP_AN_SENT = 0,
    SP_AN_DELIVERED,
    SP_AN_OPENED,  /**< first open per message */
    SP_AN_CLICKED, /**< first click per message */
    SP_AN_BOUNCED,
    SP_AN_COMPLAINED,
    SP_AN_HARD_BOUNCED,
    SP_AN__COUNT
} sp_analytics_counter_t;

/** Lifetime counters of a team's domain (reputation). */
typedef enum { SP_CUM_DELIVERED = 0, SP_CUM_HARD_BOUNCED, SP_CUM_COMPLAINED, SP_CUM__COUNT } sp_cumulated_t;

/* ------------------------------------------------------------------------ */
/** @name Host API
 * Filled by the core and handed to `init`. Members are only ever appended;
 * test for a member newer than your minimum with SP_API_HAS().
 */
typedef struct sp_host_api {
    uint32_t abi_major; /**< SP_ABI_MAJOR of the host */
    uint32_t abi_minor; /**< SP_ABI_MINOR of the host */
    uint32_t size;      /**< sizeof(sp_host_api_t) of the host */

    /* -- memory (any thread). Buffers exchanged with the core use these. -- */
    void *(*alloc)(size_t n);
    void *(*calloc)(size_t n, size_t size);
    void *(*realloc)(void *p, size_t n);
    void (*free)(void *p);
    char *(*strdup)(const char *s);

    /* -- logging (any thread). One JSON line, tagged with the plugin name. -- */
    void (*log)(sp_plugin_t *p, sp_log_level_t lvl, const char *fmt, ...) SP_PRINTF(3, 4);
    /** Message for an error code (-errno or SP_E*): a static or thread-local
     * string, valid until the next call on the same thread. Any thread. */
    const char *(*strerror)(int err);

    /* -- registration (init only) -- */
    /** Run `fn` in `stage`. Order within a stage: the sum of this `priority`
     * and the plugin entry's YAML `priority` (lower first), then YAML plugin
     * order, then registration order. Returns 0, SP_EINVAL, SP_ESTATE
     * (outside init). */
    int (*hook)(sp_plugin_t *p, sp_stage_t stage, sp_hook_fn fn, int priority);
    /** Receive every status change. Returns 0, SP_EINVAL, SP_ESTATE. */
    int (*on_event)(sp_plugin_t *p, sp_event_fn fn);

    /* -- settings -- */
    /** A global setting by key ("public_url", "secret", "api_rate_limit", ...,
     * see docs/configuration.md), or NULL. Core-owned, valid until fini. */
    const char *(*setting)(const char *key);
    /** The data directory (absolute path). Core-owned, valid until fini. */
    const char *(*data_dir)(void);

    /* -- messages: pure data; any thread for a message that thread owns -- */
    /** New empty message for submit(). Free with msg_free() unless submitted. */
    sp_msg_t *(*msg_new)(void);
    void (*msg_free)(sp_msg_t *m);
    /** Set a string field (copied; replaces any value). 0, SP_EINVAL, SP_ENOMEM. */
    int (*msg_set)(sp_msg_t *m, const char *field, const void *val, size_t len);
    /** Append to a list field (copied). 0, SP_EINVAL (field holds another type),
     * SP_ENOMEM. */
    int (*msg_add)(sp_msg_t *m, const char *field, const void *val, size_t len);
    /** Set an integer field. */
    int (*msg_set_int)(sp_msg_t *m, const char *field, int64_t v);
    /** Remove a field. 0 or SP_ENOTFOUND. */
    int (*msg_del)(sp_msg_t *m, const char *field);
    /** A string field, NUL-terminated (len excludes the NUL; bytes may contain
     * NUL), or NULL if absent or not a string. Borrowed until the field
     * changes or the message ends. */
    const char *(*msg_get)(const sp_msg_t *m, const char *field, size_t *len);
    /** Number of items of a list field (0 if absent). */
    size_t (*msg_count)(const sp_msg_t *m, const char *field);
    /** Item i of a list field, as msg_get(). */
    const char *(*msg_get_at)(const sp_msg_t *m, const char *field, size_t i, size_t *len);
    /** An integer field into *out. 0 or SP_ENOTFOUND. */
    int (*msg_get_int)(const sp_msg_t *m, const char *field, int64_t *out);
    /** The record as msgpack bytes (the store's format). *buf from api->alloc,
     * caller frees. */
    int (*msg_encode)(const sp_msg_t *m, void **buf, size_t *len);
    /** Parse msgpack bytes made by msg_encode into a new message (caller frees
     * with msg_free). 0, SP_ECORRUPT, SP_ENOMEM. Any thread. */
    int (*msg_decode)(const void *buf, size_t len, sp_msg_t **out);

    /* -- ingress -- */
    /** Submit `n` new messages as one unit: each runs the accept stage, then
     * all that passed are committed durably in one transaction (nothing of the
     * batch is stored if any message is rejected or deferred, when
     * `all_or_nothing`), then `cb` runs once with a result per message. On 0
     * the core owns the messages; on error the caller still does and `cb`
     * never runs. `cb` may run before submit returns (when nothing is to be
     * committed, or the store refuses the write at once). Returns 0,
     * SP_EINVAL, SP_ESHUTDOWN, SP_ENOMEM. */
    int (*submit)(sp_plugin_t *p, sp_msg_t **msgs, size_t n, bool all_or_nothing,
                  sp_submit_cb cb, void *arg);

    /* -- transactions (inside hooks) -- */
    /** The message being processed. Borrowed. */
    sp_msg_t *(*txn_msg)(sp_txn_t *txn);
    sp_stage_t (*txn_stage)(const sp_txn_t *txn);
    /** Set the reply for a REJECT/DEFER/DROP: a protocol-neutral code (HTTP
     * style, e.g. 400, 403, 429, 503; 0 for none, and the ingress picks its
     * default) and one line of text (copied; CR/LF are replaced with spaces). */
    int (*txn_set_reply)(sp_txn_t *txn, int code, const char *text);
    /** Choose the final status for a REJECT or DROP (default: see stage table). */
    int (*txn_set_status)(sp_txn_t *txn, sp_status_t st);
    /** For DEFER in delivery stages: retry no sooner than `ms` from now. */
    int (*txn_set_retry_in)(sp_txn_t *txn, uint64_t ms);
    /** Attach per-transaction data; free_fn (may be NULL) runs exactly once
     * when the transaction ends. One slot per plugin; replaces (and frees)
     * the previous value. */
    int (*txn_set_data)(sp_txn_t *txn, sp_plugin_t *p, void *data, void (*free_fn)(void *));
    void *(*txn_get_data)(sp_txn_t *txn, sp_plugin_t *p);

    /* -- async -- */
    /** Suspend `txn` in the current hook. The hook must then return
     * SP_PENDING, and the token must end in exactly one resume, or the core
     * calls `cancel` (timeout_ms, 0 = the plugin's configured timeout; or
     * shutdown). A hook that never answers times out into SP_DEFER. Returns
     * the token, or 0 if called outside a hook, twice in one hook, after the
     * hook already resumed, or on out of memory (then return a verdict). */
    sp_token_t (*suspend)(sp_txn_t *txn, uint32_t timeout_ms, sp_cancel_fn cancel, void *arg);
    /** Finish a suspended hook with its verdict (not SP_PENDING). A second
     * resume, or one after timeout or cancel, is ignored, logged and returns
     * SP_ECANCELED. Loop thread. */
    int (*resume)(sp_token_t tok, sp_verdict_t v);
    /** As resume(), from any thread; delivered on the loop. Returns 0 once
     * queued (a dead token is reported by the log when it arrives). */
    int (*resume_from_thread)(sp_token_t tok, sp_verdict_t v);
    /** Run work(arg) on a pool thread, then done(arg, status) on the loop.
     * work may call only "any thread" functions. */
    int (*queue_work)(sp_plugin_t *p, void (*work)(void *arg), sp_done_fn done, void *arg);

    /* -- timers -- */
    /** Call cb(arg) after timeout_ms, then every repeat_ms if non-zero.
     * Returns a timer to stop with timer_stop(), or NULL. */
    sp_timer_t *(*timer_start)(sp_plugin_t *p, uint64_t timeout_ms, uint64_t repeat_ms,
                               void (*cb)(void *arg), void *arg);
    /** Stop and release a timer (safe from inside its callback). */
    void (*timer_stop)(sp_timer_t *t);
    /** Wall clock, ms since the epoch. Any thread. */
    int64_t (*now_ms)(void);

    /* -- plugin key/value store: a private namespace in the core's LMDB -- */
    /** Read a value; *val from api->alloc, caller frees. 0, SP_ENOTFOUND. */
    int (*kv_get)(sp_plugin_t *p, const void *key, size_t klen, void **val, size_t *vlen);
    /** Write durably (group commit); done(arg, status) runs after the commit.
     * key and val are copied. */
    int (*kv_put)(sp_plugin_t *p, const void *key, size_t klen, const void *val, size_t vlen,
                  sp_done_fn done, void *arg);
    /** Delete durably; done status is SP_ENOTFOUND if absent. */
    int (*kv_del)(sp_plugin_t *p, const void *key, size_t klen, sp_done_fn done, void *arg);
    /** Visit keys starting with prefix in byte order (one read snapshot). */
    int (*kv_scan)(sp_plugin_t *p, const void *prefix, size_t plen, sp_kv_each_fn each,
                   void *arg);

    /* -- metrics -- */
    /** Add to a named counter (exported as sendpipe_plugin_<plugin>_<name>_total).
     * Any thread. */
    void (*counter_add)(sp_plugin_t *p, const char *name, uint64_t delta);

    /* -- status feedback -- */
    /** Record a status change of a stored message (feedback: provider events,
     * tracking): event row, precedence rule, event hooks. data_json may be
     * NULL. done(arg, status) after the commit; SP_ENOTFOUND for an unknown
     * id. */
    int (*emit_status)(sp_plugin_t *p, const char *msg_id, sp_status_t st,
                       const char *data_json, sp_done_fn done, void *arg);
    /** Name of a status ("QUEUED"), or NULL. Any thread. */
    const char *(*status_name)(sp_status_t st);

    /* -- the loop (advanced) -- */
    /** The core's `uv_loop_t *`, for plugins that own sockets (ingress). Such
     * a plugin links libuv itself and must close every handle in fini. */
    void *(*uv_loop)(void);

    /* ---- ABI 1.1: HTTP route registry ---------------------------------- */
    /** Register a route (init only). method: "GET", "POST", ...; pattern: a
     * path whose segments are literals or "{name}" parameters, e.g.
     * "/api/v1/emails/{emailId}". Literal segments win over parameters.
     * 0, SP_EINVAL (bad pattern), SP_EEXIST (same method and pattern),
     * SP_ESTATE (outside init). */
    int (*http_route)(sp_plugin_t *p, const char *method, const char *pattern,
                      sp_http_handler_fn fn, uint32_t flags);
    /** Visit every registered route (method, pattern, owner name); each
     * returns non-zero to stop. */
    int (*http_route_each)(int (*each)(void *arg, const char *method, const char *pattern,
                                       const char *owner),
                           void *arg);

    /* -- the HTTP ingress side: build a request, dispatch it -- */
    /** A new request for a connection. `target` is the raw request target
     * (path and query); both strings are copied. NULL on out of memory. */
    sp_http_req_t *(*http_req_new)(sp_plugin_t *p, const sp_http_transport_t *tr, void *conn,
                                   const char *method, const char *target, size_t tlen,
                                   const char *remote_addr);
    /** Add a request header (copied). Names compare case-insensitively. */
    int (*http_req_add_header)(sp_http_req_t *req, const char *name, size_t nlen,
                               const char *value, size_t vlen);
    /** Hand over the body: a buffer from api->alloc whose ownership passes to
     * the request on success. May be NULL with len 0. */
    int (*http_req_set_body)(sp_http_req_t *req, void *body, size_t len);
    /** Route the request: the handler runs (or the core answers 404/405
     * JSON through the transport). After this call the ingress may only
     * abort the request. */
    void (*http_dispatch)(sp_http_req_t *req);
    /** The connection is gone: the transport's send will not be called for
     * this request; the handler's later respond just frees it. */
    void (*http_req_abort)(sp_http_req_t *req);

    /* -- the handler side -- */
    const char *(*http_method)(const sp_http_req_t *req);
    /** The path without the query, percent-decoding NOT applied. */
    const char *(*http_path)(const sp_http_req_t *req);
    /** A route parameter ("emailId"), percent-decoded, or NULL. */
    const char *(*http_param)(const sp_http_req_t *req, const char *name);
    /** A query parameter, percent-decoded ('+' is a space), or NULL. */
    const char *(*http_query)(const sp_http_req_t *req, const char *name);
    /** A request header (first of that name), or NULL. */
    const char *(*http_header)(const sp_http_req_t *req, const char *name);
    /** The body (may be empty; NUL-terminated for convenience). */
    const void *(*http_body)(const sp_http_req_t *req, size_t *len);
    const char *(*http_remote)(const sp_http_req_t *req);
    /** The matched route pattern ("/api/v1/emails/{emailId}"), or NULL. */
    const char *(*http_route_of)(const sp_http_req_t *req);
    /** Add a response header (copied). SP_EINVAL if name or value contains
     * CR, LF or NUL, or the name is not a token. */
    int (*http_set_header)(sp_http_req_t *req, const char *name, const char *value);
    /** Answer and end the request: status, content type (NULL: none), body
     * (copied). Exactly once per request; a second call returns SP_ESTATE. */
    int (*http_respond)(sp_http_req_t *req, int status, const char *content_type,
                        const void *body, size_t len);

    /* ---- ABI 1.1: tenancy (teams, API keys, domains) --------------------- */
    /** Check an API key ("us_<10>_<32 hex>"). 0 and *out filled;
     * SP_ENOTFOUND for every kind of bad key (unknown, revoked, wrong
     * secret, malformed: no oracle); a store error or an unreadable server
     * key file gives its own code, so an API can answer 5xx rather than
     * "invalid key". The secret is compared in constant time. Loop thread
     * or any thread. */
    int (*auth_key)(const char *token, size_t len, sp_auth_t *out);
    /** A team's domain by name (case-insensitive). 0 or SP_ENOTFOUND. */
    int (*domain_find)(int64_t team, const char *name, sp_domain_t *out);
    /** A domain by id (any team). 0 or SP_ENOTFOUND. */
    int (*domain_get)(int64_t id, sp_domain_t *out);

    /* ---- ABI 1.1: stored messages ---------------------------------------- */
    /** Load a stored message by id string into a new message (caller frees
     * with msg_free). 0, SP_ENOTFOUND, SP_ECORRUPT. */
    int (*msg_load)(const char *id, sp_msg_t **out);
    /** Visit a stored message's events in time order (status, time, data
     * JSON); each returns non-zero to stop. 0 or SP_ENOTFOUND. */
    int (*msg_events)(const char *id,
                      int (*each)(void *arg, sp_status_t st, int64_t time_ms, const char *data),
                      void *arg);
    /** Visit a team's messages, newest first, created in [from_ms, to_ms)
     * (0 = unbounded), skipping the first `skip` matches; each returns
     * non-zero to stop. The message is borrowed for the call. */
    int (*msg_list)(int64_t team, int64_t from_ms, int64_t to_ms, uint64_t skip,
                    int (*each)(void *arg, const sp_msg_t *m), void *arg);
    /** Move a SCHEDULED message of `team` to a new due time, atomically with
     * the queue index. done: 0, SP_ENOTFOUND (unknown or other team),
     * SP_ESTATE (not scheduled any more: being sent or sent). */
    int (*msg_reschedule)(const char *id, int64_t team, int64_t due_ms, sp_done_fn done,
                          void *arg);
    /** Cancel a SCHEDULED message of `team` (status CANCELLED, queue entry
     * removed) atomically; never races with its delivery. done: 0,
     * SP_ENOTFOUND, SP_ESTATE. */
    int (*msg_cancel)(const char *id, int64_t team, sp_done_fn done, void *arg);

    /* ---- ABI 1.2: delivery --------------------------------------------- */
    /** A stored template of `team` by id, as a new message with the string
     * fields "id", "name", "subject", "html", "text" (absent when empty);
     * caller frees with msg_free. 0, SP_ENOTFOUND (unknown, or another
     * team's), SP_ECORRUPT. Any thread. */
    int (*template_load)(int64_t team, const char *id, sp_msg_t **out);
    /** The DKIM signing key of a domain, as a new message with the string
     * fields "domain", "selector", "algorithm" ("rsa-sha256" or
     * "ed25519-sha256") and "private_key" (PEM); caller frees with msg_free
     * and must never log the key. 0, SP_ENOTFOUND (no such domain or no
     * key). Any thread. */
    int (*domain_dkim)(int64_t domain_id, sp_msg_t **out);
    /** Start an outbound HTTP request; `cb` runs once on the loop with the
     * outcome. *handle (may be NULL) receives an id for http_fetch_cancel.
     * 0, SP_EINVAL (bad URL or scheme), SP_ENOMEM, SP_ESHUTDOWN. */
    int (*http_fetch)(sp_plugin_t *p, const sp_fetch_req_t *req, sp_fetch_cb cb, void *arg,
                      uint64_t *handle);
    /** Abandon a request: its callback will not run. Unknown or finished
     * handles are ignored. Loop thread. */
    void (*http_fetch_cancel)(uint64_t handle);
    /** The message a provider id belongs to (the id an egress plugin set in
     * SP_F_PROVIDER_ID when it sent it, e.g. SES's MessageId): its id string
     * into id_out. 0, SP_ENOTFOUND, SP_ETOOBIG (id_len too small). */
    int (*msg_find_provider)(const char *provider_id, char *id_out, size_t id_len);

    /* ---- ABI 1.3: suppression list -------------------------------------- */
    /** Is `email` (compared lower-cased and trimmed, as a whole string) on
     * the team's list? 0 and *reason (may be NULL) set, or SP_ENOTFOUND.
     * Any thread. */
    int (*suppress_check)(int64_t team, const char *email, sp_suppress_reason_t *reason);
    /** Add or replace an entry durably; done(arg, status) after the commit.
     * SP_EINVAL for an empty or over-long address. */
    int (*suppress_add)(sp_plugin_t *p, int64_t team, const char *email,
                        sp_suppress_reason_t reason, const char *source, sp_done_fn done,
                        void *arg);
    /** Remove an entry durably; done status SP_ENOTFOUND if absent. */
    int (*suppress_del)(sp_plugin_t *p, int64_t team, const char *email, sp_done_fn done,
                        void *arg);
    /** Visit a team's entries in address order whose address contains
     * `search` (NULL or "" = all), skipping `skip` matches; each returns
     * non-zero to stop. Returns 0 or a store error. */
    int (*suppress_list)(int64_t team, const char *search, uint64_t skip,
                         int (*each)(void *arg, const sp_suppression_t *s), void *arg);

    /* ---- ABI 1.3: webhooks ---------------------------------------------- */
    /** Create (id 0) or update a team's webhook from a JSON object {"url",
     * "description", "eventTypes":[...], "domainIds":[...], "status"}
     * (absent members keep their value; create needs "url"). cb gets the
     * stored webhook as JSON; on create it includes "secret" (the only time
     * it is shown). Status SP_EINVAL (with a reason logged) for a bad spec,
     * SP_ENOTFOUND for another team's or unknown id. */
    int (*webhook_put)(sp_plugin_t *p, int64_t team, int64_t id, const char *spec_json,
                       sp_json_cb cb, void *arg);
    /** Delete a webhook and its queued calls; done: 0 or SP_ENOTFOUND. */
    int (*webhook_del)(sp_plugin_t *p, int64_t team, int64_t id, sp_done_fn done, void *arg);
    /** Visit a team's webhooks (JSON objects without the secret) in id order;
     * id 0 = all, else only that one (SP_ENOTFOUND if not the team's). */
    int (*webhook_list)(int64_t team, int64_t id, int (*each)(void *arg, const char *json),
                        void *arg);
    /** Visit a webhook's calls, newest first, skipping `skip`: JSON objects
     * {id, webhookId, type, status, attempt, responseStatus, responseTimeMs,
     * responseText, lastError, createdAt, updatedAt, nextAttemptAt}.
     * Webhook ids are integers; call ids are decimal strings. */
    int (*webhook_calls)(int64_t team, int64_t id, uint64_t skip,
                         int (*each)(void *arg, const char *json), void *arg);
    /** Queue a `webhook.test` call; cb gets the call as JSON. */
    int (*webhook_test)(sp_plugin_t *p, int64_t team, int64_t id, sp_json_cb cb, void *arg);

    /* ---- ABI 1.3: analytics --------------------------------------------- */
    /** Visit the daily counters of a team (domain_id 0 = all its domains
     * summed) for days [from_day, to_day] (days since 1970-01-01 UTC), in
     * day order, only days that have counts. counts has SP_AN__COUNT items. */
    int (*analytics_daily)(int64_t team, int64_t domain_id, int32_t from_day, int32_t to_day,
                           int (*each)(void *arg, int32_t day, const uint64_t *counts),
                           void *arg);
    /** Lifetime counters (SP_CUM__COUNT items) of a team's domain (0 = all). */
    int (*analytics_cumulated)(int64_t team, int64_t domain_id, uint64_t *out);
} sp_host_api_t;

/** True if the host's API table has `member` (and it is not NULL). */
#define SP_API_HAS(api, member)                                                             \
    ((api)->size >= offsetof(sp_host_api_t, member) + sizeof((api)->member) &&              \
     (api)->member != NULL)

/* ------------------------------------------------------------------------ */
/** @name Descriptor */

/** The exported plugin descriptor. Read by the loader before any plugin code
 * runs; never written. */
typedef struct sp_plugin_desc {
    uint32_t abi_major;  /**< SP_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;  /**< SP_ABI_MINOR the plugin was built with */
    uint32_t desc_size;  /**< sizeof(sp_plugin_desc_t) at build time */
    uint32_t flags;      /**< reserved, 0 */
    const char *name;    /**< must equal the name in the YAML, e.g. "egress_outbox" */
    const char *version; /**< plugin version string */
    const char *description;
    const sp_conf_item_t *conf; /**< schema, ended by {0}; NULL if no config */
    size_t conf_size;           /**< size of the struct the schema fills */
    /** Cross-field checks after the schema filled `conf`. Write one line into
     * err on failure and return non-zero. May be NULL. */
    int (*conf_check)(const void *conf, char *err, size_t errlen);
    /** Register hooks, set up state. `conf` stays valid until fini. Return 0,
     * or a negative code after logging why (start-up then stops). */
    int (*init)(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx);
    /** Release everything init made. May be NULL. */
    void (*fini)(sp_plugin_t *p, void *ctx);
    void *reserved[8]; /**< must be NULL */
} sp_plugin_desc_t;

/** Define the plugin's exported descriptor. Use designated initialisers:
 *
 *     SP_PLUGIN_DEFINE(.name = "hello", .version = "1.0", .init = hello_init);
 */
#define SP_PLUGIN_DEFINE(...)                                                               \
    SP_EXPORT const sp_plugin_desc_t sp_plugin_desc = {.abi_major = SP_ABI_MAJOR,          \
                                                       .abi_minor = SP_ABI_MINOR,          \
                                                       .desc_size = sizeof(sp_plugin_desc_t), \
                                                       __VA_ARGS__}

#ifdef __cplusplus
}
#endif

#endif /* SP_SP_PLUGIN_H */
