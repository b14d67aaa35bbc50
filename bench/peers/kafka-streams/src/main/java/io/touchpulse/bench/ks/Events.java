package io.touchpulse.bench.ks;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.regex.Pattern;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Input events: Avro binary with the schemas of schemas/*.avsc (plain, or in
 * the Confluent wire format: 0x00 and a 4-byte schema id first), decoded with
 * GenericDatumReader into the few fields the rules need, and checked the way
 * touchpulse checks them. A record that cannot be used becomes an invalid
 * event: counted, never applied, and it does not move the watermark.
 */
final class Events {
  private Events() {}

  static final long YEAR_2100_MS = 4102444800000L;
  private static final Pattern TOUCHPOINT = Pattern.compile("[A-Za-z0-9._:/-]{1,128}");

  /** Common part of every input event. */
  static class Event {
    final boolean valid;
    final String eventId;
    final long occurredAt;
    final String touchpoint;

    Event(boolean valid, String eventId, long occurredAt, String touchpoint) {
      this.valid = valid;
      this.eventId = eventId;
      this.occurredAt = occurredAt;
      this.touchpoint = touchpoint;
    }
  }

  static final Event INVALID = new Event(false, null, -1, null);

  static final class Feedback extends Event {
    final int csat; // -1 when absent
    final int nps; // -1 when absent

    Feedback(String eventId, long occurredAt, String touchpoint, int csat, int nps) {
      super(true, eventId, occurredAt, touchpoint);
      this.csat = csat;
      this.nps = nps;
    }
  }

  enum SupportKind { OPENED, AGENT_REPLIED, CUSTOMER_REPLIED, RESOLVED, REOPENED }

  static final class Support extends Event {
    final String ticketId;
    final SupportKind kind;
    final boolean complaint;

    Support(String eventId, long occurredAt, String touchpoint, String ticketId, SupportKind kind,
            boolean complaint) {
      super(true, eventId, occurredAt, touchpoint);
      this.ticketId = ticketId;
      this.kind = kind;
      this.complaint = complaint;
    }
  }

  enum CommerceKind { ORDER_PLACED, DELIVERED, RETURN_REQUESTED }

  static final class Commerce extends Event {
    final CommerceKind kind;

    Commerce(String eventId, long occurredAt, String touchpoint, CommerceKind kind) {
      super(true, eventId, occurredAt, touchpoint);
      this.kind = kind;
    }
  }

  static Schema loadSchema(String resource) {
    try (InputStream in = Events.class.getResourceAsStream("/" + resource)) {
      if (in == null)
        throw new IllegalStateException("schema " + resource + " is not on the classpath");
      return new Schema.Parser().parse(in);
    } catch (IOException e) {
      throw new IllegalStateException("schema " + resource + ": " + e.getMessage(), e);
    }
  }

  /**
   * Decoder of one input topic. Kafka Streams shares one deserializer among
   * its stream threads, so each thread keeps its own reader, decoder and
   * reused record.
   */
  abstract static class AvroEventDeserializer implements Deserializer<Event> {
    private final Schema schema;

    private final class PerThread {
      final GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(schema);
      BinaryDecoder decoder;
      GenericRecord reuse;
    }

    private final ThreadLocal<PerThread> local = ThreadLocal.withInitial(PerThread::new);

    AvroEventDeserializer(String resource) {
      this.schema = loadSchema(resource);
    }

