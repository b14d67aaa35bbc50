/*
 * state.c -- what all partitions share: rule compilation into per-source
 * layouts, the touchpoint tables, the partition registry, window sums and
 * metric definitions, and the read-only views (JSON and live-view rows) that
 * other threads take from the values entries publish at each evaluation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state_int.h"

#define DEFAULT_VIEW_MS (15 * 60 * 1000)

/* ---- construction ------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static size_t bucket_size_of(tp_source_t src) {
  switch (src) {
  case TP_SRC_FEEDBACK: return sizeof(tp_fb_bucket_t);
  case TP_SRC_SUPPORT: return sizeof(tp_sup_bucket_t);
  case TP_SRC_COMMERCE: return sizeof(tp_com_bucket_t);
  }
  return 0;
}

static tp_err_t kind_init(tp_kind_t *kind, tp_source_t src, const tp_config_t *cfg,
                          char *errstr, size_t errstr_size) {
  kind->src = src;
  for (int m = 0; m < TP_METRIC_COUNT; m++)
    if (tp_metric_source((tp_metric_t)m) == src)
      kind->metrics[kind->n_metrics++] = (tp_metric_t)m;

  for (size_t i = 0; i < cfg->n_rules; i++)
    if (tp_metric_source(cfg->rules[i].metric) == src)
      kind->n_rules++;
  if (kind->n_rules > TP_MAX_RULES_PER_SOURCE) {
    snprintf(errstr, errstr_size, "rules: more than %d rules on the %s metrics",
             TP_MAX_RULES_PER_SOURCE, tp_source_name(src));
    return TP_ECONFIG;
  }
  if (kind->n_rules > 0) {
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    kind->rules = tp_calloc(kind->n_rules, sizeof(*kind->rules));
    kind->rule_view = tp_calloc(kind->n_rules, 1);
    kind->rule_slot = tp_calloc(kind->n_rules, 1);
    if (kind->rules == NULL || kind->rule_view == NULL || kind->rule_slot == NULL) {
      snprintf(errstr, errstr_size, "state: out of memory");
      return TP_ENOMEM;
    }
  }
  size_t r = 0;
  for (size_t i = 0; i < cfg->n_rules; i++) {
    const tp_rule_t *rule = &cfg->rules[i];
    if (tp_metric_source(rule->metric) != src)
      continue;
    kind->rules[r++] = rule;
    bool seen = false;
    for (size_t v = 0; v < kind->n_views; v++)
      seen = seen || kind->view_ms[v] == rule->window_ms;
    if (!seen) {
      if (kind->n_views == TP_MAX_VIEWS) {
        snprintf(errstr, errstr_size,
                 "rules: the %s metrics use more than %d distinct window lengths",
                 tp_source_name(src), TP_MAX_VIEWS);
        return TP_ECONFIG;
      }
      kind->view_ms[kind->n_views++] = rule->window_ms;
    }
  }
  if (kind->n_views == 0) {
    /* No rule reads this topic: still show a window in the views. */
    int64_t v = DEFAULT_VIEW_MS < cfg->step_ms ? cfg->step_ms
                                               : tp_floor_to(DEFAULT_VIEW_MS, cfg->step_ms);
    kind->view_ms[kind->n_views++] = v;
  }
  qsort(kind->view_ms, kind->n_views, sizeof(kind->view_ms[0]), cmp_i64);
  kind->max_window_ms = kind->view_ms[kind->n_views - 1];
  for (r = 0; r < kind->n_rules; r++) {
    for (size_t v = 0; v < kind->n_views; v++)
      if (kind->view_ms[v] == kind->rules[r]->window_ms)
        kind->rule_view[r] = (uint8_t)v;
    for (size_t m = 0; m < kind->n_metrics; m++)
      if (kind->metrics[m] == kind->rules[r]->metric)
        kind->rule_slot[r] = (uint8_t)m;
  }

  /*
   * Ring length. A bucket s must stay in its slot until its last leave
   * boundary s + 1 + L/step has been evaluated (part.c subtracts it then).
   * Events raise the watermark W before they are stored, so at that
   * boundary stored events reach at most floor((W + lateness - 1)/step)
   * <= s + L/step + ceil(lateness/step): one slot more than that span.
   * The wheel looks as far ahead: a bucket can be up to ceil(lateness/step)
   * steps past the watermark and leaves L/step + 1 steps after it.
   */
  int64_t step = cfg->step_ms;
  size_t late_steps = (size_t)((cfg->allowed_lateness_ms + step - 1) / step);
  kind->ring_len = (size_t)(kind->max_window_ms / step) + late_steps + 1;
  kind->wheel_len = (size_t)(kind->max_window_ms / step) + late_steps + 3;
  kind->bucket_size = bucket_size_of(src);
  kind->agg_words = src == TP_SRC_FEEDBACK ? TP_W_FB : src == TP_SRC_SUPPORT ? TP_W_SUP : TP_W_COM;
  kind->pub_words = kind->agg_words + (src == TP_SRC_SUPPORT ? TP_QUANTILES : 0);

  kind->table = tp_table_new((size_t)cfg->max_touchpoints, errstr, errstr_size);
  return kind->table ? TP_OK : TP_ENOMEM;
}

