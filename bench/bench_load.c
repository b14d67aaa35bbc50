/*
 * bench_load.c -- pre-loads the three input topics of a real broker with
 * SPEC events for the end-to-end benchmark, as fast as one producer can.
 *
 * Workload. --events records (default 10 000 000): 80 % feedback, 12 %
 * support, 8 % commerce, keyed by touchpoint id, Avro-encoded by
 * tp_encode_event(). Event time starts at --start (default: two days before
 * now, floored to the UTC day) and advances by one day / events per record,
 * so every load covers about one day of event time whatever its size; each
 * record gets 0-5 s of jitter, far inside the 30 s allowed lateness, so the
 * load has no late event, no duplicate event id and no future timestamp.
 *
 * Touchpoints. --touchpoints N ids "<prefix><index>", the prefix cycling
 * through checkout., support., web., app., store. (so the example rules'
 * globs match), chosen per record uniformly or by Zipf rank (--dist zipf,
 * exponent --zipf-s, default 1.0: rank k is index k-1, sampled by
 * rejection-inversion in O(1) time and memory). Stage and channel are a
 * function of the touchpoint, so alert labels are stable.
 *
 * Stories. Support records follow tickets (OPENED, AGENT_REPLIED after a
 * first-response time, sometimes CUSTOMER_REPLIED and a second reply,
 * RESOLVED, sometimes REOPENED and resolved again), commerce records follow
 * orders (ORDER_PLACED, DELIVERED, sometimes RETURN_REQUESTED). A ticket's or
 * an order's events share its touchpoint, hence its partition, and follow
 * each other in event time. Follow-ups wait in one min-heap per topic; each
 * record slot of a topic first emits that topic's earliest due follow-up and
 * otherwise starts a new story, so the mix stays exact and the load ends
 * after exactly --events records (stories still open then stay open).
 *
 * Incidents. Background traffic is healthy and far from every threshold of
 * examples/touchpulse.yaml. On top, --incidents lanes per rule (default:
 * events / 500 000, 1 to 16) play back-to-back episodes on cold touchpoints
 * (the upper half of the index range, where Zipf and uniform background
 * traffic are both negligible): a bad phase, a quiet gap at least one rule
 * window long, a good phase, an idle pause. Bad and good phases draw from
 * disjoint value ranges (CSAT 1-3 vs 4-5, NPS without promoters vs without
 * detractors, first replies 20-40 min vs 2-5 min, returns 1/3 of commerce
 * events vs none), and the gap keeps every window with enough samples pure,
 * so no window value sits near a threshold or clear level: neither the 1 %
 * percentile sketch nor float rounding decides an alert. Complaint
 * episodes (complaint tickets at 1.3/min for 25 min) need no gap: a count
 * is exact. Each episode fires its rule once and resolves it once, so a
 * 2 000 000-record load gives a few hundred alerts.
 *
 * Producer: acks=all, idempotence on, partitioner murmur2_random (the Java
 * client's default, so a Java consumer or producer agrees on placement),
 * large batches with linger.ms=20, compression none by default: on a
 * loopback broker bandwidth is free and CPU is what producer, broker and
 * the contestants share, and uncompressed batches cost every consumer the
 * same nothing. --compression lz4 and -X key=value change that.
 *
 * Deterministic: one seeded generator draws every choice in record order,
 * so a seed (and --start) gives the same records in the same order.
 *
 * Prints one JSON line on stdout:
 *   {"events":N,"feedback":N,"support":N,"commerce":N,"bytes":N,"seconds":S}
 * bytes counts keys and values; seconds runs from the first produce call to
 * the end of the flush. Exits 1 if any record was not delivered.
 *
 *   bench_load --bootstrap HOST:PORT [--events N] [--touchpoints N]
 *              [--dist uniform|zipf] [--zipf-s S] [--seed N] [--start MS]
 *              [--incidents K] [--partitions N] [--feedback T] [--support T]
 *              [--commerce T] [--compression none|lz4|...] [-X key=value]
 *              [--dry-run]
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_PROG "bench_load"
#include "bench_cli.h"
#include "touchpulse/common.h"
#include "touchpulse/encode.h"
#include "touchpulse/event.h"

#define MIN_MS 60000LL
#define DAY_MS 86400000LL
#define JITTER_MS 5000
#define MAX_EXTRA_CONF 64

/* ---- random numbers: xoshiro256**, seeded through splitmix64 ------------------------ */

typedef struct {
  uint64_t s[4];
} rng_t;

static uint64_t mix64(uint64_t z) { /* splitmix64's finalizer: a bijection */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = mix64(seed += 0x9e3779b97f4a7c15ull);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *r) {
  uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* Modulo bias is below 2^-30 for every n used here. */
static uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }

/* Uniform in [lo, hi). */
static int64_t rng_range(rng_t *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)rng_below(r, (uint64_t)(hi - lo));
}

static bool rng_chance(rng_t *r, double p) { return rng_unit(r) < p; }

/* ---- Zipf ranks 1..n by rejection-inversion (Hörmann and Derflinger 1996, as in
 * Apache Commons' RejectionInversionZipfSampler) --------------------------------- */

typedef struct {
  double s, n, h_x1, h_n, cut;
} zipf_t;

static double helper1(double x) {
  return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}
static double helper2(double x) {
  return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x));
}
static double zipf_h(const zipf_t *z, double x) { return exp(-z->s * log(x)); }
static double zipf_hint(const zipf_t *z, double x) {
  double lx = log(x);
  return helper2((1 - z->s) * lx) * lx;
}
static double zipf_hinv(const zipf_t *z, double x) {
  double t = x * (1 - z->s);
  if (t < -1)
    t = -1;
  return exp(helper1(t) * x);
}

