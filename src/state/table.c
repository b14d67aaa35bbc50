/*
 * table.c -- the lock-free touchpoint table: an open-addressing hash table of
 * intrusive nodes that the worker threads write and every other thread reads.
 *
 * It sits under the apply step of the pipeline: each worker looks up the
 * entry of (topic, partition, touchpoint) for every event and bumps counters
 * in it, inserting the entry the first time; the HTTP server, the evaluator
 * and the demo's live view look entries up and iterate at the same time.
 *
 * Why our own table and not liburcu's cds_lfht: bench/bench_table.c runs the
 * same workload against both (1 M touchpoint-like keys, uniform random
 * lookups, an atomic add into the found node, insert on miss; Release build,
 * a 2-core VM, best of 3 runs; ranges over two quiet runs). Per update, wall
 * clock: 285-293 ns here against 374-382 ns for cds_lfht with one writer;
 * 136-137 against 175-192 ns with two writers (both scale about 2x);
 * 184-211 against 290-303 ns with a third thread scanning the table, where
 * a full scan takes 23-31 ms here and 386-404 ms in cds_lfht. Inserts:
 * 158-168 against 283-299 ns. That machine's memory latency dominates: the
 * same update with no table at all costs 173-177 ns, so the table itself
 * adds about 110-120 ns here and 200-210 ns there. A hit here is one slot
 * load (the hash tag rules out other keys) and the node; cds_lfht walks a
 * split-ordered list through its bucket array, needs a read-side section
 * around every lookup, and iterates by chasing pointers where ours walks an
 * array. The index costs the same, 16.8 bytes per entry in both. Ours never
 * resizes: the fixed cap makes that unnecessary, and no writer ever stalls
 * for a resize.
 *
 * Slots. A slot is one atomic 64-bit word: 0 (empty), SLOT_TOMB (removed),
 * or a node pointer. On x86-64 and aarch64 Linux user pointers fit in 48
 * bits, so the top 16 bits carry the top 16 bits of the node's hash and a
 * probe skips a slot of another key without touching its node (measured
 * with bench_table, one writer: 296-313 ns per update with tags, 371-375 ns
 * with every pointer stored untagged). A pointer that does not fit is
 * stored untagged and always dereferenced; both forms are decoded. The tag
 * is written with the pointer in one store, so it can never be stale.
 *
 * Inserts. All inserts of one key walk the same probe path, so the path is
 * where they meet. An insert scans from the home slot to the first empty
 * slot, returns TP_EEXIST if the key is there, and otherwise claims the first
 * free (tombstone or empty) slot with a CAS, first as PENDING, invisible to
 * readers. It then rescans the path with sequentially consistent loads: if
 * it sees another node of the same key, pending or published, it backs off
 * (the slot becomes a tombstone) and either reports that node or waits for
 * it to settle; if not, it publishes. Two racing inserters each CAS then
 * load, so by sequential consistency at least one sees the other: at most
 * one publishes, and the one that backs off finds the winner. Inserts of the
 * same key (not expected in touchpulse: one worker owns a partition) may
 * wait for each other; a pending slot's owner never waits while holding it,
 * so the waits cannot form a cycle. Inserts of different keys never wait.
 *
 * Tombstones are reused by the insert that finds one first on its path, and
 * lookups probe past them. Empty slots never come back: a table that saw an
 * endless stream of new keys with removals would end with misses scanning
 * every slot (probes are bounded by the slot count, never endless).
 * touchpulse's keys recur (a revoked partition's touchpoints come back with
 * the next assignment), so tombstones are refilled by the same keys.
 *
 * Reclamation is epoch based. A reader announces the global epoch in its
 * own slot; tp_table_retire() tags the node with the epoch and bumps it;
 * tp_table_reclaim() frees nodes tagged below the oldest announced epoch. A
 * reader that announced epoch e > r read the epoch after the retire's bump,
 * which follows the removal, so it cannot find the node; a reader still at
 * e <= r holds the node back. Writers never wait for readers, with one
 * exception: the retire list's record (32 bytes) is allocated by
 * tp_table_retire(), and when that allocation fails the retire waits until
 * no reader can hold the node and frees it at once. The record is not in
 * the node on purpose: the node the caller embeds stays 24 bytes, so a
 * caller that keeps its key and hot counters next to it gets a hit in one
 * cache line; with the record's fields in the node (48 bytes) an update
 * measured about 9% slower (bench_table's workload, 64-byte aligned
 * entries). A retire happens once per entry and partition revoke, a lookup
 * once per event. The caller must not retire from inside a read section of
 * the same table (writers do not use read sections), or that wait could not
 * end.
 *
 * The handshake between a reader and the reclaimer is the store-buffer
 * pattern (reader: announce, then load slots; remover and reclaimer:
 * tombstone, then load announcements), so both sides need sequential
 * consistency. It is written with seq_cst operations, not fences: the
 * announcement is a seq_cst store (on x86-64 the same xchg a store plus
 * fence would cost), slot loads are seq_cst (the same instruction as an
 * acquire load on x86-64 and ARMv8, so lookups pay nothing), and
 * ThreadSanitizer, which does not model fences (GCC refuses
 * atomic_thread_fence under -fsanitize=thread), checks it as written.
 * Either the reclaimer's seq_cst load sees the announcement, or the
 * announcement, and so the reader's later slot loads, come after the
 * tombstone in the single total order and see it.
 */
