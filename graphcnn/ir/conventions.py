"""Names with a meaning shared by the layers that build graphs and the runtime that feeds
them: defined here, below both, so that the runtime needs nothing from the DSL."""
from __future__ import annotations

# The int64 scalar input of a training graph with dropout. The DSL's mode rules
# (graphcnn/mode_rules.py) add it; an Executable feeds it a fresh seed at every call
# unless the caller gives one, and leaves it out of `input_names`.
DROPOUT_SEED_INPUT = "dropout_seed"
