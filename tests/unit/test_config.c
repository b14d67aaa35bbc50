/*
 * test_config.c -- the configuration loader: defaults, the example file,
 * every validation rule with its exact FILE:LINE, hostile YAML, environment
 * overrides, durations, the redacting dump and allocation failures.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "touchpulse/config.h"

/* Under ASan, ask LeakSanitizer directly: the report it prints at process
 * exit comes after criterion has recorded the test as passed. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
static bool leaked(void) { return __lsan_do_recoverable_leak_check() != 0; }
#else
static bool leaked(void) { return false; }
#endif

#define EXAMPLE TP_SOURCE_DIR "/examples/touchpulse.yaml"
#define FIXTURE(name) TP_SOURCE_DIR "/tests/fixtures/config/" name

static char *no_env[] = {NULL};
static char errbuf[16384];

/* Load YAML held in memory under the name "t.yaml"; NULL envp = none. */
static tp_err_t load_env(const char *yaml, char **envp, tp_config_t **cfg) {
  *cfg = NULL;
  return tp_config_load_string(yaml, strlen(yaml), "t.yaml", envp ? envp : no_env, cfg,
                               errbuf, sizeof(errbuf));
}

static tp_config_t *load_ok_env(const char *yaml, char **envp) {
  tp_config_t *cfg;
  tp_err_t rc = load_env(yaml, envp, &cfg);
  cr_assert_eq(rc, TP_OK, "load failed (%d):\n%s\n--- yaml:\n%s", rc, errbuf, yaml);
  cr_assert_not_null(cfg);
  return cfg;
}

static tp_config_t *load_ok(const char *yaml) { return load_ok_env(yaml, NULL); }

/* @returns true when errbuf holds exactly this line. */
static bool has_line(const char *line) {
  size_t n = strlen(line);
  for (const char *p = errbuf; (p = strstr(p, line)) != NULL; p++)
    if ((p == errbuf || p[-1] == '\n') && (p[n] == '\0' || p[n] == '\n'))
      return true;
  return false;
}

static size_t error_count(void) {
  size_t n = errbuf[0] ? 1 : 0;
  for (const char *p = errbuf; *p; p++)
    n += *p == '\n';
  return n;
}

/* Loading yaml (with envp) fails with exactly `expected` among its errors. */
static void expect_error_env(const char *yaml, char **envp, const char *expected) {
  tp_config_t *cfg;
  tp_err_t rc = load_env(yaml, envp, &cfg);
  cr_expect_eq(rc, TP_ECONFIG, "expected TP_ECONFIG for:\n%s", yaml);
  cr_expect_null(cfg);
  cr_expect(has_line(expected), "missing error line\n  %s\ngot:\n%s", expected, errbuf);
  tp_config_destroy(cfg);
}

static void expect_error(const char *yaml, const char *expected) {
  expect_error_env(yaml, NULL, expected);
}

TestSuite(config);

/* ---- defaults and the example ----------------------------------------- */

static void assert_defaults(const tp_config_t *cfg) {
  cr_assert_str_eq(tp_config_kafka_get(cfg, "bootstrap.servers"), "localhost:9092");
  cr_assert_str_eq(tp_config_kafka_get(cfg, "group.id"), "touchpulse");
  cr_assert_eq(cfg->n_kafka, 2);
  cr_assert_str_eq(cfg->topics[TP_TOPIC_FEEDBACK], "cx.feedback");
  cr_assert_str_eq(cfg->topics[TP_TOPIC_SUPPORT], "cx.support");
  cr_assert_str_eq(cfg->topics[TP_TOPIC_COMMERCE], "cx.commerce");
  cr_assert_str_eq(cfg->topics[TP_TOPIC_ALERTS], "cx.alerts");
  cr_assert_str_eq(cfg->topics[TP_TOPIC_DEADLETTER], "cx.deadletter");
  cr_assert_eq(cfg->workers, 0);
  cr_assert_eq(cfg->step_ms, 60000);
  cr_assert_eq(cfg->allowed_lateness_ms, 30000);
  cr_assert_eq(cfg->idle_timeout_ms, 60000);
  cr_assert_eq(cfg->max_future_skew_ms, 300000);
  cr_assert_eq(cfg->dedup_depth, 100000);
  cr_assert_eq(cfg->first_response_sla_ms, 3600000);
  cr_assert_eq(cfg->ticket_ttl_ms, 30LL * 86400000);
  cr_assert_eq(cfg->max_tickets, 1000000);
  cr_assert_eq(cfg->max_touchpoints, 100000);
  cr_assert_eq(cfg->metrics_max_touchpoints, 1000);
  cr_assert_str_eq(cfg->http_listen, "0.0.0.0:9464");
  cr_assert_eq(cfg->log_level, TP_LOG_INFO);
  cr_assert_eq(cfg->log_format, TP_LOG_TEXT);
  cr_assert_eq(cfg->commit_interval_ms, 1000);
  cr_assert_eq(cfg->max_record_bytes, 65536);
  cr_assert_eq(cfg->n_rules, 0);
  cr_assert_null(cfg->rules);
}

Test(config, new_holds_every_default) {
  tp_config_t *cfg = tp_config_new();
  cr_assert_not_null(cfg);
  assert_defaults(cfg);
  cr_assert_null(cfg->path);
  tp_config_destroy(cfg);
  tp_config_destroy(NULL);
}

Test(config, no_file_and_no_environment_gives_defaults) {
  tp_config_t *cfg = NULL;
  cr_assert_eq(tp_config_load(NULL, no_env, &cfg, errbuf, sizeof(errbuf)), TP_OK, "%s", errbuf);
  assert_defaults(cfg);
  tp_config_destroy(cfg);
}

Test(config, empty_and_comment_only_files_give_defaults) {
  const char *files[] = {FIXTURE("empty.yaml"), FIXTURE("comments_only.yaml")};
  for (size_t i = 0; i < TP_ARRAY_SIZE(files); i++) {
    tp_config_t *cfg = NULL;
    cr_assert_eq(tp_config_load(files[i], no_env, &cfg, errbuf, sizeof(errbuf)), TP_OK, "%s",
                 errbuf);
    assert_defaults(cfg);
    cr_assert_str_eq(cfg->path, files[i]);
    tp_config_destroy(cfg);
  }
  tp_config_t *cfg = load_ok("");
  assert_defaults(cfg);
  tp_config_destroy(cfg);
}

Test(config, example_file_loads_with_the_values_it_shows) {
  tp_config_t *cfg = NULL;
  cr_assert_eq(tp_config_load(EXAMPLE, no_env, &cfg, errbuf, sizeof(errbuf)), TP_OK, "%s",
               errbuf);
  cr_assert_str_eq(cfg->path, EXAMPLE);
  cr_assert_eq(cfg->max_tickets, 1000000);
  cr_assert_eq(cfg->commit_interval_ms, 1000);
  cr_assert_eq(cfg->max_record_bytes, 65536);
  cr_assert_str_eq(cfg->http_listen, "0.0.0.0:9464");
  cr_assert_eq(cfg->n_rules, 5);

  const tp_rule_t *r = &cfg->rules[0];
  cr_assert_str_eq(r->name, "checkout-csat-low");
  cr_assert_eq(r->metric, TP_METRIC_CSAT_MEAN);
  cr_assert_eq(r->window_ms, 15 * 60000);
  cr_assert_eq(r->op, TP_OP_LT);
  cr_assert_float_eq(r->threshold, 3.5, 1e-12);
  cr_assert_float_eq(r->clear, 3.8, 1e-12);
  cr_assert_eq(r->min_samples, 20);
  cr_assert_eq(r->for_count, 2);
  cr_assert_eq(r->severity, TP_SEV_CRITICAL);
  cr_assert_eq(r->n_touchpoints, 1);
  cr_assert_str_eq(r->touchpoints[0], "checkout.*");
  cr_assert_eq(r->n_labels, 1);
  cr_assert_str_eq(r->labels[0].key, "team");
  cr_assert_str_eq(r->labels[0].value, "payments");
  cr_assert_eq(r->line, 62); /* the line of "- name: checkout-csat-low" */

  r = &cfg->rules[1];
  cr_assert_str_eq(r->name, "nps-negative");
  cr_assert_eq(r->metric, TP_METRIC_NPS);
  cr_assert_eq(r->window_ms, 30 * 60000);
  cr_assert_float_eq(r->threshold, 0, 1e-12);
  cr_assert_float_eq(r->clear, 10, 1e-12);
  cr_assert_eq(r->min_samples, 30);
  cr_assert_eq(r->severity, TP_SEV_WARNING);
  cr_assert_eq(r->n_touchpoints, 0);
  cr_assert_str_eq(r->labels[0].value, "cx");

  r = &cfg->rules[2];
  cr_assert_str_eq(r->name, "first-response-slow");
  cr_assert_eq(r->metric, TP_METRIC_FIRST_RESPONSE_MS_P90);
  cr_assert_eq(r->op, TP_OP_GT);
  cr_assert_float_eq(r->threshold, 900000, 1e-9);
  cr_assert_float_eq(r->clear, 600000, 1e-9);
  cr_assert_str_eq(r->touchpoints[0], "support.*");

  r = &cfg->rules[3];
  cr_assert_str_eq(r->name, "returns-spike");
  cr_assert_eq(r->metric, TP_METRIC_RETURN_PCT);
  cr_assert_eq(r->min_samples, 40);
  cr_assert_str_eq(r->labels[0].value, "fulfilment");

  r = &cfg->rules[4];
  cr_assert_str_eq(r->name, "complaints-surge");
  cr_assert_eq(r->metric, TP_METRIC_COMPLAINTS);
  cr_assert_eq(r->op, TP_OP_GE);
  cr_assert_float_eq(r->threshold, 10, 1e-12);
  cr_assert_float_eq(r->clear, 5, 1e-12);
  cr_assert_eq(r->min_samples, 0);
  cr_assert_eq(r->for_count, 1);
  cr_assert_eq(r->severity, TP_SEV_INFO);
  tp_config_destroy(cfg);
}

