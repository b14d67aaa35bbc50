/*
 * config.c -- the configuration: the YAML file, then TOUCHPULSE_* environment
 * overrides, then the checks that span several keys (distinct topics, rule
 * windows against windows.step). main.c calls it once at start-up; the
 * resulting tp_config_t is read-only from then on.
 *
 * Loading reports every problem at once, so it runs in steps that never stop
 * at the first error: libyaml's event parser builds a small tree of nodes that
 * remember their line, the tree is walked against the schema (the keys[] and
 * rule_keys[] tables below), and the environment is applied on top. Errors
 * are collected with their position and sorted by it before they are written
 * into the caller's buffer.
 *
 * Hostile input is bounded before any of it is interpreted: at most 1 MiB of
 * text, no anchors or aliases (so nothing can expand), one document, no
 * nesting deeper than the schema, and caps on the number of rules, labels,
 * touchpoint globs, kafka properties and reported errors.
 *
 * Every allocation goes through tp_malloc() and friends. Any failed allocation
 * makes the whole load return TP_ENOMEM (never TP_ECONFIG), whatever other
 * errors were found, and frees everything it built.
 */
#include "touchpulse/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "touchpulse/buf.h"

#define CFG_MAX_TEXT_BYTES (1024 * 1024) /* file or TOUCHPULSE_RULES */
#define CFG_MAX_ERRORS 100               /* reported; the rest are counted */
#define CFG_FILE_DEPTH 4   /* root map > rules list > rule map > labels map */
#define CFG_RULES_DEPTH 3  /* TOUCHPULSE_RULES: list > rule map > labels map */
#define CFG_MAX_KAFKA 1000 /* librdkafka knows about 200 properties */
#define CFG_MAX_RULES 10000
#define CFG_MAX_LABELS 64
#define CFG_MAX_GLOBS 1000
#define CFG_RULE_NAME_MAX 128
#define CFG_TOPIC_MAX 249 /* Kafka's own limit */
#define SHOW_SIZE 80      /* quoted values in messages are cut to fit this */
#define ENV_PREFIX "TOUCHPULSE_"
#define ENV_KAFKA_PREFIX "TOUCHPULSE_KAFKA_"

/* ---- defaults, ownership and small public helpers --------------------- */

static const char *const default_topics[TP_TOPIC_COUNT] = {
    "cx.feedback", "cx.support", "cx.commerce", "cx.alerts", "cx.deadletter"};

static void rule_free_fields(tp_rule_t *rule) {
  tp_free(rule->name);
  for (size_t i = 0; i < rule->n_touchpoints; i++)
    tp_free(rule->touchpoints[i]);
  tp_free(rule->touchpoints);
  for (size_t i = 0; i < rule->n_labels; i++) {
    tp_free(rule->labels[i].key);
    tp_free(rule->labels[i].value);
  }
  tp_free(rule->labels);
}

static void rules_free(tp_rule_t *rules, size_t n) {
  for (size_t i = 0; i < n; i++)
    rule_free_fields(&rules[i]);
  tp_free(rules);
}

tp_config_t *tp_config_new(void) {
  tp_config_t *cfg = tp_calloc(1, sizeof(*cfg));
  if (cfg == NULL)
    return NULL;
  cfg->workers = 0;
  cfg->step_ms = 60 * 1000;
  cfg->allowed_lateness_ms = 30 * 1000;
  cfg->idle_timeout_ms = 60 * 1000;
  cfg->max_future_skew_ms = 5 * 60 * 1000;
  cfg->dedup_depth = 100000;
  cfg->first_response_sla_ms = 3600 * 1000;
  cfg->ticket_ttl_ms = 30LL * 86400 * 1000;
  cfg->max_tickets = 1000000;
  cfg->max_touchpoints = 100000;
  cfg->metrics_max_touchpoints = 1000;
  cfg->log_level = TP_LOG_INFO;
  cfg->log_format = TP_LOG_TEXT;
  cfg->commit_interval_ms = 1000;
  cfg->max_record_bytes = 65536;
  cfg->exactly_once = true;
  if ((cfg->transactional_id = tp_strdup("")) == NULL)
    goto err;
  for (int i = 0; i < TP_TOPIC_COUNT; i++)
    if ((cfg->topics[i] = tp_strdup(default_topics[i])) == NULL)
      goto err;
  if ((cfg->http_listen = tp_strdup("0.0.0.0:9464")) == NULL)
    goto err;
  if (tp_config_kafka_set(cfg, "bootstrap.servers", "localhost:9092") != TP_OK ||
      tp_config_kafka_set(cfg, "group.id", "touchpulse") != TP_OK)
    goto err;
  return cfg;
err:
  tp_config_destroy(cfg);
  return NULL;
}

void tp_config_destroy(tp_config_t *cfg) {
  if (cfg == NULL)
    return;
  tp_free(cfg->path);
  for (size_t i = 0; i < cfg->n_kafka; i++) {
    tp_free(cfg->kafka[i].key);
    tp_free(cfg->kafka[i].value);
  }
  tp_free(cfg->kafka);
  for (int i = 0; i < TP_TOPIC_COUNT; i++)
    tp_free(cfg->topics[i]);
  tp_free(cfg->http_listen);
  tp_free(cfg->transactional_id);
  rules_free(cfg->rules, cfg->n_rules);
  tp_free(cfg);
}

const char *tp_config_kafka_get(const tp_config_t *cfg, const char *key) {
  if (cfg == NULL || key == NULL)
    return NULL;
  for (size_t i = 0; i < cfg->n_kafka; i++)
    if (strcmp(cfg->kafka[i].key, key) == 0)
      return cfg->kafka[i].value;
  return NULL;
}

tp_err_t tp_config_kafka_set(tp_config_t *cfg, const char *key, const char *value) {
  if (cfg == NULL || key == NULL || value == NULL)
    return TP_EINVAL;
  /* Copy first, so a failure leaves the configuration as it was. */
  char *v = tp_strdup(value);
  if (v == NULL)
    return TP_ENOMEM;
  for (size_t i = 0; i < cfg->n_kafka; i++) {
    if (strcmp(cfg->kafka[i].key, key) == 0) {
      tp_free(cfg->kafka[i].value);
      cfg->kafka[i].value = v;
      return TP_OK;
    }
  }
  char *k = tp_strdup(key);
  tp_kv_t *grown = k ? tp_realloc(cfg->kafka, (cfg->n_kafka + 1) * sizeof(*grown)) : NULL;
  if (grown == NULL) {
    tp_free(k);
    tp_free(v);
    return TP_ENOMEM;
  }
  cfg->kafka = grown;
  cfg->kafka[cfg->n_kafka].key = k;
  cfg->kafka[cfg->n_kafka].value = v;
  cfg->n_kafka++;
  return TP_OK;
}

bool tp_config_key_is_secret(const char *key) {
  return key != NULL &&
         (strcasestr(key, "password") != NULL || strcasestr(key, "secret") != NULL);
}

tp_err_t tp_duration_parse(const char *s, int64_t *ms) {
  /* Longest unit name first, so "ms" is not read as "m" followed by "s". */
  static const struct {
    const char *unit;
    size_t len;
    int64_t ms;
    int rank; /* terms must come in strictly decreasing rank: "1h30m" */
  } units[] = {{"ms", 2, 1, 1},          {"d", 1, 86400000, 5},
               {"h", 1, 3600000, 4},     {"m", 1, 60000, 3},
               {"s", 1, 1000, 2}};
  int64_t total = 0;
  int last_rank = 6;

  if (s == NULL || ms == NULL || *s == '\0')
    return TP_EINVAL;
  /* A bare zero needs no unit: "idle_timeout: 0" reads naturally. */
  if (strcmp(s, "0") == 0) {
    *ms = 0;
    return TP_OK;
  }
  while (*s != '\0') {
    int64_t n = 0;
    if (!isdigit((unsigned char)*s))
      return TP_EINVAL;
    for (; isdigit((unsigned char)*s); s++) {
      int d = *s - '0';
      if (n > (INT64_MAX - d) / 10)
        return TP_EINVAL;
      n = n * 10 + d;
    }
    size_t u = 0;
    while (u < TP_ARRAY_SIZE(units) && strncmp(s, units[u].unit, units[u].len) != 0)
      u++;
    if (u == TP_ARRAY_SIZE(units) || units[u].rank >= last_rank)
      return TP_EINVAL;
    if (n > INT64_MAX / units[u].ms || total > INT64_MAX - n * units[u].ms)
      return TP_EINVAL;
    total += n * units[u].ms;
    last_rank = units[u].rank;
    s += units[u].len;
  }
  *ms = total;
  return TP_OK;
}

/* ---- the loader and its error list ------------------------------------ */

/* Errors from the file sort by line, before those from the environment. */
enum { ORDER_FILE = 0, ORDER_ENV = 1 };

typedef struct {
  const char *name; /* file name, "env TOUCHPULSE_RULES" or "env TOUCHPULSE_X" */
  int order;        /* ORDER_FILE or ORDER_ENV */
  bool single;      /* one environment value: messages carry no key path */
} source_t;

