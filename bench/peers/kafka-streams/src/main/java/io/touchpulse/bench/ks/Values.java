package io.touchpulse.bench.ks;

import java.nio.ByteBuffer;
import java.util.Arrays;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/** Aggregates and state kept in stores, and their byte formats. */
final class Values {
  private Values() {}

  static final long NONE = Long.MIN_VALUE;

  // ---- varint helpers ----------------------------------------------------------

  static final class Out {
    byte[] buf = new byte[64];
    int n;

    void varlong(long v) {
      if (n + 10 > buf.length)
        buf = Arrays.copyOf(buf, buf.length * 2 + 10);
      long u = (v << 1) ^ (v >> 63);
      while ((u & ~0x7FL) != 0) {
        buf[n++] = (byte) ((u & 0x7F) | 0x80);
        u >>>= 7;
      }
      buf[n++] = (byte) u;
    }

    byte[] bytes() { return Arrays.copyOf(buf, n); }
  }

  static final class In {
    final byte[] buf;
    int p;

    In(byte[] buf) { this.buf = buf; }

    long varlong() {
      long u = 0;
      int shift = 0;
      byte b;
      do {
        b = buf[p++];
        u |= (long) (b & 0x7F) << shift;
        shift += 7;
      } while ((b & 0x80) != 0);
      return (u >>> 1) ^ -(u & 1);
    }

    boolean more() { return p < buf.length; }
  }

  // ---- windowed aggregates (DSL path) -------------------------------------------

  /** Feedback counts: csat 1..5, then nps promoters (9-10), passives (7-8), detractors (0-6). */
  static final class FeedbackAgg {
    final long[] c = new long[8];

    FeedbackAgg add(Events.Event e) {
      Events.Feedback f = (Events.Feedback) e;
      if (f.csat > 0)
        c[f.csat - 1]++;
      if (f.nps >= 0)
        c[f.nps >= 9 ? 5 : f.nps >= 7 ? 6 : 7]++;
      return this;
    }
  }

  static final Serde<FeedbackAgg> FEEDBACK_AGG = Serdes.serdeFrom((topic, a) -> {
    if (a == null)
      return null;
    Out o = new Out();
    for (long x : a.c)
      o.varlong(x);
    return o.bytes();
  }, (topic, b) -> {
    if (b == null)
      return null;
    In in = new In(b);
    FeedbackAgg a = new FeedbackAgg();
    for (int i = 0; i < a.c.length; i++)
      a.c[i] = in.varlong();
    return a;
  });

  /** Commerce counts: orders placed, returns requested. */
  static final class CommerceAgg {
    long orders, returns;

    CommerceAgg add(Events.Event e) {
      Events.Commerce c = (Events.Commerce) e;
      if (c.kind == Events.CommerceKind.ORDER_PLACED)
        orders++;
      else if (c.kind == Events.CommerceKind.RETURN_REQUESTED)
        returns++;
      return this;
    }
  }

  static final Serde<CommerceAgg> COMMERCE_AGG = Serdes.serdeFrom((topic, a) -> {
    if (a == null)
      return null;
    Out o = new Out();
    o.varlong(a.orders);
    o.varlong(a.returns);
    return o.bytes();
  }, (topic, b) -> {
    if (b == null)
      return null;
    In in = new In(b);
    CommerceAgg a = new CommerceAgg();
    a.orders = in.varlong();
    a.returns = in.varlong();
    return a;
  });

  /**
   * First-response times of a window: touchpulse's log-bucketed histogram
   * (values below 64 ms exact, above that 64 bins per power of two, a bin
   * reported as its midpoint; at most 0.78 % from any value in it), kept as
   * sorted (bin, count) pairs.
   */
  static final class Hist {
    static final int SUB_BITS = 6;
    static final int SUB = 1 << SUB_BITS;
    static final long MAX_VALUE = (1L << 40) - 1;

    int len;
    int[] bins = new int[4];
    long[] counts = new long[4];
    long total;

