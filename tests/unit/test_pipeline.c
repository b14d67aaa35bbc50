/*
 * test_pipeline.c -- end to end through librdkafka's mock cluster: a scripted
 * scenario is produced to the input topics, the real pipeline (consumer
 * group, workers, state, rules, producer) runs on it, and the alert topic,
 * the dead-letter topic and the committed offsets are read back.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "mock_scenario.h" /* the cluster, the scenario and its expected alerts */
#include "state/state_int.h" /* the touchpoint table a partition's entries are in */
#include "touchpulse/pipeline.h"
#include "touchpulse/publish.h"

#define KAFKA_API_PRODUCE 0 /* the Kafka protocol's ApiKey of Produce */

/* The scenario's rules, logging warnings. */
#define RULES_YAML "log: {level: warn}\n%s"

/* A pipeline on cfg_from_yaml(yaml), started. */
static tp_pipeline_t *start_pipeline(const char *yaml, tp_config_t **cfg) {
  char err[512];
  *cfg = cfg_from_yaml(yaml);
  tp_pipeline_opts_t opts = {.cfg = *cfg};
  tp_pipeline_t *pl = tp_pipeline_new(&opts, err, sizeof(err));
  cr_assert_not_null(pl, "%s", err);
  cr_assert_eq(tp_pipeline_start(pl, err, sizeof(err)), TP_OK, "%s", err);
  return pl;
}

/* Every input partition's committed offset for group is the end of its log
 * (and, when records >= 0, that end is records). */
