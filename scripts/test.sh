#!/usr/bin/env bash
# Install what is needed, build touchpulse and run the whole test suite:
#   0. clang-tidy and cppcheck over src/ (scripts/lint.sh);
#   1. every suite under AddressSanitizer + UndefinedBehaviorSanitizer;
#   2. the integration tests against a real Kafka broker and the SASL tests
#      (ASan build);
#   3. every libFuzzer target for a bounded time (scripts/fuzz.sh);
#   4. the concurrent suites (table, pipeline, HTTP) under ThreadSanitizer;
#   5. the release build, the binary the Docker image ships, on jemalloc:
#      every suite again but the fault-injection one (its faults do not
#      depend on the allocator, and its timeouts take four minutes); the
#      benchmarks are built (not timed: CI machines are noisy).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

jobs=$(nproc)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tsan.supp}

echo "== static analysis (clang-tidy, cppcheck)"
scripts/lint.sh

echo "== build (ASan+UBSan)"
scripts/build.sh asan
echo "== tests (ASan+UBSan)"
ctest --test-dir build/asan --output-on-failure -j "$jobs"

echo "== integration tests (real Kafka broker)"
tests/integration/run.sh build/asan/touchpulse
echo "== SASL against real brokers (SCRAM on Kafka 3.9.1, PLAIN and SCRAM on 4.1.2)"
tests/integration/sasl.sh build/asan/touchpulse

echo "== fuzzing, bounded (every target 10 s, regressions replayed)"
scripts/fuzz.sh run 10

echo "== build (TSan)"
scripts/build.sh tsan
echo "== concurrent tests (TSan)"
ctest --test-dir build/tsan --output-on-failure -L concurrent -j "$jobs"

echo "== build (release, benchmarks)"
scripts/build.sh release
echo "== tests (release, jemalloc)"
ctest --test-dir build/release --output-on-failure -j "$jobs" -E '^test_faults$'
echo "== all tests passed"
