/*
 * test_http.c -- the request parser as a pure function (including a seeded
 * random-input loop), then the server over real sockets on 127.0.0.1: the
 * loop runs in a thread the test creates and is told what to do through a
 * uv_async_t; the test thread is the client, with blocking sockets.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "touchpulse/http.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/*
 * LeakSanitizer reports at exit, after criterion has judged the test, and
 * criterion ignores failures in .fini: so tests check inside their body.
 */
static void assert_no_leaks(void) {
#if defined(__SANITIZE_ADDRESS__)
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
               "memory leaked (LeakSanitizer report above)");
#endif
}

/* A hung server (a connection never closed, say) fails instead of blocking. */
TestSuite(http, .timeout = 60);

#define MAX_HEAD 8192

/* ---- parser ------------------------------------------------------------ */

/* Parse from an exact-size heap copy, so ASan sees any read past len. */
static tp_http_parse_t parse_n(const char *s, size_t n, size_t max_head,
                               tp_http_request_t *req) {
  char *copy = malloc(n > 0 ? n : 1);
  cr_assert_not_null(copy);
  memcpy(copy, s, n);
  tp_http_parse_t r = tp_http_parse_request(copy, n, max_head, req);
  free(copy);
  return r;
}

static tp_http_parse_t parse(const char *s, tp_http_request_t *req) {
  return parse_n(s, strlen(s), MAX_HEAD, req);
}

static tp_http_parse_t parse_line(const char *request_line) {
  char buf[2048];
  tp_http_request_t req;
  snprintf(buf, sizeof(buf), "%s\r\nHost: x\r\n\r\n", request_line);
  return parse(buf, &req);
}

static tp_http_parse_t parse_header(const char *headers) {
  char buf[2048];
  tp_http_request_t req;
  snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n%s\r\n", headers);
  return parse(buf, &req);
}

Test(http, parses_simple_get) {
  const char *s = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
  tp_http_request_t req;
  cr_assert_eq(parse(s, &req), TP_HTTP_PARSE_OK);
  cr_expect_eq(req.method, TP_HTTP_GET);
  cr_expect_str_eq(req.path, "/metrics");
  cr_expect_eq(req.path_len, 8);
  cr_expect_eq(req.head_len, strlen(s));
  cr_expect(req.keep_alive);
  cr_expect_not(req.has_body);
}

Test(http, parses_head_method) {
  tp_http_request_t req;
  cr_assert_eq(parse("HEAD /healthz HTTP/1.1\r\n\r\n", &req), TP_HTTP_PARSE_OK);
  cr_expect_eq(req.method, TP_HTTP_HEAD);
  cr_expect_str_eq(req.path, "/healthz");
}

Test(http, other_valid_methods_parse_as_other) {
  static const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "get",
                                  "GETX", "M-SEARCH"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(methods); i++) {
    char buf[128];
    tp_http_request_t req;
    snprintf(buf, sizeof(buf), "%s /x HTTP/1.1\r\n\r\n", methods[i]);
    cr_expect_eq(parse(buf, &req), TP_HTTP_PARSE_OK, "%s", methods[i]);
    cr_expect_eq(req.method, TP_HTTP_OTHER, "%s", methods[i]);
  }
}

