/* SPDX-License-Identifier: Apache-2.0 */
/* Compile-time checks of the SDK's binary layout: a change here breaks
 * plugins built against an earlier SDK, so it must come with an ABI major
 * bump (or, for members appended to sp_host_api_t, a minor bump and a new
 * line below). The file only has to compile; it is built with the plugin
 * tests. */
#include <stddef.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

/* Enum values are part of the ABI. */
_Static_assert(SP_CONTINUE == 0 && SP_ACCEPT == 1 && SP_REJECT == 2 && SP_DEFER == 3 &&
                   SP_DROP == 4 && SP_PENDING == 5,
               "verdict values");
_Static_assert(SP_STAGE_ACCEPT == 0 && SP_STAGE_RENDER == 1 && SP_STAGE_TRANSFORM == 2 &&
                   SP_STAGE_SIGN == 3 && SP_STAGE_EGRESS == 4 && SP_STAGE__COUNT == 5,
               "stage values");
_Static_assert(SP_ST_SCHEDULED == 0 && SP_ST_QUEUED == 3 && SP_ST_SENT == 4 &&
                   SP_ST_DELIVERED == 7 && SP_ST_SUPPRESSED == 13 && SP_ST__COUNT == 14,
               "status values");
_Static_assert(SP_CONF_STR == 1 && SP_CONF_DURATION == 5, "conf types");
_Static_assert(SP_EINVAL == -1000 && SP_ECANCELED == -1002 && SP_ESTATE == -1010,
               "error codes");
_Static_assert(sizeof(sp_token_t) == 8, "tokens are 64-bit");

/* The descriptor: the loader reads the first three words before anything
 * else, whatever the platform. */
_Static_assert(offsetof(sp_plugin_desc_t, abi_major) == 0, "desc abi_major");
_Static_assert(offsetof(sp_plugin_desc_t, abi_minor) == 4, "desc abi_minor");
_Static_assert(offsetof(sp_plugin_desc_t, desc_size) == 8, "desc desc_size");
_Static_assert(offsetof(sp_plugin_desc_t, flags) == 12, "desc flags");
_Static_assert(offsetof(sp_host_api_t, abi_major) == 0 && offsetof(sp_host_api_t, abi_minor) == 4 &&
                   offsetof(sp_host_api_t, size) == 8,
               "host api header");

#if UINTPTR_MAX == 0xffffffffffffffffu
/* LP64 (x86_64, aarch64): exact offsets. */
_Static_assert(offsetof(sp_plugin_desc_t, name) == 16, "desc name");
_Static_assert(offsetof(sp_plugin_desc_t, version) == 24, "desc version");
_Static_assert(offsetof(sp_plugin_desc_t, description) == 32, "desc description");
_Static_assert(offsetof(sp_plugin_desc_t, conf) == 40, "desc conf");
_Static_assert(offsetof(sp_plugin_desc_t, conf_size) == 48, "desc conf_size");
_Static_assert(offsetof(sp_plugin_desc_t, conf_check) == 56, "desc conf_check");
_Static_assert(offsetof(sp_plugin_desc_t, init) == 64, "desc init");
_Static_assert(offsetof(sp_plugin_desc_t, fini) == 72, "desc fini");
_Static_assert(offsetof(sp_plugin_desc_t, reserved) == 80, "desc reserved");
_Static_assert(sizeof(sp_plugin_desc_t) == 144, "desc size");

_Static_assert(offsetof(sp_conf_item_t, type) == 0 && offsetof(sp_conf_item_t, name) == 8 &&
                   offsetof(sp_conf_item_t, offset) == 16 && offsetof(sp_conf_item_t, def) == 24 &&
                   offsetof(sp_conf_item_t, flags) == 32 &&
                   offsetof(sp_conf_item_t, description) == 40 && sizeof(sp_conf_item_t) == 48,
               "conf item");

_Static_assert(offsetof(sp_event_t, size) == 0 && offsetof(sp_event_t, msg_id) == 8 &&
                   offsetof(sp_event_t, status) == 16 && offsetof(sp_event_t, status_name) == 24 &&
                   offsetof(sp_event_t, time_ms) == 32 && offsetof(sp_event_t, data) == 40 &&
                   offsetof(sp_event_t, team) == 48 && sizeof(sp_event_t) == 56,
               "event");

_Static_assert(offsetof(sp_submit_result_t, status) == 0 &&
                   offsetof(sp_submit_result_t, verdict) == 4 &&
                   offsetof(sp_submit_result_t, code) == 8 &&
                   offsetof(sp_submit_result_t, text) == 16 &&
                   offsetof(sp_submit_result_t, id) == 24 &&
                   offsetof(sp_submit_result_t, index) == 32 &&
                   sizeof(sp_submit_result_t) == 40,
               "submit result");

