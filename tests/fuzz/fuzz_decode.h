/*
 * fuzz_decode.h -- the body of fuzz_decode_feedback, fuzz_decode_support and
 * fuzz_decode_commerce: tp_decode() on arbitrary bytes of one input schema,
 * in both framings. Each of those files defines FUZZ_SOURCE and includes this.
 *
 * Every input is decoded twice:
 *   1. as it is: plain Avro binary, or Confluent wire format when its first
 *      byte is the 0x00 magic byte (how tp_decode tells the two apart);
 *   2. behind a Confluent header (0x00 + 4-byte schema id) put in front.
 * and, when it is itself Confluent-framed, its body alone once more. The
 * results must agree: the same reason, and for an accepted record the same
 * values.
 *
 * Beyond "no crash, no sanitizer report", each decode checks:
 *   - the plain reference reader of fuzz_ref_decode.h gives the same
 *     verdict (the same reason) and, for an accepted record, the same values;
 *   - the reason is one tp_decode can give for a record (not too_large,
 *     future_timestamp or unknown_topic, which belong to the consumer);
 *   - a rejection's detail is NUL-terminated, fits its buffer, starts with
 *     the reason's label, and is the same reason with a NULL or tiny buffer;
 *   - an accepted record satisfies SPEC's ranges, its strings lie inside the
 *     record, Avro-C's generic reader accepts the same bytes and reads the
 *     same values field by field, and tp_encode_event() of the values
 *     decodes back to them.
 */
#ifndef TP_FUZZ_DECODE_H
#define TP_FUZZ_DECODE_H

#include "fixtures/avro_ref.h"
#include "fuzz_common.h"
#include "fuzz_ref_decode.h"
#include "touchpulse/decode.h"
#include "touchpulse/encode.h"

#ifndef FUZZ_SOURCE
#error "define FUZZ_SOURCE (TP_SRC_FEEDBACK, TP_SRC_SUPPORT or TP_SRC_COMMERCE)"
#endif

#define DETAIL_SIZE 256

static ref_t ref;

FUZZ_SUPPRESS_AVRO_C_LEAKS

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  ref_init(&ref);
  return 0;
}

/* s lies inside buf[0..len) (or is null where the schema allows it). */
static void check_str_in(const char *field, tp_str_t s, const uint8_t *buf,
                         size_t len, int nullable) {
  if (s.ptr == NULL) {
    FUZZ_CHECK(nullable, "%s is null but the field is required", field);
    FUZZ_CHECK(s.len == 0, "%s is null with length %u", field, s.len);
    return;
  }
  const uint8_t *p = (const uint8_t *)s.ptr;
  FUZZ_CHECK(p >= buf && p <= buf + len && s.len <= (size_t)(buf + len - p),
             "%s (%u bytes at %p) is outside the record (%zu bytes at %p)",
             field, s.len, (const void *)p, len, (const void *)buf);
}

static void check_score(const char *field, int8_t v, int lo, int hi) {
  FUZZ_CHECK(v == TP_SCORE_NULL || (v >= lo && v <= hi),
             "%s is %d, outside %d-%d", field, v, lo, hi);
}

