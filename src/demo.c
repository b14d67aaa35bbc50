/*
 * demo.c -- `touchpulse --demo`. The whole pipeline runs for real against
 * librdkafka's mock cluster:
 *
 *   generator thread --produce--> cx.feedback / cx.support / cx.commerce
 *     --> pipeline (consumer, workers, state, rules) --> cx.alerts
 *     --> reader thread --> alert lines; live view once a second.
 *
 * Event time runs `speed` times faster than the wall clock, starting two
 * days in the past so it never runs ahead of the clock. Every 90 event
 * minutes the same incident plays: checkout payment satisfaction collapses
 * (minutes 20-45), chat first replies slow down and complaints pile up
 * (20-45), app returns spike (25-50). Some records are retried (duplicates),
 * some arrive late, and a few are corrupt, so every counter moves.
 */
#include "touchpulse/demo.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "touchpulse/alert.h"
#include "touchpulse/encode.h"
#include "touchpulse/log.h"
#include "touchpulse/publish.h"
#include "touchpulse/service.h"

#define CYCLE_MIN 90
#define RECENT_ALERTS 12

/* ---- the journey ------------------------------------------------------------- */

typedef struct {
  const char *id;
  tp_stage_t stage;
  tp_channel_t channel;
  double responses_per_min; /* feedback */
  double csat;              /* typical mean */
  double tickets_per_min;   /* support, 0 if none */
  double orders_per_min;    /* commerce, 0 if none */
} touchpoint_t;

static const touchpoint_t journey[] = {
    {"web.home", TP_STAGE_PRE_PURCHASE, TP_CHANNEL_WEB, 8, 4.2, 0, 0},
    {"web.search", TP_STAGE_PRE_PURCHASE, TP_CHANNEL_WEB, 6, 3.9, 0, 0},
    {"web.product", TP_STAGE_PRE_PURCHASE, TP_CHANNEL_WEB, 8, 4.3, 0, 0},
    {"app.browse", TP_STAGE_PRE_PURCHASE, TP_CHANNEL_APP, 6, 4.1, 0, 0},
    {"email.campaign", TP_STAGE_PRE_PURCHASE, TP_CHANNEL_EMAIL, 3, 3.8, 0, 0},
    {"social.ads", TP_STAGE_PRE_PURCHASE, TP_CHANNEL_SOCIAL, 3, 3.7, 0, 0},
    {"checkout.cart", TP_STAGE_PURCHASE, TP_CHANNEL_WEB, 8, 4.2, 0, 0},
    {"checkout.payment", TP_STAGE_PURCHASE, TP_CHANNEL_WEB, 10, 4.4, 0, 12},
    {"checkout.shipping", TP_STAGE_PURCHASE, TP_CHANNEL_WEB, 6, 4.0, 0, 0},
    {"checkout.confirmation", TP_STAGE_PURCHASE, TP_CHANNEL_EMAIL, 4, 4.5, 0, 0},
    {"app.checkout", TP_STAGE_PURCHASE, TP_CHANNEL_APP, 8, 4.3, 0, 12},
    {"delivery.tracking", TP_STAGE_POST_PURCHASE, TP_CHANNEL_APP, 6, 4.0, 0, 0},
    {"delivery.doorstep", TP_STAGE_POST_PURCHASE, TP_CHANNEL_IN_PERSON, 5, 4.1, 0, 0},
    {"returns.portal", TP_STAGE_POST_PURCHASE, TP_CHANNEL_WEB, 4, 3.6, 0, 0},
    {"support.chat", TP_STAGE_POST_PURCHASE, TP_CHANNEL_CHAT, 5, 4.0, 4, 0},
    {"support.phone", TP_STAGE_POST_PURCHASE, TP_CHANNEL_PHONE, 4, 3.9, 3, 0},
    {"support.email", TP_STAGE_POST_PURCHASE, TP_CHANNEL_EMAIL, 3, 3.8, 3, 0},
    {"support.social", TP_STAGE_POST_PURCHASE, TP_CHANNEL_SOCIAL, 2, 3.7, 2, 0},
    {"account.settings", TP_STAGE_POST_PURCHASE, TP_CHANNEL_APP, 3, 4.0, 0, 0},
    {"loyalty.program", TP_STAGE_POST_PURCHASE, TP_CHANNEL_EMAIL, 3, 4.2, 0, 0},
};
#define N_TOUCHPOINTS (sizeof(journey) / sizeof(journey[0]))
_Static_assert(N_TOUCHPOINTS <= UINT8_MAX, "a touchpoint index is a uint8_t");

static bool in_incident(int64_t minute_of_cycle, int from, int to) {
  return minute_of_cycle >= from && minute_of_cycle < to;
}

