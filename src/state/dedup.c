/*
 * dedup.c -- the per-partition ring of recently applied event-id
 * fingerprints (SPEC: an event whose id equals one of the last dedup.depth
 * applied from the same partition is a duplicate). See state_int.h.
 */
#include <string.h>

#include "state_int.h"

#define MIN_CAP 1024
#define PREFETCH_OLDEST 16

/*
 * An index slot holds a ring position + 1 (0 = empty) in its low 32 bits
 * and the high 32 bits of that position's fingerprint above them: probing
 * compares those and reads the ring only on a match, and deletion finds a
 * slot's home without reading the ring, so a lookup of a new id touches
 * one cache line of the index and none of the ring.
 */
static inline uint64_t slot_pack(uint64_t fp, size_t pos) {
  return (fp & 0xffffffff00000000ull) | (uint64_t)(pos + 1);
}
static inline size_t slot_pos1(uint64_t slot) { return (size_t)(uint32_t)slot; }

static size_t home_of(const tp_dedup_t *d, uint64_t fp) {
  /* fp is already a hash: its high bits index (and tag the slot). */
  return (size_t)(fp >> 32) & d->index_mask;
}

tp_err_t tp__dedup_init(tp_dedup_t *d, size_t depth) {
  memset(d, 0, sizeof(*d));
  d->depth = depth;
  return TP_OK;
}

void tp__dedup_free(tp_dedup_t *d) {
  tp_free(d->ring);
  tp_free(d->index);
  memset(d, 0, sizeof(*d));
}

bool tp__dedup_contains(const tp_dedup_t *d, uint64_t fp) {
  if (d->count == 0)
    return false;
  uint64_t tag = fp & 0xffffffff00000000ull;
  for (size_t i = home_of(d, fp);; i = (i + 1) & d->index_mask) {
    uint64_t slot = d->index[i];
    if (slot == 0)
      return false;
    if ((slot & 0xffffffff00000000ull) == tag && d->ring[slot_pos1(slot) - 1] == fp)
      return true;
  }
}

void tp__dedup_prefetch(const tp_dedup_t *d, uint64_t fp) {
  if (d->index != NULL)
    __builtin_prefetch(&d->index[home_of(d, fp)]);
}

static void index_put(tp_dedup_t *d, uint64_t fp, size_t pos) {
  size_t i = home_of(d, fp);
  while (d->index[i] != 0)
    i = (i + 1) & d->index_mask;
  d->index[i] = slot_pack(fp, pos);
}

/* Remove ring position pos from the index with backward-shift deletion, so
 * linear probing needs no tombstones. */
static void index_remove(tp_dedup_t *d, size_t pos) {
  uint64_t want = slot_pack(d->ring[pos], pos);
  size_t i = home_of(d, d->ring[pos]);
  while (d->index[i] != want)
    i = (i + 1) & d->index_mask;
  size_t hole = i;
  for (size_t j = (hole + 1) & d->index_mask; d->index[j] != 0;
       j = (j + 1) & d->index_mask) {
    size_t home = home_of(d, d->index[j]);
    /* Move j into the hole unless its home lies cyclically in (hole, j]. */
    bool stays = (hole <= j) ? (hole < home && home <= j) : (hole < home || home <= j);
    if (!stays) {
      d->index[hole] = d->index[j];
      hole = j;
    }
  }
  d->index[hole] = 0;
}

/* Grow ring and index to new_cap, keeping ring order (oldest first). */
static tp_err_t grow(tp_dedup_t *d, size_t new_cap) {
  size_t index_size = 1;
  while (index_size < new_cap * 2)
    index_size <<= 1;
  uint64_t *ring = tp_malloc(new_cap * sizeof(*ring));
  uint64_t *index = tp_malloc(index_size * sizeof(*index));
  if (ring == NULL || index == NULL) {
    tp_free(ring);
    tp_free(index);
    return TP_ENOMEM;
  }
  /* Written, not calloc'd: a page of a fresh calloc'd index is first read
   * (as the kernel's zero page) by a lookup and then copied when written,
   * and replacing that mapping interrupts every core of the process (a TLB
   * shootdown); a page written first is simply allocated. Memory is not
   * the price: but for the first index (16 KiB), every index is allocated
   * to take a quarter of its slots at once (below), which lands on every
   * page anyway. */
  memset(index, 0, index_size * sizeof(*index));
  /* Oldest element sits at head when full, at 0 otherwise. */
  size_t start = d->count == d->cap ? d->head : 0;
  for (size_t k = 0; k < d->count; k++)
    ring[k] = d->ring[(start + k) % d->cap];
  tp_free(d->ring);
  tp_free(d->index);
  d->ring = ring;
  d->index = index;
  d->index_mask = index_size - 1;
  d->cap = new_cap;
  d->head = d->count % new_cap;
  for (size_t k = 0; k < d->count; k++)
    index_put(d, ring[k], k);
  return TP_OK;
}

tp_err_t tp__dedup_add(tp_dedup_t *d, uint64_t fp) {
  if (d->depth == 0)
    return TP_OK;
  if (d->count == d->cap && d->cap < d->depth) {
    size_t new_cap = d->cap ? d->cap * 2 : MIN_CAP;
    if (new_cap > d->depth)
      new_cap = d->depth;
    tp_err_t err = grow(d, new_cap);
    if (err != TP_OK)
      return err;
  }
  if (d->count == d->cap) {
    /* The oldest falls out of the window. Its slot is anywhere in the
     * index: fetch the slot of the one that falls out PREFETCH_OLDEST
     * additions later meanwhile. */
    __builtin_prefetch(&d->index[home_of(d, d->ring[(d->head + PREFETCH_OLDEST) % d->cap])]);
    index_remove(d, d->head);
  } else {
    d->count++;
  }
  d->ring[d->head] = fp;
  index_put(d, fp, d->head);
  d->head = (d->head + 1) % d->cap;
  return TP_OK;
}
