/*
 * http.c -- the HTTP/1.1 server behind /metrics, /healthz, /readyz and
 * /v1/touchpoints/{id}: a request-head parser and a libuv TCP server that
 * runs on the loop thread, beside (never inside) event processing.
 *
 * Why our own parser: the only HTTP parser packaged in Debian bookworm is
 * nodejs/http-parser 2.9.4, archived upstream since 2022, and this server
 * needs only the request line and three headers of GET/HEAD requests. A
 * small, pure parser that we can fuzz and unit-test without sockets is the
 * better trade than a large dependency nobody maintains.
 *
 * The server bounds what a client can cost: each connection owns one fixed
 * input buffer of max_request_bytes, its queued output is capped (reading
 * pauses above the cap), a timer closes it when a request head does not
 * arrive in read_timeout_ms, and connections beyond max_connections are
 * accepted and closed at once so the listen backlog never fills. Requests
 * with a body are refused (400 or 405) and the connection closed, so bodies
 * are never read. Responses are queued with uv_write(), which keeps whatever
 * the kernel does not take at once.
 */
#include "touchpulse/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- request parser ---------------------------------------------------- */

/* tchar from RFC 9110 5.6.2: what methods and header names are made of. */
static bool is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return true;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int hex_value(unsigned char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

static bool ieq(const char *a, size_t a_len, const char *b) {
  size_t b_len = strlen(b);
  if (a_len != b_len)
    return false;
  for (size_t i = 0; i < a_len; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z')
      x = (unsigned char)(x - 'A' + 'a');
    if (x != y)
      return false;
  }
  return true;
}

static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* What the headers said, gathered while the head is scanned. */
typedef struct {
  int minor; /* HTTP/1.<minor> */
  bool conn_close, conn_keep_alive, chunked_or_te;
  bool have_length;
  uint64_t length;
} head_t;

/*
 * Parse the request line p[0..n). complete is false while its LF has not
 * arrived: then running out of bytes means INCOMPLETE, not BAD, so a client
 * that sends garbage (a TLS hello, say) is answered at once instead of at the
 * timeout.
 */
static tp_http_parse_t parse_request_line(const char *p, size_t n,
                                          bool complete, tp_http_request_t *req,
                                          head_t *head) {
  const tp_http_parse_t out_of_bytes =
      complete ? TP_HTTP_PARSE_BAD : TP_HTTP_PARSE_INCOMPLETE;
  size_t i = 0;

  while (i < n && is_tchar((unsigned char)p[i]))
    i++;
  if (i == n)
    return out_of_bytes;
  if (i == 0 || p[i] != ' ')
    return TP_HTTP_PARSE_BAD;
  /* Methods are case-sensitive (RFC 9110 9.1): "get" is some other method. */
  if (i == 3 && memcmp(p, "GET", 3) == 0)
    req->method = TP_HTTP_GET;
  else if (i == 4 && memcmp(p, "HEAD", 4) == 0)
    req->method = TP_HTTP_HEAD;
  else
    req->method = TP_HTTP_OTHER;
  i++;

  /* Origin form only: we are nobody's proxy, and "*" is for OPTIONS. */
  if (i == n)
    return out_of_bytes;
  if (p[i] != '/')
    return TP_HTTP_PARSE_BAD;

  /*
   * Decode the path as it is scanned. Decoded control bytes (NUL above all)
   * are refused because routes compare paths as C strings and echo ids into
   * JSON and label values. No dot-segment removal: paths are matched, never
   * mapped to files.
   */
  const size_t cap = sizeof(req->path) - 1;
  size_t out = 0;
  bool in_query = false;
  for (;;) {
    if (i == n)
      return out_of_bytes;
    unsigned char ch = (unsigned char)p[i];
    if (ch == ' ')
      break;
    if (ch <= 0x20 || ch >= 0x7f || ch == '#')
      return TP_HTTP_PARSE_BAD;
    if (in_query) {
      i++;
      continue;
    }
    if (ch == '?') {
      in_query = true;
      i++;
      continue;
    }
    if (ch == '%') {
      if (i + 1 < n && hex_value((unsigned char)p[i + 1]) < 0)
        return TP_HTTP_PARSE_BAD;
      if (i + 2 < n && hex_value((unsigned char)p[i + 2]) < 0)
        return TP_HTTP_PARSE_BAD;
      if (i + 2 >= n)
        return out_of_bytes;
      ch = (unsigned char)(hex_value((unsigned char)p[i + 1]) * 16 +
                           hex_value((unsigned char)p[i + 2]));
      if (ch < 0x20 || ch == 0x7f)
        return TP_HTTP_PARSE_BAD;
      i += 3;
    } else {
      i++;
    }
    if (out == cap)
      return TP_HTTP_PARSE_TOO_LARGE;
    req->path[out++] = (char)ch;
  }
  req->path[out] = '\0';
  req->path_len = out;
  i++;

  /* HTTP/1.0 and HTTP/1.1 only; 0.9 has no version and 2 is not spoken here. */
  static const char version[] = "HTTP/1.";
  const size_t vlen = sizeof(version) - 1;
  size_t rest = n - i;
  if (!complete) {
    size_t k = TP_MIN(rest, vlen);
    if (memcmp(p + i, version, k) != 0)
      return TP_HTTP_PARSE_BAD;
    if (rest <= vlen)
      return TP_HTTP_PARSE_INCOMPLETE;
    if ((p[i + vlen] != '0' && p[i + vlen] != '1') || rest > vlen + 1)
      return TP_HTTP_PARSE_BAD;
    return TP_HTTP_PARSE_INCOMPLETE;
  }
  if (rest != vlen + 1 || memcmp(p + i, version, vlen) != 0 ||
      (p[i + vlen] != '0' && p[i + vlen] != '1'))
    return TP_HTTP_PARSE_BAD;
  head->minor = p[i + vlen] - '0';
  return TP_HTTP_PARSE_OK;
}

/* Connection is a comma list of tokens; only close and keep-alive matter. */
static void parse_connection(const char *v, size_t n, head_t *head) {
  size_t i = 0;
  while (i < n) {
    size_t start = i;
    while (i < n && v[i] != ',')
      i++;
    size_t end = i;
    while (start < end && is_ows(v[start]))
      start++;
    while (end > start && is_ows(v[end - 1]))
      end--;
    if (ieq(v + start, end - start, "close"))
      head->conn_close = true;
    else if (ieq(v + start, end - start, "keep-alive"))
      head->conn_keep_alive = true;
    i++; /* past the comma, or past the end */
  }
}

/*
 * Content-Length: digits only. A list ("5, 5") or a sign is refused, and so
 * are two headers that disagree: either is how request smuggling starts.
 */
static tp_http_parse_t parse_content_length(const char *v, size_t n,
                                            head_t *head) {
  uint64_t value = 0;
  if (n == 0)
    return TP_HTTP_PARSE_BAD;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9')
      return TP_HTTP_PARSE_BAD;
    uint64_t digit = (uint64_t)(v[i] - '0');
    if (value > (UINT64_MAX - digit) / 10)
      return TP_HTTP_PARSE_BAD;
    value = value * 10 + digit;
  }
  if (head->have_length && head->length != value)
    return TP_HTTP_PARSE_BAD;
  head->have_length = true;
  head->length = value;
  return TP_HTTP_PARSE_OK;
}

