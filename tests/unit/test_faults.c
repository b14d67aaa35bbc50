/*
 * test_faults.c -- the fault matrix: the scripted end-to-end scenario of
 * test_pipeline.c (tests/mock_scenario.h) runs through the real pipeline on
 * a 3-broker mock cluster while one kind of fault hits it at several seeded
 * moments, and the alerts on cx.alerts must be the fault-free run's: none
 * lost, none repeated, none invented, each rule and touchpoint's in window
 * order. The dead letters are checked the same way.
 *
 * The cluster (librdkafka 2.0.2's mock, test.mock.num.brokers=3, every
 * partition replicated on the 3 brokers) gives each broker a role, so that
 * taking one down or slowing it down hits something definite:
 *   broker 1  leader of cx.alerts and cx.deadletter
 *   broker 2  leader of partition 0 of the input topics; transaction coordinator
 *   broker 3  leader of partition 1 of the input topics; group coordinator
 *
 * Moments are points of progress, not of wall time: the scenario's records
 * (script_t) are produced up to record k, the test waits until touchpulse
 * has consumed k of them (tp_pipeline_totals), injects the fault and
 * produces the rest while the fault lasts. k is drawn in three bands, m1
 * 5-20 %, m2 35-55 % and m3 70-90 % of the records, from TP_FAULTS_SEED
 * (default 1729), which also draws each fault's parameters (which broker,
 * the order of the errors, ...): the same seed gives the same moments and
 * faults, and every cell prints what it did. Once the fault is healed the
 * test waits until every input partition has read its last record (its
 * watermark is the scenario's last) and every expected alert can be read,
 * then stops touchpulse (its graceful stop must succeed) and reads both
 * output topics to their end.
 *
 * Fault kinds, one Test each so that a failure names the fault:
 *   broker_down          one broker (a different role at each moment) down
 *                        3, 6 and 12 s (12 s is past the exactly-once
 *                        producer's message timeout), then up again
 *   all_brokers_down     every broker down TP_FAULTS_ALL_DOWN_S seconds
 *                        (default 30), then up again
 *   leader_move          the leaders of every input and output partition
 *                        move to other brokers
 *   coordinator_move     the group coordinator moves to another broker
 *   rtt_over_timeout     one broker, or all, answers 1 s later than
 *                        socket.timeout.ms for 6 s; this fault runs with
 *                        socket.timeout.ms 2 s (the others keep librdkafka's
 *                        60 s: with 2 s, a request timing out on the group
 *                        coordinator's connection while 2.0.2's mock group
 *                        holds a JoinGroup or SyncGroup answer makes the
 *                        client send it again, and the mock then aborts the
 *                        process, rdkafka_mock_cgrp.c:236 '!member->resp')
 *   fetch_errors         NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT and a
 *                        dropped connection on Fetch, from the input leaders
 *   offset_commit_errors NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS and
 *                        REQUEST_TIMED_OUT on the offset commit (OffsetCommit,
 *                        or TxnOffsetCommit with exactly-once)
 *   produce_errors       the retriable produce errors after which nothing
 *                        was written (NOT_LEADER_OR_FOLLOWER,
 *                        LEADER_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS,
 *                        KAFKA_STORAGE_ERROR, UNKNOWN_TOPIC_OR_PART) from the
 *                        leader of the output topics
 *   produce_errors_ambiguous  the retriable produce errors that leave the
 *                        write in doubt (REQUEST_TIMED_OUT,
 *                        NOT_ENOUGH_REPLICAS_AFTER_APPEND, a dropped
 *                        connection); the mock never writes a request it
 *                        answers with an error, so each is the case of a
 *                        write that did not happen
 *   group_errors         NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS and
 *                        REQUEST_TIMED_OUT on Heartbeat, COORDINATOR_NOT_
 *                        AVAILABLE and COORDINATOR_LOAD_IN_PROGRESS on
 *                        FindCoordinator; and, at the extra moment "start",
 *                        before the first join, the same on JoinGroup and
 *                        OffsetFetch (the committed offsets)
 *   txn_errors           (exactly-once only) NOT_COORDINATOR,
 *                        COORDINATOR_LOAD_IN_PROGRESS and
 *                        CONCURRENT_TRANSACTIONS on AddPartitionsToTxn,
 *                        AddOffsetsToTxn and EndTxn
 *   alerts_unavailable   cx.alerts without a leader and its metadata
 *                        answering LEADER_NOT_AVAILABLE for 3, 6 and 12 s
 *   alerts_unwritable    the same for 45 s (TP_FAULTS_UNWRITABLE_S) with
 *                        the producer's queue capped at 2 messages: the
 *                        queue must stay under its cap, at-least-once
 *                        consumption must stop with records left unread,
 *                        and transaction aborts must back off (at most 12)
 * Errors are pushed onto the error stacks of the brokers that serve the
 * request (rd_kafka_mock_broker_push_request_error_rtts), so that the test's
 * own clients never take them, and the heal waits until touchpulse has taken
 * them all (at most 15 s). Not in the matrix: SyncGroup errors (any rejoin
 * makes 2.0.2's mock group wait session.timeout.ms - 1 s, 44 s here, before
 * it answers), and NETWORK_EXCEPTION on Produce, which librdkafka 2.0.2
 * treats as a permanent error (rd_kafka_handle_Produce_error), not a
 * retriable one.
 *
 * Both delivery modes run every cell: exactly-once (eos, the default) and
 * at-least-once (alo, processing.exactly_once: false). A repeat is either
 * produced twice by touchpulse (touchpulse_alerts_total counts more alerts
 * than the log holds distinct ones) or written twice by the broker for one
 * produce call (the log holds more copies than touchpulse produced). Known
 * limits of librdkafka 2.0.2's mock cluster (README, "librdkafka 2.0.2") and
 * how the verdicts account for them:
 *  - its Fetch lists no aborted transactions and its last stable offset is
 *    the log end, so a read_committed reader sees the alerts of open and
 *    aborted transactions. With exactly-once an aborted transaction rewinds
 *    the input and produces its alerts again: they show twice here, where a
 *    real broker hides the first copy. The verdict therefore compares the
 *    DISTINCT alert ids with the expected ones (none missing, none invented)
 *    and counts repeats apart: with at least one aborted transaction
 *    (touchpulse_transaction_aborts_total) they are "ok*", visible only
 *    because the mock shows aborted transactions; a repeat WITHOUT any abort
 *    is a failure. The order is checked on the last copy of each alert,
 *    which is the committed one. Alerts of a transaction that never commits
 *    are visible too, so with exactly-once a stalled commit shows as a
 *    failed graceful stop rather than as lost alerts.
 *  - it does not store TxnOffsetCommit, so an exactly-once instance that
 *    is assigned partitions again finds no committed offset and re-reads
 *    them from the start: repeats after a second assignment are "ok*" too.
 *  - with at-least-once the mock is otherwise faithful (offsets are stored,
 *    nothing is transactional), which makes it the sharper check of
 *    "nothing repeated": touchpulse flushes before it commits, so it may
 *    produce an alert twice only after partitions were assigned again and
 *    re-read from a committed offset behind alerts already delivered; any
 *    other repeat produced by touchpulse fails. The mock checks sequence
 *    numbers for transactional producers only, so a retried request it had
 *    already written (the response lost to a timeout or a dropped
 *    connection) is written twice, which a real broker would not do for an
 *    idempotent producer: such copies are "ok*".
 *  - for the same reason, with at-least-once, when one of two Produce
 *    requests in flight to a partition fails and the next one succeeds, the
 *    mock writes the second and librdkafka's idempotent producer takes its
 *    success for proof that the first was written too: it reports the first
 *    request's messages delivered ("implicitly acked by subsequent batch
 *    success") although the mock never wrote them. A real broker refuses
 *    the second request (OUT_OF_ORDER_SEQUENCE_NUMBER) until the first is
 *    retried, and nothing is lost. The faults that fail Produce requests
 *    (produce_errors, produce_errors_ambiguous) therefore run at-least-once
 *    with max.in.flight.requests.per.connection 1: each error is still
 *    retried, and "none lost" still holds without exception. (With 5 in
 *    flight, librdkafka's default, 2 of about 100 runs of produce_errors
 *    lost alerts or dead letters at at-least-once, the pipeline healthy.)
 *
 * The cells of one fault run side by side, each on its own cluster and
 * pipeline (they mostly wait; TP_FAULTS_SERIAL=1 runs them one by one).
 * Every result is printed as it comes and, at the end of the run, as a
 * matrix (fault x moment -> result) followed by the details: records
 * consumed before the fault, lost, invented and repeated alerts, repeated
 * dead letters, transaction aborts, assignments, errors taken, the seconds
 * the pipeline needed after the heal and the cell's seconds. Knobs:
 * TP_FAULTS_SEED, TP_FAULTS_ALL_DOWN_S (TP_FAULTS_ALL_DOWN_S=60 is the longer
 * documented run: past session.timeout.ms, the group is lost and joined
 * again), TP_FAULTS_MODES=eos|alo, TP_FAULTS_ONLY_MOMENT=m2 (one cell, for
 * debugging), TP_FAULTS_LOG=warn|info|debug (touchpulse's log, default
 * error), TP_FAULTS_KAFKA_DEBUG=eos,msg,... (librdkafka's debug contexts),
 * TP_FAULTS_SETTLE_S (the wait for the alerts after the heal, default 60).
 */
