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
PREDICTOR ?= $(BIN)/predictor

# Settings (defaults from pipelines/$(DATA).mk where it sets them).
SEED ?= 0
FRACTION ?= 0.01
COUNT ?=
SAMPLER_STRATEGY ?= foreground
SPLIT_FRACTION ?= 0.25
TEST_CASES ?=
TRAIN_CASES ?=
RUN ?= runs/$(DATA)
# The SAM checkpoint (e.g. sam_vit_b_01ec64.pth); without one the pipeline
# stops after the exemplars.
SAM ?=
IMG_SIZE ?=
# KEY=VAL model settings a .pth cannot tell (e.g. dec_heads=4), space-separated.
SAM_CONFIG ?=
PROMPT ?= point
BOX_JITTER ?= 0
MULTIMASK ?= 0
BACKEND ?= cpu
PRED ?= $(RUN)/predictions

# stamp NAME, CONTENT: $(RUN)/.settings/NAME holds CONTENT, touched only on change.
stamp = $(shell mkdir -p $(RUN)/.settings && f=$(RUN)/.settings/$(1) && \
          printf '%s\n' '$(2)' > $$f.new && { cmp -s $$f.new $$f && rm -f $$f.new || mv -f $$f.new $$f; })

LOADER_SETTINGS := $(DATA_KIND) in=$(DATA_DIR) seed=$(SEED) split=$(SPLIT_FRACTION) test=$(TEST_CASES) train=$(TRAIN_CASES) $(LOADER_ARGS)
SAMPLER_SETTINGS := fraction=$(FRACTION) count=$(COUNT) strategy=$(SAMPLER_STRATEGY) seed=$(SEED) $(SAMPLER_ARGS)
PREDICTOR_SETTINGS := sam=$(SAM) config=$(SAM_CONFIG) img_size=$(IMG_SIZE) prompt=$(PROMPT) jitter=$(BOX_JITTER) multimask=$(MULTIMASK) seed=$(SEED) backend=$(BACKEND)
$(call stamp,loader,$(LOADER_SETTINGS))
$(call stamp,sampler,$(SAMPLER_SETTINGS))
$(call stamp,predictor,$(PREDICTOR_SETTINGS))

LOGS := $(RUN)/logs
DATA_OUT := $(RUN)/data
EXEMPLARS := $(RUN)/exemplars.h5
SCORES := $(RUN)/scores/scores.json

.PHONY: pipeline data exemplars predict score settings clean-run
ifeq ($(SAM),)
pipeline: exemplars
	@echo "pipeline: data and exemplars are in $(RUN); set SAM=<checkpoint> to predict and score (zero-shot until the trainer lands)"
else
pipeline: exemplars score
	@cat $(RUN)/scores/scores.md
endif

data: $(DATA_OUT)/index.json
exemplars: $(EXEMPLARS)
predict: $(PRED)/index.json
score: $(SCORES)

# Zero-shot SAM with prompts from the ground truth: the baseline row of every
# experiment (the trainer's LoRA checkpoint joins here when it lands).
$(RUN)/predictions/index.json: $(DATA_OUT)/index.json $(RUN)/.settings/predictor $(PREDICTOR) $(SAM)
	@mkdir -p $(LOGS)
	$(PREDICTOR) --weights $(SAM) --data $(DATA_OUT) --out $(RUN)/predictions --prompt $(PROMPT) \
	  --box-jitter $(BOX_JITTER) --seed $(SEED) --backend $(BACKEND) $(if $(IMG_SIZE),--img-size $(IMG_SIZE)) \
	  $(if $(filter 1,$(MULTIMASK)),--multimask) $(foreach c,$(SAM_CONFIG),--config $(c)) 2>&1 | tee $(LOGS)/predictor.log

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

# Scores the predictions in $(PRED) (the predictor's, or any folder given).
$(SCORES): $(DATA_OUT)/index.json $(SCORER) $(if $(filter $(RUN)/predictions,$(PRED)),$(PRED)/index.json,$(wildcard $(PRED)/*))
	@mkdir -p $(LOGS)
	$(SCORER) --truth $(DATA_OUT)/test --pred $(PRED) --out $(RUN)/scores 2>&1 | tee $(LOGS)/scorer.log

settings:
	@echo "DATA=$(DATA) RUN=$(RUN)"; for f in $(RUN)/.settings/*; do echo "$$(basename $$f): $$(cat $$f)"; done

clean-run:
	rm -rf $(RUN)
