/*
 * test_window.c -- watermarks, boundaries, lateness, duplicates, idle
 * advance, the touchpoint cap, and the alerts a partition emits: their
 * windows, values, labels and ids, and their independence from how two
 * partitions' records interleave.
 */
#include <math.h>

#include "state/state_int.h"
#include "support.h"

/* One rule that fires as soon as a 1-minute window holds any response. */
static const char *any_yaml =
    "windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n"
    "rules:\n"
    "  - {name: any, metric: responses, window: 1m, op: '>=', threshold: 1, clear: 1}\n";

typedef struct {
  tp_config_t *cfg;
  tp_state_t *st;
  tp_part_t *parts[2];
  recorder_t rec;
} fx_t;

static fx_t *fx(const char *yaml, tp_source_t src) {
  fx_t *f = calloc(1, sizeof(*f));
  char err[512];
  f->cfg = cfg_from_yaml(yaml);
  f->st = tp_state_new(f->cfg, err, sizeof(err));
  cr_assert_not_null(f->st, "%s", err);
  for (int i = 0; i < 2; i++) {
    f->parts[i] = tp_part_new(f->st, src, i, record_alert, &f->rec, err, sizeof(err));
    cr_assert_not_null(f->parts[i], "%s", err);
  }
  return f;
}

static void fx_free(fx_t *f) {
  for (int i = 0; i < 2; i++)
    tp_part_destroy(f->parts[i]);
  tp_state_destroy(f->st);
  tp_config_destroy(f->cfg);
  free(f);
}

static tp_apply_t put(fx_t *f, int part, const char *id, int64_t t, const char *tp, int csat) {
  tp_event_t ev = ev_csat(id, t, tp, csat);
  return tp_part_apply(f->parts[part], &ev);
}

Test(window, first_record_evaluates_nothing) {
  fx_t *f = fx(any_yaml, TP_SRC_FEEDBACK);
  put(f, 0, "a", T0 + 5 * MIN_MS + 30000, "tp", 5);
  cr_expect_eq(atomic_load(&tp_part_stats(f->parts[0])->evaluations), 0);
  cr_expect_eq(tp_part_watermark(f->parts[0]), T0 + 5 * MIN_MS + 30000);
  cr_expect_eq(f->rec.n, 0);
  fx_free(f);
}

Test(window, every_boundary_passed_is_evaluated_in_order) {
  fx_t *f = fx(any_yaml, TP_SRC_FEEDBACK);
  put(f, 0, "a", T0 + 30000, "tp", 5);           /* W = 0:30 */
  put(f, 0, "b", T0 + 60000 + 30000, "tp", 5);   /* W = 1:30: boundary 1:00 */
  put(f, 0, "c", T0 + 4 * MIN_MS, "tp", 5);      /* W = 4:00: 2:00, 3:00, 4:00 */
  /* 1:00 fires on [0:00,1:00); 2:00 sees b; 3:00 empty -> resolves. */
  cr_assert_eq(f->rec.n, 2);
  cr_expect_eq(f->rec.a[0].state, TP_ALERT_FIRING);
  cr_expect_eq(f->rec.a[0].window_end, T0 + MIN_MS);
  cr_expect_eq(f->rec.a[0].window_start, T0);
  cr_expect_eq(f->rec.a[1].state, TP_ALERT_RESOLVED);
  cr_expect_eq(f->rec.a[1].window_end, T0 + 3 * MIN_MS);
  cr_expect_eq(f->rec.a[1].value, 0);
  fx_free(f);
}

