/*
 * test_table.c -- the lock-free touchpoint table: lookups, inserts, the cap,
 * tombstones, iteration, epoch-based reclamation, and the same operations
 * racing in several threads. Labelled "concurrent": CI also runs this suite
 * under ThreadSanitizer, and the ASan build turns a premature free into a
 * use-after-free report.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "touchpulse/common.h"
#include "touchpulse/table.h"

#define MAGIC_LIVE 0x7470756c73654c49ull /* an entry that has not been freed */
#define MAGIC_DEAD 0xdeadbeefdeadbeefull

typedef struct entry_s {
  tp_table_node_t node; /* first, so a node pointer is an entry pointer */
  _Atomic uint64_t magic;
  size_t index;
  char key[48];
} entry_t;

static entry_t *entry_of(tp_table_node_t *node) { return (entry_t *)node; }

/* An entry keyed by key, hashed like production does. */
static void entry_set(entry_t *e, const char *key, size_t index) {
  snprintf(e->key, sizeof(e->key), "%s", key);
  e->node.key = e->key;
  e->node.key_len = (uint32_t)strlen(e->key);
  e->node.hash = tp_hash64(e->key, e->node.key_len, 0);
  atomic_init(&e->magic, MAGIC_LIVE);
  e->index = index;
}

/* An entry with a chosen hash, so tests can make keys collide. */
static void entry_set_hash(entry_t *e, const char *key, uint64_t hash) {
  entry_set(e, key, 0);
  e->node.hash = hash;
}

/* Home slot 0 in any table, distinct 16-bit tags. */
static uint64_t colliding_hash(unsigned i) { return (uint64_t)(i + 1) << 48; }

static tp_table_t *table_new(size_t max_entries) {
  char errstr[128] = "";
  tp_table_t *tbl = tp_table_new(max_entries, errstr, sizeof(errstr));
  cr_assert_not_null(tbl, "tp_table_new: %s", errstr);
  return tbl;
}

static tp_table_node_t *get_key(const tp_table_t *tbl, const entry_t *e) {
  return tp_table_get(tbl, e->node.hash, e->key, e->node.key_len);
}

/* Worker threads do not call criterion's assertions (their failure path is
 * built for the test's own thread): they count failed checks here, print the
 * first few, and the test thread asserts that the count is zero. */
static _Atomic unsigned thread_failures;

#define THREAD_CHECK(cond)                                                     \
  do {                                                                         \
    if (!(cond) && atomic_fetch_add(&thread_failures, 1) < 5)                  \
      fprintf(stderr, "%s:%d: failed in a thread: %s\n", __FILE__, __LINE__,   \
              #cond);                                                          \
  } while (0)

static uint64_t next_rand(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

TestSuite(table);

/* ---- single-threaded behaviour ---------------------------------------- */

Test(table, get_finds_inserted_node_and_misses_absent_key) {
  tp_table_t *tbl = table_new(16);
  entry_t a, b;
  entry_set(&a, "checkout.payment", 0);
  entry_set(&b, "support.chat", 1);

  cr_assert_null(get_key(tbl, &a));
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(get_key(tbl, &a), &a.node);
  cr_assert_null(get_key(tbl, &b));
  cr_assert_eq(tp_table_size(tbl), 1);
  cr_assert_eq(tp_table_max_entries(tbl), 16);
  tp_table_destroy(tbl);
}

static int count_node(tp_table_node_t *node, void *arg) {
  (void)node;
  (*(size_t *)arg)++;
  return 0;
}

/* Slot arrays up to 32 MiB are written at creation, larger ones only
 * calloc'd: both work and start empty. 3 000 000 entries take 4 Mi slots
 * (32 MiB), 4 000 000 take 8 Mi (64 MiB). */
Test(table, tables_on_either_side_of_the_prefault_limit_start_empty) {
  static const size_t caps[] = {3000000, 4000000};
  for (size_t c = 0; c < TP_ARRAY_SIZE(caps); c++) {
    tp_table_t *tbl = table_new(caps[c]);
    size_t live = 0;
    tp_table_read_begin(tbl);
    tp_table_foreach(tbl, count_node, &live);
    tp_table_read_end(tbl);
    cr_assert_eq(live, 0, "cap %zu: %zu nodes in a new table", caps[c], live);
    entry_t e[64];
    for (size_t i = 0; i < TP_ARRAY_SIZE(e); i++) {
      char key[32];
      snprintf(key, sizeof(key), "touchpoint.%zu", i);
      entry_set(&e[i], key, i);
      cr_assert_null(get_key(tbl, &e[i]), "cap %zu: %s found before its insert", caps[c],
                     key);
      cr_assert_eq(tp_table_insert(tbl, &e[i].node, NULL), TP_OK);
    }
    for (size_t i = 0; i < TP_ARRAY_SIZE(e); i++)
      cr_assert_eq(get_key(tbl, &e[i]), &e[i].node);
    cr_assert_eq(tp_table_size(tbl), TP_ARRAY_SIZE(e));
    tp_table_destroy(tbl);
  }
}

/* The prefetch hint's peek: the first node of a matching tag on the hash's
 * probe path within its home slot's cache line (slots 0-7, 8-15, ...), and
 * nothing for an empty slot, another key's tag or a node displaced beyond
 * that line. */
Test(table, peek_names_a_node_of_a_matching_tag_within_the_home_line_only) {
  tp_table_t *tbl = table_new(16); /* 32 slots */
  entry_t a, b, c, d;
  entry_set_hash(&a, "a", colliding_hash(0));
  entry_set_hash(&b, "b", colliding_hash(1)); /* same home slot, other tag */
  cr_assert_null(tp_table_peek(tbl, a.node.hash));
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(tp_table_peek(tbl, a.node.hash), &a.node);
  cr_assert_null(tp_table_peek(tbl, b.node.hash));
  tp_table_prefetch(tbl, b.node.hash); /* a hint: changes nothing */
  cr_assert_eq(get_key(tbl, &a), &a.node);
  cr_assert_null(get_key(tbl, &b));
  /* b displaced by a into slot 1, within the line. */
  cr_assert_eq(tp_table_insert(tbl, &b.node, NULL), TP_OK);
  cr_assert_eq(tp_table_peek(tbl, b.node.hash), &b.node);
  cr_assert_eq(tp_table_peek(tbl, a.node.hash), &a.node);
  /* c and d both at home in slot 7, the line's last: d lands in slot 8,
   * the next line, where peek does not look; the lookup still finds it. */
  entry_set_hash(&c, "c", colliding_hash(2) | 7);
  entry_set_hash(&d, "d", colliding_hash(3) | 7);
  cr_assert_eq(tp_table_insert(tbl, &c.node, NULL), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &d.node, NULL), TP_OK);
  cr_assert_eq(tp_table_peek(tbl, c.node.hash), &c.node);
  cr_assert_null(tp_table_peek(tbl, d.node.hash));
  cr_assert_eq(get_key(tbl, &d), &d.node);
  tp_table_destroy(tbl);
}

Test(table, insert_of_present_key_returns_eexist_with_existing) {
  tp_table_t *tbl = table_new(16);
  entry_t a, dup;
  entry_set(&a, "checkout.payment", 0);
  entry_set(&dup, "checkout.payment", 1);
  tp_table_node_t *existing = &dup.node;

  cr_assert_eq(tp_table_insert(tbl, &a.node, &existing), TP_OK);
  cr_assert_null(existing);
  cr_assert_eq(tp_table_insert(tbl, &dup.node, &existing), TP_EEXIST);
  cr_assert_eq(existing, &a.node);
  cr_assert_eq(tp_table_size(tbl), 1);
  cr_assert_eq(get_key(tbl, &dup), &a.node);
  tp_table_destroy(tbl);
}

Test(table, insert_beyond_max_entries_returns_efull_and_counts_overflow) {
  tp_table_t *tbl = table_new(4);
  entry_t e[6];
  char key[32];
  for (int i = 0; i < 6; i++) {
    snprintf(key, sizeof(key), "touchpoint.%d", i);
    entry_set(&e[i], key, (size_t)i);
  }
  for (int i = 0; i < 4; i++)
    cr_assert_eq(tp_table_insert(tbl, &e[i].node, NULL), TP_OK);

  cr_assert_eq(tp_table_insert(tbl, &e[4].node, NULL), TP_EFULL);
  cr_assert_eq(tp_table_insert(tbl, &e[5].node, NULL), TP_EFULL);
  cr_assert_eq(tp_table_overflow(tbl), 2);
  cr_assert_null(get_key(tbl, &e[4]));

  /* A present key is reported as present, not refused, when full. */
  tp_table_node_t *existing = NULL;
  cr_assert_eq(tp_table_insert(tbl, &e[0].node, &existing), TP_EEXIST);
  cr_assert_eq(existing, &e[0].node);
  cr_assert_eq(tp_table_overflow(tbl), 2);

  /* Removing one makes room for one. */
  cr_assert_eq(tp_table_remove(tbl, &e[1].node), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &e[4].node, NULL), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &e[5].node, NULL), TP_EFULL);
  cr_assert_eq(tp_table_size(tbl), 4);
  cr_assert_eq(tp_table_overflow(tbl), 3);
  tp_table_destroy(tbl);
}

