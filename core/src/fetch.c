/* SPDX-License-Identifier: Apache-2.0 */
/* Outbound HTTP (ABI 1.2): libcurl's multi interface driven by the core's
 * libuv loop. curl tells us which sockets to watch (socket callback -> one
 * uv_poll_t per socket) and when to wake it (timer callback -> one
 * uv_timer_t); we hand readiness back with curl_multi_socket_action and
 * collect finished transfers with curl_multi_info_read. Nothing blocks the
 * loop, and a callback never runs inside http_fetch itself: adding a handle
 * only arms the timer, the transfer starts on the next loop turn. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "sp_core/fetch.h"
#include "sp_core/log.h"

#define FETCH_DEFAULT_TIMEOUT_MS 30000u
#define FETCH_DEFAULT_MAX_BODY ((size_t)1 << 20)
#define FETCH_MAX_HEADERS ((size_t)64 << 10)
#define FETCH_MAX_REDIRS 5L

typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

typedef struct fetch {
    uint64_t id;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;              /* copy of the request body */
    buf_t rbody, rhdrs;
    size_t max_body;
    bool toobig;
    bool done;               /* finished, callback not yet run */
    bool cancelled;          /* cancelled while done: skip the callback */
    sp_fetch_cb cb;
    void *arg;
    uint64_t start_ns;
    CURLcode result;
    struct fetch *prev, *next;
    struct fetch *done_next;
    char errbuf[CURL_ERROR_SIZE];
} fetch_t;

typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sock *prev, *next;
} sock_t;

static struct {
    bool ready;
    bool closing;            /* shutdown in progress: no new fetches */
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    fetch_t *head;           /* every started, not yet completed fetch */
    sock_t *socks;           /* every watched socket */
    uint64_t next_id;
    size_t nfetch;
} g;

static uv_once_t g_curl_once = UV_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_OK;

static void curl_global_once(void)
{
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---------------------------------------------------------------------- */
/* Buffers and the fetch table */

static int buf_add(buf_t *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 1024;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            return SP_ENOMEM;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void table_unlink(fetch_t *f)
{
    if (f->prev != NULL) {
        f->prev->next = f->next;
    } else if (g.head == f) {
        g.head = f->next;
    }
    if (f->next != NULL) {
        f->next->prev = f->prev;
    }
    f->prev = f->next = NULL;
    g.nfetch--;
}

static fetch_t *table_find(uint64_t id)
{
    for (fetch_t *f = g.head; f != NULL; f = f->next) {
        if (f->id == id) {
            return f;
        }
    }
    return NULL;
}

static void fetch_free(fetch_t *f)
{
    if (f->easy != NULL) {
        curl_easy_cleanup(f->easy);
    }
    curl_slist_free_all(f->hdrs);
    free(f->body);
    free(f->rbody.p);
    free(f->rhdrs.p);
    free(f);
}

/* ---------------------------------------------------------------------- */
/* Completion */

static void fetch_complete(fetch_t *f, int status, const char *error)
{
    sp_fetch_res_t res = {.size = sizeof(res), .status = status, .error = error};
    long code = 0;
    if (status == 0) {
        (void)curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
        res.error = "";
    } else {
        /* An answer cut short is no answer: give the caller nothing half-read. */
        f->rbody.len = 0;
        f->rhdrs.len = 0;
        if (f->rbody.p != NULL) {
            f->rbody.p[0] = '\0';
        }
        if (f->rhdrs.p != NULL) {
            f->rhdrs.p[0] = '\0';
        }
    }
    res.http_status = status == 0 ? code : 0;
    res.headers = f->rhdrs.p != NULL ? f->rhdrs.p : "";
    res.headers_len = f->rhdrs.len;
    res.body = f->rbody.p != NULL ? f->rbody.p : "";
    res.body_len = f->rbody.len;
    res.elapsed_ms = (uv_hrtime() - f->start_ns) / 1000000u;
    f->cb(f->arg, &res);
}

static void complete_from_result(fetch_t *f)
{
    int status;
    const char *error = f->errbuf[0] != '\0' ? f->errbuf : curl_easy_strerror(f->result);
    switch (f->result) {
    case CURLE_OK:
        status = 0;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        status = SP_ETIMEDOUT;
        break;
    case CURLE_FILESIZE_EXCEEDED:
        status = SP_ETOOBIG;
        error = "response body larger than the limit";
        break;
    case CURLE_WRITE_ERROR:
        status = f->toobig ? SP_ETOOBIG : SP_EBUSY;
        if (f->toobig) {
            error = "response body larger than the limit";
        }
        break;
    default:
        status = SP_EBUSY;
        break;
    }
    fetch_complete(f, status, error);
}

/* Collect every finished transfer first, then run the callbacks: a callback
 * may cancel another finished fetch, or start new ones. */
static void check_multi_info(void)
{
    CURLMsg *msg;
    int left;
    fetch_t *done = NULL, **tail = &done;
    while ((msg = curl_multi_info_read(g.multi, &left)) != NULL) {
        fetch_t *f = NULL;
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        (void)curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        if (f == NULL) {
            continue;
        }
        f->result = msg->data.result;
        curl_multi_remove_handle(g.multi, f->easy);
        f->done = true;
        f->done_next = NULL;
        *tail = f;
        tail = &f->done_next;
    }
    while (done != NULL) {
        fetch_t *f = done;
        done = f->done_next;
        table_unlink(f);
        if (!f->cancelled) {
            complete_from_result(f);
        }
        fetch_free(f);
    }
}

/* ---------------------------------------------------------------------- */
/* curl <-> libuv */

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_t *s = h->data;
    int flags = 0;
    int running;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) {
            flags |= CURL_CSELECT_IN;
        }
        if (events & UV_WRITABLE) {
            flags |= CURL_CSELECT_OUT;
        }
    }
    curl_multi_socket_action(g.multi, s->fd, flags, &running);
    check_multi_info();
}

