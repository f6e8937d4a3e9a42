/* SPDX-License-Identifier: Apache-2.0 */
/* Prefetch classification (see trk_prefetch.h). */
#define _DEFAULT_SOURCE
#include "trk_prefetch.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef struct ua_rule {
    const char *needle; /* lower case, matched anywhere in the user agent */
    const char *label;
} ua_rule_t;

/* First match wins: the proxies before the generic bot words. */
static const ua_rule_t ua_rules[] = {
    {"googleimageproxy", "proxy"},
    {"yahoomailproxy", "proxy"},
    {"barracuda", "scanner"},
    {"mimecast", "scanner"},
    {"proofpoint", "scanner"},
    {"symantec", "scanner"},
    {"messagelabs", "scanner"},
    {"trendmicro", "scanner"},
    {"trend micro", "scanner"},
    {"forcepoint", "scanner"},
    {"ironport", "scanner"},
    {"sophos", "scanner"},
    {"fireeye", "scanner"},
    {"bitdefender", "scanner"},
    {"zscaler", "scanner"},
    {"safelinks", "scanner"},
    {"safe links", "scanner"},
    {"microsoft office existence discovery", "scanner"},
    {"ms-office", "scanner"},
    {"bot", "bot"},
    {"crawler", "bot"},
    {"spider", "bot"},
    {"headlesschrome", "bot"},
    {"python-requests", "bot"},
    {"python-urllib", "bot"},
    {"curl/", "bot"},
    {"wget/", "bot"},
    {"go-http-client", "bot"},
    {"libwww-perl", "bot"},
    {"java/", "bot"},
};

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        if (strncasecmp(p, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

static bool apple_ip(const char *ip)
{
    struct in_addr a4;
    struct in6_addr a6;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (inet_pton(AF_INET, ip, &a4) == 1) {
        return ((const uint8_t *)&a4.s_addr)[0] == 17;
    }
    if (inet_pton(AF_INET6, ip, &a6) == 1) {
        if (memcmp(a6.s6_addr, mapped, sizeof(mapped)) == 0) {
            return a6.s6_addr[12] == 17;
        }
        /* 2620:149::/32 */
        return a6.s6_addr[0] == 0x26 && a6.s6_addr[1] == 0x20 && a6.s6_addr[2] == 0x01 &&
               a6.s6_addr[3] == 0x49;
    }
    return false;
}

const char *trk_prefetch_classify(const char *user_agent, const char *ip)
{
    if (user_agent && strcmp(user_agent, "Mozilla/5.0") == 0) {
        return "apple-mail-privacy";
    }
    if (ip && apple_ip(ip)) {
        return "apple-mail-privacy";
    }
    if (!user_agent || user_agent[0] == '\0') {
        return "bot";
    }
    for (size_t i = 0; i < sizeof(ua_rules) / sizeof(ua_rules[0]); i++) {
        if (contains_ci(user_agent, ua_rules[i].needle)) {
            return ua_rules[i].label;
        }
    }
    return NULL;
}

int trk_ip_of(const char *remote, char *out, size_t cap)
{
    struct in6_addr a;
    const char *b = remote, *e;
    size_t n;

    if (!remote || !out || cap == 0) {
        return -1;
    }
    if (*b == '[') {
        b++;
        e = strchr(b, ']');
    } else if ((e = strchr(b, ':')) != NULL && strchr(e + 1, ':') != NULL) {
        e = b + strlen(b); /* a bare IPv6 address */
    } else if (e == NULL) {
        e = b + strlen(b);
    }
    if (!e) {
        return -1;
    }
    n = (size_t)(e - b);
    if (n == 0 || n >= cap) {
        return -1;
    }
    memcpy(out, b, n);
    out[n] = '\0';
    if (inet_pton(AF_INET, out, &a) != 1 && inet_pton(AF_INET6, out, &a) != 1) {
        return -1;
    }
    return 0;
}
