/*
 * fuzz_decode_feedback.c -- tp_decode() on arbitrary feedback records (FeedbackEvent
 * schema), plain and Confluent-framed, cross-checked with Avro-C; see
 * fuzz_decode.h for what is checked.
 */
#define FUZZ_SOURCE TP_SRC_FEEDBACK
#include "fuzz_decode.h"
