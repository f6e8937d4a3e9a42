/* SPDX-License-Identifier: Apache-2.0 */
/* mime: builds the RFC 5322 message (SP_F_MIME, CRLF line ends) and its
 * Message-ID (SP_F_MESSAGE_ID) at the end of the transform stage, so the
 * sign stage signs and the egress stage sends exactly these bytes. Messages
 * from the API are built with GMime 3 (address lists, RFC 2047 and 2231
 * encoding, QP/base64 with short lines); messages that arrived complete
 * through SMTP keep their bytes and only get the missing headers (see
 * raw_headers.c). The output depends only on the record, so every delivery
 * attempt builds the same message. docs/messages.md describes the result. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gmime/gmime.h>
#include <libxml/parser.h>

#include <sp/sp_plugin.h>

#include "html_text.h"
#include "raw_headers.h"

/* Last in the transform stage: the highest priority the core accepts (the
 * brief's "1000" is outside the core's -100..100 range). */
#define MIME_PRIORITY 100

typedef struct mime {
    sp_plugin_t *p;
    const sp_host_api_t *api;
} mime_t;

/* GMime keeps process-wide state and has no reference count we can rely on
 * across plugins: initialise once, never shut down (ingress_smtp does the
 * same), so unloading one plugin cannot pull GMime from under another. */
static bool g_libs_up;

/* ---- small helpers ------------------------------------------------------ */

/* A plain host name (letters, digits, '-', '.') of n bytes, lower-cased
 * into out; false if it is not one or does not fit. */
static bool host_copy(const char *h, size_t n, char *out, size_t outlen)
{
    if (n == 0 || n >= outlen) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '-' && c != '.') {
            return false;
        }
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    return true;
}

/* Domain part of an addr-spec into out (see host_copy). */
static bool addr_domain(const char *addr, char *out, size_t outlen)
{
    const char *at = strrchr(addr, '@');
    return at != NULL && host_copy(at + 1, strlen(at + 1), out, outlen);
}

/* Split an address item ("Name <addr>", "\"Doe, J\" <addr>", "addr") into
 * a display name (unquoted, CR/LF/controls made spaces; may be empty) and
 * an addr-spec. Both malloc'd. -1 when out of memory. */
static int split_addr(const char *item, char **name, char **addr)
{
    const char *lt = strrchr(item, '<');
    const char *gt = lt != NULL ? strchr(lt, '>') : NULL;
    const char *ns = item, *ne;
    char *n, *a;
    size_t k = 0;

    *name = NULL;
    *addr = NULL;
    if (lt == NULL || gt == NULL) {
        const char *s = item, *e = item + strlen(item);
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        *name = strdup("");
        *addr = strndup(s, (size_t)(e - s));
        return *name != NULL && *addr != NULL ? 0 : -1;
    }
    a = strndup(lt + 1, (size_t)(gt - lt - 1));
    ne = lt;
    while (ns < ne && (*ns == ' ' || *ns == '\t')) {
        ns++;
    }
    while (ne > ns && (ne[-1] == ' ' || ne[-1] == '\t')) {
        ne--;
    }
    if (ne - ns >= 2 && *ns == '"' && ne[-1] == '"') {
        ns++;
        ne--;
    }
    n = malloc((size_t)(ne - ns) + 1);
    if (n == NULL || a == NULL) {
        free(n);
        free(a);
        return -1;
    }
    for (const char *q = ns; q < ne; q++) {
        unsigned char c = (unsigned char)*q;
        if (c == '\\' && q + 1 < ne) {
            c = (unsigned char)*++q;
        }
        n[k++] = c < 32 || c == 127 ? ' ' : (char)c;
    }
    n[k] = '\0';
    *name = n;
    *addr = a;
    return 0;
}

/* A copy of s[0..n) with line ends made LF (CRLF and bare CR), NULs dropped. */
static char *to_lf(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    if (o == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            o[k++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n') {
                i++;
            }
        } else if (s[i] != '\0') {
            o[k++] = s[i];
        }
    }
    o[k] = '\0';
    return o;
}

