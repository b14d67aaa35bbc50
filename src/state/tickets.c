/*
 * tickets.c -- the support ticket table of one partition: lifecycle state
 * per ticket for first-response, resolution and SLA metrics, a least recently
 * used list for expiry (support.ticket_ttl) and the support.max_tickets cap,
 * and a min-heap of first-reply deadlines.
 *
 * Tickets live in one pool array addressed by index, so the hash chains, the
 * LRU list and the deadline heap hold 32-bit indexes, and a slot's gen counter
 * tells a heap entry that its ticket was dropped and the slot reused. Owner
 * thread only; nothing here is shared.
 */
#include <string.h>

#include "state_int.h"

#define NIL 0u

static inline tp_ticket_t *at(tp_tickets_t *t, uint32_t i1) { return &t->pool[i1 - 1]; }

tp_err_t tp__tickets_init(tp_tickets_t *t, uint32_t max) {
  memset(t, 0, sizeof(*t));
  t->max = max ? max : 1;
  t->bucket_mask = 1023;
  t->buckets = tp_calloc(t->bucket_mask + 1, sizeof(*t->buckets));
  return t->buckets ? TP_OK : TP_ENOMEM;
}

void tp__tickets_free(tp_tickets_t *t) {
  tp_free(t->pool);
  tp_free(t->buckets);
  tp_free(t->heap);
  memset(t, 0, sizeof(*t));
}

static uint32_t bucket_of(const tp_tickets_t *t, const uint64_t fp[2]) {
  return (uint32_t)(fp[0] & t->bucket_mask);
}

static void lru_unlink(tp_tickets_t *t, uint32_t i1) {
  tp_ticket_t *tk = at(t, i1);
  if (tk->lru_prev)
    at(t, tk->lru_prev)->lru_next = tk->lru_next;
  else
    t->lru_head = tk->lru_next;
  if (tk->lru_next)
    at(t, tk->lru_next)->lru_prev = tk->lru_prev;
  else
    t->lru_tail = tk->lru_prev;
  tk->lru_prev = tk->lru_next = NIL;
}

static void lru_append(tp_tickets_t *t, uint32_t i1) {
  tp_ticket_t *tk = at(t, i1);
  tk->lru_prev = t->lru_tail;
  tk->lru_next = NIL;
  if (t->lru_tail)
    at(t, t->lru_tail)->lru_next = i1;
  else
    t->lru_head = i1;
  t->lru_tail = i1;
}

void tp__tickets_touch(tp_tickets_t *t, const tp_ticket_t *tk) {
  uint32_t i1 = (uint32_t)(tk - t->pool) + 1;
  if (t->lru_tail == i1)
    return;
  lru_unlink(t, i1);
  lru_append(t, i1);
}

static void chain_unlink(tp_tickets_t *t, uint32_t i1) {
  tp_ticket_t *tk = at(t, i1);
  uint32_t *link = &t->buckets[bucket_of(t, tk->fp)];
  while (*link != i1)
    link = &at(t, *link)->chain;
  *link = tk->chain;
}

static void drop(tp_tickets_t *t, uint32_t i1) {
  tp_ticket_t *tk = at(t, i1);
  chain_unlink(t, i1);
  lru_unlink(t, i1);
  uint32_t gen = tk->gen + 1;
  memset(tk, 0, sizeof(*tk));
  tk->gen = gen;
  tk->chain = t->free_head;
  t->free_head = i1;
  t->count--;
}

/* Double the bucket array once chains average more than one ticket. */
static void maybe_rehash(tp_tickets_t *t) {
  if (t->count <= t->bucket_mask || t->bucket_mask >= (1u << 30))
    return;
  uint32_t mask = t->bucket_mask * 2 + 1;
  uint32_t *buckets = tp_calloc((size_t)mask + 1, sizeof(*buckets));
  if (buckets == NULL)
    return; /* longer chains, still correct */
  for (uint32_t b = 0; b <= t->bucket_mask; b++) {
    uint32_t i1 = t->buckets[b];
    while (i1) {
      tp_ticket_t *tk = at(t, i1);
      uint32_t next = tk->chain;
      uint32_t nb = (uint32_t)(tk->fp[0] & mask);
      tk->chain = buckets[nb];
      buckets[nb] = i1;
      i1 = next;
    }
  }
  tp_free(t->buckets);
  t->buckets = buckets;
  t->bucket_mask = mask;
}

