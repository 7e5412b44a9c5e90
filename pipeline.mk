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
# DEVICE: where the model runs. cpu: the OpenBLAS/OpenMP kernels (or
# BACKEND=ref for the plain reference kernels). cuda: the trainer and
# predictor of the CUDA build ($(CUDA_BIN), made by `make` when nvcc is
# found) on the GPU. CUDA_MATH: the GPU's matrix products, fp32 (exact), tf32
# or bf16 (tensor cores; fp32 weights and optimiser state either way).
DEVICE ?= cpu
CUDA_MATH ?= fp32
export FEWSAM_CUDA_MATH := $(CUDA_MATH)
CUDA_BIN ?= $(dir $(BIN))cuda-bin
ifeq ($(DEVICE),cuda)
ifeq ($(wildcard $(CUDA_BIN)/trainer),)
$(error DEVICE=cuda: $(CUDA_BIN)/trainer is missing: the CUDA build needs nvcc (make CUDA=1))
endif
MODEL_BIN := $(CUDA_BIN)
else ifeq ($(DEVICE),cpu)
MODEL_BIN := $(BIN)
else
$(error DEVICE=$(DEVICE): expected cpu or cuda)
endif
# Any stage can be swapped for another executable with the same interface.
LOADER ?= $(BIN)/loader
SAMPLER ?= $(BIN)/exemplar-sampler
SCORER ?= $(BIN)/scorer
PREDICTOR ?= $(MODEL_BIN)/predictor
TRAINER ?= $(MODEL_BIN)/trainer
SYNTHESIZER ?= $(BIN)/synthesizer
RUN_LOCAL ?= run/local

# Settings (defaults from pipelines/$(DATA).mk where it sets them).
SEED ?= 0
FRACTION ?= 0.01
COUNT ?=
SAMPLER_STRATEGY ?= foreground
SPLIT_FRACTION ?= 0.25
TEST_CASES ?=
TRAIN_CASES ?=
RUN ?= runs/$(DATA)
# `make ablations` runs its experiments under $(RUN)/ablations and keeps its
# stamps there, so it never marks the main run's stages out of date.
ifeq ($(MAKECMDGOALS),ablations)
override RUN := $(RUN)/ablations
endif
# The SAM checkpoint (e.g. sam_vit_b_01ec64.pth); without one the pipeline
# stops after the exemplars. SAM=demo (DATA=demo's default) is the small SAM
# committed in the repository, pretrained by fewsam on synthetic shapes (its
# recipe: make demo-checkpoint, pipelines/demo-sam.mk).
SAM ?=
DEMO_SAM := pipelines/demo-sam.safetensors
ifeq ($(SAM),demo)
override SAM := $(DEMO_SAM)
endif
IMG_SIZE ?=
# KEY=VAL model settings a .pth cannot tell (e.g. dec_heads=4), space-separated.
SAM_CONFIG ?=
PROMPT ?= point
BOX_JITTER ?= 0
MULTIMASK ?= 0
BACKEND ?= $(if $(filter cuda,$(DEVICE)),cuda,cpu)
# what the kernels compute with: the math mode counts on a GPU
KERNELS = $(1)$(if $(filter cuda,$(1)),/$(CUDA_MATH))
PRED ?= $(RUN)/predictions
# Fine-tuning (trainer): TRAIN=off or ITERS=0 keeps the zero-shot row only.
TRAIN ?= on
ITERS ?= 1000
BATCH ?= 2
ACCUM ?= 1
LR ?= 0.005
# empty: the trainer's default (250, at most ITERS/10)
WARMUP ?=
LORA_RANK ?= 4
LORA_TARGETS ?= q,v
DECODER ?= full
# training prompts follow the evaluation's (point unless PROMPT=box)
TRAIN_PROMPT ?= $(if $(filter box,$(PROMPT)),box,point)
TRAIN_BOX_JITTER ?= 0
TRAIN_BACKEND ?= $(BACKEND)
CKPT_EVERY ?= 0
TRAINER_ARGS ?=
# Exemplar-guided synthesis (the paper's data half): the trainer learns from
# synthetic samples made from the exemplars. SYNTH=off is the ablation that
# trains on the exemplar slices themselves. SYNTHESIZERS=n synthesizer
# processes on this machine stream the samples to the trainer over ipc://
# (run/local starts and stops them); 0 synthesizes inside the trainer. The
# result is the same whatever n, so n is not a setting that reruns anything.
# SYNTH_ARGS: synthesis settings (synthesizer --help), e.g. --rotate 10.
SYNTH ?= on
SYNTHESIZERS ?= 2
SYNTH_ARGS ?=
SYNTHESIS := $(if $(filter off 0 no,$(SYNTH)),,on)
TRAINING := $(if $(filter off 0 no,$(TRAIN)),,$(if $(filter 0,$(ITERS)),,on))

