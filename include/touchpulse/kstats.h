/*
 * kstats.h -- a chosen subset of librdkafka's statistics for /metrics.
 *
 * librdkafka emits a JSON document every statistics.interval.ms (touchpulse
 * sets 5 s unless the kafka section says otherwise) to the stats callback.
 * tp_kstats_update() reads the few fields exported below with a small
 * streaming scanner -- no DOM is built, nothing is allocated -- and keeps the
 * latest values for the scraper:
 *
 *   touchpulse_kafka_replyq{client}                    ops waiting in the reply queue
 *   touchpulse_kafka_producer_queue_messages{client}   messages waiting to be sent
 *   touchpulse_kafka_producer_queue_bytes{client}
 *   touchpulse_kafka_{tx,rx}_bytes_total{client}       bytes sent to / read from brokers
 *   touchpulse_kafka_tx_requests_total{client}, touchpulse_kafka_rx_responses_total{client}
 *   touchpulse_kafka_broker_up{client,broker}          1 when the connection is UP
 *   touchpulse_kafka_broker_rtt_seconds{client,broker} mean request round trip
 *   touchpulse_kafka_broker_outbuf_requests{client,broker}, ..._waitresp_requests
 *
 * client is "consumer" or "producer"; broker is librdkafka's name for it
 * ("host:port/id"). Bootstrap-only, internal and logical brokers are skipped.
 */
#ifndef TOUCHPULSE_KSTATS_H
#define TOUCHPULSE_KSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "touchpulse/buf.h"

#define TP_KSTATS_MAX_BROKERS 64

typedef struct {
  char name[128];
  int64_t nodeid;
  bool up;
  bool skip; /* internal, logical or not yet known by id */
  int64_t rtt_avg_us;
  int64_t outbuf_cnt, waitresp_cnt;
} tp_kstats_broker_t;

typedef struct {
  bool valid; /* a document was read */
  int64_t replyq, msg_cnt, msg_size, tx, tx_bytes, rx, rx_bytes;
  tp_kstats_broker_t brokers[TP_KSTATS_MAX_BROKERS];
  size_t n_brokers;
} tp_kstats_snap_t;

/**
 * @brief Read a statistics document into snap (zeroed first).
 * @returns false when the text is not a JSON object (snap->valid false).
 */
bool tp_kstats_parse(const char *json, size_t len, tp_kstats_snap_t *snap);

typedef struct tp_kstats_s tp_kstats_t;

/** @returns a holder for one client's latest statistics, or NULL (out of memory). */
tp_kstats_t *tp_kstats_new(const char *client);
void tp_kstats_destroy(tp_kstats_t *ks);
/** Parse and keep a document (the stats callback's thread). */
void tp_kstats_update(tp_kstats_t *ks, const char *json, size_t len);
/** Append the families above for the given clients (any thread). */
void tp_kstats_metrics(tp_kstats_t *const *clients, size_t n, tp_buf_t *out);

#endif
