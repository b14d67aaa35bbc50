/*
 * test_state.c -- SPEC's metric definitions on hand-computed cases, and the
 * window, watermark, lateness, duplicate and alert semantics of a partition.
 */
#include <math.h>

#include "state/state_int.h"
#include "support.h"
#include "touchpulse/decode.h"
#include "touchpulse/encode.h"
#include "touchpulse/hist.h"

static const char *base_yaml =
    "windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n"
    "support: {first_response_sla: 10m}\n";

typedef struct {
  tp_config_t *cfg;
  tp_state_t *st;
  tp_part_t *part;
  recorder_t rec;
} fixture_t;

static fixture_t *fx_new(const char *yaml, tp_source_t src, int32_t partition) {
  fixture_t *f = calloc(1, sizeof(*f));
  char err[512];
  f->cfg = cfg_from_yaml(yaml);
  f->st = tp_state_new(f->cfg, err, sizeof(err));
  cr_assert_not_null(f->st, "%s", err);
  f->part = tp_part_new(f->st, src, partition, record_alert, &f->rec, err, sizeof(err));
  cr_assert_not_null(f->part, "%s", err);
  return f;
}

static void fx_free(fixture_t *f) {
  tp_part_destroy(f->part);
  tp_state_destroy(f->st);
  tp_config_destroy(f->cfg);
  free(f);
}

static tp_metric_value_t value_of(fixture_t *f, tp_source_t src, const char *tp, tp_metric_t m) {
  tp_metric_value_t v = {0};
  int64_t end = 0;
  cr_assert(tp__state_value(f->st, src, tp_part_partition(f->part), tp, 15 * MIN_MS, m, &v, &end),
            "no value for %s", tp_metric_name(m));
  return v;
}

static void apply(fixture_t *f, tp_event_t ev) {
  tp_apply_t r = tp_part_apply(f->part, &ev);
  cr_assert_eq(r, TP_APPLY_OK, "apply returned %d", (int)r);
}

#define expect_value(f, src, tp, m, want, n)                                                 \
  do {                                                                                       \
    tp_metric_value_t v_ = value_of(f, src, tp, m);                                          \
    cr_expect(v_.defined, "%s undefined", tp_metric_name(m));                                \
    cr_expect(fabs(v_.value - (want)) < 1e-9, "%s = %.12g, want %.12g", tp_metric_name(m),  \
              v_.value, (double)(want));                                                     \
    cr_expect_eq(v_.samples, n, "%s samples %lld, want %d", tp_metric_name(m),              \
                 (long long)v_.samples, (int)(n));                                           \
  } while (0)

#define expect_undefined(f, src, tp, m)                                                      \
  cr_expect_not(value_of(f, src, tp, m).defined, "%s should be undefined", tp_metric_name(m))

/* ---- feedback metrics ------------------------------------------------------ */

Test(metrics, csat_mean_pct_and_dsat_pct) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_FEEDBACK, 0);
  int scores[] = {1, 2, 3, 4, 5, 5};
  for (int i = 0; i < 6; i++)
    apply(f, ev_csat(test_id("c", i), T0 + i * 1000, "tp", scores[i]));
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_CSAT_MEAN, 20.0 / 6, 6);
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_CSAT_PCT, 100.0 * 3 / 6, 6);
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_DSAT_PCT, 100.0 * 2 / 6, 6);
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_RESPONSES, 6, 6);
  fx_free(f);
}

Test(metrics, nps_counts_promoters_minus_detractors) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_FEEDBACK, 0);
  int nps[] = {10, 10, 10, 9, 8, 7, 6, 0};
  for (int i = 0; i < 8; i++)
    apply(f, ev_feedback(test_id("n", i), T0 + i, "tp", TP_SCORE_NULL, nps[i], TP_SCORE_NULL,
                         TP_SCORE_NULL, TP_SCORE_NULL));
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_NPS, 100.0 * (4 - 2) / 8, 8);
  expect_undefined(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_CSAT_MEAN);
  fx_free(f);
}

Test(metrics, nps_spans_minus_100_to_100) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_FEEDBACK, 0);
  apply(f, ev_feedback("a", T0, "low", TP_SCORE_NULL, 3, TP_SCORE_NULL, TP_SCORE_NULL, TP_SCORE_NULL));
  apply(f, ev_feedback("b", T0, "high", TP_SCORE_NULL, 9, TP_SCORE_NULL, TP_SCORE_NULL, TP_SCORE_NULL));
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_FEEDBACK, "low", TP_METRIC_NPS, -100, 1);
  expect_value(f, TP_SRC_FEEDBACK, "high", TP_METRIC_NPS, 100, 1);
  fx_free(f);
}

