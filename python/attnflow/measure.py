"""attnflow.measure: measures: weighted point clouds (Measure), random and equiangular samples,
weights.

The C++ module attnflow_measure (include/attnflow/measure/measure.hpp, sample.hpp, rng.hpp).
"""
from ._attnflow import (  # noqa: F401
    Measure, Rng, equiangular, normalized_weights, sample_gaussian, sample_sphere,
)

__all__ = ["Measure", "Rng", "equiangular", "normalized_weights", "sample_gaussian",
           "sample_sphere"]