/* ---- deterministic randomness ------------------------------------------------- */

typedef struct {
  uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) / 9007199254740992.0; }
static double rng_normal(rng_t *r) {
  double u = rng_unit(r), v = rng_unit(r);
  return sqrt(-2.0 * log(u + 1e-12)) * cos(2 * M_PI * v);
}
static int clampi(double v, int lo, int hi) {
  int x = (int)lround(v);
  return x < lo ? lo : x > hi ? hi : x;
}

/* ---- scheduled support and commerce events ------------------------------------- */

typedef struct {
  int64_t at;
  uint8_t tp;   /* index into journey */
  uint8_t src;  /* tp_source_t */
  uint8_t kind; /* support or commerce kind */
  uint32_t id;  /* ticket or order number */
} later_t;

typedef struct {
  later_t *heap;
  size_t n, cap;
} agenda_t;

static void agenda_push(agenda_t *a, later_t x) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 1024;
    later_t *h = tp_realloc(a->heap, cap * sizeof(*h));
    if (h == NULL)
      return; /* the demo drops a scheduled event rather than stop */
    a->heap = h;
    a->cap = cap;
  }
  size_t i = a->n++;
  while (i > 0 && a->heap[(i - 1) / 2].at > x.at) {
    a->heap[i] = a->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  a->heap[i] = x;
}

static bool agenda_pop(agenda_t *a, int64_t until, later_t *out) {
  if (a->n == 0 || a->heap[0].at > until)
    return false;
  *out = a->heap[0];
  later_t last = a->heap[--a->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= a->n)
      break;
    if (c + 1 < a->n && a->heap[c + 1].at < a->heap[c].at)
      c++;
    if (a->heap[c].at >= last.at)
      break;
    a->heap[i] = a->heap[c];
    i = c;
  }
  if (a->n > 0)
    a->heap[i] = last;
  return true;
}

/* ---- the demo --------------------------------------------------------------------- */

typedef struct {
  char line[640];
} alert_line_t;

typedef struct {
  tp_config_t *cfg;
  tp_demo_opts_t opts;
  rd_kafka_t *gen_rk; /* generator's producer; owns the mock cluster */
  rd_kafka_mock_cluster_t *mock;
  pthread_t gen_thread, reader_thread;
  bool gen_started, reader_started;
  _Atomic bool quit;
  _Atomic int64_t event_time; /* the generator's event clock */
  _Atomic uint64_t produced, corrupt, duplicates, late;
  _Atomic uint64_t fired, resolved;
  bool tty;
  int http_port;
  _Atomic uint64_t delivered, failed; /* --generate only */
  _Atomic int gen_error;               /* --generate: a fatal client error */
  pthread_mutex_t out_lock; /* stdout and the recent-alert ring */
  alert_line_t recent[RECENT_ALERTS];
  size_t n_recent;
  int ticks;
} demo_t;

static void produce(demo_t *d, const char *topic, const char *key, const void *val, size_t len) {
  for (;;) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        d->gen_rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || atomic_load(&d->quit))
      return;
    rd_kafka_poll(d->gen_rk, 10);
  }
}

/* Encode and produce one event, now and then retried, delayed or mangled
 * the way real producers do it. */
static void emit(demo_t *d, rng_t *r, tp_event_t *ev) {
  char id[48];
  snprintf(id, sizeof(id), "%s-%016llx", tp_source_name(ev->source),
           (unsigned long long)rng_next(r));
  ev->event_id = (tp_str_t){id, (uint32_t)strlen(id)};
  double u = rng_unit(r);
  if (u < 0.002) {
    ev->occurred_at -= 4 * 60 * 1000; /* a straggler: late by minutes */
    atomic_fetch_add(&d->late, 1);
  }
  unsigned char buf[TP_ENCODE_MAX(512) + TP_CONFLUENT_HEADER_SIZE];
  size_t off = 0;
  if (rng_unit(r) < 0.1) /* some producers use the schema registry's framing */
    off = tp_encode_confluent_header(7, buf, sizeof(buf));
  size_t len = tp_encode_event(ev, buf + off, sizeof(buf) - off);
  if (len == 0)
    return;
  len += off;
  if (u > 0.999) { /* a broken producer: truncated record */
    len = len / 2;
    atomic_fetch_add(&d->corrupt, 1);
  }
  const char *topic = d->cfg->topics[ev->source];
  char key[TP_TOUCHPOINT_MAX + 1];
  snprintf(key, sizeof(key), "%.*s", (int)ev->touchpoint.len, ev->touchpoint.ptr);
  produce(d, topic, key, buf, len);
  atomic_fetch_add(&d->produced, 1);
  if (u > 0.002 && u < 0.007) { /* a retry: same bytes, same event_id */
    produce(d, topic, key, buf, len);
    atomic_fetch_add(&d->duplicates, 1);
  }
}