#include "touchpulse/table.h"

#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(uintptr_t) == 8,
               "a slot packs a 48-bit pointer and a 16-bit hash tag");

/*
 * Slot words. Nodes are 8-aligned (they hold a uint64_t), so the low three
 * bits of a pointer are free: bit 0 says the top 16 bits are a hash tag,
 * bit 1 marks an insert that has not been published. SLOT_TOMB has neither
 * bit and is no node's address.
 */
#define SLOT_EMPTY ((uintptr_t)0)
#define SLOT_TAGGED ((uintptr_t)1)
#define SLOT_PENDING ((uintptr_t)2)
#define SLOT_TOMB ((uintptr_t)4)
#define SLOT_LOW_BITS ((uintptr_t)7)
#define TAG_SHIFT 48
#define TAG_MASK (~(((uintptr_t)1 << TAG_SHIFT) - 1))
#define PTR_MASK ((((uintptr_t)1 << TAG_SHIFT) - 1) & ~SLOT_LOW_BITS)

/* Readers: one slot per thread, indexed by a process-wide thread id. */
#define READER_SLOTS 64
#define READER_ID_NONE (-1)
#define READER_ID_OVERFLOW (-2)
#define EPOCH_IDLE 0 /* a reader slot's value outside a read section */

/* Far beyond any configured cap, and keeps the slot-count arithmetic exact. */
#define TABLE_MAX_ENTRIES ((size_t)1 << 40)

/* A removed node waiting until no reader can hold it. */
struct retired {
  struct retired *next;
  tp_table_node_t *node;
  void (*free_cb)(tp_table_node_t *node);
  uint64_t epoch; /* the global epoch before the retire's bump */
};

struct reader_slot {
  /* Written by its thread only: the epoch it read, at tp_table_read_begin()
   * (seq_cst), and EPOCH_IDLE at tp_table_read_end() (release: the
   * section's reads of nodes happen before a free that follows). Loaded by
   * tp_table_reclaim() with seq_cst. One per cache line: readers do not
   * share lines. */
  _Atomic uint64_t epoch;
  char pad[TP_CACHELINE - sizeof(_Atomic uint64_t)];
};

/*
 * Invariants: mask + 1 is a power of two greater than max_entries, so a free
 * slot always exists; a slot never returns to SLOT_EMPTY once written, so
 * every slot between a key's home and the first empty slot stays non-empty;
 * a node is in at most one slot. The pad arrays keep the fields that
 * different threads write on separate cache lines from the read-only ones.
 */