/* A one-line copy: CR, LF, TAB and other controls become spaces. */
static char *one_line(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    if (o == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\0') {
            o[k++] = c < 32 || c == 127 ? ' ' : (char)c;
        }
    }
    o[k] = '\0';
    return o;
}

/* RFC 5322 date in UTC, C locale whatever the process locale. */
static void rfc5322_date(int64_t ms, char *out, size_t outlen)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* The message's date: scheduled_at if set, else created_at (never "now",
 * so a retry builds the same bytes; now only if the core set neither). */
static int64_t msg_date_ms(const mime_t *mc, const sp_msg_t *m)
{
    int64_t v;
    if (mc->api->msg_get_int(m, SP_F_SCHEDULED_AT, &v) == 0 && v > 0) {
        return v;
    }
    if (mc->api->msg_get_int(m, SP_F_CREATED_AT, &v) == 0) {
        return v;
    }
    return mc->api->now_ms();
}

/* The message id is the core's: letters, digits, '-', '_', '.'. */
static bool id_ok(const char *id, size_t n)
{
    if (n == 0 || n > 128 || strlen(id) != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.') {
            return false;
        }
    }
    return true;
}

/* Domain of a record's from field into out. */
static bool from_domain(const mime_t *mc, const sp_msg_t *m, char *out, size_t outlen)
{
    size_t n;
    const char *from = mc->api->msg_get(m, SP_F_FROM, &n);
    char *name = NULL, *addr = NULL;
    bool ok = false;
    if (from != NULL && strlen(from) == n && split_addr(from, &name, &addr) == 0) {
        ok = addr_domain(addr, out, outlen);
    }
    free(name);
    free(addr);
    return ok;
}

/* The Message-ID domain: the from address's, else (an internationalised
 * from domain, say) the sending domain's name. */
static bool msg_domain(const mime_t *mc, const sp_msg_t *m, char *out, size_t outlen)
{
    const sp_host_api_t *api = mc->api;
    sp_domain_t d;
    int64_t did;
    if (from_domain(mc, m, out, outlen)) {
        return true;
    }
    memset(&d, 0, sizeof(d));
    d.size = sizeof(d);
    return SP_API_HAS(api, domain_get) && api->msg_get_int(m, SP_F_DOMAIN_ID, &did) == 0 &&
           api->domain_get(did, &d) == 0 && host_copy(d.name, strlen(d.name), out, outlen);
}

/* ---- content types ------------------------------------------------------- */

static const struct {
    const char *ext;
    const char *type;
} ctypes[] = {
    {"txt", "text/plain"},          {"text", "text/plain"},
    {"log", "text/plain"},          {"csv", "text/csv"},
    {"tsv", "text/tab-separated-values"},
    {"htm", "text/html"},           {"html", "text/html"},
    {"css", "text/css"},            {"ics", "text/calendar"},
    {"vcf", "text/vcard"},          {"md", "text/markdown"},
    {"xml", "application/xml"},     {"json", "application/json"},
    {"js", "text/javascript"},      {"pdf", "application/pdf"},
    {"rtf", "application/rtf"},     {"zip", "application/zip"},
    {"gz", "application/gzip"},     {"tgz", "application/gzip"},
    {"tar", "application/x-tar"},   {"7z", "application/x-7z-compressed"},
    {"rar", "application/vnd.rar"}, {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
    {"odp", "application/vnd.oasis.opendocument.presentation"},
    {"epub", "application/epub+zip"},
    {"png", "image/png"},           {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},         {"gif", "image/gif"},
    {"webp", "image/webp"},         {"svg", "image/svg+xml"},
    {"bmp", "image/bmp"},           {"ico", "image/vnd.microsoft.icon"},
    {"tif", "image/tiff"},          {"tiff", "image/tiff"},
    {"heic", "image/heic"},         {"avif", "image/avif"},
    {"mp3", "audio/mpeg"},          {"wav", "audio/wav"},
    {"ogg", "audio/ogg"},           {"m4a", "audio/mp4"},
    {"mp4", "video/mp4"},           {"mov", "video/quicktime"},
    {"webm", "video/webm"},         {"avi", "video/x-msvideo"},
    {"eml", "message/rfc822"},      {"p7s", "application/pkcs7-signature"},
    {"asc", "application/pgp-signature"},
};

/* "type/subtype" for a file name by its extension (case-insensitive). */
static const char *content_type_for(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot != NULL && dot[1] != '\0') {
        for (size_t i = 0; i < sizeof(ctypes) / sizeof(ctypes[0]); i++) {
            if (strcasecmp(dot + 1, ctypes[i].ext) == 0) {
                return ctypes[i].type;
            }
        }
    }
    return "application/octet-stream";
}

