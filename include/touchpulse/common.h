/*
 * common.h -- error codes, allocation hooks and small helpers shared by every
 * touchpulse module.
 *
 * Errors follow libuv's X-macro pattern: one map generates the enum and the
 * messages, so the two never drift apart. Allocations on every path that can
 * fail (configuration, state creation, HTTP) go through tp_malloc() and
 * friends, so tests can fail the Nth allocation and check that each caller
 * returns TP_ENOMEM cleanly.
 */
#ifndef TOUCHPULSE_COMMON_H
#define TOUCHPULSE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define TP_VERSION_STRING "0.1.0"

#define TP_ERR_MAP(XX)                                                         \
  XX(NOMEM, "out of memory")                                                   \
  XX(CONFIG, "invalid configuration")                                          \
  XX(SCHEMA, "unknown or incompatible Avro schema")                            \
  XX(DECODE, "malformed Avro payload")                                         \
  XX(KAFKA, "Kafka client error")                                              \
  XX(AGAIN, "backpressure: retry later")                                       \
  XX(CLOSED, "object is shutting down")                                        \
  XX(FULL, "capacity exhausted")                                               \
  XX(EXIST, "already exists")                                                  \
  XX(IO, "input/output error")                                                 \
  XX(INVAL, "invalid argument")

typedef enum {
  TP_OK = 0,
#define XX(code, _) TP_E##code,
  TP_ERR_MAP(XX)
#undef XX
} tp_err_t;

/** @returns a static message for err; never NULL. */
const char *tp_strerror(tp_err_t err);

/*
 * Allocation. tp_malloc/tp_calloc/tp_realloc/tp_strdup behave like their libc
 * namesakes, except that a test may arm a failure: after
 * tp_alloc_fail_after(n), the nth following call (1-based) and every later one
 * return NULL until tp_alloc_fail_after(0) disarms the hook. The hook costs
 * one relaxed atomic load per call. The per-event path does not allocate.
 */
void *tp_malloc(size_t size);
void *tp_calloc(size_t n, size_t size);
void *tp_realloc(void *ptr, size_t size);
char *tp_strdup(const char *s);
char *tp_strndup(const char *s, size_t n);
void tp_free(void *ptr);
void tp_alloc_fail_after(long n);
/** @returns how many allocation calls were made since the hook was armed. */
long tp_alloc_calls(void);

/** @returns wall-clock time in milliseconds since the Unix epoch. */
int64_t tp_now_ms(void);
/** @returns a monotonic clock in nanoseconds, for durations only. */
uint64_t tp_mono_ns(void);

/** Floor division that rounds toward negative infinity (d > 0). */
static inline int64_t tp_floor_div(int64_t n, int64_t d) {
  int64_t q = n / d;
  return (n % d != 0 && n < 0) ? q - 1 : q;
}

/** Round down to a multiple of step (step > 0). */
static inline int64_t tp_floor_to(int64_t t, int64_t step) {
  return tp_floor_div(t, step) * step;
}

/**
 * 64-bit hash of a byte string (wyhash-style multiply-mix). Used for table
 * keys and event-id fingerprints; not for alert ids, which use the 128-bit
 * tp_hash128() so that other languages can recompute them.
 */
uint64_t tp_hash64(const void *data, size_t len, uint64_t seed);

/**
 * MurmurHash3 x64 128-bit (Austin Appleby's public-domain algorithm), seed 0.
 * out[0] holds h1 and out[1] h2; the alert id is their 16 bytes in
 * little-endian order written as 32 lowercase hex digits, which is what
 * Python's mmh3.hash_bytes(data).hex() prints.
 */
void tp_hash128(const void *data, size_t len, uint32_t seed, uint64_t out[2]);

/** Write a human-readable duration ("90s", "15m", "1h30m") into buf. */
void tp_duration_format(int64_t ms, char *buf, size_t size);

/** Write a Unix time in ms as UTC, "2026-11-23T13:49:11.219Z", into buf
 *  (the log's timestamps). */
void tp_time_format(int64_t unix_ms, char *buf, size_t size);

#define TP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define TP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TP_CACHELINE 64

#endif