struct tp_table_s {
  /* Read-only after tp_table_new(). The slot array's words: written by
   * inserts (CAS to PENDING seq_cst, then a release store of the published
   * word, or a store of SLOT_TOMB when backing off) and by removes (CAS to
   * SLOT_TOMB seq_cst). Lookups and tp_table_foreach() load with seq_cst:
   * as acquire loads they make the node's fields, written before the
   * insert, visible; as seq_cst loads they take part in the reclamation
   * handshake above. Inserts and removes scan with acquire. */
  _Atomic uintptr_t *slots; /* aligned to TP_CACHELINE, inside slots_mem */
  void *slots_mem;
  size_t mask;
  size_t max_entries;
  char pad0[TP_CACHELINE];
  /* Live nodes plus inserts in progress. Inserts reserve with a relaxed CAS
   * loop (the cap is a count, nothing is published through it), removes
   * and backed-off inserts decrement. */
  _Atomic size_t count;
  char pad1[TP_CACHELINE];
  /* Inserts refused for the cap; relaxed, a statistic. */
  _Atomic uint64_t overflow;
  char pad2[TP_CACHELINE];
  /* Global epoch, starts at 1. Bumped by tp_table_retire() with acq_rel
   * after the removal; readers load it with acquire, so a reader that sees
   * the bumped value also sees the removal. */
  _Atomic uint64_t epoch;
  char pad3[TP_CACHELINE];
  /* Retired nodes waiting for readers, a stack of records. Pushed with a
   * release CAS (the record's fields travel with it), taken whole by
   * tp_table_reclaim() with an acquire exchange, so no ABA is possible. */
  _Atomic(struct retired *) retired;
  char pad4[TP_CACHELINE];
  /* Readers beyond READER_SLOTS: incremented (seq_cst) at read_begin,
   * decremented (release) at read_end, loaded by reclaim (seq_cst); while
   * non-zero nothing is reclaimed. */
  _Atomic size_t overflow_readers;
  char pad5[TP_CACHELINE];
  struct reader_slot readers[READER_SLOTS];
};

/* ---- slot words ------------------------------------------------------ */

static inline uintptr_t tag_bits(uint64_t hash) {
  return (uintptr_t)(hash >> TAG_SHIFT) << TAG_SHIFT;
}

/* The published word for node: tagged when the pointer fits in 48 bits. */
static inline uintptr_t slot_word(const tp_table_node_t *node) {
  uintptr_t p = (uintptr_t)node;
  if ((p & ~PTR_MASK) == 0)
    return p | tag_bits(node->hash) | SLOT_TAGGED;
  return p;
}

static inline tp_table_node_t *slot_node(uintptr_t w) {
  /* NOLINTNEXTLINE(performance-no-int-to-ptr): slots hold tagged node pointers */
  return (tp_table_node_t *)((w & SLOT_TAGGED) ? (w & PTR_MASK)
                                                : (w & ~SLOT_LOW_BITS));
}

/* True when w holds a node, pending or published, that may have this tag. */
static inline bool slot_may_hold(uintptr_t w, uintptr_t tag) {
  if (w == SLOT_EMPTY || w == SLOT_TOMB)
    return false;
  return !(w & SLOT_TAGGED) || (w & TAG_MASK) == tag;
}

static inline uint64_t load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

static inline uint32_t load32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

/*
 * n bytes equal, reading no byte outside either range. memcmp() reads
 * whole vectors, masked: for a short key near the end of a cache line the
 * load spans the next line too, one the entry prefetch did not fetch, and
 * the lookup waited on it (a key of 21 bytes at offset 168 of an entry:
 * memcmp took 13 % of bench_apply's samples, all on its first load).
 */
static inline bool bytes_eq(const unsigned char *a, const unsigned char *b, size_t n) {
  if (n >= 8) {
    for (size_t i = 0; i + 8 < n; i += 8)
      if (load64(a + i) != load64(b + i))
        return false;
    return load64(a + n - 8) == load64(b + n - 8);
  }
  if (n >= 4)
    return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
  /* An empty key may be NULL: nothing is read. */
  return n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1]);
}

static inline bool key_eq(const tp_table_node_t *node, uint64_t hash,
                          const void *key, size_t key_len) {
  return node->hash == hash && node->key_len == key_len &&
         bytes_eq(node->key, key, key_len);
}

/* Wait for another insert's pending slot to be published or backed off.
 * Only inserts of the same key get here, and only briefly. */
