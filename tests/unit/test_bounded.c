/*
 * test_bounded.c -- a flood of new keys never grows memory without bound.
 *
 * Ten million distinct touchpoints (each with a distinct event_id), then ten
 * million distinct tickets, arrive as fast as one thread can apply them. The
 * caps (state.max_touchpoints, support.max_tickets, dedup.depth) must hold:
 * the resident set stops growing once the caps are reached, the overflow is
 * counted, and a touchpoint known before the flood is still served -- its
 * events applied, its metrics right, its alert fired.
 *
 * TP_BOUNDED_EVENTS overrides the count (default 10 000 000). The figures
 * (RSS at the cap and at the end) are printed; README records them.
 */
#include <stdio.h>
#include <unistd.h>

#include "state/state_int.h"
#include "support.h"

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  long size = 0, resident = 0;
  cr_assert_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static long flood_events(void) {
  const char *env = getenv("TP_BOUNDED_EVENTS");
  long n = env ? atol(env) : 10000000L;
  return n > 300000 ? n : 300000;
}

#define CAP 100000
#define MB(x) ((double)(x) / (1 << 20))

static const char *yaml =
    "windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n"
    "state: {max_touchpoints: 100000}\n"
    "dedup: {depth: 100000}\n"
    "support: {max_tickets: 100000, ticket_ttl: 30d}\n"
    "rules:\n"
    "  - {name: known-csat, metric: csat_mean, window: 5m, op: '<', threshold: 2,"
    " touchpoints: ['known.*']}\n"
    "  - {name: known-complaints, metric: complaints, window: 5m, op: '>=', threshold: 3,"
    " touchpoints: ['known.*']}\n";

static recorder_t rec;

Test(bounded, ten_million_new_touchpoints_stop_at_the_cap, .timeout = 900) {
  tp_config_t *cfg = cfg_from_yaml(yaml);
  char err[256], tp[32], id[32];
  tp_state_t *st = tp_state_new(cfg, err, sizeof(err));
  cr_assert_not_null(st, "%s", err);
  memset(&rec, 0, sizeof(rec));
  tp_part_t *p = tp_part_new(st, TP_SRC_FEEDBACK, 0, record_alert, &rec, err, sizeof(err));
  cr_assert_not_null(p, "%s", err);

  long n = flood_events(), known = 0;
  size_t rss0 = rss_bytes(), rss_cap = 0;
  for (long i = 0; i < n; i++) {
    int64_t t = T0 + i / 2000; /* 2 000 events per event-time millisecond */
    if (i % 1000 == 0) { /* the known touchpoint keeps talking through the flood */
      snprintf(id, sizeof(id), "k%ld", i);
      tp_event_t ev = ev_csat(id, t, "known.tp", 1);
      cr_assert_eq(tp_part_apply(p, &ev), TP_APPLY_OK, "known.tp refused at %ld", i);
      known++;
    }
    snprintf(tp, sizeof(tp), "flood.%07ld", i);
    snprintf(id, sizeof(id), "e%ld", i);
    tp_event_t ev = ev_csat(id, t, tp, 5);
    tp_apply_t r = tp_part_apply(p, &ev);
    cr_assert(r == TP_APPLY_OK || r == TP_APPLY_OVERFLOW, "apply %ld returned %d", i, (int)r);
    if (i == 10 * CAP)
      rss_cap = rss_bytes(); /* well past the cap: the plateau starts here */
  }
  size_t rss_end = rss_bytes();
  tp_part_advance(p, T0 + (n / 2000) + 5 * MIN_MS);

  uint64_t overflow = tp_state_table_overflow(st, TP_SRC_FEEDBACK);
  size_t held = tp_state_touchpoints(st, TP_SRC_FEEDBACK);
  printf("bounded touchpoints: %ld new touchpoints, cap %d: %zu held, %llu refused; RSS %.1f MB "
         "at start, %.1f MB after %d, %.1f MB after %ld (+%.1f MB over the last %ld)\n",
         n, CAP, held, (unsigned long long)overflow, MB(rss0), MB(rss_cap), 10 * CAP, MB(rss_end), n,
         MB(rss_end - rss_cap), n - 10 * CAP);
  cr_expect_eq(held, CAP);
  cr_expect_eq(overflow, (uint64_t)(n - (CAP - 1)), "known.tp takes one slot");
  cr_expect_eq(tp_part_stats(p)->overflow, (uint64_t)(n - (CAP - 1)));
  /* Flat after the cap: allow allocator noise, not growth with the flood. */
  cr_expect_lt(rss_end, rss_cap + (16u << 20), "RSS grew by %.1f MB after the cap",
               MB(rss_end - rss_cap));

  /* The known touchpoint is still served: all its events in its windows,
   * its value right, its alert out. */
  tp_metric_value_t v = {0};
  int64_t end = 0;
  cr_assert(tp__state_value(st, TP_SRC_FEEDBACK, 0, "known.tp", 5 * MIN_MS, TP_METRIC_CSAT_MEAN,
                            &v, &end));
  cr_expect(v.defined);
  cr_expect_eq(v.value, 1.0);
  bool fired = false;
  for (size_t i = 0; i < rec.n; i++)
    fired |= strcmp(rec.a[i].touchpoint, "known.tp") == 0 && rec.a[i].state == TP_ALERT_FIRING;
  cr_expect(fired, "known.tp's alert did not fire");
  tp_part_destroy(p);
  tp_state_destroy(st);
  tp_config_destroy(cfg);
}

