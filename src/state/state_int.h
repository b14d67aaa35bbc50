/*
 * state_int.h -- structures shared by the files of src/state/: step buckets,
 * touchpoint entries, the ticket table and the dedup ring. Nothing outside
 * src/state/ includes this (tests aside).
 */
#ifndef TOUCHPULSE_STATE_INT_H
#define TOUCHPULSE_STATE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "touchpulse/hist.h"
#include "touchpulse/state.h"
#include "touchpulse/table.h"

#define TP_NONE_MS INT64_MIN
#define TP_MAX_VIEWS 8
#define TP_MAX_RULES_PER_SOURCE 256

/* ---- step buckets ------------------------------------------------------- */

/*
 * Every bucket starts with this header. step1 is the bucket's step number
 * (occurred_at / step) plus one, 0 for a slot never used: a ring slot holds
 * step n only while step1 == n + 1, so reading never needs to clear slots
 * ahead of time, and a writer recycles a stale slot when it first writes.
 */
typedef struct {
  uint32_t step1;
  uint32_t last_off; /* ms into the step of the newest event (for labels) */
  uint8_t stage, channel, has_sc, pad_;
} tp_bhdr_t;

/*
 * A bucket's counters and a window's sums share one layout per source: word
 * i of a window's sums (uint64_t) is the sum of counter i of its buckets,
 * the 32-bit counters first, then the 64-bit ones. Adding or subtracting a
 * bucket is then a loop (fold_view in part.c), and the metrics read words by
 * these indices (tp__metric_value).
 */
enum { /* feedback */
  TP_W_RESPONSES,
  TP_W_CSAT,                    /* [5]: csat 1..5 */
  TP_W_NPS = TP_W_CSAT + 5,     /* [3]: promoters 9-10, passives 7-8, detractors 0-6 */
  TP_W_CES_N = TP_W_NPS + 3,
  TP_W_CES_SUM,
  TP_W_CLI_N,
  TP_W_CLI_SUM3,                /* sum of nps + repurchase + try_other */
  TP_W_FB
};
enum { /* support */
  TP_W_OPENED,
  TP_W_COMPLAINTS,
  TP_W_BREACHES,
  TP_W_FR_N,
  TP_W_RES_N,
  TP_W_FCR_N,
  TP_W_SUP32,                   /* 64-bit counters from here */
  TP_W_FR_SUM = TP_W_SUP32,
  TP_W_RES_SUM,
  TP_W_SUP
};
enum { /* commerce */
  TP_W_ORDERS,
  TP_W_RETURNS,
  TP_W_COM
};

#define TP_AGG_WORDS_MAX TP_W_FB

typedef struct {
  tp_bhdr_t h;
  uint32_t c[TP_W_FB];
} tp_fb_bucket_t;

typedef struct {
  tp_bhdr_t h;
  uint32_t c[TP_W_SUP32];
  uint64_t c64[TP_W_SUP - TP_W_SUP32];
  tp_shist_t fr, res;
} tp_sup_bucket_t;

typedef struct {
  tp_bhdr_t h;
  uint32_t c[TP_W_COM];
} tp_com_bucket_t;

/*
 * The quantiles of a support window, in this order: first response p50,
 * p90, p99, resolution p50, p90. They come from the histograms of the
 * window's buckets, which only the partition's thread may read, so the
 * writer publishes them next to the sums; every other metric is computed
 * from the sums by whoever reads them.
 */
#define TP_QUANTILES 5

/* ---- per-source layout -------------------------------------------------- */

#define TP_MAX_SOURCE_METRICS 11

typedef struct {
  tp_source_t src;
  tp_table_t *table;
  const tp_rule_t **rules;  /* the rules whose metric comes from this source */
  size_t n_rules;
  uint8_t *rule_view;       /* per rule: index into view_ms */
  uint8_t *rule_slot;       /* per rule: index into metrics */
  int64_t view_ms[TP_MAX_VIEWS]; /* distinct window lengths, ascending */
  size_t n_views;
  int64_t max_window_ms;
  tp_metric_t metrics[TP_MAX_SOURCE_METRICS]; /* this source's metrics */
  size_t n_metrics;
  size_t bucket_size;
  size_t agg_words;         /* words of a window's sums (TP_W_FB etc.) */
  size_t pub_words;         /* published per view: the sums, then quantiles */
  size_t ring_len;
  size_t wheel_len;
} tp_kind_t;