Test(metrics, ces_mean) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_FEEDBACK, 0);
  int ces[] = {1, 7, 4, 5};
  for (int i = 0; i < 4; i++)
    apply(f, ev_feedback(test_id("e", i), T0, "tp", TP_SCORE_NULL, TP_SCORE_NULL, ces[i],
                         TP_SCORE_NULL, TP_SCORE_NULL));
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_CES_MEAN, 17.0 / 4, 4);
  fx_free(f);
}

Test(metrics, cli_mean_averages_only_complete_loyalty_triples) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_FEEDBACK, 0);
  apply(f, ev_feedback("a", T0, "tp", TP_SCORE_NULL, 9, TP_SCORE_NULL, 6, 3));   /* avg 6 */
  apply(f, ev_feedback("b", T0, "tp", TP_SCORE_NULL, 10, TP_SCORE_NULL, 10, 10)); /* avg 10 */
  apply(f, ev_feedback("c", T0, "tp", TP_SCORE_NULL, 0, TP_SCORE_NULL, 0, TP_SCORE_NULL));
  apply(f, ev_feedback("d", T0, "tp", TP_SCORE_NULL, TP_SCORE_NULL, TP_SCORE_NULL, 1, 1));
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_CLI_MEAN, 8.0, 2);
  fx_free(f);
}

Test(metrics, responses_need_at_least_one_score) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_FEEDBACK, 0);
  apply(f, ev_feedback("none", T0, "tp", TP_SCORE_NULL, TP_SCORE_NULL, TP_SCORE_NULL,
                       TP_SCORE_NULL, TP_SCORE_NULL));
  apply(f, ev_feedback("rep", T0, "tp", TP_SCORE_NULL, TP_SCORE_NULL, TP_SCORE_NULL, 5,
                       TP_SCORE_NULL));
  apply(f, ev_csat("csat", T0, "tp", 4));
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_RESPONSES, 2, 2);
  expect_undefined(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_NPS);
  expect_undefined(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_CES_MEAN);
  fx_free(f);
}

Test(metrics, empty_window_counts_are_zero_and_ratios_undefined) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_FEEDBACK, 0);
  apply(f, ev_csat("a", T0, "tp", 5));
  tp_part_advance(f->part, T0 + 40 * MIN_MS); /* the event left the window */
  expect_value(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_RESPONSES, 0, 0);
  expect_undefined(f, TP_SRC_FEEDBACK, "tp", TP_METRIC_CSAT_MEAN);
  fx_free(f);
}

/* ---- support metrics ------------------------------------------------------- */

static void sup(fixture_t *f, const char *id, int64_t t, const char *ticket, tp_support_kind_t k) {
  apply(f, ev_support(id, t, "support.chat", ticket, k, false));
}

Test(metrics, first_response_percentiles_and_mean) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_SUPPORT, 0);
  sup(f, "a1", T0, "A", TP_SUPPORT_OPENED);
  sup(f, "b1", T0, "B", TP_SUPPORT_OPENED);
  sup(f, "c1", T0, "C", TP_SUPPORT_OPENED);
  sup(f, "b2", T0 + 2 * MIN_MS, "B", TP_SUPPORT_AGENT_REPLIED);
  sup(f, "c2", T0 + 5 * MIN_MS, "C", TP_SUPPORT_AGENT_REPLIED);
  sup(f, "c3", T0 + 6 * MIN_MS, "C", TP_SUPPORT_AGENT_REPLIED); /* not the first */
  sup(f, "a2", T0 + 10 * MIN_MS, "A", TP_SUPPORT_AGENT_REPLIED);
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  tp_metric_value_t p50 = value_of(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_MS_P50);
  tp_metric_value_t p90 = value_of(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_MS_P90);
  tp_metric_value_t p99 = value_of(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_MS_P99);
  /* Nearest rank over {120000, 300000, 600000}, within the sketch's 1 %. */
  cr_expect(fabs(p50.value - 300000) <= 3000, "p50 %g", p50.value);
  cr_expect(fabs(p90.value - 600000) <= 6000, "p90 %g", p90.value);
  cr_expect(fabs(p99.value - 600000) <= 6000, "p99 %g", p99.value);
  cr_expect_eq(p50.samples, 3);
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_MS_MEAN,
               (120000 + 300000 + 600000) / 3.0, 3);
  fx_free(f);
}

