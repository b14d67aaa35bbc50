/*
 * fuzz_http.c -- the HTTP request-head parser, tp_http_parse_request(), on
 * arbitrary bytes as they would sit in a connection's input buffer.
 *
 * The server calls the parser again each time more bytes arrive, so beside
 * "no crash, no sanitizer report" the target checks the properties that
 * makes safe (tests/unit/test_http.c states them on fixed requests):
 *   - a parsed head: 0 < head_len <= the bytes given and <= max_head, ends
 *     in LF; the path is NUL-terminated at path_len, starts with '/', holds
 *     no control byte or NUL, fits req.path; GET/HEAD are recognised exactly;
 *   - every proper prefix of a parsed head is INCOMPLETE (a request that
 *     trickles in byte by byte is never refused), and the head alone parses
 *     to the same request (pipelined bytes behind it change nothing);
 *   - max_head: the same bytes parse to the same request with max_head ==
 *     head_len, and are TOO_LARGE with max_head == head_len - 1;
 *   - BAD stays BAD when more bytes arrive (nothing is refused that a later
 *     byte could have made valid, and partial and complete request lines
 *     are judged alike).
 * Every parse reads an exactly-sized heap copy, so ASan sees any overread.
 */
#include "fuzz_common.h"
#include "touchpulse/http.h"

#define MAX_HEAD 8192 /* the server's default max_request_bytes */
#define PREFIX_CHECKS 48

static tp_http_parse_t parse(const uint8_t *data, size_t len, size_t max_head,
                             tp_http_request_t *req) {
  uint8_t *copy = fuzz_copy(data, len);
  memset(req, 0xa5, sizeof(*req));
  tp_http_parse_t r = tp_http_parse_request((const char *)copy, len, max_head, req);
  free(copy);
  FUZZ_CHECK(r == TP_HTTP_PARSE_OK || r == TP_HTTP_PARSE_INCOMPLETE ||
                 r == TP_HTTP_PARSE_BAD || r == TP_HTTP_PARSE_TOO_LARGE,
             "parse returned %d", (int)r);
  return r;
}

static const char *name(tp_http_parse_t r) {
  switch (r) {
  case TP_HTTP_PARSE_OK: return "OK";
  case TP_HTTP_PARSE_INCOMPLETE: return "INCOMPLETE";
  case TP_HTTP_PARSE_BAD: return "BAD";
  case TP_HTTP_PARSE_TOO_LARGE: return "TOO_LARGE";
  }
  return "?";
}

static void same_request(const tp_http_request_t *a, const tp_http_request_t *b,
                         const char *what) {
  FUZZ_CHECK(a->method == b->method && a->path_len == b->path_len &&
                 memcmp(a->path, b->path, a->path_len + 1) == 0 &&
                 a->keep_alive == b->keep_alive && a->head_len == b->head_len &&
                 a->has_body == b->has_body,
             "%s: request differs (path '%s' / '%s', head %zu / %zu)", what, a->path,
             b->path, a->head_len, b->head_len);
}

