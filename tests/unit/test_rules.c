/*
 * test_rules.c -- every transition of the alert state machine, hysteresis,
 * min_samples, undefined values, operators and touchpoint globs.
 */
#include <criterion/criterion.h>
#include <math.h>

#include "touchpulse/rules.h"

static tp_rule_t rule_lt(double threshold, double clear, int for_count) {
  tp_rule_t r = {0};
  r.name = "r";
  r.metric = TP_METRIC_CSAT_MEAN;
  r.window_ms = 900000;
  r.op = TP_OP_LT;
  r.threshold = threshold;
  r.clear = clear;
  r.for_count = for_count;
  return r;
}

static tp_metric_value_t val(double v) { return (tp_metric_value_t){v, 100, true}; }
static const tp_metric_value_t undefined = {NAN, 0, false};

static tp_rule_step_t step(const tp_rule_t *r, tp_rule_state_t *s, double v) {
  tp_metric_value_t mv = val(v);
  return tp_rule_step(r, s, &mv, NULL);
}

Test(rules, ok_stays_ok_when_not_breaching) {
  tp_rule_t r = rule_lt(3.0, 3.3, 2);
  tp_rule_state_t s = {0};
  bool changed = true;
  tp_metric_value_t mv = val(4.0);
  cr_expect_eq(tp_rule_step(&r, &s, &mv, &changed), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_OK);
  cr_expect_not(changed);
}

Test(rules, ok_to_pending_then_firing_after_for_evaluations) {
  tp_rule_t r = rule_lt(3.0, 3.3, 3);
  tp_rule_state_t s = {0};
  cr_expect_eq(step(&r, &s, 2.0), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_PENDING);
  cr_expect_eq(s.pending, 1);
  cr_expect_eq(step(&r, &s, 2.5), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_PENDING);
  cr_expect_eq(s.pending, 2);
  cr_expect_eq(step(&r, &s, 2.9), TP_RULE_FIRE);
  cr_expect_eq(s.phase, TP_RULE_FIRING);
}

Test(rules, for_one_fires_on_the_first_breach) {
  tp_rule_t r = rule_lt(3.0, 3.0, 1);
  tp_rule_state_t s = {0};
  cr_expect_eq(step(&r, &s, 1.0), TP_RULE_FIRE);
  cr_expect_eq(s.phase, TP_RULE_FIRING);
}

Test(rules, pending_returns_to_ok_and_restarts_the_count) {
  tp_rule_t r = rule_lt(3.0, 3.3, 2);
  tp_rule_state_t s = {0};
  step(&r, &s, 2.0);
  cr_expect_eq(step(&r, &s, 3.0), TP_RULE_HOLD); /* 3.0 is not < 3.0 */
  cr_expect_eq(s.phase, TP_RULE_OK);
  cr_expect_eq(s.pending, 0);
  cr_expect_eq(step(&r, &s, 2.0), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_PENDING);
  cr_expect_eq(step(&r, &s, 2.0), TP_RULE_FIRE);
}

Test(rules, firing_emits_once_and_holds_while_breaching) {
  tp_rule_t r = rule_lt(3.0, 3.3, 1);
  tp_rule_state_t s = {0};
  cr_expect_eq(step(&r, &s, 1.0), TP_RULE_FIRE);
  for (int i = 0; i < 5; i++)
    cr_expect_eq(step(&r, &s, 1.0), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_FIRING);
}

Test(rules, hysteresis_holds_firing_between_threshold_and_clear) {
  tp_rule_t r = rule_lt(3.0, 3.3, 1);
  tp_rule_state_t s = {0};
  step(&r, &s, 2.0);
  cr_expect_eq(step(&r, &s, 3.1), TP_RULE_HOLD);
  cr_expect_eq(step(&r, &s, 3.29), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_FIRING);
  cr_expect_eq(step(&r, &s, 3.3), TP_RULE_RESOLVE); /* not < 3.3 any more */
  cr_expect_eq(s.phase, TP_RULE_OK);
  cr_expect_eq(step(&r, &s, 3.5), TP_RULE_HOLD);
}