Test(http, rejects_method_that_is_not_a_token) {
  cr_expect_eq(parse_line("G(T / HTTP/1.1"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_line(" GET / HTTP/1.1"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_line("GET  / HTTP/1.1"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_line("GET\t/ HTTP/1.1"), TP_HTTP_PARSE_BAD);
}

Test(http, strips_query_string) {
  tp_http_request_t req;
  cr_assert_eq(parse("GET /metrics?name[]=x&y=%zz HTTP/1.1\r\n\r\n", &req),
               TP_HTTP_PARSE_OK);
  cr_expect_str_eq(req.path, "/metrics");
  cr_expect_eq(req.path_len, 8);
  cr_assert_eq(parse("GET /?a=b HTTP/1.1\r\n\r\n", &req), TP_HTTP_PARSE_OK);
  cr_expect_str_eq(req.path, "/");
}

Test(http, percent_decodes_path) {
  tp_http_request_t req;
  cr_assert_eq(
      parse("GET /v1/touchpoints/support%2fchat%20x%3A1 HTTP/1.1\r\n\r\n", &req),
      TP_HTTP_PARSE_OK);
  cr_expect_str_eq(req.path, "/v1/touchpoints/support/chat x:1");
  cr_assert_eq(parse("GET /caf%C3%A9 HTTP/1.1\r\n\r\n", &req), TP_HTTP_PARSE_OK);
  cr_expect_str_eq(req.path, "/caf\xc3\xa9");
  cr_expect_eq(req.path_len, 6);
}

Test(http, paths_with_slashes_arrive_whole) {
  tp_http_request_t req;
  cr_assert_eq(parse("GET /v1/touchpoints/support/chat HTTP/1.1\r\n\r\n", &req),
               TP_HTTP_PARSE_OK);
  cr_expect_str_eq(req.path, "/v1/touchpoints/support/chat");
}

Test(http, rejects_bad_percent_escapes) {
  static const char *lines[] = {"GET /% HTTP/1.1",    "GET /%4 HTTP/1.1",
                                "GET /%zz HTTP/1.1",  "GET /%4g HTTP/1.1",
                                "GET /a%g1 HTTP/1.1", "GET /%%41 HTTP/1.1"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(lines); i++)
    cr_expect_eq(parse_line(lines[i]), TP_HTTP_PARSE_BAD, "%s", lines[i]);
}

Test(http, rejects_nul_and_control_characters_in_path) {
  static const char *lines[] = {"GET /a%00b HTTP/1.1", "GET /%0a HTTP/1.1",
                                "GET /%0D%0A HTTP/1.1", "GET /%1f HTTP/1.1",
                                "GET /%7F HTTP/1.1",   "GET /a\x01 HTTP/1.1",
                                "GET /a\x7f HTTP/1.1", "GET /\xc3\xa9 HTTP/1.1",
                                "GET /a#frag HTTP/1.1"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(lines); i++)
    cr_expect_eq(parse_line(lines[i]), TP_HTTP_PARSE_BAD, "line %zu", i);
}

Test(http, requires_origin_form_target) {
  cr_expect_eq(parse_line("GET http://x/ HTTP/1.1"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_line("OPTIONS * HTTP/1.1"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_line("GET metrics HTTP/1.1"), TP_HTTP_PARSE_BAD);
}

Test(http, rejects_missing_version) {
  cr_expect_eq(parse_line("GET /"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_line("GET / "), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_line("GET"), TP_HTTP_PARSE_BAD);
}

Test(http, rejects_versions_other_than_1_0_and_1_1) {
  static const char *lines[] = {"GET / HTTP/2.0",  "GET / HTTP/1.2",
                                "GET / HTTP/0.9",  "GET / http/1.1",
                                "GET / HTTP/1.1 ", "GET / HTTP/1.10",
                                "GET / HTTP/1.",   "GET / HTTP/1.1x"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(lines); i++)
    cr_expect_eq(parse_line(lines[i]), TP_HTTP_PARSE_BAD, "%s", lines[i]);
  cr_expect_eq(parse_line("GET / HTTP/1.0"), TP_HTTP_PARSE_OK);
}

Test(http, accepts_bare_lf_line_ends) {
  const char *s = "GET /x HTTP/1.1\nHost: a\r\nAccept: */*\n\n";
  tp_http_request_t req;
  cr_assert_eq(parse(s, &req), TP_HTTP_PARSE_OK);
  cr_expect_str_eq(req.path, "/x");
  cr_expect_eq(req.head_len, strlen(s));
}

Test(http, ignores_empty_lines_before_request_line) {
  const char *s = "\r\n\nGET /x HTTP/1.1\r\n\r\n";
  tp_http_request_t req;
  cr_assert_eq(parse(s, &req), TP_HTTP_PARSE_OK);
  cr_expect_eq(req.head_len, strlen(s));
}

Test(http, every_proper_prefix_is_incomplete) {
  static const char *requests[] = {
      "GET /v1/touchpoints/support%2Fchat?x=1 HTTP/1.1\r\n"
      "Host: localhost:9464\r\nConnection: keep-alive\r\n"
      "Content-Length: 0\r\nAccept: */*\r\n\r\n",
      "HEAD / HTTP/1.0\nConnection: Keep-Alive\n\n",
      "\r\nPOST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
  };
  const char *next = "GET /next HTTP/1.1\r\n\r\n";
  for (size_t k = 0; k < TP_ARRAY_SIZE(requests); k++) {
    const char *s = requests[k];
    size_t n = strlen(s);
    tp_http_request_t req;
    for (size_t cut = 0; cut < n; cut++)
      cr_expect_eq(parse_n(s, cut, MAX_HEAD, &req), TP_HTTP_PARSE_INCOMPLETE,
                   "request %zu cut at %zu", k, cut);
    cr_expect_eq(parse_n(s, n, MAX_HEAD, &req), TP_HTTP_PARSE_OK);
    cr_expect_eq(req.head_len, n);

    /* A pipelined request behind it is left alone. */
    char both[512];
    snprintf(both, sizeof(both), "%s%s", s, next);
    cr_expect_eq(parse(both, &req), TP_HTTP_PARSE_OK);
    cr_expect_eq(req.head_len, n);
  }
}

Test(http, garbage_is_bad_before_any_line_end) {
  tp_http_request_t req;
  /* The first bytes of a TLS ClientHello sent to the plain-text port. */
  const char hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00};
  cr_expect_eq(parse_n(hello, sizeof(hello), MAX_HEAD, &req),
               TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse("GET /\x01", &req), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse("GET / HTTP/2", &req), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse("GET / HTTP/1.1", &req), TP_HTTP_PARSE_INCOMPLETE);
}

Test(http, head_over_max_is_too_large) {
  char big[MAX_HEAD + 200];
  int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Pad: ");
  memset(big + n, 'a', sizeof(big) - (size_t)n - 5);
  memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
  tp_http_request_t req;
  cr_expect_eq(parse_n(big, sizeof(big) - 1, MAX_HEAD, &req),
               TP_HTTP_PARSE_TOO_LARGE);
  /* Exactly max_head bytes received, no end in sight: already too large. */
  cr_expect_eq(parse_n(big, MAX_HEAD, MAX_HEAD, &req), TP_HTTP_PARSE_TOO_LARGE);
  cr_expect_eq(parse_n(big, MAX_HEAD - 1, MAX_HEAD, &req),
               TP_HTTP_PARSE_INCOMPLETE);
}

Test(http, head_of_exactly_max_head_bytes_fits) {
  const char *s = "GET /abc HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t n = strlen(s);
  tp_http_request_t req;
  cr_expect_eq(parse_n(s, n, n, &req), TP_HTTP_PARSE_OK);
  cr_expect_eq(parse_n(s, n, n - 1, &req), TP_HTTP_PARSE_TOO_LARGE);
}

Test(http, path_longer_than_buffer_is_too_large) {
  tp_http_request_t req;
  const size_t cap = sizeof(req.path) - 1;
  char *line = malloc(cap * 3 + 64);
  cr_assert_not_null(line);

  /* cap bytes fit, decoded or not. */
  strcpy(line, "GET /");
  memset(line + 5, 'p', cap - 1);
  strcpy(line + 4 + cap, " HTTP/1.1\r\n\r\n");
  cr_expect_eq(parse(line, &req), TP_HTTP_PARSE_OK);
  cr_expect_eq(req.path_len, cap);
  cr_expect_eq(strlen(req.path), cap);

  strcpy(line, "GET /");
  memset(line + 5, 'p', cap);
  strcpy(line + 5 + cap, " HTTP/1.1\r\n\r\n");
  cr_expect_eq(parse(line, &req), TP_HTTP_PARSE_TOO_LARGE);

  /* The limit is on the decoded path. */
  strcpy(line, "GET /");
  for (size_t i = 0; i < cap; i++)
    memcpy(line + 5 + 3 * i, "%41", 3);
  strcpy(line + 5 + 3 * cap, " HTTP/1.1\r\n\r\n");
  cr_expect_eq(parse(line, &req), TP_HTTP_PARSE_TOO_LARGE);
  line[5 + 3 * (cap - 1)] = ' ';
  strcpy(line + 5 + 3 * (cap - 1), " HTTP/1.1\r\n\r\n");
  cr_expect_eq(parse(line, &req), TP_HTTP_PARSE_OK);
  cr_expect_eq(req.path_len, cap);
  free(line);
}

Test(http, rejects_header_without_colon) {
  cr_expect_eq(parse_header("Host localhost\r\n"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_header("Host : localhost\r\n"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_header(": empty-name\r\n"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_header("Ho(st: x\r\n"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_header("Host:\r\n"), TP_HTTP_PARSE_OK);
}

Test(http, rejects_obs_fold) {
  cr_expect_eq(parse_header("X-A: 1\r\n  continued\r\n"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_header("X-A: 1\r\n\tcontinued\r\n"), TP_HTTP_PARSE_BAD);
}

Test(http, rejects_control_characters_in_header_values) {
  cr_expect_eq(parse_header("X-A: a\x01b\r\n"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_header("X-A: a\rb\r\n"), TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_header("X-A: a\tb \xff\r\n"), TP_HTTP_PARSE_OK);
}

Test(http, content_length_zero_means_no_body) {
  tp_http_request_t req;
  cr_assert_eq(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &req),
               TP_HTTP_PARSE_OK);
  cr_expect_not(req.has_body);
  cr_assert_eq(parse("GET / HTTP/1.1\r\ncontent-LENGTH:  12 \r\n\r\n", &req),
               TP_HTTP_PARSE_OK);
  cr_expect(req.has_body);
}

Test(http, duplicate_content_lengths_must_agree) {
  tp_http_request_t req;
  cr_expect_eq(parse("GET / HTTP/1.1\r\nContent-Length: 5\r\n"
                     "Content-Length: 5\r\n\r\n",
                     &req),
               TP_HTTP_PARSE_OK);
  cr_expect(req.has_body);
  cr_expect_eq(parse_header("Content-Length: 5\r\nContent-Length: 6\r\n"),
               TP_HTTP_PARSE_BAD);
  cr_expect_eq(parse_header("Content-Length: 0\r\nContent-Length: 00\r\n"),
               TP_HTTP_PARSE_OK);
}

Test(http, content_length_must_be_digits) {
  static const char *values[] = {"5a", "-1", "+5", "", "5, 5", "0x10",
                                 "1 2", "99999999999999999999999"};
  for (size_t i = 0; i < TP_ARRAY_SIZE(values); i++) {
    char h[128];
    snprintf(h, sizeof(h), "Content-Length: %s\r\n", values[i]);
    cr_expect_eq(parse_header(h), TP_HTTP_PARSE_BAD, "'%s'", values[i]);
  }
}

Test(http, transfer_encoding_means_a_body) {
  tp_http_request_t req;
  cr_assert_eq(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &req),
               TP_HTTP_PARSE_OK);
  cr_expect(req.has_body);
}

static bool keep_alive_of(const char *version, const char *connection) {
  char buf[256];
  tp_http_request_t req;
  if (connection != NULL)
    snprintf(buf, sizeof(buf), "GET / %s\r\nConnection: %s\r\n\r\n", version,
             connection);
  else
    snprintf(buf, sizeof(buf), "GET / %s\r\n\r\n", version);
  cr_assert_eq(parse(buf, &req), TP_HTTP_PARSE_OK, "%s", buf);
  return req.keep_alive;
}

Test(http, http11_keeps_alive_unless_told_to_close) {
  cr_expect(keep_alive_of("HTTP/1.1", NULL));
  cr_expect(keep_alive_of("HTTP/1.1", "keep-alive"));
  cr_expect(keep_alive_of("HTTP/1.1", "Upgrade"));
  cr_expect_not(keep_alive_of("HTTP/1.1", "close"));
  cr_expect_not(keep_alive_of("HTTP/1.1", "CLOSE"));
  cr_expect_not(keep_alive_of("HTTP/1.1", "Keep-Alive, Close"));
  cr_expect_not(keep_alive_of("HTTP/1.1", "upgrade ,close ,"));
}

Test(http, http10_closes_unless_asked_to_keep_alive) {
  cr_expect_not(keep_alive_of("HTTP/1.0", NULL));
  cr_expect_not(keep_alive_of("HTTP/1.0", "close"));
  cr_expect(keep_alive_of("HTTP/1.0", "keep-alive"));
  cr_expect(keep_alive_of("HTTP/1.0", "Keep-Alive"));
  cr_expect(keep_alive_of("HTTP/1.0", "TE, keep-alive"));
  cr_expect_not(keep_alive_of("HTTP/1.0", "keep-alive, close"));
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dull;
}

Test(http, random_inputs_never_crash_and_results_are_consistent) {
  /*
   * Half the inputs are random bytes from an alphabet rich in HTTP syntax
   * (so the parser gets past the method), half are valid requests with a
   * few bytes mutated. Every input sits in an exact-size heap block.
   */
  static const char alphabet[] = "GETHAD /%?:\r\n\t0123456789aAfF,.-HTTP/1.0\x00\x7f\xff";
  static const char *seeds[] = {
      "GET /v1/touchpoints/a%2Fb?q=1 HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\nContent-Length: 0\r\n\r\n",
      "HEAD /metrics HTTP/1.0\nConnection: keep-alive\n\n",
  };
  uint64_t state = 0x9e3779b97f4a7c15ull;
  size_t ok = 0, bad = 0, incomplete = 0, large = 0;
  for (int iter = 0; iter < 100000; iter++) {
    char in[320];
    size_t n;
    if (iter % 2 == 0) {
      n = rng_next(&state) % sizeof(in);
      for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next(&state);
        in[i] = (r & 7) == 0 ? (char)(r >> 8)
                             : alphabet[(r >> 8) % (sizeof(alphabet) - 1)];
      }
    } else {
      const char *seed = seeds[rng_next(&state) % TP_ARRAY_SIZE(seeds)];
      n = strlen(seed);
      memcpy(in, seed, n);
      /* Zero to two flipped bytes; a quarter of them cut short as well. */
      int flips = (int)(rng_next(&state) % 3);
      for (int f = 0; f < flips; f++)
        in[rng_next(&state) % n] = (char)rng_next(&state);
      if (rng_next(&state) % 4 == 0)
        n = rng_next(&state) % (n + 1);
    }
    size_t max_head = 16 + rng_next(&state) % 300;
    tp_http_request_t req;
    tp_http_parse_t r = parse_n(in, n, max_head, &req);
    switch (r) {
    case TP_HTTP_PARSE_OK:
      ok++;
      cr_assert_leq(req.head_len, n);
      cr_assert_leq(req.head_len, max_head);
      cr_assert_lt(req.path_len, sizeof(req.path));
      cr_assert_eq(req.path[req.path_len], '\0');
      cr_assert_eq(strlen(req.path), req.path_len);
      cr_assert_eq(req.path[0], '/');
      /* Parsing the head alone gives the same answer. */
      cr_assert_eq(parse_n(in, req.head_len, max_head, &req), TP_HTTP_PARSE_OK);
      break;
    case TP_HTTP_PARSE_INCOMPLETE:
      incomplete++;
      cr_assert_lt(n, max_head);
      break;
    case TP_HTTP_PARSE_BAD:
      bad++;
      break;
    case TP_HTTP_PARSE_TOO_LARGE:
      large++;
      break;
    default:
      cr_assert_fail("unexpected result %d", (int)r);
    }
  }
  /* The generator reaches every outcome, or it is not testing much. */
  cr_log_info("ok %zu bad %zu incomplete %zu too large %zu", ok, bad,
              incomplete, large);
  cr_expect_gt(ok, 1000);
  cr_expect_gt(bad, 1000);
  cr_expect_gt(incomplete, 1000);
  cr_expect_gt(large, 10);
}

/* ---- server harness ---------------------------------------------------- */

enum { CMD_NONE, CMD_STATS, CMD_STOP };

/* One server per test; criterion runs each test in its own process. */
static struct {
  uv_loop_t loop;
  uv_async_t async;
  uv_thread_t thread;
  uv_mutex_t mu; /* guards cmd and stats between the two threads */
  uv_sem_t done;
  int cmd;
  tp_http_stats_t stats;
  tp_http_t *http;
  int port;
} srv;

/* Written by the loop thread's route, read by the test thread. */
static _Atomic int big_replies;

static void route(void *opaque, const char *path, size_t path_len,
                  tp_http_reply_t *reply) {
  (void)opaque;
  if (strcmp(path, "/hello") == 0) {
    tp_buf_puts(&reply->body, "hello world\n");
  } else if (strncmp(path, "/v1/touchpoints/", 16) == 0) {
    reply->content_type = "application/json";
    tp_buf_puts(&reply->body, "{\"touchpoint\":\"");
    tp_buf_json_escape(&reply->body, path + 16, path_len - 16);
    tp_buf_puts(&reply->body, "\"}");
  } else if (strcmp(path, "/created") == 0) {
    reply->status = 201;
    tp_buf_puts(&reply->body, "made");
  } else if (strcmp(path, "/big") == 0) {
    big_replies++;
    for (int i = 0; i < 4 * 1024 * 1024 / 16; i++)
      tp_buf_printf(&reply->body, "%015d\n", i);
  } else if (strcmp(path, "/oom") == 0) {
    tp_alloc_fail_after(1);
    tp_buf_puts(&reply->body, "never");
    tp_alloc_fail_after(0);
  } else {
    reply->status = 404;
    tp_buf_puts(&reply->body, "not found\n");
  }
}

static void async_cb(uv_async_t *async) {
  (void)async;
  uv_mutex_lock(&srv.mu);
  if (srv.cmd == CMD_STATS) {
    tp_http_get_stats(srv.http, &srv.stats);
  } else if (srv.cmd == CMD_STOP) {
    tp_http_stop(srv.http);
    srv.http = NULL;
    uv_close((uv_handle_t *)&srv.async, NULL);
  }
  srv.cmd = CMD_NONE;
  uv_mutex_unlock(&srv.mu);
  uv_sem_post(&srv.done);
}

static void loop_thread(void *arg) {
  (void)arg;
  uv_run(&srv.loop, UV_RUN_DEFAULT);
}

static tp_http_opts_t default_opts(void) {
  return (tp_http_opts_t){.listen = "127.0.0.1:0", .route = route};
}

/* The loop is not running yet, so starting from this thread is safe. */
static void server_start(const tp_http_opts_t *opts) {
  char err[256] = "";
  cr_assert_eq(uv_loop_init(&srv.loop), 0);
  cr_assert_eq(tp_http_start(&srv.loop, opts, &srv.http, err, sizeof(err)),
               TP_OK, "%s", err);
  srv.port = tp_http_port(srv.http);
  cr_assert_gt(srv.port, 0);
  cr_assert_eq(uv_async_init(&srv.loop, &srv.async, async_cb), 0);
  cr_assert_eq(uv_mutex_init(&srv.mu), 0);
  cr_assert_eq(uv_sem_init(&srv.done, 0), 0);
  cr_assert_eq(uv_thread_create(&srv.thread, loop_thread, NULL), 0);
}

static void server_command(int cmd) {
  uv_mutex_lock(&srv.mu);
  srv.cmd = cmd;
  uv_mutex_unlock(&srv.mu);
  uv_async_send(&srv.async);
  uv_sem_wait(&srv.done);
}

static tp_http_stats_t server_stats(void) {
  server_command(CMD_STATS);
  uv_mutex_lock(&srv.mu);
  tp_http_stats_t st = srv.stats;
  uv_mutex_unlock(&srv.mu);
  return st;
}

/* After CMD_STOP: let the loop drain; it must close with nothing open. */
static void server_join(void) {
  cr_assert_eq(uv_thread_join(&srv.thread), 0);
  cr_assert_eq(uv_loop_close(&srv.loop), 0, "handles left open on the loop");
  uv_sem_destroy(&srv.done);
  uv_mutex_destroy(&srv.mu);
  assert_no_leaks();
}

static void server_stop(void) {
  server_command(CMD_STOP);
  server_join();
}

static int64_t now_ms(void) { return (int64_t)(tp_mono_ns() / 1000000); }

/* Wait up to timeout_ms for the server to report want open connections. */
static void wait_open_connections(int want, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  int got;
  while ((got = server_stats().open_connections) != want &&
         now_ms() < deadline)
    usleep(5000);
  cr_assert_eq(got, want, "open connections %d, expected %d", got, want);
}

/* ---- client ------------------------------------------------------------ */

typedef struct {
  int fd;
  char *buf; /* received, not yet consumed */
  size_t len, cap;
} client_t;

typedef struct {
  int status; /* 0: the connection closed before a whole response */
  char head[4096];
  char *body;
  size_t body_len;
} resp_t;

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s",
               strerror(errno));
  return fd;
}

static client_t client_open(void) {
  return (client_t){.fd = connect_to(srv.port)};
}

static void client_close(client_t *cl) {
  if (cl->fd >= 0)
    close(cl->fd);
  free(cl->buf);
  *cl = (client_t){.fd = -1};
}

static void send_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    cr_assert_gt(n, 0, "send: %s", strerror(errno));
    data += n;
    len -= (size_t)n;
  }
}

static void client_send(client_t *cl, const char *s) {
  send_all(cl->fd, s, strlen(s));
}

/* @returns false at EOF, reset or timeout. */
static bool client_fill(client_t *cl) {
  if (cl->cap - cl->len < 65536) {
    cl->cap = cl->cap * 2 + 65536;
    cl->buf = realloc(cl->buf, cl->cap);
    cr_assert_not_null(cl->buf);
  }
  ssize_t n = recv(cl->fd, cl->buf + cl->len, cl->cap - cl->len - 1, 0);
  if (n <= 0)
    return false;
  cl->len += (size_t)n;
  cl->buf[cl->len] = '\0';
  return true;
}

static const char *header_value(const resp_t *r, const char *name) {
  size_t nlen = strlen(name);
  for (const char *line = strstr(r->head, "\r\n"); line != NULL;
       line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, name, nlen) == 0 && line[2 + nlen] == ':') {
      const char *v = line + 3 + nlen;
      while (*v == ' ')
        v++;
      return v;
    }
  }
  return NULL;
}

static bool has_header(const resp_t *r, const char *name, const char *value) {
  const char *v = header_value(r, name);
  return v != NULL && strncmp(v, value, strlen(value)) == 0 &&
         v[strlen(value)] == '\r';
}

/* Read one response; a HEAD response has Content-Length but no body. */
static resp_t client_read(client_t *cl, bool head_only) {
  resp_t r = {0};
  char *end;
  while (cl->buf == NULL || (end = strstr(cl->buf, "\r\n\r\n")) == NULL)
    if (!client_fill(cl))
      return r;
  size_t head_len = (size_t)(end - cl->buf) + 4;
  cr_assert_lt(head_len, sizeof(r.head));
  memcpy(r.head, cl->buf, head_len);
  r.head[head_len] = '\0';
  const char *cl_value = header_value(&r, "Content-Length");
  cr_assert_not_null(cl_value, "no Content-Length in %s", r.head);
  size_t body_len = head_only ? 0 : strtoul(cl_value, NULL, 10);
  while (cl->len < head_len + body_len)
    if (!client_fill(cl))
      return r;
  cr_assert_eq(sscanf(r.head, "HTTP/1.1 %d ", &r.status), 1, "%s", r.head);
  r.body = malloc(body_len + 1);
  memcpy(r.body, cl->buf + head_len, body_len);
  r.body[body_len] = '\0';
  r.body_len = body_len;
  memmove(cl->buf, cl->buf + head_len + body_len,
          cl->len - head_len - body_len + 1);
  cl->len -= head_len + body_len;
  return r;
}

static void resp_free(resp_t *r) { free(r->body); }

/* @returns ms until the peer closed, or -1 if it stayed open for timeout_ms. */
static int64_t wait_closed(int fd, int timeout_ms) {
  int64_t start = now_ms();
  for (;;) {
    int64_t left = start + timeout_ms - now_ms();
    if (left <= 0)
      return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)left) <= 0)
      continue;
    char b[4096];
    ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN))
      return now_ms() - start;
  }
}