static void base_event(tp_event_t *ev, tp_source_t src, const touchpoint_t *tp, int64_t t) {
  memset(ev, 0, sizeof(*ev));
  ev->source = src;
  ev->occurred_at = t;
  ev->touchpoint = (tp_str_t){tp->id, (uint32_t)strlen(tp->id)};
  ev->stage = (uint8_t)tp->stage;
  ev->channel = (uint8_t)tp->channel;
}

static void gen_feedback(demo_t *d, rng_t *r, const touchpoint_t *tp, int64_t t, bool incident) {
  tp_event_t ev;
  base_event(&ev, TP_SRC_FEEDBACK, tp, t);
  double mean = incident ? 1.9 : tp->csat;
  int csat = clampi(mean + 0.8 * rng_normal(r), 1, 5);
  ev.feedback.csat = (int8_t)(rng_unit(r) < 0.9 ? csat : TP_SCORE_NULL);
  int nps = clampi(2.0 * csat + 0.5 + rng_normal(r), 0, 10);
  bool has_nps = rng_unit(r) < 0.6;
  ev.feedback.nps = (int8_t)(has_nps ? nps : TP_SCORE_NULL);
  ev.feedback.ces =
      (int8_t)(rng_unit(r) < 0.4 ? clampi(csat + 1.5 + rng_normal(r), 1, 7) : TP_SCORE_NULL);
  if (has_nps && rng_unit(r) < 0.5) {
    ev.feedback.repurchase = (int8_t)clampi(nps + rng_normal(r), 0, 10);
    ev.feedback.try_other = (int8_t)clampi(nps - 1 + 1.5 * rng_normal(r), 0, 10);
  } else {
    ev.feedback.repurchase = ev.feedback.try_other = TP_SCORE_NULL;
  }
  char customer[24];
  snprintf(customer, sizeof(customer), "c-%06u", (unsigned)(rng_next(r) % 500000));
  ev.feedback.customer_id = (tp_str_t){customer, (uint32_t)strlen(customer)};
  static const char *const comments[] = {"great", "payment failed twice", "slow", "easy enough",
                                         "could not find the button"};
  if (rng_unit(r) < 0.2) {
    const char *c = comments[incident ? 1 : rng_next(r) % 5];
    ev.feedback.comment = (tp_str_t){c, (uint32_t)strlen(c)};
  }
  emit(d, r, &ev);
}

static void gen_support(demo_t *d, rng_t *r, agenda_t *ag, uint8_t tpi, const later_t *x) {
  const touchpoint_t *tp = &journey[tpi];
  tp_event_t ev;
  base_event(&ev, TP_SRC_SUPPORT, tp, x->at);
  char ticket[24];
  snprintf(ticket, sizeof(ticket), "T-%07u", x->id);
  ev.support.ticket_id = (tp_str_t){ticket, (uint32_t)strlen(ticket)};
  ev.support.kind = x->kind;
  int64_t minute = x->at / 60000 % CYCLE_MIN;
  bool slow = strcmp(tp->id, "support.chat") == 0 && in_incident(minute, 20, 45);
  if (x->kind == TP_SUPPORT_OPENED) {
    ev.support.complaint = rng_unit(r) < (slow ? 0.5 : 0.05);
    /* First reply: a few minutes usually; 18-30 minutes during the incident. */
    double reply_min = slow ? 18 + 12 * rng_unit(r) : 1 + 6 * rng_unit(r) * rng_unit(r) * 2;
    agenda_push(ag, (later_t){x->at + (int64_t)(reply_min * 60000), tpi, TP_SRC_SUPPORT,
                              TP_SUPPORT_AGENT_REPLIED, x->id});
  } else if (x->kind == TP_SUPPORT_AGENT_REPLIED) {
    double u = rng_unit(r);
    uint8_t next = u < 0.25 ? TP_SUPPORT_CUSTOMER_REPLIED : TP_SUPPORT_RESOLVED;
    agenda_push(ag, (later_t){x->at + (int64_t)((5 + 40 * rng_unit(r)) * 60000), tpi,
                              TP_SRC_SUPPORT, next, x->id});
  } else if (x->kind == TP_SUPPORT_CUSTOMER_REPLIED) {
    agenda_push(ag, (later_t){x->at + (int64_t)((2 + 10 * rng_unit(r)) * 60000), tpi,
                              TP_SRC_SUPPORT, TP_SUPPORT_AGENT_REPLIED, x->id});
  } else if (x->kind == TP_SUPPORT_RESOLVED && rng_unit(r) < 0.05) {
    agenda_push(ag, (later_t){x->at + (int64_t)((10 + 60 * rng_unit(r)) * 60000), tpi,
                              TP_SRC_SUPPORT, TP_SUPPORT_REOPENED, x->id});
  } else if (x->kind == TP_SUPPORT_REOPENED) {
    agenda_push(ag, (later_t){x->at + (int64_t)((5 + 30 * rng_unit(r)) * 60000), tpi,
                              TP_SRC_SUPPORT, TP_SUPPORT_AGENT_REPLIED, x->id});
  }
  emit(d, r, &ev);
}

