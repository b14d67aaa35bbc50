/*
 * common.c -- error strings, the allocation hook, clocks and hashes shared by
 * every module.
 */
#include "touchpulse/common.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *tp_strerror(tp_err_t err) {
  switch (err) {
  case TP_OK:
    return "success";
#define XX(code, msg)                                                          \
  case TP_E##code:                                                             \
    return msg;
    TP_ERR_MAP(XX)
#undef XX
  }
  return "unknown error";
}

/* ---- allocation with a failure hook ----------------------------------- */

/*
 * fail_after > 0 arms the hook: each call decrements it and the call that
 * brings it to zero, and every later one, fails. calls counts calls since
 * arming so a test loop knows when a run needed no more allocations.
 * Relaxed atomics: tests arm the hook from the thread that then allocates.
 */
static _Atomic long fail_after;
static _Atomic long armed_calls;
static _Atomic int failing;

void tp_alloc_fail_after(long n) {
  atomic_store_explicit(&armed_calls, 0, memory_order_relaxed);
  atomic_store_explicit(&failing, 0, memory_order_relaxed);
  atomic_store_explicit(&fail_after, n, memory_order_relaxed);
}

long tp_alloc_calls(void) {
  return atomic_load_explicit(&armed_calls, memory_order_relaxed);
}

static int should_fail(void) {
  if (atomic_load_explicit(&fail_after, memory_order_relaxed) <= 0)
    return 0;
  atomic_fetch_add_explicit(&armed_calls, 1, memory_order_relaxed);
  if (atomic_load_explicit(&failing, memory_order_relaxed))
    return 1;
  if (atomic_fetch_sub_explicit(&fail_after, 1, memory_order_relaxed) == 1) {
    atomic_store_explicit(&fail_after, 1, memory_order_relaxed);
    atomic_store_explicit(&failing, 1, memory_order_relaxed);
    return 1;
  }
  return 0;
}

void *tp_malloc(size_t size) { return should_fail() ? NULL : malloc(size); }
void *tp_calloc(size_t n, size_t size) {
  return should_fail() ? NULL : calloc(n, size);
}
void *tp_realloc(void *ptr, size_t size) {
  return should_fail() ? NULL : realloc(ptr, size);
}
void tp_free(void *ptr) { free(ptr); }

char *tp_strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *p = tp_malloc(len + 1);
  if (p != NULL) {
    memcpy(p, s, len);
    p[len] = '\0';
  }
  return p;
}

char *tp_strdup(const char *s) { return tp_strndup(s, strlen(s)); }

/* ---- clocks ------------------------------------------------------------ */

int64_t tp_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t tp_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- hashes ------------------------------------------------------------ */

static inline uint64_t load64le(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8); /* x86-64 and aarch64 Linux are little-endian */
  return v;
}

