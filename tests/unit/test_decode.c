/*
 * test_decode.c -- the hot-path Avro decoder against Avro-C: random valid
 * records, every truncation, a corpus of corruptions with their reasons,
 * mutation fuzzing, and the start-up schema check.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "decode_int.h"
#include "fixtures/avro_ref.h"
#include "fuzz/fuzz_ref_decode.h"
#include "touchpulse/decode.h"
#include "touchpulse/encode.h"

#define RECORDS_PER_SCHEMA 3000
#define PREFIX_RECORDS_PER_SCHEMA 150
#define FUZZ_MUTATIONS 200000
#define BUF_CAP (TP_COMMENT_MAX + 1024)

static ref_t ref;

/*
 * Avro-C 1.11.1 leaks the buffer read_string() allocates when the string's
 * bytes are cut off (it allocates before reading and returns without freeing).
 * The truncation test makes Avro-C fail that way on purpose, thousands of
 * times; this tells LeakSanitizer that those leaks are Avro-C's. touchpulse's
 * decoder does not allocate, so nothing of ours can hide behind it.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libavro.so\n"; }
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "print_suppressions=0"; }

/*
 * TP_TEST_DECODER=plain runs the suite against the plain build of the
 * decoder on a processor where tp_decode() would run the BMI2 one
 * (CMakeLists.txt adds that run as test_decode_plain).
 */
static void setup(void) {
  ref_init(&ref);
  const char *want = getenv("TP_TEST_DECODER");
  if (want != NULL && strcmp(want, "plain") == 0)
    cr_assert_eq(tp__decode_select(TP_DECODER_PLAIN), TP_DECODER_PLAIN);
}
static void teardown(void) { ref_close(&ref); }

TestSuite(decode, .init = setup, .fini = teardown);

static const tp_source_t all_sources[] = {TP_SRC_FEEDBACK, TP_SRC_SUPPORT,
                                          TP_SRC_COMMERCE};

/* ---- 1. random valid records ------------------------------------------------ */

/*
 * tp_peek_event_id() on an exactly-sized heap copy (ASan flags a read past
 * the end): @returns whether it found an id, and then the id's offset and
 * length in bytes, which must lie within the record.
 */
static bool peek_exact(const uint8_t *bytes, size_t len, size_t *off, size_t *n) {
  uint8_t *copy = malloc(len > 0 ? len : 1);
  cr_assert_not_null(copy);
  if (len > 0)
    memcpy(copy, bytes, len);
  const char *id = NULL;
  size_t id_len = 0;
  bool found = tp_peek_event_id(copy, len, &id, &id_len);
  if (found) {
    cr_assert(id >= (const char *)copy && id_len <= len &&
                  (size_t)(id - (const char *)copy) <= len - id_len,
              "peeked id outside the record");
    *off = (size_t)(id - (const char *)copy);
    *n = id_len;
  }
  free(copy);
  return found;
}

/* The peeked event id of an accepted record is the decoded one. */
static void check_peek(const uint8_t *bytes, size_t len, const tp_event_t *got,
                       const char *what, int i) {
  size_t off = 0, n = 0;
  cr_assert(peek_exact(bytes, len, &off, &n), "%s %d: no event_id peeked", what, i);
  cr_assert_eq(off, (size_t)(got->event_id.ptr - (const char *)bytes),
               "%s %d: peeked event_id at offset %zu", what, i, off);
  cr_assert_eq(n, got->event_id.len, "%s %d: peeked event_id of %zu bytes, decoded %u",
               what, i, n, got->event_id.len);
}

static void check_valid_records(tp_source_t src, uint64_t seed) {
  rng_t rng = {seed};
  static gen_buf_t gb;
  static uint8_t avro[BUF_CAP], framed[BUF_CAP + 5], mine[BUF_CAP];
  char detail[256], hex[200];
  for (int i = 0; i < RECORDS_PER_SCHEMA; i++) {
    tp_event_t want, got;
    gen_event(&rng, src, &gb, &want);
    size_t n = ref_encode(&ref, &want, avro, sizeof(avro));

    tp_reject_t r = decode_exact(src, avro, n, &got, detail, sizeof(detail));
    cr_assert_eq(r, TP_REJECT_NONE, "%s record %d rejected: %s [%s]",
                 tp_source_name(src), i, detail, ref_hex(avro, n, hex));
    const char *diff = ref_event_diff(&got, &want);
    cr_assert_null(diff, "%s record %d: field %s differs from Avro-C's value",
                   tp_source_name(src), i, diff);
    check_peek(avro, n, &got, tp_source_name(src), i);

    uint32_t schema_id = (uint32_t)rng_next(&rng);
    cr_assert_eq(tp_encode_confluent_header(schema_id, framed, sizeof(framed)), 5);
    memcpy(framed + 5, avro, n);
    r = decode_exact(src, framed, n + 5, &got, detail, sizeof(detail));
    cr_assert_eq(r, TP_REJECT_NONE, "%s framed record %d rejected: %s",
                 tp_source_name(src), i, detail);
    diff = ref_event_diff(&got, &want);
    cr_assert_null(diff, "%s framed record %d: field %s differs",
                   tp_source_name(src), i, diff);
    check_peek(framed, n + 5, &got, "framed", i);

    size_t m = tp_encode_event(&want, mine, sizeof(mine));
    cr_assert_eq(m, n, "%s record %d: tp_encode_event wrote %zu bytes, Avro-C %zu",
                 tp_source_name(src), i, m, n);
    cr_assert_arr_eq(mine, avro, n, "%s record %d: encodings differ",
                     tp_source_name(src), i);
  }
}

Test(decode, feedback_records_match_avro_c_field_by_field) {
  check_valid_records(TP_SRC_FEEDBACK, 1);
}

Test(decode, support_records_match_avro_c_field_by_field) {
  check_valid_records(TP_SRC_SUPPORT, 2);
}

Test(decode, commerce_records_match_avro_c_field_by_field) {
  check_valid_records(TP_SRC_COMMERCE, 3);
}

/* Values at the edges, written out so a weak generator cannot miss them. */
Test(decode, accepts_boundary_values) {
  static char comment[TP_COMMENT_MAX], id[TP_ID_MAX], tp[TP_TOUCHPOINT_MAX];
  memset(comment, 'c', sizeof(comment));
  memset(id, 'i', sizeof(id));
  memset(tp, 't', sizeof(tp));
  static uint8_t buf[BUF_CAP];
  tp_event_t ev = {.source = TP_SRC_FEEDBACK,
                   .event_id = {id, TP_ID_MAX},
                   .occurred_at = INT64_MAX,
                   .touchpoint = {tp, TP_TOUCHPOINT_MAX},
                   .stage = TP_STAGE_UNKNOWN,
                   .channel = TP_CHANNEL_OTHER};
  ev.feedback.customer_id = (tp_str_t){"", 0};
  ev.feedback.csat = 5;
  ev.feedback.nps = 10;
  ev.feedback.ces = 7;
  ev.feedback.repurchase = 0;
  ev.feedback.try_other = 10;
  ev.feedback.comment = (tp_str_t){comment, TP_COMMENT_MAX};
  tp_event_t got;
  char detail[256];
  size_t n = ref_encode(&ref, &ev, buf, sizeof(buf));
  cr_assert_eq(tp_decode(TP_SRC_FEEDBACK, buf, n, &got, detail, sizeof(detail)),
               TP_REJECT_NONE, "%s", detail);
  cr_assert_null(ref_event_diff(&got, &ev));
  cr_assert_not_null(got.feedback.customer_id.ptr, "empty is not null");
  cr_assert_eq(got.feedback.customer_id.len, 0);

  ev.source = TP_SRC_COMMERCE;
  ev.occurred_at = 0;
  ev.commerce.order_id = (tp_str_t){"o", 1};
  ev.commerce.kind = TP_COMMERCE_RETURN_REQUESTED;
  ev.commerce.has_amount = true;
  ev.commerce.amount_minor = INT64_MIN;
  ev.commerce.reason = (tp_str_t){NULL, 0};
  n = ref_encode(&ref, &ev, buf, sizeof(buf));
  cr_assert_eq(tp_decode(TP_SRC_COMMERCE, buf, n, &got, detail, sizeof(detail)),
               TP_REJECT_NONE, "%s", detail);
  cr_assert_null(ref_event_diff(&got, &ev));
  cr_assert_eq(got.commerce.amount_minor, INT64_MIN);
}

