# DATA=brats: BraTS FLAIR, whole tumour. BRATS_DIR holds one folder per case
# (<case>/<case>_flair.nii.gz + <case>_seg.nii.gz, or the 2023 -t2f/-seg
# names). No standard split: a seeded one (SPLIT_FRACTION of the cases for
# testing) unless TEST_CASES / TRAIN_CASES name them.
DATA_KIND := brats
BRATS_DIR ?= ../shared/data/brats
DATA_DIR := $(BRATS_DIR)
BRATS_LABELS ?= whole
LOADER_ARGS ?= --labels $(BRATS_LABELS)
FRACTION ?= 0.01
SAMPLER_STRATEGY ?= foreground
