/* SPDX-License-Identifier: Apache-2.0 */
/* Day arithmetic of the analytics API (pure, header-only so the unit test
 * includes it): days since 1970-01-01 UTC to a civil date and to the
 * "Jan 05" label of upstream's time series. */
#ifndef SP_API_USESEND_AN_DATE_H
#define SP_API_USESEND_AN_DATE_H

#include <stdint.h>
#include <stdio.h>

/* Days since 1970-01-01 UTC of a time in ms (floor, also before 1970). */
static inline int32_t an_day_of_ms(int64_t ms)
{
    return (int32_t)(ms >= 0 ? ms / 86400000 : (ms - 86399999) / 86400000);
}

/* The proleptic Gregorian date of a day number (H. Hinnant's
 * civil_from_days). */
static inline void an_civil(int32_t day, int *y, int *m, int *d)
{
    int64_t z = (int64_t)day + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t dd = doy - (153 * mp + 2) / 5 + 1;
    int64_t mm = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400 + (mm <= 2));
    *m = (int)mm;
    *d = (int)dd;
}

/* "Jan 05": English month abbreviation, space, two-digit day. */
static inline void an_day_label(int32_t day, char out[8])
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int y, m, d;

    an_civil(day, &y, &m, &d);
    snprintf(out, 8, "%s %02d", months[(m - 1) % 12], d % 100);
}

#endif