/* Avro allows padded varints; Avro-C reads them, so must we. */
Test(decode, accepts_non_minimal_varints_like_avro_c) {
  /* event_id "e", occurred_at 1 as 0x82 0x00, touchpoint "t" with length
   * 0x82 0x80 0x00, stage 1 as 0x82 0x00, channel 0, ticket "k", kind 0
   * as 0x80 0x80 0x80 0x80 0x00 (5 bytes), complaint true. */
  static const uint8_t rec[] = {0x02, 'e',  0x82, 0x00, 0x82, 0x80, 0x00, 't',
                                0x82, 0x00, 0x00, 0x02, 'k',  0x80, 0x80, 0x80,
                                0x80, 0x00, 0x01};
  tp_event_t got, want;
  char detail[256];
  cr_assert_eq(tp_decode(TP_SRC_SUPPORT, rec, sizeof(rec), &got, detail,
                         sizeof(detail)),
               TP_REJECT_NONE, "%s", detail);
  cr_assert_eq(ref_decode(&ref, TP_SRC_SUPPORT, rec, sizeof(rec), &want), 0);
  cr_assert_null(ref_event_diff(&got, &want));
  cr_assert_eq(got.occurred_at, 1);
  cr_assert_eq(got.stage, TP_STAGE_PURCHASE);
  cr_assert(got.support.complaint);
}

/* ---- 2. every truncation ----------------------------------------------------- */

static void check_prefixes(tp_source_t src, uint64_t seed) {
  rng_t rng = {seed};
  static gen_buf_t gb;
  static uint8_t avro[BUF_CAP], framed[BUF_CAP + 5];
  char detail[256];
  tp_event_t ev, got;
  for (int i = 0; i < PREFIX_RECORDS_PER_SCHEMA; i++) {
    gen_event(&rng, src, &gb, &ev);
    size_t n = ref_encode(&ref, &ev, avro, sizeof(avro));
    tp_encode_confluent_header(42, framed, sizeof(framed));
    memcpy(framed + 5, avro, n);
    for (size_t len = 0; len < n; len++) {
      tp_reject_t r = decode_exact(src, avro, len, &got, detail, sizeof(detail));
      cr_assert_neq(r, TP_REJECT_NONE, "%s record %d: prefix %zu of %zu accepted",
                    tp_source_name(src), i, len, n);
      cr_assert_eq(ref_decode(&ref, src, avro, len, &got), -1,
                   "Avro-C accepted prefix %zu of %zu", len, n);
      r = decode_exact(src, framed, len + 5, &got, detail, sizeof(detail));
      cr_assert_neq(r, TP_REJECT_NONE,
                    "%s record %d: framed prefix %zu of %zu accepted",
                    tp_source_name(src), i, len, n);
    }
    for (size_t len = 1; len < 5; len++)
      cr_assert_eq(decode_exact(src, framed, len, &got, detail, sizeof(detail)),
                   TP_REJECT_BAD_FRAMING);
  }
}

Test(decode, rejects_every_strict_prefix_of_feedback_records) {
  check_prefixes(TP_SRC_FEEDBACK, 11);
}

Test(decode, rejects_every_strict_prefix_of_support_records) {
  check_prefixes(TP_SRC_SUPPORT, 12);
}

Test(decode, rejects_every_strict_prefix_of_commerce_records) {
  check_prefixes(TP_SRC_COMMERCE, 13);
}

/* ---- 3. corruption corpus ---------------------------------------------------- */

/*
 * Records are written in a tiny notation so each case shows its bytes:
 *   l:N     a long N (zigzag varint)        s:TEXT  a string (%XX escapes a byte)
 *   r:N:C   a string of N copies of C       x:HEX   raw bytes, e.g. x:80ff01
 *   c       the Confluent header 00 00 00 00 01
 */
typedef struct {
  uint8_t b[BUF_CAP];
  size_t n;
} raw_t;

static void raw_put(raw_t *r, uint8_t byte) {
  cr_assert_lt(r->n, sizeof(r->b));
  r->b[r->n++] = byte;
}

static void raw_long(raw_t *r, int64_t v) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  while (z >= 0x80) {
    raw_put(r, (uint8_t)(z | 0x80));
    z >>= 7;
  }
  raw_put(r, (uint8_t)z);
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static void raw_build(raw_t *r, const char *spec) {
  r->n = 0;
  const char *p = spec;
  while (*p) {
    while (*p == ' ')
      p++;
    if (!*p)
      break;
    const char *tok = p;
    while (*p && *p != ' ')
      p++;
    size_t len = (size_t)(p - tok);
    if (tok[0] == 'c' && len == 1) {
      static const uint8_t hdr[] = {0, 0, 0, 0, 1};
      for (size_t i = 0; i < 5; i++)
        raw_put(r, hdr[i]);
    } else if (tok[0] == 'l') {
      raw_long(r, strtoll(tok + 2, NULL, 10));
    } else if (tok[0] == 'x') {
      for (const char *h = tok + 2; h + 1 < p; h += 2)
        raw_put(r, (uint8_t)(hexval(h[0]) << 4 | hexval(h[1])));
    } else if (tok[0] == 'r') {
      char *colon;
      long count = strtol(tok + 2, &colon, 10);
      raw_long(r, count);
      for (long i = 0; i < count; i++)
        raw_put(r, (uint8_t)colon[1]);
    } else if (tok[0] == 's') {
      uint8_t tmp[256];
      size_t n = 0;
      for (const char *c = tok + 2; c < p; c++) {
        if (*c == '%') {
          tmp[n++] = (uint8_t)(hexval(c[1]) << 4 | hexval(c[2]));
          c += 2;
        } else {
          tmp[n++] = (uint8_t)*c;
        }
      }
      raw_long(r, (int64_t)n);
      for (size_t i = 0; i < n; i++)
        raw_put(r, tmp[i]);
    } else {
      cr_assert_fail("bad corpus token '%.*s'", (int)len, tok);
    }
  }
}

/* Common fields: event_id, occurred_at, touchpoint, stage, channel. */
#define HEAD "s:ev-1 l:1700000000000 s:checkout.payment l:1 l:2 "
/* Feedback after the head: customer_id and five scores null, no comment. */
#define FB_NULLS "l:0 l:0 l:0 l:0 l:0 l:0 l:0"
/* customer_id null, then one score (csat, nps, ...) given by position. */
#define FB_CSAT(v) HEAD "l:0 l:1 l:" #v " l:0 l:0 l:0 l:0 l:0"
#define FB_NPS(v) HEAD "l:0 l:0 l:1 l:" #v " l:0 l:0 l:0 l:0"
#define FB_CES(v) HEAD "l:0 l:0 l:0 l:1 l:" #v " l:0 l:0 l:0"
#define FB_REPURCHASE(v) HEAD "l:0 l:0 l:0 l:0 l:1 l:" #v " l:0 l:0"
#define FB_TRY_OTHER(v) HEAD "l:0 l:0 l:0 l:0 l:0 l:1 l:" #v " l:0"

typedef struct {
  const char *name;
  tp_source_t src;
  const char *spec;
  tp_reject_t want;
  const char *detail; /* expected substring of the detail message */
} corpus_case_t;

