/*
 * consume.c -- the consumer group, the worker threads, partition assignment
 * and the checkpoints that commit input offsets. See pipeline.h for the
 * threads and the contract.
 *
 * Data path of one record (worker thread):
 *   partition queue -> decode (decode.c) -> future-skew check
 *     -> tp_part_apply (state/part.c): dedup, lateness, bucket, evaluation
 *     -> alerts: encode (alert.c) -> producer (publish.c)
 *   rejected records -> dead-letter topic with the reason in a header.
 * A record's offset counts as processed only once all of this returned; a
 * checkpoint commits processed offsets after the producer has delivered
 * everything queued before it, so a crash never commits past an alert or a
 * dead letter that was not written.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline_int.h"
#include "touchpulse/log.h"

#define BATCH 512
#define POLL_MS 50             /* workers: a batch, or this long */
#define COORDINATOR_POLL_MS 10 /* the coordinator's poll; an alert wakes it (on_alert) */
#define IDLE_CHECK_MS 200
#define FLUSH_MS 2000
#define FINAL_FLUSH_MS 30000

static int64_t real_now(void) { return tp_now_ms(); }

static void set_failed(tp_pipeline_t *pl, const char *why) {
  if (!atomic_exchange(&pl->failed, true))
    tp_log_error("pipeline stopping: %s", why);
}

static inline void bump(_Atomic uint64_t *c) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

/* ---- barrier ---------------------------------------------------------------- */

/* @thread worker: park here while the coordinator holds the workers. */
static void worker_barrier(worker_t *w) {
  tp_pipeline_t *pl = w->pl;
  if (!atomic_load_explicit(&pl->pause_req, memory_order_acquire))
    return;
  pthread_mutex_lock(&pl->bar_lock);
  pl->paused++;
  pthread_cond_signal(&pl->bar_coord);
  while (atomic_load(&pl->pause_req))
    pthread_cond_wait(&pl->bar_workers, &pl->bar_lock);
  pl->paused--;
  pthread_mutex_unlock(&pl->bar_lock);
}

/* @thread coordinator: returns once every live worker is parked. Serves the
 * producer meanwhile: a worker may be waiting for room in its queue. */
static void pause_workers(tp_pipeline_t *pl) {
  atomic_store_explicit(&pl->pause_req, 1, memory_order_release);
  for (int i = 0; i < pl->n_workers; i++)
    if (pl->workers[i].q)
      rd_kafka_queue_yield(pl->workers[i].q);
  pthread_mutex_lock(&pl->bar_lock);
  while (pl->paused < pl->live_workers) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 5 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&pl->bar_coord, &pl->bar_lock, &ts);
    pthread_mutex_unlock(&pl->bar_lock);
    tp_publisher_poll(pl->pub, 0);
    pthread_mutex_lock(&pl->bar_lock);
  }
  pthread_mutex_unlock(&pl->bar_lock);
}

/* @thread coordinator (rebalance callbacks included). While an abort
 * backoff holds the workers, they stay paused: the checkpoint loop resumes
 * them when it ends. */
static void resume_workers(tp_pipeline_t *pl) {
  if (pl->hold_until_ns != 0)
    return;
  pthread_mutex_lock(&pl->bar_lock);
  atomic_store(&pl->pause_req, 0);
  pthread_cond_broadcast(&pl->bar_workers);
  pthread_mutex_unlock(&pl->bar_lock);
}

/* ---- alerts ------------------------------------------------------------------ */

/* @thread worker owning the partition (tp_part_apply/advance call it). */
static void on_alert(void *opaque, const tp_alert_t *a) {
  pctx_t *ctx = opaque;
  tp_pipeline_t *pl = ctx->pl;
  worker_t *w = &pl->workers[ctx->worker];
  char err[256];
  if (w->halted)
    return;
  if (tp_alert_encode(w->codec, a, pl->now_ms(), &w->abuf, err, sizeof(err)) != TP_OK) {
    /* The schema is compiled in and checked at start: this is a bug or
     * memory exhaustion, and the alert must not be skipped silently. */
    set_failed(pl, err);
    w->halted = true;
    return;
  }
  if (tp_publisher_alert(pl->pub, a->touchpoint, a->touchpoint_len, w->abuf.data, w->abuf.len) !=
      TP_OK) {
    w->halted = true;
    return;
  }
  /* The first alert since the last checkpoint wakes the coordinator from
   * its poll: the checkpoint that delivers it may be due now rather than
   * at the poll's end. Once per checkpoint. */
  if (!atomic_exchange_explicit(&pl->alert_woke, true, memory_order_relaxed) && pl->coord_q)
    rd_kafka_queue_yield(pl->coord_q);
  size_t rule = (size_t)(a->rule - pl->cfg->rules);
  atomic_fetch_add_explicit(&pl->alerts_by_rule[rule * 2 + (a->state == TP_ALERT_RESOLVED)], 1,
                            memory_order_relaxed);
  char id[33];
  tp_alert_id(a, id);
  bool firing = a->state == TP_ALERT_FIRING;
  tp_log_info("alert %s rule=%s touchpoint=%.*s metric=%s value=%g %s=%g op=%s window_end=%lld "
              "samples=%lld id=%s",
              firing ? "FIRING" : "RESOLVED", a->rule->name, (int)a->touchpoint_len,
              a->touchpoint, tp_metric_name(a->rule->metric), a->value,
              firing ? "threshold" : "clear", a->threshold, tp_op_str(a->rule->op),
              (long long)a->window_end, (long long)a->samples, id);
}

/* ---- workers ----------------------------------------------------------------- */

static int topic_source(const tp_config_t *cfg, const char *name) {
  for (int s = 0; s < TP_SRC_COUNT; s++)
    if (strcmp(cfg->topics[s], name) == 0)
      return s;
  return -1;
}

static pctx_t *find_ctx(worker_t *w, int src, int32_t partition) {
  for (size_t i = 0; i < w->n_ctx; i++)
    if (w->ctxs[i]->partition == partition && (int)w->ctxs[i]->src == src)
      return w->ctxs[i];
  return NULL;
}

/* The worker's context of msg's partition, or NULL (revoked, or not an
 * input topic). Records of a batch come in runs of one partition: the last
 * answer is kept for the next record. */
static pctx_t *ctx_of(worker_t *w, const rd_kafka_message_t *msg) {
  if (msg->rkt == NULL)
    return NULL;
  if (msg->rkt == w->last_rkt && msg->partition == w->last_partition)
    return w->last_ctx;
  int src = topic_source(w->pl->cfg, rd_kafka_topic_name(msg->rkt));
  pctx_t *ctx = src < 0 ? NULL : find_ctx(w, src, msg->partition);
  if (ctx != NULL) {
    w->last_rkt = msg->rkt;
    w->last_partition = msg->partition;
    w->last_ctx = ctx;
  }
  return ctx;
}

static void reject(worker_t *w, pctx_t *ctx, const rd_kafka_message_t *msg, tp_reject_t reason,
                   const char *detail, bool count) {
  tp_pipeline_t *pl = w->pl;
  if (count)
    bump(&w->stats.rejected[ctx->src][reason]);
  if (tp_log_enabled(TP_LOG_DEBUG))
    tp_log_debug("rejected %s[%d]@%lld: %s", pl->cfg->topics[ctx->src], (int)msg->partition,
                 (long long)msg->offset, detail);
  if (tp_publisher_deadletter(pl->pub, msg, pl->cfg->topics[ctx->src], detail) != TP_OK)
    w->halted = true;
}

/* The partition has re-read everything below its committed offset: from
 * here on its records are new, and its alerts go out. @thread its worker */
static void finish_restore(tp_pipeline_t *pl, pctx_t *ctx) {
  ctx->restore_until = -1;
  tp_part_set_emit(ctx->part, true);
  atomic_store(&ctx->restoring, false);
  atomic_fetch_sub(&pl->n_restoring, 1);
  tp_log_info("%s[%d] restored from %llu records; live from offset %lld",
              pl->cfg->topics[ctx->src], (int)ctx->partition,
              (unsigned long long)atomic_load(&ctx->restored), (long long)ctx->next_offset);
}

const int64_t tp_latency_bounds_ms[TP_LATENCY_BUCKETS] = {1,    5,    10,    25,    50,
                                                          100,  250,  500,   1000,  2500,
                                                          5000, 10000, 30000, 60000, 300000};

/* A live record's time from its Kafka timestamp (producer's CreateTime or
 * the broker's LogAppendTime) to its processing. A timestamp ahead of the
 * clock counts as 0. */
static void observe_latency(worker_t *w, int src, const rd_kafka_message_t *msg) {
  int64_t ts = rd_kafka_message_timestamp(msg, NULL);
  if (ts < 0)
    return;
  int64_t ms = w->now > ts ? w->now - ts : 0;
  int b = 0;
  while (b < TP_LATENCY_BUCKETS && ms > tp_latency_bounds_ms[b])
    b++;
  bump(&w->stats.latency[src][b]);
  atomic_store_explicit(&w->stats.latency_sum_ms[src],
                        atomic_load_explicit(&w->stats.latency_sum_ms[src], memory_order_relaxed) +
                            (uint64_t)ms,
                        memory_order_relaxed);
}

