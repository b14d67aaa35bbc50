/*
 * part.c -- one input partition's state: watermark, touchpoint entries with
 * their step-bucket rings, duplicate detection, the support ticket table,
 * and rule evaluation at every step boundary the watermark passes.
 *
 * Order of work for one event (tp_part_apply):
 *   1. if not late, raise the watermark to occurred_at - allowed_lateness and
 *      evaluate each boundary T it passes, in order of T;
 *   2. drop it as a duplicate if its id is in the dedup ring;
 *   3. drop it as late if occurred_at < watermark (as it was before step 1);
 *   4. add it to its touchpoint's bucket for floor(occurred_at / step).
 * Evaluating before applying keeps the ring small (see ring_len in state.c)
 * and changes nothing: an event at t raises the watermark to at most t, so it
 * never belongs to a window [T - L, T) evaluated on its account.
 *
 * Evaluation is event-driven but equivalent to evaluating every touchpoint
 * at every boundary (SPEC: quiet touchpoints included): a touchpoint's
 * metrics change only at boundaries where a bucket holding data enters or
 * leaves one of its windows, and its rule states change only then or while a
 * rule is PENDING (the count grows each boundary). So when a bucket first
 * receives data, its entry is scheduled on the partition's timer wheel for
 * the boundary the bucket enters at and for each boundary it leaves a window
 * at; an entry with a PENDING rule is rescheduled for the next boundary. An
 * evaluation that is skipped would have seen the same values and the same
 * states and emitted nothing. Window sums are kept up to date on those same
 * events, so an evaluation costs O(windows), not O(window length): a
 * watermark jump over days costs no more than the boundaries with work.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "state_int.h"
#include "touchpulse/decode.h"

#define DEDUP_SEED 0x9e3779b97f4a7c15ull
#define TICKET_SEED0 0x5bd1e995u
#define TICKET_SEED1 0x1b873593u

/* Single-writer counters: a relaxed load and store, no locked instruction. */
static inline void bump(_Atomic uint64_t *c) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

static inline size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

/* ---- entries ------------------------------------------------------------ */

typedef struct {
  size_t off_rules, off_sums, off_phase, total;
} layout_t;

static layout_t entry_layout(const tp_kind_t *kind, size_t key_len) {
  layout_t l;
  l.off_rules = align8(sizeof(tp_entry_t) + key_len);
  l.off_sums = align8(l.off_rules + kind->n_rules * sizeof(tp_rule_state_t));
  l.off_phase = l.off_sums + kind->n_views * kind->pub_words * sizeof(uint64_t);
  l.total = l.off_phase + kind->n_rules;
  return l;
}