static const corpus_case_t corpus[] = {
    /* the baselines: each must be accepted, so the cases below differ from
     * a valid record in exactly the way their name says */
    {"valid feedback", TP_SRC_FEEDBACK, HEAD FB_NULLS, TP_REJECT_NONE, NULL},
    {"valid support", TP_SRC_SUPPORT, HEAD "s:T-1 l:0 x:01", TP_REJECT_NONE, NULL},
    {"valid commerce", TP_SRC_COMMERCE, HEAD "s:O-1 l:2 l:1 l:-500 l:1 s:late",
     TP_REJECT_NONE, NULL},
    {"valid framed", TP_SRC_FEEDBACK, "c " HEAD FB_NULLS, TP_REJECT_NONE, NULL},
    {"valid score bounds", TP_SRC_FEEDBACK,
     HEAD "l:0 l:1 l:1 l:1 l:0 l:1 l:7 l:1 l:10 l:1 l:0 l:1 r:4096:c",
     TP_REJECT_NONE, NULL},

    /* structure */
    {"empty", TP_SRC_FEEDBACK, "", TP_REJECT_EMPTY, "record has no value"},
    {"confluent header of 3 bytes", TP_SRC_FEEDBACK, "x:000000",
     TP_REJECT_BAD_FRAMING, "has 3 bytes"},
    {"confluent header of 4 bytes", TP_SRC_SUPPORT, "x:00000001",
     TP_REJECT_BAD_FRAMING, "header needs 5"},
    {"confluent header alone", TP_SRC_FEEDBACK, "c", TP_REJECT_TRUNCATED,
     "field 'event_id' needs 1 byte at offset 5, 0 left"},
    {"long varint of 11 bytes", TP_SRC_FEEDBACK,
     "s:ev-1 x:8080808080808080808000 s:tp l:0 l:0 " FB_NULLS,
     TP_REJECT_BAD_VARINT, "field 'occurred_at' varint at offset 5 is longer than 10"},
    {"long varint whose 10th byte has more than bit 63", TP_SRC_FEEDBACK,
     "s:ev-1 x:ffffffffffffffffff02 s:tp l:0 l:0 " FB_NULLS,
     TP_REJECT_BAD_VARINT, "does not fit 64 bits"},
    {"int varint of 6 bytes", TP_SRC_FEEDBACK,
     HEAD "l:0 l:1 x:828080808000 l:0 l:0 l:0 l:0 l:0", TP_REJECT_BAD_VARINT,
     "field 'csat' varint at offset 32 is longer than 5"},
    {"int overflow (2^31)", TP_SRC_FEEDBACK,
     HEAD "l:0 l:0 l:1 x:8080808010 l:0 l:0 l:0 l:0", TP_REJECT_BAD_VARINT,
     "field 'nps' varint at offset 33 does not fit an int"},
    {"enum index overflowing int", TP_SRC_FEEDBACK,
     "s:ev-1 l:5 s:tp x:ffffffff1f l:0 " FB_NULLS, TP_REJECT_BAD_VARINT,
     "field 'stage'"},
    {"negative string length", TP_SRC_FEEDBACK, "x:01 l:5 s:tp l:0 l:0 " FB_NULLS,
     TP_REJECT_BAD_LENGTH, "field 'event_id' has negative length -1 at offset 0"},
    {"string claiming 2 GiB", TP_SRC_FEEDBACK,
     "s:ev-1 l:5 l:2147483648 x:7470 l:0 l:0 " FB_NULLS, TP_REJECT_TRUNCATED,
     "field 'touchpoint' needs 2147483648 bytes at offset 11, 11 left"},
    {"truncated inside a string", TP_SRC_FEEDBACK, "s:ev-1 l:5 x:1874707070",
     TP_REJECT_TRUNCATED, "field 'touchpoint' needs 12 bytes at offset 7, 4 left"},
    {"truncated inside a varint", TP_SRC_FEEDBACK, "s:ev-1 x:8080",
     TP_REJECT_TRUNCATED, "field 'occurred_at' varint at offset 5 continues past"},
    {"union index 2", TP_SRC_FEEDBACK, HEAD "l:2 " FB_NULLS, TP_REJECT_BAD_UNION,
     "field 'customer_id' has branch index 2 at offset 30"},
    {"union index -1", TP_SRC_FEEDBACK, HEAD "l:0 l:0 l:0 l:0 l:0 l:-1 l:0",
     TP_REJECT_BAD_UNION, "field 'try_other' has branch index -1"},
    {"union index 2 in amount_minor", TP_SRC_COMMERCE,
     HEAD "s:O-1 l:0 l:2 l:5 l:0", TP_REJECT_BAD_UNION, "field 'amount_minor'"},
    {"stage index 4", TP_SRC_FEEDBACK, "s:ev-1 l:5 s:tp l:4 l:0 " FB_NULLS,
     TP_REJECT_BAD_ENUM, "field 'stage' has symbol index 4 at offset 9, the schema has 4"},
    {"channel index 8", TP_SRC_SUPPORT, "s:ev-1 l:5 s:tp l:0 l:8 s:T l:0 x:00",
     TP_REJECT_BAD_ENUM, "field 'channel' has symbol index 8"},
    {"channel index -1", TP_SRC_SUPPORT, "s:ev-1 l:5 s:tp l:0 l:-1 s:T l:0 x:00",
     TP_REJECT_BAD_ENUM, "symbol index -1"},
    {"support kind 5", TP_SRC_SUPPORT, HEAD "s:T-1 l:5 x:00", TP_REJECT_BAD_ENUM,
     "field 'kind'"},
    {"commerce kind 3", TP_SRC_COMMERCE, HEAD "s:O-1 l:3 l:0 l:0",
     TP_REJECT_BAD_ENUM, "field 'kind'"},
    {"boolean 2", TP_SRC_SUPPORT, HEAD "s:T-1 l:0 x:02", TP_REJECT_BAD_BOOLEAN,
     "field 'complaint' has byte 0x02 at offset 35"},
    {"trailing byte", TP_SRC_FEEDBACK, HEAD FB_NULLS " x:00",
     TP_REJECT_TRAILING_BYTES, "1 bytes after the last field, at offset 37"},
    {"trailing byte after support", TP_SRC_SUPPORT, HEAD "s:T-1 l:0 x:0100",
     TP_REJECT_TRAILING_BYTES, "at offset 36"},

    /* SPEC's rules */
    {"event_id empty", TP_SRC_FEEDBACK, "c s: l:5 s:tp l:0 l:0 " FB_NULLS,
     TP_REJECT_BAD_EVENT_ID, "field 'event_id' is 0 bytes at offset 6, must be 1-128"},
    {"event_id of 129 bytes", TP_SRC_FEEDBACK, "r:129:e l:5 s:tp l:0 l:0 " FB_NULLS,
     TP_REJECT_BAD_EVENT_ID, "is 129 bytes"},
    {"event_id of 128 bytes", TP_SRC_FEEDBACK, "r:128:e l:5 s:tp l:0 l:0 " FB_NULLS,
     TP_REJECT_NONE, NULL},
    {"occurred_at -1", TP_SRC_FEEDBACK, "s:ev-1 l:-1 s:tp l:0 l:0 " FB_NULLS,
     TP_REJECT_OUT_OF_RANGE, "field 'occurred_at' is -1 at offset 5, must be >= 0"},
    {"touchpoint with a space", TP_SRC_FEEDBACK,
     "s:ev-1 l:5 s:web%20home l:0 l:0 " FB_NULLS, TP_REJECT_BAD_TOUCHPOINT,
     "has byte 0x20 at offset 10"},
    {"touchpoint with a non-ASCII byte", TP_SRC_FEEDBACK,
     "s:ev-1 l:5 s:caf%c3%a9 l:0 l:0 " FB_NULLS, TP_REJECT_BAD_TOUCHPOINT,
     "has byte 0xc3"},
    {"touchpoint of 129 bytes", TP_SRC_FEEDBACK,
     "s:ev-1 l:5 r:129:t l:0 l:0 " FB_NULLS, TP_REJECT_BAD_TOUCHPOINT,
     "field 'touchpoint' is 129 bytes"},
    {"touchpoint of 128 bytes", TP_SRC_FEEDBACK,
     "s:ev-1 l:5 r:128:t l:0 l:0 " FB_NULLS, TP_REJECT_NONE, NULL},
    {"touchpoint empty", TP_SRC_FEEDBACK, "s:ev-1 l:5 s: l:0 l:0 " FB_NULLS,
     TP_REJECT_BAD_TOUCHPOINT, "is 0 bytes"},
    {"csat 0", TP_SRC_FEEDBACK, FB_CSAT(0), TP_REJECT_OUT_OF_RANGE,
     "field 'csat' is 0 at offset 32, must be 1-5"},
    {"csat 6", TP_SRC_FEEDBACK, FB_CSAT(6), TP_REJECT_OUT_OF_RANGE, "must be 1-5"},
    {"nps -1", TP_SRC_FEEDBACK, FB_NPS(-1), TP_REJECT_OUT_OF_RANGE,
     "field 'nps' is -1"},
    {"nps 11", TP_SRC_FEEDBACK, FB_NPS(11), TP_REJECT_OUT_OF_RANGE, "must be 0-10"},
    {"ces 0", TP_SRC_FEEDBACK, FB_CES(0), TP_REJECT_OUT_OF_RANGE, "field 'ces' is 0"},
    {"ces 8", TP_SRC_FEEDBACK, FB_CES(8), TP_REJECT_OUT_OF_RANGE, "must be 1-7"},
    {"repurchase -1", TP_SRC_FEEDBACK, FB_REPURCHASE(-1), TP_REJECT_OUT_OF_RANGE,
     "field 'repurchase' is -1"},
    {"repurchase 11", TP_SRC_FEEDBACK, FB_REPURCHASE(11), TP_REJECT_OUT_OF_RANGE,
     "field 'repurchase' is 11"},
    {"try_other -1", TP_SRC_FEEDBACK, FB_TRY_OTHER(-1), TP_REJECT_OUT_OF_RANGE,
     "field 'try_other' is -1"},
    {"try_other 11", TP_SRC_FEEDBACK, FB_TRY_OTHER(11), TP_REJECT_OUT_OF_RANGE,
     "field 'try_other' is 11"},
    {"csat of INT32_MIN", TP_SRC_FEEDBACK, FB_CSAT(-2147483648),
     TP_REJECT_OUT_OF_RANGE, "is -2147483648"},
    {"comment of 4097 bytes", TP_SRC_FEEDBACK,
     HEAD "l:0 l:0 l:0 l:0 l:0 l:0 l:1 r:4097:c", TP_REJECT_COMMENT_TOO_LONG,
     "field 'comment' is 4097 bytes at offset 39, at most 4096"},
    {"ticket_id empty", TP_SRC_SUPPORT, HEAD "s: l:0 x:00", TP_REJECT_BAD_ID,
     "field 'ticket_id' is 0 bytes"},
    {"ticket_id of 129 bytes", TP_SRC_SUPPORT, HEAD "r:129:k l:0 x:00",
     TP_REJECT_BAD_ID, "field 'ticket_id' is 129 bytes"},
    {"order_id empty", TP_SRC_COMMERCE, HEAD "s: l:0 l:0 l:0", TP_REJECT_BAD_ID,
     "field 'order_id' is 0 bytes"},
};