/* ctx: ctx_of(w, msg); hint: hint_slot()'s for it. */
static void process(worker_t *w, rd_kafka_message_t *msg, pctx_t *ctx,
                    const tp_part_hint_t *hint) {
  tp_pipeline_t *pl = w->pl;
  const tp_config_t *cfg = pl->cfg;
  int src = ctx != NULL ? (int)ctx->src : topic_source(cfg, rd_kafka_topic_name(msg->rkt));

  if (msg->err) {
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (ctx) {
        atomic_store(&ctx->high_offset, msg->offset);
        atomic_store(&ctx->at_eof, true);
        if (ctx->restore_until >= 0) /* the log ends before the committed offset */
          finish_restore(pl, ctx);
      }
      return;
    }
    atomic_fetch_add(&pl->consumer_errors, 1);
    tp_log_warn("consumer: %s", rd_kafka_message_errstr(msg));
    return;
  }
  if (ctx == NULL)
    return; /* revoked while queued: its next owner reads it again */

  /* Below the committed offset the record was processed before: it only
   * rebuilds state. Its alerts and dead letters were written then, and the
   * counters counted it then. Offsets skip transaction markers, so the first
   * new record may lie past the committed offset itself. */
  if (ctx->restore_until >= 0 && msg->offset >= ctx->restore_until)
    finish_restore(pl, ctx);
  bool live = ctx->restore_until < 0;
  /* After a rewind, live records may be processed a second time: their
   * alerts went out in an aborted transaction, but they were counted. */
  bool count = live && msg->offset >= ctx->counted_until;
  if (count)
    bump(&w->stats.consumed[src]);
  atomic_store_explicit(&ctx->at_eof, false, memory_order_relaxed);
  atomic_store_explicit(&ctx->last_record_ms, w->now, memory_order_relaxed);

  char detail[256];
  tp_event_t ev;
  tp_reject_t reason;
  if (msg->len > (size_t)cfg->max_record_bytes) {
    reason = TP_REJECT_TOO_LARGE;
    snprintf(detail, sizeof(detail), "too_large: %zu bytes, processing.max_record_bytes is %lld",
             msg->len, (long long)cfg->max_record_bytes);
  } else {
    reason = tp_decode((tp_source_t)src, msg->payload, msg->len, &ev, detail, sizeof(detail));
    if (reason == TP_REJECT_NONE && ev.occurred_at > w->now + cfg->max_future_skew_ms) {
      char ahead[32], skew[32];
      tp_duration_format(ev.occurred_at - w->now, ahead, sizeof(ahead));
      tp_duration_format(cfg->max_future_skew_ms, skew, sizeof(skew));
      reason = TP_REJECT_FUTURE_TIMESTAMP;
      snprintf(detail, sizeof(detail),
               "future_timestamp: occurred_at %lld is %s ahead of the wall clock "
               "(windows.max_future_skew %s)",
               (long long)ev.occurred_at, ahead, skew);
    }
  }
  if (reason == TP_REJECT_NONE) {
    tp_apply_t r = tp_part_apply_hinted(ctx->part, &ev, hint);
    if (r == TP_APPLY_INVALID) {
      reason = TP_REJECT_OUT_OF_RANGE;
      snprintf(detail, sizeof(detail), "out_of_range: occurred_at %lld is beyond what windows hold",
               (long long)ev.occurred_at);
    } else if (count) {
      switch (r) {
      case TP_APPLY_OK: bump(&w->stats.applied[src]); break;
      case TP_APPLY_LATE: bump(&w->stats.late[src]); break;
      case TP_APPLY_DUPLICATE: bump(&w->stats.duplicates[src]); break;
      default: bump(&w->stats.overflow[src]); break;
      }
    }
  }
  if (reason != TP_REJECT_NONE && live)
    reject(w, ctx, msg, reason, detail, count);
  if (w->halted)
    return;
  if (count)
    observe_latency(w, src, msg);
  ctx->next_offset = msg->offset + 1;
  if (ctx->next_offset > ctx->counted_until)
    ctx->counted_until = ctx->next_offset;
  atomic_store_explicit(&ctx->position, ctx->next_offset, memory_order_relaxed);
  if (!live) {
    bump(&ctx->restored);
    if (ctx->next_offset >= ctx->restore_until)
      finish_restore(pl, ctx);
  }
}

/*
 * SPEC: a partition with nothing to read that has been idle for
 * windows.idle_timeout follows the lowest watermark of the instance's other,
 * active partitions. Reads pl->ctxs, which changes only while workers are
 * paused, and other partitions' watermarks through their atomics.
 */
static void check_idle(worker_t *w) {
  tp_pipeline_t *pl = w->pl;
  int64_t timeout = pl->cfg->idle_timeout_ms;
  /* Not while stopping: a failed rewind may have left a context without a
   * partition, and only sets the pipeline failed with the workers held. */
  if (timeout <= 0 || w->now - w->last_idle_check < IDLE_CHECK_MS ||
      atomic_load(&pl->workers_quit) || atomic_load(&pl->failed))
    return;
  w->last_idle_check = w->now;
  int64_t lowest = INT64_MAX;
  bool any_idle = false;
  for (size_t i = 0; i < pl->n_ctx; i++) {
    pctx_t *c = pl->ctxs[i];
    bool idle = atomic_load(&c->at_eof) && w->now - atomic_load(&c->last_record_ms) >= timeout;
    if (c->worker == w->id)
      atomic_store(&c->idle, idle);
    any_idle = any_idle || idle;
    int64_t wm = atomic_load_explicit(&tp_part_stats(c->part)->watermark, memory_order_relaxed);
    if (!idle && wm != INT64_MIN && wm < lowest)
      lowest = wm;
  }
  if (!any_idle || lowest == INT64_MAX)
    return;
  for (size_t i = 0; i < w->n_ctx; i++)
    if (atomic_load(&w->ctxs[i]->idle) && !w->halted)
      tp_part_advance(w->ctxs[i]->part, lowest);
}

/*
 * A batch of up to max records from the worker's queue, waiting at most
 * timeout_ms for the first. Built from single-message calls on purpose:
 * librdkafka 2.0.2's rd_kafka_consume_batch_queue() can lose messages when a
 * rebalance (or pause, resume, seek) runs in parallel with it (a known issue
 * of that release, fixed in 2.1.0), and Debian ships 2.0.2. The integration
 * tests caught it as skipped offsets on partitions an instance kept while
 * others moved.
 */
static size_t consume_batch(rd_kafka_queue_t *q, int timeout_ms, rd_kafka_message_t **msgs,
                            size_t max) {
  size_t n = 0;
  for (rd_kafka_message_t *m = rd_kafka_consume_queue(q, timeout_ms); m != NULL;
       m = rd_kafka_consume_queue(q, 0)) {
    msgs[n++] = m;
    if (n == max)
      break;
  }
  return n;
}

/*
 * Records are keyed by touchpoint (SPEC): while one record is processed,
 * the touchpoint table slot of the record PREFETCH_SLOT places later is
 * fetched from its key, and the entry of the record PREFETCH_ENTRY places
 * later from its slot, so that their lookups find them in the cache. A
 * record keyed otherwise only wastes the hint. The slot of the duplicate
 * index that the record's event_id is looked up in is fetched
 * PREFETCH_SLOT places ahead too, from the record's first bytes. The
 * hashes of key and event id computed for these hints are handed to
 * tp_part_apply_hinted(), which uses them where they match the decoded
 * event. PREFETCH_BUCKET places ahead, the bucket the record's entry wrote
 * last is fetched (an event of the same step goes there), or all of a
 * ring of a few buckets.
 */
#define PREFETCH_SLOT 8
#define PREFETCH_ENTRY 4
#define PREFETCH_BUCKET 2

static void hint_slot(const rd_kafka_message_t *msg, const pctx_t *ctx, tp_part_hint_t *hint) {
  if (ctx == NULL || msg->err) {
    *hint = (tp_part_hint_t){0};
    return;
  }
  tp_part_prefetch(ctx->part, msg->key, msg->key_len, msg->payload, msg->len, hint);
}

static void hint_entry(const pctx_t *ctx, tp_part_hint_t *hint) {
  if (ctx != NULL)
    tp_part_prefetch_entry(ctx->part, hint);
}