static void zipf_init(zipf_t *z, double s, uint64_t n) {
  z->s = s;
  z->n = (double)n;
  z->h_x1 = zipf_hint(z, 1.5) - 1;
  z->h_n = zipf_hint(z, z->n + 0.5);
  z->cut = 2 - zipf_hinv(z, zipf_hint(z, 2.5) - zipf_h(z, 2));
}

static uint64_t zipf_sample(const zipf_t *z, rng_t *r) {
  for (;;) {
    double u = z->h_n + rng_unit(r) * (z->h_x1 - z->h_n);
    double x = zipf_hinv(z, u);
    double k = floor(x + 0.5);
    if (k < 1)
      k = 1;
    else if (k > z->n)
      k = z->n;
    if (k - x <= z->cut || u >= zipf_hint(z, k + 0.5) - zipf_h(z, k))
      return (uint64_t)k;
  }
}

/* ---- touchpoints -------------------------------------------------------------------- */

enum { P_CHECKOUT, P_SUPPORT, P_WEB, P_APP, P_STORE, P_COUNT };
static const char *const kPrefix[P_COUNT] = {"checkout.", "support.", "web.", "app.", "store."};

static void touchpoint_stage_channel(uint32_t tp, uint8_t *stage, uint8_t *channel) {
  uint32_t v = tp / P_COUNT;
  static const uint8_t support_channels[] = {TP_CHANNEL_CHAT, TP_CHANNEL_PHONE, TP_CHANNEL_EMAIL,
                                             TP_CHANNEL_SOCIAL};
  switch (tp % P_COUNT) {
  case P_CHECKOUT:
    *stage = TP_STAGE_PURCHASE;
    *channel = v % 2 ? TP_CHANNEL_APP : TP_CHANNEL_WEB;
    break;
  case P_SUPPORT:
    *stage = TP_STAGE_POST_PURCHASE;
    *channel = support_channels[v % 4];
    break;
  case P_WEB:
    *stage = TP_STAGE_PRE_PURCHASE;
    *channel = TP_CHANNEL_WEB;
    break;
  case P_APP:
    *stage = v % 2 ? TP_STAGE_PURCHASE : TP_STAGE_PRE_PURCHASE;
    *channel = TP_CHANNEL_APP;
    break;
  default:
    *stage = TP_STAGE_PURCHASE;
    *channel = TP_CHANNEL_IN_PERSON;
    break;
  }
}

/* ---- incidents ---------------------------------------------------------------------- */

typedef enum { R_CSAT, R_NPS, R_FIRST_RESPONSE, R_COMPLAINTS, R_RETURNS, R_COUNT } rule_id_t;
typedef enum { M_BAD, M_GAP, M_GOOD } phase_mode_t;

typedef struct {
  int64_t len_ms;
  double per_min; /* events of the lane per minute; 0 in a gap */
  phase_mode_t mode;
} phase_t;

/*
 * One episode per rule of examples/touchpulse.yaml. Gaps are longer than
 * the rule's window plus the longest delay of a bad phase's follow-up that
 * the metric counts (first replies come 20-40 min after OPENED), so no
 * window with min_samples values mixes the two phases. Rates give each pure
 * window about twice min_samples.
 */
static const struct {
  const char *rule;
  tp_source_t src;
  int n_phases;
  phase_t phase[3];
  unsigned prefixes; /* bit mask of P_* touchpoints it may pick */
  int64_t idle_min, idle_max;
} kEpisode[R_COUNT] = {
    [R_CSAT] = {"checkout-csat-low", TP_SRC_FEEDBACK, 3,
                {{20 * MIN_MS, 3.0, M_BAD}, {16 * MIN_MS, 0, M_GAP}, {20 * MIN_MS, 3.0, M_GOOD}},
                1u << P_CHECKOUT, 5 * MIN_MS, 25 * MIN_MS},
    [R_NPS] = {"nps-negative", TP_SRC_FEEDBACK, 3,
               {{35 * MIN_MS, 2.5, M_BAD}, {31 * MIN_MS, 0, M_GAP}, {35 * MIN_MS, 2.5, M_GOOD}},
               (1u << P_COUNT) - 1, 5 * MIN_MS, 25 * MIN_MS},
    [R_FIRST_RESPONSE] = {"first-response-slow", TP_SRC_SUPPORT, 3,
                          {{30 * MIN_MS, 1.6, M_BAD}, {56 * MIN_MS, 0, M_GAP},
                           {25 * MIN_MS, 1.6, M_GOOD}},
                          1u << P_SUPPORT, 5 * MIN_MS, 25 * MIN_MS},
    [R_COMPLAINTS] = {"complaints-surge", TP_SRC_SUPPORT, 1,
                      {{25 * MIN_MS, 1.3, M_BAD}},
                      (1u << P_SUPPORT) | (1u << P_CHECKOUT) | (1u << P_APP), 15 * MIN_MS,
                      35 * MIN_MS},
    [R_RETURNS] = {"returns-spike", TP_SRC_COMMERCE, 3,
                   {{35 * MIN_MS, 3.75, M_BAD}, {31 * MIN_MS, 0, M_GAP}, {35 * MIN_MS, 2.5, M_GOOD}},
                   (1u << P_CHECKOUT) | (1u << P_APP) | (1u << P_STORE), 5 * MIN_MS, 25 * MIN_MS},
};

/* A lane plays episodes of one rule back to back. phase < 0: idle until phase_end. */
typedef struct {
  rule_id_t rule;
  int phase;
  int64_t phase_end;
  uint32_t tp;
} lane_t;

/* ---- pending follow-ups ------------------------------------------------------------- */

enum { E_LANE, E_TICKET, E_ORDER };
enum { F_CUSTOMER = 1, F_REOPENED = 2, F_NO_RETURN = 4 };

/* A ticket's or order's next event, or a lane's next incident event. Each
 * story has exactly one pending entry, which carries its whole state. */
