/*
 * decode.c -- Avro binary record values to tp_event_t, the first step after
 * the consumer on every record.
 *
 * The decoder is written out by hand for the three input schemas instead of
 * walking a schema at run time: each field is one inlined reader that checks
 * the bytes it needs against the end of the buffer before touching them, so
 * the success path is a straight line of loads, compares and stores with no
 * allocation (Avro-C's generic reader allocates every string and costs 20-30
 * times as much). Everything that can go wrong on the wire or against SPEC's
 * ranges ends in a cold function that formats the detail message, so the
 * formatting code stays out of the hot loop.
 *
 * Because the layout is code, it could silently drift from the .avsc files in
 * schemas/. The field table below is the decoder's own statement of what it
 * reads, in order; tp_decode_check_schemas() parses the embedded .avsc files
 * with Avro-C and compares them with that table at start-up.
 *
 * On x86-64 this file is compiled twice (CMakeLists.txt, tests/fuzz/fuzz.mk):
 * as usual, and with BMI2 and TP_DECODE_BMI2 defined, which compiles nothing
 * but the record decoder, as tp__decode_bmi2(). Its one difference is PEXT in
 * varint_pack(). tp_decode() runs it where the processor has BMI2 and its
 * PEXT is fast (decoder_pick()).
 */
#include <assert.h>
#include <endian.h>
#include <avro.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "decode_int.h"
#include "touchpulse/decode.h"

#ifdef TP_DECODE_BMI2
#include <immintrin.h>
#endif
#ifdef TP_DECODE_HAS_BMI2
#include <cpuid.h>
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
/*
 * The readers are called once per field from three record functions; forcing
 * them inline lets the compiler keep the cursor in a register for the whole
 * record instead of spilling it around calls.
 */
#define HOT static inline __attribute__((always_inline))
#define COLD static __attribute__((cold, noinline))

#define CONFLUENT_HEADER 5 /* 0x00 magic byte + 4-byte big-endian schema id */
#define LONG_MAX_BYTES 10  /* ceil(64 / 7) */
#define INT_MAX_BYTES 5    /* ceil(32 / 7) */

/* ---- reasons ------------------------------------------------------------- */

#ifndef TP_DECODE_BMI2 /* the BMI2 build has the decoder only */

static const char *const reject_labels[TP_REJECT_COUNT] = {
    [TP_REJECT_NONE] = "none",
#define XX(code, label, msg) [TP_REJECT_##code] = (label),
    TP_REJECT_MAP(XX)
#undef XX
};

static const char *const reject_messages[TP_REJECT_COUNT] = {
    [TP_REJECT_NONE] = "record accepted",
#define XX(code, label, msg) [TP_REJECT_##code] = (msg),
    TP_REJECT_MAP(XX)
#undef XX
};

const char *tp_reject_label(tp_reject_t reason) {
  return (unsigned)reason < TP_REJECT_COUNT ? reject_labels[reason] : "unknown";
}

const char *tp_reject_describe(tp_reject_t reason) {
  return (unsigned)reason < TP_REJECT_COUNT ? reject_messages[reason]
                                            : "unknown rejection reason";
}
#endif

/* ---- touchpoint characters ----------------------------------------------- */

/* SPEC: a touchpoint id is 1-128 bytes of [A-Za-z0-9._:/-]. */
#define TOUCHPOINT_CHAR(c)                                                     \
  (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') ||                \
   ((c) >= '0' && (c) <= '9') || (c) == '.' || (c) == '_' || (c) == ':' ||     \
   (c) == '/' || (c) == '-')
#define TC4(c)                                                                 \
  TOUCHPOINT_CHAR(c), TOUCHPOINT_CHAR((c) + 1), TOUCHPOINT_CHAR((c) + 2),      \
      TOUCHPOINT_CHAR((c) + 3)
#define TC16(c) TC4(c), TC4((c) + 4), TC4((c) + 8), TC4((c) + 12)
#define TC64(c) TC16(c), TC16((c) + 16), TC16((c) + 32), TC16((c) + 48)

/* A table, not the range test above, so the check is one load per byte. */
static const uint8_t touchpoint_chars[256] = {TC64(0), TC64(64), TC64(128),
                                              TC64(192)};

#ifndef TP_DECODE_BMI2
int tp_touchpoint_char_ok(unsigned char c) { return touchpoint_chars[c]; }
#endif

/*
 * AND-ing over every byte instead of returning at the first bad one keeps the
 * loop free of data-dependent branches; valid ids are the common case and are
 * read to the end either way.
 */
HOT unsigned touchpoint_chars_ok(const uint8_t *s, size_t len) {
  unsigned ok = 1;
  for (size_t i = 0; i < len; i++)
    ok &= touchpoint_chars[s[i]];
  return ok;
}

#if defined(__SSSE3__)
#include <tmmintrin.h>

/*
 * Bit i is set when byte i of x is not a touchpoint character. A byte's
 * high nibble picks the classes that may hold it, its low nibble those whose
 * range it is in, each by one byte shuffle of a 16-entry table; the byte is
 * allowed when the two share a class. The classes: 1 "-./" (0x2d-0x2f),
 * 2 "0-9:" (0x30-0x3a), 4 A-O and a-o (0x41-0x4f, 0x61-0x6f), 8 P-Z and
 * p-z (0x50-0x5a, 0x70-0x7a), 16 '_' (0x5f). High nibbles 8-f and 0-1 have
 * no class. Eight operations where the range compares below take eleven.
 */
static inline unsigned touchpoint_bad16(__m128i x) {
  const __m128i by_low = _mm_setr_epi8(
      2 | 8, 2 | 4 | 8, 2 | 4 | 8, 2 | 4 | 8, 2 | 4 | 8, 2 | 4 | 8, 2 | 4 | 8,
      2 | 4 | 8, 2 | 4 | 8, 2 | 4 | 8, 2 | 4 | 8, 4, 4, 1 | 4, 1 | 4,
      1 | 4 | 16);
  const __m128i by_high =
      _mm_setr_epi8(0, 0, 1, 2, 4, 8 | 16, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m128i nibble = _mm_set1_epi8(0x0f);
  __m128i lo = _mm_and_si128(x, nibble);
  __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), nibble);
  __m128i both = _mm_and_si128(_mm_shuffle_epi8(by_low, lo),
                               _mm_shuffle_epi8(by_high, hi));
  return (unsigned)_mm_movemask_epi8(
      _mm_cmpeq_epi8(both, _mm_setzero_si128()));
}
#define TOUCHPOINT_SIMD 1
#elif defined(__SSE2__)
#include <emmintrin.h>

/*
 * Bit i is set when byte i of x is not a touchpoint character. The alphabet
 * is three ranges and one byte: '-' to ':' (0x2d-0x3a, which holds
 * "-./0-9:"), letters (x | 0x20 folds A-Z onto a-z and nothing else onto
 * a-z), and '_'. Signed compares are right here: bytes >= 0x80 are negative
 * and fail all.
 */
static inline unsigned touchpoint_bad16(__m128i x) {
  __m128i low = _mm_or_si128(x, _mm_set1_epi8(0x20));
  __m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(low, _mm_set1_epi8(0x60)),
                                _mm_cmplt_epi8(low, _mm_set1_epi8(0x7b)));
  __m128i punct = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(0x2c)),
                                _mm_cmplt_epi8(x, _mm_set1_epi8(0x3b)));
  __m128i under = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x5f));
  return ~(unsigned)_mm_movemask_epi8(
             _mm_or_si128(_mm_or_si128(alpha, punct), under)) &
         0xffff;
}
#define TOUCHPOINT_SIMD 1
#endif