static void hint_bucket(const pctx_t *ctx, const tp_part_hint_t *hint) {
  if (ctx != NULL)
    tp_part_prefetch_bucket(ctx->part, hint);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  tp_pipeline_t *pl = w->pl;
  rd_kafka_message_t *msgs[BATCH];
  tp_part_hint_t hints[BATCH]; /* and the hashes they computed, for tp_part_apply_hinted() */
  pctx_t *ctxs[BATCH]; /* ctx_of() each record, once: found PREFETCH_SLOT ahead */
  while (!atomic_load(&pl->workers_quit) && !w->halted) {
    worker_barrier(w);
    w->rewind_gen = atomic_load(&pl->rewind_gen);
    size_t n = consume_batch(w->q, POLL_MS, msgs, BATCH);
    /* A pause may have changed this worker's partitions: take it before
     * touching the batch, whose records of revoked partitions are dropped,
     * and all of it when the partitions were rewound meanwhile or the
     * workers are leaving (after a failed rewind a partition may be gone). */
    worker_barrier(w);
    bool stale = atomic_load(&pl->rewind_gen) != w->rewind_gen || atomic_load(&pl->workers_quit);
    w->now = pl->now_ms();
    w->last_rkt = NULL;
    bool records = false; /* whether the batch held a record it processed */
    for (size_t i = 0; !stale && i < n && i < PREFETCH_SLOT; i++) {
      ctxs[i] = ctx_of(w, msgs[i]);
      hint_slot(msgs[i], ctxs[i], &hints[i]);
    }
    for (size_t i = 0; i < n; i++) {
      size_t ahead = i + PREFETCH_SLOT;
      if (!stale && ahead < n) {
        ctxs[ahead] = ctx_of(w, msgs[ahead]);
        hint_slot(msgs[ahead], ctxs[ahead], &hints[ahead]);
      }
      if (!stale && i + PREFETCH_ENTRY < n)
        hint_entry(ctxs[i + PREFETCH_ENTRY], &hints[i + PREFETCH_ENTRY]);
      if (!stale && i + PREFETCH_BUCKET < n)
        hint_bucket(ctxs[i + PREFETCH_BUCKET], &hints[i + PREFETCH_BUCKET]);
      if (!stale && !w->halted && !atomic_load(&pl->workers_quit)) {
        process(w, msgs[i], ctxs[i], &hints[i]);
        records = records || msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR;
      }
      rd_kafka_message_destroy(msgs[i]);
    }
    if (n > 0)
      bump(&w->stats.batches);
    if (records) {
      if (atomic_load_explicit(&w->first_batch_ms, memory_order_relaxed) == 0)
        atomic_store_explicit(&w->first_batch_ms, w->now, memory_order_relaxed);
      atomic_store_explicit(&w->last_batch_ms, pl->now_ms(), memory_order_relaxed);
    }
    check_idle(w);
  }
  pthread_mutex_lock(&pl->bar_lock);
  pl->live_workers--;
  pthread_cond_signal(&pl->bar_coord);
  pthread_mutex_unlock(&pl->bar_lock);
  return NULL;
}

/* ---- checkpoints and assignment (coordinator) -------------------------------- */

static void rewind_all(tp_pipeline_t *pl);

/* The number in a fault-injection variable of the environment, 0 when it is
 * unset: the fault points below read theirs once. */
static long fault_env(const char *name) {
  /* NOLINTNEXTLINE(concurrency-mt-unsafe): touchpulse never calls setenv() */
  const char *v = getenv(name);
  return v ? strtol(v, NULL, 10) : 0;
}

/*
 * Fault injection for the crash tests (tests/integration): with
 * TP_FAULT_KILL_AT_CHECKPOINT=N in the environment, the process kills itself
 * (SIGKILL, no clean-up) at the Nth checkpoint that has alerts or dead
 * letters pending, after the producer has delivered them and before the
 * offsets are committed: the moment where a crash is most likely to lose or
 * repeat an alert. Read once; unset in production.
 */
static void crash_point(tp_pipeline_t *pl) {
  static long countdown = -1;
  if (countdown == -1)
    countdown = fault_env("TP_FAULT_KILL_AT_CHECKPOINT");
  if (countdown <= 0 || tp_publisher_pending(pl->pub) == 0)
    return;
  if (--countdown == 0) {
    tp_publisher_flush(pl->pub, 30000);
    tp_log_warn("TP_FAULT_KILL_AT_CHECKPOINT: killing the process after delivery, before commit");
    (void)raise(SIGKILL);
  }
}

/*
 * Fault injection: with TP_FAULT_ABORT_AT_CHECKPOINT=N, the Nth checkpoint
 * that has alerts or dead letters pending aborts its transaction instead of
 * committing it, as an abortable broker error would. @returns true then.
 */
static bool abort_point(tp_pipeline_t *pl) {
  static long countdown = -1;
  if (countdown == -1)
    countdown = fault_env("TP_FAULT_ABORT_AT_CHECKPOINT");
  if (countdown <= 0 || tp_publisher_pending(pl->pub) == 0 || --countdown > 0)
    return false;
  char err[256];
  tp_log_warn("TP_FAULT_ABORT_AT_CHECKPOINT: aborting the transaction");
  if (tp_publisher_txn_abort(pl->pub, err, sizeof(err)) != TP_OK)
    set_failed(pl, err);
  return true;
}

/*
 * Fault injection: with TP_FAULT_REWIND_NOMEM=1, a rewind after an aborted
 * transaction cannot create the partitions' state again, as without memory:
 * the pipeline must stop with an error, its workers touching no partition.
 */
static bool rewind_nomem_point(void) {
  static long armed = -1;
  if (armed == -1)
    armed = fault_env("TP_FAULT_REWIND_NOMEM");
  return armed == 1;
}

/*
 * Commit the processed offsets of ctxs together with everything produced
 * since the last checkpoint. Workers must be paused (or gone), so the cut is
 * consistent: every alert and dead letter queued so far was caused by
 * records at or below these offsets.
 *
 * Exactly-once (a transactional producer): the offsets go into the open
 * transaction and it commits; an aborted transaction rewinds every
 * partition to its committed offset, so its alerts are produced again.
 * At-least-once: flush the producer, then commit the offsets.
 * @returns true when committed, or when there was nothing to commit.
 */
/* Commit metadata: the partition's watermark at the committed offset, so a
 * successor knows from where in event time to rebuild (restore_plan). */
#define WM_META_PREFIX "touchpulse wm="

static void set_wm_metadata(rd_kafka_topic_partition_t *tp, int64_t wm) {
  char buf[64];
  int len = snprintf(buf, sizeof(buf), WM_META_PREFIX "%lld", (long long)wm);
  /* librdkafka frees it with the list; it must come from malloc. */
  tp->metadata = malloc((size_t)len);
  if (tp->metadata != NULL) {
    memcpy(tp->metadata, buf, (size_t)len);
    tp->metadata_size = (size_t)len;
  }
}

static int64_t wm_from_metadata(const rd_kafka_topic_partition_t *tp) {
  size_t plen = sizeof(WM_META_PREFIX) - 1;
  char buf[64];
  if (tp->metadata == NULL || tp->metadata_size <= plen || tp->metadata_size >= sizeof(buf))
    return INT64_MIN;
  memcpy(buf, tp->metadata, tp->metadata_size);
  buf[tp->metadata_size] = '\0';
  char *end = NULL;
  long long v = strtoll(buf + plen, &end, 10);
  return strncmp(buf, WM_META_PREFIX, plen) == 0 && end && *end == '\0' ? (int64_t)v : INT64_MIN;
}

/* The cut's offsets and watermarks are committed now. */
static void committed_all(pctx_t **ctxs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ctxs[i]->cut_offset > ctxs[i]->committed) {
      ctxs[i]->committed = ctxs[i]->cut_offset;
      ctxs[i]->committed_wm = ctxs[i]->cut_wm;
    }
  }
}

/*
 * The workers are paused (or gone). held_ns: NULL when they must stay so
 * throughout (they are gone, or a rebalance holds them). Otherwise a
 * transaction commits with the workers running, what they produce meanwhile
 * staged for the next one (publish.h), and *held_ns says how long this call
 * held them. They are still paused when it returns unless it committed
 * with them running.
 */