/* ---- custom headers ------------------------------------------------------ */

/* Never taken from custom headers: reserved, or the structure of the
 * message and its envelope. */
static bool header_refused(const char *name)
{
    static const char *const refused[] = {"X-Usesend-Email-ID", "X-Unsend-Email-ID",
                                          "From", "To", "Cc", "Bcc", "Resent-Bcc",
                                          "Message-ID", "MIME-Version", NULL};
    for (int i = 0; refused[i] != NULL; i++) {
        if (strcasecmp(name, refused[i]) == 0) {
            return true;
        }
    }
    return strncasecmp(name, "Content-", 8) == 0;
}

/* Defaults a custom header of the same name replaces (others are added). */
static bool header_overrides(const char *name)
{
    static const char *const over[] = {"Subject",    "Date",           "Reply-To", "In-Reply-To",
                                       "References", "X-Entity-Ref-ID", NULL};
    for (int i = 0; over[i] != NULL; i++) {
        if (strcasecmp(name, over[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool is_ftext_name(const char *s, size_t n)
{
    if (n == 0 || n > 76) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 33 || c > 126 || c == ':') {
            return false;
        }
    }
    return true;
}

/* Apply the record's "Name: value" items to the message. Items with a bad
 * name, CR/LF/NUL anywhere, or a refused name are skipped (logged). */
static void apply_custom_headers(mime_t *mc, const sp_msg_t *m, GMimeMessage *msg)
{
    const sp_host_api_t *api = mc->api;
    size_t count = api->msg_count(m, SP_F_HEADERS);
    for (size_t i = 0; i < count; i++) {
        size_t len;
        const char *item = api->msg_get_at(m, SP_F_HEADERS, i, &len);
        const char *colon = item != NULL ? memchr(item, ':', len) : NULL;
        char name[80];
        const char *v;
        size_t nl;
        if (colon == NULL || strlen(item) != len || strpbrk(item, "\r\n") != NULL) {
            api->log(mc->p, SP_LOG_WARN, "custom header %zu skipped: malformed", i);
            continue;
        }
        nl = (size_t)(colon - item);
        if (!is_ftext_name(item, nl)) {
            api->log(mc->p, SP_LOG_WARN, "custom header %zu skipped: bad name", i);
            continue;
        }
        memcpy(name, item, nl);
        name[nl] = '\0';
        if (header_refused(name)) {
            api->log(mc->p, SP_LOG_DEBUG, "custom header %s skipped: reserved", name);
            continue;
        }
        v = colon + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        if (header_overrides(name)) {
            g_mime_object_set_header(GMIME_OBJECT(msg), name, v, "utf-8");
        } else {
            g_mime_object_append_header(GMIME_OBJECT(msg), name, v, "utf-8");
        }
    }
}

/* ---- building ------------------------------------------------------------ */

/* A text part, QP when mostly ASCII, base64 otherwise (GMime's choice for a
 * 7-bit transport); never 7bit/8bit, so no line is longer than 76
 * characters and no boundary can occur inside. */
static GMimeObject *text_part(const char *subtype, const char *text)
{
    GMimeTextPart *tp = g_mime_text_part_new_with_subtype(subtype);
    GMimeContentEncoding enc;
    g_mime_text_part_set_text(tp, text);
    enc = g_mime_part_get_best_content_encoding(GMIME_PART(tp), GMIME_ENCODING_CONSTRAINT_7BIT);
    if (enc != GMIME_CONTENT_ENCODING_BASE64) {
        enc = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
    }
    g_mime_part_set_content_encoding(GMIME_PART(tp), enc);
    return GMIME_OBJECT(tp);
}

/* RFC 2231 parameters in UTF-8 rather than the narrowest charset. */
static void utf8_param(GMimeParamList *l, const char *name)
{
    GMimeParam *pa = l != NULL ? g_mime_param_list_get_parameter(l, name) : NULL;
    if (pa != NULL) {
        g_mime_param_set_charset(pa, "utf-8");
    }
}

static GMimeObject *attachment_part(const char *name, const char *data, size_t len)
{
    const char *ct = content_type_for(name);
    const char *slash = strchr(ct, '/');
    char type[32];
    GMimePart *part;
    GMimeStream *s;
    GMimeDataWrapper *w;
    snprintf(type, sizeof(type), "%.*s", (int)(slash - ct), ct);
    part = g_mime_part_new_with_type(type, slash + 1);
    g_mime_part_set_filename(part, name);
    utf8_param(g_mime_content_disposition_get_parameters(
                   g_mime_object_get_content_disposition(GMIME_OBJECT(part))),
               "filename");
    utf8_param(g_mime_content_type_get_parameters(g_mime_object_get_content_type(GMIME_OBJECT(part))),
               "name");
    s = g_mime_stream_mem_new_with_buffer(data, len);
    w = g_mime_data_wrapper_new_with_stream(s, GMIME_CONTENT_ENCODING_DEFAULT);
    g_mime_part_set_content(part, w);
    g_object_unref(w);
    g_object_unref(s);
    g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64);
    return GMIME_OBJECT(part);
}

/* The body: text/plain, or multipart/alternative (text, html; the text made
 * from the html when none was given), inside multipart/mixed with the
 * attachments. Boundaries are fixed per message id (deterministic; "=_"
 * cannot occur in QP or base64 content). NULL on failure, with *why set
 * (left NULL: out of memory). */
static GMimeObject *build_body(mime_t *mc, const sp_msg_t *m, const char *id,
                               const char **why)
{
    const sp_host_api_t *api = mc->api;
    size_t tlen = 0, hlen = 0, natt = api->msg_count(m, SP_F_ATTACHMENT_NAMES);
    const char *text = api->msg_get(m, SP_F_TEXT, &tlen);
    const char *html = api->msg_get(m, SP_F_HTML, &hlen);
    char *t = NULL, *h = NULL, bnd[200];
    GMimeObject *body;

    if (html != NULL && hlen > 0) {
        h = to_lf(html, hlen);
        if (h == NULL) {
            return NULL;
        }
    }
    if (text != NULL && tlen > 0) {
        t = to_lf(text, tlen);
    } else if (h != NULL) {
        char *gen = mime_html_to_text(h, strlen(h));
        t = gen != NULL ? to_lf(gen, strlen(gen)) : NULL;
        free(gen);
    } else {
        t = strdup("");
    }
    if (t == NULL) {
        free(h);
        return NULL;
    }
    if (h != NULL) {
        GMimeMultipart *alt = g_mime_multipart_new_with_subtype("alternative");
        GMimeObject *tp = text_part("plain", t), *hp = text_part("html", h);
        snprintf(bnd, sizeof(bnd), "=_sp_alt_%s", id);
        g_mime_multipart_set_boundary(alt, bnd);
        g_mime_multipart_add(alt, tp);
        g_mime_multipart_add(alt, hp);
        g_object_unref(tp);
        g_object_unref(hp);
        body = GMIME_OBJECT(alt);
    } else {
        body = text_part("plain", t);
    }
    free(t);
    free(h);
    if (natt > 0) {
        GMimeMultipart *mix = g_mime_multipart_new_with_subtype("mixed");
        snprintf(bnd, sizeof(bnd), "=_sp_mix_%s", id);
        g_mime_multipart_set_boundary(mix, bnd);
        g_mime_multipart_add(mix, body);
        g_object_unref(body);
        body = GMIME_OBJECT(mix);
        if (api->msg_count(m, SP_F_ATTACHMENT_DATA) != natt) {
            *why = "attachment names and data do not match";
            g_object_unref(body);
            return NULL;
        }
        for (size_t i = 0; i < natt; i++) {
            size_t nl = 0, dl = 0;
            const char *n = api->msg_get_at(m, SP_F_ATTACHMENT_NAMES, i, &nl);
            const char *d = api->msg_get_at(m, SP_F_ATTACHMENT_DATA, i, &dl);
            char *name;
            GMimeObject *ap;
            if (n == NULL || d == NULL) {
                *why = "an attachment is unreadable";
                g_object_unref(body);
                return NULL;
            }
            name = one_line(n, nl);
            if (name == NULL) {
                g_object_unref(body);
                return NULL;
            }
            ap = attachment_part(name, d, dl);
            free(name);
            g_mime_multipart_add(mix, ap);
            g_object_unref(ap);
        }
    }
    return body;
}

/* Add one address item ("Name <addr>" or "addr") to the header of `type`.
 * Returns 0, -1 out of memory. */
static int add_address(const char *item, size_t len, GMimeMessage *msg, GMimeAddressType type)
{
    char *line = one_line(item, len);
    char *name = NULL, *addr = NULL;
    if (line == NULL || split_addr(line, &name, &addr) < 0) {
        free(line);
        return -1;
    }
    if (addr[0] != '\0') {
        InternetAddress *ia = internet_address_mailbox_new(name[0] != '\0' ? name : NULL, addr);
        internet_address_set_charset(ia, "utf-8"); /* encoded words in UTF-8 */
        internet_address_list_add(g_mime_message_get_addresses(msg, type), ia);
        g_object_unref(ia);
    }
    free(line);
    free(name);
    free(addr);
    return 0;
}

/* Every item of an address list field. 0 or -1 (out of memory). */
static int add_addresses(mime_t *mc, const sp_msg_t *m, const char *field, GMimeMessage *msg,
                         GMimeAddressType type)
{
    size_t n = mc->api->msg_count(m, field);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *item = mc->api->msg_get_at(m, field, i, &len);
        if (item != NULL && add_address(item, len, msg, type) < 0) {
            return -1;
        }
    }
    return 0;
}

/* "<id@domain>" of an earlier message: its own Message-ID if it arrived
 * complete with one, else the one this plugin gives it. NULL if unknown. */
static char *parent_message_id(mime_t *mc, const char *pid)
{
    sp_msg_t *pm = NULL;
    char *out = NULL, dom[256];
    size_t rawlen;
    const char *raw;
    int rc = mc->api->msg_load(pid, &pm);
    if (rc < 0) {
        mc->api->log(mc->p, SP_LOG_WARN, "in-reply-to message %s: %s", pid,
                     mc->api->strerror(rc));
        return NULL;
    }
    raw = mc->api->msg_get(pm, SP_F_RAW, &rawlen);
    if (raw != NULL) {
        char *v = mime_raw_message_id(raw, rawlen);
        if (v != NULL) {
            out = g_strdup_printf("<%s>", v);
            free(v);
        }
    }
    if (out == NULL && id_ok(pid, strlen(pid)) && msg_domain(mc, pm, dom, sizeof(dom))) {
        out = g_strdup_printf("<%s@%s>", pid, dom);
    }
    mc->api->msg_free(pm);
    return out;
}

/* True if every line of b ends with CRLF and there is no bare CR. */
static bool clean_crlf(const guint8 *b, size_t n)
{
    if (n < 2 || b[n - 2] != '\r' || b[n - 1] != '\n') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) ||
            (b[i] == '\r' && (i + 1 == n || b[i + 1] != '\n'))) {
            return false;
        }
    }
    return true;
}

