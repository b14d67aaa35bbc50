package io.touchpulse.bench.ks;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;

/** The stateful processors of the topology (see Main for how they are wired). */
final class Processors {
  private Processors() {}

  /** Process-wide counters for the benchmark report. */
  static final class Stats {
    static final AtomicLong processed = new AtomicLong();
    static final AtomicLong firstMs = new AtomicLong();
    static final AtomicLong lastMs = new AtomicLong();
    static final AtomicLong firing = new AtomicLong();
    static final AtomicLong resolved = new AtomicLong();
    static final AtomicLong invalid = new AtomicLong();
    static final AtomicLong late = new AtomicLong();
    static final AtomicLong duplicates = new AtomicLong();
    static volatile long expected = Long.MAX_VALUE;
    static final CountDownLatch reached = new CountDownLatch(1);

    static void started() {
      if (firstMs.get() == 0)
        firstMs.compareAndSet(0, System.currentTimeMillis());
    }

    /** One input record is done, with everything it forwarded downstream. */
    static void done() {
      if (processed.incrementAndGet() == expected) {
        lastMs.set(System.currentTimeMillis());
        reached.countDown();
      }
    }

    static void alert(Rules.Step step) {
      (step == Rules.Step.FIRE ? firing : resolved).incrementAndGet();
    }
  }

  static String storeName(Rules.Source src, String what) {
    return src.name().toLowerCase() + "-" + what;
  }

  /**
   * First processor of every input topic: counts each record, then drops it
   * when invalid, a duplicate (its event_id among the last DEDUP_DEPTH applied
   * ids of this partition: a ring of ids plus an index id -> sequence number)
   * or late (occurred_at below this partition's watermark, the largest
   * occurred_at read minus LATENESS_MS). One task reads one input partition,
   * so these stores are per partition, as in touchpulse.
   */
  static final class DedupLateFilter implements FixedKeyProcessor<String, Events.Event, Events.Event> {
    private final Rules.Source src;
    private FixedKeyProcessorContext<String, Events.Event> ctx;
    private KeyValueStore<String, Long> ids;
    private KeyValueStore<Long, String> ring;
    private KeyValueStore<String, Long> meta;
    private long maxTime;
    private long seq;

    DedupLateFilter(Rules.Source src) { this.src = src; }

    static String ids(Rules.Source s) { return storeName(s, "dedup-ids"); }
    static String ring(Rules.Source s) { return storeName(s, "dedup-ring"); }
    static String meta(Rules.Source s) { return storeName(s, "partition-meta"); }

    @Override
    public void init(FixedKeyProcessorContext<String, Events.Event> context) {
      ctx = context;
      ids = context.getStateStore(ids(src));
      ring = context.getStateStore(ring(src));
      meta = context.getStateStore(meta(src));
      Long m = meta.get("max_time");
      maxTime = m == null ? Values.NONE : m;
      Long s = meta.get("seq");
      seq = s == null ? 0 : s;
    }

    @Override
    public void process(FixedKeyRecord<String, Events.Event> record) {
      Stats.started();
      Events.Event ev = record.value();
      if (ev == null || !ev.valid) {
        Stats.invalid.incrementAndGet();
        Stats.done();
        return;
      }
      long t = ev.occurredAt;
      boolean late = maxTime != Values.NONE && t < maxTime - Rules.LATENESS_MS;
      if (maxTime == Values.NONE || t > maxTime) {
        maxTime = t;
        meta.put("max_time", t);
      }
      if (ids.get(ev.eventId) != null) {
        Stats.duplicates.incrementAndGet();
      } else if (late) {
        Stats.late.incrementAndGet();
      } else {
        long slot = seq % Rules.DEDUP_DEPTH;
        String old = ring.get(slot);
        if (old != null)
          ids.delete(old);
        ring.put(slot, ev.eventId);
        ids.put(ev.eventId, seq);
        seq++;
        meta.put("seq", seq);
        ctx.forward(record);
      }
      Stats.done();
    }
  }

  /**
   * Support tickets of one partition: turns each applied support event into
   * what it contributes to its touchpoint's windows. A ticket's first
   * AGENT_REPLIED applied after its first OPENED gives its first-response time
   * (reply - OPENED, at least 0). Tickets are dropped TICKET_TTL_MS after
   * their last event (checked once a day of stream time).
   */
  static final class TicketProcessor implements FixedKeyProcessor<String, Events.Event, Values.SupportObs> {
    static final String STORE = "support-tickets";
    private FixedKeyProcessorContext<String, Values.SupportObs> ctx;
    private KeyValueStore<String, Values.Ticket> tickets;

    @Override
    public void init(FixedKeyProcessorContext<String, Values.SupportObs> context) {
      ctx = context;
      tickets = context.getStateStore(STORE);
      context.schedule(Duration.ofDays(1), PunctuationType.STREAM_TIME, this::expire);
    }