Test(config, missing_file_is_reported_with_its_name) {
  tp_config_t *cfg = NULL;
  tp_err_t rc = tp_config_load(FIXTURE("does-not-exist.yaml"), no_env, &cfg, errbuf,
                               sizeof(errbuf));
  cr_assert_eq(rc, TP_ECONFIG);
  cr_assert_null(cfg);
  cr_assert(has_line(FIXTURE("does-not-exist.yaml") ": cannot open: No such file or directory"),
            "%s", errbuf);
}

/* ---- scalar validation ---------------------------------------------------- */

typedef struct {
  const char *yaml;
  const char *error;
} error_case_t;

static void expect_cases(const error_case_t *cases, size_t n) {
  for (size_t i = 0; i < n; i++)
    expect_error(cases[i].yaml, cases[i].error);
}

Test(config, window_durations_are_range_checked) {
  static const error_case_t cases[] = {
      {"windows:\n  step: 500ms\n", "t.yaml:2: windows.step: must be at least 1s, got 500ms"},
      {"windows:\n  step: 0\n", "t.yaml:2: windows.step: must be at least 1s, got 0"},
      {"windows:\n  allowed_lateness: -1s\n",
       "t.yaml:2: windows.allowed_lateness: expected a duration like 30s, got '-1s'"},
      {"windows:\n  idle_timeout: 1 m\n",
       "t.yaml:2: windows.idle_timeout: expected a duration like 30s, got '1 m'"},
      {"windows:\n  max_future_skew: 5\n",
       "t.yaml:2: windows.max_future_skew: expected a duration like 30s, got '5'"},
  };
  expect_cases(cases, TP_ARRAY_SIZE(cases));
  tp_config_t *cfg = load_ok("windows:\n  step: 1s\n  allowed_lateness: 0\n"
                             "  idle_timeout: 0s\n  max_future_skew: 0ms\n");
  cr_assert_eq(cfg->step_ms, 1000);
  cr_assert_eq(cfg->allowed_lateness_ms, 0);
  cr_assert_eq(cfg->idle_timeout_ms, 0);
  cr_assert_eq(cfg->max_future_skew_ms, 0);
  tp_config_destroy(cfg);
}

Test(config, integer_keys_are_range_checked) {
  static const error_case_t cases[] = {
      {"workers: 257\n", "t.yaml:1: workers: must be between 0 and 256, got 257"},
      {"workers: -1\n", "t.yaml:1: workers: must be between 0 and 256, got -1"},
      {"workers: four\n", "t.yaml:1: workers: expected an integer, got 'four'"},
      {"workers: 1.5\n", "t.yaml:1: workers: expected an integer, got '1.5'"},
      {"workers: 99999999999999999999\n",
       "t.yaml:1: workers: must be between 0 and 256, got 99999999999999999999"},
      {"dedup:\n  depth: 10000001\n",
       "t.yaml:2: dedup.depth: must be between 0 and 10000000, got 10000001"},
      {"support:\n  max_tickets: 0\n",
       "t.yaml:2: support.max_tickets: must be between 1 and 100000000, got 0"},
      {"support:\n  max_tickets: 100000001\n",
       "t.yaml:2: support.max_tickets: must be between 1 and 100000000, got 100000001"},
      {"state:\n  max_touchpoints: 0\n",
       "t.yaml:2: state.max_touchpoints: must be between 1 and 100000000, got 0"},
      {"metrics:\n  max_touchpoints: 1000001\n",
       "t.yaml:2: metrics.max_touchpoints: must be between 0 and 1000000, got 1000001"},
  };
  expect_cases(cases, TP_ARRAY_SIZE(cases));
  tp_config_t *cfg = load_ok("workers: 256\ndedup:\n  depth: 0\nsupport:\n  max_tickets: 1\n"
                             "state:\n  max_touchpoints: 100000000\n"
                             "metrics:\n  max_touchpoints: 0\n");
  cr_assert_eq(cfg->workers, 256);
  cr_assert_eq(cfg->dedup_depth, 0);
  cr_assert_eq(cfg->max_tickets, 1);
  cr_assert_eq(cfg->max_touchpoints, 100000000);
  cr_assert_eq(cfg->metrics_max_touchpoints, 0);
  tp_config_destroy(cfg);
}

Test(config, support_durations_must_be_positive) {
  static const error_case_t cases[] = {
      {"support:\n  first_response_sla: 0s\n",
       "t.yaml:2: support.first_response_sla: must be greater than 0, got 0s"},
      {"support:\n  ticket_ttl: 0\n", "t.yaml:2: support.ticket_ttl: must be greater than 0, got 0"},
      {"support:\n  ticket_ttl: forever\n",
       "t.yaml:2: support.ticket_ttl: expected a duration like 30s, got 'forever'"},
  };
  expect_cases(cases, TP_ARRAY_SIZE(cases));
  tp_config_t *cfg = load_ok("support:\n  first_response_sla: 90s\n  ticket_ttl: 7d\n");
  cr_assert_eq(cfg->first_response_sla_ms, 90000);
  cr_assert_eq(cfg->ticket_ttl_ms, 7LL * 86400000);
  tp_config_destroy(cfg);
}

Test(config, processing_limits_are_range_checked) {
  static const error_case_t cases[] = {
      {"processing:\n  commit_interval: 5ms\n",
       "t.yaml:2: processing.commit_interval: must be at least 10ms, got 5ms"},
      {"processing:\n  max_record_bytes: 63\n",
       "t.yaml:2: processing.max_record_bytes: must be between 64 and 67108864, got 63"},
      {"processing:\n  max_record_bytes: 67108865\n",
       "t.yaml:2: processing.max_record_bytes: must be between 64 and 67108864, got 67108865"},
  };
  expect_cases(cases, TP_ARRAY_SIZE(cases));
  tp_config_t *cfg = load_ok("processing:\n  commit_interval: 10ms\n  max_record_bytes: 64\n");
  cr_assert_eq(cfg->commit_interval_ms, 10);
  cr_assert_eq(cfg->max_record_bytes, 64);
  tp_config_destroy(cfg);
}

Test(config, http_listen_takes_host_port_or_bracketed_ipv6) {
  static const char *good[] = {"0.0.0.0:9464", "localhost:0", "[::]:65535", "[::1]:80",
                               "metrics-host.internal:9464"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(good); i++) {
    char yaml[128];
    snprintf(yaml, sizeof(yaml), "http:\n  listen: \"%s\"\n", good[i]);
    tp_config_t *cfg = load_ok(yaml);
    cr_expect_str_eq(cfg->http_listen, good[i]);
    tp_config_destroy(cfg);
  }
  static const char *bad[] = {"9464", "host:65536", "::1:80", "host:", ":9464", "[::1]80",
                              "host:12a", "ho st:80", "[]:80"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(bad); i++) {
    char yaml[128], line[256];
    snprintf(yaml, sizeof(yaml), "http:\n  listen: \"%s\"\n", bad[i]);
    snprintf(line, sizeof(line),
             "t.yaml:2: http.listen: expected host:port or [ipv6]:port with a port from 0 to "
             "65535, got '%s'",
             bad[i]);
    expect_error(yaml, line);
  }
}

Test(config, log_level_and_format_take_known_names) {
  expect_error("log:\n  level: verbose\n",
               "t.yaml:2: log.level: expected one of debug, info, warn, error, got 'verbose'");
  expect_error("log:\n  format: xml\n", "t.yaml:2: log.format: expected text or json, got 'xml'");
  tp_config_t *cfg = load_ok("log:\n  level: warn\n  format: json\n");
  cr_assert_eq(cfg->log_level, TP_LOG_WARN);
  cr_assert_eq(cfg->log_format, TP_LOG_JSON);
  tp_config_destroy(cfg);
}

