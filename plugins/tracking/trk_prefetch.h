/* SPDX-License-Identifier: Apache-2.0 */
/* Which opens and clicks are machines fetching on a reader's behalf (privacy
 * proxies, mail security scanners, bots) rather than the reader: a small,
 * documented table (docs/tracking.md). Pure C, no host API. */
#ifndef TRK_PREFETCH_H
#define TRK_PREFETCH_H

#include <stddef.h>

/* The label of a known prefetcher, or NULL when the request looks like a
 * person's:
 *   "apple-mail-privacy"  Apple Mail Privacy Protection: user agent exactly
 *                         "Mozilla/5.0", or an address in Apple's 17.0.0.0/8
 *                         or 2620:149::/32
 *   "proxy"               an image proxy that fetches when the reader opens
 *                         (GoogleImageProxy, YahooMailProxy): a real open,
 *                         marked so that reports can tell
 *   "scanner"             a mail security product (Barracuda, Mimecast,
 *                         Proofpoint, Symantec/MessageLabs, Trend Micro,
 *                         Forcepoint, Cisco IronPort, Sophos, FireEye,
 *                         Bitdefender, Zscaler, Microsoft Safe Links and
 *                         Office link discovery)
 *   "bot"                 no user agent, or a crawler or HTTP library
 * user_agent and ip may be NULL. */
const char *trk_prefetch_classify(const char *user_agent, const char *ip);

/* The address part of "1.2.3.4:5678", "[2001:db8::1]:5678" or a bare
 * address into out. 0, or -1 when out is too small or the text is not an
 * IPv4 or IPv6 address. */
int trk_ip_of(const char *remote, char *out, size_t cap);

#endif