/* One header line p[0..n), n > 0, without its line end. */
static tp_http_parse_t parse_header(const char *p, size_t n, head_t *head) {
  /* obs-fold (RFC 9112 5.2): refused rather than unfolded. */
  if (is_ows(p[0]))
    return TP_HTTP_PARSE_BAD;
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)p[i]))
    i++;
  /* No whitespace between name and colon (RFC 9112 5.1). */
  if (i == 0 || i == n || p[i] != ':')
    return TP_HTTP_PARSE_BAD;
  const char *name = p;
  size_t name_len = i;
  i++;
  for (size_t k = i; k < n; k++) {
    unsigned char ch = (unsigned char)p[k];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return TP_HTTP_PARSE_BAD;
  }
  while (i < n && is_ows(p[i]))
    i++;
  size_t end = n;
  while (end > i && is_ows(p[end - 1]))
    end--;
  const char *value = p + i;
  size_t value_len = end - i;

  if (ieq(name, name_len, "connection"))
    parse_connection(value, value_len, head);
  else if (ieq(name, name_len, "content-length"))
    return parse_content_length(value, value_len, head);
  else if (ieq(name, name_len, "transfer-encoding"))
    head->chunked_or_te = true;
  return TP_HTTP_PARSE_OK;
}

tp_http_parse_t tp_http_parse_request(const char *buf, size_t len,
                                      size_t max_head, tp_http_request_t *req) {
  head_t head = {0};
  bool have_request_line = false;
  size_t limit = TP_MIN(len, max_head);
  size_t pos = 0;

  req->method = TP_HTTP_OTHER;
  req->path[0] = '\0';
  req->path_len = 0;
  req->keep_alive = false;
  req->head_len = 0;
  req->has_body = false;

  while (pos < limit) {
    const char *lf = memchr(buf + pos, '\n', limit - pos);
    if (lf == NULL)
      break;
    size_t lf_at = (size_t)(lf - buf);
    const char *line = buf + pos;
    size_t line_len = lf_at - pos;
    if (line_len > 0 && line[line_len - 1] == '\r')
      line_len--; /* CRLF, or a bare LF, which we tolerate */
    pos = lf_at + 1;

    if (!have_request_line) {
      /* RFC 9112 2.2: ignore empty lines before the request line. */
      if (line_len == 0)
        continue;
      tp_http_parse_t r =
          parse_request_line(line, line_len, true, req, &head);
      if (r != TP_HTTP_PARSE_OK)
        return r;
      have_request_line = true;
      continue;
    }
    if (line_len == 0) {
      req->head_len = pos;
      req->has_body =
          head.chunked_or_te || (head.have_length && head.length > 0);
      req->keep_alive = head.minor == 1
                            ? !head.conn_close
                            : head.conn_keep_alive && !head.conn_close;
      return TP_HTTP_PARSE_OK;
    }
    tp_http_parse_t r = parse_header(line, line_len, &head);
    if (r != TP_HTTP_PARSE_OK)
      return r;
  }

  /* Judge a request line still in flight by what has arrived of it. */
  if (!have_request_line && pos < limit) {
    size_t n = limit - pos;
    if (buf[pos + n - 1] == '\r')
      n--; /* its LF may be next */
    if (n > 0) {
      tp_http_request_t scratch;
      tp_http_parse_t r =
          parse_request_line(buf + pos, n, false, &scratch, &head);
      if (r != TP_HTTP_PARSE_INCOMPLETE)
        return r;
    }
  }
  /* max_head bytes read and no blank line among them: the head is longer. */
  if (len >= max_head)
    return TP_HTTP_PARSE_TOO_LARGE;
  return TP_HTTP_PARSE_INCOMPLETE;
}

