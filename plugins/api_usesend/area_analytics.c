/* SPDX-License-Identifier: Apache-2.0 */
/* The analytics API (§1.11): the daily time series and the reputation
 * metrics of a team, or of one of its domains, from the core's counters
 * (host API analytics_daily / analytics_cumulated). Days are UTC days. */
#include <stdio.h>
#include <string.h>

#include "an_date.h"
#include "api.h"

static const char *const series_names[] = {
    [SP_AN_SENT] = "sent",         [SP_AN_DELIVERED] = "delivered",
    [SP_AN_OPENED] = "opened",     [SP_AN_CLICKED] = "clicked",
    [SP_AN_BOUNCED] = "bounced",   [SP_AN_COMPLAINED] = "complained",
};
#define NSERIES (sizeof(series_names) / sizeof(series_names[0]))

/* The domain to report: the key's own when it is restricted (it wins over
 * the query, as upstream), else ?domainId=, else 0 (all). False after
 * answering 400. */
static bool domain_arg(api_ctx_t *c, int64_t *dom)
{
    const char *v = c->a->api->http_query(c->req, "domainId");

    *dom = 0;
    if (c->auth.domain_id != 0) {
        *dom = c->auth.domain_id;
        return true;
    }
    if (v == NULL || *v == '\0') {
        return true;
    }
    if (api_parse_int(v, 1, INT64_MAX, dom) < 0) {
        api_fail_field(c, "domainId", -1, "Expected a domain id (a positive integer)");
        return false;
    }
    return true;
}

typedef struct series_ctx {
    int32_t from;
    json_t *result; /* days + 1 objects, zero-filled */
} series_ctx_t;

static int series_each(void *arg, int32_t day, const uint64_t *counts)
{
    series_ctx_t *sc = arg;
    json_t *o = json_array_get(sc->result, (size_t)(day - sc->from));

    for (size_t i = 0; o != NULL && i < NSERIES; i++) {
        json_object_set_new(o, series_names[i], json_integer((json_int_t)counts[i]));
    }
    return 0;
}

void api_h_an_series(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    const char *dv = api->http_query(c->req, "days");
    series_ctx_t sc = {0};
    json_t *totals, *b, *o;
    int64_t dom;
    int32_t days = 30, today;
    size_t i;
    int rc;

    if (dv != NULL && strcmp(dv, "7") == 0) {
        days = 7;
    } else if (dv != NULL && *dv != '\0' && strcmp(dv, "30") != 0) {
        api_fail_field(c, "days", -1, "Invalid enum value. Expected '7' | '30'");
        return;
    }
    if (!domain_arg(c, &dom)) {
        return;
    }
    today = an_day_of_ms(api->now_ms());
    sc.from = today - days;
    sc.result = json_array();
    for (int32_t d = sc.from; d <= today; d++) {
        char label[8];
        an_day_label(d, label);
        o = json_object();
        json_object_set_new(o, "date", json_string(label));
        for (i = 0; i < NSERIES; i++) {
            json_object_set_new(o, series_names[i], json_integer(0));
        }
        json_array_append_new(sc.result, o);
    }
    rc = api->analytics_daily(c->auth.team, dom, sc.from, today, series_each, &sc);
    if (rc < 0) {
        json_decref(sc.result);
        api_fail_rc(c, rc, "Reading analytics failed");
        return;
    }
    totals = json_object();
    for (size_t k = 0; k < NSERIES; k++) {
        json_int_t sum = 0;
        json_array_foreach(sc.result, i, o)
        {
            sum += json_integer_value(json_object_get(o, series_names[k]));
        }
        json_object_set_new(totals, series_names[k], json_integer(sum));
    }
    b = json_object();
    json_object_set_new(b, "result", sc.result);
    json_object_set_new(b, "totalCounts", totals);
    api_reply(c, 200, b);
}

/* part / whole × 100 as upstream computes it (0 when whole is 0); an
 * integral value is written as an integer, as JavaScript prints it. */
static json_t *rate(uint64_t part, uint64_t whole)
{
    double r = whole > 0 ? (double)part / (double)whole * 100.0 : 0.0;

    if (r < 9007199254740992.0 && r == (double)(int64_t)r) {
        return json_integer((json_int_t)r);
    }
    return json_real(r);
}

void api_h_an_reputation(api_ctx_t *c)
{
    const sp_host_api_t *api = c->a->api;
    uint64_t cum[SP_CUM__COUNT];
    int64_t dom;
    json_t *b;
    int rc;

    if (!domain_arg(c, &dom)) {
        return;
    }
    rc = api->analytics_cumulated(c->auth.team, dom, cum);
    if (rc < 0) {
        api_fail_rc(c, rc, "Reading analytics failed");
        return;
    }
    b = json_object();
    json_object_set_new(b, "delivered", json_integer((json_int_t)cum[SP_CUM_DELIVERED]));
    json_object_set_new(b, "hardBounced", json_integer((json_int_t)cum[SP_CUM_HARD_BOUNCED]));
    json_object_set_new(b, "complained", json_integer((json_int_t)cum[SP_CUM_COMPLAINED]));
    json_object_set_new(b, "bounceRate", rate(cum[SP_CUM_HARD_BOUNCED], cum[SP_CUM_DELIVERED]));
    json_object_set_new(b, "complaintRate",
                        rate(cum[SP_CUM_COMPLAINED], cum[SP_CUM_DELIVERED]));
    api_reply(c, 200, b);
}