Test(decode, rejects_each_corruption_with_its_reason) {
  static raw_t raw;
  char detail[512], hex[200];
  for (size_t i = 0; i < TP_ARRAY_SIZE(corpus); i++) {
    const corpus_case_t *c = &corpus[i];
    raw_build(&raw, c->spec);
    tp_event_t ev;
    strcpy(detail, "(untouched)");
    tp_reject_t r = decode_exact(c->src, raw.b, raw.n, &ev, detail, sizeof(detail));
    cr_expect_eq(r, c->want, "%s: got %s (%s), want %s [%s]", c->name,
                 tp_reject_label(r), detail, tp_reject_label(c->want),
                 ref_hex(raw.b, raw.n, hex));
    if (c->want == TP_REJECT_NONE) {
      cr_expect_str_eq(detail, "(untouched)", "%s: detail written on success",
                       c->name);
      continue;
    }
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s: ", tp_reject_label(c->want));
    cr_expect_eq(strncmp(detail, prefix, strlen(prefix)), 0,
                 "%s: detail '%s' does not start with '%s'", c->name, detail,
                 prefix);
    cr_expect_not_null(strstr(detail, c->detail),
                       "%s: detail '%s' lacks '%s'", c->name, detail, c->detail);
  }
}

Test(decode, detail_names_field_offset_and_bytes_left) {
  /* The example from decode.h: a touchpoint claiming 12 bytes at offset 30
   * of which 5 are present. Header (5) + event_id (1 + 17) + occurred_at (6)
   * + the length byte put its first byte there. */
  static raw_t raw;
  raw_build(&raw, "c r:17:e l:1700000000000 l:12 x:7765622e68");
  cr_assert_eq(raw.n, 35);
  tp_event_t ev;
  char detail[256];
  cr_assert_eq(tp_decode(TP_SRC_FEEDBACK, raw.b, raw.n, &ev, detail, sizeof(detail)),
               TP_REJECT_TRUNCATED);
  cr_assert_str_eq(detail,
                   "truncated: field 'touchpoint' needs 12 bytes at offset 30, 5 left");
}

Test(decode, detail_is_optional_and_never_overflows_its_buffer) {
  static raw_t raw;
  raw_build(&raw, FB_CSAT(9));
  tp_event_t ev;
  cr_assert_eq(tp_decode(TP_SRC_FEEDBACK, raw.b, raw.n, &ev, NULL, 0),
               TP_REJECT_OUT_OF_RANGE);
  char small[12];
  memset(small, 'X', sizeof(small));
  cr_assert_eq(tp_decode(TP_SRC_FEEDBACK, raw.b, raw.n, &ev, small, 8),
               TP_REJECT_OUT_OF_RANGE);
  cr_assert_str_eq(small, "out_of_");
  cr_assert_eq(small[8], 'X', "wrote past detail_size");
  memset(small, 'X', sizeof(small));
  cr_assert_eq(tp_decode(TP_SRC_FEEDBACK, raw.b, raw.n, &ev, small, 0),
               TP_REJECT_OUT_OF_RANGE);
  cr_assert_eq(small[0], 'X', "wrote with detail_size 0");
}

Test(decode, rejects_null_buffer_as_empty_and_unknown_source) {
  tp_event_t ev;
  char detail[128];
  cr_assert_eq(tp_decode(TP_SRC_FEEDBACK, NULL, 10, &ev, detail, sizeof(detail)),
               TP_REJECT_EMPTY);
  cr_assert_str_eq(detail, "empty: record has no value");
  static raw_t raw;
  raw_build(&raw, HEAD FB_NULLS);
  cr_assert_eq(tp_decode((tp_source_t)7, raw.b, raw.n, &ev, detail, sizeof(detail)),
               TP_REJECT_UNKNOWN_TOPIC);
}

/* The same bytes are a valid record of one schema and not of another. */
Test(decode, reads_the_schema_the_source_names) {
  static raw_t raw;
  tp_event_t ev;
  raw_build(&raw, HEAD "s:T-1 l:3 x:01");
  cr_assert_eq(tp_decode(TP_SRC_SUPPORT, raw.b, raw.n, &ev, NULL, 0),
               TP_REJECT_NONE);
  cr_assert_eq(ev.source, TP_SRC_SUPPORT);
  cr_assert_eq(ev.support.kind, TP_SUPPORT_RESOLVED);
  cr_assert_eq(ev.stage, TP_STAGE_PURCHASE);
  cr_assert_eq(ev.channel, TP_CHANNEL_EMAIL);
  cr_assert_eq(ev.touchpoint.len, strlen("checkout.payment"));
  cr_assert_eq(memcmp(ev.touchpoint.ptr, "checkout.payment", ev.touchpoint.len), 0);
  cr_assert_neq(tp_decode(TP_SRC_FEEDBACK, raw.b, raw.n, &ev, NULL, 0),
                TP_REJECT_NONE);
}

/* ---- 4. mutation fuzzing ------------------------------------------------------ */

static size_t mutate(rng_t *rng, uint8_t *buf, size_t len, size_t cap,
                     const uint8_t *other, size_t other_len) {
  static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x03, 0x7e, 0x7f,
                                        0x80, 0x81, 0xfe, 0xff};
  int rounds = 1 + (int)rng_below(rng, 3);
  for (int k = 0; k < rounds; k++) {
    size_t at = len > 0 ? rng_below(rng, len) : 0;
    switch (rng_below(rng, 8)) {
    case 0: /* bit flip */
      if (len > 0)
        buf[at] ^= (uint8_t)(1u << rng_below(rng, 8));
      break;
    case 1: /* interesting byte */
      if (len > 0)
        buf[at] = interesting[rng_below(rng, sizeof(interesting))];
      break;
    case 2: /* random byte */
      if (len > 0)
        buf[at] = (uint8_t)rng_next(rng);
      break;
    case 3: { /* insert bytes */
      size_t n = 1 + rng_below(rng, 4);
      if (len + n > cap)
        break;
      memmove(buf + at + n, buf + at, len - at);
      for (size_t i = 0; i < n; i++)
        buf[at + i] = rng_below(rng, 2) ? interesting[rng_below(rng, sizeof(interesting))]
                                        : (uint8_t)rng_next(rng);
      len += n;
      break;
    }
    case 4: { /* delete bytes */
      size_t n = 1 + rng_below(rng, 4);
      if (at + n > len)
        n = len - at;
      memmove(buf + at, buf + at + n, len - at - n);
      len -= n;
      break;
    }
    case 5: /* truncate */
      len = at;
      break;
    case 6: { /* splice: our head, another record's tail */
      size_t from = other_len > 0 ? rng_below(rng, other_len) : 0;
      size_t n = other_len - from;
      if (at + n > cap)
        n = cap - at;
      memcpy(buf + at, other + from, n);
      len = at + n;
      break;
    }
    case 7: /* small arithmetic on a byte, typical of length or index drift */
      if (len > 0)
        buf[at] = (uint8_t)(buf[at] + (int)rng_range(rng, -3, 3));
      break;
    }
  }
  return len;
}

