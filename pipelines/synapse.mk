# DATA=synapse: Synapse multi-organ CT (BTCV), raw layout
# SYNAPSE_DIR/RawData/Training/{img,label}/. 8 organs in TransUNet's
# numbering, HU window [-125, 275], TransUNet's 12 test cases when present.
DATA_KIND := synapse
SYNAPSE_DIR ?= ../shared/data/synapse
DATA_DIR := $(SYNAPSE_DIR)
FRACTION ?= 0.01
SAMPLER_STRATEGY ?= stratified