static void gen_commerce(demo_t *d, rng_t *r, agenda_t *ag, uint8_t tpi, const later_t *x) {
  const touchpoint_t *tp = &journey[tpi];
  tp_event_t ev;
  base_event(&ev, TP_SRC_COMMERCE, tp, x->at);
  char order[24];
  snprintf(order, sizeof(order), "O-%08u", x->id);
  ev.commerce.order_id = (tp_str_t){order, (uint32_t)strlen(order)};
  ev.commerce.kind = x->kind;
  if (x->kind == TP_COMMERCE_ORDER_PLACED) {
    ev.commerce.has_amount = true;
    ev.commerce.amount_minor = 1000 + (int64_t)(rng_next(r) % 20000);
    int64_t minute = x->at / 60000 % CYCLE_MIN;
    bool spike = strcmp(tp->id, "app.checkout") == 0 && in_incident(minute, 25, 50);
    if (rng_unit(r) < (spike ? 0.35 : 0.05))
      agenda_push(ag, (later_t){x->at + (int64_t)((1 + 4 * rng_unit(r)) * 60000), tpi,
                                TP_SRC_COMMERCE, TP_COMMERCE_RETURN_REQUESTED, x->id});
    else if (rng_unit(r) < 0.3)
      agenda_push(ag, (later_t){x->at + (int64_t)((30 + 60 * rng_unit(r)) * 60000), tpi,
                                TP_SRC_COMMERCE, TP_COMMERCE_DELIVERED, x->id});
  } else if (x->kind == TP_COMMERCE_RETURN_REQUESTED) {
    static const char reason[] = "damaged";
    ev.commerce.reason = (tp_str_t){reason, sizeof(reason) - 1};
  }
  emit(d, r, &ev);
}

/* One event-time second of traffic. */
static void gen_second(demo_t *d, rng_t *r, agenda_t *ag, int64_t t, uint32_t *serial) {
  int64_t minute = t / 60000 % CYCLE_MIN;
  /* NOLINTNEXTLINE(bugprone-too-small-loop-variable): N_TOUCHPOINTS <= UINT8_MAX */
  for (uint8_t i = 0; i < N_TOUCHPOINTS; i++) {
    const touchpoint_t *tp = &journey[i];
    bool incident = strcmp(tp->id, "checkout.payment") == 0 && in_incident(minute, 20, 45);
    if (rng_unit(r) < tp->responses_per_min / 60.0)
      gen_feedback(d, r, tp, t + (int64_t)(rng_next(r) % 1000), incident);
    if (rng_unit(r) < tp->tickets_per_min / 60.0) {
      later_t x = {t, i, TP_SRC_SUPPORT, TP_SUPPORT_OPENED, ++*serial};
      gen_support(d, r, ag, i, &x);
    }
    if (rng_unit(r) < tp->orders_per_min / 60.0) {
      later_t x = {t, i, TP_SRC_COMMERCE, TP_COMMERCE_ORDER_PLACED, ++*serial};
      gen_commerce(d, r, ag, i, &x);
    }
  }
  later_t x;
  while (agenda_pop(ag, t, &x)) {
    if (x.src == TP_SRC_SUPPORT)
      gen_support(d, r, ag, x.tp, &x);
    else
      gen_commerce(d, r, ag, x.tp, &x);
  }
}

static void *gen_main(void *arg) {
  demo_t *d = arg;
  rng_t r = {d->opts.seed};
  agenda_t ag = {0};
  uint32_t serial = 0;
  int64_t wall0 = tp_now_ms();
  /* Two days back, on an hour: the incident cycle starts at once. */
  int64_t start = tp_floor_to(wall0 - 2 * 86400000LL, 3600000);
  int64_t t = start;
  while (!atomic_load(&d->quit)) {
    int64_t wall = tp_now_ms();
    int64_t target = start + (int64_t)((double)(wall - wall0) * d->opts.speed);
    if (target > wall - 1000)
      target = wall - 1000; /* caught up with the clock: real time from here */
    while (t < target && !atomic_load(&d->quit)) {
      gen_second(d, &r, &ag, t, &serial);
      t += 1000;
    }
    atomic_store(&d->event_time, t);
    rd_kafka_poll(d->gen_rk, 20);
  }
  tp_free(ag.heap);
  return NULL;
}

