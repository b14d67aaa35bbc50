/*
 * alert.h -- AlertEvent encoding with Avro-C and the published schema
 * (schemas/alert_event.avsc), and decoding for the demo's alert reader and
 * the tests.
 *
 * A codec holds an Avro-C schema and a reusable generic value; it is not
 * thread-safe, so each thread that encodes owns one.
 */
#ifndef TOUCHPULSE_ALERT_H
#define TOUCHPULSE_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "touchpulse/buf.h"
#include "touchpulse/common.h"
#include "touchpulse/state.h"

typedef struct tp_alert_codec_s tp_alert_codec_t;

/** @returns a codec, or NULL with a message in errstr. */
tp_alert_codec_t *tp_alert_codec_new(char *errstr, size_t errstr_size);
void tp_alert_codec_destroy(tp_alert_codec_t *codec);

/**
 * @brief Encode alert as an AlertEvent (plain Avro binary) into out
 *        (replacing its content). Labels: the rule's, then stage and
 *        channel, written in key order so equal alerts give equal bytes.
 * @returns TP_OK, TP_ENOMEM, or TP_ESCHEMA with a message.
 */
tp_err_t tp_alert_encode(tp_alert_codec_t *codec, const tp_alert_t *alert,
                         int64_t emitted_at, tp_buf_t *out, char *errstr,
                         size_t errstr_size);

#define TP_ALERT_MAX_LABELS 32

/** A decoded AlertEvent; strings are NUL-terminated and truncated to fit. */
typedef struct {
  char alert_id[65];
  char rule[129];
  char touchpoint[129];
  char metric[64];
  char op[4];
  tp_alert_state_t state;
  tp_severity_t severity;
  double value, threshold;
  int64_t window_start, window_end, samples, emitted_at;
  size_t n_labels;
  char label_key[TP_ALERT_MAX_LABELS][64];
  char label_value[TP_ALERT_MAX_LABELS][129];
} tp_alert_record_t;

/** @returns the value of a label, or NULL. */
const char *tp_alert_record_label(const tp_alert_record_t *rec, const char *key);

/**
 * @brief Decode an AlertEvent value (plain or Confluent-framed). Values
 *        over 64 KiB are refused before Avro-C sees them.
 * @returns TP_OK or TP_EDECODE with a message.
 */
tp_err_t tp_alert_decode(tp_alert_codec_t *codec, const void *buf, size_t len,
                         tp_alert_record_t *out, char *errstr, size_t errstr_size);

#endif