tp_ticket_t *tp__tickets_get(tp_tickets_t *t, const uint64_t fp[2], bool create,
                             bool *evicted) {
  if (evicted)
    *evicted = false;
  for (uint32_t i1 = t->buckets[bucket_of(t, fp)]; i1; i1 = at(t, i1)->chain) {
    tp_ticket_t *tk = at(t, i1);
    if (tk->fp[0] == fp[0] && tk->fp[1] == fp[1])
      return tk;
  }
  if (!create)
    return NULL;

  if (t->count >= t->max && t->lru_head) {
    drop(t, t->lru_head);
    if (evicted)
      *evicted = true;
  }
  uint32_t i1 = t->free_head;
  if (i1) {
    t->free_head = at(t, i1)->chain;
  } else {
    if (t->pool_len == t->pool_cap) {
      uint32_t cap = t->pool_cap ? t->pool_cap * 2 : 256;
      if (cap > t->max)
        cap = t->max;
      if (cap <= t->pool_cap)
        return NULL;
      tp_ticket_t *pool = tp_realloc(t->pool, (size_t)cap * sizeof(*pool));
      if (pool == NULL)
        return NULL;
      t->pool = pool;
      t->pool_cap = cap;
    }
    i1 = ++t->pool_len;
    memset(at(t, i1), 0, sizeof(tp_ticket_t));
  }
  tp_ticket_t *tk = at(t, i1);
  uint32_t gen = tk->gen;
  memset(tk, 0, sizeof(*tk));
  tk->gen = gen;
  tk->fp[0] = fp[0];
  tk->fp[1] = fp[1];
  tk->opened_at = tk->first_reply_at = tk->min_reply_at = tk->last_event_at = TP_NONE_MS;
  uint32_t b = bucket_of(t, fp);
  tk->chain = t->buckets[b];
  t->buckets[b] = i1;
  lru_append(t, i1);
  t->count++;
  maybe_rehash(t);
  return tk;
}

/* ---- deadline heap ------------------------------------------------------ */

static bool heap_less(const tp_deadline_t *a, const tp_deadline_t *b) {
  /* Ties broken by insertion-independent fields keep pops deterministic. */
  if (a->deadline != b->deadline)
    return a->deadline < b->deadline;
  return a->idx < b->idx;
}

static void sift_down(tp_tickets_t *t, size_t i) {
  size_t n = t->heap_len;
  tp_deadline_t x = t->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && heap_less(&t->heap[c + 1], &t->heap[c]))
      c++;
    if (!heap_less(&t->heap[c], &x))
      break;
    t->heap[i] = t->heap[c];
    i = c;
  }
  t->heap[i] = x;
}

/*
 * A ticket dropped at support.max_tickets (or expired) leaves its deadline
 * in the heap until the watermark reaches it, which may be an hour of event
 * time away: a flood of new tickets would grow the heap without bound. When
 * the heap is full and holds more than twice the tickets that can be live,
 * drop the entries of tickets that are gone and re-heapify, O(n) amortised
 * over the n pushes that filled it. Which entries remain, and so every pop,
 * is still a function of the partition's records in order.
 */
static void compact(tp_tickets_t *t) {
  size_t kept = 0;
  for (size_t i = 0; i < t->heap_len; i++) {
    const tp_deadline_t *d = &t->heap[i];
    if (tp__tickets_at(t, d->idx, d->gen) != NULL) /* pops skip the others */
      t->heap[kept++] = *d;
  }
  t->heap_len = kept;
  for (size_t i = kept / 2; i-- > 0;)
    sift_down(t, i);
}

tp_err_t tp__tickets_push_deadline(tp_tickets_t *t, tp_ticket_t *tk, int64_t deadline) {
  if (t->heap_len == t->heap_cap && t->heap_len >= 2 * (size_t)t->max)
    compact(t);
  if (t->heap_len == t->heap_cap) {
    size_t cap = t->heap_cap ? t->heap_cap * 2 : 256;
    tp_deadline_t *heap = tp_realloc(t->heap, cap * sizeof(*heap));
    if (heap == NULL)
      return TP_ENOMEM;
    t->heap = heap;
    t->heap_cap = cap;
  }
  tp_deadline_t d = {deadline, (uint32_t)(tk - t->pool), tk->gen};
  size_t i = t->heap_len++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(&d, &t->heap[parent]))
      break;
    t->heap[i] = t->heap[parent];
    i = parent;
  }
  t->heap[i] = d;
  tk->deadline_pending = 1;
  return TP_OK;
}

int64_t tp__tickets_next_deadline(const tp_tickets_t *t) {
  return t->heap_len ? t->heap[0].deadline : INT64_MAX;
}

bool tp__tickets_pop_deadline(tp_tickets_t *t, int64_t before, tp_deadline_t *out) {
  if (t->heap_len == 0 || t->heap[0].deadline >= before)
    return false;
  *out = t->heap[0];
  t->heap[0] = t->heap[--t->heap_len];
  if (t->heap_len > 0)
    sift_down(t, 0);
  return true;
}

tp_ticket_t *tp__tickets_at(tp_tickets_t *t, uint32_t idx, uint32_t gen) {
  if (idx >= t->pool_len)
    return NULL;
  tp_ticket_t *tk = &t->pool[idx];
  return tk->gen == gen && tk->fp[0] | tk->fp[1] ? tk : NULL;
}

uint32_t tp__tickets_expire(tp_tickets_t *t, int64_t before) {
  uint32_t n = 0;
  /* LRU order approximates last-event order (events arrive nearly sorted);
   * stopping at the first live ticket bounds the work per boundary. */
  while (t->lru_head) {
    tp_ticket_t *tk = at(t, t->lru_head);
    if (tk->last_event_at >= before || tk->deadline_pending)
      break;
    drop(t, t->lru_head);
    n++;
  }
  return n;
}