Test(metrics, first_response_counts_in_the_window_of_the_reply) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_SUPPORT, 0);
  sup(f, "a1", T0, "A", TP_SUPPORT_OPENED);
  sup(f, "a2", T0 + 20 * MIN_MS, "A", TP_SUPPORT_AGENT_REPLIED);
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_undefined(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_MS_MEAN);
  tp_part_advance(f->part, T0 + 30 * MIN_MS);
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_MS_MEAN, 20 * MIN_MS, 1);
  fx_free(f);
}

Test(metrics, a_reply_read_before_its_opened_leaves_the_next_reply_first) {
  fixture_t *f = fx_new("windows: {step: 1m, allowed_lateness: 30s, idle_timeout: 0s}\n",
                        TP_SRC_SUPPORT, 0);
  sup(f, "r0", T0 + 10000, "A", TP_SUPPORT_AGENT_REPLIED); /* read before OPENED */
  sup(f, "o", T0 + 5000, "A", TP_SUPPORT_OPENED);           /* within lateness */
  sup(f, "r1", T0 + 300000, "A", TP_SUPPORT_AGENT_REPLIED);
  tp_part_advance(f->part, T0 + 10 * MIN_MS);
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_MS_MEAN, 295000, 1);
  fx_free(f);
}

Test(metrics, resolution_time_and_first_contact_resolution) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_SUPPORT, 0);
  sup(f, "a1", T0, "A", TP_SUPPORT_OPENED);
  sup(f, "b1", T0, "B", TP_SUPPORT_OPENED);
  sup(f, "c1", T0, "C", TP_SUPPORT_OPENED);
  sup(f, "a2", T0 + 1 * MIN_MS, "A", TP_SUPPORT_AGENT_REPLIED);
  sup(f, "b2", T0 + 1 * MIN_MS, "B", TP_SUPPORT_AGENT_REPLIED);
  sup(f, "c2", T0 + 1 * MIN_MS, "C", TP_SUPPORT_AGENT_REPLIED);
  sup(f, "b3", T0 + 2 * MIN_MS, "B", TP_SUPPORT_AGENT_REPLIED);
  sup(f, "c3", T0 + 3 * MIN_MS, "C", TP_SUPPORT_REOPENED);
  sup(f, "c4", T0 + 3 * MIN_MS, "C", TP_SUPPORT_CUSTOMER_REPLIED);
  sup(f, "a3", T0 + 5 * MIN_MS, "A", TP_SUPPORT_RESOLVED); /* one reply, never reopened */
  sup(f, "b4", T0 + 6 * MIN_MS, "B", TP_SUPPORT_RESOLVED); /* two replies */
  sup(f, "c5", T0 + 7 * MIN_MS, "C", TP_SUPPORT_RESOLVED); /* reopened */
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FCR_PCT, 100.0 / 3, 3);
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_RESOLUTION_MS_MEAN,
               (5 + 6 + 7) * MIN_MS / 3.0, 3);
  tp_metric_value_t p50 = value_of(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_RESOLUTION_MS_P50);
  cr_expect(fabs(p50.value - 6 * MIN_MS) <= 0.01 * 6 * MIN_MS, "p50 %g", p50.value);
  tp_metric_value_t p90 = value_of(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_RESOLUTION_MS_P90);
  cr_expect(fabs(p90.value - 7 * MIN_MS) <= 0.01 * 7 * MIN_MS, "p90 %g", p90.value);
  fx_free(f);
}

Test(metrics, tickets_opened_and_complaints) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_SUPPORT, 0);
  apply(f, ev_support("1", T0, "support.chat", "A", TP_SUPPORT_OPENED, true));
  apply(f, ev_support("2", T0, "support.chat", "B", TP_SUPPORT_OPENED, true));
  apply(f, ev_support("3", T0, "support.chat", "C", TP_SUPPORT_OPENED, false));
  apply(f, ev_support("4", T0, "support.chat", "C", TP_SUPPORT_AGENT_REPLIED, true));
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_TICKETS_OPENED, 3, 3);
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_COMPLAINTS, 2, 3);
  fx_free(f);
}