typedef struct {
  int order;
  int line;
  unsigned seq; /* discovery order, to keep the sort stable */
  char *msg;
} cfg_error_t;

/* Where a rule came from, parallel to cfg->rules, for checks made later. */
typedef struct {
  source_t src;
  int name_line;
  int window_line;
} rule_origin_t;

typedef enum {
  K_INT,
  K_DURATION,
  K_TOPIC,
  K_LISTEN,
  K_LOG_LEVEL,
  K_LOG_FORMAT,
  K_BOOL,
  K_ID, /* empty, or a name with a topic's charset (a transactional.id) */
} key_type_t;

/* One scalar key of the schema; the environment variable is derived. */
typedef struct {
  const char *section; /* NULL for a top-level key */
  const char *name;
  key_type_t type;
  size_t offset; /* of the field in tp_config_t */
  size_t size;   /* of that field, for K_INT: int or int64_t */
  int64_t min, max;
} key_desc_t;

#define FIELD(f) offsetof(tp_config_t, f), sizeof(((tp_config_t *)0)->f)
static const key_desc_t keys[] = {
    {"topics", "feedback", K_TOPIC, FIELD(topics[TP_TOPIC_FEEDBACK]), 0, 0},
    {"topics", "support", K_TOPIC, FIELD(topics[TP_TOPIC_SUPPORT]), 0, 0},
    {"topics", "commerce", K_TOPIC, FIELD(topics[TP_TOPIC_COMMERCE]), 0, 0},
    {"topics", "alerts", K_TOPIC, FIELD(topics[TP_TOPIC_ALERTS]), 0, 0},
    {"topics", "deadletter", K_TOPIC, FIELD(topics[TP_TOPIC_DEADLETTER]), 0, 0},
    {NULL, "workers", K_INT, FIELD(workers), 0, 256},
    {"windows", "step", K_DURATION, FIELD(step_ms), 1000, INT64_MAX},
    {"windows", "allowed_lateness", K_DURATION, FIELD(allowed_lateness_ms), 0, INT64_MAX},
    {"windows", "idle_timeout", K_DURATION, FIELD(idle_timeout_ms), 0, INT64_MAX},
    {"windows", "max_future_skew", K_DURATION, FIELD(max_future_skew_ms), 0, INT64_MAX},
    {"dedup", "depth", K_INT, FIELD(dedup_depth), 0, 10000000},
    {"support", "first_response_sla", K_DURATION, FIELD(first_response_sla_ms), 1, INT64_MAX},
    {"support", "ticket_ttl", K_DURATION, FIELD(ticket_ttl_ms), 1, INT64_MAX},
    {"support", "max_tickets", K_INT, FIELD(max_tickets), 1, 100000000},
    {"state", "max_touchpoints", K_INT, FIELD(max_touchpoints), 1, 100000000},
    {"metrics", "max_touchpoints", K_INT, FIELD(metrics_max_touchpoints), 0, 1000000},
    {"http", "listen", K_LISTEN, FIELD(http_listen), 0, 0},
    {"log", "level", K_LOG_LEVEL, FIELD(log_level), 0, 0},
    {"log", "format", K_LOG_FORMAT, FIELD(log_format), 0, 0},
    {"processing", "commit_interval", K_DURATION, FIELD(commit_interval_ms), 10, INT64_MAX},
    {"processing", "max_record_bytes", K_INT, FIELD(max_record_bytes), 64, 67108864},
    {"processing", "exactly_once", K_BOOL, FIELD(exactly_once), 0, 0},
    {"processing", "transactional_id", K_ID, FIELD(transactional_id), 0, 0},
};
#undef FIELD
#define N_KEYS TP_ARRAY_SIZE(keys)

/* Top-level keys, in the order of examples/touchpulse.yaml. */
static const char *const sections[] = {"kafka",   "topics",  "workers", "windows",
                                       "dedup",   "support", "state",   "metrics",
                                       "http",    "log",     "processing", "rules"};
#define N_SECTIONS TP_ARRAY_SIZE(sections)

static const char *const log_levels[] = {"debug", "info", "warn", "error"};
static const char *const log_formats[] = {"text", "json"};
static const char *const severities[] = {"info", "warning", "critical"};
static const char *const ops[] = {"<", "<=", ">", ">="};

typedef struct {
  bool set;      /* by the file or the environment, and valid */
  bool from_env;
  int line;      /* in the file, when !from_env */
} key_origin_t;

typedef struct {
  tp_config_t *cfg;
  bool oom;
  cfg_error_t *errs;
  size_t n_errs, cap_errs, n_dropped;
  unsigned seq;
  rule_origin_t *rule_origins; /* cfg->n_rules entries */
  key_origin_t origin[N_KEYS];
  bool invalid[N_KEYS]; /* a value was rejected: skip checks that use it */
  source_t file;
} loader_t;

static void add_error(loader_t *ld, const source_t *src, int line, const char *msg) {
  if (ld->oom)
    return;
  if (ld->n_errs == CFG_MAX_ERRORS) {
    ld->n_dropped++;
    return;
  }
  if (ld->n_errs == ld->cap_errs) {
    size_t cap = ld->cap_errs ? ld->cap_errs * 2 : 8;
    cfg_error_t *grown = tp_realloc(ld->errs, cap * sizeof(*grown));
    if (grown == NULL) {
      ld->oom = true;
      return;
    }
    ld->errs = grown;
    ld->cap_errs = cap;
  }
  char *copy = tp_strdup(msg);
  if (copy == NULL) {
    ld->oom = true;
    return;
  }
  ld->errs[ld->n_errs++] =
      (cfg_error_t){.order = src->order, .line = line, .seq = ld->seq++, .msg = copy};
}

/* Report "SRC:LINE: message", or "SRC: message" when line is 0. */
static void report(loader_t *ld, const source_t *src, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(loader_t *ld, const source_t *src, int line, const char *fmt, ...) {
  char body[2048], msg[2300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof(body), fmt, ap);
  va_end(ap);
  if (line > 0)
    snprintf(msg, sizeof(msg), "%s:%d: %s", src->name, line, body);
  else
    snprintf(msg, sizeof(msg), "%s: %s", src->name, body);
  add_error(ld, src, line, msg);
}

/* Quote a user value for a message: cut to fit, control bytes as '?'. */
static const char *show(const char *s, char buf[SHOW_SIZE]) {
  size_t i = 0, limit = SHOW_SIZE - 4;
  for (; i < limit && s[i] != '\0'; i++)
    buf[i] = iscntrl((unsigned char)s[i]) ? '?' : s[i];
  if (s[i] != '\0')
    memcpy(buf + i - 3, "...", 3);
  buf[i] = '\0';
  return buf;
}

static void env_name_of(const key_desc_t *k, char *buf, size_t size) {
  size_t off = (size_t)snprintf(buf, size, ENV_PREFIX "%s%s%s", k->section ? k->section : "",
                                k->section ? "_" : "", k->name);
  for (size_t i = 0; i < off && i < size; i++)
    buf[i] = (char)((buf[i] == '.' || buf[i] == '-') ? '_' : toupper((unsigned char)buf[i]));
}

static void key_path(const key_desc_t *k, char *buf, size_t size) {
  snprintf(buf, size, "%s%s%s", k->section ? k->section : "", k->section ? "." : "", k->name);
}

static size_t key_find(const char *section, const char *name) {
  for (size_t i = 0; i < N_KEYS; i++) {
    bool same_section = section == NULL ? keys[i].section == NULL
                                        : keys[i].section != NULL &&
                                              strcmp(keys[i].section, section) == 0;
    if (same_section && strcmp(keys[i].name, name) == 0)
      return i;
  }
  return N_KEYS;
}

static void join_names(const char *const *names, size_t n, char *buf, size_t size) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && off < size; i++)
    off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? ", " : "", names[i]);
}

/* ---- value syntax ------------------------------------------------------ */

typedef enum { NUM_OK, NUM_BAD, NUM_RANGE } num_parse_t;

/* Decimal integer with an optional '-': YAML's other forms (0x, 1_000) are
 * refused rather than half-supported. */
static num_parse_t parse_int(const char *s, int64_t *out) {
  const char *p = s + (*s == '-');
  if (*p == '\0')
    return NUM_BAD;
  for (; *p != '\0'; p++)
    if (!isdigit((unsigned char)*p))
      return NUM_BAD;
  errno = 0;
  long long v = strtoll(s, NULL, 10);
  if (errno == ERANGE)
    return NUM_RANGE;
  *out = v;
  return NUM_OK;
}

/* A finite decimal number; strtod alone would also take "nan", "inf", hex. */
static bool parse_number(const char *s, double *out) {
  bool digit = false;
  for (const char *p = s; *p != '\0'; p++) {
    if (isdigit((unsigned char)*p))
      digit = true;
    else if (strchr("+-.eE", *p) == NULL)
      return false;
  }
  if (!digit)
    return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end != '\0' || errno == ERANGE || !isfinite(v))
    return false;
  *out = v;
  return true;
}

static bool topic_valid(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len > CFG_TOPIC_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
    return false;
  for (const char *p = s; *p != '\0'; p++)
    if (!isalnum((unsigned char)*p) && strchr("._-", *p) == NULL)
      return false;
  return true;
}

