/*
 * pipeline_int.h -- the pipeline's structures, shared by consume.c (threads,
 * Kafka) and metrics.c (the Prometheus exposition). Not a public header.
 */
#ifndef TOUCHPULSE_PIPELINE_INT_H
#define TOUCHPULSE_PIPELINE_INT_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "touchpulse/alert.h"
#include "touchpulse/pipeline.h"
#include "touchpulse/publish.h"

/*
 * One assigned input partition. Created and destroyed by the coordinator
 * while the workers are paused; between those moments only its worker writes
 * next_offset (read by the coordinator at checkpoints, again with the workers
 * paused, so the barrier's mutex orders both). The atomics are read by other
 * workers (idle detection) and by /metrics.
 */
typedef struct pctx_s {
  struct tp_pipeline_s *pl;
  tp_source_t src;
  int32_t partition;
  int worker;
  tp_part_t *part;
  rd_kafka_queue_t *pq;       /* the partition's queue, forwarded to the worker */
  int64_t next_offset;        /* offset after the last record fully processed; -1 none */
  int64_t committed;          /* committed for the group (read at assignment, then ours); -1 none */
  int64_t committed_wm;       /* the watermark stored with it (commit metadata); INT64_MIN none */
  int64_t cut_offset, cut_wm; /* next_offset and the watermark at the last checkpoint's cut */
  int64_t restore_until;      /* records below it rebuild state silently; -1 when live */
  int64_t counted_until;      /* records below it were counted already (restore, rewind) */
  _Atomic int64_t position;   /* next_offset, for /metrics */
  _Atomic bool restoring;
  _Atomic uint64_t restored;  /* records re-read to rebuild state */
  _Atomic int64_t last_record_ms; /* wall clock of its last record */
  _Atomic bool at_eof;        /* consumed up to the high watermark */
  _Atomic bool idle;          /* following the other partitions' watermark */
  _Atomic int64_t high_offset; /* high watermark from the last EOF or stats */
} pctx_t;

/* Upper bounds of the processing latency histogram's buckets, in ms
 * (Kafka timestamps have millisecond resolution). */
#define TP_LATENCY_BUCKETS 15
extern const int64_t tp_latency_bounds_ms[TP_LATENCY_BUCKETS];

/* Per-worker counters: single writer, read by /metrics. One cache line
 * apart so workers never share a line. */
typedef struct {
  _Atomic uint64_t consumed[TP_SRC_COUNT];
  _Atomic uint64_t applied[TP_SRC_COUNT];
  _Atomic uint64_t late[TP_SRC_COUNT];
  _Atomic uint64_t duplicates[TP_SRC_COUNT];
  _Atomic uint64_t overflow[TP_SRC_COUNT];
  _Atomic uint64_t rejected[TP_SRC_COUNT][TP_REJECT_COUNT];
  _Atomic uint64_t batches;
  /* touchpulse_processing_latency_seconds: per bucket (not cumulative), the
   * last one +Inf; sum in milliseconds. */
  _Atomic uint64_t latency[TP_SRC_COUNT][TP_LATENCY_BUCKETS + 1];
  _Atomic uint64_t latency_sum_ms[TP_SRC_COUNT];
} __attribute__((aligned(TP_CACHELINE))) wstats_t;

typedef struct worker_s {
  tp_pipeline_t *pl;
  int id;
  pthread_t thread;
  rd_kafka_queue_t *q;
  tp_alert_codec_t *codec;
  tp_buf_t abuf;
  pctx_t **ctxs; /* partitions owned; changed only while paused */
  size_t n_ctx, cap_ctx;
  bool halted;   /* a produce was refused while stopping: stop applying */
  uint64_t rewind_gen; /* pl->rewind_gen when the batch in hand was fetched */
  int64_t now;   /* wall clock sampled once per batch */
  /* The partition of the last record looked up (ctx_of() in consume.c);
   * cleared with every batch, as partitions change only between batches. */
  const rd_kafka_topic_t *last_rkt;
  int32_t last_partition;
  struct pctx_s *last_ctx;
  int64_t last_idle_check;
  /* Wall clock (ms) when the first batch holding a record was in hand, 0
   * before, and when the newest such batch was done: the "caught up" line
   * reports them, as the line itself waits for the end-of-log events,
   * which come up to fetch.wait.max.ms after the last record. */
  _Atomic int64_t first_batch_ms, last_batch_ms;
  wstats_t stats;
} worker_t;

struct tp_pipeline_s {
  const tp_config_t *cfg;
  int64_t (*now_ms)(void);
  tp_state_t *st;
  tp_publisher_t *pub;
  rd_kafka_t *rk;
  rd_kafka_queue_t *coord_q; /* the consumer queue the coordinator polls */
  _Atomic bool alert_woke;  /* an alert woke the coordinator since its last checkpoint */

  worker_t *workers;
  int n_workers;
  pthread_t coordinator;
  bool started;

  _Atomic bool stop_req;
  _Atomic bool workers_quit;
  _Atomic bool failed;
  _Atomic bool coordinator_done;

  /* The barrier: the coordinator raises pause_req and waits until every
   * live worker has parked between two batches. */
  pthread_mutex_t bar_lock;
  pthread_cond_t bar_workers, bar_coord;
  _Atomic int pause_req;
  _Atomic uint64_t rewind_gen; /* bumped when partitions are rewound while paused */
  int paused;       /* guarded by bar_lock */
  int live_workers; /* guarded by bar_lock */
  /* Workers held after consecutive transaction aborts (coordinator thread
   * only): resume_workers() leaves them paused until this (tp_mono_ns). */
  uint64_t hold_until_ns;
  /* Coordinator only: checkpoints since start and how long they held the
   * workers (the "caught up" log line reports them). */
  uint64_t checkpoints, checkpoint_hold_ns;

  pctx_t **ctxs; /* every assigned partition; changed only while paused,
                  * and under ctx_lock for readers that are not workers */
  size_t n_ctx, cap_ctx;
  pthread_mutex_t ctx_lock;
  _Atomic int n_assigned;
  _Atomic int n_restoring;
  _Atomic bool assigned_once;

  _Atomic uint64_t *alerts_by_rule; /* [n_rules][2]: FIRING, RESOLVED */
  _Atomic uint64_t commits, commit_failures, checkpoints_skipped;
  _Atomic uint64_t txn_aborts, restored_total;
  _Atomic uint64_t rebalances_assign, rebalances_revoke;
  _Atomic uint64_t consumer_errors;
  tp_kstats_t *kstats; /* the consumer's librdkafka statistics */
};

/** The workers' counters summed (any thread). */
typedef struct {
  uint64_t consumed[TP_SRC_COUNT], applied[TP_SRC_COUNT], late[TP_SRC_COUNT];
  uint64_t duplicates[TP_SRC_COUNT], overflow[TP_SRC_COUNT];
  uint64_t rejected[TP_SRC_COUNT][TP_REJECT_COUNT];
  uint64_t latency[TP_SRC_COUNT][TP_LATENCY_BUCKETS + 1]; /* cumulative */
  uint64_t latency_sum_ms[TP_SRC_COUNT];
} tp_pipeline_sums_t;
void tp__pipeline_sum(tp_pipeline_t *pl, tp_pipeline_sums_t *sums);

/** The Prometheus exposition (metrics.c). */
void tp__pipeline_metrics(tp_pipeline_t *pl, tp_buf_t *out);

#endif
