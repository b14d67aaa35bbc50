/*
 * bench_raw.c -- the "raw" contestant of the end-to-end benchmark: the
 * fastest a librdkafka consumer group reads the input topics here, with no
 * decoding, state or output. One application thread calls
 * rd_kafka_consumer_poll() and discards each record after touching its key
 * and value lengths, until --expect records have arrived; then it prints
 *
 *   {"contestant":"raw","records":N,"first_ms":F,"last_ms":L,"cpu_ms":C}
 *
 * (F and L: wall-clock ms of the first and of the Nth record; C: the
 * process's CPU time from its start to the Nth record), leaves the
 * group and exits 0. It exits 1 on a fatal client error, on a subscribed
 * topic that does not exist, or when no record arrives for --timeout
 * seconds; 2 on bad usage.
 *
 * Consumer settings are touchpulse's own defaults (src/consume.c,
 * tp_pipeline_new), so the comparison measures processing, not tuning:
 *   auto.offset.reset=earliest, partition.assignment.strategy=
 *   cooperative-sticky, isolation.level=read_committed,
 *   queued.min.messages=1000000 and statistics.interval.ms=5000 (with a
 *   statistics callback, as touchpulse has one for /metrics), which -X may
 *   override; and, applied after -X as
 *   touchpulse enforces them, enable.auto.commit=false,
 *   enable.auto.offset.store=false and enable.partition.eof=true. Fetch
 *   settings stay at librdkafka's defaults in both unless -X sets them (the
 *   harness passes the same -X to both). Unlike touchpulse it commits no
 *   offsets: a run uses a fresh group id.
 *
 *   bench_raw --bootstrap HOST:PORT --group ID --expect N
 *             [--topics a,b,c] [--timeout SECONDS] [-X key=value ...]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BENCH_PROG "bench_raw"
#include "bench_cli.h"
#include "touchpulse/common.h"

#define MAX_EXTRA_CONF 64
#define MAX_TOPICS 16
#define POLL_MS 100

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* NOLINTNEXTLINE(readability-non-const-parameter): librdkafka's callback type. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk, (void)json, (void)len, (void)opaque;
  return 0; /* librdkafka frees json */
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)opaque;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_fatal_error(rk, why, sizeof(why));
    fprintf(stderr, "bench_raw: fatal consumer error: %s\n", why);
    return; /* the poll loop sees rd_kafka_fatal_error() and stops */
  }
  fprintf(stderr, "bench_raw: consumer: %s: %s\n", rd_kafka_err2name((rd_kafka_resp_err_t)err),
          reason);
}

