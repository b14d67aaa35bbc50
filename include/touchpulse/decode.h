/*
 * decode.h -- the hot-path Avro decoder for the three input schemas.
 *
 * tp_decode() reads one Kafka record value, plain Avro binary or Confluent
 * wire format (0x00, 4-byte big-endian schema id, Avro binary), into a
 * tp_event_t. It is specialised to the schemas in schemas/, checks every
 * length against the bytes that remain before reading, allocates nothing, and
 * validates values against SPEC's ranges. Every malformed or out-of-range
 * input is rejected with a reason (a small fixed set, used as a metrics label)
 * and a detail message (for the dead-letter header).
 *
 * Avro-C is used beside it: tp_decode_check_schemas() parses the embedded
 * .avsc files with Avro-C at start-up and verifies that their fields match
 * what this decoder reads, so a schema edit that the decoder does not follow
 * fails loudly instead of misreading data.
 */
#ifndef TOUCHPULSE_DECODE_H
#define TOUCHPULSE_DECODE_H

#include <stddef.h>

#include "touchpulse/common.h"
#include "touchpulse/event.h"

/*
 * Why a record was rejected. The first column is the metrics label value
 * (touchpulse_rejected_total{reason="..."}) and the prefix of the dead-letter
 * `error` header.
 */
#define TP_REJECT_MAP(XX)                                                      \
  XX(EMPTY, "empty", "record has no value")                                    \
  XX(TOO_LARGE, "too_large", "record larger than the configured maximum")      \
  XX(BAD_FRAMING, "bad_framing", "Confluent framing shorter than 5 bytes")     \
  XX(TRUNCATED, "truncated", "record ends inside a field")                     \
  XX(BAD_VARINT, "bad_varint", "malformed or overflowing variable-length int") \
  XX(BAD_LENGTH, "bad_length", "negative or oversized string length")          \
  XX(BAD_UNION, "bad_union", "union branch index out of range")                \
  XX(BAD_ENUM, "bad_enum", "enum symbol index out of range")                   \
  XX(BAD_BOOLEAN, "bad_boolean", "boolean byte other than 0 or 1")             \
  XX(TRAILING_BYTES, "trailing_bytes", "bytes left after the record")          \
  XX(BAD_EVENT_ID, "bad_event_id", "event_id not 1-128 bytes")                 \
  XX(BAD_TOUCHPOINT, "bad_touchpoint",                                         \
     "touchpoint not 1-128 bytes of [A-Za-z0-9._:/-]")                         \
  XX(BAD_ID, "bad_id", "ticket_id or order_id not 1-128 bytes")                \
  XX(OUT_OF_RANGE, "out_of_range", "value outside its documented range")       \
  XX(COMMENT_TOO_LONG, "comment_too_long", "comment longer than 4096 bytes")   \
  XX(FUTURE_TIMESTAMP, "future_timestamp",                                     \
     "occurred_at too far ahead of the wall clock")                            \
  XX(UNKNOWN_TOPIC, "unknown_topic", "record from a topic not configured")

typedef enum {
  TP_REJECT_NONE = 0,
#define XX(code, label, msg) TP_REJECT_##code,
  TP_REJECT_MAP(XX)
#undef XX
  TP_REJECT_COUNT
} tp_reject_t;

/** @returns the metrics label of a reason ("truncated"); never NULL. */
const char *tp_reject_label(tp_reject_t reason);
/** @returns a one-line description of a reason; never NULL. */
const char *tp_reject_describe(tp_reject_t reason);

#define TP_ID_MAX 128
#define TP_TOUCHPOINT_MAX 128
#define TP_COMMENT_MAX 4096

/**
 * @brief Decode one record value of the given source schema.
 * @param buf, len  the record value; borrowed, must outlive *ev.
 * @param ev        filled on success; its strings point into buf.
 * @param detail    on rejection, a message naming the field and byte offset,
 *                  e.g. "truncated: field 'touchpoint' needs 12 bytes at
 *                  offset 30, 5 left". May be NULL.
 * @returns TP_REJECT_NONE on success, else the reason.
 * @thread any; reentrant, allocation-free.
 */
tp_reject_t tp_decode(tp_source_t src, const void *buf, size_t len,
                      tp_event_t *ev, char *detail, size_t detail_size);

/**
 * @brief Where a record value's event_id lies, without decoding the record:
 *        the first field of every input schema, after the Confluent header
 *        if there is one, read by tp_decode()'s own string reader. For a
 *        record tp_decode() accepts it returns true, and *id and *id_len are
 *        that record's ev->event_id; for any other input they lie within
 *        buf, or it returns false. A hint for prefetching, never a
 *        validation.
 * @thread any; reads at most len bytes of buf.
 */
bool tp_peek_event_id(const void *buf, size_t len, const char **id, size_t *id_len);

/** @returns non-zero when c is allowed in a touchpoint id. */
int tp_touchpoint_char_ok(unsigned char c);
/** @returns non-zero when s is a valid touchpoint id (length and charset). */
int tp_touchpoint_valid(const char *s, size_t len);

/* The .avsc files, embedded at build time (generated from schemas/). */
extern const char tp_schema_feedback_json[];
extern const char tp_schema_support_json[];
extern const char tp_schema_commerce_json[];
extern const char tp_schema_alert_json[];
/** @returns the embedded schema text of an input source. */
const char *tp_schema_json(tp_source_t src);

/**
 * @brief Parse the embedded schemas with Avro-C and check that each input
 *        schema's fields (names, types, union branches, enum symbols) are
 *        the ones tp_decode() reads.
 * @returns TP_OK, or TP_ESCHEMA with the first difference in errstr.
 */
tp_err_t tp_decode_check_schemas(char *errstr, size_t errstr_size);

#endif