/* ---- server tests ------------------------------------------------------ */

Test(http, get_returns_route_body_status_and_length) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  cr_expect(has_header(&r, "Content-Length", "12"), "%s", r.head);
  cr_expect(has_header(&r, "Content-Type", "text/plain; charset=utf-8"));
  cr_expect_str_eq(r.body, "hello world\n");
  resp_free(&r);

  client_send(&cl, "GET /created HTTP/1.1\r\n\r\n");
  r = client_read(&cl, false);
  cr_expect_eq(r.status, 201);
  cr_expect_str_eq(r.body, "made");
  resp_free(&r);

  client_send(&cl, "GET /nowhere HTTP/1.1\r\n\r\n");
  r = client_read(&cl, false);
  cr_expect_eq(r.status, 404);
  resp_free(&r);
  client_close(&cl);
  cr_expect_eq(server_stats().requests, 3);
  server_stop();
}

Test(http, path_with_slashes_and_escapes_reaches_route_whole) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /v1/touchpoints/support/chat%3Aeu?x=1 HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  cr_expect(has_header(&r, "Content-Type", "application/json"));
  cr_expect_str_eq(r.body, "{\"touchpoint\":\"support/chat:eu\"}");
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, head_returns_headers_only) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "HEAD /hello HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&cl, true);
  cr_expect_eq(r.status, 200);
  cr_expect(has_header(&r, "Content-Length", "12"), "%s", r.head);
  resp_free(&r);
  /* No body followed: the next bytes are the next response. */
  client_send(&cl, "GET /created HTTP/1.1\r\n\r\n");
  r = client_read(&cl, false);
  cr_expect_eq(r.status, 201);
  cr_expect_str_eq(r.body, "made");
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, other_methods_get_405_with_allow_and_close) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "POST /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 405);
  cr_expect(has_header(&r, "Allow", "GET, HEAD"), "%s", r.head);
  cr_expect(has_header(&r, "Connection", "close"));
  resp_free(&r);
  cr_expect_geq(wait_closed(cl.fd, 3000), 0);
  client_close(&cl);
  server_stop();
}