Test(decode, fuzzed_records_never_crash_and_accepted_ones_match_avro_c,
     .timeout = 600) {
  rng_t rng = {20240601};
  static gen_buf_t gb;
  enum { POOL = 64 };
  static uint8_t pool[TP_SRC_COUNT][POOL][1024];
  static size_t pool_len[TP_SRC_COUNT][POOL];
  /* Short comments keep the pool small, so mutations hit the structure. */
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    for (int i = 0; i < POOL; i++) {
      tp_event_t ev;
      do
        gen_event(&rng, (tp_source_t)s, &gb, &ev);
      while (s == TP_SRC_FEEDBACK && ev.feedback.comment.len > 300);
      size_t n = ref_encode(&ref, &ev, pool[s][i] + 5, sizeof(pool[s][i]) - 5);
      if (rng_below(&rng, 4) == 0) { /* some framed, some not */
        tp_encode_confluent_header((uint32_t)rng_next(&rng), pool[s][i], 5);
        pool_len[s][i] = n + 5;
      } else {
        memmove(pool[s][i], pool[s][i] + 5, n);
        pool_len[s][i] = n;
      }
    }
  }

  static uint8_t buf[2048];
  unsigned long accepted = 0, by_reason[TP_REJECT_COUNT] = {0};
  char detail[256], hex[200];
  for (long it = 0; it < FUZZ_MUTATIONS; it++) {
    tp_source_t src = all_sources[rng_below(&rng, TP_SRC_COUNT)];
    int a = (int)rng_below(&rng, POOL), b = (int)rng_below(&rng, POOL);
    size_t len = pool_len[src][a];
    memcpy(buf, pool[src][a], len);
    len = mutate(&rng, buf, len, sizeof(buf), pool[src][b], pool_len[src][b]);

    tp_event_t got, want;
    detail[0] = '\0';
    tp_reject_t r = decode_exact(src, buf, len, &got, detail, sizeof(detail));
    cr_assert_lt((unsigned)r, TP_REJECT_COUNT);
    by_reason[r]++;
    /* Peeking stays within any input, and finds the decoded id of every
     * accepted record. */
    size_t id_off = 0, id_n = 0;
    bool peeked = peek_exact(buf, len, &id_off, &id_n);
    if (r == TP_REJECT_NONE) {
      cr_assert(peeked, "mutation %ld: accepted, but no event_id peeked [%s]", it,
                ref_hex(buf, len, hex));
      cr_assert(id_off == (size_t)(got.event_id.ptr - (const char *)buf) &&
                    id_n == got.event_id.len,
                "mutation %ld: peeked event_id differs from the decoded one [%s]", it,
                ref_hex(buf, len, hex));
    }
    if (r != TP_REJECT_NONE) {
      cr_assert_neq(r, TP_REJECT_TOO_LARGE);
      cr_assert_neq(r, TP_REJECT_FUTURE_TIMESTAMP);
      cr_assert_neq(r, TP_REJECT_UNKNOWN_TOPIC);
      cr_assert_eq(strncmp(detail, tp_reject_label(r), strlen(tp_reject_label(r))),
                   0, "detail '%s' for %s", detail, tp_reject_label(r));
      continue;
    }
    accepted++;
    /* Accepted means every length was in bounds: Avro-C is safe to run. */
    size_t skip = buf[0] == 0x00 ? 5 : 0;
    cr_assert_eq(ref_decode(&ref, src, buf + skip, len - skip, &want), 0,
                 "mutation %ld: accepted by tp_decode, refused by Avro-C [%s]", it,
                 ref_hex(buf, len, hex));
    const char *diff = ref_event_diff(&got, &want);
    cr_assert_null(diff, "mutation %ld: field %s differs from Avro-C [%s]", it,
                   diff, ref_hex(buf, len, hex));
  }
  /* The run is only meaningful if it explored both sides and many reasons. */
  cr_assert_gt(accepted, FUZZ_MUTATIONS / 50, "only %lu accepted", accepted);
  int reasons = 0;
  for (int i = 1; i < TP_REJECT_COUNT; i++)
    reasons += by_reason[i] > 0;
  cr_assert_geq(reasons, 10, "only %d distinct reasons seen", reasons);
  cr_log_info("%d mutations: %lu accepted, %d distinct rejection reasons",
              FUZZ_MUTATIONS, accepted, reasons);
}

/* ---- 5. schema check ---------------------------------------------------------- */

Test(decode, shipped_schemas_pass_the_check) {
  char err[256] = "";
  cr_assert_eq(tp_decode_check_schemas(err, sizeof(err)), TP_OK, "%s", err);
}

/*
 * Replace the first occurrence of from by to in src's shipped schema and run
 * the check on the result. @returns the check's status; err gets the message.
 */
static tp_err_t check_edited(tp_source_t src, const char *from, const char *to,
                             char *err, size_t size) {
  const char *json = tp_schema_json(src);
  const char *at = strstr(json, from);
  cr_assert_not_null(at, "'%s' not found in the %s schema", from,
                     tp_source_name(src));
  size_t head = (size_t)(at - json);
  size_t cap = strlen(json) + strlen(to) + 1;
  char *edited = malloc(cap);
  cr_assert_not_null(edited);
  snprintf(edited, cap, "%.*s%s%s", (int)head, json, to, at + strlen(from));
  err[0] = '\0';
  tp_err_t rc = tp__decode_check_schema(src, edited, strlen(edited), err, size);
  free(edited);
  return rc;
}

Test(decode, schema_check_passes_each_shipped_schema_text) {
  char err[256];
  for (size_t i = 0; i < TP_ARRAY_SIZE(all_sources); i++) {
    const char *json = tp_schema_json(all_sources[i]);
    cr_expect_eq(tp__decode_check_schema(all_sources[i], json, strlen(json), err,
                                         sizeof(err)),
                 TP_OK, "%s", err);
  }
  cr_assert_null(tp_schema_json((tp_source_t)9));
}

Test(decode, schema_check_catches_an_extra_enum_symbol) {
  char err[256];
  cr_assert_eq(check_edited(TP_SRC_FEEDBACK, "\"OTHER\"]", "\"OTHER\", \"VOICE\"]",
                            err, sizeof(err)),
               TP_ESCHEMA);
  cr_assert_str_eq(err, "feedback schema: field 4 'channel': enum symbol 8 "
                        "'VOICE' is unknown to the decoder, which reads 8 symbols");
}

Test(decode, schema_check_catches_reordered_enum_symbols) {
  char err[256];
  cr_assert_eq(check_edited(TP_SRC_SUPPORT, "\"OPENED\", \"AGENT_REPLIED\"",
                            "\"AGENT_REPLIED\", \"OPENED\"", err, sizeof(err)),
               TP_ESCHEMA);
  cr_assert_not_null(strstr(err, "support schema: field 6 'kind': enum symbol 0 is "
                                 "'AGENT_REPLIED', the decoder reads index 0 as 'OPENED'"),
                     "%s", err);
}

Test(decode, schema_check_catches_a_missing_enum_symbol) {
  char err[256];
  cr_assert_eq(check_edited(TP_SRC_COMMERCE, ", \"RETURN_REQUESTED\"", "", err,
                            sizeof(err)),
               TP_ESCHEMA);
  cr_assert_not_null(strstr(err, "missing 'RETURN_REQUESTED'"), "%s", err);
}

/*
 * The .avsc files put one field per line: exchange the lines that hold
 * fields a and b (both end in "},", so the JSON stays valid).
 */
static char *swap_field_lines(const char *json, const char *a, const char *b) {
  const char *la = strstr(json, a), *lb = strstr(json, b);
  cr_assert(la != NULL && lb != NULL && la < lb);
  while (la > json && la[-1] != '\n')
    la--;
  while (lb > json && lb[-1] != '\n')
    lb--;
  const char *ea = strchr(la, '\n'), *eb = strchr(lb, '\n');
  cr_assert(ea != NULL && eb != NULL);
  size_t cap = strlen(json) + 1;
  char *out = malloc(cap);
  cr_assert_not_null(out);
  snprintf(out, cap, "%.*s%.*s%.*s%.*s%s", (int)(la - json), json,
           (int)(eb - lb), lb, (int)(lb - ea), ea, (int)(ea - la), la, eb);
  return out;
}