    static int bin(long v) {
      if (v > MAX_VALUE)
        v = MAX_VALUE;
      if (v < SUB)
        return (int) v;
      int msb = 63 - Long.numberOfLeadingZeros(v);
      int shift = msb - SUB_BITS;
      return (shift + 1) * SUB + (int) ((v >>> shift) & (SUB - 1));
    }

    static double binValue(int b) {
      if (b < SUB)
        return b;
      int group = b / SUB;
      int sub = b % SUB;
      long low = ((long) (SUB + sub)) << (group - 1);
      long width = 1L << (group - 1);
      return (double) low + (double) (width - 1) / 2.0;
    }

    void add(long v) {
      int b = bin(v);
      int i = Arrays.binarySearch(bins, 0, len, b);
      if (i >= 0) {
        counts[i]++;
      } else {
        i = -i - 1;
        if (len == bins.length) {
          bins = Arrays.copyOf(bins, len * 2);
          counts = Arrays.copyOf(counts, len * 2);
        }
        System.arraycopy(bins, i, bins, i + 1, len - i);
        System.arraycopy(counts, i, counts, i + 1, len - i);
        bins[i] = b;
        counts[i] = 1;
        len++;
      }
      total++;
    }

    /** The q-quantile with touchpulse's rank: the ceil(q * n)-th smallest observation's bin. */
    double quantile(double q) {
      long rank = (long) Math.ceil(q * (double) total);
      if (rank < 1)
        rank = 1;
      long seen = 0;
      for (int i = 0; i < len; i++) {
        seen += counts[i];
        if (seen >= rank)
          return binValue(bins[i]);
      }
      return binValue(bins[len - 1]);
    }
  }

  static final Serde<Hist> HIST = Serdes.serdeFrom((topic, h) -> {
    if (h == null)
      return null;
    Out o = new Out();
    o.varlong(h.len);
    for (int i = 0; i < h.len; i++) {
      o.varlong(h.bins[i]);
      o.varlong(h.counts[i]);
    }
    return o.bytes();
  }, (topic, b) -> {
    if (b == null)
      return null;
    In in = new In(b);
    Hist h = new Hist();
    int len = (int) in.varlong();
    h.bins = new int[Math.max(4, len)];
    h.counts = new long[Math.max(4, len)];
    h.len = len;
    for (int i = 0; i < len; i++) {
      h.bins[i] = (int) in.varlong();
      h.counts[i] = in.varlong();
      h.total += h.counts[i];
    }
    return h;
  });

  // ---- support: ticket state and per-event observations --------------------------

  /** Ticket state for first-response times (support.ticket_ttl after the last event). */
  static final class Ticket {
    long openedAt = NONE;
    long firstReplyAt = NONE;
    long lastEventAt = NONE;
  }

  static final Serde<Ticket> TICKET = Serdes.serdeFrom((topic, t) -> {
    if (t == null)
      return null;
    return ByteBuffer.allocate(24).putLong(t.openedAt).putLong(t.firstReplyAt).putLong(t.lastEventAt).array();
  }, (topic, b) -> {
    if (b == null)
      return null;
    ByteBuffer bb = ByteBuffer.wrap(b);
    Ticket t = new Ticket();
    t.openedAt = bb.getLong();
    t.firstReplyAt = bb.getLong();
    t.lastEventAt = bb.getLong();
    return t;
  });

  /** What one applied support event contributes to a touchpoint's windows. */
  static final class SupportObs {
    final boolean opened;
    final boolean complaint;
    final long firstResponseMs; // -1: not a ticket's first timed reply

    SupportObs(boolean opened, boolean complaint, long firstResponseMs) {
      this.opened = opened;
      this.complaint = complaint;
      this.firstResponseMs = firstResponseMs;
    }
  }

