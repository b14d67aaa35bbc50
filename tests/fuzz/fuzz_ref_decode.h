/*
 * fuzz_ref_decode.h -- a plain reference for tp_decode(): the three input
 * schemas read field by field with the rules decode.h and README state, with
 * no speed tricks (no SIMD touchpoint check, no branch-free scores, no
 * inlining), so that the decoder targets can compare tp_decode() with it on
 * every input, accepted or not: the same reason, and for an accepted record
 * the same values.
 *
 * Avro-C cannot serve for rejected records (it allocates what a hostile
 * length claims, and it reads a 10-byte varint's excess bits without
 * complaint), hence this second reference. The rules, in wire order:
 *   - empty value: empty; first byte 0x00: Confluent framing, 5 bytes needed
 *     (bad_framing), then the record;
 *   - a long is a zigzag varint of at most 10 bytes, an int of at most 5;
 *     padding is allowed, but the last allowed byte may only carry the bits
 *     the type has left (bit 63 of a long: <= 0x01; bits 28-31 of an int:
 *     <= 0x0f); no terminating byte within the bytes left and fewer left
 *     than the maximum: truncated; otherwise bad_varint;
 *   - a string: a long length, negative: bad_length, more than is left:
 *     truncated;
 *   - ["null", T]: a long branch index 0 or 1, else bad_union;
 *   - an enum: an int index in [0, symbols), else bad_enum;
 *   - a boolean: one byte 0 or 1 (bad_boolean), none left: truncated;
 *   - event_id 1-128 bytes (bad_event_id), occurred_at >= 0 (out_of_range),
 *     touchpoint 1-128 bytes of [A-Za-z0-9._:/-] (bad_touchpoint), ticket_id
 *     and order_id 1-128 bytes (bad_id), scores in their SPEC range
 *     (out_of_range), each checked right after its field is read; a comment
 *     over 4096 bytes (comment_too_long) once the record is read;
 *   - bytes after the last field: trailing_bytes.
 */
#ifndef TP_FUZZ_REF_DECODE_H
#define TP_FUZZ_REF_DECODE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "touchpulse/decode.h"

typedef struct {
  const uint8_t *p, *end;
} rref_t;

/* A zigzag varint of at most max bytes, still encoded. */
static tp_reject_t rref_varint(rref_t *r, unsigned max, uint64_t *raw) {
  size_t left = (size_t)(r->end - r->p);
  uint64_t v = 0;
  for (unsigned i = 0; i < max; i++) {
    if (i == left)
      return TP_REJECT_TRUNCATED;
    uint8_t b = r->p[i];
    if (i == max - 1 && b > (max == 10 ? 0x01 : 0x0f))
      return TP_REJECT_BAD_VARINT; /* more bits than the type, or no end */
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (b < 0x80) {
      r->p += i + 1;
      *raw = v;
      return TP_REJECT_NONE;
    }
  }
  return TP_REJECT_BAD_VARINT;
}

static int64_t rref_unzigzag(uint64_t z) {
  return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

#define RREF_TRY(e)                                                            \
  do {                                                                         \
    tp_reject_t rc_ = (e);                                                     \
    if (rc_ != TP_REJECT_NONE)                                                 \
      return rc_;                                                              \
  } while (0)

static tp_reject_t rref_long(rref_t *r, int64_t *out) {
  uint64_t raw;
  RREF_TRY(rref_varint(r, 10, &raw));
  *out = rref_unzigzag(raw);
  return TP_REJECT_NONE;
}

static tp_reject_t rref_string(rref_t *r, tp_str_t *s) {
  int64_t n;
  RREF_TRY(rref_long(r, &n));
  if (n < 0)
    return TP_REJECT_BAD_LENGTH;
  if ((uint64_t)n > (uint64_t)(r->end - r->p))
    return TP_REJECT_TRUNCATED;
  s->ptr = (const char *)r->p;
  s->len = (uint32_t)n;
  r->p += n;
  return TP_REJECT_NONE;
}

static tp_reject_t rref_branch(rref_t *r, bool *present) {
  int64_t i;
  RREF_TRY(rref_long(r, &i));
  if (i != 0 && i != 1)
    return TP_REJECT_BAD_UNION;
  *present = i == 1;
  return TP_REJECT_NONE;
}

static tp_reject_t rref_enum(rref_t *r, unsigned n, uint8_t *out) {
  uint64_t raw;
  RREF_TRY(rref_varint(r, 5, &raw));
  int64_t i = rref_unzigzag(raw);
  if (i < 0 || i >= (int64_t)n)
    return TP_REJECT_BAD_ENUM;
  *out = (uint8_t)i;
  return TP_REJECT_NONE;
}

static tp_reject_t rref_opt_string(rref_t *r, tp_str_t *s) {
  bool present;
  RREF_TRY(rref_branch(r, &present));
  if (!present) {
    *s = (tp_str_t){NULL, 0};
    return TP_REJECT_NONE;
  }
  return rref_string(r, s);
}

static tp_reject_t rref_score(rref_t *r, int lo, int hi, int8_t *out) {
  bool present;
  RREF_TRY(rref_branch(r, &present));
  if (!present) {
    *out = TP_SCORE_NULL;
    return TP_REJECT_NONE;
  }
  uint64_t raw;
  RREF_TRY(rref_varint(r, 5, &raw));
  int64_t v = rref_unzigzag(raw);
  if (v < lo || v > hi)
    return TP_REJECT_OUT_OF_RANGE;
  *out = (int8_t)v;
  return TP_REJECT_NONE;
}

static tp_reject_t rref_id(rref_t *r, tp_str_t *s, tp_reject_t why) {
  RREF_TRY(rref_string(r, s));
  return s->len >= 1 && s->len <= TP_ID_MAX ? TP_REJECT_NONE : why;
}

static bool rref_touchpoint_ok(tp_str_t s) {
  if (s.len < 1 || s.len > TP_TOUCHPOINT_MAX)
    return false;
  for (uint32_t i = 0; i < s.len; i++) {
    char c = s.ptr[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || strchr("._:/-", c) != NULL) ||
        c == '\0')
      return false;
  }
  return true;
}