static void expect_committed_at_log_end(cluster_t *c, const char *group, int64_t records) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstrap, err, sizeof(err));
  rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
  rd_kafka_conf_set_log_cb(conf, quiet_log);
  rd_kafka_t *chk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  cr_assert_not_null(chk, "%s", err);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(3 * PARTITIONS);
  for (int i = 0; i < 3; i++)
    for (int p = 0; p < PARTITIONS; p++)
      rd_kafka_topic_partition_list_add(l, scenario_inputs[i], p);
  cr_assert_eq(rd_kafka_committed(chk, l, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int i = 0; i < l->cnt; i++) {
    int64_t lo, hi;
    cr_assert_eq(rd_kafka_query_watermark_offsets(chk, l->elems[i].topic, l->elems[i].partition,
                                                  &lo, &hi, 10000),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_expect_eq(l->elems[i].offset, hi, "%s[%d] committed %lld, end %lld", l->elems[i].topic,
                 (int)l->elems[i].partition, (long long)l->elems[i].offset, (long long)hi);
    if (records >= 0)
      cr_expect_eq(hi, records, "%s[%d] ends at %lld", l->elems[i].topic,
                   (int)l->elems[i].partition, (long long)hi);
  }
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_destroy(chk);
}

/*
 * Runs the scenario once. exactly_once picks the transactional producer or
 * flush-then-commit. The committed offsets are only checked in the latter:
 * librdkafka 2.0.2's mock broker acknowledges TxnOffsetCommit without
 * storing the offsets (rdkafka_mock_handlers.c), so transactional offsets
 * are checked against the real broker (tests/integration).
 */
static void run_scenario(bool exactly_once, rd_kafka_resp_err_t produce_error) {
  cluster_t c;
  cluster_init(&c);
  produce_scenario(&c);
  /* The next Produce request is touchpulse's first alert or dead letter. */
  if (produce_error)
    rd_kafka_mock_push_request_errors(c.mock, KAFKA_API_PRODUCE, 1, produce_error);

  char yaml[2048];
  snprintf(yaml, sizeof(yaml),
           "kafka: {bootstrap.servers: '%s', group.id: tp-e2e}\n"
           "processing: {exactly_once: %s, commit_interval: 200ms}\n" RULES_YAML,
           c.bootstrap, exactly_once ? "true" : "false", scenario_rules_yaml);
  tp_config_t *cfg = NULL;
  tp_pipeline_t *pl = start_pipeline(yaml, &cfg);
  char err[512];

  /* Read the alert topic until the expected number arrived, then a little
   * longer: anything more is an error too. */
  static tp_alert_record_t got[64];
  size_t n = 0;
  tp_alert_codec_t *codec = tp_alert_codec_new(err, sizeof(err));
  rd_kafka_t *rd = reader(&c, "cx.alerts");
  uint64_t deadline = tp_mono_ns() + 180ull * 1000000000ull, settle = 0;
  while (tp_mono_ns() < deadline && (settle == 0 || tp_mono_ns() < settle)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 100);
    if (m && !m->err) {
      cr_assert_lt(n, 64);
      cr_assert_eq(tp_alert_decode(codec, m->payload, m->len, &got[n], err, sizeof(err)), TP_OK,
                   "%s", err);
      cr_expect_eq(m->key_len, strlen(got[n].touchpoint), "alerts are keyed by touchpoint");
      cr_expect(memcmp(m->key, got[n].touchpoint, m->key_len) == 0);
      n++;
    }
    if (m)
      rd_kafka_message_destroy(m);
    if (n >= N_EXPECTED && settle == 0)
      settle = tp_mono_ns() + 2000000000ull;
    cr_assert_not(tp_pipeline_failed(pl));
  }
  rd_kafka_consumer_close(rd);
  rd_kafka_destroy(rd);

  /* While it runs: every consumed record is in the latency histogram,
   * once, and the touchpoints have their per-rule states. */
  tp_buf_t mb = TP_BUF_INIT;
  tp_pipeline_metrics(pl, &mb);
  cr_assert_not(tp_buf_failed(&mb));
  int lines;
  double count = sum_series(mb.data, "touchpulse_processing_latency_seconds_count{", &lines);
  cr_expect_eq(lines, 3);
  double consumed = sum_series(mb.data, "touchpulse_events_consumed_total{", &lines);
  cr_expect_gt(consumed, 0);
  cr_expect_eq(count, consumed, "latency count %g, consumed %g", count, consumed);
  double inf = sum_series(mb.data, "touchpulse_processing_latency_seconds_bucket{topic=\"cx.feedback\",le=\"+Inf\"}", &lines);
  double c_fb = sum_series(mb.data, "touchpulse_processing_latency_seconds_count{topic=\"cx.feedback\"}", &lines);
  cr_expect_eq(inf, c_fb);
  sum_series(mb.data, "touchpulse_touchpoint_rule_state{", &lines);
  cr_expect_gt(lines, 0, "no per-touchpoint rule states:\n%s", mb.data);
  tp_buf_free(&mb);
  tp_pipeline_totals_t t;
  cr_assert_eq(tp_pipeline_stop(pl), TP_OK);
  tp_pipeline_totals(pl, &t);
  cr_expect_eq(t.duplicates, 1, "duplicates %llu", (unsigned long long)t.duplicates);
  cr_expect_eq(t.late, 1, "late %llu", (unsigned long long)t.late);
  cr_expect_eq(t.rejected, 4, "rejected %llu", (unsigned long long)t.rejected);

  if (!produce_error) /* an aborted transaction's dead letters were delivered, then discarded */
    cr_expect_eq(t.deadletters_delivered, 4);

  if (produce_error) {
    /* The mock shows aborted records to read_committed readers (see the
     * dead letters below): here only distinct ids can be compared. */
    size_t u = 0;
    qsort(got, n, sizeof(got[0]), cmp_rec);
    for (size_t i = 0; i < n; i++)
      if (u == 0 || strcmp(got[u - 1].alert_id, got[i].alert_id) != 0)
        got[u++] = got[i];
    n = u;
  }
  cr_assert_eq(n, N_EXPECTED, "got %zu alerts, expected %zu", n, N_EXPECTED);
  /* Per touchpoint the topic holds them in window order... */
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (strcmp(got[i].touchpoint, got[j].touchpoint) == 0 && strcmp(got[i].rule, got[j].rule) == 0)
        cr_expect_lt(got[i].window_end, got[j].window_end);
  /* ...and as a whole they are exactly the expected ones. */
  qsort(got, n, sizeof(got[0]), cmp_rec);
  for (size_t i = 0; i < n; i++) {
    const expect_t *e = &expected[i];
    cr_expect_str_eq(got[i].rule, e->rule, "alert %zu", i);
    cr_expect_str_eq(got[i].touchpoint, e->touchpoint, "alert %zu", i);
    cr_expect_eq(got[i].state, e->state, "alert %zu", i);
    cr_expect_eq(got[i].window_end, at(&c, e->minute, 0), "alert %zu", i);
    cr_expect_eq(got[i].window_start, at(&c, e->minute, 0) - 5 * MIN_MS, "alert %zu", i);
    cr_expect(fabs(got[i].value - e->value) < 1e-9, "alert %zu value %g want %g", i,
              got[i].value, e->value);
    cr_expect_eq(got[i].samples, e->samples, "alert %zu samples %lld", i, (long long)got[i].samples);
    cr_expect_eq(strlen(got[i].alert_id), 32);
  }
  cr_expect_str_eq(tp_alert_record_label(&got[2], "team"), "payments");
  cr_expect_str_eq(tp_alert_record_label(&got[2], "stage"), "PURCHASE");
  cr_expect_str_eq(tp_alert_record_label(&got[2], "channel"), "WEB");
  cr_expect_eq(got[2].severity, TP_SEV_CRITICAL);
  cr_expect_eq(got[2].threshold, 3.0);
  cr_expect_eq(got[4].threshold, 3.5); /* RESOLVED carries the clear level */
  cr_expect_str_eq(got[2].op, "<");

  /* Dead letters: original bytes, reason and provenance in headers. */
  rd = reader(&c, "cx.deadletter");
  const char *reasons[16] = {0};
  size_t nd = 0;
  /* Until four arrived, then a second more: a fifth would be one too many. */
  deadline = tp_mono_ns() + 20ull * 1000000000ull;
  uint64_t extra = 0;
  while (tp_mono_ns() < deadline && (extra == 0 || tp_mono_ns() < extra)) {
    if (nd >= 4 && extra == 0)
      extra = tp_mono_ns() + 1000000000ull;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 100);
    if (m == NULL)
      continue;
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t vl;
    if (!m->err && nd >= 16) {
      nd++; /* far too many */
    } else if (!m->err && rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(h, "error", &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      static char copies[16][256];
      snprintf(copies[nd], sizeof(copies[nd]), "%.*s", (int)vl, (const char *)v);
      reasons[nd] = copies[nd];
      nd++;
      cr_expect_eq(rd_kafka_header_get_last(h, "source.topic", &v, &vl), 0);
      cr_expect_eq(rd_kafka_header_get_last(h, "source.partition", &v, &vl), 0);
      cr_expect_eq(rd_kafka_header_get_last(h, "source.offset", &v, &vl), 0);
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rd);
  rd_kafka_destroy(rd);
  /* librdkafka 2.0.2's mock broker never lists aborted transactions in a
   * fetch (rdkafka_mock_handlers.c), so after an abort its read_committed
   * readers also see the aborted dead letters; the real broker tests check
   * that they stay invisible. */
  if (produce_error)
    cr_assert_geq(nd, 4);
  else
    cr_assert_eq(nd, 4);
  const char *want[] = {"truncated:", "out_of_range:", "bad_touchpoint:", "empty"};
  for (size_t w = 0; w < 4; w++) {
    bool found = false;
    for (size_t i = 0; i < nd && i < 16; i++)
      found = found || strncmp(reasons[i], want[w], strlen(want[w])) == 0;
    cr_expect(found, "no dead letter with reason %s", want[w]);
  }

  /* Every input record was processed, so the committed offsets are the ends. */
  if (!exactly_once)
    expect_committed_at_log_end(&c, "tp-e2e", -1);

  tp_alert_codec_destroy(codec);
  tp_pipeline_destroy(pl);
  tp_config_destroy(cfg);
  cluster_destroy(&c);
}

Test(pipeline, scripted_scenario_gives_exactly_the_expected_alerts_at_least_once,
     .timeout = 240) {
  run_scenario(false, RD_KAFKA_RESP_ERR_NO_ERROR);
}

Test(pipeline, scripted_scenario_gives_exactly_the_expected_alerts_in_transactions,
     .timeout = 240) {
  run_scenario(true, RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* A produce that fails for good makes the transaction abort: its alerts are
 * discarded, every partition rewinds to its committed offset and is
 * processed again, and the subscriber still sees each alert exactly once. */
Test(pipeline, an_aborted_transaction_rewinds_and_loses_or_repeats_nothing, .timeout = 240) {
  run_scenario(true, RD_KAFKA_RESP_ERR_INVALID_RECORD);
}

/*
 * The first transaction with alerts aborts (TP_FAULT_ABORT_AT_CHECKPOINT)
 * and its rewind cannot create the partitions again, as without memory
 * (TP_FAULT_REWIND_NOMEM): the pipeline stops with an error. The workers,
 * held at that moment and released to leave, may hold a batch and check
 * idle partitions (idle_timeout is on): neither may touch a partition the
 * rewind freed or could not replace (the ASan build reports it if they do).
 */
Test(pipeline, a_rewind_that_cannot_rebuild_a_partition_stops_with_an_error, .timeout = 120) {
  cr_assert_eq(setenv("TP_FAULT_ABORT_AT_CHECKPOINT", "1", 1), 0);
  cr_assert_eq(setenv("TP_FAULT_REWIND_NOMEM", "1", 1), 0);
  cluster_t c;
  cluster_init(&c);
  produce_scenario(&c);
  char yaml[2048];
  /* The scenario's rules and settings after its windows line, with idle
   * partitions followed after 100 ms. */
  const char *after_windows = strchr(scenario_rules_yaml, '\n') + 1;
  snprintf(yaml, sizeof(yaml),
           "kafka: {bootstrap.servers: '%s', group.id: tp-rewind-nomem}\n"
           "processing: {exactly_once: true, commit_interval: 200ms}\n"
           "log: {level: warn}\n"
           "windows: {step: 1m, allowed_lateness: 30s, idle_timeout: 100ms}\n%s",
           c.bootstrap, after_windows);
  tp_config_t *cfg = NULL;
  tp_pipeline_t *pl = start_pipeline(yaml, &cfg);
  uint64_t deadline = tp_mono_ns() + 60ull * 1000000000ull;
  while (!tp_pipeline_failed(pl) && tp_mono_ns() < deadline)
    usleep(10000);
  cr_assert(tp_pipeline_failed(pl), "no transaction aborted within 60 s");
  cr_expect_eq(tp_pipeline_stop(pl), TP_EKAFKA);
  tp_pipeline_destroy(pl);
  tp_config_destroy(cfg);
  cluster_destroy(&c);
}

/* ---- idle partitions ------------------------------------------------------ */

/*
 * Partition 1 of cx.feedback carries "idle.tp" for three minutes of event
 * time and then nothing; partition 0 keeps receiving "busy.tp" while the test
 * runs. With windows.idle_timeout, partition 1 follows partition 0's
 * watermark once it has been idle that long, so idle.tp's window closes and
 * its alert resolves; with idle_timeout 0 its watermark never moves again.
 */
static size_t run_idle(const char *idle_timeout, bool *resolved) {
  cluster_t c;
  cluster_init(&c);
  for (int m = 0; m < 3; m++)
    for (int s = 0; s < 60; s += 20) {
      tp_event_t ev = ev_csat(NULL, at(&c, m, s), "idle.tp", 5);
      produce_ev(&c, 1, &ev, NULL);
    }
  char yaml[1024], err[512];
  snprintf(yaml, sizeof(yaml),
           "kafka: {bootstrap.servers: '%s', group.id: tp-idle}\n"
           "windows: {step: 1m, allowed_lateness: 0s, idle_timeout: %s}\n"
           "processing: {commit_interval: 200ms}\n"
           "rules: [{name: any, metric: responses, window: 1m, op: '>=', threshold: 1}]\n",
           c.bootstrap, idle_timeout);
  tp_config_t *cfg = NULL;
  tp_pipeline_t *pl = start_pipeline(yaml, &cfg);

  tp_alert_codec_t *codec = tp_alert_codec_new(err, sizeof(err));
  rd_kafka_t *rd = reader(&c, "cx.alerts");
  size_t n_idle = 0;
  *resolved = false;
  int busy_minute = 0;
  uint64_t deadline = tp_mono_ns() + 12ull * 1000000000ull;
  while (tp_mono_ns() < deadline && !*resolved) {
    /* busy.tp: a new event-time minute every 100 ms of wall time. */
    tp_event_t ev = ev_csat(NULL, at(&c, busy_minute++, 0), "busy.tp", 5);
    produce_ev(&c, 0, &ev, NULL);
    rd_kafka_poll(c.rk, 0);
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 100);
    tp_alert_record_t a;
    if (m && !m->err && tp_alert_decode(codec, m->payload, m->len, &a, err, sizeof(err)) == TP_OK &&
        strcmp(a.touchpoint, "idle.tp") == 0) {
      n_idle++;
      if (a.state == TP_ALERT_RESOLVED) {
        *resolved = true;
        cr_expect_eq(a.window_end, at(&c, 4, 0), "[3m, 4m) is the first empty window");
      }
    }
    if (m)
      rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rd);
  rd_kafka_destroy(rd);
  cr_assert_eq(tp_pipeline_stop(pl), TP_OK);
  tp_alert_codec_destroy(codec);
  tp_pipeline_destroy(pl);
  tp_config_destroy(cfg);
  cluster_destroy(&c);
  return n_idle;
}

Test(pipeline, idle_partition_follows_the_active_ones_and_closes_its_windows, .timeout = 120) {
  bool resolved = false;
  size_t n = run_idle("1s", &resolved);
  cr_expect(resolved, "idle.tp never resolved (%zu alerts)", n);
  cr_expect_eq(n, 2, "FIRING then RESOLVED");
}

Test(pipeline, without_idle_timeout_a_quiet_partition_keeps_its_watermark, .timeout = 120) {
  bool resolved = false;
  size_t n = run_idle("0s", &resolved);
  cr_expect_not(resolved);
  cr_expect_eq(n, 1, "only the FIRING of minute 1");
}

/* ---- restore ---------------------------------------------------------------- */

/* A short session: librdkafka 2.0.2's mock cluster hands a departed
 * member's partitions on only when its session expires (a real broker does
 * it on LeaveGroup, see tests/integration). */
static tp_pipeline_t *start_instance(cluster_t *c, tp_config_t **cfg) {
  char yaml[2048];
  snprintf(yaml, sizeof(yaml),
           "kafka: {bootstrap.servers: '%s', group.id: tp-restore, session.timeout.ms: '6000', heartbeat.interval.ms: '500'}\n"
           "processing: {exactly_once: false, commit_interval: 100ms}\n" RULES_YAML,
           c->bootstrap, scenario_rules_yaml);
  return start_pipeline(yaml, cfg);
}

/* Read alerts until n arrived (or the timeout), appending to got. */
static size_t read_alerts(rd_kafka_t *rd, tp_alert_codec_t *codec, tp_alert_record_t *got,
                          size_t have, size_t want, int seconds) {
  char err[256];
  uint64_t deadline = tp_mono_ns() + (uint64_t)seconds * 1000000000ull;
  while (have < want && tp_mono_ns() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 100);
    if (m && !m->err) {
      cr_assert_lt(have, 64);
      cr_assert_eq(tp_alert_decode(codec, m->payload, m->len, &got[have], err, sizeof(err)), TP_OK);
      have++;
    }
    if (m)
      rd_kafka_message_destroy(m);
  }
  return have;
}

/*
 * Instance A processes the first half of the scenario and stops cleanly;
 * the second half is produced; instance B joins the same group, rebuilds
 * each partition's state by re-reading it up to the committed offset with
 * alerts suppressed, and goes on. Together they write exactly the alerts of
 * one uninterrupted run, none twice. (The mock cluster cannot look offsets
 * up by time, so this takes the re-read-from-the-beginning path; the real
 * broker tests take the other.)
 */
Test(pipeline, a_successor_restores_state_and_repeats_no_alert, .timeout = 240) {
  cluster_t c;
  cluster_init(&c);
  produce_minutes(&c, 0, 10);
  char err[256];
  tp_alert_codec_t *codec = tp_alert_codec_new(err, sizeof(err));
  rd_kafka_t *rd = reader(&c, "cx.alerts");
  static tp_alert_record_t got[64];

  tp_config_t *cfg_a = NULL;
  tp_pipeline_t *a = start_instance(&c, &cfg_a);
  /* The first half moves the feedback and commerce watermarks to 9:00:
   * returns FIRING @8 and csat FIRING @9. The support partition's last
   * record is at 4:00 (watermark 3:30), so its complaints alert needs the
   * second half. */
  size_t n = read_alerts(rd, codec, got, 0, 2, 120);
  cr_assert_eq(n, 2, "first instance wrote %zu alerts", n);
  cr_assert_eq(tp_pipeline_stop(a), TP_OK);
  tp_pipeline_destroy(a);
  tp_config_destroy(cfg_a);

  produce_minutes(&c, 10, 20);
  produce_tail(&c);
  tp_config_t *cfg_b = NULL;
  tp_pipeline_t *b = start_instance(&c, &cfg_b);
  n = read_alerts(rd, codec, got, n, N_EXPECTED + 1, 30); /* one more: waits out extras */
  cr_assert(tp_pipeline_ready(b), "the successor is ready once restored");
  cr_assert_eq(tp_pipeline_stop(b), TP_OK);
  tp_pipeline_destroy(b);
  tp_config_destroy(cfg_b);
  rd_kafka_consumer_close(rd);
  rd_kafka_destroy(rd);

  cr_assert_eq(n, N_EXPECTED, "%zu alerts, expected %zu", n, N_EXPECTED);
  qsort(got, n, sizeof(got[0]), cmp_rec);
  for (size_t i = 0; i < n; i++) {
    cr_expect_str_eq(got[i].rule, expected[i].rule, "alert %zu", i);
    cr_expect_str_eq(got[i].touchpoint, expected[i].touchpoint, "alert %zu", i);
    cr_expect_eq(got[i].state, expected[i].state, "alert %zu", i);
    cr_expect_eq(got[i].window_end, at(&c, expected[i].minute, 0), "alert %zu", i);
    cr_expect(fabs(got[i].value - expected[i].value) < 1e-9, "alert %zu", i);
    cr_expect_eq(got[i].samples, expected[i].samples, "alert %zu", i);
  }
  tp_alert_codec_destroy(codec);
  cluster_destroy(&c);
}

/* ---- malformed input never stalls a partition -------------------------------- */

/*
 * 12 000 records, 2 000 on each partition of the three input topics, one in
 * a thousand malformed (a different reason each time), with valid records
 * after every bad one. The pipeline must read past each bad record: every
 * record consumed, the 12 bad ones dead-lettered with their reason, the
 * rest applied, and every partition's lag back to 0, its committed offset
 * at the log's end.
 */
#define MALFORMED_PER_PARTITION 2000

static void produce_malformed_mix(cluster_t *c, size_t *bad) {
  unsigned char buf[1024];
  *bad = 0;
  for (int src = 0; src < 3; src++) {
    for (int p = 0; p < PARTITIONS; p++) {
      for (int i = 0; i < MALFORMED_PER_PARTITION; i++) {
        int64_t t = at(c, 0, 0) + (int64_t)i * 1000; /* one a second: none late */
        tp_event_t ev;
        if (src == 0)
          ev = ev_csat(NULL, t, p ? "web.home" : "checkout.payment", 1 + i % 5);
        else if (src == 1)
          ev = ev_support(NULL, t, "support.chat", "T-1", TP_SUPPORT_CUSTOMER_REPLIED, false);
        else
          ev = ev_commerce(NULL, t, "app.checkout", TP_COMMERCE_ORDER_PLACED);
        if (i % 1000 != 500) {
          produce_ev(c, p, &ev, NULL);
          continue;
        }
        char id[32];
        snprintf(id, sizeof(id), "bad-%d-%d-%d", src, p, i);
        ev.event_id = S(id);
        size_t len = tp_encode_event(&ev, buf, sizeof(buf));
        cr_assert_gt(len, 8);
        const char *topic = scenario_inputs[src];
        switch ((*bad)++ % 4) {
        case 0: /* truncated */
          produce_raw(c, topic, p, "k", buf, len - 3);
          break;
        case 1: /* trailing bytes */
          buf[len] = 0x02;
          produce_raw(c, topic, p, "k", buf, len + 1);
          break;
        case 2: /* an empty value */
          produce_raw(c, topic, p, "k", NULL, 0);
          break;
        default: /* not Avro at all */
          produce_raw(c, topic, p, NULL, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
          break;
        }
      }
    }
  }
  scenario_flush(c);
}

Test(pipeline, one_malformed_record_in_a_thousand_never_stalls_a_partition, .timeout = 120) {
  cluster_t c;
  cluster_init(&c);
  size_t bad = 0;
  produce_malformed_mix(&c, &bad);
  const size_t total = 3 * PARTITIONS * MALFORMED_PER_PARTITION;
  cr_assert_eq(bad, 3 * PARTITIONS * 2);

  char yaml[2048];
  snprintf(yaml, sizeof(yaml),
           "kafka: {bootstrap.servers: '%s', group.id: tp-malformed}\n"
           "processing: {exactly_once: false, commit_interval: 100ms}\n" RULES_YAML,
           c.bootstrap, scenario_rules_yaml);
  tp_config_t *cfg = NULL;
  tp_pipeline_t *pl = start_pipeline(yaml, &cfg);

  /* Until every partition's lag is 0 and everything is delivered. */
  tp_pipeline_totals_t t;
  double lag = -1;
  int lines = 0;
  uint64_t deadline = tp_mono_ns() + 90ull * 1000000000ull;
  for (;;) {
    tp_pipeline_totals(pl, &t);
    tp_buf_t mb = TP_BUF_INIT;
    tp_pipeline_metrics(pl, &mb);
    lag = sum_series(mb.data, "touchpulse_consumer_lag{", &lines);
    tp_buf_free(&mb);
    if ((lines == 3 * PARTITIONS && lag == 0 && t.consumed == total &&
         t.deadletters_delivered == bad) ||
        tp_mono_ns() > deadline || tp_pipeline_failed(pl))
      break;
    usleep(50000);
  }
  cr_expect_eq(lines, 3 * PARTITIONS, "lag of %d partitions", lines);
  cr_expect_eq(lag, 0, "lag %g", lag);
  cr_expect_eq(t.consumed, total, "consumed %llu of %zu", (unsigned long long)t.consumed, total);
  cr_expect_eq(t.rejected, bad, "rejected %llu", (unsigned long long)t.rejected);
  cr_expect_eq(t.applied, total - bad, "applied %llu", (unsigned long long)t.applied);
  cr_expect_eq(t.late, 0);
  cr_expect_eq(t.deadletters_delivered, bad);
  cr_assert_eq(tp_pipeline_stop(pl), TP_OK);

  /* The committed offsets are the logs' ends. */
  expect_committed_at_log_end(&c, "tp-malformed", MALFORMED_PER_PARTITION);
  tp_pipeline_destroy(pl);
  tp_config_destroy(cfg);
  cluster_destroy(&c);
}

/* ---- the producer looks its topics up before the first message ------------- */

/*
 * librdkafka looks a topic up when the first message for it is produced,
 * and that message then waits for the next metadata refresh: up to a
 * second, during which a checkpoint waiting for it holds every worker. The
 * publisher looks the alert and dead-letter topics up beforehand, so the
 * first alert is delivered as fast as any later one.
 */
static double first_delivery_ms(bool prepare) {
  cluster_t c;
  cluster_init(&c);
  char yaml[512], err[512];
  snprintf(yaml, sizeof(yaml),
           "kafka: {bootstrap.servers: '%s'}\nprocessing: {exactly_once: false}\n"
           "log: {level: warn}\n",
           c.bootstrap);
  tp_config_t *cfg = cfg_from_yaml(yaml);
  tp_publisher_t *pub = tp_publisher_new(cfg, err, sizeof(err));
  cr_assert_not_null(pub, "%s", err);
  if (prepare)
    tp_publisher_prepare_topics(pub, 5000);
  /* Idle a moment, as the pipeline's producer is while the consumer joins
   * its group. */
  tp_publisher_poll(pub, 300);
  uint64_t t0 = tp_mono_ns();
  cr_assert_eq(tp_publisher_alert(pub, "tp", 2, "x", 1), TP_OK);
  cr_assert_eq(tp_publisher_flush(pub, 10000), TP_OK);
  double ms = (double)(tp_mono_ns() - t0) / 1e6;
  tp_publisher_destroy(pub);
  tp_config_destroy(cfg);
  cluster_destroy(&c);
  return ms;
}

Test(pipeline, the_first_alert_does_not_wait_for_a_topic_lookup, .timeout = 60) {
  double ms = first_delivery_ms(true);
  cr_expect_lt(ms, 200, "the first alert took %.0f ms to deliver", ms);
}

/* ---- a producer the broker refuses to abort -------------------------------- */

#define KAFKA_API_PRODUCE 0  /* the Kafka protocol's ApiKeys */
#define KAFKA_API_END_TXN 26

/* A mock cluster and a transactional publisher on it, its first
 * transaction open. */
typedef struct {
  cluster_t c;
  tp_config_t *cfg;
  tp_publisher_t *pub;
} txn_fixture_t;

static void txn_fixture_start(txn_fixture_t *x) {
  char yaml[512], err[512];
  cluster_init(&x->c);
  snprintf(yaml, sizeof(yaml),
           "kafka: {bootstrap.servers: '%s'}\n"
           "processing: {exactly_once: true, transactional_id: tp-renew}\n"
           "log: {level: error}\n",
           x->c.bootstrap);
  x->cfg = cfg_from_yaml(yaml);
  x->pub = tp_publisher_new(x->cfg, err, sizeof(err));
  cr_assert_not_null(x->pub, "%s", err);
  cr_assert_eq(tp_publisher_txn_start(x->pub, 30000, NULL, err, sizeof(err)), TP_OK, "%s", err);
}

static void txn_fixture_end(txn_fixture_t *x) {
  tp_publisher_destroy(x->pub);
  tp_config_destroy(x->cfg);
  cluster_destroy(&x->c);
}

/* Produces value into the open transaction and aborts it, the broker
 * answering the abort's EndTxn with refusal. */
static tp_err_t abort_refused(txn_fixture_t *x, const char *value, rd_kafka_resp_err_t refusal,
                              char *err, size_t err_size) {
  cr_assert_eq(tp_publisher_alert(x->pub, "tp", 2, value, strlen(value)), TP_OK);
  rd_kafka_mock_push_request_errors(x->c.mock, KAFKA_API_END_TXN, 1, refusal);
  return tp_publisher_txn_abort(x->pub, err, err_size);
}

/* Whether a read_committed reader finds value on cx.alerts within 10 s. */
static bool alert_readable(cluster_t *c, const char *value) {
  rd_kafka_t *rd = reader(c, "cx.alerts");
  bool found = false;
  uint64_t give_up = tp_mono_ns() + 10ull * 1000000000u;
  while (!found && tp_mono_ns() < give_up) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 100);
    if (m == NULL)
      continue;
    found = !m->err && m->len == strlen(value) && memcmp(m->payload, value, m->len) == 0;
    rd_kafka_message_destroy(m);
  }
  rd_kafka_destroy(rd);
  return found;
}