static bool checkpoint(tp_pipeline_t *pl, pctx_t **ctxs, size_t n, int flush_ms,
                       uint64_t *held_ns) {
  uint64_t hold_from = tp_mono_ns(); /* 0 while the workers run */
  uint64_t held = 0;
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n + 1);
  for (size_t i = 0; i < n; i++) {
    pctx_t *c = ctxs[i];
    /* The cut: the workers are paused. They move on from it while the
     * transaction commits, so what is committed is read from here. */
    c->cut_offset = c->next_offset;
    if (c->next_offset > c->committed) {
      c->cut_wm = tp_part_watermark(c->part);
      rd_kafka_topic_partition_t *tp =
          rd_kafka_topic_partition_list_add(list, pl->cfg->topics[c->src], c->partition);
      tp->offset = c->next_offset;
      set_wm_metadata(tp, c->cut_wm);
    }
  }
  bool ok = true;
  bool staged = false;
  char err[512];
  crash_point(pl);
  if (tp_publisher_transactional(pl->pub)) {
    if (list->cnt == 0 && tp_publisher_pending(pl->pub) == 0 && !tp_publisher_txn_doomed(pl->pub))
      goto done;
    if (abort_point(pl)) {
      atomic_fetch_add(&pl->txn_aborts, 1);
      rewind_all(pl);
      ok = false;
      goto done;
    }
    if (held_ns != NULL && !tp_publisher_txn_doomed(pl->pub)) {
      tp_publisher_stage_begin(pl->pub);
      staged = true;
      held += tp_mono_ns() - hold_from;
      hold_from = 0;
      resume_workers(pl);
    }
    tp_err_t rc;
    if (tp_publisher_txn_doomed(pl->pub)) {
      /* A message was refused: committing would lose it. */
      snprintf(err, sizeof(err), "a message was refused by the transaction");
      rc = TP_EAGAIN;
    } else {
      rc = tp_publisher_txn_commit(pl->pub, pl->rk, list, flush_ms, err, sizeof(err));
      /* A commit that timed out is still in progress inside librdkafka:
       * messages produced now would be refused by the transaction, and
       * librdkafka refuses an abort. Resume it (the workers held or
       * staging) until it completes or must abort. */
      uint64_t give_up = tp_mono_ns() + 60ull * 1000000000u;
      while (rc == TP_EAGAIN && tp_publisher_txn_committing(pl->pub) && tp_mono_ns() < give_up) {
        tp_log_warn("checkpoint: %s; resuming the commit", err);
        rc = tp_publisher_txn_commit(pl->pub, pl->rk, list, flush_ms, err, sizeof(err));
      }
    }
    if (staged && rc != TP_OK) {
      /* Not committed: whatever the workers produced since the cut is
       * dropped, and they are paused again for the abort and the rewind,
       * which processes those records again. */
      tp_publisher_stage_drop(pl->pub);
      hold_from = tp_mono_ns();
      pause_workers(pl);
    }
    if (rc == TP_EAGAIN && tp_publisher_txn_committing(pl->pub)) {
      set_failed(pl, "the transaction's commit did not complete within 60 s");
      ok = false;
      goto done;
    }
    if (rc == TP_OK) {
      committed_all(ctxs, n);
      atomic_fetch_add(&pl->commits, 1);
    } else if (rc == TP_EAGAIN) {
      /* The offsets could not join the transaction in time, or a message
       * was refused: abort and do the work again. */
      char aerr[256];
      if (tp_publisher_txn_abort(pl->pub, aerr, sizeof(aerr)) != TP_OK) {
        set_failed(pl, aerr);
      } else {
        atomic_fetch_add(&pl->txn_aborts, 1);
        tp_log_warn("checkpoint: %s; transaction aborted, input rewound to the committed offsets",
                    err);
        rewind_all(pl);
      }
      ok = false;
    } else if (tp_publisher_failed(pl->pub)) {
      set_failed(pl, err);
      ok = false;
    } else {
      atomic_fetch_add(&pl->txn_aborts, 1);
      tp_log_warn("checkpoint: %s; transaction aborted, input rewound to the committed offsets",
                  err);
      rewind_all(pl);
      ok = false;
    }
    goto done;
  }
  if (list->cnt > 0) {
    tp_err_t rc = tp_publisher_flush(pl->pub, flush_ms);
    if (rc == TP_EKAFKA) {
      set_failed(pl, "an alert or dead letter could not be delivered; offsets stay uncommitted");
      ok = false;
    } else if (rc == TP_EAGAIN) {
      atomic_fetch_add(&pl->checkpoints_skipped, 1);
      tp_log_warn("checkpoint: producer still has undelivered messages after %d ms; "
                  "offsets not committed this time",
                  flush_ms);
      ok = false;
    } else {
      rd_kafka_resp_err_t e = rd_kafka_commit(pl->rk, list, 0);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        committed_all(ctxs, n);
        atomic_fetch_add(&pl->commits, 1);
      } else if (e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        atomic_fetch_add(&pl->commit_failures, 1);
        tp_log_warn("checkpoint: commit failed: %s", rd_kafka_err2str(e));
        ok = false;
      }
    }
  }
done:
  /* Committed: the held messages open the next transaction, and the
   * workers run on. Not: nothing is held, and the workers are paused. */
  if (staged && tp_publisher_stage_end(pl->pub) != TP_OK)
    set_failed(pl, tp_publisher_failure(pl->pub));
  if (held_ns != NULL)
    *held_ns = held + (hold_from != 0 ? tp_mono_ns() - hold_from : 0);
  rd_kafka_topic_partition_list_destroy(list);
  return ok;
}

static void add_ctx_to(pctx_t ***arr, size_t *n, size_t *cap, pctx_t *c) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    pctx_t **a = tp_realloc(*arr, nc * sizeof(*a));
    if (a == NULL)
      return;
    *arr = a;
    *cap = nc;
  }
  (*arr)[(*n)++] = c;
}

static void remove_ctx_from(pctx_t **arr, size_t *n, const pctx_t *c) {
  for (size_t i = 0; i < *n; i++) {
    if (arr[i] == c) {
      arr[i] = arr[--*n];
      return;
    }
  }
}

static void ctx_destroy(tp_pipeline_t *pl, pctx_t *c) {
  if (c->pq) {
    rd_kafka_queue_forward(c->pq, NULL);
    rd_kafka_queue_destroy(c->pq);
  }
  if (atomic_load(&c->restoring))
    atomic_fetch_sub(&pl->n_restoring, 1);
  remove_ctx_from(pl->workers[c->worker].ctxs, &pl->workers[c->worker].n_ctx, c);
  pthread_mutex_lock(&pl->ctx_lock);
  remove_ctx_from(pl->ctxs, &pl->n_ctx, c);
  pthread_mutex_unlock(&pl->ctx_lock);
  tp_part_destroy(c->part);
  tp_free(c);
}

/*
 * Where each partition of ctxs starts reading: SPEC's state restore. A
 * partition with a committed offset C re-reads, with alerts and dead letters
 * suppressed, from the first record whose timestamp is at least W - horizon
 * - windows.max_future_skew, where W is the partition's watermark at C
 * (stored with the offset) and the horizon covers everything that state can
 * still depend on (tp_state_horizon_ms); from C on it is live. Records are
 * written no earlier than their event time minus the allowed skew, so this
 * holds whether producers stamp records with event time or send time. When W
 * is unknown (offsets committed by something else) or the broker cannot say
 * where that is, it re-reads from the beginning: slower, never wrong. A
 * partition without a committed offset starts at auto.offset.reset and is
 * live at once.
 * @param start receives the offset to read from, per ctx.
 */
static void restore_plan(tp_pipeline_t *pl, pctx_t **ctxs, size_t n, int64_t *start) {
  rd_kafka_topic_partition_list_t *times = rd_kafka_topic_partition_list_new((int)n + 1);
  for (size_t i = 0; i < n; i++)
    if (ctxs[i]->committed > 0 && ctxs[i]->committed_wm != INT64_MIN)
      rd_kafka_topic_partition_list_add(times, pl->cfg->topics[ctxs[i]->src], ctxs[i]->partition)
          ->offset = TP_MAX(0, ctxs[i]->committed_wm - tp_state_horizon_ms(pl->st, ctxs[i]->src) -
                                   pl->cfg->max_future_skew_ms);
  rd_kafka_resp_err_t err = times->cnt ? rd_kafka_offsets_for_times(pl->rk, times, 30000)
                                       : RD_KAFKA_RESP_ERR_NO_ERROR;
  if (err)
    tp_log_warn("restore: offsets_for_times: %s; re-reading from the beginning",
                rd_kafka_err2str(err));
  for (size_t i = 0; i < n; i++) {
    pctx_t *c = ctxs[i];
    c->restore_until = -1;
    start[i] = c->committed >= 0 ? c->committed : RD_KAFKA_OFFSET_INVALID;
    if (c->committed <= 0)
      continue;
    rd_kafka_topic_partition_t *t =
        rd_kafka_topic_partition_list_find(times, pl->cfg->topics[c->src], c->partition);
    int64_t from = err || t == NULL || t->err || t->offset < 0 ? RD_KAFKA_OFFSET_BEGINNING
                                                               : t->offset;
    if (from >= c->committed)
      continue; /* nothing within the horizon before C */
    start[i] = from;
    c->restore_until = c->committed;
    tp_part_set_emit(c->part, false);
    atomic_store(&c->restoring, true);
    atomic_fetch_add(&pl->n_restoring, 1);
  }
  rd_kafka_topic_partition_list_destroy(times);
}

/*
 * After an aborted transaction: every partition's state is rebuilt from its
 * committed offset, and records after it are processed again, so the
 * discarded alerts are produced again. Workers are paused; the batch a
 * worker holds is dropped (rewind_gen), and librdkafka drops what it had
 * fetched for the old positions.
 */
