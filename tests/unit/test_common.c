/*
 * test_common.c -- hashes, durations, the output buffer, the allocation hook.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "touchpulse/buf.h"
#include "touchpulse/common.h"

static void hex128(const void *data, size_t len, char out[33]) {
  uint64_t h[2];
  unsigned char bytes[16];
  tp_hash128(data, len, 0, h);
  memcpy(bytes, h, 16);
  for (int i = 0; i < 16; i++)
    sprintf(out + 2 * i, "%02x", bytes[i]);
}

/* Vectors printed by Python's mmh3.hash_bytes(data).hex() (mmh3 4.x). */
Test(common, hash128_matches_murmur3_reference_vectors) {
  static const struct {
    const char *data;
    size_t len;
    const char *hex;
  } v[] = {
      {"", 0, "00000000000000000000000000000000"},
      {"a", 1, "897859f6655555855a890e51483ab5e6"},
      {"hello", 5, "029bbd41b3a7d8cb191dae486a901e5b"},
      {"csat-low\0checkout.payment\0FIRING\0" "1700000000000", 46,
       "956080ceda0a492e77a06882aa90bb31"},
      {"0123456789abcdef0", 17, "75c0a58587ae24ebca283131b368fb73"},
      {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 33, "7df4d8cb220f3ab764103eeef17249eb"},
  };
  for (size_t i = 0; i < TP_ARRAY_SIZE(v); i++) {
    char got[33];
    hex128(v[i].data, v[i].len, got);
    cr_expect_str_eq(got, v[i].hex, "vector %zu", i);
  }
}

/* Every length from empty to past two 16-byte blocks, so that each way of
 * reading the tail (8 + 8, 4 + 4 and single bytes) is checked; the inputs
 * are heap blocks of exactly len bytes, so a read past the end is an
 * AddressSanitizer error. */
Test(common, hash64_depends_on_every_byte_length_and_seed) {
  uint64_t by_len[41];
  for (size_t len = 0; len <= 40; len++) {
    unsigned char *a = malloc(len ? len : 1), *b = malloc(len ? len : 1);
    cr_assert(a != NULL && b != NULL);
    for (size_t i = 0; i < len; i++)
      a[i] = (unsigned char)('a' + i % 26);
    uint64_t base = tp_hash64(a, len, 1);
    by_len[len] = base;
    for (size_t i = 0; i < len; i++) {
      memcpy(b, a, len);
      b[i] ^= 1;
      cr_expect_neq(tp_hash64(b, len, 1), base, "length %zu, byte %zu", len, i);
    }
    cr_expect_neq(tp_hash64(a, len, 2), base, "length %zu, seed", len);
    cr_expect_eq(tp_hash64(a, len, 1), base, "length %zu: not deterministic", len);
    free(a);
    free(b);
  }
  for (size_t i = 0; i <= 40; i++)
    for (size_t j = i + 1; j <= 40; j++)
      cr_expect_neq(by_len[i], by_len[j], "lengths %zu and %zu", i, j);
}

Test(common, floor_div_rounds_toward_negative_infinity) {
  cr_expect_eq(tp_floor_div(7, 2), 3);
  cr_expect_eq(tp_floor_div(-7, 2), -4);
  cr_expect_eq(tp_floor_div(-8, 2), -4);
  cr_expect_eq(tp_floor_to(125000, 60000), 120000);
  cr_expect_eq(tp_floor_to(-1, 60000), -60000);
}

Test(common, duration_format_is_compact) {
  char buf[32];
  tp_duration_format(90000, buf, sizeof(buf));
  cr_expect_str_eq(buf, "1m30s");
  tp_duration_format(86400000LL * 30, buf, sizeof(buf));
  cr_expect_str_eq(buf, "30d");
  tp_duration_format(500, buf, sizeof(buf));
  cr_expect_str_eq(buf, "500ms");
  tp_duration_format(0, buf, sizeof(buf));
  cr_expect_str_eq(buf, "0s");
}

Test(common, time_format_is_utc_iso_with_milliseconds) {
  char buf[40];
  tp_time_format(0, buf, sizeof(buf));
  cr_expect_str_eq(buf, "1970-01-01T00:00:00.000Z");
  tp_time_format(1795440551219LL, buf, sizeof(buf)); /* 2026-11-23T13:29:11.219Z */
  cr_expect_str_eq(buf, "2026-11-23T13:29:11.219Z");
  tp_time_format(-1, buf, sizeof(buf)); /* before the epoch: floor, not truncation */
  cr_expect_str_eq(buf, "1969-12-31T23:59:59.999Z");
}

Test(common, buf_escapes_json_and_prometheus) {
  tp_buf_t b = TP_BUF_INIT;
  tp_buf_json_escape(&b, "a\"b\\c\nd\x01", 8);
  cr_expect_str_eq(b.data, "a\\\"b\\\\c\\nd\\u0001");
  tp_buf_reset(&b);
  tp_buf_prom_escape(&b, "x\"y\\z\n", 6);
  cr_expect_str_eq(b.data, "x\\\"y\\\\z\\n");
  tp_buf_reset(&b);
  tp_buf_double(&b, 3.0);
  tp_buf_putc(&b, ' ');
  tp_buf_double(&b, 0.25);
  cr_expect_str_eq(b.data, "3 0.25");
  tp_buf_free(&b);
}

Test(common, buf_failure_is_sticky) {
  tp_buf_t b = TP_BUF_INIT;
  tp_alloc_fail_after(1);
  tp_buf_puts(&b, "hello");
  tp_alloc_fail_after(0);
  cr_expect(tp_buf_failed(&b));
  tp_buf_puts(&b, "more");
  cr_expect(tp_buf_failed(&b));
  cr_expect_eq(b.len, 0);
  tp_buf_free(&b);
}

Test(common, alloc_hook_fails_the_nth_call_and_later_ones) {
  tp_alloc_fail_after(3);
  void *a = tp_malloc(8), *b = tp_malloc(8), *c = tp_malloc(8), *d = tp_malloc(8);
  long calls = tp_alloc_calls();
  tp_alloc_fail_after(0);
  cr_expect_not_null(a);
  cr_expect_not_null(b);
  cr_expect_null(c);
  cr_expect_null(d);
  cr_expect_eq(calls, 4);
  tp_free(a);
  tp_free(b);
  void *e = tp_malloc(8);
  cr_expect_not_null(e);
  tp_free(e);
}