/*
 * After a broker restart the transaction coordinator can answer an abort
 * with INVALID_TXN_STATE (it never saw the transaction begin), which
 * librdkafka makes fatal. The publisher replaces its producer under the same
 * transactional.id and opens a new transaction: the abort succeeds and the
 * next transaction commits.
 */
Test(pipeline, an_abort_refused_with_invalid_txn_state_replaces_the_producer, .timeout = 120) {
  txn_fixture_t x;
  txn_fixture_start(&x);
  char err[512];
  cr_assert_eq(abort_refused(&x, "before", RD_KAFKA_RESP_ERR_INVALID_TXN_STATE, err, sizeof(err)),
               TP_OK, "%s", err);
  cr_expect_not(tp_publisher_failed(x.pub));
  cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "after", 5), TP_OK);
  cr_assert_eq(tp_publisher_txn_commit(x.pub, NULL, NULL, 10000, err, sizeof(err)), TP_OK, "%s",
               err);
  cr_expect(alert_readable(&x.c, "after"), "the replacement producer's commit is not readable");
  txn_fixture_end(&x);
}

/*
 * A commit refused because its transaction must abort (one of its messages
 * failed, and the next ones were refused) aborts it and opens the next one
 * clean: the publisher not failed, the new transaction not marked doomed
 * by the old one's refusals, and its commit readable.
 */
