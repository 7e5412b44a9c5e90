# The recipe of pipelines/demo-sam.safetensors, the small SAM that
# `make pipeline` uses by default (SAM=demo): `make demo-checkpoint`.
# fewsam pretrains it itself, from a random initialisation, on generic
# synthetic shapes (stages/shapes: ellipses, polygons, rectangles, blobs,
# rings over textured backgrounds), never on the phantom or any anatomy, so
# the demo's zero-shot row is an honest one. Every parameter is trained
# (--encoder full), with point and box prompts (--prompt mixed). The trainer
# records the command, the settings, the seed and the steps in the file's
# __metadata__. Intermediate files go to $(WORK); the result replaces
# $(DEMO_SAM_OUT) only when training finishes.

ifneq ($(filter pipeline.mk,$(notdir $(firstword $(MAKEFILE_LIST)))),)
$(error pipelines/demo-sam.mk is the demo checkpoint's recipe (make demo-checkpoint), not a data set)
endif

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DELETE_ON_ERROR:

BIN ?= build/bin
SHAPES ?= $(BIN)/shapes
TRAINER ?= $(BIN)/trainer
WORK ?= build/demo-sam
DEMO_SAM_OUT ?= pipelines/demo-sam.safetensors
SEED ?= 0

# The model: ViT-style encoder of 4 blocks (2 windowed, 2 global) on a
# 12x12 token grid, SAM's prompt encoder and two-way decoder at width 64.
IMG_SIZE ?= 96
CONFIG ?= img_size=$(IMG_SIZE) patch_size=8 embed_dim=64 depth=4 num_heads=4 window_size=4 global_attn=1,3 \
  out_chans=64 dec_depth=2 dec_mlp_dim=256 dec_heads=4 num_multimask=3 iou_hidden=64 mask_in_chans=16
# The data and the schedule.
SHAPES_COUNT ?= 4000
MAX_OBJECTS ?= 6
ITERS ?= 4000
BATCH ?= 8
LR ?= 0.001
WARMUP ?= 200
CLIP ?= 1

SHAPES_H5 := $(WORK)/shapes-$(IMG_SIZE)-$(SHAPES_COUNT)-$(MAX_OBJECTS)-$(SEED).h5
NOTE := make demo-checkpoint (pipelines/demo-sam.mk): pretrained from a random initialisation (seed $(SEED)) on \
  $(SHAPES_COUNT) synthetic-shape slices (shapes --count $(SHAPES_COUNT) --size $(IMG_SIZE) --max-objects \
  $(MAX_OBJECTS) --seed $(SEED)), every parameter trained, point and box prompts, $(ITERS) steps of batch $(BATCH)

.PHONY: demo-checkpoint
demo-checkpoint: $(SHAPES_H5)
	@mkdir -p $(WORK)
	$(TRAINER) --init random $(foreach c,$(CONFIG),--config $(c)) --encoder full --decoder full --prompt mixed \
	  --data $(SHAPES_H5) --out $(WORK)/train --iters $(ITERS) --batch $(BATCH) --lr $(LR) --warmup $(WARMUP) \
	  --clip $(CLIP) --seed $(SEED) --note "$(strip $(NOTE))" --export $(WORK)/demo-sam.safetensors \
	  2>&1 | tee $(WORK)/trainer.log
	mv -f $(WORK)/demo-sam.safetensors $(DEMO_SAM_OUT)
	@echo "demo-checkpoint: wrote $(DEMO_SAM_OUT) ($$(du -h $(DEMO_SAM_OUT) | cut -f1))"

$(SHAPES_H5):
	@mkdir -p $(WORK)
	$(SHAPES) --out $@ --count $(SHAPES_COUNT) --size $(IMG_SIZE) --max-objects $(MAX_OBJECTS) --seed $(SEED) \
	  --preview $(WORK)/shapes-preview.png