tp_state_t *tp_state_new(const tp_config_t *cfg, char *errstr, size_t errstr_size) {
  tp_state_t *st = tp_calloc(1, sizeof(*st));
  if (st == NULL) {
    snprintf(errstr, errstr_size, "state: out of memory");
    return NULL;
  }
  st->cfg = cfg;
  if (pthread_mutex_init(&st->reg_lock, NULL) != 0) {
    snprintf(errstr, errstr_size, "state: cannot create a mutex");
    tp_free(st);
    return NULL;
  }
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    if (kind_init(&st->kinds[s], (tp_source_t)s, cfg, errstr, errstr_size) != TP_OK) {
      tp_state_destroy(st);
      return NULL;
    }
  }
  return st;
}

void tp_state_destroy(tp_state_t *st) {
  if (st == NULL)
    return;
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    tp_kind_t *kind = &st->kinds[s];
    tp_table_destroy(kind->table);
    tp_free(kind->rules);
    tp_free(kind->rule_view);
    tp_free(kind->rule_slot);
    tp_free(st->parts[s]);
  }
  pthread_mutex_destroy(&st->reg_lock);
  tp_free(st);
}

/* ---- registry ------------------------------------------------------------ */

tp_err_t tp__state_register(tp_state_t *st, tp_part_t *p) {
  tp_err_t err = TP_OK;
  pthread_mutex_lock(&st->reg_lock);
  int s = p->src;
  for (size_t i = 0; i < st->n_parts[s]; i++)
    if (st->parts[s][i]->partition == p->partition)
      err = TP_EEXIST;
  if (err == TP_OK && st->n_parts[s] == st->cap_parts[s]) {
    size_t cap = st->cap_parts[s] ? st->cap_parts[s] * 2 : 16;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    tp_part_t **a = tp_realloc(st->parts[s], cap * sizeof(*a));
    if (a == NULL) {
      err = TP_ENOMEM;
    } else {
      st->parts[s] = a;
      st->cap_parts[s] = cap;
    }
  }
  if (err == TP_OK)
    st->parts[s][st->n_parts[s]++] = p;
  pthread_mutex_unlock(&st->reg_lock);
  return err;
}

void tp__state_unregister(tp_state_t *st, tp_part_t *p) {
  pthread_mutex_lock(&st->reg_lock);
  int s = p->src;
  for (size_t i = 0; i < st->n_parts[s]; i++) {
    if (st->parts[s][i] == p) {
      st->parts[s][i] = st->parts[s][--st->n_parts[s]];
      break;
    }
  }
  pthread_mutex_unlock(&st->reg_lock);
}

void tp_state_foreach_part(tp_state_t *st, void (*cb)(const tp_part_t *part, void *opaque),
                           void *opaque) {
  pthread_mutex_lock(&st->reg_lock);
  for (int s = 0; s < TP_SRC_COUNT; s++)
    for (size_t i = 0; i < st->n_parts[s]; i++)
      cb(st->parts[s][i], opaque);
  pthread_mutex_unlock(&st->reg_lock);
}

