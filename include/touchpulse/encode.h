/*
 * encode.h -- a fast Avro binary writer for input events, the inverse of
 * tp_decode().
 *
 * The demo's traffic generator, the tests and the benchmarks produce input
 * records with it. It writes exactly the bytes Avro-C's avro_value_write()
 * writes for the same values in ev's source schema (minimal zigzag varints,
 * union branch 0 for null), and allocates nothing.
 */
#ifndef TOUCHPULSE_ENCODE_H
#define TOUCHPULSE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "touchpulse/event.h"

/** Length of the Confluent wire-format prefix: 0x00 + 4-byte schema id. */
#define TP_CONFLUENT_HEADER_SIZE 5

/** Upper bound of an encoded event whose strings total n bytes. */
#define TP_ENCODE_MAX(n) ((size_t)(n) + 16 * 10)

/**
 * @brief Write ev as plain Avro binary of the schema of ev->source.
 *
 * Values are written as they are, without SPEC's range checks, so tests can
 * produce records that tp_decode() must reject. Nulls follow event.h: a
 * tp_str_t with ptr NULL, a score of TP_SCORE_NULL, has_amount false. A
 * required string (event_id, touchpoint, ticket_id, order_id) with ptr NULL
 * is written as the empty string.
 *
 * @param buf, cap  destination; nothing is written past cap.
 * @returns bytes written, or 0 when cap is too small or ev->source is not an
 *          input source (a valid record is never empty).
 * @thread any; reentrant.
 */
size_t tp_encode_event(const tp_event_t *ev, void *buf, size_t cap);

/**
 * @brief Write the 5-byte Confluent prefix (0x00, schema_id big-endian).
 * @returns TP_CONFLUENT_HEADER_SIZE, or 0 when cap is smaller.
 */
size_t tp_encode_confluent_header(uint32_t schema_id, void *buf, size_t cap);

#endif
