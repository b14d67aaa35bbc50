/*
 * bench_rss.c -- resident memory per active touchpoint with the example
 * rules (examples/touchpulse.yaml, the demo's), measured as the growth of
 * the process's RSS while one partition of a topic takes N touchpoints.
 *
 * For each input topic in turn, a fresh state gets one partition, and
 * `touchpoints` (argv[1], default 1 000 000) distinct touchpoints each
 * receive `per` events (argv[2], default 4) spread over the last 30 minutes
 * of event time, interleaved, so every touchpoint holds live buckets in the
 * windows of every rule on that topic when the RSS is read; the watermark
 * crosses ~30 step boundaries meanwhile, so the evaluation runs too. The
 * state's fixed costs (the dedup ring of dedup.depth ids, the tables'
 * initial allocation) are measured apart, by a run with 1 000 touchpoints,
 * and subtracted:
 *
 *   bytes per touchpoint = (RSS(N) - RSS(1000)) / (N - 1000)
 *
 * Each measurement runs in a child process of its own, so memory freed by
 * one never hides the growth of the next. Support touchpoints also hold tickets (one per touchpoint here), commerce
 * touchpoints orders counted in their windows.
 *
 *   bench_rss [touchpoints] [events-per-touchpoint]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "touchpulse/config.h"
#include "touchpulse/demo.h"
#include "touchpulse/state.h"

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

static void no_alert(void *opaque, const tp_alert_t *a) { (void)opaque, (void)a; }

/* RSS growth in kB while a fresh state's partition of src takes n_tp
 * touchpoints with per events each; *alive: touchpoints held at the end. */
static long grow(const tp_config_t *cfg, tp_source_t src, unsigned n_tp, unsigned per,
                 uint64_t *alive) {
  char err[512], id[48], tp[48], ticket[48];
  long before = rss_kb();
  tp_state_t *st = tp_state_new(cfg, err, sizeof(err));
  tp_part_t *part = st ? tp_part_new(st, src, 0, no_alert, NULL, err, sizeof(err)) : NULL;
  if (part == NULL) {
    fprintf(stderr, "bench_rss: %s\n", err);
    exit(1);
  }
  int64_t t0 = tp_floor_to(tp_now_ms() - 86400000LL, 3600000);
  uint64_t total = (uint64_t)n_tp * per, span_ms = 30ull * 60000;
  uint64_t applied = 0;
  for (uint64_t i = 0; i < total; i++) {
    unsigned k = (unsigned)(i % n_tp), round = (unsigned)(i / n_tp);
    tp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.source = src;
    snprintf(id, sizeof(id), "e-%llu", (unsigned long long)i);
    snprintf(tp, sizeof(tp), "%s.%07u", src == TP_SRC_SUPPORT ? "support" : "checkout", k);
    ev.event_id = (tp_str_t){id, (uint32_t)strlen(id)};
    ev.touchpoint = (tp_str_t){tp, (uint32_t)strlen(tp)};
    ev.occurred_at = t0 + (int64_t)(i * span_ms / total);
    ev.stage = 1;
    ev.channel = 0;
    if (src == TP_SRC_FEEDBACK) {
      ev.feedback.csat = (int8_t)(1 + i % 5);
      ev.feedback.nps = (int8_t)(i % 11);
      ev.feedback.ces = ev.feedback.repurchase = ev.feedback.try_other = TP_SCORE_NULL;
    } else if (src == TP_SRC_SUPPORT) {
      snprintf(ticket, sizeof(ticket), "T-%u", k);
      ev.support.ticket_id = (tp_str_t){ticket, (uint32_t)strlen(ticket)};
      ev.support.kind = (uint8_t)(round == 0 ? TP_SUPPORT_OPENED : round == 1
                                                                 ? TP_SUPPORT_AGENT_REPLIED
                                                                 : TP_SUPPORT_CUSTOMER_REPLIED);
    } else {
      snprintf(ticket, sizeof(ticket), "O-%llu", (unsigned long long)i);
      ev.commerce.order_id = (tp_str_t){ticket, (uint32_t)strlen(ticket)};
      ev.commerce.kind = TP_COMMERCE_ORDER_PLACED;
    }
    applied += tp_part_apply(part, &ev) == TP_APPLY_OK;
  }
  long after = rss_kb();
  *alive = applied;
  tp_part_destroy(part);
  tp_state_destroy(st);
  return after - before;
}

int main(int argc, char **argv) {
  unsigned n_tp = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 1000000;
  unsigned per = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 4;
  if (n_tp <= 1000 || per == 0) {
    fprintf(stderr, "usage: bench_rss [touchpoints > 1000] [events per touchpoint > 0]\n");
    return 2;
  }
  char err[4096];
  tp_config_t *cfg = NULL;
  if (tp_config_load_string(tp_example_config_yaml, strlen(tp_example_config_yaml), "example",
                            NULL, &cfg, err, sizeof(err)) != TP_OK) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  cfg->max_touchpoints = (int64_t)n_tp * 2;
  static const char *const names[] = {"feedback", "support", "commerce"};
  printf("bench_rss: example rules, %u touchpoints x %u events in 30 min of event time, "
         "one partition per topic\n",
         n_tp, per);
  printf("%-10s %12s %12s %14s\n", "topic", "RSS(N) MB", "RSS(1k) MB", "bytes/touchpoint");
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    long kb[2];
    for (int big = 0; big < 2; big++) {
      int fd[2];
      if (pipe(fd) != 0)
        return perror("pipe"), 1;
      pid_t pid = fork();
      if (pid < 0)
        return perror("fork"), 1;
      if (pid == 0) {
        unsigned n = big ? n_tp : 1000;
        uint64_t applied = 0;
        long grew = grow(cfg, (tp_source_t)s, n, per, &applied);
        if (applied != (uint64_t)n * per) {
          fprintf(stderr, "bench_rss: %s: only %llu of %llu events applied\n", names[s],
                  (unsigned long long)applied, (unsigned long long)n * per);
          _exit(1);
        }
        _exit(write(fd[1], &grew, sizeof(grew)) == (ssize_t)sizeof(grew) ? 0 : 1);
      }
      close(fd[1]);
      int status = 0;
      ssize_t got = read(fd[0], &kb[big], sizeof(kb[big]));
      close(fd[0]);
      waitpid(pid, &status, 0);
      if (got != (ssize_t)sizeof(kb[big]) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 1;
    }
    printf("%-10s %12.1f %12.1f %14.0f\n", names[s], kb[1] / 1024.0, kb[0] / 1024.0,
           (double)(kb[1] - kb[0]) * 1024.0 / (double)(n_tp - 1000));
  }
  tp_config_destroy(cfg);
  return 0;
}
