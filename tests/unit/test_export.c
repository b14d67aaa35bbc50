/*
 * test_export.c -- what /metrics shows beyond the processor's counters: the
 * per-touchpoint gauges (metrics.max_touchpoints, hot touchpoints first,
 * undefined values left out, milliseconds as seconds, one series per
 * touchpoint even when producers ignore the keying) and the subset of
 * librdkafka's statistics, read from a document librdkafka 2.0.2 wrote.
 */
#include <stdio.h>

#include "state/state_int.h"
#include "support.h"
#include "touchpulse/kstats.h"

#define RULES_YAML                                                                         \
  "windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n"                           \
  "metrics: {max_touchpoints: %d}\n"                                                        \
  "rules:\n"                                                                                \
  "  - {name: csat-low, metric: csat_mean, window: 15m, op: '<', threshold: 3.0}\n"          \
  "  - {name: csat-low-1h, metric: csat_mean, window: 1h, op: '<', threshold: 2.0}\n"       \
  "  - {name: nps-low, metric: nps, window: 15m, op: '<', threshold: 0, touchpoints: ['app.*']}\n" \
  "  - {name: slow-reply, metric: first_response_ms_p90, window: 15m, op: '>', threshold: 3600000}\n"

typedef struct {
  tp_config_t *cfg;
  tp_state_t *st;
  tp_part_t *parts[2];
  tp_part_t *sup;
  int64_t clock[2]; /* next event time per feedback partition: never late */
  recorder_t rec;
} fx_t;

static fx_t *fx_new(int max_touchpoints) {
  fx_t *f = calloc(1, sizeof(*f));
  char yaml[2048], err[512];
  snprintf(yaml, sizeof(yaml), RULES_YAML, max_touchpoints);
  f->cfg = cfg_from_yaml(yaml);
  f->clock[0] = f->clock[1] = T0;
  f->st = tp_state_new(f->cfg, err, sizeof(err));
  cr_assert_not_null(f->st, "%s", err);
  for (int p = 0; p < 2; p++) {
    f->parts[p] = tp_part_new(f->st, TP_SRC_FEEDBACK, p, record_alert, &f->rec, err, sizeof(err));
    cr_assert_not_null(f->parts[p], "%s", err);
  }
  f->sup = tp_part_new(f->st, TP_SRC_SUPPORT, 0, record_alert, &f->rec, err, sizeof(err));
  cr_assert_not_null(f->sup, "%s", err);
  return f;
}

static void fx_free(fx_t *f) {
  for (int p = 0; p < 2; p++)
    tp_part_destroy(f->parts[p]);
  tp_part_destroy(f->sup);
  tp_state_destroy(f->st);
  tp_config_destroy(f->cfg);
  free(f);
}

static char *scrape(fx_t *f, size_t max) {
  tp_buf_t b = TP_BUF_INIT;
  tp_state_export_metrics(f->st, max, &b);
  cr_assert_not(tp_buf_failed(&b));
  char *s = strdup(b.data ? b.data : "");
  tp_buf_free(&b);
  return s;
}

