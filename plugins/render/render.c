/* SPDX-License-Identifier: Apache-2.0 */
/* render: the RENDER stage. A message with a templateId gets the team's
 * stored template (loaded again at every attempt: it may have changed or
 * gone since the message was accepted), and the subject, html and text get
 * their {{variables}} (interp.c). Failures are final: RENDERING_FAILURE with
 * the reason in the event. Nothing here is stored; each attempt recomputes
 * the same result from the record and the template. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <sp/sp_plugin.h>

#include "interp.h"

typedef struct render_conf {
    uint64_t max_size;
} render_conf_t;

typedef struct render {
    sp_plugin_t *p;
    const sp_host_api_t *api;
    uint64_t max_size;
} render_t;

static const sp_conf_item_t render_schema[] = {
    {SP_CONF_SIZE, "max_size", offsetof(render_conf_t, max_size), "5M", 0,
     "largest rendered subject + html + text, in bytes (larger: RENDERING_FAILURE)"},
    {0},
};

/* The parts, in the order they are rendered. */
static const char *const parts[] = {SP_F_SUBJECT, SP_F_HTML, SP_F_TEXT}; /* html: 1 */
#define NPARTS (sizeof(parts) / sizeof(parts[0]))

static sp_verdict_t fail(render_t *r, sp_txn_t *txn, const char *fmt, ...) SP_PRINTF(3, 4);

/* A final RENDERING_FAILURE; the reason becomes the event's "error". */
static sp_verdict_t fail(render_t *r, sp_txn_t *txn, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->api->txn_set_reply(txn, 0, msg);
    r->api->txn_set_status(txn, SP_ST_RENDERING_FAILURE);
    r->api->counter_add(r->p, "failed", 1);
    return SP_REJECT;
}

/* The variables JSON as a lookup table; the strings stay in *root. */
static int vars_parse(const char *json, size_t len, json_t **root, interp_vars_t *vs,
                      char *err, size_t errlen)
{
    json_error_t je;
    interp_var_t *v;
    const char *k;
    json_t *val;
    size_t i = 0;

    *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!*root) {
        snprintf(err, errlen, "variables are not valid JSON: %s", je.text);
        return -1;
    }
    if (!json_is_object(*root)) {
        snprintf(err, errlen, "variables must be a JSON object");
        return -1;
    }
    v = calloc(json_object_size(*root) + 1, sizeof(*v));
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    json_object_foreach(*root, k, val)
    {
        if (!json_is_string(val)) {
            snprintf(err, errlen, "variable '%.100s' is not a string", k);
            free(v);
            return -1;
        }
        v[i].name = k;
        v[i].nlen = strlen(k);
        v[i].value = json_string_value(val);
        v[i].vlen = json_string_length(val);
        i++;
    }
    vs->v = v;
    vs->n = i;
    return 0;
}

