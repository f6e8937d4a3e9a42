/* SPDX-License-Identifier: Apache-2.0 */
/* Pure helpers of the suppression plugin (no host API), unit-tested. */
#ifndef SP_SUPPRESSION_SUPP_ADDR_H
#define SP_SUPPRESSION_SUPP_ADDR_H

#include <stdbool.h>
#include <stddef.h>

/* The bare address of a "Name <addr>" recipient: true and *out and *olen set to
 * the text between the last '<' and the closing '>' (the string, ASCII
 * white space trimmed, must end with '>'); false when there is none or it
 * would be empty. The result points into s; the caller normalises it. */
bool supp_bare_addr(const char *s, size_t len, const char **out, size_t *olen);

#endif
