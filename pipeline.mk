# The experiment as make rules: make -f pipeline.mk (or `make pipeline`)
#   DATA=demo|brats|synapse|transunet   which data set (pipelines/$(DATA).mk)
# Each stage's outputs depend on the stage binary, its inputs, and a settings
# stamp that is rewritten only when the settings that shape the outputs
# change: changing FRACTION reruns the sampler and what follows, not the loader.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DELETE_ON_ERROR:

DATA ?= demo
ifeq ($(wildcard pipelines/$(DATA).mk),)
$(error DATA=$(DATA): no pipelines/$(DATA).mk (choose demo, brats, synapse or transunet))
endif
include pipelines/$(DATA).mk

BIN ?= build/bin
# Any stage can be swapped for another executable with the same interface.
LOADER ?= $(BIN)/loader
SAMPLER ?= $(BIN)/exemplar-sampler
SCORER ?= $(BIN)/scorer

# Settings (defaults from pipelines/$(DATA).mk where it sets them).
SEED ?= 0
FRACTION ?= 0.01
COUNT ?=
SAMPLER_STRATEGY ?= foreground
SPLIT_FRACTION ?= 0.25
TEST_CASES ?=
TRAIN_CASES ?=
RUN ?= runs/$(DATA)
PRED ?= $(RUN)/predictions

# stamp NAME, CONTENT: $(RUN)/.settings/NAME holds CONTENT, touched only on change.
stamp = $(shell mkdir -p $(RUN)/.settings && f=$(RUN)/.settings/$(1) && \
          printf '%s\n' '$(2)' > $$f.new && { cmp -s $$f.new $$f && rm -f $$f.new || mv -f $$f.new $$f; })

LOADER_SETTINGS := $(DATA_KIND) in=$(DATA_DIR) seed=$(SEED) split=$(SPLIT_FRACTION) test=$(TEST_CASES) train=$(TRAIN_CASES) $(LOADER_ARGS)
SAMPLER_SETTINGS := fraction=$(FRACTION) count=$(COUNT) strategy=$(SAMPLER_STRATEGY) seed=$(SEED) $(SAMPLER_ARGS)
$(call stamp,loader,$(LOADER_SETTINGS))
$(call stamp,sampler,$(SAMPLER_SETTINGS))

LOGS := $(RUN)/logs
DATA_OUT := $(RUN)/data
EXEMPLARS := $(RUN)/exemplars.h5
SCORES := $(RUN)/scores/scores.json

.PHONY: pipeline data exemplars score settings clean-run
pipeline: exemplars
	@if [ -x "$(BIN)/predictor" ]; then $(MAKE) --no-print-directory -f pipeline.mk score; \
	 else echo "pipeline: data and exemplars are in $(RUN); training, prediction and scoring come with the trainer and predictor stages"; fi

data: $(DATA_OUT)/index.json
exemplars: $(EXEMPLARS)
score: $(SCORES)

$(DATA_OUT)/index.json: $(RUN)/.settings/loader $(LOADER)
	@mkdir -p $(LOGS)
	$(LOADER) --data $(DATA_KIND) $(if $(DATA_DIR),--in $(DATA_DIR)) --out $(DATA_OUT) --seed $(SEED) \
	  --test-fraction $(SPLIT_FRACTION) $(if $(TEST_CASES),--test-cases $(TEST_CASES)) \
	  $(if $(TRAIN_CASES),--train-cases $(TRAIN_CASES)) $(LOADER_ARGS) 2>&1 | tee $(LOGS)/loader.log

$(EXEMPLARS): $(DATA_OUT)/index.json $(RUN)/.settings/sampler $(SAMPLER)
	@mkdir -p $(LOGS)
	$(SAMPLER) --in $(DATA_OUT) --out $@ --manifest $(RUN)/exemplars.json \
	  $(if $(COUNT),--count $(COUNT),--fraction $(FRACTION)) --strategy $(SAMPLER_STRATEGY) --seed $(SEED) \
	  $(SAMPLER_ARGS) 2>&1 | tee $(LOGS)/exemplar-sampler.log

# Scores whatever predictions $(PRED) holds (the predictor stage writes them).
$(SCORES): $(DATA_OUT)/index.json $(SCORER) $(wildcard $(PRED)/*)
	@mkdir -p $(LOGS)
	$(SCORER) --truth $(DATA_OUT)/test --pred $(PRED) --out $(RUN)/scores 2>&1 | tee $(LOGS)/scorer.log

settings:
	@echo "DATA=$(DATA) RUN=$(RUN)"; for f in $(RUN)/.settings/*; do echo "$$(basename $$f): $$(cat $$f)"; done

clean-run:
	rm -rf $(RUN)