Test(metrics, sla_breaches_count_deadlines_without_an_earlier_reply) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_SUPPORT, 0); /* SLA 10m */
  sup(f, "x1", T0, "X", TP_SUPPORT_OPENED);                       /* never answered: breach */
  sup(f, "y1", T0, "Y", TP_SUPPORT_OPENED);
  sup(f, "z1", T0, "Z", TP_SUPPORT_OPENED);
  sup(f, "w1", T0 + 1 * MIN_MS, "W", TP_SUPPORT_OPENED);
  sup(f, "y2", T0 + 5 * MIN_MS, "Y", TP_SUPPORT_AGENT_REPLIED);   /* in time */
  tp_part_advance(f->part, T0 + 10 * MIN_MS); /* deadline T0+10m not yet passed */
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_SLA_BREACHES, 0, 0);
  sup(f, "w2", T0 + 11 * MIN_MS, "W", TP_SUPPORT_AGENT_REPLIED);  /* at its deadline: breach */
  sup(f, "z2", T0 + 12 * MIN_MS, "Z", TP_SUPPORT_AGENT_REPLIED);  /* after it: breach */
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_SLA_BREACHES, 3, 3);
  tp_part_advance(f->part, T0 + 26 * MIN_MS); /* [11m, 26m) holds only W's deadline */
  expect_value(f, TP_SRC_SUPPORT, "support.chat", TP_METRIC_FIRST_RESPONSE_SLA_BREACHES, 1, 1);
  fx_free(f);
}

Test(metrics, sla_deadlines_of_dropped_tickets_are_compacted_and_live_ones_kept) {
  /* support.max_tickets 3: 600 tickets opened within a minute leave only the
   * last three alive; the deadline heap is compacted on the way (it fills
   * with the dropped tickets' entries) and must keep exactly the live ones:
   * three breaches, of which the one answered in time is not one. */
  fixture_t *f = fx_new("windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n"
                        "support: {first_response_sla: 10m, max_tickets: 3}\n",
                        TP_SRC_SUPPORT, 0);
  char ticket[16];
  for (int i = 0; i < 600; i++) {
    snprintf(ticket, sizeof(ticket), "T%d", i);
    sup(f, test_id("o", i), T0 + i * 50, ticket, TP_SUPPORT_OPENED);
  }
  sup(f, "r1", T0 + 2 * MIN_MS, "T599", TP_SUPPORT_AGENT_REPLIED); /* in time */
  cr_expect_eq(tp_part_stats(f->part)->tickets_evicted, 597);
  tp_part_advance(f->part, T0 + 25 * MIN_MS);
  tp_metric_value_t v = {0};
  int64_t end = 0;
  cr_assert(tp__state_value(f->st, TP_SRC_SUPPORT, 0, "support.chat", 15 * MIN_MS,
                            TP_METRIC_FIRST_RESPONSE_SLA_BREACHES, &v, &end));
  cr_expect_eq(v.value, 2, "breaches %g: T597 and T598 only", v.value);
  fx_free(f);
}

/* ---- commerce metrics ------------------------------------------------------ */

Test(metrics, orders_returns_and_return_pct) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_COMMERCE, 0);
  for (int i = 0; i < 4; i++)
    apply(f, ev_commerce(test_id("o", i), T0, "shop", TP_COMMERCE_ORDER_PLACED));
  apply(f, ev_commerce("d", T0, "shop", TP_COMMERCE_DELIVERED));
  apply(f, ev_commerce("r", T0, "shop", TP_COMMERCE_RETURN_REQUESTED));
  apply(f, ev_commerce("r2", T0, "returns-only", TP_COMMERCE_RETURN_REQUESTED));
  tp_part_advance(f->part, T0 + 15 * MIN_MS);
  expect_value(f, TP_SRC_COMMERCE, "shop", TP_METRIC_ORDERS, 4, 4);
  expect_value(f, TP_SRC_COMMERCE, "shop", TP_METRIC_RETURNS, 1, 1);
  expect_value(f, TP_SRC_COMMERCE, "shop", TP_METRIC_RETURN_PCT, 25, 4);
  expect_undefined(f, TP_SRC_COMMERCE, "returns-only", TP_METRIC_RETURN_PCT);
  fx_free(f);
}

/* ---- histogram accuracy ---------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

Test(hist, quantiles_stay_within_one_percent_of_nearest_rank) {
  static uint64_t vals[20000];
  static tp_hist_merge_t m;
  tp_hist_merge_init(&m);
  tp_shist_t h[10] = {0};
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < 20000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    vals[i] = x % (30ull * 86400000ull); /* up to 30 days in ms */
    if (i % 7 == 0)
      vals[i] %= 1000; /* and many small ones */
    cr_assert_eq(tp_shist_add(&h[i % 10], vals[i]), TP_OK);
  }
  for (int i = 0; i < 10; i++)
    tp_hist_merge_add(&m, &h[i]);
  qsort(vals, 20000, sizeof(vals[0]), cmp_u64);
  double qs[] = {0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0};
  for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
    size_t rank = (size_t)ceil(qs[i] * 20000);
    double exact = (double)vals[rank - 1];
    double got = tp_hist_merge_quantile(&m, qs[i]);
    cr_expect(fabs(got - exact) <= 0.01 * exact, "q%.3f: %g vs %g", qs[i], got, exact);
  }
  for (int i = 0; i < 10; i++)
    tp_shist_free(&h[i]);
}