/* Host API: member N lives at 16 + 8 * N. Members are only appended. */
#define SP_ABI_API(member, n)                                                               \
    _Static_assert(offsetof(sp_host_api_t, member) == 16 + 8 * (n), "host api: " #member)
SP_ABI_API(alloc, 0);
SP_ABI_API(calloc, 1);
SP_ABI_API(realloc, 2);
SP_ABI_API(free, 3);
SP_ABI_API(strdup, 4);
SP_ABI_API(log, 5);
SP_ABI_API(strerror, 6);
SP_ABI_API(hook, 7);
SP_ABI_API(on_event, 8);
SP_ABI_API(setting, 9);
SP_ABI_API(data_dir, 10);
SP_ABI_API(msg_new, 11);
SP_ABI_API(msg_free, 12);
SP_ABI_API(msg_set, 13);
SP_ABI_API(msg_add, 14);
SP_ABI_API(msg_set_int, 15);
SP_ABI_API(msg_del, 16);
SP_ABI_API(msg_get, 17);
SP_ABI_API(msg_count, 18);
SP_ABI_API(msg_get_at, 19);
SP_ABI_API(msg_get_int, 20);
SP_ABI_API(msg_encode, 21);
SP_ABI_API(msg_decode, 22);
SP_ABI_API(submit, 23);
SP_ABI_API(txn_msg, 24);
SP_ABI_API(txn_stage, 25);
SP_ABI_API(txn_set_reply, 26);
SP_ABI_API(txn_set_status, 27);
SP_ABI_API(txn_set_retry_in, 28);
SP_ABI_API(txn_set_data, 29);
SP_ABI_API(txn_get_data, 30);
SP_ABI_API(suspend, 31);
SP_ABI_API(resume, 32);
SP_ABI_API(resume_from_thread, 33);
SP_ABI_API(queue_work, 34);
SP_ABI_API(timer_start, 35);
SP_ABI_API(timer_stop, 36);
SP_ABI_API(now_ms, 37);
SP_ABI_API(kv_get, 38);
SP_ABI_API(kv_put, 39);
SP_ABI_API(kv_del, 40);
SP_ABI_API(kv_scan, 41);
SP_ABI_API(counter_add, 42);
SP_ABI_API(emit_status, 43);
SP_ABI_API(status_name, 44);
SP_ABI_API(uv_loop, 45);
/* ABI 1.1 */
SP_ABI_API(http_route, 46);
SP_ABI_API(http_route_each, 47);
SP_ABI_API(http_req_new, 48);
SP_ABI_API(http_req_add_header, 49);
SP_ABI_API(http_req_set_body, 50);
SP_ABI_API(http_dispatch, 51);
SP_ABI_API(http_req_abort, 52);
SP_ABI_API(http_method, 53);
SP_ABI_API(http_path, 54);
SP_ABI_API(http_param, 55);
SP_ABI_API(http_query, 56);
SP_ABI_API(http_header, 57);
SP_ABI_API(http_body, 58);
SP_ABI_API(http_remote, 59);
SP_ABI_API(http_route_of, 60);
SP_ABI_API(http_set_header, 61);
SP_ABI_API(http_respond, 62);
SP_ABI_API(auth_key, 63);
SP_ABI_API(domain_find, 64);
SP_ABI_API(domain_get, 65);
SP_ABI_API(msg_load, 66);
SP_ABI_API(msg_events, 67);
SP_ABI_API(msg_list, 68);
SP_ABI_API(msg_reschedule, 69);
SP_ABI_API(msg_cancel, 70);
SP_ABI_API(template_load, 71);
SP_ABI_API(domain_dkim, 72);
SP_ABI_API(http_fetch, 73);
SP_ABI_API(http_fetch_cancel, 74);
SP_ABI_API(msg_find_provider, 75);
/* ABI 1.3 */
SP_ABI_API(suppress_check, 76);
SP_ABI_API(suppress_add, 77);
SP_ABI_API(suppress_del, 78);
SP_ABI_API(suppress_list, 79);
SP_ABI_API(webhook_put, 80);
SP_ABI_API(webhook_del, 81);
SP_ABI_API(webhook_list, 82);
SP_ABI_API(webhook_calls, 83);
SP_ABI_API(webhook_test, 84);
SP_ABI_API(analytics_daily, 85);
SP_ABI_API(analytics_cumulated, 86);
_Static_assert(sizeof(sp_host_api_t) == 16 + 8 * 87, "host api size: update this file");
#endif

/* An object file must not be empty. */
extern const int sp_abi_checked;
const int sp_abi_checked = 1;