static sp_verdict_t render_hook(sp_txn_t *txn, void *ctx)
{
    render_t *r = ctx;
    const sp_host_api_t *api = r->api;
    sp_msg_t *m = api->txn_msg(txn);
    sp_msg_t *tpl = NULL;
    size_t tidlen = 0, vlen = 0;
    const char *tid = api->msg_get(m, SP_F_TEMPLATE_ID, &tidlen);
    const char *vjson = api->msg_get(m, SP_F_VARIABLES, &vlen);
    char *out[NPARTS] = {0};
    size_t outlen[NPARTS] = {0};
    bool present[NPARTS] = {false};
    interp_vars_t vs = {0};
    json_t *root = NULL;
    uint64_t budget = r->max_size;
    sp_verdict_t verdict = SP_CONTINUE;
    char err[256];
    int rc;

    /* Only templated messages, or messages that carry variables, are
     * rendered (docs/templates.md). */
    if (tid == NULL && vjson == NULL) {
        return SP_CONTINUE;
    }
    if (tid != NULL) {
        int64_t team = 0;
        if (api->msg_get_int(m, SP_F_TEAM, &team) != 0) {
            return fail(r, txn, "template %.200s not found (message has no team)", tid);
        }
        rc = api->template_load(team, tid, &tpl);
        if (rc == SP_ENOTFOUND) {
            return fail(r, txn, "template %.200s not found", tid);
        }
        if (rc < 0) {
            /* A store error is not the message's fault: try again later. */
            api->log(r->p, SP_LOG_WARN, "loading template %.64s failed: %s", tid,
                     api->strerror(rc));
            api->txn_set_reply(txn, 503, "template lookup failed");
            return SP_DEFER;
        }
    }
    if (vjson != NULL && vars_parse(vjson, vlen, &root, &vs, err, sizeof(err)) != 0) {
        json_decref(root);
        api->msg_free(tpl);
        return fail(r, txn, "%s", err);
    }
    for (size_t i = 0; i < NPARTS && verdict == SP_CONTINUE; i++) {
        size_t sl = 0;
        const char *src = tpl ? api->msg_get(tpl, parts[i], &sl) : NULL;
        if (src == NULL || sl == 0) {
            src = api->msg_get(m, parts[i], &sl);
        }
        if (src == NULL) {
            continue;
        }
        present[i] = true;
        rc = interp_render(src, sl, i == 1, interp_vars_lookup, &vs, budget,
                           &out[i], &outlen[i]);
        if (rc == SP_ETOOBIG) {
            verdict = fail(r, txn, "rendered message is larger than %llu bytes",
                           (unsigned long long)r->max_size);
        } else if (rc < 0) {
            api->txn_set_reply(txn, 503, api->strerror(rc));
            verdict = SP_DEFER;
        } else {
            budget -= outlen[i];
        }
    }
    if (verdict == SP_CONTINUE && !present[1] && !present[2]) {
        verdict = fail(r, txn, "%s", "nothing to send: neither html nor text content");
    }
    if (verdict == SP_CONTINUE && out[0] != NULL) {
        /* The subject goes into a header: a value must not break the line. */
        for (size_t k = 0; k < outlen[0]; k++) {
            if (out[0][k] == '\r' || out[0][k] == '\n') {
                out[0][k] = ' ';
            }
        }
    }
    for (size_t i = 0; i < NPARTS && verdict == SP_CONTINUE; i++) {
        if (present[i] && api->msg_set(m, parts[i], out[i], outlen[i]) < 0) {
            verdict = SP_DEFER;
        }
    }
    if (verdict == SP_CONTINUE) {
        api->counter_add(r->p, "rendered", 1);
    }
    for (size_t i = 0; i < NPARTS; i++) {
        free(out[i]);
    }
    free((void *)vs.v);
    json_decref(root);
    api->msg_free(tpl);
    return verdict;
}

static int render_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    const render_conf_t *c = conf;
    render_t *r;
    int rc;

    if (!SP_API_HAS(api, template_load)) {
        api->log(p, SP_LOG_ERROR, "this sendpipe has no template_load (ABI 1.2 needed)");
        return SP_EABI;
    }
    if (!(r = api->calloc(1, sizeof(*r)))) {
        return SP_ENOMEM;
    }
    r->p = p;
    r->api = api;
    r->max_size = c->max_size;
    if ((rc = api->hook(p, SP_STAGE_RENDER, render_hook, 0)) < 0) {
        api->free(r);
        return rc;
    }
    *ctx = r;
    return 0;
}

static void render_fini(sp_plugin_t *p, void *ctx)
{
    render_t *r = ctx;

    (void)p;
    if (r) {
        r->api->free(r);
    }
}

static int render_check(const void *conf, char *err, size_t errlen)
{
    const render_conf_t *c = conf;

    if (c->max_size < 1024) {
        snprintf(err, errlen, "max_size must be at least 1K");
        return -1;
    }
    return 0;
}

SP_PLUGIN_DEFINE(.name = "render", .version = SP_VERSION_STRING,
                 .description = "stored templates and {{variables}} at due time",
                 .conf = render_schema, .conf_size = sizeof(render_conf_t),
                 .conf_check = render_check, .init = render_init, .fini = render_fini);
