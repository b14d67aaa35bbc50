/*
 * publish.c -- the idempotent producer for alerts and dead letters. See
 * publish.h for the delivery and backpressure contract.
 */
#include "touchpulse/publish.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "touchpulse/log.h"

/* A librdkafka producer and the topic handles it produces through, held
 * for the producer's life. */
typedef struct {
  rd_kafka_t *rk;
  rd_kafka_topic_t *alerts, *deadletter;
} producer_t;

struct tp_publisher_s {
  producer_t k; /* replaced as a whole (renew()) */
  const tp_config_t *cfg;
  bool transactional;
  _Atomic uint64_t pending; /* produced since the transaction began / last flush */
  _Atomic bool stopped;
  _Atomic bool failed;
  _Atomic uint64_t failed_since_flush;
  tp_publisher_stats_t stats;
  tp_kstats_t *kstats;
  _Atomic bool doomed; /* a message was refused by an abortable transaction */
  bool committing;      /* commit_transaction timed out and must be resumed */
  _Atomic bool has_failure;
  char failure[640]; /* why the producer failed, written once before has_failure */
  char txn_id[512];  /* transactional.id, when transactional */
  unsigned renewals; /* producers replaced since the last commit (renew()) */
  /* Staging (tp_publisher_stage_begin()): stage is read by the workers
   * without the lock, changed by the coordinator under it. */
  _Atomic int stage;          /* STAGE_* */
  pthread_mutex_t stage_lock; /* the list, and the waits for room in it */
  pthread_cond_t stage_room;  /* signalled when stage changes, or on stop */
  struct staged_s *staged_head, **staged_tail;
  size_t staged_bytes;
};

enum { STAGE_OFF, STAGE_ON, STAGE_DROP };

static void staged_free_all(tp_publisher_t *pub);

/* What staging holds at most: past it, a worker waits for the commit. */
#define STAGE_MAX_BYTES ((size_t)64 << 20)

/* A message produced while staging: an alert, or a dead letter with its
 * source record's coordinates. The pointers point into data. */
typedef struct staged_s {
  struct staged_s *next;
  void *kind; /* KIND_ALERT or KIND_DEADLETTER */
  const char *key, *value, *error, *source_topic;
  size_t key_len, value_len, size;
  int32_t partition;
  int64_t offset;
  char data[];
} staged_t;

/* Message opaques tell the delivery report which counters to bump. */
#define KIND_ALERT ((void *)1)
#define KIND_DEADLETTER ((void *)2)

/*
 * Properties that only one client type understands. librdkafka warns about
 * the other type's properties, so each client gets only its own and the
 * shared ones (bootstrap.servers, security.*, sasl.*, ssl.*, client.id...).
 */
static const char *const consumer_only[] = {
    "group.id", "group.instance.id", "partition.assignment.strategy", "session.timeout.ms",
    "heartbeat.interval.ms", "group.protocol.type", "coordinator.query.interval.ms",
    "max.poll.interval.ms", "enable.auto.commit", "auto.commit.interval.ms",
    "enable.auto.offset.store", "queued.min.messages", "queued.max.messages.kbytes",
    "fetch.wait.max.ms", "fetch.message.max.bytes", "max.partition.fetch.bytes",
    "fetch.max.bytes", "fetch.min.bytes", "fetch.error.backoff.ms", "isolation.level",
    "enable.partition.eof", "check.crcs", "auto.offset.reset", "consume.callback.max.messages",
    "offset.store.method", NULL};
static const char *const producer_only[] = {
    "transactional.id", "transaction.timeout.ms", "enable.idempotence",
    "enable.gapless.guarantee", "queue.buffering.max.messages", "queue.buffering.max.kbytes",
    "queue.buffering.max.ms", "linger.ms", "message.send.max.retries", "retries",
    "retry.backoff.ms", "queue.buffering.backpressure.threshold", "compression.codec",
    "compression.type", "batch.num.messages", "batch.size", "delivery.report.only.error",
    "request.required.acks", "acks", "request.timeout.ms", "message.timeout.ms",
    "delivery.timeout.ms", "partitioner", "compression.level", "sticky.partitioning.linger.ms",
    NULL};

static bool listed(const char *const *list, const char *key) {
  for (size_t i = 0; list[i]; i++)
    if (strcmp(list[i], key) == 0)
      return true;
  return false;
}

