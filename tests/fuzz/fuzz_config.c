/*
 * fuzz_config.c -- the configuration loader (tp_config_load_string) on
 * arbitrary YAML, with TOUCHPULSE_* environment overrides, and under an
 * allocation failure.
 *
 * Input: YAML text, optionally followed by a NUL byte and environment
 * entries separated by NUL bytes ("WINDOWS_STEP=30s", "RULES=[...]", ...;
 * "TOUCHPULSE_" is put in front of an entry that lacks it). The process
 * environment is never read.
 *
 * Checks, beyond "no crash, no leak, no sanitizer report":
 *   - the result is TP_OK (with a configuration and no error text) or
 *     TP_ECONFIG (with no configuration and at least one error), never
 *     TP_ENOMEM when no allocation failed;
 *   - every error line reads "fuzz.yaml:...", "env TOUCHPULSE_...: ..." or
 *     "... and N more errors" (one error per line, control bytes never
 *     reach a message);
 *   - an accepted configuration holds the documented ranges: windows.step
 *     >= 1s, every rule window a positive multiple of it, `for` 1-10000,
 *     finite threshold and clear with clear on the non-breaching side,
 *     distinct rule names and topics, and so on;
 *   - when no environment entries were given, tp_config_dump() of an
 *     accepted configuration loads again, and dumps to the same text;
 *   - the same input with the k-th allocation failing (k from the input's
 *     hash, over the allocations the successful run made) returns
 *     TP_ENOMEM and nothing else, and leaks nothing.
 */
#include <limits.h>
#include <math.h>

#include "fuzz_common.h"
#include "touchpulse/config.h"

#define MAX_ENV 16
#define ERRBUF_SIZE (256 * 1024)
#define NAME "fuzz.yaml"

static char errbuf[ERRBUF_SIZE];

typedef struct {
  char *yaml;
  size_t yaml_len;
  char *env[MAX_ENV + 1];
  size_t n_env;
} input_t;

static void input_split(input_t *in, const uint8_t *data, size_t size) {
  const uint8_t *nul = size > 0 ? memchr(data, 0, size) : NULL;
  in->yaml_len = nul != NULL ? (size_t)(nul - data) : size;
  in->yaml = (char *)fuzz_copy(data, in->yaml_len); /* exact: no NUL after */
  in->n_env = 0;
  in->env[0] = NULL;
  if (nul == NULL)
    return;
  const uint8_t *p = nul + 1, *end = data + size;
  static const char prefix[] = "TOUCHPULSE_";
  while (p <= end && in->n_env < MAX_ENV) {
    const uint8_t *q = p < end ? memchr(p, 0, (size_t)(end - p)) : NULL;
    size_t n = q != NULL ? (size_t)(q - p) : (size_t)(end - p);
    size_t pre = n >= sizeof(prefix) - 1 && memcmp(p, prefix, sizeof(prefix) - 1) == 0
                     ? 0
                     : sizeof(prefix) - 1;
    char *e = fuzz_alloc(pre + n + 1);
    memcpy(e, prefix, pre);
    memcpy(e + pre, p, n);
    e[pre + n] = '\0';
    in->env[in->n_env++] = e;
    if (q == NULL)
      break;
    p = q + 1;
  }
  in->env[in->n_env] = NULL;
}

static void input_free(input_t *in) {
  free(in->yaml);
  for (size_t i = 0; i < in->n_env; i++)
    free(in->env[i]);
}

static tp_err_t load(const char *yaml, size_t len, char **env, tp_config_t **cfg) {
  memset(errbuf, 0x5a, 64);
  *cfg = (tp_config_t *)(uintptr_t)1; /* must be overwritten */
  return tp_config_load_string(yaml, len, NAME, env, cfg, errbuf, sizeof(errbuf));
}

static void check_error_lines(void) {
  size_t len = strnlen(errbuf, sizeof(errbuf));
  FUZZ_CHECK(len < sizeof(errbuf), "error text not NUL-terminated");
  FUZZ_CHECK(len > 0, "TP_ECONFIG without an error message");
  for (const char *line = errbuf; line != NULL && *line != '\0';) {
    const char *nl = strchr(line, '\n');
    size_t n = nl != NULL ? (size_t)(nl - line) : strlen(line);
    int ok = (n > strlen(NAME ":") && strncmp(line, NAME ":", strlen(NAME ":")) == 0) ||
             (n > 15 && strncmp(line, "env TOUCHPULSE_", 15) == 0) ||
             strncmp(line, "... and ", 8) == 0;
    FUZZ_CHECK(ok, "error line does not name its source: '%.*s'", (int)n, line);
    for (size_t i = 0; i < n; i++)
      FUZZ_CHECK((unsigned char)line[i] >= 0x20 || line[i] == '\t',
                 "control byte 0x%02x in error line '%.*s'", (unsigned char)line[i],
                 (int)n, line);
    line = nl != NULL ? nl + 1 : NULL;
  }
}

