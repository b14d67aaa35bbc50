/*
 * export.c -- per-touchpoint gauges for /metrics.
 *
 * For every (metric, window) a rule names, one gauge family per metric:
 *
 *   touchpulse_touchpoint_csat_mean{topic="cx.feedback",touchpoint="checkout.payment",window="15m"} 3.42
 *
 * Metrics measured in milliseconds are exported in seconds, as Prometheus
 * wants (first_response_ms_p90 -> touchpulse_touchpoint_first_response_p90_seconds).
 * An undefined value (SPEC: no observations) has no sample rather than a 0.
 * touchpulse_touchpoint_rule_state gives each matching rule's state
 * (0 OK, 1 PENDING, 2 FIRING).
 *
 * The series are capped at metrics.max_touchpoints touchpoints per input
 * topic. Touchpoints with a rule PENDING or FIRING are exported first, so
 * the ones an operator is looking at never fall off; the rest fill the
 * remainder in table order. What was left out is counted in
 * touchpulse_touchpoints_unexported{topic}.
 *
 * Entries are copied out of the table inside its read section, then sorted
 * by touchpoint and written outside it, so a scrape holds no table for
 * longer than a copy. A touchpoint seen in two partitions of one topic
 * (producers that ignore the keying contract) is exported once, from the
 * entry evaluated last: a scrape never repeats a series.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state_int.h"

/* One (metric slot, view) pair a rule of the kind names. */
typedef struct {
  uint8_t slot, view;
} pair_t;

typedef struct {
  char tp[TP_TOUCHPOINT_MAX];
  uint16_t tp_len;
  bool hot; /* a rule PENDING or FIRING */
  int64_t view_end;
  size_t idx; /* into the kind's value and phase arrays */
} rec_t;

typedef struct {
  const tp_kind_t *kind;
  pair_t pairs[TP_MAX_VIEWS * TP_MAX_SOURCE_METRICS];
  size_t n_pairs;
  size_t cap;          /* records per list: metrics.max_touchpoints */
  rec_t *hot, *cold;   /* [cap] each */
  size_t n_hot, n_cold;
  double *vals;        /* [2 * cap * n_pairs]: hot records first, then cold */
  uint8_t *phase;      /* [2 * cap * n_rules] */
  uint8_t *matches;    /* [2 * cap * n_rules] */
  size_t visited;
  bool failed;
} kind_export_t;

static int visit(tp_table_node_t *node, void *opaque) {
  kind_export_t *x = opaque;
  const tp_kind_t *kind = x->kind;
  tp_entry_t *e = (tp_entry_t *)node;
  x->visited++;
  size_t nr = kind->n_rules;
  /* Once the cold list is full, most entries are cold ones that cannot be
   * exported: tell them by their published phases alone, without the
   * snapshot, which reads every sum and computes every metric (at 1 M
   * touchpoints that was most of a scrape). The snapshot decides again. */
  if (x->n_cold >= x->cap) {
    bool hot = false;
    for (size_t r = 0; r < nr; r++)
      hot |= atomic_load_explicit(&e->pub_phase[r], memory_order_relaxed) != TP_RULE_OK;
    if (!hot)
      return 0;
  }
  tp_snapshot_t s;
  tp__snapshot(kind, e, &s);
  bool hot = false;
  for (size_t r = 0; r < nr; r++)
    hot |= s.phase[r] != TP_RULE_OK;
  rec_t *list = hot ? x->hot : x->cold;
  size_t *n = hot ? &x->n_hot : &x->n_cold;
  if (*n >= x->cap)
    return 0; /* keep visiting: a hot entry may still come */
  size_t idx = (hot ? 0 : x->cap) + *n;
  rec_t *rec = &list[(*n)++];
  rec->tp_len = e->tp_len;
  memcpy(rec->tp, e->touchpoint, e->tp_len);
  rec->hot = hot;
  rec->view_end = s.view_end;
  rec->idx = idx;
  for (size_t p = 0; p < x->n_pairs; p++) {
    size_t i = (size_t)x->pairs[p].view * kind->n_metrics + x->pairs[p].slot;
    x->vals[idx * x->n_pairs + p] = s.view_end > 0 ? s.value[i] : NAN;
  }
  for (size_t r = 0; r < nr; r++) {
    x->phase[idx * nr + r] = s.phase[r];
    x->matches[idx * nr + r] = e->rules[r].matches; /* immutable after creation */
  }
  return 0;
}

static int cmp_rec(const void *a, const void *b) {
  const rec_t *x = a, *y = b;
  size_t n = x->tp_len < y->tp_len ? x->tp_len : y->tp_len;
  int c = memcmp(x->tp, y->tp, n);
  if (c != 0)
    return c;
  if (x->tp_len != y->tp_len)
    return x->tp_len < y->tp_len ? -1 : 1;
  /* Same touchpoint in two partitions: the one evaluated last first. */
  return (x->view_end < y->view_end) - (x->view_end > y->view_end);
}