Test(http, garbage_gets_400_and_close) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "\x16\x03\x01 hello there\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 400);
  cr_expect(has_header(&r, "Connection", "close"));
  resp_free(&r);
  cr_expect_geq(wait_closed(cl.fd, 3000), 0);
  client_close(&cl);
  tp_http_stats_t st = server_stats();
  cr_expect_eq(st.bad_requests, 1);
  server_stop();
}

Test(http, get_with_body_gets_400) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 400);
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, oversize_head_gets_431) {
  tp_http_opts_t opts = default_opts();
  opts.max_request_bytes = 1024;
  server_start(&opts);
  client_t cl = client_open();
  size_t n = 64 * 1024;
  char *big = malloc(n + 1);
  memcpy(big, "GET / HTTP/1.1\r\nX-Pad: ", 23);
  memset(big + 23, 'a', n - 23);
  big[n] = '\0';
  /* The server answers after 1 KiB; the rest may meet a shut socket. */
  (void)send(cl.fd, big, n, MSG_NOSIGNAL);
  free(big);
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 431);
  cr_expect(has_header(&r, "Connection", "close"));
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, pipelined_requests_are_answered_in_order) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\n\r\n"
                   "GET /v1/touchpoints/second HTTP/1.1\r\n\r\n");
  resp_t r1 = client_read(&cl, false);
  resp_t r2 = client_read(&cl, false);
  cr_expect_str_eq(r1.body, "hello world\n");
  cr_expect_str_eq(r2.body, "{\"touchpoint\":\"second\"}");
  resp_free(&r1);
  resp_free(&r2);
  client_close(&cl);
  server_stop();
}

