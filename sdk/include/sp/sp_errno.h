/* SPDX-License-Identifier: Apache-2.0 */
/** @file sp_errno.h
 * sendpipe error codes: one table that generates the enum, the names and the
 * messages.
 *
 * Convention: a fallible function returns `int`, 0 on success and a negative
 * value on failure. System failures are `-errno` (for example `-ENOMEM`);
 * sendpipe's own errors are the `SP_E*` values below, from -1000 downwards,
 * far from errno's range.
 */
#ifndef SP_SP_ERRNO_H
#define SP_SP_ERRNO_H

#ifdef __cplusplus
extern "C" {
#endif

/** X-macro list: XX(code, NAME, "message"). Codes are never reused. */
#define SP_ERRNO_MAP(XX)                                                          \
    XX(-1000, EINVAL, "invalid argument")                                         \
    XX(-1001, ENOMEM, "out of memory")                                            \
    XX(-1002, ECANCELED, "operation cancelled or token already used")             \
    XX(-1003, ENOTFOUND, "not found")                                             \
    XX(-1004, EEXIST, "already exists")                                           \
    XX(-1005, ESTOREFULL, "store is full (map or disk)")                          \
    XX(-1006, ESTORE, "store error")                                              \
    XX(-1007, ECORRUPT, "record is malformed or has an unknown major version")    \
    XX(-1008, EABI, "plugin ABI mismatch")                                        \
    XX(-1009, ECONFIG, "configuration error")                                     \
    XX(-1010, ESTATE, "call not allowed in this state")                           \
    XX(-1011, ESHUTDOWN, "server is shutting down")                               \
    XX(-1012, ETIMEDOUT, "timed out")                                             \
    XX(-1013, ETOOBIG, "value too large")                                         \
    XX(-1014, EBUSY, "busy, try again")

/** sendpipe error codes. */
typedef enum {
#define SP__ERR_ENUM(code, name, msg) SP_##name = code,
    SP_ERRNO_MAP(SP__ERR_ENUM)
#undef SP__ERR_ENUM
    SP__ERR_LAST = -1999
} sp_errno_t;

#ifdef __cplusplus
}
#endif

#endif /* SP_SP_ERRNO_H */
