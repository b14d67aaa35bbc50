/*
 * event.h -- one decoded input event, as the fast decoder hands it to the
 * state module.
 *
 * A tp_event_t never owns memory: its strings point into the Kafka message
 * payload it was decoded from and stay valid only as long as that message
 * (see decode.h). The state module copies what it keeps (the touchpoint name
 * into its table entry, a fingerprint of the event id into the dedup ring).
 */
#ifndef TOUCHPULSE_EVENT_H
#define TOUCHPULSE_EVENT_H

#include <stdbool.h>
#include <stdint.h>

/** The three input topics. The order is used to index arrays. */
typedef enum {
  TP_SRC_FEEDBACK = 0,
  TP_SRC_SUPPORT = 1,
  TP_SRC_COMMERCE = 2,
} tp_source_t;
#define TP_SRC_COUNT 3
const char *tp_source_name(tp_source_t src); /* "feedback", "support", ... */

/* Enum symbols, in schema order: the value is the Avro enum index. */
#define TP_STAGE_MAP(XX)                                                       \
  XX(PRE_PURCHASE) XX(PURCHASE) XX(POST_PURCHASE) XX(UNKNOWN)
#define TP_CHANNEL_MAP(XX)                                                     \
  XX(WEB) XX(APP) XX(EMAIL) XX(PHONE) XX(CHAT) XX(SOCIAL) XX(IN_PERSON) XX(OTHER)
#define TP_SUPPORT_KIND_MAP(XX)                                                \
  XX(OPENED) XX(AGENT_REPLIED) XX(CUSTOMER_REPLIED) XX(RESOLVED) XX(REOPENED)
#define TP_COMMERCE_KIND_MAP(XX) XX(ORDER_PLACED) XX(DELIVERED) XX(RETURN_REQUESTED)

typedef enum {
#define XX(s) TP_STAGE_##s,
  TP_STAGE_MAP(XX)
#undef XX
  TP_STAGE_COUNT
} tp_stage_t;
typedef enum {
#define XX(s) TP_CHANNEL_##s,
  TP_CHANNEL_MAP(XX)
#undef XX
  TP_CHANNEL_COUNT
} tp_channel_t;
typedef enum {
#define XX(s) TP_SUPPORT_##s,
  TP_SUPPORT_KIND_MAP(XX)
#undef XX
  TP_SUPPORT_KIND_COUNT
} tp_support_kind_t;
typedef enum {
#define XX(s) TP_COMMERCE_##s,
  TP_COMMERCE_KIND_MAP(XX)
#undef XX
  TP_COMMERCE_KIND_COUNT
} tp_commerce_kind_t;

/* NOLINTBEGIN(readability-inconsistent-declaration-parameter-name): names.c
 * generates the definitions from one macro, whose parameter is called v. */
const char *tp_stage_name(tp_stage_t stage);          /* "PURCHASE" */
const char *tp_channel_name(tp_channel_t channel);    /* "CHAT" */
const char *tp_support_kind_name(tp_support_kind_t k);
const char *tp_commerce_kind_name(tp_commerce_kind_t k);
/* NOLINTEND(readability-inconsistent-declaration-parameter-name) */

/* Longest touchpoint id (SPEC); decode.h repeats it with the same value. */
#define TP_TOUCHPOINT_MAX 128

/** A borrowed byte string. ptr == NULL means Avro null (for unions). */
typedef struct {
  const char *ptr;
  uint32_t len;
} tp_str_t;

/** A score that was null on the wire. */
#define TP_SCORE_NULL (-1)

typedef struct tp_event_s {
  tp_source_t source;
  tp_str_t event_id;
  int64_t occurred_at; /* ms since the Unix epoch, >= 0 */
  tp_str_t touchpoint;
  uint8_t stage;   /* tp_stage_t */
  uint8_t channel; /* tp_channel_t */
  union {
    struct {
      tp_str_t customer_id; /* ptr NULL when null */
      /* TP_SCORE_NULL when null, else within SPEC's range */
      int8_t csat, nps, ces, repurchase, try_other;
      tp_str_t comment; /* ptr NULL when null */
    } feedback;
    struct {
      tp_str_t ticket_id;
      uint8_t kind; /* tp_support_kind_t */
      bool complaint;
    } support;
    struct {
      tp_str_t order_id;
      uint8_t kind; /* tp_commerce_kind_t */
      bool has_amount;
      int64_t amount_minor;
      tp_str_t reason; /* ptr NULL when null */
    } commerce;
  };
} tp_event_t;

#endif