# stamp NAME, CONTENT: $(RUN)/.settings/NAME holds CONTENT, touched only on change.
stamp = $(shell mkdir -p $(RUN)/.settings && f=$(RUN)/.settings/$(1) && \
          printf '%s\n' '$(2)' > $$f.new && { cmp -s $$f.new $$f && rm -f $$f.new || mv -f $$f.new $$f; })

LOADER_SETTINGS := $(DATA_KIND) in=$(DATA_DIR) seed=$(SEED) split=$(SPLIT_FRACTION) test=$(TEST_CASES) train=$(TRAIN_CASES) $(LOADER_ARGS)
SAMPLER_SETTINGS := fraction=$(FRACTION) count=$(COUNT) strategy=$(SAMPLER_STRATEGY) seed=$(SEED) $(SAMPLER_ARGS)
PREDICTOR_SETTINGS := sam=$(SAM) config=$(SAM_CONFIG) img_size=$(IMG_SIZE) prompt=$(PROMPT) jitter=$(BOX_JITTER) multimask=$(MULTIMASK) seed=$(SEED) backend=$(call KERNELS,$(BACKEND))
$(call stamp,loader,$(LOADER_SETTINGS))
$(call stamp,sampler,$(SAMPLER_SETTINGS))
TRAINER_SETTINGS := sam=$(SAM) config=$(SAM_CONFIG) img_size=$(IMG_SIZE) iters=$(ITERS) batch=$(BATCH) accum=$(ACCUM) lr=$(LR) warmup=$(WARMUP) rank=$(LORA_RANK) targets=$(LORA_TARGETS) decoder=$(DECODER) prompt=$(TRAIN_PROMPT) jitter=$(TRAIN_BOX_JITTER) seed=$(SEED) backend=$(call KERNELS,$(TRAIN_BACKEND)) $(TRAINER_ARGS) synth=$(if $(SYNTHESIS),on $(SYNTH_ARGS),off)
$(call stamp,predictor,$(PREDICTOR_SETTINGS))
$(call stamp,trainer,$(TRAINER_SETTINGS))

LOGS := $(RUN)/logs
DATA_OUT := $(RUN)/data
EXEMPLARS := $(RUN)/exemplars.h5
SCORES := $(RUN)/scores/scores.json
CKPT := $(RUN)/train/checkpoint.safetensors
ZS_SCORES := $(RUN)/scores-zeroshot/scores.json

.PHONY: pipeline data exemplars train zeroshot score-zeroshot predict score settings clean-run
ifeq ($(SAM),)
pipeline: exemplars
	@echo "pipeline: data and exemplars are in $(RUN); set SAM=<checkpoint> to fine-tune, predict and score"
else ifeq ($(TRAINING),)
pipeline: exemplars score-zeroshot
	@cat $(RUN)/scores-zeroshot/scores.md
else
pipeline: exemplars score
	@cat $(RUN)/scores/scores.md
endif