/* ---- touchpoint entries ------------------------------------------------- */

/* Buckets a sparse ring holds at most (see tp__ring_find). */
#define TP_RING_SPARSE_MAX 16

/*
 * One touchpoint of one partition of one input topic, allocated as a single
 * block: the struct, then the key, rule states, window sums, published
 * phases, published values and the bucket ring.
 *
 * sums of view v always equal the sum of the buckets inside its window as of
 * the last boundary the entry was evaluated at: a bucket is added when it
 * enters the windows and subtracted when it leaves one, both at boundaries
 * the entry is scheduled for (part.c), and a bucket is frozen once it has
 * entered (anything later for it would be late).
 *
 * Written only by the thread that owns the partition. Other threads read
 * only node (immutable after insert) and the published fields: view_seq,
 * view_end, pub_phase[], sums[], pub_stage/channel. The writer publishes
 * under a sequence lock: view_seq odd while it writes, release store of the
 * even value after; readers load view_seq (acquire), read the fields
 * (acquire) and retry when view_seq moved (tp__snapshot).
 *
 * The sums are what is published, not metric values: an evaluation
 * computes only the metrics its rules read, and a reader (the HTTP view,
 * /metrics) computes the others from the sums it copied.
 */
typedef struct tp_entry_s {
  tp_table_node_t node;
  /* [kind->n_views * kind->pub_words]: per window, its running sums
   * (TP_W_*) and for support its quantiles (double bits, NaN when
   * undefined). The pointer sits in the first cache line, with the ring's:
   * the boundary loop reads both to fetch what the next evaluations need
   * (part.c, evaluate), and reading it must not be a miss of its own. */
  _Atomic uint64_t *sums;
  uint32_t last_eval;   /* boundary index (T / step) of the last evaluation */
  uint16_t tp_len;
  uint8_t sc_stage, sc_channel; /* as last seen before the last boundary */
  uint32_t ring_n, ring_cap;    /* buckets in use and allocated (see below) */
  uint32_t ring_hint;           /* the bucket written last */
  _Atomic uint32_t view_seq;
  void *ring;                   /* [ring_cap] buckets, NULL before the first */
  /* Sparse rings: step1 of bucket i, so that finding a step reads one
   * cache line of the entry instead of every bucket's header. */
  uint32_t ring_tag[TP_RING_SPARSE_MAX];
  tp_rule_state_t *rules;       /* [kind->n_rules] */
  const char *touchpoint;       /* points into key, not NUL-terminated */

  _Atomic int64_t view_end;        /* 0 before the first evaluation */
  _Atomic uint8_t pub_stage, pub_channel;
  _Atomic uint8_t *pub_phase;      /* [n_rules] */
  char key[];                      /* source, partition (4 bytes BE), touchpoint */
} tp_entry_t;

#define TP_KEY_PREFIX 5

/*
 * An entry's step buckets. Sparse while ring_cap < kind->ring_len: only the
 * steps the touchpoint has events in hold a bucket, found by step1 (the
 * bucket written last first), at most TP_RING_SPARSE_MAX of them, so a
 * touchpoint with a few events per window costs a few buckets, not
 * ring_len; e->ring_tag[i] repeats bucket i's step1. Past that the array
 * is the full ring: step s in slot s % ring_len, as if it had always been
 * (part.c, ring_room).
 */

static inline tp_bhdr_t *tp__ring_slot(const tp_kind_t *kind, const tp_entry_t *e, size_t i) {
  return (tp_bhdr_t *)((char *)e->ring + i * kind->bucket_size);
}

