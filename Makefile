# fewsam build. `make` builds every stage into build/bin/<stage>; `make test`
# runs the whole suite; `make pipeline` (pipeline.mk) runs the experiment.
# Every .c under common/ goes into build/libfewsam.a; every folder under
# stages/ is one executable; every tests/unit/test_*.c is one test binary.

SHELL := /bin/bash
# SANITIZE=1: the same build and suite under AddressSanitizer and UBSan, in
# its own tree (malformed files and messages must fail cleanly, not corrupt).
ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
BUILD ?= build
CC ?= cc
OPT ?= -O2
PKGS := hdf5-serial zlib libpng openblas

# Missing libraries are installed by run/deps (Debian) before anything is
# compiled; the stamp keeps that check off the hot path of later builds.
DEPS_STAMP := $(BUILD)/.deps-ok
ifeq ($(filter help clean,$(MAKECMDGOALS)),)
ifeq ($(wildcard $(DEPS_STAMP)),)
DEPS_OK := $(shell run/deps --quiet >&2 && mkdir -p $(BUILD) && touch $(DEPS_STAMP) && echo ok)
ifneq ($(DEPS_OK),ok)
$(error the Debian packages fewsam needs are missing and run/deps could not install them (see above))
endif
endif
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS ?= $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation
ALL_CFLAGS := -std=gnu11 -fopenmp -Icommon $(PKG_CFLAGS) $(CFLAGS) $(SAN) -MMD -MP
LDLIBS := $(PKG_LIBS) -fopenmp -lm $(SAN)

COMMON_SRC := $(shell find common -name '*.c' | sort)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libfewsam.a

STAGES := $(notdir $(patsubst %/,%,$(dir $(wildcard stages/*/main.c))))
STAGE_BINS := $(STAGES:%=$(BUILD)/bin/%)

TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all test check test-asan bench clean help pipeline deps
.DEFAULT_GOAL := all

all: $(STAGE_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

.SECONDARY:
# One link rule per stage: its own objects plus the library.
define stage_rule
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard stages/$(1)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) -o $$@ $$(filter %.o,$$^) $(LIB) $$(LDLIBS)
endef
$(foreach s,$(STAGES),$(eval $(call stage_rule,$(s))))

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# The suite: unit binaries, then end-to-end scripts over the real stages.
test check: all $(TEST_BINS)
	@tests/run $(BUILD)

# Benchmarks against PyTorch on the same machine and threads; ratios and
# build/bench/results.json ("ratio" > 1: fewsam is better).
BENCH_BIN := $(BUILD)/bench/bench_encoder
$(BENCH_BIN): $(BUILD)/obj/tests/bench/bench_encoder.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench: $(BENCH_BIN)
	@BUILD=$(BUILD) tests/bench/run.sh

# The suite again under AddressSanitizer and UBSan (build-asan/): every
# malformed-input test must fail cleanly, never read out of bounds.
test-asan:
	@ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 $(MAKE) --no-print-directory SANITIZE=1 test

deps:
	run/deps

pipeline: all
	@$(MAKE) --no-print-directory -f pipeline.mk pipeline

help:
	@echo "make            build every stage into $(BUILD)/bin/"
	@echo "make test       build and run the whole test suite"
	@echo "make test-asan  the suite under AddressSanitizer and UBSan"
	@echo "make bench      benchmarks against PyTorch (build/bench/results.json)"
	@echo "make pipeline   run the experiment (DATA=demo|brats|synapse; see pipeline.mk)"
	@echo "make deps       install the Debian packages fewsam needs"
	@echo "make clean      remove $(BUILD)/"

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
