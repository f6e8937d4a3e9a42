/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L
/* SES event mapping, as upstream's callback does it (contract §4.3). */
#include "ses_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct ses_map {
    const char *type;
    sp_status_t status;
    const char *key;  /**< sub-object key */
    const char *key2; /**< another spelling of it, or NULL */
} ses_map_t;

static const ses_map_t ses_types[] = {
    {"Send", SP_ST_SENT, "send", NULL},
    {"Delivery", SP_ST_DELIVERED, "delivery", NULL},
    {"Bounce", SP_ST_BOUNCED, "bounce", NULL},
    {"Complaint", SP_ST_COMPLAINED, "complaint", NULL},
    {"Reject", SP_ST_REJECTED, "reject", NULL},
    {"Open", SP_ST_OPENED, "open", NULL},
    {"Click", SP_ST_CLICKED, "click", NULL},
    {"Rendering Failure", SP_ST_RENDERING_FAILURE, "failure", "renderingFailure"},
    {"DeliveryDelay", SP_ST_DELIVERY_DELAYED, "deliveryDelay", NULL},
};

static void seterr(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s", msg);
    }
}

/* The X-Usesend-Email-ID (else X-Unsend-Email-ID) value of mail.headers,
 * trimmed, if it is a plausible id (printable ASCII, fits). */
static void find_header_id(json_t *headers, char *out, size_t outlen)
{
    static const char *const names[] = {"X-Usesend-Email-ID", "X-Unsend-Email-ID"};
    size_t i;
    json_t *h;

    out[0] = '\0';
    if (!json_is_array(headers)) {
        return;
    }
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        json_array_foreach(headers, i, h) {
            const char *n = json_string_value(json_object_get(h, "name"));
            const char *v = json_string_value(json_object_get(h, "value"));
            size_t len;
            if (n == NULL || v == NULL || strcasecmp(n, names[k]) != 0) {
                continue;
            }
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            len = strlen(v);
            while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
                len--;
            }
            if (len == 0 || len >= outlen) {
                continue;
            }
            for (size_t c = 0; c < len; c++) {
                if ((unsigned char)v[c] <= 0x20 || (unsigned char)v[c] >= 0x7f) {
                    len = 0;
                    break;
                }
            }
            if (len == 0) {
                continue;
            }
            memcpy(out, v, len);
            out[len] = '\0';
            return;
        }
    }
}

int ses_event_parse(const char *json, size_t len, ses_event_t *ev, char *err, size_t errlen)
{
    json_error_t je;
    json_t *mail, *sub = NULL;
    const ses_map_t *map = NULL;

    memset(ev, 0, sizeof(*ev));
    ev->root = json_loadb(json, len, 0, &je);
    if (ev->root == NULL || !json_is_object(ev->root)) {
        seterr(err, errlen, "Message is not an SES event JSON object");
        return -1;
    }
    ev->type = json_string_value(json_object_get(ev->root, "eventType"));
    if (ev->type == NULL) {
        ev->type = json_string_value(json_object_get(ev->root, "notificationType"));
    }
    if (ev->type == NULL) {
        seterr(err, errlen, "Message has no eventType or notificationType string");
        return -1;
    }
    mail = json_object_get(ev->root, "mail");
    if (!json_is_object(mail)) {
        seterr(err, errlen, "Message has no mail object");
        return -1;
    }
    ev->ses_message_id = json_string_value(json_object_get(mail, "messageId"));
    if (ev->ses_message_id != NULL && ev->ses_message_id[0] == '\0') {
        ev->ses_message_id = NULL;
    }
    find_header_id(json_object_get(mail, "headers"), ev->header_id, sizeof(ev->header_id));
    for (size_t i = 0; i < sizeof(ses_types) / sizeof(ses_types[0]); i++) {
        if (strcmp(ev->type, ses_types[i].type) == 0) {
            map = &ses_types[i];
            break;
        }
    }
    if (map == NULL) {
        return 0;
    }
    ev->status = map->status;
    sub = json_object_get(ev->root, map->key);
    if (sub == NULL && map->key2 != NULL) {
        sub = json_object_get(ev->root, map->key2);
    }
    if (sub != NULL && !json_is_object(sub)) {
        seterr(err, errlen, "the event's own object is not a JSON object");
        return -1;
    }
    ev->data_json = sub != NULL ? json_dumps(sub, JSON_COMPACT) : strdup("{}");
    if (ev->data_json == NULL) {
        seterr(err, errlen, "out of memory");
        return -1;
    }
    return 1;
}

void ses_event_free(ses_event_t *ev)
{
    json_decref(ev->root);
    free(ev->data_json);
    memset(ev, 0, sizeof(*ev));
}
