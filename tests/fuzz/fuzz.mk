# fuzz.mk -- builds the libFuzzer targets; scripts/fuzz.sh runs it from the
# repository root:  make -f tests/fuzz/fuzz.mk OUT=build/fuzz -j2
#
# The project's sources (src/*.c and src/state/*.c but src/main.c, plus the
# schemas and example configuration embedded by cmake/embed.cmake, as
# CMakeLists.txt does) are compiled once with coverage instrumentation,
# AddressSanitizer and UndefinedBehaviorSanitizer, and linked into each
# tests/fuzz/fuzz_<name>.c as build/fuzz/fuzz_<name>.

CC := clang
OUT := build/fuzz
CMAKE := cmake

SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
PKGS := rdkafka avro-c libuv yaml-0.1
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lrdkafka -lavro -luv -lyaml)
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
  -Wall -Wextra -Wno-missing-field-initializers $(SAN) $(PKG_CFLAGS)
LIB_CFLAGS := $(CFLAGS_BASE) -fsanitize=fuzzer-no-link -Iinclude -Isrc
# The shim goes first: tests/fixtures/avro_ref.h includes <criterion/criterion.h>.
TARGET_CFLAGS := $(CFLAGS_BASE) -fsanitize=fuzzer-no-link -Itests/fuzz/shim \
  -Itests/fuzz -Itests -Iinclude -Isrc
LDLIBS := $(PKG_LIBS) -lpthread -lm

LIB_SRCS := $(filter-out src/main.c,$(sort $(wildcard src/*.c src/state/*.c)))
LIB_OBJS := $(patsubst %.c,$(OUT)/obj/%.o,$(LIB_SRCS)) $(OUT)/obj/embedded.o
TARGET_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
TARGETS := $(patsubst tests/fuzz/%.c,$(OUT)/%,$(TARGET_SRCS))

EMBED_INPUTS := tp_schema_feedback_json=$(CURDIR)/schemas/feedback_event.avsc;$\
tp_schema_support_json=$(CURDIR)/schemas/support_event.avsc;$\
tp_schema_commerce_json=$(CURDIR)/schemas/commerce_event.avsc;$\
tp_schema_alert_json=$(CURDIR)/schemas/alert_event.avsc;$\
tp_example_config_yaml=$(CURDIR)/examples/touchpulse.yaml

.PHONY: all
all: $(TARGETS)

$(OUT)/embedded.c: $(wildcard schemas/*.avsc) examples/touchpulse.yaml cmake/embed.cmake
	@mkdir -p $(@D)
	$(CMAKE) -DOUT=$@ "-DINPUTS=$(EMBED_INPUTS)" -P cmake/embed.cmake

$(OUT)/obj/embedded.o: $(OUT)/embedded.c
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(OUT)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

# As CMakeLists.txt does (TP_SSSE3): on x86-64 the decoder reads the scores
# with SSSE3, and that is the path the decoder targets must reach; it is
# also built with BMI2, which tp_decode() runs where the processor's PEXT is
# fast (the plain build's agreement with it is test_decode's).
ifneq ($(filter x86_64 amd64,$(shell uname -m)),)
$(OUT)/obj/src/decode.o: LIB_CFLAGS += -mssse3 -DTP_DECODE_HAS_BMI2
LIB_OBJS += $(OUT)/obj/src/decode_bmi2.o
$(OUT)/obj/src/decode_bmi2.o: src/decode.c
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -mssse3 -mbmi2 -DTP_DECODE_BMI2 -MMD -MP -c $< -o $@
endif

$(OUT)/obj/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(@D)
	$(CC) $(TARGET_CFLAGS) -MMD -MP -c $< -o $@

$(OUT)/%: $(OUT)/obj/tests/fuzz/%.o $(LIB_OBJS)
	$(CC) $(SAN) -fsanitize=fuzzer $^ -o $@ $(LDLIBS)

# The seed generator has its own main(): no libFuzzer runtime.
$(OUT)/gen_corpus: $(OUT)/obj/tests/fuzz/gen_corpus.o $(LIB_OBJS)
	$(CC) $(SAN) -fsanitize=fuzzer-no-link $^ -o $@ $(LDLIBS)

-include $(wildcard $(OUT)/obj/src/*.d $(OUT)/obj/src/state/*.d $(OUT)/obj/tests/fuzz/*.d)