/* ---- alert reader ------------------------------------------------------------------ */

static void format_alert(demo_t *d, const tp_alert_record_t *a, char *out, size_t size) {
  time_t secs = (time_t)(a->window_end / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  bool firing = a->state == TP_ALERT_FIRING;
  const char *color = !d->tty ? "" : firing ? "\033[1;31m" : "\033[1;32m";
  const char *reset = d->tty ? "\033[0m" : "";
  char cmp[64];
  if (firing)
    snprintf(cmp, sizeof(cmp), "%s %.4g", a->op, a->threshold);
  else
    snprintf(cmp, sizeof(cmp), "no longer %s %.4g", a->op, a->threshold);
  snprintf(out, size, "%s%-8s%s %02d:%02d %-8s %-20s %-21s %s=%.4g %s (%lld samples) team=%s",
           color, firing ? "FIRING" : "RESOLVED", reset, tm.tm_hour, tm.tm_min,
           a->severity == TP_SEV_CRITICAL ? "critical" : a->severity == TP_SEV_INFO ? "info" : "warning",
           a->rule, a->touchpoint, a->metric, a->value, cmp, (long long)a->samples,
           tp_alert_record_label(a, "team") ? tp_alert_record_label(a, "team") : "-");
}

static void *reader_main(void *arg) {
  demo_t *d = arg;
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  const char *bootstrap = rd_kafka_mock_cluster_bootstraps(d->mock);
  char group[64];
  snprintf(group, sizeof(group), "touchpulse-demo-reader-%d", (int)getpid());
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof(err))) {
    tp_log_error("demo reader: %s", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_conf_set_log_cb(conf, tp__kafka_log_cb);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (rk == NULL) {
    tp_log_error("demo reader: %s", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, d->cfg->topics[TP_TOPIC_ALERTS], RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  tp_alert_codec_t *codec = tp_alert_codec_new(err, sizeof(err));
  while (codec && !atomic_load(&d->quit)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (m == NULL)
      continue;
    tp_alert_record_t a;
    if (!m->err && tp_alert_decode(codec, m->payload, m->len, &a, err, sizeof(err)) == TP_OK) {
      atomic_fetch_add(a.state == TP_ALERT_FIRING ? &d->fired : &d->resolved, 1);
      pthread_mutex_lock(&d->out_lock);
      alert_line_t *slot = &d->recent[d->n_recent++ % RECENT_ALERTS];
      format_alert(d, &a, slot->line, sizeof(slot->line));
      if (!d->tty) {
        printf("%s\n", slot->line);
        fflush(stdout);
      }
      pthread_mutex_unlock(&d->out_lock);
    }
    rd_kafka_message_destroy(m);
  }
  tp_alert_codec_destroy(codec);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return NULL;
}

/* ---- live view ------------------------------------------------------------------------ */

typedef struct {
  char id[TP_TOUCHPOINT_MAX + 1];
  uint8_t stage, channel;
  tp_state_row_t src[TP_SRC_COUNT];
  bool has[TP_SRC_COUNT];
  int firing;
} view_row_t;

typedef struct {
  view_row_t rows[64];
  size_t n;
} view_t;

static void collect(const tp_state_row_t *row, void *opaque) {
  view_t *v = opaque;
  size_t i = 0;
  while (i < v->n && strcmp(v->rows[i].id, row->touchpoint) != 0)
    i++;
  if (i == v->n) {
    if (v->n == TP_ARRAY_SIZE(v->rows))
      return;
    memset(&v->rows[v->n], 0, sizeof(v->rows[0]));
    snprintf(v->rows[v->n].id, sizeof(v->rows[0].id), "%s", row->touchpoint);
    v->n++;
  }
  view_row_t *r = &v->rows[i];
  r->src[row->source] = *row;
  r->has[row->source] = true;
  r->firing += row->firing;
  if (row->source == TP_SRC_FEEDBACK || !r->has[TP_SRC_FEEDBACK]) {
    r->stage = row->stage;
    r->channel = row->channel;
  }
}

static int cmp_rows(const void *a, const void *b) {
  const view_row_t *x = a, *y = b;
  if (x->stage != y->stage)
    return (int)x->stage - (int)y->stage;
  return strcmp(x->id, y->id);
}

/* One table cell: the value scaled, with `decimals` digits, a sign when
 * asked and a unit suffix; "-" when undefined. */
static void cell(char *out, size_t n, const view_row_t *r, tp_source_t src, int i, double scale,
                 int decimals, bool sign, const char *suffix) {
  if (!r->has[src] || !r->src[src].defined[i])
    snprintf(out, n, "-");
  else
    snprintf(out, n, sign ? "%+.*f%s" : "%.*f%s", decimals, r->src[src].values[i] * scale, suffix);
}

static void on_tick(void *opaque, tp_pipeline_t *pl) {
  demo_t *d = opaque;
  d->ticks++;
  if (!d->tty && d->ticks % 10 != 0)
    return; /* in a log, a table every ten seconds is plenty */
  static view_t v;
  v.n = 0;
  tp_state_foreach_row(tp_pipeline_state(pl), 4096, collect, &v);
  qsort(v.rows, v.n, sizeof(v.rows[0]), cmp_rows);
  tp_pipeline_totals_t t;
  tp_pipeline_totals(pl, &t);

  char when[32] = "-";
  int64_t et = atomic_load(&d->event_time);
  if (et > 0) {
    time_t secs = (time_t)(et / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL ||
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm) == 0)
      snprintf(when, sizeof(when), "-");
  }
  pthread_mutex_lock(&d->out_lock);
  if (d->tty)
    printf("\033[H\033[2J");
  printf("touchpulse demo  event time %s UTC (x%.0f)  http://localhost:%d/metrics\n", when,
         d->opts.speed, d->http_port);
  printf("consumed %llu  applied %llu  late %llu  duplicates %llu  rejected %llu  alerts %llu "
         "FIRING / %llu RESOLVED\n\n",
         (unsigned long long)t.consumed, (unsigned long long)t.applied, (unsigned long long)t.late,
         (unsigned long long)t.duplicates, (unsigned long long)t.rejected,
         (unsigned long long)atomic_load(&d->fired), (unsigned long long)atomic_load(&d->resolved));
  printf("%-22s %-13s %-9s %5s %5s %5s %4s | %4s %7s %5s | %5s %6s | %s\n", "TOUCHPOINT (15m)",
         "STAGE", "CHANNEL", "RESP", "CSAT", "NPS", "CES", "TKTS", "1stRp90", "COMPL", "ORDRS",
         "RET%", "ALERTS");
  for (size_t i = 0; i < v.n; i++) {
    view_row_t *r = &v.rows[i];
    char c[11][16];
    cell(c[0], 16, r, TP_SRC_FEEDBACK, 0, 1, 0, false, "");
    cell(c[1], 16, r, TP_SRC_FEEDBACK, 1, 1, 2, false, "");
    cell(c[2], 16, r, TP_SRC_FEEDBACK, 2, 1, 0, true, "");
    cell(c[3], 16, r, TP_SRC_FEEDBACK, 3, 1, 1, false, "");
    cell(c[4], 16, r, TP_SRC_SUPPORT, 0, 1, 0, false, "");
    cell(c[5], 16, r, TP_SRC_SUPPORT, 1, 1.0 / 60000, 1, false, "m");
    cell(c[6], 16, r, TP_SRC_SUPPORT, 3, 1, 0, false, "");
    cell(c[7], 16, r, TP_SRC_COMMERCE, 0, 1, 0, false, "");
    cell(c[8], 16, r, TP_SRC_COMMERCE, 2, 1, 1, false, "");
    const char *alert = r->firing ? (d->tty ? "\033[1;31mFIRING\033[0m" : "FIRING") : "";
    printf("%-22s %-13s %-9s %5s %5s %5s %4s | %4s %7s %5s | %5s %6s | %s\n", r->id,
           tp_stage_name(r->stage), tp_channel_name(r->channel), c[0], c[1], c[2], c[3], c[4],
           c[5], c[6], c[7], c[8], alert);
  }
  if (d->tty) {
    printf("\nlatest alerts (window end, UTC):\n");
    size_t n = d->n_recent < RECENT_ALERTS ? d->n_recent : RECENT_ALERTS;
    /* cppcheck-suppress knownConditionTrueFalse ; 2.10 misreads n = min(x, C) as < 1 */
    for (size_t k = 0; k < n; k++)
      printf("  %s\n", d->recent[(d->n_recent - n + k) % RECENT_ALERTS].line);
    printf("\nCtrl-C to stop.\n");
  } else {
    printf("\n");
  }
  fflush(stdout);
  pthread_mutex_unlock(&d->out_lock);
}

static void on_start(void *opaque, tp_pipeline_t *pl, int http_port) {
  (void)pl;
  demo_t *d = opaque;
  d->http_port = http_port;
  d->gen_started = pthread_create(&d->gen_thread, NULL, gen_main, d) == 0;
  d->reader_started = pthread_create(&d->reader_thread, NULL, reader_main, d) == 0;
  if (!d->gen_started || !d->reader_started)
    tp_log_error("demo: cannot start the generator or the reader thread");
}

static void on_stop(void *opaque) {
  demo_t *d = opaque;
  atomic_store(&d->quit, true);
  if (d->gen_started)
    pthread_join(d->gen_thread, NULL);
  if (d->reader_started)
    pthread_join(d->reader_thread, NULL);
  d->gen_started = d->reader_started = false;
}

int tp_demo_run(tp_config_t *cfg, const tp_demo_opts_t *opts) {
  demo_t d;
  char err[512];
  memset(&d, 0, sizeof(d));
  d.cfg = cfg;
  d.opts = *opts;
  d.tty = isatty(STDOUT_FILENO);
  pthread_mutex_init(&d.out_lock, NULL);

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof(err));
  rd_kafka_conf_set(conf, "client.id", "touchpulse-demo-generator", err, sizeof(err));
  /* The generator's producer creates and owns the in-process cluster. */
  rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof(err));
  rd_kafka_conf_set_log_cb(conf, tp__kafka_log_cb);
  d.gen_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (d.gen_rk == NULL) {
    tp_log_error("demo: %s", err);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  d.mock = rd_kafka_handle_mock_cluster(d.gen_rk);
  if (d.mock == NULL) {
    tp_log_error("demo: cannot create the mock cluster");
    rd_kafka_destroy(d.gen_rk);
    return 1;
  }
  static const int partitions[TP_TOPIC_COUNT] = {4, 4, 4, 2, 1};
  for (int i = 0; i < TP_TOPIC_COUNT; i++)
    rd_kafka_mock_topic_create(d.mock, cfg->topics[i], partitions[i], 1);
  const char *bootstrap = rd_kafka_mock_cluster_bootstraps(d.mock);
  if (tp_config_kafka_set(cfg, "bootstrap.servers", bootstrap) != TP_OK ||
      (tp_config_kafka_get(cfg, "group.id") == NULL && tp_config_kafka_set(cfg, "group.id", "touchpulse-demo") != TP_OK)) {
    tp_log_error("demo: out of memory");
    rd_kafka_destroy(d.gen_rk);
    return 1;
  }

  const char *port = strrchr(cfg->http_listen, ':') ? strrchr(cfg->http_listen, ':') + 1
                                                     : cfg->http_listen;
#define BANNER "touchpulse demo: mock cluster at %s, event time x%.0f, %zu touchpoints, " \
               "%zu rules; metrics on http://localhost:%s"
  if (cfg->log_format == TP_LOG_JSON) /* stderr stays one JSON object per line */
    tp_log_info(BANNER, bootstrap, opts->speed, N_TOUCHPOINTS, cfg->n_rules, port);
  else
    fprintf(stderr, BANNER "\n", bootstrap, opts->speed, N_TOUCHPOINTS, cfg->n_rules, port);
#undef BANNER

  tp_service_hooks_t hooks = {.on_tick = on_tick,
                              .on_start = on_start,
                              .on_stop = on_stop,
                              .opaque = &d,
                              .run_for_ms = opts->run_for_ms};
  int rc = tp_service_run(cfg, &hooks);
  on_stop(&d);
  rd_kafka_flush(d.gen_rk, 1000);
  rd_kafka_destroy(d.gen_rk); /* and the mock cluster it owns */
  pthread_mutex_destroy(&d.out_lock);
  if (rc == 0)
    printf("demo stopped: %llu events produced (%llu retried, %llu late, %llu corrupt), %llu FIRING "
           "and %llu RESOLVED alerts read back\n",
           (unsigned long long)atomic_load(&d.produced), (unsigned long long)atomic_load(&d.duplicates),
           (unsigned long long)atomic_load(&d.late), (unsigned long long)atomic_load(&d.corrupt),
           (unsigned long long)atomic_load(&d.fired), (unsigned long long)atomic_load(&d.resolved));
  return rc;
}

/* ---- --generate: the demo's traffic to a real cluster ----------------------------- */

static _Atomic bool *generate_quit;

static void on_generate_signal(int signum) {
  (void)signum;
  if (generate_quit != NULL)
    atomic_store(generate_quit, true);
}

static void generate_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
  (void)rk;
  demo_t *d = opaque;
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    atomic_fetch_add(&d->delivered, 1);
    return;
  }
  if (atomic_fetch_add(&d->failed, 1) == 0)
    tp_log_error("generate: delivery to %s failed: %s", rd_kafka_topic_name(msg->rkt),
                 rd_kafka_err2str(msg->err));
}