/* ---- server ------------------------------------------------------------ */

/*
 * Everything from here on runs on the loop thread (@thread loop), so the
 * server and its connections need no locks; other threads reach the server
 * only through the loop (uv_async_send), as STYLE.md section 6 says.
 */

#define DEFAULT_MAX_REQUEST_BYTES 8192
#define DEFAULT_READ_TIMEOUT_MS 5000
#define DEFAULT_MAX_CONNECTIONS 64
/* The buffer is handed to libuv reads, whose length is an unsigned int. */
#define MAX_MAX_REQUEST_BYTES (64u * 1024 * 1024)
#define LISTEN_BACKLOG 511
/*
 * Output queued on one connection beyond which it stops reading (and so
 * stops producing responses) until the client takes some: pipelining into a
 * client that never reads costs at most this much plus one response.
 */
#define OUT_HIGH_WATER_BYTES (64 * 1024)
#define OUT_HIGH_WATER_WRITES 32
/*
 * After a closing response the write side is shut and input is read and
 * dropped until the client closes, for at most this long. Closing with
 * unread input makes the kernel send RST, which can destroy the response
 * before the client reads it (an oversized head is the usual case).
 */
#define LINGER_MS 1000

#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"

typedef enum {
  CONN_READING,  /* reading and answering requests */
  CONN_DRAINING, /* last response queued, write side shutting: drop input */
} conn_state_t;

