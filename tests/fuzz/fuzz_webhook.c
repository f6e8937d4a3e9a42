/* SPDX-License-Identifier: Apache-2.0 */
/* Outgoing webhooks' handling of untrusted JSON: event data (from SNS,
 * tracking hits, egress errors) mapped into a payload's `data`, and webhook
 * specs from the API and the CLI. The first byte picks the status (and
 * whether the spec is a create); the rest is the JSON text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../core/src/webhooks_int.h"
#include "sp_core/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *d, *b, why[160];
    sp_msg_t *m;
    json_t *spec;

    if (size < 1) {
        return 0;
    }
    if (!(text = malloc(size))) {
        return 0;
    }
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if ((m = sp__msg_new())) {
        (void)sp__msg_set_int(m, SP_F_TEAM, 1);
        (void)sp__msg_set(m, SP_F_FROM, "a@b.test", 8);
        (void)sp__msg_add(m, SP_F_TO, "c@d.test", 8);
        d = sp__wh_email_data(m, 1, (sp_status_t)(data[0] % SP_ST__COUNT), 1700000000000LL,
                              text);
        if (d) {
            b = sp__wh_body(1, "email.sent", NULL, 0, 1, d, 1);
            if (!b) {
                abort(); /* data we built must always make a body */
            }
            free(b);
        }
        free(d);
        sp__msg_free(m);
    }
    if ((spec = json_loads(text, 0, NULL))) {
        (void)wh_spec_check(spec, data[0] & 1, why, sizeof(why));
        json_decref(spec);
    }
    free(text);
    return 0;
}