tp_err_t tp__kafka_conf_apply(rd_kafka_conf_t *conf, const tp_config_t *cfg, bool producer,
                              char *errstr, size_t errstr_size) {
  for (size_t i = 0; i < cfg->n_kafka; i++) {
    const tp_kv_t *kv = &cfg->kafka[i];
    if (listed(producer ? consumer_only : producer_only, kv->key))
      continue;
    char err[256];
    if (rd_kafka_conf_set(conf, kv->key, kv->value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      snprintf(errstr, errstr_size, "kafka.%s: %s", kv->key, err);
      return TP_ECONFIG;
    }
  }
  return TP_OK;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
  (void)rk;
  tp_publisher_t *pub = opaque;
  bool alert = msg->_private == KIND_ALERT;
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    atomic_fetch_add(alert ? &pub->stats.alerts_delivered : &pub->stats.deadletters_delivered, 1);
    return;
  }
  atomic_fetch_add(alert ? &pub->stats.alerts_failed : &pub->stats.deadletters_failed, 1);
  if (pub->transactional) {
    /* The commit of the transaction reports it and decides: abort (and
     * rewind) or retry. Purged messages of an aborted transaction land here
     * too. */
    tp_log_warn("delivery of %s to %s failed: %s", alert ? "an alert" : "a dead letter",
                rd_kafka_topic_name(msg->rkt), rd_kafka_err2str(msg->err));
    return;
  }
  atomic_fetch_add(&pub->failed_since_flush, 1);
  atomic_store(&pub->failed, true);
  tp_log_error("delivery of %s to %s failed: %s", alert ? "an alert" : "a dead letter",
               rd_kafka_topic_name(msg->rkt), rd_kafka_err2str(msg->err));
}

void tp__kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  /* librdkafka logs with syslog levels. */
  tp_log(level <= 3 ? TP_LOG_ERROR : level <= 4 ? TP_LOG_WARN : level <= 6 ? TP_LOG_INFO
                                                                            : TP_LOG_DEBUG,
         "%s %s: %s", rd_kafka_name(rk), fac, buf);
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk;
  tp_kstats_update(((tp_publisher_t *)opaque)->kstats, json, len);
  return 0; /* librdkafka frees json */
}

void tp__kafka_auth_message(const tp_config_t *cfg, const char *client, const char *reason,
                            char *out, size_t size) {
  const char *mech = tp_config_kafka_get(cfg, "sasl.mechanism");
  if (mech == NULL)
    mech = tp_config_kafka_get(cfg, "sasl.mechanisms");
  bool scram = mech != NULL && strncasecmp(mech, "SCRAM", 5) == 0;
  snprintf(out, size, "Kafka authentication failed (%s%s%s): %s%s", client, mech ? ", " : "",
           mech ? mech : "", reason,
           scram && rd_kafka_version() < 0x020601ff
               ? "; note: librdkafka < 2.6.1 cannot complete SCRAM with Kafka 4.x brokers "
                 "(librdkafka#4895), whatever the password"
               : "");
}

/* The first reason the producer failed for good: kept for the pipeline's
 * error message. */