typedef struct conn_s conn_t;

/*
 * One client connection. Invariants: buf holds len bytes received and not
 * yet answered, len < max_request_bytes while reading; out_bytes and
 * out_writes count responses handed to uv_write() whose callback has not run.
 * The struct is freed when both handles have closed.
 */
struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  tp_http_t *http;
  conn_t *prev, *next; /* http->conns */
  char *buf;
  size_t len;
  size_t out_bytes;
  int out_writes;
  uint64_t served; /* responses queued on this connection */
  conn_state_t state;
  int open_handles;
  bool reading, eof, closing;
  bool shut; /* the write side is shut: every response has gone out */
};

/*
 * The server. live counts what must close before it can be freed: the
 * listener, the spare handle while in use, and each connection. Once stopping
 * is set, the close callback that brings live to zero frees the struct.
 */
struct tp_http_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  /*
   * Rejected connections are accepted into this one handle and closed, so
   * rejecting needs no memory. While it closes, a further connection is left
   * pending in libuv (which stops polling the listener) and is taken up
   * from the spare's close callback.
   */
  uv_tcp_t spare;
  bool spare_busy, accept_pending;
  tp_http_opts_t opts; /* defaults applied; listen is not kept */
  int port;
  conn_t *conns;
  tp_http_stats_t stats;
  int live;
  bool stopping;
};

typedef struct {
  uv_write_t req;
  conn_t *conn;
  tp_buf_t body; /* owned; sent after head */
  size_t bytes;
  char head[]; /* status line and headers */
} write_req_t;

static void process(conn_t *c);

static void server_unref(tp_http_t *http) {
  if (--http->live == 0 && http->stopping)
    tp_free(http);
}

static void conn_handle_closed_cb(uv_handle_t *handle) {
  conn_t *c = handle->data;
  if (--c->open_handles > 0)
    return;
  tp_http_t *http = c->http;
  tp_free(c->buf);
  tp_free(c);
  server_unref(http);
}

/* Close at once; pending writes are cancelled by libuv. NULL-safe, idempotent. */
static void conn_close(conn_t *c) {
  if (c == NULL || c->closing)
    return;
  c->closing = true;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    c->http->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->http->stats.open_connections--;
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
}

static bool conn_paused(const conn_t *c) {
  return c->out_bytes >= OUT_HIGH_WATER_BYTES ||
         c->out_writes >= OUT_HIGH_WATER_WRITES;
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *out) {
  conn_t *c = handle->data;
  size_t max = c->http->opts.max_request_bytes;
  (void)suggested;
  if (c->state == CONN_DRAINING) {
    *out = uv_buf_init(c->buf, (unsigned)max); /* read to drop */
    return;
  }
  /* Zero room yields UV_ENOBUFS in read_cb; process() never leaves it full. */
  *out = uv_buf_init(c->buf + c->len, (unsigned)(max - c->len));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* Read exactly when there is room and a reason to: not while paused. */
static void update_reading(conn_t *c) {
  bool want = !c->closing && !c->eof &&
              (c->state == CONN_DRAINING || !conn_paused(c));
  if (want == c->reading)
    return;
  if (want) {
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
      conn_close(c);
      return;
    }
  } else {
    uv_read_stop((uv_stream_t *)&c->tcp);
  }
  c->reading = want;
}

static void timer_cb(uv_timer_t *timer) {
  conn_t *c = timer->data;
  /*
   * A connection that has answered everything and holds no partial request
   * is an idle keep-alive connection: closing it is routine. Anything else
   * (no head yet, half a head, a client not reading its responses) is a
   * timeout worth counting.
   */
  if (c->state == CONN_READING &&
      !(c->served > 0 && c->len == 0 && c->out_writes == 0))
    c->http->stats.timeouts++;
  conn_close(c);
}