Test(window, boundary_instants_belong_to_the_window_they_start) {
  fx_t *f = fx(any_yaml, TP_SRC_FEEDBACK);
  put(f, 0, "a", T0 + MIN_MS - 1, "tp", 5); /* last ms of [0, 1m) */
  put(f, 0, "b", T0 + MIN_MS, "tp", 5);     /* first ms of [1m, 2m); W reaches 1m */
  cr_assert_eq(f->rec.n, 1);
  cr_expect_eq(f->rec.a[0].window_end, T0 + MIN_MS);
  cr_expect_eq(f->rec.a[0].samples, 1); /* only a */
  tp_part_advance(f->parts[0], T0 + 2 * MIN_MS);
  tp_metric_value_t v;
  cr_assert(tp__state_value(f->st, TP_SRC_FEEDBACK, 0, "tp", MIN_MS, TP_METRIC_RESPONSES, &v, NULL));
  cr_expect_eq(v.value, 1); /* only b in [1m, 2m) */
  fx_free(f);
}

static const char *late_yaml =
    "windows: {step: 1m, allowed_lateness: 30s, idle_timeout: 0s}\n"
    "rules:\n"
    "  - {name: any, metric: responses, window: 1m, op: '>=', threshold: 1}\n";

Test(window, out_of_order_within_lateness_is_applied) {
  fx_t *f = fx(late_yaml, TP_SRC_FEEDBACK);
  cr_expect_eq(put(f, 0, "a", T0 + 50000, "tp", 5), TP_APPLY_OK); /* W = 0:20 */
  cr_expect_eq(put(f, 0, "b", T0 + 20000, "tp", 5), TP_APPLY_OK); /* = W: in time */
  cr_expect_eq(put(f, 0, "c", T0 + 19999, "tp", 5), TP_APPLY_LATE);
  cr_expect_eq(put(f, 0, "d", T0 + 90000, "tp", 5), TP_APPLY_OK); /* W = 1:00 */
  cr_assert_eq(f->rec.n, 1);
  cr_expect_eq(f->rec.a[0].samples, 2); /* a and b; c was late */
  cr_expect_eq(atomic_load(&tp_part_stats(f->parts[0])->late), 1);
  cr_expect_eq(atomic_load(&tp_part_stats(f->parts[0])->applied), 3);
  fx_free(f);
}

Test(window, late_is_judged_against_the_events_own_partition) {
  fx_t *f = fx(late_yaml, TP_SRC_FEEDBACK);
  put(f, 0, "a", T0 + 10 * MIN_MS, "tp", 5);
  cr_expect_eq(put(f, 1, "b", T0, "tp", 5), TP_APPLY_OK); /* partition 1 has no watermark */
  cr_expect_eq(put(f, 1, "c", T0 + 1000, "tp", 5), TP_APPLY_OK);
  cr_expect_eq(put(f, 0, "d", T0, "tp", 5), TP_APPLY_LATE);
  fx_free(f);
}

Test(window, duplicates_are_counted_not_applied_within_dedup_depth) {
  fx_t *f = fx("windows: {allowed_lateness: 1h}\ndedup: {depth: 3}\n", TP_SRC_FEEDBACK);
  cr_expect_eq(put(f, 0, "a", T0, "tp", 5), TP_APPLY_OK);
  cr_expect_eq(put(f, 0, "b", T0, "tp", 5), TP_APPLY_OK);
  cr_expect_eq(put(f, 0, "a", T0, "tp", 5), TP_APPLY_DUPLICATE);
  cr_expect_eq(put(f, 1, "a", T0, "tp", 5), TP_APPLY_OK); /* other partition */
  cr_expect_eq(put(f, 0, "c", T0, "tp", 5), TP_APPLY_OK);
  cr_expect_eq(put(f, 0, "d", T0, "tp", 5), TP_APPLY_OK); /* "a" falls out */
  cr_expect_eq(put(f, 0, "a", T0, "tp", 5), TP_APPLY_OK);
  cr_expect_eq(put(f, 0, "b", T0, "tp", 5), TP_APPLY_OK); /* fell out too */
  cr_expect_eq(put(f, 0, "d", T0, "tp", 5), TP_APPLY_DUPLICATE);
  cr_expect_eq(atomic_load(&tp_part_stats(f->parts[0])->duplicates), 2);
  fx_free(f);
}