/* Serialise with CRLF line ends (GMime's DOS newline format; anything else
 * would be a GMime change, so it is checked and mended). The result is
 * bytes/len, borrowed from the stream st (unref it) or, if mended, from mended
 * (free it). estimate presizes the buffer. 0, -1 out of memory, -2 GMime
 * failed. */
static int serialise(GMimeMessage *msg, size_t estimate, GMimeStream **st, char **mended,
                     const char **bytes, size_t *len)
{
    GByteArray *arr = g_byte_array_sized_new((guint)(estimate < G_MAXUINT / 2 ? estimate : 0));
    GMimeFormatOptions *fo = g_mime_format_options_new();
    char *o;
    size_t k = 0;
    int rc;

    *st = g_mime_stream_mem_new_with_byte_array(arr); /* owns arr */
    *mended = NULL;
    g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
    rc = g_mime_object_write_to_stream(GMIME_OBJECT(msg), fo, *st) < 0 ? -2 : 0;
    g_mime_format_options_free(fo);
    if (rc < 0) {
        return rc;
    }
    if (clean_crlf(arr->data, arr->len)) {
        *bytes = (const char *)arr->data;
        *len = arr->len;
        return 0;
    }
    o = malloc((size_t)arr->len * 2 + 3);
    if (o == NULL) {
        return -1;
    }
    for (guint i = 0; i < arr->len; i++) {
        char c = (char)arr->data[i];
        if (c == '\n' && (k == 0 || o[k - 1] != '\r')) {
            o[k++] = '\r';
        } else if (k > 0 && o[k - 1] == '\r' && c != '\n') {
            o[k++] = '\n'; /* a bare CR ends a line */
        }
        o[k++] = c;
    }
    if (k > 0 && o[k - 1] == '\r') {
        o[k++] = '\n';
    }
    if (k < 2 || o[k - 1] != '\n') {
        o[k++] = '\r';
        o[k++] = '\n';
    }
    *mended = o;
    *bytes = o;
    *len = k;
    return 0;
}