/* Explicit so that both protocols work; the cooperative one is the default. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  (void)opaque;
  bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  rd_kafka_error_t *e = NULL;
  rd_kafka_resp_err_t r = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (cooperative)
      e = rd_kafka_incremental_assign(rk, parts);
    else
      r = rd_kafka_assign(rk, parts);
  } else {
    if (cooperative)
      e = rd_kafka_incremental_unassign(rk, parts);
    else
      r = rd_kafka_assign(rk, NULL);
  }
  if (e != NULL) {
    fprintf(stderr, "bench_raw: rebalance: %s\n", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  } else if (r != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr, "bench_raw: rebalance: %s\n", rd_kafka_err2str(r));
  }
}

static void usage(FILE *out) {
  fputs("usage: bench_raw --bootstrap HOST:PORT --group ID --expect N [options]\n"
        "  --topics a,b,c      topics to subscribe to (default cx.feedback,cx.support,cx.commerce)\n"
        "  --timeout SECONDS   give up when no record arrives for this long (default 120)\n"
        "  -X key=value        any librdkafka consumer property (repeatable)\n",
        out);
}

int main(int argc, char **argv) {
  const char *bootstrap = "localhost:9092", *group = NULL, *topics = "cx.feedback,cx.support,cx.commerce";
  const char *extra[MAX_EXTRA_CONF];
  int n_extra = 0;
  uint64_t expect = 0, timeout_s = 120;
  bool have_expect = false;
  enum { O_BOOT = 256, O_GROUP, O_EXPECT, O_TOPICS, O_TIMEOUT, O_HELP };
  static const struct option opts[] = {
      {"bootstrap", required_argument, NULL, O_BOOT}, {"group", required_argument, NULL, O_GROUP},
      {"expect", required_argument, NULL, O_EXPECT},  {"topics", required_argument, NULL, O_TOPICS},
      {"timeout", required_argument, NULL, O_TIMEOUT}, {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0}};
  int c, li = -1;
  /* NOLINTNEXTLINE(concurrency-mt-unsafe): options are parsed before any thread starts. */
  while ((c = getopt_long(argc, argv, "X:h", opts, &li)) != -1) {
    bool ok = true;
    switch (c) {
    case O_BOOT: bootstrap = optarg; break;
    case O_GROUP: group = optarg; break;
    case O_EXPECT: ok = parse_u64(optarg, 1, UINT64_MAX, &expect), have_expect = true; break;
    case O_TOPICS: topics = optarg; break;
    case O_TIMEOUT: ok = parse_u64(optarg, 1, 86400, &timeout_s); break;
    case 'X': ok = add_extra(extra, &n_extra, MAX_EXTRA_CONF, optarg); break;
    case 'h':
    case O_HELP: usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
    if (!ok) {
      bad_option(c, opts[li].name, optarg);
      return 2;
    }
  }
  if (optind < argc || group == NULL || !have_expect) {
    fprintf(stderr, optind < argc ? "bench_raw: unexpected argument\n"
                                  : "bench_raw: --group and --expect are required\n");
    usage(stderr);
    return 2;
  }

  /* touchpulse's defaults, then -X, then what touchpulse enforces. */
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  bool ok = conf_set(conf, "bootstrap.servers", bootstrap) && conf_set(conf, "group.id", group) &&
            conf_set(conf, "client.id", "touchpulse-bench-raw") &&
            conf_set(conf, "auto.offset.reset", "earliest") &&
            conf_set(conf, "partition.assignment.strategy", "cooperative-sticky") &&
            conf_set(conf, "isolation.level", "read_committed") &&
            conf_set(conf, "queued.min.messages", "1000000") &&
            conf_set(conf, "statistics.interval.ms", "5000");
  ok = ok && conf_set_extra(conf, extra, n_extra);
  ok = ok && conf_set(conf, "enable.auto.commit", "false") &&
       conf_set(conf, "enable.auto.offset.store", "false") &&
       conf_set(conf, "enable.partition.eof", "true");
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    return 2;
  }
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  char err[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (rk == NULL) {
    fprintf(stderr, "bench_raw: consumer: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  rd_kafka_poll_set_consumer(rk);

  int rc = 1;
  rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(MAX_TOPICS);
  char list[1024];
  snprintf(list, sizeof(list), "%s", topics);
  char *save = NULL;
  for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
    if (*t)
      rd_kafka_topic_partition_list_add(subs, t, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t serr =
      subs->cnt > 0 ? rd_kafka_subscribe(rk, subs) : RD_KAFKA_RESP_ERR__INVALID_ARG;
  rd_kafka_topic_partition_list_destroy(subs);
  if (serr) {
    fprintf(stderr, "bench_raw: subscribe to '%s': %s\n", topics, rd_kafka_err2str(serr));
    goto out;
  }
  (void)signal(SIGINT, on_signal);
  (void)signal(SIGTERM, on_signal);

  uint64_t records = 0, touched = 0;
  int64_t first_ms = 0, last_ms = 0;
  uint64_t idle_since = tp_mono_ns(), timeout_ns = timeout_s * 1000000000ull;
  while (records < expect) {
    if (g_stop) {
      fprintf(stderr, "bench_raw: interrupted after %" PRIu64 " of %" PRIu64 " records\n", records,
              expect);
      goto out;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, POLL_MS);
    if (m == NULL) {
      if (rd_kafka_fatal_error(rk, err, sizeof(err)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "bench_raw: fatal: %s\n", err);
        goto out;
      }
      if (tp_mono_ns() - idle_since > timeout_ns) {
        fprintf(stderr,
                "bench_raw: no record for %" PRIu64 " s; read %" PRIu64 " of %" PRIu64 "\n",
                timeout_s, records, expect);
        goto out;
      }
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (records++ == 0)
        first_ms = tp_now_ms();
      touched += m->key_len + m->len;
      idle_since = tp_mono_ns();
    } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      bool fatal = m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                   m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                   m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                   m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
                   m->err == RD_KAFKA_RESP_ERR__FATAL;
      fprintf(stderr, "bench_raw: %s%s%s: %s\n", m->rkt ? rd_kafka_topic_name(m->rkt) : "",
              m->rkt ? ": " : "", rd_kafka_err2name(m->err), rd_kafka_message_errstr(m));
      if (fatal) {
        rd_kafka_message_destroy(m);
        goto out;
      }
    }
    rd_kafka_message_destroy(m);
  }
  last_ms = tp_now_ms();
  struct rusage ru;
  (void)getrusage(RUSAGE_SELF, &ru);
  int64_t cpu_ms = (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
  printf("{\"contestant\":\"raw\",\"records\":%" PRIu64 ",\"first_ms\":%" PRId64
         ",\"last_ms\":%" PRId64 ",\"cpu_ms\":%" PRId64 "}\n",
         records, first_ms, last_ms, cpu_ms);
  fflush(stdout);
  /* The bytes touched, so the reads are not optimised away; on stderr only. */
  fprintf(stderr, "bench_raw: %" PRIu64 " records, %" PRIu64 " key+value bytes, %.0f records/s\n",
          records, touched,
          last_ms > first_ms ? (double)records * 1000.0 / (double)(last_ms - first_ms) : 0.0);
  rc = 0;
out:
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}