static int count_lines(const char *text, const char *prefix) {
  int n = 0;
  size_t pl = strlen(prefix);
  for (const char *p = text; p && *p;) {
    if (strncmp(p, prefix, pl) == 0)
      n++;
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  return n;
}

static void feedback(fx_t *f, int part, const char *tp, int n, int csat) {
  for (int i = 0; i < n; i++) {
    int64_t t = f->clock[part];
    f->clock[part] += 1000;
    tp_event_t ev = ev_feedback(test_id(tp, t - T0 + part), t, tp,
                                csat, csat >= 4 ? 10 : 3, -1, -1, -1);
    cr_assert_eq(tp_part_apply(f->parts[part], &ev), TP_APPLY_OK);
  }
}

Test(export, gauges_per_rule_metric_and_window_with_rule_states) {
  fx_t *f = fx_new(1000);
  feedback(f, 0, "web.home", 4, 5);
  feedback(f, 0, "app.login", 4, 2);
  tp_part_advance(f->parts[0], T0 + 15 * MIN_MS);
  char *m = scrape(f, 1000);
  cr_expect(strstr(m, "# TYPE touchpulse_touchpoint_csat_mean gauge\n"), "%s", m);
  cr_expect(strstr(m, "touchpulse_touchpoint_csat_mean{topic=\"cx.feedback\",touchpoint=\"web.home\","
                      "window=\"15m\"} 5\n"), "%s", m);
  cr_expect(strstr(m, "touchpulse_touchpoint_csat_mean{topic=\"cx.feedback\",touchpoint=\"web.home\","
                      "window=\"1h\"} 5\n"), "%s", m);
  cr_expect(strstr(m, "touchpulse_touchpoint_csat_mean{topic=\"cx.feedback\",touchpoint=\"app.login\","
                      "window=\"15m\"} 2\n"), "%s", m);
  cr_expect(strstr(m, "touchpulse_touchpoint_nps{topic=\"cx.feedback\",touchpoint=\"app.login\","
                      "window=\"15m\"} -100\n"), "%s", m);
  /* Metrics no rule names are not exported. */
  cr_expect_null(strstr(m, "touchpulse_touchpoint_ces_mean"));
  cr_expect_null(strstr(m, "touchpulse_touchpoint_responses"));
  /* Rule states: nps-low only where its globs match; csat-low FIRING on app.login. */
  cr_expect(strstr(m, "touchpulse_touchpoint_rule_state{topic=\"cx.feedback\",touchpoint=\"app.login\","
                      "rule=\"csat-low\",severity=\"warning\"} 2\n"), "%s", m);
  cr_expect(strstr(m, "touchpulse_touchpoint_rule_state{topic=\"cx.feedback\",touchpoint=\"web.home\","
                      "rule=\"csat-low\",severity=\"warning\"} 0\n"), "%s", m);
  cr_expect(strstr(m, "touchpulse_touchpoint_rule_state{topic=\"cx.feedback\",touchpoint=\"app.login\","
                      "rule=\"nps-low\""), "%s", m);
  cr_expect_null(strstr(m, "touchpoint=\"web.home\",rule=\"nps-low\""), "%s", m);
  cr_expect(strstr(m, "touchpulse_touchpoints_unexported{topic=\"cx.feedback\"} 0\n"), "%s", m);
  free(m);
  fx_free(f);
}

Test(export, undefined_values_have_no_sample_and_milliseconds_become_seconds) {
  fx_t *f = fx_new(1000);
  tp_event_t ev = ev_support("s1", T0, "chat.help", "t1", TP_SUPPORT_OPENED, false);
  cr_assert_eq(tp_part_apply(f->sup, &ev), TP_APPLY_OK);
  ev = ev_support("s3", T0 + 2000, "chat.quiet", "t2", TP_SUPPORT_OPENED, false);
  cr_assert_eq(tp_part_apply(f->sup, &ev), TP_APPLY_OK);
  ev = ev_support("s2", T0 + 90 * 1000, "chat.help", "t1", TP_SUPPORT_AGENT_REPLIED, false);
  cr_assert_eq(tp_part_apply(f->sup, &ev), TP_APPLY_OK);
  tp_part_advance(f->sup, T0 + 15 * MIN_MS);
  char *m = scrape(f, 1000);
  cr_expect(strstr(m, "# TYPE touchpulse_touchpoint_first_response_p90_seconds gauge\n"), "%s", m);
  /* 90 s, within the sketch's 1 %. */
  const char *key = "touchpulse_touchpoint_first_response_p90_seconds{topic=\"cx.support\","
                    "touchpoint=\"chat.help\",window=\"15m\"} ";
  const char *at = strstr(m, key);
  cr_assert_not_null(at, "%s", m);
  double v = strtod(at + strlen(key), NULL);
  cr_expect(v > 89.1 && v < 90.9, "p90 %g s", v);
  /* No reply at chat.quiet: no first-response time, so no sample at all. */
  cr_expect_null(strstr(m, "first_response_p90_seconds{topic=\"cx.support\",touchpoint=\"chat.quiet\""),
                 "%s", m);
  cr_expect(strstr(m, "touchpoint=\"chat.quiet\",rule=\"slow-reply\",severity=\"warning\"} 0"), "%s",
            m);
  free(m);
  fx_free(f);
}

Test(export, capped_per_topic_with_breaching_touchpoints_first) {
  fx_t *f = fx_new(5);
  char name[32];
  for (int i = 0; i < 40; i++) {
    snprintf(name, sizeof(name), "web.page%02d", i);
    feedback(f, 0, name, 2, 5);
  }
  feedback(f, 0, "web.broken", 3, 1); /* FIRING: must be among the five */
  tp_part_advance(f->parts[0], T0 + 15 * MIN_MS);
  char *m = scrape(f, 5);
  cr_expect_eq(count_lines(m, "touchpulse_touchpoint_csat_mean{"), 5 * 2, "%s", m); /* 2 windows */
  cr_expect(strstr(m, "touchpoint=\"web.broken\",window=\"15m\"} 1\n"), "%s", m);
  cr_expect(strstr(m, "touchpulse_touchpoints_unexported{topic=\"cx.feedback\"} 36\n"), "%s", m);
  free(m);
  /* 0 turns the per-touchpoint series off. */
  m = scrape(f, 0);
  cr_expect_eq(count_lines(m, "touchpulse_touchpoint_csat_mean{"), 0);
  cr_expect(strstr(m, "touchpulse_touchpoints_unexported{topic=\"cx.feedback\"} 41\n"), "%s", m);
  free(m);
  fx_free(f);
}

/* Once the cold list is full a scrape tells the remaining entries by their
 * published rule states alone (export.c): the breaching touchpoints among
 * hundreds of quiet ones, wherever the table puts them, are all exported. */
Test(export, breaching_touchpoints_found_after_the_cap_is_full_of_quiet_ones) {
  fx_t *f = fx_new(6);
  char name[32];
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof(name), "web.quiet%03d", i);
    feedback(f, 0, name, 1, 5);
    if (i % 75 == 74) {
      snprintf(name, sizeof(name), "web.broken%d", i / 75);
      feedback(f, 0, name, 2, 1); /* csat-low FIRING at the boundary */
    }
  }
  tp_part_advance(f->parts[0], f->clock[0] + 15 * MIN_MS);
  char *m = scrape(f, 6);
  /* Six touchpoints, two of the rules matching each. */
  cr_expect_eq(count_lines(m, "touchpulse_touchpoint_rule_state{topic=\"cx.feedback\""), 6 * 2,
               "%s", m);
  for (int k = 0; k < 4; k++) {
    char want[96];
    snprintf(want, sizeof(want), "touchpoint=\"web.broken%d\",rule=\"csat-low\",severity=", k);
    cr_expect(strstr(m, want), "web.broken%d missing:\n%s", k, m);
  }
  cr_expect(strstr(m, "touchpulse_touchpoints_unexported{topic=\"cx.feedback\"} 298\n"), "%s", m);
  free(m);
  fx_free(f);
}

