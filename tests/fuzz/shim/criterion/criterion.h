/*
 * criterion.h (fuzz shim) -- lets the fuzz targets reuse the Avro-C reference
 * in tests/fixtures/avro_ref.h without linking Criterion: each assertion
 * becomes a check that prints what failed and calls abort(), which libFuzzer
 * reports as a crash with the input that caused it.
 *
 * Only tests/fuzz/ puts this directory on the include path, ahead of the
 * system's <criterion/criterion.h>.
 */
#ifndef TP_FUZZ_CRITERION_SHIM_H
#define TP_FUZZ_CRITERION_SHIM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TP_FUZZ_CHECK(cond, text)                                              \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz: check failed at %s:%d: %s\n", __FILE__,          \
              __LINE__, text);                                                 \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* The optional message arguments of Criterion are accepted and ignored. */
#define cr_assert(c, ...) TP_FUZZ_CHECK((c), #c)
#define cr_assert_not(c, ...) TP_FUZZ_CHECK(!(c), "!(" #c ")")
#define cr_assert_eq(a, b, ...) TP_FUZZ_CHECK((a) == (b), #a " == " #b)
#define cr_assert_neq(a, b, ...) TP_FUZZ_CHECK((a) != (b), #a " != " #b)
#define cr_assert_lt(a, b, ...) TP_FUZZ_CHECK((a) < (b), #a " < " #b)
#define cr_assert_leq(a, b, ...) TP_FUZZ_CHECK((a) <= (b), #a " <= " #b)
#define cr_assert_gt(a, b, ...) TP_FUZZ_CHECK((a) > (b), #a " > " #b)
#define cr_assert_geq(a, b, ...) TP_FUZZ_CHECK((a) >= (b), #a " >= " #b)
#define cr_assert_null(p, ...) TP_FUZZ_CHECK((p) == NULL, #p " == NULL")
#define cr_assert_not_null(p, ...) TP_FUZZ_CHECK((p) != NULL, #p " != NULL")
#define cr_assert_str_eq(a, b, ...)                                            \
  TP_FUZZ_CHECK(strcmp((a), (b)) == 0, #a " equals " #b)
#define cr_assert_fail(...) TP_FUZZ_CHECK(0, "cr_assert_fail")
#define cr_log_info(...) ((void)0)

#endif