static void check_parsed(const uint8_t *data, size_t size, size_t max_head,
                         const tp_http_request_t *req) {
  size_t h = req->head_len;
  FUZZ_CHECK(h > 0 && h <= size && h <= max_head, "head_len %zu of %zu (max %zu)", h,
             size, max_head);
  FUZZ_CHECK(data[h - 1] == '\n', "head does not end in LF");
  FUZZ_CHECK(req->path_len < sizeof(req->path), "path_len %zu", req->path_len);
  FUZZ_CHECK(req->path[req->path_len] == '\0' && strlen(req->path) == req->path_len,
             "path not NUL-terminated at path_len %zu", req->path_len);
  FUZZ_CHECK(req->path[0] == '/', "path '%s' does not start with '/'", req->path);
  for (size_t i = 0; i < req->path_len; i++)
    FUZZ_CHECK((unsigned char)req->path[i] >= 0x20 && req->path[i] != 0x7f,
               "control byte 0x%02x in path", (unsigned char)req->path[i]);

  /* The method, from the request line (after any empty lines). */
  size_t i = 0;
  while (i < h && (data[i] == '\r' || data[i] == '\n'))
    i++;
  tp_http_method_t want = TP_HTTP_OTHER;
  if (h - i >= 4 && memcmp(data + i, "GET ", 4) == 0)
    want = TP_HTTP_GET;
  else if (h - i >= 5 && memcmp(data + i, "HEAD ", 5) == 0)
    want = TP_HTTP_HEAD;
  FUZZ_CHECK(req->method == want, "method %d, the request line says %d", req->method,
             want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tp_http_request_t req, other;
  tp_http_parse_t r = parse(data, size, MAX_HEAD, &req);

  if (r == TP_HTTP_PARSE_INCOMPLETE)
    FUZZ_CHECK(size < MAX_HEAD, "INCOMPLETE with %zu bytes, max %d", size, MAX_HEAD);

  if (r == TP_HTTP_PARSE_OK) {
    check_parsed(data, size, MAX_HEAD, &req);
    size_t h = req.head_len;

    /* The head alone, and the head with max_head at its edge. */
    FUZZ_CHECK(parse(data, h, MAX_HEAD, &other) == TP_HTTP_PARSE_OK,
               "the head alone does not parse");
    same_request(&req, &other, "head alone");
    FUZZ_CHECK(parse(data, size, h, &other) == TP_HTTP_PARSE_OK,
               "max_head == head_len does not parse");
    same_request(&req, &other, "max_head == head_len");
    if (h > 1) {
      tp_http_parse_t t = parse(data, size, h - 1, &other);
      FUZZ_CHECK(t == TP_HTTP_PARSE_TOO_LARGE, "max_head == head_len - 1: %s", name(t));
    }

    /* Every proper prefix is INCOMPLETE (all of them for short heads). */
    uint64_t state = fuzz_hash(data, size);
    size_t checks = h <= PREFIX_CHECKS ? h : PREFIX_CHECKS;
    for (size_t k = 0; k < checks; k++) {
      size_t cut = h <= PREFIX_CHECKS ? k : (size_t)(fuzz_mix(&state) % h);
      tp_http_parse_t t = parse(data, cut, MAX_HEAD, &other);
      FUZZ_CHECK(t == TP_HTTP_PARSE_INCOMPLETE,
                 "prefix of %zu bytes of a %zu-byte head: %s", cut, h, name(t));
    }
  }

  if (r == TP_HTTP_PARSE_BAD && size + 16 <= MAX_HEAD) {
    /* More bytes cannot make a refused head acceptable. */
    uint8_t *more = fuzz_alloc(size + 16);
    if (size > 0)
      memcpy(more, data, size);
    static const char tail[] = " HTTP/1.1\r\n\r\nGET";
    memcpy(more + size, tail, 16);
    tp_http_parse_t t = parse(more, size + 16, MAX_HEAD, &other);
    FUZZ_CHECK(t == TP_HTTP_PARSE_BAD, "BAD, then %s with 16 more bytes", name(t));
    free(more);
  }

  /* A small limit drawn from the input: consistent with the full parse. */
  size_t small = 1 + (size_t)(fuzz_hash(data, size) % 128);
  tp_http_parse_t t = parse(data, size, small, &other);
  if (r == TP_HTTP_PARSE_OK && req.head_len <= small) {
    FUZZ_CHECK(t == TP_HTTP_PARSE_OK, "max_head %zu >= head_len %zu: %s", small,
               req.head_len, name(t));
    same_request(&req, &other, "small max_head");
  } else if (r == TP_HTTP_PARSE_OK) {
    FUZZ_CHECK(t == TP_HTTP_PARSE_TOO_LARGE, "max_head %zu < head_len %zu: %s", small,
               req.head_len, name(t));
  } else {
    FUZZ_CHECK(t != TP_HTTP_PARSE_OK, "%s with max_head %d, OK with max_head %zu",
               name(r), MAX_HEAD, small);
  }
  return 0;
}