typedef struct {
  int64_t due;
  uint64_t seq; /* insertion order: ties pop first-in first-out */
  uint64_t id;  /* ticket or order number, or lane index */
  uint32_t tp;
  uint8_t type, kind, flags;
} entry_t;

typedef struct {
  entry_t *v;
  size_t n, cap;
} heap_t;

static bool entry_before(const entry_t *a, const entry_t *b) {
  return a->due != b->due ? a->due < b->due : a->seq < b->seq;
}

static bool heap_push(heap_t *h, entry_t e) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 4096;
    entry_t *v = realloc(h->v, cap * sizeof(*v));
    if (v == NULL)
      return false;
    h->v = v, h->cap = cap;
  }
  size_t i = h->n++;
  while (i > 0 && entry_before(&e, &h->v[(i - 1) / 2])) {
    h->v[i] = h->v[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h->v[i] = e;
  return true;
}

static entry_t heap_pop(heap_t *h) {
  entry_t top = h->v[0], last = h->v[--h->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n)
      break;
    if (c + 1 < h->n && entry_before(&h->v[c + 1], &h->v[c]))
      c++;
    if (!entry_before(&h->v[c], &last))
      break;
    h->v[i] = h->v[c];
    i = c;
  }
  if (h->n > 0)
    h->v[i] = last;
  return top;
}

/* ---- the generator ------------------------------------------------------------------ */

typedef struct {
  rng_t rng;
  uint64_t seed, n_events;
  uint32_t n_tp;
  bool zipf;
  zipf_t zp;
  int64_t t0;
  char tag[8]; /* hex tag of the seed in ticket and order ids */
  heap_t heap[TP_SRC_COUNT];
  uint64_t seq, next_ticket, next_order;
  lane_t *lanes;
  size_t n_lanes;
  uint64_t episodes[R_COUNT];
  bool oom;
  /* the record being built; ev's strings point into these */
  tp_event_t ev;
  char id[40], tp[TP_TOUCHPOINT_MAX + 1], obj[48], customer[24], comment[256];
} gen_t;

static uint32_t pick_background_tp(gen_t *g) {
  return (uint32_t)(g->zipf ? zipf_sample(&g->zp, &g->rng) - 1 : rng_below(&g->rng, g->n_tp));
}

/* A cold touchpoint with one of the prefixes in mask: an index in the upper half
 * of the range, where background traffic is negligible under either distribution. */
static uint32_t pick_incident_tp(gen_t *g, unsigned mask) {
  unsigned p;
  do
    p = (unsigned)rng_below(&g->rng, P_COUNT);
  while (!(mask & (1u << p)));
  uint32_t lo = g->n_tp / 2, first = lo + (p + P_COUNT - lo % P_COUNT) % P_COUNT;
  uint32_t count = (g->n_tp - 1 - first) / P_COUNT + 1; /* n_tp >= 10: first < n_tp */
  return first + P_COUNT * (uint32_t)rng_below(&g->rng, count);
}

static void push(gen_t *g, tp_source_t src, entry_t e) {
  e.seq = g->seq++;
  if (!heap_push(&g->heap[src], e))
    g->oom = true;
}

/* The lane's next event time after t, moving through phases and episodes. */
static int64_t lane_next(gen_t *g, lane_t *ln, int64_t t) {
  for (;;) {
    if (ln->phase < 0) { /* idle: the next episode starts at phase_end */
      t = ln->phase_end;
      ln->phase = 0;
      ln->tp = pick_incident_tp(g, kEpisode[ln->rule].prefixes);
      ln->phase_end = t + kEpisode[ln->rule].phase[0].len_ms;
      g->episodes[ln->rule]++;
    }
    const phase_t *ph = &kEpisode[ln->rule].phase[ln->phase];
    if (ph->per_min > 0) {
      double gap = -log1p(-rng_unit(&g->rng)) * (double)MIN_MS / ph->per_min;
      int64_t c = t + 1 + (int64_t)gap;
      if (c < ln->phase_end)
        return c;
    }
    t = ln->phase_end;
    if (++ln->phase < kEpisode[ln->rule].n_phases) {
      ln->phase_end = t + kEpisode[ln->rule].phase[ln->phase].len_ms;
    } else {
      ln->phase = -1;
      ln->phase_end = t + rng_range(&g->rng, kEpisode[ln->rule].idle_min, kEpisode[ln->rule].idle_max);
    }
  }
}

static const char *const kWords[] = {
    "the",   "delivery", "was",      "late",    "and",    "support", "helped",  "quickly",
    "great", "price",    "but",      "checkout", "failed", "twice",   "app",     "crashed",
    "easy",  "to",       "find",     "what",    "I",      "needed",  "staff",   "friendly",
    "slow",  "website",  "payment",  "page",    "order",  "arrived", "damaged", "would",
    "buy",   "again",    "not",      "happy",   "with",   "refund",  "process", "very"};


/* Common fields of record number rec at slot time t; strings point into g. */
static tp_event_t *begin(gen_t *g, tp_source_t src, uint32_t tp, int64_t t, uint64_t rec) {
  tp_event_t *ev = &g->ev;
  memset(ev, 0, sizeof(*ev));
  ev->source = src;
  /* UUID-formatted; the last 64 bits are a bijection of the record number,
   * so ids are unique within the load. */
  uint64_t lo = mix64(rec ^ mix64(g->seed)), hi = mix64(lo + g->seed);
  snprintf(g->id, sizeof(g->id), "%08x-%04x-%04x-%04x-%012" PRIx64, (unsigned)(hi >> 32),
           (unsigned)(hi >> 16) & 0xffffu, (unsigned)hi & 0xffffu, (unsigned)(lo >> 48),
           (uint64_t)(lo & 0xffffffffffffull));
  snprintf(g->tp, sizeof(g->tp), "%s%u", kPrefix[tp % P_COUNT], (unsigned)tp);
  ev->event_id = (tp_str_t){g->id, (uint32_t)strlen(g->id)};
  ev->touchpoint = (tp_str_t){g->tp, (uint32_t)strlen(g->tp)};
  ev->occurred_at = t + (int64_t)rng_below(&g->rng, JITTER_MS);
  touchpoint_stage_channel(tp, &ev->stage, &ev->channel);
  return ev;
}