/* Rough size of the serialised message, to allocate once. */
static size_t size_estimate(const mime_t *mc, const sp_msg_t *m)
{
    const sp_host_api_t *api = mc->api;
    size_t n = 0, est = 8192, natt = api->msg_count(m, SP_F_ATTACHMENT_DATA);
    (void)api->msg_get(m, SP_F_TEXT, &n);
    est += n * 3;
    n = 0;
    (void)api->msg_get(m, SP_F_HTML, &n);
    est += n * 6; /* itself and the text made from it, both possibly QP */
    for (size_t i = 0; i < natt; i++) {
        n = 0;
        (void)api->msg_get_at(m, SP_F_ATTACHMENT_DATA, i, &n);
        est += n / 57 * 78 + 1024;
    }
    return est;
}

static sp_verdict_t fail(mime_t *mc, sp_txn_t *txn, const char *id, const char *why)
{
    mc->api->log(mc->p, SP_LOG_WARN, "message %s not built: %s", id, why);
    mc->api->txn_set_reply(txn, 0, why);
    mc->api->txn_set_status(txn, SP_ST_FAILED);
    mc->api->counter_add(mc->p, "failed", 1);
    return SP_REJECT;
}

static sp_verdict_t store(mime_t *mc, sp_txn_t *txn, sp_msg_t *m, const char *bytes,
                          size_t len, const char *msgid)
{
    int rc = mc->api->msg_set(m, SP_F_MIME, bytes, len);
    rc = rc ? rc : mc->api->msg_set(m, SP_F_MESSAGE_ID, msgid, strlen(msgid));
    if (rc < 0) {
        mc->api->txn_set_reply(txn, 0, mc->api->strerror(rc));
        return SP_DEFER;
    }
    return SP_CONTINUE;
}

