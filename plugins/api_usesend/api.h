/* SPDX-License-Identifier: Apache-2.0 */
/* Shared state of the api_usesend plugin: configuration, the per-request
 * context handlers receive after authentication, and the reply helpers. */
#ifndef SP_API_USESEND_API_H
#define SP_API_USESEND_API_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include <sp/sp_plugin.h>

#include "ratelimit.h"
#include "validate.h"

typedef struct api_conf {
    uint64_t max_attachment_size;
    uint64_t max_attachments_total;
    int64_t rate_limit;       /* requests per minute; -1: settings.api_rate_limit */
    uint64_t idempotency_ttl; /* ms */
} api_conf_t;

typedef struct api_inflight api_inflight_t;

/* The plugin instance. */
typedef struct api {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    const api_conf_t *conf;
    api_limits_t lim;
    uint64_t rate_limit; /* requests per minute, 0 = off */
    api_rl_t *rl;
    json_t *doc;                /* the OpenAPI document */
    api_inflight_t *inflight;   /* Idempotency-Keys being processed */
    sp_timer_t *sweep;          /* expired idempotency records */
    struct api_call *calls;     /* requests waiting for the core */
} api_t;

/* One request as a handler sees it: authenticated (unless the route is
 * public), permission and rate limit already checked. */
typedef struct api_ctx {
    api_t *a;
    sp_http_req_t *req;
    sp_auth_t auth;
    bool has_rl;
    api_rl_info_t rl;
} api_ctx_t;

/* A request that waits for the core (submit, kv_put, reschedule). Linked in
 * api->calls so fini can free what a stopped core never completed. */
typedef struct api_call {
    struct api_call *next, **prevp;
    api_ctx_t c;
    bool batch;
    char *idem;        /* "team:key" being held, or NULL */
    char hash[65];     /* body fingerprint when idem is set */
    json_t *ids;       /* answer ids (array of strings) */
    char *email_id;    /* reschedule / cancel target */
} api_call_t;

/* ---- replies (api.c): every one ends the request ---------------------- */

/* Answer with a JSON body (reference stolen; NULL answers 500). */
void api_reply(api_ctx_t *c, int status, json_t *body);
/* Answer with the error shape; err is cleared. */
void api_reply_err(api_ctx_t *c, api_err_t *err);
/* Answer an error with a formatted message. */
void api_fail(api_ctx_t *c, int status, const char *fmt, ...) SP_PRINTF(3, 4);
/* Answer 400 "<field>: <msg>" with issues [{path: [field(, index)], message}]
 * (a body member or query parameter); index < 0: no index in the path. */
void api_fail_field(api_ctx_t *c, const char *field, long index, const char *msg);
/* Map a core error code to a reply: SP_ENOTFOUND 404, store trouble 503,
 * anything else 500. */
void api_fail_rc(api_ctx_t *c, int rc, const char *what);

/* Waiting requests. */
api_call_t *api_call_new(api_ctx_t *c);
void api_call_free(api_call_t *call);

/* ---- handlers (emails.c) ---------------------------------------------- */
void api_h_send(api_ctx_t *c);
void api_h_send_legacy(api_ctx_t *c);
void api_h_schedule_legacy(api_ctx_t *c);
void api_h_batch(api_ctx_t *c);
void api_h_get(api_ctx_t *c);
void api_h_list(api_ctx_t *c);
void api_h_update(api_ctx_t *c);
void api_h_cancel(api_ctx_t *c);

/* ---- suppression list (area_suppressions.c) --------------------------- */
void api_h_supp_list(api_ctx_t *c);
void api_h_supp_add(api_ctx_t *c);
void api_h_supp_del(api_ctx_t *c);

/* ---- webhooks (area_webhooks.c): FULL keys only ----------------------- */
void api_h_wh_list(api_ctx_t *c);
void api_h_wh_add(api_ctx_t *c);
void api_h_wh_get(api_ctx_t *c);
void api_h_wh_update(api_ctx_t *c);
void api_h_wh_del(api_ctx_t *c);
void api_h_wh_test(api_ctx_t *c);
void api_h_wh_calls(api_ctx_t *c);

/* ---- analytics (area_analytics.c) ------------------------------------- */
void api_h_an_series(api_ctx_t *c);
void api_h_an_reputation(api_ctx_t *c);

/* ---- idempotency (idem.c) --------------------------------------------- */

/* Outcome of looking an Idempotency-Key up. */
typedef enum {
    API_IDEM_NEW = 0, /* not seen: the key is now held by `call` */
    API_IDEM_REPLAYED, /* same payload seen: the original answer was sent */
    API_IDEM_FAILED    /* an error was sent (bad key, mismatch, in flight) */
} api_idem_t;

/* Look the request's Idempotency-Key up (absent header: API_IDEM_NEW with
 * nothing held). On API_IDEM_NEW with a key, call->idem and call->hash are
 * set and the key is held until api_idem_finish/api_idem_release. */
api_idem_t api_idem_begin(api_call_t *call, const json_t *body, bool batch);
/* Record the answer durably, then send it (200 with call->ids). */
void api_idem_finish(api_call_t *call);
/* Give the key up without recording anything (the request failed). */
void api_idem_release(api_call_t *call);
int api_idem_init(api_t *a);
void api_idem_fini(api_t *a);

/* ---- OpenAPI document (doc.c) ----------------------------------------- */
int api_doc_load(api_t *a);
/* 0 if the document has an operation for method + pattern. */
int api_doc_has(const json_t *doc, const char *method, const char *pattern);
void api_h_doc(api_ctx_t *c);

/* Answer body for send: {"emailId": id} / batch {"data":[{"emailId"}..]}. */
json_t *api_ids_body(const json_t *ids, bool batch);

#endif