/* ---- feedback ---------------------------------------------------------------------- */

static int8_t score(gen_t *g, int lo, int hi) { return (int8_t)rng_range(&g->rng, lo, hi + 1); }

static tp_event_t *feedback(gen_t *g, uint32_t tp, int64_t t, uint64_t rec) {
  tp_event_t *ev = begin(g, TP_SRC_FEEDBACK, tp, t, rec);
  ev->feedback.csat = ev->feedback.nps = ev->feedback.ces = TP_SCORE_NULL;
  ev->feedback.repurchase = ev->feedback.try_other = TP_SCORE_NULL;
  snprintf(g->customer, sizeof(g->customer), "C%07u", (unsigned)rng_below(&g->rng, 5000000));
  ev->feedback.customer_id = (tp_str_t){g->customer, (uint32_t)strlen(g->customer)};
  /* The comment sets the size: values are 100-300 bytes. */
  size_t want = (size_t)rng_range(&g->rng, 32, 215), len = 0;
  while (len < want) {
    const char *w = kWords[rng_below(&g->rng, TP_ARRAY_SIZE(kWords))];
    size_t wl = strlen(w);
    if (len + wl + 1 >= sizeof(g->comment))
      break;
    if (len > 0)
      g->comment[len++] = ' ';
    memcpy(g->comment + len, w, wl);
    len += wl;
  }
  if (len > want)
    len = want;
  ev->feedback.comment = (tp_str_t){g->comment, (uint32_t)len};
  return ev;
}

/* Healthy traffic: CSAT mean 4.35, NPS +58, far from every rule. */
static void background_feedback(gen_t *g, int64_t t, uint64_t rec) {
  tp_event_t *ev = feedback(g, pick_background_tp(g), t, rec);
  if (rng_chance(&g->rng, 0.75)) {
    unsigned u = (unsigned)rng_below(&g->rng, 100);
    ev->feedback.csat = (int8_t)(u < 2 ? 1 : u < 5 ? 2 : u < 13 ? 3 : u < 45 ? 4 : 5);
  }
  if (rng_chance(&g->rng, 0.45)) {
    unsigned u = (unsigned)rng_below(&g->rng, 100);
    int lo = u < 7 ? 0 : u < 35 ? 7 : 9, hi = u < 7 ? 6 : u < 35 ? 8 : 10;
    ev->feedback.nps = score(g, lo, hi);
    if (rng_chance(&g->rng, 0.5)) {
      ev->feedback.repurchase = score(g, 6, 10);
      ev->feedback.try_other = score(g, 5, 10);
    }
  }
  if (rng_chance(&g->rng, 0.3))
    ev->feedback.ces = score(g, 4, 7);
  if (ev->feedback.csat == TP_SCORE_NULL && ev->feedback.nps == TP_SCORE_NULL &&
      ev->feedback.ces == TP_SCORE_NULL)
    ev->feedback.csat = score(g, 4, 5);
}

/* ---- support ----------------------------------------------------------------------- */

static void set_ticket(gen_t *g, tp_event_t *ev, uint64_t id, tp_support_kind_t kind) {
  snprintf(g->obj, sizeof(g->obj), "TK-%s-%" PRIu64, g->tag, id);
  ev->support.ticket_id = (tp_str_t){g->obj, (uint32_t)strlen(g->obj)};
  ev->support.kind = (uint8_t)kind;
}

static void ticket_open(gen_t *g, uint32_t tp, int64_t t, uint64_t rec, int64_t reply_ms,
                        bool complaint) {
  tp_event_t *ev = begin(g, TP_SRC_SUPPORT, tp, t, rec);
  uint64_t id = g->next_ticket++;
  set_ticket(g, ev, id, TP_SUPPORT_OPENED);
  ev->support.complaint = complaint;
  push(g, TP_SRC_SUPPORT,
       (entry_t){.due = t + reply_ms, .id = id, .tp = tp, .type = E_TICKET,
                 .kind = TP_SUPPORT_AGENT_REPLIED});
}

/* First replies of healthy tickets take 2-5 min, of incident tickets 20-40 min:
 * nothing near the rule's 15 min threshold or 10 min clear level. */
static int64_t fast_reply(gen_t *g) { return rng_range(&g->rng, 2 * MIN_MS, 5 * MIN_MS); }
static int64_t slow_reply(gen_t *g) { return rng_range(&g->rng, 20 * MIN_MS, 40 * MIN_MS); }