/* The index of the bucket of step s in e's ring, or -1. */
static inline long tp__ring_find(const tp_kind_t *kind, const tp_entry_t *e, uint64_t s) {
  uint32_t want = (uint32_t)(s + 1);
  if (e->ring_cap == kind->ring_len) {
    size_t i = s % kind->ring_len;
    return tp__ring_slot(kind, e, i)->step1 == want ? (long)i : -1;
  }
  if (e->ring_n == 0)
    return -1;
  if (e->ring_tag[e->ring_hint] == want)
    return e->ring_hint;
  for (size_t i = 0; i < e->ring_n; i++)
    if (e->ring_tag[i] == want)
      return (long)i;
  return -1;
}

static inline const tp_bhdr_t *tp__bucket_at(const tp_kind_t *kind, const tp_entry_t *e,
                                             uint64_t s) {
  long i = tp__ring_find(kind, e, s);
  return i < 0 ? NULL : tp__ring_slot(kind, e, (size_t)i);
}

/* ---- dedup ring --------------------------------------------------------- */

/*
 * The fingerprints of the last `depth` applied event ids of a partition, in a
 * ring (oldest overwritten first), with an open-addressing index of ring
 * positions for O(1) membership. Both grow by doubling up to depth, so an
 * idle partition costs little. A 64-bit fingerprint collides with one of
 * 100 000 others with probability about 5e-15 per event.
 */
typedef struct {
  uint64_t *ring;
  uint64_t *index; /* ring position + 1, tagged (dedup.c); 0 = empty */
  size_t depth;    /* configured bound */
  size_t cap;      /* ring capacity now (<= depth) */
  size_t count;    /* fingerprints held (<= cap) */
  size_t head;     /* next ring position to write */
  size_t index_mask;
} tp_dedup_t;

tp_err_t tp__dedup_init(tp_dedup_t *d, size_t depth);
void tp__dedup_free(tp_dedup_t *d);
bool tp__dedup_contains(const tp_dedup_t *d, uint64_t fp);
/** Start fetching the index slot where fp's lookup begins. */
void tp__dedup_prefetch(const tp_dedup_t *d, uint64_t fp);
tp_err_t tp__dedup_add(tp_dedup_t *d, uint64_t fp);

/* ---- ticket table (support partitions) ---------------------------------- */

typedef struct {
  uint64_t fp[2];          /* 128-bit fingerprint of ticket_id */
  tp_entry_t *entry;       /* touchpoint of the first OPENED, or NULL */
  int64_t opened_at;       /* first OPENED, TP_NONE_MS if none seen */
  int64_t first_reply_at;  /* first AGENT_REPLIED applied, TP_NONE_MS */
  int64_t min_reply_at;    /* earliest AGENT_REPLIED, for the SLA */
  int64_t last_event_at;
  uint32_t chain;          /* next in hash chain, index + 1 */
  uint32_t lru_prev, lru_next; /* index + 1 */
  uint32_t gen;            /* bumped when the slot is reused */
  uint16_t agent_replies;
  uint8_t reopened, deadline_pending;
} tp_ticket_t;

typedef struct {
  int64_t deadline;
  uint32_t idx, gen;
} tp_deadline_t;

typedef struct {
  tp_ticket_t *pool;
  uint32_t pool_len, pool_cap, free_head; /* free list through chain */
  uint32_t *buckets;                      /* index + 1 */
  uint32_t bucket_mask;
  uint32_t lru_head, lru_tail;            /* index + 1 */
  uint32_t count, max;
  tp_deadline_t *heap;
  size_t heap_len, heap_cap;
} tp_tickets_t;

tp_err_t tp__tickets_init(tp_tickets_t *t, uint32_t max);
void tp__tickets_free(tp_tickets_t *t);
/** Find or create; may evict the least recently used ticket (*evicted). */
tp_ticket_t *tp__tickets_get(tp_tickets_t *t, const uint64_t fp[2], bool create,
                             bool *evicted);
void tp__tickets_touch(tp_tickets_t *t, const tp_ticket_t *tk);
tp_err_t tp__tickets_push_deadline(tp_tickets_t *t, tp_ticket_t *tk, int64_t deadline);
/** Pop the earliest deadline below `before`; @returns its ticket or NULL (stale). */
bool tp__tickets_pop_deadline(tp_tickets_t *t, int64_t before, tp_deadline_t *out);
tp_ticket_t *tp__tickets_at(tp_tickets_t *t, uint32_t idx, uint32_t gen);
int64_t tp__tickets_next_deadline(const tp_tickets_t *t);
/** Drop tickets whose last event is older than `before` (LRU order). */
uint32_t tp__tickets_expire(tp_tickets_t *t, int64_t before);

