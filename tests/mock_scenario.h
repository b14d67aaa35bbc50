/*
 * mock_scenario.h -- the scripted end-to-end scenario on librdkafka's mock
 * cluster, shared by tests/unit/test_pipeline.c (the scenario as it is) and
 * tests/unit/test_faults.c (the same scenario under injected faults): the
 * cluster with its topics, the records of the scenario, the rules, the
 * alerts they must give, and a reader of the output topics.
 *
 * A record normally goes straight to the mock cluster; with cluster_t.script
 * set it is appended to the script instead, so a test can produce the
 * scenario in stages (script_produce).
 */
#ifndef TOUCHPULSE_TEST_MOCK_SCENARIO_H
#define TOUCHPULSE_TEST_MOCK_SCENARIO_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>

#include "support.h"
#include "touchpulse/alert.h"
#include "touchpulse/encode.h"

#define PARTITIONS 2

/* One record of the scenario, in production order. */
typedef struct {
  const char *topic; /* a string literal */
  int partition;
  char key[TP_TOUCHPOINT_MAX + 1];
  bool has_key;
  unsigned char *value; /* malloc'd; NULL for an empty value */
  size_t len;
} script_rec_t;

typedef struct {
  script_rec_t *recs;
  size_t n, cap;
} script_t;

typedef struct {
  rd_kafka_t *rk; /* producer that owns the mock cluster */
  rd_kafka_mock_cluster_t *mock;
  const char *bootstrap;
  int64_t base;   /* minute 0 of the scenario */
  long serial;
  script_t *script; /* when set, records are recorded here, not produced */
} cluster_t;

static const char *const scenario_inputs[] = {"cx.feedback", "cx.support", "cx.commerce"};

/* The clients of the test itself log nothing: the broker going away at the
 * end of a test is expected. */
static inline void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk, (void)level, (void)fac, (void)buf;
}

/*
 * A mock cluster of `brokers` brokers owned by the test's producer, with the
 * five topics (every partition replicated on every broker). With more than
 * one broker the producer is idempotent, so that faults never reorder or
 * repeat the input it writes.
 */
static inline void cluster_init_brokers(cluster_t *c, int brokers) {
  char err[256], n[16];
  memset(c, 0, sizeof(*c));
  snprintf(n, sizeof(n), "%d", brokers);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
  rd_kafka_conf_set(conf, "test.mock.num.brokers", n, err, sizeof(err));
  if (brokers > 1)
    cr_assert_eq(rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)),
                 RD_KAFKA_CONF_OK, "%s", err);
  rd_kafka_conf_set_log_cb(conf, quiet_log);
  c->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  cr_assert_not_null(c->rk, "%s", err);
  c->mock = rd_kafka_handle_mock_cluster(c->rk);
  cr_assert_not_null(c->mock);
  c->bootstrap = rd_kafka_mock_cluster_bootstraps(c->mock);
  for (int i = 0; i < 3; i++)
    rd_kafka_mock_topic_create(c->mock, scenario_inputs[i], PARTITIONS, brokers);
  rd_kafka_mock_topic_create(c->mock, "cx.alerts", 1, brokers);
  rd_kafka_mock_topic_create(c->mock, "cx.deadletter", 1, brokers);
  /* A day back, on an hour: inside max_future_skew, on step boundaries. */
  c->base = tp_floor_to(tp_now_ms() - 86400000LL, 3600000);
}

static inline void cluster_init(cluster_t *c) { cluster_init_brokers(c, 1); }

static inline void cluster_destroy(cluster_t *c) {
  rd_kafka_destroy(c->rk); /* destroys the mock cluster it owns */
}

static inline void produce_now(cluster_t *c, const char *topic, int partition, const char *key,
                               const void *val, size_t len) {
  rd_kafka_resp_err_t err = rd_kafka_producev(
      c->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
      RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_END);
  cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(err));
}

/* topic is a string literal (it is kept by reference in a script). */
static inline void produce_raw(cluster_t *c, const char *topic, int partition, const char *key,
                               const void *val, size_t len) {
  script_t *s = c->script;
  if (s == NULL) {
    produce_now(c, topic, partition, key, val, len);
    return;
  }
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 256;
    s->recs = realloc(s->recs, s->cap * sizeof(*s->recs));
    cr_assert_not_null(s->recs);
  }
  script_rec_t *r = &s->recs[s->n++];
  memset(r, 0, sizeof(*r));
  r->topic = topic;
  r->partition = partition;
  r->has_key = key != NULL;
  if (key)
    snprintf(r->key, sizeof(r->key), "%s", key);
  r->len = len;
  if (len > 0) {
    r->value = malloc(len);
    cr_assert_not_null(r->value);
    memcpy(r->value, val, len);
  }
}

/* Produce records [from, to) of a script (queued; flush to wait for them). */
static inline void script_produce(cluster_t *c, const script_t *s, size_t from, size_t to) {
  for (size_t i = from; i < to && i < s->n; i++) {
    const script_rec_t *r = &s->recs[i];
    produce_now(c, r->topic, r->partition, r->has_key ? r->key : NULL, r->value, r->len);
  }
}