Test(export, a_touchpoint_in_two_partitions_is_one_series) {
  fx_t *f = fx_new(1000);
  feedback(f, 0, "web.twice", 3, 5);
  feedback(f, 1, "web.twice", 3, 4);
  tp_part_advance(f->parts[0], T0 + 14 * MIN_MS);
  tp_part_advance(f->parts[1], T0 + 15 * MIN_MS); /* evaluated last: its values win */
  char *m = scrape(f, 1000);
  cr_expect_eq(count_lines(m, "touchpulse_touchpoint_csat_mean{topic=\"cx.feedback\",touchpoint=\"web.twice\",window=\"15m\"}"), 1, "%s", m);
  cr_expect(strstr(m, "touchpoint=\"web.twice\",window=\"15m\"} 4\n"), "%s", m);
  cr_expect_eq(count_lines(m, "touchpulse_touchpoint_rule_state{topic=\"cx.feedback\",touchpoint=\"web.twice\",rule=\"csat-low\""), 1, "%s", m);
  free(m);
  fx_free(f);
}

/* Label values go through tp_buf_prom_escape (test_common.c); topic, rule
 * and touchpoint names are validated to characters that need no escaping. */

/* ---- librdkafka statistics ------------------------------------------------ */

static char *read_fixture(const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof(path), "%s/tests/fixtures/%s", TP_SOURCE_DIR, name);
  FILE *fp = fopen(path, "rb");
  cr_assert_not_null(fp, "%s", path);
  char *data = malloc(1 << 20);
  *len = fread(data, 1, (1 << 20) - 1, fp);
  data[*len] = '\0';
  fclose(fp);
  return data;
}

Test(kstats, reads_the_exported_fields_of_a_real_document) {
  size_t len;
  char *json = read_fixture("rdkafka_stats_producer.json", &len);
  tp_kstats_snap_t s;
  cr_assert(tp_kstats_parse(json, len, &s));
  cr_expect(s.valid);
  cr_expect_eq(s.replyq, 0);
  cr_expect_eq(s.msg_cnt, 3);
  cr_expect_eq(s.msg_size, 1337);
  cr_expect_eq(s.tx, 41);
  cr_expect_eq(s.tx_bytes, 8910);
  cr_expect_eq(s.rx, 40);
  cr_expect_eq(s.rx_bytes, 5120);
  int kept = 0;
  for (size_t i = 0; i < s.n_brokers; i++) {
    const tp_kstats_broker_t *b = &s.brokers[i];
    if (b->skip)
      continue;
    kept++;
    cr_expect_str_eq(b->name, "127.0.0.1:39091/1");
    cr_expect(b->up);
    cr_expect_eq(b->rtt_avg_us, 812);
    cr_expect_eq(b->outbuf_cnt, 1);
    cr_expect_eq(b->waitresp_cnt, 2);
  }
  cr_expect_eq(kept, 1, "internal, logical and bootstrap-only brokers are skipped");
  free(json);
}