/*
 * The touchpoint check inside a record: s[0..len) with 1 <= len <= 128, and
 * the record readable up to end. Touchpoint lengths vary from record to
 * record, so a byte loop ends in a mispredicted branch most of the time; for
 * ids of up to 32 bytes that are followed by enough of the record, two
 * 16-byte loads and a length mask decide without a data-dependent branch.
 */
HOT unsigned touchpoint_in_record_ok(const uint8_t *s, size_t len,
                                     const uint8_t *end) {
#ifdef TOUCHPOINT_SIMD
  if (LIKELY(len <= 32 && end - s >= 32)) {
    uint64_t bad = touchpoint_bad16(_mm_loadu_si128((const __m128i *)s)) |
                   (uint64_t)touchpoint_bad16(
                       _mm_loadu_si128((const __m128i *)(s + 16)))
                       << 16;
    uint64_t want = (UINT64_C(1) << len) - 1;
    return (bad & want) == 0;
  }
#else
  (void)end;
#endif
  return touchpoint_chars_ok(s, len);
}

#ifndef TP_DECODE_BMI2
int tp_touchpoint_valid(const char *s, size_t len) {
  if (s == NULL || len == 0 || len > TP_TOUCHPOINT_MAX)
    return 0;
  return (int)touchpoint_chars_ok((const uint8_t *)s, len);
}
#endif

/* ---- what the decoder reads ---------------------------------------------- */

typedef enum {
  K_STRING,
  K_LONG,
  K_ENUM,
  K_BOOLEAN,
  K_OPT_STRING, /* ["null", "string"] */
  K_OPT_INT,    /* ["null", "int"] */
  K_OPT_LONG,   /* ["null", "long"] */
} kind_t;

typedef struct {
  const char *name;
  kind_t kind;
  const char *const *symbols; /* K_ENUM: symbol names by index */
  unsigned nsymbols;
} field_t;

enum {
  F_EVENT_ID,
  F_OCCURRED_AT,
  F_TOUCHPOINT,
  F_STAGE,
  F_CHANNEL,
  F_CUSTOMER_ID,
  F_CSAT,
  F_NPS,
  F_CES,
  F_REPURCHASE,
  F_TRY_OTHER,
  F_COMMENT,
  F_TICKET_ID,
  F_SUPPORT_KIND,
  F_COMPLAINT,
  F_ORDER_ID,
  F_COMMERCE_KIND,
  F_AMOUNT_MINOR,
  F_REASON,
  F_COUNT
};

#define XX(s) #s,
static const char *const stage_symbols[] = {TP_STAGE_MAP(XX)};
static const char *const channel_symbols[] = {TP_CHANNEL_MAP(XX)};
static const char *const support_kind_symbols[] = {TP_SUPPORT_KIND_MAP(XX)};
static const char *const commerce_kind_symbols[] = {TP_COMMERCE_KIND_MAP(XX)};
#undef XX

#define ENUM_OF(syms, count) K_ENUM, syms, count
static const field_t fields[F_COUNT] = {
    [F_EVENT_ID] = {"event_id", K_STRING},
    [F_OCCURRED_AT] = {"occurred_at", K_LONG},
    [F_TOUCHPOINT] = {"touchpoint", K_STRING},
    [F_STAGE] = {"stage", ENUM_OF(stage_symbols, TP_STAGE_COUNT)},
    [F_CHANNEL] = {"channel", ENUM_OF(channel_symbols, TP_CHANNEL_COUNT)},
    [F_CUSTOMER_ID] = {"customer_id", K_OPT_STRING},
    [F_CSAT] = {"csat", K_OPT_INT},
    [F_NPS] = {"nps", K_OPT_INT},
    [F_CES] = {"ces", K_OPT_INT},
    [F_REPURCHASE] = {"repurchase", K_OPT_INT},
    [F_TRY_OTHER] = {"try_other", K_OPT_INT},
    [F_COMMENT] = {"comment", K_OPT_STRING},
    [F_TICKET_ID] = {"ticket_id", K_STRING},
    [F_SUPPORT_KIND] = {"kind",
                        ENUM_OF(support_kind_symbols, TP_SUPPORT_KIND_COUNT)},
    [F_COMPLAINT] = {"complaint", K_BOOLEAN},
    [F_ORDER_ID] = {"order_id", K_STRING},
    [F_COMMERCE_KIND] = {"kind", ENUM_OF(commerce_kind_symbols,
                                         TP_COMMERCE_KIND_COUNT)},
    [F_AMOUNT_MINOR] = {"amount_minor", K_OPT_LONG},
    [F_REASON] = {"reason", K_OPT_STRING},
};
#undef ENUM_OF

/*
 * Wire order of each input schema. decode_feedback() and friends below read
 * exactly these fields in exactly this order; keep the two in step.
 */
#ifndef TP_DECODE_BMI2 /* read by tp__decode_check_schema() */
#define COMMON_LAYOUT                                                          \
  F_EVENT_ID, F_OCCURRED_AT, F_TOUCHPOINT, F_STAGE, F_CHANNEL
static const uint8_t feedback_layout[] = {
    COMMON_LAYOUT, F_CUSTOMER_ID, F_CSAT,      F_NPS,
    F_CES,         F_REPURCHASE,  F_TRY_OTHER, F_COMMENT};
static const uint8_t support_layout[] = {COMMON_LAYOUT, F_TICKET_ID,
                                         F_SUPPORT_KIND, F_COMPLAINT};
static const uint8_t commerce_layout[] = {COMMON_LAYOUT, F_ORDER_ID,
                                          F_COMMERCE_KIND, F_AMOUNT_MINOR,
                                          F_REASON};
static const struct {
  const uint8_t *fields;
  size_t count;
} layouts[TP_SRC_COUNT] = {
    [TP_SRC_FEEDBACK] = {feedback_layout, sizeof(feedback_layout)},
    [TP_SRC_SUPPORT] = {support_layout, sizeof(support_layout)},
    [TP_SRC_COMMERCE] = {commerce_layout, sizeof(commerce_layout)},
};
#endif

/* ---- the cursor and the failure path ------------------------------------- */

typedef struct {
  const uint8_t *p;    /* next unread byte; base <= p <= end */
  const uint8_t *end;  /* one past the last byte of the value */
  const uint8_t *base; /* first byte of the value: offsets count from here */
  char *detail;        /* caller's message buffer, may be NULL */
  size_t detail_size;
} dec_t;

#define OFFSET(d, ptr) ((size_t)((const uint8_t *)(ptr) - (d)->base))
#define LEFT(d, ptr) ((size_t)((d)->end - (const uint8_t *)(ptr)))
#define NAME(f) (fields[f].name)

/*
 * The only place that writes the detail. It and the *_fail() functions below
 * take the cursor by value (copied only when a record fails), never by
 * address: a dec_t whose address reaches a non-inlined call would have to
 * live in memory, and the hot path keeps it in registers.
 */