static void wait_while(_Atomic uintptr_t *slot, uintptr_t w) {
  for (unsigned spins = 0;
       atomic_load_explicit(slot, memory_order_acquire) == w; spins++) {
    if (spins >= 64)
      sched_yield();
  }
}

/* ---- creation -------------------------------------------------------- */

/* Slot arrays up to this size are written at creation (tp_table_new). */
#define PREFAULT_MAX ((size_t)32 << 20)

/* Smallest power of two >= max_entries * 4/3: the load factor at the cap
 * stays between 0.375 and 0.75, and there are always more slots than
 * entries. */
static size_t slot_count(size_t max_entries) {
  size_t need = max_entries + (max_entries + 2) / 3, n = 2;
  while (n < need)
    n <<= 1;
  return n;
}

tp_table_t *tp_table_new(size_t max_entries, char *errstr,
                         size_t errstr_size) {
  tp_table_t *tbl = NULL;
  size_t nslots = 0;

  if (max_entries == 0 || max_entries > TABLE_MAX_ENTRIES) {
    if (errstr != NULL && errstr_size > 0)
      snprintf(errstr, errstr_size,
               "table: max_entries %zu is out of range 1..%zu", max_entries,
               TABLE_MAX_ENTRIES);
    return NULL;
  }
  nslots = slot_count(max_entries);
  tbl = tp_calloc(1, sizeof(*tbl));
  if (tbl == NULL)
    goto err;
  /* calloc's zero bytes are SLOT_EMPTY: on every platform we build for a
   * lock-free atomic integer has the representation of the plain one. The
   * array starts on a cache line (a line more is allocated to find one), so
   * each line holds the 8 slots i..i+7 of one i divisible by 8: what
   * tp_table_prefetch() fetches is what tp_table_peek() reads. */
  tbl->slots_mem = tp_calloc(nslots + TP_CACHELINE / sizeof(*tbl->slots), sizeof(*tbl->slots));
  if (tbl->slots_mem == NULL)
    goto err;
  size_t skew = (TP_CACHELINE - (uintptr_t)tbl->slots_mem % TP_CACHELINE) % TP_CACHELINE;
  tbl->slots = (_Atomic uintptr_t *)((char *)tbl->slots_mem + skew);
  /*
   * A page of a calloc'd array stays unallocated until used, which a cap
   * far above the live entries needs. The price: a page first read by a
   * lookup (as the kernel's zero page) is copied when an insert writes it,
   * and replacing that mapping while other threads run is a TLB shootdown,
   * an interrupt to every core. Draining 2 000 000 records of 1 000 000
   * touchpoints, inserts spent 5 % of touchpulse's samples in such faults.
   * So an array of up to PREFAULT_MAX bytes is written here, and resident
   * from the start.
   */
  if (nslots * sizeof(*tbl->slots) <= PREFAULT_MAX)
    memset(tbl->slots, 0, nslots * sizeof(*tbl->slots));
  tbl->mask = nslots - 1;
  tbl->max_entries = max_entries;
  atomic_init(&tbl->count, 0);
  atomic_init(&tbl->overflow, 0);
  atomic_init(&tbl->epoch, 1);
  atomic_init(&tbl->retired, NULL);
  atomic_init(&tbl->overflow_readers, 0);
  for (size_t i = 0; i < READER_SLOTS; i++)
    atomic_init(&tbl->readers[i].epoch, EPOCH_IDLE);
  return tbl;

err:
  if (errstr != NULL && errstr_size > 0)
    snprintf(errstr, errstr_size,
             "table: cannot allocate %zu slots for %zu entries", nslots,
             max_entries);
  tp_table_destroy(tbl);
  return NULL;
}

static void free_retired(struct retired *rec) {
  if (rec->free_cb != NULL)
    rec->free_cb(rec->node);
  tp_free(rec);
}

void tp_table_destroy(tp_table_t *tbl) {
  if (tbl == NULL)
    return;
  /* No reader may be left when the table goes: everything pending goes. */
  struct retired *rec =
      atomic_exchange_explicit(&tbl->retired, NULL, memory_order_acquire);
  while (rec != NULL) {
    struct retired *next = rec->next;
    free_retired(rec);
    rec = next;
  }
  tp_free(tbl->slots_mem);
  tp_free(tbl);
}