size_t tp__state_key(tp_source_t src, int32_t partition, const char *tp, size_t tp_len,
                     char *key) {
  uint32_t p = (uint32_t)partition;
  key[0] = (char)src;
  key[1] = (char)(p >> 24);
  key[2] = (char)(p >> 16);
  key[3] = (char)(p >> 8);
  key[4] = (char)p;
  memcpy(key + TP_KEY_PREFIX, tp, tp_len);
  return TP_KEY_PREFIX + tp_len;
}

/* ---- windows and metrics ------------------------------------------------- */

void tp__entry_merge_hists(const tp_kind_t *kind, int64_t step, const tp_entry_t *e, int64_t end,
                           int64_t len, tp_hist_merge_t *fr, tp_hist_merge_t *res) {
  int64_t first = (end - len) / step, stop = end / step;
  for (int64_t s = first < 0 ? 0 : first; s < stop; s++) {
    const tp_sup_bucket_t *b = (const tp_sup_bucket_t *)tp__bucket_at(kind, e, (uint64_t)s);
    if (b == NULL)
      continue;
    tp_hist_merge_add(fr, &b->fr);
    tp_hist_merge_add(res, &b->res);
  }
}

void tp__quantiles(tp_hist_merge_t *fr, uint64_t fr_n, tp_hist_merge_t *res, uint64_t res_n,
                   double q[TP_QUANTILES]) {
  q[0] = fr_n ? tp_hist_merge_quantile(fr, 0.50) : NAN;
  q[1] = fr_n ? tp_hist_merge_quantile(fr, 0.90) : NAN;
  q[2] = fr_n ? tp_hist_merge_quantile(fr, 0.99) : NAN;
  q[3] = res_n ? tp_hist_merge_quantile(res, 0.50) : NAN;
  q[4] = res_n ? tp_hist_merge_quantile(res, 0.90) : NAN;
}

static tp_metric_value_t count(uint64_t n, uint64_t samples) {
  return (tp_metric_value_t){(double)n, (int64_t)samples, true};
}

static tp_metric_value_t ratio(double num, uint64_t den, double scale) {
  if (den == 0)
    return (tp_metric_value_t){NAN, 0, false};
  return (tp_metric_value_t){scale * num / (double)den, (int64_t)den, true};
}

static tp_metric_value_t quantile(const double *q, int i, uint64_t n) {
  if (q == NULL || n == 0)
    return (tp_metric_value_t){NAN, 0, false};
  return (tp_metric_value_t){q[i], (int64_t)n, true};
}