Test(window, dedup_ring_survives_growth_and_wraparound) {
  fx_t *f = fx("windows: {allowed_lateness: 1h}\ndedup: {depth: 5000}\n", TP_SRC_FEEDBACK);
  for (long i = 0; i < 12000; i++)
    cr_assert_eq(put(f, 0, test_id("e", i), T0, "tp", 5), TP_APPLY_OK, "i=%ld", i);
  for (long i = 12000 - 5000; i < 12000; i++)
    cr_assert_eq(put(f, 0, test_id("e", i), T0, "tp", 5), TP_APPLY_DUPLICATE, "i=%ld", i);
  cr_expect_eq(put(f, 0, test_id("e", 12000 - 5001), T0, "tp", 5), TP_APPLY_OK);
  fx_free(f);
}

/* The ring's index on its own: fingerprints crowded onto 64 home slots and
 * 64 tags force long probe chains, tag matches of different ids and
 * backward shifts across the wrap of the index; membership must stay
 * exactly "one of the last depth added". */
Test(window, dedup_index_holds_exactly_the_last_depth_fingerprints) {
  tp_dedup_t d;
  cr_assert_eq(tp__dedup_init(&d, 1000), TP_OK);
  static uint64_t fps[20000];
  uint64_t x = 0x243f6a8885a308d3ull;
  for (size_t n = 0; n < 20000; n++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    /* high half: one of 64 values (home and tag); low half: unique */
    fps[n] = ((x % 64) * 0x0400000100000000ull & 0xffffffff00000000ull) | (uint64_t)(n + 1);
    cr_assert_not(tp__dedup_contains(&d, fps[n]), "new fingerprint %zu found", n);
    cr_assert_eq(tp__dedup_add(&d, fps[n]), TP_OK);
    if (n % 97 != 0 && n != 19999)
      continue;
    size_t first = n + 1 > 1000 ? n + 1 - 1000 : 0;
    for (size_t i = first; i <= n; i++)
      cr_assert(tp__dedup_contains(&d, fps[i]), "after %zu adds: %zu missing", n + 1, i);
    for (size_t i = first > 200 ? first - 200 : 0; i < first; i++)
      cr_assert_not(tp__dedup_contains(&d, fps[i]), "after %zu adds: %zu still held", n + 1, i);
  }
  tp__dedup_free(&d);
}

Test(window, late_and_duplicate_events_do_not_enter_the_dedup_ring) {
  fx_t *f = fx("windows: {allowed_lateness: 0s}\ndedup: {depth: 10}\n", TP_SRC_FEEDBACK);
  put(f, 0, "a", T0 + MIN_MS, "tp", 5);
  cr_expect_eq(put(f, 0, "late", T0, "tp", 5), TP_APPLY_LATE);
  cr_expect_eq(put(f, 0, "late", T0 + MIN_MS, "tp", 5), TP_APPLY_OK);
  fx_free(f);
}

Test(window, touchpoints_over_the_cap_overflow_and_known_ones_still_apply) {
  fx_t *f = fx("state: {max_touchpoints: 2}\n", TP_SRC_FEEDBACK);
  cr_expect_eq(put(f, 0, "1", T0, "one", 5), TP_APPLY_OK);
  cr_expect_eq(put(f, 0, "2", T0, "two", 5), TP_APPLY_OK);
  cr_expect_eq(put(f, 0, "3", T0, "three", 5), TP_APPLY_OVERFLOW);
  cr_expect_eq(put(f, 0, "4", T0, "one", 5), TP_APPLY_OK);
  cr_expect_eq(atomic_load(&tp_part_stats(f->parts[0])->overflow), 1);
  cr_expect_eq(tp_state_table_overflow(f->st, TP_SRC_FEEDBACK), 1);
  cr_expect_eq(tp_state_touchpoints(f->st, TP_SRC_FEEDBACK), 2);
  fx_free(f);
}

