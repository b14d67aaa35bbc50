/*
 * support.h -- helpers shared by the criterion suites: configurations from
 * YAML text, events built in place, and an alert recorder.
 */
#ifndef TOUCHPULSE_TEST_SUPPORT_H
#define TOUCHPULSE_TEST_SUPPORT_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "touchpulse/config.h"
#include "touchpulse/state.h"

#define MIN_MS (60 * 1000LL)
/* 2026-01-01T00:00:00Z, a step boundary for any step dividing a day. */
#define T0 1767225600000LL

static inline tp_config_t *cfg_from_yaml(const char *yaml) {
  char err[4096] = "";
  tp_config_t *cfg = NULL;
  char *const no_env[] = {NULL};
  tp_err_t rc = tp_config_load_string(yaml, strlen(yaml), "test.yaml", no_env, &cfg, err,
                                      sizeof(err));
  cr_assert_eq(rc, TP_OK, "config: %s", err);
  return cfg;
}

/* Event ids need storage that outlives the event: a ring of buffers. */
static inline const char *test_id(const char *prefix, long n) {
  static char ids[256][48];
  static unsigned next;
  char *s = ids[next++ % 256];
  snprintf(s, sizeof(ids[0]), "%s%ld", prefix, n);
  return s;
}

static inline tp_str_t S(const char *s) { return (tp_str_t){s, s ? (uint32_t)strlen(s) : 0}; }

static inline tp_event_t ev_feedback(const char *id, int64_t t, const char *tp, int csat, int nps,
                                     int ces, int rep, int other) {
  tp_event_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.source = TP_SRC_FEEDBACK;
  ev.event_id = S(id);
  ev.occurred_at = t;
  ev.touchpoint = S(tp);
  ev.stage = TP_STAGE_PURCHASE;
  ev.channel = TP_CHANNEL_WEB;
  ev.feedback.csat = (int8_t)csat;
  ev.feedback.nps = (int8_t)nps;
  ev.feedback.ces = (int8_t)ces;
  ev.feedback.repurchase = (int8_t)rep;
  ev.feedback.try_other = (int8_t)other;
  return ev;
}

static inline tp_event_t ev_csat(const char *id, int64_t t, const char *tp, int csat) {
  return ev_feedback(id, t, tp, csat, TP_SCORE_NULL, TP_SCORE_NULL, TP_SCORE_NULL, TP_SCORE_NULL);
}

static inline tp_event_t ev_support(const char *id, int64_t t, const char *tp, const char *ticket,
                                    tp_support_kind_t kind, bool complaint) {
  tp_event_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.source = TP_SRC_SUPPORT;
  ev.event_id = S(id);
  ev.occurred_at = t;
  ev.touchpoint = S(tp);
  ev.stage = TP_STAGE_POST_PURCHASE;
  ev.channel = TP_CHANNEL_CHAT;
  ev.support.ticket_id = S(ticket);
  ev.support.kind = (uint8_t)kind;
  ev.support.complaint = complaint;
  return ev;
}

static inline tp_event_t ev_commerce(const char *id, int64_t t, const char *tp,
                                     tp_commerce_kind_t kind) {
  tp_event_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.source = TP_SRC_COMMERCE;
  ev.event_id = S(id);
  ev.occurred_at = t;
  ev.touchpoint = S(tp);
  ev.stage = TP_STAGE_POST_PURCHASE;
  ev.channel = TP_CHANNEL_WEB;
  ev.commerce.order_id = S("o-1");
  ev.commerce.kind = (uint8_t)kind;
  return ev;
}

/* ---- alert recorder ------------------------------------------------------- */

typedef struct {
  char rule[64];
  char touchpoint[TP_TOUCHPOINT_MAX + 1];
  tp_alert_state_t state;
  int64_t window_start, window_end, samples;
  double value, threshold;
  uint8_t stage, channel;
  int32_t partition;
  char id[33];
} rec_alert_t;

typedef struct {
  rec_alert_t a[4096];
  size_t n;
} recorder_t;

static inline void record_alert(void *opaque, const tp_alert_t *alert) {
  recorder_t *r = opaque;
  cr_assert_lt(r->n, sizeof(r->a) / sizeof(r->a[0]));
  rec_alert_t *x = &r->a[r->n++];
  memset(x, 0, sizeof(*x));
  snprintf(x->rule, sizeof(x->rule), "%s", alert->rule->name);
  memcpy(x->touchpoint, alert->touchpoint, alert->touchpoint_len);
  x->state = alert->state;
  x->window_start = alert->window_start;
  x->window_end = alert->window_end;
  x->samples = alert->samples;
  x->value = alert->value;
  x->threshold = alert->threshold;
  x->stage = alert->stage;
  x->channel = alert->channel;
  x->partition = alert->partition;
  tp_alert_id(alert, x->id);
}

#endif
