/* SPDX-License-Identifier: Apache-2.0 */
/* SES event JSON (event publishing `eventType`, identity notifications
 * `notificationType`) to a sendpipe status, the ids that find the message,
 * and the event's own sub-object. Pure: no host API. */
#ifndef FEEDBACK_SES_EVENT_H
#define FEEDBACK_SES_EVENT_H

#include <stddef.h>

#include <jansson.h>
#include <sp/sp_plugin.h>

typedef struct ses_event {
    json_t *root;              /**< owned */
    const char *type;          /**< "Delivery", ... (borrowed from root) */
    sp_status_t status;        /**< valid when ses_event_parse returned 1 */
    const char *ses_message_id; /**< mail.messageId, or NULL */
    char header_id[128];       /**< X-Usesend-Email-ID (or X-Unsend-Email-ID), or "" */
    char *data_json;           /**< compact JSON of the sub-object ("{}" if none); malloc */
} ses_event_t;

/** Parse an SES event. 1: mapped to a status; 0: a type we ignore
 * (Subscription, unknown; ev->type names it); -1: malformed, reason in err.
 * Free with ses_event_free whatever it returned. */
int ses_event_parse(const char *json, size_t len, ses_event_t *ev, char *err, size_t errlen);
void ses_event_free(ses_event_t *ev);

#endif