Test(pipeline, a_commit_that_must_abort_leaves_the_next_transaction_clean, .timeout = 120) {
  txn_fixture_t x;
  txn_fixture_start(&x);
  char err[512];
  rd_kafka_mock_push_request_errors(x.c.mock, KAFKA_API_PRODUCE, 1,
                                    RD_KAFKA_RESP_ERR_INVALID_RECORD);
  cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "lost", 4), TP_OK);
  uint64_t give_up = tp_mono_ns() + 10ull * 1000000000u;
  while (!tp_publisher_txn_doomed(x.pub) && tp_mono_ns() < give_up) {
    cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "refused", 7), TP_OK);
    usleep(10000);
  }
  cr_assert(tp_publisher_txn_doomed(x.pub), "no message was refused after the failure");
  cr_assert_eq(tp_publisher_txn_commit(x.pub, NULL, NULL, 10000, err, sizeof(err)), TP_EKAFKA,
               "the commit of a transaction that must abort succeeded");
  cr_assert_not(tp_publisher_failed(x.pub), "%s", err);
  cr_assert_not(tp_publisher_txn_doomed(x.pub), "the new transaction is doomed by the old one");
  /* The lost messages left a gap in the producer's sequence numbers, and
   * librdkafka 2.0.2 learns that it must bump the producer's epoch only
   * from the next transaction's commit, which it then aborts, as the
   * pipeline would: the one after commits. */
  tp_err_t rc = TP_EKAFKA;
  for (int i = 0; i < 2 && rc != TP_OK; i++) {
    cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "after", 5), TP_OK);
    rc = tp_publisher_txn_commit(x.pub, NULL, NULL, 10000, err, sizeof(err));
    cr_assert(rc == TP_OK || (rc == TP_EKAFKA && !tp_publisher_failed(x.pub)), "%s", err);
  }
  cr_assert_eq(rc, TP_OK, "%s", err);
  cr_expect(alert_readable(&x.c, "after"), "the next transaction's commit is not readable");
  txn_fixture_end(&x);
}

