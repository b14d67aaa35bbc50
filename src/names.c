/*
 * names.c -- symbol names of the schema enums, sources and metrics,
 * generated from the X-macros in event.h and metric.h.
 */
#include <string.h>

#include "touchpulse/config.h"
#include "touchpulse/event.h"
#include "touchpulse/metric.h"

const char *tp_source_name(tp_source_t src) {
  static const char *const names[TP_SRC_COUNT] = {"feedback", "support", "commerce"};
  return (unsigned)src < TP_SRC_COUNT ? names[src] : "unknown";
}

#define NAME_FN(fn, type, map, count)                                          \
  const char *fn(type v) {                                                     \
    static const char *const names[] = {map(XX)};                              \
    return (unsigned)v < (count) ? names[v] : "UNKNOWN";                       \
  }
#define XX(s) #s,
NAME_FN(tp_stage_name, tp_stage_t, TP_STAGE_MAP, TP_STAGE_COUNT)
NAME_FN(tp_channel_name, tp_channel_t, TP_CHANNEL_MAP, TP_CHANNEL_COUNT)
NAME_FN(tp_support_kind_name, tp_support_kind_t, TP_SUPPORT_KIND_MAP,
        TP_SUPPORT_KIND_COUNT)
NAME_FN(tp_commerce_kind_name, tp_commerce_kind_t, TP_COMMERCE_KIND_MAP,
        TP_COMMERCE_KIND_COUNT)
#undef XX

static const struct {
  const char *name;
  tp_source_t source;
} metrics[TP_METRIC_COUNT] = {
#define XX(id, name, src) {name, TP_SRC_##src},
    TP_METRIC_MAP(XX)
#undef XX
};

const char *tp_metric_name(tp_metric_t m) {
  return (unsigned)m < TP_METRIC_COUNT ? metrics[m].name : "unknown";
}

tp_source_t tp_metric_source(tp_metric_t m) {
  return (unsigned)m < TP_METRIC_COUNT ? metrics[m].source : TP_SRC_FEEDBACK;
}

int tp_metric_from_name(const char *name) {
  for (int i = 0; i < TP_METRIC_COUNT; i++)
    if (strcmp(metrics[i].name, name) == 0)
      return i;
  return -1;
}

const char *tp_op_str(tp_op_t op) {
  switch (op) {
  case TP_OP_LT: return "<";
  case TP_OP_LE: return "<=";
  case TP_OP_GT: return ">";
  case TP_OP_GE: return ">=";
  }
  return "?";
}

const char *tp_severity_name(tp_severity_t s) {
  switch (s) {
  case TP_SEV_INFO: return "INFO";
  case TP_SEV_WARNING: return "WARNING";
  case TP_SEV_CRITICAL: return "CRITICAL";
  }
  return "WARNING";
}
