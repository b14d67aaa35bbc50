/*
 * rules.h -- the alert state machine of one (rule, touchpoint). Pure: no
 * I/O, no clock, no allocation.
 *
 *   OK --breaching--> PENDING (fewer than `for` breaching evaluations)
 *   PENDING --breaching, count reaches `for`--> FIRING   [emit FIRING]
 *   PENDING --not breaching--> OK
 *   FIRING --value no longer on the breaching side of `clear`--> OK
 *                                                         [emit RESOLVED]
 * With for = 1, OK goes straight to FIRING. An undefined value (no
 * observations, or fewer than min_samples) leaves the state and the count as
 * they are. No event repeats while a state holds.
 */
#ifndef TOUCHPULSE_RULES_H
#define TOUCHPULSE_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "touchpulse/config.h"
#include "touchpulse/metric.h"

typedef enum {
  TP_RULE_OK = 0,
  TP_RULE_PENDING = 1,
  TP_RULE_FIRING = 2,
} tp_rule_phase_t;

typedef struct {
  uint8_t phase;    /* tp_rule_phase_t */
  uint8_t matches;  /* the rule's touchpoint globs match this touchpoint */
  uint16_t pending; /* consecutive breaching evaluations, saturating */
} tp_rule_state_t;

typedef enum {
  TP_RULE_HOLD,     /* nothing to emit (the state may still have changed) */
  TP_RULE_FIRE,     /* emit a FIRING event */
  TP_RULE_RESOLVE,  /* emit a RESOLVED event */
} tp_rule_step_t;

/** @returns true when the value counts for the rule (defined, enough samples). */
bool tp_rule_value_usable(const tp_rule_t *rule, const tp_metric_value_t *v);

/**
 * @brief Advance rs by one evaluation of rule on value v.
 * @param changed set to true when rs changed (may be NULL).
 */
tp_rule_step_t tp_rule_step(const tp_rule_t *rule, tp_rule_state_t *rs,
                            const tp_metric_value_t *v, bool *changed);

/** @returns true when the rule's touchpoint globs match the id (all when none). */
bool tp_rule_matches(const tp_rule_t *rule, const char *touchpoint, size_t len);

#endif