Test(http, many_pipelined_requests_pause_and_resume_in_order) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  char req[8192];
  size_t off = 0;
  for (int i = 0; i < 150; i++)
    off += (size_t)snprintf(req + off, sizeof(req) - off,
                            "GET /v1/touchpoints/t%d HTTP/1.1\r\n\r\n", i);
  cr_assert_lt(off, sizeof(req) - 1);
  send_all(cl.fd, req, off);
  for (int i = 0; i < 150; i++) {
    char want[64];
    snprintf(want, sizeof(want), "{\"touchpoint\":\"t%d\"}", i);
    resp_t r = client_read(&cl, false);
    cr_assert_eq(r.status, 200, "response %d", i);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
  }
  client_close(&cl);
  server_stop();
}

Test(http, keep_alive_connection_serves_a_second_request) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  cr_expect_not(has_header(&r, "Connection", "close"));
  resp_free(&r);
  usleep(50000);
  client_send(&cl, "GET /created HTTP/1.1\r\nConnection: close\r\n\r\n");
  r = client_read(&cl, false);
  cr_expect_eq(r.status, 201);
  cr_expect(has_header(&r, "Connection", "close"));
  resp_free(&r);
  cr_expect_geq(wait_closed(cl.fd, 3000), 0);
  client_close(&cl);
  cr_expect_eq(server_stats().open_connections, 0);
  server_stop();
}