/* A refusal that keeps coming back is not papered over: the fourth
 * replacement without a commit in between fails the publisher. */
Test(pipeline, replacing_the_producer_is_bounded_without_a_commit, .timeout = 180) {
  txn_fixture_t x;
  txn_fixture_start(&x);
  char err[512];
  for (int i = 0; i < 3; i++)
    cr_assert_eq(abort_refused(&x, "x", RD_KAFKA_RESP_ERR_INVALID_TXN_STATE, err, sizeof(err)),
                 TP_OK, "abort %d: %s", i + 1, err);
  cr_expect_eq(abort_refused(&x, "x", RD_KAFKA_RESP_ERR_INVALID_TXN_STATE, err, sizeof(err)),
               TP_EKAFKA, "the fourth refusal in a row was accepted");
  cr_expect(tp_publisher_failed(x.pub));
  txn_fixture_end(&x);
}

/* Being fenced means another instance holds the transactional.id: that
 * stays fatal, the producer is not replaced (it would fence the other). */
Test(pipeline, a_fenced_producer_is_not_replaced, .timeout = 120) {
  txn_fixture_t x;
  txn_fixture_start(&x);
  char err[512];
  cr_expect_eq(abort_refused(&x, "x", RD_KAFKA_RESP_ERR_PRODUCER_FENCED, err, sizeof(err)),
               TP_EKAFKA);
  cr_expect(tp_publisher_failed(x.pub));
  txn_fixture_end(&x);
}