#include <criterion/hooks.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

#include "mock_scenario.h"
#include "touchpulse/log.h"
#include "touchpulse/pipeline.h"

/* The Kafka protocol's ApiKeys. */
enum {
  API_PRODUCE = 0,
  API_FETCH = 1,
  API_OFFSET_COMMIT = 8,
  API_OFFSET_FETCH = 9,
  API_FIND_COORDINATOR = 10,
  API_JOIN_GROUP = 11,
  API_HEARTBEAT = 12,
  API_ADD_PARTITIONS_TO_TXN = 24,
  API_ADD_OFFSETS_TO_TXN = 25,
  API_END_TXN = 26,
  API_TXN_OFFSET_COMMIT = 28,
};

/* Broker roles (see the top of the file). */
#define B_OUTPUT 1
#define B_P0 2
#define B_P1 3
#define GROUP_ID "tp-faults"
#define TXN_ID "tp-faults-txn"
#define SOCKET_TIMEOUT_MS 2000
#define DRAIN_MAX_S 15.0
#define MAX_STACKS 8

#define MOMENTS 3            /* seeded moments per fault: m1, m2, m3 */
#define MOMENT_START MOMENTS /* the extra moment before the first join */

/* ---- small helpers ---------------------------------------------------------- */

static double now_s(void) { return (double)tp_mono_ns() / 1e9; }

static long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

static uint64_t seed_value(void) { return (uint64_t)env_long("TP_FAULTS_SEED", 1729); }

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* A uniform draw in [0, n). */
static unsigned draw(uint64_t *rng, unsigned n) { return (unsigned)(splitmix64(rng) % n); }

static void shuffle_errs(uint64_t *rng, rd_kafka_resp_err_t *e, size_t n) {
  for (size_t i = n; i > 1; i--) {
    size_t j = draw(rng, (unsigned)i);
    rd_kafka_resp_err_t t = e[i - 1];
    e[i - 1] = e[j];
    e[j] = t;
  }
}

static void moment_label(int moment, char *out, size_t size) {
  if (moment == MOMENT_START)
    snprintf(out, size, "start");
  else
    snprintf(out, size, "m%d", moment + 1);
}

/* ---- one cell of the matrix ---------------------------------------------------- */

typedef struct cell_s cell_t;

typedef struct {
  const char *name;
  void (*inject)(cell_t *x); /* applies the fault and describes it in x->what */
  void (*heal)(cell_t *x);   /* lets it last, then undoes it */
  bool eos_only;             /* meaningless without transactions */
  bool with_start;           /* also at the moment "start" */
  int socket_timeout_ms;     /* socket.timeout.ms; 0: librdkafka's default (60 s) */
  int queue_max_messages;    /* queue.buffering.max.messages; 0: touchpulse's default */
  bool fails_produce;        /* answers Produce requests with errors (see the top) */
} fault_t;

/* An alert as read back, in log order. */
typedef struct {
  char id[65];
  char rule[129], touchpoint[129];
  tp_alert_state_t state;
  int64_t window_end, samples;
  double value;
} seen_t;

struct cell_s {
  const fault_t *fault;
  int moment; /* 0..MOMENTS-1, or MOMENT_START */
  bool eos;
  uint64_t rng; /* the fault's parameters, from the seed */
  cluster_t c;
  script_t script;
  tp_pipeline_t *pl;
  size_t k;         /* records consumed before the fault */
  size_t n_records; /* in the scenario */
  char what[512];   /* the fault as injected */
  double hold_s;    /* its duration, when it has one */
  int broker;       /* the broker it hits, when one */
  int n_stacks;     /* error stacks to wait for */
  struct {
    int broker;
    int16_t api;
  } stacks[MAX_STACKS];
  size_t pushed, left; /* errors pushed, and not taken by the heal */
  /* what was read back */
  seen_t *got;
  size_t n_got, cap_got;
  /* results */
  size_t lost, invented, repeated, disorder;
  size_t distinct;      /* distinct alerts read */
  size_t rep_produced;  /* repeats touchpulse produced: alerts_produced - distinct */
  size_t rep_written;   /* copies the broker wrote twice: the rest */
  size_t dl_lost, dl_invented, dl_repeated, dl_distinct;
  double aborts, assigns;
  tp_pipeline_totals_t totals;
  bool failed, stop_err, stalled, input_err;
  char failure[256];
  double t_start, t_heal, t_done, t_end;
  /* a long outage of the alert topic (alerts_unwritable) */
  double queue_max;           /* most messages seen in the producer's queue */
  uint64_t held_at, held_end; /* records consumed a third into the hold, and at its end */
  double hold_aborts;         /* transaction aborts during the hold */
  bool ok, explained;
  char verdict[640];
};

static void cell_note(cell_t *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cell_note(cell_t *x, const char *fmt, ...) {
  size_t len = strlen(x->what);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->what + len, sizeof(x->what) - len, fmt, ap);
  va_end(ap);
}

/* Serve the test's producer and watch the pipeline for s seconds. */
static void idle_for(cell_t *x, double s) {
  double end = now_s() + s;
  while (now_s() < end) {
    rd_kafka_poll(x->c.rk, 20);
    x->failed = x->failed || tp_pipeline_failed(x->pl);
  }
}

/* The sum of the series whose line starts with prefix on the pipeline's
 * /metrics, and (lines non-NULL) how many there are. */
static double metric_sum(cell_t *x, const char *prefix, int *lines) {
  tp_buf_t mb = TP_BUF_INIT;
  tp_pipeline_metrics(x->pl, &mb);
  int n = 0;
  double v = mb.data ? sum_series(mb.data, prefix, &n) : 0;
  tp_buf_free(&mb);
  if (lines)
    *lines = n;
  return v;
}

