/*
 * fuzz_rules_duration.c -- the duration parser and the rule parser, each on
 * the whole input, then the rule state machine and glob matching on what
 * was accepted.
 *
 * The input, up to its first NUL byte, is read twice:
 *   - as a duration by tp_duration_parse(), compared with a reference
 *     parser written here from config.h's contract (an integer and one of
 *     ms, s, m, h, d, repeated with strictly larger units first; a bare "0";
 *     the total must fit int64 ms); an accepted value also survives
 *     tp_duration_format() -> tp_duration_parse(), and formatting never
 *     writes past a small buffer;
 *   - as the value of TOUCHPULSE_RULES, the rule list alone (the loader's
 *     path for rules from the environment, YAML or JSON), with the same
 *     result checks as fuzz_config. Each accepted rule is then stepped
 *     through 64 evaluations of values drawn from the input (around its
 *     threshold and clear level, undefined, too few samples), checked
 *     against rules.h: FIRING only after `for` consecutive breaching usable
 *     values, RESOLVED only from FIRING when the value leaves the breaching
 *     side of `clear`, unusable values change nothing, `changed` is exact;
 *     and tp_rule_matches() runs on touchpoints drawn from the input.
 */
#include <math.h>

#include "fuzz_common.h"
#include "touchpulse/config.h"
#include "touchpulse/rules.h"

#define ERRBUF_SIZE (256 * 1024)
#define STEPS 64

static char errbuf[ERRBUF_SIZE];

/* ---- durations ---------------------------------------------------------- */

/* config.h's grammar, by another route: 128-bit sums, units by rank. */
static int ref_duration(const char *s, int64_t *out) {
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
  if (strcmp(s, "0") == 0) {
    *out = 0;
    return 1;
  }
  if (*s == '\0')
    return 0;
  __int128 total = 0;
  int next = 0; /* the largest unit index still allowed */
  while (*s != '\0') {
    if (*s < '0' || *s > '9')
      return 0;
    __int128 n = 0;
    while (*s >= '0' && *s <= '9') {
      n = n * 10 + (*s - '0');
      if (n > INT64_MAX)
        return 0;
      s++;
    }
    /* "ms" is tried before "m" so that 5ms is 5 milliseconds. */
    int u = -1;
    if (s[0] == 'm' && s[1] == 's')
      u = 4;
    else
      for (int i = 0; i < 4; i++)
        if (s[0] == units[i].unit[0])
          u = i;
    if (u < 0 || u < next)
      return 0;
    total += n * units[u].ms;
    if (total > INT64_MAX)
      return 0;
    s += strlen(units[u].unit);
    next = u + 1;
  }
  *out = (int64_t)total;
  return 1;
}

static void check_duration(const char *s, size_t slen) {
  int64_t got = -1, want = -1;
  tp_err_t rc = tp_duration_parse(s, &got);
  int ok = ref_duration(s, &want);
  FUZZ_CHECK(rc == TP_OK || rc == TP_EINVAL, "tp_duration_parse returned %d", rc);
  FUZZ_CHECK((rc == TP_OK) == ok, "'%.80s': tp_duration_parse %s, the grammar %s", s,
             rc == TP_OK ? "accepts" : "refuses", ok ? "accepts" : "refuses");
  if (!ok)
    return;
  FUZZ_CHECK(got == want, "'%.80s': %lld ms, expected %lld", s, (long long)got,
             (long long)want);

  /* Formatting reads back as the same value. */
  char text[64];
  tp_duration_format(got, text, sizeof(text));
  int64_t back = -1;
  FUZZ_CHECK(tp_duration_parse(text, &back) == TP_OK && back == got,
             "%lld ms formats as '%s', which reads as %lld", (long long)got, text,
             (long long)back);
  /* A small buffer is cut, never overrun (ASan watches the heap copy). */
  size_t small = 1 + slen % 12;
  char *cut = fuzz_alloc(small);
  tp_duration_format(got, cut, small);
  FUZZ_CHECK(strnlen(cut, small) < small, "format left %zu bytes unterminated", small);
  FUZZ_CHECK(strncmp(cut, text, strlen(cut)) == 0, "cut '%s' is no prefix of '%s'", cut,
             text);
  free(cut);
}