static void fail(tp_publisher_t *pub, const char *why) {
  if (!atomic_load(&pub->has_failure)) {
    snprintf(pub->failure, sizeof(pub->failure), "%s", why);
    atomic_store(&pub->has_failure, true);
  }
  atomic_store(&pub->failed, true);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  tp_publisher_t *pub = opaque;
  char why[640];
  if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    snprintf(why, sizeof(why), "producer fatal error: %s", reason);
    tp_log_error("%s", why);
    fail(pub, why);
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
    /* librdkafka would retry forever: wrong credentials do not heal. */
    tp__kafka_auth_message(pub->cfg, "producer", reason, why, sizeof(why));
    tp_log_error("%s", why);
    fail(pub, why);
    return;
  }
  tp_log_warn("producer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

void tp_publisher_default_txn_id(const tp_config_t *cfg, char *out, size_t size) {
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const char *group = tp_config_kafka_get(cfg, "group.id");
  snprintf(out, size, "%s-%s-%d", group ? group : "touchpulse", host, (int)getpid());
}

/* Destroys a producer, dropping whatever it still holds. */
static void close_producer(producer_t *p) {
  if (p->alerts)
    rd_kafka_topic_destroy(p->alerts);
  if (p->deadletter)
    rd_kafka_topic_destroy(p->deadletter);
  if (p->rk)
    rd_kafka_destroy(p->rk);
  *p = (producer_t){0};
}

/*
 * Creates a librdkafka producer for pub from pub->cfg (pub->txn_id set when
 * transactional) into *out, all or nothing. Called again to replace a
 * producer that librdkafka declared unusable (renew()).
 */
static tp_err_t open_producer(tp_publisher_t *pub, producer_t *out, char *errstr,
                              size_t errstr_size) {
  const tp_config_t *cfg = pub->cfg;
  producer_t p = {0};
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char err[256];
  /* Low latency for alerts by default; the kafka section may override. A
   * crashed instance's open transaction holds back read_committed readers
   * until it times out, so keep that short too. */
  rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
  rd_kafka_conf_set(conf, "client.id", "touchpulse", err, sizeof(err));
  rd_kafka_conf_set(conf, "statistics.interval.ms", TP_KAFKA_STATS_INTERVAL_MS, err, sizeof(err));
  /* A bounded queue: when the brokers do not take alerts and dead letters,
   * workers wait for room (backpressure) instead of buffering up to
   * librdkafka's default of 1 GiB of dead-lettered records. */
  rd_kafka_conf_set(conf, "queue.buffering.max.kbytes", "65536", err, sizeof(err));
  if (pub->transactional)
    rd_kafka_conf_set(conf, "transaction.timeout.ms", "10000", err, sizeof(err));
  if (tp__kafka_conf_apply(conf, cfg, true, errstr, errstr_size) != TP_OK)
    goto err;
  if (pub->transactional &&
      rd_kafka_conf_set(conf, "transactional.id", pub->txn_id, err, sizeof(err)) !=
          RD_KAFKA_CONF_OK) {
    snprintf(errstr, errstr_size, "producer: %s", err);
    goto err;
  }
  if (rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)) !=
      RD_KAFKA_CONF_OK) {
    snprintf(errstr, errstr_size, "producer: %s", err);
    goto err;
  }
  rd_kafka_conf_set_opaque(conf, pub);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_log_cb(conf, tp__kafka_log_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  p.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (p.rk == NULL) {
    snprintf(errstr, errstr_size, "producer: %s", err);
    goto err;
  }
  p.alerts = rd_kafka_topic_new(p.rk, cfg->topics[TP_TOPIC_ALERTS], NULL);
  p.deadletter = rd_kafka_topic_new(p.rk, cfg->topics[TP_TOPIC_DEADLETTER], NULL);
  if (p.alerts == NULL || p.deadletter == NULL) {
    snprintf(errstr, errstr_size, "producer: %s", rd_kafka_err2str(rd_kafka_last_error()));
    close_producer(&p);
    return TP_EKAFKA;
  }
  *out = p;
  return TP_OK;
err:
  rd_kafka_conf_destroy(conf);
  return TP_ECONFIG;
}

tp_publisher_t *tp_publisher_new(const tp_config_t *cfg, char *errstr, size_t errstr_size) {
  tp_publisher_t *pub = tp_calloc(1, sizeof(*pub));
  if (pub == NULL) {
    snprintf(errstr, errstr_size, "producer: out of memory");
    return NULL;
  }
  pub->cfg = cfg;
  pthread_mutex_init(&pub->stage_lock, NULL);
  pthread_cond_init(&pub->stage_room, NULL);
  pub->staged_tail = &pub->staged_head;
  pub->kstats = tp_kstats_new("producer");
  if (pub->kstats == NULL) {
    snprintf(errstr, errstr_size, "producer: out of memory");
    tp_free(pub);
    return NULL;
  }
  if (cfg->exactly_once) {
    pub->transactional = true;
    if (cfg->transactional_id[0])
      snprintf(pub->txn_id, sizeof(pub->txn_id), "%s", cfg->transactional_id);
    else
      tp_publisher_default_txn_id(cfg, pub->txn_id, sizeof(pub->txn_id));
  }
  if (open_producer(pub, &pub->k, errstr, errstr_size) != TP_OK) {
    tp_publisher_destroy(pub);
    return NULL;
  }
  return pub;
}

