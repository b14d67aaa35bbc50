/*
 * test_encode.c -- the fast Avro encoder: byte equality with Avro-C's
 * avro_value_write(), bounds, nulls, the Confluent prefix, round trips.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "fixtures/avro_ref.h"
#include "touchpulse/decode.h"
#include "touchpulse/encode.h"

#define RECORDS_PER_SCHEMA 3000
#define BUF_CAP (TP_COMMENT_MAX + 1024)

static ref_t ref;

static void setup(void) { ref_init(&ref); }
static void teardown(void) { ref_close(&ref); }

TestSuite(encode, .init = setup, .fini = teardown);

static size_t string_bytes(const tp_event_t *ev) {
  size_t n = ev->event_id.len + ev->touchpoint.len;
  switch (ev->source) {
  case TP_SRC_FEEDBACK:
    return n + ev->feedback.customer_id.len + ev->feedback.comment.len;
  case TP_SRC_SUPPORT:
    return n + ev->support.ticket_id.len;
  case TP_SRC_COMMERCE:
    return n + ev->commerce.order_id.len + ev->commerce.reason.len;
  }
  return n;
}

static void check_matches_avro_c(tp_source_t src, uint64_t seed) {
  rng_t rng = {seed};
  static gen_buf_t gb;
  static uint8_t want[BUF_CAP], got[BUF_CAP];
  char hex[200];
  for (int i = 0; i < RECORDS_PER_SCHEMA; i++) {
    tp_event_t ev;
    gen_event(&rng, src, &gb, &ev);
    size_t n = ref_encode(&ref, &ev, want, sizeof(want));
    size_t m = tp_encode_event(&ev, got, sizeof(got));
    cr_assert_eq(m, n, "%s record %d: %zu bytes, Avro-C wrote %zu [%s]",
                 tp_source_name(src), i, m, n, ref_hex(want, n, hex));
    cr_assert_arr_eq(got, want, n, "%s record %d differs from Avro-C [%s]",
                     tp_source_name(src), i, ref_hex(want, n, hex));
    cr_assert_leq(n, TP_ENCODE_MAX(string_bytes(&ev)));
  }
}

Test(encode, feedback_bytes_equal_avro_c) {
  check_matches_avro_c(TP_SRC_FEEDBACK, 101);
}

Test(encode, support_bytes_equal_avro_c) {
  check_matches_avro_c(TP_SRC_SUPPORT, 102);
}

Test(encode, commerce_bytes_equal_avro_c) {
  check_matches_avro_c(TP_SRC_COMMERCE, 103);
}

/*
 * Values the decoder rejects are still written as given (the corpus and the
 * demo's incident generator rely on it), and still as Avro-C writes them.
 */
Test(encode, writes_out_of_range_values_as_avro_c_does) {
  static uint8_t want[BUF_CAP], got[BUF_CAP];
  tp_event_t ev = {.source = TP_SRC_FEEDBACK,
                   .event_id = {"x", 1},
                   .occurred_at = -1,
                   .touchpoint = {"has space", 9},
                   .stage = 3,
                   .channel = 7};
  ev.feedback.customer_id = (tp_str_t){NULL, 0};
  ev.feedback.csat = 127;
  ev.feedback.nps = -128;
  ev.feedback.ces = 0;
  ev.feedback.repurchase = 11;
  ev.feedback.try_other = -2;
  ev.feedback.comment = (tp_str_t){"", 0};
  size_t n = ref_encode(&ref, &ev, want, sizeof(want));
  cr_assert_eq(tp_encode_event(&ev, got, sizeof(got)), n);
  cr_assert_arr_eq(got, want, n);
  tp_event_t dec;
  cr_assert_eq(tp_decode(TP_SRC_FEEDBACK, got, n, &dec, NULL, 0),
               TP_REJECT_OUT_OF_RANGE);
}

Test(encode, extreme_longs_match_avro_c) {
  static const int64_t values[] = {0,          1,         -1,        63,
                                   64,         -64,       -65,       8191,
                                   8192,       INT32_MAX, INT32_MIN, INT64_MAX,
                                   INT64_MIN,  INT64_MIN + 1, 1LL << 62,
                                   -(1LL << 62)};
  static uint8_t want[256], got[256];
  for (size_t i = 0; i < TP_ARRAY_SIZE(values); i++) {
    tp_event_t ev = {.source = TP_SRC_COMMERCE,
                     .event_id = {"e", 1},
                     .occurred_at = values[i],
                     .touchpoint = {"t", 1}};
    ev.commerce.order_id = (tp_str_t){"o", 1};
    ev.commerce.has_amount = true;
    ev.commerce.amount_minor = values[i];
    size_t n = ref_encode(&ref, &ev, want, sizeof(want));
    cr_assert_eq(tp_encode_event(&ev, got, sizeof(got)), n, "value %" PRId64,
                 values[i]);
    cr_assert_arr_eq(got, want, n, "value %" PRId64, values[i]);
  }
}