Test(window, idle_advance_evaluates_and_is_a_noop_before_the_first_event) {
  fx_t *f = fx(any_yaml, TP_SRC_FEEDBACK);
  tp_part_advance(f->parts[0], T0 + 10 * MIN_MS);
  cr_expect_eq(tp_part_watermark(f->parts[0]), INT64_MIN);
  put(f, 0, "a", T0 + 10000, "tp", 5);
  tp_part_advance(f->parts[0], T0 + MIN_MS);
  cr_expect_eq(f->rec.n, 1);
  cr_expect_eq(tp_part_watermark(f->parts[0]), T0 + MIN_MS);
  tp_part_advance(f->parts[0], T0 + 30000); /* never backwards */
  cr_expect_eq(tp_part_watermark(f->parts[0]), T0 + MIN_MS);
  fx_free(f);
}

/* ---- alerts ---------------------------------------------------------------- */

static const char *csat_yaml =
    "windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n"
    "rules:\n"
    "  - name: csat-low\n"
    "    metric: csat_mean\n"
    "    window: 5m\n"
    "    op: '<'\n"
    "    threshold: 3.0\n"
    "    clear: 3.5\n"
    "    min_samples: 3\n"
    "    for: 2\n"
    "    severity: critical\n"
    "    touchpoints: ['checkout.*']\n"
    "    labels: {team: payments}\n";

/* Minute m of the scenario: three responses with the given csat. */
static void minute(fx_t *f, int part, const char *tp, int m, int csat) {
  for (int i = 0; i < 3; i++) {
    char id[64]; /* the state keeps a fingerprint, not the id */
    snprintf(id, sizeof(id), "%s-%d-%d-%d", tp, part, m, i);
    tp_event_t ev = ev_csat(id, T0 + m * MIN_MS + i * 1000, tp, csat);
    cr_assert_eq(tp_part_apply(f->parts[part], &ev), TP_APPLY_OK);
  }
}

Test(alerts, fire_after_for_evaluations_and_resolve_past_clear) {
  fx_t *f = fx(csat_yaml, TP_SRC_FEEDBACK);
  for (int m = 0; m < 30; m++)
    minute(f, 0, "checkout.payment", m, m >= 5 && m < 15 ? 1 : 5);
  tp_part_advance(f->parts[0], T0 + 31 * MIN_MS);
  cr_assert_eq(f->rec.n, 2, "got %zu alerts", f->rec.n);
  rec_alert_t *fire = &f->rec.a[0], *res = &f->rec.a[1];
  /* Means over 5m windows: at T=8m [3m,8m) holds 2 good + 3 bad minutes:
   * (2*5 + 3*1)/5 = 2.6 < 3 (first breach); T=9m: 1.8 -> FIRING (for 2). */
  cr_expect_eq(fire->state, TP_ALERT_FIRING);
  cr_expect_eq(fire->window_end, T0 + 9 * MIN_MS);
  cr_expect_eq(fire->window_start, T0 + 4 * MIN_MS);
  cr_expect(fabs(fire->value - 1.8) < 1e-9);
  cr_expect_eq(fire->samples, 15);
  cr_expect_eq(fire->threshold, 3.0);
  /* Bad minutes end at 15m; at T=18m [13m,18m) holds 2 bad minutes:
   * (2 + 15)/5 = 3.4, still below clear; T=19m: (1 + 20)/5 = 4.2. */
  cr_expect_eq(res->state, TP_ALERT_RESOLVED);
  cr_expect_eq(res->window_end, T0 + 19 * MIN_MS);
  cr_expect(fabs(res->value - 4.2) < 1e-9);
  cr_expect_eq(res->threshold, 3.5);
  cr_expect_str_eq(res->rule, "csat-low");
  cr_expect_str_eq(res->touchpoint, "checkout.payment");
  fx_free(f);
}

Test(alerts, rules_only_apply_to_matching_touchpoints) {
  fx_t *f = fx(csat_yaml, TP_SRC_FEEDBACK);
  for (int m = 0; m < 12; m++)
    minute(f, 0, "support.chat", m, 1);
  tp_part_advance(f->parts[0], T0 + 13 * MIN_MS);
  cr_expect_eq(f->rec.n, 0);
  fx_free(f);
}