/* "host:port" with a host name or IPv4 address, or "[v6]:port". */
static bool listen_valid(const char *s) {
  const char *colon;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close == s + 1 || close[1] != ':')
      return false;
    for (const char *p = s + 1; p < close; p++)
      if (!isxdigit((unsigned char)*p) && strchr(":.%", *p) == NULL)
        return false;
    colon = close + 1;
  } else {
    colon = strchr(s, ':');
    if (colon == NULL || colon == s || strchr(colon + 1, ':') != NULL)
      return false;
    for (const char *p = s; p < colon; p++)
      if (!isalnum((unsigned char)*p) && strchr(".-", *p) == NULL)
        return false;
  }
  const char *port = colon + 1;
  size_t n = strlen(port);
  if (n == 0 || n > 5)
    return false;
  for (const char *p = port; *p != '\0'; p++)
    if (!isdigit((unsigned char)*p))
      return false;
  return atoi(port) <= 65535; /* NOLINT(cert-err34-c): 1 to 5 digits, checked above */
}

static bool rule_name_valid(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len > CFG_RULE_NAME_MAX)
    return false;
  for (const char *p = s; *p != '\0'; p++)
    if (!isalnum((unsigned char)*p) && strchr("_.:-", *p) == NULL)
      return false;
  return true;
}

static bool label_name_valid(const char *s) {
  if (!isalpha((unsigned char)*s) && *s != '_')
    return false;
  for (const char *p = s; *p != '\0'; p++)
    if (!isalnum((unsigned char)*p) && *p != '_')
      return false;
  return true;
}

static int name_index(const char *const *names, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++)
    if (strcasecmp(names[i], s) == 0)
      return (int)i;
  return -1;
}

/* ---- the YAML tree ------------------------------------------------------ */

typedef enum { NODE_SCALAR, NODE_MAP, NODE_SEQ, NODE_ALIAS } node_kind_t;

/*
 * A node of the document. Maps keep their entries as key, value, key, value
 * in kids[] (n is even), in file order; lists keep their items. An alias was
 * reported when it was read and stands in the tree only so that the walk
 * skips it silently instead of reporting a second, misleading error.
 */
typedef struct node_s {
  node_kind_t kind;
  int line;
  bool plain;  /* an unquoted scalar: "", "~" and "null" then mean null */
  char *text;  /* scalars only; NUL-terminated */
  struct node_s **kids;
  size_t n, cap;
} node_t;

/* NOLINTNEXTLINE(misc-no-recursion): tree_load() caps the depth at CFG_FILE_DEPTH */
static void node_free(node_t *node) {
  if (node == NULL)
    return;
  for (size_t i = 0; i < node->n; i++)
    node_free(node->kids[i]);
  tp_free(node->kids);
  tp_free(node->text);
  tp_free(node);
}

static bool node_add(node_t *parent, node_t *child) {
  if (parent->n == parent->cap) {
    size_t cap = parent->cap ? parent->cap * 2 : 8;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    node_t **grown = tp_realloc(parent->kids, cap * sizeof(*grown));
    if (grown == NULL)
      return false;
    parent->kids = grown;
    parent->cap = cap;
  }
  parent->kids[parent->n++] = child;
  return true;
}

static bool node_is_null(const node_t *node) {
  return node->kind == NODE_SCALAR && node->plain &&
         (node->text[0] == '\0' || strcmp(node->text, "~") == 0 ||
          strcmp(node->text, "null") == 0 || strcmp(node->text, "Null") == 0 ||
          strcmp(node->text, "NULL") == 0);
}

static const char *node_kind_name(const node_t *node) {
  switch (node->kind) {
  case NODE_MAP: return "a mapping";
  case NODE_SEQ: return "a list";
  case NODE_ALIAS: return "an alias";
  case NODE_SCALAR: break;
  }
  return node_is_null(node) ? "an empty value" : "a scalar";
}

static void report_yaml_error(loader_t *ld, const source_t *src, const yaml_parser_t *parser,
                              const char *text, size_t len) {
  char msg[600];
  size_t line = 0, col = 0;
  const char *problem = parser->problem ? parser->problem : "syntax error";

  if (parser->error == YAML_MEMORY_ERROR) {
    ld->oom = true;
    return;
  }
  if (parser->error == YAML_READER_ERROR) {
    /* The reader knows only a byte offset: count lines up to it. */
    size_t line_start = 0;
    for (size_t i = 0; i < parser->problem_offset && i < len; i++)
      if (text[i] == '\n') {
        line++;
        line_start = i + 1;
      }
    col = parser->problem_offset - line_start;
  } else {
    line = parser->problem_mark.line;
    col = parser->problem_mark.column;
  }
  if (parser->context != NULL)
    snprintf(msg, sizeof(msg), "%s:%zu:%zu: %s (%s at line %zu)", src->name, line + 1, col + 1,
             problem, parser->context, parser->context_mark.line + 1);
  else
    snprintf(msg, sizeof(msg), "%s:%zu:%zu: %s", src->name, line + 1, col + 1, problem);
  add_error(ld, src, (int)line + 1, msg);
}

/*
 * Parse text into a tree. @returns the root, or NULL for an empty document
 * or on error; *usable is false when the document could not be read (a
 * syntax error, a second document, nesting deeper than max_depth, ENOMEM),
 * in which case the schema walk is skipped: its errors would be noise.
 */