static void ticket_step(gen_t *g, entry_t e, int64_t t, uint64_t rec) {
  tp_event_t *ev = begin(g, TP_SRC_SUPPORT, e.tp, t, rec);
  set_ticket(g, ev, e.id, (tp_support_kind_t)e.kind);
  entry_t nx = e;
  switch (e.kind) {
  case TP_SUPPORT_AGENT_REPLIED:
    if (!(e.flags & (F_CUSTOMER | F_REOPENED)) && rng_chance(&g->rng, 0.5)) {
      nx.kind = TP_SUPPORT_CUSTOMER_REPLIED;
      nx.due = t + rng_range(&g->rng, 5 * MIN_MS, 60 * MIN_MS);
    } else if (rng_chance(&g->rng, 0.95)) {
      nx.kind = TP_SUPPORT_RESOLVED;
      nx.due = t + rng_range(&g->rng, 10 * MIN_MS, 90 * MIN_MS);
    } else {
      return; /* left open */
    }
    break;
  case TP_SUPPORT_CUSTOMER_REPLIED:
    nx.kind = TP_SUPPORT_AGENT_REPLIED;
    nx.flags |= F_CUSTOMER;
    nx.due = t + rng_range(&g->rng, 2 * MIN_MS, 15 * MIN_MS);
    break;
  case TP_SUPPORT_RESOLVED:
    if ((e.flags & F_REOPENED) || !rng_chance(&g->rng, 0.06))
      return;
    nx.kind = TP_SUPPORT_REOPENED;
    nx.due = t + rng_range(&g->rng, 30 * MIN_MS, 240 * MIN_MS);
    break;
  case TP_SUPPORT_REOPENED:
    nx.kind = TP_SUPPORT_AGENT_REPLIED;
    nx.flags |= F_REOPENED;
    nx.due = t + rng_range(&g->rng, 2 * MIN_MS, 15 * MIN_MS);
    break;
  default:
    return;
  }
  push(g, TP_SRC_SUPPORT, nx);
}

/* ---- commerce ---------------------------------------------------------------------- */

static const char *const kReasons[] = {"damaged in transit", "wrong size", "not as described",
                                       "arrived late", "defective", "changed my mind"};

static void set_order(gen_t *g, tp_event_t *ev, uint64_t id, tp_commerce_kind_t kind) {
  snprintf(g->obj, sizeof(g->obj), "OR-%s-%" PRIu64, g->tag, id);
  ev->commerce.order_id = (tp_str_t){g->obj, (uint32_t)strlen(g->obj)};
  ev->commerce.kind = (uint8_t)kind;
}

static void order_place(gen_t *g, uint32_t tp, int64_t t, uint64_t rec, uint8_t flags) {
  tp_event_t *ev = begin(g, TP_SRC_COMMERCE, tp, t, rec);
  uint64_t id = g->next_order++;
  set_order(g, ev, id, TP_COMMERCE_ORDER_PLACED);
  ev->commerce.has_amount = true;
  ev->commerce.amount_minor = rng_range(&g->rng, 500, 50000);
  if (rng_chance(&g->rng, 0.97))
    push(g, TP_SRC_COMMERCE,
         (entry_t){.due = t + rng_range(&g->rng, 60 * MIN_MS, 360 * MIN_MS), .id = id, .tp = tp,
                   .type = E_ORDER, .kind = TP_COMMERCE_DELIVERED, .flags = flags});
}

static void return_request(gen_t *g, tp_event_t *ev, uint64_t id) {
  set_order(g, ev, id, TP_COMMERCE_RETURN_REQUESTED);
  const char *why = kReasons[rng_below(&g->rng, TP_ARRAY_SIZE(kReasons))];
  ev->commerce.reason = (tp_str_t){why, (uint32_t)strlen(why)};
}

static void order_step(gen_t *g, entry_t e, int64_t t, uint64_t rec) {
  tp_event_t *ev = begin(g, TP_SRC_COMMERCE, e.tp, t, rec);
  if (e.kind == TP_COMMERCE_RETURN_REQUESTED) {
    return_request(g, ev, e.id);
    return;
  }
  set_order(g, ev, e.id, TP_COMMERCE_DELIVERED);
  /* 2 % of orders come back, hours later: return_pct stays near 2 %. */
  if (!(e.flags & F_NO_RETURN) && rng_chance(&g->rng, 0.02)) {
    entry_t nx = e;
    nx.kind = TP_COMMERCE_RETURN_REQUESTED;
    nx.due = t + rng_range(&g->rng, 30 * MIN_MS, 240 * MIN_MS);
    push(g, TP_SRC_COMMERCE, nx);
  }
}

/* ---- incident lanes ---------------------------------------------------------------- */

static void lane_step(gen_t *g, entry_t e, int64_t t, uint64_t rec) {
  lane_t *ln = &g->lanes[e.id];
  phase_mode_t mode = kEpisode[ln->rule].phase[ln->phase].mode;
  bool bad = mode == M_BAD;
  unsigned u;
  tp_event_t *ev;
  switch (ln->rule) {
  case R_CSAT: /* bad: CSAT 1-3 (mean 1.9); good: 4-5 (mean 4.6) */
    ev = feedback(g, ln->tp, t, rec);
    u = (unsigned)rng_below(&g->rng, 100);
    ev->feedback.csat = (int8_t)(bad ? (u < 35 ? 1 : u < 75 ? 2 : 3) : (u < 40 ? 4 : 5));
    if (rng_chance(&g->rng, 0.5))
      ev->feedback.ces = score(g, bad ? 1 : 5, bad ? 3 : 7);
    break;
  case R_NPS: /* bad: no promoters (NPS about -75); good: no detractors (about +75) */
    ev = feedback(g, ln->tp, t, rec);
    u = (unsigned)rng_below(&g->rng, 100);
    if (u >= 75)
      ev->feedback.nps = score(g, 7, 8); /* passives */
    else
      ev->feedback.nps = score(g, bad ? 0 : 9, bad ? 6 : 10);
    ev->feedback.repurchase = score(g, bad ? 0 : 7, bad ? 5 : 10);
    ev->feedback.try_other = score(g, bad ? 0 : 6, bad ? 5 : 10);
    break;
  case R_FIRST_RESPONSE:
    ticket_open(g, ln->tp, t, rec, bad ? slow_reply(g) : fast_reply(g), false);
    break;
  case R_COMPLAINTS:
    ticket_open(g, ln->tp, t, rec, fast_reply(g), true);
    break;
  case R_RETURNS: /* bad: 1 return per 2 orders (return_pct about 50); good: no returns */
    if (bad && rng_chance(&g->rng, 1.0 / 3)) {
      /* A return of an order placed before the load. */
      return_request(g, begin(g, TP_SRC_COMMERCE, ln->tp, t, rec), g->next_order++);
    } else {
      order_place(g, ln->tp, t, rec, F_NO_RETURN);
    }
    break;
  default:
    break;
  }
  e.due = lane_next(g, ln, e.due);
  push(g, kEpisode[ln->rule].src, e);
}