Test(encode, nulls_are_written_as_branch_zero) {
  uint8_t buf[64];
  tp_event_t ev = {.source = TP_SRC_FEEDBACK,
                   .event_id = {"e", 1},
                   .occurred_at = 0,
                   .touchpoint = {"t", 1}};
  ev.feedback.customer_id = (tp_str_t){NULL, 0};
  ev.feedback.csat = ev.feedback.nps = ev.feedback.ces = TP_SCORE_NULL;
  ev.feedback.repurchase = ev.feedback.try_other = TP_SCORE_NULL;
  ev.feedback.comment = (tp_str_t){NULL, 0};
  static const uint8_t want[] = {0x02, 'e', 0x00, 0x02, 't', 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  cr_assert_eq(tp_encode_event(&ev, buf, sizeof(buf)), sizeof(want));
  cr_assert_arr_eq(buf, want, sizeof(want));

  ev.feedback.csat = 5;
  ev.feedback.comment = (tp_str_t){"ok", 2};
  static const uint8_t want2[] = {0x02, 'e', 0x00, 0x02, 't', 0x00, 0x00,
                                  0x00, 0x02, 0x0a, 0x00, 0x00, 0x00, 0x00,
                                  0x02, 0x04, 'o',  'k'};
  cr_assert_eq(tp_encode_event(&ev, buf, sizeof(buf)), sizeof(want2));
  cr_assert_arr_eq(buf, want2, sizeof(want2));
}

Test(encode, required_string_without_pointer_is_written_empty) {
  uint8_t buf[64];
  tp_event_t ev = {.source = TP_SRC_SUPPORT, .touchpoint = {"t", 1}};
  ev.event_id = (tp_str_t){NULL, 5};
  ev.support.ticket_id = (tp_str_t){NULL, 0};
  ev.support.complaint = true;
  static const uint8_t want[] = {0x00, 0x00, 0x02, 't', 0x00,
                                 0x00, 0x00, 0x00, 0x01};
  cr_assert_eq(tp_encode_event(&ev, buf, sizeof(buf)), sizeof(want));
  cr_assert_arr_eq(buf, want, sizeof(want));
}

Test(encode, returns_zero_and_stays_in_bounds_when_cap_is_too_small) {
  rng_t rng = {7};
  static gen_buf_t gb;
  static uint8_t buf[BUF_CAP + 16];
  for (int s = 0; s < TP_SRC_COUNT; s++) {
    for (int i = 0; i < 20; i++) {
      tp_event_t ev;
      gen_event(&rng, (tp_source_t)s, &gb, &ev);
      size_t n = tp_encode_event(&ev, buf, BUF_CAP);
      cr_assert_gt(n, 0);
      for (size_t cap = 0; cap < n; cap++) {
        memset(buf, 0xa5, n + 16);
        cr_assert_eq(tp_encode_event(&ev, buf, cap), 0, "cap %zu of %zu", cap, n);
        for (size_t j = cap; j < n + 16; j++)
          cr_assert_eq(buf[j], 0xa5, "cap %zu: byte %zu written", cap, j);
      }
      cr_assert_eq(tp_encode_event(&ev, buf, n), n);
    }
  }
}

Test(encode, rejects_unknown_source_and_null_arguments) {
  uint8_t buf[64];
  tp_event_t ev = {.source = (tp_source_t)3,
                   .event_id = {"e", 1},
                   .touchpoint = {"t", 1}};
  cr_assert_eq(tp_encode_event(&ev, buf, sizeof(buf)), 0);
  ev.source = TP_SRC_SUPPORT;
  cr_assert_eq(tp_encode_event(&ev, NULL, sizeof(buf)), 0);
  cr_assert_eq(tp_encode_event(NULL, buf, sizeof(buf)), 0);
}

Test(encode, round_trips_through_the_decoder) {
  rng_t rng = {8};
  static gen_buf_t gb;
  static uint8_t buf[BUF_CAP];
  for (int i = 0; i < 3000; i++) {
    tp_source_t src = (tp_source_t)rng_below(&rng, TP_SRC_COUNT);
    tp_event_t ev, got;
    gen_event(&rng, src, &gb, &ev);
    size_t n = tp_encode_event(&ev, buf, sizeof(buf));
    char detail[256];
    cr_assert_eq(tp_decode(src, buf, n, &got, detail, sizeof(detail)),
                 TP_REJECT_NONE, "record %d: %s", i, detail);
    const char *diff = ref_event_diff(&got, &ev);
    cr_assert_null(diff, "record %d: %s differs", i, diff);
  }
}

Test(encode, confluent_header_is_magic_byte_and_big_endian_id) {
  uint8_t buf[8];
  memset(buf, 0xee, sizeof(buf));
  cr_assert_eq(tp_encode_confluent_header(0x01020304u, buf, sizeof(buf)),
               TP_CONFLUENT_HEADER_SIZE);
  static const uint8_t want[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0xee};
  cr_assert_arr_eq(buf, want, sizeof(want));
  cr_assert_eq(tp_encode_confluent_header(0xffffffffu, buf, 5), 5);
  cr_assert_eq(buf[4], 0xff);
  memset(buf, 0xee, sizeof(buf));
  cr_assert_eq(tp_encode_confluent_header(1, buf, 4), 0);
  cr_assert_eq(buf[0], 0xee, "wrote with cap 4");
  cr_assert_eq(tp_encode_confluent_header(1, NULL, 5), 0);
}