Test(hist, small_values_are_exact_and_bins_are_monotonic) {
  for (uint64_t v = 0; v < TP_HIST_SUB; v++)
    cr_expect_eq(tp_hist_bin_value(tp_hist_bin(v)), (double)v);
  uint32_t prev = 0;
  for (uint64_t v = 1; v < (1ull << 36); v = v * 3 / 2 + 1) {
    uint32_t b = tp_hist_bin(v);
    cr_expect_geq(b, prev);
    cr_expect_lt(b, TP_HIST_BINS);
    cr_expect(fabs(tp_hist_bin_value(b) - (double)v) <= 0.0079 * (double)v, "v=%llu",
              (unsigned long long)v);
    prev = b;
  }
}

/* ---- published views == recomputing from the events ------------------------ */

/*
 * Entries publish their windows' sums (and, for support, the quantiles of
 * the windows' histograms, merged again only when a bucket with durations
 * enters or leaves); readers compute the metrics from them. At every
 * boundary of a random stream, every metric of both windows must equal
 * what the events inside the window give, computed here from scratch.
 */
static const char *views_yaml =
    "windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n"
    "support: {first_response_sla: 1h}\n"
    "rules:\n"
    "  - {name: a, metric: csat_mean, window: 3m, op: '<', threshold: 3}\n"
    "  - {name: b, metric: nps, window: 7m, op: '<', threshold: 0}\n"
    "  - {name: c, metric: first_response_ms_p90, window: 3m, op: '>', threshold: 1000}\n"
    "  - {name: d, metric: resolution_ms_p50, window: 7m, op: '>', threshold: 1000}\n";

typedef struct {
  int64_t t;
  int csat, nps, ces, rep, oth; /* feedback; -1 = no score */
  int kind;                     /* support: tp_support_kind_t */
  int ticket;
} vev_t;

static int cmp_vev(const void *x, const void *y) {
  const vev_t *a = x, *b = y;
  return (a->t > b->t) - (a->t < b->t);
}

static void expect_view(fixture_t *f, tp_source_t src, int64_t L, tp_metric_t m,
                        tp_metric_value_t want, int64_t T) {
  tp_metric_value_t got = {0};
  int64_t end = 0;
  cr_assert(tp__state_value(f->st, src, 0, "tp", L, m, &got, &end));
  /* An entry is evaluated only when its windows change: its values hold
   * from its last evaluation up to T. */
  cr_assert(end > 0 && end <= T, "%s: view of %lld at %lld", tp_metric_name(m), (long long)end,
            (long long)T);
  cr_assert_eq(got.defined, want.defined, "%s %lldm @%lld: defined %d, want %d",
               tp_metric_name(m), (long long)(L / MIN_MS), (long long)T, got.defined,
               want.defined);
  if (!want.defined)
    return;
  cr_assert(fabs(got.value - want.value) <= 1e-9 * fmax(1, fabs(want.value)) &&
                got.samples == want.samples,
            "%s %lldm @%lld: %.12g (n=%lld), want %.12g (n=%lld)", tp_metric_name(m),
            (long long)(L / MIN_MS), (long long)T, got.value, (long long)got.samples, want.value,
            (long long)want.samples);
}

static tp_metric_value_t mean_of(double sum, int64_t n, double scale) {
  return n ? (tp_metric_value_t){scale * sum / (double)n, n, true}
           : (tp_metric_value_t){NAN, 0, false};
}

