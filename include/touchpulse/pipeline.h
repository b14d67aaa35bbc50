/*
 * pipeline.h -- the service: one consumer group over the three input
 * topics, worker threads that decode and apply events, the producer for
 * alerts and dead letters, and periodic checkpoints that commit input
 * offsets only once the alerts and dead letters they caused are delivered.
 *
 * Threads:
 *  - the coordinator polls the consumer (rebalances, errors), serves the
 *    producer's delivery reports and runs checkpoints;
 *  - `workers` threads each read the partition queues forwarded to them and
 *    own those partitions' state (tp_part_t): decode, validate, apply,
 *    evaluate, produce;
 *  - anyone may read the counters and the state views.
 * A checkpoint pauses the workers between two batches (never inside an
 * event), which gives the coordinator a consistent cut: every applied offset
 * and every alert produced before it. With transactions the workers then
 * run on while the transaction commits, their alerts and dead letters held
 * for the next one (publish.h, staging); without, they stay paused until
 * the producer is flushed and the offsets committed.
 */
#ifndef TOUCHPULSE_PIPELINE_H
#define TOUCHPULSE_PIPELINE_H

#include <stdbool.h>

#include "touchpulse/buf.h"
#include "touchpulse/config.h"
#include "touchpulse/decode.h"
#include "touchpulse/state.h"

typedef struct tp_pipeline_s tp_pipeline_t;

typedef struct {
  const tp_config_t *cfg;
  /* Wall clock for the future-skew check and idle detection; NULL = real. */
  int64_t (*now_ms)(void);
} tp_pipeline_opts_t;

/**
 * @brief Create consumer, producer and state (no threads yet).
 * @returns the pipeline, or NULL with a message in errstr.
 */
tp_pipeline_t *tp_pipeline_new(const tp_pipeline_opts_t *opts, char *errstr, size_t errstr_size);

/** Subscribe and start the coordinator and workers. */
tp_err_t tp_pipeline_start(tp_pipeline_t *pl, char *errstr, size_t errstr_size);

/**
 * @brief Graceful stop: stop fetching, finish the batches in flight, flush
 *        the producer, commit, leave the group. Blocks until done.
 * @returns TP_OK, or TP_EKAFKA when something could not be delivered or
 *          committed (the exit code should then be 1).
 */
tp_err_t tp_pipeline_stop(tp_pipeline_t *pl);

/** Free. Stops first if still running. NULL-safe. */
void tp_pipeline_destroy(tp_pipeline_t *pl);

/** @returns true once partitions are assigned and their state is live. */
bool tp_pipeline_ready(const tp_pipeline_t *pl);
/** @returns true when the pipeline hit an error it cannot recover from. */
bool tp_pipeline_failed(const tp_pipeline_t *pl);

tp_state_t *tp_pipeline_state(tp_pipeline_t *pl);

/** Append the processor's metrics in Prometheus text format 0.0.4. @thread any */
void tp_pipeline_metrics(tp_pipeline_t *pl, tp_buf_t *out);

/** Totals for tests and the demo. @thread any */
typedef struct {
  uint64_t consumed, applied, rejected, late, duplicates, overflow;
  uint64_t alerts_produced, alerts_delivered, deadletters_delivered, commits;
} tp_pipeline_totals_t;
void tp_pipeline_totals(tp_pipeline_t *pl, tp_pipeline_totals_t *out);

#endif