Test(rules, resolved_episode_can_fire_again) {
  tp_rule_t r = rule_lt(3.0, 3.3, 1);
  tp_rule_state_t s = {0};
  cr_expect_eq(step(&r, &s, 2.0), TP_RULE_FIRE);
  cr_expect_eq(step(&r, &s, 4.0), TP_RULE_RESOLVE);
  cr_expect_eq(step(&r, &s, 2.0), TP_RULE_FIRE);
}

Test(rules, undefined_value_holds_every_phase) {
  tp_rule_t r = rule_lt(3.0, 3.3, 3);
  tp_rule_state_t s = {0};
  bool changed = true;
  cr_expect_eq(tp_rule_step(&r, &s, &undefined, &changed), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_OK);
  cr_expect_not(changed);
  step(&r, &s, 1.0);
  step(&r, &s, 1.0);
  cr_expect_eq(tp_rule_step(&r, &s, &undefined, &changed), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_PENDING);
  cr_expect_eq(s.pending, 2);
  cr_expect_not(changed);
  cr_expect_eq(step(&r, &s, 1.0), TP_RULE_FIRE); /* the count survived */
  cr_expect_eq(tp_rule_step(&r, &s, &undefined, NULL), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_FIRING);
}

Test(rules, below_min_samples_the_value_is_undefined) {
  tp_rule_t r = rule_lt(3.0, 3.3, 1);
  r.min_samples = 20;
  tp_rule_state_t s = {0};
  tp_metric_value_t few = {1.0, 19, true}, enough = {1.0, 20, true};
  cr_expect_not(tp_rule_value_usable(&r, &few));
  cr_expect_eq(tp_rule_step(&r, &s, &few, NULL), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_OK);
  cr_expect_eq(tp_rule_step(&r, &s, &enough, NULL), TP_RULE_FIRE);
  tp_metric_value_t few_high = {5.0, 3, true};
  cr_expect_eq(tp_rule_step(&r, &s, &few_high, NULL), TP_RULE_HOLD);
  cr_expect_eq(s.phase, TP_RULE_FIRING);
}

Test(rules, each_operator_treats_equality_as_documented) {
  static const struct {
    tp_op_t op;
    double threshold, clear, at, beyond_clear;
    bool fires_at_threshold;
  } cases[] = {
      {TP_OP_LT, 3.0, 3.5, 3.0, 3.5, false},
      {TP_OP_LE, 3.0, 3.5, 3.0, 3.6, true},
      {TP_OP_GT, 10.0, 5.0, 10.0, 5.0, false},
      {TP_OP_GE, 10.0, 5.0, 10.0, 4.9, true},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    tp_rule_t r = rule_lt(cases[i].threshold, cases[i].clear, 1);
    r.op = cases[i].op;
    tp_rule_state_t s = {0};
    tp_rule_step_t got = step(&r, &s, cases[i].at);
    cr_expect_eq(got, cases[i].fires_at_threshold ? TP_RULE_FIRE : TP_RULE_HOLD, "case %zu", i);
    s.phase = TP_RULE_FIRING;
    cr_expect_eq(step(&r, &s, cases[i].beyond_clear), TP_RULE_RESOLVE, "case %zu", i);
  }
}

Test(rules, globs_select_touchpoints_and_none_means_all) {
  tp_rule_t r = rule_lt(3.0, 3.0, 1);
  cr_expect(tp_rule_matches(&r, "anything", 8));
  char *globs[] = {"checkout.*", "support/chat"};
  r.touchpoints = globs;
  r.n_touchpoints = 2;
  cr_expect(tp_rule_matches(&r, "checkout.payment", 16));
  cr_expect(tp_rule_matches(&r, "support/chat", 12));
  cr_expect_not(tp_rule_matches(&r, "support/email", 13));
  cr_expect_not(tp_rule_matches(&r, "web.checkout.payment", 20));
  /* The id is not NUL-terminated in the table: only len bytes count. */
  cr_expect_not(tp_rule_matches(&r, "checkout.paymentXYZ", 8));
}
