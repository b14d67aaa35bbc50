/*
 * log.h -- one line per event on stderr, as text or JSON (log.format).
 *
 *   2026-11-23T10:15:02.123Z info  assigned partitions cx.feedback[0,1,2]
 *   {"ts":"2026-11-23T10:15:02.123Z","level":"info","msg":"assigned ..."}
 *
 * Thread-safe: each line is formatted into a local buffer and written with
 * one write(2), so lines from different threads never interleave.
 */
#ifndef TOUCHPULSE_LOG_H
#define TOUCHPULSE_LOG_H

#include "touchpulse/config.h"

void tp_log_setup(tp_log_level_t level, tp_log_format_t format);
bool tp_log_enabled(tp_log_level_t level);
void tp_log(tp_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define tp_log_debug(...) tp_log(TP_LOG_DEBUG, __VA_ARGS__)
#define tp_log_info(...) tp_log(TP_LOG_INFO, __VA_ARGS__)
#define tp_log_warn(...) tp_log(TP_LOG_WARN, __VA_ARGS__)
#define tp_log_error(...) tp_log(TP_LOG_ERROR, __VA_ARGS__)

#endif