/* ---- lookup and insert ----------------------------------------------- */

/*
 * Test hook (internal, declared by the tests that use it): when set,
 * tp_table_insert() calls it between choosing a free slot and claiming it,
 * so a test can hold an insert inside the window that the same-key check
 * closes and make the race happen every time. NULL in production; it costs
 * a load per insert, and lookups never see it.
 */
void (*tp__table_insert_pause)(void);

void tp_table_prefetch(const tp_table_t *tbl, uint64_t hash) {
  __builtin_prefetch((const void *)&tbl->slots[(size_t)hash & tbl->mask]);
}

const tp_table_node_t *tp_table_peek(const tp_table_t *tbl, uint64_t hash) {
  /* The probe path as far as the home slot's cache line goes (the line
   * tp_table_prefetch() fetched): a key displaced by a collision is
   * usually a slot or two further. */
  const uintptr_t want = tag_bits(hash) | SLOT_TAGGED;
  size_t i = (size_t)hash & tbl->mask;
  size_t end = (i | (TP_CACHELINE / sizeof(*tbl->slots) - 1)) + 1;
  for (; i < end && i <= tbl->mask; i++) {
    uintptr_t w = atomic_load_explicit(&tbl->slots[i], memory_order_acquire);
    if (w == SLOT_EMPTY)
      return NULL;
    if ((w & (TAG_MASK | SLOT_LOW_BITS)) == want)
      return slot_node(w);
  }
  return NULL;
}

tp_table_node_t *tp_table_get(const tp_table_t *tbl, uint64_t hash,
                              const void *key, size_t key_len) {
  const uintptr_t want = tag_bits(hash) | SLOT_TAGGED;
  size_t i = (size_t)hash & tbl->mask;

  for (size_t n = 0; n <= tbl->mask; n++, i = (i + 1) & tbl->mask) {
    uintptr_t w = atomic_load_explicit(&tbl->slots[i], memory_order_seq_cst);
    if (w == SLOT_EMPTY)
      return NULL;
    /* A published tagged word of this tag, or a published untagged pointer
     * (low bits clear, which excludes SLOT_TOMB); pending words are not
     * in the table yet. */
    if ((w & (TAG_MASK | SLOT_LOW_BITS)) == want ||
        (w & SLOT_LOW_BITS) == 0) {
      tp_table_node_t *node = slot_node(w);
      if (key_eq(node, hash, key, key_len))
        return node;
    }
  }
  return NULL;
}

static bool reserve(tp_table_t *tbl) {
  size_t c = atomic_load_explicit(&tbl->count, memory_order_relaxed);
  do {
    if (c >= tbl->max_entries)
      return false;
  } while (!atomic_compare_exchange_weak_explicit(
      &tbl->count, &c, c + 1, memory_order_relaxed, memory_order_relaxed));
  return true;
}

static void unreserve(tp_table_t *tbl) {
  atomic_fetch_sub_explicit(&tbl->count, 1, memory_order_relaxed);
}

/*
 * After claiming slot own as PENDING: look for another node of node's key
 * on the path. The loads are seq_cst so that, of two racing inserters, at
 * least one sees the other (each did its CAS, seq_cst, before loading).
 * The path ends at the first empty slot, which lies beyond every slot an
 * inserter of this key can have claimed: all slots before a claimed one
 * were non-empty when it was chosen and stay so.
 */
static bool find_rival(tp_table_t *tbl, const tp_table_node_t *node,
                       size_t own, size_t *rival_i, uintptr_t *rival_w) {
  const uintptr_t tag = tag_bits(node->hash);
  size_t i = (size_t)node->hash & tbl->mask;

  for (size_t n = 0; n <= tbl->mask; n++, i = (i + 1) & tbl->mask) {
    uintptr_t w = atomic_load_explicit(&tbl->slots[i], memory_order_seq_cst);
    if (w == SLOT_EMPTY)
      return false;
    if (i != own && slot_may_hold(w, tag) &&
        key_eq(slot_node(w), node->hash, node->key, node->key_len)) {
      *rival_i = i;
      *rival_w = w;
      return true;
    }
  }
  return false;
}