static void arm_timer(conn_t *c, uint64_t ms) {
  if (uv_timer_start(&c->timer, timer_cb, ms, 0) != 0)
    conn_close(c);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  /* Cancelled when the connection closed first; then c is closing. */
  if (status < 0 || c->eof) {
    conn_close(c);
    return;
  }
  c->shut = true;
  arm_timer(c, TP_MIN((uint64_t)LINGER_MS, c->http->opts.read_timeout_ms));
}

/*
 * The last response is queued: shut the write side once it has gone out
 * (within read_timeout_ms), then drop input until the client closes or
 * LINGER_MS pass.
 */
static void conn_finish(conn_t *c) {
  if (c->closing || c->state == CONN_DRAINING)
    return;
  c->state = CONN_DRAINING;
  c->len = 0;
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
    conn_close(c);
    return;
  }
  arm_timer(c, c->http->opts.read_timeout_ms);
  update_reading(c);
}

static void write_cb(uv_write_t *req, int status) {
  write_req_t *wr = (write_req_t *)req;
  conn_t *c = wr->conn;
  c->out_bytes -= wr->bytes;
  c->out_writes--;
  tp_buf_free(&wr->body);
  tp_free(wr);
  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->state != CONN_READING)
    return;
  /* The client is reading: give it a full timeout for its next request. */
  if (c->out_writes == 0)
    arm_timer(c, c->http->opts.read_timeout_ms);
  process(c);
}

static const char *reason_phrase(int status) {
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

typedef struct {
  int status;
  const char *content_type;
  tp_buf_t *body;     /* moved into the write request */
  const char *text;   /* static body, used when body is NULL */
  bool send_body;     /* false for HEAD */
  bool close;         /* Connection: close, then conn_finish() */
  bool keep_alive;    /* say so: HTTP/1.0 clients need to hear it */
  bool allow;         /* 405: say what is allowed */
} response_t;

/*
 * Queue one response. The head is formatted into the write request itself
 * and the body's memory moves into it, so nothing is copied twice.
 * @returns false if the connection was closed (no memory, or write failed).
 */
static bool send_response(conn_t *c, response_t *rsp) {
  static const char fmt[] = "HTTP/1.1 %d %s\r\n"
                            "Content-Type: %s\r\n"
                            "Content-Length: %zu\r\n"
                            "%s%s"
                            "\r\n";
  const char *body = rsp->body != NULL ? rsp->body->data : rsp->text;
  size_t body_len = rsp->body != NULL ? rsp->body->len : strlen(rsp->text);
  const char *conn_hdr = rsp->close           ? "Connection: close\r\n"
                         : rsp->keep_alive ? "Connection: keep-alive\r\n"
                                           : "";
  const char *allow_hdr = rsp->allow ? "Allow: GET, HEAD\r\n" : "";
  const char *reason = reason_phrase(rsp->status);

  int n = snprintf(NULL, 0, fmt, rsp->status, reason, rsp->content_type,
                   body_len, allow_hdr, conn_hdr);
  write_req_t *wr = n < 0 ? NULL : tp_malloc(sizeof(*wr) + (size_t)n + 1);
  if (wr == NULL) {
    if (rsp->body != NULL)
      tp_buf_free(rsp->body);
    conn_close(c);
    return false;
  }
  snprintf(wr->head, (size_t)n + 1, fmt, rsp->status, reason,
           rsp->content_type, body_len, allow_hdr, conn_hdr);
  wr->conn = c;
  tp_buf_init(&wr->body);
  if (rsp->body != NULL) {
    wr->body = *rsp->body; /* moved */
    tp_buf_init(rsp->body);
  }

  /* Fields set directly: uv_buf_init() takes an unsigned int length. */
  uv_buf_t bufs[2] = {{.base = wr->head, .len = (size_t)n}};
  unsigned nbufs = 1;
  if (rsp->send_body && body_len > 0)
    bufs[nbufs++] = (uv_buf_t){.base = (char *)body, .len = body_len};
  wr->bytes = (size_t)n + (nbufs > 1 ? body_len : 0);
  if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, nbufs, write_cb) != 0) {
    tp_buf_free(&wr->body);
    tp_free(wr);
    conn_close(c);
    return false;
  }
  c->out_bytes += wr->bytes;
  c->out_writes++;
  c->served++;
  c->http->stats.requests++;
  if (rsp->close)
    conn_finish(c);
  return true;
}