Test(kstats, exports_prometheus_families_per_client) {
  size_t len;
  char *json = read_fixture("rdkafka_stats_producer.json", &len);
  tp_kstats_t *prod = tp_kstats_new("producer"), *cons = tp_kstats_new("consumer");
  tp_kstats_update(prod, json, len);
  tp_kstats_t *clients[2] = {cons, prod};
  tp_buf_t b = TP_BUF_INIT;
  tp_kstats_metrics(clients, 2, &b);
  cr_expect(strstr(b.data, "# TYPE touchpulse_kafka_tx_bytes_total counter\n"
                           "touchpulse_kafka_tx_bytes_total{client=\"producer\"} 8910\n"),
            "%s", b.data);
  cr_expect(strstr(b.data, "touchpulse_kafka_broker_rtt_seconds{client=\"producer\","
                           "broker=\"127.0.0.1:39091/1\"} 0.000812\n"),
            "%s", b.data);
  cr_expect(strstr(b.data, "touchpulse_kafka_producer_queue_messages{client=\"producer\"} 3\n"),
            "%s", b.data);
  /* No document from the consumer yet: no samples for it. */
  cr_expect_null(strstr(b.data, "client=\"consumer\""), "%s", b.data);
  tp_buf_free(&b);
  tp_kstats_destroy(prod);
  tp_kstats_destroy(cons);
  free(json);
}

/* The publisher may replace its librdkafka client (an abort refused with
 * INVALID_TXN_STATE): the new client counts from 0, the exported counters
 * carry on from where the old one stopped. */
Test(kstats, counters_carry_over_a_replaced_client) {
  static const char first[] = "{\"tx\": 40, \"tx_bytes\": 9000, \"rx\": 39, \"rx_bytes\": 5000}";
  static const char later[] = "{\"tx\": 41, \"tx_bytes\": 9100, \"rx\": 40, \"rx_bytes\": 5100}";
  static const char last[] = "{\"tx\": 42, \"tx_bytes\": 9200, \"rx\": 41, \"rx_bytes\": 5200}";
  static const char fresh[] = "{\"tx\": 2, \"tx_bytes\": 300, \"rx\": 2, \"rx_bytes\": 200}";
  tp_kstats_t *ks = tp_kstats_new("producer");
  tp_kstats_update(ks, first, sizeof(first) - 1);
  tp_kstats_update(ks, later, sizeof(later) - 1);
  /* A document cut short reads as counters of 0: not a new client. */
  tp_kstats_update(ks, later, 20);
  tp_kstats_update(ks, last, sizeof(last) - 1);
  tp_kstats_update(ks, fresh, sizeof(fresh) - 1);
  tp_kstats_t *clients[1] = {ks};
  tp_buf_t b = TP_BUF_INIT;
  tp_kstats_metrics(clients, 1, &b);
  cr_expect(strstr(b.data, "touchpulse_kafka_tx_requests_total{client=\"producer\"} 44\n"), "%s",
            b.data);
  cr_expect(strstr(b.data, "touchpulse_kafka_tx_bytes_total{client=\"producer\"} 9500\n"), "%s",
            b.data);
  cr_expect(strstr(b.data, "touchpulse_kafka_rx_responses_total{client=\"producer\"} 43\n"), "%s",
            b.data);
  cr_expect(strstr(b.data, "touchpulse_kafka_rx_bytes_total{client=\"producer\"} 5400\n"), "%s",
            b.data);
  tp_buf_free(&b);
  tp_kstats_destroy(ks);
}

Test(kstats, malformed_documents_never_overrun) {
  size_t len;
  char *json = read_fixture("rdkafka_stats_producer.json", &len);
  tp_kstats_snap_t s;
  /* Every prefix: a partial parse, never a read past the end (ASan). */
  for (size_t n = 0; n < len; n += 7) {
    char *copy = malloc(n ? n : 1);
    memcpy(copy, json, n);
    tp_kstats_parse(copy, n, &s);
    free(copy);
  }
  char deep[200];
  memset(deep, '{', sizeof(deep));
  cr_expect_not(tp_kstats_parse(deep, sizeof(deep), &s));
  const char *bad[] = {"", "[]", "{\"tx\":}", "{\"tx\":1e999}", "{\"brokers\":{\"x\":{\"rtt\":{\"avg\":\"\\",
                       "{\"tx\" 1}", "nul"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_not(tp_kstats_parse(bad[i], strlen(bad[i]), &s), "%s", bad[i]);
  free(json);
}
