/*
 * fuzz_decode_diff.c -- the differential target: random VALID records of
 * each input schema, encoded by Avro-C, must decode with tp_decode() to
 * exactly the values they were made from.
 *
 * The fuzz input is a stream of choices (fuzz_common.h: byte by byte, then a
 * PRNG seeded with its hash), from which one record of each schema is built
 * per run: string lengths biased to their limits (1, 15-17, 31-33, 128 and
 * 4096 bytes), arbitrary bytes in ids and comments, scores null or at their
 * bounds, timestamps and amounts at the int64 limits. For each record:
 *   1. Avro-C's avro_value_write() encodes it; tp_encode_event() must write
 *      the same bytes;
 *   2. tp_decode() of those bytes, plain and behind a Confluent header with
 *      a schema id from the input, returns every field equal to the record;
 *   3. Avro-C's own reader returns the record too (the reference agrees
 *      with itself);
 *   4. the same values with varints padded to non-minimal lengths (Avro
 *      allows them; up to 10 bytes for a long, 5 for an int) decode to the
 *      same values with tp_decode() and with Avro-C;
 *   5. strict prefixes of the record are rejected, and a record with a byte
 *      appended is rejected as trailing_bytes.
 * Any difference calls abort().
 */
#include "fixtures/avro_ref.h"
#include "fuzz_common.h"
#include "touchpulse/decode.h"
#include "touchpulse/encode.h"

#define BUF_CAP (2 * TP_COMMENT_MAX + 2048)
#define CUSTOMER_MAX 300
#define REASON_MAX 200

static ref_t ref;

FUZZ_SUPPRESS_AVRO_C_LEAKS

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  ref_init(&ref);
  return 0;
}

/* ---- generating a valid record from the choices ------------------------- */

typedef struct {
  char event_id[TP_ID_MAX];
  char touchpoint[TP_TOUCHPOINT_MAX];
  char id[TP_ID_MAX];
  char customer_id[CUSTOMER_MAX];
  char text[TP_COMMENT_MAX];
} strings_t;

static const char touchpoint_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-";

/* A length in [lo, hi], often at an edge the decoder treats specially. */
static size_t fz_gen_len(fuzz_src_t *s, size_t lo, size_t hi) {
  static const size_t edges[] = {1, 2, 15, 16, 17, 31, 32, 33, 127, 128};
  switch (fuzz_below(s, 6)) {
  case 0: return lo;
  case 1: return hi;
  case 2: {
    size_t e = edges[fuzz_below(s, TP_ARRAY_SIZE(edges))];
    return e < lo ? lo : e > hi ? hi : e;
  }
  default: return (size_t)fuzz_range(s, (int64_t)lo, (int64_t)hi);
  }
}

static tp_str_t fz_gen_bytes(fuzz_src_t *s, char *dst, size_t len) {
  /* Mostly printable, sometimes anything (NUL, 0x80-0xff, invalid UTF-8). */
  int any = fuzz_below(s, 3) == 0;
  for (size_t i = 0; i < len; i++)
    dst[i] = any ? (char)fuzz_byte(s) : (char)(' ' + fuzz_below(s, 95));
  return (tp_str_t){dst, (uint32_t)len};
}

static tp_str_t fz_gen_opt_bytes(fuzz_src_t *s, char *dst, size_t max) {
  if (fuzz_below(s, 3) == 0)
    return (tp_str_t){NULL, 0};
  return fz_gen_bytes(s, dst, fz_gen_len(s, 0, max));
}

static int8_t fz_gen_score(fuzz_src_t *s, int lo, int hi) {
  switch (fuzz_below(s, 4)) {
  case 0: return TP_SCORE_NULL;
  case 1: return (int8_t)lo;
  case 2: return (int8_t)hi;
  default: return (int8_t)fuzz_range(s, lo, hi);
  }
}

