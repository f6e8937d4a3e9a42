/* SPDX-License-Identifier: Apache-2.0 */
/* What test plugins export besides their descriptor: a probe struct, symbol
 * "sp_test_probe", through which tests see what happened inside them. Test
 * plugins reset it in init (a library kept mapped keeps its globals). */
#ifndef SP_TESTS_PLUGIN_PROBE_H
#define SP_TESTS_PLUGIN_PROBE_H

#include <sp/sp_plugin.h>

typedef struct sp_test_probe {
    int init_calls;
    int fini_calls;
    int hook_calls;
    int cancel_calls;
    int data_frees;
    int events;
    int last_event_status;
    int nrc;          /* entries used in rc[] */
    int rc[8];        /* return codes of API calls the plugin made, in order */
    sp_token_t last_tok;
} sp_test_probe_t;

#define SP_TEST_PROBE_RECORD(pr, v)                                                         \
    do {                                                                                    \
        if ((pr)->nrc < 8) {                                                                \
            (pr)->rc[(pr)->nrc++] = (v);                                                    \
        }                                                                                   \
    } while (0)

#endif
