/*
 * metric.h -- the per-touchpoint window metrics of SPEC's table.
 *
 * One X-macro lists every metric with the input topic it is computed from and
 * what its "samples" count is, so the rule parser, the evaluator, the HTTP
 * view and the Prometheus exporter share a single list.
 */
#ifndef TOUCHPULSE_METRIC_H
#define TOUCHPULSE_METRIC_H

#include "touchpulse/event.h"

/* XX(ID, "name", SOURCE) */
#define TP_METRIC_MAP(XX)                                                      \
  XX(RESPONSES, "responses", FEEDBACK)                                         \
  XX(CSAT_MEAN, "csat_mean", FEEDBACK)                                         \
  XX(CSAT_PCT, "csat_pct", FEEDBACK)                                           \
  XX(DSAT_PCT, "dsat_pct", FEEDBACK)                                           \
  XX(NPS, "nps", FEEDBACK)                                                     \
  XX(CES_MEAN, "ces_mean", FEEDBACK)                                           \
  XX(CLI_MEAN, "cli_mean", FEEDBACK)                                           \
  XX(FIRST_RESPONSE_MS_P50, "first_response_ms_p50", SUPPORT)                  \
  XX(FIRST_RESPONSE_MS_P90, "first_response_ms_p90", SUPPORT)                  \
  XX(FIRST_RESPONSE_MS_P99, "first_response_ms_p99", SUPPORT)                  \
  XX(FIRST_RESPONSE_MS_MEAN, "first_response_ms_mean", SUPPORT)                \
  XX(RESOLUTION_MS_P50, "resolution_ms_p50", SUPPORT)                          \
  XX(RESOLUTION_MS_P90, "resolution_ms_p90", SUPPORT)                          \
  XX(RESOLUTION_MS_MEAN, "resolution_ms_mean", SUPPORT)                        \
  XX(FCR_PCT, "fcr_pct", SUPPORT)                                              \
  XX(TICKETS_OPENED, "tickets_opened", SUPPORT)                                \
  XX(COMPLAINTS, "complaints", SUPPORT)                                        \
  XX(FIRST_RESPONSE_SLA_BREACHES, "first_response_sla_breaches", SUPPORT)      \
  XX(ORDERS, "orders", COMMERCE)                                               \
  XX(RETURNS, "returns", COMMERCE)                                             \
  XX(RETURN_PCT, "return_pct", COMMERCE)

typedef enum {
#define XX(id, name, src) TP_METRIC_##id,
  TP_METRIC_MAP(XX)
#undef XX
  TP_METRIC_COUNT
} tp_metric_t;

/** @returns the metric's SPEC name; never NULL. */
const char *tp_metric_name(tp_metric_t m);
/** @returns the input topic the metric is computed from. */
tp_source_t tp_metric_source(tp_metric_t m);
/** @returns the metric with that name, or -1. */
int tp_metric_from_name(const char *name);

/**
 * A metric's value in one window. defined is false when the value is a ratio
 * or mean over zero observations (SPEC: undefined, never 0, never alerts).
 * samples is how many observations the value is made of.
 */
typedef struct {
  double value;
  int64_t samples;
  bool defined;
} tp_metric_value_t;

#endif