static tp_reject_t rref_record(rref_t *r, tp_source_t src, tp_event_t *ev) {
  memset(ev, 0, sizeof(*ev));
  ev->source = src;
  RREF_TRY(rref_id(r, &ev->event_id, TP_REJECT_BAD_EVENT_ID));
  RREF_TRY(rref_long(r, &ev->occurred_at));
  if (ev->occurred_at < 0)
    return TP_REJECT_OUT_OF_RANGE;
  RREF_TRY(rref_string(r, &ev->touchpoint));
  if (!rref_touchpoint_ok(ev->touchpoint))
    return TP_REJECT_BAD_TOUCHPOINT;
  RREF_TRY(rref_enum(r, TP_STAGE_COUNT, &ev->stage));
  RREF_TRY(rref_enum(r, TP_CHANNEL_COUNT, &ev->channel));
  switch (src) {
  case TP_SRC_FEEDBACK:
    RREF_TRY(rref_opt_string(r, &ev->feedback.customer_id));
    RREF_TRY(rref_score(r, 1, 5, &ev->feedback.csat));
    RREF_TRY(rref_score(r, 0, 10, &ev->feedback.nps));
    RREF_TRY(rref_score(r, 1, 7, &ev->feedback.ces));
    RREF_TRY(rref_score(r, 0, 10, &ev->feedback.repurchase));
    RREF_TRY(rref_score(r, 0, 10, &ev->feedback.try_other));
    RREF_TRY(rref_opt_string(r, &ev->feedback.comment));
    if (ev->feedback.comment.len > TP_COMMENT_MAX)
      return TP_REJECT_COMMENT_TOO_LONG;
    break;
  case TP_SRC_SUPPORT: {
    RREF_TRY(rref_id(r, &ev->support.ticket_id, TP_REJECT_BAD_ID));
    RREF_TRY(rref_enum(r, TP_SUPPORT_KIND_COUNT, &ev->support.kind));
    if (r->p == r->end)
      return TP_REJECT_TRUNCATED;
    if (r->p[0] > 1)
      return TP_REJECT_BAD_BOOLEAN;
    ev->support.complaint = r->p[0] == 1;
    r->p++;
    break;
  }
  case TP_SRC_COMMERCE: {
    RREF_TRY(rref_id(r, &ev->commerce.order_id, TP_REJECT_BAD_ID));
    RREF_TRY(rref_enum(r, TP_COMMERCE_KIND_COUNT, &ev->commerce.kind));
    bool present;
    RREF_TRY(rref_branch(r, &present));
    ev->commerce.has_amount = present;
    if (present)
      RREF_TRY(rref_long(r, &ev->commerce.amount_minor));
    RREF_TRY(rref_opt_string(r, &ev->commerce.reason));
    break;
  }
  }
  return r->p == r->end ? TP_REJECT_NONE : TP_REJECT_TRAILING_BYTES;
}

/* The reference's verdict on a record value, framing included. */
static tp_reject_t rref_decode(tp_source_t src, const uint8_t *buf, size_t len,
                               tp_event_t *ev) {
  if (len == 0)
    return TP_REJECT_EMPTY;
  rref_t r = {buf, buf + len};
  if (buf[0] == 0x00) {
    if (len < 5)
      return TP_REJECT_BAD_FRAMING;
    r.p += 5;
  }
  return rref_record(&r, src, ev);
}

#endif
