/* SPDX-License-Identifier: Apache-2.0 */
/* The webhooks API (FULL keys only). */
#include "api.h"

void api_h_wh_list(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_wh_add(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_wh_get(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_wh_update(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_wh_del(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_wh_test(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_wh_calls(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}
