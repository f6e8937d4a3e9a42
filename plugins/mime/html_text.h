/* SPDX-License-Identifier: Apache-2.0 */
/* Readable plain text from HTML, for the text/plain alternative of a
 * message that was given only HTML. */
#ifndef SP_MIME_HTML_TEXT_H
#define SP_MIME_HTML_TEXT_H

#include <stddef.h>

/** Text of an HTML document (UTF-8) parsed with libxml2's forgiving HTML
 * parser: block elements end lines, <p> and headings are separated by an
 * empty line, <br> breaks a line, list items start with "* ", a link whose
 * text is not its URL reads "text (url)", entities are decoded, runs of
 * white space collapse (except inside <pre>), and head, script, style,
 * template and noscript are left out. Lines end with LF. Returns a malloc'd
 * NUL-terminated string (possibly empty), or NULL when out of memory. */
char *mime_html_to_text(const char *html, size_t len);

#endif