static int64_t fz_gen_timestamp(fuzz_src_t *s) {
  switch (fuzz_below(s, 6)) {
  case 0: return 0;
  case 1: return INT64_MAX;
  case 2: return (int64_t)(fuzz_u64(s) >> 1);
  case 3: return (int64_t)fuzz_below(s, 1u << 20);
  default: return 1700000000000 + fuzz_range(s, 0, 400LL * 86400 * 1000);
  }
}

static int64_t fz_gen_amount(fuzz_src_t *s) {
  switch (fuzz_below(s, 7)) {
  case 0: return 0;
  case 1: return -1;
  case 2: return INT64_MIN;
  case 3: return INT64_MAX;
  case 4: return (int64_t)fuzz_u64(s);
  default: return fuzz_range(s, -100000, 10000000);
  }
}

static void fz_gen_event(fuzz_src_t *s, tp_source_t src, strings_t *b,
                      tp_event_t *ev) {
  memset(ev, 0, sizeof(*ev));
  ev->source = src;
  ev->event_id = fz_gen_bytes(s, b->event_id, fz_gen_len(s, 1, TP_ID_MAX));
  ev->occurred_at = fz_gen_timestamp(s);
  size_t tlen = fz_gen_len(s, 1, TP_TOUCHPOINT_MAX);
  for (size_t i = 0; i < tlen; i++)
    b->touchpoint[i] =
        touchpoint_chars[fuzz_below(s, sizeof(touchpoint_chars) - 1)];
  ev->touchpoint = (tp_str_t){b->touchpoint, (uint32_t)tlen};
  ev->stage = (uint8_t)fuzz_below(s, TP_STAGE_COUNT);
  ev->channel = (uint8_t)fuzz_below(s, TP_CHANNEL_COUNT);
  switch (src) {
  case TP_SRC_FEEDBACK:
    ev->feedback.customer_id = fz_gen_opt_bytes(s, b->customer_id, CUSTOMER_MAX);
    ev->feedback.csat = fz_gen_score(s, 1, 5);
    ev->feedback.nps = fz_gen_score(s, 0, 10);
    ev->feedback.ces = fz_gen_score(s, 1, 7);
    ev->feedback.repurchase = fz_gen_score(s, 0, 10);
    ev->feedback.try_other = fz_gen_score(s, 0, 10);
    /* Long comments are rarer: they cost time and add no new shape. */
    ev->feedback.comment = fz_gen_opt_bytes(
        s, b->text, fuzz_below(s, 8) == 0 ? TP_COMMENT_MAX : 300);
    break;
  case TP_SRC_SUPPORT:
    ev->support.ticket_id = fz_gen_bytes(s, b->id, fz_gen_len(s, 1, TP_ID_MAX));
    ev->support.kind = (uint8_t)fuzz_below(s, TP_SUPPORT_KIND_COUNT);
    ev->support.complaint = fuzz_below(s, 2) != 0;
    break;
  case TP_SRC_COMMERCE:
    ev->commerce.order_id = fz_gen_bytes(s, b->id, fz_gen_len(s, 1, TP_ID_MAX));
    ev->commerce.kind = (uint8_t)fuzz_below(s, TP_COMMERCE_KIND_COUNT);
    ev->commerce.has_amount = fuzz_below(s, 3) != 0;
    ev->commerce.amount_minor = ev->commerce.has_amount ? fz_gen_amount(s) : 0;
    ev->commerce.reason = fz_gen_opt_bytes(s, b->text, REASON_MAX);
    break;
  }
}

/* ---- an Avro writer with non-minimal varints ----------------------------- */

typedef struct {
  uint8_t *buf;
  size_t n, cap;
  fuzz_src_t *s;
} padw_t;

static void pw_byte(padw_t *w, uint8_t b) {
  FUZZ_CHECK(w->n < w->cap, "padded record larger than %zu bytes", w->cap);
  w->buf[w->n++] = b;
}

/*
 * A zigzag varint of at least its minimal length and at most max bytes
 * (10 for a long, 5 for an int), the length chosen from the input. Padding
 * bytes are 0x80 continuations of zero bits, ending in a byte without the
 * continuation bit.
 */
