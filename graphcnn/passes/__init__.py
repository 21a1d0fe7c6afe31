"""Graph -> Graph passes and the pipeline of each opt level."""
from graphcnn.passes.pipeline import PIPELINES, run_pipeline

__all__ = ["PIPELINES", "run_pipeline"]