/* The family name of a metric: touchpulse_touchpoint_ + its SPEC name, with
 * "_ms" moved to a "_seconds" suffix. @returns the scale to apply. */
static double family_name(tp_metric_t m, char *out, size_t size) {
  const char *name = tp_metric_name(m);
  const char *ms = strstr(name, "_ms");
  if (ms != NULL && (ms[3] == '_' || ms[3] == '\0')) {
    snprintf(out, size, "touchpulse_touchpoint_%.*s%s_seconds", (int)(ms - name), name, ms + 3);
    return 0.001;
  }
  snprintf(out, size, "touchpulse_touchpoint_%s", name);
  return 1.0;
}

static void kind_pairs(kind_export_t *x) {
  const tp_kind_t *kind = x->kind;
  for (size_t r = 0; r < kind->n_rules; r++) {
    pair_t p = {kind->rule_slot[r], kind->rule_view[r]};
    bool seen = false;
    for (size_t i = 0; i < x->n_pairs && !seen; i++)
      seen = x->pairs[i].slot == p.slot && x->pairs[i].view == p.view;
    if (!seen)
      x->pairs[x->n_pairs++] = p;
  }
}

static void collect(tp_state_t *st, kind_export_t *x) {
  const tp_kind_t *kind = x->kind;
  size_t nr = kind->n_rules ? kind->n_rules : 1, np = x->n_pairs ? x->n_pairs : 1;
  x->hot = tp_calloc(x->cap ? x->cap : 1, sizeof(rec_t));
  x->cold = tp_calloc(x->cap ? x->cap : 1, sizeof(rec_t));
  x->vals = tp_calloc(2 * x->cap * np + 1, sizeof(double));
  x->phase = tp_calloc(2 * x->cap * nr + 1, 1);
  x->matches = tp_calloc(2 * x->cap * nr + 1, 1);
  if (!x->hot || !x->cold || !x->vals || !x->phase || !x->matches) {
    x->failed = true;
    return;
  }
  (void)st;
  tp_table_read_begin(kind->table);
  tp_table_foreach(kind->table, visit, x);
  tp_table_read_end(kind->table);
  qsort(x->hot, x->n_hot, sizeof(rec_t), cmp_rec);
  /* Hot records first, then cold ones up to the cap; duplicates dropped. */
  size_t room = x->cap - x->n_hot;
  if (x->n_cold > room)
    x->n_cold = room;
  qsort(x->cold, x->n_cold, sizeof(rec_t), cmp_rec);
}

static void kind_release(kind_export_t *x) {
  tp_free(x->hot);
  tp_free(x->cold);
  tp_free(x->vals);
  tp_free(x->phase);
  tp_free(x->matches);
}

/* Calls fn for every exported record of x in order, skipping a touchpoint
 * already exported from the hot list or from an earlier duplicate. */
typedef void rec_fn(const kind_export_t *x, const rec_t *rec, void *opaque);

static bool same_tp(const rec_t *a, const rec_t *b) {
  return a->tp_len == b->tp_len && memcmp(a->tp, b->tp, a->tp_len) == 0;
}