static void expect_feedback_views(fixture_t *f, const vev_t *ev, size_t n, int64_t T) {
  static const int64_t lens[] = {3 * MIN_MS, 7 * MIN_MS};
  for (size_t w = 0; w < 2; w++) {
    int64_t csat[6] = {0}, prom = 0, det = 0, nps_n = 0, ces_n = 0, ces = 0, cli_n = 0,
            cli = 0, resp = 0;
    for (size_t i = 0; i < n; i++) {
      const vev_t *e = &ev[i];
      if (e->t < T - lens[w] || e->t >= T)
        continue;
      if (e->csat > 0)
        csat[e->csat]++;
      if (e->nps >= 0)
        nps_n++, prom += e->nps >= 9, det += e->nps <= 6;
      if (e->ces > 0)
        ces_n++, ces += e->ces;
      if (e->nps >= 0 && e->rep >= 0 && e->oth >= 0)
        cli_n++, cli += e->nps + e->rep + e->oth;
      resp += e->csat > 0 || e->nps >= 0 || e->ces > 0 || e->rep >= 0 || e->oth >= 0;
    }
    int64_t cn = csat[1] + csat[2] + csat[3] + csat[4] + csat[5];
    double csum = (double)(csat[1] + 2 * csat[2] + 3 * csat[3] + 4 * csat[4] + 5 * csat[5]);
    int64_t L = lens[w];
    expect_view(f, TP_SRC_FEEDBACK, L, TP_METRIC_RESPONSES,
                (tp_metric_value_t){(double)resp, resp, true}, T);
    expect_view(f, TP_SRC_FEEDBACK, L, TP_METRIC_CSAT_MEAN, mean_of(csum, cn, 1), T);
    expect_view(f, TP_SRC_FEEDBACK, L, TP_METRIC_CSAT_PCT,
                mean_of((double)(csat[4] + csat[5]), cn, 100), T);
    expect_view(f, TP_SRC_FEEDBACK, L, TP_METRIC_DSAT_PCT,
                mean_of((double)(csat[1] + csat[2]), cn, 100), T);
    expect_view(f, TP_SRC_FEEDBACK, L, TP_METRIC_NPS, mean_of((double)(prom - det), nps_n, 100),
                T);
    expect_view(f, TP_SRC_FEEDBACK, L, TP_METRIC_CES_MEAN, mean_of((double)ces, ces_n, 1), T);
    expect_view(f, TP_SRC_FEEDBACK, L, TP_METRIC_CLI_MEAN, mean_of((double)cli / 3, cli_n, 1), T);
  }
}

#define VIEW_EVENTS 1200

Test(views, feedback_views_equal_the_events_in_each_window_at_every_boundary,
     .timeout = 120) {
  static vev_t ev[VIEW_EVENTS];
  for (uint64_t seed = 1; seed <= 10; seed++) {
    fixture_t *f = fx_new(views_yaml, TP_SRC_FEEDBACK, 0);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull;
#define VRND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    int64_t t = T0;
    for (size_t i = 0; i < VIEW_EVENTS; i++) {
      /* Busy stretches and gaps longer than either window. */
      t += VRND() % 50 == 0 ? (int64_t)(VRND() % (12 * MIN_MS)) : (int64_t)(VRND() % 20000);
      ev[i] = (vev_t){.t = t,
                      .csat = VRND() % 4 ? 1 + (int)(VRND() % 5) : -1,
                      .nps = VRND() % 3 ? (int)(VRND() % 11) : -1,
                      .ces = VRND() % 2 ? 1 + (int)(VRND() % 7) : -1,
                      .rep = VRND() % 2 ? (int)(VRND() % 11) : -1,
                      .oth = VRND() % 2 ? (int)(VRND() % 11) : -1};
    }
    size_t applied = 0;
    for (int64_t T = T0 + MIN_MS; applied < VIEW_EVENTS; T += MIN_MS) {
      for (; applied < VIEW_EVENTS && ev[applied].t < T; applied++) {
        const vev_t *e = &ev[applied];
        tp_event_t te = ev_feedback(test_id("f", (int)applied), e->t, "tp",
                                    e->csat > 0 ? e->csat : TP_SCORE_NULL,
                                    e->nps >= 0 ? e->nps : TP_SCORE_NULL,
                                    e->ces > 0 ? e->ces : TP_SCORE_NULL,
                                    e->rep >= 0 ? e->rep : TP_SCORE_NULL,
                                    e->oth >= 0 ? e->oth : TP_SCORE_NULL);
        apply(f, te);
      }
      tp_part_advance(f->part, T);
      expect_feedback_views(f, ev, applied, T);
    }
    fx_free(f);
  }
}

/* The quantiles of values (fresh histogram, the binning the state uses). */
static double ref_quantile(const uint64_t *v, size_t n, double q, tp_hist_merge_t *m) {
  tp_shist_t h = {0};
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(tp_shist_add(&h, v[i]), TP_OK);
  tp_hist_merge_clear(m);
  tp_hist_merge_add(m, &h);
  double r = tp_hist_merge_quantile(m, q);
  tp_shist_free(&h);
  return r;
}

