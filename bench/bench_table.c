/*
 * bench_table.c -- our touchpoint table against liburcu's cds_lfht on the
 * workload the workers run, to decide which of the two touchpulse uses.
 *
 * An update looks up a uniformly random key among 1 M touchpoint-like keys
 * (10-30 bytes), hashing it with tp_hash64() as production does, and bumps
 * a counter in the found node with atomic_fetch_add; on a miss it inserts
 * the key's entry. Each phase starts from a new table filled with every key
 * by the phase's writers (timed and printed separately), so the timed
 * updates run at 1 M keys. Entries are preallocated for both contestants:
 * the numbers are the tables', not malloc's.
 *
 * Phases: one writer; two writers on disjoint halves of the keys (one
 * worker per partition); two writers while a third thread walks the whole
 * table in a loop, the worst case of a reader; two writers with a walk a
 * second. In touchpulse the workers evaluate from their own schedules and
 * never walk the table: a /metrics scrape does, and the demo's view, once
 * a second.
 *
 * Contestants. Ours: lookups without a read section (a writer's own keys
 * are never removed under it), the scanner inside one. cds_lfht: the
 * default liburcu flavour (urcu-memb, what -lurcu provides) with every
 * lookup and insert in rcu_read_lock(), as its API requires. Its read side
 * is given its best case: _LGPL_SOURCE inlines rcu_read_lock/unlock, which
 * with membarrier(2) are a thread-local store and a compiler barrier;
 * urcu-qsbr would save even that, but the build does not link it and it
 * would make every worker report quiescent states. The table is created at
 * its final size (1 M buckets, no auto-resize, the mmap bucket allocator),
 * so it never resizes either. Concurrency Kit's ck_ht is not a contestant:
 * its manual page allows "multiple readers in the presence of one
 * concurrent writer", and touchpulse has one writer per partition, several
 * at once.
 *
 * Each scaling figure (2-writer throughput / 1-writer throughput) is also
 * printed as the product of two measured factors: the cores the writers
 * held (their CPU time over the wall time) and what a CPU second of theirs
 * did. The first is the scheduler's: a third busy thread on 2 cores leaves
 * the writers about 4/3 of them. The second is the table's own scaling.
 *
 * The "floor" line is the same update with no table at all (the entry
 * found by its index): on a machine whose memory latency dominates, it is
 * what neither table can go below.
 *
 * Build and run in Release: the numbers mean nothing under sanitizers.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _LGPL_SOURCE /* inline liburcu's read-side fast paths */
#include <urcu.h>
#include <urcu/rculfhash.h>

#include "touchpulse/common.h"
#include "touchpulse/table.h"

#define N_KEYS 1000000
#define N_UPDATES 4000000 /* per phase, split evenly across its writers */
#define N_RUNS 3          /* per phase and contestant, best one reported */
#define N_COUNTERS 4
#define KEY_MIN 10
#define KEY_MAX 30
#define HASH_SEED 0
#define N_PHASES 4
#define SCAN_PERIOD_NS 1000000000u /* the paced scanner: a scan a second */

typedef struct {
  uint32_t len;
  char s[KEY_MAX + 2];
} bench_key_t;

/*
 * Entries, laid out the same way for both: the table's link, the key it
 * compares, then the counters, on a 64-byte boundary, so a hit reads one
 * cache line of the entry in both (our node is 24 bytes, cds_lfht's 16 plus
 * the key length).
 */
typedef struct {
  _Alignas(TP_CACHELINE) tp_table_node_t node;
  char key[KEY_MAX + 2];
  _Atomic uint64_t counters[N_COUNTERS];
} our_entry_t;

typedef struct {
  _Alignas(TP_CACHELINE) struct cds_lfht_node node;
  uint32_t key_len;
  char key[KEY_MAX + 2];
  _Atomic uint64_t counters[N_COUNTERS];
} lf_entry_t;

static bench_key_t *keys;
static our_entry_t *our_entries;
static lf_entry_t *lf_entries;

/* The tables of the running phase. */
static tp_table_t *our_tbl;
static struct cds_lfht *lf_tbl;

