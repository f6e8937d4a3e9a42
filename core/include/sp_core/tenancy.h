/* SPDX-License-Identifier: Apache-2.0 */
/* Teams, API keys and domains in the store, their CLI, and the key check
 * behind the host API's auth_key. */
#ifndef SP_CORE_TENANCY_H
#define SP_CORE_TENANCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sp/sp_plugin.h>

#include "store.h"

/* Backends of the host API (read the store of the running core). */
int sp__tenancy_auth_key(const char *token, size_t len, sp_auth_t *out);
int sp__tenancy_domain_find(int64_t team, const char *name, sp_domain_t *out);
int sp__tenancy_domain_get(int64_t id, sp_domain_t *out);
/* ABI 1.2: a domain's DKIM key as a message (domain, selector, algorithm,
 * private_key). 0, SP_ENOTFOUND. */
int sp__tenancy_domain_dkim(int64_t domain_id, sp_msg_t **out);

/* Same against an explicit store (tests, CLI). */
int sp__tenancy_auth_key_in(sp_store_t *st, const char *token, size_t len, sp_auth_t *out);

/* ------------------------------------------------------------------------ */
/* Additions: records, their codecs and the pieces the CLI and tests use. */

#define SP_TEAM_NAME_MAX 100     /* bytes */
#define SP_KEY_NAME_MAX 100      /* bytes */
#define SP_KEY_CLIENT_ID_LEN 10  /* [0-9a-z] */
#define SP_KEY_SECRET_LEN 32     /* lower-case hex of 16 random bytes */
#define SP_KEY_TOKEN_LEN 46      /* "us_" client id "_" secret */
#define SP_KEY_TOKEN_MAX 256     /* longest token auth looks at (any prefix) */
#define SP_KEY_PARTIAL_LEN 12    /* first 6 + "..." + last 3 */
#define SP_DOMAIN_NAME_MAX 253
#define SP_REGION_MAX 31
#define SP_TENANCY_SECRET_FILE "keys.secret" /* in data_dir: the HMAC key */
#define SP_TENANCY_SECRET_LEN 32
#define SP_DKIM_SELECTOR_MAX 63
#define SP_DKIM_ALG_MAX 15
#define SP_DKIM_KEY_MAX 4096 /* PEM bytes with the NUL: RSA-2048 needs ~1.7 KiB */
#define SP_DKIM_RSA "rsa-sha256"
#define SP_DKIM_ED25519 "ed25519-sha256"
#define SP_DKIM_DEFAULT_SELECTOR "sendpipe"
#define SP_DKIM_TXT_MAX 1024 /* "v=DKIM1; k=rsa; p=" + base64 of a 2048-bit SPKI */

/* Domain verification states (useSend's vocabulary; stored as the name). */
typedef enum {
    SP_DOM_NOT_STARTED = 0,
    SP_DOM_PENDING,
    SP_DOM_SUCCESS,
    SP_DOM_FAILED,
    SP_DOM_TEMPORARY_FAILURE,
    SP_DOM__COUNT
} sp_domain_status_t;

const char *sp__domain_status_name(int st); /* NULL if out of range */
int sp__domain_status_parse(const char *s); /* the state, or SP_EINVAL */

typedef struct sp_team_rec {
    int64_t id;
    char name[SP_TEAM_NAME_MAX + 1];
    int64_t created_at; /* ms since the epoch */
} sp_team_rec_t;

typedef struct sp_key_rec {
    int64_t id;
    char client_id[SP_KEY_CLIENT_ID_LEN + 1];
    uint8_t token_hash[32]; /* HMAC-SHA256(keys.secret, secret) */
    char partial_token[SP_KEY_PARTIAL_LEN + 1];
    char name[SP_KEY_NAME_MAX + 1];
    sp_permission_t permission;
    int64_t domain_id; /* 0: any domain of the team */
    int64_t team;
    int64_t created_at;
    int64_t revoked_at; /* 0: active */
} sp_key_rec_t;