Test(views, support_views_and_quantiles_equal_the_events_in_each_window_at_every_boundary,
     .timeout = 120) {
  static vev_t ev[VIEW_EVENTS];
  static uint64_t fr[VIEW_EVENTS], res[VIEW_EVENTS];
  static tp_hist_merge_t m;
  tp_hist_merge_init(&m);
  for (uint64_t seed = 1; seed <= 10; seed++) {
    fixture_t *f = fx_new(views_yaml, TP_SRC_SUPPORT, 0);
    uint64_t x = seed * 0x2545f4914f6cdd1dull;
    /* Tickets opened at random, first reply and resolution a random
     * while later: a ticket's events are 3 of the stream's. */
    size_t n = 0;
    int64_t t = T0;
    for (int k = 0; n + 3 <= VIEW_EVENTS; k++) {
      t += VRND() % 30 == 0 ? (int64_t)(VRND() % (12 * MIN_MS)) : (int64_t)(VRND() % 40000);
      int64_t reply = t + 1000 + (int64_t)(VRND() % (6 * MIN_MS));
      int64_t done = reply + (int64_t)(VRND() % (9 * MIN_MS));
      ev[n++] = (vev_t){.t = t, .kind = TP_SUPPORT_OPENED, .ticket = k};
      ev[n++] = (vev_t){.t = reply, .kind = TP_SUPPORT_AGENT_REPLIED, .ticket = k};
      ev[n++] = (vev_t){.t = done, .kind = TP_SUPPORT_RESOLVED, .ticket = k};
    }
    /* A stable sort keeps a ticket's events in order at equal times. */
    for (size_t i = 1; i < n; i++)
      for (size_t j = i; j > 0 && cmp_vev(&ev[j - 1], &ev[j]) > 0; j--) {
        vev_t tmp = ev[j];
        ev[j] = ev[j - 1];
        ev[j - 1] = tmp;
      }
    int64_t opened_at[VIEW_EVENTS / 3 + 1];
    size_t applied = 0;
    for (int64_t T = T0 + MIN_MS; applied < n; T += MIN_MS) {
      for (; applied < n && ev[applied].t < T; applied++) {
        const vev_t *e = &ev[applied];
        char ticket[16];
        snprintf(ticket, sizeof(ticket), "k%d", e->ticket);
        if (e->kind == TP_SUPPORT_OPENED)
          opened_at[e->ticket] = e->t;
        apply(f, ev_support(test_id("s", (int)applied), e->t, "tp", ticket,
                            (tp_support_kind_t)e->kind, false));
      }
      tp_part_advance(f->part, T);
      static const int64_t lens[] = {3 * MIN_MS, 7 * MIN_MS};
      for (size_t w = 0; w < 2; w++) {
        size_t nfr = 0, nres = 0;
        double fr_sum = 0, res_sum = 0;
        for (size_t i = 0; i < applied; i++) {
          const vev_t *e = &ev[i];
          if (e->t < T - lens[w] || e->t >= T)
            continue;
          uint64_t d = (uint64_t)(e->t - opened_at[e->ticket]);
          if (e->kind == TP_SUPPORT_AGENT_REPLIED)
            fr[nfr++] = d, fr_sum += (double)d;
          else if (e->kind == TP_SUPPORT_RESOLVED)
            res[nres++] = d, res_sum += (double)d;
        }
        int64_t L = lens[w];
        struct {
          tp_metric_t m;
          const uint64_t *v;
          size_t n;
          double q;
        } qs[] = {{TP_METRIC_FIRST_RESPONSE_MS_P50, fr, nfr, 0.50},
                  {TP_METRIC_FIRST_RESPONSE_MS_P90, fr, nfr, 0.90},
                  {TP_METRIC_FIRST_RESPONSE_MS_P99, fr, nfr, 0.99},
                  {TP_METRIC_RESOLUTION_MS_P50, res, nres, 0.50},
                  {TP_METRIC_RESOLUTION_MS_P90, res, nres, 0.90}};
        for (size_t k = 0; k < 5; k++) {
          tp_metric_value_t want = {NAN, 0, false};
          if (qs[k].n > 0)
            want = (tp_metric_value_t){ref_quantile(qs[k].v, qs[k].n, qs[k].q, &m),
                                       (int64_t)qs[k].n, true};
          expect_view(f, TP_SRC_SUPPORT, L, qs[k].m, want, T);
        }
        expect_view(f, TP_SRC_SUPPORT, L, TP_METRIC_FIRST_RESPONSE_MS_MEAN,
                    mean_of(fr_sum, (int64_t)nfr, 1), T);
        expect_view(f, TP_SRC_SUPPORT, L, TP_METRIC_RESOLUTION_MS_MEAN,
                    mean_of(res_sum, (int64_t)nres, 1), T);
        /* One reply each, never reopened: every resolution is first-contact. */
        expect_view(f, TP_SRC_SUPPORT, L, TP_METRIC_FCR_PCT,
                    mean_of((double)nres, (int64_t)nres, 100), T);
      }
    }
    fx_free(f);
  }
}

