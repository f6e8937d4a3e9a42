/* SPDX-License-Identifier: Apache-2.0 */
/* GET /api/v1/doc: the OpenAPI 3 document (openapi.json, embedded at build
 * time), with the server URL and the list of routes the running server
 * actually registered, so a test can prove every route is documented. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "api.h"

/* Generated from openapi.json by embed.cmake. */
extern const unsigned char api_openapi_json[];
extern const size_t api_openapi_json_len;

int api_doc_load(api_t *a)
{
    json_error_t je;
    a->doc = json_loadb((const char *)api_openapi_json, api_openapi_json_len, 0, &je);
    if (a->doc == NULL || !json_is_object(json_object_get(a->doc, "paths"))) {
        if (a->doc == NULL) {
            a->api->log(a->p, SP_LOG_ERROR, "openapi.json:%d:%d: %s", je.line, je.column,
                        je.text);
        }
        json_decref(a->doc);
        a->doc = NULL;
        return SP_EINVAL;
    }
    return 0;
}

int api_doc_has(const json_t *doc, const char *method, const char *pattern)
{
    const json_t *item = json_object_get(json_object_get(doc, "paths"), pattern);
    char m[16];
    size_t n = strlen(method);
    if (item == NULL || n >= sizeof(m)) {
        return SP_ENOTFOUND;
    }
    for (size_t i = 0; i <= n; i++) {
        m[i] = (char)tolower((unsigned char)method[i]);
    }
    return json_is_object(json_object_get(item, m)) ? 0 : SP_ENOTFOUND;
}

static int route_each(void *arg, const char *method, const char *pattern, const char *owner)
{
    json_t *r = json_object();
    json_object_set_new(r, "method", json_string(method));
    json_object_set_new(r, "path", json_string(pattern));
    json_object_set_new(r, "owner", json_string(owner != NULL ? owner : "core"));
    json_array_append_new(arg, r);
    return 0;
}

void api_h_doc(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    const char *url = api->setting("public_url");
    json_t *d = json_copy(c->a->doc), *servers, *s, *routes = json_array();

    if (d == NULL || routes == NULL) {
        json_decref(d);
        json_decref(routes);
        api_fail(c, 503, "out of memory");
        return;
    }
    if (url != NULL && *url != '\0') {
        servers = json_array();
        s = json_object();
        json_object_set_new(s, "url", json_string(url));
        json_array_append_new(servers, s);
        json_object_set_new(d, "servers", servers);
    }
    (void)api->http_route_each(route_each, routes);
    json_object_set_new(d, "x-sendpipe-routes", routes);
    api_reply(c, 200, d);
}