Test(config, topic_names_follow_kafka_rules) {
  char long_name[251], yaml[400], line[400];
  memset(long_name, 'a', 250);
  long_name[250] = '\0';
  snprintf(yaml, sizeof(yaml), "topics:\n  alerts: %s\n", long_name);
  snprintf(line, sizeof(line),
           "t.yaml:2: topics.alerts: expected a Kafka topic name (1 to 249 characters of A-Z "
           "a-z 0-9 . _ -, not '.' or '..'), got '%.73s...'",
           long_name);
  expect_error(yaml, line);
  expect_error("topics:\n  feedback: \"cx feedback\"\n",
               "t.yaml:2: topics.feedback: expected a Kafka topic name (1 to 249 characters of "
               "A-Z a-z 0-9 . _ -, not '.' or '..'), got 'cx feedback'");
  expect_error("topics:\n  support: ..\n",
               "t.yaml:2: topics.support: expected a Kafka topic name (1 to 249 characters of "
               "A-Z a-z 0-9 . _ -, not '.' or '..'), got '..'");
  expect_error("topics:\n  support: \"\"\n",
               "t.yaml:2: topics.support: expected a Kafka topic name (1 to 249 characters of "
               "A-Z a-z 0-9 . _ -, not '.' or '..'), got ''");

  long_name[249] = '\0';
  snprintf(yaml, sizeof(yaml), "topics:\n  alerts: %s\n  feedback: prod_cx-feedback.v2\n",
           long_name);
  tp_config_t *cfg = load_ok(yaml);
  cr_assert_str_eq(cfg->topics[TP_TOPIC_ALERTS], long_name);
  cr_assert_str_eq(cfg->topics[TP_TOPIC_FEEDBACK], "prod_cx-feedback.v2");
  tp_config_destroy(cfg);
}

Test(config, the_five_topics_must_be_distinct) {
  expect_error("topics:\n  feedback: cx.in\n  support: cx.in\n",
               "t.yaml:3: topics.support: topic 'cx.in' is also topics.feedback; the five topics "
               "must be distinct");
  /* A key set to another role's default collides with that default. */
  expect_error("topics:\n  deadletter: cx.alerts\n",
               "t.yaml:2: topics.deadletter: topic 'cx.alerts' is also topics.alerts; the five "
               "topics must be distinct");
}

Test(config, wrong_types_are_reported_with_what_was_expected) {
  expect_error("windows:\n  step: [1m]\n",
               "t.yaml:2: windows.step: expected a duration like 30s, got a list");
  expect_error("windows:\n  step:\n", "t.yaml:2: windows.step: expected a duration like 30s, "
                                      "got an empty value");
  expect_error("windows: 1m\n", "t.yaml:1: windows: expected a mapping of keys, got a scalar");
  expect_error("- 1\n- 2\n",
               "t.yaml:1: expected a mapping of sections (kafka, topics, ...), got a list");
  expect_error("kafka:\n  bootstrap.servers: [a, b]\n",
               "t.yaml:2: kafka.bootstrap.servers: expected a string, number or boolean, got a "
               "list");
  expect_error("rules: {name: x}\n", "t.yaml:1: rules: expected a list of rules, got a mapping");
}

/* ---- structure ------------------------------------------------------------ */

Test(config, unknown_keys_are_errors_naming_the_known_ones) {
  expect_error("windows:\n  step: 1m\n  stpe: 1m\n",
               "t.yaml:3: unknown key 'stpe' in windows (known: step, allowed_lateness, "
               "idle_timeout, max_future_skew)");
  expect_error("worker: 4\n",
               "t.yaml:1: unknown key 'worker' (known: kafka, topics, workers, windows, dedup, "
               "support, state, metrics, http, log, processing, rules)");
  expect_error("processing:\n  commit: 1s\n",
               "t.yaml:2: unknown key 'commit' in processing (known: commit_interval, "
               "max_record_bytes, exactly_once, transactional_id)");
  expect_error("rules:\n  - name: r\n    metric: nps\n    window: 1m\n    op: \"<\"\n"
               "    threshold: 0\n    treshold: 1\n",
               "t.yaml:7: rule 'r': unknown key 'treshold' (known: name, metric, window, op, "
               "threshold, clear, min_samples, for, severity, touchpoints, labels)");
}

Test(config, duplicate_keys_are_errors) {
  expect_error("windows:\n  step: 1m\n  step: 2m\n",
               "t.yaml:3: duplicate key 'step' in windows (first at line 2)");
  expect_error("workers: 1\nlog:\n  level: info\nworkers: 2\n",
               "t.yaml:4: duplicate key 'workers' (first at line 1)");
  expect_error("kafka:\n  group.id: a\n  group.id: b\n",
               "t.yaml:3: duplicate key 'group.id' in kafka (first at line 2)");
  expect_error("rules:\n  - name: r\n    metric: nps\n    window: 1m\n    op: \"<\"\n"
               "    threshold: 0\n    op: \">\"\n",
               "t.yaml:7: rule 'r': duplicate key 'op' (first at line 5)");
}

Test(config, several_errors_are_reported_at_once_in_line_order) {
  tp_config_t *cfg = NULL;
  const char *path = FIXTURE("several_errors.yaml");
  cr_assert_eq(tp_config_load(path, no_env, &cfg, errbuf, sizeof(errbuf)), TP_ECONFIG);
  cr_assert_null(cfg);
  char expected[4096];
  snprintf(expected, sizeof(expected),
           "%1$s:3: topics.feedback: expected a Kafka topic name (1 to 249 characters of A-Z "
           "a-z 0-9 . _ -, not '.' or '..'), got 'cx feedback'\n"
           "%1$s:4: workers: must be between 0 and 256, got 512\n"
           "%1$s:6: unknown key 'stpe' in windows (known: step, allowed_lateness, "
           "idle_timeout, max_future_skew)\n"
           "%1$s:7: windows.allowed_lateness: expected a duration like 30s, got 'soon'\n"
           "%1$s:9: log.level: expected one of debug, info, warn, error, got 'verbose'\n"
           "%1$s:12: rule 'csat-low': metric: unknown metric 'csat_avg' (valid: responses, "
           "csat_mean, csat_pct, dsat_pct, nps, ces_mean, cli_mean, first_response_ms_p50, "
           "first_response_ms_p90, first_response_ms_p99, first_response_ms_mean, "
           "resolution_ms_p50, resolution_ms_p90, resolution_ms_mean, fcr_pct, tickets_opened, "
           "complaints, first_response_sla_breaches, orders, returns, return_pct)",
           path);
  cr_assert_str_eq(errbuf, expected);
}

Test(config, errors_from_file_and_environment_come_together) {
  char *env[] = {"TOUCHPULSE_LOG_FORMAT=yaml", NULL};
  tp_config_t *cfg;
  cr_assert_eq(load_env("workers: 300\n", env, &cfg), TP_ECONFIG);
  cr_assert_str_eq(errbuf, "t.yaml:1: workers: must be between 0 and 256, got 300\n"
                           "env TOUCHPULSE_LOG_FORMAT: expected text or json, got 'yaml'");
}

Test(config, yaml_syntax_errors_give_line_and_column) {
  tp_config_t *cfg = NULL;
  const char *path = FIXTURE("syntax_error.yaml");
  cr_assert_eq(tp_config_load(path, no_env, &cfg, errbuf, sizeof(errbuf)), TP_ECONFIG);
  char expected[512];
  snprintf(expected, sizeof(expected),
           "%s:4:5: did not find expected ',' or ']' (while parsing a flow sequence at line 3)",
           path);
  cr_assert_str_eq(errbuf, expected);
  expect_error("windows:\n  step: 1m\n   idle: 3\n",
               "t.yaml:3:8: mapping values are not allowed in this context");
}

Test(config, anchors_and_aliases_are_rejected) {
  tp_config_t *cfg = NULL;
  const char *path = FIXTURE("anchors.yaml");
  cr_assert_eq(tp_config_load(path, no_env, &cfg, errbuf, sizeof(errbuf)), TP_ECONFIG);
  char expected[512];
  snprintf(expected, sizeof(expected),
           "%1$s:1: anchors are not supported (found '&w'); write the value out\n"
           "%1$s:4: aliases are not supported (found '*sla'); write the value out",
           path);
  cr_assert_str_eq(errbuf, expected);
}

Test(config, a_second_document_is_rejected) {
  tp_config_t *cfg = NULL;
  const char *path = FIXTURE("two_documents.yaml");
  cr_assert_eq(tp_config_load(path, no_env, &cfg, errbuf, sizeof(errbuf)), TP_ECONFIG);
  char expected[512];
  snprintf(expected, sizeof(expected),
           "%s:2: a second YAML document starts here; the configuration is one document", path);
  cr_assert_str_eq(errbuf, expected);
}