static void on_timer(uv_timer_t *t)
{
    int running;
    (void)t;
    curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info();
}

static void sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sock_close(sock_t *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else if (g.socks == s) {
        g.socks = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    sock_t *s = socketp;
    int events = 0;
    (void)easy;
    (void)userp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            sock_close(s);
            if (!g.closing) {
                curl_multi_assign(g.multi, fd, NULL);
            }
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            return -1;
        }
        if (uv_poll_init_socket(g.loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->poll.data = s;
        s->next = g.socks;
        if (g.socks != NULL) {
            g.socks->prev = s;
        }
        g.socks = s;
        curl_multi_assign(g.multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        events |= UV_READABLE;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
        events |= UV_WRITABLE;
    }
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    (void)userp;
    if (timeout_ms < 0) {
        uv_timer_stop(&g.timer);
    } else {
        /* 0 means "as soon as possible": still from the loop, never from
         * inside the curl call that asked for it. */
        uv_timer_start(&g.timer, on_timer, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    fetch_t *f = arg;
    size_t len = size * n;
    if (f->rbody.len + len > f->max_body) {
        f->toobig = true;
        return 0;
    }
    return buf_add(&f->rbody, p, len) == 0 ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    fetch_t *f = arg;
    size_t len = size * n;
    /* A new status line starts a new response (100 Continue, redirects):
     * keep only the final response's header block. */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        f->rhdrs.len = 0;
    }
    if (f->rhdrs.len + len > FETCH_MAX_HEADERS) {
        return 0;
    }
    return buf_add(&f->rhdrs, p, len) == 0 ? len : 0;
}

/* ---------------------------------------------------------------------- */
/* Start, cancel, lifecycle */

static bool url_ok(const char *url)
{
    if (url == NULL) {
        return false;
    }
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        return false;
    }
    for (const char *c = url; *c != '\0'; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool method_ok(const char *m)
{
    if (m == NULL || *m == '\0' || strlen(m) > 32) {
        return false;
    }
    for (const char *c = m; *c != '\0'; c++) {
        if (!isupper((unsigned char)*c) && *c != '-' && *c != '_') {
            return false;
        }
    }
    return true;
}

static bool header_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h) {
        return false;
    }
    return strpbrk(h, "\r\n") == NULL;
}

static int setup_easy(fetch_t *f, const sp_fetch_req_t *req)
{
    CURL *e = f->easy;
    bool have_expect = false;
    uint32_t timeout = req->timeout_ms != 0 ? req->timeout_ms : FETCH_DEFAULT_TIMEOUT_MS;
    CURLcode rc = CURLE_OK;

    if (req->headers != NULL) {
        for (const char *const *h = req->headers; *h != NULL; h++) {
            if (!header_ok(*h)) {
                return SP_EINVAL;
            }
            if (strncasecmp(*h, "Expect:", 7) == 0) {
                have_expect = true;
            }
            struct curl_slist *n = curl_slist_append(f->hdrs, *h);
            if (n == NULL) {
                return SP_ENOMEM;
            }
            f->hdrs = n;
        }
    }
    if (!have_expect) {
        /* No 100-continue round trip: most APIs answer straight away. */
        struct curl_slist *n = curl_slist_append(f->hdrs, "Expect:");
        if (n == NULL) {
            return SP_ENOMEM;
        }
        f->hdrs = n;
    }
#define SETOPT(opt, val)                                                    \
    do {                                                                    \
        if (rc == CURLE_OK) {                                               \
            rc = curl_easy_setopt(e, opt, val);                             \
        }                                                                   \
    } while (0)
    SETOPT(CURLOPT_URL, req->url);
    SETOPT(CURLOPT_PRIVATE, (void *)f);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, f->errbuf);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, (req->flags & SP_FETCH_FOLLOW) != 0 ? 1L : 0L);
    SETOPT(CURLOPT_MAXREDIRS, FETCH_MAX_REDIRS);
    SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
    if (req->ca_file != NULL && req->ca_file[0] != '\0') {
        SETOPT(CURLOPT_CAINFO, req->ca_file);
    }
    SETOPT(CURLOPT_TIMEOUT_MS, (long)timeout);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->max_body);
    SETOPT(CURLOPT_USERAGENT, "sendpipe/" SP_VERSION_STRING);
    SETOPT(CURLOPT_HTTPHEADER, f->hdrs);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, (void *)f);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, (void *)f);
    if (strcmp(req->method, "GET") == 0 && req->body == NULL) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else {
        if (req->body != NULL || strcmp(req->method, "POST") == 0 ||
            strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0) {
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            SETOPT(CURLOPT_POSTFIELDS, f->body != NULL ? f->body : "");
        }
        if (strcmp(req->method, "POST") != 0) {
            SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
        }
    }