Test(table, removed_node_is_no_longer_found) {
  tp_table_t *tbl = table_new(16);
  entry_t a, b;
  entry_set(&a, "checkout.payment", 0);
  entry_set(&b, "support.chat", 1);
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &b.node, NULL), TP_OK);

  cr_assert_eq(tp_table_remove(tbl, &a.node), TP_OK);
  cr_assert_null(get_key(tbl, &a));
  cr_assert_eq(get_key(tbl, &b), &b.node);
  cr_assert_eq(tp_table_size(tbl), 1);
  /* Not in the table any more: EINVAL, and the count is not touched. */
  cr_assert_eq(tp_table_remove(tbl, &a.node), TP_EINVAL);
  cr_assert_eq(tp_table_size(tbl), 1);
  /* The same key can come back. */
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(get_key(tbl, &a), &a.node);
  tp_table_destroy(tbl);
}

Test(table, remove_of_a_node_never_inserted_returns_einval) {
  tp_table_t *tbl = table_new(16);
  entry_t a, twin;
  entry_set(&a, "checkout.payment", 0);
  entry_set(&twin, "checkout.payment", 1); /* same key, other node */
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(tp_table_remove(tbl, &twin.node), TP_EINVAL);
  cr_assert_eq(get_key(tbl, &a), &a.node);
  tp_table_destroy(tbl);
}

Test(table, lookups_probe_past_tombstones) {
  tp_table_t *tbl = table_new(16);
  entry_t e[3];
  for (unsigned i = 0; i < 3; i++) {
    char key[16];
    snprintf(key, sizeof(key), "collide.%u", i);
    entry_set_hash(&e[i], key, colliding_hash(i));
    cr_assert_eq(tp_table_insert(tbl, &e[i].node, NULL), TP_OK);
  }
  /* e[1] sat between e[0] and e[2] on the same probe path. */
  cr_assert_eq(tp_table_remove(tbl, &e[1].node), TP_OK);
  cr_assert_eq(get_key(tbl, &e[2]), &e[2].node);
  cr_assert_eq(get_key(tbl, &e[0]), &e[0].node);
  cr_assert_null(get_key(tbl, &e[1]));
  tp_table_destroy(tbl);
}

static int collect_cb(tp_table_node_t *node, void *opaque) {
  tp_table_node_t **out = opaque;
  while (*out != NULL)
    out++;
  *out = node;
  return 0;
}

Test(table, tombstone_is_reused_by_the_next_insert_on_its_path) {
  tp_table_t *tbl = table_new(16);
  entry_t e[4];
  for (unsigned i = 0; i < 4; i++) {
    char key[16];
    snprintf(key, sizeof(key), "collide.%u", i);
    entry_set_hash(&e[i], key, colliding_hash(i));
  }
  for (unsigned i = 0; i < 3; i++)
    cr_assert_eq(tp_table_insert(tbl, &e[i].node, NULL), TP_OK);
  cr_assert_eq(tp_table_remove(tbl, &e[1].node), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &e[3].node, NULL), TP_OK);

  /* foreach walks slots in order: e[3] took e[1]'s slot, between e[0] and
   * e[2], instead of the empty slot after e[2]. */
  tp_table_node_t *seen[5] = {0};
  tp_table_foreach(tbl, collect_cb, seen);
  cr_assert_eq(seen[0], &e[0].node);
  cr_assert_eq(seen[1], &e[3].node);
  cr_assert_eq(seen[2], &e[2].node);
  cr_assert_null(seen[3]);
  for (unsigned i = 0; i < 4; i++)
    cr_assert_eq(get_key(tbl, &e[i]), i == 1 ? NULL : &e[i].node);
  tp_table_destroy(tbl);
}

Test(table, keys_with_equal_hashes_are_told_apart_by_their_bytes) {
  tp_table_t *tbl = table_new(16);
  entry_t a, b, probe;
  entry_set_hash(&a, "checkout.payment", 42);
  entry_set_hash(&b, "checkout.shipping", 42);
  entry_set_hash(&probe, "checkout.refund", 42);
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &b.node, NULL), TP_OK);
  cr_assert_eq(get_key(tbl, &a), &a.node);
  cr_assert_eq(get_key(tbl, &b), &b.node);
  cr_assert_null(get_key(tbl, &probe));
  tp_table_destroy(tbl);
}