/* ---- rules --------------------------------------------------------------- */

static int holds(tp_op_t op, double v, double t) {
  switch (op) {
  case TP_OP_LT: return v < t;
  case TP_OP_LE: return v <= t;
  case TP_OP_GT: return v > t;
  case TP_OP_GE: return v >= t;
  }
  FUZZ_CHECK(0, "op %d", (int)op);
}

static double pick_value(fuzz_src_t *s, const tp_rule_t *r) {
  static const double deltas[] = {0, 1e-9, -1e-9, 0.5, -0.5, 1, -1, 100, -100};
  switch (fuzz_below(s, 6)) {
  case 0: return r->threshold + deltas[fuzz_below(s, TP_ARRAY_SIZE(deltas))];
  case 1: return r->clear + deltas[fuzz_below(s, TP_ARRAY_SIZE(deltas))];
  case 2: return fuzz_below(s, 2) ? INFINITY : -INFINITY;
  case 3: return (double)(int64_t)fuzz_u64(s) / 1e6;
  default: return (r->threshold + r->clear) / 2 + (double)fuzz_range(s, -3, 3);
  }
}

static void check_state_machine(fuzz_src_t *s, const tp_rule_t *r) {
  tp_rule_state_t rs = {0};
  int firing = 0;     /* the model: FIRING or not */
  int64_t streak = 0; /* consecutive usable breaching values while not firing */
  for (int i = 0; i < STEPS; i++) {
    tp_metric_value_t v = {.value = pick_value(s, r), .defined = true};
    switch (fuzz_below(s, 8)) {
    case 0: v.defined = false; break;
    case 1: v.samples = r->min_samples > 0 ? r->min_samples - 1 : 0; break;
    case 2: v.samples = r->min_samples; break;
    default:
      v.samples = r->min_samples <= INT64_MAX - 100
                      ? r->min_samples + (int64_t)fuzz_below(s, 100)
                      : INT64_MAX;
      break;
    }
    tp_rule_state_t before = rs;
    bool changed = true; /* must be overwritten */
    tp_rule_step_t step = tp_rule_step(r, &rs, &v, &changed);
    FUZZ_CHECK(changed == (memcmp(&before, &rs, sizeof(rs)) != 0),
               "rule '%s': changed %d disagrees with the state", r->name, changed);

    int usable = v.defined && v.samples >= r->min_samples;
    FUZZ_CHECK(tp_rule_value_usable(r, &v) == usable, "rule '%s': usable", r->name);
    tp_rule_step_t want = TP_RULE_HOLD;
    if (usable && !firing) {
      if (holds(r->op, v.value, r->threshold)) {
        if (++streak >= r->for_count) {
          firing = 1;
          streak = 0;
          want = TP_RULE_FIRE;
        }
      } else {
        streak = 0;
      }
    } else if (usable && firing && !holds(r->op, v.value, r->clear)) {
      firing = 0;
      want = TP_RULE_RESOLVE;
    }
    FUZZ_CHECK(step == want, "rule '%s' (op %s, threshold %g, clear %g, for %d): step %d "
                             "on %g (samples %lld, defined %d), expected %d",
               r->name, tp_op_str(r->op), r->threshold, r->clear, (int)r->for_count,
               (int)step, v.value, (long long)v.samples, (int)v.defined, (int)want);
    if (!usable)
      FUZZ_CHECK(memcmp(&before, &rs, sizeof(rs)) == 0,
                 "rule '%s': an unusable value changed the state", r->name);
    FUZZ_CHECK(rs.phase == (firing ? TP_RULE_FIRING
                            : streak > 0 ? TP_RULE_PENDING
                                         : TP_RULE_OK),
               "rule '%s': phase %d, expected firing=%d streak=%lld", r->name, rs.phase,
               firing, (long long)streak);
    FUZZ_CHECK(firing || rs.pending == streak, "rule '%s': pending %u, streak %lld",
               r->name, rs.pending, (long long)streak);
  }
}