/* What SPEC and decode.h promise about an accepted record. */
static void check_accepted(tp_source_t src, const tp_event_t *ev,
                           const uint8_t *buf, size_t len) {
  FUZZ_CHECK(ev->source == src, "source %d, decoded as %d", ev->source, src);
  check_str_in("event_id", ev->event_id, buf, len, 0);
  FUZZ_CHECK(ev->event_id.len >= 1 && ev->event_id.len <= TP_ID_MAX,
             "event_id of %u bytes accepted", ev->event_id.len);
  FUZZ_CHECK(ev->occurred_at >= 0, "occurred_at %lld accepted",
             (long long)ev->occurred_at);
  check_str_in("touchpoint", ev->touchpoint, buf, len, 0);
  FUZZ_CHECK(tp_touchpoint_valid(ev->touchpoint.ptr, ev->touchpoint.len),
             "invalid touchpoint of %u bytes accepted", ev->touchpoint.len);
  FUZZ_CHECK(ev->stage < TP_STAGE_COUNT, "stage %u", ev->stage);
  FUZZ_CHECK(ev->channel < TP_CHANNEL_COUNT, "channel %u", ev->channel);
  switch (src) {
  case TP_SRC_FEEDBACK:
    check_str_in("customer_id", ev->feedback.customer_id, buf, len, 1);
    check_score("csat", ev->feedback.csat, 1, 5);
    check_score("nps", ev->feedback.nps, 0, 10);
    check_score("ces", ev->feedback.ces, 1, 7);
    check_score("repurchase", ev->feedback.repurchase, 0, 10);
    check_score("try_other", ev->feedback.try_other, 0, 10);
    check_str_in("comment", ev->feedback.comment, buf, len, 1);
    FUZZ_CHECK(ev->feedback.comment.len <= TP_COMMENT_MAX,
               "comment of %u bytes accepted", ev->feedback.comment.len);
    break;
  case TP_SRC_SUPPORT:
    check_str_in("ticket_id", ev->support.ticket_id, buf, len, 0);
    FUZZ_CHECK(ev->support.ticket_id.len >= 1 &&
                   ev->support.ticket_id.len <= TP_ID_MAX,
               "ticket_id of %u bytes accepted", ev->support.ticket_id.len);
    FUZZ_CHECK(ev->support.kind < TP_SUPPORT_KIND_COUNT, "support kind %u",
               ev->support.kind);
    break;
  case TP_SRC_COMMERCE:
    check_str_in("order_id", ev->commerce.order_id, buf, len, 0);
    FUZZ_CHECK(ev->commerce.order_id.len >= 1 &&
                   ev->commerce.order_id.len <= TP_ID_MAX,
               "order_id of %u bytes accepted", ev->commerce.order_id.len);
    FUZZ_CHECK(ev->commerce.kind < TP_COMMERCE_KIND_COUNT, "commerce kind %u",
               ev->commerce.kind);
    FUZZ_CHECK(ev->commerce.has_amount || ev->commerce.amount_minor == 0,
               "null amount_minor left as %lld",
               (long long)ev->commerce.amount_minor);
    check_str_in("reason", ev->commerce.reason, buf, len, 1);
    break;
  }
}

/*
 * Decode buf[0..len) (an exactly-sized heap block) and check everything that
 * does not need a second framing. @returns the reason; *ev is filled when
 * the record was accepted.
 */