    @Override
    public Event deserialize(String topic, byte[] data) {
      if (data == null || data.length == 0)
        return INVALID;
      int off = 0;
      if (data[0] == 0) { // Confluent framing (a plain record cannot start with an empty event_id)
        if (data.length < 5)
          return INVALID;
        off = 5;
      }
      PerThread t = local.get();
      try {
        t.decoder = DecoderFactory.get().binaryDecoder(data, off, data.length - off, t.decoder);
        t.reuse = t.reader.read(t.reuse, t.decoder);
        if (!t.decoder.isEnd())
          return INVALID; // trailing bytes
        GenericRecord r = t.reuse;
        String eventId = r.get(0).toString();
        long occurredAt = (Long) r.get(1);
        String touchpoint = r.get(2).toString();
        if (!idOk(eventId) || !TOUCHPOINT.matcher(touchpoint).matches())
          return INVALID;
        if (occurredAt < 0 || occurredAt >= YEAR_2100_MS)
          return INVALID;
        if (occurredAt > System.currentTimeMillis() + Rules.MAX_FUTURE_SKEW_MS)
          return INVALID;
        return decodeRest(r, eventId, occurredAt, touchpoint);
      } catch (IOException | RuntimeException e) {
        t.reuse = null;
        return INVALID;
      }
    }

    abstract Event decodeRest(GenericRecord r, String eventId, long occurredAt, String touchpoint);
  }

  static boolean idOk(String id) {
    int n = id.length();
    if (n == 0)
      return false;
    return n <= 32 || id.getBytes(StandardCharsets.UTF_8).length <= 128;
  }

  private static int score(Object v, int low, int high) {
    if (v == null)
      return -1;
    int x = (Integer) v;
    if (x < low || x > high)
      throw new IllegalArgumentException("out_of_range");
    return x;
  }

  static final class FeedbackDeserializer extends AvroEventDeserializer {
    FeedbackDeserializer() { super("feedback_event.avsc"); }

    @Override
    Event decodeRest(GenericRecord r, String eventId, long occurredAt, String touchpoint) {
      int csat = score(r.get("csat"), 1, 5);
      int nps = score(r.get("nps"), 0, 10);
      score(r.get("ces"), 1, 7);
      score(r.get("repurchase"), 0, 10);
      score(r.get("try_other"), 0, 10);
      Object comment = r.get("comment");
      if (comment != null && comment.toString().getBytes(StandardCharsets.UTF_8).length > 4096)
        return INVALID;
      return new Feedback(eventId, occurredAt, touchpoint, csat, nps);
    }
  }

  private static final SupportKind[] SUPPORT_KINDS = SupportKind.values();
  private static final CommerceKind[] COMMERCE_KINDS = CommerceKind.values();

  static final class SupportDeserializer extends AvroEventDeserializer {
    SupportDeserializer() { super("support_event.avsc"); }

    @Override
    Event decodeRest(GenericRecord r, String eventId, long occurredAt, String touchpoint) {
      String ticketId = r.get("ticket_id").toString();
      if (!idOk(ticketId))
        return INVALID;
      SupportKind kind = SUPPORT_KINDS[((org.apache.avro.generic.GenericEnumSymbol<?>) r.get("kind"))
          .getSchema().getEnumOrdinal(r.get("kind").toString())];
      return new Support(eventId, occurredAt, touchpoint, ticketId, kind, (Boolean) r.get("complaint"));
    }
  }

  static final class CommerceDeserializer extends AvroEventDeserializer {
    CommerceDeserializer() { super("commerce_event.avsc"); }

    @Override
    Event decodeRest(GenericRecord r, String eventId, long occurredAt, String touchpoint) {
      if (!idOk(r.get("order_id").toString()))
        return INVALID;
      CommerceKind kind = COMMERCE_KINDS[((org.apache.avro.generic.GenericEnumSymbol<?>) r.get("kind"))
          .getSchema().getEnumOrdinal(r.get("kind").toString())];
      return new Commerce(eventId, occurredAt, touchpoint, kind);
    }
  }

  /**
   * Event time is the value's occurred_at, not the Kafka record timestamp.
   * An invalid record keeps the partition's time (it is counted and dropped
   * downstream, never windowed).
   */
  static final class OccurredAtExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      Object v = record.value();
      if (v instanceof Event && ((Event) v).valid)
        return ((Event) v).occurredAt;
      return Math.max(partitionTime, 0L);
    }
  }
}