/* Fills g->ev with record number rec of topic src at slot time t. */
static void next_record(gen_t *g, tp_source_t src, int64_t t, uint64_t rec) {
  heap_t *h = &g->heap[src];
  if (h->n > 0 && h->v[0].due <= t) {
    entry_t e = heap_pop(h);
    switch (e.type) {
    case E_LANE:
      lane_step(g, e, t, rec);
      return;
    case E_TICKET:
      ticket_step(g, e, t, rec);
      return;
    default:
      order_step(g, e, t, rec);
      return;
    }
  }
  switch (src) {
  case TP_SRC_FEEDBACK:
    background_feedback(g, t, rec);
    break;
  case TP_SRC_SUPPORT: /* 0.5 % complaints: even a Zipf head stays far below 10 per 15 min */
    ticket_open(g, pick_background_tp(g), t, rec, fast_reply(g), rng_chance(&g->rng, 0.005));
    break;
  default:
    order_place(g, pick_background_tp(g), t, rec, 0);
    break;
  }
}

static bool gen_init(gen_t *g, uint64_t seed, uint64_t n_events, uint32_t n_tp, bool zipf,
                     double zipf_s, int64_t t0, unsigned lanes_per_rule) {
  memset(g, 0, sizeof(*g));
  g->seed = seed;
  g->n_events = n_events;
  g->n_tp = n_tp;
  g->zipf = zipf;
  g->t0 = t0;
  rng_seed(&g->rng, seed);
  if (zipf)
    zipf_init(&g->zp, zipf_s, n_tp);
  snprintf(g->tag, sizeof(g->tag), "%06x", (unsigned)(mix64(seed) & 0xffffffu));
  g->n_lanes = (size_t)lanes_per_rule * R_COUNT;
  if (g->n_lanes == 0)
    return true;
  g->lanes = calloc(g->n_lanes, sizeof(*g->lanes));
  if (g->lanes == NULL)
    return false;
  for (size_t i = 0; i < g->n_lanes; i++) {
    lane_t *ln = &g->lanes[i];
    ln->rule = (rule_id_t)(i % R_COUNT);
    ln->phase = -1; /* lanes start staggered over the first 90 minutes */
    ln->phase_end = t0 + rng_range(&g->rng, 0, 90 * MIN_MS);
    push(g, kEpisode[ln->rule].src,
         (entry_t){.due = lane_next(g, ln, t0), .id = i, .type = E_LANE});
  }
  return !g->oom;
}

static void gen_free(gen_t *g) {
  for (int s = 0; s < TP_SRC_COUNT; s++)
    free(g->heap[s].v);
  free(g->lanes);
}

/* ---- producer ---------------------------------------------------------------------- */

typedef struct {
  uint64_t delivered, failed;
  char first_error[512];
  volatile int fatal;
} delivery_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
  (void)rk;
  delivery_t *d = opaque;
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    d->delivered++;
    return;
  }
  if (d->failed++ == 0)
    snprintf(d->first_error, sizeof(d->first_error), "%s [%d]: %s", rd_kafka_topic_name(msg->rkt),
             (int)msg->partition, rd_kafka_err2str(msg->err));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  delivery_t *d = opaque;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_fatal_error(rk, why, sizeof(why));
    fprintf(stderr, "bench_load: fatal producer error: %s\n", why);
    d->fatal = 1;
    return;
  }
  fprintf(stderr, "bench_load: producer: %s: %s\n", rd_kafka_err2name((rd_kafka_resp_err_t)err),
          reason);
}

/* Fails with a clear message when a topic does not exist; warns when its
 * partition count differs from the one the caller announced. */
