/*
 * metrics.c -- the processor's metrics in Prometheus text format 0.0.4.
 * Names follow Prometheus conventions: touchpulse_ prefix, counters end in
 * _total, times are in seconds. Per-worker counters are summed here, on the
 * scraping thread, so workers never share a counter.
 */
#include <string.h>

#include "pipeline_int.h"
#include "touchpulse/log.h"

static void family(tp_buf_t *out, const char *name, const char *type, const char *help) {
  tp_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_topic(tp_buf_t *out, const char *name, const char *topic, uint64_t v) {
  tp_buf_printf(out, "%s{topic=\"", name);
  tp_buf_prom_escape(out, topic, strlen(topic));
  tp_buf_printf(out, "\"} %llu\n", (unsigned long long)v);
}

static void per_topic(tp_buf_t *out, tp_pipeline_t *pl, const char *name, const char *help,
                      const uint64_t *v) {
  family(out, name, "counter", help);
  for (int s = 0; s < TP_SRC_COUNT; s++)
    sample_topic(out, name, pl->cfg->topics[s], v[s]);
}

typedef struct {
  tp_pipeline_t *pl;
  tp_buf_t *out;
} part_ctx_t;

static void part_watermark(const tp_part_t *part, void *opaque) {
  part_ctx_t *c = opaque;
  int64_t wm = atomic_load_explicit(&tp_part_stats(part)->watermark, memory_order_relaxed);
  if (wm == INT64_MIN)
    return;
  const char *topic = c->pl->cfg->topics[tp_part_source(part)];
  tp_buf_puts(c->out, "touchpulse_partition_watermark_seconds{topic=\"");
  tp_buf_prom_escape(c->out, topic, strlen(topic));
  tp_buf_printf(c->out, "\",partition=\"%d\"} %.3f\n", (int)tp_part_partition(part),
                (double)wm / 1000.0);
}

void tp__pipeline_metrics(tp_pipeline_t *pl, tp_buf_t *out) {
  const tp_config_t *cfg = pl->cfg;
  tp_pipeline_sums_t s;
  tp__pipeline_sum(pl, &s);

  family(out, "touchpulse_build_info", "gauge", "Build information; the value is always 1.");
  tp_buf_printf(out, "touchpulse_build_info{version=\"%s\"} 1\n", TP_VERSION_STRING);

  per_topic(out, pl, "touchpulse_events_consumed_total", "Records read from an input topic.",
            s.consumed);
  per_topic(out, pl, "touchpulse_events_applied_total",
            "Events applied to their touchpoint's window state.", s.applied);
  per_topic(out, pl, "touchpulse_events_late_total",
            "Events below their partition's watermark: counted, not applied.", s.late);
  per_topic(out, pl, "touchpulse_events_duplicate_total",
            "Events whose event_id was among the partition's last dedup.depth applied.",
            s.duplicates);
  per_topic(out, pl, "touchpulse_events_overflow_total",
            "Events not applied because their touchpoint exceeded state.max_touchpoints.",
            s.overflow);

  family(out, "touchpulse_events_rejected_total", "counter",
         "Records rejected to the dead-letter topic, by reason.");
  for (int src = 0; src < TP_SRC_COUNT; src++) {
    for (int r = 1; r < TP_REJECT_COUNT; r++) {
      tp_buf_puts(out, "touchpulse_events_rejected_total{topic=\"");
      tp_buf_prom_escape(out, cfg->topics[src], strlen(cfg->topics[src]));
      tp_buf_printf(out, "\",reason=\"%s\"} %llu\n", tp_reject_label((tp_reject_t)r),
                    (unsigned long long)s.rejected[src][r]);
    }
  }

  const tp_publisher_stats_t *ps = tp_publisher_stats(pl->pub);
  family(out, "touchpulse_deadletters_total", "counter",
         "Dead letters by delivery outcome (produced = queued).");
  tp_buf_printf(out, "touchpulse_deadletters_total{outcome=\"produced\"} %llu\n",
                (unsigned long long)atomic_load(&ps->deadletters_produced));
  tp_buf_printf(out, "touchpulse_deadletters_total{outcome=\"delivered\"} %llu\n",
                (unsigned long long)atomic_load(&ps->deadletters_delivered));
  tp_buf_printf(out, "touchpulse_deadletters_total{outcome=\"failed\"} %llu\n",
                (unsigned long long)atomic_load(&ps->deadletters_failed));

  family(out, "touchpulse_alerts_total", "counter", "Alert events produced, by rule and state.");
  for (size_t r = 0; r < cfg->n_rules; r++) {
    for (int st = 0; st < 2; st++) {
      tp_buf_puts(out, "touchpulse_alerts_total{rule=\"");
      tp_buf_prom_escape(out, cfg->rules[r].name, strlen(cfg->rules[r].name));
      tp_buf_printf(out, "\",state=\"%s\"} %llu\n", st ? "RESOLVED" : "FIRING",
                    (unsigned long long)atomic_load(&pl->alerts_by_rule[r * 2 + (size_t)st]));
    }
  }
  family(out, "touchpulse_alert_deliveries_total", "counter",
         "Alert events by delivery outcome.");
  tp_buf_printf(out, "touchpulse_alert_deliveries_total{outcome=\"delivered\"} %llu\n",
                (unsigned long long)atomic_load(&ps->alerts_delivered));
  tp_buf_printf(out, "touchpulse_alert_deliveries_total{outcome=\"failed\"} %llu\n",
                (unsigned long long)atomic_load(&ps->alerts_failed));
  family(out, "touchpulse_producer_queue_full_waits_total", "counter",
         "Times a worker waited for room in the producer queue (backpressure).");
  tp_buf_printf(out, "touchpulse_producer_queue_full_waits_total %llu\n",
                (unsigned long long)atomic_load(&ps->queue_full_waits));
  family(out, "touchpulse_producer_staged_total", "counter",
         "Alerts and dead letters produced while a transaction committed, held for the next one.");
  tp_buf_printf(out, "touchpulse_producer_staged_total %llu\n",
                (unsigned long long)atomic_load(&ps->staged));

  family(out, "touchpulse_touchpoints", "gauge",
         "Touchpoints held in the state table of an input topic.");
  for (int src = 0; src < TP_SRC_COUNT; src++)
    sample_topic(out, "touchpulse_touchpoints", cfg->topics[src],
                 tp_state_touchpoints(pl->st, (tp_source_t)src));
  family(out, "touchpulse_touchpoints_capacity", "gauge",
         "state.max_touchpoints: the most touchpoints kept per input topic.");
  tp_buf_printf(out, "touchpulse_touchpoints_capacity %zu\n", tp_state_max_touchpoints(pl->st));
  family(out, "touchpulse_touchpoints_overflow_total", "counter",
         "New touchpoints refused because the table was full.");
  for (int src = 0; src < TP_SRC_COUNT; src++)
    sample_topic(out, "touchpulse_touchpoints_overflow_total", cfg->topics[src],
                 tp_state_table_overflow(pl->st, (tp_source_t)src));

  family(out, "touchpulse_partitions_assigned", "gauge", "Input partitions assigned to this instance.");
  tp_buf_printf(out, "touchpulse_partitions_assigned %d\n", atomic_load(&pl->n_assigned));
  family(out, "touchpulse_partition_watermark_seconds", "gauge",
         "Watermark of an input partition (Unix time).");
  part_ctx_t pc = {pl, out};
  tp_state_foreach_part(pl->st, part_watermark, &pc);

  /* Per assigned partition: lag, restore progress. pl->ctxs and each
   * context's part change under ctx_lock; the fields read here are atomics. */
  int64_t lowest_wm = INT64_MAX;
  tp_buf_t lag = TP_BUF_INIT, rest = TP_BUF_INIT, restored = TP_BUF_INIT;
  pthread_mutex_lock(&pl->ctx_lock);
  for (size_t i = 0; i < pl->n_ctx; i++) {
    pctx_t *c = pl->ctxs[i];
    const char *topic = cfg->topics[c->src];
    char labels[320];
    tp_buf_t esc = TP_BUF_INIT;
    tp_buf_prom_escape(&esc, topic, strlen(topic));
    snprintf(labels, sizeof(labels), "{topic=\"%s\",partition=\"%d\"}", esc.data ? esc.data : "",
             (int)c->partition);
    tp_buf_free(&esc);
    int64_t pos = atomic_load(&c->position), lo = -1, hi = -1;
    rd_kafka_get_watermark_offsets(pl->rk, topic, c->partition, &lo, &hi);
    if (pos < 0) /* nothing processed yet: it starts at the log's start */
      pos = lo;
    if (hi >= 0 && pos >= 0)
      tp_buf_printf(&lag, "touchpulse_consumer_lag%s %lld\n", labels,
                    (long long)(hi > pos ? hi - pos : 0));
    bool restoring = atomic_load(&c->restoring);
    tp_buf_printf(&rest, "touchpulse_partition_restoring%s %d\n", labels, restoring ? 1 : 0);
    tp_buf_printf(&restored, "touchpulse_restored_records_total%s %llu\n", labels,
                  (unsigned long long)atomic_load(&c->restored));
    /* NULL after a rewind that ran out of memory (the pipeline stops). */
    int64_t wm = c->part != NULL ? atomic_load_explicit(&tp_part_stats(c->part)->watermark,
                                                        memory_order_relaxed)
                                 : INT64_MIN;
    if (!restoring && wm != INT64_MIN && wm < lowest_wm)
      lowest_wm = wm;
  }
  pthread_mutex_unlock(&pl->ctx_lock);
  family(out, "touchpulse_consumer_lag", "gauge",
         "Records of an assigned input partition not processed yet (high watermark - position).");
  tp_buf_append(out, lag.data, lag.len);
  family(out, "touchpulse_partition_restoring", "gauge",
         "1 while a partition's state is rebuilt from history after assignment.");
  tp_buf_append(out, rest.data, rest.len);
  family(out, "touchpulse_restored_records_total", "counter",
         "Records re-read to rebuild a partition's state since it was assigned.");
  tp_buf_append(out, restored.data, restored.len);
  tp_buf_free(&lag);
  tp_buf_free(&rest);
  tp_buf_free(&restored);
  family(out, "touchpulse_watermark_seconds", "gauge",
         "The processor's watermark: the lowest watermark of its live partitions (Unix time).");
  if (lowest_wm != INT64_MAX)
    tp_buf_printf(out, "touchpulse_watermark_seconds %.3f\n", (double)lowest_wm / 1000.0);
  family(out, "touchpulse_transaction_aborts_total", "counter",
         "Aborted output transactions (the input was rewound to the committed offsets).");
  tp_buf_printf(out, "touchpulse_transaction_aborts_total %llu\n",
                (unsigned long long)atomic_load(&pl->txn_aborts));

  family(out, "touchpulse_commits_total", "counter", "Successful input offset commits.");
  tp_buf_printf(out, "touchpulse_commits_total %llu\n", (unsigned long long)atomic_load(&pl->commits));
  family(out, "touchpulse_commit_failures_total", "counter", "Failed input offset commits.");
  tp_buf_printf(out, "touchpulse_commit_failures_total %llu\n",
                (unsigned long long)atomic_load(&pl->commit_failures));
  family(out, "touchpulse_rebalances_total", "counter", "Consumer group rebalance events.");
  tp_buf_printf(out, "touchpulse_rebalances_total{kind=\"assign\"} %llu\n",
                (unsigned long long)atomic_load(&pl->rebalances_assign));
  tp_buf_printf(out, "touchpulse_rebalances_total{kind=\"revoke\"} %llu\n",
                (unsigned long long)atomic_load(&pl->rebalances_revoke));
  family(out, "touchpulse_consumer_errors_total", "counter", "Errors reported by the consumer.");
  tp_buf_printf(out, "touchpulse_consumer_errors_total %llu\n",
                (unsigned long long)atomic_load(&pl->consumer_errors));
  family(out, "touchpulse_ready", "gauge", "1 once partitions are assigned and state is live.");
  tp_buf_printf(out, "touchpulse_ready %d\n", tp_pipeline_ready(pl) ? 1 : 0);

  family(out, "touchpulse_processing_latency_seconds", "histogram",
         "Time from a record's Kafka timestamp to its processing (live records).");
  for (int src = 0; src < TP_SRC_COUNT; src++) {
    tp_buf_t esc = TP_BUF_INIT;
    tp_buf_prom_escape(&esc, cfg->topics[src], strlen(cfg->topics[src]));
    const char *topic = esc.data ? esc.data : "";
    for (int b = 0; b < TP_LATENCY_BUCKETS; b++)
      tp_buf_printf(out, "touchpulse_processing_latency_seconds_bucket{topic=\"%s\",le=\"%g\"} %llu\n",
                    topic, (double)tp_latency_bounds_ms[b] / 1000.0,
                    (unsigned long long)s.latency[src][b]);
    uint64_t count = s.latency[src][TP_LATENCY_BUCKETS];
    tp_buf_printf(out, "touchpulse_processing_latency_seconds_bucket{topic=\"%s\",le=\"+Inf\"} %llu\n",
                  topic, (unsigned long long)count);
    tp_buf_printf(out, "touchpulse_processing_latency_seconds_sum{topic=\"%s\"} %.3f\n", topic,
                  (double)s.latency_sum_ms[src] / 1000.0);
    tp_buf_printf(out, "touchpulse_processing_latency_seconds_count{topic=\"%s\"} %llu\n", topic,
                  (unsigned long long)count);
    tp_buf_free(&esc);
  }

  tp_kstats_t *clients[2] = {pl->kstats, tp_publisher_kstats(pl->pub)};
  tp_kstats_metrics(clients, 2, out);

  tp_state_export_metrics(pl->st, (size_t)cfg->metrics_max_touchpoints, out);
}