Test(http, http10_connection_closes_after_response) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.0\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  cr_expect(has_header(&r, "Connection", "close"));
  resp_free(&r);
  cr_expect_geq(wait_closed(cl.fd, 3000), 0);
  client_close(&cl);

  cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  r = client_read(&cl, false);
  cr_expect(has_header(&r, "Connection", "keep-alive"), "%s", r.head);
  resp_free(&r);
  client_send(&cl, "GET /hello HTTP/1.0\r\n\r\n");
  r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, half_closed_client_still_gets_its_answer) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\n\r\n");
  shutdown(cl.fd, SHUT_WR);
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  cr_expect_str_eq(r.body, "hello world\n");
  resp_free(&r);
  cr_expect_geq(wait_closed(cl.fd, 3000), 0);
  client_close(&cl);

  /* Half-closed while a long closing response is still being written. */
  cl = client_open();
  client_send(&cl, "GET /big HTTP/1.1\r\nConnection: close\r\n\r\n");
  shutdown(cl.fd, SHUT_WR);
  usleep(200000);
  r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  cr_expect_eq(r.body_len, 4 * 1024 * 1024);
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, stalled_half_request_is_closed_after_read_timeout) {
  tp_http_opts_t opts = default_opts();
  opts.read_timeout_ms = 200;
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\nHo");
  int64_t took = wait_closed(cl.fd, 5000);
  cr_expect_geq(took, 150);
  cr_expect_lt(took, 2000);
  client_close(&cl);
  tp_http_stats_t st = server_stats();
  cr_expect_eq(st.timeouts, 1);
  cr_expect_eq(st.open_connections, 0);
  server_stop();
}