/* The key compare reads a key in word-sized pieces that overlap at the
 * end: a key of each length 0..40 with the same hash as the probe is found
 * only by itself, and a probe differing in any one byte, or one byte
 * shorter, misses it. */
Test(table, keys_of_every_length_differing_in_any_one_byte_are_told_apart) {
  tp_table_t *tbl = table_new(64);
  for (size_t len = 0; len <= 40; len++) {
    char key[48];
    memset(key, 'k', len);
    key[len] = '\0';
    entry_t e;
    entry_set_hash(&e, key, 7);
    cr_assert_eq(tp_table_insert(tbl, &e.node, NULL), TP_OK);
    char probe[48];
    memset(probe, 'k', len);
    cr_assert_eq(tp_table_get(tbl, 7, probe, len), &e.node, "length %zu", len);
    for (size_t j = 0; j < len; j++) {
      probe[j] = 'x';
      cr_assert_null(tp_table_get(tbl, 7, probe, len), "length %zu, byte %zu", len, j);
      probe[j] = 'k';
    }
    if (len > 0)
      cr_assert_null(tp_table_get(tbl, 7, probe, len - 1), "length %zu", len - 1);
    cr_assert_eq(tp_table_remove(tbl, &e.node), TP_OK);
  }
  tp_table_destroy(tbl);
}

/* max_entries 3 gets 4 slots (load factor <= 0.75); this fills all four with
 * live nodes and a tombstone, so no probe can stop at an empty slot. */
Test(table, probes_end_when_no_slot_is_empty, .timeout = 10) {
  tp_table_t *tbl = table_new(3);
  entry_t e[5], absent;
  for (unsigned i = 0; i < 3; i++) {
    char key[16];
    snprintf(key, sizeof(key), "collide.%u", i);
    entry_set_hash(&e[i], key, colliding_hash(i)); /* slots 0, 1, 2 */
    cr_assert_eq(tp_table_insert(tbl, &e[i].node, NULL), TP_OK);
  }
  cr_assert_eq(tp_table_remove(tbl, &e[0].node), TP_OK); /* slot 0: tomb */
  entry_set_hash(&e[3], "home.3", colliding_hash(3) | 3); /* slot 3 */
  cr_assert_eq(tp_table_insert(tbl, &e[3].node, NULL), TP_OK);

  entry_set_hash(&absent, "absent", colliding_hash(9));
  cr_assert_null(get_key(tbl, &absent));
  entry_set_hash(&absent, "absent", colliding_hash(9) | 2);
  cr_assert_null(get_key(tbl, &absent));

  /* The only free slots are tombstones: the insert must wrap to one. */
  cr_assert_eq(tp_table_remove(tbl, &e[1].node), TP_OK);
  entry_set_hash(&e[4], "home.2", colliding_hash(4) | 2);
  cr_assert_eq(tp_table_insert(tbl, &e[4].node, NULL), TP_OK);
  cr_assert_eq(get_key(tbl, &e[4]), &e[4].node);
  cr_assert_eq(get_key(tbl, &e[2]), &e[2].node);
  cr_assert_eq(get_key(tbl, &e[3]), &e[3].node);
  cr_assert_null(get_key(tbl, &e[0]));
  cr_assert_eq(tp_table_size(tbl), 3);
  tp_table_destroy(tbl);
}

struct visit {
  unsigned *seen;
  size_t calls;
  size_t stop_after; /* 0: never */
};

static int visit_cb(tp_table_node_t *node, void *opaque) {
  struct visit *v = opaque;
  v->seen[entry_of(node)->index]++;
  v->calls++;
  return v->stop_after != 0 && v->calls == v->stop_after;
}

Test(table, foreach_visits_every_live_node_exactly_once) {
  enum { N = 1000 };
  tp_table_t *tbl = table_new(N);
  entry_t *e = calloc(N, sizeof(*e));
  unsigned *seen = calloc(N, sizeof(*seen));
  cr_assert(e != NULL && seen != NULL);
  for (size_t i = 0; i < N; i++) {
    char key[32];
    snprintf(key, sizeof(key), "web.checkout:%zu", i);
    entry_set(&e[i], key, i);
    cr_assert_eq(tp_table_insert(tbl, &e[i].node, NULL), TP_OK);
  }
  for (size_t i = 0; i < N; i += 3)
    cr_assert_eq(tp_table_remove(tbl, &e[i].node), TP_OK);

  struct visit v = {seen, 0, 0};
  tp_table_read_begin(tbl);
  tp_table_foreach(tbl, visit_cb, &v);
  tp_table_read_end(tbl);
  for (size_t i = 0; i < N; i++)
    cr_assert_eq(seen[i], i % 3 == 0 ? 0u : 1u, "entry %zu seen %u times", i,
                 seen[i]);
  cr_assert_eq(v.calls, tp_table_size(tbl));

  /* A non-zero return stops the walk. */
  struct visit stop = {seen, 0, 10};
  tp_table_foreach(tbl, visit_cb, &stop);
  cr_assert_eq(stop.calls, 10);
  tp_table_destroy(tbl);
  free(seen);
  free(e);
}

Test(table, new_rejects_zero_capacity_with_a_message) {
  char errstr[128] = "";
  cr_assert_null(tp_table_new(0, errstr, sizeof(errstr)));
  cr_assert(strstr(errstr, "max_entries") != NULL, "errstr: %s", errstr);
}

Test(table, new_returns_null_with_a_message_on_each_allocation_failure) {
  long failures = 0;
  for (long n = 1;; n++) {
    char errstr[128] = "";
    tp_alloc_fail_after(n);
    tp_table_t *tbl = tp_table_new(1000, errstr, sizeof(errstr));
    long calls = tp_alloc_calls();
    tp_alloc_fail_after(0);
    if (tbl != NULL) {
      cr_assert_lt(calls, n, "succeeded although allocation %ld failed", n);
      tp_table_destroy(tbl);
      break;
    }
    cr_assert(strstr(errstr, "cannot allocate") != NULL, "errstr: %s", errstr);
    failures++;
  }
  cr_assert_geq(failures, 2); /* the table and its slot array */
}

Test(table, destroy_accepts_null) { tp_table_destroy(NULL); }

/* ---- epoch-based reclamation ------------------------------------------ */

static _Atomic int freed_count;

static void free_entry_cb(tp_table_node_t *node) {
  entry_t *e = entry_of(node);
  atomic_store(&e->magic, MAGIC_DEAD);
  atomic_fetch_add(&freed_count, 1);
}

static void free_heap_entry_cb(tp_table_node_t *node) {
  free_entry_cb(node);
  free(entry_of(node));
}