Test(bounded, ten_million_new_tickets_stop_at_the_cap, .timeout = 900) {
  tp_config_t *cfg = cfg_from_yaml(yaml);
  char err[256], ticket[32], id[32];
  tp_state_t *st = tp_state_new(cfg, err, sizeof(err));
  cr_assert_not_null(st, "%s", err);
  memset(&rec, 0, sizeof(rec));
  tp_part_t *p = tp_part_new(st, TP_SRC_SUPPORT, 0, record_alert, &rec, err, sizeof(err));
  cr_assert_not_null(p, "%s", err);

  long n = flood_events();
  size_t rss0 = rss_bytes(), rss_cap = 0;
  for (long i = 0; i < n; i++) {
    int64_t t = T0 + i / 2000;
    snprintf(ticket, sizeof(ticket), "t%ld", i);
    snprintf(id, sizeof(id), "s%ld", i);
    /* Every ticket a complaint at the known touchpoint: the complaints
     * metric keeps counting while tickets are evicted. */
    tp_event_t ev = ev_support(id, t, "known.desk", ticket, TP_SUPPORT_OPENED, true);
    cr_assert_eq(tp_part_apply(p, &ev), TP_APPLY_OK, "apply %ld", i);
    if (i == 10 * CAP)
      rss_cap = rss_bytes();
  }
  size_t rss_end = rss_bytes();
  tp_part_advance(p, T0 + (n / 2000) + 5 * MIN_MS);
  uint64_t evicted = tp_part_stats(p)->tickets_evicted;
  printf("bounded tickets: %ld new tickets, cap %d: %lld held, %llu evicted; RSS %.1f MB at start, "
         "%.1f MB after %d, %.1f MB after %ld (+%.1f MB over the last %ld)\n",
         n, CAP, (long long)tp_part_stats(p)->tickets, (unsigned long long)evicted, MB(rss0),
         MB(rss_cap), 10 * CAP, MB(rss_end), n, MB(rss_end - rss_cap), n - 10 * CAP);
  cr_expect_eq(tp_part_stats(p)->tickets, CAP);
  cr_expect_eq(evicted, (uint64_t)(n - CAP));
  cr_expect_lt(rss_end, rss_cap + (16u << 20), "RSS grew by %.1f MB after the cap",
               MB(rss_end - rss_cap));
  bool fired = false;
  for (size_t i = 0; i < rec.n; i++)
    fired |= strcmp(rec.a[i].touchpoint, "known.desk") == 0 && rec.a[i].state == TP_ALERT_FIRING;
  cr_expect(fired, "known.desk's complaints alert did not fire");
  tp_part_destroy(p);
  tp_state_destroy(st);
  tp_config_destroy(cfg);
}
