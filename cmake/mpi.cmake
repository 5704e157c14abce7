# Optional MPI layer (src/dist/, include/attnflow/dist/dist.hpp, docs/usage/mpi.md). Included by the
# top-level CMakeLists.txt after the CLI target.
#   ATTNFLOW_MPI = AUTO (default): built when find_package(MPI COMPONENTS CXX) succeeds; ON:
#   required; OFF: never. Without MPI nothing here defines a target and the CLI is unchanged.
# When built: attnflow_dist (linked into the CLI only, never into the Python module), the CLI
# compiled with ATTNFLOW_HAVE_MPI (cli/distributed.cpp), and the tests of tests/mpi/ (mpirun
# -np 2 and -np 3 against one process, byte for byte) registered with CTest.
get_filename_component(attnflow_root ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
set(ATTNFLOW_MPI AUTO CACHE STRING "Build the MPI layer: AUTO (when MPI is found), ON or OFF")
set_property(CACHE ATTNFLOW_MPI PROPERTY STRINGS AUTO ON OFF)
set(ATTNFLOW_HAVE_MPI OFF)
if(NOT ATTNFLOW_MPI STREQUAL "OFF")
  if(ATTNFLOW_MPI STREQUAL "ON")
    find_package(MPI REQUIRED COMPONENTS CXX)
  else()
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(MPI_CXX_FOUND)
    set(ATTNFLOW_HAVE_MPI ON)
  endif()
endif()

if(ATTNFLOW_HAVE_MPI)
  message(STATUS "attnflow: MPI layer ON (MPI ${MPI_CXX_VERSION}, ${MPIEXEC_EXECUTABLE})")
  add_library(attnflow_dist STATIC ${attnflow_root}/src/dist/world.cpp)
  target_include_directories(attnflow_dist PUBLIC $<BUILD_INTERFACE:${attnflow_root}/include>)
  target_link_libraries(attnflow_dist PUBLIC attnflow_options Eigen3::Eigen MPI::MPI_CXX)
  target_link_libraries(attnflow PRIVATE attnflow_dist)
  target_compile_definitions(attnflow PRIVATE ATTNFLOW_HAVE_MPI=1)
  # Not under the sanitizers (make sanitize): OpenMPI's own allocations at exit read as leaks
  # to LeakSanitizer, which would fail every mpirun check for reasons outside attnflow.
  if(ATTNFLOW_BUILD_TESTS AND NOT ATTNFLOW_SANITIZE)
    enable_testing()
    # One CTest entry per group of checks; each runs mpirun itself (tests/mpi/run_mpi_tests.py),
    # with the Debian Python (NumPy) like the pytest entries of tests/CMakeLists.txt.
    foreach(group sweep ensemble attention ot resume failure split)
      add_test(NAME mpi.${group}
        COMMAND /usr/bin/python3 ${attnflow_root}/tests/mpi/run_mpi_tests.py ${group})
      set_tests_properties(mpi.${group} PROPERTIES TIMEOUT 300 ENVIRONMENT
        "OMP_WAIT_POLICY=PASSIVE;ATTNFLOW_CLI=$<TARGET_FILE:attnflow>;MPIEXEC=${MPIEXEC_EXECUTABLE};ATTNFLOW_SOURCE_DIR=${attnflow_root}")
    endforeach()
  endif()
elseif(ATTNFLOW_MPI STREQUAL "AUTO")
  message(STATUS "attnflow: MPI layer OFF (no MPI found; install libopenmpi-dev)")
endif()