static inline uint32_t load32le(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static inline uint64_t mix64(uint64_t a, uint64_t b) {
  /* 64x64->128 multiply folded to 64 bits, as wyhash does. */
#ifdef __SIZEOF_INT128__
  unsigned __int128 r = (unsigned __int128)a * b;
  return (uint64_t)(r >> 64) ^ (uint64_t)r;
#else
  uint64_t ha = a >> 32, la = a & 0xffffffffu, hb = b >> 32, lb = b & 0xffffffffu;
  uint64_t rh = ha * hb, rm0 = ha * lb, rm1 = hb * la, rl = la * lb;
  uint64_t t = rl + (rm0 << 32);
  uint64_t c = t < rl;
  uint64_t lo = t + (rm1 << 32);
  c += lo < t;
  uint64_t hi = rh + (rm0 >> 32) + (rm1 >> 32) + c;
  return hi ^ lo;
#endif
}

/*
 * The last 1..15 bytes are read with fixed-size loads that may overlap, as
 * wyhash does: 8 bytes from the tail's start and 8 ending at its end, or 4
 * and 4, or three single bytes. Each covers every byte of the tail and the
 * length is mixed in, so two inputs of one length never read alike; nothing
 * outside the input is read, and no variable-length copy (a call into libc
 * for every key) is made.
 */
uint64_t tp_hash64(const void *data, size_t len, uint64_t seed) {
  static const uint64_t k0 = 0xa0761d6478bd642full, k1 = 0xe7037ed1a0b428dbull,
                        k2 = 0x8ebc6af09c88c6e3ull;
  const unsigned char *p = data;
  uint64_t h = seed ^ k0 ^ ((uint64_t)len * k2);
  size_t i = 0;
  for (; i + 16 <= len; i += 16)
    h = mix64(load64le(p + i) ^ k1, load64le(p + i + 8) ^ h);
  uint64_t a = 0, b = 0;
  size_t rest = len - i;
  if (rest >= 8) {
    a = load64le(p + i);
    b = load64le(p + len - 8);
  } else if (rest >= 4) {
    a = load32le(p + i);
    b = load32le(p + len - 4);
  } else if (rest > 0) {
    a = (uint64_t)p[i] << 16 | (uint64_t)p[i + rest / 2] << 8 | p[len - 1];
  }
  h = mix64(a ^ k1, b ^ h);
  return mix64(h ^ k2, (uint64_t)len ^ k0);
}

static inline uint64_t rotl64(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

static inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

void tp_hash128(const void *data, size_t len, uint32_t seed, uint64_t out[2]) {
  const unsigned char *p = data;
  const size_t nblocks = len / 16;
  uint64_t h1 = seed, h2 = seed;
  const uint64_t c1 = 0x87c37b91114253d5ull, c2 = 0x4cf5ad432745937full;

  for (size_t i = 0; i < nblocks; i++) {
    uint64_t k1 = load64le(p + i * 16), k2 = load64le(p + i * 16 + 8);
    k1 *= c1;
    k1 = rotl64(k1, 31);
    k1 *= c2;
    h1 ^= k1;
    h1 = rotl64(h1, 27);
    h1 += h2;
    h1 = h1 * 5 + 0x52dce729;
    k2 *= c2;
    k2 = rotl64(k2, 33);
    k2 *= c1;
    h2 ^= k2;
    h2 = rotl64(h2, 31);
    h2 += h1;
    h2 = h2 * 5 + 0x38495ab5;
  }

  const unsigned char *tail = p + nblocks * 16;
  uint64_t k1 = 0, k2 = 0;
  switch (len & 15) {
  case 15: k2 ^= (uint64_t)tail[14] << 48; /* fall through */
  case 14: k2 ^= (uint64_t)tail[13] << 40; /* fall through */
  case 13: k2 ^= (uint64_t)tail[12] << 32; /* fall through */
  case 12: k2 ^= (uint64_t)tail[11] << 24; /* fall through */
  case 11: k2 ^= (uint64_t)tail[10] << 16; /* fall through */
  case 10: k2 ^= (uint64_t)tail[9] << 8;   /* fall through */
  case 9:
    k2 ^= (uint64_t)tail[8];
    k2 *= c2;
    k2 = rotl64(k2, 33);
    k2 *= c1;
    h2 ^= k2;
    /* fall through */
  case 8: k1 ^= (uint64_t)tail[7] << 56; /* fall through */
  case 7: k1 ^= (uint64_t)tail[6] << 48; /* fall through */
  case 6: k1 ^= (uint64_t)tail[5] << 40; /* fall through */
  case 5: k1 ^= (uint64_t)tail[4] << 32; /* fall through */
  case 4: k1 ^= (uint64_t)tail[3] << 24; /* fall through */
  case 3: k1 ^= (uint64_t)tail[2] << 16; /* fall through */
  case 2: k1 ^= (uint64_t)tail[1] << 8;  /* fall through */
  case 1:
    k1 ^= (uint64_t)tail[0];
    k1 *= c1;
    k1 = rotl64(k1, 31);
    k1 *= c2;
    h1 ^= k1;
  }

  h1 ^= (uint64_t)len;
  h2 ^= (uint64_t)len;
  h1 += h2;
  h2 += h1;
  h1 = fmix64(h1);
  h2 = fmix64(h2);
  h1 += h2;
  h2 += h1;
  out[0] = h1;
  out[1] = h2;
}

void tp_time_format(int64_t unix_ms, char *buf, size_t size) {
  int64_t whole = tp_floor_div(unix_ms, 1000); /* seconds, rounded down */
  time_t sec = (time_t)whole;
  struct tm tm;
  if (size == 0)
    return;
  if (gmtime_r(&sec, &tm) == NULL) {
    snprintf(buf, size, "%lld ms", (long long)unix_ms);
    return;
  }
  snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(unix_ms - whole * 1000));
}

void tp_duration_format(int64_t ms, char *buf, size_t size) {
  static const struct {
    int64_t ms;
    const char *unit;
  } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  size_t off = 0;
  if (size == 0)
    return;
  buf[0] = '\0';
  if (ms == 0) {
    snprintf(buf, size, "0s");
    return;
  }
  if (ms < 0) {
    off += (size_t)snprintf(buf, size, "-");
    ms = -ms;
  }
  for (size_t i = 0; i < TP_ARRAY_SIZE(units) && ms > 0 && off < size; i++) {
    if (ms >= units[i].ms) {
      int n = snprintf(buf + off, size - off, "%lld%s",
                       (long long)(ms / units[i].ms), units[i].unit);
      if (n < 0)
        break;
      off += (size_t)n;
      ms %= units[i].ms;
    }
  }
}