static tp_reject_t decode_checked(tp_source_t src, const uint8_t *buf,
                                  size_t len, tp_event_t *ev) {
  char *detail = fuzz_alloc(DETAIL_SIZE);
  memset(detail, 0x5a, DETAIL_SIZE);
  char hex[200];
  tp_reject_t r = tp_decode(src, buf, len, ev, detail, DETAIL_SIZE);
  FUZZ_CHECK((unsigned)r < TP_REJECT_COUNT, "reason %d out of range", (int)r);

  /* The plain reference reader gives the same verdict and values. */
  tp_event_t plain;
  tp_reject_t want_r = rref_decode(src, buf, len, &plain);
  FUZZ_CHECK(r == want_r, "tp_decode: %s (%.200s), reference: %s [%s]",
             tp_reject_label(r), r != TP_REJECT_NONE ? detail : "accepted",
             tp_reject_label(want_r), ref_hex(buf, len, hex));
  if (r == TP_REJECT_NONE) {
    const char *d = ref_event_diff(ev, &plain);
    FUZZ_CHECK(d == NULL, "field %s differs from the reference reader [%s]", d,
               ref_hex(buf, len, hex));
  }

  if (r != TP_REJECT_NONE) {
    FUZZ_CHECK(r != TP_REJECT_TOO_LARGE && r != TP_REJECT_FUTURE_TIMESTAMP &&
                   r != TP_REJECT_UNKNOWN_TOPIC,
               "tp_decode gave the consumer's reason %s", tp_reject_label(r));
    size_t dlen = strnlen(detail, DETAIL_SIZE);
    FUZZ_CHECK(dlen < DETAIL_SIZE, "detail not NUL-terminated within %d bytes",
               DETAIL_SIZE);
    const char *label = tp_reject_label(r);
    size_t llen = strlen(label);
    FUZZ_CHECK(strncmp(detail, label, llen) == 0 && detail[llen] == ':',
               "detail '%.200s' does not start with '%s:'", detail, label);

    /* The reason does not depend on the message buffer. */
    tp_event_t scratch;
    tp_reject_t again = tp_decode(src, buf, len, &scratch, NULL, 0);
    FUZZ_CHECK(again == r, "reason %s with a detail buffer, %s without",
               label, tp_reject_label(again));
    size_t small = 1 + len % 24;
    char *tiny = fuzz_alloc(small);
    again = tp_decode(src, buf, len, &scratch, tiny, small);
    FUZZ_CHECK(again == r, "reason %s, %s with a %zu-byte detail buffer", label,
               tp_reject_label(again), small);
    FUZZ_CHECK(strnlen(tiny, small) < small,
               "detail not NUL-terminated in a %zu-byte buffer", small);
    free(tiny);
    free(detail);
    return r;
  }
  free(detail);

  check_accepted(src, ev, buf, len);

  /* Avro-C reads the same record (after the Confluent header, if any). */
  size_t skip = buf[0] == 0x00 ? TP_CONFLUENT_HEADER_SIZE : 0;
  tp_event_t want;
  FUZZ_CHECK(ref_decode(&ref, src, buf + skip, len - skip, &want) == 0,
             "accepted by tp_decode, refused by Avro-C [%s]",
             ref_hex(buf, len, hex));
  const char *diff = ref_event_diff(ev, &want);
  FUZZ_CHECK(diff == NULL, "field %s differs from Avro-C's value [%s]", diff,
             ref_hex(buf, len, hex));

  /* tp_encode_event() writes the values back; they decode to the same. */
  size_t cap = TP_ENCODE_MAX(len);
  uint8_t *enc = fuzz_alloc(cap);
  size_t n = tp_encode_event(ev, enc, cap);
  FUZZ_CHECK(n > 0 && n <= len - skip,
             "re-encoding wrote %zu bytes for a %zu-byte body", n, len - skip);
  uint8_t *exact = fuzz_copy(enc, n);
  tp_event_t back;
  tp_reject_t rb = tp_decode(src, exact, n, &back, NULL, 0);
  FUZZ_CHECK(rb == TP_REJECT_NONE, "re-encoded record rejected: %s",
             tp_reject_label(rb));
  diff = ref_event_diff(&back, ev);
  FUZZ_CHECK(diff == NULL, "re-encoded record differs in %s", diff);
  free(exact);
  free(enc);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const tp_source_t src = FUZZ_SOURCE;
  tp_event_t raw_ev, framed_ev, body_ev;

  /* 1. As it is. libFuzzer's buffer is exactly size bytes on the heap. */
  tp_reject_t raw = decode_checked(src, data, size, &raw_ev);
  if (size == 0)
    FUZZ_CHECK(raw == TP_REJECT_EMPTY, "empty record: %s", tp_reject_label(raw));

  /* 2. Behind a Confluent header whose schema id comes from the input. */
  uint8_t *framed = fuzz_alloc(size + TP_CONFLUENT_HEADER_SIZE);
  uint32_t schema_id = (uint32_t)fuzz_hash(data, size);
  FUZZ_CHECK(tp_encode_confluent_header(schema_id, framed,
                                        TP_CONFLUENT_HEADER_SIZE) ==
                 TP_CONFLUENT_HEADER_SIZE,
             "tp_encode_confluent_header failed");
  if (size > 0)
    memcpy(framed + TP_CONFLUENT_HEADER_SIZE, data, size);
  tp_reject_t fr =
      decode_checked(src, framed, size + TP_CONFLUENT_HEADER_SIZE, &framed_ev);
  if (size == 0) {
    FUZZ_CHECK(fr == TP_REJECT_TRUNCATED, "header alone: %s",
               tp_reject_label(fr));
  } else if (data[0] != 0x00) {
    /* A plain record reads the same with or without the header. */
    FUZZ_CHECK(fr == raw, "plain: %s, framed: %s", tp_reject_label(raw),
               tp_reject_label(fr));
    if (raw == TP_REJECT_NONE) {
      const char *diff = ref_event_diff(&framed_ev, &raw_ev);
      FUZZ_CHECK(diff == NULL, "framed record differs in %s", diff);
    }
  } else {
    /* The body starts with 0x00: an empty event_id. */
    FUZZ_CHECK(fr == TP_REJECT_BAD_EVENT_ID,
               "header + body starting with 0x00: %s", tp_reject_label(fr));
  }
  free(framed);

  /* 3. A Confluent-framed input: its body alone, when that reads as plain. */
  if (size > TP_CONFLUENT_HEADER_SIZE && data[0] == 0x00 &&
      data[TP_CONFLUENT_HEADER_SIZE] != 0x00) {
    size_t blen = size - TP_CONFLUENT_HEADER_SIZE;
    uint8_t *body = fuzz_copy(data + TP_CONFLUENT_HEADER_SIZE, blen);
    tp_reject_t br = decode_checked(src, body, blen, &body_ev);
    FUZZ_CHECK(br == raw, "framed: %s, its body alone: %s",
               tp_reject_label(raw), tp_reject_label(br));
    if (raw == TP_REJECT_NONE) {
      const char *diff = ref_event_diff(&body_ev, &raw_ev);
      FUZZ_CHECK(diff == NULL, "body alone differs in %s", diff);
    }
    free(body);
  }
  return 0;
}

#endif
