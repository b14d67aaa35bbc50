/*
 * bench_apply.c -- events per second on one core through the hot path:
 * tp_decode() + tp_part_apply() (dedup, lateness, window buckets, boundary
 * evaluation of the example rules; the touchpoint table and the duplicate
 * index prefetched from records as the workers do), printed next to
 * Avro-C's generic decode of the same records in the same run.
 *
 * Workload (fixed seed): N_EVENTS records, 80 % feedback, 12 % support,
 * 8 % commerce, over `touchpoints` touchpoints (argv[1], default 10000)
 * chosen uniformly, event time advancing EVENT_GAP_MS per record so the run
 * covers about a day of event time and evaluates ~1400 step boundaries per
 * partition. One partition per topic, no alert output (counted only).
 * After each run, the state is exported as a /metrics scrape would
 * (metrics.max_touchpoints of the example: 1000 touchpoints per topic),
 * timed apart: the scrape walks every touchpoint to find those with a rule
 * PENDING or FIRING.
 *
 *   bench_apply [touchpoints]
 */
#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "touchpulse/buf.h"
#include "touchpulse/config.h"
#include "touchpulse/decode.h"
#include "touchpulse/demo.h"
#include "touchpulse/encode.h"
#include "touchpulse/state.h"

#ifndef N_EVENTS
#define N_EVENTS 2000000
#endif
#define EVENT_GAP_MS 43
#define REPEATS 3

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545f4914f6cdd1dull;
}

typedef struct {
  uint8_t *data;
  size_t *off;
  uint8_t *src;
  char (*key)[32]; /* the record's Kafka key: its touchpoint (SPEC) */
} records_t;

static uint64_t alerts;
static void count_alert(void *opaque, const tp_alert_t *a) {
  (void)opaque, (void)a;
  alerts++;
}

static void build(records_t *r, unsigned n_tp) {
  r->data = malloc((size_t)N_EVENTS * 320);
  r->off = malloc(((size_t)N_EVENTS + 1) * sizeof(size_t));
  r->src = malloc(N_EVENTS);
  r->key = malloc((size_t)N_EVENTS * sizeof(*r->key));
  size_t at = 0;
  int64_t t0 = tp_floor_to(tp_now_ms() - 2 * 86400000LL, 86400000);
  char id[32], tp[32], ticket[24], comment[200];
  memset(comment, 'x', sizeof(comment));
  for (size_t i = 0; i < N_EVENTS; i++) {
    tp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    unsigned u = (unsigned)(rnd() % 100);
    ev.source = u < 80 ? TP_SRC_FEEDBACK : u < 92 ? TP_SRC_SUPPORT : TP_SRC_COMMERCE;
    snprintf(id, sizeof(id), "evt-%zu-%08x", i, (unsigned)rnd());
    snprintf(tp, sizeof(tp), "touchpoint.%05u", (unsigned)(rnd() % n_tp));
    ev.event_id = (tp_str_t){id, (uint32_t)strlen(id)};
    ev.touchpoint = (tp_str_t){tp, (uint32_t)strlen(tp)};
    ev.occurred_at = t0 + (int64_t)i * EVENT_GAP_MS;
    ev.stage = (uint8_t)(rnd() % 4);
    ev.channel = (uint8_t)(rnd() % 8);
    if (ev.source == TP_SRC_FEEDBACK) {
      ev.feedback.csat = (int8_t)(1 + rnd() % 5);
      ev.feedback.nps = rnd() % 2 ? (int8_t)(rnd() % 11) : TP_SCORE_NULL;
      ev.feedback.ces = rnd() % 3 ? TP_SCORE_NULL : (int8_t)(1 + rnd() % 7);
      ev.feedback.repurchase = ev.feedback.try_other = TP_SCORE_NULL;
      if (rnd() % 4 == 0)
        ev.feedback.comment = (tp_str_t){comment, (uint32_t)(20 + rnd() % 150)};
    } else if (ev.source == TP_SRC_SUPPORT) {
      snprintf(ticket, sizeof(ticket), "T-%zu", i / 4);
      ev.support.ticket_id = (tp_str_t){ticket, (uint32_t)strlen(ticket)};
      ev.support.kind = (uint8_t)(i % 4 == 0 ? TP_SUPPORT_OPENED : i % 4 == 3 ? TP_SUPPORT_RESOLVED
                                                                            : TP_SUPPORT_AGENT_REPLIED);
    } else {
      snprintf(ticket, sizeof(ticket), "O-%zu", i);
      ev.commerce.order_id = (tp_str_t){ticket, (uint32_t)strlen(ticket)};
      ev.commerce.kind = (uint8_t)(rnd() % 10 == 0 ? TP_COMMERCE_RETURN_REQUESTED : TP_COMMERCE_ORDER_PLACED);
    }
    r->off[i] = at;
    r->src[i] = (uint8_t)ev.source;
    snprintf(r->key[i], sizeof(r->key[i]), "%s", tp);
    at += tp_encode_event(&ev, r->data + at, 320);
  }
  r->off[N_EVENTS] = at;
}