static node_t *tree_load(loader_t *ld, const source_t *src, const char *text, size_t len,
                         int max_depth, bool *usable) {
  yaml_parser_t parser;
  yaml_event_t ev;
  node_t *root = NULL, *stack[CFG_FILE_DEPTH] = {0};
  int depth = 0, docs = 0;
  bool done = false, failed = false;
  char shown[SHOW_SIZE];

  *usable = false;
  if (max_depth > CFG_FILE_DEPTH)
    max_depth = CFG_FILE_DEPTH;
  if (!yaml_parser_initialize(&parser)) {
    ld->oom = true;
    return NULL;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  while (!done && !failed && !ld->oom) {
    if (!yaml_parser_parse(&parser, &ev)) {
      report_yaml_error(ld, src, &parser, text, len);
      failed = true;
      break;
    }
    int line = (int)ev.start_mark.line + 1;
    const yaml_char_t *anchor = NULL;
    node_kind_t kind = NODE_SCALAR;
    bool make = false;

    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++docs > 1) {
        report(ld, src, line, "a second YAML document starts here; the configuration is one "
                              "document");
        failed = true;
      }
      break;
    case YAML_ALIAS_EVENT:
      report(ld, src, line, "aliases are not supported (found '*%s'); write the value out",
             show((const char *)ev.data.alias.anchor, shown));
      kind = NODE_ALIAS;
      make = true;
      break;
    case YAML_SCALAR_EVENT:
      anchor = ev.data.scalar.anchor;
      if (strlen((const char *)ev.data.scalar.value) != ev.data.scalar.length)
        report(ld, src, line, "NUL characters are not allowed in values");
      make = true;
      break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
      anchor = ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                                    : ev.data.mapping_start.anchor;
      kind = ev.type == YAML_SEQUENCE_START_EVENT ? NODE_SEQ : NODE_MAP;
      if (depth >= max_depth) {
        report(ld, src, line, "nesting is deeper than the configuration allows (at most %d "
                              "levels)", max_depth);
        failed = true;
      } else {
        make = true;
      }
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      depth--;
      break;
    default:
      break;
    }
    if (anchor != NULL)
      report(ld, src, line, "anchors are not supported (found '&%s'); write the value out",
             show((const char *)anchor, shown));

    node_t *node = make ? tp_calloc(1, sizeof(*node)) : NULL;
    if (make && node == NULL)
      ld->oom = true;
    if (node != NULL) {
      node->kind = kind;
      node->line = line;
      if (kind == NODE_SCALAR) {
        node->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        node->text = tp_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        if (node->text == NULL)
          ld->oom = true;
      }
      if (depth == 0) {
        root = node;
      } else if (!node_add(stack[depth - 1], node)) {
        node_free(node);
        node = NULL;
        ld->oom = true;
      }
      if (node != NULL && (kind == NODE_MAP || kind == NODE_SEQ))
        stack[depth++] = node;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  if (failed || ld->oom) {
    node_free(root);
    return NULL;
  }
  *usable = true;
  return root;
}

/* @returns a mapping key's text, or NULL (reported) when it is not a string. */
static const char *map_key(loader_t *ld, const source_t *src, const node_t *key) {
  if (key->kind == NODE_ALIAS)
    return NULL;
  if (key->kind != NODE_SCALAR) {
    report(ld, src, key->line, "keys must be strings, got %s", node_kind_name(key));
    return NULL;
  }
  return key->text;
}

/* @returns a value's text, or NULL (reported) when it is not a non-empty
 * scalar. prefix names the key ("windows.step: "), expect what it takes. */
static const char *scalar_value(loader_t *ld, const source_t *src, int line, const node_t *val,
                                const char *prefix, const char *expect) {
  if (val->kind == NODE_ALIAS)
    return NULL;
  if (val->kind != NODE_SCALAR || node_is_null(val)) {
    report(ld, src, line, "%sexpected %s, got %s", prefix, expect, node_kind_name(val));
    return NULL;
  }
  return val->text;
}

/* ---- scalar keys -------------------------------------------------------- */

static const char *key_expect(key_type_t type) {
  switch (type) {
  case K_INT: return "an integer";
  case K_DURATION: return "a duration like 30s";
  case K_TOPIC: return "a topic name";
  case K_LISTEN: return "host:port";
  case K_LOG_LEVEL: return "one of debug, info, warn, error";
  case K_LOG_FORMAT: return "text or json";
  case K_BOOL: return "true or false";
  case K_ID: return "an id of A-Z a-z 0-9 . _ -";
  }
  return "a value";
}

/* Messages about a key name its path when they come from the file; an
 * environment variable's name already says which key it is. */
static void key_prefix(const key_desc_t *k, const source_t *src, char *buf, size_t size) {
  buf[0] = '\0';
  if (!src->single) {
    char path[64];
    key_path(k, path, sizeof(path));
    snprintf(buf, size, "%s: ", path);
  }
}

/* Validate text for keys[idx] and store it, or report why not. */
static void key_set(loader_t *ld, size_t idx, const char *text, const source_t *src, int line) {
  const key_desc_t *k = &keys[idx];
  void *field = (char *)ld->cfg + k->offset;
  char pre[80], shown[SHOW_SIZE];
  bool ok = false;
  int64_t v = 0;

  key_prefix(k, src, pre, sizeof(pre));
  show(text, shown);
  switch (k->type) {
  case K_INT: {
    num_parse_t r = parse_int(text, &v);
    if (r == NUM_BAD) {
      report(ld, src, line, "%sexpected an integer, got '%s'", pre, shown);
    } else if (r == NUM_RANGE || v < k->min || v > k->max) {
      report(ld, src, line, "%smust be between %" PRId64 " and %" PRId64 ", got %s", pre,
             k->min, k->max, shown);
    } else {
      if (k->size == sizeof(int))
        *(int *)field = (int)v;
      else
        *(int64_t *)field = v;
      ok = true;
    }
    break;
  }
  case K_DURATION:
    if (tp_duration_parse(text, &v) != TP_OK) {
      report(ld, src, line, "%sexpected a duration like 30s, got '%s'", pre, shown);
    } else if (v < k->min) {
      char min[32];
      tp_duration_format(k->min, min, sizeof(min));
      if (k->min == 1)
        report(ld, src, line, "%smust be greater than 0, got %s", pre, shown);
      else
        report(ld, src, line, "%smust be at least %s, got %s", pre, min, shown);
    } else {
      *(int64_t *)field = v;
      ok = true;
    }
    break;
  case K_BOOL: {
    static const char *const truthy[] = {"true", "yes", "on"};
    static const char *const falsy[] = {"false", "no", "off"};
    if (name_index(truthy, TP_ARRAY_SIZE(truthy), text) >= 0) {
      *(bool *)field = true;
      ok = true;
    } else if (name_index(falsy, TP_ARRAY_SIZE(falsy), text) >= 0) {
      *(bool *)field = false;
      ok = true;
    } else {
      report(ld, src, line, "%sexpected true or false, got '%s'", pre, shown);
    }
    break;
  }
  case K_TOPIC:
  case K_LISTEN:
  case K_ID:
    if (k->type == K_ID && text[0] != '\0' && !topic_valid(text)) {
      report(ld, src, line,
             "%sexpected an id of up to 249 characters of A-Z a-z 0-9 . _ -, got '%s'", pre,
             shown);
    } else if (k->type == K_TOPIC && !topic_valid(text)) {
      report(ld, src, line,
             "%sexpected a Kafka topic name (1 to 249 characters of A-Z a-z 0-9 . _ -, not "
             "'.' or '..'), got '%s'",
             pre, shown);
    } else if (k->type == K_LISTEN && !listen_valid(text)) {
      report(ld, src, line,
             "%sexpected host:port or [ipv6]:port with a port from 0 to 65535, got '%s'", pre,
             shown);
    } else {
      char *copy = tp_strdup(text);
      if (copy == NULL) {
        ld->oom = true;
        return;
      }
      tp_free(*(char **)field);
      *(char **)field = copy;
      ok = true;
    }
    break;
  case K_LOG_LEVEL:
  case K_LOG_FORMAT: {
    int i = k->type == K_LOG_LEVEL ? name_index(log_levels, TP_ARRAY_SIZE(log_levels), text)
                                   : name_index(log_formats, TP_ARRAY_SIZE(log_formats), text);
    if (i < 0) {
      report(ld, src, line, "%sexpected %s, got '%s'", pre, key_expect(k->type), shown);
    } else if (k->type == K_LOG_LEVEL) {
      *(tp_log_level_t *)field = (tp_log_level_t)i;
      ok = true;
    } else {
      *(tp_log_format_t *)field = (tp_log_format_t)i;
      ok = true;
    }
    break;
  }
  }
  ld->invalid[idx] = !ok;
  if (ok)
    ld->origin[idx] = (key_origin_t){.set = true, .from_env = src->single, .line = line};
}

/* Set a scalar key from a file entry. */
static void key_set_node(loader_t *ld, size_t idx, const node_t *key, const node_t *val) {
  char pre[80];
  key_prefix(&keys[idx], &ld->file, pre, sizeof(pre));
  const char *text =
      scalar_value(ld, &ld->file, key->line, val, pre, key_expect(keys[idx].type));
  if (text != NULL)
    key_set(ld, idx, text, &ld->file, key->line);
  else if (val->kind != NODE_ALIAS)
    ld->invalid[idx] = true;
}

static void walk_section(loader_t *ld, const char *section, const node_t *map) {
  const source_t *src = &ld->file;
  int seen[N_KEYS] = {0};
  char shown[SHOW_SIZE];

  if (map->kind == NODE_ALIAS || node_is_null(map))
    return;
  if (map->kind != NODE_MAP) {
    report(ld, src, map->line, "%s: expected a mapping of keys, got %s", section,
           node_kind_name(map));
    return;
  }
  for (size_t i = 0; i + 1 < map->n && !ld->oom; i += 2) {
    const node_t *key = map->kids[i], *val = map->kids[i + 1];
    const char *name = map_key(ld, src, key);
    if (name == NULL)
      continue;
    size_t idx = key_find(section, name);
    if (idx == N_KEYS) {
      const char *known[N_KEYS];
      size_t n = 0;
      char list[512];
      for (size_t j = 0; j < N_KEYS; j++)
        if (keys[j].section != NULL && strcmp(keys[j].section, section) == 0)
          known[n++] = keys[j].name;
      join_names(known, n, list, sizeof(list));
      report(ld, src, key->line, "unknown key '%s' in %s (known: %s)", show(name, shown),
             section, list);
      continue;
    }
    if (seen[idx]) {
      report(ld, src, key->line, "duplicate key '%s' in %s (first at line %d)", name, section,
             seen[idx]);
      continue;
    }
    seen[idx] = key->line;
    key_set_node(ld, idx, key, val);
  }
}

static void walk_kafka(loader_t *ld, const node_t *map) {
  const source_t *src = &ld->file;
  char shown[SHOW_SIZE];

  if (map->kind == NODE_ALIAS || node_is_null(map))
    return;
  if (map->kind != NODE_MAP) {
    report(ld, src, map->line, "kafka: expected a mapping of librdkafka properties, got %s",
           node_kind_name(map));
    return;
  }
  if (map->n / 2 > CFG_MAX_KAFKA) {
    report(ld, src, map->line, "kafka: too many properties (%zu, at most %d)", map->n / 2,
           CFG_MAX_KAFKA);
    return;
  }
  for (size_t i = 0; i + 1 < map->n && !ld->oom; i += 2) {
    const node_t *key = map->kids[i], *val = map->kids[i + 1];
    const char *name = map_key(ld, src, key);
    bool dup = false;
    if (name == NULL)
      continue;
    if (name[0] == '\0') {
      report(ld, src, key->line, "kafka: property names cannot be empty");
      continue;
    }
    for (size_t j = 0; j < i && !dup; j += 2) {
      const node_t *prev = map->kids[j];
      if (prev->kind == NODE_SCALAR && prev->text != NULL && strcmp(prev->text, name) == 0) {
        report(ld, src, key->line, "duplicate key '%s' in kafka (first at line %d)",
               show(name, shown), prev->line);
        dup = true;
      }
    }
    if (dup || val->kind == NODE_ALIAS)
      continue;
    /* Values pass through as written: librdkafka properties are strings. */
    if (val->kind != NODE_SCALAR) {
      report(ld, src, key->line, "kafka.%s: expected a string, number or boolean, got %s",
             show(name, shown), node_kind_name(val));
      continue;
    }
    if (tp_config_kafka_set(ld->cfg, name, val->text) != TP_OK)
      ld->oom = true;
  }
}

/* ---- rules -------------------------------------------------------------- */

enum {
  RK_NAME, RK_METRIC, RK_WINDOW, RK_OP, RK_THRESHOLD, RK_CLEAR, RK_MIN_SAMPLES, RK_FOR,
  RK_SEVERITY, RK_TOUCHPOINTS, RK_LABELS, RK_COUNT
};
static const char *const rule_keys[RK_COUNT] = {
    "name", "metric", "window", "op", "threshold", "clear", "min_samples", "for",
    "severity", "touchpoints", "labels"};
static const bool rule_key_required[RK_COUNT] = {
    [RK_NAME] = true, [RK_METRIC] = true, [RK_WINDOW] = true, [RK_OP] = true,
    [RK_THRESHOLD] = true};

static int label_cmp(const void *a, const void *b) {
  return strcmp(((const tp_kv_t *)a)->key, ((const tp_kv_t *)b)->key);
}

static bool rule_touchpoints(loader_t *ld, const source_t *src, const char *pre, int line,
                             const node_t *val, tp_rule_t *rule) {
  const node_t *const *items = &val;
  size_t n = 1;

  if (val->kind == NODE_SEQ) {
    items = (const node_t *const *)val->kids;
    n = val->n;
    if (n == 0) {
      report(ld, src, line, "%san empty list matches no touchpoint; leave the key out to "
                            "match every touchpoint", pre);
      return false;
    }
    if (n > CFG_MAX_GLOBS) {
      report(ld, src, line, "%stoo many globs (%zu, at most %d)", pre, n, CFG_MAX_GLOBS);
      return false;
    }
  } else if (val->kind != NODE_SCALAR) {
    if (val->kind != NODE_ALIAS)
      report(ld, src, line, "%sexpected a glob or a list of globs, got %s", pre,
             node_kind_name(val));
    return false;
  }
  rule->touchpoints = tp_calloc(n, sizeof(*rule->touchpoints));
  if (rule->touchpoints == NULL) {
    ld->oom = true;
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < n; i++) {
    const node_t *item = items[i];
    if (item->kind == NODE_ALIAS) {
      ok = false;
      continue;
    }
    if (item->kind != NODE_SCALAR || item->text[0] == '\0' || node_is_null(item)) {
      report(ld, src, item->line, "%sexpected a non-empty glob, got %s", pre,
             item->kind == NODE_SCALAR ? "an empty value" : node_kind_name(item));
      ok = false;
      continue;
    }
    char *glob = tp_strdup(item->text);
    if (glob == NULL) {
      ld->oom = true;
      return false;
    }
    rule->touchpoints[rule->n_touchpoints++] = glob;
  }
  return ok;
}

static bool rule_labels(loader_t *ld, const source_t *src, const char *pre, int line,
                        const node_t *val, tp_rule_t *rule) {
  char shown[SHOW_SIZE];
  if (val->kind == NODE_ALIAS || node_is_null(val))
    return val->kind != NODE_ALIAS;
  if (val->kind != NODE_MAP) {
    report(ld, src, line, "%sexpected a mapping of label names to values, got %s", pre,
           node_kind_name(val));
    return false;
  }
  if (val->n / 2 > CFG_MAX_LABELS) {
    report(ld, src, line, "%stoo many labels (%zu, at most %d)", pre, val->n / 2,
           CFG_MAX_LABELS);
    return false;
  }
  if (val->n == 0)
    return true;
  rule->labels = tp_calloc(val->n / 2, sizeof(*rule->labels));
  if (rule->labels == NULL) {
    ld->oom = true;
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i + 1 < val->n; i += 2) {
    const node_t *k = val->kids[i], *v = val->kids[i + 1];
    const char *name = map_key(ld, src, k);
    bool dup = false;
    if (name == NULL) {
      ok = false;
      continue;
    }
    if (!label_name_valid(name)) {
      report(ld, src, k->line, "%slabel name '%s' must match [A-Za-z_][A-Za-z0-9_]*", pre,
             show(name, shown));
      ok = false;
      continue;
    }
    if (strcmp(name, "stage") == 0 || strcmp(name, "channel") == 0) {
      report(ld, src, k->line,
             "%slabel '%s' is reserved: touchpulse adds stage and channel to every alert itself",
             pre, name);
      ok = false;
      continue;
    }
    for (size_t j = 0; j < rule->n_labels && !dup; j++)
      dup = strcmp(rule->labels[j].key, name) == 0;
    if (dup) {
      report(ld, src, k->line, "%sduplicate label '%s'", pre, name);
      ok = false;
      continue;
    }
    char vpre[200];
    snprintf(vpre, sizeof(vpre), "%s%s: ", pre, name);
    const char *text = scalar_value(ld, src, k->line, v, vpre, "a string");
    if (text == NULL) {
      ok = false;
      continue;
    }
    tp_kv_t *kv = &rule->labels[rule->n_labels];
    kv->key = tp_strdup(name);
    kv->value = tp_strdup(text);
    if (kv->key == NULL || kv->value == NULL) {
      tp_free(kv->key);
      tp_free(kv->value);
      kv->key = kv->value = NULL;
      ld->oom = true;
      return false;
    }
    rule->n_labels++;
  }
  /* Sorted once here, so alert ids and label output never depend on the
   * order the file happened to list them in. */
  qsort(rule->labels, rule->n_labels, sizeof(*rule->labels), label_cmp);
  return ok;
}

/* Parse one field of a rule. @returns true when it was valid. */
static bool rule_field(loader_t *ld, const source_t *src, const char *label, int field, int line,
                       const node_t *val, tp_rule_t *rule, rule_origin_t *orig) {
  char pre[CFG_RULE_NAME_MAX + 64], shown[SHOW_SIZE];
  const char *text;
  int64_t v;
  int i;

  snprintf(pre, sizeof(pre), "%s: %s: ", label, rule_keys[field]);
  if (field == RK_TOUCHPOINTS)
    return rule_touchpoints(ld, src, pre, line, val, rule);
  if (field == RK_LABELS)
    return rule_labels(ld, src, pre, line, val, rule);

  static const char *const expect[RK_COUNT] = {
      [RK_NAME] = "a rule name", [RK_METRIC] = "a metric name",
      [RK_WINDOW] = "a duration like 15m", [RK_OP] = "one of <, <=, >, >=",
      [RK_THRESHOLD] = "a number", [RK_CLEAR] = "a number",
      [RK_MIN_SAMPLES] = "an integer", [RK_FOR] = "an integer",
      [RK_SEVERITY] = "one of info, warning, critical"};
  if ((text = scalar_value(ld, src, line, val, pre, expect[field])) == NULL)
    return false;
  show(text, shown);

  switch (field) {
  case RK_NAME:
    if (!rule_name_valid(text)) {
      report(ld, src, line, "%sexpected 1 to 128 characters of A-Z a-z 0-9 _ . : -, got '%s'",
             pre, shown);
      return false;
    }
    if ((rule->name = tp_strdup(text)) == NULL) {
      ld->oom = true;
      return false;
    }
    orig->name_line = line;
    return true;
  case RK_METRIC:
    if ((i = tp_metric_from_name(text)) < 0) {
      const char *names[TP_METRIC_COUNT];
      char list[1024];
      for (int m = 0; m < TP_METRIC_COUNT; m++)
        names[m] = tp_metric_name((tp_metric_t)m);
      join_names(names, TP_METRIC_COUNT, list, sizeof(list));
      report(ld, src, line, "%sunknown metric '%s' (valid: %s)", pre, shown, list);
      return false;
    }
    rule->metric = (tp_metric_t)i;
    return true;
  case RK_WINDOW:
    if (tp_duration_parse(text, &v) != TP_OK) {
      report(ld, src, line, "%sexpected a duration like 15m, got '%s'", pre, shown);
      return false;
    }
    if (v == 0) {
      report(ld, src, line, "%smust be greater than 0", pre);
      return false;
    }
    rule->window_ms = v;
    orig->window_line = line;
    return true;
  case RK_OP:
    /* Unquoted, ">" starts a folded block scalar in YAML, hence the hint. */
    if ((i = name_index(ops, TP_ARRAY_SIZE(ops), text)) < 0) {
      report(ld, src, line, "%sexpected one of \"<\", \"<=\", \">\", \">=\" (quoted), got '%s'",
             pre, shown);
      return false;
    }
    rule->op = (tp_op_t)i;
    return true;
  case RK_THRESHOLD:
  case RK_CLEAR:
    if (!parse_number(text, field == RK_THRESHOLD ? &rule->threshold : &rule->clear)) {
      report(ld, src, line, "%sexpected a number, got '%s'", pre, shown);
      return false;
    }
    return true;
  case RK_MIN_SAMPLES:
  case RK_FOR: {
    int64_t lo = field == RK_FOR ? 1 : 0, hi = field == RK_FOR ? 10000 : INT64_MAX;
    num_parse_t r = parse_int(text, &v);
    if (r == NUM_BAD) {
      report(ld, src, line, "%sexpected an integer, got '%s'", pre, shown);
      return false;
    }
    if (r == NUM_RANGE || v < lo || v > hi) {
      if (field == RK_FOR)
        report(ld, src, line, "%smust be between 1 and 10000, got %s", pre, shown);
      else
        report(ld, src, line, "%smust be 0 or more, got %s", pre, shown);
      return false;
    }
    if (field == RK_FOR)
      rule->for_count = (int32_t)v;
    else
      rule->min_samples = v;
    return true;
  }
  case RK_SEVERITY:
    if ((i = name_index(severities, TP_ARRAY_SIZE(severities), text)) < 0) {
      report(ld, src, line, "%sexpected one of info, warning, critical, got '%s'", pre, shown);
      return false;
    }
    rule->severity = (tp_severity_t)i;
    return true;
  }
  return false;
}

static void rule_parse(loader_t *ld, const source_t *src, const node_t *map, size_t index,
                       tp_rule_t *rule, rule_origin_t *orig) {
  const node_t *val[RK_COUNT] = {0};
  int kline[RK_COUNT] = {0};
  bool ok[RK_COUNT] = {0};
  char label[CFG_RULE_NAME_MAX + 16], shown[SHOW_SIZE];

  rule->line = src->order == ORDER_FILE ? map->line : 0;
  rule->for_count = 1;
  rule->severity = TP_SEV_WARNING;
  orig->src = *src;

  /* Name the rule in messages by its name when it has a usable one. */
  snprintf(label, sizeof(label), "rule #%zu", index + 1);
  for (size_t i = 0; i + 1 < map->n; i += 2) {
    const node_t *k = map->kids[i], *v = map->kids[i + 1];
    if (k->kind == NODE_SCALAR && strcmp(k->text, "name") == 0) {
      if (v->kind == NODE_SCALAR && rule_name_valid(v->text))
        snprintf(label, sizeof(label), "rule '%s'", v->text);
      break;
    }
  }

  for (size_t i = 0; i + 1 < map->n; i += 2) {
    const node_t *k = map->kids[i];
    const char *name = map_key(ld, src, k);
    int f = 0;
    if (name == NULL)
      continue;
    while (f < RK_COUNT && strcmp(rule_keys[f], name) != 0)
      f++;
    if (f == RK_COUNT) {
      char list[256];
      join_names(rule_keys, RK_COUNT, list, sizeof(list));
      report(ld, src, k->line, "%s: unknown key '%s' (known: %s)", label, show(name, shown),
             list);
      continue;
    }
    if (val[f] != NULL) {
      report(ld, src, k->line, "%s: duplicate key '%s' (first at line %d)", label, name,
             kline[f]);
      continue;
    }
    val[f] = map->kids[i + 1];
    kline[f] = k->line;
  }

  for (int f = 0; f < RK_COUNT && !ld->oom; f++) {
    if (val[f] != NULL)
      ok[f] = rule_field(ld, src, label, f, kline[f], val[f], rule, orig);
    else if (rule_key_required[f])
      report(ld, src, map->line, "%s: missing required key '%s'", label, rule_keys[f]);
  }

  if (val[RK_CLEAR] == NULL) {
    rule->clear = rule->threshold;
  } else if (ok[RK_CLEAR] && ok[RK_THRESHOLD] && ok[RK_OP]) {
    /* The alert resolves when `value op clear` stops holding. A clear level
     * on the breaching side of the threshold would resolve while the value
     * still breaches, then fire again on the next evaluation. */
    bool below = rule->op == TP_OP_LT || rule->op == TP_OP_LE;
    if (below ? rule->clear < rule->threshold : rule->clear > rule->threshold)
      report(ld, src, kline[RK_CLEAR],
             "%s: clear: %g is on the breaching side of threshold %g for op '%s': the alert "
             "would resolve while the value still breaches and fire again at once (flapping); "
             "use clear %s %g",
             label, rule->clear, rule->threshold, tp_op_str(rule->op), below ? ">=" : "<=",
             rule->threshold);
  }
}

/* Parse a list of rules into new arrays the caller owns (also on error). */
static void rules_parse(loader_t *ld, const source_t *src, const node_t *seq, tp_rule_t **out,
                        rule_origin_t **out_origins, size_t *out_n) {
  tp_rule_t *rules = NULL;
  rule_origin_t *origins = NULL;
  size_t n = 0;

  *out = NULL;
  *out_origins = NULL;
  *out_n = 0;
  if (seq->n > CFG_MAX_RULES) {
    report(ld, src, seq->line, "too many rules (%zu, at most %d)", seq->n, CFG_MAX_RULES);
    return;
  }
  if (seq->n == 0)
    return;
  rules = tp_calloc(seq->n, sizeof(*rules));
  origins = tp_calloc(seq->n, sizeof(*origins));
  if (rules == NULL || origins == NULL) {
    tp_free(rules);
    tp_free(origins);
    ld->oom = true;
    return;
  }
  for (size_t i = 0; i < seq->n && !ld->oom; i++) {
    const node_t *item = seq->kids[i];
    if (item->kind == NODE_ALIAS)
      continue;
    if (item->kind != NODE_MAP) {
      report(ld, src, item->line,
             "rule #%zu: expected a mapping with name, metric, window, op and threshold, got %s",
             i + 1, node_kind_name(item));
      continue;
    }
    rule_parse(ld, src, item, i, &rules[n], &origins[n]);
    n++;
  }
  for (size_t j = 0; j < n && !ld->oom; j++) {
    for (size_t i = 0; i < j; i++) {
      if (rules[i].name != NULL && rules[j].name != NULL &&
          strcmp(rules[i].name, rules[j].name) == 0) {
        report(ld, src, origins[j].name_line,
               "rule '%s': name already used by the rule at line %d", rules[j].name,
               origins[i].name_line);
        break;
      }
    }
  }
  *out = rules;
  *out_origins = origins;
  *out_n = n;
}

/* Replace the configuration's rules with a freshly parsed list. */
static void rules_install(loader_t *ld, tp_rule_t *rules, rule_origin_t *origins, size_t n) {
  rules_free(ld->cfg->rules, ld->cfg->n_rules);
  tp_free(ld->rule_origins);
  ld->cfg->rules = rules;
  ld->cfg->n_rules = n;
  ld->rule_origins = origins;
}

static void walk_rules(loader_t *ld, const source_t *src, const node_t *seq) {
  tp_rule_t *rules;
  rule_origin_t *origins;
  size_t n;

  if (seq->kind == NODE_ALIAS)
    return;
  if (node_is_null(seq)) {
    rules_install(ld, NULL, NULL, 0);
    return;
  }
  if (seq->kind != NODE_SEQ) {
    report(ld, src, seq->line, "rules: expected a list of rules, got %s", node_kind_name(seq));
    return;
  }
  rules_parse(ld, src, seq, &rules, &origins, &n);
  rules_install(ld, rules, origins, n);
}

/* ---- the file ----------------------------------------------------------- */

static void walk_root(loader_t *ld, const node_t *root) {
  const source_t *src = &ld->file;
  int seen[N_SECTIONS] = {0};
  char shown[SHOW_SIZE], list[256];

  if (root == NULL || root->kind == NODE_ALIAS || node_is_null(root))
    return;
  if (root->kind != NODE_MAP) {
    report(ld, src, root->line, "expected a mapping of sections (kafka, topics, ...), got %s",
           node_kind_name(root));
    return;
  }
  for (size_t i = 0; i + 1 < root->n && !ld->oom; i += 2) {
    const node_t *key = root->kids[i], *val = root->kids[i + 1];
    const char *name = map_key(ld, src, key);
    size_t s = 0;
    if (name == NULL)
      continue;
    while (s < N_SECTIONS && strcmp(sections[s], name) != 0)
      s++;
    if (s == N_SECTIONS) {
      join_names(sections, N_SECTIONS, list, sizeof(list));
      report(ld, src, key->line, "unknown key '%s' (known: %s)", show(name, shown), list);
      continue;
    }
    if (seen[s]) {
      report(ld, src, key->line, "duplicate key '%s' (first at line %d)", name, seen[s]);
      continue;
    }
    seen[s] = key->line;
    if (strcmp(name, "kafka") == 0)
      walk_kafka(ld, val);
    else if (strcmp(name, "rules") == 0)
      walk_rules(ld, src, val);
    else if (strcmp(name, "workers") == 0)
      key_set_node(ld, key_find(NULL, "workers"), key, val);
    else
      walk_section(ld, name, val);
  }
}

/* Read a whole file of at most CFG_MAX_TEXT_BYTES. @returns false (reported)
 * on error; *text may be NULL for an empty file. */
static bool file_read(loader_t *ld, const char *path, char **text, size_t *len) {
  tp_buf_t buf = TP_BUF_INIT;
  char chunk[16384];
  size_t n;
  FILE *fp = fopen(path, "rb");

  *text = NULL;
  *len = 0;
  if (fp == NULL) {
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): config loads before any thread starts */
    report(ld, &ld->file, 0, "cannot open: %s", strerror(errno));
    return false;
  }
  while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
    if (buf.len + n > CFG_MAX_TEXT_BYTES) {
      report(ld, &ld->file, 0, "file is larger than 1 MiB; refusing to parse it");
      goto err;
    }
    tp_buf_append(&buf, chunk, n);
    if (tp_buf_failed(&buf)) {
      ld->oom = true;
      goto err;
    }
  }
  if (ferror(fp)) {
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): config loads before any thread starts */
    report(ld, &ld->file, 0, "cannot read: %s", strerror(errno));
    goto err;
  }
  (void)fclose(fp); /* read only: nothing to lose */
  *text = buf.data;
  *len = buf.len;
  return true;