void tp_publisher_destroy(tp_publisher_t *pub) {
  if (pub == NULL)
    return;
  close_producer(&pub->k);
  tp_kstats_destroy(pub->kstats);
  staged_free_all(pub);
  pthread_cond_destroy(&pub->stage_room);
  pthread_mutex_destroy(&pub->stage_lock);
  tp_free(pub);
}

static void nap_ms(int ms) {
  struct timespec ts = {0, (long)ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* Retry while librdkafka's queue is full. A worker waits for the
 * coordinator to serve the delivery reports that make room; the coordinator
 * (serve) serves them itself. */
#define PRODUCE_LOOP(pub, serve, call)                                                             \
  for (;;) {                                                                                       \
    rd_kafka_resp_err_t err_ = (call);                                                             \
    if (err_ == RD_KAFKA_RESP_ERR_NO_ERROR)                                                        \
      break;                                                                                       \
    if (err_ == RD_KAFKA_RESP_ERR__STATE && (pub)->transactional) {                               \
      /* The transaction hit an abortable error: this message cannot join     \
       * it. The next checkpoint aborts it and rewinds the input to the       \
       * committed offsets, so this record is processed again. */             \
      if (!atomic_exchange(&(pub)->doomed, true))                                                  \
        tp_log_warn("produce: %s: the transaction will be aborted and the input rewound",         \
                    rd_kafka_err2str(err_));                                                       \
      return TP_OK;                                                                                \
    }                                                                                              \
    if (err_ != RD_KAFKA_RESP_ERR__QUEUE_FULL) {                                                   \
      tp_log_error("produce: %s", rd_kafka_err2str(err_));                                        \
      atomic_store(&(pub)->failed, true);                                                          \
      return TP_ECLOSED;                                                                           \
    }                                                                                              \
    if (atomic_load(&(pub)->stopped))                                                              \
      return TP_ECLOSED;                                                                           \
    atomic_fetch_add(&(pub)->stats.queue_full_waits, 1);                                           \
    if (serve)                                                                                     \
      rd_kafka_poll((pub)->k.rk, 5);                                                               \
    else                                                                                           \
      nap_ms(5);                                                                                   \
  }

void tp_publisher_prepare_topics(tp_publisher_t *pub, int timeout_ms) {
  rd_kafka_topic_t *rkts[] = {pub->k.alerts, pub->k.deadletter};
  for (size_t i = 0; i < sizeof(rkts) / sizeof(rkts[0]); i++) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(pub->k.rk, 0, rkts[i], &md, timeout_ms);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err)
      err = md->topics[0].err;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      tp_log_warn("producer: looking up topic %s: %s", rd_kafka_topic_name(rkts[i]),
                  rd_kafka_err2str(err));
    if (md != NULL)
      rd_kafka_metadata_destroy(md);
  }
}

static tp_err_t produce_alert(tp_publisher_t *pub, bool serve, const char *key, size_t key_len,
                              const void *value, size_t value_len) {
  PRODUCE_LOOP(pub, serve,
               rd_kafka_producev(pub->k.rk, RD_KAFKA_V_RKT(pub->k.alerts),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_KEY(key, key_len),
                                 RD_KAFKA_V_VALUE((void *)value, value_len),
                                 RD_KAFKA_V_OPAQUE(KIND_ALERT), RD_KAFKA_V_END));
  atomic_fetch_add(&pub->stats.alerts_produced, 1);
  atomic_fetch_add(&pub->pending, 1);
  return TP_OK;
}

static tp_err_t produce_deadletter(tp_publisher_t *pub, bool serve, const void *key,
                                   size_t key_len, const void *value, size_t value_len,
                                   const char *source_topic, int32_t source_partition,
                                   int64_t source_offset, const char *error) {
  char partition[16], offset[24];
  snprintf(partition, sizeof(partition), "%d", (int)source_partition);
  snprintf(offset, sizeof(offset), "%lld", (long long)source_offset);
  PRODUCE_LOOP(pub, serve,
               rd_kafka_producev(pub->k.rk, RD_KAFKA_V_RKT(pub->k.deadletter),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_KEY(key, key_len),
                                 RD_KAFKA_V_VALUE((void *)value, value_len),
                                 RD_KAFKA_V_HEADER("error", error, -1),
                                 RD_KAFKA_V_HEADER("source.topic", source_topic, -1),
                                 RD_KAFKA_V_HEADER("source.partition", partition, -1),
                                 RD_KAFKA_V_HEADER("source.offset", offset, -1),
                                 RD_KAFKA_V_OPAQUE(KIND_DEADLETTER), RD_KAFKA_V_END));
  atomic_fetch_add(&pub->stats.deadletters_produced, 1);
  atomic_fetch_add(&pub->pending, 1);
  return TP_OK;
}