static void push_errors(cell_t *x, int broker, int16_t api, const rd_kafka_resp_err_t *e,
                        size_t n) {
  for (size_t i = 0; i < n; i++)
    rd_kafka_mock_broker_push_request_error_rtts(x->c.mock, broker, api, 1, e[i], 0);
  if (x->n_stacks < MAX_STACKS) {
    x->stacks[x->n_stacks].broker = broker;
    x->stacks[x->n_stacks++].api = api;
  }
  x->pushed += n;
}

static size_t stacks_left(cell_t *x) {
  size_t left = 0;
  for (int i = 0; i < x->n_stacks; i++) {
    size_t n = 0;
    rd_kafka_mock_broker_error_stack_cnt(x->c.mock, x->stacks[i].broker, x->stacks[i].api, &n);
    left += n;
  }
  return left;
}

/* Until touchpulse has taken every pushed error, or DRAIN_MAX_S. (A broker's
 * stack cannot be cleared: what is left is taken later.) */
static void heal_drain(cell_t *x) {
  double end = now_s() + DRAIN_MAX_S;
  while (now_s() < end && stacks_left(x) > 0)
    idle_for(x, 0.05);
  x->left = stacks_left(x);
}

static const char *err_name(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR__TRANSPORT ? "disconnect" : rd_kafka_err2name(e);
}

