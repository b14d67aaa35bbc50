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

/* Keeps one -X key=value (MAX_EXTRA_CONF of them at most). */
static inline bool add_extra(const char **extra, int *n, int cap, const char *kv) {
  if (strchr(kv, '=') == NULL || *n >= cap)
    return false;
  extra[(*n)++] = kv;
  return true;
}

/* The message for an option value that add_extra or parse_u64 refused. */
static inline void bad_option(int c, const char *name, const char *value) {
  fprintf(stderr, BENCH_PROG ": invalid value '%s' for %s%s\n", value, c == 'X' ? "-" : "--",
          c == 'X' ? "X" : name);
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
