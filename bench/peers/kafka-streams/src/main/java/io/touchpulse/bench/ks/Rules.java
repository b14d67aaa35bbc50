package io.touchpulse.bench.ks;

import java.util.List;
import java.util.regex.Pattern;

/**
 * The benchmark's rules, hard-coded: the five rules of examples/touchpulse.yaml
 * with its window settings (step 1m, allowed_lateness 30s, dedup.depth 100000,
 * ticket_ttl 30d). Everything the topology computes is derived from this file.
 */
final class Rules {
  private Rules() {}

  static final long STEP_MS = 60_000L;
  static final long LATENESS_MS = 30_000L;
  static final int DEDUP_DEPTH = 100_000;
  static final long TICKET_TTL_MS = 30L * 86_400_000L;
  static final long MAX_FUTURE_SKEW_MS = 5L * 60_000L;

  enum Source { FEEDBACK, SUPPORT, COMMERCE }

  enum Op {
    LT("<"), LE("<="), GT(">"), GE(">=");

    final String text;

    Op(String text) { this.text = text; }

    boolean holds(double value, double level) {
      switch (this) {
        case LT: return value < level;
        case LE: return value <= level;
        case GT: return value > level;
        default: return value >= level;
      }
    }
  }

  /** Metrics these rules use; each comes from one input topic. */
  enum Metric {
    CSAT_MEAN(Source.FEEDBACK, false),
    NPS(Source.FEEDBACK, false),
    FIRST_RESPONSE_MS_P90(Source.SUPPORT, false),
    COMPLAINTS(Source.SUPPORT, true),
    RETURN_PCT(Source.COMMERCE, false);

    final Source source;
    /** Count metrics are defined (0) on a window without events. */
    final boolean count;

    Metric(Source source, boolean count) {
      this.source = source;
      this.count = count;
    }
  }

  static final class Rule {
    final String name;
    final Metric metric;
    final long windowMs;
    final Op op;
    final double threshold;
    final double clear;
    final long minSamples;
    final int forCount;
    private final Pattern[] touchpoints;

    Rule(String name, Metric metric, long windowMs, Op op, double threshold, double clear,
         long minSamples, int forCount, String... globs) {
      this.name = name;
      this.metric = metric;
      this.windowMs = windowMs;
      this.op = op;
      this.threshold = threshold;
      this.clear = clear;
      this.minSamples = minSamples;
      this.forCount = forCount;
      this.touchpoints = new Pattern[globs.length];
      for (int i = 0; i < globs.length; i++)
        touchpoints[i] = Pattern.compile(globToRegex(globs[i]), Pattern.DOTALL);
    }

    boolean matches(String touchpoint) {
      if (touchpoints.length == 0)
        return true;
      for (Pattern p : touchpoints)
        if (p.matcher(touchpoint).matches())
          return true;
      return false;
    }
  }

  static final long M = 60_000L;

  /** The rules (examples/touchpulse.yaml). No globs = every touchpoint. */
  static final List<Rule> ALL = List.of(
      new Rule("checkout-csat-low", Metric.CSAT_MEAN, 15 * M, Op.LT, 3.5, 3.8, 20, 2, "checkout.*"),
      new Rule("nps-negative", Metric.NPS, 30 * M, Op.LT, 0, 10, 30, 2),
      new Rule("first-response-slow", Metric.FIRST_RESPONSE_MS_P90, 15 * M, Op.GT, 900_000, 600_000, 10, 2,
               "support.*"),
      new Rule("returns-spike", Metric.RETURN_PCT, 30 * M, Op.GT, 15, 10, 40, 2),
      new Rule("complaints-surge", Metric.COMPLAINTS, 15 * M, Op.GE, 10, 5, 0, 1));

  // ---- the alert state machine per (rule, touchpoint) -------------------------

  static final byte OK = 0, PENDING = 1, FIRING = 2;

  enum Step { HOLD, FIRE, RESOLVE }

  /** Mutable state of one (rule, touchpoint). */
  static final class State {
    byte phase = OK;
    int pending;
  }

  /**
   * One evaluation of a defined value. A value with fewer than min_samples
   * samples is undefined and changes nothing (callers skip it). OK/PENDING
   * count consecutive breaching evaluations up to `for`, then FIRING; FIRING
   * holds until the value leaves the breaching side of the clear level.
   */
  static Step step(Rule rule, State s, double value, long samples) {
    if (samples < rule.minSamples)
      return Step.HOLD;
    if (s.phase == FIRING) {
      if (!rule.op.holds(value, rule.clear)) {
        s.phase = OK;
        s.pending = 0;
        return Step.RESOLVE;
      }
      return Step.HOLD;
    }
    if (!rule.op.holds(value, rule.threshold)) {
      s.phase = OK;
      s.pending = 0;
      return Step.HOLD;
    }
    s.pending++;
    if (s.pending >= rule.forCount) {
      s.phase = FIRING;
      s.pending = 0;
      return Step.FIRE;
    }
    s.phase = PENDING;
    return Step.HOLD;
  }

  /** fnmatch(3) without flags: `*` and `?` match any character (also `/`), `[...]` sets, `\` escapes. */
  static String globToRegex(String glob) {
    StringBuilder re = new StringBuilder();
    for (int i = 0; i < glob.length(); i++) {
      char c = glob.charAt(i);
      if (c == '*') {
        re.append(".*");
      } else if (c == '?') {
        re.append('.');
      } else if (c == '[' && glob.indexOf(']', i + 2) > 0) {
        int end = glob.indexOf(']', i + 2);
        String body = glob.substring(i + 1, end);
        re.append('[');
        if (body.startsWith("!")) {
          re.append('^');
          body = body.substring(1);
        }
        for (char b : body.toCharArray()) {
          if (b == '\\' || b == '[' || b == '&' || b == '^')
            re.append('\\');
          re.append(b);
        }
        re.append(']');
        i = end;
      } else if (c == '\\' && i + 1 < glob.length()) {
        re.append(Pattern.quote(String.valueOf(glob.charAt(++i))));
      } else {
        re.append(Pattern.quote(String.valueOf(c)));
      }
    }
    return re.toString();
  }

  /** The alert record written to the output topic: compact JSON. */
  static String alertJson(Rule rule, String touchpoint, Step step, long windowEnd, double value) {
    StringBuilder sb = new StringBuilder(128);
    sb.append("{\"rule\":\"").append(rule.name).append("\",\"touchpoint\":\"");
    for (int i = 0; i < touchpoint.length(); i++) {
      char c = touchpoint.charAt(i);
      if (c == '"' || c == '\\')
        sb.append('\\');
      sb.append(c);
    }
    sb.append("\",\"state\":\"").append(step == Step.FIRE ? "FIRING" : "RESOLVED")
      .append("\",\"window_end\":").append(windowEnd).append(",\"value\":");
    if (Double.isFinite(value))
      sb.append(value);
    else
      sb.append("null");
    return sb.append('}').toString();
  }
}
