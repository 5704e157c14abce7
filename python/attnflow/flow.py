"""attnflow.flow: attention as a dynamical system: flows of tokens (Flow, FlowOptions, heads,
schemes), integrators, ensembles and observables.

The C++ module attnflow_flow (include/attnflow/flow/flow.hpp, integrate.hpp, scheme.hpp,
ensemble.hpp, observe.hpp).
"""
from ._attnflow import (  # noqa: F401
    Ensemble, EnsembleStats, FieldKind, Flow, FlowDiagnostics, FlowHead, FlowOptions, FlowState,
    IntegratorOptions, IntegratorState, Interaction, Method, Observables, ObservableStats,
    ObserveOptions, Ode, Scheme, SchemeOptions, VlasovOptions, advance, log_energy, make_heads,
    normalize_rows, observable_names, observable_values, observe, parse_field_kind,
    parse_interaction, parse_method, parse_scheme, project_tangent, quantile, scheme_positions,
    scheme_rates, scheme_retract, scheme_state, summarize,
)

__all__ = ["Ensemble", "EnsembleStats", "FieldKind", "Flow", "FlowDiagnostics", "FlowHead",
           "FlowOptions", "FlowState", "IntegratorOptions", "IntegratorState", "Interaction",
           "Method", "Observables", "ObservableStats", "ObserveOptions", "Ode", "Scheme",
           "SchemeOptions", "VlasovOptions", "advance", "log_energy", "make_heads",
           "normalize_rows", "observable_names", "observable_values", "observe",
           "parse_field_kind", "parse_interaction", "parse_method", "parse_scheme",
           "project_tangent", "quantile", "scheme_positions", "scheme_rates", "scheme_retract",
           "scheme_state", "summarize"]