static void send_error(conn_t *c, int status, const char *text) {
  response_t rsp = {.status = status,
                    .content_type = DEFAULT_CONTENT_TYPE,
                    .text = text,
                    .send_body = true,
                    .close = true,
                    .allow = status == 405};
  send_response(c, &rsp);
}

/* Answer one parsed request (its head is already consumed from c->buf). */
static void answer(conn_t *c, const tp_http_request_t *req) {
  if (req->method == TP_HTTP_OTHER) {
    send_error(c, 405, "method not allowed\n");
    return;
  }
  /* Bodies are never read, so a GET with one could not be framed. */
  if (req->has_body) {
    c->http->stats.bad_requests++;
    send_error(c, 400, "bad request: GET and HEAD take no body\n");
    return;
  }

  tp_http_reply_t reply = {.status = 200,
                           .content_type = DEFAULT_CONTENT_TYPE,
                           .body = TP_BUF_INIT};
  c->http->opts.route(c->http->opts.opaque, req->path, req->path_len, &reply);
  if (c->closing) { /* the route stopped the server */
    tp_buf_free(&reply.body);
    return;
  }
  if (tp_buf_failed(&reply.body)) {
    tp_buf_free(&reply.body);
    send_error(c, 503, "service unavailable: out of memory\n");
    return;
  }
  /* 1xx would need different framing; nothing here sends it. */
  if (reply.status < 200 || reply.status > 599)
    reply.status = 500;
  response_t rsp = {.status = reply.status,
                    .content_type = reply.content_type != NULL
                                        ? reply.content_type
                                        : DEFAULT_CONTENT_TYPE,
                    .body = &reply.body,
                    .send_body = req->method == TP_HTTP_GET,
                    .close = !req->keep_alive,
                    .keep_alive = req->keep_alive};
  send_response(c, &rsp);
}

/*
 * Answer every complete request in the buffer, in order, until one closes
 * the connection, the head is incomplete, or too much output is queued.
 */
static void process(conn_t *c) {
  const size_t max = c->http->opts.max_request_bytes;
  while (!c->closing && c->state == CONN_READING && c->len > 0 &&
         !conn_paused(c)) {
    tp_http_request_t req;
    tp_http_parse_t r = tp_http_parse_request(c->buf, c->len, max, &req);
    if (r == TP_HTTP_PARSE_INCOMPLETE)
      break;
    if (r == TP_HTTP_PARSE_BAD) {
      c->http->stats.bad_requests++;
      send_error(c, 400, "bad request\n");
      break;
    }
    if (r == TP_HTTP_PARSE_TOO_LARGE) {
      c->http->stats.bad_requests++;
      send_error(c, 431, "request head too large\n");
      break;
    }
    memmove(c->buf, c->buf + req.head_len, c->len - req.head_len);
    c->len -= req.head_len;
    answer(c, &req);
    if (!c->closing && c->state == CONN_READING)
      arm_timer(c, c->http->opts.read_timeout_ms);
  }
  if (c->closing)
    return;
  /* A client that half-closed gets its answers, then the connection ends. */
  if (c->eof && c->state == CONN_READING && !conn_paused(c))
    conn_finish(c);
  update_reading(c);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  (void)buf;
  if (nread == 0 || c->closing)
    return; /* EAGAIN */
  if (c->state == CONN_DRAINING) {
    if (nread == UV_EOF && !c->shut) {
      /* Half-closed client: let the response finish; shutdown_cb closes. */
      c->eof = true;
      c->reading = false;
    } else if (nread < 0) {
      conn_close(c);
    }
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF) {
      conn_close(c); /* reset or ENOBUFS: only this connection ends */
      return;
    }
    c->eof = true;
    c->reading = false; /* libuv stopped reading at EOF */
    process(c);
    return;
  }
  c->len += (size_t)nread;
  process(c);
}

static void spare_closed_cb(uv_handle_t *handle);

