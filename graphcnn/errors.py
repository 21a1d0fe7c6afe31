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
