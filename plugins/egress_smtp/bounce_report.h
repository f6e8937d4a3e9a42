/* SPDX-License-Identifier: Apache-2.0 */
/* Per-recipient bounces of a message the relay took for some recipients
 * and refused for others (5xx to RCPT TO). The refusals are collected during
 * the transaction; once the message's SENT is recorded, one BOUNCED event
 * reports them in the SES bounce shape (bounceType Permanent,
 * bouncedRecipients), so the core puts those addresses on the team's
 * suppression list and counts a hard bounce, as for SES feedback. */
#ifndef SP_EGRESS_SMTP_BOUNCE_REPORT_H
#define SP_EGRESS_SMTP_BOUNCE_REPORT_H

#include <stddef.h>

/* Refusals of one transaction. */
typedef struct br_refusals br_refusals_t;

/* Add a refused recipient with the relay's one-line answer ("550 5.1.1 ...").
 * Creates *r on first use. 0 or SP_ENOMEM. */
int br_refusal_add(br_refusals_t **r, const char *rcpt, const char *reply_line);
void br_refusals_free(br_refusals_t *r);
/* The BOUNCED event's data JSON (malloc'd), or NULL on out of memory. */
char *br_event_data(const br_refusals_t *r, const char *relay_host);

/* Reports waiting for their message's SENT, keyed by message id. */
typedef struct br_pending br_pending_t;

/* Keep data (ownership passes) for message id; an older entry of the same id
 * is replaced. At most `cap` entries: the oldest is dropped beyond that.
 * 0 or SP_ENOMEM (data is then freed). */
int br_pending_put(br_pending_t **p, const char *id, char *data, size_t cap);
/* Take the entry of id (caller frees), or NULL. */
char *br_pending_take(br_pending_t **p, const char *id);
void br_pending_free(br_pending_t **p);

#endif