static bool in_hot(const kind_export_t *x, const rec_t *rec) {
  size_t lo = 0, hi = x->n_hot;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const rec_t *h = &x->hot[mid];
    size_t n = h->tp_len < rec->tp_len ? h->tp_len : rec->tp_len;
    int c = memcmp(h->tp, rec->tp, n);
    if (c == 0)
      c = (h->tp_len > rec->tp_len) - (h->tp_len < rec->tp_len);
    if (c == 0)
      return true;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

static size_t each_rec(const kind_export_t *x, rec_fn *fn, void *opaque) {
  size_t n = 0;
  for (size_t i = 0; i < x->n_hot; i++) {
    if (i > 0 && same_tp(&x->hot[i - 1], &x->hot[i]))
      continue;
    fn(x, &x->hot[i], opaque);
    n++;
  }
  for (size_t i = 0; i < x->n_cold; i++) {
    if ((i > 0 && same_tp(&x->cold[i - 1], &x->cold[i])) || in_hot(x, &x->cold[i]))
      continue;
    fn(x, &x->cold[i], opaque);
    n++;
  }
  return n;
}

typedef struct {
  tp_state_t *st;
  tp_buf_t *out;
  tp_metric_t metric;
  double scale;
  const char *family;
} write_ctx_t;

static void labels(tp_buf_t *out, const char *topic, const rec_t *rec) {
  tp_buf_puts(out, "{topic=\"");
  tp_buf_prom_escape(out, topic, strlen(topic));
  tp_buf_puts(out, "\",touchpoint=\"");
  tp_buf_prom_escape(out, rec->tp, rec->tp_len);
  tp_buf_putc(out, '"');
}

static void write_values(const kind_export_t *x, const rec_t *rec, void *opaque) {
  write_ctx_t *w = opaque;
  const tp_kind_t *kind = x->kind;
  for (size_t p = 0; p < x->n_pairs; p++) {
    if (kind->metrics[x->pairs[p].slot] != w->metric)
      continue;
    double v = x->vals[rec->idx * x->n_pairs + p];
    if (isnan(v) || isinf(v))
      continue; /* undefined: no sample */
    char dur[32];
    tp_duration_format(kind->view_ms[x->pairs[p].view], dur, sizeof(dur));
    tp_buf_puts(w->out, w->family);
    labels(w->out, w->st->cfg->topics[kind->src], rec);
    tp_buf_printf(w->out, ",window=\"%s\"} ", dur);
    tp_buf_double(w->out, v * w->scale);
    tp_buf_putc(w->out, '\n');
  }
}

static void write_states(const kind_export_t *x, const rec_t *rec, void *opaque) {
  write_ctx_t *w = opaque;
  const tp_kind_t *kind = x->kind;
  for (size_t r = 0; r < kind->n_rules; r++) {
    if (!x->matches[rec->idx * kind->n_rules + r])
      continue;
    const tp_rule_t *rule = kind->rules[r];
    tp_buf_puts(w->out, "touchpulse_touchpoint_rule_state");
    labels(w->out, w->st->cfg->topics[kind->src], rec);
    tp_buf_puts(w->out, ",rule=\"");
    tp_buf_prom_escape(w->out, rule->name, strlen(rule->name));
    /* Lower case, as the configuration writes it and Prometheus alerting
     * rules conventionally label severity. */
    char sev[16];
    size_t i = 0;
    for (const char *c = tp_severity_name(rule->severity); *c && i + 1 < sizeof(sev); c++)
      sev[i++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    sev[i] = '\0';
    tp_buf_printf(w->out, "\",severity=\"%s\"} %d\n", sev,
                  (int)x->phase[rec->idx * kind->n_rules + r]);
  }
}

static void count_rec(const kind_export_t *x, const rec_t *rec, void *opaque) {
  (void)x, (void)rec, (void)opaque;
}

void tp_state_export_metrics(tp_state_t *st, size_t max_touchpoints, tp_buf_t *out) {
  kind_export_t xs[TP_SRC_COUNT];
  memset(xs, 0, sizeof(xs));
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    xs[s].kind = &st->kinds[s];
    xs[s].cap = max_touchpoints;
    kind_pairs(&xs[s]);
    if (st->kinds[s].n_rules > 0)
      collect(st, &xs[s]);
    if (xs[s].failed)
      out->failed = true; /* the scrape fails as a whole: never a partial view */
  }

  /* One family per metric a rule names, in metric order. */
  write_ctx_t w = {st, out, 0, 1.0, NULL};
  for (int m = 0; m < TP_METRIC_COUNT && !out->failed; m++) {
    kind_export_t *x = &xs[tp_metric_source((tp_metric_t)m)];
    bool named = false;
    for (size_t p = 0; p < x->n_pairs; p++)
      named |= x->kind->metrics[x->pairs[p].slot] == (tp_metric_t)m;
    if (!named)
      continue;
    char family[128];
    w.metric = (tp_metric_t)m;
    w.scale = family_name((tp_metric_t)m, family, sizeof(family));
    w.family = family;
    tp_buf_printf(out, "# HELP %s Per touchpoint: %s over the rules' windows, as last evaluated%s.\n"
                       "# TYPE %s gauge\n",
                  family, tp_metric_name((tp_metric_t)m), w.scale != 1.0 ? ", in seconds" : "",
                  family);
    each_rec(x, write_values, &w);
  }

  tp_buf_puts(out, "# HELP touchpulse_touchpoint_rule_state Per touchpoint and matching rule: "
                   "0 OK, 1 PENDING, 2 FIRING.\n# TYPE touchpulse_touchpoint_rule_state gauge\n");
  for (int s = 0; s < TP_SRC_COUNT; s++)
    if (!xs[s].failed)
      each_rec(&xs[s], write_states, &w);

  tp_buf_puts(out, "# HELP touchpulse_touchpoints_unexported Touchpoints whose per-touchpoint "
                   "gauges were left out by metrics.max_touchpoints.\n"
                   "# TYPE touchpulse_touchpoints_unexported gauge\n");
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    const char *topic = st->cfg->topics[s];
    size_t exported = xs[s].failed ? 0 : each_rec(&xs[s], count_rec, NULL);
    size_t total = xs[s].kind->n_rules > 0 ? xs[s].visited : tp_table_size(st->kinds[s].table);
    tp_buf_puts(out, "touchpulse_touchpoints_unexported{topic=\"");
    tp_buf_prom_escape(out, topic, strlen(topic));
    tp_buf_printf(out, "\"} %zu\n", total > exported ? total - exported : 0);
  }
  for (int s = 0; s < TP_SRC_COUNT; s++)
    kind_release(&xs[s]);
}