/* Accept the pending connection into the spare handle and close it. */
static void reject(tp_http_t *http) {
  if (http->spare_busy) {
    http->accept_pending = true; /* libuv holds it and stops polling */
    return;
  }
  http->stats.rejected_connections++;
  uv_tcp_init(http->loop, &http->spare);
  http->spare.data = http;
  http->spare_busy = true;
  http->live++;
  (void)uv_accept((uv_stream_t *)&http->listener, (uv_stream_t *)&http->spare);
  uv_close((uv_handle_t *)&http->spare, spare_closed_cb);
}

static void connection_cb(uv_stream_t *server, int status);

static void spare_closed_cb(uv_handle_t *handle) {
  tp_http_t *http = handle->data;
  http->spare_busy = false;
  if (http->accept_pending && !http->stopping) {
    http->accept_pending = false;
    connection_cb((uv_stream_t *)&http->listener, 0);
  }
  server_unref(http); /* last: it may free http */
}

static void connection_cb(uv_stream_t *server, int status) {
  tp_http_t *http = server->data;
  /* Accept errors (EMFILE and the like) concern no open connection. */
  if (status < 0 || http->stopping)
    return;
  if (http->stats.open_connections >= http->opts.max_connections) {
    reject(http);
    return;
  }
  conn_t *c = tp_calloc(1, sizeof(*c));
  char *buf = c != NULL ? tp_malloc(http->opts.max_request_bytes) : NULL;
  if (buf == NULL) {
    tp_free(c);
    reject(http);
    return;
  }
  c->http = http;
  c->buf = buf;
  c->state = CONN_READING;
  uv_tcp_init(http->loop, &c->tcp);
  uv_timer_init(http->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  http->live++;
  c->next = http->conns;
  if (http->conns != NULL)
    http->conns->prev = c;
  http->conns = c;
  http->stats.open_connections++;

  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  /* Each response is one write; Nagle would only delay pipelined ones. */
  uv_tcp_nodelay(&c->tcp, 1);
  arm_timer(c, http->opts.read_timeout_ms);
  update_reading(c);
}

/*
 * Parse "host:port" or "[v6]:port" into addr. An empty host means every
 * IPv4 interface, as Go and Prometheus read ":9464".
 * @returns false if s is not of that form.
 */
static bool parse_listen(const char *s, struct sockaddr_storage *addr) {
  char host[64];
  const char *colon;
  size_t host_len;
  bool v6 = s[0] == '[';

  if (v6) {
    const char *rb = strchr(s, ']');
    if (rb == NULL || rb[1] != ':')
      return false;
    host_len = (size_t)(rb - s - 1);
    memcpy(host, s + 1, TP_MIN(host_len, sizeof(host) - 1));
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL)
      return false;
    host_len = (size_t)(colon - s);
    memcpy(host, s, TP_MIN(host_len, sizeof(host) - 1));
  }
  if (host_len >= sizeof(host))
    return false;
  host[host_len] = '\0';

  const char *p = colon + 1;
  long port = 0;
  if (*p == '\0' || strlen(p) > 5)
    return false;
  for (; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return false;
    port = port * 10 + (*p - '0');
  }
  if (port > 65535)
    return false;

  memset(addr, 0, sizeof(*addr));
  if (v6)
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr) == 0;
  return uv_ip4_addr(host_len == 0 ? "0.0.0.0" : host, (int)port,
                     (struct sockaddr_in *)addr) == 0;
}

/*
 * Bind and listen on a plain socket before any libuv handle exists, so that
 * every likely failure (bad address, port in use, no permission) leaves
 * nothing on the loop and nothing to wait for.
 * @returns the listening fd, or a negative libuv error code.
 */