Test(alerts, labels_carry_stage_and_channel_last_seen_before_window_end) {
  fx_t *f = fx("windows: {step: 1m, allowed_lateness: 59s}\n"
               "rules: [{name: any, metric: responses, window: 1m, op: '>=', threshold: 1}]\n",
               TP_SRC_FEEDBACK);
  tp_event_t a = ev_csat("a", T0 + 1000, "tp", 5);
  a.stage = TP_STAGE_PRE_PURCHASE;
  a.channel = TP_CHANNEL_EMAIL;
  tp_event_t b = ev_csat("b", T0 + 50000, "tp", 5); /* the newest before 1m */
  b.stage = TP_STAGE_POST_PURCHASE;
  b.channel = TP_CHANNEL_APP;
  tp_event_t c = ev_csat("c", T0 + 20000, "tp", 5); /* read later, older */
  c.stage = TP_STAGE_UNKNOWN;
  c.channel = TP_CHANNEL_PHONE;
  tp_event_t d = ev_csat("d", T0 + MIN_MS, "tp", 5); /* at window_end: not before it */
  d.stage = TP_STAGE_PURCHASE;
  d.channel = TP_CHANNEL_SOCIAL;
  tp_part_apply(f->parts[0], &a);
  tp_part_apply(f->parts[0], &b);
  tp_part_apply(f->parts[0], &c);
  tp_part_apply(f->parts[0], &d);
  tp_event_t e = ev_csat("e", T0 + 2 * MIN_MS, "tp", 5); /* W = 1:01: evaluates 1:00 */
  tp_part_apply(f->parts[0], &e);
  cr_assert_eq(f->rec.n, 1);
  cr_expect_eq(f->rec.a[0].stage, TP_STAGE_POST_PURCHASE);
  cr_expect_eq(f->rec.a[0].channel, TP_CHANNEL_APP);
  fx_free(f);
}

Test(alerts, ids_are_a_function_of_rule_touchpoint_state_and_window_end) {
  fx_t *f = fx(any_yaml, TP_SRC_FEEDBACK);
  put(f, 0, "a", T0, "tp", 5);
  put(f, 0, "b", T0 + 2 * MIN_MS, "tp", 5);
  cr_assert_eq(f->rec.n, 2);
  cr_expect_str_neq(f->rec.a[0].id, f->rec.a[1].id);
  /* mmh3.hash_bytes(b"any\0tp\0FIRING\01767225660000").hex() */
  cr_expect_str_eq(f->rec.a[0].id, "3ab088f2aff96a5b3709fd133b0aa36f");
  fx_free(f);
}

Test(alerts, quiet_touchpoints_are_evaluated_and_jumps_do_not_skip_transitions) {
  fx_t *f = fx("windows: {step: 1m, allowed_lateness: 0s}\n"
               "rules:\n"
               "  - {name: silent, metric: responses, window: 2m, op: '<', threshold: 1, for: 3}\n",
               TP_SRC_FEEDBACK);
  put(f, 0, "a", T0, "quiet", 5);
  put(f, 0, "b", T0 + MIN_MS, "other", 5);
  /* One jump of the watermark over a day. "quiet" has nothing in
   * [1m, 3m): breaching at 3m, 4m, 5m -> FIRING at window_end 5m; "other"
   * (response at 1m) breaches from 4m and fires at 6m. Then nothing can
   * change any more, and the rest of the day is skipped. */
  put(f, 0, "c", T0 + 24 * 60 * MIN_MS, "late-comer", 5);
  cr_assert_eq(f->rec.n, 2);
  cr_expect_str_eq(f->rec.a[0].touchpoint, "quiet");
  cr_expect_eq(f->rec.a[0].window_end, T0 + 5 * MIN_MS);
  cr_expect_str_eq(f->rec.a[1].touchpoint, "other");
  cr_expect_eq(f->rec.a[1].window_end, T0 + 6 * MIN_MS);
  /* The jump evaluated a handful of boundaries, not 1440. */
  cr_expect_lt(atomic_load(&tp_part_stats(f->parts[0])->evaluations), 20);
  fx_free(f);
}