/* ---- staging --------------------------------------------------------------------------- */

/* A copy of one message, NULL without memory. A NULL key or value stays
 * NULL (a record without a key is not one with an empty key). */
static staged_t *staged_new(void *kind, const void *key, size_t key_len, const void *value,
                            size_t value_len, const char *error, const char *source_topic,
                            int32_t partition, int64_t offset) {
  size_t elen = error ? strlen(error) + 1 : 0, tlen = source_topic ? strlen(source_topic) + 1 : 0;
  size_t size = sizeof(staged_t) + key_len + value_len + elen + tlen;
  staged_t *m = tp_malloc(size);
  if (m == NULL)
    return NULL;
  char *p = m->data;
  *m = (staged_t){.kind = kind, .key_len = key_len, .value_len = value_len, .size = size,
                  .partition = partition, .offset = offset};
  if (key != NULL) {
    m->key = memcpy(p, key, key_len);
    p += key_len;
  }
  if (value != NULL) {
    m->value = memcpy(p, value, value_len);
    p += value_len;
  }
  if (error != NULL) {
    m->error = memcpy(p, error, elen);
    p += elen;
  }
  if (source_topic != NULL)
    m->source_topic = memcpy(p, source_topic, tlen);
  return m;
}

static tp_err_t produce_staged(tp_publisher_t *pub, const staged_t *m) {
  if (m->kind == KIND_ALERT)
    return produce_alert(pub, true, m->key, m->key_len, m->value, m->value_len);
  return produce_deadletter(pub, true, m->key, m->key_len, m->value, m->value_len,
                            m->source_topic, m->partition, m->offset, m->error);
}

enum { STAGED, STAGE_PASSED, STAGE_FAILED };

/* A worker's message while the stage may be on: held (STAGED; dropped when
 * the stage drops), or STAGE_PASSED when staging has ended and the caller
 * produces it. Takes m; waits while the held messages fill STAGE_MAX_BYTES. */
static int stage(tp_publisher_t *pub, staged_t *m) {
  int rc = STAGED;
  pthread_mutex_lock(&pub->stage_lock);
  for (;;) {
    int st = atomic_load(&pub->stage);
    if (st != STAGE_ON) {
      rc = st == STAGE_OFF ? STAGE_PASSED : STAGED;
      break;
    }
    if (m == NULL) {
      fail(pub, "out of memory holding a message for the next transaction");
      rc = STAGE_FAILED;
      break;
    }
    if (pub->staged_head == NULL || pub->staged_bytes + m->size <= STAGE_MAX_BYTES) {
      *pub->staged_tail = m;
      pub->staged_tail = &m->next;
      pub->staged_bytes += m->size;
      atomic_fetch_add(&pub->stats.staged, 1);
      m = NULL;
      break;
    }
    if (atomic_load(&pub->stopped)) {
      rc = STAGE_FAILED;
      break;
    }
    pthread_cond_wait(&pub->stage_room, &pub->stage_lock);
  }
  pthread_mutex_unlock(&pub->stage_lock);
  tp_free(m);
  return rc;
}

/* Frees what is held. Under stage_lock. */
static void staged_free_all(tp_publisher_t *pub) {
  while (pub->staged_head != NULL) {
    staged_t *m = pub->staged_head;
    pub->staged_head = m->next;
    tp_free(m);
  }
  pub->staged_tail = &pub->staged_head;
  pub->staged_bytes = 0;
}

void tp_publisher_stage_begin(tp_publisher_t *pub) {
  pthread_mutex_lock(&pub->stage_lock);
  atomic_store(&pub->stage, STAGE_ON);
  pthread_mutex_unlock(&pub->stage_lock);
}

