# DATA=transunet: Synapse as TransUNet preprocessed it
# (TRANSUNET_DIR/train_npz/caseNNNN_sliceNNN.npz, test_vol_h5/caseNNNN.npy.h5).
# The split is the layout's own.
DATA_KIND := transunet
TRANSUNET_DIR ?= data/Synapse
DATA_DIR := $(TRANSUNET_DIR)
FRACTION ?= 0.01
SAMPLER_STRATEGY ?= stratified