static bool check_topic(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int partitions) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 15000);
  if (err) {
    fprintf(stderr, "bench_load: metadata of %s: %s\n", rd_kafka_topic_name(rkt),
            rd_kafka_err2str(err));
    return false;
  }
  bool ok = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR;
  if (!ok)
    fprintf(stderr, "bench_load: topic %s: %s (create it first)\n", rd_kafka_topic_name(rkt),
            rd_kafka_err2str(md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
  else if (partitions > 0 && md->topics[0].partition_cnt != partitions)
    fprintf(stderr, "bench_load: note: topic %s has %d partitions, not %d\n",
            rd_kafka_topic_name(rkt), md->topics[0].partition_cnt, partitions);
  rd_kafka_metadata_destroy(md);
  return ok;
}

/* ---- main -------------------------------------------------------------------------- */

static void usage(FILE *out) {
  fputs("usage: bench_load [options]\n"
        "  --bootstrap HOST:PORT   broker (default localhost:9092)\n"
        "  --events N              records in all (default 10000000)\n"
        "  --touchpoints N         distinct touchpoints, >= 10 (default 100000)\n"
        "  --dist uniform|zipf     touchpoint popularity (default uniform)\n"
        "  --zipf-s S              Zipf exponent (default 1.0)\n"
        "  --seed N                generator seed (default 1)\n"
        "  --start MS              event time of the first record, ms since the epoch\n"
        "                          (default: two days before now, floored to the UTC day)\n"
        "  --incidents K           incident lanes per rule (default events/500000, 1..16)\n"
        "  --partitions N          partitions the caller created per topic (default 8;\n"
        "                          informational: a mismatch is reported)\n"
        "  --feedback T, --support T, --commerce T   topic names (cx.feedback, ...)\n"
        "  --compression CODEC     none, lz4, ... (default none)\n"
        "  -X key=value            any librdkafka producer property (repeatable)\n"
        "  --dry-run               generate and encode only, no broker; prints a checksum\n"
        "                          of every key and value on stderr\n",
        out);
}

int main(int argc, char **argv) {
  const char *bootstrap = "localhost:9092", *compression = "none";
  const char *topic[TP_SRC_COUNT] = {"cx.feedback", "cx.support", "cx.commerce"};
  const char *extra[MAX_EXTRA_CONF];
  int n_extra = 0;
  uint64_t n_events = 10000000, n_tp = 100000, seed = 1, partitions = 8, incidents = UINT64_MAX;
  uint64_t start = 0;
  bool zipf = false, have_start = false, dry_run = false;
  double zipf_s = 1.0;
  enum { O_BOOT = 256, O_EVENTS, O_TP, O_DIST, O_ZIPF_S, O_SEED, O_START, O_INC, O_PART, O_FB,
         O_SUP, O_COM, O_COMP, O_DRY, O_HELP };
  static const struct option opts[] = {
      {"bootstrap", required_argument, NULL, O_BOOT}, {"events", required_argument, NULL, O_EVENTS},
      {"touchpoints", required_argument, NULL, O_TP}, {"dist", required_argument, NULL, O_DIST},
      {"zipf-s", required_argument, NULL, O_ZIPF_S},  {"seed", required_argument, NULL, O_SEED},
      {"start", required_argument, NULL, O_START},    {"incidents", required_argument, NULL, O_INC},
      {"partitions", required_argument, NULL, O_PART}, {"feedback", required_argument, NULL, O_FB},
      {"support", required_argument, NULL, O_SUP},    {"commerce", required_argument, NULL, O_COM},
      {"compression", required_argument, NULL, O_COMP}, {"dry-run", no_argument, NULL, O_DRY},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0}};
  int c, li = -1;
  /* NOLINTNEXTLINE(concurrency-mt-unsafe): options are parsed before any thread starts. */
  while ((c = getopt_long(argc, argv, "X:h", opts, &li)) != -1) {
    bool ok = true;
    switch (c) {
    case O_BOOT: bootstrap = optarg; break;
    case O_EVENTS: ok = parse_u64(optarg, 1, 10000000000ull, &n_events); break;
    case O_TP: ok = parse_u64(optarg, 10, 100000000, &n_tp); break;
    case O_DIST:
      ok = strcmp(optarg, "zipf") == 0 || strcmp(optarg, "uniform") == 0;
      zipf = strcmp(optarg, "zipf") == 0;
      break;
    case O_ZIPF_S: {
      char *end;
      zipf_s = strtod(optarg, &end);
      ok = end != optarg && *end == '\0' && zipf_s > 0 && zipf_s <= 10;
      break;
    }
    case O_SEED: ok = parse_u64(optarg, 0, UINT64_MAX, &seed); break;
    case O_START: ok = parse_u64(optarg, 0, 4102444800000ull, &start), have_start = true; break;
    case O_INC: ok = parse_u64(optarg, 0, 1000, &incidents); break;
    case O_PART: ok = parse_u64(optarg, 1, 100000, &partitions); break;
    case O_FB: topic[TP_SRC_FEEDBACK] = optarg; break;
    case O_SUP: topic[TP_SRC_SUPPORT] = optarg; break;
    case O_COM: topic[TP_SRC_COMMERCE] = optarg; break;
    case O_COMP: compression = optarg; break;
    case O_DRY: dry_run = true; break;
    case 'X': ok = add_extra(extra, &n_extra, MAX_EXTRA_CONF, optarg); break;
    case 'h':
    case O_HELP: usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
    if (!ok) {
      bad_option(c, opts[li].name, optarg);
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "bench_load: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (incidents == UINT64_MAX) {
    incidents = n_events / 500000;
    incidents = incidents < 1 ? 1 : incidents > 16 ? 16 : incidents;
  }
  int64_t t0 = have_start ? (int64_t)start : tp_floor_to(tp_now_ms() - 2 * DAY_MS, DAY_MS);
  if (t0 + DAY_MS + 6 * 3600000LL > tp_now_ms())
    fprintf(stderr, "bench_load: note: with --start %" PRId64 " some records lie in the future or "
                    "within hours of now\n", t0);

  /* The generator first: its state is independent of the producer. */
  gen_t *g = malloc(sizeof(*g));
  if (g == NULL || !gen_init(g, seed, n_events, (uint32_t)n_tp, zipf, zipf_s, t0, (unsigned)incidents)) {
    fprintf(stderr, "bench_load: out of memory\n");
    if (g)
      gen_free(g);
    free(g);
    return 1;
  }

  /* Producer (none in a dry run). */
  delivery_t dlv = {0};
  rd_kafka_t *rk = NULL;
  rd_kafka_topic_t *rkt[TP_SRC_COUNT] = {NULL};
  int rc = 1;
  if (dry_run)
    goto generate;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  bool ok = conf_set(conf, "bootstrap.servers", bootstrap) &&
            conf_set(conf, "client.id", "touchpulse-bench-load") && conf_set(conf, "acks", "all") &&
            conf_set(conf, "enable.idempotence", "true") &&
            conf_set(conf, "partitioner", "murmur2_random") && conf_set(conf, "linger.ms", "20") &&
            conf_set(conf, "batch.size", "1000000") &&
            conf_set(conf, "batch.num.messages", "100000") &&
            conf_set(conf, "queue.buffering.max.messages", "1000000") &&
            conf_set(conf, "compression.codec", compression);
  ok = ok && conf_set_extra(conf, extra, n_extra);
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    rc = 2;
    goto out;
  }
  rd_kafka_conf_set_opaque(conf, &dlv);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  char err[512];
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (rk == NULL) {
    fprintf(stderr, "bench_load: producer: %s\n", err);
    rd_kafka_conf_destroy(conf);
    goto out;
  }
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    rkt[s] = rd_kafka_topic_new(rk, topic[s], NULL);
    if (rkt[s] == NULL) {
      fprintf(stderr, "bench_load: topic %s: %s\n", topic[s], rd_kafka_err2str(rd_kafka_last_error()));
      goto out;
    }
    if (!check_topic(rk, rkt[s], (int)partitions))
      goto out;
  }

generate:;
  uint64_t checksum = 0xcbf29ce484222325ull; /* FNV-1a of keys and values, dry runs only */
  uint64_t count[TP_SRC_COUNT] = {0}, bytes = 0;
  size_t vmin[TP_SRC_COUNT] = {SIZE_MAX, SIZE_MAX, SIZE_MAX}, vmax[TP_SRC_COUNT] = {0};
  uint64_t vsum[TP_SRC_COUNT] = {0};
  int64_t last_at = t0;
  uint8_t buf[2048];
  uint64_t t_start = tp_mono_ns();
  for (uint64_t i = 0; i < n_events; i++) {
    int64_t t = t0 + (int64_t)(i * (uint64_t)DAY_MS / n_events);
    unsigned u = (unsigned)rng_below(&g->rng, 100);
    tp_source_t src = u < 80 ? TP_SRC_FEEDBACK : u < 92 ? TP_SRC_SUPPORT : TP_SRC_COMMERCE;
    next_record(g, src, t, i);
    if (g->oom) {
      fprintf(stderr, "bench_load: out of memory\n");
      goto out;
    }
    size_t len = tp_encode_event(&g->ev, buf, sizeof(buf));
    assert(len > 0);
    if (dry_run) {
      for (size_t k = 0; k < g->ev.touchpoint.len; k++)
        checksum = (checksum ^ (uint8_t)g->tp[k]) * 0x100000001b3ull;
      for (size_t k = 0; k < len; k++)
        checksum = (checksum ^ buf[k]) * 0x100000001b3ull;
    }
    for (; !dry_run;) {
      rd_kafka_resp_err_t perr =
          rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt[src]), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(g->tp, g->ev.touchpoint.len),
                            RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_END);
      if (perr == RD_KAFKA_RESP_ERR_NO_ERROR)
        break;
      if (perr != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        fprintf(stderr, "bench_load: produce to %s: %s\n", topic[src], rd_kafka_err2str(perr));
        goto out;
      }
      rd_kafka_poll(rk, 10);
      if (dlv.fatal)
        goto out;
    }
    count[src]++;
    bytes += len + g->ev.touchpoint.len;
    vsum[src] += len;
    vmin[src] = len < vmin[src] ? len : vmin[src];
    vmax[src] = len > vmax[src] ? len : vmax[src];
    if (g->ev.occurred_at > last_at)
      last_at = g->ev.occurred_at;
    if ((i & 1023) == 0 && !dry_run) {
      rd_kafka_poll(rk, 0);
      if (dlv.fatal)
        goto out;
    }
  }
  /* Flush: every record delivered or failed, at most message.timeout.ms away. */
  while (!dry_run && rd_kafka_outq_len(rk) > 0 && !dlv.fatal)
    rd_kafka_flush(rk, 1000);
  double seconds = (double)(tp_mono_ns() - t_start) / 1e9;
  if (dlv.fatal)
    goto out;

  fprintf(stderr,
          "bench_load: %" PRIu64 " records, %u touchpoints (%s", n_events, (unsigned)n_tp,
          zipf ? "zipf" : "uniform");
  if (zipf)
    fprintf(stderr, " s=%.2f", zipf_s);
  fprintf(stderr, "), event time %" PRId64 "..%" PRId64 " (%.1f h), %u incident lane(s) per rule,"
                  " episodes started:",
          t0, last_at, (double)(last_at - t0) / 3.6e6, (unsigned)incidents);
  for (int r = 0; r < R_COUNT; r++)
    fprintf(stderr, " %s=%" PRIu64, kEpisode[r].rule, g->episodes[r]);
  fprintf(stderr, "\n");
  for (int s = 0; s < TP_SRC_COUNT; s++)
    if (count[s] > 0)
      fprintf(stderr, "bench_load: %s: %" PRIu64 " records, value bytes min %zu avg %.0f max %zu\n",
              topic[s], count[s], vmin[s], (double)vsum[s] / (double)count[s], vmax[s]);
  fprintf(stderr, "bench_load: %.0f records/s, %.1f MB/s\n", (double)n_events / seconds,
          (double)bytes / seconds / 1e6);
  if (dry_run)
    fprintf(stderr, "bench_load: dry run, nothing produced; checksum %016" PRIx64 "\n", checksum);
  else if (dlv.failed > 0 || dlv.delivered != n_events) {
    fprintf(stderr, "bench_load: %" PRIu64 " of %" PRIu64 " records not delivered; first error: %s\n",
            n_events - dlv.delivered, n_events, dlv.failed ? dlv.first_error : "none reported");
    goto out;
  }
  printf("{\"events\":%" PRIu64 ",\"feedback\":%" PRIu64 ",\"support\":%" PRIu64
         ",\"commerce\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"seconds\":%.3f}\n",
         n_events, count[TP_SRC_FEEDBACK], count[TP_SRC_SUPPORT], count[TP_SRC_COMMERCE], bytes,
         seconds);
  fflush(stdout);
  rc = 0;
out:
  if (rc != 0 && dlv.failed > 0)
    fprintf(stderr, "bench_load: %" PRIu64 " records failed; first error: %s\n", dlv.failed,
            dlv.first_error);
  if (rc != 0 && rk) /* do not wait message.timeout.ms for records that will not be sent */
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  for (int s = 0; s < TP_SRC_COUNT; s++)
    if (rkt[s])
      rd_kafka_topic_destroy(rkt[s]);
  if (rk)
    rd_kafka_destroy(rk);
  gen_free(g);
  free(g);
  return rc;
}
