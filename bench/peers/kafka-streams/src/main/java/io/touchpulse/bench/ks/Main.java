package io.touchpulse.bench.ks;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.KeyValueBytesStoreSupplier;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;

/**
 * Kafka Streams peer of touchpulse for the benchmark: the rules of Rules.ALL
 * with touchpulse's window and emit-on-close semantics.
 *
 * One sub-topology per input topic (so stream time, watermark, dedup and all
 * state are per input partition):
 *
 *   source (occurred_at as event time) -> DedupLateFilter
 *     -> [support only] TicketProcessor -> CountRulesProcessor (complaints) -> alerts
 *     -> per rule window length L: hopping windows (size L, advance 1m, grace 30s)
 *        -> aggregate -> suppress(untilWindowCloses) -> WindowRulesProcessor -> alerts
 *
 * Usage: Main MODE BOOTSTRAP APP_ID EXPECTED_RECORDS [ALERT_TOPIC] [--threads N]
 *            [--feedback-topic T] [--support-topic T] [--commerce-topic T]
 * MODE: default (RocksDB stores with changelogs: the Kafka Streams defaults)
 *       or inmemory (in-memory stores, changelogs disabled).
 */
public final class Main {
  private Main() {}

  static boolean inMemory;

  static void usage(String why) {
    System.err.println("kafka-streams peer: " + why);
    System.err.println("usage: run.sh MODE BOOTSTRAP APP_ID EXPECTED_RECORDS [ALERT_TOPIC] [--threads N]"
        + " [--feedback-topic T] [--support-topic T] [--commerce-topic T]\n"
        + "  MODE: default | inmemory");
    System.exit(2);
  }

  public static void main(String[] argv) throws Exception {
    List<String> pos = new ArrayList<>();
    Map<String, String> opt = new LinkedHashMap<>();
    opt.put("--threads", "2");
    opt.put("--feedback-topic", "cx.feedback");
    opt.put("--support-topic", "cx.support");
    opt.put("--commerce-topic", "cx.commerce");
    for (int i = 0; i < argv.length; i++) {
      if (argv[i].startsWith("--")) {
        if (!opt.containsKey(argv[i]) || i + 1 >= argv.length)
          usage("bad option " + argv[i]);
        opt.put(argv[i], argv[++i]);
      } else {
        pos.add(argv[i]);
      }
    }
    if (pos.size() < 4 || pos.size() > 5)
      usage("wrong number of arguments");
    String mode = pos.get(0);
    if (!mode.equals("default") && !mode.equals("inmemory"))
      usage("MODE must be default or inmemory");
    inMemory = mode.equals("inmemory");
    String bootstrap = pos.get(1);
    String appId = pos.get(2);
    long expected = Long.parseLong(pos.get(3));
    String alertTopic = pos.size() == 5 ? pos.get(4) : "bench.ks.alerts";
    int threads = Integer.parseInt(opt.get("--threads"));

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);

    ensureTopic(bootstrap, alertTopic);
    Topology topology = build(opt.get("--feedback-topic"), opt.get("--support-topic"),
        opt.get("--commerce-topic"), alertTopic);
    if (System.getenv("KS_PEER_DESCRIBE") != null)
      System.err.println(topology.describe());