data: $(DATA_OUT)/index.json
exemplars: $(EXEMPLARS)
train: $(CKPT)
zeroshot: $(RUN)/zeroshot/index.json
score-zeroshot: $(ZS_SCORES)
predict: $(PRED)/index.json
score: $(SCORES)

PREDICT_ARGS = --data $(DATA_OUT) --prompt $(PROMPT) --box-jitter $(BOX_JITTER) --seed $(SEED) --backend $(BACKEND) \
  $(if $(IMG_SIZE),--img-size $(IMG_SIZE)) $(if $(filter 1,$(MULTIMASK)),--multimask) $(foreach c,$(SAM_CONFIG),--config $(c))

ifneq ($(TRAINING),)
# LoRA fine-tuning on the exemplars. A failed or interrupted run leaves no
# checkpoint behind (.DELETE_ON_ERROR); resuming one by hand:
# $(TRAINER) ... --out $(RUN)/train --resume.
STREAMING := $(if $(SYNTHESIS),$(filter-out 0,$(SYNTHESIZERS)))
TRAIN_LAUNCH := $(if $(STREAMING),$(RUN_LOCAL) train --synthesizers $(SYNTHESIZERS) --synth-args '$(SYNTH_ARGS)' \
  --socket $(abspath $(RUN))/synth.sock --logs $(LOGS) --synthesizer $(SYNTHESIZER) --)
TRAIN_SOURCE := $(if $(SYNTHESIS),$(if $(STREAMING),,--synth $(SYNTH_ARGS)))
$(CKPT): $(EXEMPLARS) $(RUN)/.settings/trainer $(TRAINER) $(SAM) $(if $(STREAMING),$(SYNTHESIZER) $(RUN_LOCAL))
	@mkdir -p $(LOGS)
	$(TRAIN_LAUNCH) $(TRAINER) $(TRAIN_SOURCE) --weights $(SAM) --data $(EXEMPLARS) --out $(RUN)/train --iters $(ITERS) --batch $(BATCH) \
	  --accum $(ACCUM) --lr $(LR) $(if $(WARMUP),--warmup $(WARMUP)) --lora-rank $(LORA_RANK) \
	  --lora-targets $(LORA_TARGETS) --decoder $(DECODER) --prompt $(TRAIN_PROMPT) \
	  $(if $(filter-out 0,$(TRAIN_BOX_JITTER)),--box-jitter $(TRAIN_BOX_JITTER)) --seed $(SEED) \
	  --backend $(TRAIN_BACKEND) --ckpt-every $(CKPT_EVERY) $(if $(IMG_SIZE),--img-size $(IMG_SIZE)) \
	  $(foreach c,$(SAM_CONFIG),--config $(c)) $(TRAINER_ARGS) 2>&1 | tee $(LOGS)/trainer.log
endif

# Zero-shot SAM with prompts from the ground truth: the baseline row of every
# experiment.
$(RUN)/zeroshot/index.json: $(DATA_OUT)/index.json $(RUN)/.settings/predictor $(PREDICTOR) $(SAM)
	@mkdir -p $(LOGS)
	$(PREDICTOR) --weights $(SAM) --out $(RUN)/zeroshot $(PREDICT_ARGS) 2>&1 | tee $(LOGS)/predictor-zeroshot.log

$(ZS_SCORES): $(DATA_OUT)/index.json $(SCORER) $(RUN)/zeroshot/index.json
	@mkdir -p $(LOGS)
	$(SCORER) --truth $(DATA_OUT)/test --pred $(RUN)/zeroshot --out $(RUN)/scores-zeroshot 2>&1 >/dev/null \
	  | tee $(LOGS)/scorer-zeroshot.log

# The fine-tuned model: the base weights with the trainer's checkpoint.
ifeq ($(TRAINING),)
$(RUN)/predictions/index.json $(CKPT):
	@echo "pipeline: training is off (TRAIN=$(TRAIN), ITERS=$(ITERS)): zero-shot only, in $(RUN)/zeroshot and $(RUN)/scores-zeroshot" >&2; exit 1
