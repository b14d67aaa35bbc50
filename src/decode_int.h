/*
 * decode_int.h -- internals of decode.c that the tests reach directly.
 *
 * tp_decode_check_schemas() checks the schemas embedded in the binary; the
 * function below is its core, taking any schema text, so a test can show that
 * an altered schema (a reordered field, an extra enum symbol, a reversed
 * union) is refused with a message naming the difference.
 */
#ifndef TOUCHPULSE_DECODE_INT_H
#define TOUCHPULSE_DECODE_INT_H

#include <stddef.h>

#include "touchpulse/common.h"
#include "touchpulse/decode.h"
#include "touchpulse/event.h"

/**
 * @brief Parse json (len bytes, no NUL needed) with Avro-C and compare it
 *        with the field layout tp_decode() reads for src.
 * @returns TP_OK, or TP_ESCHEMA with the first difference in errstr
 *          (prefixed with the source name, e.g. "feedback schema: ...").
 * @thread any; allocates only inside Avro-C.
 */
tp_err_t tp__decode_check_schema(tp_source_t src, const char *json, size_t len,
                                 char *errstr, size_t errstr_size);

/** The builds of the record decoder (decode.c, top). */
typedef enum {
  TP_DECODER_PLAIN, /**< the portable reader, with SSSE3 on x86-64 */
  TP_DECODER_BMI2,  /**< the same with PEXT (x86-64, BMI2) */
} tp_decoder_t;

/**
 * @brief Choose the build tp_decode() runs, so tests check both on one
 *        machine: TP_DECODER_PLAIN, or TP_DECODER_BMI2 where it is built and
 *        the processor's PEXT is fast (which tp_decode() picks by itself).
 * @returns the build now in use.
 * @thread call before any thread decodes.
 */
tp_decoder_t tp__decode_select(tp_decoder_t want);

/** @brief tp_decode() as built with BMI2 (x86-64 builds only). */
tp_reject_t tp__decode_bmi2(tp_source_t src, const void *buf, size_t len,
                            tp_event_t *ev, char *detail, size_t detail_size);

#endif