tp_metric_value_t tp__metric_value(tp_metric_t m, const uint64_t *w, const double *q) {
  switch (m) {
  /* feedback */
  case TP_METRIC_RESPONSES: return count(w[TP_W_RESPONSES], w[TP_W_RESPONSES]);
  case TP_METRIC_CSAT_MEAN:
  case TP_METRIC_CSAT_PCT:
  case TP_METRIC_DSAT_PCT: {
    const uint64_t *c = w + TP_W_CSAT; /* scores 1..5 */
    uint64_t n = c[0] + c[1] + c[2] + c[3] + c[4];
    if (m == TP_METRIC_CSAT_PCT)
      return ratio((double)(c[3] + c[4]), n, 100);
    if (m == TP_METRIC_DSAT_PCT)
      return ratio((double)(c[0] + c[1]), n, 100);
    double sum = 0;
    for (int i = 0; i < 5; i++)
      sum += (double)(i + 1) * (double)c[i];
    return ratio(sum, n, 1);
  }
  case TP_METRIC_NPS: {
    const uint64_t *c = w + TP_W_NPS;
    return ratio((double)c[0] - (double)c[2], c[0] + c[1] + c[2], 100);
  }
  case TP_METRIC_CES_MEAN: return ratio((double)w[TP_W_CES_SUM], w[TP_W_CES_N], 1);
  case TP_METRIC_CLI_MEAN: return ratio((double)w[TP_W_CLI_SUM3] / 3.0, w[TP_W_CLI_N], 1);
  /* support */
  case TP_METRIC_FIRST_RESPONSE_MS_P50: return quantile(q, 0, w[TP_W_FR_N]);
  case TP_METRIC_FIRST_RESPONSE_MS_P90: return quantile(q, 1, w[TP_W_FR_N]);
  case TP_METRIC_FIRST_RESPONSE_MS_P99: return quantile(q, 2, w[TP_W_FR_N]);
  case TP_METRIC_FIRST_RESPONSE_MS_MEAN: return ratio((double)w[TP_W_FR_SUM], w[TP_W_FR_N], 1);
  case TP_METRIC_RESOLUTION_MS_P50: return quantile(q, 3, w[TP_W_RES_N]);
  case TP_METRIC_RESOLUTION_MS_P90: return quantile(q, 4, w[TP_W_RES_N]);
  case TP_METRIC_RESOLUTION_MS_MEAN: return ratio((double)w[TP_W_RES_SUM], w[TP_W_RES_N], 1);
  case TP_METRIC_FCR_PCT: return ratio((double)w[TP_W_FCR_N], w[TP_W_RES_N], 100);
  case TP_METRIC_TICKETS_OPENED: return count(w[TP_W_OPENED], w[TP_W_OPENED]);
  case TP_METRIC_COMPLAINTS: return count(w[TP_W_COMPLAINTS], w[TP_W_OPENED]);
  case TP_METRIC_FIRST_RESPONSE_SLA_BREACHES:
    return count(w[TP_W_BREACHES], w[TP_W_BREACHES]);
  /* commerce */
  case TP_METRIC_ORDERS: return count(w[TP_W_ORDERS], w[TP_W_ORDERS]);
  case TP_METRIC_RETURNS: return count(w[TP_W_RETURNS], w[TP_W_RETURNS]);
  case TP_METRIC_RETURN_PCT: return ratio((double)w[TP_W_RETURNS], w[TP_W_ORDERS], 100);
  case TP_METRIC_COUNT: break;
  }
  return (tp_metric_value_t){NAN, 0, false};
}

/*
 * Sequence-lock read (see publish() in part.c): every data load is an
 * acquire load, so the final load of the sequence cannot move before them.
 * The metrics are computed after the copy, outside the retry loop.
 */
void tp__snapshot(const tp_kind_t *kind, tp_entry_t *e, tp_snapshot_t *s) {
  const memory_order acq = memory_order_acquire;
  size_t nw = kind->n_views * kind->pub_words;
  size_t nr = kind->n_rules < sizeof(s->phase) ? kind->n_rules : sizeof(s->phase);
  uint64_t w[TP_MAX_VIEWS * (TP_AGG_WORDS_MAX + TP_QUANTILES)] = {0};
  for (;;) {
    uint32_t seq = atomic_load_explicit(&e->view_seq, acq);
    if (seq & 1)
      continue; /* the writer is publishing: a few stores, retry */
    s->view_end = atomic_load_explicit(&e->view_end, acq);
    s->stage = atomic_load_explicit(&e->pub_stage, acq);
    s->channel = atomic_load_explicit(&e->pub_channel, acq);
    /* cppcheck-suppress knownConditionTrueFalse ; 2.10 misreads nr = min(n, sizeof) as < 1 */
    for (size_t r = 0; r < nr; r++)
      s->phase[r] = atomic_load_explicit(&e->pub_phase[r], acq);
    for (size_t i = 0; i < nw; i++)
      w[i] = atomic_load_explicit(&e->sums[i], acq);
    if (atomic_load_explicit(&e->view_seq, memory_order_relaxed) == seq)
      break;
  }
  for (size_t v = 0; v < kind->n_views; v++) {
    const uint64_t *vw = w + v * kind->pub_words;
    double q[TP_QUANTILES];
    bool has_q = kind->pub_words - kind->agg_words == TP_QUANTILES;
    if (has_q)
      memcpy(q, vw + kind->agg_words, sizeof(q));
    for (size_t m = 0; m < kind->n_metrics; m++) {
      tp_metric_value_t mv = tp__metric_value(kind->metrics[m], vw, has_q ? q : NULL);
      size_t i = v * kind->n_metrics + m;
      s->value[i] = mv.defined ? mv.value : NAN;
      s->samples[i] = mv.samples;
    }
  }
}