static void generate_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  demo_t *d = opaque;
  if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) { /* the service's message, hint included */
    char why[640];
    tp__kafka_auth_message(d->cfg, "generator", reason, why, sizeof(why));
    tp_log_error("generate: %s", why);
    atomic_store(&d->gen_error, 1);
    atomic_store(&d->quit, true);
    return;
  }
  if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    tp_log_error("generate: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    atomic_store(&d->gen_error, 1);
    atomic_store(&d->quit, true);
    return;
  }
  tp_log_warn("generate: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

int tp_demo_generate(tp_config_t *cfg, const tp_demo_opts_t *opts) {
  demo_t *d = tp_calloc(1, sizeof(*d));
  if (d == NULL) {
    tp_log_error("generate: out of memory");
    return 1;
  }
  d->cfg = cfg;
  d->opts = *opts;
  pthread_mutex_init(&d->out_lock, NULL);
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof(err));
  rd_kafka_conf_set(conf, "client.id", "touchpulse-generator", err, sizeof(err));
  int rc = 1;
  if (tp__kafka_conf_apply(conf, cfg, true, err, sizeof(err)) != TP_OK) {
    tp_log_error("generate: %s", err);
    rd_kafka_conf_destroy(conf);
    rc = 2;
    goto out;
  }
  /* Retries keep each partition in order, as the processor expects. */
  rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err));
  rd_kafka_conf_set_opaque(conf, d);
  rd_kafka_conf_set_log_cb(conf, tp__kafka_log_cb);
  rd_kafka_conf_set_dr_msg_cb(conf, generate_dr_cb);
  rd_kafka_conf_set_error_cb(conf, generate_error_cb);
  d->gen_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (d->gen_rk == NULL) {
    tp_log_error("generate: %s", err);
    rd_kafka_conf_destroy(conf);
    goto out;
  }

  generate_quit = &d->quit;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_generate_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  const char *bootstrap = tp_config_kafka_get(cfg, "bootstrap.servers");
  tp_log_info("generate: %zu touchpoints to %s, %s and %s at %s, event time x%.0f", N_TOUCHPOINTS,
              cfg->topics[TP_TOPIC_FEEDBACK], cfg->topics[TP_TOPIC_SUPPORT],
              cfg->topics[TP_TOPIC_COMMERCE], bootstrap ? bootstrap : "localhost:9092", opts->speed);
  if (pthread_create(&d->gen_thread, NULL, gen_main, d) != 0) {
    tp_log_error("generate: cannot start the generator thread");
    rd_kafka_destroy(d->gen_rk);
    goto out;
  }
  int64_t start = tp_now_ms(), last_report = start;
  while (!atomic_load(&d->quit)) {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    int64_t now = tp_now_ms();
    if (opts->run_for_ms > 0 && now - start >= opts->run_for_ms)
      atomic_store(&d->quit, true);
    if (now - last_report >= 10000) {
      last_report = now;
      char when[64];
      time_t et = (time_t)(atomic_load(&d->event_time) / 1000);
      struct tm tm;
      if (gmtime_r(&et, &tm) == NULL ||
          strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(when, sizeof(when), "-");
      tp_log_info("generate: %llu events produced, %llu delivered, %llu failed; event time %s",
                  (unsigned long long)atomic_load(&d->produced),
                  (unsigned long long)atomic_load(&d->delivered),
                  (unsigned long long)atomic_load(&d->failed), when);
    }
  }
  pthread_join(d->gen_thread, NULL);
  if (!atomic_load(&d->gen_error)) {
    rd_kafka_resp_err_t ferr = rd_kafka_flush(d->gen_rk, 30000);
    if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR)
      tp_log_error("generate: %d records not delivered at exit: %s", rd_kafka_outq_len(d->gen_rk),
                   rd_kafka_err2str(ferr));
  }
  rd_kafka_destroy(d->gen_rk);
  generate_quit = NULL;
  tp_log_info("generate: stopped; %llu events produced (%llu retried, %llu late, %llu corrupt), "
              "%llu records delivered, %llu failed",
              (unsigned long long)atomic_load(&d->produced),
              (unsigned long long)atomic_load(&d->duplicates),
              (unsigned long long)atomic_load(&d->late), (unsigned long long)atomic_load(&d->corrupt),
              (unsigned long long)atomic_load(&d->delivered),
              (unsigned long long)atomic_load(&d->failed));
  rc = atomic_load(&d->gen_error) || atomic_load(&d->failed) > 0 ? 1 : 0;
out:
  pthread_mutex_destroy(&d->out_lock);
  tp_free(d);
  return rc;
}
