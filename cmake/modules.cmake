# Capability modules (src/<name>/*.cpp -> attnflow_<name>). Order = layering.
# Add a line when a new module directory appears; a module may depend only on modules above it.

attnflow_module(flow DEPS attnflow_attention)
attnflow_module(theory DEPS attnflow_flow)
attnflow_module(icl DEPS attnflow_kernel attnflow_flow)
attnflow_module(model DEPS attnflow_attention attnflow_ot attnflow_flow)
attnflow_module(run DEPS attnflow_flow attnflow_theory attnflow_icl attnflow_model attnflow_ot attnflow_io)