Test(http, trickling_client_is_closed_at_the_deadline) {
  tp_http_opts_t opts = default_opts();
  opts.read_timeout_ms = 300;
  server_start(&opts);
  client_t cl = client_open();
  /* One byte every 50 ms would keep a per-read timer alive forever. */
  const char *s = "GET /hello HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa";
  int64_t start = now_ms();
  for (const char *p = s; *p != '\0' && now_ms() - start < 1500; p++) {
    if (send(cl.fd, p, 1, MSG_NOSIGNAL) != 1)
      break;
    usleep(50000);
  }
  cr_expect_geq(wait_closed(cl.fd, 3000), 0);
  cr_expect_lt(now_ms() - start, 1500);
  client_close(&cl);
  cr_expect_eq(server_stats().timeouts, 1);
  server_stop();
}

Test(http, idle_keep_alive_connection_is_closed_without_counting_a_timeout) {
  tp_http_opts_t opts = default_opts();
  opts.read_timeout_ms = 200;
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  resp_free(&r);
  int64_t took = wait_closed(cl.fd, 5000);
  cr_expect_geq(took, 100);
  cr_expect_lt(took, 2000);
  client_close(&cl);
  cr_expect_eq(server_stats().timeouts, 0);
  server_stop();
}

Test(http, connection_over_max_is_closed_while_others_are_served) {
  tp_http_opts_t opts = default_opts();
  opts.max_connections = 4;
  server_start(&opts);
  client_t cl[4];
  for (int i = 0; i < 4; i++)
    cl[i] = client_open();
  wait_open_connections(4, 5000);

  client_t fifth = client_open();
  int64_t took = wait_closed(fifth.fd, 2000);
  cr_expect_geq(took, 0, "the fifth connection stayed open");
  client_close(&fifth);

  for (int i = 0; i < 4; i++) {
    client_send(&cl[i], "GET /hello HTTP/1.1\r\n\r\n");
    resp_t r = client_read(&cl[i], false);
    cr_expect_eq(r.status, 200, "connection %d", i);
    resp_free(&r);
    client_close(&cl[i]);
  }
  tp_http_stats_t st = server_stats();
  cr_expect_eq(st.rejected_connections, 1);
  cr_expect_eq(st.requests, 4);
  server_stop();
}

Test(http, rejected_connections_in_a_burst_are_all_closed) {
  tp_http_opts_t opts = default_opts();
  opts.max_connections = 1;
  server_start(&opts);
  client_t first = client_open();
  wait_open_connections(1, 5000);
  enum { BURST = 40 };
  int fds[BURST];
  for (int i = 0; i < BURST; i++)
    fds[i] = connect_to(srv.port);
  for (int i = 0; i < BURST; i++) {
    cr_expect_geq(wait_closed(fds[i], 3000), 0, "connection %d", i);
    close(fds[i]);
  }
  client_send(&first, "GET /hello HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&first, false);
  cr_expect_eq(r.status, 200);
  resp_free(&r);
  client_close(&first);
  cr_expect_eq(server_stats().rejected_connections, BURST);
  server_stop();
}

Test(http, slow_connections_never_delay_a_normal_request) {
  enum { SLOW = 200 };
  tp_http_opts_t opts = default_opts();
  opts.max_connections = SLOW + 16;
  opts.read_timeout_ms = 30000;
  server_start(&opts);
  int fds[SLOW];
  for (int i = 0; i < SLOW; i++) {
    fds[i] = connect_to(srv.port);
    send_all(fds[i], "GET /hello HTTP/1.1\r\nHost: x\r\n", 31);
  }
  wait_open_connections(SLOW, 10000);

  int64_t start = now_ms();
  client_t cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&cl, false);
  int64_t took = now_ms() - start;
  cr_expect_eq(r.status, 200);
  cr_expect_lt(took, 1000, "answered after %lld ms", (long long)took);
  resp_free(&r);
  client_close(&cl);

  /* The normal client's close reaches the server a moment later. */
  wait_open_connections(SLOW, 5000);
  cr_expect_eq(server_stats().timeouts, 0);
  for (int i = 0; i < SLOW; i++)
    close(fds[i]);
  server_stop();
}

Test(http, large_response_arrives_whole_to_a_slow_reader) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /big HTTP/1.1\r\n\r\n");
  usleep(200000); /* let the kernel buffers fill: uv_write must queue */
  resp_t r = client_read(&cl, false);
  cr_assert_eq(r.status, 200);
  cr_assert_eq(r.body_len, 4 * 1024 * 1024);
  char line[32];
  for (size_t i = 0; i < r.body_len / 16; i += 4099) {
    snprintf(line, sizeof(line), "%015zu\n", i);
    cr_assert(memcmp(r.body + 16 * i, line, 16) == 0, "line %zu", i);
  }
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, client_that_does_not_read_pauses_its_connection) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  char req[2048];
  size_t off = 0;
  for (int i = 0; i < 50; i++)
    off += (size_t)snprintf(req + off, sizeof(req) - off,
                            "GET /big HTTP/1.1\r\n\r\n");
  send_all(cl.fd, req, off);
  usleep(500000);
  /*
   * Kernel buffers take a few 4 MiB responses; without the pause the server
   * would build all 50 (200 MiB) at once.
   */
  int built = big_replies;
  cr_expect_leq(built, 8, "%d responses built for a client that reads none",
                built);
  for (int i = 0; i < built + 2; i++) {
    resp_t r = client_read(&cl, false);
    cr_assert_eq(r.status, 200, "response %d", i);
    cr_assert_eq(r.body_len, 4 * 1024 * 1024);
    resp_free(&r);
  }
  cr_expect_gt(big_replies, built, "reading did not resume the connection");
  client_close(&cl);
  server_stop();
}