Test(alerts, emission_can_be_suppressed_while_state_still_advances) {
  fx_t *f = fx(any_yaml, TP_SRC_FEEDBACK);
  tp_part_set_emit(f->parts[0], false);
  put(f, 0, "a", T0, "tp", 5);
  put(f, 0, "b", T0 + MIN_MS, "tp", 5); /* FIRING, not emitted */
  tp_part_set_emit(f->parts[0], true);
  put(f, 0, "c", T0 + 2 * MIN_MS, "tp", 5); /* still FIRING: nothing */
  cr_expect_eq(f->rec.n, 0);
  put(f, 0, "d", T0 + 4 * MIN_MS, "tp", 5); /* [2m,3m) had c; [3m,4m) empty: RESOLVED */
  cr_assert_eq(f->rec.n, 1);
  cr_expect_eq(f->rec.a[0].state, TP_ALERT_RESOLVED);
  fx_free(f);
}

/* Feed two partitions' records in two different interleavings: the alerts
 * of each partition must come out the same. */
static void run_interleaved(recorder_t *out, bool p0_first) {
  fx_t *f = fx(csat_yaml, TP_SRC_FEEDBACK);
  for (int m = 0; m < 25; m++) {
    int csat0 = m >= 3 && m < 12 ? 1 : 5, csat1 = m >= 8 && m < 20 ? 2 : 4;
    if (p0_first) {
      minute(f, 0, "checkout.a", m, csat0);
      minute(f, 1, "checkout.b", m, csat1);
    } else {
      /* Partition 1 runs several minutes ahead of partition 0. */
      minute(f, 1, "checkout.b", m, csat1);
      if (m >= 6)
        minute(f, 0, "checkout.a", m - 6, (m - 6) >= 3 && (m - 6) < 12 ? 1 : 5);
    }
  }
  if (!p0_first)
    for (int m = 19; m < 25; m++)
      minute(f, 0, "checkout.a", m, m >= 3 && m < 12 ? 1 : 5);
  tp_part_advance(f->parts[0], T0 + 26 * MIN_MS);
  tp_part_advance(f->parts[1], T0 + 26 * MIN_MS);
  *out = f->rec;
  fx_free(f);
}

static int cmp_alert(const void *a, const void *b) {
  const rec_alert_t *x = a, *y = b;
  if (x->partition != y->partition)
    return x->partition - y->partition;
  return (x->window_end > y->window_end) - (x->window_end < y->window_end);
}

Test(alerts, interleaving_of_partitions_does_not_change_the_alerts) {
  static recorder_t one, two;
  run_interleaved(&one, true);
  run_interleaved(&two, false);
  cr_assert_eq(one.n, 4, "got %zu", one.n);
  cr_assert_eq(two.n, one.n);
  qsort(one.a, one.n, sizeof(one.a[0]), cmp_alert);
  qsort(two.a, two.n, sizeof(two.a[0]), cmp_alert);
  for (size_t i = 0; i < one.n; i++) {
    cr_expect_str_eq(one.a[i].id, two.a[i].id, "alert %zu", i);
    cr_expect_eq(one.a[i].value, two.a[i].value, "alert %zu", i);
    cr_expect_eq(one.a[i].samples, two.a[i].samples, "alert %zu", i);
  }
}

/* ---- differential: event-driven evaluation == evaluating everything ---- */

/*
 * A brute-force reference of SPEC's semantics: at every boundary the
 * watermark passes, every known touchpoint's windows are recomputed from the
 * raw list of applied events and every rule is stepped. The partition's
 * event-driven evaluation (timer wheel, running sums) must emit exactly the
 * same alerts on random streams: out of order within lateness, late events,
 * watermark jumps, quiet touchpoints and count rules that fire on silence.
 */