static void note_errs(cell_t *x, const char *api, const rd_kafka_resp_err_t *e, size_t n) {
  cell_note(x, "%s%s[", x->what[0] ? "; " : "", api);
  for (size_t i = 0; i < n; i++)
    cell_note(x, "%s%s", i ? "," : "", err_name(e[i]));
  cell_note(x, "]");
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the faults --------------------------------------------------------------- */

/* A seeded permutation of the three brokers: one per moment. */
static int broker_for_moment(cell_t *x) {
  uint64_t r = seed_value() ^ name_hash(x->fault->name);
  int p[3] = {1, 2, 3};
  for (int i = 2; i > 0; i--) {
    int j = (int)draw(&r, (unsigned)i + 1);
    int t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p[x->moment % 3];
}

static const char *role(int broker) {
  return broker == B_OUTPUT ? "output leader"
         : broker == B_P0   ? "p0 leader, txn coordinator"
                            : "p1 leader, group coordinator";
}

static const double durations[MOMENTS] = {3, 6, 12};

static void broker_down_inject(cell_t *x) {
  x->broker = broker_for_moment(x);
  x->hold_s = durations[x->moment];
  rd_kafka_mock_broker_set_down(x->c.mock, x->broker);
  cell_note(x, "broker %d (%s) down %.0f s", x->broker, role(x->broker), x->hold_s);
}

static void broker_down_heal(cell_t *x) {
  idle_for(x, x->hold_s);
  rd_kafka_mock_broker_set_up(x->c.mock, x->broker);
}

static void all_down_inject(cell_t *x) {
  x->hold_s = (double)env_long("TP_FAULTS_ALL_DOWN_S", 30);
  rd_kafka_mock_broker_set_down(x->c.mock, -1);
  cell_note(x, "all brokers down %.0f s", x->hold_s);
}

static void all_down_heal(cell_t *x) {
  idle_for(x, x->hold_s);
  rd_kafka_mock_broker_set_up(x->c.mock, -1);
}

static void leader_move_inject(cell_t *x) {
  int shift = 1 + (int)draw(&x->rng, 2);
  int to[PARTITIONS];
  for (int p = 0; p < PARTITIONS; p++)
    to[p] = ((p ? B_P1 : B_P0) - 1 + shift) % 3 + 1;
  int out = (B_OUTPUT - 1 + shift) % 3 + 1;
  for (int i = 0; i < 3; i++)
    for (int p = 0; p < PARTITIONS; p++)
      rd_kafka_mock_partition_set_leader(x->c.mock, scenario_inputs[i], p, to[p]);
  rd_kafka_mock_partition_set_leader(x->c.mock, "cx.alerts", 0, out);
  rd_kafka_mock_partition_set_leader(x->c.mock, "cx.deadletter", 0, out);
  cell_note(x, "leaders move: p0 %d->%d, p1 %d->%d, outputs %d->%d", B_P0, to[0], B_P1, to[1],
            B_OUTPUT, out);
}

static void settle_heal(cell_t *x) { idle_for(x, 2); }

static void coordinator_move_inject(cell_t *x) {
  int to = draw(&x->rng, 2) ? B_OUTPUT : B_P0;
  rd_kafka_mock_coordinator_set(x->c.mock, "group", GROUP_ID, to);
  cell_note(x, "group coordinator %d->%d", B_P1, to);
}

static void rtt_inject(cell_t *x) {
  static const int targets[4] = {B_OUTPUT, B_P0, B_P1, -1};
  x->broker = targets[(x->moment + draw(&x->rng, 4)) % 4];
  x->hold_s = 6;
  int rtt = SOCKET_TIMEOUT_MS + 1000;
  rd_kafka_mock_broker_set_rtt(x->c.mock, x->broker, rtt);
  if (x->broker < 0)
    cell_note(x, "all brokers: rtt %d ms > socket.timeout.ms %d, %.0f s", rtt, SOCKET_TIMEOUT_MS,
              x->hold_s);
  else
    cell_note(x, "broker %d (%s): rtt %d ms > socket.timeout.ms %d, %.0f s", x->broker,
              role(x->broker), rtt, SOCKET_TIMEOUT_MS, x->hold_s);
}

static void rtt_heal(cell_t *x) {
  idle_for(x, x->hold_s);
  rd_kafka_mock_broker_set_rtt(x->c.mock, x->broker, 0);
}

static void fetch_errors_inject(cell_t *x) {
  rd_kafka_resp_err_t e[] = {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                             RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                             RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                             RD_KAFKA_RESP_ERR__TRANSPORT};
  shuffle_errs(&x->rng, e, N_OF(e));
  push_errors(x, B_P0, API_FETCH, e, N_OF(e));
  push_errors(x, B_P1, API_FETCH, e, N_OF(e));
  note_errs(x, "Fetch from 2 and 3", e, N_OF(e));
}

static void offset_commit_errors_inject(cell_t *x) {
  rd_kafka_resp_err_t e[] = {RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                             RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                             RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT};
  shuffle_errs(&x->rng, e, N_OF(e));
  /* Exactly-once commits offsets with TxnOffsetCommit, at-least-once with
   * OffsetCommit: the group coordinator takes both. */
  push_errors(x, B_P1, x->eos ? API_TXN_OFFSET_COMMIT : API_OFFSET_COMMIT, e, N_OF(e));
  note_errs(x, x->eos ? "TxnOffsetCommit" : "OffsetCommit", e, N_OF(e));
}

static void produce_errors_inject(cell_t *x) {
  rd_kafka_resp_err_t e[] = {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                             RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                             RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                             RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
                             RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART};
  shuffle_errs(&x->rng, e, N_OF(e));
  push_errors(x, B_OUTPUT, API_PRODUCE, e, N_OF(e));
  note_errs(x, "Produce", e, N_OF(e));
}

static void produce_ambiguous_inject(cell_t *x) {
  rd_kafka_resp_err_t e[] = {RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                             RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                             RD_KAFKA_RESP_ERR__TRANSPORT};
  shuffle_errs(&x->rng, e, N_OF(e));
  push_errors(x, B_OUTPUT, API_PRODUCE, e, N_OF(e));
  note_errs(x, "Produce", e, N_OF(e));
}

static void group_errors_inject(cell_t *x) {
  rd_kafka_resp_err_t fc[] = {RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                              RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS};
  shuffle_errs(&x->rng, fc, N_OF(fc));
  if (x->moment == MOMENT_START) {
    /* Before the first join: the requests of the way in fail. */
    rd_kafka_resp_err_t jg[] = {RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                RD_KAFKA_RESP_ERR_NOT_COORDINATOR};
    rd_kafka_resp_err_t of[] = {RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                RD_KAFKA_RESP_ERR_NOT_COORDINATOR};
    shuffle_errs(&x->rng, jg, N_OF(jg));
    shuffle_errs(&x->rng, of, N_OF(of));
    push_errors(x, B_P1, API_JOIN_GROUP, jg, N_OF(jg));
    push_errors(x, B_P1, API_OFFSET_FETCH, of, N_OF(of));
    note_errs(x, "JoinGroup", jg, N_OF(jg));
    note_errs(x, "OffsetFetch", of, N_OF(of));
  } else {
    rd_kafka_resp_err_t hb[] = {RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                                RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT};
    shuffle_errs(&x->rng, hb, N_OF(hb));
    push_errors(x, B_P1, API_HEARTBEAT, hb, N_OF(hb));
    note_errs(x, "Heartbeat", hb, N_OF(hb));
  }
  /* FindCoordinator may go to any broker: onto the cluster's stack. */
  rd_kafka_mock_push_request_errors_array(x->c.mock, API_FIND_COORDINATOR, N_OF(fc), fc);
  note_errs(x, "FindCoordinator", fc, N_OF(fc));
}

static void group_errors_heal(cell_t *x) {
  heal_drain(x);
  rd_kafka_mock_clear_request_errors(x->c.mock, API_FIND_COORDINATOR);
}

static void txn_errors_inject(cell_t *x) {
  static const struct {
    int16_t api;
    const char *name;
  } apis[] = {{API_ADD_PARTITIONS_TO_TXN, "AddPartitionsToTxn"},
              {API_ADD_OFFSETS_TO_TXN, "AddOffsetsToTxn"},
              {API_END_TXN, "EndTxn"}};
  for (size_t a = 0; a < N_OF(apis); a++) {
    rd_kafka_resp_err_t e[] = {RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                               RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                               RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS};
    shuffle_errs(&x->rng, e, N_OF(e));
    push_errors(x, B_P0, apis[a].api, e, N_OF(e));
    note_errs(x, apis[a].name, e, N_OF(e));
  }
}

static void alerts_unavailable_inject(cell_t *x) {
  x->hold_s = durations[x->moment];
  rd_kafka_mock_partition_set_leader(x->c.mock, "cx.alerts", 0, -1);
  rd_kafka_mock_topic_set_error(x->c.mock, "cx.alerts", RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
  cell_note(x, "cx.alerts leaderless, metadata LEADER_NOT_AVAILABLE, %.0f s", x->hold_s);
}

static void alerts_unavailable_heal(cell_t *x) {
  idle_for(x, x->hold_s);
  rd_kafka_mock_topic_set_error(x->c.mock, "cx.alerts", RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_mock_partition_set_leader(x->c.mock, "cx.alerts", 0, B_OUTPUT);
}

/* A long outage (TP_FAULTS_UNWRITABLE_S, default 45 s: past the
 * exactly-once producer's message timeout of 10 s): the producer's queue is
 * capped at UNWRITABLE_QUEUE messages, so the alerts that cannot be written
 * fill it at once. The heal samples the pipeline while it lasts: the
 * queue's length (librdkafka's statistics, every 5 s), the records consumed
 * a third into the hold and at its end (consumption must have paused, not
 * run ahead buffering alerts), and the transaction aborts (a leaderless
 * alert topic fails every transaction that wrote to it; the aborts must back
 * off rather than rewind the input in a loop). */
#define UNWRITABLE_QUEUE 2
#define UNWRITABLE_MAX_ABORTS 12

static uint64_t consumed(cell_t *x);

static void alerts_unwritable_inject(cell_t *x) {
  x->hold_s = (double)env_long("TP_FAULTS_UNWRITABLE_S", 45);
  rd_kafka_mock_partition_set_leader(x->c.mock, "cx.alerts", 0, -1);
  rd_kafka_mock_topic_set_error(x->c.mock, "cx.alerts", RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
  cell_note(x, "cx.alerts leaderless %.0f s, producer queue capped at %d messages", x->hold_s,
            UNWRITABLE_QUEUE);
}


static void alerts_unwritable_heal(cell_t *x) {
  double t0 = now_s(), third = t0 + x->hold_s / 3, end = t0 + x->hold_s;
  double aborts0 = metric_sum(x, "touchpulse_transaction_aborts_total ", NULL);
  bool sampled = false;
  while (now_s() < end) {
    idle_for(x, 0.25);
    double q = metric_sum(x, "touchpulse_kafka_producer_queue_messages{", NULL);
    if (q > x->queue_max)
      x->queue_max = q;
    if (!sampled && now_s() >= third) {
      x->held_at = consumed(x);
      sampled = true;
    }
  }
  x->held_end = consumed(x);
  x->hold_aborts = metric_sum(x, "touchpulse_transaction_aborts_total ", NULL) - aborts0;
  cell_note(x, "; consumed %llu of %zu a third in, %llu at the end; queue max %.0f; aborts %.0f",
            (unsigned long long)x->held_at, x->n_records, (unsigned long long)x->held_end,
            x->queue_max, x->hold_aborts);
  rd_kafka_mock_topic_set_error(x->c.mock, "cx.alerts", RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_mock_partition_set_leader(x->c.mock, "cx.alerts", 0, B_OUTPUT);
}

static void no_fault_inject(cell_t *x) { cell_note(x, "no fault"); }

static const fault_t F_NONE = {"no_fault", no_fault_inject, settle_heal, false, false};
static const fault_t F_BROKER_DOWN = {"broker_down", broker_down_inject, broker_down_heal, false,
                                      false};
static const fault_t F_ALL_DOWN = {"all_brokers_down", all_down_inject, all_down_heal, false,
                                   false};
static const fault_t F_LEADER_MOVE = {"leader_move", leader_move_inject, settle_heal, false, false};
static const fault_t F_COORD_MOVE = {"coordinator_move", coordinator_move_inject, settle_heal,
                                     false, false};
static const fault_t F_RTT = {"rtt_over_timeout", rtt_inject, rtt_heal, false, false,
                              SOCKET_TIMEOUT_MS};
static const fault_t F_FETCH = {"fetch_errors", fetch_errors_inject, heal_drain, false, false};
static const fault_t F_COMMIT = {"offset_commit_errors", offset_commit_errors_inject, heal_drain,
                                 false, false};
static const fault_t F_PRODUCE = {.name = "produce_errors",
                                  .inject = produce_errors_inject,
                                  .heal = heal_drain,
                                  .fails_produce = true};
static const fault_t F_PRODUCE_AMBIGUOUS = {.name = "produce_errors_ambiguous",
                                            .inject = produce_ambiguous_inject,
                                            .heal = heal_drain,
                                            .fails_produce = true};
static const fault_t F_GROUP = {"group_errors", group_errors_inject, group_errors_heal, false,
                                true};
static const fault_t F_TXN = {"txn_errors", txn_errors_inject, heal_drain, true, false};
static const fault_t F_UNAVAILABLE = {"alerts_unavailable", alerts_unavailable_inject,
                                      alerts_unavailable_heal, false, false};
static const fault_t F_UNWRITABLE = {"alerts_unwritable", alerts_unwritable_inject,
                                     alerts_unwritable_heal, false, false, 0, UNWRITABLE_QUEUE};

/* The rows of the matrix, in order. */
static const fault_t *const all_faults[] = {
    &F_NONE,    &F_BROKER_DOWN, &F_ALL_DOWN, &F_LEADER_MOVE,       &F_COORD_MOVE,
    &F_RTT,     &F_FETCH,       &F_COMMIT,   &F_PRODUCE,           &F_PRODUCE_AMBIGUOUS,
    &F_GROUP,   &F_TXN,         &F_UNAVAILABLE, &F_UNWRITABLE};

/* ---- running a cell ------------------------------------------------------------ */

/* The moment: records consumed before the fault, in its seeded band. */
static size_t moment_records(const fault_t *f, int moment, size_t n) {
  static const double lo[MOMENTS] = {0.05, 0.35, 0.70}, hi[MOMENTS] = {0.20, 0.55, 0.90};
  if (moment == MOMENT_START)
    return 0;
  uint64_t r = seed_value() ^ name_hash(f->name) ^ ((uint64_t)(moment + 1) << 56);
  double u = (double)(splitmix64(&r) >> 11) / 9007199254740992.0;
  return (size_t)((lo[moment] + u * (hi[moment] - lo[moment])) * (double)n);
}

static void place_roles(cluster_t *c) {
  for (int i = 0; i < 3; i++)
    for (int p = 0; p < PARTITIONS; p++)
      rd_kafka_mock_partition_set_leader(c->mock, scenario_inputs[i], p, p ? B_P1 : B_P0);
  rd_kafka_mock_partition_set_leader(c->mock, "cx.alerts", 0, B_OUTPUT);
  rd_kafka_mock_partition_set_leader(c->mock, "cx.deadletter", 0, B_OUTPUT);
  rd_kafka_mock_coordinator_set(c->mock, "group", GROUP_ID, B_P1);
  rd_kafka_mock_coordinator_set(c->mock, "transaction", TXN_ID, B_P0);
}

static tp_config_t *pipeline_config(cell_t *x) {
  char yaml[4096], extra[320] = "";
  size_t w = 0;
  const char *kdebug = getenv("TP_FAULTS_KAFKA_DEBUG");
  if (x->fault->socket_timeout_ms > 0)
    w += (size_t)snprintf(extra, sizeof(extra), ", socket.timeout.ms: '%d'",
                          x->fault->socket_timeout_ms);
  if (x->fault->queue_max_messages > 0 && w < sizeof(extra))
    w += (size_t)snprintf(extra + w, sizeof(extra) - w, ", queue.buffering.max.messages: '%d'",
                          x->fault->queue_max_messages);
  /* One Produce request in flight at a time where the mock fails some and
   * nothing checks sequence numbers (at-least-once; see the top). */
  if (x->fault->fails_produce && !x->eos && w < sizeof(extra))
    w += (size_t)snprintf(extra + w, sizeof(extra) - w,
                          ", max.in.flight.requests.per.connection: '1'");
  if (kdebug && *kdebug && w < sizeof(extra))
    snprintf(extra + w, sizeof(extra) - w, ", debug: '%s'", kdebug);
  snprintf(yaml, sizeof(yaml),
           "kafka: {bootstrap.servers: '%s', group.id: " GROUP_ID ", heartbeat.interval.ms: '1000'%s}\n"
           "processing: {exactly_once: %s, commit_interval: 200ms, transactional_id: " TXN_ID "}\n"
           "%s",
           x->c.bootstrap, extra, x->eos ? "true" : "false", scenario_rules_yaml);
  return cfg_from_yaml(yaml);
}

static uint64_t consumed(cell_t *x) {
  tp_pipeline_totals(x->pl, &x->totals);
  return x->totals.consumed;
}

/* Until touchpulse consumed k records (or it failed, or 60 s). */
static bool wait_consumed(cell_t *x, size_t k) {
  double end = now_s() + 60;
  while (consumed(x) < k) {
    if (now_s() > end || tp_pipeline_failed(x->pl))
      return false;
    rd_kafka_poll(x->c.rk, 1);
  }
  return true;
}

/* Every input partition's watermark is the scenario's last one: each has
 * read its final tick (produce_tail), the last record written to it. (The
 * count of consumed records cannot tell: a partition assigned again counts
 * again what it re-reads past the committed offset.) */
static bool all_read(cell_t *x) {
  int lines = 0;
  double sum = metric_sum(x, "touchpulse_partition_watermark_seconds{", &lines);
  double last = (double)(at(&x->c, 25, 0) - 30000) / 1000.0; /* allowed_lateness 30s */
  return lines == 3 * PARTITIONS && fabs(sum - 3 * PARTITIONS * last) < 0.5;
}

/* The expected alert a read one is (same rule, touchpoint, state and
 * window), or -1. */
static int expected_index(cell_t *x, const seen_t *s) {
  for (size_t i = 0; i < N_EXPECTED; i++)
    if (strcmp(s->rule, expected[i].rule) == 0 &&
        strcmp(s->touchpoint, expected[i].touchpoint) == 0 && s->state == expected[i].state &&
        s->window_end == at(&x->c, expected[i].minute, 0))
      return (int)i;
  return -1;
}

/* Take what the reader has (waiting up to timeout_ms for the first).
 * @returns the number of distinct expected alerts read so far. */
static size_t read_alerts_into(cell_t *x, rd_kafka_t *rd, tp_alert_codec_t *codec,
                               tp_alert_record_t *rec, int64_t *next_offset, int timeout_ms) {
  char err[256];
  rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, timeout_ms);
  for (; m != NULL; m = rd_kafka_consumer_poll(rd, 0)) {
    if (!m->err) {
      *next_offset = m->offset + 1;
      if (x->n_got == x->cap_got) {
        x->cap_got = x->cap_got ? x->cap_got * 2 : 64;
        x->got = realloc(x->got, x->cap_got * sizeof(*x->got));
        if (x->got == NULL)
          abort();
      }
      seen_t *s = &x->got[x->n_got++];
      memset(s, 0, sizeof(*s));
      if (tp_alert_decode(codec, m->payload, m->len, rec, err, sizeof(err)) == TP_OK) {
        snprintf(s->id, sizeof(s->id), "%s", rec->alert_id);
        snprintf(s->rule, sizeof(s->rule), "%s", rec->rule);
        snprintf(s->touchpoint, sizeof(s->touchpoint), "%s", rec->touchpoint);
        s->state = rec->state;
        s->window_end = rec->window_end;
        s->samples = rec->samples;
        s->value = rec->value;
      } else {
        snprintf(s->id, sizeof(s->id), "undecodable@%lld", (long long)m->offset);
      }
    }
    rd_kafka_message_destroy(m);
  }
  size_t seen = 0;
  for (size_t i = 0; i < N_EXPECTED; i++) {
    bool found = false;
    for (size_t j = 0; j < x->n_got && !found; j++)
      found = expected_index(x, &x->got[j]) == (int)i;
    seen += found;
  }
  return seen;
}

/* The end offset of a topic's partition 0, or -1. */
static int64_t log_end(rd_kafka_t *rd, const char *topic) {
  int64_t lo = 0, hi = 0;
  for (int i = 0; i < 6; i++)
    if (rd_kafka_query_watermark_offsets(rd, topic, 0, &lo, &hi, 5000) == 0)
      return hi;
  return -1;
}

/* Dead letters: distinct by provenance (source topic, partition, offset),
 * each of the scenario's four reasons exactly once. */
static void check_deadletters(cell_t *x) {
  enum { MAX_DL = 64 };
  char(*prov)[64] = calloc(MAX_DL, 64);
  char(*reason)[32] = calloc(MAX_DL, 32);
  size_t n = 0, total = 0;
  rd_kafka_t *rd = reader(&x->c, "cx.deadletter");
  int64_t next = 0, hi = log_end(rd, "cx.deadletter");
  double end = now_s() + 30;
  while (next < hi && now_s() < end) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 100);
    if (m == NULL)
      continue;
    rd_kafka_headers_t *h = NULL;
    if (!m->err && (next = m->offset + 1) > 0 &&
        rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      static const char *const names[4] = {"error", "source.topic", "source.partition",
                                           "source.offset"};
      const void *v[4] = {"", "", "", ""};
      size_t vl[4] = {0};
      for (int i = 0; i < 4; i++)
        rd_kafka_header_get_last(h, names[i], &v[i], &vl[i]);
      char p[64];
      snprintf(p, sizeof(p), "%.*s/%.*s/%.*s", (int)vl[1], (const char *)v[1], (int)vl[2],
               (const char *)v[2], (int)vl[3], (const char *)v[3]);
      total++;
      bool dup = false;
      for (size_t i = 0; i < n && !dup; i++)
        dup = strcmp(prov[i], p) == 0;
      if (!dup && n < MAX_DL) {
        snprintf(prov[n], 64, "%s", p);
        snprintf(reason[n], 32, "%.*s", (int)(vl[0] < 31 ? vl[0] : 31), (const char *)v[0]);
        n++;
      }
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rd);
  rd_kafka_destroy(rd);
  static const char *const want[N_DEADLETTERS] = {"truncated:", "out_of_range:",
                                                  "bad_touchpoint:", "empty"};
  size_t matched = 0;
  for (size_t w = 0; w < N_DEADLETTERS; w++) {
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
      found = strncmp(reason[i], want[w], strlen(want[w])) == 0;
    matched += found;
  }
  x->dl_distinct = n;
  x->dl_lost = N_DEADLETTERS - matched;
  x->dl_invented = n - matched;
  x->dl_repeated = total - n;
  free(prov);
  free(reason);
}

static bool same_id(const seen_t *a, const seen_t *b) { return strcmp(a->id, b->id) == 0; }

/* Lost, invented and repeated alerts, and the order per rule and
 * touchpoint: of the first copies with at-least-once, of the last (the
 * committed) ones with exactly-once, whose aborted copies the mock shows. */
static void judge_alerts(cell_t *x) {
  bool seen[N_EXPECTED] = {0};
  x->lost = x->invented = x->repeated = x->disorder = 0;
  for (size_t i = 0; i < x->n_got; i++) {
    const seen_t *s = &x->got[i];
    bool first = true;
    for (size_t j = 0; j < i && first; j++)
      first = !same_id(&x->got[j], s);
    if (!first) {
      x->repeated++;
      continue;
    }
    int e = expected_index(x, s);
    if (e < 0 || fabs(s->value - expected[e].value) > 1e-9 || s->samples != expected[e].samples)
      x->invented++;
    else
      seen[e] = true;
  }
  for (size_t i = 0; i < N_EXPECTED; i++)
    x->lost += !seen[i];
  x->distinct = x->n_got - x->repeated;
  uint64_t produced = x->totals.alerts_produced;
  x->rep_produced = produced > x->distinct ? (size_t)produced - x->distinct : 0;
  if (x->rep_produced > x->repeated)
    x->rep_produced = x->repeated; /* produced, but never written */
  x->rep_written = x->repeated - x->rep_produced;
  /* The copies that count, in log order. */
  for (size_t i = 0; i < x->n_got; i++) {
    bool counts = true;
    for (size_t j = 0; j < x->n_got && counts; j++)
      if (j != i && same_id(&x->got[j], &x->got[i]))
        counts = x->eos ? j < i : j > i;
    for (size_t j = i + 1; counts && j < x->n_got; j++)
      if (strcmp(x->got[j].rule, x->got[i].rule) == 0 &&
          strcmp(x->got[j].touchpoint, x->got[i].touchpoint) == 0 &&
          x->got[j].window_end < x->got[i].window_end) {
        bool j_counts = true;
        for (size_t l = 0; l < x->n_got && j_counts; l++)
          if (l != j && same_id(&x->got[l], &x->got[j]))
            j_counts = x->eos ? l < j : l > j;
        x->disorder += j_counts;
      }
  }
}

static void verdict(cell_t *x) {
  char why[400] = "";
  size_t w = 0;
#define WHY(...) (w += (size_t)snprintf(why + w, w < sizeof(why) ? sizeof(why) - w : 0, __VA_ARGS__))
  if (x->input_err)
    WHY(" input-not-delivered");
  if (x->failed)
    WHY(" pipeline-failed");
  if (x->stop_err)
    WHY(" graceful-stop-failed");
  if (x->stalled)
    WHY(" not-done-within-%lds", env_long("TP_FAULTS_SETTLE_S", 60));
  if (x->fault == &F_UNWRITABLE) {
    /* At-least-once: once the queue is full nothing moves until the topic
     * is back, and records are left unread. Exactly-once: each abort
     * empties the queue and rewinds the input to the committed offsets, and
     * the workers read again until the queue is full; what bounds the work
     * is the abort backoff, and the memory the queue's cap. */
    if (!x->eos && (x->held_end != x->held_at || x->held_end >= x->n_records))
      WHY(" consumption-not-paused(%llu->%llu-of-%zu)", (unsigned long long)x->held_at,
          (unsigned long long)x->held_end, x->n_records);
    if (x->queue_max > UNWRITABLE_QUEUE)
      WHY(" producer-queue-over-cap=%.0f", x->queue_max);
    if (x->hold_aborts > UNWRITABLE_MAX_ABORTS)
      WHY(" abort-storm=%.0f", x->hold_aborts);
  }
  if (x->lost)
    WHY(" lost=%zu", x->lost);
  if (x->invented)
    WHY(" invented=%zu", x->invented);
  if (x->disorder)
    WHY(" out-of-order=%zu", x->disorder);
  if (x->dl_lost || x->dl_invented)
    WHY(" deadletters-lost=%zu,invented=%zu", x->dl_lost, x->dl_invented);
  /* Repeats of dead letters are judged with the alerts': touchpulse
   * produces both the same way. */
  size_t dl_produced = x->totals.deadletters_delivered > x->dl_distinct
                           ? (size_t)x->totals.deadletters_delivered - x->dl_distinct
                           : 0;
  size_t dl_written = x->dl_repeated > dl_produced ? x->dl_repeated - dl_produced : 0;
  size_t by_touchpulse = x->rep_produced + (x->dl_repeated - dl_written);
  size_t by_broker = x->rep_written + dl_written;
  const char *because = NULL;
  if (by_touchpulse + by_broker > 0) {
    if (x->eos && x->aborts > 0)
      because = "repeats visible only because the mock shows aborted transactions";
    else if (x->eos && x->assigns > 1)
      because = "repeats because the mock stores no TxnOffsetCommit and partitions were "
                "assigned again";
    else if (!x->eos && by_touchpulse > 0 && x->assigns > 1)
      because = "repeats re-read from the committed offset after partitions were assigned again";
    else if (!x->eos && by_touchpulse == 0)
      because = "copies of a retried request the mock wrote twice (it checks sequence numbers "
                "of transactional producers only)";
    else
      WHY(" repeated=%zu(produced-twice=%zu,written-twice=%zu),deadletters-repeated=%zu-without-%s",
          x->repeated, x->rep_produced, x->rep_written, x->dl_repeated,
          x->eos ? "abort-or-reassignment" : "reassignment");
  }
#undef WHY
  x->ok = why[0] == '\0';
  x->explained = x->ok && because != NULL;
  if (x->ok)
    snprintf(x->verdict, sizeof(x->verdict), "%s%s%s", x->explained ? "ok*" : "ok",
             because ? ": " : "", because ? because : "");
  else
    snprintf(x->verdict, sizeof(x->verdict), "FAIL:%s%s%.200s", why, x->failure[0] ? "; " : "",
             x->failure);
}

/* The alerts as read, for a failed cell. */
static void dump_alerts(cell_t *x, char *out, size_t size) {
  size_t w = 0;
  out[0] = '\0';
  for (size_t i = 0; i < x->n_got && w < size; i++) {
    long minute = (long)((x->got[i].window_end - x->c.base) / MIN_MS);
    w += (size_t)snprintf(out + w, size - w, "%s%s/%s/%s@%ld", i ? " " : "", x->got[i].rule,
                          x->got[i].touchpoint,
                          x->got[i].state == TP_ALERT_FIRING ? "FIRING" : "RESOLVED", minute);
  }
}

/* One line per cell: printed at once, and kept for the matrix at the end. */
static void report(cell_t *x) {
  char m[16], line[1600], cell[64];
  moment_label(x->moment, m, sizeof(m));
  double recover = x->t_done > 0 ? x->t_done - x->t_heal : -1;
  int pct = (int)(100.0 * (double)x->k / (double)(x->n_records ? x->n_records : 1) + 0.5);
  const char *mark = x->ok ? (x->explained ? "ok*" : "ok") : "FAIL";
  snprintf(line, sizeof(line),
           "%-24s %-5s %s k=%3zu/%zu (%2d%%) %-4s lost %zu inv %zu rep %zu (produced %llu) "
           "dl-rep %zu aborts %.0f assigns %.0f errors %zu/%zu recover %5.1fs cell %5.1fs | %s | %s",
           x->fault->name, m, x->eos ? "eos" : "alo", x->k, x->n_records, pct, mark, x->lost,
           x->invented, x->repeated, (unsigned long long)x->totals.alerts_produced,
           x->dl_repeated, x->aborts, x->assigns, x->pushed - x->left, x->pushed, recover,
           x->t_end - x->t_start, x->what, x->verdict);
  if (!x->ok) {
    char seq[2048];
    dump_alerts(x, seq, sizeof(seq));
    printf("[faults] %s\n[faults]   alerts read, in log order: %s\n", line, seq);
  } else {
    printf("[faults] %s\n", line);
  }
  fflush(stdout);
  snprintf(cell, sizeof(cell), "%s %s %.0fs", x->eos ? "eos" : "alo", mark, x->t_end - x->t_start);
  const char *path = getenv("TP_FAULTS_MATRIX_FILE");
  if (path == NULL)
    return;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (fd < 0)
    return;
  char row[1800];
  int len = snprintf(row, sizeof(row), "%s\t%s\t%d%%\t%s\t%s\n", x->fault->name, m, pct, cell, line);
  if (len > 0 && write(fd, row, (size_t)len) < 0)
    perror("matrix file");
  close(fd);
}

static void *run_cell(void *arg) {
  cell_t *x = arg;
  x->t_start = now_s();
  x->rng = seed_value() ^ name_hash(x->fault->name) ^ (uint64_t)(x->moment + 1) * 0x51ull;
  cluster_init_brokers(&x->c, 3);
  place_roles(&x->c);
  x->c.script = &x->script;
  produce_scenario(&x->c);
  x->c.script = NULL;
  x->n_records = x->script.n;
  x->k = moment_records(x->fault, x->moment, x->script.n);

  char err[512];
  tp_config_t *cfg = pipeline_config(x);
  if (x->k == 0) /* the moment "start" */
    x->fault->inject(x);
  tp_pipeline_opts_t opts = {.cfg = cfg};
  x->pl = tp_pipeline_new(&opts, err, sizeof(err));
  if (x->pl == NULL || tp_pipeline_start(x->pl, err, sizeof(err)) != TP_OK) {
    snprintf(x->failure, sizeof(x->failure), "cannot start the pipeline: %.200s", err);
    x->failed = true;
    goto out;
  }
  script_produce(&x->c, &x->script, 0, x->k);
  if (x->k > 0) {
    rd_kafka_flush(x->c.rk, 30000);
    if (!wait_consumed(x, x->k)) {
      x->stalled = true;
      snprintf(x->failure, sizeof(x->failure), "before the fault only %llu of %zu records consumed",
               (unsigned long long)x->totals.consumed, x->k);
    }
    x->fault->inject(x);
  }
  script_produce(&x->c, &x->script, x->k, x->script.n);
  x->fault->heal(x);
  x->t_heal = now_s();
  x->input_err = rd_kafka_flush(x->c.rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR;

  /* Until every record is read and every expected alert readable. */
  tp_alert_codec_t *codec = tp_alert_codec_new(err, sizeof(err));
  tp_alert_record_t *rec = malloc(sizeof(*rec));
  if (codec == NULL || rec == NULL)
    abort();
  rd_kafka_t *rd = reader(&x->c, "cx.alerts");
  int64_t next = 0;
  double end = now_s() + (double)env_long("TP_FAULTS_SETTLE_S", 60);
  for (;;) {
    size_t seen = read_alerts_into(x, rd, codec, rec, &next, 100);
    x->failed = x->failed || tp_pipeline_failed(x->pl);
    if (seen == N_EXPECTED && consumed(x) >= x->script.n && all_read(x)) {
      x->t_done = now_s();
      break;
    }
    if (x->failed || now_s() > end) {
      x->stalled = x->stalled || !x->failed;
      break;
    }
  }
  tp_buf_t mb = TP_BUF_INIT;
  tp_pipeline_metrics(x->pl, &mb);
  int lines;
  x->aborts = sum_series(mb.data, "touchpulse_transaction_aborts_total ", &lines);
  x->assigns = sum_series(mb.data, "touchpulse_rebalances_total{kind=\"assign\"} ", &lines);
  tp_buf_free(&mb);
  x->stop_err = tp_pipeline_stop(x->pl) != TP_OK;
  x->failed = x->failed || tp_pipeline_failed(x->pl);
  tp_pipeline_totals(x->pl, &x->totals);

  /* Everything touchpulse wrote is in the log now: read it to the end. */
  int64_t hi = log_end(rd, "cx.alerts");
  end = now_s() + 30;
  while (next < hi && now_s() < end)
    read_alerts_into(x, rd, codec, rec, &next, 100);
  rd_kafka_consumer_close(rd);
  rd_kafka_destroy(rd);
  tp_alert_codec_destroy(codec);
  free(rec);
  judge_alerts(x);
  check_deadletters(x);

out:
  tp_pipeline_destroy(x->pl);
  tp_config_destroy(cfg);
  cluster_destroy(&x->c);
  script_free(&x->script);
  x->t_end = now_s();
  verdict(x);
  report(x);
  free(x->got);
  x->got = NULL;
  return NULL;
}

/* The modes to run: TP_FAULTS_MODES=eos, alo, or both (the default). */
static bool mode_wanted(bool eos) {
  const char *v = getenv("TP_FAULTS_MODES");
  return v == NULL || *v == '\0' || strstr(v, eos ? "eos" : "alo") != NULL;
}

/* Runs every cell of a fault (its moments in each mode) side by side, then
 * fails the Test for each cell that failed. */
static void setup_log(void);

static void run_fault(const fault_t *f) {
  setup_log();
  static cell_t cells[2 * (MOMENTS + 1)];
  static pthread_t threads[2 * (MOMENTS + 1)];
  const char *only = getenv("TP_FAULTS_ONLY_MOMENT");
  bool serial = env_long("TP_FAULTS_SERIAL", 0) != 0;
  size_t nc = 0;
  for (int e = 1; e >= 0; e--) {
    if (!mode_wanted(e) || (f->eos_only && !e))
      continue;
    for (int m = f->with_start ? -1 : 0; m < MOMENTS; m++) {
      char label[16];
      int moment = m < 0 ? MOMENT_START : m;
      moment_label(moment, label, sizeof(label));
      if (only && *only && strcmp(only, label) != 0)
        continue;
      cell_t *x = &cells[nc++];
      memset(x, 0, sizeof(*x));
      x->fault = f;
      x->moment = moment;
      x->eos = e;
    }
  }
  for (size_t i = 0; i < nc; i++) {
    if (serial)
      run_cell(&cells[i]);
    else
      cr_assert_eq(pthread_create(&threads[i], NULL, run_cell, &cells[i]), 0);
  }
  for (size_t i = 0; i < nc && !serial; i++)
    pthread_join(threads[i], NULL);
  for (size_t i = 0; i < nc; i++) {
    char m[16];
    moment_label(cells[i].moment, m, sizeof(m));
    cr_expect(cells[i].ok, "%s %s %s (k=%zu of %zu): %s | %s", f->name, m,
              cells[i].eos ? "eos" : "alo", cells[i].k, cells[i].n_records, cells[i].what,
              cells[i].verdict);
  }
}

/* ---- the matrix --------------------------------------------------------------- */

static char matrix_path[256];

ReportHook(PRE_ALL)(struct criterion_test_set *tests) {
  (void)tests;
  snprintf(matrix_path, sizeof(matrix_path), "/tmp/tp-faults-%d.tsv", (int)getpid());
  unlink(matrix_path);
  setenv("TP_FAULTS_MATRIX_FILE", matrix_path, 1);
  printf("[faults] seed %llu (TP_FAULTS_SEED=%llu reproduces the moments and the faults)\n",
         (unsigned long long)seed_value(), (unsigned long long)seed_value());
  fflush(stdout);
}

/* touchpulse's log: errors only, unless TP_FAULTS_LOG asks for more. */
static void setup_log(void) {
  const char *level = getenv("TP_FAULTS_LOG");
  tp_log_level_t l = TP_LOG_ERROR;
  if (level && strcmp(level, "warn") == 0)
    l = TP_LOG_WARN;
  else if (level && strcmp(level, "info") == 0)
    l = TP_LOG_INFO;
  else if (level && strcmp(level, "debug") == 0)
    l = TP_LOG_DEBUG;
  tp_log_setup(l, TP_LOG_TEXT);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
  enum { MAX_ROWS = 128, ROW = 1800 };
  char(*rows)[ROW] = calloc(MAX_ROWS, ROW);
  size_t n = 0;
  FILE *f = fopen(matrix_path, "r");
  while (f && rows && n < MAX_ROWS && fgets(rows[n], ROW, f))
    n++;
  if (f)
    fclose(f);
  unlink(matrix_path);
  if (rows == NULL || n == 0) {
    free(rows);
    return;
  }
  static const char *const moments[] = {"start", "m1", "m2", "m3"};
  printf("\n[faults] fault matrix, seed %llu. Moments: m1 5-20 %%, m2 35-55 %%, m3 70-90 %% of "
         "the %s records consumed before the fault\n",
         (unsigned long long)seed_value(), "scenario's");
  printf("[faults] ok: the fault-free alerts; ok*: the same distinct alerts, repeats explained "
         "(see the details); eos: exactly-once, alo: at-least-once\n");
  printf("[faults] %-24s", "fault \\ moment");
  for (int m = 0; m < 4; m++)
    printf(" | %-30s", moments[m]);
  printf("\n");
  static const char *const modes[] = {"eos", "alo"};
  for (size_t r = 0; r < N_OF(all_faults); r++) {
    const char *name = all_faults[r]->name;
    char cells[4][160] = {{0}};
    bool any = false;
    for (int m = 0; m < 4; m++) {
      size_t w = 0;
      for (int e = 0; e < 2; e++)
        for (size_t i = 0; i < n; i++) {
          char fname[64], mom[16], pct[8], cell[64];
          if (sscanf(rows[i], "%63[^\t]\t%15[^\t]\t%7[^\t]\t%63[^\t]", fname, mom, pct, cell) !=
                  4 ||
              strcmp(fname, name) != 0 || strcmp(mom, moments[m]) != 0 ||
              strncmp(cell, modes[e], 3) != 0)
            continue;
          if (w == 0)
            w += (size_t)snprintf(cells[m], sizeof(cells[m]), "%4s:", pct);
          if (w < sizeof(cells[m]))
            w += (size_t)snprintf(cells[m] + w, sizeof(cells[m]) - w, " %s", cell);
          any = true;
        }
    }
    if (!any)
      continue;
    printf("[faults] %-24s", name);
    for (int m = 0; m < 4; m++)
      printf(" | %-30s", cells[m]);
    printf("\n");
  }
  printf("[faults] details:\n");
  for (size_t r = 0; r < N_OF(all_faults); r++)
    for (int m = 0; m < 4; m++)
      for (int e = 0; e < 2; e++)
        for (size_t i = 0; i < n; i++) {
          char fname[64], mom[16], pct[8], cell[64];
          if (sscanf(rows[i], "%63[^\t]\t%15[^\t]\t%7[^\t]\t%63[^\t]", fname, mom, pct,
                     cell) != 4 ||
              strcmp(fname, all_faults[r]->name) != 0 || strcmp(mom, moments[m]) != 0 ||
              strncmp(cell, modes[e], 3) != 0)
            continue;
          const char *t = rows[i];
          for (int tabs = 0; tabs < 4 && t; tabs++)
            t = strchr(t, '\t') ? strchr(t, '\t') + 1 : NULL;
          if (t)
            printf("[faults]   %s", t);
        }
  if (stats->tests_crashed > 0)
    printf("[faults] %zu test(s) crashed or timed out: their cells are missing above\n",
           stats->tests_crashed);
  fflush(stdout);
  free(rows);
}

/* ---- the tests ---------------------------------------------------------------- */

/* The reference: without a fault, exactly the expected alerts, once each. */
Test(faults, no_fault, .timeout = 180) { run_fault(&F_NONE); }
Test(faults, broker_down, .timeout = 300) { run_fault(&F_BROKER_DOWN); }
Test(faults, all_brokers_down, .timeout = 900) { run_fault(&F_ALL_DOWN); }
Test(faults, leader_move, .timeout = 300) { run_fault(&F_LEADER_MOVE); }
Test(faults, coordinator_move, .timeout = 300) { run_fault(&F_COORD_MOVE); }
Test(faults, rtt_over_timeout, .timeout = 300) { run_fault(&F_RTT); }
Test(faults, fetch_errors, .timeout = 300) { run_fault(&F_FETCH); }
Test(faults, offset_commit_errors, .timeout = 300) { run_fault(&F_COMMIT); }
Test(faults, produce_errors, .timeout = 300) { run_fault(&F_PRODUCE); }
Test(faults, produce_errors_ambiguous, .timeout = 300) { run_fault(&F_PRODUCE_AMBIGUOUS); }
Test(faults, group_errors, .timeout = 300) { run_fault(&F_GROUP); }
Test(faults, txn_errors, .timeout = 300) { run_fault(&F_TXN); }
Test(faults, alerts_unavailable, .timeout = 300) { run_fault(&F_UNAVAILABLE); }
Test(faults, alerts_unwritable, .timeout = 400) { run_fault(&F_UNWRITABLE); }