static double now_s(void) { return (double)tp_mono_ns() / 1e9; }

int main(int argc, char **argv) {
  unsigned n_tp = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
  if (n_tp == 0)
    n_tp = 10000;
  records_t r;
  build(&r, n_tp);

  char err[4096];
  tp_config_t *cfg = NULL;
  if (tp_config_load_string(tp_example_config_yaml, strlen(tp_example_config_yaml), "example",
                            NULL, &cfg, err, sizeof(err)) != TP_OK) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  cfg->max_touchpoints = (int64_t)n_tp * 2;

  /* Avro-C generic decode of the same records. */
  avro_schema_t schema[TP_SRC_COUNT];
  avro_value_iface_t *iface[TP_SRC_COUNT];
  avro_value_t value[TP_SRC_COUNT];
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    const char *json = tp_schema_json((tp_source_t)s);
    avro_schema_from_json_length(json, strlen(json), &schema[s]);
    iface[s] = avro_generic_class_from_schema(schema[s]);
    avro_generic_value_new(iface[s], &value[s]);
  }
  avro_reader_t reader = avro_reader_memory((const char *)r.data, 1);
  double best_avro = 1e9, best_decode = 1e9, best_apply = 1e9, best_scrape = 1e9;
  size_t scrape_bytes = 0;
  tp_buf_t scrape;
  tp_buf_init(&scrape);
  for (int k = 0; k < REPEATS; k++) {
    double t = now_s();
    for (size_t i = 0; i < N_EVENTS; i++) {
      avro_reader_memory_set_source(reader, (const char *)r.data + r.off[i],
                                    (int64_t)(r.off[i + 1] - r.off[i]));
      avro_value_reset(&value[r.src[i]]);
      if (avro_value_read(reader, &value[r.src[i]]) != 0)
        return fprintf(stderr, "avro: %s\n", avro_strerror()), 1;
    }
    t = now_s() - t;
    best_avro = t < best_avro ? t : best_avro;

    t = now_s();
    tp_event_t ev;
    for (size_t i = 0; i < N_EVENTS; i++)
      if (tp_decode((tp_source_t)r.src[i], r.data + r.off[i], r.off[i + 1] - r.off[i], &ev, NULL, 0))
        return fprintf(stderr, "decode failed at %zu\n", i), 1;
    t = now_s() - t;
    best_decode = t < best_decode ? t : best_decode;

    tp_state_t *st = tp_state_new(cfg, err, sizeof(err));
    tp_part_t *parts[TP_SRC_COUNT];
    for (int s = 0; s < TP_SRC_COUNT; s++)
      parts[s] = tp_part_new(st, (tp_source_t)s, 0, count_alert, NULL, err, sizeof(err));
    alerts = 0;
    t = now_s();
    size_t applied = 0;
    tp_part_hint_t hints[16];
    for (size_t i = 0; i < 8 && i < N_EVENTS; i++)
      tp_part_prefetch(parts[r.src[i]], r.key[i], strlen(r.key[i]), r.data + r.off[i],
                       r.off[i + 1] - r.off[i], &hints[i]);
    for (size_t i = 0; i < N_EVENTS; i++) {
      /* As the pipeline's workers do: the touchpoint table slot and the
       * duplicate index slot of the record 8 places ahead are fetched from
       * its key and its first bytes meanwhile, and the entry of the record
       * 4 places ahead from its slot; apply takes the hashes computed. */
      if (i + 8 < N_EVENTS)
        tp_part_prefetch(parts[r.src[i + 8]], r.key[i + 8], strlen(r.key[i + 8]),
                         r.data + r.off[i + 8], r.off[i + 9] - r.off[i + 8], &hints[(i + 8) % 16]);
      if (i + 4 < N_EVENTS)
        tp_part_prefetch_entry(parts[r.src[i + 4]], &hints[(i + 4) % 16]);
      if (i + 2 < N_EVENTS)
        tp_part_prefetch_bucket(parts[r.src[i + 2]], &hints[(i + 2) % 16]);
      tp_decode((tp_source_t)r.src[i], r.data + r.off[i], r.off[i + 1] - r.off[i], &ev, NULL, 0);
      applied += tp_part_apply_hinted(parts[r.src[i]], &ev, &hints[i % 16]) == TP_APPLY_OK;
    }
    t = now_s() - t;
    best_apply = t < best_apply ? t : best_apply;
    tp_buf_reset(&scrape);
    t = now_s();
    tp_state_export_metrics(st, (size_t)cfg->metrics_max_touchpoints, &scrape);
    t = now_s() - t;
    best_scrape = t < best_scrape ? t : best_scrape;
    scrape_bytes = scrape.len;
    uint64_t evals = 0;
    for (int s = 0; s < TP_SRC_COUNT; s++) {
      evals += atomic_load(&tp_part_stats(parts[s])->evaluations);
      tp_part_destroy(parts[s]);
    }
    tp_state_destroy(st);
    if (k == 0)
      printf("workload: %d events (%.0f%% applied), %u touchpoints, %.1f h of event time, "
             "%llu boundary evaluations, %llu alerts, example rules\n",
             N_EVENTS, 100.0 * (double)applied / N_EVENTS, n_tp,
             (double)N_EVENTS * EVENT_GAP_MS / 3.6e6, (unsigned long long)evals,
             (unsigned long long)alerts);
  }
  printf("a /metrics scrape of the state after the run (metrics.max_touchpoints %lld): "
         "%.1f ms, %zu bytes\n",
         (long long)cfg->metrics_max_touchpoints, best_scrape * 1e3, scrape_bytes);
  printf("%-34s %9s %14s %9s\n", "phase (one core, best of 3)", "ns/event", "events/s", "vs Avro-C");
  printf("%-34s %9.1f %14.0f %9.2fx\n", "Avro-C generic decode", best_avro * 1e9 / N_EVENTS,
         N_EVENTS / best_avro, 1.0);
  printf("%-34s %9.1f %14.0f %9.2fx\n", "tp_decode", best_decode * 1e9 / N_EVENTS,
         N_EVENTS / best_decode, best_avro / best_decode);
  printf("%-34s %9.1f %14.0f %9.2fx\n", "tp_decode + tp_part_apply", best_apply * 1e9 / N_EVENTS,
         N_EVENTS / best_apply, best_avro / best_apply);
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    avro_value_decref(&value[s]);
    avro_value_iface_decref(iface[s]);
    avro_schema_decref(schema[s]);
  }
  avro_reader_free(reader);
  tp_buf_free(&scrape);
  tp_config_destroy(cfg);
  free(r.data);
  free(r.off);
  free(r.src);
  free(r.key);
  return 0;
}
