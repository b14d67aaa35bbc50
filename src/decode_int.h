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

#endif