tp_err_t tp_publisher_stage_end(tp_publisher_t *pub) {
  tp_err_t rc = TP_OK;
  pthread_mutex_lock(&pub->stage_lock);
  /* In order, under the lock: a worker's next message waits for the lock
   * and, staging over, follows its earlier ones. */
  for (staged_t *m = pub->staged_head; m != NULL && rc == TP_OK; m = m->next)
    rc = produce_staged(pub, m);
  staged_free_all(pub);
  atomic_store(&pub->stage, STAGE_OFF);
  pthread_cond_broadcast(&pub->stage_room);
  pthread_mutex_unlock(&pub->stage_lock);
  return rc;
}

void tp_publisher_stage_drop(tp_publisher_t *pub) {
  pthread_mutex_lock(&pub->stage_lock);
  staged_free_all(pub);
  atomic_store(&pub->stage, STAGE_DROP);
  pthread_cond_broadcast(&pub->stage_room);
  pthread_mutex_unlock(&pub->stage_lock);
}

tp_err_t tp_publisher_alert(tp_publisher_t *pub, const char *key, size_t key_len,
                            const void *value, size_t value_len) {
  if (atomic_load(&pub->stage) != STAGE_OFF) {
    int rc = stage(pub, staged_new(KIND_ALERT, key, key_len, value, value_len, NULL, NULL, 0, 0));
    if (rc != STAGE_PASSED)
      return rc == STAGED ? TP_OK : TP_ECLOSED;
  }
  return produce_alert(pub, false, key, key_len, value, value_len);
}

tp_err_t tp_publisher_deadletter(tp_publisher_t *pub, const rd_kafka_message_t *orig,
                                 const char *source_topic, const char *error) {
  if (atomic_load(&pub->stage) != STAGE_OFF) {
    int rc = stage(pub, staged_new(KIND_DEADLETTER, orig->key, orig->key_len, orig->payload,
                                   orig->len, error, source_topic, orig->partition, orig->offset));
    if (rc != STAGE_PASSED)
      return rc == STAGED ? TP_OK : TP_ECLOSED;
  }
  return produce_deadletter(pub, false, orig->key, orig->key_len, orig->payload, orig->len,
                            source_topic, orig->partition, orig->offset, error);
}

void tp_publisher_poll(tp_publisher_t *pub, int timeout_ms) {
  rd_kafka_poll(pub->k.rk, timeout_ms);
}

tp_err_t tp_publisher_flush(tp_publisher_t *pub, int timeout_ms) {
  rd_kafka_resp_err_t err = rd_kafka_flush(pub->k.rk, timeout_ms);
  if (atomic_exchange(&pub->failed_since_flush, 0) > 0 || atomic_load(&pub->failed))
    return TP_EKAFKA;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return TP_EAGAIN;
  atomic_store(&pub->pending, 0);
  return TP_OK;
}

bool tp_publisher_transactional(const tp_publisher_t *pub) { return pub->transactional; }

/*
 * librdkafka declares the producer unusable ("fatal") when the broker
 * answers an abort with INVALID_TXN_STATE, meaning the transaction
 * coordinator holds no open transaction of ours. A broker restart causes it:
 * when the request that would have opened the transaction on the broker (an
 * AddOffsetsToTxn, say) is lost with the connection, librdkafka cannot know
 * whether the broker saw it and ends the transaction to be safe; the
 * restarted broker, which never saw it, refuses. Nothing of that transaction
 * can be committed any more, so the producer is replaced: the new one's
 * init_transactions, under the same transactional.id, fences the old one and
 * aborts whatever was left open, as when the process restarts, and the
 * caller rewinds its input to the committed offsets as after any abort.
 * Fencing errors stay fatal: another instance owns the transactional.id. At
 * most RENEWALS_MAX replacements without a commit in between.
 */
#define RENEWALS_MAX 3u

static bool renewable(const tp_publisher_t *pub, const rd_kafka_error_t *e, bool failed_before) {
  return pub->transactional && !failed_before && !atomic_load(&pub->stopped) &&
         rd_kafka_error_is_fatal(e) &&
         rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_INVALID_TXN_STATE &&
         pub->renewals < RENEWALS_MAX;
}

/* Replaces the producer after e (renewable()), consumed. The workers are
 * paused or staging: nothing else uses the producer meanwhile. */