/* ---- partitions and the shared state ------------------------------------ */

struct tp_part_s {
  tp_state_t *st;
  const tp_kind_t *kind;
  tp_source_t src;
  int32_t partition;
  tp_alert_cb *cb;
  void *opaque;
  bool emit;
  int64_t wm;           /* TP_NONE_MS before the first event */
  tp_entry_t **entries; /* every entry, in creation order */
  size_t n_entries, cap_entries;
  /* Timer wheel of boundaries: slot b % wheel_len lists the entries to
   * evaluate at boundary index b (a bucket enters or leaves a window there,
   * or a rule is PENDING). Scheduled boundaries never lie further ahead than
   * the wheel spans (state.c, wheel_len). */
  struct tp_wheel_slot_s {
    tp_entry_t **v;
    uint32_t n, cap;
  } *wheel;
  size_t wheel_len, wheel_count;
  tp_dedup_t dedup;
  tp_tickets_t tickets;     /* support only */
  tp_hist_merge_t *merge_fr, *merge_res; /* support only: quantile scratch */
  tp_part_stats_t stats;
};

/* ---- published views ------------------------------------------------------ */

/* A consistent copy of what an entry published. */
typedef struct {
  int64_t view_end;
  uint8_t stage, channel;
  uint8_t phase[TP_MAX_RULES_PER_SOURCE];
  double value[TP_MAX_VIEWS * TP_MAX_SOURCE_METRICS];
  int64_t samples[TP_MAX_VIEWS * TP_MAX_SOURCE_METRICS];
} tp_snapshot_t;

/** A consistent copy of what e published, with every metric of every view
 * computed from it (sequence-lock read; see publish() in part.c). */
void tp__snapshot(const tp_kind_t *kind, tp_entry_t *e, tp_snapshot_t *s);

struct tp_state_s {
  const tp_config_t *cfg;
  tp_kind_t kinds[TP_SRC_COUNT];
  pthread_mutex_t reg_lock; /* guards parts/n_parts; never taken per event */
  tp_part_t **parts[TP_SRC_COUNT]; /* registered partitions, unordered */
  size_t n_parts[TP_SRC_COUNT], cap_parts[TP_SRC_COUNT];
};

tp_err_t tp__state_register(tp_state_t *st, tp_part_t *p);
void tp__state_unregister(tp_state_t *st, tp_part_t *p);

/** Build the table key of (src, partition, touchpoint) into key. @returns its length. */
size_t tp__state_key(tp_source_t src, int32_t partition, const char *tp,
                     size_t tp_len, char *key);

/** Merge the histograms of e's support buckets in [end - len, end). */
void tp__entry_merge_hists(const tp_kind_t *kind, int64_t step, const tp_entry_t *e,
                           int64_t end, int64_t len, tp_hist_merge_t *fr, tp_hist_merge_t *res);
/** The TP_QUANTILES quantiles of merged histograms (NaN where empty). */
void tp__quantiles(tp_hist_merge_t *fr, uint64_t fr_n, tp_hist_merge_t *res, uint64_t res_n,
                   double q[TP_QUANTILES]);
/** One metric of a window from its sums w (of the metric's source); q holds
 * its quantiles (support) or is NULL (quantile metrics then undefined). */
tp_metric_value_t tp__metric_value(tp_metric_t m, const uint64_t *w, const double *q);

/**
 * For tests: the published value of one metric of a touchpoint in a
 * partition over the window of length window_ms, as a reader sees it.
 * @returns false when the touchpoint, window or metric is unknown.
 */
bool tp__state_value(tp_state_t *st, tp_source_t src, int32_t partition, const char *tp,
                     int64_t window_ms, tp_metric_t metric, tp_metric_value_t *out,
                     int64_t *window_end);

#endif
