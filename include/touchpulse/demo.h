/*
 * demo.h -- `touchpulse --demo`: librdkafka's mock cluster in the process,
 * a generator of realistic traffic with incidents in it, the real pipeline,
 * and a reader that prints the alerts and a live per-touchpoint view.
 */
#ifndef TOUCHPULSE_DEMO_H
#define TOUCHPULSE_DEMO_H

#include "touchpulse/config.h"

typedef struct {
  double speed;        /* event-time seconds per wall-clock second */
  int64_t run_for_ms;  /* 0 = until Ctrl-C */
  uint64_t seed;
} tp_demo_opts_t;

/**
 * @brief Run the demo with cfg (its kafka bootstrap is replaced by the mock
 *        cluster's). @returns the process exit code.
 */
int tp_demo_run(tp_config_t *cfg, const tp_demo_opts_t *opts);

/**
 * @brief `touchpulse --generate`: the demo's traffic (same touchpoints,
 *        incidents, retries, stragglers and corrupt records) produced to the
 *        cluster cfg's kafka section names, until SIGINT/SIGTERM or
 *        opts->run_for_ms. @returns the process exit code: 0 when every
 *        record was delivered, 1 otherwise, 2 for a bad kafka section.
 */
int tp_demo_generate(tp_config_t *cfg, const tp_demo_opts_t *opts);

/** The example configuration compiled in from examples/touchpulse.yaml. */
extern const char tp_example_config_yaml[];

#endif
