/*
 * hist.h -- log-bucketed histograms for response times.
 *
 * A value v >= 0 (milliseconds) falls in a bin found from its bit length and
 * its next TP_HIST_SUB_BITS bits, HDR-histogram style: values below 2^SUB are
 * exact, above that every power of two is split into 2^SUB equal bins. The
 * bin's midpoint is within 2^-(SUB+1) = 0.78 % of any value in it, inside
 * SPEC's 1 % bound, and finding a bin costs one count-leading-zeros, no log().
 *
 * Histograms merge by adding bin counts, so a window's histogram is the sum of
 * its step buckets' histograms. Step buckets hold sparse histograms (the few
 * bins their observations touched); a window is merged into a dense scratch.
 */
#ifndef TOUCHPULSE_HIST_H
#define TOUCHPULSE_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "touchpulse/common.h"

#define TP_HIST_SUB_BITS 6
#define TP_HIST_SUB (1u << TP_HIST_SUB_BITS)
/* Values are clamped to 2^40 - 1 ms (34 years): 40 - SUB + 1 groups. */
#define TP_HIST_MAX_VALUE ((UINT64_C(1) << 40) - 1)
#define TP_HIST_BINS ((40 - TP_HIST_SUB_BITS + 1) * TP_HIST_SUB)

/** @returns the bin of v (clamped to TP_HIST_MAX_VALUE). */
static inline uint32_t tp_hist_bin(uint64_t v) {
  if (v > TP_HIST_MAX_VALUE)
    v = TP_HIST_MAX_VALUE;
  if (v < TP_HIST_SUB)
    return (uint32_t)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
  unsigned shift = msb - TP_HIST_SUB_BITS;
  return (shift + 1) * TP_HIST_SUB + (uint32_t)((v >> shift) & (TP_HIST_SUB - 1));
}

/** @returns the smallest value of bin b. */
uint64_t tp_hist_bin_low(uint32_t b);
/** @returns the value reported for bin b: exact below 2^SUB, else the midpoint. */
double tp_hist_bin_value(uint32_t b);

/* ---- sparse histogram of one step bucket (owner thread only) ---------- */

typedef struct {
  uint16_t bin;
  uint16_t pad_;
  uint32_t count;
} tp_hist_cell_t;

typedef struct {
  tp_hist_cell_t *cells; /* unordered; grown by doubling, kept on reset */
  uint16_t len, cap;
} tp_shist_t;

/** Count one observation. @returns TP_OK or TP_ENOMEM (cell array growth). */
tp_err_t tp_shist_add(tp_shist_t *h, uint64_t v);
static inline void tp_shist_reset(tp_shist_t *h) { h->len = 0; }
void tp_shist_free(tp_shist_t *h);

/* ---- dense merge scratch --------------------------------------------- */

typedef struct {
  uint32_t counts[TP_HIST_BINS];
  uint16_t touched[TP_HIST_BINS]; /* bins with a non-zero count */
  uint32_t n_touched;
  uint64_t total;
} tp_hist_merge_t;

void tp_hist_merge_init(tp_hist_merge_t *m);
void tp_hist_merge_add(tp_hist_merge_t *m, const tp_shist_t *h);
/**
 * @brief Nearest-rank quantile: the value of the ceil(q * total)-th smallest
 *        observation's bin. Sorts the touched list on first call.
 * @returns NaN when total is 0.
 */
double tp_hist_merge_quantile(tp_hist_merge_t *m, double q);
/** Clear the bins that were touched (cost proportional to them). */
void tp_hist_merge_clear(tp_hist_merge_t *m);

#endif