Test(config, nesting_deeper_than_the_schema_is_rejected) {
  tp_config_t *cfg = NULL;
  const char *path = FIXTURE("too_deep.yaml");
  cr_assert_eq(tp_config_load(path, no_env, &cfg, errbuf, sizeof(errbuf)), TP_ECONFIG);
  char expected[512];
  snprintf(expected, sizeof(expected),
           "%s:5: nesting is deeper than the configuration allows (at most 4 levels)", path);
  cr_assert_str_eq(errbuf, expected);

  /* A flow bomb stops at the limit instead of building 100000 levels. */
  size_t n = 100000;
  char *bomb = malloc(n + 16);
  memcpy(bomb, "rules: ", 7);
  memset(bomb + 7, '[', n);
  bomb[7 + n] = '\0';
  expect_error(bomb, "t.yaml:1: nesting is deeper than the configuration allows (at most 4 "
                     "levels)");
  free(bomb);
}

Test(config, input_over_one_mebibyte_is_rejected) {
  size_t n = 1024 * 1024 + 1;
  char *big = malloc(n + 1);
  memset(big, '#', n);
  big[n] = '\0';
  expect_error(big, "t.yaml: configuration is larger than 1 MiB; refusing to parse it");

  char path[] = "/tmp/test_config_big_XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  FILE *fp = fdopen(fd, "w");
  fwrite(big, 1, n, fp);
  fclose(fp);
  tp_config_t *cfg = NULL;
  cr_assert_eq(tp_config_load(path, no_env, &cfg, errbuf, sizeof(errbuf)), TP_ECONFIG);
  char expected[128];
  snprintf(expected, sizeof(expected), "%s: file is larger than 1 MiB; refusing to parse it",
           path);
  cr_assert_str_eq(errbuf, expected);
  unlink(path);
  free(big);
}

Test(config, error_list_is_capped_for_hostile_input) {
  /* 5000 unknown keys: the first 100 are listed, the rest counted. */
  size_t cap = 5000 * 16 + 1;
  char *yaml = malloc(cap), *p = yaml;
  for (int i = 0; i < 5000; i++)
    p += sprintf(p, "k%d: 1\n", i);
  tp_config_t *cfg;
  cr_assert_eq(load_env(yaml, NULL, &cfg), TP_ECONFIG);
  cr_assert_eq(error_count(), 101);
  cr_assert(has_line("... and 4900 more errors"), "%s", errbuf);
  free(yaml);
}

Test(config, nul_characters_in_values_are_rejected) {
  expect_error("http:\n  listen: \"a\\0b:80\"\n", "t.yaml:2: NUL characters are not allowed in "
                                                  "values");
}

Test(config, kafka_values_are_kept_as_written_in_file_order) {
  tp_config_t *cfg = NULL;
  cr_assert_eq(tp_config_load(FIXTURE("kafka.yaml"), no_env, &cfg, errbuf, sizeof(errbuf)),
               TP_OK, "%s", errbuf);
  cr_assert_eq(cfg->n_kafka, 6);
  /* Defaults keep their slot; new keys follow in the order of the file. */
  static const char *const want[][2] = {
      {"bootstrap.servers", "broker-1:9093,broker-2:9093"},
      {"group.id", "touchpulse"},
      {"security.protocol", "SASL_SSL"},
      {"enable.auto.commit", "false"},
      {"fetch.max.bytes", "52428800"},
      {"sasl.password", "hunter2"},
  };
  for (size_t i = 0; i < TP_ARRAY_SIZE(want); i++) {
    cr_expect_str_eq(cfg->kafka[i].key, want[i][0]);
    cr_expect_str_eq(cfg->kafka[i].value, want[i][1]);
  }
  tp_config_destroy(cfg);
}

Test(config, kafka_get_and_set) {
  tp_config_t *cfg = tp_config_new();
  cr_assert_null(tp_config_kafka_get(cfg, "linger.ms"));
  cr_assert_eq(tp_config_kafka_set(cfg, "linger.ms", "5"), TP_OK);
  cr_assert_str_eq(tp_config_kafka_get(cfg, "linger.ms"), "5");
  cr_assert_eq(tp_config_kafka_set(cfg, "linger.ms", "10"), TP_OK);
  cr_assert_str_eq(tp_config_kafka_get(cfg, "linger.ms"), "10");
  cr_assert_eq(cfg->n_kafka, 3);
  tp_config_destroy(cfg);
}

/* ---- rules ------------------------------------------------------------------ */

#define RULE_HEAD "rules:\n  - name: r\n    metric: csat_mean\n    window: 15m\n"

Test(config, rule_defaults_apply_when_keys_are_left_out) {
  tp_config_t *cfg = load_ok(RULE_HEAD "    op: \"<\"\n    threshold: 3\n");
  const tp_rule_t *r = &cfg->rules[0];
  cr_assert_float_eq(r->clear, 3, 1e-12);
  cr_assert_eq(r->min_samples, 0);
  cr_assert_eq(r->for_count, 1);
  cr_assert_eq(r->severity, TP_SEV_WARNING);
  cr_assert_eq(r->n_touchpoints, 0);
  cr_assert_eq(r->n_labels, 0);
  cr_assert_eq(r->line, 2);
  tp_config_destroy(cfg);
}

Test(config, rule_required_keys_are_reported_at_the_rule_line) {
  tp_config_t *cfg;
  cr_assert_eq(load_env("rules:\n  - metric: nps\n", NULL, &cfg), TP_ECONFIG);
  cr_assert_str_eq(errbuf, "t.yaml:2: rule #1: missing required key 'name'\n"
                           "t.yaml:2: rule #1: missing required key 'window'\n"
                           "t.yaml:2: rule #1: missing required key 'op'\n"
                           "t.yaml:2: rule #1: missing required key 'threshold'");
  expect_error("rules:\n  - 5\n", "t.yaml:2: rule #1: expected a mapping with name, metric, "
                                  "window, op and threshold, got a scalar");
}

Test(config, rule_names_are_checked_and_unique) {
  expect_error("rules:\n  - name: \"has space\"\n    metric: nps\n    window: 1m\n"
               "    op: \"<\"\n    threshold: 0\n",
               "t.yaml:2: rule #1: name: expected 1 to 128 characters of A-Z a-z 0-9 _ . : -, "
               "got 'has space'");
  expect_error("rules:\n"
               "  - {name: same, metric: nps, window: 1m, op: \"<\", threshold: 0}\n"
               "  - {name: same, metric: nps, window: 1m, op: \"<\", threshold: 0}\n",
               "t.yaml:3: rule 'same': name already used by the rule at line 2");
  char name[130], yaml[400];
  memset(name, 'n', 129);
  name[129] = '\0';
  snprintf(yaml, sizeof(yaml), "rules:\n  - {name: %s, metric: nps, window: 1m, op: \"<\", "
                               "threshold: 0}\n", name);
  tp_config_t *cfg;
  cr_assert_eq(load_env(yaml, NULL, &cfg), TP_ECONFIG);
  name[128] = '\0';
  snprintf(yaml, sizeof(yaml), "rules:\n  - {name: \"%s\", metric: nps, window: 1m, op: \"<\", "
                               "threshold: 0}\n", name);
  cfg = load_ok(yaml);
  cr_assert_str_eq(cfg->rules[0].name, name);
  tp_config_destroy(cfg);
  cfg = load_ok("rules:\n  - {name: \"a_b.c:d-1\", metric: nps, window: 1m, op: \"<\", "
                "threshold: 0}\n");
  tp_config_destroy(cfg);
}

Test(config, rule_metric_must_be_known) {
  expect_error("rules:\n  - {name: r, metric: latency, window: 1m, op: \"<\", threshold: 0}\n",
               "t.yaml:2: rule 'r': metric: unknown metric 'latency' (valid: responses, "
               "csat_mean, csat_pct, dsat_pct, nps, ces_mean, cli_mean, first_response_ms_p50, "
               "first_response_ms_p90, first_response_ms_p99, first_response_ms_mean, "
               "resolution_ms_p50, resolution_ms_p90, resolution_ms_mean, fcr_pct, "
               "tickets_opened, complaints, first_response_sla_breaches, orders, returns, "
               "return_pct)");
}

