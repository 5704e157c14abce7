# Capability modules (src/<name>/*.cpp -> attnflow_<name>). Order = layering.
# Add a line when a new module directory appears; a module may depend only on modules above it.

# ot: LEMON's network simplex (Debian liblemon-dev) for exact OT; its headers are in the
# system include path, liblemon.a is linked for completeness (the simplex is header-only).
find_package(lemon REQUIRED)
attnflow_module(ot DEPS attnflow_attention ${LEMON_LIBRARIES})
attnflow_module(flow DEPS attnflow_attention)
attnflow_module(theory DEPS attnflow_flow)
attnflow_module(icl DEPS attnflow_kernel attnflow_flow)
attnflow_module(model DEPS attnflow_attention attnflow_ot attnflow_flow)
attnflow_module(run DEPS attnflow_flow attnflow_theory attnflow_icl attnflow_model attnflow_ot attnflow_io)