static sp_verdict_t build_raw(mime_t *mc, sp_txn_t *txn, sp_msg_t *m, const char *id,
                              const char *dom, const char *raw, size_t rawlen)
{
    char date[64], *msgid_new, *out = NULL, *found = NULL;
    size_t outlen = 0;
    mime_raw_add_t add;
    sp_verdict_t v;

    rfc5322_date(msg_date_ms(mc, m), date, sizeof(date));
    msgid_new = g_strdup_printf("%s@%s", id, dom);
    add.message_id = msgid_new;
    add.date = date;
    add.email_id = id;
    if (mime_raw_edit(raw, rawlen, &add, &out, &outlen, &found) < 0) {
        g_free(msgid_new);
        mc->api->txn_set_reply(txn, 0, "out of memory building the message");
        return SP_DEFER;
    }
    v = store(mc, txn, m, out, outlen, found);
    free(out);
    free(found);
    g_free(msgid_new);
    return v;
}

static sp_verdict_t build_new(mime_t *mc, sp_txn_t *txn, sp_msg_t *m, const char *id,
                              const char *dom)
{
    const sp_host_api_t *api = mc->api;
    GMimeMessage *msg = g_mime_message_new(FALSE);
    GMimeObject *body;
    GDateTime *dt;
    const char *why = NULL;
    char *msgid = g_strdup_printf("%s@%s", id, dom), *mended = NULL, *mid_hdr;
    GMimeStream *st = NULL;
    size_t len, outlen = 0;
    const char *s, *bytes = NULL;
    sp_verdict_t v;
    int rc;

    s = api->msg_get(m, SP_F_FROM, &len);
    if ((s != NULL && add_address(s, len, msg, GMIME_ADDRESS_TYPE_FROM) < 0) ||
        add_addresses(mc, m, SP_F_TO, msg, GMIME_ADDRESS_TYPE_TO) < 0 ||
        add_addresses(mc, m, SP_F_CC, msg, GMIME_ADDRESS_TYPE_CC) < 0 ||
        add_addresses(mc, m, SP_F_REPLY_TO, msg, GMIME_ADDRESS_TYPE_REPLY_TO) < 0) {
        why = "out of memory";
        goto defer;
    }
    s = api->msg_get(m, SP_F_SUBJECT, &len);
    if (s != NULL) {
        char *subj = one_line(s, len);
        if (subj == NULL) {
            why = "out of memory";
            goto defer;
        }
        g_mime_message_set_subject(msg, subj, "utf-8");
        free(subj);
    }
    dt = g_date_time_new_from_unix_utc(msg_date_ms(mc, m) / 1000);
    if (dt != NULL) {
        g_mime_message_set_date(msg, dt);
        g_date_time_unref(dt);
    }
    mid_hdr = g_strdup_printf("<%s>", msgid);
    g_mime_object_set_header(GMIME_OBJECT(msg), "Message-ID", mid_hdr, NULL);
    g_free(mid_hdr);
    s = api->msg_get(m, SP_F_IN_REPLY_TO_ID, &len);
    if (s != NULL && len > 0 && strlen(s) == len) {
        char *pmid = parent_message_id(mc, s);
        if (pmid != NULL) {
            g_mime_object_set_header(GMIME_OBJECT(msg), "In-Reply-To", pmid, NULL);
            g_mime_object_set_header(GMIME_OBJECT(msg), "References", pmid, NULL);
            g_free(pmid);
        }
    }
    g_mime_object_set_header(GMIME_OBJECT(msg), "MIME-Version", "1.0", NULL);
    g_mime_object_set_header(GMIME_OBJECT(msg), "X-Usesend-Email-ID", id, NULL);
    /* useSend adds a random one (keeps Gmail from collapsing look-alike
     * mails); the id is unique too, and the same on every attempt. */
    g_mime_object_set_header(GMIME_OBJECT(msg), "X-Entity-Ref-ID", id, NULL);
    apply_custom_headers(mc, m, msg);

    body = build_body(mc, m, id, &why);
    if (body == NULL) {
        g_object_unref(msg);
        g_free(msgid);
        if (why != NULL) {
            return fail(mc, txn, id, why);
        }
        api->txn_set_reply(txn, 0, "out of memory building the message");
        return SP_DEFER;
    }
    g_mime_message_set_mime_part(msg, body);
    g_object_unref(body);
    rc = serialise(msg, size_estimate(mc, m), &st, &mended, &bytes, &outlen);
    g_object_unref(msg);
    if (rc < 0) {
        g_object_unref(st);
        g_free(msgid);
        if (rc == -1) {
            api->txn_set_reply(txn, 0, "out of memory building the message");
            return SP_DEFER;
        }
        return fail(mc, txn, id, "GMime could not write the message");
    }
    v = store(mc, txn, m, bytes, outlen, msgid);
    free(mended);
    g_object_unref(st);
    g_free(msgid);
    return v;

defer:
    g_object_unref(msg);
    g_free(msgid);
    api->txn_set_reply(txn, 0, why);
    return SP_DEFER;
}