/* ---- alert ids ---------------------------------------------------------- */

void tp_alert_id(const tp_alert_t *a, char out[33]) {
  /* rule NUL touchpoint NUL state NUL window_end-in-decimal: documented in
   * the README so subscribers can recompute ids. */
  char buf[512];
  size_t n = 0, rl = strlen(a->rule->name);
  const char *state = a->state == TP_ALERT_FIRING ? "FIRING" : "RESOLVED";
  memcpy(buf + n, a->rule->name, rl);
  n += rl;
  buf[n++] = '\0';
  memcpy(buf + n, a->touchpoint, a->touchpoint_len);
  n += a->touchpoint_len;
  buf[n++] = '\0';
  n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s", state);
  buf[n++] = '\0';
  n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%lld", (long long)a->window_end);
  uint64_t h[2];
  tp_hash128(buf, n, 0, h);
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    uint8_t byte = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
    out[2 * i] = hex[byte >> 4];
    out[2 * i + 1] = hex[byte & 15];
  }
  out[32] = '\0';
}

/* ---- views (any thread) -------------------------------------------------- */

static const char *phase_name(uint8_t phase) {
  switch (phase) {
  case TP_RULE_PENDING: return "PENDING";
  case TP_RULE_FIRING: return "FIRING";
  default: return "OK";
  }
}

static void json_value(tp_buf_t *out, double v) {
  if (isnan(v) || isinf(v))
    tp_buf_puts(out, "null");
  else
    tp_buf_double(out, v);
}

static void view_entry_json(tp_state_t *st, const tp_kind_t *kind, tp_entry_t *e,
                            const tp_part_t *part, tp_buf_t *out) {
  int32_t partition = part->partition;
  tp_snapshot_t s;
  tp__snapshot(kind, e, &s);
  /* An entry is only re-evaluated when its windows' contents change (see
   * part.c), so its values hold up to the partition's last boundary. */
  int64_t wm = atomic_load_explicit(&part->stats.watermark, memory_order_relaxed);
  if (s.view_end > 0 && wm != TP_NONE_MS && tp_floor_to(wm, st->cfg->step_ms) > s.view_end)
    s.view_end = tp_floor_to(wm, st->cfg->step_ms);
  char dur[32];
  tp_buf_printf(out, "{\"topic\":\"%s\",\"partition\":%d,\"stage\":\"%s\",\"channel\":\"%s\",",
                st->cfg->topics[kind->src], (int)partition, tp_stage_name(s.stage),
                tp_channel_name(s.channel));
  tp_buf_puts(out, "\"windows\":[");
  for (size_t v = 0; v < kind->n_views; v++) {
    tp_duration_format(kind->view_ms[v], dur, sizeof(dur));
    tp_buf_printf(out, "%s{\"window\":\"%s\",", v ? "," : "", dur);
    if (s.view_end > 0)
      tp_buf_printf(out, "\"window_start\":%lld,\"window_end\":%lld,",
                    (long long)(s.view_end - kind->view_ms[v]), (long long)s.view_end);
    else
      tp_buf_puts(out, "\"window_start\":null,\"window_end\":null,");
    tp_buf_puts(out, "\"metrics\":{");
    for (size_t m = 0; m < kind->n_metrics; m++) {
      size_t i = v * kind->n_metrics + m;
      tp_buf_printf(out, "%s\"%s\":{\"value\":", m ? "," : "", tp_metric_name(kind->metrics[m]));
      json_value(out, s.view_end > 0 ? s.value[i] : NAN);
      tp_buf_printf(out, ",\"samples\":%lld}", (long long)(s.view_end > 0 ? s.samples[i] : 0));
    }
    tp_buf_puts(out, "}}");
  }
  tp_buf_puts(out, "],\"rules\":[");
  bool first = true;
  for (size_t r = 0; r < kind->n_rules && r < sizeof(s.phase); r++) {
    if (!e->rules[r].matches) /* immutable after creation */
      continue;
    const tp_rule_t *rule = kind->rules[r];
    tp_duration_format(rule->window_ms, dur, sizeof(dur));
    tp_buf_puts(out, first ? "{\"name\":\"" : ",{\"name\":\"");
    tp_buf_json_escape(out, rule->name, strlen(rule->name));
    tp_buf_printf(out, "\",\"metric\":\"%s\",\"window\":\"%s\",\"state\":\"%s\"}",
                  tp_metric_name(rule->metric), dur, phase_name(s.phase[r]));
    first = false;
  }
  tp_buf_puts(out, "]}");
}