Test(config, rule_window_must_be_positive_and_a_multiple_of_step) {
  expect_error("rules:\n  - name: r\n    metric: nps\n    window: 0s\n    op: \"<\"\n"
               "    threshold: 0\n",
               "t.yaml:4: rule 'r': window: must be greater than 0");
  expect_error("rules:\n  - name: r\n    metric: nps\n    window: 90s\n    op: \"<\"\n"
               "    threshold: 0\n",
               "t.yaml:4: rule 'r': window: 1m30s is not a multiple of windows.step (1m, the "
               "default)");
  expect_error("windows:\n  step: 7m\nrules:\n  - name: r\n    metric: nps\n    window: 15m\n"
               "    op: \"<\"\n    threshold: 0\n",
               "t.yaml:6: rule 'r': window: 15m is not a multiple of windows.step (7m, set at "
               "line 2)");
  tp_config_t *cfg = load_ok("windows:\n  step: 30s\nrules:\n  - name: r\n    metric: nps\n"
                             "    window: 90s\n    op: \"<\"\n    threshold: 0\n");
  cr_assert_eq(cfg->rules[0].window_ms, 90000);
  tp_config_destroy(cfg);
}

Test(config, rule_window_is_checked_against_a_step_from_the_environment) {
  char *env[] = {"TOUCHPULSE_WINDOWS_STEP=7m", NULL};
  expect_error_env(RULE_HEAD "    op: \"<\"\n    threshold: 3\n", env,
                   "t.yaml:4: rule 'r': window: 15m is not a multiple of windows.step (7m, from "
                   "env TOUCHPULSE_WINDOWS_STEP)");
  /* And a file step the environment fixes makes the file's rules valid. */
  char *fix[] = {"TOUCHPULSE_WINDOWS_STEP=5m", NULL};
  tp_config_t *cfg = load_ok_env("windows:\n  step: 7m\n" RULE_HEAD
                                 "    op: \"<\"\n    threshold: 3\n", fix);
  cr_assert_eq(cfg->step_ms, 300000);
  tp_config_destroy(cfg);
}

Test(config, rule_op_threshold_and_counts_are_checked) {
  static const error_case_t cases[] = {
      {RULE_HEAD "    op: \"=\"\n    threshold: 3\n",
       "t.yaml:5: rule 'r': op: expected one of \"<\", \"<=\", \">\", \">=\" (quoted), got '='"},
      {RULE_HEAD "    op: \"<\"\n    threshold: three\n",
       "t.yaml:6: rule 'r': threshold: expected a number, got 'three'"},
      {RULE_HEAD "    op: \"<\"\n    threshold: .nan\n",
       "t.yaml:6: rule 'r': threshold: expected a number, got '.nan'"},
      {RULE_HEAD "    op: \"<\"\n    threshold: 1e999\n",
       "t.yaml:6: rule 'r': threshold: expected a number, got '1e999'"},
      {RULE_HEAD "    op: \"<\"\n    threshold: 3\n    clear: x\n",
       "t.yaml:7: rule 'r': clear: expected a number, got 'x'"},
      {RULE_HEAD "    op: \"<\"\n    threshold: 3\n    min_samples: -1\n",
       "t.yaml:7: rule 'r': min_samples: must be 0 or more, got -1"},
      {RULE_HEAD "    op: \"<\"\n    threshold: 3\n    min_samples: 2.5\n",
       "t.yaml:7: rule 'r': min_samples: expected an integer, got '2.5'"},
      {RULE_HEAD "    op: \"<\"\n    threshold: 3\n    for: 0\n",
       "t.yaml:7: rule 'r': for: must be between 1 and 10000, got 0"},
      {RULE_HEAD "    op: \"<\"\n    threshold: 3\n    for: 10001\n",
       "t.yaml:7: rule 'r': for: must be between 1 and 10000, got 10001"},
      {RULE_HEAD "    op: \"<\"\n    threshold: 3\n    severity: page\n",
       "t.yaml:7: rule 'r': severity: expected one of info, warning, critical, got 'page'"},
  };
  expect_cases(cases, TP_ARRAY_SIZE(cases));
  tp_config_t *cfg = load_ok(RULE_HEAD "    op: \">=\"\n    threshold: -2.5e1\n"
                             "    min_samples: 7\n    for: 10000\n    severity: CRITICAL\n");
  const tp_rule_t *r = &cfg->rules[0];
  cr_assert_eq(r->op, TP_OP_GE);
  cr_assert_float_eq(r->threshold, -25, 1e-12);
  cr_assert_eq(r->min_samples, 7);
  cr_assert_eq(r->for_count, 10000);
  cr_assert_eq(r->severity, TP_SEV_CRITICAL);
  tp_config_destroy(cfg);
}

Test(config, clear_on_the_breaching_side_is_an_error) {
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    clear: 2.5\n",
               "t.yaml:7: rule 'r': clear: 2.5 is on the breaching side of threshold 3 for op "
               "'<': the alert would resolve while the value still breaches and fire again at "
               "once (flapping); use clear >= 3");
  expect_error(RULE_HEAD "    op: \">=\"\n    threshold: 10\n    clear: 12\n",
               "t.yaml:7: rule 'r': clear: 12 is on the breaching side of threshold 10 for op "
               "'>=': the alert would resolve while the value still breaches and fire again at "
               "once (flapping); use clear <= 10");
  /* The threshold itself and the non-breaching side are fine for every op. */
  static const char *const ok[] = {
      RULE_HEAD "    op: \"<=\"\n    threshold: 3\n    clear: 3\n",
      RULE_HEAD "    op: \"<\"\n    threshold: 3\n    clear: 3.3\n",
      RULE_HEAD "    op: \">\"\n    threshold: 3\n    clear: 2\n",
      RULE_HEAD "    op: \">=\"\n    threshold: 3\n    clear: 3\n",
  };
  for (size_t i = 0; i < TP_ARRAY_SIZE(ok); i++)
    tp_config_destroy(load_ok(ok[i]));
}

Test(config, rule_touchpoints_take_a_glob_or_a_list) {
  tp_config_t *cfg = load_ok(RULE_HEAD "    op: \"<\"\n    threshold: 3\n"
                             "    touchpoints: checkout.*\n");
  cr_assert_eq(cfg->rules[0].n_touchpoints, 1);
  cr_assert_str_eq(cfg->rules[0].touchpoints[0], "checkout.*");
  tp_config_destroy(cfg);
  cfg = load_ok(RULE_HEAD "    op: \"<\"\n    threshold: 3\n"
                "    touchpoints:\n      - \"web.*\"\n      - app.login\n");
  cr_assert_eq(cfg->rules[0].n_touchpoints, 2);
  cr_assert_str_eq(cfg->rules[0].touchpoints[1], "app.login");
  tp_config_destroy(cfg);
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    touchpoints: [a, \"\"]\n",
               "t.yaml:7: rule 'r': touchpoints: expected a non-empty glob, got an empty value");
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    touchpoints: []\n",
               "t.yaml:7: rule 'r': touchpoints: an empty list matches no touchpoint; leave the "
               "key out to match every touchpoint");
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    touchpoints: {a: b}\n",
               "t.yaml:7: rule 'r': touchpoints: expected a glob or a list of globs, got a "
               "mapping");
}

Test(config, rule_labels_are_checked_and_sorted) {
  tp_config_t *cfg = load_ok(RULE_HEAD "    op: \"<\"\n    threshold: 3\n"
                             "    labels: {team: payments, _tier: \"1\", env: prod}\n");
  const tp_rule_t *r = &cfg->rules[0];
  cr_assert_eq(r->n_labels, 3);
  cr_assert_str_eq(r->labels[0].key, "_tier");
  cr_assert_str_eq(r->labels[0].value, "1");
  cr_assert_str_eq(r->labels[1].key, "env");
  cr_assert_str_eq(r->labels[2].key, "team");
  tp_config_destroy(cfg);
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    labels:\n      1team: x\n",
               "t.yaml:8: rule 'r': labels: label name '1team' must match "
               "[A-Za-z_][A-Za-z0-9_]*");
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    labels:\n      stage: x\n",
               "t.yaml:8: rule 'r': labels: label 'stage' is reserved: touchpulse adds stage and "
               "channel to every alert itself");
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    labels:\n      channel: x\n",
               "t.yaml:8: rule 'r': labels: label 'channel' is reserved: touchpulse adds stage "
               "and channel to every alert itself");
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    labels:\n      team:\n",
               "t.yaml:8: rule 'r': labels: team: expected a string, got an empty value");
  /* Label values are the deepest level of the schema. */
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    labels:\n      team: [a]\n",
               "t.yaml:8: nesting is deeper than the configuration allows (at most 4 levels)");
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    labels:\n      a: x\n      a: y\n",
               "t.yaml:9: rule 'r': labels: duplicate label 'a'");
  expect_error(RULE_HEAD "    op: \"<\"\n    threshold: 3\n    labels: [team]\n",
               "t.yaml:7: rule 'r': labels: expected a mapping of label names to values, got a "
               "list");
}

/* ---- environment ------------------------------------------------------------ */

