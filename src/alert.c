/*
 * alert.c -- AlertEvent records through Avro-C's generic value API. Alerts
 * are rare (one per rule episode), so Avro-C's cost is irrelevant here and
 * using it keeps the bytes exactly those of the published schema.
 */
#include "touchpulse/alert.h"

#include <avro.h>
#include <stdio.h>
#include <string.h>

#include "touchpulse/decode.h"

struct tp_alert_codec_s {
  avro_schema_t schema;
  avro_value_iface_t *iface;
  avro_value_t value;
  bool has_value;
};

tp_alert_codec_t *tp_alert_codec_new(char *errstr, size_t errstr_size) {
  tp_alert_codec_t *c = tp_calloc(1, sizeof(*c));
  if (c == NULL) {
    snprintf(errstr, errstr_size, "alert codec: out of memory");
    return NULL;
  }
  if (avro_schema_from_json_length(tp_schema_alert_json, strlen(tp_schema_alert_json),
                                   &c->schema) != 0) {
    snprintf(errstr, errstr_size, "alert schema: %s", avro_strerror());
    goto err;
  }
  c->iface = avro_generic_class_from_schema(c->schema);
  if (c->iface == NULL || avro_generic_value_new(c->iface, &c->value) != 0) {
    snprintf(errstr, errstr_size, "alert schema: %s", avro_strerror());
    goto err;
  }
  c->has_value = true;
  return c;
err:
  tp_alert_codec_destroy(c);
  return NULL;
}

void tp_alert_codec_destroy(tp_alert_codec_t *c) {
  if (c == NULL)
    return;
  if (c->has_value)
    avro_value_decref(&c->value);
  if (c->iface)
    avro_value_iface_decref(c->iface);
  if (c->schema)
    avro_schema_decref(c->schema);
  tp_free(c);
}

static int set_str(avro_value_t *rec, const char *field, const char *s, size_t len) {
  avro_value_t f;
  char tmp[512];
  if (avro_value_get_by_name(rec, field, &f, NULL) != 0 || len >= sizeof(tmp))
    return -1;
  /* Avro-C wants a NUL-terminated string and a size that counts the NUL. */
  memcpy(tmp, s, len);
  tmp[len] = '\0';
  return avro_value_set_string_len(&f, tmp, len + 1);
}

static int set_long(avro_value_t *rec, const char *field, int64_t v) {
  avro_value_t f;
  return avro_value_get_by_name(rec, field, &f, NULL) || avro_value_set_long(&f, v);
}

static int set_double(avro_value_t *rec, const char *field, double v) {
  avro_value_t f;
  return avro_value_get_by_name(rec, field, &f, NULL) || avro_value_set_double(&f, v);
}

static int set_enum(avro_value_t *rec, const char *field, int v) {
  avro_value_t f;
  return avro_value_get_by_name(rec, field, &f, NULL) || avro_value_set_enum(&f, v);
}

static int add_label(avro_value_t *map, const char *key, const char *value) {
  avro_value_t elem;
  return avro_value_add(map, key, &elem, NULL, NULL) || avro_value_set_string(&elem, value);
}

tp_err_t tp_alert_encode(tp_alert_codec_t *c, const tp_alert_t *a, int64_t emitted_at,
                         tp_buf_t *out, char *errstr, size_t errstr_size) {
  avro_value_t *rec = &c->value;
  const tp_rule_t *rule = a->rule;
  char id[33];
  tp_alert_id(a, id);
  avro_value_reset(rec);
  int rc = set_str(rec, "alert_id", id, 32) || set_str(rec, "rule", rule->name, strlen(rule->name)) ||
           set_str(rec, "touchpoint", a->touchpoint, a->touchpoint_len) ||
           set_str(rec, "metric", tp_metric_name(rule->metric), strlen(tp_metric_name(rule->metric))) ||
           set_enum(rec, "state", a->state == TP_ALERT_FIRING ? 0 : 1) ||
           set_enum(rec, "severity", (int)rule->severity) || set_double(rec, "value", a->value) ||
           set_double(rec, "threshold", a->threshold) ||
           set_str(rec, "op", tp_op_str(rule->op), strlen(tp_op_str(rule->op))) ||
           set_long(rec, "window_start", a->window_start) ||
           set_long(rec, "window_end", a->window_end) || set_long(rec, "samples", a->samples) ||
           set_long(rec, "emitted_at", emitted_at);
  avro_value_t labels;
  rc = rc || avro_value_get_by_name(rec, "labels", &labels, NULL);
  /* Rule labels are sorted by key (config.c); slot stage and channel in. */
  const char *extra_key[2] = {"channel", "stage"};
  const char *extra_val[2] = {tp_channel_name(a->channel), tp_stage_name(a->stage)};
  size_t e = 0;
  for (size_t i = 0; !rc && i <= rule->n_labels; i++) {
    while (!rc && e < 2 && (i == rule->n_labels || strcmp(extra_key[e], rule->labels[i].key) < 0)) {
      rc = add_label(&labels, extra_key[e], extra_val[e]);
      e++;
    }
    if (!rc && i < rule->n_labels)
      rc = add_label(&labels, rule->labels[i].key, rule->labels[i].value);
  }
  if (rc) {
    snprintf(errstr, errstr_size, "alert encode: %s", avro_strerror());
    return TP_ESCHEMA;
  }
  size_t size = 0;
  if (avro_value_sizeof(rec, &size) != 0) {
    snprintf(errstr, errstr_size, "alert encode: %s", avro_strerror());
    return TP_ESCHEMA;
  }
  tp_buf_reset(out);
  if (size > 0) {
    char *tmp = tp_malloc(size);
    if (tmp == NULL) {
      snprintf(errstr, errstr_size, "alert encode: out of memory");
      return TP_ENOMEM;
    }
    avro_writer_t w = avro_writer_memory(tmp, (int64_t)size);
    int wrc = w ? avro_value_write(w, rec) : -1;
    if (w)
      avro_writer_free(w);
    if (wrc == 0)
      tp_buf_append(out, tmp, size);
    tp_free(tmp);
    if (wrc != 0) {
      snprintf(errstr, errstr_size, "alert encode: %s", avro_strerror());
      return TP_ESCHEMA;
    }
  }
  if (tp_buf_failed(out)) {
    snprintf(errstr, errstr_size, "alert encode: out of memory");
    return TP_ENOMEM;
  }
  return TP_OK;
}