    private void expire(long streamTime) {
      long before = streamTime - Rules.LATENESS_MS - Rules.TICKET_TTL_MS;
      List<String> gone = new ArrayList<>();
      try (KeyValueIterator<String, Values.Ticket> it = tickets.all()) {
        while (it.hasNext()) {
          KeyValue<String, Values.Ticket> kv = it.next();
          if (kv.value.lastEventAt < before)
            gone.add(kv.key);
        }
      }
      for (String k : gone)
        tickets.delete(k);
    }

    @Override
    public void process(FixedKeyRecord<String, Events.Event> record) {
      Events.Support ev = (Events.Support) record.value();
      long t = ev.occurredAt;
      Values.Ticket tk = tickets.get(ev.ticketId);
      if (tk == null)
        tk = new Values.Ticket();
      long fr = -1;
      switch (ev.kind) {
        case OPENED:
          if (tk.openedAt == Values.NONE)
            tk.openedAt = t;
          break;
        case AGENT_REPLIED:
          if (tk.firstReplyAt == Values.NONE && tk.openedAt != Values.NONE) {
            tk.firstReplyAt = t;
            fr = Math.max(0, t - tk.openedAt);
          }
          break;
        default:
          break;
      }
      if (t > tk.lastEventAt)
        tk.lastEventAt = t;
      tickets.put(ev.ticketId, tk);
      boolean opened = ev.kind == Events.SupportKind.OPENED;
      ctx.forward(record.withValue(new Values.SupportObs(opened, opened && ev.complaint, fr)));
    }
  }

  /**
   * Count rules (complaints) with processor-API sliding windows. A count over
   * a window without events is 0, a real value (it resolves a FIRING
   * complaints alert when a touchpoint goes quiet), which a windowed
   * aggregation cannot produce: it has no window without a record. So this
   * processor keeps per touchpoint the OPENED/complaint counts per step
   * bucket and, when the partition's watermark passes step boundaries T,
   * evaluates [T - L, T) for every touchpoint of the partition, in order of T,
   * before the event that moved the watermark is applied.
   */
  static final class CountRulesProcessor implements Processor<String, Values.SupportObs, String, String> {
    static final String STORE = "support-count-windows";
    static final String META = "support-count-meta";
    private final List<Rules.Rule> rules;
    private final long maxWindowMs;
    private ProcessorContext<String, String> ctx;
    private KeyValueStore<String, Values.CountState> store;
    private KeyValueStore<String, Long> meta;
    private long maxTime;
    private long through; // every boundary <= through has been evaluated
    private final Map<String, boolean[]> matches = new HashMap<>();

    CountRulesProcessor(List<Rules.Rule> rules) {
      this.rules = rules;
      long m = 0;
      for (Rules.Rule r : rules)
        m = Math.max(m, r.windowMs);
      this.maxWindowMs = m;
    }

    @Override
    public void init(ProcessorContext<String, String> context) {
      ctx = context;
      store = context.getStateStore(STORE);
      meta = context.getStateStore(META);
      Long m = meta.get("max_time");
      maxTime = m == null ? Values.NONE : m;
      Long t = meta.get("through");
      through = t == null ? Values.NONE : t;
    }

    private boolean[] matchesOf(String tp) {
      return matches.computeIfAbsent(tp, k -> {
        boolean[] b = new boolean[rules.size()];
        for (int i = 0; i < b.length; i++)
          b[i] = rules.get(i).matches(k);
        return b;
      });
    }

    @Override
    public void process(Record<String, Values.SupportObs> record) {
      long t = record.timestamp();
      if (maxTime == Values.NONE) {
        maxTime = t;
        through = Math.floorDiv(t - Rules.LATENESS_MS, Rules.STEP_MS) * Rules.STEP_MS;
        meta.put("max_time", maxTime);
        meta.put("through", through);
      } else if (t > maxTime) {
        maxTime = t;
        long last = Math.floorDiv(t - Rules.LATENESS_MS, Rules.STEP_MS) * Rules.STEP_MS;
        if (last > through) {
          evaluateAll(through, last);
          through = last;
          meta.put("through", through);
        }
        meta.put("max_time", maxTime);
      }
      Values.SupportObs obs = record.value();
      String tp = record.key();
      Values.CountState s = store.get(tp);
      boolean dirty = false;
      if (s == null) {
        s = new Values.CountState(rules.size());
        dirty = true;
      }
      if (obs.opened) {
        s.add(Math.floorDiv(t, Rules.STEP_MS), obs.complaint);
        dirty = true;
      }
      if (dirty)
        store.put(tp, s);
    }