Test(decode, schema_check_catches_reordered_fields) {
  char err[256];
  char *json = swap_field_lines(tp_schema_json(TP_SRC_FEEDBACK),
                                "\"name\": \"stage\"", "\"name\": \"channel\"");
  cr_assert_eq(tp__decode_check_schema(TP_SRC_FEEDBACK, json, strlen(json), err,
                                       sizeof(err)),
               TP_ESCHEMA, "%s", json);
  cr_assert_str_eq(err, "feedback schema: field 3 is 'channel', the decoder reads "
                        "'stage' there");
  free(json);
  json = swap_field_lines(tp_schema_json(TP_SRC_FEEDBACK), "\"name\": \"nps\"",
                          "\"name\": \"ces\"");
  cr_assert_eq(tp__decode_check_schema(TP_SRC_FEEDBACK, json, strlen(json), err,
                                       sizeof(err)),
               TP_ESCHEMA);
  cr_assert_str_eq(err, "feedback schema: field 7 is 'ces', the decoder reads "
                        "'nps' there");
  free(json);
}

Test(decode, schema_check_catches_a_changed_type) {
  char err[256];
  cr_assert_eq(check_edited(TP_SRC_FEEDBACK, "{\"name\": \"csat\", \"type\": [\"null\", \"int\"]",
                            "{\"name\": \"csat\", \"type\": [\"null\", \"long\"]", err,
                            sizeof(err)),
               TP_ESCHEMA);
  cr_assert_str_eq(err, "feedback schema: field 6 'csat' is [null, long], the "
                        "decoder reads [null, int]");
  cr_assert_eq(check_edited(TP_SRC_SUPPORT, "\"type\": \"boolean\"", "\"type\": \"int\"",
                            err, sizeof(err)),
               TP_ESCHEMA);
  cr_assert_str_eq(err, "support schema: field 7 'complaint' is int, the decoder "
                        "reads boolean");
}

Test(decode, schema_check_catches_reversed_union_branches) {
  char err[256];
  cr_assert_eq(check_edited(TP_SRC_COMMERCE, "[\"null\", \"long\"], \"default\": null",
                            "[\"long\", \"null\"], \"default\": 0", err, sizeof(err)),
               TP_ESCHEMA);
  cr_assert_str_eq(err, "commerce schema: field 7 'amount_minor' is [long, null], "
                        "the decoder reads [null, long]");
}

Test(decode, schema_check_catches_an_extra_or_missing_field) {
  char err[256];
  cr_assert_eq(check_edited(TP_SRC_SUPPORT, "\"doc\": \"meaningful on OPENED\"}",
                            "\"doc\": \"meaningful on OPENED\"},\n"
                            "    {\"name\": \"agent\", \"type\": \"string\"}",
                            err, sizeof(err)),
               TP_ESCHEMA);
  cr_assert_str_eq(err, "support schema: extra field 8 'agent' after the 8 "
                        "fields the decoder reads");
  cr_assert_eq(check_edited(TP_SRC_COMMERCE,
                            ",\n    {\"name\": \"reason\", \"type\": [\"null\", "
                            "\"string\"], \"default\": null}",
                            "", err, sizeof(err)),
               TP_ESCHEMA);
  cr_assert_str_eq(err, "commerce schema: field 8 'reason' is missing (the schema "
                        "has 8)");
}

Test(decode, schema_check_reports_unparsable_json) {
  char err[256];
  cr_assert_eq(tp__decode_check_schema(TP_SRC_FEEDBACK, "{\"type\": \"record\"", 17,
                                       err, sizeof(err)),
               TP_ESCHEMA);
  cr_assert_not_null(strstr(err, "feedback schema: Avro-C cannot parse it"), "%s", err);
  cr_assert_eq(tp__decode_check_schema(TP_SRC_SUPPORT, "\"string\"", 8, err,
                                       sizeof(err)),
               TP_ESCHEMA);
  cr_assert_str_eq(err, "support schema: top-level type is string, expected a record");
}

/* ---- labels and the touchpoint alphabet --------------------------------------- */

Test(decode, labels_and_descriptions_come_from_the_reject_map) {
  static const struct {
    tp_reject_t r;
    const char *label;
  } want[] = {
#define XX(code, label, msg) {TP_REJECT_##code, label},
      TP_REJECT_MAP(XX)
#undef XX
  };
  for (size_t i = 0; i < TP_ARRAY_SIZE(want); i++) {
    cr_expect_str_eq(tp_reject_label(want[i].r), want[i].label);
    cr_expect_gt(strlen(tp_reject_describe(want[i].r)), 5);
  }
  cr_expect_str_eq(tp_reject_label(TP_REJECT_TRUNCATED), "truncated");
  cr_expect_not_null(tp_reject_label(TP_REJECT_NONE));
  cr_expect_not_null(tp_reject_label((tp_reject_t)999));
  cr_expect_not_null(tp_reject_describe((tp_reject_t)-1));
}

Test(decode, touchpoint_alphabet_is_exactly_spec_charset) {
  const char *allowed =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-";
  for (int c = 0; c < 256; c++) {
    int want = c != 0 && strchr(allowed, c) != NULL;
    cr_expect_eq(!!tp_touchpoint_char_ok((unsigned char)c), want, "byte 0x%02x", c);
  }
  char long_tp[TP_TOUCHPOINT_MAX + 1];
  memset(long_tp, 'a', sizeof(long_tp));
  cr_expect(tp_touchpoint_valid("checkout.payment", 16));
  cr_expect(tp_touchpoint_valid("support/chat:eu-1_a", 19));
  cr_expect(tp_touchpoint_valid(long_tp, TP_TOUCHPOINT_MAX));
  cr_expect_not(tp_touchpoint_valid(long_tp, TP_TOUCHPOINT_MAX + 1));
  cr_expect_not(tp_touchpoint_valid("", 0));
  cr_expect_not(tp_touchpoint_valid(NULL, 3));
  cr_expect_not(tp_touchpoint_valid("a b", 3));
  cr_expect_not(tp_touchpoint_valid("ab\0", 3));
}

/*
 * tp_decode() checks short touchpoints 16 bytes at a time when enough of the
 * record follows, and byte by byte otherwise: put every byte value at every
 * position of touchpoints around the 16- and 32-byte edges, with and without
 * a long comment after them, and compare with the alphabet.
 */
Test(decode, touchpoint_check_agrees_with_alphabet_at_every_position) {
  static const size_t lens[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 128};
  static char tp[TP_TOUCHPOINT_MAX], comment[64];
  static uint8_t buf[512];
  memset(comment, 'c', sizeof(comment));
  unsigned long checked = 0;
  for (size_t li = 0; li < TP_ARRAY_SIZE(lens); li++) {
    size_t len = lens[li];
    for (size_t pos = 0; pos < len; pos++) {
      for (int c = 0; c < 256; c++) {
        for (int tail = 0; tail < 2; tail++) {
          memset(tp, 'a' + (int)(pos % 26), len);
          tp[pos] = (char)c;
          tp_event_t ev = {.source = TP_SRC_FEEDBACK,
                           .event_id = {"e", 1},
                           .occurred_at = 1,
                           .touchpoint = {tp, (uint32_t)len}};
          ev.feedback.csat = ev.feedback.nps = ev.feedback.ces = TP_SCORE_NULL;
          ev.feedback.repurchase = ev.feedback.try_other = TP_SCORE_NULL;
          ev.feedback.comment =
              tail ? (tp_str_t){comment, sizeof(comment)} : (tp_str_t){NULL, 0};
          size_t n = tp_encode_event(&ev, buf, sizeof(buf));
          cr_assert_gt(n, 0);
          tp_event_t got;
          tp_reject_t r = decode_exact(TP_SRC_FEEDBACK, buf, n, &got, NULL, 0);
          int want = tp_touchpoint_char_ok((unsigned char)c);
          cr_assert_eq(r, want ? TP_REJECT_NONE : TP_REJECT_BAD_TOUCHPOINT,
                       "byte 0x%02x at %zu of %zu (tail %d): %s", c, pos, len,
                       tail, tp_reject_label(r));
          checked++;
        }
      }
    }
  }
  cr_assert_gt(checked, 100000);
}