static void check_matches(fuzz_src_t *s, const tp_rule_t *r, const char *input) {
  char tp[300];
  for (int i = 0; i < 4; i++) {
    size_t len;
    if (i == 0 && r->n_touchpoints > 0) {
      /* A glob as a touchpoint: fnmatch may or may not match it; no crash. */
      len = strlen(r->touchpoints[0]);
      len = len < sizeof(tp) ? len : sizeof(tp) - 1;
      memcpy(tp, r->touchpoints[0], len);
    } else {
      len = (size_t)fuzz_below(s, sizeof(tp));
      size_t in_len = strlen(input);
      for (size_t j = 0; j < len; j++)
        tp[j] = in_len > 0 && fuzz_below(s, 2) ? input[fuzz_below(s, in_len)]
                                               : "abc.*:/-_"[fuzz_below(s, 9)];
    }
    tp[len] = '\0';
    uint8_t *exact = fuzz_copy(tp, len); /* not NUL-terminated: ASan checks */
    bool m = tp_rule_matches(r, (const char *)exact, len);
    free(exact);
    if (r->n_touchpoints == 0)
      FUZZ_CHECK(m, "rule '%s' without globs must match every touchpoint", r->name);
    else if (len >= 256)
      FUZZ_CHECK(!m, "rule '%s' matched a %zu-byte touchpoint", r->name, len);
  }
}

static void check_rules(const char *text, const uint8_t *data, size_t size) {
  size_t n = strlen(text);
  char *var = fuzz_alloc(n + sizeof("TOUCHPULSE_RULES="));
  memcpy(var, "TOUCHPULSE_RULES=", sizeof("TOUCHPULSE_RULES=") - 1);
  memcpy(var + sizeof("TOUCHPULSE_RULES=") - 1, text, n + 1);
  char *env[] = {var, NULL};
  tp_config_t *cfg = NULL;
  tp_err_t rc = tp_config_load_string(NULL, 0, "none", env, &cfg, errbuf, sizeof(errbuf));
  FUZZ_CHECK(rc == TP_OK || rc == TP_ECONFIG, "load returned %d: %.200s", rc, errbuf);
  if (rc != TP_OK) {
    FUZZ_CHECK(cfg == NULL && errbuf[0] != '\0', "TP_ECONFIG without an error");
    FUZZ_CHECK(strncmp(errbuf, "env TOUCHPULSE_RULES", 20) == 0,
               "rules error not from env TOUCHPULSE_RULES: %.200s", errbuf);
    free(var);
    return;
  }
  FUZZ_CHECK(cfg != NULL && errbuf[0] == '\0', "TP_OK with errors: %.200s", errbuf);
  fuzz_src_t s;
  fuzz_src_init(&s, data, size);
  for (size_t i = 0; i < cfg->n_rules; i++) {
    const tp_rule_t *r = &cfg->rules[i];
    FUZZ_CHECK(r->for_count >= 1 && r->for_count <= 10000, "for %d", (int)r->for_count);
    FUZZ_CHECK(isfinite(r->threshold) && isfinite(r->clear), "threshold not finite");
    FUZZ_CHECK(r->window_ms > 0 && r->window_ms % cfg->step_ms == 0, "window %lld",
               (long long)r->window_ms);
    FUZZ_CHECK(r->line == 0, "a rule from the environment has line %d", r->line);
    check_state_machine(&s, r);
    check_matches(&s, r, text);
  }
  tp_config_destroy(cfg);
  free(var);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_cstr(data, size);
  check_duration(text, size);
  check_rules(text, data, size);
  free(text);
  return 0;
}
