/* SPDX-License-Identifier: Apache-2.0 */
/* The analytics API. */
#include "api.h"

void api_h_an_series(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}

void api_h_an_reputation(api_ctx_t *c)
{
    api_fail(c, 501, "not implemented");
}