/* ---- staging: the workers run on while a transaction commits ---------------- */

/* The values a read_committed reader finds on cx.alerts, in order: until
 * want arrived and a second more, or 20 s. @returns how many. */
static size_t read_alert_values(cluster_t *c, char (*out)[32], size_t max, size_t want) {
  rd_kafka_t *rd = reader(c, "cx.alerts");
  size_t n = 0;
  uint64_t give_up = tp_mono_ns() + 20ull * 1000000000u, settle = 0;
  while (tp_mono_ns() < give_up && (settle == 0 || tp_mono_ns() < settle)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 100);
    if (m != NULL && !m->err && n < max)
      snprintf(out[n++], sizeof(out[0]), "%.*s", (int)m->len, (const char *)m->payload);
    if (m != NULL)
      rd_kafka_message_destroy(m);
    if (n >= want && settle == 0)
      settle = tp_mono_ns() + 1000000000u;
  }
  rd_kafka_destroy(rd);
  return n;
}

/*
 * Messages produced while staging are held out of the committing
 * transaction and produced, in order, into the next one when staging ends,
 * ahead of what follows. After a failed commit staging drops them, and
 * everything produced until it ends: none of it ever reaches the topic.
 */
Test(pipeline, staged_messages_join_the_next_transaction_in_order_or_are_dropped,
     .timeout = 120) {
  txn_fixture_t x;
  txn_fixture_start(&x);
  char err[512];
  const tp_publisher_stats_t *ps = tp_publisher_stats(x.pub);
  tp_publisher_stage_begin(x.pub);
  cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "s1", 2), TP_OK);
  cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "s2", 2), TP_OK);
  cr_expect_eq(tp_publisher_pending(x.pub), 0, "a staged message joined the open transaction");
  cr_expect_eq(atomic_load(&ps->alerts_produced), 0);
  cr_expect_eq(atomic_load(&ps->staged), 2);
  cr_assert_eq(tp_publisher_txn_commit(x.pub, NULL, NULL, 10000, err, sizeof(err)), TP_OK, "%s",
               err);
  cr_assert_eq(tp_publisher_stage_end(x.pub), TP_OK);
  cr_expect_eq(tp_publisher_pending(x.pub), 2, "the staged messages are not in the next one");
  cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "s3", 2), TP_OK);
  cr_expect_eq(tp_publisher_pending(x.pub), 3);

  /* A commit that failed: staged and later messages are dropped until
   * staging ends, then messages flow again. */
  tp_publisher_stage_begin(x.pub);
  cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "d1", 2), TP_OK);
  tp_publisher_stage_drop(x.pub);
  cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "d2", 2), TP_OK);
  cr_assert_eq(tp_publisher_stage_end(x.pub), TP_OK);
  cr_expect_eq(tp_publisher_pending(x.pub), 3, "a dropped message was produced");
  cr_assert_eq(tp_publisher_alert(x.pub, "tp", 2, "s4", 2), TP_OK);
  cr_assert_eq(tp_publisher_txn_commit(x.pub, NULL, NULL, 10000, err, sizeof(err)), TP_OK, "%s",
               err);

  char got[8][32];
  size_t n = read_alert_values(&x.c, got, 8, 4);
  cr_assert_eq(n, 4, "read %zu values", n);
  const char *want[] = {"s1", "s2", "s3", "s4"};
  for (size_t i = 0; i < 4; i++)
    cr_expect_str_eq(got[i], want[i], "value %zu", i);
  txn_fixture_end(&x);
}

