/*
 * fuzz_common.h -- small helpers shared by the libFuzzer targets in
 * tests/fuzz/ (see tests/fuzz/README.md).
 *
 * Every check that fails prints what was expected and calls abort(), which
 * libFuzzer reports as a crash and saves the input for. Inputs are handed to
 * the code under test in exactly-sized heap copies, so AddressSanitizer sees
 * any read past the end.
 */
#ifndef TP_FUZZ_COMMON_H
#define TP_FUZZ_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * Avro-C 1.11.1 leaks on its error paths (read_string() when a string's bytes
 * are cut off, and the error text of a failed read or skip, which
 * avro_ref.h's ref_decode() provokes on purpose to test for the end of the
 * record). Targets that run Avro-C as the reference use this to tell
 * LeakSanitizer those leaks are Avro-C's, as tests/unit/test_decode.c does.
 * Nothing of ours hides behind it: tp_decode() allocates nothing.
 */
#define FUZZ_SUPPRESS_AVRO_C_LEAKS                                             \
  const char *__lsan_default_suppressions(void);                               \
  const char *__lsan_default_suppressions(void) { return "leak:libavro.so\n"; }

/* A failed expectation: the message, then abort() (a libFuzzer crash). */
__attribute__((noreturn, format(printf, 3, 4))) static inline void
fuzz_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "fuzz: check failed at %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

#define FUZZ_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond))                                                               \
      fuzz_fail(__FILE__, __LINE__, __VA_ARGS__);                              \
  } while (0)

/*
 * A known, reported and not yet fixed bug is tolerated only when its id is
 * listed in the environment variable TP_FUZZ_TOLERATE (comma-separated), so
 * that a long run can look past it. By default every check is strict, and
 * the bug's input in tests/fuzz/regressions/ keeps failing until the fix.
 */
static inline int fuzz_tolerate(const char *id) {
  const char *list = getenv("TP_FUZZ_TOLERATE");
  size_t n = strlen(id);
  for (const char *p = list; p != NULL && (p = strstr(p, id)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
      return 1;
  return 0;
}

/* malloc that never returns NULL (a fuzz target has nothing to fall back on). */
static inline void *fuzz_alloc(size_t n) {
  void *p = malloc(n > 0 ? n : 1);
  FUZZ_CHECK(p != NULL, "out of memory allocating %zu bytes", n);
  return p;
}

/* An exactly-sized heap copy of data[0..n). */
static inline uint8_t *fuzz_copy(const void *data, size_t n) {
  uint8_t *p = fuzz_alloc(n);
  if (n > 0)
    memcpy(p, data, n);
  return p;
}

/* A NUL-terminated heap copy of data[0..n) (the string ends at the first NUL). */
static inline char *fuzz_cstr(const void *data, size_t n) {
  char *p = fuzz_alloc(n + 1);
  if (n > 0)
    memcpy(p, data, n);
  p[n] = '\0';
  return p;
}

/* FNV-1a: a seed that changes with every byte of the input. */
static inline uint64_t fuzz_hash(const void *data, size_t n) {
  const uint8_t *p = data;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* splitmix64 */
static inline uint64_t fuzz_mix(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/*
 * Choices drawn from the fuzz input, byte by byte, so libFuzzer's mutations
 * steer them; once the input is used up, from splitmix64 seeded with a hash
 * of the whole input, so short inputs still make varied choices and every
 * input replays exactly.
 */
typedef struct {
  const uint8_t *p;
  size_t n, i;
  uint64_t state;
} fuzz_src_t;

static inline void fuzz_src_init(fuzz_src_t *s, const uint8_t *data, size_t n) {
  s->p = data;
  s->n = n;
  s->i = 0;
  s->state = fuzz_hash(data, n);
}

static inline uint8_t fuzz_byte(fuzz_src_t *s) {
  if (s->i < s->n)
    return s->p[s->i++];
  return (uint8_t)fuzz_mix(&s->state);
}

static inline uint64_t fuzz_u64(fuzz_src_t *s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | fuzz_byte(s);
  return v;
}

/* A value in [0, n), n > 0; takes as few input bytes as n needs. */
static inline uint64_t fuzz_below(fuzz_src_t *s, uint64_t n) {
  uint64_t v = 0;
  if (n <= 1)
    return 0;
  if (n <= 0x100)
    v = fuzz_byte(s);
  else if (n <= 0x10000)
    v = (uint64_t)fuzz_byte(s) << 8 | fuzz_byte(s);
  else
    v = fuzz_u64(s);
  return v % n;
}

/* A value in [lo, hi]. */
static inline int64_t fuzz_range(fuzz_src_t *s, int64_t lo, int64_t hi) {
  return lo + (int64_t)fuzz_below(s, (uint64_t)(hi - lo) + 1);
}

#endif
