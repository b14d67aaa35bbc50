/*
 * kstats.c -- librdkafka statistics: a streaming scan of the JSON document
 * for the handful of fields /metrics exports (see kstats.h).
 *
 * The documents are a few KiB to a few hundred KiB (per-partition sections
 * grow with the assignment) and arrive every few seconds, so a DOM library
 * would do; a 150-line scanner that allocates nothing and reads only what is
 * wanted does as well without a dependency. It checks every bound and stops
 * at the first malformed byte: the values read so far are kept, nothing more.
 */
#include "touchpulse/kstats.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "touchpulse/common.h"

#define MAX_DEPTH 16
#define KEY_MAX 128

typedef struct {
  const char *p, *end;
  char path[MAX_DEPTH][KEY_MAX];
  int depth; /* keys on the path */
  tp_kstats_snap_t *snap;
} scan_t;

static void skip_ws(scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
    s->p++;
}

/* Reads a string; copies up to size - 1 bytes of it (escapes kept raw). */
static bool scan_string(scan_t *s, char *out, size_t size) {
  if (s->p >= s->end || *s->p != '"')
    return false;
  s->p++;
  size_t n = 0;
  while (s->p < s->end && *s->p != '"') {
    if (*s->p == '\\') {
      if (s->end - s->p < 2)
        return false;
      if (out && n + 1 < size)
        out[n++] = s->p[0];
      s->p++;
    }
    if (out && n + 1 < size)
      out[n++] = *s->p;
    s->p++;
  }
  if (s->p >= s->end)
    return false;
  s->p++; /* closing quote */
  if (out && size > 0)
    out[n] = '\0';
  return true;
}

static tp_kstats_broker_t *broker(tp_kstats_snap_t *snap, const char *key) {
  for (size_t i = 0; i < snap->n_brokers; i++)
    if (strcmp(snap->brokers[i].name, key) == 0)
      return &snap->brokers[i];
  if (snap->n_brokers == TP_KSTATS_MAX_BROKERS)
    return NULL;
  tp_kstats_broker_t *b = &snap->brokers[snap->n_brokers++];
  memset(b, 0, sizeof(*b));
  snprintf(b->name, sizeof(b->name), "%s", key);
  b->nodeid = -1;
  return b;
}

/* A scalar at the current path: keep it if it is one of ours. */
static void scalar(scan_t *s, const char *str, double num, bool is_num) {
  tp_kstats_snap_t *snap = s->snap;
  if (s->depth == 1 && is_num) {
    static const struct {
      const char *key;
      size_t off;
    } top[] = {{"replyq", offsetof(tp_kstats_snap_t, replyq)},
               {"msg_cnt", offsetof(tp_kstats_snap_t, msg_cnt)},
               {"msg_size", offsetof(tp_kstats_snap_t, msg_size)},
               {"tx", offsetof(tp_kstats_snap_t, tx)},
               {"tx_bytes", offsetof(tp_kstats_snap_t, tx_bytes)},
               {"rx", offsetof(tp_kstats_snap_t, rx)},
               {"rx_bytes", offsetof(tp_kstats_snap_t, rx_bytes)}};
    for (size_t i = 0; i < TP_ARRAY_SIZE(top); i++)
      if (strcmp(s->path[0], top[i].key) == 0)
        *(int64_t *)((char *)snap + top[i].off) = (int64_t)num;
    return;
  }
  if (s->depth < 3 || strcmp(s->path[0], "brokers") != 0)
    return;
  tp_kstats_broker_t *b = broker(snap, s->path[1]);
  if (b == NULL)
    return;
  const char *field = s->path[2];
  if (s->depth == 3) {
    if (is_num && strcmp(field, "nodeid") == 0)
      b->nodeid = (int64_t)num;
    else if (is_num && strcmp(field, "outbuf_cnt") == 0)
      b->outbuf_cnt = (int64_t)num;
    else if (is_num && strcmp(field, "waitresp_cnt") == 0)
      b->waitresp_cnt = (int64_t)num;
    else if (!is_num && strcmp(field, "state") == 0)
      b->up = strcmp(str, "UP") == 0;
    else if (!is_num && strcmp(field, "source") == 0)
      b->skip |= strcmp(str, "internal") == 0 || strcmp(str, "logical") == 0;
  } else if (s->depth == 4 && is_num && strcmp(field, "rtt") == 0 &&
             strcmp(s->path[3], "avg") == 0) {
    b->rtt_avg_us = (int64_t)num;
  }
}

static bool scan_value(scan_t *s);

/* An object ('{', each value under its key) or an array ('[', each value
 * under "[]"): the path names where a scalar sits. */