static void get_str(avro_value_t *rec, const char *field, char *dst, size_t cap) {
  avro_value_t f;
  const char *s = NULL;
  size_t n = 0;
  dst[0] = '\0';
  if (avro_value_get_by_name(rec, field, &f, NULL) == 0 && avro_value_get_string(&f, &s, &n) == 0 &&
      s != NULL)
    snprintf(dst, cap, "%s", s);
}

static int64_t get_long(avro_value_t *rec, const char *field) {
  avro_value_t f;
  int64_t v = 0;
  if (avro_value_get_by_name(rec, field, &f, NULL) == 0)
    avro_value_get_long(&f, &v);
  return v;
}

static double get_double(avro_value_t *rec, const char *field) {
  avro_value_t f;
  double v = 0;
  if (avro_value_get_by_name(rec, field, &f, NULL) == 0)
    avro_value_get_double(&f, &v);
  return v;
}

static int get_enum(avro_value_t *rec, const char *field) {
  avro_value_t f;
  int v = 0;
  if (avro_value_get_by_name(rec, field, &f, NULL) == 0)
    avro_value_get_enum(&f, &v);
  return v;
}

tp_err_t tp_alert_decode(tp_alert_codec_t *c, const void *buf, size_t len, tp_alert_record_t *out,
                         char *errstr, size_t errstr_size) {
  const char *p = buf;
  if (len >= 5 && p[0] == 0) { /* Confluent framing */
    p += 5;
    len -= 5;
  }
  if (len == 0 || len > 65536) {
    snprintf(errstr, errstr_size, "alert decode: %zu bytes", len);
    return TP_EDECODE;
  }
  avro_value_t *rec = &c->value;
  avro_value_reset(rec);
  avro_reader_t r = avro_reader_memory(p, (int64_t)len);
  if (r == NULL) {
    snprintf(errstr, errstr_size, "alert decode: out of memory");
    return TP_ENOMEM;
  }
  int rc = avro_value_read(r, rec);
  avro_reader_free(r);
  if (rc != 0) {
    snprintf(errstr, errstr_size, "alert decode: %s", avro_strerror());
    return TP_EDECODE;
  }
  memset(out, 0, sizeof(*out));
  get_str(rec, "alert_id", out->alert_id, sizeof(out->alert_id));
  get_str(rec, "rule", out->rule, sizeof(out->rule));
  get_str(rec, "touchpoint", out->touchpoint, sizeof(out->touchpoint));
  get_str(rec, "metric", out->metric, sizeof(out->metric));
  get_str(rec, "op", out->op, sizeof(out->op));
  out->state = get_enum(rec, "state") == 0 ? TP_ALERT_FIRING : TP_ALERT_RESOLVED;
  out->severity = (tp_severity_t)get_enum(rec, "severity");
  out->value = get_double(rec, "value");
  out->threshold = get_double(rec, "threshold");
  out->window_start = get_long(rec, "window_start");
  out->window_end = get_long(rec, "window_end");
  out->samples = get_long(rec, "samples");
  out->emitted_at = get_long(rec, "emitted_at");
  avro_value_t labels;
  size_t n = 0;
  if (avro_value_get_by_name(rec, "labels", &labels, NULL) == 0 && avro_value_get_size(&labels, &n) == 0) {
    for (size_t i = 0; i < n && out->n_labels < TP_ALERT_MAX_LABELS; i++) {
      avro_value_t v;
      const char *key = NULL, *s = NULL;
      size_t sl = 0;
      if (avro_value_get_by_index(&labels, i, &v, &key) != 0 ||
          avro_value_get_string(&v, &s, &sl) != 0)
        continue;
      snprintf(out->label_key[out->n_labels], sizeof(out->label_key[0]), "%s", key);
      snprintf(out->label_value[out->n_labels], sizeof(out->label_value[0]), "%s", s);
      out->n_labels++;
    }
  }
  return TP_OK;
}

const char *tp_alert_record_label(const tp_alert_record_t *rec, const char *key) {
  for (size_t i = 0; i < rec->n_labels; i++)
    if (strcmp(rec->label_key[i], key) == 0)
      return rec->label_value[i];
  return NULL;
}
