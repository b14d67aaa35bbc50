/*
 * buf.c -- growable output buffer with sticky allocation failure.
 */
#include "touchpulse/buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "touchpulse/common.h"

void tp_buf_init(tp_buf_t *b) { *b = (tp_buf_t)TP_BUF_INIT; }

void tp_buf_free(tp_buf_t *b) {
  tp_free(b->data);
  tp_buf_init(b);
}

void tp_buf_reset(tp_buf_t *b) {
  b->len = 0;
  b->failed = false;
  if (b->data != NULL)
    b->data[0] = '\0';
}

/* Make room for n more bytes plus a NUL. @returns false on failure. */
static bool reserve(tp_buf_t *b, size_t n) {
  if (b->failed)
    return false;
  if (n > SIZE_MAX / 2 - b->len) {
    b->failed = true;
    return false;
  }
  size_t need = b->len + n + 1;
  if (need <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  char *p = tp_realloc(b->data, cap);
  if (p == NULL) {
    b->failed = true;
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

void tp_buf_append(tp_buf_t *b, const void *data, size_t len) {
  if (!reserve(b, len))
    return;
  if (len > 0)
    memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
}

void tp_buf_puts(tp_buf_t *b, const char *s) { tp_buf_append(b, s, strlen(s)); }

void tp_buf_putc(tp_buf_t *b, char c) { tp_buf_append(b, &c, 1); }

void tp_buf_printf(tp_buf_t *b, const char *fmt, ...) {
  va_list ap;
  char small[256];
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->failed = true;
    return;
  }
  if ((size_t)n < sizeof(small)) {
    tp_buf_append(b, small, (size_t)n);
    return;
  }
  if (!reserve(b, (size_t)n))
    return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void tp_buf_json_escape(tp_buf_t *b, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0; /* bytes copied in one append when nothing needs escaping */
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    tp_buf_append(b, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"': tp_buf_puts(b, "\\\""); break;
    case '\\': tp_buf_puts(b, "\\\\"); break;
    case '\n': tp_buf_puts(b, "\\n"); break;
    case '\r': tp_buf_puts(b, "\\r"); break;
    case '\t': tp_buf_puts(b, "\\t"); break;
    default: {
      char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      tp_buf_append(b, esc, sizeof(esc));
    }
    }
  }
  tp_buf_append(b, s + run, len - run);
}

void tp_buf_prom_escape(tp_buf_t *b, const char *s, size_t len) {
  size_t run = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c != '\\' && c != '"' && c != '\n')
      continue;
    tp_buf_append(b, s + run, i - run);
    run = i + 1;
    tp_buf_puts(b, c == '\\' ? "\\\\" : c == '"' ? "\\\"" : "\\n");
  }
  tp_buf_append(b, s + run, len - run);
}

void tp_buf_double(tp_buf_t *b, double v) {
  if (isnan(v))
    tp_buf_puts(b, "NaN");
  else if (isinf(v))
    tp_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
  else if (v == (double)(int64_t)v && fabs(v) < 1e15)
    tp_buf_printf(b, "%lld", (long long)v);
  else
    tp_buf_printf(b, "%.17g", v);
}