static sp_verdict_t mime_transform(sp_txn_t *txn, void *ctx)
{
    mime_t *mc = ctx;
    const sp_host_api_t *api = mc->api;
    sp_msg_t *m = api->txn_msg(txn);
    size_t idlen = 0, rawlen = 0;
    const char *id = api->msg_get(m, SP_F_ID, &idlen);
    const char *raw = api->msg_get(m, SP_F_RAW, &rawlen);
    char dom[256];
    struct timespec t0, t1;
    sp_verdict_t v;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (id == NULL || !id_ok(id, idlen)) {
        return fail(mc, txn, "?", "the message has no usable id");
    }
    if (!msg_domain(mc, m, dom, sizeof(dom))) {
        return fail(mc, txn, id, "the from address has no usable domain");
    }
    v = raw != NULL ? build_raw(mc, txn, m, id, dom, raw, rawlen) : build_new(mc, txn, m, id, dom);
    if (v == SP_CONTINUE) {
        size_t len = 0;
        (void)api->msg_get(m, SP_F_MIME, &len);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        api->log(mc->p, SP_LOG_DEBUG, "message %s %s: %zu bytes in %.1f ms", id,
                 raw != NULL ? "kept" : "built", len,
                 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        api->counter_add(mc->p, raw != NULL ? "kept" : "built", 1);
    }
    return v;
}

static int mime_init(sp_plugin_t *p, const sp_host_api_t *api, const void *conf, void **ctx)
{
    mime_t *mc;
    int rc;
    (void)conf;
    if (!SP_API_HAS(api, msg_load)) {
        api->log(p, SP_LOG_ERROR, "the host is too old (needs ABI 1.1)");
        return SP_EINVAL;
    }
    mc = api->calloc(1, sizeof(*mc));
    if (mc == NULL) {
        return SP_ENOMEM;
    }
    mc->p = p;
    mc->api = api;
    rc = api->hook(p, SP_STAGE_TRANSFORM, mime_transform, MIME_PRIORITY);
    if (rc < 0) {
        api->log(p, SP_LOG_ERROR, "registering the transform hook: %s", api->strerror(rc));
        api->free(mc);
        return rc;
    }
    if (!g_libs_up) {
        g_mime_init();
        xmlInitParser();
        g_libs_up = true;
    }
    *ctx = mc;
    return 0;
}

static void mime_fini(sp_plugin_t *p, void *ctx)
{
    mime_t *mc = ctx;
    (void)p;
    if (mc != NULL) {
        mc->api->free(mc);
    }
}

SP_PLUGIN_DEFINE(.name = "mime", .version = SP_VERSION_STRING,
                 .description = "builds the RFC 5322 message (SP_F_MIME) at the end of transform",
                 .init = mime_init, .fini = mime_fini);