tp_err_t tp_table_insert(tp_table_t *tbl, tp_table_node_t *node,
                         tp_table_node_t **existing) {
  if (existing != NULL)
    *existing = NULL;
  if (tbl == NULL || node == NULL || ((uintptr_t)node & SLOT_LOW_BITS) != 0 ||
      (node->key == NULL && node->key_len > 0))
    return TP_EINVAL;

  const uintptr_t published = slot_word(node);
  const uintptr_t pending = published | SLOT_PENDING;
  const uintptr_t tag = tag_bits(node->hash);
  const size_t home = (size_t)node->hash & tbl->mask;
  bool reserved = false;

  for (;;) {
    size_t free_i = SIZE_MAX, i = home, n;
    uintptr_t free_w = SLOT_EMPTY, w = SLOT_EMPTY;

    /* 1. Scan the path: the key, or the first free slot. */
    for (n = 0; n <= tbl->mask; n++, i = (i + 1) & tbl->mask) {
      w = atomic_load_explicit(&tbl->slots[i], memory_order_acquire);
      if (w == SLOT_EMPTY || w == SLOT_TOMB) {
        if (free_i == SIZE_MAX) {
          free_i = i;
          free_w = w;
        }
        if (w == SLOT_EMPTY)
          break;
        continue;
      }
      if (slot_may_hold(w, tag) &&
          key_eq(slot_node(w), node->hash, node->key, node->key_len))
        break;
    }
    if (n <= tbl->mask && w != SLOT_EMPTY) {
      if (!(w & SLOT_PENDING)) {
        if (reserved)
          unreserve(tbl);
        if (existing != NULL)
          *existing = slot_node(w);
        return TP_EEXIST;
      }
      wait_while(&tbl->slots[i], w); /* another insert of this key */
      continue;
    }

    /* 2. Reserve a place under the cap, once per call. */
    if (!reserved) {
      if (!reserve(tbl)) {
        atomic_fetch_add_explicit(&tbl->overflow, 1, memory_order_relaxed);
        return TP_EFULL;
      }
      reserved = true;
    }
    /* Every free slot was taken between our loads and the scan saw none;
     * one exists (count <= max_entries < slots), so look again. */
    if (free_i == SIZE_MAX)
      continue;
    if (tp__table_insert_pause != NULL)
      tp__table_insert_pause();

    /* 3. Claim the slot, invisible to lookups for now. */
    if (!atomic_compare_exchange_strong_explicit(&tbl->slots[free_i], &free_w,
                                                 pending, memory_order_seq_cst,
                                                 memory_order_relaxed))
      continue;

    /* 4. Publish unless an insert of the same key raced us. */
    size_t rival_i;
    uintptr_t rival_w;
    if (!find_rival(tbl, node, free_i, &rival_i, &rival_w)) {
      atomic_store_explicit(&tbl->slots[free_i], published,
                            memory_order_release);
      return TP_OK;
    }
    /* Never published, so no reader can hold our node: a tombstone (not
     * empty: an insert may already have probed past this slot). */
    atomic_store_explicit(&tbl->slots[free_i], SLOT_TOMB, memory_order_seq_cst);
    if (!(rival_w & SLOT_PENDING)) {
      unreserve(tbl);
      if (existing != NULL)
        *existing = slot_node(rival_w);
      return TP_EEXIST;
    }
    wait_while(&tbl->slots[rival_i], rival_w);
  }
}

tp_err_t tp_table_remove(tp_table_t *tbl, tp_table_node_t *node) {
  if (tbl == NULL || node == NULL)
    return TP_EINVAL;

  const uintptr_t published = slot_word(node);
  size_t i = (size_t)node->hash & tbl->mask;

  for (size_t n = 0; n <= tbl->mask; n++, i = (i + 1) & tbl->mask) {
    uintptr_t w = atomic_load_explicit(&tbl->slots[i], memory_order_acquire);
    if (w == SLOT_EMPTY)
      break;
    /* seq_cst: the reclamation handshake needs the tombstone in the single
     * total order with the readers' announcements and slot loads. */
    if (w == published &&
        atomic_compare_exchange_strong_explicit(&tbl->slots[i], &w, SLOT_TOMB,
                                                memory_order_seq_cst,
                                                memory_order_relaxed)) {
      atomic_fetch_sub_explicit(&tbl->count, 1, memory_order_relaxed);
      return TP_OK;
    }
  }
  return TP_EINVAL;
}

