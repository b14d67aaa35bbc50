/*
 * hist.c -- log-bucketed histograms: sparse per step bucket, dense when a
 * window's buckets are merged to read quantiles. See hist.h for the bins.
 */
#include "touchpulse/hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t tp_hist_bin_low(uint32_t b) {
  if (b < TP_HIST_SUB)
    return b;
  uint32_t group = b / TP_HIST_SUB; /* >= 1 */
  uint32_t sub = b % TP_HIST_SUB;
  unsigned shift = group - 1;
  return ((uint64_t)(TP_HIST_SUB + sub)) << shift;
}

double tp_hist_bin_value(uint32_t b) {
  if (b < TP_HIST_SUB)
    return (double)b;
  uint64_t low = tp_hist_bin_low(b);
  uint64_t width = UINT64_C(1) << (b / TP_HIST_SUB - 1);
  /* Midpoint of [low, low + width - 1]: the integers the bin holds. */
  return (double)low + (double)(width - 1) / 2.0;
}

tp_err_t tp_shist_add(tp_shist_t *h, uint64_t v) {
  uint16_t bin = (uint16_t)tp_hist_bin(v);
  for (uint16_t i = 0; i < h->len; i++) {
    if (h->cells[i].bin == bin && h->cells[i].count < UINT32_MAX) {
      h->cells[i].count++;
      return TP_OK;
    }
  }
  if (h->len == h->cap) {
    /* A step bucket rarely sees more than a handful of distinct bins; the
     * array only grows, and a recycled bucket keeps its cells. */
    uint32_t cap = h->cap ? (uint32_t)h->cap * 2 : 4;
    if (cap > UINT16_MAX)
      return TP_EFULL;
    tp_hist_cell_t *cells = tp_realloc(h->cells, cap * sizeof(*cells));
    if (cells == NULL)
      return TP_ENOMEM;
    h->cells = cells;
    h->cap = (uint16_t)cap;
  }
  h->cells[h->len++] = (tp_hist_cell_t){.bin = bin, .count = 1};
  return TP_OK;
}

void tp_shist_free(tp_shist_t *h) {
  tp_free(h->cells);
  h->cells = NULL;
  h->len = h->cap = 0;
}

void tp_hist_merge_init(tp_hist_merge_t *m) { memset(m, 0, sizeof(*m)); }

void tp_hist_merge_add(tp_hist_merge_t *m, const tp_shist_t *h) {
  for (uint16_t i = 0; i < h->len; i++) {
    uint16_t bin = h->cells[i].bin;
    if (m->counts[bin] == 0)
      m->touched[m->n_touched++] = bin;
    /* Saturate rather than wrap: 4 billion replies in one window. */
    uint64_t c = (uint64_t)m->counts[bin] + h->cells[i].count;
    m->counts[bin] = c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
    m->total += h->cells[i].count;
  }
}

static int cmp_u16(const void *a, const void *b) {
  return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

double tp_hist_merge_quantile(tp_hist_merge_t *m, double q) {
  if (m->total == 0)
    return NAN;
  qsort(m->touched, m->n_touched, sizeof(m->touched[0]), cmp_u16);
  uint64_t rank = (uint64_t)ceil(q * (double)m->total);
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  for (uint32_t i = 0; i < m->n_touched; i++) {
    seen += m->counts[m->touched[i]];
    if (seen >= rank)
      return tp_hist_bin_value(m->touched[i]);
  }
  return tp_hist_bin_value(m->touched[m->n_touched - 1]);
}

void tp_hist_merge_clear(tp_hist_merge_t *m) {
  for (uint32_t i = 0; i < m->n_touched; i++)
    m->counts[m->touched[i]] = 0;
  m->n_touched = 0;
  m->total = 0;
}