err:
  (void)fclose(fp);
  tp_buf_free(&buf);
  return false;
}

static void load_text(loader_t *ld, const char *text, size_t len) {
  bool usable;
  if (len > CFG_MAX_TEXT_BYTES) {
    report(ld, &ld->file, 0, "configuration is larger than 1 MiB; refusing to parse it");
    return;
  }
  node_t *root = tree_load(ld, &ld->file, text, len, CFG_FILE_DEPTH, &usable);
  if (usable)
    walk_root(ld, root);
  node_free(root);
}

/* ---- the environment ---------------------------------------------------- */

/* Levenshtein distance, to suggest the variable a typo meant. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), row[256];
  if (la >= TP_ARRAY_SIZE(row) || lb >= TP_ARRAY_SIZE(row))
    return SIZE_MAX;
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      best = TP_MIN(best, up + 1);
      best = TP_MIN(best, row[j - 1] + 1);
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

static void env_unknown(loader_t *ld, const source_t *src, const char *name) {
  char best[96] = "", env[96];
  size_t best_d = SIZE_MAX;
  for (size_t i = 0; i < N_KEYS; i++) {
    env_name_of(&keys[i], env, sizeof(env));
    size_t d = edit_distance(name, env);
    if (d < best_d) {
      best_d = d;
      snprintf(best, sizeof(best), "%s", env);
    }
  }
  if (edit_distance(name, ENV_PREFIX "RULES") < best_d) {
    best_d = edit_distance(name, ENV_PREFIX "RULES");
    snprintf(best, sizeof(best), ENV_PREFIX "RULES");
  }
  if (best_d <= 3)
    report(ld, src, 0, "names no configuration key; did you mean %s?", best);
  else
    report(ld, src, 0,
           "names no configuration key (variables are TOUCHPULSE_ + a key path such as "
           "WINDOWS_STEP, TOUCHPULSE_KAFKA_<PROPERTY> or TOUCHPULSE_RULES)");
}

static void env_rules(loader_t *ld, const char *value) {
  static const source_t rules_src = {"env " ENV_PREFIX "RULES", ORDER_ENV, false};
  size_t len = strlen(value);
  bool usable;

  if (len > CFG_MAX_TEXT_BYTES) {
    report(ld, &rules_src, 0, "value is larger than 1 MiB; refusing to parse it");
    return;
  }
  node_t *root = tree_load(ld, &rules_src, value, len, CFG_RULES_DEPTH, &usable);
  if (usable) {
    if (root == NULL)
      rules_install(ld, NULL, NULL, 0); /* an empty value means no rules */
    else
      walk_rules(ld, &rules_src, root);
  }
  node_free(root);
}