static uint64_t next_rand(uint64_t *s) {
  /* xorshift64*: cheap, and good enough to pick keys uniformly. */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dull;
}

static size_t pick(uint64_t *rnd, size_t lo, size_t span) {
  return lo + (size_t)(((next_rand(rnd) >> 32) * span) >> 32);
}

/* Touchpoint-like keys: a journey name cut to length, ':' and the index,
 * so every key is distinct and lengths spread evenly over 10..30 bytes. */
static void make_keys(void) {
  static const char *names[] = {
      "checkout.payment.card.confirmation", "support.chat.agent.first-reply",
      "app.login.password-reset.email",     "web.search.results.filter.price",
      "store.pickup.counter.handover",      "returns.portal.label.printing",
      "phone.ivr.billing.queue.callback",   "email.campaign.spring.unsubscribe",
  };
  uint64_t rnd = 0x853c49e6748fea9bull;
  for (size_t i = 0; i < N_KEYS; i++) {
    char idx[16];
    int idx_len = snprintf(idx, sizeof(idx), "%zu", i);
    size_t len = KEY_MIN + (size_t)(next_rand(&rnd) % (KEY_MAX - KEY_MIN + 1));
    size_t name_len = len - 1 - (size_t)idx_len;
    memcpy(keys[i].s, names[i % TP_ARRAY_SIZE(names)], name_len);
    keys[i].s[name_len] = ':';
    memcpy(keys[i].s + name_len + 1, idx, (size_t)idx_len + 1);
    keys[i].len = (uint32_t)len;
  }
}

/* ---- the two contestants' update ------------------------------------ */

static void our_update(size_t i) {
  const bench_key_t *k = &keys[i];
  uint64_t hash = tp_hash64(k->s, k->len, HASH_SEED);
  tp_table_node_t *node = tp_table_get(our_tbl, hash, k->s, k->len);
  if (node == NULL) {
    our_entry_t *e = &our_entries[i];
    memcpy(e->key, k->s, k->len);
    e->node.hash = hash;
    e->node.key = e->key;
    e->node.key_len = k->len;
    tp_err_t err = tp_table_insert(our_tbl, &e->node, &node);
    if (err == TP_OK)
      node = &e->node;
    else if (err != TP_EEXIST)
      abort(); /* sized for every key: cannot be full */
  }
  our_entry_t *e = (our_entry_t *)node;
  atomic_fetch_add_explicit(&e->counters[0], 1, memory_order_relaxed);
}

struct lf_key {
  const char *s;
  uint32_t len;
};

static int lf_match(struct cds_lfht_node *node, const void *key) {
  const lf_entry_t *e = caa_container_of(node, lf_entry_t, node);
  const struct lf_key *k = key;
  return e->key_len == k->len && memcmp(e->key, k->s, k->len) == 0;
}

static void lf_update(size_t i) {
  const bench_key_t *k = &keys[i];
  struct lf_key lk = {k->s, k->len};
  unsigned long hash = (unsigned long)tp_hash64(k->s, k->len, HASH_SEED);
  struct cds_lfht_iter iter;
  rcu_read_lock();
  cds_lfht_lookup(lf_tbl, hash, lf_match, &lk, &iter);
  struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
  if (node == NULL) {
    lf_entry_t *e = &lf_entries[i];
    memcpy(e->key, k->s, k->len);
    e->key_len = k->len;
    cds_lfht_node_init(&e->node);
    node = cds_lfht_add_unique(lf_tbl, hash, lf_match, &lk, &e->node);
  }
  lf_entry_t *e = caa_container_of(node, lf_entry_t, node);
  atomic_fetch_add_explicit(&e->counters[0], 1, memory_order_relaxed);
  rcu_read_unlock();
}

/* The floor both contestants stand on: the same key pick, hash and atomic
 * add, with the entry found by its index instead of by a table. */
static void floor_update(size_t i) {
  const bench_key_t *k = &keys[i];
  uint64_t hash = tp_hash64(k->s, k->len, HASH_SEED);
  our_entry_t *e = &our_entries[i];
  atomic_fetch_add_explicit(&e->counters[hash & (N_COUNTERS - 1)], 1,
                            memory_order_relaxed);
}

