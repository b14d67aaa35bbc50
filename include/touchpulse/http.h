/*
 * http.h -- a small HTTP/1.1 server on libuv for /metrics, /healthz, /readyz
 * and /v1/touchpoints/{id}.
 *
 * It answers GET and HEAD only (405 otherwise), one request per connection
 * read (keep-alive supported), with a bounded request size, a read timeout
 * and a cap on open connections, so a flood of slow or malformed requests
 * costs the loop thread a bounded amount and never touches event processing,
 * which runs on other threads.
 *
 * The request parser is a pure function over bytes so it can be fuzzed and
 * unit-tested without sockets.
 */
#ifndef TOUCHPULSE_HTTP_H
#define TOUCHPULSE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "touchpulse/buf.h"
#include "touchpulse/common.h"

/* ---- request parser ---------------------------------------------------- */

typedef enum {
  TP_HTTP_PARSE_OK,         /* a whole request head was read */
  TP_HTTP_PARSE_INCOMPLETE, /* need more bytes */
  TP_HTTP_PARSE_BAD,        /* malformed: answer 400 */
  TP_HTTP_PARSE_TOO_LARGE,  /* head over the limit: answer 431 */
} tp_http_parse_t;

typedef enum { TP_HTTP_GET, TP_HTTP_HEAD, TP_HTTP_OTHER } tp_http_method_t;

typedef struct {
  tp_http_method_t method;
  char path[1024];     /* percent-decoded, query string removed, NUL-terminated */
  size_t path_len;
  bool keep_alive;     /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive */
  size_t head_len;     /* bytes of the request head, including the blank line */
  bool has_body;       /* Content-Length > 0 or chunked: answered 400 for GET/HEAD */
} tp_http_request_t;

/**
 * @brief Parse a request head from buf[0..len).
 * @param max_head  heads longer than this return TP_HTTP_PARSE_TOO_LARGE.
 */
tp_http_parse_t tp_http_parse_request(const char *buf, size_t len,
                                      size_t max_head, tp_http_request_t *req);

/* ---- server ------------------------------------------------------------ */

typedef struct tp_http_s tp_http_t;

typedef struct {
  int status;               /* 200 by default */
  const char *content_type; /* static string; "text/plain; charset=utf-8" by default */
  tp_buf_t body;
} tp_http_reply_t;

/**
 * Route a GET (or HEAD: the server drops the body) for path. Called on the
 * loop thread; must not block.
 */
typedef void tp_http_route_cb(void *opaque, const char *path, size_t path_len,
                              tp_http_reply_t *reply);

typedef struct {
  const char *listen;        /* "host:port", IPv4 or [IPv6]; port 0 = any */
  size_t max_request_bytes;  /* default 8192 */
  uint64_t read_timeout_ms;  /* default 5000: whole head must arrive in it */
  int max_connections;       /* default 64; more are accepted and closed */
  tp_http_route_cb *route;
  void *opaque;
} tp_http_opts_t;

/**
 * @brief Bind and listen on loop.
 * @returns TP_OK with *out set, or an error with a message in errstr
 *          (e.g. "http.listen 0.0.0.0:9464: address already in use").
 * @thread loop
 */
tp_err_t tp_http_start(uv_loop_t *loop, const tp_http_opts_t *opts,
                       tp_http_t **out, char *errstr, size_t errstr_size);

/** @returns the bound port (useful after listening on port 0). */
int tp_http_port(const tp_http_t *http);

/** Counters for /metrics. @thread loop */
typedef struct {
  uint64_t requests, bad_requests, rejected_connections, timeouts;
  int open_connections;
} tp_http_stats_t;
void tp_http_get_stats(const tp_http_t *http, tp_http_stats_t *out);

/**
 * @brief Stop listening, close every connection; the server frees itself once
 *        its handles are closed (run the loop until then). NULL-safe.
 * @thread loop
 */
void tp_http_stop(tp_http_t *http);

#endif
