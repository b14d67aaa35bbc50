/*
 * encode.c -- tp_event_t to Avro binary, for the demo's traffic generator,
 * the tests and the benchmarks.
 *
 * The mirror image of decode.c, specialised to the same three schemas and
 * byte-for-byte equal to what Avro-C's avro_value_write() produces for the
 * same values (test_encode.c checks this against Avro-C). It does not
 * validate: producing records that the decoder must reject is one of its jobs.
 */
#include <string.h>

#include "touchpulse/encode.h"

/*
 * The writer remembers that it ran out of room instead of returning at every
 * field: the record functions stay a flat list of fields, and the caller
 * checks once at the end. Once p is NULL nothing more is written.
 */
typedef struct {
  uint8_t *p;   /* next byte to write, NULL after an overflow */
  uint8_t *end; /* one past the last writable byte */
} enc_t;

static void put_long(enc_t *w, int64_t v) {
  /* Avro's zigzag: small magnitudes of either sign get short encodings.
   * The mask is all ones when v < 0, without right-shifting a negative
   * number (implementation-defined in C). */
  uint64_t n = ((uint64_t)v << 1) ^ -((uint64_t)v >> 63);
  uint8_t tmp[10];
  size_t len = 0;
  while (n >= 0x80) {
    tmp[len++] = (uint8_t)(n | 0x80);
    n >>= 7;
  }
  tmp[len++] = (uint8_t)n;
  if (w->p == NULL || (size_t)(w->end - w->p) < len) {
    w->p = NULL;
    return;
  }
  memcpy(w->p, tmp, len);
  w->p += len;
}

static void put_bytes(enc_t *w, const void *src, size_t len) {
  if (w->p == NULL || (size_t)(w->end - w->p) < len) {
    w->p = NULL;
    return;
  }
  if (len > 0)
    memcpy(w->p, src, len);
  w->p += len;
}

static void put_string(enc_t *w, tp_str_t s) {
  size_t len = s.ptr != NULL ? s.len : 0;
  put_long(w, (int64_t)len);
  put_bytes(w, s.ptr, len);
}

/* Every union in the input schemas is ["null", T]: branch 0 or 1. */
static void put_opt_string(enc_t *w, tp_str_t s) {
  put_long(w, s.ptr != NULL);
  if (s.ptr != NULL)
    put_string(w, s);
}

static void put_score(enc_t *w, int8_t score) {
  put_long(w, score != TP_SCORE_NULL);
  if (score != TP_SCORE_NULL)
    put_long(w, score);
}

static void put_boolean(enc_t *w, bool b) {
  uint8_t byte = b ? 1 : 0;
  put_bytes(w, &byte, 1);
}

size_t tp_encode_event(const tp_event_t *ev, void *buf, size_t cap) {
  if (ev == NULL || buf == NULL || (unsigned)ev->source >= TP_SRC_COUNT)
    return 0;
  enc_t w = {buf, (uint8_t *)buf + cap};

  put_string(&w, ev->event_id);
  put_long(&w, ev->occurred_at);
  put_string(&w, ev->touchpoint);
  put_long(&w, ev->stage);
  put_long(&w, ev->channel);
  switch (ev->source) {
  case TP_SRC_FEEDBACK:
    put_opt_string(&w, ev->feedback.customer_id);
    put_score(&w, ev->feedback.csat);
    put_score(&w, ev->feedback.nps);
    put_score(&w, ev->feedback.ces);
    put_score(&w, ev->feedback.repurchase);
    put_score(&w, ev->feedback.try_other);
    put_opt_string(&w, ev->feedback.comment);
    break;
  case TP_SRC_SUPPORT:
    put_string(&w, ev->support.ticket_id);
    put_long(&w, ev->support.kind);
    put_boolean(&w, ev->support.complaint);
    break;
  case TP_SRC_COMMERCE:
    put_string(&w, ev->commerce.order_id);
    put_long(&w, ev->commerce.kind);
    put_long(&w, ev->commerce.has_amount);
    if (ev->commerce.has_amount)
      put_long(&w, ev->commerce.amount_minor);
    put_opt_string(&w, ev->commerce.reason);
    break;
  }
  return w.p != NULL ? (size_t)(w.p - (uint8_t *)buf) : 0;
}

size_t tp_encode_confluent_header(uint32_t schema_id, void *buf, size_t cap) {
  if (buf == NULL || cap < TP_CONFLUENT_HEADER_SIZE)
    return 0;
  uint8_t *p = buf;
  p[0] = 0x00;
  p[1] = (uint8_t)(schema_id >> 24);
  p[2] = (uint8_t)(schema_id >> 16);
  p[3] = (uint8_t)(schema_id >> 8);
  p[4] = (uint8_t)schema_id;
  return TP_CONFLUENT_HEADER_SIZE;
}