Test(http, client_vanishing_mid_response_ends_only_its_connection) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n");
  cr_assert(client_fill(&cl));
  /* Unread data makes close() send RST; the server's next write fails. */
  client_close(&cl);
  wait_open_connections(0, 5000);

  cl = client_open();
  client_send(&cl, "GET /hello HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, failed_reply_body_gets_503) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t cl = client_open();
  client_send(&cl, "GET /oom HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 503);
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, allocation_failures_end_only_the_affected_connection) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  /*
   * Fail the nth allocation the server makes for one connection and its
   * request, n = 1, 2, ... until a whole 200 comes back. Each attempt may
   * be refused or answered 503, never hang, and the server serves the next
   * connection normally. ASan checks that nothing leaks.
   */
  bool succeeded = false;
  for (long n = 1; n < 20 && !succeeded; n++) {
    tp_alloc_fail_after(n);
    client_t cl = client_open();
    (void)send(cl.fd, "GET /hello HTTP/1.1\r\n\r\n", 23, MSG_NOSIGNAL);
    resp_t r = client_read(&cl, false);
    client_close(&cl);
    tp_alloc_fail_after(0);
    cr_assert(r.status == 0 || r.status == 503 || r.status == 200,
              "n=%ld status %d", n, r.status);
    succeeded = r.status == 200;
    resp_free(&r);

    cl = client_open();
    client_send(&cl, "GET /hello HTTP/1.1\r\n\r\n");
    r = client_read(&cl, false);
    cr_assert_eq(r.status, 200, "after n=%ld", n);
    resp_free(&r);
    client_close(&cl);
  }
  cr_expect(succeeded);
  cr_expect_gt(server_stats().rejected_connections, 0);
  server_stop();
}

Test(http, start_reports_out_of_memory_cleanly) {
  /* Fail the 1st, 2nd, ... allocation of a start until one succeeds: each
   * failure is TP_ENOMEM with nothing left behind, and the loop closes. */
  tp_http_opts_t opts = default_opts();
  char err[256];
  long n;
  for (n = 1;; n++) {
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    tp_http_t *http = NULL;
    tp_alloc_fail_after(n);
    tp_err_t rc = tp_http_start(&loop, &opts, &http, err, sizeof(err));
    long calls = tp_alloc_calls();
    tp_alloc_fail_after(0);
    if (calls < n) {
      cr_assert_eq(rc, TP_OK, "%s", err);
      tp_http_stop(http);
      uv_run(&loop, UV_RUN_DEFAULT);
      cr_expect_eq(uv_loop_close(&loop), 0);
      break;
    }
    cr_expect_eq(rc, TP_ENOMEM, "allocation %ld failed, rc %d: %s", n, (int)rc, err);
    cr_expect_null(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&loop), 0, "allocation %ld: handles left open", n);
  }
  cr_expect_gt(n, 1);
  assert_no_leaks();
}

Test(http, busy_port_is_reported_with_the_address) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(listen(fd, 1), 0);
  socklen_t len = sizeof(sa);
  getsockname(fd, (struct sockaddr *)&sa, &len);

  char listen_at[64], want[128], err[256] = "";
  snprintf(listen_at, sizeof(listen_at), "127.0.0.1:%d", ntohs(sa.sin_port));
  snprintf(want, sizeof(want), "http.listen %s: address already in use",
           listen_at);
  uv_loop_t loop;
  cr_assert_eq(uv_loop_init(&loop), 0);
  tp_http_opts_t opts = default_opts();
  opts.listen = listen_at;
  tp_http_t *http = NULL;
  cr_expect_neq(tp_http_start(&loop, &opts, &http, err, sizeof(err)), TP_OK);
  cr_expect_null(http);
  cr_expect_str_eq(err, want);
  /* A failed start leaves nothing on the loop. */
  cr_expect_eq(uv_loop_close(&loop), 0);
  close(fd);
  assert_no_leaks();
}

Test(http, malformed_listen_strings_are_rejected) {
  static const char *bad[] = {"x", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999",
                              "127.0.0.1:12a", "[::1", "[::1]9464",
                              "localhost:9464", "1.2.3:80", "[zz]:80"};
  uv_loop_t loop;
  cr_assert_eq(uv_loop_init(&loop), 0);
  for (size_t i = 0; i < TP_ARRAY_SIZE(bad); i++) {
    tp_http_opts_t opts = default_opts();
    opts.listen = bad[i];
    tp_http_t *http = NULL;
    char err[256] = "", want[128];
    snprintf(want, sizeof(want), "http.listen '%s': expected host:port", bad[i]);
    cr_expect_eq(tp_http_start(&loop, &opts, &http, err, sizeof(err)),
                 TP_ECONFIG, "%s", bad[i]);
    cr_expect_str_eq(err, want);
    cr_expect_null(http);
  }
  cr_expect_eq(uv_loop_close(&loop), 0);
  assert_no_leaks();
}

Test(http, listens_on_ipv6_loopback) {
  int probe = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
  if (probe < 0 || bind(probe, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    if (probe >= 0)
      close(probe);
    cr_skip_test("no IPv6 loopback here");
  }
  close(probe);

  tp_http_opts_t opts = default_opts();
  opts.listen = "[::1]:0";
  server_start(&opts);
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  sa.sin6_port = htons((uint16_t)srv.port);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  client_t cl = {.fd = fd};
  client_send(&cl, "GET /hello HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&cl, false);
  cr_expect_eq(r.status, 200);
  resp_free(&r);
  client_close(&cl);
  server_stop();
}

Test(http, stop_closes_every_connection_and_the_loop_closes_cleanly) {
  tp_http_opts_t opts = default_opts();
  server_start(&opts);
  client_t idle = client_open();
  client_t partial = client_open();
  client_send(&partial, "GET /hello HTTP/1.1\r\nHost");
  client_t served = client_open();
  client_send(&served, "GET /hello HTTP/1.1\r\n\r\n");
  resp_t r = client_read(&served, false);
  cr_expect_eq(r.status, 200);
  resp_free(&r);
  wait_open_connections(3, 5000);

  /* Every connection closes now, not when its read timeout would. */
  server_command(CMD_STOP);
  cr_assert_geq(wait_closed(idle.fd, 1000), 0);
  cr_assert_geq(wait_closed(partial.fd, 1000), 0);
  cr_assert_geq(wait_closed(served.fd, 1000), 0);
  client_close(&idle);
  client_close(&partial);
  client_close(&served);
  server_join(); /* asserts uv_loop_close() == 0 */
}