static void pw_varint(padw_t *w, int64_t v, unsigned max) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  unsigned minimal = 1;
  for (uint64_t t = z >> 7; t != 0; t >>= 7)
    minimal++;
  unsigned len = minimal;
  if (minimal < max && fuzz_below(w->s, 3) == 0)
    len = minimal + (unsigned)fuzz_below(w->s, max - minimal + 1);
  for (unsigned i = 0; i < len; i++) {
    uint8_t b = (uint8_t)(z & 0x7f);
    z >>= 7;
    pw_byte(w, i + 1 < len ? (uint8_t)(b | 0x80) : b);
  }
}

static void pw_long(padw_t *w, int64_t v) { pw_varint(w, v, 10); }
static void pw_int(padw_t *w, int32_t v) { pw_varint(w, v, 5); }

static void pw_string(padw_t *w, tp_str_t s) {
  pw_long(w, s.len);
  for (uint32_t i = 0; i < s.len; i++)
    pw_byte(w, (uint8_t)s.ptr[i]);
}

static void pw_opt_string(padw_t *w, tp_str_t s) {
  pw_long(w, s.ptr != NULL ? 1 : 0);
  if (s.ptr != NULL)
    pw_string(w, s);
}

static void pw_score(padw_t *w, int8_t v) {
  pw_long(w, v != TP_SCORE_NULL ? 1 : 0);
  if (v != TP_SCORE_NULL)
    pw_int(w, v);
}

/* ev in its schema's field order, varints padded at random. */
static size_t pw_event(fuzz_src_t *s, const tp_event_t *ev, uint8_t *buf,
                       size_t cap) {
  padw_t w = {buf, 0, cap, s};
  pw_string(&w, ev->event_id);
  pw_long(&w, ev->occurred_at);
  pw_string(&w, ev->touchpoint);
  pw_int(&w, ev->stage);
  pw_int(&w, ev->channel);
  switch (ev->source) {
  case TP_SRC_FEEDBACK:
    pw_opt_string(&w, ev->feedback.customer_id);
    pw_score(&w, ev->feedback.csat);
    pw_score(&w, ev->feedback.nps);
    pw_score(&w, ev->feedback.ces);
    pw_score(&w, ev->feedback.repurchase);
    pw_score(&w, ev->feedback.try_other);
    pw_opt_string(&w, ev->feedback.comment);
    break;
  case TP_SRC_SUPPORT:
    pw_string(&w, ev->support.ticket_id);
    pw_int(&w, ev->support.kind);
    pw_byte(&w, ev->support.complaint ? 1 : 0);
    break;
  case TP_SRC_COMMERCE:
    pw_string(&w, ev->commerce.order_id);
    pw_int(&w, ev->commerce.kind);
    pw_long(&w, ev->commerce.has_amount ? 1 : 0);
    if (ev->commerce.has_amount)
      pw_long(&w, ev->commerce.amount_minor);
    pw_opt_string(&w, ev->commerce.reason);
    break;
  }
  return w.n;
}

/* ---- the checks ------------------------------------------------------------ */

static const char *hex(const uint8_t *buf, size_t len) {
  static char out[200];
  return ref_hex(buf, len, out);
}

/* decode_exact(): tests/fixtures/avro_ref.h, shared with test_decode.c. */

/* bytes must decode, with tp_decode() and with Avro-C, to want. */
static void expect_values(const char *what, tp_source_t src,
                          const uint8_t *bytes, size_t len,
                          const tp_event_t *want) {
  char detail[256] = "";
  tp_event_t got;
  tp_reject_t r = decode_exact(src, bytes, len, &got, detail, sizeof(detail));
  FUZZ_CHECK(r == TP_REJECT_NONE, "%s %s record rejected: %s [%s]", what,
             tp_source_name(src), detail, hex(bytes, len));
  const char *diff = ref_event_diff(&got, want);
  FUZZ_CHECK(diff == NULL, "%s %s record: tp_decode's %s differs [%s]", what,
             tp_source_name(src), diff, hex(bytes, len));
}