typedef struct sp_domain_rec {
    int64_t id;
    int64_t team;
    char name[SP_DOMAIN_NAME_MAX + 1]; /* lower case, globally unique */
    int status;                        /* sp_domain_status_t */
    char region[SP_REGION_MAX + 1];
    bool click_tracking;
    bool open_tracking;
    char dkim_selector[SP_DKIM_SELECTOR_MAX + 1]; /* meaningful with a key */
    int64_t created_at;
    /* The DKIM signing key (absent in records written before keys existed):
     * "rsa-sha256" or "ed25519-sha256", and the private key as PKCS#8 PEM.
     * An empty dkim_private_key means the domain has no key. */
    char dkim_algorithm[SP_DKIM_ALG_MAX + 1];
    char dkim_private_key[SP_DKIM_KEY_MAX];
} sp_domain_rec_t;

/* Validation. Domain names: ASCII letters, digits and '-', labels of 1..63
 * not starting or ending with '-', at least two labels, the last one not all
 * digits, at most 253 bytes; out gets the lower-case form. Team names: 1..100
 * bytes, no control characters, no leading or trailing space, not all digits
 * (a string of digits names a team by id). 0 or SP_EINVAL. */
int sp__tenancy_domain_name_norm(const char *in, char out[SP_DOMAIN_NAME_MAX + 1]);
int sp__tenancy_team_name_check(const char *name);

/* Split "<prefix>_<client id>_<secret>" strictly (the prefix is not checked,
 * as useSend does not; it may not contain '_'). 0 or SP_EINVAL. */
int sp__tenancy_token_parse(const char *tok, size_t len, char client_id[SP_KEY_CLIENT_ID_LEN + 1],
                            char secret[SP_KEY_SECRET_LEN + 1]);
/* HMAC-SHA256 of the secret part under the server key. 0 or -EIO. */
int sp__tenancy_token_hash(const uint8_t skey[SP_TENANCY_SECRET_LEN], const char *secret,
                           size_t len, uint8_t out[32]);
/* The server key in data_dir/keys.secret (32 bytes, mode 0600). With create,
 * a missing file is made atomically (two processes racing agree on one key).
 * 0, SP_ENOTFOUND (missing, !create), SP_ECORRUPT (not 32 bytes), -errno. */
int sp__tenancy_secret(const char *data_dir, bool create, uint8_t key[SP_TENANCY_SECRET_LEN]);

/* Writes: call inside a store apply() (writer thread). Ids come from META
 * counters ("next_team_id", "next_key_id", "next_domain_id") in the same
 * transaction, so a failed request hands out nothing. */
/* SP_EINVAL (name), SP_EEXIST (same name, case-insensitive). */
int sp__tenancy_team_add(sp_wtxn_t *w, const char *name, int64_t now_ms, int64_t *id);
/* A new key: token gets "us_<client id>_<secret>", the only time the secret
 * exists outside the caller. domain_id 0 = unrestricted. SP_ENOTFOUND (no
 * such team), SP_EINVAL (bad name or permission, or domain_id not a domain of
 * the team). */
int sp__tenancy_key_add(sp_wtxn_t *w, int64_t team, const char *name, sp_permission_t perm,
                        int64_t domain_id, const uint8_t skey[SP_TENANCY_SECRET_LEN],
                        int64_t now_ms, int64_t *id, char token[SP_KEY_TOKEN_LEN + 1]);
/* SP_ENOTFOUND, SP_ESTATE (already revoked). The client id stays taken. */
int sp__tenancy_key_revoke(sp_wtxn_t *w, int64_t id, int64_t now_ms);
/* region NULL: "us-east-1". SP_ENOTFOUND (team), SP_EINVAL, SP_EEXIST. */
int sp__tenancy_domain_add(sp_wtxn_t *w, int64_t team, const char *name, const char *region,
                           int status, int64_t now_ms, int64_t *id);
int sp__tenancy_domain_set_status(sp_wtxn_t *w, int64_t id, int status); /* SP_ENOTFOUND */
/* Per-domain open and click tracking: 1 on, 0 off, -1 unchanged. Records
 * written before the flags existed read as off. out (may be NULL) gets the
 * record as written. SP_ENOTFOUND. */