/* A worker's loop in miniature: produces numbered alerts in batches and
 * parks between two batches while the coordinator asks it to. */
typedef struct {
  tp_publisher_t *pub;
  int total;
  atomic_int produced;
  atomic_bool pause_req, paused;
} mini_worker_t;

static void *mini_worker_main(void *arg) {
  mini_worker_t *w = arg;
  for (int i = 0; i < w->total;) {
    if (atomic_load(&w->pause_req)) {
      atomic_store(&w->paused, true);
      while (atomic_load(&w->pause_req))
        usleep(100);
      atomic_store(&w->paused, false);
    }
    for (int k = 0; k < 16 && i < w->total; k++, i++) {
      char v[32];
      int len = snprintf(v, sizeof(v), "%06d", i);
      if (tp_publisher_alert(w->pub, "tp", 2, v, (size_t)len) != TP_OK)
        return NULL;
      atomic_store(&w->produced, i + 1);
    }
    usleep(2000);
  }
  return NULL;
}

/*
 * The checkpoint protocol with a worker thread: pause it, begin staging,
 * let it go on, commit, end staging. Every message reaches the topic once
 * and in the order produced, some of them staged while a commit was in
 * flight (the broker answers after 10 ms, and a commit takes several round
 * trips). ThreadSanitizer watches
 * the worker's produce calls against the staging flips (CI runs this suite
 * under it).
 */