static const char *diff_yaml =
    "windows: {step: 1m, allowed_lateness: 90s, idle_timeout: 0s}\n"
    "rules:\n"
    "  - {name: low, metric: csat_mean, window: 5m, op: '<', threshold: 3, clear: 3.5,\n"
    "     min_samples: 3, for: 2}\n"
    "  - {name: nps, metric: nps, window: 3m, op: '<=', threshold: -20, clear: 0, for: 1}\n"
    "  - {name: quiet, metric: responses, window: 2m, op: '<', threshold: 2, for: 3}\n"
    "  - {name: busy, metric: responses, window: 5m, op: '>=', threshold: 12, clear: 6,\n"
    "     touchpoints: ['a*']}\n";

typedef struct {
  int64_t t;
  int tp;
  int csat, nps;
} ref_event_t;

#define REF_TPS 5
#define REF_MAX 4000

typedef struct {
  ref_event_t ev[REF_MAX];
  size_t n;
  bool known[REF_TPS];
  int order[REF_TPS], n_order; /* creation order */
  tp_rule_state_t rs[REF_TPS][4];
  recorder_t out;
} reference_t;

static const char *ref_names[REF_TPS] = {"a1", "a2", "b1", "b2", "c"};

static void ref_evaluate(reference_t *ref, const tp_config_t *cfg, int64_t T) {
  for (int k = 0; k < ref->n_order; k++) {
    int tp = ref->order[k];
    for (size_t r = 0; r < cfg->n_rules; r++) {
      const tp_rule_t *rule = &cfg->rules[r];
      if (!tp_rule_matches(rule, ref_names[tp], strlen(ref_names[tp])))
        continue;
      int64_t n = 0, csat_n = 0, csat_sum = 0, nps_n = 0, prom = 0, detr = 0;
      for (size_t i = 0; i < ref->n; i++) {
        const ref_event_t *e = &ref->ev[i];
        if (e->tp != tp || e->t < T - rule->window_ms || e->t >= T)
          continue;
        n += e->csat > 0 || e->nps >= 0; /* responses need a score */
        if (e->csat > 0)
          csat_n++, csat_sum += e->csat;
        if (e->nps >= 0)
          nps_n++, prom += e->nps >= 9, detr += e->nps <= 6;
      }
      tp_metric_value_t v = {0, 0, false};
      if (rule->metric == TP_METRIC_RESPONSES)
        v = (tp_metric_value_t){(double)n, n, true};
      else if (rule->metric == TP_METRIC_CSAT_MEAN && csat_n > 0)
        v = (tp_metric_value_t){(double)csat_sum / (double)csat_n, csat_n, true};
      else if (rule->metric == TP_METRIC_NPS && nps_n > 0)
        v = (tp_metric_value_t){100.0 * (double)(prom - detr) / (double)nps_n, nps_n, true};
      tp_rule_step_t st = tp_rule_step(rule, &ref->rs[tp][r], &v, NULL);
      if (st == TP_RULE_HOLD)
        continue;
      rec_alert_t *a = &ref->out.a[ref->out.n++];
      memset(a, 0, sizeof(*a));
      snprintf(a->rule, sizeof(a->rule), "%s", rule->name);
      snprintf(a->touchpoint, sizeof(a->touchpoint), "%s", ref_names[tp]);
      a->state = st == TP_RULE_FIRE ? TP_ALERT_FIRING : TP_ALERT_RESOLVED;
      a->window_end = T;
      a->value = v.value;
      a->samples = v.samples;
    }
  }
}

static int cmp_by_time_tp_rule(const void *x, const void *y) {
  const rec_alert_t *a = x, *b = y;
  if (a->window_end != b->window_end)
    return a->window_end < b->window_end ? -1 : 1;
  int c = strcmp(a->touchpoint, b->touchpoint);
  return c ? c : strcmp(a->rule, b->rule);
}

