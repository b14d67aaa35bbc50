/*
 * publish.h -- the idempotent producer that writes alerts and dead letters.
 *
 * Produce calls copy their payload and never drop it (but see staging,
 * below, after a failed commit): when librdkafka's
 * queue is full they wait (backpressure slows the calling worker) until the
 * message is queued or the publisher is stopped. Delivery reports are served
 * by whoever calls tp_publisher_poll() or tp_publisher_flush() (the
 * coordinator thread). A message that still fails after librdkafka's own
 * retries (message.timeout.ms) makes the publisher "failed": the pipeline
 * then stops without committing the input offsets that caused it, so a
 * restart reproduces the message instead of losing it.
 */
#ifndef TOUCHPULSE_PUBLISH_H
#define TOUCHPULSE_PUBLISH_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "touchpulse/common.h"
#include "touchpulse/config.h"
#include "touchpulse/kstats.h"

/* statistics.interval.ms unless the kafka section sets it: what /metrics
 * exports of librdkafka's statistics is at most this old. */
#define TP_KAFKA_STATS_INTERVAL_MS "5000"

typedef struct tp_publisher_s tp_publisher_t;

typedef struct {
  _Atomic uint64_t alerts_produced, alerts_delivered, alerts_failed;
  _Atomic uint64_t deadletters_produced, deadletters_delivered, deadletters_failed;
  _Atomic uint64_t queue_full_waits;
  _Atomic uint64_t staged; /* held while a transaction committed (staging) */
} tp_publisher_stats_t;

/**
 * @brief Create the producer from cfg's kafka section (producer properties
 *        only), with enable.idempotence=true.
 * @returns the publisher, or NULL with a message in errstr.
 */
tp_publisher_t *tp_publisher_new(const tp_config_t *cfg, char *errstr, size_t errstr_size);

/** The transactional.id used when processing.transactional_id is empty:
 *  "<group.id>-<host name>-<process id>". */
void tp_publisher_default_txn_id(const tp_config_t *cfg, char *out, size_t size);
void tp_publisher_destroy(tp_publisher_t *pub);

/**
 * @brief Look up the alert and dead-letter topics' partitions now. Without
 *        it, librdkafka looks a topic up when the first message for it is
 *        produced and that message (and a checkpoint waiting for it) waits
 *        for its next metadata refresh, up to a second. Logs a warning for
 *        a topic the brokers do not know; never fails. @thread coordinator
 */
void tp_publisher_prepare_topics(tp_publisher_t *pub, int timeout_ms);

/** Queue an alert keyed by touchpoint. @returns TP_OK or TP_ECLOSED. @thread any */
tp_err_t tp_publisher_alert(tp_publisher_t *pub, const char *key, size_t key_len,
                            const void *value, size_t value_len);

/**
 * @brief Queue a dead letter: the original key and bytes, headers error,
 *        source.topic, source.partition, source.offset.
 * @returns TP_OK or TP_ECLOSED. @thread any
 */
tp_err_t tp_publisher_deadletter(tp_publisher_t *pub, const rd_kafka_message_t *orig,
                                 const char *source_topic, const char *error);

/** Serve delivery reports. @thread coordinator */
void tp_publisher_poll(tp_publisher_t *pub, int timeout_ms);

/**
 * @brief Wait until every queued message is delivered, at most timeout_ms.
 * @returns TP_OK when the queue is empty and nothing failed, TP_EAGAIN on
 *          timeout, TP_EKAFKA when a delivery failed.
 */
tp_err_t tp_publisher_flush(tp_publisher_t *pub, int timeout_ms);

/*
 * Transactions (processing.exactly_once). The publisher is then a
 * transactional producer: alerts and dead letters go into an open
 * transaction, and tp_publisher_txn_commit() adds the consumer's offsets to
 * it, commits, and opens the next one, so a read_committed subscriber sees
 * the alerts of exactly the input records whose offsets were committed.
 * These calls block and belong to the coordinator, with the workers paused
 * or staging on (below): no worker uses the producer meanwhile.
 */

/** @returns true when the publisher was created transactional. */
bool tp_publisher_transactional(const tp_publisher_t *pub);

/**
 * @brief init_transactions (fencing older producers with the same
 *        transactional.id, aborting what they left open) and begin the
 *        first transaction. Retries retriable errors until timeout_ms, and
 *        gives up early when *cancel becomes true or the producer fails
 *        (an authentication error, say).
 * @returns TP_OK, or TP_EKAFKA with a message.
 */