static int open_listener(const struct sockaddr_storage *addr) {
  socklen_t addr_len = addr->ss_family == AF_INET6
                           ? sizeof(struct sockaddr_in6)
                           : sizeof(struct sockaddr_in);
  int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  int on = 1;
  /* A restarted service must be able to rebind while old sockets linger. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      bind(fd, (const struct sockaddr *)addr, addr_len) != 0 ||
      listen(fd, LISTEN_BACKLOG) != 0) {
    int err = uv_translate_sys_error(errno);
    close(fd);
    return err;
  }
  return fd;
}

static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult): getsockname() set it */
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/*
 * libuv writes to sockets with write(2), which raises SIGPIPE when the
 * client has gone: a client must not be able to kill the process, so the
 * default disposition becomes "ignore" (the write then fails with EPIPE and
 * only that connection closes). A handler the application installed is kept.
 */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

static void listener_closed_cb(uv_handle_t *handle) {
  server_unref(handle->data);
}

tp_err_t tp_http_start(uv_loop_t *loop, const tp_http_opts_t *opts,
                       tp_http_t **out, char *errstr, size_t errstr_size) {
  struct sockaddr_storage addr;
  tp_http_t *http = NULL;
  int fd = -1, err;

  *out = NULL;
  if (loop == NULL || opts == NULL || opts->route == NULL ||
      opts->listen == NULL) {
    snprintf(errstr, errstr_size,
             "http: a loop, a listen address and a route are required");
    return TP_EINVAL;
  }
  if (opts->max_connections < 0 ||
      opts->max_request_bytes > MAX_MAX_REQUEST_BYTES) {
    snprintf(errstr, errstr_size,
             "http: max_connections must be >= 0 and max_request_bytes "
             "at most %u",
             MAX_MAX_REQUEST_BYTES);
    return TP_EINVAL;
  }
  if (!parse_listen(opts->listen, &addr)) {
    snprintf(errstr, errstr_size, "http.listen '%s': expected host:port",
             opts->listen);
    return TP_ECONFIG;
  }
  http = tp_calloc(1, sizeof(*http));
  if (http == NULL) {
    snprintf(errstr, errstr_size, "http: %s", tp_strerror(TP_ENOMEM));
    return TP_ENOMEM;
  }
  fd = open_listener(&addr);
  if (fd < 0) {
    snprintf(errstr, errstr_size, "http.listen %s: %s", opts->listen,
             uv_strerror(fd));
    tp_free(http);
    return TP_EIO;
  }

  http->loop = loop;
  http->opts = *opts;
  http->opts.listen = NULL; /* the caller's string need not outlive us */
  if (http->opts.max_request_bytes == 0)
    http->opts.max_request_bytes = DEFAULT_MAX_REQUEST_BYTES;
  if (http->opts.read_timeout_ms == 0)
    http->opts.read_timeout_ms = DEFAULT_READ_TIMEOUT_MS;
  if (http->opts.max_connections == 0)
    http->opts.max_connections = DEFAULT_MAX_CONNECTIONS;
  http->port = bound_port(fd);
  ignore_sigpipe();

  uv_tcp_init(loop, &http->listener);
  http->listener.data = http;
  http->live = 1;
  err = uv_tcp_open(&http->listener, fd);
  if (err != 0)
    close(fd); /* not the handle's yet */
  else
    err = uv_listen((uv_stream_t *)&http->listener, LISTEN_BACKLOG,
                    connection_cb);
  if (err != 0) {
    /*
     * Unlikely (the socket already listens), but the handle is on the loop
     * now and can only go through uv_close: the server frees itself in the
     * close callback when the loop next runs.
     */
    snprintf(errstr, errstr_size, "http.listen %s: %s", opts->listen,
             uv_strerror(err));
    http->stopping = true;
    uv_close((uv_handle_t *)&http->listener, listener_closed_cb);
    return TP_EIO;
  }
  *out = http;
  return TP_OK;
}

/* @thread any: set before tp_http_start() returns and never changed. */
int tp_http_port(const tp_http_t *http) { return http->port; }

void tp_http_get_stats(const tp_http_t *http, tp_http_stats_t *out) {
  *out = http->stats;
}

void tp_http_stop(tp_http_t *http) {
  if (http == NULL || http->stopping)
    return;
  http->stopping = true;
  uv_close((uv_handle_t *)&http->listener, listener_closed_cb);
  while (http->conns != NULL)
    conn_close(http->conns); /* unlinks it */
}
