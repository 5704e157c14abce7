# Capability modules (src/<name>/*.cpp -> attnflow_<name>). Order = layering.
# Add a line when a new module directory appears; a module may depend only on modules above it.

# Each capability module is added once its directory has sources.
function(attnflow_optional_module name)
  file(GLOB srcs ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
  if(srcs)
    attnflow_module(${name} ${ARGN})
    set(ATTNFLOW_MODULES ${ATTNFLOW_MODULES} PARENT_SCOPE)
  endif()
endfunction()

attnflow_optional_module(flow DEPS attnflow_attention)
attnflow_optional_module(theory DEPS attnflow_flow)
attnflow_optional_module(icl DEPS attnflow_kernel attnflow_flow)
attnflow_optional_module(model DEPS attnflow_attention attnflow_ot attnflow_flow)
attnflow_optional_module(run DEPS attnflow_flow attnflow_theory attnflow_icl attnflow_model attnflow_ot attnflow_io)