COLD __attribute__((format(printf, 4, 5))) tp_reject_t
reject(char *detail, size_t size, tp_reject_t why, const char *fmt, ...) {
  if (detail == NULL || size == 0)
    return why;
  int n = snprintf(detail, size, "%s: ", tp_reject_label(why));
  if (n >= 0 && (size_t)n < size) {
    va_list ap;
    va_start(ap, fmt);
    /* clang-tidy 14 finds ap uninitialized when it analyzes both builds of
     * this file in one run, and not in either alone. */
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start above */
    vsnprintf(detail + n, size - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return why;
}
#define REJECT(d, why, ...)                                                    \
  reject((d)->detail, (d)->detail_size, TP_REJECT_##why, __VA_ARGS__)

/*
 * A varint that did not end within its byte budget or the buffer. p is its
 * first byte; max is the budget (10 for long, 5 for int).
 */
COLD tp_reject_t varint_fail(dec_t dv, int f, const uint8_t *p,
                             unsigned max) {
  const dec_t *d = &dv;
  size_t left = LEFT(d, p);
  if (left == 0)
    return REJECT(d, TRUNCATED, "field '%s' needs 1 byte at offset %zu, 0 left",
                  NAME(f), OFFSET(d, p));
  if (left < max) {
    size_t i = 0;
    while (i < left && (p[i] & 0x80))
      i++;
    if (i == left)
      return REJECT(d, TRUNCATED,
                    "field '%s' varint at offset %zu continues past the end "
                    "(%zu bytes left)",
                    NAME(f), OFFSET(d, p), left);
  }
  return REJECT(d, BAD_VARINT,
                "field '%s' varint at offset %zu is longer than %u bytes",
                NAME(f), OFFSET(d, p), max);
}

COLD tp_reject_t varint_overflow(dec_t dv, int f, const uint8_t *p,
                                 unsigned max) {
  const dec_t *d = &dv;
  return REJECT(d, BAD_VARINT,
                "field '%s' varint at offset %zu does not fit %s", NAME(f),
                OFFSET(d, p),
                max == LONG_MAX_BYTES ? "64 bits" : "an int (32 bits)");
}

/* ---- readers ------------------------------------------------------------- */

static inline int64_t unzigzag(uint64_t v) {
  return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static inline uint64_t load_le64(const uint8_t *p) {
  uint64_t x;
  memcpy(&x, p, 8);
  return le64toh(x);
}

/* Bit 7 of every byte of x without the continuation bit. */
static inline uint64_t varint_stops(uint64_t x) {
  return ~x & UINT64_C(0x8080808080808080);
}

/*
 * The value of the varint at the start of x, which ends at the lowest bit of
 * stop (non-zero): its 7-bit groups packed by three shift-and-merge steps,
 * or by one PEXT in the BMI2 build. Every record has a timestamp of six
 * bytes to pack; the steps and their six 64-bit masks were about a twelfth
 * of the instructions of a record (cachegrind, bench_decode's mixed set).
 */
static inline uint64_t varint_pack(uint64_t x, uint64_t stop) {
  x &= stop ^ (stop - 1); /* the varint's bytes, up to the last */
#ifdef TP_DECODE_BMI2
  return _pext_u64(x, UINT64_C(0x7f7f7f7f7f7f7f7f));
#else
  x &= UINT64_C(0x7f7f7f7f7f7f7f7f);
  x = ((x & UINT64_C(0x7f007f007f007f00)) >> 1) |
      (x & UINT64_C(0x007f007f007f007f));
  x = ((x & UINT64_C(0x3fff00003fff0000)) >> 2) |
      (x & UINT64_C(0x00003fff00003fff));
  x = ((x & UINT64_C(0x0fffffff00000000)) >> 4) |
      (x & UINT64_C(0x000000000fffffff));
  return x;
#endif
}

/*
 * Reads one varint of at most max bytes into *raw, still zigzag-encoded.
 * Non-minimal encodings (0x80 0x00 for 0) are accepted as Avro allows, but the
 * last of max bytes may only carry the bits the type has left: bit 63 for a
 * long, bits 28-31 for an int, so every accepted value fits its type.
 */
HOT tp_reject_t rd_varint(dec_t *d, int f, unsigned max, uint64_t *raw) {
  const uint8_t *p = d->p;
  size_t left = LEFT(d, p);
  if (LIKELY(left > 0 && p[0] < 0x80)) {
    *raw = p[0];
    d->p = p + 1;
    return TP_REJECT_NONE;
  }
  /*
   * Two to eight bytes with eight in hand (timestamps, lengths of 64 bytes
   * and more): the first byte without the continuation bit ends the varint;
   * its 7-bit groups are packed by three shift-and-merge steps instead of a
   * loop whose exit depends on the data. Longer ones and those near the end
   * of the record take the loop below, which also checks the last byte.
   */
  if (LIKELY(left >= 8)) {
    uint64_t x = load_le64(p);
    uint64_t stop = varint_stops(x);
    unsigned nb = stop != 0 ? (unsigned)__builtin_ctzll(stop) / 8 + 1 : 16;
    if (LIKELY(nb < max)) {
      *raw = varint_pack(x, stop);
      d->p = p + nb;
      return TP_REJECT_NONE;
    }
  }
  size_t n = left < max ? left : max;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t b = p[i];
    v |= (b & 0x7f) << (7 * i);
    if (b < 0x80) {
      if (UNLIKELY(i == max - 1 && b > (max == LONG_MAX_BYTES ? 0x01 : 0x0f)))
        return varint_overflow(*d, f, p, max);
      *raw = v;
      d->p = p + i + 1;
      return TP_REJECT_NONE;
    }
  }
  return varint_fail(*d, f, p, max);
}

/*
 * Return the reason when a reader fails. Outputs of readers are initialised
 * by their callers anyway: the failure paths return before using them, but
 * gcc cannot see through the noinline cold functions and warns.
 */
#define TRY(expr)                                                              \
  do {                                                                         \
    tp_reject_t rc_ = (expr);                                                  \
    if (UNLIKELY(rc_ != TP_REJECT_NONE))                                       \
      return rc_;                                                              \
  } while (0)

HOT tp_reject_t rd_long(dec_t *d, int f, int64_t *out) {
  uint64_t raw = 0;
  TRY(rd_varint(d, f, LONG_MAX_BYTES, &raw));
  *out = unzigzag(raw);
  return TP_REJECT_NONE;
}

COLD tp_reject_t string_fail(dec_t dv, int f, const uint8_t *at,
                             int64_t n) {
  const dec_t *d = &dv;
  if (n < 0)
    return REJECT(d, BAD_LENGTH, "field '%s' has negative length %" PRId64
                  " at offset %zu", NAME(f), n, OFFSET(d, at));
  if ((uint64_t)n <= LEFT(d, d->p))
    return REJECT(d, BAD_LENGTH, "field '%s' length %" PRId64
                  " at offset %zu exceeds 4 GiB", NAME(f), n, OFFSET(d, at));
  return REJECT(d, TRUNCATED, "field '%s' needs %" PRId64
                " bytes at offset %zu, %zu left", NAME(f), n,
                OFFSET(d, d->p), LEFT(d, d->p));
}

/* The string points into the record; nothing is copied. */
HOT tp_reject_t rd_string(dec_t *d, int f, tp_str_t *s) {
  const uint8_t *at = d->p;
  uint64_t raw = 0;
  TRY(rd_varint(d, f, LONG_MAX_BYTES, &raw));
  /*
   * An odd zigzag value is a negative length; tp_str_t holds 32 bits of
   * length. The length is the halved value, no unzigzag: one step fewer
   * between reading a length and knowing where the next field starts.
   */
  uint64_t n = raw >> 1;
  if (UNLIKELY((raw & 1) || n > LEFT(d, d->p) || n > UINT32_MAX))
    return string_fail(*d, f, at, unzigzag(raw));
  s->ptr = (const char *)d->p;
  s->len = (uint32_t)n;
  d->p += n;
  return TP_REJECT_NONE;
}

COLD tp_reject_t union_fail(dec_t dv, int f, const uint8_t *at,
                            uint64_t raw) {
  const dec_t *d = &dv;
  return REJECT(d, BAD_UNION,
                "field '%s' has branch index %" PRId64
                " at offset %zu, the schema has 0 (null) and 1",
                NAME(f), unzigzag(raw), OFFSET(d, at));
}

/* Every union here is ["null", T]: *present says whether T follows. */
HOT tp_reject_t rd_union(dec_t *d, int f, bool *present) {
  const uint8_t *at = d->p;
  /* 0x00 and 0x02 are the only one-byte encodings of 0 and 1 */
  if (LIKELY(at != d->end && (at[0] | 2) == 2)) {
    *present = at[0] != 0;
    d->p = at + 1;
    return TP_REJECT_NONE;
  }
  uint64_t raw = 0;
  TRY(rd_varint(d, f, LONG_MAX_BYTES, &raw));
  if (UNLIKELY((raw | 2) != 2)) /* zigzag: index 0 is 0, index 1 is 2 */
    return union_fail(*d, f, at, raw);
  *present = raw != 0;
  return TP_REJECT_NONE;
}

COLD tp_reject_t enum_fail(dec_t dv, int f, const uint8_t *at,
                           uint64_t raw) {
  const dec_t *d = &dv;
  return REJECT(d, BAD_ENUM,
                "field '%s' has symbol index %" PRId64
                " at offset %zu, the schema has %u symbols",
                NAME(f), unzigzag(raw), OFFSET(d, at), fields[f].nsymbols);
}

/* An enum index is an Avro int. */
HOT tp_reject_t rd_enum(dec_t *d, int f, unsigned nsymbols, uint8_t *out) {
  const uint8_t *at = d->p;
  /*
   * Index k in one byte is the byte 2k (zigzag). With at most 32 symbols
   * the valid bytes are the even ones below 2 * nsymbols <= 64: one test of
   * a bit of a constant mask instead of a varint and a range check.
   */
  _Static_assert(TP_STAGE_COUNT <= 32, "valid bytes fit a 64-bit mask");
  _Static_assert(TP_CHANNEL_COUNT <= 32, "valid bytes fit a 64-bit mask");
  _Static_assert(TP_SUPPORT_KIND_COUNT <= 32, "valid bytes fit a 64-bit mask");
  _Static_assert(TP_COMMERCE_KIND_COUNT <= 32, "valid bytes fit a 64-bit mask");
  uint64_t valid = UINT64_C(0x5555555555555555) >> (64 - 2 * nsymbols);
  if (LIKELY(at != d->end && at[0] < 64 && (valid >> at[0] & 1))) {
    *out = (uint8_t)(at[0] >> 1);
    d->p = at + 1;
    return TP_REJECT_NONE;
  }
  uint64_t raw = 0;
  TRY(rd_varint(d, f, INT_MAX_BYTES, &raw));
  /* Index k >= 0 is 2k in zigzag; odd means negative. */
  if (UNLIKELY(raw >= 2u * nsymbols || (raw & 1)))
    return enum_fail(*d, f, at, raw);
  *out = (uint8_t)(raw >> 1);
  return TP_REJECT_NONE;
}

COLD tp_reject_t boolean_fail(dec_t dv, int f) {
  const dec_t *d = &dv;
  if (d->p == d->end)
    return REJECT(d, TRUNCATED, "field '%s' needs 1 byte at offset %zu, 0 left",
                  NAME(f), OFFSET(d, d->p));
  return REJECT(d, BAD_BOOLEAN, "field '%s' has byte 0x%02x at offset %zu",
                NAME(f), d->p[0], OFFSET(d, d->p));
}

HOT tp_reject_t rd_boolean(dec_t *d, int f, bool *out) {
  if (UNLIKELY(d->p == d->end || d->p[0] > 1))
    return boolean_fail(*d, f);
  *out = d->p[0];
  d->p++;
  return TP_REJECT_NONE;
}

COLD tp_reject_t range_fail(dec_t dv, int f, const uint8_t *at,
                            int64_t v, int lo, int hi) {
  const dec_t *d = &dv;
  return REJECT(d, OUT_OF_RANGE,
                "field '%s' is %" PRId64 " at offset %zu, must be %d-%d",
                NAME(f), v, OFFSET(d, at), lo, hi);
}

/*
 * The scores of a feedback record in wire order, with SPEC's ranges: the
 * one-by-one reader and the five-at-once one below take them from here.
 */
#define SCORES(X)                                                              \
  X(CSAT, csat, 1, 5)                                                          \
  X(NPS, nps, 0, 10)                                                           \
  X(CES, ces, 1, 7)                                                            \
  X(REPURCHASE, repurchase, 0, 10)                                             \
  X(TRY_OTHER, try_other, 0, 10)

/* A ["null", "int"] score, any encoding Avro allows, or the reason. */
HOT tp_reject_t rd_score_general(dec_t *d, int f, int lo, int hi, int8_t *out) {
  bool present = false;
  TRY(rd_union(d, f, &present));
  if (!present) {
    *out = TP_SCORE_NULL;
    return TP_REJECT_NONE;
  }
  const uint8_t *at = d->p;
  uint64_t raw = 0;
  TRY(rd_varint(d, f, INT_MAX_BYTES, &raw));
  int64_t v = unzigzag(raw);
  if (UNLIKELY(v < lo || v > hi))
    return range_fail(*d, f, at, v, lo, hi);
  *out = (int8_t)v;
  return TP_REJECT_NONE;
}

/*
 * A score: TP_SCORE_NULL, or a value within [lo, hi] (0-10 at most).
 *
 * Whether a survey answered a question is close to random from one record to
 * the next, so a branch on the union index would be mispredicted often, and
 * there are five scores per record. Minimally encoded valid scores are one
 * byte (null) or two (index 1, then 0-20 zigzag), so with two bytes in hand
 * the result and the advance are computed without branching on the data; any
 * other shape, valid or not, goes through rd_score_general().
 */
HOT tp_reject_t rd_score(dec_t *d, int f, int lo, int hi, int8_t *out) {
  const uint8_t *p = d->p;
  if (LIKELY(LEFT(d, p) >= 2)) {
    unsigned b0 = p[0], b1 = p[1]; /* b1 belongs to the next field if null */
    unsigned present = b0 >> 1;
    int v = (int)(b1 >> 1) ^ -(int)(b1 & 1);
    unsigned bad = ((b0 | 2) != 2) |
                   (present & ((b1 >> 7) | ((unsigned)(v - lo) >
                                            (unsigned)(hi - lo))));
    if (LIKELY(!bad)) {
      *out = (int8_t)(v | -(int)(present ^ 1)); /* -1 == TP_SCORE_NULL */
      d->p = p + 1 + present;
      return TP_REJECT_NONE;
    }
  }
  return rd_score_general(d, f, lo, hi, out);
}

#if defined(__SSSE3__) && defined(__x86_64__)
#include <tmmintrin.h>

/*
 * The five scores of a feedback record at once (built with SSSE3, which
 * CMakeLists.txt asks for on x86-64). Read one at a time, as rd_score() does,
 * each score costs a bounds check, two loads and the arithmetic above, and
 * where score i + 1 starts depends on score i; that was a third of the
 * decoder's instructions. Here one 16-byte load holds all five (at most ten
 * bytes), read from p or, near the end of the record, from the last 16
 * bytes of the record, which p lies in. For every byte position j,
 * next[j] = j + 1 + (bit 1 of byte j) is where the following score starts if
 * a score starts at j (a union byte is 0 or 2); composing next with itself
 * by byte shuffles gives the five starts s[0..4] and the end s[5] without
 * touching memory again. The union and value bytes are then gathered, checked
 * (unions 0 or 2, values even and within each score's range, times two as
 * zigzag), and turned into the five results together.
 *
 * Returns 0 with nothing written and the cursor untouched when the shape is
 * anything else: a record under 16 bytes, a bad union index or value, a
 * longer encoding Avro allows (padded varints), too few bytes. The caller
 * then reads the scores one by one, which also names what is wrong; the fuzz
 * targets compare both ways with a plain reference reader.
 */
HOT int rd_scores_block(dec_t *d, tp_event_t *ev) {
  if (UNLIKELY(d->end - d->base < 16))
    return 0;
  const uint8_t *w = d->end - 16 < d->p ? d->end - 16 : d->p;
  unsigned k = (unsigned)(d->p - w); /* 0..16: where the first score starts */
  const __m128i b = _mm_loadu_si128((const __m128i *)w);
  const __m128i one = _mm_set1_epi8(1);
  const __m128i zero = _mm_setzero_si128();
  const __m128i n1 = _mm_add_epi8(
      _mm_setr_epi8(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
      _mm_and_si128(_mm_srli_epi16(b, 1), one));
  const __m128i n2 = _mm_shuffle_epi8(n1, n1);
  const __m128i n4 = _mm_shuffle_epi8(n2, n2);
  /* s[i] = next^i(k): lane i takes next^1, ^2 and ^4 as the bits of i say */
  const __m128i bit0 = _mm_setr_epi8(0, -1, 0, -1, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m128i bit1 = _mm_setr_epi8(0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m128i bit2 = _mm_setr_epi8(0, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  __m128i s = _mm_set1_epi8((char)k);
  s = _mm_or_si128(_mm_andnot_si128(bit0, s),
                   _mm_and_si128(bit0, _mm_shuffle_epi8(n1, s)));
  s = _mm_or_si128(_mm_andnot_si128(bit1, s),
                   _mm_and_si128(bit1, _mm_shuffle_epi8(n2, s)));
  s = _mm_or_si128(_mm_andnot_si128(bit2, s),
                   _mm_and_si128(bit2, _mm_shuffle_epi8(n4, s)));
  unsigned end = (unsigned)_mm_extract_epi16(s, 2) >> 8; /* s[5] */
  /*
   * A shuffle index of 16 or more (a score running off the window) wraps
   * around and would send a later start backwards: the starts must rise.
   */
  __m128i rising = _mm_cmpgt_epi8(_mm_srli_si128(s, 1), s);
  __m128i u = _mm_shuffle_epi8(b, s);                    /* union bytes */
  __m128i v = _mm_shuffle_epi8(b, _mm_add_epi8(s, one)); /* value bytes */
  __m128i present = _mm_cmpeq_epi8(u, _mm_set1_epi8(2));
  __m128i union_ok = _mm_or_si128(present, _mm_cmpeq_epi8(u, zero));
  /* a value byte is 2v for v in [lo, hi]: 2v - 2lo within 0..2(hi - lo) */
#define LO2(F, f, lo, hi) 2 * (lo),
#define SPAN2(F, f, lo, hi) 2 * ((hi) - (lo)),
  const __m128i lo2 = _mm_setr_epi8(SCORES(LO2) 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m128i span2 =
      _mm_setr_epi8(SCORES(SPAN2) 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
#undef LO2
#undef SPAN2
  __m128i rel = _mm_sub_epi8(v, lo2);
  __m128i value_ok =
      _mm_and_si128(_mm_cmpeq_epi8(_mm_min_epu8(rel, span2), rel),
                    _mm_cmpeq_epi8(_mm_and_si128(v, one), zero));
  __m128i ok = _mm_and_si128(
      _mm_and_si128(union_ok, rising),
      _mm_or_si128(_mm_andnot_si128(present, union_ok), value_ok));
  if (UNLIKELY((_mm_movemask_epi8(ok) & 0x1f) != 0x1f || end > 16))
    return 0;
  __m128i value = _mm_and_si128(_mm_srli_epi16(v, 1), _mm_set1_epi8(0x7f));
  __m128i res = _mm_or_si128(_mm_and_si128(present, value),
                             _mm_andnot_si128(present, _mm_set1_epi8(-1)));
  uint64_t r = (uint64_t)_mm_cvtsi128_si64(res); /* -1 == TP_SCORE_NULL */
  ev->feedback.csat = (int8_t)r;
  ev->feedback.nps = (int8_t)(r >> 8);
  ev->feedback.ces = (int8_t)(r >> 16);
  ev->feedback.repurchase = (int8_t)(r >> 24);
  ev->feedback.try_other = (int8_t)(r >> 32);
  d->p = w + end;
  return 1;
}
#else
HOT int rd_scores_block(const dec_t *d, const tp_event_t *ev) {
  (void)d;
  (void)ev;
  return 0;
}
#endif

/* ---- value speculation --------------------------------------------------- */

/*
 * Where a field ends is where the next one starts, so a record's fields form
 * one chain: load a length, add it to the cursor, load the next length. Every
 * link waits for a load, and a record is too long for the processor to run
 * much of the next record's chain alongside. Some fields keep their length
 * from record to record because their producer formats them one way: event,
 * ticket, order and customer ids (UUIDs and other generated ids), occurred_at
 * (every millisecond timestamp from 1970-07 to 2039 is a 6-byte varint). For
 * those the cursor advances by a guess that is in a register before the
 * record is read, the length this thread read for the same field last time,
 * and a compare confirms it: the processor runs ahead on the guess as on any
 * predicted branch, instead of waiting for the load. A wrong guess costs a
 * mispredicted branch and the plain reader, whose length becomes the next
 * guess. Touchpoints and comments vary from record to record and are read
 * the plain way.
 *
 * The guesses change nothing but speed: what is accepted, and every value,
 * is what the plain readers give. They are per thread, so workers do not
 * share them, and a thread decoding several producers' formats in turn only
 * guesses wrong more often.
 */
static _Thread_local uint8_t len_hint[F_COUNT];

/*
 * The compiler knows the guess equals the loaded length on the fast path and
 * may compute the cursor from either: this hides the relation so that it
 * uses the guess, which does not wait for the load.
 */
#define FROM_GUESS(ptr) __asm__("" : "+r"(ptr))

/* rd_string() with a guessed length of 1-63 bytes (a one-byte varint). */
HOT tp_reject_t rd_string_hinted(dec_t *d, int f, tp_str_t *s) {
  const uint8_t *p = d->p;
  /* 0: no guess, but an empty string then holds it, and is read right */
  unsigned h = len_hint[f];
  if (LIKELY(LEFT(d, p) > h && p[0] == 2 * h)) {
    const uint8_t *next = p + 1 + h;
    FROM_GUESS(next);
    s->ptr = (const char *)p + 1;
    s->len = h;
    d->p = next;
    return TP_REJECT_NONE;
  }
  TRY(rd_string(d, f, s));
  len_hint[f] = s->len < 64 ? (uint8_t)s->len : 0;
  return TP_REJECT_NONE;
}

/* rd_long() with a guessed encoding of 1-8 bytes. */
HOT tp_reject_t rd_long_hinted(dec_t *d, int f, int64_t *out) {
  const uint8_t *p = d->p;
  unsigned h = len_hint[f]; /* 0: no guess */
  if (LIKELY(h != 0 && LEFT(d, p) >= 8)) {
    uint64_t x = load_le64(p);
    uint64_t stop = varint_stops(x);
    uint64_t last = UINT64_C(0x80) << (8 * (h - 1));
    /* the guess holds when byte h - 1 is the first without continuation */
    if (LIKELY((stop & (last | (last - 1))) == last)) {
      const uint8_t *next = p + h;
      FROM_GUESS(next);
      *out = unzigzag(varint_pack(x, stop));
      d->p = next;
      return TP_REJECT_NONE;
    }
  }
  TRY(rd_long(d, f, out));
  size_t nb = (size_t)(d->p - p);
  len_hint[f] = nb <= 8 ? (uint8_t)nb : 0;
  return TP_REJECT_NONE;
}

/*
 * rd_string() for free text (comments, reasons): its length is a one-byte
 * varint under 64 bytes and two bytes from 64 to 8191, and which of the two
 * changes from record to record. Both bytes are loaded and the length is
 * computed without a branch on its size, in five steps where the general
 * reader's packing takes a dozen; the end of the record waits for it. Any
 * other shape, valid or not, takes rd_string().
 */
HOT tp_reject_t rd_text(dec_t *d, int f, tp_str_t *s) {
  const uint8_t *p = d->p;
  size_t left = LEFT(d, p);
  if (LIKELY(left >= 2)) {
    uint32_t b0 = p[0], b1 = p[1]; /* b1 is the text's if b0 < 0x80 */
    uint32_t two = b0 >> 7;
    uint32_t raw = (b0 & 0x7f) | ((b1 << 7) & -two);
    size_t head = 1 + two, n = raw >> 1;
    /* odd: a negative length; b1 >= 0x80: a third byte follows */
    if (LIKELY(!((raw & 1) | (two & (b1 >> 7))) && head + n <= left)) {
      s->ptr = (const char *)p + head;
      s->len = (uint32_t)n;
      d->p = p + head + n;
      return TP_REJECT_NONE;
    }
  }
  return rd_string(d, f, s);
}

/*
 * A ["null", "string"]: ptr NULL when null. hinted (a constant) reads an id
 * with rd_string_hinted(), otherwise text with rd_text().
 */
HOT tp_reject_t rd_opt_string(dec_t *d, int f, tp_str_t *s, bool hinted) {
  bool present = false;
  TRY(rd_union(d, f, &present));
  if (!present) {
    s->ptr = NULL;
    s->len = 0;
    return TP_REJECT_NONE;
  }
  return hinted ? rd_string_hinted(d, f, s) : rd_text(d, f, s);
}

/* ---- field rules --------------------------------------------------------- */

COLD tp_reject_t id_fail(dec_t dv, int f, tp_reject_t why, tp_str_t s) {
  const dec_t *d = &dv;
  return reject(d->detail, d->detail_size, why,
                "field '%s' is %" PRIu32
                " bytes at offset %zu, must be 1-%d",
                NAME(f), s.len, OFFSET(d, s.ptr), TP_ID_MAX);
}

/* event_id, ticket_id and order_id: 1-128 bytes, any content. */
HOT tp_reject_t check_id(const dec_t *d, int f, tp_reject_t why, tp_str_t s) {
  if (UNLIKELY(s.len - 1u >= TP_ID_MAX)) /* len 0 wraps around */
    return id_fail(*d, f, why, s);
  return TP_REJECT_NONE;
}

COLD tp_reject_t touchpoint_fail(dec_t dv, tp_str_t s) {
  const dec_t *d = &dv;
  if (s.len == 0 || s.len > TP_TOUCHPOINT_MAX)
    return REJECT(d, BAD_TOUCHPOINT,
                  "field 'touchpoint' is %" PRIu32
                  " bytes at offset %zu, must be 1-%d",
                  s.len, OFFSET(d, s.ptr), TP_TOUCHPOINT_MAX);
  size_t i = 0;
  while (i + 1 < s.len && touchpoint_chars[(uint8_t)s.ptr[i]])
    i++;
  return REJECT(d, BAD_TOUCHPOINT,
                "field 'touchpoint' has byte 0x%02x at offset %zu, "
                "allowed are [A-Za-z0-9._:/-]",
                (uint8_t)s.ptr[i], OFFSET(d, s.ptr + i));
}

COLD tp_reject_t comment_fail(dec_t dv, tp_str_t s) {
  const dec_t *d = &dv;
  return REJECT(d, COMMENT_TOO_LONG,
                "field 'comment' is %" PRIu32
                " bytes at offset %zu, at most %d",
                s.len, OFFSET(d, s.ptr), TP_COMMENT_MAX);
}

COLD tp_reject_t occurred_at_fail(dec_t dv, const uint8_t *at,
                                  int64_t v) {
  const dec_t *d = &dv;
  return REJECT(d, OUT_OF_RANGE,
                "field 'occurred_at' is %" PRId64
                " at offset %zu, must be >= 0",
                v, OFFSET(d, at));
}

/* ---- records ------------------------------------------------------------- */

HOT tp_reject_t decode_common(dec_t *d, tp_event_t *ev) {
  TRY(rd_string_hinted(d, F_EVENT_ID, &ev->event_id));
  TRY(check_id(d, F_EVENT_ID, TP_REJECT_BAD_EVENT_ID, ev->event_id));

  const uint8_t *at = d->p;
  TRY(rd_long_hinted(d, F_OCCURRED_AT, &ev->occurred_at));
  if (UNLIKELY(ev->occurred_at < 0))
    return occurred_at_fail(*d, at, ev->occurred_at);

  TRY(rd_string(d, F_TOUCHPOINT, &ev->touchpoint));
  tp_str_t tp = ev->touchpoint;
  if (UNLIKELY(tp.len - 1u >= TP_TOUCHPOINT_MAX ||
               !touchpoint_in_record_ok((const uint8_t *)tp.ptr, tp.len,
                                        d->end)))
    return touchpoint_fail(*d, tp);

  TRY(rd_enum(d, F_STAGE, TP_STAGE_COUNT, &ev->stage));
  TRY(rd_enum(d, F_CHANNEL, TP_CHANNEL_COUNT, &ev->channel));
  return TP_REJECT_NONE;
}

HOT tp_reject_t decode_feedback(dec_t *d, tp_event_t *ev) {
  TRY(decode_common(d, ev));
  TRY(rd_opt_string(d, F_CUSTOMER_ID, &ev->feedback.customer_id, true));
  if (!rd_scores_block(d, ev)) {
#define READ_SCORE(F, f, lo, hi) TRY(rd_score(d, F_##F, lo, hi, &ev->feedback.f));
    SCORES(READ_SCORE)
#undef READ_SCORE
  }
  TRY(rd_opt_string(d, F_COMMENT, &ev->feedback.comment, false));
  if (UNLIKELY(ev->feedback.comment.len > TP_COMMENT_MAX))
    return comment_fail(*d, ev->feedback.comment);
  return TP_REJECT_NONE;
}

HOT tp_reject_t decode_support(dec_t *d, tp_event_t *ev) {
  TRY(decode_common(d, ev));
  TRY(rd_string_hinted(d, F_TICKET_ID, &ev->support.ticket_id));
  TRY(check_id(d, F_TICKET_ID, TP_REJECT_BAD_ID, ev->support.ticket_id));
  TRY(rd_enum(d, F_SUPPORT_KIND, TP_SUPPORT_KIND_COUNT, &ev->support.kind));
  TRY(rd_boolean(d, F_COMPLAINT, &ev->support.complaint));
  return TP_REJECT_NONE;
}

HOT tp_reject_t decode_commerce(dec_t *d, tp_event_t *ev) {
  TRY(decode_common(d, ev));
  TRY(rd_string_hinted(d, F_ORDER_ID, &ev->commerce.order_id));
  TRY(check_id(d, F_ORDER_ID, TP_REJECT_BAD_ID, ev->commerce.order_id));
  TRY(rd_enum(d, F_COMMERCE_KIND, TP_COMMERCE_KIND_COUNT, &ev->commerce.kind));
  bool present = false;
  TRY(rd_union(d, F_AMOUNT_MINOR, &present));
  ev->commerce.has_amount = present;
  ev->commerce.amount_minor = 0;
  if (present)
    TRY(rd_long(d, F_AMOUNT_MINOR, &ev->commerce.amount_minor));
  TRY(rd_opt_string(d, F_REASON, &ev->commerce.reason, false));
  return TP_REJECT_NONE;
}

/* tp_decode(), in whichever build this is (see the top of the file). */
HOT tp_reject_t decode_record(tp_source_t src, const void *buf, size_t len,
                              /* NOLINTNEXTLINE(readability-non-const-parameter): reject() writes it */
                              tp_event_t *ev, char *detail,
                              size_t detail_size) {
  assert(ev != NULL);
  dec_t d = {.p = buf, .end = buf, .base = buf, .detail = detail,
             .detail_size = detail_size};
  if (UNLIKELY(buf == NULL || len == 0))
    return REJECT(&d, EMPTY, "record has no value");
  d.end = d.p + len;
  /*
   * A plain record starts with event_id's length, and event_id is never
   * empty, so a leading 0x00 can only be the Confluent magic byte. The schema
   * id is not looked up: the topic already says which schema applies, and
   * tp_decode_check_schemas() vouches for it.
   */
  if (d.p[0] == 0x00) {
    if (UNLIKELY(len < CONFLUENT_HEADER))
      return REJECT(&d, BAD_FRAMING,
                    "record starts with the Confluent magic byte 0x00 but has "
                    "%zu bytes, the header needs %d",
                    len, CONFLUENT_HEADER);
    d.p += CONFLUENT_HEADER;
  }

  tp_reject_t rc;
  ev->source = src;
  switch (src) {
  case TP_SRC_FEEDBACK:
    rc = decode_feedback(&d, ev);
    break;
  case TP_SRC_SUPPORT:
    rc = decode_support(&d, ev);
    break;
  case TP_SRC_COMMERCE:
    rc = decode_commerce(&d, ev);
    break;
  default:
    return REJECT(&d, UNKNOWN_TOPIC, "source %d has no input schema", (int)src);
  }
  if (UNLIKELY(rc != TP_REJECT_NONE))
    return rc;
  if (UNLIKELY(d.p != d.end))
    return REJECT(&d, TRAILING_BYTES,
                  "%zu bytes after the last field, at offset %zu",
                  LEFT(&d, d.p), OFFSET(&d, d.p));
  return TP_REJECT_NONE;
}

#ifdef TP_DECODE_BMI2

tp_reject_t tp__decode_bmi2(tp_source_t src, const void *buf, size_t len,
                            tp_event_t *ev, char *detail, size_t detail_size) {
  return decode_record(src, buf, len, ev, detail, detail_size);
}

#else /* the rest of the file is the plain build's alone */

#ifdef TP_DECODE_HAS_BMI2
/*
 * Whether the processor has BMI2 and a PEXT that takes a few cycles: every
 * Intel processor with BMI2 does. AMD's Zen and Zen 2 (family 17h), and
 * Hygon's Dhyana built on them (18h), run PEXT in microcode, taking tens to
 * hundreds of cycles depending on the mask; Zen 3 (19h) and later do it in
 * hardware.
 */
static bool cpu_pext_fast(void) {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, NULL) < 7)
    return false;
  __cpuid_count(7, 0, a, b, c, d);
  if (!(b & bit_BMI2))
    return false;
  char vendor[12];
  __cpuid(0, a, b, c, d);
  memcpy(vendor, &b, 4);
  memcpy(vendor + 4, &d, 4);
  memcpy(vendor + 8, &c, 4);
  if (memcmp(vendor, "AuthenticAMD", 12) != 0 &&
      memcmp(vendor, "HygonGenuine", 12) != 0)
    return true;
  __cpuid(1, a, b, c, d);
  unsigned family = (a >> 8) & 0xf;
  if (family == 0xf)
    family += (a >> 20) & 0xff;
  return family >= 0x19;
}

static bool decoder_bmi2; /* set before main() and by tp__decode_select() */

__attribute__((constructor)) static void decoder_pick(void) {
  decoder_bmi2 = cpu_pext_fast();
}

tp_decoder_t tp__decode_select(tp_decoder_t want) {
  decoder_bmi2 = want == TP_DECODER_PLAIN ? false : cpu_pext_fast();
  return decoder_bmi2 ? TP_DECODER_BMI2 : TP_DECODER_PLAIN;
}
#else
tp_decoder_t tp__decode_select(tp_decoder_t want) {
  (void)want;
  return TP_DECODER_PLAIN;
}
#endif

#ifdef TP_DECODE_HAS_BMI2
/*
 * Out of line, so that tp_decode() is two tail calls: inlined there, the
 * plain decoder's register saves would come before the test of the flag.
 */
static __attribute__((noinline)) tp_reject_t
decode_plain(tp_source_t src, const void *buf, size_t len, tp_event_t *ev,
             char *detail, size_t detail_size) {
  return decode_record(src, buf, len, ev, detail, detail_size);
}
#else
#define decode_plain decode_record
#endif

tp_reject_t tp_decode(tp_source_t src, const void *buf, size_t len,
                      tp_event_t *ev, char *detail, size_t detail_size) {
#ifdef TP_DECODE_HAS_BMI2
  if (LIKELY(decoder_bmi2))
    return tp__decode_bmi2(src, buf, len, ev, detail, detail_size);
#endif
  return decode_plain(src, buf, len, ev, detail, detail_size);
}

bool tp_peek_event_id(const void *buf, size_t len, const char **id, size_t *id_len) {
  if (buf == NULL || len == 0)
    return false;
  dec_t d = {.p = buf, .end = (const uint8_t *)buf + len, .base = buf};
  if (d.p[0] == 0x00) { /* the Confluent header, as in tp_decode() */
    if (len < CONFLUENT_HEADER)
      return false;
    d.p += CONFLUENT_HEADER;
  }
  tp_str_t s = {NULL, 0};
  if (rd_string(&d, F_EVENT_ID, &s) != TP_REJECT_NONE || s.len == 0 || s.len > TP_ID_MAX)
    return false;
  *id = s.ptr;
  *id_len = s.len;
  return true;
}

/* ---- schemas ------------------------------------------------------------- */

const char *tp_schema_json(tp_source_t src) {
  switch (src) {
  case TP_SRC_FEEDBACK:
    return tp_schema_feedback_json;
  case TP_SRC_SUPPORT:
    return tp_schema_support_json;
  case TP_SRC_COMMERCE:
    return tp_schema_commerce_json;
  }
  return NULL;
}

static const char *avro_type_word(avro_schema_t s) {
  switch (avro_typeof(s)) {
  case AVRO_STRING: return "string";
  case AVRO_BYTES: return "bytes";
  case AVRO_INT32: return "int";
  case AVRO_INT64: return "long";
  case AVRO_FLOAT: return "float";
  case AVRO_DOUBLE: return "double";
  case AVRO_BOOLEAN: return "boolean";
  case AVRO_NULL: return "null";
  case AVRO_RECORD: return "record";
  case AVRO_ENUM: return "enum";
  case AVRO_FIXED: return "fixed";
  case AVRO_MAP: return "map";
  case AVRO_ARRAY: return "array";
  case AVRO_UNION: return "union";
  case AVRO_LINK: return "named type reference";
  }
  return "invalid";
}

static const char *kind_words(kind_t k) {
  switch (k) {
  case K_STRING: return "string";
  case K_LONG: return "long";
  case K_ENUM: return "enum";
  case K_BOOLEAN: return "boolean";
  case K_OPT_STRING: return "[null, string]";
  case K_OPT_INT: return "[null, int]";
  case K_OPT_LONG: return "[null, long]";
  }
  return "?";
}

/* A reference to an enum defined by an earlier field stands for that enum. */
static avro_schema_t follow_links(avro_schema_t s) {
  while (s != NULL && is_avro_link(s))
    s = avro_schema_link_target(s);
  return s;
}

/* "[null, long]" for a union, else the type word. */
static void describe_type(avro_schema_t s, char *out, size_t size) {
  s = follow_links(s);
  if (!is_avro_union(s)) {
    snprintf(out, size, "%s", avro_type_word(s));
    return;
  }
  size_t used = 0;
  size_t nb = avro_schema_union_size(s);
  used += (size_t)snprintf(out, size, "[");
  for (size_t i = 0; i < nb && used < size; i++) {
    avro_schema_t b = follow_links(avro_schema_union_branch(s, (int)i));
    used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "",
                             avro_type_word(b));
  }
  if (used < size)
    snprintf(out + used, size - used, "]");
}

static bool type_is(avro_schema_t s, avro_type_t t) {
  return s != NULL && avro_typeof(s) == t;
}

static bool kind_matches(avro_schema_t s, kind_t k) {
  switch (k) {
  case K_STRING: return type_is(s, AVRO_STRING);
  case K_LONG: return type_is(s, AVRO_INT64);
  case K_ENUM: return type_is(s, AVRO_ENUM);
  case K_BOOLEAN: return type_is(s, AVRO_BOOLEAN);
  case K_OPT_STRING:
  case K_OPT_INT:
  case K_OPT_LONG:
    break;
  }
  if (!type_is(s, AVRO_UNION) || avro_schema_union_size(s) != 2)
    return false;
  avro_type_t want = k == K_OPT_STRING ? AVRO_STRING
                     : k == K_OPT_INT  ? AVRO_INT32
                                       : AVRO_INT64;
  return type_is(follow_links(avro_schema_union_branch(s, 0)), AVRO_NULL) &&
         type_is(follow_links(avro_schema_union_branch(s, 1)), want);
}

/* @returns 0, or -1 with the difference (without the source prefix) in err. */
static int check_field(int index, const char *name, avro_schema_t s,
                       const field_t *want, char *err, size_t size) {
  if (strcmp(name, want->name) != 0) {
    snprintf(err, size, "field %d is '%s', the decoder reads '%s' there", index,
             name, want->name);
    return -1;
  }
  s = follow_links(s);
  if (!kind_matches(s, want->kind)) {
    char got[96];
    describe_type(s, got, sizeof(got));
    snprintf(err, size, "field %d '%s' is %s, the decoder reads %s", index,
             name, got, kind_words(want->kind));
    return -1;
  }
  if (want->kind != K_ENUM)
    return 0;
  unsigned n = (unsigned)avro_schema_enum_number_of_symbols(s);
  for (unsigned i = 0; i < n || i < want->nsymbols; i++) {
    const char *sym = i < n ? avro_schema_enum_get(s, (int)i) : NULL;
    if (i >= want->nsymbols) {
      snprintf(err, size,
               "field %d '%s': enum symbol %u '%s' is unknown to the decoder, "
               "which reads %u symbols",
               index, name, i, sym, want->nsymbols);
      return -1;
    }
    if (sym == NULL) {
      snprintf(err, size,
               "field %d '%s': enum has %u symbols, the decoder reads %u "
               "(missing '%s')",
               index, name, n, want->nsymbols, want->symbols[i]);
      return -1;
    }
    if (strcmp(sym, want->symbols[i]) != 0) {
      snprintf(err, size,
               "field %d '%s': enum symbol %u is '%s', the decoder reads "
               "index %u as '%s'",
               index, name, i, sym, i, want->symbols[i]);
      return -1;
    }
  }
  return 0;
}

tp_err_t tp__decode_check_schema(tp_source_t src, const char *json, size_t len,
                                 char *errstr, size_t errstr_size) {
  char err[256];
  avro_schema_t schema = NULL;
  int failed = 0;

  if ((unsigned)src >= TP_SRC_COUNT || json == NULL) {
    snprintf(err, sizeof(err), "no input schema for source %d", (int)src);
    failed = 1;
  } else if (avro_schema_from_json_length(json, len, &schema) != 0) {
    snprintf(err, sizeof(err), "Avro-C cannot parse it: %s", avro_strerror());
    schema = NULL;
    failed = 1;
  } else if (!is_avro_record(schema)) {
    snprintf(err, sizeof(err), "top-level type is %s, expected a record",
             avro_type_word(schema));
    failed = 1;
  } else {
    const uint8_t *want = layouts[src].fields;
    size_t nwant = layouts[src].count;
    size_t nhave = avro_schema_record_size(schema);
    for (size_t i = 0; i < nhave && i < nwant && !failed; i++) {
      const char *name = avro_schema_record_field_name(schema, (int)i);
      avro_schema_t fs = avro_schema_record_field_get_by_index(schema, (int)i);
      failed = check_field((int)i, name != NULL ? name : "?", fs,
                           &fields[want[i]], err, sizeof(err)) != 0;
    }
    if (!failed && nhave > nwant) {
      snprintf(err, sizeof(err),
               "extra field %zu '%s' after the %zu fields the decoder reads",
               nwant, avro_schema_record_field_name(schema, (int)nwant), nwant);
      failed = 1;
    } else if (!failed && nhave < nwant) {
      snprintf(err, sizeof(err),
               "field %zu '%s' is missing (the schema has %zu)",
               nhave, fields[want[nhave]].name, nhave);
      failed = 1;
    }
  }
  if (schema != NULL)
    avro_schema_decref(schema);
  if (!failed)
    return TP_OK;
  if (errstr != NULL && errstr_size > 0)
    snprintf(errstr, errstr_size, "%s schema: %s", tp_source_name(src), err);
  return TP_ESCHEMA;
}

tp_err_t tp_decode_check_schemas(char *errstr, size_t errstr_size) {
  for (int src = 0; src < TP_SRC_COUNT; src++) {
    const char *json = tp_schema_json((tp_source_t)src);
    tp_err_t err = tp__decode_check_schema((tp_source_t)src, json, strlen(json),
                                           errstr, errstr_size);
    if (err != TP_OK)
      return err;
  }
  return TP_OK;
}

#endif /* TP_DECODE_BMI2 */