tp_err_t tp_publisher_txn_start(tp_publisher_t *pub, int timeout_ms, const _Atomic bool *cancel,
                                char *errstr,
                                size_t errstr_size);

/**
 * @brief Commit the open transaction together with offsets (may be NULL or
 *        empty) for the group of consumer, then begin the next one.
 * @returns TP_OK; TP_EAGAIN when a retriable error persisted past
 *          timeout_ms (the transaction is still open: call again);
 *          TP_EKAFKA when the transaction had to be aborted (its alerts are
 *          discarded; the caller must rewind its input to the committed
 *          offsets) or the producer failed for good (tp_publisher_failed()).
 */
tp_err_t tp_publisher_txn_commit(tp_publisher_t *pub, rd_kafka_t *consumer,
                                 const rd_kafka_topic_partition_list_t *offsets, int timeout_ms,
                                 char *errstr, size_t errstr_size);

/** Abort the open transaction and begin the next one (a lost assignment).
 *  When the broker refuses the abort with INVALID_TXN_STATE (it does not
 *  know the transaction, after a restart), which librdkafka makes fatal,
 *  the producer is replaced by a new one with the same transactional.id,
 *  at most 3 times without a commit in between.
 *  @returns TP_OK or TP_EKAFKA (the publisher failed). */
tp_err_t tp_publisher_txn_abort(tp_publisher_t *pub, char *errstr, size_t errstr_size);
/** @returns true when a message was refused because the open transaction
 *  must abort (it is then left out: the caller aborts and rewinds). */
bool tp_publisher_txn_doomed(const tp_publisher_t *pub);
/** @returns true while a commit that timed out must be resumed (call
 *  tp_publisher_txn_commit() again; nothing else is allowed meanwhile). */
bool tp_publisher_txn_committing(const tp_publisher_t *pub);

/*
 * Staging: the workers run on while a transaction commits. The coordinator
 * takes its cut with the workers paused, turns staging on, resumes them and
 * commits: whatever they produce meanwhile belongs to the next transaction,
 * so it is held in order (at most 64 MiB; past that a producing worker
 * waits) instead of joining the committing one. After the commit,
 * tp_publisher_stage_end() produces the held messages into the next
 * transaction and turns staging off. When the commit fails,
 * tp_publisher_stage_drop() discards them and drops every message produced
 * until tp_publisher_stage_end(): they were caused by records after the cut,
 * which the rewind that follows processes again. Coordinator only.
 */
void tp_publisher_stage_begin(tp_publisher_t *pub);
/** @returns TP_OK, or the error of a held message's produce call (the
 *  publisher failed or stopped); staging is off either way. */
tp_err_t tp_publisher_stage_end(tp_publisher_t *pub);
void tp_publisher_stage_drop(tp_publisher_t *pub);

/** Messages produced since the open transaction began (or since the last flush). */
uint64_t tp_publisher_pending(const tp_publisher_t *pub);

/** Make blocked produce calls return TP_ECLOSED. @thread any */
void tp_publisher_stop(tp_publisher_t *pub);

/** @returns true once a delivery failed for good. */
bool tp_publisher_failed(const tp_publisher_t *pub);
/** @returns why the producer failed, for the error message. */
const char *tp_publisher_failure(const tp_publisher_t *pub);

/**
 * @brief The message for a librdkafka authentication error: names the client
 *        and mechanism, and for SCRAM with librdkafka older than 2.6.1 says
 *        that it cannot authenticate to Kafka 4.x brokers at all.
 */
void tp__kafka_auth_message(const tp_config_t *cfg, const char *client, const char *reason,
                            char *out, size_t size);

const tp_publisher_stats_t *tp_publisher_stats(const tp_publisher_t *pub);
/** The producer's librdkafka statistics (kstats.h). */
tp_kstats_t *tp_publisher_kstats(const tp_publisher_t *pub);
rd_kafka_t *tp_publisher_handle(tp_publisher_t *pub);

/**
 * @brief Apply cfg's kafka section to conf, skipping the properties that
 *        belong to the other client type (so librdkafka does not warn).
 * @returns TP_OK or TP_ECONFIG with librdkafka's message.
 */
tp_err_t tp__kafka_conf_apply(rd_kafka_conf_t *conf, const tp_config_t *cfg, bool producer,
                              char *errstr, size_t errstr_size);

/** librdkafka log callback writing through tp_log() at the matching level. */
void tp__kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

#endif