    /** Evaluates every touchpoint at each boundary T with from < T <= to. */
    private void evaluateAll(long from, long to) {
      List<KeyValue<String, Values.CountState>> changed = new ArrayList<>();
      try (KeyValueIterator<String, Values.CountState> it = store.all()) {
        while (it.hasNext()) {
          KeyValue<String, Values.CountState> kv = it.next();
          if (evaluate(kv.key, kv.value, from, to))
            changed.add(kv);
        }
      }
      for (KeyValue<String, Values.CountState> kv : changed)
        store.put(kv.key, kv.value);
    }

    /** @returns whether the touchpoint's state changed. */
    private boolean evaluate(String tp, Values.CountState s, long from, long to) {
      boolean[] m = matchesOf(tp);
      boolean changed = false;
      for (long T = from + Rules.STEP_MS; T <= to; T += Rules.STEP_MS) {
        long endIdx = T / Rules.STEP_MS; // buckets [T - L, T) are indexes endIdx - L/step .. endIdx - 1
        boolean empty = true;
        boolean pending = false;
        for (int r = 0; r < rules.size(); r++) {
          if (!m[r])
            continue;
          Rules.Rule rule = rules.get(r);
          long startIdx = endIdx - rule.windowMs / Rules.STEP_MS;
          long opened = 0, complaints = 0;
          for (int i = 0; i < s.len; i++) {
            if (s.bucket[i] >= startIdx && s.bucket[i] < endIdx) {
              opened += s.opened[i];
              complaints += s.complaints[i];
            }
          }
          if (opened > 0)
            empty = false;
          double value = rule.metric == Rules.Metric.COMPLAINTS ? complaints : opened;
          Rules.State st = s.rules[r];
          byte phase = st.phase;
          int pend = st.pending;
          Rules.Step step = Rules.step(rule, st, value, opened);
          if (step != Rules.Step.HOLD) {
            Stats.alert(step);
            ctx.forward(new Record<>(tp, Rules.alertJson(rule, tp, step, T, value), T));
          }
          if (st.phase != phase || st.pending != pend)
            changed = true;
          if (st.phase == Rules.PENDING)
            pending = true;
        }
        // Buckets that can no longer enter a window of a later boundary.
        if (s.prune(endIdx + 1 - maxWindowMs / Rules.STEP_MS))
          changed = true;
        // A window that stays empty gives the same value at every later
        // boundary: nothing changes any more unless a count is pending.
        if (empty && s.len == 0 && !pending)
          break;
      }
      return changed;
    }
  }

  /** A window's value for one rule: undefined (NaN) or (value, samples). */
  interface MetricFn<A> {
    /** @returns false when the value is undefined. */
    boolean compute(Rules.Rule rule, A agg, double[] valueOut, long[] samplesOut);
  }

  /**
   * The alert state machine for rules on windowed aggregates: receives each
   * final window [T - L, T) of a touchpoint once, in order of T (suppressed
   * until the window closes), and keeps one state per (rule, touchpoint). A
   * window the aggregation never produced had no events: its ratio, mean or
   * percentile is undefined, which changes nothing.
   */
  static final class WindowRulesProcessor<A> implements Processor<Windowed<String>, A, String, String> {
    private final String storeName;
    private final List<Rules.Rule> rules;
    private final MetricFn<A> fn;
    private ProcessorContext<String, String> ctx;
    private KeyValueStore<String, Rules.State> states;
    private final Map<String, boolean[]> matches = new HashMap<>();
    private final double[] value = new double[1];
    private final long[] samples = new long[1];

    WindowRulesProcessor(String storeName, List<Rules.Rule> rules, MetricFn<A> fn) {
      this.storeName = storeName;
      this.rules = rules;
      this.fn = fn;
    }

    @Override
    public void init(ProcessorContext<String, String> context) {
      ctx = context;
      states = context.getStateStore(storeName);
    }

    @Override
    public void process(Record<Windowed<String>, A> record) {
      String tp = record.key().key();
      long end = record.key().window().end();
      boolean[] m = matches.computeIfAbsent(tp, k -> {
        boolean[] b = new boolean[rules.size()];
        for (int i = 0; i < b.length; i++)
          b[i] = rules.get(i).matches(k);
        return b;
      });
      for (int r = 0; r < rules.size(); r++) {
        if (!m[r])
          continue;
        Rules.Rule rule = rules.get(r);
        if (!fn.compute(rule, record.value(), value, samples) || samples[0] < rule.minSamples)
          continue;
        String key = rule.name + '\0' + tp;
        Rules.State st = states.get(key);
        if (st == null)
          st = new Rules.State();
        byte phase = st.phase;
        int pend = st.pending;
        Rules.Step step = Rules.step(rule, st, value[0], samples[0]);
        if (st.phase != phase || st.pending != pend)
          states.put(key, st);
        if (step != Rules.Step.HOLD) {
          Stats.alert(step);
          ctx.forward(new Record<>(tp, Rules.alertJson(rule, tp, step, end, value[0]), end));
        }
      }
    }
  }
}
