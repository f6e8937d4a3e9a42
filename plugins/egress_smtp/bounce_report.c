/* SPDX-License-Identifier: Apache-2.0 */
/* Per-recipient bounce reports: JSON through jansson. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <sp/sp_errno.h>

#include "bounce_report.h"

struct br_refusals {
    json_t *list; /* [{emailAddress, action, status, diagnosticCode}] */
};

int br_refusal_add(br_refusals_t **r, const char *rcpt, const char *reply_line)
{
    json_t *it;
    char status[16] = "";
    const char *sp;
    if (*r == NULL) {
        *r = calloc(1, sizeof(**r));
        if (*r == NULL || ((*r)->list = json_array()) == NULL) {
            free(*r);
            *r = NULL;
            return SP_ENOMEM;
        }
    }
    /* The enhanced status code after the reply code, when there is one. */
    sp = strchr(reply_line, ' ');
    if (sp != NULL && (sp[1] == '5' || sp[1] == '4') && sp[2] == '.') {
        size_t n = strcspn(sp + 1, " ");
        if (n < sizeof(status)) {
            memcpy(status, sp + 1, n);
            status[n] = '\0';
        }
    }
    it = json_pack("{s:s, s:s, s:s, s:s+}", "emailAddress", rcpt, "action", "failed", "status",
                   status[0] != '\0' ? status : "5.0.0", "diagnosticCode", "smtp; ",
                   reply_line);
    if (it == NULL || json_array_append_new((*r)->list, it) < 0) {
        return SP_ENOMEM;
    }
    return 0;
}

void br_refusals_free(br_refusals_t *r)
{
    if (r != NULL) {
        json_decref(r->list);
        free(r);
    }
}

char *br_event_data(const br_refusals_t *r, const char *relay_host)
{
    json_t *d = json_pack("{s:s, s:s, s:O, s:s+, s:s, s:s}", "bounceType", "Permanent",
                          "bounceSubType", "General", "bouncedRecipients", r->list,
                          "reportingMTA", "dns; ", relay_host, "plugin", "egress_smtp",
                          "source", "sendpipe");
    char *out = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    return out;
}

struct br_pending {
    br_pending_t *next;
    char *id;
    char *data;
};

int br_pending_put(br_pending_t **p, const char *id, char *data, size_t cap)
{
    br_pending_t *e;
    size_t n = 0;
    free(br_pending_take(p, id));
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->id = strdup(id)) == NULL) {
        free(e);
        free(data);
        return SP_ENOMEM;
    }
    e->data = data;
    e->next = *p;
    *p = e;
    /* Newest first: cut what is beyond cap. */
    for (br_pending_t **q = p; *q != NULL; n++) {
        if (n >= cap) {
            br_pending_t *dead = *q;
            *q = dead->next;
            free(dead->id);
            free(dead->data);
            free(dead);
            continue;
        }
        q = &(*q)->next;
    }
    return 0;
}

char *br_pending_take(br_pending_t **p, const char *id)
{
    for (br_pending_t **q = p; *q != NULL; q = &(*q)->next) {
        if (strcmp((*q)->id, id) == 0) {
            br_pending_t *e = *q;
            char *data = e->data;
            *q = e->next;
            free(e->id);
            free(e);
            return data;
        }
    }
    return NULL;
}

void br_pending_free(br_pending_t **p)
{
    while (*p != NULL) {
        br_pending_t *e = *p;
        *p = e->next;
        free(e->id);
        free(e->data);
        free(e);
    }
}