/* NOLINTNEXTLINE(misc-no-recursion): nesting is capped at MAX_DEPTH */
static bool scan_container(scan_t *s) {
  bool object = *s->p == '{';
  char close = object ? '}' : ']';
  s->p++;
  skip_ws(s);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    return true;
  }
  if (s->depth >= MAX_DEPTH)
    return false;
  for (;;) {
    skip_ws(s);
    if (object) {
      if (!scan_string(s, s->path[s->depth], KEY_MAX))
        return false;
      skip_ws(s);
      if (s->p >= s->end || *s->p != ':')
        return false;
      s->p++;
    } else {
      snprintf(s->path[s->depth], KEY_MAX, "[]");
    }
    s->depth++;
    bool ok = scan_value(s);
    s->depth--;
    if (!ok)
      return false;
    skip_ws(s);
    if (s->p >= s->end)
      return false;
    if (*s->p == close) {
      s->p++;
      return true;
    }
    if (*s->p != ',')
      return false;
    s->p++;
  }
}

/* NOLINTNEXTLINE(misc-no-recursion): nesting is capped at MAX_DEPTH */
static bool scan_value(scan_t *s) {
  skip_ws(s);
  if (s->p >= s->end)
    return false;
  char c = *s->p;
  if (c == '{' || c == '[')
    return scan_container(s);
  if (c == '"') {
    char str[KEY_MAX];
    if (!scan_string(s, str, sizeof(str)))
      return false;
    scalar(s, str, 0, false);
    return true;
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    char num[64];
    size_t n = 0;
    while (s->p < s->end && n + 1 < sizeof(num) &&
           (strchr("+-.eE", *s->p) != NULL || (*s->p >= '0' && *s->p <= '9')))
      num[n++] = *s->p++;
    num[n] = '\0';
    char *endp;
    double v = strtod(num, &endp);
    if (endp == num || !isfinite(v))
      return false;
    if (v > 9.2e18)
      v = 9.2e18;
    else if (v < -9.2e18)
      v = -9.2e18;
    scalar(s, NULL, v, true);
    return true;
  }
  static const char *const words[] = {"true", "false", "null"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(words); i++) {
    size_t wl = strlen(words[i]);
    if ((size_t)(s->end - s->p) >= wl && memcmp(s->p, words[i], wl) == 0) {
      s->p += wl;
      return true;
    }
  }
  return false;
}

bool tp_kstats_parse(const char *json, size_t len, tp_kstats_snap_t *snap) {
  memset(snap, 0, sizeof(*snap));
  scan_t *s = tp_calloc(1, sizeof(*s)); /* 2 KiB of path: not on a callback's stack */
  if (s == NULL)
    return false;
  s->p = json;
  s->end = json + len;
  s->snap = snap;
  skip_ws(s);
  bool ok = s->p < s->end && *s->p == '{' && scan_container(s);
  tp_free(s);
  /* A partial document still gives what was read before the error. */
  snap->valid = ok || snap->n_brokers > 0 || snap->tx > 0;
  for (size_t i = 0; i < snap->n_brokers; i++)
    snap->brokers[i].skip |= snap->brokers[i].nodeid < 0;
  return ok;
}

/* The exported counters. librdkafka's start at 0 with each client, and the
 * publisher replaces its client when librdkafka declares it unusable: what
 * the replaced clients counted is carried over, so the counters never go
 * backwards in the life of the process. */
static const size_t counter_offs[] = {
    offsetof(tp_kstats_snap_t, tx), offsetof(tp_kstats_snap_t, tx_bytes),
    offsetof(tp_kstats_snap_t, rx), offsetof(tp_kstats_snap_t, rx_bytes)};
#define N_COUNTERS (sizeof(counter_offs) / sizeof(counter_offs[0]))

struct tp_kstats_s {
  char client[32];
  pthread_mutex_t lock;
  tp_kstats_snap_t snap; /* guarded by lock */
  /* Guarded by lock: each counter's last value from librdkafka, and the sum
   * of the final values of the clients before the current one. */
  int64_t last[N_COUNTERS], carried[N_COUNTERS];
};

tp_kstats_t *tp_kstats_new(const char *client) {
  tp_kstats_t *ks = tp_calloc(1, sizeof(*ks));
  if (ks == NULL)
    return NULL;
  snprintf(ks->client, sizeof(ks->client), "%s", client);
  pthread_mutex_init(&ks->lock, NULL);
  return ks;
}

void tp_kstats_destroy(tp_kstats_t *ks) {
  if (ks == NULL)
    return;
  pthread_mutex_destroy(&ks->lock);
  tp_free(ks);
}

void tp_kstats_update(tp_kstats_t *ks, const char *json, size_t len) {
  tp_kstats_snap_t *snap = tp_calloc(1, sizeof(*snap));
  if (snap == NULL)
    return; /* keep the previous values */
  bool whole = tp_kstats_parse(json, len, snap);
  if (snap->valid) {
    pthread_mutex_lock(&ks->lock);
    for (size_t i = 0; i < N_COUNTERS; i++) {
      int64_t *v = (int64_t *)((char *)snap + counter_offs[i]);
      if (!whole) { /* a counter may be missing: keep the last values */
        *v = ks->last[i] + ks->carried[i];
        continue;
      }
      if (*v < ks->last[i]) /* a new client, counting from 0 */
        ks->carried[i] += ks->last[i];
      ks->last[i] = *v;
      *v += ks->carried[i];
    }
    ks->snap = *snap;
    pthread_mutex_unlock(&ks->lock);
  }
  tp_free(snap);
}

