#!/usr/bin/env bash
# Fuzz the parsers of outside input with libFuzzer (Debian's clang),
# AddressSanitizer and UndefinedBehaviorSanitizer; see tests/fuzz/README.md.
#
#   scripts/fuzz.sh build               build every target into build/fuzz/
#   scripts/fuzz.sh run [SECONDS]       build, replay tests/fuzz/regressions/, then
#                                       fuzz every target for SECONDS (default 20)
#                                       each, one after another; exit 1 on any
#                                       crash, leak, timeout or oversized allocation
#   scripts/fuzz.sh long TARGET RUNS    build, fuzz TARGET until RUNS executions (or
#                                       for N seconds with RUNS = Ns, e.g. 120s) and
#                                       print the figures (tests/fuzz/RESULTS.md)
#   scripts/fuzz.sh repro TARGET FILE...  run files through TARGET once each
#   scripts/fuzz.sh corpus              rewrite the generated seeds (decode_*, decode_diff)
#   scripts/fuzz.sh list                the targets
#
# Every run uses -rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10: no single
# allocation may exceed 64 MiB, no input may take 10 s. Targets fuzz a copy of
# their seed corpus in build/fuzz/corpus/TARGET (it keeps growing from run to
# run); tests/fuzz/corpus/ is never written. Crashing inputs land in
# build/fuzz/artifacts/TARGET/; each one found belongs in
# tests/fuzz/regressions/TARGET/ once understood.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=build/fuzz
LIMITS=(-rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10)
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

targets() {
  local f
  for f in tests/fuzz/fuzz_*.c; do
    f=${f#tests/fuzz/fuzz_}
    echo "${f%.c}"
  done
}

# Inputs long enough to reach every limit: comments of 4096 bytes (decoders),
# heads over the server's 8 KiB (HTTP), whole configuration files.
max_len() {
  case "$1" in
    decode_diff) echo 4096 ;;
    decode_*) echo 8192 ;;
    http) echo 9000 ;;
    config) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

ensure_tools() {
  local rt
  if command -v clang >/dev/null && command -v pkg-config >/dev/null; then
    rt=$(clang --print-runtime-dir 2>/dev/null || true)
    if [ -e "$rt/libclang_rt.fuzzer-x86_64.a" ] || ls "$rt"/libclang_rt.fuzzer*.a >/dev/null 2>&1; then
      return 0
    fi
  fi
  echo "fuzz: installing clang and its sanitizer runtimes (scripts/deps.sh)" >&2
  scripts/deps.sh
}

build() {
  ensure_tools
  mkdir -p "$OUT"
  if ! make -f tests/fuzz/fuzz.mk OUT="$OUT" -j "$(nproc)" all "$OUT/gen_corpus" \
      >"$OUT/build.log" 2>&1; then
    cat "$OUT/build.log" >&2
    echo "fuzz: build failed" >&2
    exit 1
  fi
}

check_target() {
  if [ ! -f "tests/fuzz/fuzz_$1.c" ]; then
    echo "fuzz: no target '$1' (targets: $(targets | tr '\n' ' '))" >&2
    exit 2
  fi
}

# What went wrong, from a libFuzzer log: crash, leak, timeout or oom.
failure_kind() {
  local log=$1
  if grep -q 'ERROR: LeakSanitizer' "$log"; then echo leak
  elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then echo timeout
  elif grep -q 'ERROR: libFuzzer: out-of-memory (malloc' "$log"; then echo "oom (one allocation over 64 MiB)"
  elif grep -q 'ERROR: libFuzzer: out-of-memory' "$log"; then echo "oom (rss over 2048 MiB)"
  elif grep -qE 'ERROR: (AddressSanitizer|libFuzzer)|runtime error:|fuzz: check failed' "$log"; then echo crash
  else echo "exit status"
  fi
}

stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

# Fuzz one target on its corpus copy; extra libFuzzer flags follow the name.
# Sets the globals LAST_RC and LAST_LOG.
fuzz_target() {
  local t=$1
  shift
  local corpus=$OUT/corpus/$t artifacts=$OUT/artifacts/$t/ dict=tests/fuzz/dict/$t.dict
  local args=("${LIMITS[@]}" -max_len="$(max_len "$t")" -artifact_prefix="$artifacts"
              -print_final_stats=1)
  [ -f "$dict" ] && args+=(-dict="$dict")
  mkdir -p "$corpus" "$artifacts" "$OUT/logs"
  cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  LAST_LOG=$OUT/logs/$t.log
  set +e
  "$OUT/fuzz_$t" "${args[@]}" "$@" "$corpus" >"$LAST_LOG" 2>&1
  LAST_RC=$?
  set -e
}

