/*
 * test_alloc.c -- allocation failure in state creation and use, SQLite-style:
 * fail the 1st, 2nd, ... allocation of a whole sequence (state, partitions of
 * every topic, events that create touchpoints and tickets, evaluation, the
 * JSON view and the /metrics export) until a run needs no more than allowed.
 * Every failing run must give a clean error or a counted refusal, never a
 * crash, and leave nothing behind (LeakSanitizer is asked after each run).
 * Configuration loading and the HTTP server have the same tests in
 * test_config.c and test_http.c.
 */
#include "support.h"
#include "touchpulse/buf.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
static bool leaked(void) { return __lsan_do_recoverable_leak_check() != 0; }
#else
static bool leaked(void) { return false; }
#endif

static const char *yaml =
    "windows: {step: 1m, allowed_lateness: 0s, idle_timeout: 0s}\n"
    "dedup: {depth: 1000}\n"
    "support: {max_tickets: 100}\n"
    "state: {max_touchpoints: 1000}\n"
    "rules:\n"
    "  - {name: csat-low, metric: csat_mean, window: 5m, op: '<', threshold: 3}\n"
    "  - {name: nps-low, metric: nps, window: 15m, op: '<', threshold: 0, touchpoints: ['a*']}\n"
    "  - {name: slow, metric: first_response_ms_p90, window: 5m, op: '>', threshold: 1000}\n"
    "  - {name: returns, metric: return_pct, window: 10m, op: '>', threshold: 10}\n";

typedef struct {
  int created;    /* state and partitions made */
  int nomem;      /* applies refused for memory */
  int alerts;
} outcome_t;

static void count_alert(void *opaque, const tp_alert_t *alert) {
  (void)alert;
  ((outcome_t *)opaque)->alerts++;
}

/* The whole sequence; returns false where an allocation failure stopped it. */
static bool run(const tp_config_t *cfg, outcome_t *o) {
  char err[256];
  tp_state_t *st = tp_state_new(cfg, err, sizeof(err));
  if (st == NULL) {
    cr_assert(strstr(err, "out of memory") || strstr(err, "cannot allocate"), "tp_state_new: %s", err);
    return false;
  }
  tp_part_t *parts[TP_SRC_COUNT] = {0};
  bool ok = true;
  for (int s = 0; s < TP_SRC_COUNT && ok; s++) {
    parts[s] = tp_part_new(st, (tp_source_t)s, 0, count_alert, o, err, sizeof(err));
    if (parts[s] == NULL) {
      cr_assert(strstr(err, "out of memory") || strstr(err, "cannot allocate"), "tp_part_new: %s", err);
      ok = false;
    }
  }
  if (ok) {
    o->created++;
    for (int i = 0; i < 40; i++) {
      const char *tp = i % 2 ? "a.one" : "b.two";
      int64_t t = T0 + i * 10000;
      tp_event_t evs[3] = {
          ev_feedback(test_id("f", i), t, tp, 1 + i % 3, i % 11, -1, -1, -1),
          ev_support(test_id("s", i), t, tp, test_id("tk", i / 2),
                     i % 2 ? TP_SUPPORT_AGENT_REPLIED : TP_SUPPORT_OPENED, false),
          ev_commerce(test_id("c", i), t, tp, i % 3 ? TP_COMMERCE_ORDER_PLACED
                                                    : TP_COMMERCE_RETURN_REQUESTED),
      };
      for (int s = 0; s < TP_SRC_COUNT; s++) {
        tp_apply_t r = tp_part_apply(parts[s], &evs[s]);
        cr_assert(r == TP_APPLY_OK || r == TP_APPLY_NOMEM || r == TP_APPLY_DUPLICATE,
                  "apply returned %d", (int)r);
        o->nomem += r == TP_APPLY_NOMEM;
      }
    }
    for (int s = 0; s < TP_SRC_COUNT; s++)
      tp_part_advance(parts[s], T0 + 20 * MIN_MS);
    tp_buf_t b = TP_BUF_INIT;
    tp_state_view_touchpoint(st, "a.one", 5, &b);
    tp_state_export_metrics(st, 100, &b);
    tp_buf_free(&b);
  }
  for (int s = 0; s < TP_SRC_COUNT; s++)
    tp_part_destroy(parts[s]);
  tp_state_destroy(st);
  return ok;
}

Test(alloc, every_failed_allocation_in_state_creation_and_use_is_clean, .timeout = 300) {
  tp_config_t *cfg = cfg_from_yaml(yaml);
  outcome_t o = {0};
  long n;
  int refused_runs = 0;
  for (n = 1;; n++) {
    outcome_t r = {0};
    tp_alloc_fail_after(n);
    run(cfg, &r);
    long calls = tp_alloc_calls();
    tp_alloc_fail_after(0);
    cr_assert_not(leaked(), "allocation %ld failed and memory leaked (LeakSanitizer report)", n);
    refused_runs += r.nomem > 0;
    if (calls < n) { /* nothing failed: the sequence is done */
      o = r;
      break;
    }
  }
  printf("state: %ld allocations, each failed in turn; %d runs saw applies refused for memory\n", n - 1,
         refused_runs);
  cr_assert_gt(n, 20, "only %ld allocations: is the hook in use?", n);
  cr_expect_gt(refused_runs, 0, "no run saw an apply refused for memory");
  /* The run that failed nothing gives the unfailed answer. */
  outcome_t clean = {0};
  cr_assert(run(cfg, &clean));
  cr_expect_eq(o.alerts, clean.alerts);
  cr_expect_eq(o.nomem, 0);
  cr_expect_gt(clean.alerts, 0, "the sequence should fire alerts");
  tp_config_destroy(cfg);
}