static double floor_ns_per_update(void) {
  uint64_t rnd = 0x9e3779b97f4a7c15ull;
  uint64_t t0 = tp_mono_ns();
  for (size_t n = 0; n < N_UPDATES; n++)
    floor_update(pick(&rnd, 0, N_KEYS));
  return (double)(tp_mono_ns() - t0) / N_UPDATES;
}

/* ---- table setup per phase ------------------------------------------ */

enum contestant { OURS, CDS_LFHT, N_CONTESTANTS };
static const char *contestant_name[N_CONTESTANTS] = {"ours", "cds_lfht"};

static void tables_create(enum contestant c) {
  if (c == OURS) {
    char errstr[128];
    memset(our_entries, 0, sizeof(*our_entries) * N_KEYS);
    our_tbl = tp_table_new(N_KEYS, errstr, sizeof(errstr));
    if (our_tbl == NULL) {
      fprintf(stderr, "bench_table: %s\n", errstr);
      exit(1);
    }
  } else {
    memset(lf_entries, 0, sizeof(*lf_entries) * N_KEYS);
    /* 1 M buckets up front and as the maximum: no resize, and a max
     * <= 2^32 selects cds_lfht's faster mmap bucket allocator. */
    lf_tbl = cds_lfht_new(1UL << 20, 1UL << 20, 1UL << 20, 0, NULL);
    if (lf_tbl == NULL) {
      fprintf(stderr, "bench_table: cds_lfht_new failed\n");
      exit(1);
    }
  }
}

static void tables_destroy(enum contestant c) {
  if (c == OURS) {
    tp_table_destroy(our_tbl);
    our_tbl = NULL;
    return;
  }
  /* cds_lfht_destroy() refuses a table that still holds nodes. */
  struct cds_lfht_iter iter;
  lf_entry_t *e;
  rcu_read_lock();
  cds_lfht_for_each_entry(lf_tbl, &iter, e, node) {
    cds_lfht_del(lf_tbl, &e->node);
  }
  rcu_read_unlock();
  synchronize_rcu();
  if (cds_lfht_destroy(lf_tbl, NULL) != 0) {
    fprintf(stderr, "bench_table: cds_lfht_destroy failed\n");
    exit(1);
  }
  lf_tbl = NULL;
}

/* ---- threads ---------------------------------------------------------- */

struct run {
  enum contestant c;
  unsigned writers;
  int scanner; /* 0 none, 1 scanning in a loop, 2 a scan every SCAN_PERIOD_NS */
  pthread_barrier_t fill_start, fill_done, start;
  _Atomic int writers_left;
  uint64_t fill_ns, update_ns; /* wall clock, from the barriers */
  uint64_t writer_cpu_ns;      /* the writers' CPU time while updating */
  uint64_t scans;
};

struct writer {
  struct run *run;
  size_t lo, span; /* this writer's keys */
  size_t updates;
  uint64_t end_ns;
  uint64_t cpu_ns; /* this thread's CPU time for its updates */
};

/* The calling thread's CPU time: what the scheduler gave it, as against
 * the wall clock, which also counts the time it waited for a core. */
static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *writer_main(void *arg) {
  struct writer *w = arg;
  struct run *run = w->run;
  void (*update)(size_t) = run->c == OURS ? our_update : lf_update;
  uint64_t rnd = 0x9e3779b97f4a7c15ull ^ (w->lo + 1) * 0xbf58476d1ce4e5b9ull;

  if (run->c == CDS_LFHT)
    rcu_register_thread();
  /* Fill: every key of this writer once, in a shuffled-looking order
   * (a stride coprime with the span). */
  pthread_barrier_wait(&run->fill_start);
  size_t stride = 7919, j = 0;
  while (w->span % stride == 0)
    stride += 2;
  for (size_t n = 0; n < w->span; n++, j = (j + stride) % w->span)
    update(w->lo + j);
  pthread_barrier_wait(&run->fill_done);

  pthread_barrier_wait(&run->start);
  uint64_t cpu0 = thread_cpu_ns();
  for (size_t n = 0; n < w->updates; n++)
    update(pick(&rnd, w->lo, w->span));
  w->end_ns = tp_mono_ns();
  w->cpu_ns = thread_cpu_ns() - cpu0;
  atomic_fetch_sub(&run->writers_left, 1);
  if (run->c == CDS_LFHT)
    rcu_unregister_thread();
  return NULL;
}