# One line of figures from the last log.
summary() {
  local t=$1 log=$LAST_LOG
  local execs rate rss inited cov
  execs=$(stat_of number_of_executed_units "$log")
  rate=$(stat_of average_exec_per_sec "$log")
  rss=$(stat_of peak_rss_mb "$log")
  inited=$(grep -m1 -oE 'INITED cov: [0-9]+ ft: [0-9]+' "$log" | sed 's/INITED //' || true)
  cov=$(grep -oE '(cov|ft|corp): [0-9]+(/[0-9]+[a-zA-Z]*)?' "$log" | tail -3 | tr '\n' ' ' || true)
  printf '%-16s %s execs, %s exec/s, peak RSS %s MB, start %s, end %s\n' \
    "$t" "${execs:-?}" "${rate:-?}" "${rss:-?}" "${inited:-?}" "${cov:-?}"
}

report_failure() {
  local t=$1 kind
  kind=$(failure_kind "$LAST_LOG")
  echo "FAIL $t: $kind (exit $LAST_RC); log $LAST_LOG" >&2
  grep -E 'fuzz: check failed|ERROR:|SUMMARY:|runtime error:' "$LAST_LOG" | head -5 >&2 || true
  grep -E '^    #[0-9]+ ' "$LAST_LOG" | head -12 >&2 || true
  grep -E 'Test unit written to' "$LAST_LOG" | sed 's/^/  /' >&2 || true
  echo "  replay: scripts/fuzz.sh repro $t FILE; keep it in tests/fuzz/regressions/$t/" >&2
}

regressions() {
  local dir t files failed=0 n=0
  for dir in tests/fuzz/regressions/*/; do
    [ -d "$dir" ] || continue
    t=$(basename "$dir")
    check_target "$t"
    mapfile -t files < <(find "$dir" -maxdepth 1 -type f ! -name '*.md' ! -name '.*' | sort)
    [ ${#files[@]} -gt 0 ] || continue
    n=$((n + ${#files[@]}))
    mkdir -p "$OUT/logs"
    if ! "$OUT/fuzz_$t" "${LIMITS[@]}" "${files[@]}" >"$OUT/logs/regress-$t.log" 2>&1; then
      echo "FAIL regression $t: $(failure_kind "$OUT/logs/regress-$t.log");" \
           "log $OUT/logs/regress-$t.log" >&2
      grep -E 'Running: |fuzz: check failed|SUMMARY:|runtime error:' \
        "$OUT/logs/regress-$t.log" | tail -4 >&2 || true
      failed=1
    fi
  done
  echo "regressions: $n input(s) replayed"
  return $failed
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
case "$cmd" in
  list)
    targets
    ;;
  build)
    build
    echo "fuzz: built $(targets | wc -l) targets in $OUT/"
    ;;
  corpus)
    build
    "$OUT/gen_corpus" tests/fuzz/corpus
    echo "fuzz: wrote tests/fuzz/corpus/decode_*/ and decode_diff/"
    ;;
  repro)
    [ $# -ge 2 ] || usage
    t=$1
    shift
    check_target "$t"
    build
    exec "$OUT/fuzz_$t" "${LIMITS[@]}" "$@"
    ;;
  run)
    seconds=${1:-20}
    start=$(date +%s)
    build
    failed=0
    regressions || failed=1
    for t in $(targets); do
      fuzz_target "$t" -max_total_time="$seconds"
      if [ "$LAST_RC" -ne 0 ]; then
        report_failure "$t"
        failed=1
      else
        summary "$t"
      fi
    done
    echo "fuzz: $(( $(date +%s) - start )) s in all"
    if [ $failed -ne 0 ]; then
      echo "fuzz: FAILED" >&2
      exit 1
    fi
    echo "fuzz: every target ran ${seconds} s with 0 crashes, 0 leaks, 0 timeouts"
    ;;
  long)
    [ $# -eq 2 ] || usage
    t=$1 runs=$2
    check_target "$t"
    build
    start=$(date +%s)
    case "$runs" in
      *s) fuzz_target "$t" -max_total_time="${runs%s}" ;; # "120s": for a time
      *) fuzz_target "$t" -runs="$runs" ;;
    esac
    secs=$(( $(date +%s) - start ))
    if [ "$LAST_RC" -ne 0 ]; then
      report_failure "$t"
      exit 1
    fi
    summary "$t"
    echo "$t: $(stat_of number_of_executed_units "$LAST_LOG") executions in ${secs} s" \
         "(wall clock), new units $(stat_of new_units_added "$LAST_LOG")," \
         "corpus $(find "$OUT/corpus/$t" -type f | wc -l) files; 0 crashes, 0 leaks, 0 timeouts"
    ;;
  *)
    usage
    ;;
esac