typedef enum { F_TOP, F_BROKER } fkind_t;

static const struct {
  const char *name, *type, *help;
  fkind_t kind;
  size_t off;
  double scale;
  bool producer_only;
} families[] = {
    {"touchpulse_kafka_replyq", "gauge", "librdkafka operations waiting in the reply queue.",
     F_TOP, offsetof(tp_kstats_snap_t, replyq), 1, false},
    {"touchpulse_kafka_producer_queue_messages", "gauge",
     "Messages in the producer queue, not yet delivered.", F_TOP,
     offsetof(tp_kstats_snap_t, msg_cnt), 1, true},
    {"touchpulse_kafka_producer_queue_bytes", "gauge", "Bytes of messages in the producer queue.",
     F_TOP, offsetof(tp_kstats_snap_t, msg_size), 1, true},
    {"touchpulse_kafka_tx_requests_total", "counter", "Requests sent to brokers.", F_TOP,
     offsetof(tp_kstats_snap_t, tx), 1, false},
    {"touchpulse_kafka_tx_bytes_total", "counter", "Bytes sent to brokers.", F_TOP,
     offsetof(tp_kstats_snap_t, tx_bytes), 1, false},
    {"touchpulse_kafka_rx_responses_total", "counter", "Responses read from brokers.", F_TOP,
     offsetof(tp_kstats_snap_t, rx), 1, false},
    {"touchpulse_kafka_rx_bytes_total", "counter", "Bytes read from brokers.", F_TOP,
     offsetof(tp_kstats_snap_t, rx_bytes), 1, false},
    {"touchpulse_kafka_broker_up", "gauge", "1 when the connection to the broker is UP.", F_BROKER,
     offsetof(tp_kstats_broker_t, up), 1, false},
    {"touchpulse_kafka_broker_rtt_seconds", "gauge",
     "Mean request round-trip time to the broker over the last statistics interval.", F_BROKER,
     offsetof(tp_kstats_broker_t, rtt_avg_us), 1e-6, false},
    {"touchpulse_kafka_broker_outbuf_requests", "gauge", "Requests waiting to be sent to the broker.",
     F_BROKER, offsetof(tp_kstats_broker_t, outbuf_cnt), 1, false},
    {"touchpulse_kafka_broker_waitresp_requests", "gauge",
     "Requests sent to the broker and waiting for a response.", F_BROKER,
     offsetof(tp_kstats_broker_t, waitresp_cnt), 1, false},
};

void tp_kstats_metrics(tp_kstats_t *const *clients, size_t n, tp_buf_t *out) {
  tp_kstats_snap_t *snaps = tp_calloc(n ? n : 1, sizeof(*snaps));
  if (snaps == NULL) {
    out->failed = true;
    return;
  }
  for (size_t c = 0; c < n; c++) {
    if (clients[c] == NULL)
      continue;
    pthread_mutex_lock(&clients[c]->lock);
    snaps[c] = clients[c]->snap;
    pthread_mutex_unlock(&clients[c]->lock);
  }
  for (size_t f = 0; f < TP_ARRAY_SIZE(families); f++) {
    tp_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
                  families[f].name, families[f].type);
    for (size_t c = 0; c < n; c++) {
      const tp_kstats_snap_t *s = &snaps[c];
      if (clients[c] == NULL || !s->valid)
        continue;
      const char *client = clients[c]->client;
      if (families[f].producer_only && strcmp(client, "producer") != 0)
        continue;
      if (families[f].kind == F_TOP) {
        int64_t v = *(const int64_t *)((const char *)s + families[f].off);
        tp_buf_printf(out, "%s{client=\"%s\"} %lld\n", families[f].name, client, (long long)v);
        continue;
      }
      for (size_t b = 0; b < s->n_brokers; b++) {
        const tp_kstats_broker_t *br = &s->brokers[b];
        if (br->skip)
          continue;
        double v;
        if (families[f].off == offsetof(tp_kstats_broker_t, up))
          v = br->up ? 1 : 0;
        else
          v = (double)*(const int64_t *)((const char *)br + families[f].off) * families[f].scale;
        tp_buf_printf(out, "%s{client=\"%s\",broker=\"", families[f].name, client);
        tp_buf_prom_escape(out, br->name, strlen(br->name));
        tp_buf_puts(out, "\"} ");
        tp_buf_double(out, v);
        tp_buf_putc(out, '\n');
      }
    }
  }
  tp_free(snaps);
}