static void env_apply(loader_t *ld, char *const *envp) {
  for (char *const *e = envp; *e != NULL && !ld->oom; e++) {
    const char *var = *e, *eq = strchr(var, '=');
    char srcname[300], name[256];
    if (strncmp(var, ENV_PREFIX, strlen(ENV_PREFIX)) != 0 || eq == NULL)
      continue;
    size_t nlen = (size_t)(eq - var);
    snprintf(name, sizeof(name), "%.*s", (int)TP_MIN(nlen, sizeof(name) - 1), var);
    /* The name goes into error messages, one line each: no control bytes
     * (a newline in a variable name would forge a log line). */
    for (char *p = name; *p != '\0'; p++)
      if ((unsigned char)*p < 0x20 || *p == 0x7f)
        *p = '?';
    snprintf(srcname, sizeof(srcname), "env %s", name);
    source_t src = {srcname, ORDER_ENV, true};
    const char *value = eq + 1;

    if (strcmp(name, ENV_PREFIX "RULES") == 0) {
      env_rules(ld, value);
      continue;
    }
    if (strncmp(name, ENV_KAFKA_PREFIX, strlen(ENV_KAFKA_PREFIX)) == 0) {
      /* librdkafka property names use dots only, so every '_' is a '.'. */
      const char *prop = var + strlen(ENV_KAFKA_PREFIX);
      size_t plen = nlen - strlen(ENV_KAFKA_PREFIX);
      if (plen == 0) {
        report(ld, &src, 0, "names no kafka property (write TOUCHPULSE_KAFKA_<PROPERTY>)");
        continue;
      }
      char *key = tp_strndup(prop, plen);
      if (key == NULL) {
        ld->oom = true;
        return;
      }
      for (char *p = key; *p != '\0'; p++)
        *p = (char)(*p == '_' ? '.' : tolower((unsigned char)*p));
      if (tp_config_kafka_set(ld->cfg, key, value) != TP_OK)
        ld->oom = true;
      tp_free(key);
      continue;
    }
    size_t idx = 0;
    char env[96];
    for (; idx < N_KEYS; idx++) {
      env_name_of(&keys[idx], env, sizeof(env));
      if (strlen(env) == nlen && strncmp(env, var, nlen) == 0)
        break;
    }
    if (idx == N_KEYS)
      env_unknown(ld, &src, name);
    else
      key_set(ld, idx, value, &src, 0);
  }
}

