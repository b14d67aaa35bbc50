/*
 * state.h -- windowed per-touchpoint state, watermarks and rule evaluation,
 * kept per input partition. Pure: no librdkafka, no libuv, no clock.
 *
 * A tp_state_t holds what all partitions share: the compiled rules, the
 * lock-free touchpoint tables (one per input topic) and the registry of
 * partitions. A tp_part_t is one input partition's state: its watermark, its
 * touchpoints' step-bucket rings, its ticket table (support) and its
 * duplicate-detection ring. Events are applied to a tp_part_t in the
 * partition's order; whenever the watermark passes step boundaries, the rules
 * of the partition's topic are evaluated at each boundary in order, and
 * FIRING/RESOLVED transitions are handed to the partition's alert callback.
 * The alerts are therefore a function of each partition's records in order.
 *
 * Threads: a tp_part_t and its touchpoint entries are written by one thread
 * at a time (the worker that owns the partition). tp_state_view_*() may be
 * called from any thread at any time: it reads the values each entry
 * publishes at every evaluation (the last closed windows) through a
 * sequence lock, never the buckets the worker is writing.
 */
#ifndef TOUCHPULSE_STATE_H
#define TOUCHPULSE_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "touchpulse/buf.h"
#include "touchpulse/config.h"
#include "touchpulse/event.h"
#include "touchpulse/rules.h"

typedef struct tp_state_s tp_state_t;
typedef struct tp_part_s tp_part_t;

typedef enum { TP_ALERT_FIRING = 0, TP_ALERT_RESOLVED = 1 } tp_alert_state_t;

/** One alert transition; borrowed for the duration of the callback. */
typedef struct tp_alert_s {
  const tp_rule_t *rule;
  const char *touchpoint; /* not NUL-terminated */
  uint32_t touchpoint_len;
  tp_alert_state_t state;
  double value;
  double threshold;       /* the threshold (FIRING) or clear level (RESOLVED) */
  int64_t window_start, window_end;
  int64_t samples;
  uint8_t stage, channel; /* as last seen before window_end */
  tp_source_t source;     /* provenance, not part of the schema */
  int32_t partition;
} tp_alert_t;

typedef void tp_alert_cb(void *opaque, const tp_alert_t *alert);

/** The 32 lowercase hex digits of the alert's id (see common.h tp_hash128). */
void tp_alert_id(const tp_alert_t *alert, char out[33]);

/* ---- shared state ------------------------------------------------------ */

/**
 * @brief Compile cfg's rules and create the touchpoint tables.
 *        cfg is borrowed and must outlive the state.
 * @returns the state, or NULL with a message in errstr.
 */
tp_state_t *tp_state_new(const tp_config_t *cfg, char *errstr, size_t errstr_size);
/** Destroy; every partition must have been destroyed first. NULL-safe. */
void tp_state_destroy(tp_state_t *st);

/** Counters of one partition; written by its owner, read by anyone. */
typedef struct {
  _Atomic uint64_t applied;
  _Atomic uint64_t late;
  _Atomic uint64_t duplicates;
  _Atomic uint64_t overflow;         /* events of touchpoints over the cap */
  _Atomic uint64_t tickets_evicted;  /* tickets dropped at support.max_tickets */
  _Atomic uint64_t evaluations;      /* boundaries evaluated */
  _Atomic uint64_t alerts_fired;
  _Atomic uint64_t alerts_resolved;
  _Atomic int64_t watermark;         /* INT64_MIN before the first event */
  _Atomic int64_t touchpoints;
  _Atomic int64_t tickets;
} tp_part_stats_t;

/* ---- one partition ------------------------------------------------------ */

typedef enum {
  TP_APPLY_OK,         /* applied to its window bucket */
  TP_APPLY_LATE,       /* below the partition's watermark: counted only */
  TP_APPLY_DUPLICATE,  /* event_id seen among the last dedup.depth applied */
  TP_APPLY_OVERFLOW,   /* new touchpoint over state.max_touchpoints */
  TP_APPLY_NOMEM,      /* could not allocate state for it: counted as overflow */
  TP_APPLY_INVALID,    /* occurred_at outside what the windows can hold (> year 2100) */
} tp_apply_t;

/**
 * @brief Create the state of one input partition and register it.
 * @param cb, opaque  receive alerts (on the calling thread of apply/advance).
 * @returns NULL with a message in errstr on failure (out of memory, or the
 *          partition already registered).
 */
tp_part_t *tp_part_new(tp_state_t *st, tp_source_t src, int32_t partition,
                       tp_alert_cb *cb, void *opaque, char *errstr,
                       size_t errstr_size);

/** Unregister, remove the partition's touchpoints from the table, free. NULL-safe. */
void tp_part_destroy(tp_part_t *part);

/**
 * @brief Apply one validated event (ev->source must be the partition's).
 *        Raises the watermark to occurred_at - allowed_lateness and
 *        evaluates every boundary it passes, in order.
 */
tp_apply_t tp_part_apply(tp_part_t *part, const tp_event_t *ev);

/**
 * What tp_part_prefetch() computed for one record: the hashes of its key
 * and of its event id, which tp_part_apply_hinted() takes instead of
 * hashing them again. Read by the state only, and trusted only where it
 * provably describes the decoded event (see tp_part_apply_hinted()).
 */
