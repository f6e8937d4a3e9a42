/* SPDX-License-Identifier: Apache-2.0 */
/* The suppression list API. */
#include "api.h"

void api_h_supp_list(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_supp_add(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_supp_del(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}
