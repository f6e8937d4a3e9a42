/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP route registry and request objects: any plugin registers
 * method + pattern + handler; the HTTP ingress plugin builds requests and
 * dispatches them here. Backends of the host API's http_* members. */
#ifndef SP_CORE_HTTP_H
#define SP_CORE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

struct sp_core;

int sp__http_route(sp_plugin_t *p, const char *method, const char *pattern,
                   sp_http_handler_fn fn, uint32_t flags);
int sp__http_route_each(int (*each)(void *arg, const char *method, const char *pattern,
                                    const char *owner),
                        void *arg);
/* Drop every route of p (unload, failed init). */
void sp__http_routes_remove(sp_plugin_t *p);
/* Free the registry (shutdown). */
void sp__http_routes_free(void);

sp_http_req_t *sp__http_req_new(sp_plugin_t *p, const sp_http_transport_t *tr, void *conn,
                                const char *method, const char *target, size_t tlen,
                                const char *remote_addr);
int sp__http_req_add_header(sp_http_req_t *req, const char *name, size_t nlen,
                            const char *value, size_t vlen);
int sp__http_req_set_body(sp_http_req_t *req, void *body, size_t len);
void sp__http_dispatch(sp_http_req_t *req);
void sp__http_req_abort(sp_http_req_t *req);

const char *sp__http_method(const sp_http_req_t *req);
const char *sp__http_path(const sp_http_req_t *req);
const char *sp__http_param(const sp_http_req_t *req, const char *name);
const char *sp__http_query(const sp_http_req_t *req, const char *name);
const char *sp__http_header(const sp_http_req_t *req, const char *name);
const void *sp__http_body(const sp_http_req_t *req, size_t *len);
const char *sp__http_remote(const sp_http_req_t *req);
const char *sp__http_route_of(const sp_http_req_t *req);
int sp__http_set_header(sp_http_req_t *req, const char *name, const char *value);
int sp__http_respond(sp_http_req_t *req, int status, const char *content_type,
                     const void *body, size_t len);

/* Register the core's built-in routes (GET /healthz, /readyz, /metrics;
 * the first two are not access-logged). core may be NULL (tests): /readyz
 * then always answers ready and /metrics has only the HTTP metrics. 0 or
 * SP_ENOMEM. */
int sp__http_init(struct sp_core *core);
/* Free the registry, the HTTP metrics, and any request a handler never
 * answered (with a warning). Call at shutdown after plugins are unloaded. */
void sp__http_free(void);

/* Prometheus text of the HTTP metrics: sendpipe_http_requests_total and the
 * sendpipe_http_request_duration_seconds histogram, both by route pattern
 * ("none" when no route matched) and status. *out malloc'd. 0, SP_ENOMEM. */
int sp__http_metrics(char **out, size_t *len);

#endif