Test(alerts, event_driven_evaluation_matches_brute_force_on_random_streams, .timeout = 120) {
  for (uint64_t seed = 1; seed <= 40; seed++) {
    fx_t *f = fx(diff_yaml, TP_SRC_FEEDBACK);
    static reference_t ref;
    memset(&ref, 0, sizeof(ref));
    uint64_t x = seed * 0x9e3779b97f4a7c15ull;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    int64_t clock = T0, wm = INT64_MIN;
    const int64_t lateness = 90000, step = MIN_MS;
    for (int i = 0; i < 1500; i++) {
      /* Mostly forward, sometimes back (within or beyond lateness),
       * sometimes a jump of up to an hour; busy and quiet phases. */
      uint64_t u = RND() % 1000;
      if (u < 5)
        clock += (int64_t)(RND() % 3600000);
      else
        clock += (int64_t)(RND() % 20000);
      int64_t t = clock - (u % 7 == 0 ? (int64_t)(RND() % 150000) : 0);
      int tp = (int)(RND() % REF_TPS);
      if ((clock / 600000) % 3 == 2 && tp < 2)
        continue; /* a1 and a2 go quiet for 10 minutes out of 30 */
      int csat = RND() % 4 ? 1 + (int)(RND() % 5) : 0;
      int nps = RND() % 3 ? (int)(RND() % 11) : -1;
      char id[32];
      snprintf(id, sizeof(id), "s%llu-%d", (unsigned long long)seed, i);
      tp_event_t ev = ev_feedback(id, t, ref_names[tp], csat ? csat : TP_SCORE_NULL,
                                  nps >= 0 ? nps : TP_SCORE_NULL, TP_SCORE_NULL, TP_SCORE_NULL,
                                  TP_SCORE_NULL);

      /* The reference: watermark first, then lateness, then apply. */
      bool late = wm != INT64_MIN && t < wm;
      if (!late) {
        int64_t nwm = t - lateness;
        if (wm == INT64_MIN) {
          wm = nwm;
        } else if (nwm > wm) {
          for (int64_t T = tp_floor_to(wm, step) + step; T <= tp_floor_to(nwm, step); T += step)
            ref_evaluate(&ref, f->cfg, T);
          wm = nwm;
        }
      }
      tp_apply_t got = tp_part_apply(f->parts[0], &ev);
      cr_assert_eq(got, late ? TP_APPLY_LATE : TP_APPLY_OK, "seed %llu event %d",
                   (unsigned long long)seed, i);
      if (late)
        continue;
      if (!ref.known[tp]) {
        ref.known[tp] = true;
        ref.order[ref.n_order++] = tp;
      }
      cr_assert_lt(ref.n, REF_MAX);
      ref.ev[ref.n++] = (ref_event_t){t, tp, csat, nps};
    }
    /* Close everything: a final watermark far ahead. */
    int64_t end = tp_floor_to(wm, step) + 30 * step;
    for (int64_t T = tp_floor_to(wm, step) + step; T <= end; T += step)
      ref_evaluate(&ref, f->cfg, T);
    tp_part_advance(f->parts[0], end);

    recorder_t *got = &f->rec;
    cr_assert_eq(got->n, ref.out.n, "seed %llu: %zu alerts, reference %zu",
                 (unsigned long long)seed, got->n, ref.out.n);
    qsort(got->a, got->n, sizeof(got->a[0]), cmp_by_time_tp_rule);
    qsort(ref.out.a, ref.out.n, sizeof(ref.out.a[0]), cmp_by_time_tp_rule);
    for (size_t i = 0; i < got->n; i++) {
      rec_alert_t *a = &got->a[i], *b = &ref.out.a[i];
      cr_assert(strcmp(a->rule, b->rule) == 0 && strcmp(a->touchpoint, b->touchpoint) == 0 &&
                    a->state == b->state && a->window_end == b->window_end &&
                    fabs(a->value - b->value) < 1e-9 && a->samples == b->samples,
                "seed %llu alert %zu: %s %s %d @%lld v=%g n=%lld; reference %s %s %d @%lld v=%g n=%lld",
                (unsigned long long)seed, i, a->rule, a->touchpoint, a->state,
                (long long)a->window_end, a->value, (long long)a->samples, b->rule, b->touchpoint,
                b->state, (long long)b->window_end, b->value, (long long)b->samples);
    }
    fx_free(f);
  }
}