Test(pipeline, a_worker_producing_through_staged_commits_loses_reorders_and_repeats_nothing,
     .timeout = 180) {
  txn_fixture_t x;
  txn_fixture_start(&x);
  rd_kafka_mock_broker_set_rtt(x.c.mock, -1, 10);
  char err[512];
  mini_worker_t w = {.pub = x.pub, .total = 3000};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, mini_worker_main, &w), 0);
  int commits = 0;
  while (atomic_load(&w.produced) < w.total) {
    atomic_store(&w.pause_req, true);
    while (!atomic_load(&w.paused) && atomic_load(&w.produced) < w.total)
      usleep(100);
    if (atomic_load(&w.produced) >= w.total) {
      atomic_store(&w.pause_req, false);
      break;
    }
    tp_publisher_stage_begin(x.pub);
    atomic_store(&w.pause_req, false);
    cr_assert_eq(tp_publisher_txn_commit(x.pub, NULL, NULL, 10000, err, sizeof(err)), TP_OK,
                 "%s", err);
    cr_assert_eq(tp_publisher_stage_end(x.pub), TP_OK);
    commits++;
    tp_publisher_poll(x.pub, 0);
  }
  pthread_join(t, NULL);
  cr_assert_eq(tp_publisher_txn_commit(x.pub, NULL, NULL, 10000, err, sizeof(err)), TP_OK, "%s",
               err);
  cr_expect_gt(commits, 2);
  uint64_t staged = atomic_load(&tp_publisher_stats(x.pub)->staged);
  cr_expect_gt(staged, 0, "nothing was produced while a commit was in flight");

  static char got[3100][32];
  size_t n = read_alert_values(&x.c, got, 3100, (size_t)w.total);
  cr_assert_eq(n, (size_t)w.total, "read %zu of %d (%d commits, %llu staged)", n, w.total,
               commits, (unsigned long long)staged);
  for (size_t i = 0; i < n; i++) {
    char v[32];
    snprintf(v, sizeof(v), "%06zu", i);
    cr_assert_str_eq(got[i], v, "message %zu", i);
  }
  txn_fixture_end(&x);
}

/* ---- the workers' bucket prefetch -------------------------------------------- */

typedef struct {
  tp_part_t *part;
  atomic_bool stop;
  atomic_long applied;
} part_writer_t;

static void no_alert(void *opaque, const tp_alert_t *alert) {
  (void)opaque;
  (void)alert;
}

/* Applies events of one touchpoint, a step apart every 60, until stopped:
 * its ring grows, moves and has its last bucket written all along. */
static void *write_partition(void *arg) {
  part_writer_t *w = arg;
  char id[32];
  for (long i = 0; !atomic_load(&w->stop) && i < 2000000; i++) {
    snprintf(id, sizeof(id), "w-%ld", i);
    tp_event_t ev = ev_csat(id, 60000 + i * 1000, "shared", 3);
    if (tp_part_apply(w->part, &ev) == TP_APPLY_OK)
      atomic_fetch_add(&w->applied, 1);
  }
  return NULL;
}

/*
 * A worker's bucket prefetch follows the touchpoint table's slot to an entry.
 * The table is shared by every partition of a topic, and only an entry of the
 * worker's own partition may be read beyond its node: another worker writes
 * the others' rings meanwhile. Here partition 1's hint is used on partition 0
 * while another thread applies to partition 1: it finds partition 1's entry,
 * and must leave its ring alone (ThreadSanitizer reports the race if not).
 */
Test(prefetch, a_bucket_hint_reads_no_other_partitions_entry) {
  char err[256];
  tp_config_t *cfg = cfg_from_yaml("windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n");
  tp_state_t *st = tp_state_new(cfg, err, sizeof(err));
  cr_assert_not_null(st, "%s", err);
  part_writer_t w = {0};
  tp_part_t *own = tp_part_new(st, TP_SRC_FEEDBACK, 0, no_alert, NULL, err, sizeof(err));
  w.part = tp_part_new(st, TP_SRC_FEEDBACK, 1, no_alert, NULL, err, sizeof(err));
  cr_assert(own != NULL && w.part != NULL, "%s", err);
  tp_event_t first = ev_csat("w-first", 1000, "shared", 3);
  cr_assert_eq(tp_part_apply(w.part, &first), TP_APPLY_OK);
  tp_part_hint_t other;
  tp_part_prefetch(w.part, "shared", strlen("shared"), NULL, 0, &other);
  /* The table both partitions share leads the hint to partition 1's entry. */
  tp_part_prefetch_entry(own, &other);
  const tp_table_node_t *n = other.node;
  cr_assert(n != NULL && n->hash == other.key_hash, "the hint does not lead to partition 1's entry");

  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, write_partition, &w), 0);
  for (int i = 0; i < 2000000 && atomic_load(&w.applied) < 20000; i++)
    tp_part_prefetch_bucket(own, &other);
  atomic_store(&w.stop, true);
  pthread_join(t, NULL);
  long applied = atomic_load(&w.applied);
  cr_expect_geq(applied, 1000, "the writer applied only %ld events", applied);

  tp_part_destroy(w.part);
  tp_part_destroy(own);
  tp_state_destroy(st);
  tp_config_destroy(cfg);
}