static inline void script_free(script_t *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->recs[i].value);
  free(s->recs);
  memset(s, 0, sizeof(*s));
}

/* Produce ev with a fresh id (or the given one, to make a duplicate). */
static inline void produce_ev(cluster_t *c, int partition, tp_event_t *ev, const char *id) {
  char idbuf[32], key[TP_TOUCHPOINT_MAX + 1];
  if (id == NULL) {
    snprintf(idbuf, sizeof(idbuf), "e-%ld", ++c->serial);
    id = idbuf;
  }
  ev->event_id = S(id);
  unsigned char buf[1024];
  size_t len = tp_encode_event(ev, buf, sizeof(buf));
  cr_assert_gt(len, 0);
  snprintf(key, sizeof(key), "%.*s", (int)ev->touchpoint.len, ev->touchpoint.ptr);
  produce_raw(c, scenario_inputs[ev->source], partition, key, buf, len);
}

static inline int64_t at(cluster_t *c, int minute, int second) {
  return c->base + minute * MIN_MS + second * 1000LL;
}

static inline void scenario_flush(cluster_t *c) {
  if (c->script == NULL)
    cr_assert_eq(rd_kafka_flush(c->rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Minutes [from, to) of the scenario, in order per partition; the expected
 * alerts are worked out in expected[] below. */
static inline void produce_minutes(cluster_t *c, int from, int to) {
  for (int m = from; m < to; m++) {
    for (int s = 0; s < 40; s += 10) {
      /* checkout.payment (feedback partition 0): csat 1 in minutes 5-9. */
      tp_event_t ev = ev_csat(NULL, at(c, m, s), "checkout.payment", m >= 5 && m < 10 ? 1 : 5);
      if (m == 9 && s == 0) { /* a producer retry: the same event twice */
        produce_ev(c, 0, &ev, "e-retried");
        produce_ev(c, 0, &ev, "e-retried");
      } else {
        produce_ev(c, 0, &ev, NULL);
      }
      /* web.home (feedback partition 1): csat 2 in minutes 10-14. */
      ev = ev_csat(NULL, at(c, m, s), "web.home", m >= 10 && m < 15 ? 2 : 5);
      produce_ev(c, 1, &ev, NULL);
      /* app.checkout (commerce partition 0): 4 orders a minute... */
      ev = ev_commerce(NULL, at(c, m, s), "app.checkout", TP_COMMERCE_ORDER_PLACED);
      produce_ev(c, 0, &ev, NULL);
    }
    /* ...and 3 returns a minute in minutes 6-8. */
    for (int s = 15; m >= 6 && m < 9 && s < 45; s += 10) {
      tp_event_t ev = ev_commerce(NULL, at(c, m, s), "app.checkout", TP_COMMERCE_RETURN_REQUESTED);
      produce_ev(c, 0, &ev, NULL);
    }
    /* support.chat (support partition 1): complaints at minutes 2, 3, 4. */
    if (m >= 2 && m <= 4) {
      char ticket[16];
      snprintf(ticket, sizeof(ticket), "T-%d", m);
      tp_event_t ev = ev_support(NULL, at(c, m, 0), "support.chat", ticket, TP_SUPPORT_OPENED, true);
      produce_ev(c, 1, &ev, NULL);
    }
  }
  scenario_flush(c);
}

/* The late straggler, the malformed records and the final ticks. */
static inline void produce_tail(cluster_t *c) {
  /* A late straggler on web.home: counted, not applied. */
  tp_event_t late = ev_csat(NULL, at(c, 3, 0), "web.home", 1);
  produce_ev(c, 1, &late, NULL);
  /* Malformed records go to the dead-letter topic with their reason. */
  unsigned char buf[512];
  tp_event_t bad = ev_csat(NULL, at(c, 19, 50), "checkout.payment", 5);
  bad.event_id = S("bad-1");
  size_t len = tp_encode_event(&bad, buf, sizeof(buf));
  produce_raw(c, "cx.feedback", 0, "checkout.payment", buf, len - 3); /* truncated */
  bad.feedback.csat = 9;
  len = tp_encode_event(&bad, buf, sizeof(buf));
  produce_raw(c, "cx.feedback", 0, "checkout.payment", buf, len); /* out of range */
  bad = ev_csat("bad-3", at(c, 19, 50), "bad touchpoint!", 5);
  len = tp_encode_event(&bad, buf, sizeof(buf));
  produce_raw(c, "cx.feedback", 1, "x", buf, len); /* charset */
  produce_raw(c, "cx.commerce", 1, "y", NULL, 0);  /* empty value */
  /* Ticks at minute 25 move every partition's watermark past minute 24. */
  for (int p = 0; p < PARTITIONS; p++) {
    tp_event_t t1 = ev_csat(NULL, at(c, 25, 0), p ? "web.home" : "checkout.payment", 5);
    tp_event_t t2 = ev_support(NULL, at(c, 25, 0), "support.chat", "T-tick", TP_SUPPORT_CUSTOMER_REPLIED, false);
    tp_event_t t3 = ev_commerce(NULL, at(c, 25, 0), "app.checkout", TP_COMMERCE_DELIVERED);
    produce_ev(c, p, &t1, NULL);
    produce_ev(c, p, &t2, NULL);
    produce_ev(c, p, &t3, NULL);
  }
  scenario_flush(c);
}

static inline void produce_scenario(cluster_t *c) {
  produce_minutes(c, 0, 20);
  produce_tail(c);
}

/* The scenario's dead letters: the reasons of produce_tail's four records. */
#define N_DEADLETTERS 4

/* The scenario's configuration after the kafka: and processing: sections. */
static const char scenario_rules_yaml[] =
    "windows: {step: 1m, allowed_lateness: 30s, idle_timeout: 0s}\n"
    "workers: 2\n"
    "http: {listen: '127.0.0.1:0'}\n"
    "rules:\n"
    "  - {name: csat-low, metric: csat_mean, window: 5m, op: '<', threshold: 3.0, clear: 3.5,\n"
    "     min_samples: 10, for: 2, severity: critical, labels: {team: payments}}\n"
    "  - {name: returns-spike, metric: return_pct, window: 5m, op: '>', threshold: 20,\n"
    "     clear: 10, min_samples: 10}\n"
    "  - {name: complaints-surge, metric: complaints, window: 5m, op: '>=', threshold: 3,\n"
    "     clear: 1, severity: info}\n";

typedef struct {
  const char *rule, *touchpoint;
  tp_alert_state_t state;
  int minute;      /* window_end */
  double value;
  int64_t samples;
} expect_t;

/* Worked out from the scenario (5-minute windows ending at minute T):
 *  checkout.payment: bad minutes k in [T-5,T): mean 5 - 0.8k; k=3 at T=8
 *    (2.6, PENDING), k=4 at T=9 (1.8: FIRING, 20 samples; the retried event
 *    is not counted twice); mean >= 3.5 needs k <= 1: T=14 (4.2, RESOLVED).
 *  web.home: mean 5 - 0.6k; k=4 at T=14 (PENDING), k=5 at T=15 (2.0,
 *    FIRING); k=2 at T=18 (3.8, RESOLVED). The late event changes nothing.
 *  app.checkout: 20 orders per window, 3 returns per minute in 6-8: T=8 has
 *    6 returns (30 % > 20: FIRING); T=14 has none (0 % <= 10: RESOLVED).
 *  support.chat: complaints at 2, 3, 4: T=5 counts 3 (FIRING), T=10 counts
 *    0 (RESOLVED, not >= clear 1). */
static const expect_t expected[] = {
    {"complaints-surge", "support.chat", TP_ALERT_FIRING, 5, 3, 3},
    {"returns-spike", "app.checkout", TP_ALERT_FIRING, 8, 30, 20},
    {"csat-low", "checkout.payment", TP_ALERT_FIRING, 9, 1.8, 20},
    {"complaints-surge", "support.chat", TP_ALERT_RESOLVED, 10, 0, 0},
    {"csat-low", "checkout.payment", TP_ALERT_RESOLVED, 14, 4.2, 20},
    {"returns-spike", "app.checkout", TP_ALERT_RESOLVED, 14, 0, 20},
    {"csat-low", "web.home", TP_ALERT_FIRING, 15, 2.0, 20},
    {"csat-low", "web.home", TP_ALERT_RESOLVED, 18, 3.8, 20},
};
#define N_EXPECTED (sizeof(expected) / sizeof(expected[0]))

/* A read_committed reader of partition 0 of topic, from the beginning. It
 * commits nothing, so it sends the group coordinator no requests. */
static inline rd_kafka_t *reader(cluster_t *c, const char *topic) {
  char err[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstrap, err, sizeof(err));
  rd_kafka_conf_set(conf, "group.id", "test-reader", err, sizeof(err));
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
  rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof(err));
  rd_kafka_conf_set_log_cb(conf, quiet_log);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  cr_assert_not_null(rk, "%s", err);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  return rk;
}

static inline int cmp_rec(const void *a, const void *b) {
  const tp_alert_record_t *x = a, *y = b;
  if (x->window_end != y->window_end)
    return x->window_end < y->window_end ? -1 : 1;
  int r = strcmp(x->rule, y->rule);
  return r ? r : strcmp(x->touchpoint, y->touchpoint);
}

/* The sum of the samples of /metrics lines that start with prefix. */
static inline double sum_series(const char *text, const char *prefix, int *lines) {
  double sum = 0;
  *lines = 0;
  size_t pl = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (strncmp(p, prefix, pl) != 0)
      continue;
    const char *sp = strchr(p, ' ');
    sum += strtod(sp + 1, NULL);
    (*lines)++;
  }
  return sum;
}

#endif
