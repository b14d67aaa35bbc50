/*
 * buf.h -- a growable byte buffer for building HTTP bodies, JSON and the
 * Prometheus exposition. An allocation failure is sticky: later appends are
 * no-ops and tp_buf_failed() reports it, so a caller checks once at the end
 * (the way nginx chains check a pool once).
 */
#ifndef TOUCHPULSE_BUF_H
#define TOUCHPULSE_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tp_buf_s {
  char *data; /* NUL-terminated when len > 0 and the buffer has not failed */
  size_t len;
  size_t cap;
  bool failed;
} tp_buf_t;

#define TP_BUF_INIT {NULL, 0, 0, false}

void tp_buf_init(tp_buf_t *b);
void tp_buf_free(tp_buf_t *b);
void tp_buf_reset(tp_buf_t *b); /* keep the memory, drop the content */
void tp_buf_append(tp_buf_t *b, const void *data, size_t len);
void tp_buf_puts(tp_buf_t *b, const char *s);
void tp_buf_putc(tp_buf_t *b, char c);
void tp_buf_printf(tp_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Append s as the inside of a JSON string (quotes not included). */
void tp_buf_json_escape(tp_buf_t *b, const char *s, size_t len);
/** Append s escaped as a Prometheus label value (\\, \", \n). */
void tp_buf_prom_escape(tp_buf_t *b, const char *s, size_t len);
/** Append a double as JSON/Prometheus accept it ("NaN" and "+Inf" for Prometheus). */
void tp_buf_double(tp_buf_t *b, double v);
static inline bool tp_buf_failed(const tp_buf_t *b) { return b->failed; }

#endif