typedef struct {
  const tp_part_t *part; /* the partition it was computed for; NULL: empty */
  const char *key;       /* the record's key, NULL when it was not hashed */
  size_t key_len;
  uint64_t key_hash;     /* of the partition's state key for `key` */
  const char *id;        /* the event id tp_peek_event_id() found in the value */
  size_t id_len;
  uint64_t id_hash;
  const void *node;      /* what tp_part_prefetch_entry() found, or NULL */
} tp_part_hint_t;

/**
 * @brief Hint that the record with this key and value (not yet decoded)
 *        comes soon: starts fetching the slot of the touchpoint table that
 *        the key is looked up in (records are keyed by touchpoint, SPEC),
 *        and the slot of the duplicate index that its event_id is looked up
 *        in (tp_peek_event_id()). Changes nothing; fills *hint. A NULL key
 *        or value skips its part.
 */
void tp_part_prefetch(const tp_part_t *part, const char *key, size_t key_len, const void *value,
                      size_t len, tp_part_hint_t *hint);

/** Second step of the hint, once the slot had time to arrive: starts
 *  fetching the touchpoint's entry that the slot points to, and keeps it in
 *  the hint for the third. */
void tp_part_prefetch_entry(const tp_part_t *part, tp_part_hint_t *hint);

/** Third step, once the entry had time to arrive: when the entry the second
 *  step found is one of this partition's, starts fetching the bucket it
 *  wrote last, where an event of the same step goes, or the whole ring
 *  when it is a few buckets (the event's step may take another one).
 *  @thread the partition's writer only (it reads the entry's private
 *  ring). */
void tp_part_prefetch_bucket(const tp_part_t *part, const tp_part_hint_t *hint);

/**
 * @brief tp_part_apply() with the hashes of tp_part_prefetch(). The event
 *        id's hash is used when the decoder returned the very bytes that
 *        were peeked (same address and length), the key's when the hint is
 *        of this partition and the record's key equals the event's
 *        touchpoint; otherwise they are computed. hint may be NULL.
 */
tp_apply_t tp_part_apply_hinted(tp_part_t *part, const tp_event_t *ev, const tp_part_hint_t *hint);

/**
 * @brief Raise the watermark to at least wm without an event (an idle
 *        partition following the others). No-op before the first event.
 */
void tp_part_advance(tp_part_t *part, int64_t wm);

/** @returns the watermark, or INT64_MIN before the first event. */
int64_t tp_part_watermark(const tp_part_t *part);

/** While false, transitions update state but no alert reaches the callback
 *  (rebuilding state from history). Default true. */
void tp_part_set_emit(tp_part_t *part, bool on);

const tp_part_stats_t *tp_part_stats(const tp_part_t *part);
tp_source_t tp_part_source(const tp_part_t *part);
int32_t tp_part_partition(const tp_part_t *part);

/* ---- read-only views, any thread ---------------------------------------- */

/**
 * @brief Append the JSON view of one touchpoint: for each input topic it
 *        appears in, the metrics of every configured window length over the
 *        last evaluated window, and each matching rule's state.
 * @returns true when the touchpoint is known, false otherwise (nothing written).
 */
bool tp_state_view_touchpoint(tp_state_t *st, const char *touchpoint,
                              size_t len, tp_buf_t *out);

/** One row of the live view: a touchpoint's headline metrics. */
typedef struct {
  char touchpoint[TP_TOUCHPOINT_MAX + 1];
  tp_source_t source;
  int32_t partition;
  int64_t window_end;          /* end of the last evaluated window, 0 = none */
  int64_t window_ms;           /* the window length the values are over */
  double values[8];            /* per source, see tp_state_row_metrics() */
  int64_t samples[8];
  bool defined[8];
  uint8_t stage, channel;
  uint8_t firing;              /* rules of this touchpoint now FIRING */
  uint8_t pending;             /* rules now PENDING */
} tp_state_row_t;

/** @returns the metrics a row of this source shows, in order, and their count. */
const tp_metric_t *tp_state_row_metrics(tp_source_t src, size_t *n);

/**
 * @brief Call cb with a row for every touchpoint (every topic and partition),
 *        up to max rows. @returns the number of rows visited.
 */
size_t tp_state_foreach_row(tp_state_t *st, size_t max,
                            void (*cb)(const tp_state_row_t *row, void *opaque),
                            void *opaque);

/**
 * @brief How far back in event time, from the watermark, a partition of src
 *        must be re-read to rebuild its state: the longest window of its
 *        rules, the allowed lateness and the longest `for` in steps, plus
 *        support.ticket_ttl for support.
 */
int64_t tp_state_horizon_ms(const tp_state_t *st, tp_source_t src);

/**
 * @brief Append the per-touchpoint gauge families (Prometheus text) for the
 *        (metric, window) pairs the rules name, each rule's state per
 *        touchpoint, and touchpulse_touchpoints_unexported: at most
 *        max_touchpoints touchpoints per input topic, those with a rule
 *        PENDING or FIRING first. On allocation failure out is marked failed.
 */
void tp_state_export_metrics(tp_state_t *st, size_t max_touchpoints, tp_buf_t *out);

/** Table sizes for /metrics. */
size_t tp_state_touchpoints(const tp_state_t *st, tp_source_t src);
size_t tp_state_max_touchpoints(const tp_state_t *st);
uint64_t tp_state_table_overflow(const tp_state_t *st, tp_source_t src);

/**
 * @brief Call cb for each registered partition (any thread). The partition
 *        stays valid during the callback.
 */
void tp_state_foreach_part(tp_state_t *st,
                           void (*cb)(const tp_part_t *part, void *opaque),
                           void *opaque);

#endif