static void check_record(fuzz_src_t *s, tp_source_t src) {
  static strings_t strs;
  static uint8_t avro[BUF_CAP], framed[BUF_CAP + TP_CONFLUENT_HEADER_SIZE],
      mine[BUF_CAP], padded[BUF_CAP];
  tp_event_t want, back;
  fz_gen_event(s, src, &strs, &want);

  /* 1. Avro-C's bytes, and ours. */
  size_t n = ref_encode(&ref, &want, avro, sizeof(avro));
  FUZZ_CHECK(n > 0, "Avro-C wrote nothing");
  size_t m = tp_encode_event(&want, mine, sizeof(mine));
  FUZZ_CHECK(m == n && memcmp(mine, avro, n) == 0,
             "%s: tp_encode_event wrote %zu bytes, Avro-C %zu [%s]",
             tp_source_name(src), m, n, hex(avro, n));

  /* 2. tp_decode, plain and framed. */
  expect_values("plain", src, avro, n, &want);
  uint32_t schema_id = (uint32_t)fuzz_u64(s);
  tp_encode_confluent_header(schema_id, framed, TP_CONFLUENT_HEADER_SIZE);
  memcpy(framed + TP_CONFLUENT_HEADER_SIZE, avro, n);
  expect_values("framed", src, framed, n + TP_CONFLUENT_HEADER_SIZE, &want);

  /* 3. The reference reads its own bytes back. */
  FUZZ_CHECK(ref_decode(&ref, src, avro, n, &back) == 0,
             "Avro-C cannot read what it wrote");
  const char *diff = ref_event_diff(&back, &want);
  FUZZ_CHECK(diff == NULL, "Avro-C reads back a different %s", diff);

  /* 4. Non-minimal varints: both decoders, same values. */
  size_t p = pw_event(s, &want, padded, sizeof(padded));
  expect_values("padded", src, padded, p, &want);
  FUZZ_CHECK(ref_decode(&ref, src, padded, p, &back) == 0,
             "Avro-C refuses the padded record [%s]", hex(padded, p));
  diff = ref_event_diff(&back, &want);
  FUZZ_CHECK(diff == NULL, "Avro-C reads the padded record's %s differently",
             diff);
  tp_encode_confluent_header(schema_id, framed, TP_CONFLUENT_HEADER_SIZE);
  memcpy(framed + TP_CONFLUENT_HEADER_SIZE, padded, p);
  expect_values("padded framed", src, framed, p + TP_CONFLUENT_HEADER_SIZE,
                &want);

  /* 5. Strict prefixes are incomplete records; one byte more is trailing. */
  for (int i = 0; i < 4; i++) {
    size_t cut = (size_t)fuzz_below(s, n);
    tp_event_t ev;
    tp_reject_t r = decode_exact(src, avro, cut, &ev, NULL, 0);
    FUZZ_CHECK(r != TP_REJECT_NONE, "%s: prefix %zu of %zu accepted",
               tp_source_name(src), cut, n);
    r = decode_exact(src, framed, cut + TP_CONFLUENT_HEADER_SIZE, &ev, NULL,
                     0);
    (void)r; /* framed holds the padded record now: only no crash counts */
  }
  avro[n] = fuzz_byte(s);
  tp_event_t ev;
  tp_reject_t r = decode_exact(src, avro, n + 1, &ev, NULL, 0);
  FUZZ_CHECK(r == TP_REJECT_TRAILING_BYTES, "%s: a byte after the record: %s",
             tp_source_name(src), tp_reject_label(r));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_src_t s;
  fuzz_src_init(&s, data, size);
  /* The first choice picks the order, so each schema also leads the stream. */
  int first = (int)fuzz_below(&s, TP_SRC_COUNT);
  for (int i = 0; i < TP_SRC_COUNT; i++)
    check_record(&s, (tp_source_t)((first + i) % TP_SRC_COUNT));
  return 0;
}