static int our_scan_cb(tp_table_node_t *node, void *opaque) {
  our_entry_t *e = (our_entry_t *)node;
  *(uint64_t *)opaque +=
      atomic_load_explicit(&e->counters[0], memory_order_relaxed);
  return 0;
}

static volatile uint64_t scan_sink; /* keeps the scans' sums alive */

static void *scanner_main(void *arg) {
  struct run *run = arg;
  if (run->c == CDS_LFHT)
    rcu_register_thread();
  pthread_barrier_wait(&run->start);
  while (atomic_load(&run->writers_left) > 0) {
    uint64_t t_scan = tp_mono_ns(), sum = 0;
    if (run->c == OURS) {
      tp_table_read_begin(our_tbl);
      tp_table_foreach(our_tbl, our_scan_cb, &sum);
      tp_table_read_end(our_tbl);
    } else {
      struct cds_lfht_iter iter;
      lf_entry_t *e;
      rcu_read_lock();
      cds_lfht_for_each_entry(lf_tbl, &iter, e, node) {
        sum += atomic_load_explicit(&e->counters[0], memory_order_relaxed);
      }
      rcu_read_unlock();
    }
    scan_sink = sum;
    run->scans++;
    if (run->scanner == 2) {
      uint64_t next = t_scan + SCAN_PERIOD_NS;
      struct timespec ms = {0, 1000000};
      while (tp_mono_ns() < next && atomic_load(&run->writers_left) > 0)
        nanosleep(&ms, NULL);
    }
  }
  if (run->c == CDS_LFHT)
    rcu_unregister_thread();
  return NULL;
}

static void run_phase(struct run *run) {
  pthread_t th[3];
  struct writer w[2];
  unsigned parties = run->writers + 1; /* + this thread */

  tables_create(run->c);
  pthread_barrier_init(&run->fill_start, NULL, parties);
  pthread_barrier_init(&run->fill_done, NULL, parties);
  pthread_barrier_init(&run->start, NULL, parties + (run->scanner ? 1 : 0));
  atomic_init(&run->writers_left, (int)run->writers);
  run->scans = 0;
  for (unsigned i = 0; i < run->writers; i++) {
    w[i] = (struct writer){run, (size_t)N_KEYS / run->writers * i,
                           (size_t)N_KEYS / run->writers,
                           (size_t)N_UPDATES / run->writers, 0};
    pthread_create(&th[i], NULL, writer_main, &w[i]);
  }
  if (run->scanner)
    pthread_create(&th[run->writers], NULL, scanner_main, run);

  pthread_barrier_wait(&run->fill_start);
  uint64_t t0 = tp_mono_ns();
  pthread_barrier_wait(&run->fill_done);
  run->fill_ns = tp_mono_ns() - t0;
  pthread_barrier_wait(&run->start);
  t0 = tp_mono_ns();
  uint64_t end = t0;
  for (unsigned i = 0; i < run->writers + (run->scanner ? 1u : 0u); i++)
    pthread_join(th[i], NULL);
  run->writer_cpu_ns = 0;
  for (unsigned i = 0; i < run->writers; i++) {
    end = TP_MAX(end, w[i].end_ns);
    run->writer_cpu_ns += w[i].cpu_ns;
  }
  run->update_ns = end - t0;

  pthread_barrier_destroy(&run->fill_start);
  pthread_barrier_destroy(&run->fill_done);
  pthread_barrier_destroy(&run->start);
  tables_destroy(run->c);
}

/* ---- memory ----------------------------------------------------------- */

