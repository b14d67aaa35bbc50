/*
 * config.h -- the configuration: one YAML file, TOUCHPULSE_* environment
 * overrides, defaults that serve the demo.
 *
 * tp_config_t is plain data, filled once at start-up and read-only after, so
 * every thread may read it without synchronisation. Loading reports every
 * error it finds (not just the first), each as "FILE:LINE: message".
 */
#ifndef TOUCHPULSE_CONFIG_H
#define TOUCHPULSE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "touchpulse/common.h"
#include "touchpulse/metric.h"

typedef enum { TP_OP_LT, TP_OP_LE, TP_OP_GT, TP_OP_GE } tp_op_t;
typedef enum { TP_SEV_INFO, TP_SEV_WARNING, TP_SEV_CRITICAL } tp_severity_t;
typedef enum { TP_LOG_DEBUG, TP_LOG_INFO, TP_LOG_WARN, TP_LOG_ERROR } tp_log_level_t;
typedef enum { TP_LOG_TEXT, TP_LOG_JSON } tp_log_format_t;

const char *tp_op_str(tp_op_t op);              /* "<" */
const char *tp_severity_name(tp_severity_t s);  /* "CRITICAL" */

/** @returns true when `value op threshold` holds. */
static inline bool tp_op_holds(tp_op_t op, double value, double threshold) {
  switch (op) {
  case TP_OP_LT: return value < threshold;
  case TP_OP_LE: return value <= threshold;
  case TP_OP_GT: return value > threshold;
  case TP_OP_GE: return value >= threshold;
  }
  return false;
}

typedef struct {
  char *key;
  char *value;
} tp_kv_t;

typedef struct tp_rule_s {
  char *name;
  tp_metric_t metric;
  int64_t window_ms;    /* a multiple of windows.step */
  tp_op_t op;
  double threshold;
  double clear;         /* resolve when `value op clear` no longer holds */
  int64_t min_samples;  /* below it the value is undefined; default 0 */
  int32_t for_count;    /* `for`: breaching evaluations before FIRING; >= 1 */
  tp_severity_t severity;
  char **touchpoints;   /* fnmatch(3) globs; none means every touchpoint */
  size_t n_touchpoints;
  tp_kv_t *labels;      /* sorted by key */
  size_t n_labels;
  int line;             /* line of the rule in its file, 0 if none */
} tp_rule_t;

/* Topic roles, in the order of tp_config_t.topics[]. */
typedef enum {
  TP_TOPIC_FEEDBACK = 0, /* == TP_SRC_FEEDBACK */
  TP_TOPIC_SUPPORT = 1,
  TP_TOPIC_COMMERCE = 2,
  TP_TOPIC_ALERTS = 3,
  TP_TOPIC_DEADLETTER = 4,
  TP_TOPIC_COUNT
} tp_topic_role_t;

typedef struct tp_config_s {
  char *path;              /* the file it was read from, or NULL */

  tp_kv_t *kafka;          /* librdkafka properties, passed through */
  size_t n_kafka;
  char *topics[TP_TOPIC_COUNT];

  int workers;             /* 0 = one per core */

  int64_t step_ms;              /* windows.step, default 1m */
  int64_t allowed_lateness_ms;  /* windows.allowed_lateness, default 30s */
  int64_t idle_timeout_ms;      /* windows.idle_timeout, default 1m; 0 = off */
  int64_t max_future_skew_ms;   /* windows.max_future_skew, default 5m */

  int64_t dedup_depth;          /* dedup.depth, per partition, default 100000 */

  int64_t first_response_sla_ms; /* support.first_response_sla, default 1h */
  int64_t ticket_ttl_ms;         /* support.ticket_ttl, default 30d */
  int64_t max_tickets;           /* support.max_tickets, per partition */

  int64_t max_touchpoints;       /* state.max_touchpoints, per input topic */
  int64_t metrics_max_touchpoints; /* metrics.max_touchpoints */

  char *http_listen;             /* http.listen, "host:port" */

  tp_log_level_t log_level;
  tp_log_format_t log_format;

  int64_t commit_interval_ms;    /* processing.commit_interval, default 1s */
  int64_t max_record_bytes;      /* processing.max_record_bytes */
  bool exactly_once;             /* processing.exactly_once, default true */
  char *transactional_id;        /* processing.transactional_id, "" = derived */

  tp_rule_t *rules;
  size_t n_rules;
} tp_config_t;

/** @returns a configuration holding every default, or NULL on ENOMEM. */
tp_config_t *tp_config_new(void);
void tp_config_destroy(tp_config_t *cfg);

/**
 * @brief Load a YAML file over the defaults, then apply environment
 *        overrides from envp (NULL means the process environment).
 * @param path  the file; NULL loads defaults and environment only.
 * @param out   on success, a new configuration the caller must destroy.
 * @param errbuf receives every error, one "FILE:LINE: message" per line
 *              ("env TOUCHPULSE_X: message" for environment values).
 * @returns TP_OK, TP_ECONFIG or TP_ENOMEM.
 */
tp_err_t tp_config_load(const char *path, char *const *envp, tp_config_t **out,
                        char *errbuf, size_t errbuf_size);

/** Same as tp_config_load() for YAML held in memory; name is used in errors. */
tp_err_t tp_config_load_string(const char *yaml, size_t len, const char *name,
                               char *const *envp, tp_config_t **out,
                               char *errbuf, size_t errbuf_size);

/** @returns the value of a kafka.* key, or NULL. */
const char *tp_config_kafka_get(const tp_config_t *cfg, const char *key);
/** Set (or replace) a kafka.* key. @returns TP_OK or TP_ENOMEM. */
tp_err_t tp_config_kafka_set(tp_config_t *cfg, const char *key, const char *value);

/**
 * @brief Parse a duration: an integer followed by ms, s, m, h or d
 *        ("500ms", "30s", "15m", "1h", "30d"), or several such terms
 *        ("1h30m"). @returns TP_OK or TP_EINVAL.
 */
tp_err_t tp_duration_parse(const char *s, int64_t *ms);

/** @returns true when key names a secret (contains "password" or "secret"). */
bool tp_config_key_is_secret(const char *key);

/**
 * @brief Write the effective configuration as YAML into a malloc'ed string,
 *        with secret values replaced by "[redacted]". Caller must free.
 */
char *tp_config_dump(const tp_config_t *cfg);

#endif