/* ---- hashes handed from the prefetch hints to apply --------------------------- */

typedef struct {
  unsigned char buf[512];
  tp_event_t ev; /* decoded from buf: its strings point into it */
} record_t;

static void record_of(record_t *r, tp_event_t ev) {
  size_t n = tp_encode_event(&ev, r->buf, sizeof(r->buf));
  cr_assert_gt(n, 0);
  cr_assert_eq(tp_decode(ev.source, r->buf, n, &r->ev, NULL, 0), TP_REJECT_NONE);
}

static void hint_of(tp_part_t *p, const char *key, const record_t *r, tp_part_hint_t *h) {
  tp_part_prefetch(p, key, strlen(key), r->buf, sizeof(r->buf), h);
  tp_part_prefetch_entry(p, h);
}

/* Each hash is trusted only where it describes the decoded event: a record
 * keyed by another touchpoint, a hint of another partition, or an id peeked
 * in another record must not send the event to the wrong entry or past the
 * duplicate check. */
Test(hints, apply_uses_a_hints_hashes_only_where_they_describe_the_event) {
  fixture_t *f = fx_new(base_yaml, TP_SRC_FEEDBACK, 0);
  char err[256];
  tp_part_t *other = tp_part_new(f->st, TP_SRC_FEEDBACK, 1, record_alert, &f->rec, err, sizeof(err));
  cr_assert_not_null(other, "%s", err);
  const tp_part_stats_t *s = tp_part_stats(f->part);
  record_t a, b, c, d, e, x;
  tp_part_hint_t h;

  /* Keyed by its touchpoint, as SPEC has it: the hint's hashes are used. */
  record_of(&a, ev_csat("e-1", 60000, "checkout", 5));
  hint_of(f->part, "checkout", &a, &h);
  cr_assert_eq(tp_part_apply_hinted(f->part, &a.ev, &h), TP_APPLY_OK);
  cr_assert_eq(atomic_load(&s->touchpoints), 1);

  /* Keyed by another touchpoint of the same length: still checkout's entry. */
  record_of(&b, ev_csat("e-2", 60001, "checkout", 4));
  hint_of(f->part, "shipping", &b, &h);
  cr_assert_eq(tp_part_apply_hinted(f->part, &b.ev, &h), TP_APPLY_OK);
  cr_assert_eq(atomic_load(&s->touchpoints), 1, "a mis-keyed record made a second entry");
  /* Or by a prefix of it. */
  record_of(&e, ev_csat("e-4", 60001, "checkout", 2));
  hint_of(f->part, "check", &e, &h);
  cr_assert_eq(tp_part_apply_hinted(f->part, &e.ev, &h), TP_APPLY_OK);
  cr_assert_eq(atomic_load(&s->touchpoints), 1, "a record keyed by a prefix made a second entry");

  /* A hint computed for partition 1: partition 0's entry all the same. */
  record_of(&c, ev_csat("e-3", 60002, "checkout", 3));
  hint_of(other, "checkout", &c, &h);
  cr_assert_eq(tp_part_apply_hinted(f->part, &c.ev, &h), TP_APPLY_OK);
  cr_assert_eq(atomic_load(&s->touchpoints), 1, "another partition's hint made a second entry");

  /* A duplicate of e-1 with the hint of another record (e-9): the duplicate
   * check hashes e-1 itself. */
  record_of(&d, ev_csat("e-1", 60003, "checkout", 1));
  record_of(&x, ev_csat("e-9", 60003, "checkout", 1));
  hint_of(f->part, "checkout", &x, &h);
  cr_assert_eq(tp_part_apply_hinted(f->part, &d.ev, &h), TP_APPLY_DUPLICATE);

  /* Without a hint, the same entry and the same duplicate index. */
  cr_assert_eq(tp_part_apply(f->part, &d.ev), TP_APPLY_DUPLICATE);
  cr_assert_eq(tp_part_apply(f->part, &x.ev), TP_APPLY_OK);
  cr_assert_eq(atomic_load(&s->touchpoints), 1);
  cr_assert_eq(atomic_load(&s->applied), 5);
  cr_assert_eq(atomic_load(&s->duplicates), 2);
  cr_assert_eq(atomic_load(&tp_part_stats(other)->touchpoints), 0);

  /* Five ratings of checkout in the step of minute 1: 5, 4, 2, 3, 1. */
  tp_part_advance(f->part, 5 * 60000);
  expect_value(f, TP_SRC_FEEDBACK, "checkout", TP_METRIC_CSAT_MEAN, 15.0 / 5, 5);
  tp_part_destroy(other);
  fx_free(f);
}