/* ---- iteration and statistics ---------------------------------------- */

void tp_table_foreach(const tp_table_t *tbl,
                      int (*cb)(tp_table_node_t *node, void *opaque),
                      void *opaque) {
  if (tbl == NULL || cb == NULL)
    return;
  /* Nodes never move between slots, so each is visited at most once. */
  for (size_t i = 0; i <= tbl->mask; i++) {
    uintptr_t w = atomic_load_explicit(&tbl->slots[i], memory_order_seq_cst);
    if (w == SLOT_EMPTY || w == SLOT_TOMB || (w & SLOT_PENDING))
      continue;
    if (cb(slot_node(w), opaque) != 0)
      return;
  }
}

size_t tp_table_size(const tp_table_t *tbl) {
  return atomic_load_explicit(&tbl->count, memory_order_relaxed);
}

size_t tp_table_max_entries(const tp_table_t *tbl) { return tbl->max_entries; }

uint64_t tp_table_overflow(const tp_table_t *tbl) {
  return atomic_load_explicit(&tbl->overflow, memory_order_relaxed);
}

/* ---- reader registration --------------------------------------------- */

/*
 * Reader ids are process-wide so that one thread-local int serves every
 * table: bit i of reader_ids is set while some thread owns id i. A thread
 * claims an id on its first read section and gives it back when it exits
 * (the pthread key's destructor), so short-lived threads do not use ids up.
 * A thread that finds all 64 taken uses the table's overflow counter for the
 * rest of its life: correct, but while it reads nothing is reclaimed.
 */
static _Atomic uint64_t reader_ids;
static _Thread_local int reader_id = READER_ID_NONE;
static pthread_once_t reader_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t reader_key;
static bool reader_key_ok;

static void reader_id_release(void *arg) {
  unsigned id = (unsigned)((uintptr_t)arg - 1);
  /* release: this thread's last EPOCH_IDLE stores precede the next owner's
   * stores to the same reader slots. */
  atomic_fetch_and_explicit(&reader_ids, ~((uint64_t)1 << id),
                            memory_order_release);
}

static void reader_key_init(void) {
  reader_key_ok = pthread_key_create(&reader_key, reader_id_release) == 0;
}

static int reader_id_claim(void) {
  pthread_once(&reader_key_once, reader_key_init);
  uint64_t used = atomic_load_explicit(&reader_ids, memory_order_relaxed);
  for (;;) {
    if (!reader_key_ok || used == UINT64_MAX) {
      reader_id = READER_ID_OVERFLOW;
      return reader_id;
    }
    int id = __builtin_ctzll(~used);
    if (atomic_compare_exchange_weak_explicit(&reader_ids, &used,
                                              used | ((uint64_t)1 << id),
                                              memory_order_acquire,
                                              memory_order_relaxed)) {
      /* NOLINTNEXTLINE(performance-no-int-to-ptr): a key value, not an address */
      void *key_value = (void *)(uintptr_t)(id + 1); /* never NULL */
      if (pthread_setspecific(reader_key, key_value) != 0) {
        reader_id_release(key_value);
        reader_id = READER_ID_OVERFLOW;
        return reader_id;
      }
      reader_id = id;
      return id;
    }
  }
}

void tp_table_read_begin(tp_table_t *tbl) {
  int id = reader_id;
  if (id == READER_ID_NONE)
    id = reader_id_claim();
  /* seq_cst: ordered before every slot load of the section (see the file
   * header); it is also a release, so a reclaimer that reads it knows the
   * thread's previous section ended. */
  if (id == READER_ID_OVERFLOW) {
    atomic_fetch_add_explicit(&tbl->overflow_readers, 1, memory_order_seq_cst);
  } else {
    uint64_t e = atomic_load_explicit(&tbl->epoch, memory_order_acquire);
    atomic_store_explicit(&tbl->readers[id].epoch, e, memory_order_seq_cst);
  }
}