/* ---- checks across keys ------------------------------------------------- */

/* Describe where keys[idx] was set, for a message about it. */
static void key_source(const loader_t *ld, size_t idx, source_t *src, char *env, size_t size,
                       int *line) {
  if (ld->origin[idx].from_env) {
    char name[96];
    env_name_of(&keys[idx], name, sizeof(name));
    snprintf(env, size, "env %s", name);
    *src = (source_t){env, ORDER_ENV, true};
    *line = 0;
  } else {
    *src = ld->file;
    *line = ld->origin[idx].line;
  }
}

static void check_topics(loader_t *ld) {
  size_t first = key_find("topics", "feedback");
  for (size_t j = 1; j < TP_TOPIC_COUNT; j++) {
    for (size_t i = 0; i < j; i++) {
      size_t a = first + i, b = first + j;
      if (ld->invalid[a] || ld->invalid[b] ||
          strcmp(ld->cfg->topics[i], ld->cfg->topics[j]) != 0)
        continue;
      /* Blame the key that was set; a default never collides by itself. */
      size_t blame = ld->origin[b].set ? b : a;
      size_t other = blame == b ? a : b;
      source_t src;
      char env[128], pre[80], path[64], shown[SHOW_SIZE];
      int line;
      key_source(ld, blame, &src, env, sizeof(env), &line);
      key_prefix(&keys[blame], &src, pre, sizeof(pre));
      key_path(&keys[other], path, sizeof(path));
      report(ld, &src, line, "%stopic '%s' is also %s; the five topics must be distinct", pre,
             show(ld->cfg->topics[j], shown), path);
    }
  }
}

static void check_windows(loader_t *ld) {
  const tp_config_t *cfg = ld->cfg;
  const size_t step_key = key_find("windows", "step");
  char step[32], where[160], window[32];

  if (ld->invalid[step_key])
    return;
  tp_duration_format(cfg->step_ms, step, sizeof(step));
  if (!ld->origin[step_key].set) {
    snprintf(where, sizeof(where), "the default");
  } else if (ld->origin[step_key].from_env) {
    char env[96];
    env_name_of(&keys[step_key], env, sizeof(env));
    snprintf(where, sizeof(where), "from env %s", env);
  } else {
    snprintf(where, sizeof(where), "set at line %d", ld->origin[step_key].line);
  }
  for (size_t i = 0; i < cfg->n_rules; i++) {
    const tp_rule_t *rule = &cfg->rules[i];
    const rule_origin_t *orig = &ld->rule_origins[i];
    if (rule->window_ms <= 0 || rule->window_ms % cfg->step_ms == 0)
      continue;
    tp_duration_format(rule->window_ms, window, sizeof(window));
    if (rule->name != NULL)
      report(ld, &orig->src, orig->window_line,
             "rule '%s': window: %s is not a multiple of windows.step (%s, %s)", rule->name,
             window, step, where);
    else
      report(ld, &orig->src, orig->window_line,
             "rule #%zu: window: %s is not a multiple of windows.step (%s, %s)", i + 1, window,
             step, where);
  }
}

/* ---- loading ------------------------------------------------------------ */