static uint64_t dbl_bits(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

static tp_entry_t *entry_new(tp_part_t *p, const tp_event_t *ev, uint64_t hash,
                             const char *key, size_t key_len) {
  const tp_kind_t *kind = p->kind;
  layout_t l = entry_layout(kind, key_len);
  char *block = tp_calloc(1, l.total);
  if (block == NULL)
    return NULL;
  tp_entry_t *e = (tp_entry_t *)block;
  memcpy(e->key, key, key_len);
  e->node.hash = hash;
  e->node.key = e->key;
  e->node.key_len = (uint32_t)key_len;
  e->touchpoint = e->key + TP_KEY_PREFIX;
  e->tp_len = (uint16_t)ev->touchpoint.len;
  e->last_eval = 0;
  /* Nothing seen before any window end yet: the schema's defaults. */
  e->sc_stage = TP_STAGE_UNKNOWN;
  e->sc_channel = TP_CHANNEL_OTHER;
  e->rules = (tp_rule_state_t *)(block + l.off_rules);
  e->sums = (_Atomic uint64_t *)(block + l.off_sums);
  e->pub_phase = (_Atomic uint8_t *)(block + l.off_phase);
  /* Sums start at zero (calloc); quantiles undefined. */
  for (size_t v = 0; v < kind->n_views; v++)
    for (size_t i = kind->agg_words; i < kind->pub_words; i++)
      atomic_init(&e->sums[v * kind->pub_words + i], dbl_bits(NAN));
  for (size_t r = 0; r < kind->n_rules; r++)
    e->rules[r].matches = tp_rule_matches(kind->rules[r], e->touchpoint, e->tp_len);
  atomic_init(&e->pub_stage, e->sc_stage);
  atomic_init(&e->pub_channel, e->sc_channel);
  return e;
}

static void entry_free_private(const tp_kind_t *kind, tp_entry_t *e) {
  if (kind->src == TP_SRC_SUPPORT) {
    tp_sup_bucket_t *ring = e->ring;
    for (size_t i = 0; i < e->ring_cap; i++) {
      tp_shist_free(&ring[i].fr);
      tp_shist_free(&ring[i].res);
    }
  }
  tp_free(e->ring);
  e->ring = NULL;
  e->ring_n = e->ring_cap = 0;
}

static void entry_free_cb(tp_table_node_t *node) { tp_free(node); }

/* Put e on the wheel for boundary index b. */
static void schedule(tp_part_t *p, tp_entry_t *e, uint64_t b) {
  struct tp_wheel_slot_s *slot = &p->wheel[b % p->wheel_len];
  if (slot->n == slot->cap) {
    uint32_t cap = slot->cap ? slot->cap * 2 : 16;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    tp_entry_t **v = tp_realloc(slot->v, cap * sizeof(*v));
    if (v == NULL) {
      /* Without memory the evaluation is lost; count it where ops look. */
      bump(&p->stats.overflow);
      return;
    }
    slot->v = v;
    slot->cap = cap;
  }
  slot->v[slot->n++] = e;
  p->wheel_count++;
}

/* Whether the bucket's step s_old has left every window by the time step s
 * is written: the full ring overwrites it then (s % ring_len). */
static bool bucket_spent(const tp_kind_t *kind, uint32_t step1, uint64_t s) {
  return step1 == 0 || (uint64_t)step1 - 1 + kind->ring_len <= s;
}

/*
 * Room in e's ring for a new step s: the index of the slot to (re)use, or -1
 * without memory. Sparse rings reuse a spent bucket, else grow 2, 4, ...,
 * TP_RING_SPARSE_MAX, then become the full ring: every bucket still in a
 * window moves to its slot s % ring_len (two such never share a slot, their
 * steps being less than ring_len apart), spent ones are dropped.
 */
static long ring_room(const tp_kind_t *kind, tp_entry_t *e, uint64_t s) {
  size_t bs = kind->bucket_size;
  if (kind->ring_len == 0) /* state.c sizes every ring to at least 2 */
    return -1;
  if (e->ring_cap == kind->ring_len)
    return (long)(s % kind->ring_len);
  for (size_t i = 0; i < e->ring_n; i++)
    if (bucket_spent(kind, e->ring_tag[i], s))
      return (long)i;
  if (e->ring_n < e->ring_cap)
    return e->ring_n++;
  size_t cap = e->ring_cap ? (size_t)e->ring_cap * 2 : 2;
  if (cap > TP_RING_SPARSE_MAX || cap > kind->ring_len)
    cap = kind->ring_len;
  char *ring = tp_calloc(cap, bs);
  if (ring == NULL)
    return -1;
  if (cap == kind->ring_len) {
    for (size_t i = 0; i < e->ring_n; i++) {
      tp_bhdr_t *b = tp__ring_slot(kind, e, i);
      if (bucket_spent(kind, b->step1, s)) {
        if (kind->src == TP_SRC_SUPPORT) {
          tp_shist_free(&((tp_sup_bucket_t *)b)->fr);
          tp_shist_free(&((tp_sup_bucket_t *)b)->res);
        }
        continue;
      }
      memcpy(ring + ((uint64_t)b->step1 - 1) % cap * bs, b, bs);
    }
  } else if (e->ring_n > 0) {
    memcpy(ring, e->ring, e->ring_n * bs);
  }
  tp_free(e->ring);
  e->ring = ring;
  e->ring_cap = (uint32_t)cap;
  if (cap == kind->ring_len) {
    e->ring_n = (uint32_t)cap;
    return (long)(s % cap);
  }
  return e->ring_n++;
}

/*
 * The bucket of e's ring for the step of t, recycled first when it holds an
 * older step (it never holds a newer one: see ring_len in state.c), or NULL
 * without memory. The first write to a step schedules e for the boundaries
 * where that bucket enters its windows and leaves each of them.
 */
static tp_bhdr_t *bucket_for(tp_part_t *p, tp_entry_t *e, int64_t t) {
  const tp_kind_t *kind = p->kind;
  int64_t step = p->st->cfg->step_ms;
  uint64_t s = (uint64_t)(t / step);
  long i = tp__ring_find(kind, e, s);
  if (i < 0 && (i = ring_room(kind, e, s)) < 0)
    return NULL;
  e->ring_hint = (uint32_t)i;
  tp_bhdr_t *b = tp__ring_slot(kind, e, (size_t)i);
  if (b->step1 != (uint32_t)(s + 1)) {
    if (kind->src == TP_SRC_SUPPORT) {
      tp_sup_bucket_t *sb = (tp_sup_bucket_t *)b;
      tp_shist_t fr = sb->fr, res = sb->res;
      tp_shist_reset(&fr);
      tp_shist_reset(&res);
      memset(sb, 0, sizeof(*sb));
      sb->fr = fr;
      sb->res = res;
    } else {
      memset(b, 0, kind->bucket_size);
    }
    b->step1 = (uint32_t)(s + 1);
    if (e->ring_cap < kind->ring_len)
      e->ring_tag[i] = b->step1;
    schedule(p, e, s + 1);
    for (size_t v = 0; v < kind->n_views; v++)
      schedule(p, e, s + 1 + (uint64_t)(kind->view_ms[v] / step));
  }
  return b;
}

static void note_labels(tp_part_t *p, tp_bhdr_t *b, const tp_event_t *ev) {
  uint32_t off = (uint32_t)(ev->occurred_at % p->st->cfg->step_ms);
  if (!b->has_sc || off >= b->last_off) {
    b->has_sc = 1;
    b->last_off = off;
    b->stage = ev->stage;
    b->channel = ev->channel;
  }
}

/* ---- applying events ---------------------------------------------------- */

static bool apply_feedback(tp_part_t *p, tp_entry_t *e, const tp_event_t *ev) {
  tp_fb_bucket_t *b = (tp_fb_bucket_t *)bucket_for(p, e, ev->occurred_at);
  if (b == NULL)
    return false;
  note_labels(p, &b->h, ev);
  const int8_t csat = ev->feedback.csat, nps = ev->feedback.nps, ces = ev->feedback.ces,
               rep = ev->feedback.repurchase, oth = ev->feedback.try_other;
  bool any = false;
  if (csat != TP_SCORE_NULL) {
    b->c[TP_W_CSAT + csat - 1]++;
    any = true;
  }
  if (nps != TP_SCORE_NULL) {
    b->c[TP_W_NPS + (nps >= 9 ? 0 : nps >= 7 ? 1 : 2)]++;
    any = true;
  }
  if (ces != TP_SCORE_NULL) {
    b->c[TP_W_CES_N]++;
    b->c[TP_W_CES_SUM] += (uint32_t)ces;
    any = true;
  }
  if (nps != TP_SCORE_NULL && rep != TP_SCORE_NULL && oth != TP_SCORE_NULL) {
    b->c[TP_W_CLI_N]++;
    b->c[TP_W_CLI_SUM3] += (uint32_t)(nps + rep + oth);
  }
  any = any || rep != TP_SCORE_NULL || oth != TP_SCORE_NULL;
  if (any)
    b->c[TP_W_RESPONSES]++;
  return true;
}

static bool apply_commerce(tp_part_t *p, tp_entry_t *e, const tp_event_t *ev) {
  tp_com_bucket_t *b = (tp_com_bucket_t *)bucket_for(p, e, ev->occurred_at);
  if (b == NULL)
    return false;
  note_labels(p, &b->h, ev);
  if (ev->commerce.kind == TP_COMMERCE_ORDER_PLACED)
    b->c[TP_W_ORDERS]++;
  else if (ev->commerce.kind == TP_COMMERCE_RETURN_REQUESTED)
    b->c[TP_W_RETURNS]++;
  return true;
}

static uint64_t since(int64_t t, int64_t from) { return t > from ? (uint64_t)(t - from) : 0; }

static bool apply_support(tp_part_t *p, tp_entry_t *e, const tp_event_t *ev) {
  const tp_config_t *cfg = p->st->cfg;
  int64_t t = ev->occurred_at;
  tp_sup_bucket_t *b = (tp_sup_bucket_t *)bucket_for(p, e, t);
  if (b == NULL)
    return false;
  note_labels(p, &b->h, ev);
  uint8_t kind = ev->support.kind;
  if (kind == TP_SUPPORT_OPENED) {
    b->c[TP_W_OPENED]++;
    if (ev->support.complaint)
      b->c[TP_W_COMPLAINTS]++;
  }

  uint64_t fp[2] = {tp_hash64(ev->support.ticket_id.ptr, ev->support.ticket_id.len, TICKET_SEED0),
                    tp_hash64(ev->support.ticket_id.ptr, ev->support.ticket_id.len, TICKET_SEED1)};
  bool evicted = false;
  tp_ticket_t *tk = tp__tickets_get(&p->tickets, fp, true, &evicted);
  if (evicted)
    bump(&p->stats.tickets_evicted);
  if (tk == NULL) {
    bump(&p->stats.overflow); /* no memory for the ticket: its timings are lost */
    return true;
  }
  switch (kind) {
  case TP_SUPPORT_OPENED:
    if (tk->opened_at == TP_NONE_MS) {
      tk->opened_at = t;
      tk->entry = e;
      if (tp__tickets_push_deadline(&p->tickets, tk, t + cfg->first_response_sla_ms) != TP_OK)
        bump(&p->stats.overflow);
    }
    break;
  case TP_SUPPORT_AGENT_REPLIED:
    if (tk->agent_replies < UINT16_MAX)
      tk->agent_replies++;
    if (tk->min_reply_at == TP_NONE_MS || t < tk->min_reply_at)
      tk->min_reply_at = t;
    /* The first reply applied after the OPENED is the one measured; a reply
     * read before its ticket's OPENED cannot be timed, and does not stop
     * the next one from being the first. */
    if (tk->first_reply_at == TP_NONE_MS && tk->opened_at != TP_NONE_MS) {
      tk->first_reply_at = t;
      uint64_t v = since(t, tk->opened_at);
      b->c[TP_W_FR_N]++;
      b->c64[TP_W_FR_SUM - TP_W_SUP32] += v;
      if (tp_shist_add(&b->fr, v) != TP_OK)
        bump(&p->stats.overflow);
    }
    break;
  case TP_SUPPORT_RESOLVED:
    if (tk->opened_at != TP_NONE_MS) {
      uint64_t v = since(t, tk->opened_at);
      b->c[TP_W_RES_N]++;
      b->c64[TP_W_RES_SUM - TP_W_SUP32] += v;
      if (tk->agent_replies <= 1 && !tk->reopened)
        b->c[TP_W_FCR_N]++;
      if (tp_shist_add(&b->res, v) != TP_OK)
        bump(&p->stats.overflow);
    }
    break;
  case TP_SUPPORT_REOPENED:
    tk->reopened = 1;
    break;
  default:
    break;
  }
  if (t > tk->last_event_at)
    tk->last_event_at = t;
  tp__tickets_touch(&p->tickets, tk);
  atomic_store_explicit(&p->stats.tickets, p->tickets.count, memory_order_relaxed);
  return true;
}

/* ---- evaluation --------------------------------------------------------- */

static void emit(tp_part_t *p, tp_entry_t *e, const tp_rule_t *rule, tp_alert_state_t state,
                 const tp_metric_value_t *mv, int64_t T) {
  if (state == TP_ALERT_FIRING)
    bump(&p->stats.alerts_fired);
  else
    bump(&p->stats.alerts_resolved);
  if (!p->emit || p->cb == NULL)
    return;
  tp_alert_t a = {
      .rule = rule,
      .touchpoint = e->touchpoint,
      .touchpoint_len = e->tp_len,
      .state = state,
      .value = mv->value,
      .threshold = state == TP_ALERT_FIRING ? rule->threshold : rule->clear,
      .window_start = T - rule->window_ms,
      .window_end = T,
      .samples = mv->samples,
      .stage = e->sc_stage,
      .channel = e->sc_channel,
      .source = p->src,
      .partition = p->partition,
  };
  p->cb(p->opaque, &a);
}


/* Whether support bucket h (or NULL) holds response or resolution times. */
static bool has_durations(const tp_bhdr_t *h) {
  const tp_sup_bucket_t *b = (const tp_sup_bucket_t *)h;
  return b != NULL && (b->c[TP_W_FR_N] > 0 || b->c[TP_W_RES_N] > 0);
}

/*
 * s[i] += in[i] - out[i] for the words of one view's sums, in place, and
 * the result copied to w for the rules: first the n32 words counting 32-bit
 * bucket counters, then the n64 counting 64-bit ones. Unsigned wrap-around
 * makes the subtraction exact: a bucket leaves a window only after it
 * entered it. Inlined with the counts constants of the source: one pass, a
 * load, two arithmetic operations and two stores per word. Every store is a
 * release store (a plain store on x86) inside the caller's sequence lock.
 */
static inline __attribute__((always_inline)) void
fold(_Atomic uint64_t *s, uint64_t *w, const uint32_t *in32, const uint32_t *out32, size_t n32,
     const uint64_t *in64, const uint64_t *out64, size_t n64) {
  for (size_t i = 0; i < n32; i++) {
    w[i] = atomic_load_explicit(&s[i], memory_order_relaxed) + in32[i] - out32[i];
    atomic_store_explicit(&s[i], w[i], memory_order_release);
  }
  for (size_t i = n32; i < n32 + n64; i++) {
    w[i] = atomic_load_explicit(&s[i], memory_order_relaxed) + in64[i - n32] - out64[i - n32];
    atomic_store_explicit(&s[i], w[i], memory_order_release);
  }
}

/* What stands for an absent bucket of any source: counters of zero. */
static const union {
  tp_fb_bucket_t fb;
  tp_sup_bucket_t sup;
  tp_com_bucket_t com;
} no_bucket;

/*
 * Bucket in enters and bucket out leaves the window whose sums start at s
 * (either may be NULL); w receives the window's new sums and, for support,
 * its published quantiles.
 */
static void fold_view(const tp_kind_t *kind, _Atomic uint64_t *s, uint64_t *w,
                      const tp_bhdr_t *in, const tp_bhdr_t *out) {
  switch (kind->src) {
  case TP_SRC_FEEDBACK: {
    const tp_fb_bucket_t *bi = in ? (const tp_fb_bucket_t *)in : &no_bucket.fb;
    const tp_fb_bucket_t *bo = out ? (const tp_fb_bucket_t *)out : &no_bucket.fb;
    fold(s, w, bi->c, bo->c, TP_W_FB, NULL, NULL, 0);
    break;
  }
  case TP_SRC_COMMERCE: {
    const tp_com_bucket_t *bi = in ? (const tp_com_bucket_t *)in : &no_bucket.com;
    const tp_com_bucket_t *bo = out ? (const tp_com_bucket_t *)out : &no_bucket.com;
    fold(s, w, bi->c, bo->c, TP_W_COM, NULL, NULL, 0);
    break;
  }
  case TP_SRC_SUPPORT: {
    const tp_sup_bucket_t *bi = in ? (const tp_sup_bucket_t *)in : &no_bucket.sup;
    const tp_sup_bucket_t *bo = out ? (const tp_sup_bucket_t *)out : &no_bucket.sup;
    fold(s, w, bi->c, bo->c, TP_W_SUP32, bi->c64, bo->c64, TP_W_SUP - TP_W_SUP32);
    for (size_t k = TP_W_SUP; k < TP_W_SUP + TP_QUANTILES; k++)
      w[k] = atomic_load_explicit(&s[k], memory_order_relaxed);
    break;
  }
  default: break;
  }
}

/* The value of rule r's metric in the window sums w of every view. */
static tp_metric_value_t rule_value(const tp_kind_t *kind, size_t r, const uint64_t *w) {
  const uint64_t *vw = w + kind->rule_view[r] * kind->pub_words;
  double q[TP_QUANTILES];
  const double *qp = NULL;
  if (kind->pub_words > kind->agg_words) {
    memcpy(q, vw + kind->agg_words, sizeof(q));
    qp = q;
  }
  return tp__metric_value(kind->rules[r]->metric, vw, qp);
}

/*
 * Evaluate one entry at boundary T (index bi = T / step).
 *
 * The window sums are updated in place and the rules read a copy, all under
 * the entry's sequence lock: view_seq is odd while the evaluation writes,
 * every data store is a release store, so none becomes visible before the
 * odd sequence, and the release store of the next even sequence follows
 * them all (no standalone fences: on x86 these are plain stores, and
 * ThreadSanitizer understands them). Readers (tp__snapshot) see the sums,
 * phases, labels and view_end of one evaluation, never a mix. Alerts are
 * emitted after the sequence is even again, so a reader never waits on the
 * alert callback.
 */
static void eval_entry(tp_part_t *p, tp_entry_t *e, int64_t T, uint64_t bi) {
  const tp_kind_t *kind = p->kind;
  int64_t step = p->st->cfg->step_ms;
  if (e->last_eval == (uint32_t)bi)
    return; /* scheduled twice for this boundary */
  e->last_eval = (uint32_t)bi;

  const memory_order rel = memory_order_release;
  uint32_t seq = atomic_load_explicit(&e->view_seq, memory_order_relaxed);
  atomic_store_explicit(&e->view_seq, seq + 1, memory_order_relaxed);

  /* Bucket bi - 1 enters every window now; bucket bi - 1 - L/step leaves
   * the window of length L. Labels come from the newest event before T. */
  const tp_bhdr_t *in = tp__bucket_at(kind, e, bi - 1);
  if (in != NULL && in->has_sc) {
    e->sc_stage = in->stage;
    e->sc_channel = in->channel;
  }
  /* w: the sums of the windows that changed (bit v of filled), and of those
   * whose rules are evaluated anyway. */
  uint64_t w[TP_MAX_VIEWS * (TP_AGG_WORDS_MAX + TP_QUANTILES)];
  uint32_t filled = 0;
  for (size_t v = 0; v < kind->n_views; v++) {
    uint64_t *vw = w + v * kind->pub_words;
    _Atomic uint64_t *vs = e->sums + v * kind->pub_words;
    uint64_t len = (uint64_t)(kind->view_ms[v] / step);
    const tp_bhdr_t *out = bi > len ? tp__bucket_at(kind, e, bi - 1 - len) : NULL;
    if (in == NULL && out == NULL)
      continue; /* nothing enters or leaves this window: its sums stand */
    filled |= 1u << v;
    fold_view(kind, vs, vw, in, out);
    /* Support quantiles: merge the window's histograms again only when a
     * bucket with durations entered or left it; otherwise the published
     * ones still hold. */
    if (p->merge_fr != NULL) {
      if (has_durations(in) || has_durations(out)) {
        double q[TP_QUANTILES];
        if (vw[TP_W_FR_N] > 0 || vw[TP_W_RES_N] > 0)
          tp__entry_merge_hists(kind, step, e, T, kind->view_ms[v], p->merge_fr, p->merge_res);
        tp__quantiles(p->merge_fr, vw[TP_W_FR_N], p->merge_res, vw[TP_W_RES_N], q);
        tp_hist_merge_clear(p->merge_fr);
        tp_hist_merge_clear(p->merge_res);
        for (size_t k = 0; k < TP_QUANTILES; k++) {
          vw[kind->agg_words + k] = dbl_bits(q[k]);
          atomic_store_explicit(&vs[kind->agg_words + k], vw[kind->agg_words + k], rel);
        }
      }
    }
  }

  /* Only the metrics the rules read are computed here, and only where they
   * can change: a rule on a window whose sums stand is skipped unless it is
   * PENDING (its count grows every boundary) or the entry was never
   * evaluated (an empty window may breach). After tp_rule_step() any other
   * state is its fixed point for an unchanged value: OK stays OK, FIRING
   * stays FIRING (the clear level is at or beyond the threshold), and a
   * rule just RESOLVED no longer breaches. */
  bool first = atomic_load_explicit(&e->view_end, memory_order_relaxed) == 0;
  bool pending = false;
  /* Rules that fired or resolved, in order, and which of the two. */
  uint8_t fired[TP_MAX_RULES_PER_SOURCE];
  bool firing[TP_MAX_RULES_PER_SOURCE];
  size_t n_fired = 0;
  for (size_t r = 0; r < kind->n_rules; r++) {
    if (!e->rules[r].matches)
      continue;
    size_t v = kind->rule_view[r];
    if (!(filled >> v & 1u)) {
      if (!first && e->rules[r].phase != TP_RULE_PENDING)
        continue;
      for (size_t k = 0; k < kind->pub_words; k++)
        w[v * kind->pub_words + k] =
            atomic_load_explicit(&e->sums[v * kind->pub_words + k], memory_order_relaxed);
      filled |= 1u << v;
    }
    tp_metric_value_t mv = rule_value(kind, r, w);
    tp_rule_step_t st = tp_rule_step(kind->rules[r], &e->rules[r], &mv, NULL);
    if (st == TP_RULE_FIRE || st == TP_RULE_RESOLVE) {
      fired[n_fired] = (uint8_t)r;
      firing[n_fired++] = st == TP_RULE_FIRE;
    }
    atomic_store_explicit(&e->pub_phase[r], e->rules[r].phase, rel);
    pending = pending || e->rules[r].phase == TP_RULE_PENDING;
  }
  atomic_store_explicit(&e->pub_stage, e->sc_stage, rel);
  atomic_store_explicit(&e->pub_channel, e->sc_channel, rel);
  atomic_store_explicit(&e->view_end, T, rel);
  atomic_store_explicit(&e->view_seq, seq + 2, rel);

  for (size_t k = 0; k < n_fired; k++) {
    size_t r = fired[k];
    tp_metric_value_t mv = rule_value(kind, r, w);
    emit(p, e, kind->rules[r], firing[k] ? TP_ALERT_FIRING : TP_ALERT_RESOLVED, &mv, T);
  }
  /* A PENDING count grows with every boundary, even on unchanged values. */
  if (pending)
    schedule(p, e, bi + 1);
}

/*
 * Start fetching every cache line of the n bytes at p. A macro, not a
 * function: gcc finds a function that only loads and prefetches free of
 * side effects and deletes the calls to it (bench/NOTES.md, decoder).
 */
#define PREFETCH_RANGE(p, n)                                                           \
  do {                                                                                 \
    const char *p_ = (const char *)(p);                                                \
    size_t n_ = (n);                                                                   \
    for (size_t o_ = 0; o_ < n_; o_ += 64)                                             \
      __builtin_prefetch(p_ + o_);                                                     \
    if (n_ > 0)                                                                        \
      __builtin_prefetch(p_ + n_ - 1);                                                 \
  } while (0)

/* Start fetching the bucket entry e wrote last, every line it straddles
 * (e's writer only: the ring is private). */
#define PREFETCH_LAST_BUCKET(kind, e)                                                  \
  do {                                                                                 \
    if ((e)->ring != NULL)                                                             \
      PREFETCH_RANGE(tp__ring_slot((kind), (e), (e)->ring_hint), (kind)->bucket_size); \
  } while (0)

/* Evaluate the entries scheduled for boundary T, in scheduling order. */
static void evaluate(tp_part_t *p, int64_t T) {
  uint64_t bi = (uint64_t)(T / p->st->cfg->step_ms);
  struct tp_wheel_slot_s *slot = &p->wheel[bi % p->wheel_len];
  /* Entries rescheduled while evaluating go to slot bi + 1, never here.
   * Entries lie anywhere in memory, and an evaluation stalls on each line
   * it reads that is not in the cache. So the first three lines of the
   * entry 8 places ahead are fetched (the ring and sums pointers, the ring
   * tags, the published fields), and 4 places ahead, from those pointers,
   * every line of its sums and of the bucket written last (the one
   * entering the windows, or leaving one, in nearly every evaluation: 99 %
   * and 87 % in bench_apply). */
  const tp_kind_t *kind = p->kind;
  size_t sums_bytes = kind->n_views * kind->pub_words * sizeof(uint64_t);
  for (uint32_t i = 0; i < slot->n; i++) {
    if (i + 8 < slot->n) {
      const char *ahead = (const char *)slot->v[i + 8];
      __builtin_prefetch(ahead);
      __builtin_prefetch(ahead + 64); /* the ring tags */
      __builtin_prefetch(ahead + 128); /* rules, view_end, pub_phase */
    }
    if (i + 4 < slot->n) {
      const tp_entry_t *ahead = slot->v[i + 4];
      PREFETCH_RANGE(ahead->sums, sums_bytes); /* none without rules: no windows */
      PREFETCH_LAST_BUCKET(kind, ahead);
    }
    eval_entry(p, slot->v[i], T, bi);
  }
  p->wheel_count -= slot->n;
  slot->n = 0;
  bump(&p->stats.evaluations);
}

/* @returns the first boundary index >= from with a scheduled entry, or
 * UINT64_MAX when the wheel is empty. */
static uint64_t next_scheduled(const tp_part_t *p, uint64_t from) {
  if (p->wheel_count == 0)
    return UINT64_MAX;
  for (uint64_t b = from; b < from + p->wheel_len; b++)
    if (p->wheel[b % p->wheel_len].n > 0)
      return b;
  return UINT64_MAX;
}

/* Count first-reply SLA breaches whose deadline falls before T. */
static void process_deadlines(tp_part_t *p, int64_t T) {
  tp_deadline_t d;
  while (tp__tickets_pop_deadline(&p->tickets, T, &d)) {
    tp_ticket_t *tk = tp__tickets_at(&p->tickets, d.idx, d.gen);
    if (tk == NULL)
      continue; /* evicted before its deadline */
    tk->deadline_pending = 0;
    if (tk->entry != NULL &&
        (tk->min_reply_at == TP_NONE_MS || tk->min_reply_at >= d.deadline)) {
      tp_sup_bucket_t *b = (tp_sup_bucket_t *)bucket_for(p, tk->entry, d.deadline);
      if (b != NULL)
        b->c[TP_W_BREACHES]++;
      else
        bump(&p->stats.overflow); /* no memory for its bucket: the breach is lost */
    }
  }
}

/*
 * Evaluate every boundary T with p->wm < T <= wm, in order; then wm. Only
 * boundaries with scheduled entries or SLA deadlines before them have work;
 * the others are skipped (see the file comment).
 */
static void advance_to(tp_part_t *p, int64_t wm) {
  const tp_config_t *cfg = p->st->cfg;
  int64_t step = cfg->step_ms;
  bool support = p->src == TP_SRC_SUPPORT;
  int64_t T = tp_floor_to(p->wm, step) + step;
  int64_t last = tp_floor_to(wm, step);
  while (T <= last) {
    if (support)
      process_deadlines(p, T);
    evaluate(p, T);
    if (support)
      tp__tickets_expire(&p->tickets, T - cfg->ticket_ttl_ms);
    /* Next boundary with work: a scheduled entry, or the first boundary
     * after the next SLA deadline (which writes a breach before it). */
    uint64_t nb = next_scheduled(p, (uint64_t)(T / step) + 1);
    int64_t next = nb == UINT64_MAX ? INT64_MAX : (int64_t)nb * step;
    int64_t nd = support ? tp__tickets_next_deadline(&p->tickets) : INT64_MAX;
    if (nd != INT64_MAX && tp_floor_to(nd, step) + step < next)
      next = tp_floor_to(nd, step) + step;
    T = next > T + step ? next : T + step;
  }
  if (support && last >= 0)
    tp__tickets_expire(&p->tickets, last - cfg->ticket_ttl_ms);
  p->wm = wm;
  atomic_store_explicit(&p->stats.watermark, wm, memory_order_relaxed);
  if (support)
    atomic_store_explicit(&p->stats.tickets, p->tickets.count, memory_order_relaxed);
}

/* ---- public ------------------------------------------------------------- */

tp_part_t *tp_part_new(tp_state_t *st, tp_source_t src, int32_t partition,
                       tp_alert_cb *cb, void *opaque, char *errstr,
                       size_t errstr_size) {
  tp_part_t *p = tp_calloc(1, sizeof(*p));
  if (p == NULL)
    goto nomem;
  p->st = st;
  p->kind = &st->kinds[src];
  p->src = src;
  p->partition = partition;
  p->cb = cb;
  p->opaque = opaque;
  p->emit = true;
  p->wm = TP_NONE_MS;
  atomic_init(&p->stats.watermark, TP_NONE_MS);
  tp__dedup_init(&p->dedup, (size_t)st->cfg->dedup_depth);
  p->wheel_len = p->kind->wheel_len;
  p->wheel = tp_calloc(p->wheel_len, sizeof(*p->wheel));
  if (p->wheel == NULL)
    goto nomem;
  if (src == TP_SRC_SUPPORT) {
    if (tp__tickets_init(&p->tickets, (uint32_t)st->cfg->max_tickets) != TP_OK)
      goto nomem;
    p->merge_fr = tp_malloc(sizeof(*p->merge_fr));
    p->merge_res = tp_malloc(sizeof(*p->merge_res));
    if (p->merge_fr == NULL || p->merge_res == NULL)
      goto nomem;
    tp_hist_merge_init(p->merge_fr);
    tp_hist_merge_init(p->merge_res);
  }
  tp_err_t err = tp__state_register(st, p);
  if (err != TP_OK) {
    snprintf(errstr, errstr_size, "%s partition %d: %s", tp_source_name(src),
             (int)partition, err == TP_EEXIST ? "already registered" : tp_strerror(err));
    tp_part_destroy(p);
    return NULL;
  }
  return p;
nomem:
  snprintf(errstr, errstr_size, "%s partition %d: out of memory", tp_source_name(src),
           (int)partition);
  tp_part_destroy(p);
  return NULL;
}

void tp_part_destroy(tp_part_t *p) {
  if (p == NULL)
    return;
  tp__state_unregister(p->st, p);
  tp_table_t *tbl = p->kind->table;
  for (size_t i = 0; i < p->n_entries; i++) {
    tp_entry_t *e = p->entries[i];
    entry_free_private(p->kind, e);
    if (tp_table_remove(tbl, &e->node) == TP_OK)
      tp_table_retire(tbl, &e->node, entry_free_cb);
    else
      tp_free(e);
  }
  tp_table_reclaim(tbl);
  tp_free(p->entries);
  for (size_t i = 0; p->wheel && i < p->wheel_len; i++)
    tp_free(p->wheel[i].v);
  tp_free(p->wheel);
  tp__dedup_free(&p->dedup);
  tp__tickets_free(&p->tickets);
  tp_free(p->merge_fr);
  tp_free(p->merge_res);
  tp_free(p);
}

void tp_part_prefetch(const tp_part_t *p, const char *key, size_t key_len, const void *value,
                      size_t len, tp_part_hint_t *h) {
  *h = (tp_part_hint_t){.part = p};
  if (value != NULL && tp_peek_event_id(value, len, &h->id, &h->id_len)) {
    h->id_hash = tp_hash64(h->id, h->id_len, DEDUP_SEED);
    tp__dedup_prefetch(&p->dedup, h->id_hash);
  }
  if (key == NULL || key_len == 0 || key_len > TP_TOUCHPOINT_MAX)
    return;
  char sk[TP_KEY_PREFIX + TP_TOUCHPOINT_MAX];
  size_t sk_len = tp__state_key(p->src, p->partition, key, key_len, sk);
  h->key = key;
  h->key_len = key_len;
  h->key_hash = tp_hash64(sk, sk_len, 0);
  tp_table_prefetch(p->kind->table, h->key_hash);
}

void tp_part_prefetch_entry(const tp_part_t *p, tp_part_hint_t *h) {
  if (h->key == NULL)
    return;
  h->node = tp_table_peek(p->kind->table, h->key_hash);
  const char *e = h->node;
  if (e == NULL)
    return;
  /* The header with the ring tags, and the key the lookup compares. */
  __builtin_prefetch(e);
  __builtin_prefetch(e + 64);
  __builtin_prefetch(e + offsetof(tp_entry_t, key));
}

/* Rings up to this size are fetched whole by tp_part_prefetch_bucket(). */
#define SMALL_RING_BYTES 256

void tp_part_prefetch_bucket(const tp_part_t *p, const tp_part_hint_t *h) {
  const tp_table_node_t *n = h->node;
  if (n == NULL || n->hash != h->key_hash)
    return;
  /* A node's key starts with its partition (tp__state_key): only an entry
   * of this partition is this thread's to read beyond its node. */
  char own[TP_KEY_PREFIX];
  tp__state_key(p->src, p->partition, "", 0, own);
  if (memcmp(n->key, own, TP_KEY_PREFIX) != 0)
    return;
  const tp_entry_t *e = (const tp_entry_t *)n;
  const tp_kind_t *kind = p->kind;
  size_t ring_bytes = (size_t)e->ring_cap * kind->bucket_size;
  if (e->ring != NULL && e->ring_cap < kind->ring_len && ring_bytes <= SMALL_RING_BYTES) {
    /* A small sparse ring: the event's step may reuse a spent bucket or
     * take the next free one rather than the one written last. All of it
     * is a few lines. */
    PREFETCH_RANGE(e->ring, ring_bytes);
  } else {
    PREFETCH_LAST_BUCKET(kind, e);
  }
}

/* hint: tp_part_apply_hinted()'s, checked there to be this partition's. */
static tp_entry_t *lookup(tp_part_t *p, const tp_event_t *ev, const tp_part_hint_t *hint,
                          tp_apply_t *why) {
  char key[TP_KEY_PREFIX + TP_TOUCHPOINT_MAX];
  size_t key_len = tp__state_key(p->src, p->partition, ev->touchpoint.ptr,
                                 ev->touchpoint.len, key);
  /* The hint hashed the record's key: it is the touchpoint's hash only if
   * the key is the touchpoint (SPEC keys records by touchpoint, but a
   * producer may not). */
  uint64_t hash = hint != NULL && hint->key != NULL && hint->key_len == ev->touchpoint.len &&
                          memcmp(hint->key, ev->touchpoint.ptr, hint->key_len) == 0
                      ? hint->key_hash
                      : tp_hash64(key, key_len, 0);
  tp_table_t *tbl = p->kind->table;
  tp_table_node_t *node = tp_table_get(tbl, hash, key, key_len);
  if (node != NULL)
    return (tp_entry_t *)node;

  if (p->n_entries == p->cap_entries) {
    size_t c = p->cap_entries ? p->cap_entries * 2 : 64;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    tp_entry_t **a = tp_realloc(p->entries, c * sizeof(*a));
    if (a == NULL)
      goto nomem;
    p->entries = a;
    p->cap_entries = c;
  }
  tp_entry_t *e = entry_new(p, ev, hash, key, key_len);
  if (e == NULL)
    goto nomem;
  tp_table_node_t *existing = NULL;
  tp_err_t err = tp_table_insert(tbl, &e->node, &existing);
  if (err == TP_EEXIST) { /* cannot happen: one writer per partition */
    tp_free(e);
    return (tp_entry_t *)existing;
  }
  if (err != TP_OK) {
    tp_free(e);
    *why = TP_APPLY_OVERFLOW;
    return NULL;
  }
  p->entries[p->n_entries++] = e;
  /* From the next boundary on, the touchpoint is evaluated like any other,
   * even before its own events enter a window (an empty window is a count
   * of 0, which a rule may breach). */
  schedule(p, e, (uint64_t)(tp_floor_div(p->wm, p->st->cfg->step_ms) + 1));
  atomic_store_explicit(&p->stats.touchpoints, (int64_t)p->n_entries, memory_order_relaxed);
  return e;
nomem:
  *why = TP_APPLY_NOMEM;
  return NULL;
}

tp_apply_t tp_part_apply(tp_part_t *p, const tp_event_t *ev) {
  return tp_part_apply_hinted(p, ev, NULL);
}

tp_apply_t tp_part_apply_hinted(tp_part_t *p, const tp_event_t *ev, const tp_part_hint_t *hint) {
  if (hint != NULL && hint->part != p)
    hint = NULL;
  const tp_config_t *cfg = p->st->cfg;
  int64_t t = ev->occurred_at;
  if (t < 0 || t / cfg->step_ms >= (int64_t)UINT32_MAX - 1)
    return TP_APPLY_INVALID;

  bool late = p->wm != TP_NONE_MS && t < p->wm;
  if (!late) {
    int64_t wm = t - cfg->allowed_lateness_ms;
    if (p->wm == TP_NONE_MS) {
      p->wm = wm; /* no boundary is evaluated on a partition's first record */
      atomic_store_explicit(&p->stats.watermark, wm, memory_order_relaxed);
    } else if (wm > p->wm) {
      advance_to(p, wm);
    }
  }

  /* The same address and length as the peeked id: the same bytes. */
  uint64_t fp = hint != NULL && hint->id != NULL && hint->id == ev->event_id.ptr &&
                        hint->id_len == ev->event_id.len
                    ? hint->id_hash
                    : tp_hash64(ev->event_id.ptr, ev->event_id.len, DEDUP_SEED);
  if (tp__dedup_contains(&p->dedup, fp)) {
    bump(&p->stats.duplicates);
    return TP_APPLY_DUPLICATE;
  }
  if (late) {
    bump(&p->stats.late);
    return TP_APPLY_LATE;
  }

  tp_apply_t why = TP_APPLY_OK;
  tp_entry_t *e = lookup(p, ev, hint, &why);
  if (e == NULL) {
    bump(&p->stats.overflow);
    return why;
  }
  bool stored = false;
  switch (p->src) {
  case TP_SRC_FEEDBACK: stored = apply_feedback(p, e, ev); break;
  case TP_SRC_SUPPORT: stored = apply_support(p, e, ev); break;
  case TP_SRC_COMMERCE: stored = apply_commerce(p, e, ev); break;
  }
  if (!stored) { /* no memory for its step bucket */
    bump(&p->stats.overflow);
    return TP_APPLY_NOMEM;
  }
  if (tp__dedup_add(&p->dedup, fp) != TP_OK)
    bump(&p->stats.overflow); /* could not remember the id: a retry would count twice */
  bump(&p->stats.applied);
  return TP_APPLY_OK;
}

void tp_part_advance(tp_part_t *p, int64_t wm) {
  if (p->wm != TP_NONE_MS && wm > p->wm)
    advance_to(p, wm);
}

int64_t tp_part_watermark(const tp_part_t *p) { return p->wm; }
void tp_part_set_emit(tp_part_t *p, bool on) { p->emit = on; }
const tp_part_stats_t *tp_part_stats(const tp_part_t *p) { return &p->stats; }
tp_source_t tp_part_source(const tp_part_t *p) { return p->src; }
int32_t tp_part_partition(const tp_part_t *p) { return p->partition; }
