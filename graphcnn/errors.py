"""Errors that speak the user's language: the op, the shapes, the user's file:line."""
from __future__ import annotations


class GraphBuildError(ValueError):
    """A model that cannot be built: bad shapes or attributes, found at build time."""


class ShapeError(ValueError):
    """Raised by an op's shape or attribute rule; the graph turns it into a GraphBuildError
    that adds the op name, the input shapes and the user's source location."""


class LimitError(GraphBuildError):
    """A tensor larger than a configured limit (graphcnn.limits: GRAPHCNN_MAX_TENSOR_BYTES,
    GRAPHCNN_MAX_CONSTANT_BYTES), refused before it is allocated. The message names the
    tensor, its shape and byte size, and the setting that raises the limit."""


class ArtifactError(ValueError):
    """A compiled artifact (graphcnn compile -o / Executable.save) that cannot be loaded:
    not an artifact, truncated, corrupted, tampered with, of a newer format, incomplete."""


class VerificationError(RuntimeError):
    """The IR broke one of its invariants (a bug in a pass, not in the user's model)."""


class CheckpointError(ValueError):
    """A training checkpoint that cannot be loaded: not a checkpoint, truncated, corrupted,
    of a newer format, or with contents that do not fit the model, optimizer or schedule
    it is loaded into. The message names the file and the field."""


class CheckpointInUseError(CheckpointError):
    """Another live process holds the checkpoint path: two trainers must not write one
    checkpoint. The message names the path and the other process."""


class ArgumentError(GraphBuildError):
    """An argument outside its domain (``kernel_size=0``, ``p=1.5``), raised where it is
    given (a layer's constructor, ``gc.Input``, ``compile``, ``Trainer.fit``); the message
    names the argument and the value, as PyTorch's do. A GraphBuildError (a ValueError)."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of the wrong type (a float or a bool where a count is expected). Both
    a ValueError and a TypeError, so either ``except`` catches it."""
