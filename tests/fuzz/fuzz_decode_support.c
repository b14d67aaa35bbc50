/*
 * fuzz_decode_support.c -- tp_decode() on arbitrary support records (SupportEvent
 * schema), plain and Confluent-framed, cross-checked with Avro-C; see
 * fuzz_decode.h for what is checked.
 */
#define FUZZ_SOURCE TP_SRC_SUPPORT
#include "fuzz_decode.h"
