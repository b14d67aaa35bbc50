/*
 * log.c -- levelled, single-write log lines in text or JSON.
 */
#include "touchpulse/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "touchpulse/buf.h"

static _Atomic int min_level = TP_LOG_INFO;
static _Atomic int json_format = 0;

void tp_log_setup(tp_log_level_t level, tp_log_format_t format) {
  atomic_store(&min_level, (int)level);
  atomic_store(&json_format, format == TP_LOG_JSON);
}

bool tp_log_enabled(tp_log_level_t level) { return (int)level >= atomic_load(&min_level); }

static const char *level_name(tp_log_level_t level) {
  switch (level) {
  case TP_LOG_DEBUG: return "debug";
  case TP_LOG_INFO: return "info";
  case TP_LOG_WARN: return "warn";
  case TP_LOG_ERROR: return "error";
  }
  return "info";
}

void tp_log(tp_log_level_t level, const char *fmt, ...) {
  if (!tp_log_enabled(level))
    return;
  char msg[2048], ts[96], line[4608];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  /* One line per event: fold newlines from library messages. */
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';

  tp_time_format(tp_now_ms(), ts, sizeof(ts));
  int n;
  if (atomic_load(&json_format)) {
    /* Escape into a fixed buffer: the message is at most 2 KiB. */
    char esc[4200];
    tp_buf_t b = TP_BUF_INIT;
    tp_buf_json_escape(&b, msg, strlen(msg));
    snprintf(esc, sizeof(esc), "%s", b.data ? b.data : "");
    tp_buf_free(&b);
    n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts,
                 level_name(level), esc);
  } else {
    n = snprintf(line, sizeof(line), "%s %-5s %s\n", ts, level_name(level), msg);
  }
  if (n < 0)
    return;
  if ((size_t)n >= sizeof(line)) {
    n = (int)sizeof(line) - 1;
    line[n - 1] = '\n';
  }
  ssize_t w = write(STDERR_FILENO, line, (size_t)n);
  (void)w; /* nowhere to report a failed log write */
}
