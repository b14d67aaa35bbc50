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