Test(config, every_scalar_key_is_overridable_from_the_environment) {
  char *env[] = {"TOUCHPULSE_TOPICS_FEEDBACK=f",
                 "TOUCHPULSE_TOPICS_SUPPORT=s",
                 "TOUCHPULSE_TOPICS_COMMERCE=c",
                 "TOUCHPULSE_TOPICS_ALERTS=a",
                 "TOUCHPULSE_TOPICS_DEADLETTER=d",
                 "TOUCHPULSE_WORKERS=8",
                 "TOUCHPULSE_WINDOWS_STEP=30s",
                 "TOUCHPULSE_WINDOWS_ALLOWED_LATENESS=1m",
                 "TOUCHPULSE_WINDOWS_IDLE_TIMEOUT=0",
                 "TOUCHPULSE_WINDOWS_MAX_FUTURE_SKEW=10m",
                 "TOUCHPULSE_DEDUP_DEPTH=5",
                 "TOUCHPULSE_SUPPORT_FIRST_RESPONSE_SLA=2h",
                 "TOUCHPULSE_SUPPORT_TICKET_TTL=7d",
                 "TOUCHPULSE_SUPPORT_MAX_TICKETS=42",
                 "TOUCHPULSE_STATE_MAX_TOUCHPOINTS=43",
                 "TOUCHPULSE_METRICS_MAX_TOUCHPOINTS=44",
                 "TOUCHPULSE_HTTP_LISTEN=127.0.0.1:8080",
                 "TOUCHPULSE_LOG_LEVEL=debug",
                 "TOUCHPULSE_LOG_FORMAT=json",
                 "TOUCHPULSE_PROCESSING_COMMIT_INTERVAL=250ms",
                 "TOUCHPULSE_PROCESSING_MAX_RECORD_BYTES=1024",
                 "UNRELATED=1",
                 NULL};
  /* The environment wins over the file. */
  tp_config_t *cfg = load_ok_env("workers: 2\nhttp:\n  listen: 0.0.0.0:1\n", env);
  cr_assert_str_eq(cfg->topics[TP_TOPIC_FEEDBACK], "f");
  cr_assert_str_eq(cfg->topics[TP_TOPIC_SUPPORT], "s");
  cr_assert_str_eq(cfg->topics[TP_TOPIC_COMMERCE], "c");
  cr_assert_str_eq(cfg->topics[TP_TOPIC_ALERTS], "a");
  cr_assert_str_eq(cfg->topics[TP_TOPIC_DEADLETTER], "d");
  cr_assert_eq(cfg->workers, 8);
  cr_assert_eq(cfg->step_ms, 30000);
  cr_assert_eq(cfg->allowed_lateness_ms, 60000);
  cr_assert_eq(cfg->idle_timeout_ms, 0);
  cr_assert_eq(cfg->max_future_skew_ms, 600000);
  cr_assert_eq(cfg->dedup_depth, 5);
  cr_assert_eq(cfg->first_response_sla_ms, 7200000);
  cr_assert_eq(cfg->ticket_ttl_ms, 7LL * 86400000);
  cr_assert_eq(cfg->max_tickets, 42);
  cr_assert_eq(cfg->max_touchpoints, 43);
  cr_assert_eq(cfg->metrics_max_touchpoints, 44);
  cr_assert_str_eq(cfg->http_listen, "127.0.0.1:8080");
  cr_assert_eq(cfg->log_level, TP_LOG_DEBUG);
  cr_assert_eq(cfg->log_format, TP_LOG_JSON);
  cr_assert_eq(cfg->commit_interval_ms, 250);
  cr_assert_eq(cfg->max_record_bytes, 1024);
  tp_config_destroy(cfg);
}

Test(config, null_envp_reads_the_process_environment) {
  setenv("TOUCHPULSE_HTTP_LISTEN", "[::]:9999", 1);
  setenv("TOUCHPULSE_KAFKA_CLIENT_ID", "tp-test", 1);
  tp_config_t *cfg = NULL;
  cr_assert_eq(tp_config_load_string("", 0, "t.yaml", NULL, &cfg, errbuf, sizeof(errbuf)),
               TP_OK, "%s", errbuf);
  cr_assert_str_eq(cfg->http_listen, "[::]:9999");
  cr_assert_str_eq(tp_config_kafka_get(cfg, "client.id"), "tp-test");
  tp_config_destroy(cfg);
}

Test(config, kafka_properties_come_from_the_environment_with_dots) {
  char *env[] = {"TOUCHPULSE_KAFKA_BOOTSTRAP_SERVERS=kafka:29092",
                 "TOUCHPULSE_KAFKA_SASL_PASSWORD=s3cret",
                 "TOUCHPULSE_KAFKA_security_protocol=SASL_SSL", NULL};
  tp_config_t *cfg = load_ok_env("kafka:\n  bootstrap.servers: file:9092\n", env);
  cr_assert_str_eq(tp_config_kafka_get(cfg, "bootstrap.servers"), "kafka:29092");
  cr_assert_str_eq(tp_config_kafka_get(cfg, "sasl.password"), "s3cret");
  cr_assert_str_eq(tp_config_kafka_get(cfg, "security.protocol"), "SASL_SSL");
  cr_assert_eq(cfg->n_kafka, 4);
  tp_config_destroy(cfg);
  char *empty[] = {"TOUCHPULSE_KAFKA_=x", NULL};
  expect_error_env("", empty,
                   "env TOUCHPULSE_KAFKA_: names no kafka property (write "
                   "TOUCHPULSE_KAFKA_<PROPERTY>)");
}

Test(config, rules_from_the_environment_replace_the_file_rules) {
  char *flow[] = {"TOUCHPULSE_RULES=[{name: env-rule, metric: orders, window: 5m, op: \"<\", "
                  "threshold: 1, labels: {team: ops}}]",
                  NULL};
  tp_config_t *cfg = NULL;
  cr_assert_eq(tp_config_load(EXAMPLE, flow, &cfg, errbuf, sizeof(errbuf)), TP_OK, "%s", errbuf);
  cr_assert_eq(cfg->n_rules, 1);
  cr_assert_str_eq(cfg->rules[0].name, "env-rule");
  cr_assert_eq(cfg->rules[0].metric, TP_METRIC_ORDERS);
  cr_assert_eq(cfg->rules[0].window_ms, 300000);
  cr_assert_str_eq(cfg->rules[0].labels[0].value, "ops");
  cr_assert_eq(cfg->rules[0].line, 0);
  tp_config_destroy(cfg);

  char *block[] = {"TOUCHPULSE_RULES=- name: a\n  metric: nps\n  window: 1h\n  op: '>'\n"
                   "  threshold: 50\n- name: b\n  metric: returns\n  window: 2m\n"
                   "  op: '>='\n  threshold: 3\n  severity: Critical\n",
                   NULL};
  cfg = load_ok_env(RULE_HEAD "    op: \"<\"\n    threshold: 3\n", block);
  cr_assert_eq(cfg->n_rules, 2);
  cr_assert_str_eq(cfg->rules[1].name, "b");
  cr_assert_eq(cfg->rules[1].severity, TP_SEV_CRITICAL);
  tp_config_destroy(cfg);

  char *json[] = {"TOUCHPULSE_RULES=[{\"name\": \"j\", \"metric\": \"csat_pct\", \"window\": "
                  "\"10m\", \"op\": \"<=\", \"threshold\": 80.5, \"touchpoints\": [\"web.*\"]}]",
                  NULL};
  cfg = load_ok_env("", json);
  cr_assert_eq(cfg->n_rules, 1);
  cr_assert_eq(cfg->rules[0].op, TP_OP_LE);
  cr_assert_float_eq(cfg->rules[0].threshold, 80.5, 1e-12);
  cr_assert_str_eq(cfg->rules[0].touchpoints[0], "web.*");
  tp_config_destroy(cfg);

  char *none[] = {"TOUCHPULSE_RULES=[]", NULL};
  cfg = NULL;
  cr_assert_eq(tp_config_load(EXAMPLE, none, &cfg, errbuf, sizeof(errbuf)), TP_OK, "%s", errbuf);
  cr_assert_eq(cfg->n_rules, 0);
  tp_config_destroy(cfg);
}

