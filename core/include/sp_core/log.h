/* SPDX-License-Identifier: Apache-2.0 */
/* Structured logging: one JSON object per line (time, level, msg, fields). */
#ifndef SP_CORE_LOG_H
#define SP_CORE_LOG_H

#include <stdarg.h>

#include <sp/sp_plugin.h>

/* Open the log: path NULL or "-" means stderr. Thread-safe writers; each line
 * is written with one write(2) so lines from threads never interleave. */
int sp__log_open(const char *path, sp_log_level_t level);
/* Reopen the same path (SIGHUP, log rotation). 0 or -errno. */
int sp__log_reopen(void);
void sp__log_set_level(sp_log_level_t level);
sp_log_level_t sp__log_get_level(void);
/* Parse "error|warn|info|debug" (any case; "warning" too); -1 if unknown. */
int sp__log_level_parse(const char *s);
void sp__log_close(void);

/* Emit one line. `src` (may be NULL) becomes the "plugin" field. `fields` is
 * NULL or a NULL-terminated list of key, value string pairs added as JSON
 * string members. The message and values are JSON-escaped. Any thread.
 * Line: {"time":"2026-11-25T02:10:00.123Z","level":"info","msg":"...",
 * "plugin":"...",fields...}. A NULL value is written as null (only a NULL key
 * ends the list); a field named time, level, msg or plugin is written as
 * "_time" etc. Lines are at most 8 KiB: a longer message is cut (never inside
 * an escape) and ends with "...[truncated]"; fields that do not fit in their
 * 2 KiB share are dropped whole and "fields_truncated":"true" is added. */
void sp__log_emitv(sp_log_level_t lvl, const char *src, const char *const *fields,
                   const char *fmt, va_list ap) SP_PRINTF(4, 0);
void sp__log(sp_log_level_t lvl, const char *fmt, ...) SP_PRINTF(2, 3);
void sp__log_src(sp_log_level_t lvl, const char *src, const char *fmt, ...) SP_PRINTF(3, 4);
void sp__log_fields(sp_log_level_t lvl, const char *const *fields, const char *fmt, ...)
    SP_PRINTF(3, 4);

#define SP_LOGE(...) sp__log(SP_LOG_ERROR, __VA_ARGS__)
#define SP_LOGW(...) sp__log(SP_LOG_WARN, __VA_ARGS__)
#define SP_LOGI(...) sp__log(SP_LOG_INFO, __VA_ARGS__)
#define SP_LOGD(...) sp__log(SP_LOG_DEBUG, __VA_ARGS__)

/* JSON string escaping into out (always NUL-terminated, truncated to outlen).
 * Returns the length written. Used by the logger and other JSON producers.
 * Escapes '"', '\\' and control characters (\n \r \t \b \f, others
 * \u00XX, NUL included). Each byte that is not part of valid UTF-8 (RFC 3629:
 * overlong forms, surrogates and code points above U+10FFFF are invalid)
 * becomes \ufffd, so the output is always valid JSON. Truncation never
 * splits an escape or a UTF-8 sequence. outlen 0 writes nothing. */
size_t sp__json_escape(char *out, size_t outlen, const char *in, size_t inlen);

/* Error message for -errno or SP_E* codes ("success" for 0). The string is
 * static or thread-local: valid until the next call in the same thread.
 * sp__err_name gives "SP_EINVAL", "ENOENT", "OK", or "UNKNOWN". */
const char *sp__strerror(int err);
const char *sp__err_name(int err);

#endif