int sp__tenancy_domain_set_tracking(sp_wtxn_t *w, int64_t id, int open, int click,
                                    sp_domain_rec_t *out);
/* Keys restricted to a removed domain stop authenticating (never widened to
 * every domain). SP_ENOTFOUND. */
int sp__tenancy_domain_del(sp_wtxn_t *w, int64_t id);

/* DKIM keys. */
/* "rsa", "rsa-sha256" -> SP_DKIM_RSA; "ed25519", "ed25519-sha256" ->
 * SP_DKIM_ED25519; anything else NULL. */
const char *sp__tenancy_dkim_alg_norm(const char *s);
/* A selector: dot-separated labels of letters, digits and '-' (not at either
 * end of a label), 1..63 bytes. 0 or SP_EINVAL. */
int sp__tenancy_dkim_selector_check(const char *s);
/* A new private key for algorithm (SP_DKIM_RSA: 2048 bits; SP_DKIM_ED25519)
 * as PKCS#8 PEM into pem (NUL-terminated). Slow for RSA (tens to hundreds of
 * ms): call it outside a write transaction. 0, SP_EINVAL, SP_ETOOBIG, -EIO. */
int sp__tenancy_dkim_keygen(const char *algorithm, char *pem, size_t size);
/* The DNS TXT value publishing the key's public half: "v=DKIM1; k=rsa;
 * p=<base64 SubjectPublicKeyInfo DER>" or, for Ed25519 (RFC 8463), "v=DKIM1;
 * k=ed25519; p=<base64 of the raw 32-byte key>". 0, SP_EINVAL (not a key of
 * that algorithm), SP_ETOOBIG. */
int sp__tenancy_dkim_txt(const char *algorithm, const char *pem, char *out, size_t size);
/* Set or replace a domain's key (inside apply()). SP_ENOTFOUND, SP_EINVAL. */
int sp__tenancy_domain_set_dkim(sp_wtxn_t *w, int64_t id, const char *selector,
                                const char *algorithm, const char *pem);
/* domain_dkim against an explicit store. */
int sp__tenancy_domain_dkim_in(sp_store_t *st, int64_t domain_id, sp_msg_t **out);

/* Reads. Getters: 0, SP_ENOTFOUND, SP_ECORRUPT. Each-functions visit in id
 * order (team 0: every team); each returns non-zero to stop. */
int sp__tenancy_team_get(sp_rtxn_t *r, int64_t id, sp_team_rec_t *out);
int sp__tenancy_team_find(sp_rtxn_t *r, const char *name, sp_team_rec_t *out);
/* A team by id (all digits) or by name. */
int sp__tenancy_team_resolve(sp_rtxn_t *r, const char *ref, sp_team_rec_t *out);
int sp__tenancy_team_each(sp_rtxn_t *r, int (*each)(void *arg, const sp_team_rec_t *t),
                          void *arg);
int sp__tenancy_key_get(sp_rtxn_t *r, int64_t id, sp_key_rec_t *out);
int sp__tenancy_key_each(sp_rtxn_t *r, int64_t team,
                         int (*each)(void *arg, const sp_key_rec_t *k), void *arg);
int sp__tenancy_domain_rec_get(sp_rtxn_t *r, int64_t id, sp_domain_rec_t *out);
/* By name (any case), any team. */
int sp__tenancy_domain_rec_find(sp_rtxn_t *r, const char *name, sp_domain_rec_t *out);
int sp__tenancy_domain_each(sp_rtxn_t *r, int64_t team,
                            int (*each)(void *arg, const sp_domain_rec_t *d), void *arg);

/* domain_find / domain_get against an explicit store. */
int sp__tenancy_domain_find_in(sp_store_t *st, int64_t team, const char *name, sp_domain_t *out);
int sp__tenancy_domain_get_in(sp_store_t *st, int64_t id, sp_domain_t *out);

/* `sendpipe teams|keys|domains ...`: argv[0] is the command word ("teams"),
 * argv[1] the sub-command; parses its own options (-c FILE among them).
 * Returns the process exit code. */
int sp__tenancy_cli(int argc, char **argv);

#endif