    Processors.Stats.expected = expected;
    KafkaStreams streams = new KafkaStreams(topology, props);
    streams.setUncaughtExceptionHandler(e -> {
      System.err.println("kafka-streams peer: stream thread failed: " + e);
      e.printStackTrace();
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.cleanUp(); // a benchmark run starts from empty local state
    Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(30))));
    streams.start();

    // Wait until EXPECTED_RECORDS input records have been processed (or the app failed).
    while (!Processors.Stats.reached.await(100, TimeUnit.MILLISECONDS)) {
      KafkaStreams.State s = streams.state();
      if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING
          || s == KafkaStreams.State.PENDING_ERROR) {
        System.err.println("kafka-streams peer: streams state " + s + " after "
            + Processors.Stats.processed.get() + " records");
        System.exit(1);
      }
    }
    // Closing commits: the record caches are flushed, so the windows they
    // still hold reach suppress and the rules, and the producer is flushed.
    long closeStart = System.currentTimeMillis();
    boolean closed = streams.close(Duration.ofSeconds(120));
    long closedMs = System.currentTimeMillis();
    System.err.printf("kafka-streams peer: closed=%s in %d ms; invalid=%d late=%d duplicates=%d%n",
        closed, closedMs - closeStart, Processors.Stats.invalid.get(),
        Processors.Stats.late.get(), Processors.Stats.duplicates.get());
    long firing = Processors.Stats.firing.get();
    long resolved = Processors.Stats.resolved.get();
    System.out.printf("{\"contestant\":\"kafka-streams-%s\",\"records\":%d,\"first_ms\":%d,\"last_ms\":%d,"
            + "\"alerts\":%d,\"alerts_firing\":%d,\"alerts_resolved\":%d,\"closed_ms\":%d}%n",
        mode, Processors.Stats.processed.get(), Processors.Stats.firstMs.get(),
        Processors.Stats.lastMs.get(), firing + resolved, firing, resolved, closedMs);
    System.out.flush();
    System.exit(closed ? 0 : 1);
  }

  static void ensureTopic(String bootstrap, String topic) throws Exception {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(p)) {
      Set<String> names = admin.listTopics().names().get(30, TimeUnit.SECONDS);
      if (!names.contains(topic))
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
    }
  }

  // ---- stores: the two modes ---------------------------------------------------------

  static <K, V> StoreBuilder<KeyValueStore<K, V>> kvStore(String name, Serde<K> k, Serde<V> v) {
    if (inMemory)
      return Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(name), k, v).withLoggingDisabled();
    KeyValueBytesStoreSupplier s = Stores.persistentKeyValueStore(name);
    return Stores.keyValueStoreBuilder(s, k, v).withCachingEnabled();
  }

  static <A> Materialized<String, A, WindowStore<Bytes, byte[]>> windowStore(String name, Serde<A> serde,
                                                                             long windowMs) {
    Materialized<String, A, WindowStore<Bytes, byte[]>> m;
    if (inMemory) {
      Duration size = Duration.ofMillis(windowMs);
      m = Materialized.<String, A>as(Stores.inMemoryWindowStore(name, size.plusMillis(Rules.LATENESS_MS), size,
          false)).withLoggingDisabled();
    } else {
      m = Materialized.as(name);
    }
    return m.withKeySerde(Serdes.String()).withValueSerde(serde);
  }

  static Suppressed<org.apache.kafka.streams.kstream.Windowed<?>> untilClosed(String name) {
    Suppressed.StrictBufferConfig buf = Suppressed.BufferConfig.unbounded();
    if (inMemory)
      buf = buf.withLoggingDisabled();
    return Suppressed.untilWindowCloses(buf).withName(name);
  }

  // ---- topology ------------------------------------------------------------------------

  static Topology build(String feedbackTopic, String supportTopic, String commerceTopic, String alertTopic) {
    for (Rules.Rule r : Rules.ALL) {
      if (r.metric.count && r.metric.source != Rules.Source.SUPPORT)
        throw new IllegalStateException("rule " + r.name + ": count metrics are implemented for support only");
      if (r.windowMs % Rules.STEP_MS != 0)
        throw new IllegalStateException("rule " + r.name + ": window is not a multiple of the step");
    }
    StreamsBuilder b = new StreamsBuilder();
    Produced<String, String> out = Produced.with(Serdes.String(), Serdes.String());

    KStream<String, Events.Event> feedback = source(b, Rules.Source.FEEDBACK, feedbackTopic,
        new Events.FeedbackDeserializer());
    windowedRules(b, feedback, Rules.Source.FEEDBACK, Values.FeedbackAgg::new,
        (k, e, a) -> a.add(e), Values.FEEDBACK_AGG, Main::feedbackMetric, alertTopic, out);

    KStream<String, Events.Event> commerce = source(b, Rules.Source.COMMERCE, commerceTopic,
        new Events.CommerceDeserializer());
    windowedRules(b, commerce, Rules.Source.COMMERCE, Values.CommerceAgg::new,
        (k, e, a) -> a.add(e), Values.COMMERCE_AGG, Main::commerceMetric, alertTopic, out);

    KStream<String, Events.Event> support = source(b, Rules.Source.SUPPORT, supportTopic,
        new Events.SupportDeserializer());
    b.addStateStore(kvStore(Processors.TicketProcessor.STORE, Serdes.String(), Values.TICKET));
    KStream<String, Values.SupportObs> obs = support.processValues(Processors.TicketProcessor::new,
        Named.as("support-tickets-proc"), Processors.TicketProcessor.STORE);
    List<Rules.Rule> countRules = new ArrayList<>();
    for (Rules.Rule r : Rules.ALL)
      if (r.metric.source == Rules.Source.SUPPORT && r.metric.count)
        countRules.add(r);
    if (!countRules.isEmpty()) {
      b.addStateStore(kvStore(Processors.CountRulesProcessor.STORE, Serdes.String(),
          Values.countStateSerde(countRules.size())));
      b.addStateStore(kvStore(Processors.CountRulesProcessor.META, Serdes.String(), Serdes.Long()));
      obs.process(() -> new Processors.CountRulesProcessor(countRules), Named.as("support-count-rules"),
              Processors.CountRulesProcessor.STORE, Processors.CountRulesProcessor.META)
          .to(alertTopic, out);
    }
    windowedRules(b, obs, Rules.Source.SUPPORT, Values.Hist::new, (k, o, h) -> {
      if (o.firstResponseMs >= 0)
        h.add(o.firstResponseMs);
      return h;
    }, Values.HIST, Main::supportMetric, alertTopic, out);
    return b.build();
  }

  static KStream<String, Events.Event> source(StreamsBuilder b, Rules.Source src, String topic,
                                              Events.AvroEventDeserializer deser) {
    Serde<Events.Event> serde = Serdes.serdeFrom((t, v) -> {
      throw new UnsupportedOperationException("input events are never written");
    }, deser);
    b.addStateStore(kvStore(Processors.DedupLateFilter.ids(src), Serdes.String(), Serdes.Long()));
    b.addStateStore(kvStore(Processors.DedupLateFilter.ring(src), Serdes.Long(), Serdes.String()));
    b.addStateStore(kvStore(Processors.DedupLateFilter.meta(src), Serdes.String(), Serdes.Long()));
    String name = src.name().toLowerCase();
    return b.stream(topic, Consumed.with(Serdes.String(), serde)
            .withTimestampExtractor(new Events.OccurredAtExtractor()).withName(name + "-source"))
        .processValues(() -> new Processors.DedupLateFilter(src), Named.as(name + "-dedup-late"),
            Processors.DedupLateFilter.ids(src), Processors.DedupLateFilter.ring(src),
            Processors.DedupLateFilter.meta(src));
  }

  /**
   * For each window length of the source's (non-count) rules: a hopping
   * window aggregation [T - L, T) at every step boundary T, emitted once when
   * the window closes (stream time >= T + grace, i.e. the watermark reaches T),
   * then the rule state machine.
   */
  static <V, A> void windowedRules(StreamsBuilder b, KStream<String, V> in, Rules.Source src,
                                   org.apache.kafka.streams.kstream.Initializer<A> init,
                                   org.apache.kafka.streams.kstream.Aggregator<String, V, A> agg, Serde<A> serde,
                                   Processors.MetricFn<A> fn, String alertTopic, Produced<String, String> out) {
    Map<Long, List<Rules.Rule>> byWindow = new LinkedHashMap<>();
    for (Rules.Rule r : Rules.ALL)
      if (r.metric.source == src && !r.metric.count)
        byWindow.computeIfAbsent(r.windowMs, k -> new ArrayList<>()).add(r);
    String s = src.name().toLowerCase();
    for (Map.Entry<Long, List<Rules.Rule>> e : byWindow.entrySet()) {
      long windowMs = e.getKey();
      List<Rules.Rule> rules = e.getValue();
      String name = s + "-" + (windowMs / 60_000) + "m";
      String stateStore = name + "-rule-states";
      b.addStateStore(kvStore(stateStore, Serdes.String(), Values.RULE_STATE));
      Supplier<Processors.WindowRulesProcessor<A>> proc =
          () -> new Processors.WindowRulesProcessor<>(stateStore, rules, fn);
      in.groupByKey(Grouped.keySerde(Serdes.String()))
          .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(windowMs), Duration.ofMillis(Rules.LATENESS_MS))
              .advanceBy(Duration.ofMillis(Rules.STEP_MS)))
          .aggregate(init, agg, Named.as(name + "-aggregate"), windowStore(name + "-windows", serde, windowMs))
          .suppress(untilClosed(name + "-until-closed"))
          .toStream(Named.as(name + "-final"))
          .process(proc::get, Named.as(name + "-rules"), stateStore)
          .to(alertTopic, out);
    }
  }

  // ---- metric values (touchpulse's definitions) -------------------------------------------

  static boolean feedbackMetric(Rules.Rule rule, Values.FeedbackAgg a, double[] v, long[] n) {
    long[] c = a.c;
    switch (rule.metric) {
      case CSAT_MEAN: {
        long cnt = c[0] + c[1] + c[2] + c[3] + c[4];
        if (cnt == 0)
          return false;
        double sum = 0;
        for (int i = 0; i < 5; i++)
          sum += (double) (i + 1) * (double) c[i];
        v[0] = 1 * sum / (double) cnt;
        n[0] = cnt;
        return true;
      }
      case NPS: {
        long cnt = c[5] + c[6] + c[7];
        if (cnt == 0)
          return false;
        v[0] = 100 * ((double) c[5] - (double) c[7]) / (double) cnt;
        n[0] = cnt;
        return true;
      }
      default:
        throw new IllegalStateException("not a feedback metric: " + rule.metric);
    }
  }

  static boolean commerceMetric(Rules.Rule rule, Values.CommerceAgg a, double[] v, long[] n) {
    if (rule.metric != Rules.Metric.RETURN_PCT)
      throw new IllegalStateException("not a commerce metric: " + rule.metric);
    if (a.orders == 0)
      return false;
    v[0] = 100 * (double) a.returns / (double) a.orders;
    n[0] = a.orders;
    return true;
  }

  static boolean supportMetric(Rules.Rule rule, Values.Hist h, double[] v, long[] n) {
    if (rule.metric != Rules.Metric.FIRST_RESPONSE_MS_P90)
      throw new IllegalStateException("not a windowed support metric: " + rule.metric);
    if (h.total == 0)
      return false;
    v[0] = h.quantile(0.90);
    n[0] = h.total;
    return true;
  }
}
