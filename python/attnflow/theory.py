"""attnflow.theory: theory: cluster predictions, equiangular dynamics, long-context limits,
interaction energies.

The C++ module attnflow_theory (include/attnflow/theory/cluster_theory.hpp, equiangular.hpp,
long_context.hpp).
"""
from ._attnflow import (  # noqa: F401
    ClusterLayout, ClusterPrediction, DecayKind, DecayLaw, EquiangularOptions, EquiangularRates,
    EquiangularScheme, EquiangularSolution, LongContextResult, TheoryModel, bessel_ratio,
    cluster_configuration, decay_variable, equiangular_rates, interaction_energy,
    kLongContextCriticalRtol, linearized_law, log_interaction_energy, long_context,
    long_context_cosine, long_context_direct, long_context_gamma_c, long_context_limit,
    long_context_regime, mode_growth_rate, parse_cluster_layout, parse_equiangular_scheme,
    parse_theory_model, predict_clusters, solve_equiangular,
)

__all__ = ["ClusterLayout", "ClusterPrediction", "DecayKind", "DecayLaw", "EquiangularOptions",
           "EquiangularRates", "EquiangularScheme", "EquiangularSolution", "LongContextResult",
           "TheoryModel", "bessel_ratio", "cluster_configuration", "decay_variable",
           "equiangular_rates", "interaction_energy", "kLongContextCriticalRtol",
           "linearized_law", "log_interaction_energy", "long_context", "long_context_cosine",
           "long_context_direct", "long_context_gamma_c", "long_context_limit",
           "long_context_regime", "mode_growth_rate", "parse_cluster_layout",
           "parse_equiangular_scheme", "parse_theory_model", "predict_clusters",
           "solve_equiangular"]
