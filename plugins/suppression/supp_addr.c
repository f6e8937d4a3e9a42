/* SPDX-License-Identifier: Apache-2.0 */
/* Pure helpers of the suppression plugin. */
#include "supp_addr.h"

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

bool supp_bare_addr(const char *s, size_t len, const char **out, size_t *olen)
{
    size_t end = len, lt;

    if (s == NULL) {
        return false;
    }
    while (end > 0 && is_space((unsigned char)s[end - 1])) {
        end--;
    }
    if (end < 2 || s[end - 1] != '>') {
        return false;
    }
    lt = end - 1;
    while (lt > 0 && s[lt - 1] != '<') {
        lt--;
    }
    if (lt == 0) {
        return false; /* no '<' */
    }
    /* s[lt - 1] is the last '<'; the address is s[lt .. end - 1). */
    *out = s + lt;
    *olen = end - 1 - lt;
    while (*olen > 0 && is_space((unsigned char)(*out)[0])) {
        (*out)++;
        (*olen)--;
    }
    while (*olen > 0 && is_space((unsigned char)(*out)[*olen - 1])) {
        (*olen)--;
    }
    return *olen > 0;
}