Test(table, retired_node_waits_for_a_reader_in_its_section) {
  tp_table_t *tbl = table_new(16);
  entry_t a;
  entry_set(&a, "checkout.payment", 0);
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);

  tp_table_read_begin(tbl);
  cr_assert_eq(get_key(tbl, &a), &a.node); /* this reader holds a */
  cr_assert_eq(tp_table_remove(tbl, &a.node), TP_OK);
  tp_table_retire(tbl, &a.node, free_entry_cb);
  tp_table_reclaim(tbl);
  cr_assert_eq(atomic_load(&freed_count), 0);
  cr_assert_eq(atomic_load(&a.magic), MAGIC_LIVE);
  tp_table_read_end(tbl);

  tp_table_reclaim(tbl);
  cr_assert_eq(atomic_load(&freed_count), 1);
  tp_table_reclaim(tbl); /* freed once, not again */
  cr_assert_eq(atomic_load(&freed_count), 1);
  tp_table_destroy(tbl);
  cr_assert_eq(atomic_load(&freed_count), 1);
}

Test(table, reader_that_began_after_the_retire_does_not_hold_it_back) {
  tp_table_t *tbl = table_new(16);
  entry_t a;
  entry_set(&a, "checkout.payment", 0);
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(tp_table_remove(tbl, &a.node), TP_OK);
  tp_table_retire(tbl, &a.node, free_entry_cb);

  tp_table_read_begin(tbl); /* cannot find a: it was removed before */
  cr_assert_null(get_key(tbl, &a));
  tp_table_reclaim(tbl);
  cr_assert_eq(atomic_load(&freed_count), 1);
  tp_table_read_end(tbl);
  tp_table_destroy(tbl);
}

Test(table, destroy_frees_retired_nodes_still_pending) {
  tp_table_t *tbl = table_new(16);
  entry_t a, b;
  entry_set(&a, "checkout.payment", 0);
  entry_set(&b, "support.chat", 1);
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &b.node, NULL), TP_OK);

  tp_table_read_begin(tbl);
  cr_assert_eq(tp_table_remove(tbl, &a.node), TP_OK);
  tp_table_retire(tbl, &a.node, free_entry_cb);
  cr_assert_eq(tp_table_remove(tbl, &b.node), TP_OK);
  tp_table_retire(tbl, &b.node, free_entry_cb);
  tp_table_reclaim(tbl);
  cr_assert_eq(atomic_load(&freed_count), 0);
  tp_table_read_end(tbl);

  tp_table_destroy(tbl);
  cr_assert_eq(atomic_load(&freed_count), 2);
}

struct held_reader {
  tp_table_t *tbl;
  pthread_barrier_t *entered; /* the readers are in their sections */
  pthread_barrier_t *leave;   /* the main thread has checked */
};

static void *held_reader_main(void *arg) {
  struct held_reader *r = arg;
  tp_table_read_begin(r->tbl);
  pthread_barrier_wait(r->entered);
  pthread_barrier_wait(r->leave);
  tp_table_read_end(r->tbl);
  return NULL;
}

/* n reader threads sit in read sections while the main thread retires a
 * node; nothing may be freed until every one of them has left. */
static void check_readers_hold_back_reclaim(unsigned n) {
  tp_table_t *tbl = table_new(16);
  pthread_t *threads = calloc(n, sizeof(*threads));
  pthread_barrier_t entered, leave;
  struct held_reader r = {tbl, &entered, &leave};
  entry_t a;
  cr_assert_not_null(threads);
  entry_set(&a, "checkout.payment", 0);
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  pthread_barrier_init(&entered, NULL, n + 1);
  pthread_barrier_init(&leave, NULL, n + 1);
  for (unsigned i = 0; i < n; i++)
    cr_assert_eq(pthread_create(&threads[i], NULL, held_reader_main, &r), 0);
  pthread_barrier_wait(&entered);

  cr_assert_eq(tp_table_remove(tbl, &a.node), TP_OK);
  tp_table_retire(tbl, &a.node, free_entry_cb);
  tp_table_reclaim(tbl);
  cr_assert_eq(atomic_load(&freed_count), 0, "freed under %u readers", n);

  pthread_barrier_wait(&leave);
  for (unsigned i = 0; i < n; i++)
    pthread_join(threads[i], NULL);
  tp_table_reclaim(tbl);
  cr_assert_eq(atomic_load(&freed_count), 1);
  pthread_barrier_destroy(&entered);
  pthread_barrier_destroy(&leave);
  free(threads);
  tp_table_destroy(tbl);
}

Test(table, reader_in_another_thread_holds_back_reclaim) {
  check_readers_hold_back_reclaim(1);
}

Test(table, readers_beyond_the_64_reader_slots_still_hold_back_reclaim,
     .timeout = 30) {
  check_readers_hold_back_reclaim(80);
  /* Exited threads gave their ids back: a second crowd works the same. */
  atomic_store(&freed_count, 0);
  check_readers_hold_back_reclaim(80);
}