else
$(RUN)/predictions/index.json: $(DATA_OUT)/index.json $(RUN)/.settings/predictor $(PREDICTOR) $(SAM) $(CKPT)
	@mkdir -p $(LOGS)
	$(PREDICTOR) --weights $(SAM) --lora $(CKPT) --out $(RUN)/predictions $(PREDICT_ARGS) 2>&1 \
	  | tee $(LOGS)/predictor.log
endif

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

# Scores the predictions in $(PRED) (the fine-tuned predictor's, or any
# folder given), beside the zero-shot row when there is a model.
COMPARE := $(if $(SAM),$(ZS_SCORES))
$(SCORES): $(DATA_OUT)/index.json $(SCORER) $(if $(filter $(RUN)/predictions,$(PRED)),$(PRED)/index.json,$(wildcard $(PRED)/*)) $(COMPARE)
	@mkdir -p $(LOGS)
	$(SCORER) --truth $(DATA_OUT)/test --pred $(PRED) --out $(RUN)/scores $(if $(COMPARE),--compare zero-shot=$(COMPARE)) \
	  2>&1 >/dev/null | tee $(LOGS)/scorer.log

settings:
	@echo "DATA=$(DATA) RUN=$(RUN)"; for f in $(RUN)/.settings/*; do echo "$$(basename $$f): $$(cat $$f)"; done

clean-run:
	rm -rf $(RUN)

# The paper's comparisons, each a whole experiment in its own run folder
# under runs/<data>/ablations/, gathered into table.md and table.csv there:
#   zero-shot          SAM as given (TRAIN=off)
#   exemplars-<F>pct   fine-tuned on the exemplars alone (SYNTH=off), FRACTION
#   synthesis-<F>pct   exemplars plus synthesis (SYNTH=on), at FRACTION and at
#                      each of ABLATION_FRACTIONS
# Every other setting is shared. The rows reuse the zero-shot run's data and
# zero-shot predictions (symlinks, stamps copied with their times), so the
# loader and the zero-shot predictor run once.
ABLATION_FRACTIONS ?= 0.005 0.01 0.03
.PHONY: ablations
ablations:
	@[ -n "$(SAM)" ] || { echo "ablations: set SAM=<checkpoint> (the zero-shot row and every fine-tuning need one)" >&2; exit 2; }
	$(MAKE) --no-print-directory -f pipeline.mk score-zeroshot RUN=$(RUN)/zero-shot TRAIN=off
	@rows=("zero-shot|TRAIN=off|$(RUN)/zero-shot/scores-zeroshot/scores.json"); \
	for spec in "exemplars off $(FRACTION)" $(foreach f,$(sort $(FRACTION) $(ABLATION_FRACTIONS)),"synthesis on $(f)"); do \
	  set -- $$spec; name=$$1-$$(awk "BEGIN { print $$3 * 100 }")pct; dir=$(RUN)/$$name; \
	  mkdir -p $$dir/.settings || exit 1; \
	  for f in data zeroshot scores-zeroshot; do ln -sfn ../zero-shot/$$f $$dir/$$f || exit 1; done; \
	  cp -p $(RUN)/zero-shot/.settings/loader $(RUN)/zero-shot/.settings/predictor $$dir/.settings/ || exit 1; \
	  echo "ablations: $$name (SYNTH=$$2 FRACTION=$$3) in $$dir"; \
	  $(MAKE) --no-print-directory -f pipeline.mk pipeline RUN=$$dir SYNTH=$$2 FRACTION=$$3 || exit 1; \
	  rows+=("$$name|SYNTH=$$2 FRACTION=$$3|$$dir/scores/scores.json"); \
	done; \
	run/ablations-table --out $(RUN) "$${rows[@]}"
