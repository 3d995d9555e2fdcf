"""FBNet differentiable architecture search, retraining, baselines and the search pipeline.

- :class:`Supernet`: a search space with one :class:`~hwnas.layers.MixedLayer` per layer.
- :class:`FBNetSearch` / :class:`SearchConfig`: the search loop (checkpointed, resumable).
- Objectives: :func:`make_objective` (``fbnet``, ``additive``, ``proxyless``, ``hard_target``, ``absolute``).
- :func:`train_model`, :func:`export_model`: retraining from scratch and export.
- :func:`search_pipeline`: everything ``hwnas search`` does, in one call.
"""

from .baselines import mobilenet_v2_style, scale_baseline_to_latency
from .dnas import FBNetSearch, SearchConfig, SearchResult, mobilenet_v2_style_choices, read_history
from .objectives import (
    OBJECTIVES,
    AdditiveObjective,
    FBNetObjective,
    HardTargetObjective,
    Objective,
    ProxylessObjective,
    make_objective,
)
from .pipeline import PipelineConfig, search_pipeline, train_pipeline
from .retrain import TrainConfig, evaluate, export_model, measure_model_latency, train_model
from .supernet import Supernet
from .tables import cached_table, default_cache_dir, table_cache_path

__all__ = [
    "AdditiveObjective",
    "FBNetObjective",
    "FBNetSearch",
    "HardTargetObjective",
    "OBJECTIVES",
    "Objective",
    "PipelineConfig",
    "ProxylessObjective",
    "SearchConfig",
    "SearchResult",
    "Supernet",
    "TrainConfig",
    "cached_table",
    "default_cache_dir",
    "evaluate",
    "export_model",
    "make_objective",
    "measure_model_latency",
    "mobilenet_v2_style",
    "mobilenet_v2_style_choices",
    "read_history",
    "scale_baseline_to_latency",
    "search_pipeline",
    "table_cache_path",
    "train_model",
    "train_pipeline",
]