/* ---- the five scores read at once --------------------------------------- */

/*
 * A feedback record's scores are read with one 16-byte load where the build
 * has SSSE3, and one by one otherwise or when that path declines. Whatever
 * the path, the verdict must be the plain reference reader's: for every
 * pattern of null and present scores (values at their bounds), records short
 * and long (the load comes from the record's last 16 bytes when the scores
 * are near its end, and records under 16 bytes take the one-by-one path),
 * every value of every byte from the first score to the comment's union
 * index, and the record cut short anywhere from the first score on.
 */
Test(decode, scores_agree_with_the_reference_at_every_byte_and_position) {
  static const struct {
    int8_t lo, hi;
  } range[5] = {{1, 5}, {0, 10}, {1, 7}, {0, 10}, {0, 10}};
  static const size_t customer_lens[] = {0, 1, 7, 30};
  static const size_t comment_lens[] = {0, 1, 14, 100};
  char customer[32], comment[128];
  memset(customer, 'c', sizeof(customer));
  memset(comment, 'x', sizeof(comment));
  uint8_t buf[512];
  size_t checked = 0, fast_shaped = 0;
  for (unsigned pattern = 0; pattern < 32; pattern++) {
    for (size_t ci = 0; ci < TP_ARRAY_SIZE(customer_lens); ci++) {
      for (size_t mi = 0; mi < TP_ARRAY_SIZE(comment_lens) + 1; mi++) {
        tp_event_t ev = {.source = TP_SRC_FEEDBACK,
                         .event_id = {"e", 1},
                         .occurred_at = ci == 0 ? 0 : 1700000000000,
                         .touchpoint = {"t", 1}};
        ev.feedback.customer_id =
            customer_lens[ci] ? (tp_str_t){customer, (uint32_t)customer_lens[ci]}
                              : (tp_str_t){NULL, 0};
        ev.feedback.comment =
            mi < TP_ARRAY_SIZE(comment_lens)
                ? (tp_str_t){comment, (uint32_t)comment_lens[mi]}
                : (tp_str_t){NULL, 0};
        int8_t *score[5] = {&ev.feedback.csat, &ev.feedback.nps, &ev.feedback.ces,
                            &ev.feedback.repurchase, &ev.feedback.try_other};
        for (int i = 0; i < 5; i++)
          *score[i] = !(pattern >> i & 1) ? TP_SCORE_NULL
                      : (pattern + (unsigned)i) & 1 ? range[i].hi
                                                     : range[i].lo;
        size_t n = tp_encode_event(&ev, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        /* the scores start after the customer id, end before the comment */
        size_t comment_bytes =
            ev.feedback.comment.ptr == NULL ? 1
            : ev.feedback.comment.len < 64  ? 2 + ev.feedback.comment.len
                                            : 3 + ev.feedback.comment.len;
        size_t score_bytes = 5 + (size_t)__builtin_popcount(pattern);
        size_t first = n - comment_bytes - score_bytes;
        fast_shaped += n >= 16;

        tp_event_t got, want;
        tp_reject_t r = decode_exact(TP_SRC_FEEDBACK, buf, n, &got, NULL, 0);
        cr_assert_eq(r, TP_REJECT_NONE, "pattern %u: %s", pattern, tp_reject_label(r));
        cr_assert_null(ref_event_diff(&got, &ev), "pattern %u: field %s", pattern,
                       ref_event_diff(&got, &ev));

        for (size_t at = first; at <= first + score_bytes; at++) {
          uint8_t keep = buf[at];
          for (int c = 0; c < 256; c++) {
            buf[at] = (uint8_t)c;
            r = decode_exact(TP_SRC_FEEDBACK, buf, n, &got, NULL, 0);
            tp_reject_t w = rref_decode(TP_SRC_FEEDBACK, buf, n, &want);
            cr_assert_eq(r, w,
                         "pattern %u, %zu-byte record, byte %zu set to 0x%02x: "
                         "%s, the reference says %s",
                         pattern, n, at, c, tp_reject_label(r), tp_reject_label(w));
            if (r == TP_REJECT_NONE) {
              const char *diff = ref_event_diff(&got, &want);
              cr_assert_null(diff, "pattern %u, byte %zu = 0x%02x: field %s differs",
                             pattern, at, c, diff);
            }
            checked++;
          }
          buf[at] = keep;
        }
        /* and cut short anywhere from the first score on */
        for (size_t len = first; len < n; len++) {
          r = decode_exact(TP_SRC_FEEDBACK, buf, len, &got, NULL, 0);
          tp_reject_t w = rref_decode(TP_SRC_FEEDBACK, buf, len, &want);
          cr_assert_eq(r, w, "pattern %u, %zu-byte record cut to %zu: %s, the "
                       "reference says %s", pattern, n, len,
                       tp_reject_label(r), tp_reject_label(w));
          cr_assert_neq(r, TP_REJECT_NONE);
          checked++;
        }
      }
    }
  }
  cr_assert_gt(checked, 1000000);
  cr_assert_gt(fast_shaped, 500);
}

/*
 * Ids (event, ticket, order, customer) and occurred_at are first read at
 * the length this thread read for the same field last time (value
 * speculation in decode.c). Whatever the previous record left as the guess,
 * the verdict and every value must be the plain reference reader's: every
 * pair of a previous and a current record over id lengths (one-byte and
 * two-byte length varints, over the limit) and timestamps of every encoded
 * size (negative ones too), and every current record cut short at every byte
 * after a previous record of its own shape, whose guesses all hold up to the
 * cut.
 */
typedef struct {
  uint8_t bytes[512];
  size_t len;
} shaped_t;

static void shaped_record(tp_source_t src, uint32_t id_len, int64_t t,
                          shaped_t *out) {
  static char id[200];
  memset(id, '7', sizeof(id));
  tp_event_t ev = {.source = src,
                   .event_id = {id, id_len},
                   .occurred_at = t,
                   .touchpoint = {"web.home", 8}};
  switch (src) {
  case TP_SRC_FEEDBACK:
    /* null in one shape, so a guess also meets a missing customer */
    ev.feedback.customer_id =
        id_len == 5 ? (tp_str_t){NULL, 0} : (tp_str_t){id, id_len};
    ev.feedback.csat = 4;
    ev.feedback.nps = TP_SCORE_NULL;
    ev.feedback.ces = TP_SCORE_NULL;
    ev.feedback.repurchase = TP_SCORE_NULL;
    ev.feedback.try_other = TP_SCORE_NULL;
    ev.feedback.comment = (tp_str_t){"fine", 4};
    break;
  case TP_SRC_SUPPORT:
    ev.support.ticket_id = (tp_str_t){id, id_len};
    break;
  case TP_SRC_COMMERCE:
    ev.commerce.order_id = (tp_str_t){id, id_len};
    ev.commerce.has_amount = true;
    ev.commerce.amount_minor = 1999;
    break;
  default:
    break;
  }
  out->len = tp_encode_event(&ev, out->bytes, sizeof(out->bytes));
  cr_assert_gt(out->len, 0);
}

static void check_after(tp_source_t src, const shaped_t *prev, const uint8_t *cur,
                        size_t len, const char *what) {
  tp_event_t got, want;
  (void)decode_exact(src, prev->bytes, prev->len, &got, NULL, 0);
  tp_reject_t r = decode_exact(src, cur, len, &got, NULL, 0);
  tp_reject_t w = rref_decode(src, cur, len, &want);
  cr_assert_eq(r, w, "%s %s: %s, the reference says %s", tp_source_name(src), what,
               tp_reject_label(r), tp_reject_label(w));
  if (r == TP_REJECT_NONE)
    cr_assert_null(ref_event_diff(&got, &want), "%s %s: field %s differs",
                   tp_source_name(src), what, ref_event_diff(&got, &want));
}

Test(decode, guessed_lengths_agree_with_the_reference_whatever_came_before) {
  static const uint32_t id_lens[] = {1, 5, 35, 36, 37, 63, 64, 100, 128, 129};
  static const int64_t times[] = {
      0,          1,          63,         64,         8191,
      8192,       INT64_C(1) << 27,       INT64_C(1) << 34,
      INT64_C(1700000000000), INT64_C(1) << 41,    INT64_C(1) << 48,
      INT64_C(1) << 55,       INT64_C(1) << 62,    INT64_MAX,
      -1,         INT64_MIN};
  enum { N_ID = TP_ARRAY_SIZE(id_lens), N_T = TP_ARRAY_SIZE(times) };
  static shaped_t shapes[N_ID * N_T];
  char what[128];
  size_t accepted = 0, checked = 0;
  for (size_t s = 0; s < TP_ARRAY_SIZE(all_sources); s++) {
    tp_source_t src = all_sources[s];
    for (size_t i = 0; i < N_ID * N_T; i++)
      shaped_record(src, id_lens[i / N_T], times[i % N_T], &shapes[i]);
    for (size_t c = 0; c < N_ID * N_T; c++) {
      for (size_t p = 0; p < N_ID * N_T; p++) {
        snprintf(what, sizeof(what), "id %u bytes at %" PRId64 " after id %u at %" PRId64,
                 id_lens[c / N_T], times[c % N_T], id_lens[p / N_T], times[p % N_T]);
        check_after(src, &shapes[p], shapes[c].bytes, shapes[c].len, what);
        checked++;
      }
      tp_event_t ev;
      accepted += rref_decode(src, shapes[c].bytes, shapes[c].len, &ev) == TP_REJECT_NONE;
      for (size_t len = 1; len < shapes[c].len; len++) {
        snprintf(what, sizeof(what), "id %u bytes at %" PRId64 " cut to %zu of %zu",
                 id_lens[c / N_T], times[c % N_T], len, shapes[c].len);
        check_after(src, &shapes[c], shapes[c].bytes, len, what);
        checked++;
      }
    }
  }
  cr_assert_gt(checked, 70000);
  cr_assert_gt(accepted, 200); /* most shapes are valid records */
}

/*
 * A comment or a return reason ends its record, and its length, one varint
 * byte under 64 and two up to 8191, is read without a branch on its size
 * (rd_text in decode.c). For texts of every size class, null too: every
 * value of the union byte and of the two bytes after it, and the record cut
 * short around them and at its end, give the plain reference reader's
 * verdict and values.
 */
static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static void check_against_reference(tp_source_t src, const uint8_t *buf, size_t len,
                                    const char *what, size_t at, int c) {
  tp_event_t got, want;
  tp_reject_t r = decode_exact(src, buf, len, &got, NULL, 0);
  tp_reject_t w = rref_decode(src, buf, len, &want);
  cr_assert_eq(r, w, "%s %s, %zu bytes, byte %zu = 0x%02x: %s, the reference says %s",
               tp_source_name(src), what, len, at, c, tp_reject_label(r),
               tp_reject_label(w));
  if (r == TP_REJECT_NONE)
    cr_assert_null(ref_event_diff(&got, &want), "%s %s, byte %zu = 0x%02x: field %s",
                   tp_source_name(src), what, at, c, ref_event_diff(&got, &want));
}

Test(decode, text_lengths_agree_with_the_reference_at_every_byte) {
  static const long text_lens[] = {-1, 0, 1, 2, 63, 64, 65, 127, 128,
                                   TP_COMMENT_MAX, TP_COMMENT_MAX + 1, 8191, 8192};
  static char text[8200];
  static uint8_t buf[8400];
  memset(text, 'w', sizeof(text));
  char what[64];
  size_t checked = 0, accepted = 0;
  tp_source_t srcs[] = {TP_SRC_FEEDBACK, TP_SRC_COMMERCE};
  for (size_t si = 0; si < TP_ARRAY_SIZE(srcs); si++) {
    for (size_t li = 0; li < TP_ARRAY_SIZE(text_lens); li++) {
      long tl = text_lens[li];
      tp_str_t t = tl < 0 ? (tp_str_t){NULL, 0} : (tp_str_t){text, (uint32_t)tl};
      tp_event_t ev = {.source = srcs[si],
                       .event_id = {"e-1", 3},
                       .occurred_at = 1700000000000,
                       .touchpoint = {"web.home", 8}};
      if (srcs[si] == TP_SRC_FEEDBACK) {
        ev.feedback.csat = 4;
        ev.feedback.nps = ev.feedback.ces = TP_SCORE_NULL;
        ev.feedback.repurchase = ev.feedback.try_other = TP_SCORE_NULL;
        ev.feedback.comment = t;
      } else {
        ev.commerce.order_id = (tp_str_t){"o-1", 3};
        ev.commerce.kind = TP_COMMERCE_RETURN_REQUESTED;
        ev.commerce.reason = t;
      }
      size_t n = tp_encode_event(&ev, buf, sizeof(buf));
      cr_assert_gt(n, 0);
      size_t tail = tl < 0 ? 1 : 1 + varint_size(2 * (uint64_t)tl) + (size_t)tl;
      size_t u = n - tail; /* the union byte */
      snprintf(what, sizeof(what), "text of %ld bytes", tl);
      check_against_reference(srcs[si], buf, n, what, u, buf[u]);
      accepted += rref_decode(srcs[si], buf, n, &(tp_event_t){0}) == TP_REJECT_NONE;
      for (size_t at = u; at < u + 3 && at < n; at++) {
        uint8_t keep = buf[at];
        for (int c = 0; c < 256; c++) {
          buf[at] = (uint8_t)c;
          check_against_reference(srcs[si], buf, n, what, at, c);
          checked++;
        }
        buf[at] = keep;
      }
      for (size_t len = u; len < n; len++) {
        if (len > u + 4 && len + 4 < n)
          continue; /* the middle of a long text: the same check as its end */
        check_against_reference(srcs[si], buf, len, what, len, -1);
        cr_assert_neq(rref_decode(srcs[si], buf, len, &(tp_event_t){0}), TP_REJECT_NONE);
        checked++;
      }
    }
  }
  cr_assert_gt(checked, 15000);
  cr_assert_geq(accepted, 20); /* every size but the comment over its limit */
}

/*
 * Where tp_decode() runs the BMI2 build of the decoder, the plain one must
 * give the same verdicts, details and values, on valid records and on
 * mutated ones (which reach the fallbacks of every reader).
 */
Test(decode, bmi2_and_plain_builds_agree, .timeout = 600) {
  if (tp__decode_select(TP_DECODER_BMI2) != TP_DECODER_BMI2)
    cr_skip_test("no BMI2 build here, or this processor's PEXT is slow");
  rng_t rng = {20261208};
  static gen_buf_t gb;
  static uint8_t rec[BUF_CAP + 5], other[BUF_CAP + 5];
  static uint8_t buf[2 * (BUF_CAP + 5)];
  char detail_a[256], detail_b[256];
  size_t accepted = 0, rejected = 0;
  for (int i = 0; i < 60000; i++) {
    tp_source_t src = all_sources[rng_below(&rng, TP_SRC_COUNT)];
    tp_event_t ev;
    gen_event(&rng, src, &gb, &ev);
    size_t n = ref_encode(&ref, &ev, rec, sizeof(rec));
    gen_event(&rng, src, &gb, &ev);
    size_t m = ref_encode(&ref, &ev, other, sizeof(other));
    memcpy(buf, rec, n);
    size_t len = i % 4 == 0 ? n : mutate(&rng, buf, n, sizeof(buf), other, m);

    tp_event_t a, b;
    detail_a[0] = detail_b[0] = '\0';
    cr_assert_eq(tp__decode_select(TP_DECODER_PLAIN), TP_DECODER_PLAIN);
    tp_reject_t ra = decode_exact(src, buf, len, &a, detail_a, sizeof(detail_a));
    cr_assert_eq(tp__decode_select(TP_DECODER_BMI2), TP_DECODER_BMI2);
    tp_reject_t rb = decode_exact(src, buf, len, &b, detail_b, sizeof(detail_b));
    cr_assert_eq(ra, rb, "record %d: plain %s, BMI2 %s", i, tp_reject_label(ra),
                 tp_reject_label(rb));
    cr_assert_str_eq(detail_a, detail_b, "record %d", i);
    if (ra == TP_REJECT_NONE)
      cr_assert_null(ref_event_diff(&a, &b), "record %d: field %s", i,
                     ref_event_diff(&a, &b));
    accepted += ra == TP_REJECT_NONE;
    rejected += ra != TP_REJECT_NONE;
  }
  cr_assert_gt(accepted, 15000);
  cr_assert_gt(rejected, 10000);
}