void tp_table_read_end(tp_table_t *tbl) {
  int id = reader_id;
  assert(id != READER_ID_NONE && "tp_table_read_end without read_begin");
  if (id == READER_ID_OVERFLOW)
    atomic_fetch_sub_explicit(&tbl->overflow_readers, 1, memory_order_release);
  else if (id >= 0)
    atomic_store_explicit(&tbl->readers[id].epoch, EPOCH_IDLE,
                          memory_order_release);
}

/* ---- retirement and reclamation -------------------------------------- */

static void push_retired(tp_table_t *tbl, struct retired *first,
                         struct retired *last) {
  struct retired *head =
      atomic_load_explicit(&tbl->retired, memory_order_relaxed);
  do {
    last->next = head;
  } while (!atomic_compare_exchange_weak_explicit(
      &tbl->retired, &head, first, memory_order_release, memory_order_relaxed));
}

/*
 * The oldest epoch any reader may still be in; nodes retired below it are
 * free to go. 0 while overflow readers are in sections (they announce no
 * epoch). The loads are seq_cst and come after the removals of the nodes
 * being reclaimed (each removal, seq_cst, happens before its retire, which
 * the caller's exchange or program order orders before us): either a load
 * sees a reader's announcement, or that reader's slot loads see the
 * tombstone.
 */
static uint64_t oldest_epoch(tp_table_t *tbl) {
  if (atomic_load_explicit(&tbl->overflow_readers, memory_order_seq_cst) != 0)
    return 0;
  uint64_t oldest = UINT64_MAX;
  for (size_t i = 0; i < READER_SLOTS; i++) {
    uint64_t e =
        atomic_load_explicit(&tbl->readers[i].epoch, memory_order_seq_cst);
    if (e != EPOCH_IDLE && e < oldest)
      oldest = e;
  }
  return oldest;
}

/*
 * Retire without a record (out of memory): wait until no reader can hold
 * the node, then free it. Read sections are short, so this is brief; it
 * would never end if the caller itself were in a read section of this
 * table, which the assert catches in debug builds (writers do not use read
 * sections).
 */
static void retire_now(tp_table_t *tbl, tp_table_node_t *node,
                       void (*free_cb)(tp_table_node_t *node),
                       uint64_t epoch) {
  assert((reader_id < 0 ||
          atomic_load_explicit(&tbl->readers[reader_id].epoch,
                               memory_order_relaxed) == EPOCH_IDLE) &&
         "tp_table_retire inside a read section of the same table");
  for (unsigned spins = 0; oldest_epoch(tbl) <= epoch; spins++) {
    if (spins >= 64)
      sched_yield();
  }
  if (free_cb != NULL)
    free_cb(node);
}

void tp_table_retire(tp_table_t *tbl, tp_table_node_t *node,
                     void (*free_cb)(tp_table_node_t *node)) {
  if (tbl == NULL || node == NULL)
    return;
  /* The value before the bump: readers that announced it may have loaded
   * the node's slot before the removal; readers at a later epoch cannot. */
  uint64_t epoch =
      atomic_fetch_add_explicit(&tbl->epoch, 1, memory_order_acq_rel);
  struct retired *rec = tp_malloc(sizeof(*rec));
  if (rec == NULL) {
    retire_now(tbl, node, free_cb, epoch);
    return;
  }
  rec->node = node;
  rec->free_cb = free_cb;
  rec->epoch = epoch;
  push_retired(tbl, rec, rec);
}

void tp_table_reclaim(tp_table_t *tbl) {
  if (tbl == NULL)
    return;
  struct retired *rec =
      atomic_exchange_explicit(&tbl->retired, NULL, memory_order_acquire);
  if (rec == NULL)
    return;

  uint64_t oldest = oldest_epoch(tbl);
  struct retired *keep = NULL, *keep_last = NULL;
  while (rec != NULL) {
    struct retired *next = rec->next;
    if (rec->epoch < oldest) {
      free_retired(rec);
    } else {
      rec->next = keep;
      keep = rec;
      if (keep_last == NULL)
        keep_last = rec;
    }
    rec = next;
  }
  if (keep != NULL)
    push_retired(tbl, keep, keep_last);
}