static int valid_name_char(char c, const char *extra) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && strchr(extra, c) != NULL);
}

/* What README's configuration table promises about an accepted file. */
static void check_config(const tp_config_t *cfg) {
  FUZZ_CHECK(cfg->workers >= 0 && cfg->workers <= 256, "workers %d", cfg->workers);
  FUZZ_CHECK(cfg->step_ms >= 1000, "windows.step %lld ms", (long long)cfg->step_ms);
  FUZZ_CHECK(cfg->allowed_lateness_ms >= 0 && cfg->idle_timeout_ms >= 0 &&
                 cfg->max_future_skew_ms >= 0,
             "negative window duration");
  FUZZ_CHECK(cfg->dedup_depth >= 0 && cfg->dedup_depth <= 10000000, "dedup.depth %lld",
             (long long)cfg->dedup_depth);
  FUZZ_CHECK(cfg->first_response_sla_ms > 0 && cfg->ticket_ttl_ms > 0,
             "support durations must be > 0");
  FUZZ_CHECK(cfg->max_tickets >= 1 && cfg->max_tickets <= 100000000, "max_tickets");
  FUZZ_CHECK(cfg->max_touchpoints >= 1 && cfg->max_touchpoints <= 100000000,
             "state.max_touchpoints");
  FUZZ_CHECK(cfg->metrics_max_touchpoints >= 0 && cfg->metrics_max_touchpoints <= 1000000,
             "metrics.max_touchpoints");
  FUZZ_CHECK(cfg->commit_interval_ms >= 10, "commit_interval %lld",
             (long long)cfg->commit_interval_ms);
  FUZZ_CHECK(cfg->max_record_bytes >= 64 && cfg->max_record_bytes <= 64 * 1024 * 1024,
             "max_record_bytes %lld", (long long)cfg->max_record_bytes);
  FUZZ_CHECK(cfg->http_listen != NULL && strchr(cfg->http_listen, ':') != NULL,
             "http.listen");
  FUZZ_CHECK(cfg->transactional_id != NULL, "transactional_id NULL");
  for (int i = 0; i < TP_TOPIC_COUNT; i++) {
    const char *t = cfg->topics[i];
    FUZZ_CHECK(t != NULL && t[0] != '\0' && strlen(t) <= 249, "topic %d", i);
    for (const char *p = t; *p; p++)
      FUZZ_CHECK(valid_name_char(*p, "._-"), "topic '%s' has byte 0x%02x", t,
                 (unsigned char)*p);
    for (int j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(t, cfg->topics[j]) != 0, "topics %d and %d are both '%s'", j, i,
                 t);
  }
  for (size_t k = 0; k < cfg->n_kafka; k++)
    FUZZ_CHECK(cfg->kafka[k].key != NULL && cfg->kafka[k].key[0] != '\0' &&
                   cfg->kafka[k].value != NULL,
               "kafka property %zu", k);

  for (size_t i = 0; i < cfg->n_rules; i++) {
    const tp_rule_t *r = &cfg->rules[i];
    FUZZ_CHECK(r->name != NULL && r->name[0] != '\0' && strlen(r->name) <= 128,
               "rule %zu has no valid name", i);
    for (const char *p = r->name; *p; p++)
      FUZZ_CHECK(valid_name_char(*p, "_.:-"), "rule name '%s'", r->name);
    for (size_t j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(r->name, cfg->rules[j].name) != 0, "rule name '%s' twice",
                 r->name);
    FUZZ_CHECK((unsigned)r->metric < TP_METRIC_COUNT, "rule '%s' metric %d", r->name,
               (int)r->metric);
    FUZZ_CHECK(r->window_ms > 0 && r->window_ms % cfg->step_ms == 0,
               "rule '%s' window %lld ms, step %lld ms", r->name, (long long)r->window_ms,
               (long long)cfg->step_ms);
    FUZZ_CHECK(r->op >= TP_OP_LT && r->op <= TP_OP_GE, "rule '%s' op", r->name);
    FUZZ_CHECK(isfinite(r->threshold) && isfinite(r->clear), "rule '%s' not finite",
               r->name);
    int below = r->op == TP_OP_LT || r->op == TP_OP_LE;
    FUZZ_CHECK(below ? r->clear >= r->threshold : r->clear <= r->threshold,
               "rule '%s': clear %g on the breaching side of %g", r->name, r->clear,
               r->threshold);
    FUZZ_CHECK(r->min_samples >= 0, "rule '%s' min_samples", r->name);
    FUZZ_CHECK(r->for_count >= 1 && r->for_count <= 10000, "rule '%s' for %d", r->name,
               (int)r->for_count);
    FUZZ_CHECK(r->severity >= TP_SEV_INFO && r->severity <= TP_SEV_CRITICAL,
               "rule '%s' severity", r->name);
    FUZZ_CHECK((r->touchpoints != NULL) || r->n_touchpoints == 0, "touchpoints");
    for (size_t t = 0; t < r->n_touchpoints; t++)
      FUZZ_CHECK(r->touchpoints[t] != NULL && r->touchpoints[t][0] != '\0',
                 "rule '%s' has an empty glob", r->name);
    FUZZ_CHECK(r->n_labels <= 64, "rule '%s' has %zu labels", r->name, r->n_labels);
    for (size_t l = 0; l < r->n_labels; l++) {
      const tp_kv_t *kv = &r->labels[l];
      FUZZ_CHECK(kv->key != NULL && kv->value != NULL, "rule '%s' label %zu", r->name, l);
      FUZZ_CHECK(strcmp(kv->key, "stage") != 0 && strcmp(kv->key, "channel") != 0,
                 "reserved label '%s' accepted", kv->key);
      if (l > 0)
        FUZZ_CHECK(strcmp(r->labels[l - 1].key, kv->key) < 0,
                   "labels not sorted and distinct: '%s', '%s'", r->labels[l - 1].key,
                   kv->key);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input_t in;
  input_split(&in, data, size);
  tp_config_t *cfg = NULL;

  /* 1. The load, counting allocations (armed but never failing). */
  tp_alloc_fail_after(LONG_MAX);
  tp_err_t rc = load(in.yaml, in.yaml_len, in.env, &cfg);
  long allocs = tp_alloc_calls();
  tp_alloc_fail_after(0);
  FUZZ_CHECK(rc == TP_OK || rc == TP_ECONFIG, "load returned %d (%s): %.200s", rc,
             tp_strerror(rc), errbuf);
  if (rc == TP_OK) {
    FUZZ_CHECK(cfg != NULL, "TP_OK without a configuration");
    FUZZ_CHECK(errbuf[0] == '\0', "TP_OK with errors: %.200s", errbuf);
    check_config(cfg);

    /* 2. The dump is a configuration that reads back the same. */
    char *dump = tp_config_dump(cfg);
    FUZZ_CHECK(dump != NULL, "tp_config_dump failed");
    if (in.n_env == 0) {
      char *none[] = {NULL};
      tp_config_t *again = NULL;
      tp_err_t rc2 = load(dump, strlen(dump), none, &again);
      FUZZ_CHECK(rc2 == TP_OK, "the dump does not load: %.300s\n--- dump:\n%s", errbuf,
                 dump);
      char *dump2 = tp_config_dump(again);
      FUZZ_CHECK(dump2 != NULL && strcmp(dump, dump2) == 0,
                 "the dump reads back differently:\n%s\n--- then:\n%s", dump,
                 dump2 ? dump2 : "(null)");
      free(dump2);
      tp_config_destroy(again);
    }
    free(dump);
    tp_config_destroy(cfg);
  } else {
    FUZZ_CHECK(cfg == NULL, "TP_ECONFIG with a configuration");
    check_error_lines();
  }

  /* 3. The same load with one allocation failing: TP_ENOMEM, no leak. */
  if (allocs > 0) {
    long k = 1 + (long)(fuzz_hash(data, size) % (uint64_t)allocs);
    tp_alloc_fail_after(k);
    tp_err_t rc3 = load(in.yaml, in.yaml_len, in.env, &cfg);
    long made = tp_alloc_calls();
    tp_alloc_fail_after(0);
    FUZZ_CHECK(made >= k, "the run made %ld allocations, the first made %ld", made,
               allocs);
    FUZZ_CHECK(rc3 == TP_ENOMEM, "allocation %ld of %ld failed, load returned %d (%s)",
               k, allocs, rc3, tp_strerror(rc3));
    FUZZ_CHECK(cfg == NULL, "TP_ENOMEM with a configuration");
  }
  input_free(&in);
  return 0;
}