Test(config, rules_from_the_environment_are_validated) {
  char *bad[] = {"TOUCHPULSE_RULES=[{name: r, metric: nps, window: 90s, op: \"<\", "
                 "threshold: 0, clear: -1}]",
                 NULL};
  tp_config_t *cfg;
  cr_assert_eq(load_env("", bad, &cfg), TP_ECONFIG);
  cr_assert_str_eq(errbuf,
                   "env TOUCHPULSE_RULES:1: rule 'r': clear: -1 is on the breaching side of "
                   "threshold 0 for op '<': the alert would resolve while the value still "
                   "breaches and fire again at once (flapping); use clear >= 0\n"
                   "env TOUCHPULSE_RULES:1: rule 'r': window: 1m30s is not a multiple of "
                   "windows.step (1m, the default)");
  char *syntax[] = {"TOUCHPULSE_RULES=[{name: r}}]", NULL};
  expect_error_env("", syntax,
                   "env TOUCHPULSE_RULES:1:11: did not find expected ',' or ']' (while parsing a "
                   "flow sequence at line 1)");
  char *map[] = {"TOUCHPULSE_RULES={name: r}", NULL};
  expect_error_env("", map, "env TOUCHPULSE_RULES:1: rules: expected a list of rules, got a "
                            "mapping");
  char *deep[] = {"TOUCHPULSE_RULES=[{labels: {a: [x]}}]", NULL};
  expect_error_env("", deep, "env TOUCHPULSE_RULES:1: nesting is deeper than the configuration "
                             "allows (at most 3 levels)");
}

Test(config, environment_values_are_validated_like_file_values) {
  char *env[] = {"TOUCHPULSE_WINDOWS_STEP=abc", "TOUCHPULSE_WORKERS=1000",
                 "TOUCHPULSE_HTTP_LISTEN=nope", "TOUCHPULSE_TOPICS_ALERTS=cx.feedback", NULL};
  tp_config_t *cfg;
  cr_assert_eq(load_env("", env, &cfg), TP_ECONFIG);
  cr_assert_str_eq(errbuf,
                   "env TOUCHPULSE_WINDOWS_STEP: expected a duration like 30s, got 'abc'\n"
                   "env TOUCHPULSE_WORKERS: must be between 0 and 256, got 1000\n"
                   "env TOUCHPULSE_HTTP_LISTEN: expected host:port or [ipv6]:port with a port "
                   "from 0 to 65535, got 'nope'\n"
                   "env TOUCHPULSE_TOPICS_ALERTS: topic 'cx.feedback' is also topics.feedback; "
                   "the five topics must be distinct");
}

Test(config, unknown_touchpulse_variables_are_errors) {
  char *typo[] = {"TOUCHPULSE_WINDOWS_STPE=1m", NULL};
  expect_error_env("", typo, "env TOUCHPULSE_WINDOWS_STPE: names no configuration key; did you "
                             "mean TOUCHPULSE_WINDOWS_STEP?");
  char *rule[] = {"TOUCHPULSE_RULE=[]", NULL};
  expect_error_env("", rule, "env TOUCHPULSE_RULE: names no configuration key; did you mean "
                             "TOUCHPULSE_RULES?");
  char *far[] = {"TOUCHPULSE_SOMETHING_ELSE_ENTIRELY=1", NULL};
  expect_error_env("", far, "env TOUCHPULSE_SOMETHING_ELSE_ENTIRELY: names no configuration key "
                            "(variables are TOUCHPULSE_ + a key path such as WINDOWS_STEP, "
                            "TOUCHPULSE_KAFKA_<PROPERTY> or TOUCHPULSE_RULES)");
  /* Sections are not scalar keys. */
  char *section[] = {"TOUCHPULSE_WINDOWS=1m", NULL};
  tp_config_t *cfg;
  cr_assert_eq(load_env("", section, &cfg), TP_ECONFIG);
}

/* ---- durations -------------------------------------------------------------- */

Test(config, durations_parse_single_and_compound_terms) {
  static const struct {
    const char *text;
    int64_t ms;
  } ok[] = {{"500ms", 500},     {"30s", 30000},          {"1m", 60000},
            {"1h", 3600000},    {"30d", 2592000000LL},   {"1h30m", 5400000},
            {"0", 0},           {"0s", 0},               {"1d2h3m4s5ms", 93784005},
            {"007s", 7000},     {"9223372036854775807ms", INT64_MAX},
            {"106751991167d", 106751991167LL * 86400000}};
  for (size_t i = 0; i < TP_ARRAY_SIZE(ok); i++) {
    int64_t ms = -1;
    cr_expect_eq(tp_duration_parse(ok[i].text, &ms), TP_OK, "%s", ok[i].text);
    cr_expect_eq(ms, ok[i].ms, "%s", ok[i].text);
  }
}

Test(config, durations_reject_signs_spaces_and_unknown_forms) {
  static const char *const bad[] = {"",    "abc", "10",   "-1s",  "+1s",  "1 s",  " 1s",
                                    "1s ", "1.5s", "1x",  "s",    "1m1h", "1s1s", "1h30",
                                    "1M",  "1S",   "ms",  "1mss", "1sm"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(bad); i++) {
    int64_t ms = 0;
    cr_expect_eq(tp_duration_parse(bad[i], &ms), TP_EINVAL, "'%s' was accepted", bad[i]);
  }
  int64_t ms;
  cr_expect_eq(tp_duration_parse(NULL, &ms), TP_EINVAL);
}

Test(config, durations_detect_overflow) {
  static const char *const bad[] = {"9223372036854775808ms", "106751991168d",
                                    "106751991167d24h", "99999999999999999999999s"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(bad); i++) {
    int64_t ms = 0;
    cr_expect_eq(tp_duration_parse(bad[i], &ms), TP_EINVAL, "'%s' was accepted", bad[i]);
  }
}

/* ---- dump ------------------------------------------------------------------- */

Test(config, secret_keys_are_recognised) {
  cr_assert(tp_config_key_is_secret("sasl.password"));
  cr_assert(tp_config_key_is_secret("ssl.key.PASSWORD"));
  cr_assert(tp_config_key_is_secret("sasl.oauthbearer.client.secret"));
  cr_assert(tp_config_key_is_secret("Secret"));
  cr_assert_not(tp_config_key_is_secret("sasl.username"));
  cr_assert_not(tp_config_key_is_secret("bootstrap.servers"));
  cr_assert_not(tp_config_key_is_secret(NULL));
}

Test(config, dump_redacts_secrets) {
  char *env[] = {"TOUCHPULSE_KAFKA_SASL_PASSWORD=hunter2",
                 "TOUCHPULSE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET=topsecret",
                 "TOUCHPULSE_KAFKA_SASL_USERNAME=svc-touchpulse", NULL};
  tp_config_t *cfg = load_ok_env("", env);
  char *dump = tp_config_dump(cfg);
  cr_assert_not_null(dump);
  cr_assert_null(strstr(dump, "hunter2"), "%s", dump);
  cr_assert_null(strstr(dump, "topsecret"), "%s", dump);
  cr_assert_not_null(strstr(dump, "\"sasl.password\": \"[redacted]\""), "%s", dump);
  cr_assert_not_null(strstr(dump, "\"sasl.oauthbearer.client.secret\": \"[redacted]\""), "%s",
                     dump);
  cr_assert_not_null(strstr(dump, "\"sasl.username\": \"svc-touchpulse\""), "%s", dump);
  free(dump);
  tp_config_destroy(cfg);
}

static void assert_same_config(const tp_config_t *a, const tp_config_t *b) {
  cr_assert_eq(a->n_kafka, b->n_kafka);
  for (size_t i = 0; i < a->n_kafka; i++) {
    cr_assert_str_eq(a->kafka[i].key, b->kafka[i].key);
    if (tp_config_key_is_secret(a->kafka[i].key))
      cr_assert_str_eq(b->kafka[i].value, "[redacted]");
    else
      cr_assert_str_eq(a->kafka[i].value, b->kafka[i].value);
  }
  for (int i = 0; i < TP_TOPIC_COUNT; i++)
    cr_assert_str_eq(a->topics[i], b->topics[i]);
  cr_assert_eq(a->workers, b->workers);
  cr_assert_eq(a->step_ms, b->step_ms);
  cr_assert_eq(a->allowed_lateness_ms, b->allowed_lateness_ms);
  cr_assert_eq(a->idle_timeout_ms, b->idle_timeout_ms);
  cr_assert_eq(a->max_future_skew_ms, b->max_future_skew_ms);
  cr_assert_eq(a->dedup_depth, b->dedup_depth);
  cr_assert_eq(a->first_response_sla_ms, b->first_response_sla_ms);
  cr_assert_eq(a->ticket_ttl_ms, b->ticket_ttl_ms);
  cr_assert_eq(a->max_tickets, b->max_tickets);
  cr_assert_eq(a->max_touchpoints, b->max_touchpoints);
  cr_assert_eq(a->metrics_max_touchpoints, b->metrics_max_touchpoints);
  cr_assert_str_eq(a->http_listen, b->http_listen);
  cr_assert_eq(a->log_level, b->log_level);
  cr_assert_eq(a->log_format, b->log_format);
  cr_assert_eq(a->commit_interval_ms, b->commit_interval_ms);
  cr_assert_eq(a->max_record_bytes, b->max_record_bytes);
  cr_assert_eq(a->n_rules, b->n_rules);
  for (size_t i = 0; i < a->n_rules; i++) {
    const tp_rule_t *x = &a->rules[i], *y = &b->rules[i];
    cr_assert_str_eq(x->name, y->name);
    cr_assert_eq(x->metric, y->metric);
    cr_assert_eq(x->window_ms, y->window_ms);
    cr_assert_eq(x->op, y->op);
    cr_assert(x->threshold == y->threshold, "%.17g != %.17g", x->threshold, y->threshold);
    cr_assert(x->clear == y->clear, "%.17g != %.17g", x->clear, y->clear);
    cr_assert_eq(x->min_samples, y->min_samples);
    cr_assert_eq(x->for_count, y->for_count);
    cr_assert_eq(x->severity, y->severity);
    cr_assert_eq(x->n_touchpoints, y->n_touchpoints);
    for (size_t t = 0; t < x->n_touchpoints; t++)
      cr_assert_str_eq(x->touchpoints[t], y->touchpoints[t]);
    cr_assert_eq(x->n_labels, y->n_labels);
    for (size_t l = 0; l < x->n_labels; l++) {
      cr_assert_str_eq(x->labels[l].key, y->labels[l].key);
      cr_assert_str_eq(x->labels[l].value, y->labels[l].value);
    }
  }
}

