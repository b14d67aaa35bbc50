/*
 * rules.c -- rule matching and the per-(rule, touchpoint) alert state
 * machine. See rules.h for the transitions.
 */
#include "touchpulse/rules.h"

#include <fnmatch.h>
#include <string.h>

bool tp_rule_value_usable(const tp_rule_t *rule, const tp_metric_value_t *v) {
  return v->defined && v->samples >= rule->min_samples;
}

tp_rule_step_t tp_rule_step(const tp_rule_t *rule, tp_rule_state_t *rs,
                            const tp_metric_value_t *v, bool *changed) {
  tp_rule_state_t before = *rs;
  tp_rule_step_t out = TP_RULE_HOLD;

  if (tp_rule_value_usable(rule, v)) {
    bool breaching = tp_op_holds(rule->op, v->value, rule->threshold);
    switch ((tp_rule_phase_t)rs->phase) {
    case TP_RULE_OK:
    case TP_RULE_PENDING:
      if (!breaching) {
        rs->phase = TP_RULE_OK;
        rs->pending = 0;
        break;
      }
      if (rs->pending < UINT16_MAX)
        rs->pending++;
      if (rs->pending >= rule->for_count) {
        rs->phase = TP_RULE_FIRING;
        rs->pending = 0;
        out = TP_RULE_FIRE;
      } else {
        rs->phase = TP_RULE_PENDING;
      }
      break;
    case TP_RULE_FIRING:
      /* Hysteresis: stay FIRING until the value leaves the breaching side of
       * the clear level, which config validation puts at or beyond the
       * threshold. */
      if (!tp_op_holds(rule->op, v->value, rule->clear)) {
        rs->phase = TP_RULE_OK;
        out = TP_RULE_RESOLVE;
      }
      break;
    }
  }
  if (changed != NULL)
    *changed = memcmp(&before, rs, sizeof(before)) != 0;
  return out;
}

bool tp_rule_matches(const tp_rule_t *rule, const char *touchpoint, size_t len) {
  if (rule->n_touchpoints == 0)
    return true;
  char id[256];
  if (len >= sizeof(id))
    return false; /* touchpoint ids are at most 128 bytes */
  memcpy(id, touchpoint, len);
  id[len] = '\0';
  for (size_t i = 0; i < rule->n_touchpoints; i++)
    if (fnmatch(rule->touchpoints[i], id, 0) == 0)
      return true;
  return false;
}