bool tp_state_view_touchpoint(tp_state_t *st, const char *tp, size_t len, tp_buf_t *out) {
  if (len == 0 || len > TP_TOUCHPOINT_MAX)
    return false;
  bool found = false;
  char key[TP_KEY_PREFIX + TP_TOUCHPOINT_MAX];
  pthread_mutex_lock(&st->reg_lock);
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    const tp_kind_t *kind = &st->kinds[s];
    tp_table_read_begin(kind->table);
    for (size_t i = 0; i < st->n_parts[s]; i++) {
      const tp_part_t *part = st->parts[s][i];
      size_t kl = tp__state_key((tp_source_t)s, part->partition, tp, len, key);
      tp_table_node_t *node = tp_table_get(kind->table, tp_hash64(key, kl, 0), key, kl);
      if (node == NULL)
        continue;
      if (!found) {
        tp_buf_puts(out, "{\"touchpoint\":\"");
        tp_buf_json_escape(out, tp, len);
        tp_buf_puts(out, "\",\"topics\":[");
      } else {
        tp_buf_putc(out, ',');
      }
      found = true;
      view_entry_json(st, kind, (tp_entry_t *)node, part, out);
    }
    tp_table_read_end(kind->table);
  }
  pthread_mutex_unlock(&st->reg_lock);
  if (found)
    tp_buf_puts(out, "]}\n");
  return found;
}

static const tp_metric_t row_fb[] = {TP_METRIC_RESPONSES, TP_METRIC_CSAT_MEAN, TP_METRIC_NPS,
                                     TP_METRIC_CES_MEAN};
static const tp_metric_t row_sup[] = {TP_METRIC_TICKETS_OPENED, TP_METRIC_FIRST_RESPONSE_MS_P90,
                                      TP_METRIC_RESOLUTION_MS_P50, TP_METRIC_COMPLAINTS};
static const tp_metric_t row_com[] = {TP_METRIC_ORDERS, TP_METRIC_RETURNS, TP_METRIC_RETURN_PCT};

const tp_metric_t *tp_state_row_metrics(tp_source_t src, size_t *n) {
  switch (src) {
  case TP_SRC_FEEDBACK: *n = TP_ARRAY_SIZE(row_fb); return row_fb;
  case TP_SRC_SUPPORT: *n = TP_ARRAY_SIZE(row_sup); return row_sup;
  case TP_SRC_COMMERCE: *n = TP_ARRAY_SIZE(row_com); return row_com;
  }
  *n = 0;
  return NULL;
}

typedef struct {
  const tp_kind_t *kind;
  size_t max, n;
  void (*cb)(const tp_state_row_t *row, void *opaque);
  void *opaque;
} rows_ctx_t;

static int row_visit(tp_table_node_t *node, void *opaque) {
  rows_ctx_t *c = opaque;
  if (c->n >= c->max)
    return 1;
  const tp_kind_t *kind = c->kind;
  tp_entry_t *e = (tp_entry_t *)node;
  tp_snapshot_t s;
  tp__snapshot(kind, e, &s);
  tp_state_row_t row;
  memset(&row, 0, sizeof(row));
  size_t tl = node->key_len - TP_KEY_PREFIX;
  memcpy(row.touchpoint, (const char *)node->key + TP_KEY_PREFIX, tl);
  const unsigned char *k = node->key;
  row.source = kind->src;
  row.partition = (int32_t)((uint32_t)k[1] << 24 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 8 | k[4]);
  row.window_end = s.view_end;
  row.window_ms = kind->view_ms[0];
  row.stage = s.stage;
  row.channel = s.channel;
  size_t n;
  const tp_metric_t *ms = tp_state_row_metrics(kind->src, &n);
  for (size_t i = 0; i < n; i++) {
    for (size_t m = 0; m < kind->n_metrics; m++) {
      if (kind->metrics[m] != ms[i])
        continue;
      double v = s.value[m]; /* view 0: the shortest window */
      row.defined[i] = s.view_end > 0 && !isnan(v);
      row.values[i] = v;
      row.samples[i] = s.samples[m];
    }
  }
  for (size_t r = 0; r < kind->n_rules && r < sizeof(s.phase); r++) {
    row.firing += s.phase[r] == TP_RULE_FIRING;
    row.pending += s.phase[r] == TP_RULE_PENDING;
  }
  c->cb(&row, c->opaque);
  c->n++;
  return 0;
}