static void rewind_all(tp_pipeline_t *pl) {
  size_t n = pl->n_ctx;
  if (n == 0)
    return; /* everything was lost: the next assignment restores it */
  int64_t *start = tp_calloc(n + 1, sizeof(*start));
  rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new((int)n + 1);
  if (start == NULL) {
    set_failed(pl, "out of memory rewinding partitions");
    rd_kafka_topic_partition_list_destroy(seek);
    return;
  }
  char err[256];
  /* Whatever a worker holds is stale from here on, even when a partition
   * cannot be created again below (the pipeline then stops): the workers
   * released to leave must not touch a replaced or missing partition. And
   * nothing processed since the last commit counts any more: its alerts
   * went with the aborted transaction. */
  atomic_fetch_add(&pl->rewind_gen, 1);
  for (size_t i = 0; i < n; i++)
    pl->ctxs[i]->next_offset = -1;
  for (size_t i = 0; i < n; i++) {
    pctx_t *c = pl->ctxs[i];
    if (atomic_load(&c->restoring))
      atomic_fetch_sub(&pl->n_restoring, 1);
    atomic_store(&c->restoring, false);
    /* A /metrics scrape reads c->part under ctx_lock (metrics.c): replace
     * it there, or the scrape reads a freed partition. */
    pthread_mutex_lock(&pl->ctx_lock);
    tp_part_destroy(c->part);
    if (rewind_nomem_point()) {
      c->part = NULL;
      snprintf(err, sizeof(err), "%s partition %d: out of memory (TP_FAULT_REWIND_NOMEM)",
               tp_source_name(c->src), (int)c->partition);
    } else {
      c->part = tp_part_new(pl->st, c->src, c->partition, on_alert, c, err, sizeof(err));
    }
    pthread_mutex_unlock(&pl->ctx_lock);
    if (c->part == NULL) {
      set_failed(pl, err);
      goto out;
    }
  }
  restore_plan(pl, pl->ctxs, n, start);
  for (size_t i = 0; i < n; i++) {
    pctx_t *c = pl->ctxs[i];
    int64_t off = start[i] == RD_KAFKA_OFFSET_INVALID ? RD_KAFKA_OFFSET_BEGINNING : start[i];
    rd_kafka_topic_partition_list_add(seek, pl->cfg->topics[c->src], c->partition)->offset = off;
  }
  /* librdkafka 2.0.2 has been seen to give up on a seek well before the
   * timeout when the machine is loaded (__TIMED_OUT after ~0.5 s): seeking
   * to the same offsets again is harmless, so retry within the budget. */
  uint64_t give_up = tp_mono_ns() + 30000ull * 1000000u;
  rd_kafka_error_t *e = NULL;
  for (;;) {
    int64_t left = (int64_t)(give_up - tp_mono_ns()) / 1000000;
    e = rd_kafka_seek_partitions(pl->rk, seek, (int)(left > 100 ? left : 100));
    if (e == NULL || rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR__TIMED_OUT ||
        tp_mono_ns() > give_up || atomic_load(&pl->stop_req))
      break;
    tp_log_warn("rewind: %s; seeking again", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    for (int i = 0; i < seek->cnt; i++)
      seek->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  if (e != NULL) {
    snprintf(err, sizeof(err), "rewind: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    set_failed(pl, err);
  }
  for (int i = 0; e == NULL && i < seek->cnt; i++) {
    if (seek->elems[i].err) {
      snprintf(err, sizeof(err), "rewind %s[%d]: %s", seek->elems[i].topic,
               (int)seek->elems[i].partition, rd_kafka_err2str(seek->elems[i].err));
      set_failed(pl, err);
    }
  }
out:
  tp_free(start);
  rd_kafka_topic_partition_list_destroy(seek);
}

static void on_assign(tp_pipeline_t *pl, rd_kafka_topic_partition_list_t *parts) {
  /* The group's committed offsets, before touching anything. */
  rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_copy(parts);
  /* librdkafka 2.0.2 hands a moving coordinator's errors to the caller of
   * rd_kafka_committed() (it only looks the coordinator up again): retry
   * those within the same 30 s budget. */
  uint64_t give_up = tp_mono_ns() + 30000ull * 1000000u;
  rd_kafka_resp_err_t cerr;
  for (;;) {
    int64_t left = (int64_t)(give_up - tp_mono_ns()) / 1000000;
    cerr = rd_kafka_committed(pl->rk, committed, (int)(left > 100 ? left : 100));
    bool retriable = cerr == RD_KAFKA_RESP_ERR_NOT_COORDINATOR ||
                     cerr == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE ||
                     cerr == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
                     cerr == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT;
    if (!retriable || tp_mono_ns() > give_up || atomic_load(&pl->stop_req))
      break;
    tp_log_warn("reading the committed offsets: %s; retrying", rd_kafka_err2str(cerr));
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (cerr) {
    char msg[256];
    snprintf(msg, sizeof(msg), "cannot read the committed offsets: %s", rd_kafka_err2str(cerr));
    set_failed(pl, msg);
  }

  pause_workers(pl);
  /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
  pctx_t **added = tp_calloc((size_t)parts->cnt + 1, sizeof(*added));
  int64_t *start = tp_calloc((size_t)parts->cnt + 1, sizeof(*start));
  int *index = tp_calloc((size_t)parts->cnt + 1, sizeof(*index));
  size_t n = 0;
  if (added == NULL || start == NULL || index == NULL)
    set_failed(pl, "out of memory assigning partitions");
  for (int i = 0; !cerr && added && start && index && i < parts->cnt; i++) {
    rd_kafka_topic_partition_t *tp = &parts->elems[i];
    int src = topic_source(pl->cfg, tp->topic);
    if (src < 0)
      continue;
    char err[256];
    if (pl->n_ctx == pl->cap_ctx) {
      size_t nc = pl->cap_ctx ? pl->cap_ctx * 2 : 16;
      pthread_mutex_lock(&pl->ctx_lock);
      /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
      pctx_t **a = tp_realloc(pl->ctxs, nc * sizeof(*a));
      if (a != NULL) {
        pl->ctxs = a;
        pl->cap_ctx = nc;
      }
      pthread_mutex_unlock(&pl->ctx_lock);
      if (a == NULL) {
        set_failed(pl, "out of memory assigning partitions");
        break;
      }
    }
    pctx_t *c = tp_calloc(1, sizeof(*c));
    if (c == NULL) {
      set_failed(pl, "out of memory assigning partitions");
      break;
    }
    /* The least loaded worker takes it. */
    int best = 0;
    for (int k = 1; k < pl->n_workers; k++)
      if (pl->workers[k].n_ctx < pl->workers[best].n_ctx)
        best = k;
    c->pl = pl;
    c->src = (tp_source_t)src;
    c->partition = tp->partition;
    c->worker = best;
    c->next_offset = -1;
    c->cut_offset = -1;
    c->committed = committed->elems[i].offset >= 0 ? committed->elems[i].offset : -1;
    c->committed_wm = wm_from_metadata(&committed->elems[i]);
    c->restore_until = -1;
    c->counted_until = c->committed; /* the previous owner counted those */
    atomic_init(&c->position, c->committed);
    atomic_init(&c->last_record_ms, pl->now_ms());
    atomic_init(&c->high_offset, -1);
    c->part = tp_part_new(pl->st, c->src, c->partition, on_alert, c, err, sizeof(err));
    if (c->part == NULL) {
      tp_free(c);
      set_failed(pl, err);
      break;
    }
    worker_t *w = &pl->workers[best];
    size_t before = w->n_ctx;
    add_ctx_to(&w->ctxs, &w->n_ctx, &w->cap_ctx, c);
    if (w->n_ctx == before) {
      tp_part_destroy(c->part);
      tp_free(c);
      set_failed(pl, "out of memory assigning partitions");
      break;
    }
    pthread_mutex_lock(&pl->ctx_lock);
    pl->ctxs[pl->n_ctx++] = c;
    pthread_mutex_unlock(&pl->ctx_lock);
    c->pq = rd_kafka_queue_get_partition(pl->rk, tp->topic, tp->partition);
    rd_kafka_queue_forward(c->pq, w->q);
    added[n] = c;
    index[n++] = i;
  }
  if (n > 0) {
    restore_plan(pl, added, n, start);
    for (size_t k = 0; k < n; k++) {
      parts->elems[index[k]].offset = start[k];
      if (added[k]->restore_until >= 0)
        tp_log_info("%s[%d]: rebuilding state from offset %s%lld up to the committed offset %lld",
                    pl->cfg->topics[added[k]->src], (int)added[k]->partition,
                    start[k] == RD_KAFKA_OFFSET_BEGINNING ? "beginning " : "",
                    (long long)(start[k] < 0 ? 0 : start[k]), (long long)added[k]->committed);
    }
  }
  tp_free(added);
  tp_free(start);
  tp_free(index);
  rd_kafka_topic_partition_list_destroy(committed);
  atomic_store(&pl->n_assigned, (int)pl->n_ctx);
  resume_workers(pl);
}

static void on_revoke(tp_pipeline_t *pl, rd_kafka_topic_partition_list_t *parts, bool lost) {
  pause_workers(pl);
  /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
  pctx_t **gone = tp_calloc(pl->n_ctx + 1, sizeof(*gone));
  size_t n = 0;
  if (gone == NULL) {
    /* Cannot even list them: stop; the group hands them on uncommitted. */
    set_failed(pl, "out of memory revoking partitions");
    resume_workers(pl);
    return;
  }
  for (int i = 0; i < parts->cnt; i++) {
    int src = topic_source(pl->cfg, parts->elems[i].topic);
    for (size_t k = 0; k < pl->n_ctx; k++)
      if ((int)pl->ctxs[k]->src == src && pl->ctxs[k]->partition == parts->elems[i].partition)
        gone[n++] = pl->ctxs[k];
  }
  if (!lost && !atomic_load(&pl->failed)) {
    /* Hand the partitions over committed, with every alert they caused.
     * Not once the pipeline has failed: what it processed since the last
     * commit may have lost its alerts (an aborted transaction whose
     * rewind failed, a producer that failed), and the next owner must
     * process it again, as after the final checkpoint that stopping skips. */
    checkpoint(pl, pl->ctxs, pl->n_ctx, FINAL_FLUSH_MS, NULL);
  } else if (tp_publisher_transactional(pl->pub)) {
    /* Someone else owns them now: their offsets cannot be committed, so the
     * open transaction (which holds their alerts) is aborted, and what
     * remains is rewound to its committed offsets. */
    char err[256];
    if (tp_publisher_txn_abort(pl->pub, err, sizeof(err)) != TP_OK)
      set_failed(pl, err);
    atomic_fetch_add(&pl->txn_aborts, 1);
  }
  for (size_t i = 0; i < n; i++)
    ctx_destroy(pl, gone[i]);
  if (lost && tp_publisher_transactional(pl->pub) && !atomic_load(&pl->failed))
    rewind_all(pl);
  tp_free(gone);
  atomic_store(&pl->n_assigned, (int)pl->n_ctx);
  resume_workers(pl);
}

static void log_partitions(const char *what, const rd_kafka_topic_partition_list_t *parts) {
  char buf[1024];
  size_t off = 0;
  buf[0] = '\0';
  for (int i = 0; i < parts->cnt && off < sizeof(buf) - 64; i++)
    off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s[%d]", i ? " " : "",
                            parts->elems[i].topic, (int)parts->elems[i].partition);
  tp_log_info("%s %d partition(s): %s", what, parts->cnt, buf);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  tp_pipeline_t *pl = opaque;
  bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    atomic_fetch_add(&pl->rebalances_assign, 1);
    log_partitions("assigned", parts);
    on_assign(pl, parts);
    rd_kafka_error_t *e = NULL;
    if (cooperative)
      e = rd_kafka_incremental_assign(rk, parts);
    else if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
      tp_log_error("assign failed");
    if (e) {
      tp_log_error("assign: %s", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    }
    atomic_store(&pl->assigned_once, true);
  } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    atomic_fetch_add(&pl->rebalances_revoke, 1);
    bool lost = rd_kafka_assignment_lost(rk);
    log_partitions(lost ? "lost" : "revoked", parts);
    on_revoke(pl, parts, lost);
    if (cooperative) {
      rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
      if (e) {
        tp_log_error("unassign: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(rk, NULL);
    }
  } else {
    tp_log_error("rebalance: %s", rd_kafka_err2str(err));
    rd_kafka_assign(rk, NULL);
  }
}

static int consumer_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk;
  tp_kstats_update(((tp_pipeline_t *)opaque)->kstats, json, len);
  return 0; /* librdkafka frees json */
}

static void consumer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  tp_pipeline_t *pl = opaque;
  atomic_fetch_add(&pl->consumer_errors, 1);
  char fatal[256];
  if (rd_kafka_fatal_error(rk, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    set_failed(pl, fatal);
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
    /* librdkafka would retry forever: wrong credentials do not heal. */
    char why[640];
    tp__kafka_auth_message(pl->cfg, "consumer", reason, why, sizeof(why));
    set_failed(pl, why);
    return;
  }
  tp_log_warn("consumer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* Alerts become visible to read_committed subscribers when their
 * transaction commits: commit ALERT_COMMIT_NS after the last checkpoint
 * once one is pending, rather than waiting for processing.commit_interval
 * (the first alert since a checkpoint wakes the coordinator to check).
 * A transaction commits with the workers running (checkpoint()), so the
 * next alert need not wait for anything else. An at-least-once checkpoint
 * holds the workers while it flushes and commits, so there the next one
 * also waits ALERT_COMMIT_DUTY times as long as the last one took: the
 * workers run at least 3/4 of the time instead of being parked for a
 * commit per alert. */
#define ALERT_COMMIT_NS (5u * 1000000u)
#define ALERT_COMMIT_DUTY 3u
/* While the input is more than ALERT_COMMIT_BACKLOG records behind, alerts
 * are late by the backlog anyway, and a checkpoint per alert would spend
 * the broker's and the coordinator's time (and, at least once, the
 * workers') on a commit per alert: a checkpoint for alerts waits
 * ALERT_COMMIT_DUTY_BEHIND times as long as the last one took
 * (commit_interval still applies). */
#define ALERT_COMMIT_BACKLOG 10000
#define ALERT_COMMIT_DUTY_BEHIND 20u

/* Records of the assigned partitions not processed yet, from the high
 * watermarks of the last fetch responses (no request). @thread coordinator */
static int64_t input_backlog(tp_pipeline_t *pl) {
  int64_t sum = 0;
  for (size_t i = 0; i < pl->n_ctx; i++) {
    pctx_t *c = pl->ctxs[i];
    int64_t pos = atomic_load_explicit(&c->position, memory_order_relaxed), lo = -1, hi = -1;
    rd_kafka_get_watermark_offsets(pl->rk, pl->cfg->topics[c->src], c->partition, &lo, &hi);
    if (pos < 0)
      pos = lo;
    if (hi >= 0 && pos >= 0 && hi > pos)
      sum += hi - pos;
  }
  return sum;
}

static bool alert_checkpoint_due(tp_pipeline_t *pl, uint64_t since, uint64_t last_cost) {
  if (tp_publisher_pending(pl->pub) == 0 || since < ALERT_COMMIT_NS ||
      (!tp_publisher_transactional(pl->pub) && since < ALERT_COMMIT_DUTY * last_cost))
    return false;
  return since >= ALERT_COMMIT_DUTY_BEHIND * last_cost ||
         input_backlog(pl) <= ALERT_COMMIT_BACKLOG;
}

/* Logs "caught up" when every assigned partition has been processed to the
 * end of its log: the first time after start, however short the backlog
 * was, and later after the input was behind for at least CAUGHT_UP_MIN_NS
 * (after a restore, an outage): the moment a backlog is drained, without
 * the per-batch flicker of live traffic. *behind_since is when the input
 * fell behind, 0 while it is caught up; *once, whether it was logged yet.
 * @thread coordinator */
#define CAUGHT_UP_MIN_NS (1000u * 1000000u)

static void note_caught_up(tp_pipeline_t *pl, uint64_t *behind_since, bool *once) {
  bool eof = pl->n_ctx > 0;
  for (size_t i = 0; eof && i < pl->n_ctx; i++)
    eof = atomic_load_explicit(&pl->ctxs[i]->at_eof, memory_order_relaxed) &&
          !atomic_load_explicit(&pl->ctxs[i]->restoring, memory_order_relaxed);
  uint64_t now = tp_mono_ns();
  if (!eof) {
    if (*behind_since == 0)
      *behind_since = now;
    return;
  }
  if (*behind_since != 0 && (!*once || now - *behind_since >= CAUGHT_UP_MIN_NS)) {
    *once = true;
    tp_pipeline_totals_t t;
    tp_pipeline_totals(pl, &t);
    /* When the records were processed: the end of the logs is known only
     * from the next fetch after the last record, which the broker holds
     * for up to fetch.wait.max.ms when no partition has more. */
    int64_t first = INT64_MAX, last = 0;
    for (int i = 0; i < pl->n_workers; i++) {
      int64_t f = atomic_load_explicit(&pl->workers[i].first_batch_ms, memory_order_relaxed);
      int64_t l = atomic_load_explicit(&pl->workers[i].last_batch_ms, memory_order_relaxed);
      if (f != 0 && f < first)
        first = f;
      if (l > last)
        last = l;
    }
    char span[160] = "";
    if (first != INT64_MAX) {
      char from[40], to[40];
      tp_time_format(first, from, sizeof(from));
      tp_time_format(last, to, sizeof(to));
      snprintf(span, sizeof(span), " (the first in hand at %s, the last processed at %s)", from,
               to);
    }
    tp_log_info("caught up: %zu partition(s) at the end of their logs after %.1f s behind; "
                "%llu records consumed since start%s; %llu checkpoints held the workers for "
                "%.2f s in all",
                pl->n_ctx, (double)(now - *behind_since) / 1e9, (unsigned long long)t.consumed,
                span, (unsigned long long)pl->checkpoints, (double)pl->checkpoint_hold_ns / 1e9);
  }
  *behind_since = 0;
}

/* After a transaction abort the workers wait ABORT_BACKOFF_MS, doubled for
 * each further abort in a row up to ABORT_BACKOFF_MAX_MS; a commit ends the
 * streak. */
#define ABORT_BACKOFF_MS 250u
#define ABORT_BACKOFF_MAX_MS 10000u

static void *coordinator_main(void *arg) {
  tp_pipeline_t *pl = arg;
  uint64_t interval_ns = (uint64_t)pl->cfg->commit_interval_ms * 1000000u;
  uint64_t last = tp_mono_ns();
  uint64_t last_cost = 0; /* how long the last checkpoint took */
  uint64_t behind_since = 0;
  bool caught_up_once = false;
  unsigned abort_streak = 0;
  if (tp_publisher_transactional(pl->pub)) {
    /* Before the first poll, so before any partition is assigned: fences an
     * older instance with the same transactional.id and aborts what it left
     * open, then opens the first transaction. */
    char err[512];
    if (tp_publisher_txn_start(pl->pub, 60000, &pl->stop_req, err, sizeof(err)) != TP_OK &&
        !atomic_load(&pl->stop_req))
      set_failed(pl, err);
  }
  /* Before the first record: the first alert need not wait for a lookup.
   * Not when starting already failed (wrong credentials, say): the lookup
   * could only wait for its timeout. */
  if (!atomic_load(&pl->failed) && !atomic_load(&pl->stop_req))
    tp_publisher_prepare_topics(pl->pub, 5000);
  while (!atomic_load(&pl->stop_req) && !atomic_load(&pl->failed)) {
    /* Woken early by a worker's alert (on_alert); an alert waiting for
     * the minimum spacing after the last checkpoint waits no longer. */
    uint64_t since = tp_mono_ns() - last;
    int poll_ms = COORDINATOR_POLL_MS;
    if (tp_publisher_pending(pl->pub) > 0 && since < ALERT_COMMIT_NS)
      poll_ms = (int)((ALERT_COMMIT_NS - since) / 1000000u) + 1;
    rd_kafka_message_t *msg = rd_kafka_consumer_poll(pl->rk, poll_ms);
    since = tp_mono_ns() - last;
    if (msg) {
      /* Records arrive on the workers' queues; the main queue only carries
       * errors. */
      if (msg->err && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        atomic_fetch_add(&pl->consumer_errors, 1);
        tp_log_warn("consumer: %s", rd_kafka_message_errstr(msg));
      }
      rd_kafka_message_destroy(msg);
    }
    tp_publisher_poll(pl->pub, 0);
    if (tp_publisher_failed(pl->pub))
      set_failed(pl, tp_publisher_failure(pl->pub));
    note_caught_up(pl, &behind_since, &caught_up_once);
    if (pl->hold_until_ns != 0) {
      if (tp_mono_ns() >= pl->hold_until_ns) {
        pl->hold_until_ns = 0;
        resume_workers(pl);
        last = tp_mono_ns();
      }
    } else if (since >= interval_ns || alert_checkpoint_due(pl, since, last_cost)) {
      uint64_t began = tp_mono_ns();
      atomic_store_explicit(&pl->alert_woke, false, memory_order_relaxed);
      pause_workers(pl);
      uint64_t aborts = atomic_load(&pl->txn_aborts);
      uint64_t commits = atomic_load(&pl->commits);
      uint64_t held = 0;
      uint64_t paused = tp_mono_ns() - began;
      checkpoint(pl, pl->ctxs, pl->n_ctx, FLUSH_MS, &held);
      if (atomic_load(&pl->txn_aborts) != aborts) {
        /* The transaction failed and the input was rewound. An output
         * topic without a leader fails the next one at once: back off
         * before doing the work again, so a long outage costs a handful
         * of aborts, not one every few milliseconds. */
        abort_streak++;
        unsigned doublings = abort_streak - 1 < 6 ? abort_streak - 1 : 6;
        uint64_t ms = (uint64_t)ABORT_BACKOFF_MS << doublings;
        if (ms > ABORT_BACKOFF_MAX_MS)
          ms = ABORT_BACKOFF_MAX_MS;
        if (abort_streak > 1)
          tp_log_warn("checkpoint: %u transactions aborted in a row; input held for %llu ms",
                      abort_streak, (unsigned long long)ms);
        pl->hold_until_ns = tp_mono_ns() + ms * 1000000u;
      } else {
        if (atomic_load(&pl->commits) != commits)
          abort_streak = 0;
        resume_workers(pl);
      }
      last = tp_mono_ns();
      /* The duty rules above space checkpoints by what a whole one costs
       * (the broker's round trips share the machine with the workers), not
       * only by the part that held the workers. */
      last_cost = last - began;
      pl->checkpoints++;
      pl->checkpoint_hold_ns += paused + held;
    }
  }

  /* Shutdown: let the workers finish their batch and leave. */
  pl->hold_until_ns = 0;
  atomic_store(&pl->workers_quit, true);
  if (atomic_load(&pl->failed))
    tp_publisher_stop(pl->pub);
  resume_workers(pl);
  /* A worker waiting for room in the producer queue (broker unreachable)
   * is released after FINAL_FLUSH_MS: its record stays uncommitted and the
   * exit code says the stop was not clean. */
  uint64_t give_up = tp_mono_ns() + (uint64_t)FINAL_FLUSH_MS * 1000000u;
  pthread_mutex_lock(&pl->bar_lock);
  while (pl->live_workers > 0) {
    pthread_mutex_unlock(&pl->bar_lock);
    tp_publisher_poll(pl->pub, 10);
    if (tp_mono_ns() > give_up && !atomic_load(&pl->failed)) {
      set_failed(pl, "workers still waiting for the producer at shutdown");
      tp_publisher_stop(pl->pub);
    }
    pthread_mutex_lock(&pl->bar_lock);
  }
  pthread_mutex_unlock(&pl->bar_lock);
  for (int i = 0; i < pl->n_workers; i++)
    pthread_join(pl->workers[i].thread, NULL);

  if (!atomic_load(&pl->failed) && !checkpoint(pl, pl->ctxs, pl->n_ctx, FINAL_FLUSH_MS, NULL))
    set_failed(pl, "final commit failed");
  /* Leaving the group revokes what is left (rebalance_cb, no workers). */
  rd_kafka_consumer_close(pl->rk);
  while (pl->n_ctx > 0)
    ctx_destroy(pl, pl->ctxs[pl->n_ctx - 1]);
  atomic_store(&pl->coordinator_done, true);
  return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------ */

tp_pipeline_t *tp_pipeline_new(const tp_pipeline_opts_t *opts, char *errstr, size_t errstr_size) {
  const tp_config_t *cfg = opts->cfg;
  tp_pipeline_t *pl = tp_calloc(1, sizeof(*pl));
  rd_kafka_conf_t *conf = NULL;
  char err[512];
  if (pl == NULL) {
    snprintf(errstr, errstr_size, "pipeline: out of memory");
    return NULL;
  }
  pl->cfg = cfg;
  pl->now_ms = opts->now_ms ? opts->now_ms : real_now;
  pthread_mutex_init(&pl->bar_lock, NULL);
  pthread_mutex_init(&pl->ctx_lock, NULL);
  pthread_cond_init(&pl->bar_workers, NULL);
  pthread_cond_init(&pl->bar_coord, NULL);

  if (tp_decode_check_schemas(errstr, errstr_size) != TP_OK)
    goto err;
  pl->alerts_by_rule = tp_calloc(cfg->n_rules * 2 + 1, sizeof(*pl->alerts_by_rule));
  pl->kstats = tp_kstats_new("consumer");
  if (pl->alerts_by_rule == NULL || pl->kstats == NULL) {
    snprintf(errstr, errstr_size, "pipeline: out of memory");
    goto err;
  }
  pl->st = tp_state_new(cfg, errstr, errstr_size);
  if (pl->st == NULL)
    goto err;
  pl->pub = tp_publisher_new(cfg, errstr, errstr_size);
  if (pl->pub == NULL)
    goto err;

  conf = rd_kafka_conf_new();
  /* Defaults the kafka section may override... */
  rd_kafka_conf_set(conf, "client.id", "touchpulse", err, sizeof(err));
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err));
  rd_kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", err, sizeof(err));
  rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof(err));
  rd_kafka_conf_set(conf, "statistics.interval.ms", TP_KAFKA_STATS_INTERVAL_MS, err, sizeof(err));
  /* Each partition's fetch queue is forwarded to its worker's queue, and
   * librdkafka 2.0.2 compares the forwarded queue's length, shared by all of
   * the worker's partitions, with queued.min.messages (default 100 000):
   * past it every one of those partitions stops fetching for
   * fetch.error.backoff.ms (500 ms), and a worker that drains 100 000
   * records in a fraction of that sits idle for the rest. A backlog then
   * drained at a fifth of the workers' speed. The bound that matters for
   * memory stays queued.max.messages.kbytes (64 MiB per worker queue). */
  rd_kafka_conf_set(conf, "queued.min.messages", "1000000", err, sizeof(err));
  if (tp__kafka_conf_apply(conf, cfg, false, errstr, errstr_size) != TP_OK)
    goto err;
  /* ...and the ones the offset and idle logic depend on, which it may not. */
  static const char *const forced[][2] = {{"enable.auto.commit", "false"},
                                          {"enable.auto.offset.store", "false"},
                                          {"enable.partition.eof", "true"}};
  for (size_t i = 0; i < TP_ARRAY_SIZE(forced); i++) {
    const char *user = tp_config_kafka_get(cfg, forced[i][0]);
    if (user && strcmp(user, forced[i][1]) != 0)
      tp_log_warn("kafka.%s=%s is ignored: touchpulse needs %s", forced[i][0], user, forced[i][1]);
    if (rd_kafka_conf_set(conf, forced[i][0], forced[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      snprintf(errstr, errstr_size, "consumer: %s", err);
      goto err;
    }
  }
  rd_kafka_conf_set_opaque(conf, pl);
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  rd_kafka_conf_set_log_cb(conf, tp__kafka_log_cb);
  rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
  rd_kafka_conf_set_stats_cb(conf, consumer_stats_cb);
  pl->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (pl->rk == NULL) {
    snprintf(errstr, errstr_size, "consumer: %s", err);
    goto err;
  }
  conf = NULL;
  rd_kafka_poll_set_consumer(pl->rk);
  pl->coord_q = rd_kafka_queue_get_consumer(pl->rk);

  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  pl->n_workers = cfg->workers > 0 ? cfg->workers : (cores > 0 ? (int)cores : 1);
  pl->workers = tp_calloc((size_t)pl->n_workers, sizeof(*pl->workers));
  if (pl->workers == NULL) {
    snprintf(errstr, errstr_size, "pipeline: out of memory");
    goto err;
  }
  for (int i = 0; i < pl->n_workers; i++) {
    worker_t *w = &pl->workers[i];
    w->pl = pl;
    w->id = i;
    w->q = rd_kafka_queue_new(pl->rk);
    w->codec = tp_alert_codec_new(errstr, errstr_size);
    if (w->q == NULL || w->codec == NULL)
      goto err;
  }
  return pl;
err:
  if (conf)
    rd_kafka_conf_destroy(conf);
  tp_pipeline_destroy(pl);
  return NULL;
}

tp_err_t tp_pipeline_start(tp_pipeline_t *pl, char *errstr, size_t errstr_size) {
  const tp_config_t *cfg = pl->cfg;
  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(TP_SRC_COUNT);
  for (int s = 0; s < TP_SRC_COUNT; s++)
    rd_kafka_topic_partition_list_add(topics, cfg->topics[s], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(pl->rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err) {
    snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(err));
    return TP_EKAFKA;
  }
  pl->live_workers = pl->n_workers;
  for (int i = 0; i < pl->n_workers; i++) {
    if (pthread_create(&pl->workers[i].thread, NULL, worker_main, &pl->workers[i]) != 0) {
      snprintf(errstr, errstr_size, "cannot start worker threads");
      /* Threads already started see the quit flag; the rest never ran. */
      pthread_mutex_lock(&pl->bar_lock);
      pl->live_workers -= pl->n_workers - i;
      pthread_mutex_unlock(&pl->bar_lock);
      pl->n_workers = i;
      atomic_store(&pl->stop_req, true);
      break;
    }
  }
  if (pthread_create(&pl->coordinator, NULL, coordinator_main, pl) != 0) {
    snprintf(errstr, errstr_size, "cannot start the coordinator thread");
    atomic_store(&pl->workers_quit, true);
    for (int i = 0; i < pl->n_workers; i++)
      pthread_join(pl->workers[i].thread, NULL);
    pl->n_workers = 0;
    return TP_EIO;
  }
  pl->started = true;
  return atomic_load(&pl->stop_req) ? TP_EIO : TP_OK;
}

tp_err_t tp_pipeline_stop(tp_pipeline_t *pl) {
  if (pl == NULL || !pl->started)
    return TP_OK;
  atomic_store(&pl->stop_req, true);
  pthread_join(pl->coordinator, NULL);
  pl->started = false;
  return atomic_load(&pl->failed) ? TP_EKAFKA : TP_OK;
}

void tp_pipeline_destroy(tp_pipeline_t *pl) {
  if (pl == NULL)
    return;
  tp_pipeline_stop(pl);
  for (int i = 0; pl->workers && i < pl->n_workers; i++) {
    worker_t *w = &pl->workers[i];
    if (w->q)
      rd_kafka_queue_destroy(w->q);
    tp_alert_codec_destroy(w->codec);
    tp_buf_free(&w->abuf);
    tp_free(w->ctxs);
  }
  if (pl->coord_q)
    rd_kafka_queue_destroy(pl->coord_q);
  if (pl->rk)
    rd_kafka_destroy(pl->rk);
  tp_publisher_destroy(pl->pub);
  tp_kstats_destroy(pl->kstats);
  tp_state_destroy(pl->st);
  tp_free(pl->workers);
  tp_free(pl->ctxs);
  tp_free(pl->alerts_by_rule);
  pthread_mutex_destroy(&pl->bar_lock);
  pthread_mutex_destroy(&pl->ctx_lock);
  pthread_cond_destroy(&pl->bar_workers);
  pthread_cond_destroy(&pl->bar_coord);
  tp_free(pl);
}

bool tp_pipeline_ready(const tp_pipeline_t *pl) {
  return atomic_load(&pl->assigned_once) && atomic_load(&pl->n_restoring) == 0;
}
bool tp_pipeline_failed(const tp_pipeline_t *pl) { return atomic_load(&pl->failed); }
tp_state_t *tp_pipeline_state(tp_pipeline_t *pl) { return pl->st; }
void tp_pipeline_metrics(tp_pipeline_t *pl, tp_buf_t *out) { tp__pipeline_metrics(pl, out); }

void tp__pipeline_sum(tp_pipeline_t *pl, tp_pipeline_sums_t *s) {
  memset(s, 0, sizeof(*s));
  for (int i = 0; i < pl->n_workers; i++) {
    wstats_t *w = &pl->workers[i].stats;
    for (int src = 0; src < TP_SRC_COUNT; src++) {
      s->consumed[src] += atomic_load_explicit(&w->consumed[src], memory_order_relaxed);
      s->applied[src] += atomic_load_explicit(&w->applied[src], memory_order_relaxed);
      s->late[src] += atomic_load_explicit(&w->late[src], memory_order_relaxed);
      s->duplicates[src] += atomic_load_explicit(&w->duplicates[src], memory_order_relaxed);
      s->overflow[src] += atomic_load_explicit(&w->overflow[src], memory_order_relaxed);
      for (int r = 1; r < TP_REJECT_COUNT; r++)
        s->rejected[src][r] += atomic_load_explicit(&w->rejected[src][r], memory_order_relaxed);
      uint64_t cum = 0;
      for (int b = 0; b <= TP_LATENCY_BUCKETS; b++) {
        cum += atomic_load_explicit(&w->latency[src][b], memory_order_relaxed);
        s->latency[src][b] += cum;
      }
      s->latency_sum_ms[src] += atomic_load_explicit(&w->latency_sum_ms[src], memory_order_relaxed);
    }
  }
}

void tp_pipeline_totals(tp_pipeline_t *pl, tp_pipeline_totals_t *t) {
  tp_pipeline_sums_t s;
  tp__pipeline_sum(pl, &s);
  memset(t, 0, sizeof(*t));
  for (int src = 0; src < TP_SRC_COUNT; src++) {
    t->consumed += s.consumed[src];
    t->applied += s.applied[src];
    t->late += s.late[src];
    t->duplicates += s.duplicates[src];
    t->overflow += s.overflow[src];
    for (int r = 1; r < TP_REJECT_COUNT; r++)
      t->rejected += s.rejected[src][r];
  }
  const tp_publisher_stats_t *ps = tp_publisher_stats(pl->pub);
  t->alerts_produced = atomic_load(&ps->alerts_produced);
  t->alerts_delivered = atomic_load(&ps->alerts_delivered);
  t->deadletters_delivered = atomic_load(&ps->deadletters_delivered);
  t->commits = atomic_load(&pl->commits);
}