static tp_err_t renew(tp_publisher_t *pub, rd_kafka_error_t *e, char *errstr, size_t errstr_size) {
  pub->renewals++;
  tp_log_warn("producer: %s; replacing the producer: its transaction is abandoned, the input "
              "is rewound to the committed offsets",
              rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  producer_t fresh;
  if (open_producer(pub, &fresh, errstr, errstr_size) != TP_OK) {
    atomic_store(&pub->failed, true); /* the old one stays, unusable */
    return TP_EKAFKA;
  }
  rd_kafka_purge(pub->k.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  close_producer(&pub->k);
  pub->k = fresh;
  /* The fatal error may have reached error_cb already: it is dealt with. */
  atomic_store(&pub->has_failure, false);
  atomic_store(&pub->failed, false);
  pub->committing = false;
  atomic_store(&pub->pending, 0);
  atomic_store(&pub->doomed, false);
  tp_err_t rc = tp_publisher_txn_start(pub, 60000, &pub->stopped, errstr, errstr_size);
  if (rc == TP_OK) /* as at start: the next alert need not wait for a lookup */
    tp_publisher_prepare_topics(pub, 2000);
  return rc;
}

tp_err_t tp_publisher_txn_abort(tp_publisher_t *pub, char *errstr, size_t errstr_size) {
  bool failed_before = atomic_load(&pub->failed);
  /* Aborting while the producer is still registering partitions with the
   * transaction can make the broker refuse EndTxn with INVALID_TXN_STATE,
   * a fatal error (librdkafka issue #4849). Let those requests finish. */
  rd_kafka_flush(pub->k.rk, 30000);
  uint64_t give_up = tp_mono_ns() + 60ull * 1000000000u;
  rd_kafka_error_t *e;
  for (;;) { /* a timed-out abort is resumed by calling it again */
    e = rd_kafka_abort_transaction(pub->k.rk, 10000);
    if (e == NULL || !rd_kafka_error_is_retriable(e) || tp_mono_ns() > give_up)
      break;
    rd_kafka_error_destroy(e);
  }
  if (e != NULL && renewable(pub, e, failed_before))
    return renew(pub, e, errstr, errstr_size);
  pub->committing = false;
  if (e == NULL)
    e = rd_kafka_begin_transaction(pub->k.rk);
  atomic_store(&pub->pending, 0);
  atomic_store(&pub->doomed, false);
  if (e == NULL)
    return TP_OK;
  snprintf(errstr, errstr_size, "abort_transaction: %s", rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  atomic_store(&pub->failed, true);
  return TP_EKAFKA;
}
uint64_t tp_publisher_pending(const tp_publisher_t *pub) { return atomic_load(&pub->pending); }

bool tp_publisher_txn_doomed(const tp_publisher_t *pub) { return atomic_load(&pub->doomed); }

/*
 * librdkafka's transactional errors come in three kinds: retriable (call
 * again), requires-abort (abort, the transaction's messages are gone) and
 * fatal (the producer is unusable, e.g. fenced by a newer instance with the
 * same transactional.id). @returns TP_EAGAIN, TP_EKAFKA after an abort, or
 * TP_EKAFKA with the publisher failed.
 */
static tp_err_t txn_error(tp_publisher_t *pub, const char *what, rd_kafka_error_t *e,
                          char *errstr, size_t errstr_size) {
  snprintf(errstr, errstr_size, "%s: %s", what, rd_kafka_error_string(e));
  tp_err_t rc;
  if (rd_kafka_error_is_retriable(e)) {
    rc = TP_EAGAIN;
  } else if (rd_kafka_error_txn_requires_abort(e)) {
    /* The abort the pipeline itself asks for: in-flight requests finished
     * first, a timed-out abort resumed, the producer replaced where that
     * heals it, and the next transaction begun, not marked doomed by this
     * one's refused messages. It fails the publisher if it fails. */
    char aerr[512];
    if (tp_publisher_txn_abort(pub, aerr, sizeof(aerr)) != TP_OK)
      tp_log_error("%s", aerr);
    rc = TP_EKAFKA;
  } else {
    atomic_store(&pub->failed, true);
    rc = TP_EKAFKA;
  }
  rd_kafka_error_destroy(e);
  return rc;
}

tp_err_t tp_publisher_txn_start(tp_publisher_t *pub, int timeout_ms, const _Atomic bool *cancel,
                                char *errstr, size_t errstr_size) {
  uint64_t give_up = tp_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    /* Short attempts (a timed-out call resumes where it was), serving the
     * error callback in between: an authentication failure or a stop
     * request ends the wait at once instead of after timeout_ms. */
    rd_kafka_error_t *e = rd_kafka_init_transactions(pub->k.rk, 500);
    if (e == NULL)
      break;
    /* Retriable or fatal: there is no transaction to abort yet. */
    snprintf(errstr, errstr_size, "init_transactions: %s", rd_kafka_error_string(e));
    bool retriable = rd_kafka_error_is_retriable(e);
    rd_kafka_error_destroy(e);
    rd_kafka_poll(pub->k.rk, 0);
    if (atomic_load(&pub->has_failure)) {
      snprintf(errstr, errstr_size, "%s", pub->failure);
      return TP_EKAFKA;
    }
    if (!retriable || tp_mono_ns() > give_up || atomic_load(&pub->stopped) ||
        (cancel != NULL && atomic_load(cancel))) {
      atomic_store(&pub->failed, true);
      return TP_EKAFKA;
    }
  }
  rd_kafka_error_t *e = rd_kafka_begin_transaction(pub->k.rk);
  if (e != NULL) {
    snprintf(errstr, errstr_size, "begin_transaction: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    atomic_store(&pub->failed, true);
    return TP_EKAFKA;
  }
  return TP_OK;
}

const char *tp_publisher_failure(const tp_publisher_t *pub) {
  return atomic_load(&pub->has_failure) ? pub->failure : "the producer failed";
}

tp_err_t tp_publisher_txn_commit(tp_publisher_t *pub, rd_kafka_t *consumer,
                                 const rd_kafka_topic_partition_list_t *offsets, int timeout_ms,
                                 char *errstr, size_t errstr_size) {
  uint64_t give_up = tp_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  /* A commit that timed out is resumed by calling commit_transaction again
   * (librdkafka refuses anything else meanwhile, abort included); its
   * offsets went into the transaction already. */
  if (!pub->committing && offsets != NULL && offsets->cnt > 0) {
    rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(consumer);
    for (;;) {
      rd_kafka_error_t *e =
          rd_kafka_send_offsets_to_transaction(pub->k.rk, offsets, md, timeout_ms);
      if (e == NULL)
        break;
      tp_err_t rc = txn_error(pub, "send_offsets_to_transaction", e, errstr, errstr_size);
      if (rc != TP_EAGAIN || tp_mono_ns() > give_up) {
        rd_kafka_consumer_group_metadata_destroy(md);
        return rc;
      }
    }
    rd_kafka_consumer_group_metadata_destroy(md);
  }
  pub->committing = true;
  for (;;) {
    rd_kafka_error_t *e = rd_kafka_commit_transaction(pub->k.rk, timeout_ms);
    if (e == NULL)
      break;
    tp_err_t rc = txn_error(pub, "commit_transaction", e, errstr, errstr_size);
    if (rc != TP_EAGAIN) {
      pub->committing = false; /* aborted (txn_error) or failed for good */
      return rc;
    }
    if (tp_mono_ns() > give_up)
      return TP_EAGAIN; /* still committing: call again */
  }
  pub->committing = false;
  pub->renewals = 0;
  atomic_store(&pub->pending, 0);
  rd_kafka_error_t *e = rd_kafka_begin_transaction(pub->k.rk);
  if (e != NULL) {
    snprintf(errstr, errstr_size, "begin_transaction: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    atomic_store(&pub->failed, true);
    return TP_EKAFKA;
  }
  return TP_OK;
}

bool tp_publisher_txn_committing(const tp_publisher_t *pub) { return pub->committing; }

void tp_publisher_stop(tp_publisher_t *pub) {
  atomic_store(&pub->stopped, true);
  /* A worker waiting for room among the staged messages gives up too. */
  pthread_mutex_lock(&pub->stage_lock);
  pthread_cond_broadcast(&pub->stage_room);
  pthread_mutex_unlock(&pub->stage_lock);
}
bool tp_publisher_failed(const tp_publisher_t *pub) { return atomic_load(&pub->failed); }
const tp_publisher_stats_t *tp_publisher_stats(const tp_publisher_t *pub) { return &pub->stats; }

tp_kstats_t *tp_publisher_kstats(const tp_publisher_t *pub) { return pub->kstats; }
rd_kafka_t *tp_publisher_handle(tp_publisher_t *pub) { return pub->k.rk; }