  static final Serde<SupportObs> SUPPORT_OBS = Serdes.serdeFrom((topic, o) -> {
    if (o == null)
      return null;
    return ByteBuffer.allocate(9).put((byte) ((o.opened ? 1 : 0) | (o.complaint ? 2 : 0)))
        .putLong(o.firstResponseMs).array();
  }, (topic, b) -> {
    if (b == null)
      return null;
    ByteBuffer bb = ByteBuffer.wrap(b);
    byte f = bb.get();
    return new SupportObs((f & 1) != 0, (f & 2) != 0, bb.getLong());
  });

  // ---- alert state ----------------------------------------------------------------

  static final Serde<Rules.State> RULE_STATE = Serdes.serdeFrom((topic, s) -> {
    if (s == null)
      return null;
    return ByteBuffer.allocate(5).put(s.phase).putInt(s.pending).array();
  }, (topic, b) -> {
    if (b == null)
      return null;
    ByteBuffer bb = ByteBuffer.wrap(b);
    Rules.State s = new Rules.State();
    s.phase = bb.get();
    s.pending = bb.getInt();
    return s;
  });

  /**
   * A support touchpoint's OPENED counts per step bucket for the count rules
   * (complaints), evaluated with processor-API windows, and those rules' states.
   */
  static final class CountState {
    int len;
    long[] bucket = new long[4]; // step index (occurred_at / step), ascending
    long[] opened = new long[4];
    long[] complaints = new long[4];
    Rules.State[] rules;

    CountState(int nRules) {
      rules = new Rules.State[nRules];
      for (int i = 0; i < nRules; i++)
        rules[i] = new Rules.State();
    }

    void add(long stepIndex, boolean complaint) {
      int i = Arrays.binarySearch(bucket, 0, len, stepIndex);
      if (i < 0) {
        i = -i - 1;
        if (len == bucket.length) {
          bucket = Arrays.copyOf(bucket, len * 2);
          opened = Arrays.copyOf(opened, len * 2);
          complaints = Arrays.copyOf(complaints, len * 2);
        }
        System.arraycopy(bucket, i, bucket, i + 1, len - i);
        System.arraycopy(opened, i, opened, i + 1, len - i);
        System.arraycopy(complaints, i, complaints, i + 1, len - i);
        bucket[i] = stepIndex;
        opened[i] = 0;
        complaints[i] = 0;
        len++;
      }
      opened[i]++;
      if (complaint)
        complaints[i]++;
    }

    /** Drops buckets below step index `keepFrom`. @returns whether any was dropped. */
    boolean prune(long keepFrom) {
      int k = 0;
      while (k < len && bucket[k] < keepFrom)
        k++;
      if (k == 0)
        return false;
      System.arraycopy(bucket, k, bucket, 0, len - k);
      System.arraycopy(opened, k, opened, 0, len - k);
      System.arraycopy(complaints, k, complaints, 0, len - k);
      len -= k;
      return true;
    }
  }

  static Serde<CountState> countStateSerde(int nRules) {
    return Serdes.serdeFrom((topic, s) -> {
      if (s == null)
        return null;
      Out o = new Out();
      for (Rules.State r : s.rules) {
        o.varlong(r.phase);
        o.varlong(r.pending);
      }
      o.varlong(s.len);
      for (int i = 0; i < s.len; i++) {
        o.varlong(s.bucket[i]);
        o.varlong(s.opened[i]);
        o.varlong(s.complaints[i]);
      }
      return o.bytes();
    }, (topic, b) -> {
      if (b == null)
        return null;
      In in = new In(b);
      CountState s = new CountState(nRules);
      for (Rules.State r : s.rules) {
        r.phase = (byte) in.varlong();
        r.pending = (int) in.varlong();
      }
      int len = (int) in.varlong();
      s.len = len;
      s.bucket = new long[Math.max(4, len)];
      s.opened = new long[Math.max(4, len)];
      s.complaints = new long[Math.max(4, len)];
      for (int i = 0; i < len; i++) {
        s.bucket[i] = in.varlong();
        s.opened[i] = in.varlong();
        s.complaints[i] = in.varlong();
      }
      return s;
    });
  }
}