static int error_cmp(const void *pa, const void *pb) {
  const cfg_error_t *a = pa, *b = pb;
  if (a->order != b->order)
    return a->order < b->order ? -1 : 1;
  if (a->order == ORDER_FILE && a->line != b->line)
    return a->line < b->line ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void errors_write(loader_t *ld, char *errbuf, size_t size) {
  size_t off = 0;
  if (size == 0)
    return;
  errbuf[0] = '\0';
  qsort(ld->errs, ld->n_errs, sizeof(*ld->errs), error_cmp);
  for (size_t i = 0; i < ld->n_errs && off < size; i++)
    off += (size_t)snprintf(errbuf + off, size - off, "%s%s", i ? "\n" : "", ld->errs[i].msg);
  if (ld->n_dropped > 0 && off < size)
    snprintf(errbuf + off, size - off, "\n... and %zu more errors", ld->n_dropped);
}

static tp_err_t load(const char *path, const char *name, const char *text, size_t len,
                     char *const *envp, tp_config_t **out, char *errbuf, size_t errbuf_size) {
  loader_t ld = {0};
  tp_err_t rc = TP_OK;
  char *owned = NULL;

  if (errbuf_size > 0)
    errbuf[0] = '\0';
  if (out == NULL)
    return TP_EINVAL;
  *out = NULL;
  ld.file = (source_t){name, ORDER_FILE, false};
  if ((ld.cfg = tp_config_new()) == NULL)
    ld.oom = true;
  if (!ld.oom && path != NULL && (ld.cfg->path = tp_strdup(path)) == NULL)
    ld.oom = true;

  if (!ld.oom && path != NULL) {
    if (file_read(&ld, path, &owned, &len))
      load_text(&ld, owned ? owned : "", len);
  } else if (!ld.oom && text != NULL) {
    load_text(&ld, text, len);
  }
  tp_free(owned);

  if (!ld.oom)
    env_apply(&ld, envp != NULL ? envp : environ);
  if (!ld.oom) {
    check_topics(&ld);
    check_windows(&ld);
  }

  if (ld.oom) {
    rc = TP_ENOMEM;
    if (errbuf_size > 0)
      snprintf(errbuf, errbuf_size, "%s: out of memory while loading the configuration",
               name);
  } else if (ld.n_errs > 0) {
    rc = TP_ECONFIG;
    errors_write(&ld, errbuf, errbuf_size);
  } else {
    *out = ld.cfg;
    ld.cfg = NULL;
  }
  for (size_t i = 0; i < ld.n_errs; i++)
    tp_free(ld.errs[i].msg);
  tp_free(ld.errs);
  tp_free(ld.rule_origins);
  tp_config_destroy(ld.cfg);
  return rc;
}

tp_err_t tp_config_load(const char *path, char *const *envp, tp_config_t **out, char *errbuf,
                        size_t errbuf_size) {
  return load(path, path != NULL ? path : "config", NULL, 0, envp, out, errbuf, errbuf_size);
}

tp_err_t tp_config_load_string(const char *yaml, size_t len, const char *name,
                               char *const *envp, tp_config_t **out, char *errbuf,
                               size_t errbuf_size) {
  return load(NULL, name != NULL ? name : "<string>", yaml != NULL ? yaml : "",
              yaml != NULL ? len : 0, envp, out, errbuf, errbuf_size);
}

/* ---- dump --------------------------------------------------------------- */

/* A YAML double-quoted string: always valid, whatever the text holds. */
static void dump_quoted(tp_buf_t *b, const char *s) {
  tp_buf_putc(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    switch (*p) {
    case '"': tp_buf_puts(b, "\\\""); break;
    case '\\': tp_buf_puts(b, "\\\\"); break;
    case '\n': tp_buf_puts(b, "\\n"); break;
    case '\t': tp_buf_puts(b, "\\t"); break;
    case '\r': tp_buf_puts(b, "\\r"); break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        tp_buf_printf(b, "\\x%02x", *p);
      else
        tp_buf_putc(b, (char)*p);
    }
  }
  tp_buf_putc(b, '"');
}

static void dump_secret(tp_buf_t *b, const char *key, const char *value) {
  dump_quoted(b, tp_config_key_is_secret(key) ? "[redacted]" : value);
}

static void dump_duration(tp_buf_t *b, const char *key, int64_t ms) {
  char text[64];
  tp_duration_format(ms, text, sizeof(text));
  tp_buf_printf(b, "  %s: %s\n", key, text);
}

/* The shortest decimal form that reads back as the same double; whole
 * numbers without an exponent, as people write thresholds. */
static void dump_number(tp_buf_t *b, double v) {
  char text[40];
  if (v == trunc(v) && fabs(v) < 1e15) {
    tp_buf_printf(b, "%.0f", v);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(text, sizeof(text), "%.*g", prec, v);
    if (strtod(text, NULL) == v)
      break;
  }
  tp_buf_puts(b, text);
}

char *tp_config_dump(const tp_config_t *cfg) {
  static const char *const roles[TP_TOPIC_COUNT] = {"feedback", "support", "commerce",
                                                    "alerts", "deadletter"};
  tp_buf_t b = TP_BUF_INIT;

  if (cfg == NULL)
    return NULL;
  tp_buf_puts(&b, "# touchpulse effective configuration; secrets are redacted\n");
  tp_buf_puts(&b, cfg->n_kafka ? "kafka:\n" : "kafka: {}\n");
  for (size_t i = 0; i < cfg->n_kafka; i++) {
    tp_buf_puts(&b, "  ");
    dump_quoted(&b, cfg->kafka[i].key);
    tp_buf_puts(&b, ": ");
    dump_secret(&b, cfg->kafka[i].key, cfg->kafka[i].value);
    tp_buf_putc(&b, '\n');
  }
  tp_buf_puts(&b, "topics:\n");
  for (int i = 0; i < TP_TOPIC_COUNT; i++) {
    tp_buf_printf(&b, "  %s: ", roles[i]);
    dump_quoted(&b, cfg->topics[i]);
    tp_buf_putc(&b, '\n');
  }
  tp_buf_printf(&b, "workers: %d\n", cfg->workers);
  tp_buf_puts(&b, "windows:\n");
  dump_duration(&b, "step", cfg->step_ms);
  dump_duration(&b, "allowed_lateness", cfg->allowed_lateness_ms);
  dump_duration(&b, "idle_timeout", cfg->idle_timeout_ms);
  dump_duration(&b, "max_future_skew", cfg->max_future_skew_ms);
  tp_buf_printf(&b, "dedup:\n  depth: %" PRId64 "\n", cfg->dedup_depth);
  tp_buf_puts(&b, "support:\n");
  dump_duration(&b, "first_response_sla", cfg->first_response_sla_ms);
  dump_duration(&b, "ticket_ttl", cfg->ticket_ttl_ms);
  tp_buf_printf(&b, "  max_tickets: %" PRId64 "\n", cfg->max_tickets);
  tp_buf_printf(&b, "state:\n  max_touchpoints: %" PRId64 "\n", cfg->max_touchpoints);
  tp_buf_printf(&b, "metrics:\n  max_touchpoints: %" PRId64 "\n",
                cfg->metrics_max_touchpoints);
  tp_buf_puts(&b, "http:\n  listen: ");
  dump_quoted(&b, cfg->http_listen);
  tp_buf_printf(&b, "\nlog:\n  level: %s\n  format: %s\n",
                log_levels[cfg->log_level % TP_ARRAY_SIZE(log_levels)],
                log_formats[cfg->log_format % TP_ARRAY_SIZE(log_formats)]);
  tp_buf_puts(&b, "processing:\n");
  dump_duration(&b, "commit_interval", cfg->commit_interval_ms);
  tp_buf_printf(&b, "  max_record_bytes: %" PRId64 "\n", cfg->max_record_bytes);
  tp_buf_printf(&b, "  exactly_once: %s\n  transactional_id: ", cfg->exactly_once ? "true" : "false");
  dump_quoted(&b, cfg->transactional_id);
  tp_buf_putc(&b, '\n');

  tp_buf_puts(&b, cfg->n_rules ? "rules:\n" : "rules: []\n");
  for (size_t i = 0; i < cfg->n_rules; i++) {
    const tp_rule_t *rule = &cfg->rules[i];
    char window[64];
    tp_duration_format(rule->window_ms, window, sizeof(window));
    tp_buf_puts(&b, "  - name: ");
    dump_quoted(&b, rule->name ? rule->name : "");
    tp_buf_printf(&b, "\n    metric: %s\n    window: %s\n    op: \"%s\"\n    threshold: ",
                  tp_metric_name(rule->metric), window, tp_op_str(rule->op));
    dump_number(&b, rule->threshold);
    tp_buf_puts(&b, "\n    clear: ");
    dump_number(&b, rule->clear);
    tp_buf_printf(&b, "\n    min_samples: %" PRId64 "\n    for: %d\n    severity: %s\n",
                  rule->min_samples, (int)rule->for_count,
                  severities[rule->severity % TP_ARRAY_SIZE(severities)]);
    if (rule->n_touchpoints > 0) {
      tp_buf_puts(&b, "    touchpoints: [");
      for (size_t t = 0; t < rule->n_touchpoints; t++) {
        tp_buf_puts(&b, t ? ", " : "");
        dump_quoted(&b, rule->touchpoints[t]);
      }
      tp_buf_puts(&b, "]\n");
    }
    if (rule->n_labels > 0) {
      tp_buf_puts(&b, "    labels: {");
      for (size_t l = 0; l < rule->n_labels; l++) {
        tp_buf_puts(&b, l ? ", " : "");
        dump_quoted(&b, rule->labels[l].key);
        tp_buf_puts(&b, ": ");
        dump_secret(&b, rule->labels[l].key, rule->labels[l].value);
      }
      tp_buf_puts(&b, "}\n");
    }
  }
  if (tp_buf_failed(&b)) {
    tp_buf_free(&b);
    return NULL;
  }
  return b.data;
}