size_t tp_state_foreach_row(tp_state_t *st, size_t max,
                            void (*cb)(const tp_state_row_t *row, void *opaque), void *opaque) {
  rows_ctx_t c = {NULL, max, 0, cb, opaque};
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    c.kind = &st->kinds[s];
    tp_table_read_begin(c.kind->table);
    tp_table_foreach(c.kind->table, row_visit, &c);
    tp_table_read_end(c.kind->table);
  }
  return c.n;
}

int64_t tp_state_horizon_ms(const tp_state_t *st, tp_source_t src) {
  const tp_config_t *cfg = st->cfg;
  const tp_kind_t *kind = &st->kinds[src];
  /* A PENDING streak of `for` evaluations reaches back as many steps. */
  int64_t max_for = 1;
  for (size_t r = 0; r < kind->n_rules; r++)
    if (kind->rules[r]->for_count > max_for)
      max_for = kind->rules[r]->for_count;
  int64_t h = kind->max_window_ms + cfg->allowed_lateness_ms + max_for * cfg->step_ms;
  if (src == TP_SRC_SUPPORT)
    h += cfg->ticket_ttl_ms;
  return h;
}

size_t tp_state_touchpoints(const tp_state_t *st, tp_source_t src) {
  return tp_table_size(st->kinds[src].table);
}

size_t tp_state_max_touchpoints(const tp_state_t *st) { return (size_t)st->cfg->max_touchpoints; }

uint64_t tp_state_table_overflow(const tp_state_t *st, tp_source_t src) {
  return tp_table_overflow(st->kinds[src].table);
}

bool tp__state_value(tp_state_t *st, tp_source_t src, int32_t partition, const char *tp,
                     int64_t window_ms, tp_metric_t metric, tp_metric_value_t *out,
                     int64_t *window_end) {
  const tp_kind_t *kind = &st->kinds[src];
  char key[TP_KEY_PREFIX + TP_TOUCHPOINT_MAX];
  size_t len = strlen(tp);
  if (len > TP_TOUCHPOINT_MAX)
    return false;
  size_t kl = tp__state_key(src, partition, tp, len, key);
  bool ok = false;
  tp_table_read_begin(kind->table);
  tp_table_node_t *node = tp_table_get(kind->table, tp_hash64(key, kl, 0), key, kl);
  for (size_t v = 0; node != NULL && v < kind->n_views; v++) {
    if (kind->view_ms[v] != window_ms)
      continue;
    for (size_t m = 0; m < kind->n_metrics; m++) {
      if (kind->metrics[m] != metric)
        continue;
      tp_snapshot_t s;
      tp__snapshot(kind, (tp_entry_t *)node, &s);
      size_t i = v * kind->n_metrics + m;
      /* NOLINTBEGIN(clang-analyzer-core.uninitialized.Assign): tp__snapshot()
       * filled s.value[] and s.samples[] up to n_views * n_metrics > i. */
      out->value = s.value[i];
      out->samples = s.samples[i];
      /* NOLINTEND(clang-analyzer-core.uninitialized.Assign) */
      out->defined = s.view_end > 0 && !isnan(s.value[i]);
      if (window_end)
        *window_end = s.view_end;
      ok = true;
    }
  }
  tp_table_read_end(kind->table);
  return ok;
}