static long resident_bytes(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return -1;
  if (fscanf(f, "%ld %ld", &size, &resident) != 2)
    resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* Memory the table itself allocates (slots, buckets), per entry, measured
 * as resident-set growth while a new table takes every key: the entries
 * are preallocated and already resident, so they do not count. */
static double table_bytes_per_entry(enum contestant c) {
  long before = resident_bytes();
  tables_create(c);
  for (size_t i = 0; i < N_KEYS; i++)
    (c == OURS ? our_update : lf_update)(i);
  long after = resident_bytes();
  tables_destroy(c);
  return before < 0 || after < 0 ? -1.0 : (double)(after - before) / N_KEYS;
}

/* ---- main ------------------------------------------------------------- */

int main(void) {
  static const struct {
    const char *name;
    unsigned writers;
    int scanner;
  } phases[N_PHASES] = {
      {"1 writer", 1, 0},
      {"2 writers, disjoint key halves", 2, 0},
      {"2 writers + 1 table scanner", 2, 1},
      {"2 writers + a scan a second", 2, 2},
  };
  struct run runs[N_CONTESTANTS][N_PHASES];
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);

  keys = calloc(N_KEYS, sizeof(*keys));
  our_entries = aligned_alloc(TP_CACHELINE, sizeof(*our_entries) * N_KEYS);
  lf_entries = aligned_alloc(TP_CACHELINE, sizeof(*lf_entries) * N_KEYS);
  if (keys == NULL || our_entries == NULL || lf_entries == NULL) {
    fprintf(stderr, "bench_table: out of memory\n");
    return 1;
  }
  make_keys();
  /* This thread fills and empties cds_lfht tables: an RCU reader. */
  rcu_register_thread();
  /* Touch the entry arrays so that the memory measurement sees only what
   * the tables allocate. */
  memset(our_entries, 0, sizeof(*our_entries) * N_KEYS);
  memset(lf_entries, 0, sizeof(*lf_entries) * N_KEYS);

  printf("bench_table: %d keys of %d-%d bytes, %d counters per node, "
         "%d updates per phase\n",
         N_KEYS, KEY_MIN, KEY_MAX, N_COUNTERS, N_UPDATES);
  printf("update: look up a uniformly random key (tp_hash64), "
         "atomic_fetch_add a counter in its node, insert on miss\n");
  printf("each phase fills a new table with every key first (timed apart), "
         "so updates run at %d keys\n",
         N_KEYS);
  printf("best of %d runs per phase, contestants taking turns; "
         "machine: %ld online CPUs\n\n",
         N_RUNS, cpus);

  double mem[N_CONTESTANTS];
  for (int c = 0; c < N_CONTESTANTS; c++)
    mem[c] = table_bytes_per_entry((enum contestant)c);
  double floor_ns = 0;

  /* Other work on the machine only ever slows a run down: keep the best of
   * N_RUNS, with the contestants taking turns so that a busy stretch hits
   * both. */
  memset(runs, 0, sizeof(runs));
  for (int r = 0; r < N_RUNS; r++) {
    double f = floor_ns_per_update();
    floor_ns = r == 0 ? f : TP_MIN(floor_ns, f);
    for (int p = 0; p < N_PHASES; p++)
      for (int c = 0; c < N_CONTESTANTS; c++) {
        struct run run;
        memset(&run, 0, sizeof(run));
        run.c = (enum contestant)c;
        run.writers = phases[p].writers;
        run.scanner = phases[p].scanner;
        run_phase(&run);
        struct run *best = &runs[c][p];
        if (r == 0 || run.fill_ns < best->fill_ns)
          best->fill_ns = run.fill_ns;
        if (r == 0 || run.update_ns < best->update_ns) {
          best->update_ns = run.update_ns;
          best->writer_cpu_ns = run.writer_cpu_ns;
          best->scans = run.scans;
        }
      }
  }

  printf("%-34s %14s %14s %10s\n", "ns per update (wall clock)", "ours",
         "cds_lfht", "cds/ours");
  for (int p = 0; p < N_PHASES; p++) {
    double ours = (double)runs[OURS][p].update_ns / N_UPDATES;
    double lf = (double)runs[CDS_LFHT][p].update_ns / N_UPDATES;
    printf("%-34s %14.1f %14.1f %10.2f\n", phases[p].name, ours, lf, lf / ours);
  }
  printf("%-34s %14.1f   (1 thread: key pick, tp_hash64, atomic add into "
         "the entry found by index)\n",
         "floor, no table", floor_ns);
  printf("\n%-34s %14s %14s %10s\n", "ns per insert (fill, wall clock)",
         "ours", "cds_lfht", "cds/ours");
  for (int p = 0; p < N_PHASES; p++) {
    double ours = (double)runs[OURS][p].fill_ns / N_KEYS;
    double lf = (double)runs[CDS_LFHT][p].fill_ns / N_KEYS;
    printf("%-34s %14.1f %14.1f %10.2f\n", phases[p].name, ours, lf, lf / ours);
  }

  printf("\nscaling, 2-writer throughput / 1-writer throughput:\n");
  for (int c = 0; c < N_CONTESTANTS; c++)
    printf("  %-9s %.2f without the scanner, %.2f with it, %.2f with a scan "
           "a second\n",
           contestant_name[c],
           (double)runs[c][0].update_ns / (double)runs[c][1].update_ns,
           (double)runs[c][0].update_ns / (double)runs[c][2].update_ns,
           (double)runs[c][0].update_ns / (double)runs[c][3].update_ns);
  /* update_ns = writer_cpu_ns / (cores the writers held), and every phase
   * does N_UPDATES, so the scaling is exactly the product of two factors:
   * how many cores the writers got, and how much a CPU second of theirs
   * did. The first is the scheduler's; only the second is the table's. */
  printf("the scaling split in two, (writers' cores, 2 writers / 1) x "
         "(updates per writer CPU second, 2 writers / 1):\n");
  for (int c = 0; c < N_CONTESTANTS; c++) {
    double cores[N_PHASES];
    for (int p = 0; p < N_PHASES; p++)
      cores[p] = (double)runs[c][p].writer_cpu_ns / (double)runs[c][p].update_ns;
    for (int p = 1; p < N_PHASES; p++)
      printf("  %-9s %-31s %.2f x %.2f (the writers held %.2f of %ld cores, "
             "1 writer %.2f)\n",
             p == 1 ? contestant_name[c] : "", phases[p].name,
             cores[p] / cores[0],
             (double)runs[c][0].writer_cpu_ns / (double)runs[c][p].writer_cpu_ns,
             cores[p], cpus, cores[0]);
  }
  printf("full-table scans during phase 3 (%s):\n",
         cpus < 3 ? "3 threads share the machine's 2 cores"
                  : "each thread on its own core");
  for (int c = 0; c < N_CONTESTANTS; c++) {
    struct run *run = &runs[c][2];
    printf("  %-9s %llu scans, %.1f ms each\n", contestant_name[c],
           (unsigned long long)run->scans,
           run->scans ? (double)run->update_ns / 1e6 / (double)run->scans
                      : 0.0);
  }
  printf("full-table scans during phase 4 (the first as the writers start):\n");
  for (int c = 0; c < N_CONTESTANTS; c++)
    printf("  %-9s %llu in %.0f ms\n", contestant_name[c],
           (unsigned long long)runs[c][3].scans,
           (double)runs[c][3].update_ns / 1e6);

  printf("\nbytes per entry at %d keys:\n", N_KEYS);
  printf("  ours      %5.1f table (slots) + %2zu node in the entry "
         "(hash, key pointer and length);\n"
         "            a removed entry waiting for readers adds a 32-byte "
         "record until it is freed\n",
         mem[OURS], sizeof(tp_table_node_t));
  printf("  cds_lfht  %5.1f table (buckets) + %2zu node in the entry "
         "(next, reverse hash);\n"
         "            removal through call_rcu() needs an rcu_head (16) in "
         "every entry\n",
         mem[CDS_LFHT], sizeof(struct cds_lfht_node));

  rcu_unregister_thread();
  free(keys);
  free(our_entries);
  free(lf_entries);
  return 0;
}
