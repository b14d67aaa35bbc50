/*
 * gen_corpus.c -- writes the generated part of the seed corpora:
 *   corpus/decode_<schema>/  valid records of each schema, encoded by Avro-C
 *                            (tests/fixtures/avro_ref.h), plain and behind a
 *                            Confluent header, including one of maximal size
 *   corpus/decode_diff/      choice streams for fuzz_decode_diff
 * The other corpora (configuration, rules and durations, HTTP) are written
 * by hand and live beside these. Deterministic: the same files every run.
 *
 *   scripts/fuzz.sh corpus     rebuilds this and rewrites those directories
 */
#include <errno.h>
#include <sys/stat.h>

#include "fixtures/avro_ref.h"
#include "fuzz_common.h"
#include "touchpulse/decode.h"
#include "touchpulse/encode.h"

#define RECORDS 12
#define FRAMED 6
#define MAX_SEED_BYTES 600

static ref_t ref;

static void write_file(const char *dir, const char *name, const void *buf,
                       size_t len) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *fp = fopen(path, "wb");
  FUZZ_CHECK(fp != NULL, "cannot write %s: %s", path, strerror(errno));
  FUZZ_CHECK(fwrite(buf, 1, len, fp) == len, "short write to %s", path);
  FUZZ_CHECK(fclose(fp) == 0, "cannot close %s", path);
}

static void make_dir(const char *path) {
  FUZZ_CHECK(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", path,
             strerror(errno));
}

static void decode_seeds(const char *root, tp_source_t src, uint64_t seed) {
  static gen_buf_t gb;
  static uint8_t buf[TP_COMMENT_MAX + 1024];
  char dir[1024], name[64];
  rng_t rng = {seed};
  snprintf(dir, sizeof(dir), "%s/decode_%s", root, tp_source_name(src));
  make_dir(dir);
  for (int i = 0; i < RECORDS; i++) {
    tp_event_t ev;
    size_t n;
    do {
      gen_event(&rng, src, &gb, &ev);
      n = ref_encode(&ref, &ev, buf + TP_CONFLUENT_HEADER_SIZE,
                     sizeof(buf) - TP_CONFLUENT_HEADER_SIZE);
    } while (n > MAX_SEED_BYTES);
    snprintf(name, sizeof(name), "valid-plain-%02d", i);
    write_file(dir, name, buf + TP_CONFLUENT_HEADER_SIZE, n);
    if (i < FRAMED) {
      tp_encode_confluent_header((uint32_t)rng_next(&rng), buf,
                                 TP_CONFLUENT_HEADER_SIZE);
      snprintf(name, sizeof(name), "valid-framed-%02d", i);
      write_file(dir, name, buf, n + TP_CONFLUENT_HEADER_SIZE);
    }
  }

  /* Every string at its longest, every optional field present. */
  static char id[TP_ID_MAX], tp[TP_TOUCHPOINT_MAX], text[TP_COMMENT_MAX];
  memset(id, 'i', sizeof(id));
  memset(tp, 't', sizeof(tp));
  memset(text, 'c', sizeof(text));
  tp_event_t ev = {.source = src,
                   .event_id = {id, TP_ID_MAX},
                   .occurred_at = INT64_MAX,
                   .touchpoint = {tp, TP_TOUCHPOINT_MAX},
                   .stage = TP_STAGE_UNKNOWN,
                   .channel = TP_CHANNEL_OTHER};
  switch (src) {
  case TP_SRC_FEEDBACK:
    ev.feedback.customer_id = (tp_str_t){id, TP_ID_MAX};
    ev.feedback.csat = 5;
    ev.feedback.nps = 10;
    ev.feedback.ces = 7;
    ev.feedback.repurchase = 10;
    ev.feedback.try_other = 10;
    ev.feedback.comment = (tp_str_t){text, TP_COMMENT_MAX};
    break;
  case TP_SRC_SUPPORT:
    ev.support.ticket_id = (tp_str_t){id, TP_ID_MAX};
    ev.support.kind = TP_SUPPORT_REOPENED;
    ev.support.complaint = true;
    break;
  case TP_SRC_COMMERCE:
    ev.commerce.order_id = (tp_str_t){id, TP_ID_MAX};
    ev.commerce.kind = TP_COMMERCE_RETURN_REQUESTED;
    ev.commerce.has_amount = true;
    ev.commerce.amount_minor = INT64_MIN;
    ev.commerce.reason = (tp_str_t){text, 200};
    break;
  }
  size_t n = ref_encode(&ref, &ev, buf + TP_CONFLUENT_HEADER_SIZE,
                        sizeof(buf) - TP_CONFLUENT_HEADER_SIZE);
  tp_encode_confluent_header(42, buf, TP_CONFLUENT_HEADER_SIZE);
  write_file(dir, "valid-framed-largest", buf, n + TP_CONFLUENT_HEADER_SIZE);

  /* One byte over SPEC's comment limit (Avro-C's side of avro_ref.h refuses
   * to write it, tp_encode_event() writes values unchecked). */
  if (src == TP_SRC_FEEDBACK) {
    static char longer[TP_COMMENT_MAX + 1];
    memset(longer, 'c', sizeof(longer));
    ev.feedback.comment = (tp_str_t){longer, TP_COMMENT_MAX + 1};
    n = tp_encode_event(&ev, buf, sizeof(buf));
    FUZZ_CHECK(n > 0, "tp_encode_event failed");
    write_file(dir, "invalid-comment-too-long", buf, n);
  }
}

static void diff_seeds(const char *root) {
  char dir[1024], name[64];
  uint8_t buf[96];
  uint64_t state = 7;
  snprintf(dir, sizeof(dir), "%s/decode_diff", root);
  make_dir(dir);
  for (int i = 0; i < 8; i++) {
    for (size_t j = 0; j < sizeof(buf); j++)
      buf[j] = (uint8_t)fuzz_mix(&state);
    snprintf(name, sizeof(name), "choices-%02d", i);
    write_file(dir, name, buf, sizeof(buf));
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_ROOT\n", argv[0]);
    return 2;
  }
  make_dir(argv[1]);
  ref_init(&ref);
  decode_seeds(argv[1], TP_SRC_FEEDBACK, 101);
  decode_seeds(argv[1], TP_SRC_SUPPORT, 102);
  decode_seeds(argv[1], TP_SRC_COMMERCE, 103);
  diff_seeds(argv[1]);
  ref_close(&ref);
  return 0;
}
