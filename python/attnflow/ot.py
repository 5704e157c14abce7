"""attnflow.ot: optimal transport: Sinkhorn (entropic OT) and its divergence, exact OT,
transport plans, barycentric maps, the POT-shaped calls (emd, emd2, sinkhorn2) and
envelope-theorem gradients.

The C++ module attnflow_ot (include/attnflow/ot/ot.hpp, sinkhorn.hpp, divergence.hpp,
exact_ot.hpp, ot_gradient.hpp).
"""
from ._attnflow import (  # noqa: F401
    CostType, ExactOtResult, PlanEntry, SinkhornDivergence, SinkhornOptions, SinkhornResult,
    TransportCost, barycentric_map, emd, emd2, exact_ot, kExactMaxPairs, kMaxPlanEntries,
    ot_cost_gradient, parse_cost_type, sinkhorn, sinkhorn2, sinkhorn_divergence,
    sinkhorn_divergence_gradient, transport_plan, wasserstein,
)

__all__ = ["CostType", "ExactOtResult", "PlanEntry", "SinkhornDivergence", "SinkhornOptions",
           "SinkhornResult", "TransportCost", "barycentric_map", "emd", "emd2", "exact_ot",
           "kExactMaxPairs", "kMaxPlanEntries", "ot_cost_gradient", "parse_cost_type",
           "sinkhorn", "sinkhorn2", "sinkhorn_divergence", "sinkhorn_divergence_gradient",
           "transport_plan", "wasserstein"]
