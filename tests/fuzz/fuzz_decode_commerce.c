/*
 * fuzz_decode_commerce.c -- tp_decode() on arbitrary commerce records (CommerceEvent
 * schema), plain and Confluent-framed, cross-checked with Avro-C; see
 * fuzz_decode.h for what is checked.
 */
#define FUZZ_SOURCE TP_SRC_COMMERCE
#include "fuzz_decode.h"
