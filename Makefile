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
PKGS := hdf5-serial zlib libpng openblas libzmq msgpack

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

# The CUDA backend (common/nn/cuda/*.cu) goes into its own library,
# $(BUILD)/libfewsam_cuda.a, so that CPU-only binaries never need libcudart.
# Built when nvcc is found: CUDA=1 forces it (an error without nvcc), CUDA=0
# skips it (and it is off by default under SANITIZE=1). CUDA_ARCH overrides
# the GPU architectures. The GPU tests (tests/gpu/test_*.c) link into
# $(BUILD)/tests-gpu/ and, linked into $(BUILD)/tests/ too, run in `make
# test`, where without a GPU they report themselves skipped.
NVCC ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
ifeq ($(filter 0 1,$(CUDA)),)
CUDA := $(if $(filter 1,$(SANITIZE)),0,$(if $(wildcard $(NVCC)),1,0))
endif
ifeq ($(CUDA),1)
ifeq ($(wildcard $(NVCC)),)
$(error CUDA=1 but nvcc was not found at '$(NVCC)' (set NVCC=/path/to/nvcc))
endif
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCCFLAGS ?= $(OPT) -lineinfo
ALL_NVCCFLAGS := -std=c++20 -Icommon $(CUDA_ARCH) $(NVCCFLAGS) -Werror cross-execution-space-call \
	-Xcompiler -Wall,-Wextra,-Wno-unused-parameter
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
CUDA_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.cu.o,$(sort $(wildcard common/nn/cuda/*.cu)))
CUDA_LIB := $(BUILD)/libfewsam_cuda.a
GPU_TEST_SRC := $(wildcard tests/gpu/test_*.c)
GPU_TEST_BINS := $(GPU_TEST_SRC:tests/gpu/%.c=$(BUILD)/tests-gpu/%)
GPU_TEST_LINKS := $(GPU_TEST_SRC:tests/gpu/%.c=$(BUILD)/tests/%)
# The CUDA variants of the stages that run the model, in $(BUILD)/cuda-bin/:
# the same objects linked with libfewsam_cuda.a, whose fs_nn_cuda table the
# weak reference in common/nn/backend.c then finds (--backend cuda). The
# benchmark programs get theirs in $(BUILD)/cuda-bench/ (make bench-gpu).
CUDA_STAGES := trainer predictor golden
CUDA_STAGE_BINS := $(CUDA_STAGES:%=$(BUILD)/cuda-bin/%)
CUDA_BENCH_BINS := $(BUILD)/cuda-bench/bench_encoder $(BUILD)/cuda-bench/bench_train
CUDA_LINK = -Wl,--undefined=fs_nn_cuda $(CUDA_LIB) $(LIB) $(LDLIBS) $(CUDA_LDLIBS)
CUDA_ALL := $(if $(filter 1,$(CUDA)),$(CUDA_LIB) $(GPU_TEST_BINS) $(GPU_TEST_LINKS) $(CUDA_STAGE_BINS) $(CUDA_BENCH_BINS))

.PHONY: all test check test-asan test-gpu bench-gpu bench clean help pipeline ablations deps
.DEFAULT_GOAL := all

all: $(STAGE_BINS) $(CUDA_ALL)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(ALL_NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(CUDA_LIB): $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(GPU_TEST_BINS): $(BUILD)/tests-gpu/%: $(BUILD)/obj/tests/gpu/%.o $(CUDA_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CUDA_LIB) $(LIB) $(LDLIBS) $(CUDA_LDLIBS)

$(GPU_TEST_LINKS): $(BUILD)/tests/%: $(BUILD)/tests-gpu/%
	@mkdir -p $(dir $@)
	ln -sf ../tests-gpu/$* $@

.SECONDARY:
# One link rule per stage: its own objects plus the library.
define stage_rule
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard stages/$(1)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) -o $$@ $$(filter %.o,$$^) $(LIB) $$(LDLIBS)
endef
$(foreach s,$(STAGES),$(eval $(call stage_rule,$(s))))
define cuda_stage_rule
$(BUILD)/cuda-bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard stages/$(1)/*.c)) $(LIB) $(CUDA_LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) -o $$@ $$(filter %.o,$$^) $$(CUDA_LINK)
endef
$(foreach s,$(CUDA_STAGES),$(eval $(call cuda_stage_rule,$(s))))
$(CUDA_BENCH_BINS): $(BUILD)/cuda-bench/%: $(BUILD)/obj/tests/bench/%.o $(LIB) $(CUDA_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CUDA_LINK)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# The suite: unit binaries, then end-to-end scripts over the real stages.
test check: all $(TEST_BINS)
	@tests/run $(BUILD)

# The GPU suite alone: every CUDA kernel against the CPU reference, then the
# model through the CUDA path (tests/gpu/run: golden files, a LoRA step CPU
# vs GPU, resume on the GPU). bench-gpu: encoder and training step against
# PyTorch on the same GPU (tests/bench/gpu.sh).
ifeq ($(CUDA),1)
test-gpu: all
	@BUILD=$(BUILD) tests/gpu/run
bench-gpu: all
	@BUILD=$(BUILD) tests/bench/gpu.sh
else
test-gpu bench-gpu:
	@echo "make $@: the CUDA build is off (CUDA=$(CUDA); nvcc: $(NVCC))" >&2; exit 1
endif

# The CUDA kernels without a GPU: tests/gpu/emu/ emulates the CUDA runtime,
# device language and cuBLAS on the CPU (each GPU thread a fiber, warps and
# barriers that wait as on a GPU, shared-memory limits), so the suite runs
# test_gpu.c's kernel checks against the CUDA sources themselves on every
# machine (tests/e2e/cuda_emulated.sh). g++ compiles the sources after a
# mechanical rewrite (transform.py: launches, __shared__); x86-64 only (the
# fibers switch stacks in assembly). Not a GPU: it shows logic errors, not
# speed, races the emulated schedules miss, or nvcc's code generation.
EMU := $(BUILD)/emu
EMU_SRC := $(sort $(wildcard common/nn/cuda/*.cu))
EMU_OBJ := $(EMU_SRC:common/nn/cuda/%.cu=$(EMU)/obj/%.o) $(EMU)/obj/emu_runtime.o $(EMU)/obj/emu_blas.o
EMU_CXXFLAGS := -std=c++20 $(OPT) -g -fopenmp -include tests/gpu/emu/include/cuda_runtime.h -D__CUDACC__ \
  -D__CUDA_ARCH__=900 -Itests/gpu/emu/include -Itests/gpu/emu -Icommon -mfma -ffp-contract=fast \
  -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas $(if $(SAN),-fsanitize=address -fno-omit-frame-pointer)
EMU_OK := $(shell [ "$$(uname -m)" = x86_64 ] && grep -qw fma /proc/cpuinfo 2>/dev/null && echo 1)
$(EMU)/gen/%.cpp: common/nn/cuda/%.cu tests/gpu/emu/transform.py
	@mkdir -p $(dir $@)
	python3 tests/gpu/emu/transform.py $< $@
$(EMU)/gen/selftest.cpp: tests/gpu/emu/selftest.cu tests/gpu/emu/transform.py
	@mkdir -p $(dir $@)
	python3 tests/gpu/emu/transform.py $< $@
$(EMU)/obj/%.o: $(EMU)/gen/%.cpp
	@mkdir -p $(dir $@)
	g++ $(EMU_CXXFLAGS) -MMD -MP -c $< -o $@
$(EMU)/obj/emu_%.o: tests/gpu/emu/%.cpp
	@mkdir -p $(dir $@)
	g++ $(EMU_CXXFLAGS) -MMD -MP -c $< -o $@
$(EMU)/test_gpu: $(BUILD)/obj/tests/gpu/test_gpu.o $(EMU_OBJ) $(LIB)
	g++ -fopenmp -o $@ $< $(EMU_OBJ) $(LIB) $(LDLIBS)
$(EMU)/selftest: $(EMU)/obj/selftest.o $(EMU)/obj/emu_runtime.o $(EMU)/obj/emu_blas.o
	g++ -fopenmp -o $@ $^ $(LDLIBS)
# and the programs that run the model, on the emulated CUDA backend: the
# model's device path (memory, glue, optimiser entries; uploads) end to end
EMU_STAGE_BINS := $(CUDA_STAGES:%=$(EMU)/bin/%)
define emu_stage_rule
$(EMU)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard stages/$(1)/*.c)) $(EMU_OBJ) $(LIB)
	@mkdir -p $$(dir $$@)
	g++ -fopenmp -o $$@ $$(filter %.o,$$^) $(LIB) $$(LDLIBS)
endef
$(foreach s,$(CUDA_STAGES),$(eval $(call emu_stage_rule,$(s))))
-include $(wildcard $(EMU)/obj/*.d)
test check: $(if $(EMU_OK),$(EMU)/test_gpu $(EMU)/selftest $(EMU_STAGE_BINS))

# Benchmarks against PyTorch on the same machine and threads; ratios and
# build/bench/results.json ("ratio" > 1: fewsam is better).
BENCH_BIN := $(BUILD)/bench/bench_encoder $(BUILD)/bench/bench_train $(BUILD)/bench/bench_wire $(BUILD)/bench/bench_synth
# The suite builds the benchmark programs too, so they cannot rot unnoticed.
test check: $(BENCH_BIN)
$(BENCH_BIN): $(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIB)
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

# The small SAM behind SAM=demo, pretrained from scratch on synthetic shapes
# (the recipe: pipelines/demo-sam.mk; the result is committed).
.PHONY: demo-checkpoint
demo-checkpoint: all
	@$(MAKE) --no-print-directory -f pipelines/demo-sam.mk demo-checkpoint

# The paper's comparisons, one run folder each, one table (pipeline.mk).
ablations: all
	@$(MAKE) --no-print-directory -f pipeline.mk ablations

help:
	@echo "make            build every stage into $(BUILD)/bin/"
	@echo "make test       build and run the whole test suite"
	@echo "make test-asan  the suite under AddressSanitizer and UBSan"
	@echo "make test-gpu   the CUDA kernels against the CPU reference, the model on the GPU (skips without one)"
	@echo "make bench-gpu  encoder and LoRA step on the GPU against PyTorch on the same card"
	@echo "make bench      benchmarks against PyTorch (build/bench/results.json)"
	@echo "make pipeline   run the experiment (DATA=demo|brats|synapse; see pipeline.mk)"
	@echo "make ablations  zero-shot, exemplars only, with synthesis, fractions: one table"
	@echo "make demo-checkpoint  pretrain pipelines/demo-sam.safetensors (SAM=demo) on synthetic shapes"
	@echo "make deps       install the Debian packages fewsam needs"
	@echo "make clean      remove $(BUILD)/"

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