static void assert_dump_round_trips(const tp_config_t *cfg) {
  char *dump = tp_config_dump(cfg);
  cr_assert_not_null(dump);
  tp_config_t *again = NULL;
  tp_err_t rc = tp_config_load_string(dump, strlen(dump), "dump.yaml", no_env, &again, errbuf,
                                      sizeof(errbuf));
  cr_assert_eq(rc, TP_OK, "%s\n--- dump:\n%s", errbuf, dump);
  assert_same_config(cfg, again);
  tp_config_destroy(again);
  free(dump);
}

Test(config, dump_of_the_example_loads_back_equal) {
  tp_config_t *cfg = NULL;
  cr_assert_eq(tp_config_load(EXAMPLE, no_env, &cfg, errbuf, sizeof(errbuf)), TP_OK, "%s",
               errbuf);
  assert_dump_round_trips(cfg);
  tp_config_destroy(cfg);
}

Test(config, dump_of_an_unusual_configuration_loads_back_equal) {
  char *env[] = {"TOUCHPULSE_KAFKA_SSL_KEY_PASSWORD=pw",
                 "TOUCHPULSE_KAFKA_CLIENT_ID=a \"quoted\" id: with # and \\ and \ttab", NULL};
  tp_config_t *cfg = load_ok_env(
      "kafka:\n  enable.idempotence: true\n  'weird: key': \"line\\nbreak\"\n"
      "topics:\n  alerts: x_y-z.1\nworkers: 3\n"
      "windows:\n  step: 1m30s\n  allowed_lateness: 500ms\n  idle_timeout: 0\n"
      "dedup:\n  depth: 0\nsupport:\n  first_response_sla: 1d1ms\n  ticket_ttl: 1ms\n"
      "http:\n  listen: \"[::1]:0\"\nlog:\n  level: error\n  format: json\n"
      "processing:\n  commit_interval: 10ms\n  max_record_bytes: 67108864\n"
      "rules:\n"
      "  - {name: \"a:b.c\", metric: cli_mean, window: 3m, op: \"<=\", threshold: 0.1,"
      " clear: 0.30000000000000004, min_samples: 9, for: 3, severity: info,"
      " touchpoints: [\"web.*\", \"[ab]?\"], labels: {z: \"\", a: \"it's\"}}\n"
      "  - {name: big, metric: orders, window: 4h30m, op: \">\", threshold: 1e300,"
      " clear: -1e-300}\n",
      env);
  assert_dump_round_trips(cfg);
  tp_config_destroy(cfg);
  cfg = tp_config_new();
  assert_dump_round_trips(cfg);
  tp_config_destroy(cfg);
}

/* ---- allocation failures ------------------------------------------------------ */

/*
 * Fail the 1st, 2nd, ... allocation of a load until one needs no more than
 * are allowed. Each failing run must return TP_ENOMEM and leave nothing
 * behind (the ASan build reports leaks when the test process exits).
 */
static long fail_every_allocation(const char *path, const char *yaml, char **envp,
                                  tp_err_t final_rc) {
  for (long n = 1;; n++) {
    tp_config_t *cfg = NULL;
    tp_err_t rc;
    tp_alloc_fail_after(n);
    if (path != NULL)
      rc = tp_config_load(path, envp, &cfg, errbuf, sizeof(errbuf));
    else
      rc = tp_config_load_string(yaml, strlen(yaml), "t.yaml", envp, &cfg, errbuf,
                                 sizeof(errbuf));
    long calls = tp_alloc_calls();
    tp_alloc_fail_after(0);
    if (calls < n) {
      cr_assert_eq(rc, final_rc, "run %ld: rc %d\n%s", n, rc, errbuf);
      tp_config_destroy(cfg);
      return n;
    }
    cr_assert_eq(rc, TP_ENOMEM, "allocation %ld failed but rc was %d:\n%s", n, rc, errbuf);
    cr_assert_null(cfg);
    cr_assert_not_null(strstr(errbuf, "out of memory"), "%s", errbuf);
  }
}

Test(config, every_failed_allocation_loading_the_example_returns_enomem) {
  long runs = fail_every_allocation(EXAMPLE, NULL, no_env, TP_OK);
  cr_assert_gt(runs, 100, "only %ld allocations: is the hook in use?", runs);
  cr_assert_not(leaked(), "a failed load leaked memory (see the LeakSanitizer report)");
}

Test(config, every_failed_allocation_with_errors_and_environment_returns_enomem) {
  char *env[] = {"TOUCHPULSE_KAFKA_SASL_PASSWORD=pw", "TOUCHPULSE_HTTP_LISTEN=[::]:1",
                 "TOUCHPULSE_RULES=[{name: e, metric: nps, window: 2m, op: '<', threshold: 1,"
                 " touchpoints: x, labels: {b: c}}]",
                 "TOUCHPULSE_WORKERS=x", NULL};
  fail_every_allocation(NULL, "windows:\n  stpe: 1m\nrules:\n  - name: r\n", env, TP_ECONFIG);
  cr_assert_not(leaked(), "a failed load leaked memory (see the LeakSanitizer report)");
}

Test(config, dump_returns_null_when_allocation_fails) {
  tp_config_t *cfg = tp_config_new();
  tp_alloc_fail_after(1);
  char *dump = tp_config_dump(cfg);
  tp_alloc_fail_after(0);
  cr_assert_null(dump);
  tp_config_destroy(cfg);
  cr_assert_not(leaked(), "a failed dump leaked memory (see the LeakSanitizer report)");
}

Test(config, exactly_once_and_transactional_id_parse_and_validate) {
  tp_config_t *cfg = load_ok("");
  cr_expect(cfg->exactly_once);
  cr_expect_str_eq(cfg->transactional_id, "");
  tp_config_destroy(cfg);
  cfg = load_ok("processing:\n  exactly_once: false\n  transactional_id: tp-node-1\n");
  cr_expect_not(cfg->exactly_once);
  cr_expect_str_eq(cfg->transactional_id, "tp-node-1");
  tp_config_destroy(cfg);
  char *env[] = {"TOUCHPULSE_PROCESSING_EXACTLY_ONCE=no", "TOUCHPULSE_PROCESSING_TRANSACTIONAL_ID=a.b_c-1", NULL};
  cfg = load_ok_env("", env);
  cr_expect_not(cfg->exactly_once);
  cr_expect_str_eq(cfg->transactional_id, "a.b_c-1");
  tp_config_destroy(cfg);
  expect_error("processing:\n  exactly_once: maybe\n",
               "t.yaml:2: processing.exactly_once: expected true or false, got 'maybe'");
  expect_error("processing:\n  transactional_id: 'has space'\n",
               "t.yaml:2: processing.transactional_id: expected an id of up to 249 characters "
               "of A-Z a-z 0-9 . _ -, got 'has space'");
}

Test(config, control_bytes_in_an_environment_name_cannot_forge_a_log_line) {
  /* Found by the config fuzzer: a newline in a variable's name went into
   * the error message as it was. */
  char *env[] = {"TOUCHPULSE_WINDOWS_STEP\n2026-11-23 error injected=1", NULL};
  tp_config_t *cfg = NULL;
  tp_err_t rc = tp_config_load_string("", 0, "t.yaml", env, &cfg, errbuf, sizeof(errbuf));
  cr_assert_eq(rc, TP_ECONFIG);
  cr_expect(strstr(errbuf, "env TOUCHPULSE_WINDOWS_STEP?2026-11-23 error injected") != NULL, "%s",
            errbuf);
  const char *nl = strchr(errbuf, '\n');
  cr_expect(nl == NULL || nl[1] == '\0', "one error, one line: %s", errbuf);
}
