/*
 * bench_cli.h -- command-line helpers shared by bench_load and bench_raw:
 * bounded unsigned options and librdkafka properties given as key=value.
 * Errors are printed with the program's name (BENCH_PROG).
 */
#ifndef TOUCHPULSE_BENCH_CLI_H
#define TOUCHPULSE_BENCH_CLI_H

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BENCH_PROG
#error "define BENCH_PROG (the program's name for messages) before including bench_cli.h"
#endif

/* A decimal in [min, max], nothing else on the line. */
static inline bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
    return false;
  *out = v;
  return true;
}

static inline bool conf_set(rd_kafka_conf_t *conf, const char *key, const char *val) {
  char err[512];
  if (rd_kafka_conf_set(conf, key, val, err, sizeof(err)) == RD_KAFKA_CONF_OK)
    return true;
  fprintf(stderr, BENCH_PROG ": %s=%s: %s\n", key, val, err);
  return false;
}

/* Sets each "key=value" of extra (checked for the '=' when parsed). */
static inline bool conf_set_extra(rd_kafka_conf_t *conf, const char *const *extra, int n) {
  for (int i = 0; i < n; i++) {
    char kv[1024];
    snprintf(kv, sizeof(kv), "%s", extra[i]);
    char *eq = strchr(kv, '=');
    if (eq == NULL) {
      fprintf(stderr, BENCH_PROG ": -X %s: expected key=value\n", extra[i]);
      return false;
    }
    *eq = '\0';
    if (!conf_set(conf, kv, eq + 1))
      return false;
  }
  return true;
}

#endif