Test(table, retire_without_memory_frees_at_once_when_no_reader_holds_it) {
  tp_table_t *tbl = table_new(16);
  entry_t a;
  entry_set(&a, "checkout.payment", 0);
  cr_assert_eq(tp_table_insert(tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(tp_table_remove(tbl, &a.node), TP_OK);
  tp_alloc_fail_after(1); /* the retire record */
  tp_table_retire(tbl, &a.node, free_entry_cb);
  tp_alloc_fail_after(0);
  cr_assert_eq(atomic_load(&freed_count), 1);
  tp_table_destroy(tbl);
  cr_assert_eq(atomic_load(&freed_count), 1);
}

struct oom_retire {
  tp_table_t *tbl;
  tp_table_node_t *node;
  sem_t entered, leave, retiring;
};

static void *section_holder_main(void *arg) {
  struct oom_retire *o = arg;
  tp_table_read_begin(o->tbl);
  sem_post(&o->entered);
  sem_wait(&o->leave);
  tp_table_read_end(o->tbl);
  return NULL;
}

static void *oom_retirer_main(void *arg) {
  struct oom_retire *o = arg;
  sem_post(&o->retiring);
  tp_table_retire(o->tbl, o->node, free_entry_cb);
  return NULL;
}

Test(table, retire_without_memory_waits_for_the_reader_in_its_section,
     .timeout = 10) {
  struct oom_retire o = {.tbl = table_new(16)};
  entry_t a;
  pthread_t holder, retirer;
  entry_set(&a, "checkout.payment", 0);
  o.node = &a.node;
  sem_init(&o.entered, 0, 0);
  sem_init(&o.leave, 0, 0);
  sem_init(&o.retiring, 0, 0);
  cr_assert_eq(tp_table_insert(o.tbl, &a.node, NULL), TP_OK);
  cr_assert_eq(pthread_create(&holder, NULL, section_holder_main, &o), 0);
  sem_wait(&o.entered);
  cr_assert_eq(tp_table_remove(o.tbl, &a.node), TP_OK);

  tp_alloc_fail_after(1); /* the retire record */
  cr_assert_eq(pthread_create(&retirer, NULL, oom_retirer_main, &o), 0);
  sem_wait(&o.retiring);
  struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
  cr_assert_eq(atomic_load(&freed_count), 0, "freed under a reader");
  sem_post(&o.leave);
  pthread_join(holder, NULL);
  pthread_join(retirer, NULL);
  tp_alloc_fail_after(0);
  cr_assert_eq(atomic_load(&freed_count), 1);
  cr_assert_eq(atomic_load(&a.magic), MAGIC_DEAD);
  sem_destroy(&o.entered);
  sem_destroy(&o.leave);
  sem_destroy(&o.retiring);
  tp_table_destroy(o.tbl);
}

/* ---- concurrency ------------------------------------------------------ */

enum { WRITERS = 4, PER_WRITER = 100000, READERS = 2 };

struct shared {
  tp_table_t *tbl;
  entry_t *entries; /* WRITERS * PER_WRITER, writer w owns a slice */
  _Atomic int writers_left;
  _Atomic size_t reader_hits;
  _Atomic size_t reader_scans;
  pthread_barrier_t start;
};

struct worker {
  struct shared *sh;
  unsigned id;
  size_t ok, lost; /* written by the worker, read after the join */
};

static void *insert_writer_main(void *arg) {
  struct worker *w = arg;
  struct shared *sh = w->sh;
  entry_t *mine = sh->entries + (size_t)w->id * PER_WRITER;
  pthread_barrier_wait(&sh->start);
  for (size_t i = 0; i < PER_WRITER; i++) {
    tp_err_t err = tp_table_insert(sh->tbl, &mine[i].node, NULL);
    if (err == TP_OK)
      w->ok++;
    /* The owner finds its node right away, with no read section. */
    if (get_key(sh->tbl, &mine[i]) != &mine[i].node)
      w->lost++;
  }
  atomic_fetch_sub(&sh->writers_left, 1);
  return NULL;
}

static int check_node_cb(tp_table_node_t *node, void *opaque) {
  size_t *count = opaque;
  entry_t *e = entry_of(node);
  THREAD_CHECK(atomic_load_explicit(&e->magic, memory_order_relaxed) ==
               MAGIC_LIVE);
  THREAD_CHECK(node->key == e->key);
  (*count)++;
  return 0;
}

static void *lookup_reader_main(void *arg) {
  struct worker *w = arg;
  struct shared *sh = w->sh;
  uint64_t rnd = 0x9e3779b97f4a7c15ull * (w->id + 1);
  size_t total = (size_t)WRITERS * PER_WRITER;
  pthread_barrier_wait(&sh->start);
  for (unsigned round = 0; atomic_load(&sh->writers_left) > 0; round++) {
    tp_table_read_begin(sh->tbl);
    for (int i = 0; i < 256; i++) {
      entry_t *want = &sh->entries[next_rand(&rnd) % total];
      tp_table_node_t *node = get_key(sh->tbl, want);
      if (node != NULL) {
        THREAD_CHECK(node == &want->node);
        atomic_fetch_add_explicit(&sh->reader_hits, 1, memory_order_relaxed);
      }
    }
    if (round % 64 == 0) {
      size_t count = 0;
      tp_table_foreach(sh->tbl, check_node_cb, &count);
      THREAD_CHECK(count <= total);
      atomic_fetch_add_explicit(&sh->reader_scans, 1, memory_order_relaxed);
    }
    tp_table_read_end(sh->tbl);
  }
  return NULL;
}

Test(table, concurrent_writers_and_readers_leave_every_key_exactly_once,
     .timeout = 60) {
  const size_t total = (size_t)WRITERS * PER_WRITER;
  struct shared sh = {.tbl = table_new(total)};
  struct worker w[WRITERS + READERS];
  pthread_t th[WRITERS + READERS];
  sh.entries = calloc(total, sizeof(*sh.entries));
  cr_assert_not_null(sh.entries);
  for (size_t i = 0; i < total; i++) {
    char key[48];
    snprintf(key, sizeof(key), "cx.feedback/%zu/checkout.step:%zu", i % 12, i);
    entry_set(&sh.entries[i], key, i);
  }
  atomic_init(&sh.writers_left, WRITERS);
  pthread_barrier_init(&sh.start, NULL, WRITERS + READERS);
  for (unsigned i = 0; i < WRITERS + READERS; i++) {
    w[i] = (struct worker){.sh = &sh, .id = i < WRITERS ? i : i - WRITERS};
    cr_assert_eq(pthread_create(&th[i], NULL,
                                i < WRITERS ? insert_writer_main
                                            : lookup_reader_main,
                                &w[i]),
                 0);
  }
  for (unsigned i = 0; i < WRITERS + READERS; i++)
    pthread_join(th[i], NULL);

  for (unsigned i = 0; i < WRITERS; i++) {
    cr_assert_eq(w[i].ok, PER_WRITER, "writer %u", i);
    cr_assert_eq(w[i].lost, 0, "writer %u lost its own node", i);
  }
  cr_assert_eq(atomic_load(&thread_failures), 0);
  cr_assert_eq(tp_table_size(sh.tbl), total);
  cr_assert_eq(tp_table_overflow(sh.tbl), 0);
  unsigned *seen = calloc(total, sizeof(*seen));
  cr_assert_not_null(seen);
  struct visit v = {seen, 0, 0};
  tp_table_foreach(sh.tbl, visit_cb, &v);
  cr_assert_eq(v.calls, total);
  for (size_t i = 0; i < total; i++) {
    cr_assert_eq(seen[i], 1, "entry %zu seen %u times", i, seen[i]);
    cr_assert_eq(get_key(sh.tbl, &sh.entries[i]), &sh.entries[i].node);
  }
  cr_log_info("readers: %zu hits, %zu scans", atomic_load(&sh.reader_hits),
              atomic_load(&sh.reader_scans));
  free(seen);
  pthread_barrier_destroy(&sh.start);
  tp_table_destroy(sh.tbl);
  free(sh.entries);
}

/* Every thread inserts its own node for every key of one shared set, in the
 * same order so they collide, while a churn thread inserts and removes
 * fillers on the same probe paths (fresh tombstones under the inserts). */
enum { SAME_KEYS = 10000, SAME_THREADS = 4, FILLERS = 512 };

struct same_key {
  tp_table_t *tbl;
  entry_t *nodes; /* SAME_THREADS * SAME_KEYS */
  entry_t *fillers;
  _Atomic int inserters_left;
  pthread_barrier_t start;
  _Atomic int wins[SAME_KEYS];
};

struct same_key_worker {
  struct same_key *sk;
  unsigned id;
  size_t bad_existing;
};

static void *same_key_inserter_main(void *arg) {
  struct same_key_worker *w = arg;
  struct same_key *sk = w->sk;
  entry_t *mine = sk->nodes + (size_t)w->id * SAME_KEYS;
  pthread_barrier_wait(&sk->start);
  for (size_t k = 0; k < SAME_KEYS; k++) {
    tp_table_node_t *existing = NULL;
    tp_err_t err = tp_table_insert(sk->tbl, &mine[k].node, &existing);
    if (err == TP_OK)
      atomic_fetch_add(&sk->wins[k], 1);
    else if (err != TP_EEXIST || existing == NULL ||
             entry_of(existing)->index != k || existing == &mine[k].node)
      w->bad_existing++;
  }
  atomic_fetch_sub(&sk->inserters_left, 1);
  return NULL;
}

static void *filler_churn_main(void *arg) {
  struct same_key *sk = arg;
  pthread_barrier_wait(&sk->start);
  for (size_t i = 0; atomic_load(&sk->inserters_left) > 0; i++) {
    entry_t *f = &sk->fillers[i % FILLERS];
    if (tp_table_insert(sk->tbl, &f->node, NULL) == TP_OK)
      THREAD_CHECK(tp_table_remove(sk->tbl, &f->node) == TP_OK);
  }
  return NULL;
}

Test(table, racing_inserts_of_one_key_leave_exactly_one, .timeout = 60) {
  static struct same_key sk;
  struct same_key_worker w[SAME_THREADS];
  pthread_t th[SAME_THREADS + 1];
  /* Small table: long shared probe paths. */
  sk.tbl = table_new(SAME_KEYS + FILLERS);
  sk.nodes = calloc((size_t)SAME_THREADS * SAME_KEYS, sizeof(*sk.nodes));
  sk.fillers = calloc(FILLERS, sizeof(*sk.fillers));
  cr_assert(sk.nodes != NULL && sk.fillers != NULL);
  for (unsigned t = 0; t < SAME_THREADS; t++)
    for (size_t k = 0; k < SAME_KEYS; k++) {
      char key[32];
      snprintf(key, sizeof(key), "app.login:%zu", k);
      entry_set(&sk.nodes[(size_t)t * SAME_KEYS + k], key, k);
    }
  for (size_t f = 0; f < FILLERS; f++) {
    char key[32];
    snprintf(key, sizeof(key), "filler:%zu", f);
    /* Same home slot as key f * 19, another tag. */
    uint64_t h = sk.nodes[(f * 19) % SAME_KEYS].node.hash ^ ((uint64_t)1 << 60);
    entry_set_hash(&sk.fillers[f], key, h);
  }
  atomic_init(&sk.inserters_left, SAME_THREADS);
  pthread_barrier_init(&sk.start, NULL, SAME_THREADS + 1);
  for (unsigned t = 0; t < SAME_THREADS; t++) {
    w[t] = (struct same_key_worker){.sk = &sk, .id = t};
    cr_assert_eq(pthread_create(&th[t], NULL, same_key_inserter_main, &w[t]),
                 0);
  }
  cr_assert_eq(pthread_create(&th[SAME_THREADS], NULL, filler_churn_main, &sk),
               0);
  for (unsigned t = 0; t <= SAME_THREADS; t++)
    pthread_join(th[t], NULL);

  cr_assert_eq(atomic_load(&thread_failures), 0);
  for (unsigned t = 0; t < SAME_THREADS; t++)
    cr_assert_eq(w[t].bad_existing, 0, "thread %u", t);
  for (size_t k = 0; k < SAME_KEYS; k++) {
    cr_assert_eq(atomic_load(&sk.wins[k]), 1, "key %zu inserted %d times", k,
                 atomic_load(&sk.wins[k]));
    tp_table_node_t *node = get_key(sk.tbl, &sk.nodes[k]);
    cr_assert_not_null(node);
    cr_assert_eq(entry_of(node)->index, k);
  }
  cr_assert_eq(tp_table_size(sk.tbl), SAME_KEYS);
  size_t count = 0;
  tp_table_foreach(sk.tbl, check_node_cb, &count);
  cr_assert_eq(count, SAME_KEYS);
  cr_assert_eq(atomic_load(&thread_failures), 0);
  pthread_barrier_destroy(&sk.start);
  tp_table_destroy(sk.tbl);
  free(sk.nodes);
  free(sk.fillers);
}

struct count_key {
  const char *key;
  size_t count;
};

static int count_key_cb(tp_table_node_t *node, void *opaque) {
  struct count_key *ck = opaque;
  if (strcmp(entry_of(node)->key, ck->key) == 0)
    ck->count++;
  return 0;
}

/* table.c's test hook: called by an insert between its scan and its CAS. */
extern void (*tp__table_insert_pause)(void);

static _Thread_local int pause_this_thread;
static sem_t paused_sem, resume_sem;

static void pause_insert(void) {
  if (!pause_this_thread)
    return;
  sem_post(&paused_sem);
  sem_wait(&resume_sem);
}

struct paused_insert {
  tp_table_t *tbl;
  tp_table_node_t *node, *existing;
  tp_err_t err;
};

static void *paused_inserter_main(void *arg) {
  struct paused_insert *pi = arg;
  pause_this_thread = 1;
  pi->err = tp_table_insert(pi->tbl, pi->node, &pi->existing);
  return NULL;
}

/* Thread A scans key K's path (fillers at slots 0 and 1) and picks slot 2,
 * then stalls; a filler removal opens slot 0, and B inserts K there and
 * returns. When A resumes and claims slot 2 it must find B's node and
 * report it, not publish a second K. */
Test(table, insert_that_raced_a_removal_on_its_path_backs_off_to_the_winner,
     .timeout = 10) {
  tp_table_t *tbl = table_new(16);
  entry_t f0, f1, a, b;
  pthread_t th;
  entry_set_hash(&f0, "filler.0", colliding_hash(0));
  entry_set_hash(&f1, "filler.1", colliding_hash(1));
  entry_set_hash(&a, "checkout.payment", colliding_hash(7));
  entry_set_hash(&b, "checkout.payment", colliding_hash(7));
  cr_assert_eq(tp_table_insert(tbl, &f0.node, NULL), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &f1.node, NULL), TP_OK);
  sem_init(&paused_sem, 0, 0);
  sem_init(&resume_sem, 0, 0);
  tp__table_insert_pause = pause_insert;

  struct paused_insert pi = {tbl, &a.node, NULL, TP_OK};
  cr_assert_eq(pthread_create(&th, NULL, paused_inserter_main, &pi), 0);
  sem_wait(&paused_sem); /* A has chosen slot 2 */
  cr_assert_eq(tp_table_remove(tbl, &f0.node), TP_OK);
  cr_assert_eq(tp_table_insert(tbl, &b.node, NULL), TP_OK); /* slot 0 */
  sem_post(&resume_sem);
  pthread_join(th, NULL);
  tp__table_insert_pause = NULL;

  cr_assert_eq(pi.err, TP_EEXIST);
  cr_assert_eq(pi.existing, &b.node);
  cr_assert_eq(get_key(tbl, &a), &b.node);
  struct count_key ck = {"checkout.payment", 0};
  tp_table_foreach(tbl, count_key_cb, &ck);
  cr_assert_eq(ck.count, 1);
  cr_assert_eq(tp_table_size(tbl), 2);
  sem_destroy(&paused_sem);
  sem_destroy(&resume_sem);
  tp_table_destroy(tbl);
}

/* The dangerous case for same-key inserts: while two threads insert one key,
 * a removal opens a tombstone earlier on the key's path than the free slot
 * the first thread chose, and the second thread takes it. Everything here
 * shares home slot 0: a churn thread keeps removing and reinserting the
 * fillers that make up the front of the path, and in each round two threads
 * insert their own node for a fresh key at the same moment. */
enum { PATH_FILLERS = 24, RACE_ROUNDS = 4000 };

struct path_race {
  tp_table_t *tbl;
  entry_t fillers[PATH_FILLERS];
  entry_t nodes[2][RACE_ROUNDS];
  tp_err_t result[2][RACE_ROUNDS];
  pthread_barrier_t start, done;
  _Atomic int stop;
};

struct path_race_worker {
  struct path_race *pr;
  unsigned id;
};

static void *path_race_inserter_main(void *arg) {
  struct path_race_worker *w = arg;
  struct path_race *pr = w->pr;
  for (unsigned r = 0; r < RACE_ROUNDS; r++) {
    pthread_barrier_wait(&pr->start);
    pr->result[w->id][r] =
        tp_table_insert(pr->tbl, &pr->nodes[w->id][r].node, NULL);
    pthread_barrier_wait(&pr->done);
  }
  return NULL;
}

static void *path_churn_main(void *arg) {
  struct path_race *pr = arg;
  for (size_t i = 0; !atomic_load(&pr->stop); i++) {
    entry_t *f = &pr->fillers[i % PATH_FILLERS];
    THREAD_CHECK(tp_table_remove(pr->tbl, &f->node) == TP_OK);
    THREAD_CHECK(tp_table_insert(pr->tbl, &f->node, NULL) == TP_OK);
  }
  return NULL;
}

Test(table, racing_inserts_of_one_key_with_removals_on_its_path_leave_one,
     .timeout = 60) {
  static struct path_race pr;
  struct path_race_worker w[2] = {{&pr, 0}, {&pr, 1}};
  pthread_t th[3];
  pr.tbl = table_new(64);
  for (unsigned f = 0; f < PATH_FILLERS; f++) {
    char key[16];
    snprintf(key, sizeof(key), "filler.%u", f);
    entry_set_hash(&pr.fillers[f], key, colliding_hash(f));
    cr_assert_eq(tp_table_insert(pr.tbl, &pr.fillers[f].node, NULL), TP_OK);
  }
  for (unsigned r = 0; r < RACE_ROUNDS; r++)
    for (unsigned t = 0; t < 2; t++) {
      char key[16];
      snprintf(key, sizeof(key), "race.%u", r);
      entry_set_hash(&pr.nodes[t][r], key, colliding_hash(100 + r % 50));
    }
  pthread_barrier_init(&pr.start, NULL, 3);
  pthread_barrier_init(&pr.done, NULL, 3);
  for (unsigned t = 0; t < 2; t++)
    cr_assert_eq(pthread_create(&th[t], NULL, path_race_inserter_main, &w[t]),
                 0);
  cr_assert_eq(pthread_create(&th[2], NULL, path_churn_main, &pr), 0);

  size_t failures = 0;
  for (unsigned r = 0; r < RACE_ROUNDS; r++) {
    pthread_barrier_wait(&pr.start);
    pthread_barrier_wait(&pr.done);
    struct count_key ck = {pr.nodes[0][r].key, 0};
    tp_table_foreach(pr.tbl, count_key_cb, &ck);
    int wins = (pr.result[0][r] == TP_OK) + (pr.result[1][r] == TP_OK);
    if (ck.count != 1 || wins != 1) {
      if (failures++ < 5)
        fprintf(stderr, "round %u: key present %zu times, %d inserts won\n", r,
                ck.count, wins);
    }
    /* Take the key out again so the path stays the same length. */
    for (unsigned t = 0; t < 2; t++)
      if (pr.result[t][r] == TP_OK)
        cr_assert_eq(tp_table_remove(pr.tbl, &pr.nodes[t][r].node), TP_OK);
  }
  atomic_store(&pr.stop, 1);
  for (unsigned t = 0; t < 3; t++)
    pthread_join(th[t], NULL);
  cr_assert_eq(failures, 0, "%zu of %d rounds went wrong", failures,
               RACE_ROUNDS);
  cr_assert_eq(atomic_load(&thread_failures), 0);
  cr_assert_eq(tp_table_size(pr.tbl), PATH_FILLERS);
  pthread_barrier_destroy(&pr.start);
  pthread_barrier_destroy(&pr.done);
  tp_table_destroy(pr.tbl);
}

enum { CAP = 1000, CAP_THREADS = 4 };

struct cap_worker {
  tp_table_t *tbl;
  entry_t *entries; /* CAP entries of this thread */
  pthread_barrier_t *start;
  size_t ok, efull;
};

static void *cap_inserter_main(void *arg) {
  struct cap_worker *w = arg;
  pthread_barrier_wait(w->start);
  for (size_t i = 0; i < CAP; i++) {
    tp_err_t err = tp_table_insert(w->tbl, &w->entries[i].node, NULL);
    if (err == TP_OK)
      w->ok++;
    else if (err == TP_EFULL)
      w->efull++;
  }
  return NULL;
}

Test(table, cap_holds_under_concurrent_inserts, .timeout = 30) {
  tp_table_t *tbl = table_new(CAP);
  entry_t *entries = calloc((size_t)CAP * CAP_THREADS, sizeof(*entries));
  struct cap_worker w[CAP_THREADS];
  pthread_t th[CAP_THREADS];
  pthread_barrier_t start;
  cr_assert_not_null(entries);
  for (size_t i = 0; i < (size_t)CAP * CAP_THREADS; i++) {
    char key[32];
    snprintf(key, sizeof(key), "commerce.return:%zu", i);
    entry_set(&entries[i], key, i);
  }
  pthread_barrier_init(&start, NULL, CAP_THREADS);
  for (unsigned t = 0; t < CAP_THREADS; t++) {
    w[t] = (struct cap_worker){tbl, entries + (size_t)t * CAP, &start, 0, 0};
    cr_assert_eq(pthread_create(&th[t], NULL, cap_inserter_main, &w[t]), 0);
  }
  size_t ok = 0, efull = 0;
  for (unsigned t = 0; t < CAP_THREADS; t++) {
    pthread_join(th[t], NULL);
    ok += w[t].ok;
    efull += w[t].efull;
  }
  cr_assert_eq(ok, CAP);
  cr_assert_eq(efull, (size_t)CAP * (CAP_THREADS - 1));
  cr_assert_eq(tp_table_overflow(tbl), (uint64_t)CAP * (CAP_THREADS - 1));
  cr_assert_eq(tp_table_size(tbl), CAP);
  size_t count = 0;
  tp_table_foreach(tbl, check_node_cb, &count);
  cr_assert_eq(count, CAP);
  cr_assert_eq(atomic_load(&thread_failures), 0);
  pthread_barrier_destroy(&start);
  tp_table_destroy(tbl);
  free(entries);
}

/* Two owners keep replacing the entries of their hot keys (remove, retire,
 * insert a fresh heap entry) and reclaim as they go, while two readers look
 * the keys up and walk the table inside read sections and read every node
 * they find. A node freed too early is a heap-use-after-free under ASan, a
 * race under TSan, and a dead magic number otherwise. */
enum {
  HOT_KEYS = 32,
  CHURN_OWNERS = 2,
  CHURN_ROUNDS = 20000,
  CHURN_READERS = 2
};

struct churn {
  tp_table_t *tbl;
  _Atomic int owners_left;
  _Atomic size_t allocated;
  _Atomic size_t reads;
  pthread_barrier_t start;
};

struct churn_worker {
  struct churn *ch;
  unsigned id;
};

static entry_t *hot_entry_new(unsigned owner, unsigned k) {
  entry_t *e = malloc(sizeof(*e));
  char key[32];
  if (e == NULL)
    abort();
  snprintf(key, sizeof(key), "hot.%u:%u", owner, k);
  entry_set(e, key, k);
  return e;
}

static void *churn_owner_main(void *arg) {
  struct churn_worker *w = arg;
  struct churn *ch = w->ch;
  entry_t *cur[HOT_KEYS];
  for (unsigned k = 0; k < HOT_KEYS; k++) {
    cur[k] = hot_entry_new(w->id, k);
    THREAD_CHECK(tp_table_insert(ch->tbl, &cur[k]->node, NULL) == TP_OK);
  }
  atomic_fetch_add(&ch->allocated, HOT_KEYS);
  pthread_barrier_wait(&ch->start);
  for (unsigned r = 0; r < CHURN_ROUNDS; r++) {
    unsigned k = r % HOT_KEYS;
    THREAD_CHECK(tp_table_remove(ch->tbl, &cur[k]->node) == TP_OK);
    tp_table_retire(ch->tbl, &cur[k]->node, free_heap_entry_cb);
    cur[k] = hot_entry_new(w->id, k);
    atomic_fetch_add(&ch->allocated, 1);
    THREAD_CHECK(tp_table_insert(ch->tbl, &cur[k]->node, NULL) == TP_OK);
    if (r % 8 == 0)
      tp_table_reclaim(ch->tbl);
  }
  atomic_fetch_sub(&ch->owners_left, 1);
  for (unsigned k = 0; k < HOT_KEYS; k++) {
    THREAD_CHECK(tp_table_remove(ch->tbl, &cur[k]->node) == TP_OK);
    tp_table_retire(ch->tbl, &cur[k]->node, free_heap_entry_cb);
  }
  return NULL;
}

static int read_node_cb(tp_table_node_t *node, void *opaque) {
  entry_t *e = entry_of(node);
  (void)opaque;
  THREAD_CHECK(atomic_load_explicit(&e->magic, memory_order_relaxed) ==
               MAGIC_LIVE);
  THREAD_CHECK(memcmp(node->key, "hot.", 4) == 0);
  return 0;
}

static void *churn_reader_main(void *arg) {
  struct churn_worker *w = arg;
  struct churn *ch = w->ch;
  uint64_t rnd = 0x2545f4914f6cdd1dull * (w->id + 1);
  pthread_barrier_wait(&ch->start);
  for (unsigned round = 0; atomic_load(&ch->owners_left) > 0; round++) {
    tp_table_read_begin(ch->tbl);
    for (int i = 0; i < 16; i++) {
      char key[32];
      unsigned owner = (unsigned)(next_rand(&rnd) % CHURN_OWNERS);
      unsigned k = (unsigned)(next_rand(&rnd) % HOT_KEYS);
      int len = snprintf(key, sizeof(key), "hot.%u:%u", owner, k);
      tp_table_node_t *node = tp_table_get(
          ch->tbl, tp_hash64(key, (size_t)len, 0), key, (size_t)len);
      if (node != NULL) {
        sched_yield(); /* hold the node while the owner moves on */
        read_node_cb(node, NULL);
        THREAD_CHECK(entry_of(node)->index == k);
      }
    }
    if (round % 16 == 0)
      tp_table_foreach(ch->tbl, read_node_cb, NULL);
    tp_table_read_end(ch->tbl);
    atomic_fetch_add_explicit(&ch->reads, 1, memory_order_relaxed);
  }
  return NULL;
}

Test(table, retire_and_reclaim_racing_readers_free_no_node_in_use,
     .timeout = 60) {
  struct churn ch = {.tbl = table_new(256)};
  struct churn_worker w[CHURN_OWNERS + CHURN_READERS];
  pthread_t th[CHURN_OWNERS + CHURN_READERS];
  atomic_init(&ch.owners_left, CHURN_OWNERS);
  pthread_barrier_init(&ch.start, NULL, CHURN_OWNERS + CHURN_READERS);
  for (unsigned i = 0; i < CHURN_OWNERS + CHURN_READERS; i++) {
    w[i] = (struct churn_worker){&ch, i < CHURN_OWNERS ? i : i - CHURN_OWNERS};
    cr_assert_eq(pthread_create(&th[i], NULL,
                                i < CHURN_OWNERS ? churn_owner_main
                                                 : churn_reader_main,
                                &w[i]),
                 0);
  }
  for (unsigned i = 0; i < CHURN_OWNERS + CHURN_READERS; i++)
    pthread_join(th[i], NULL);

  cr_assert_eq(atomic_load(&thread_failures), 0);
  cr_assert_eq(tp_table_size(ch.tbl), 0);
  /* No reader left: one reclaim frees everything still pending. */
  tp_table_reclaim(ch.tbl);
  cr_assert_eq((size_t)atomic_load(&freed_count), atomic_load(&ch.allocated));
  cr_log_info("%zu read sections, %zu entries freed", atomic_load(&ch.reads),
              atomic_load(&ch.allocated));
  pthread_barrier_destroy(&ch.start);
  tp_table_destroy(ch.tbl);
}