#undef SETOPT
    if (rc != CURLE_OK) {
        SP_LOGW("http_fetch: curl option: %s", curl_easy_strerror(rc));
        return rc == CURLE_OUT_OF_MEMORY ? SP_ENOMEM : SP_EINVAL;
    }
    return 0;
}

int sp__fetch_start(sp_plugin_t *p, const sp_fetch_req_t *req, sp_fetch_cb cb, void *arg,
                    uint64_t *handle)
{
    fetch_t *f;
    int rc;
    (void)p;
    if (handle != NULL) {
        *handle = 0;
    }
    if (!g.ready || g.closing) {
        return SP_ESHUTDOWN;
    }
    if (req == NULL || cb == NULL || req->size < sizeof(sp_fetch_req_t) ||
        !method_ok(req->method) || !url_ok(req->url) ||
        (req->body == NULL && req->body_len != 0)) {
        return SP_EINVAL;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return SP_ENOMEM;
    }
    f->cb = cb;
    f->arg = arg;
    f->max_body = req->max_body != 0 ? req->max_body : FETCH_DEFAULT_MAX_BODY;
    f->start_ns = uv_hrtime();
    if (req->body != NULL) {
        f->body = malloc(req->body_len + 1);
        if (f->body == NULL) {
            free(f);
            return SP_ENOMEM;
        }
        memcpy(f->body, req->body, req->body_len);
        f->body[req->body_len] = '\0';
    }
    f->easy = curl_easy_init();
    if (f->easy == NULL) {
        fetch_free(f);
        return SP_ENOMEM;
    }
    rc = setup_easy(f, req);
    if (rc < 0) {
        fetch_free(f);
        return rc;
    }
    if (curl_multi_add_handle(g.multi, f->easy) != CURLM_OK) {
        fetch_free(f);
        return SP_ENOMEM;
    }
    f->id = ++g.next_id;
    f->next = g.head;
    if (g.head != NULL) {
        g.head->prev = f;
    }
    g.head = f;
    g.nfetch++;
    if (handle != NULL) {
        *handle = f->id;
    }
    return 0;
}

void sp__fetch_cancel(uint64_t handle)
{
    fetch_t *f;
    if (!g.ready || handle == 0) {
        return;
    }
    f = table_find(handle);
    if (f == NULL) {
        return;
    }
    if (f->done) {
        /* Finished in the batch being delivered right now. */
        f->cancelled = true;
        return;
    }
    curl_multi_remove_handle(g.multi, f->easy);
    table_unlink(f);
    fetch_free(f);
}

size_t sp__fetch_active(void)
{
    return g.ready ? g.nfetch : 0;
}

int sp__fetch_init(uv_loop_t *loop)
{
    if (g.ready) {
        return SP_ESTATE;
    }
    uv_once(&g_curl_once, curl_global_once);
    if (g_curl_init_rc != CURLE_OK) {
        SP_LOGE("curl_global_init: %s", curl_easy_strerror(g_curl_init_rc));
        return SP_ENOMEM;
    }
    memset(&g, 0, sizeof(g));
    g.loop = loop;
    g.multi = curl_multi_init();
    if (g.multi == NULL) {
        return SP_ENOMEM;
    }
    if (uv_timer_init(loop, &g.timer) != 0) {
        curl_multi_cleanup(g.multi);
        g.multi = NULL;
        return SP_ENOMEM;
    }
    curl_multi_setopt(g.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(g.multi, CURLMOPT_TIMERFUNCTION, on_timeout);
    g.ready = true;
    return 0;
}

void sp__fetch_shutdown(void)
{
    if (!g.ready) {
        return;
    }
    g.closing = true;
    /* Whatever a plugin did not cancel ends now, while its code is mapped. */
    while (g.head != NULL) {
        fetch_t *f = g.head;
        curl_multi_remove_handle(g.multi, f->easy);
        table_unlink(f);
        fetch_complete(f, SP_ECANCELED, "shutting down");
        fetch_free(f);
    }
    curl_multi_cleanup(g.multi);
    g.multi = NULL;
    /* Sockets curl did not remove itself (kept-alive connections). */
    while (g.socks != NULL) {
        sock_close(g.socks);
    }
    uv_timer_stop(&g.timer);
    uv_close((uv_handle_t *)&g.timer, NULL);
    g.ready = false;
    g.closing = false;
}
