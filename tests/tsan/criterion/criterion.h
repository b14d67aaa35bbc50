/*
 * A criterion-compatible runner for the ThreadSanitizer build.
 *
 * Criterion cannot run under ThreadSanitizer: its inheritable arena is
 * mapped at a fixed address that TSan's shadow memory already holds, and
 * every test binary aborts before the first test ("Could not initialize
 * inheritable arena", Snaipe/Criterion#274, open upstream). The concurrent
 * suites are therefore compiled for TSan against this header instead: the
 * same test files, the subset of criterion's macros they use, and a main()
 * that runs each test in its own forked process, as criterion does, with
 * the test's .timeout as an alarm.
 */
#ifndef TOUCHPULSE_TSAN_CRITERION_H
#define TOUCHPULSE_TSAN_CRITERION_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tp_shim_test {
  const char *suite, *name;
  void (*fn)(void);
  double timeout;
};

struct tp_shim_opts {
  double timeout;
  int signal;
  int exit_code;
  void (*init)(void);
  void (*fini)(void);
  const char *description;
  bool disabled;
};

void tp_shim_register(const char *suite, const char *name, void (*fn)(void),
                      struct tp_shim_opts opts);
void tp_shim_fail(const char *file, int line, bool fatal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define TestSuite(...) extern int tp_shim_suite_unused_
#define Test(suite, name, ...)                                                                   \
  static void suite##_##name##_impl(void);                                                       \
  __attribute__((constructor)) static void suite##_##name##_reg(void) {                          \
    tp_shim_register(#suite, #name, suite##_##name##_impl,                                      \
                     (struct tp_shim_opts){__VA_ARGS__});                          \
  }                                                                                              \
  static void suite##_##name##_impl(void)

/* cr_x(cond, [fmt, args...]) */
#define TP_SHIM_CHECK(fatal, cond, ...)                                                          \
  do {                                                                                           \
    if (!(cond))                                                                                 \
      tp_shim_fail(__FILE__, __LINE__, fatal, "%s " __VA_OPT__(": ") TP_SHIM_FMT(__VA_ARGS__),  \
                   #cond TP_SHIM_ARGS(__VA_ARGS__));                                             \
  } while (0)
#define TP_SHIM_FMT(...) __VA_OPT__(TP_SHIM_FIRST(__VA_ARGS__))
#define TP_SHIM_FIRST(f, ...) f
#define TP_SHIM_ARGS(...) __VA_OPT__(TP_SHIM_REST(__VA_ARGS__))
#define TP_SHIM_REST(f, ...) __VA_OPT__(, __VA_ARGS__)

#define cr_assert(c, ...) TP_SHIM_CHECK(true, (c), __VA_ARGS__)
#define cr_expect(c, ...) TP_SHIM_CHECK(false, (c), __VA_ARGS__)
#define cr_assert_not(c, ...) TP_SHIM_CHECK(true, !(c), __VA_ARGS__)
#define cr_expect_not(c, ...) TP_SHIM_CHECK(false, !(c), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) TP_SHIM_CHECK(true, (a) == (b), __VA_ARGS__)
#define cr_expect_eq(a, b, ...) TP_SHIM_CHECK(false, (a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) TP_SHIM_CHECK(true, (a) != (b), __VA_ARGS__)
#define cr_expect_neq(a, b, ...) TP_SHIM_CHECK(false, (a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) TP_SHIM_CHECK(true, (a) < (b), __VA_ARGS__)
#define cr_expect_lt(a, b, ...) TP_SHIM_CHECK(false, (a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) TP_SHIM_CHECK(true, (a) <= (b), __VA_ARGS__)
#define cr_expect_leq(a, b, ...) TP_SHIM_CHECK(false, (a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) TP_SHIM_CHECK(true, (a) > (b), __VA_ARGS__)
#define cr_expect_gt(a, b, ...) TP_SHIM_CHECK(false, (a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) TP_SHIM_CHECK(true, (a) >= (b), __VA_ARGS__)
#define cr_expect_geq(a, b, ...) TP_SHIM_CHECK(false, (a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) TP_SHIM_CHECK(true, (p) == NULL, __VA_ARGS__)
#define cr_expect_null(p, ...) TP_SHIM_CHECK(false, (p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) TP_SHIM_CHECK(true, (p) != NULL, __VA_ARGS__)
#define cr_expect_not_null(p, ...) TP_SHIM_CHECK(false, (p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) TP_SHIM_CHECK(true, strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) TP_SHIM_CHECK(false, strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) TP_SHIM_CHECK(true, strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) TP_SHIM_CHECK(false, strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_fail(...) TP_SHIM_CHECK(true, 0, __VA_ARGS__)
#define cr_skip_test(...) (fprintf(stderr, "skipped\n"), exit(0))
#define cr_log_info(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))
#define cr_log_warn(...) cr_log_info(__VA_ARGS__)

#endif
