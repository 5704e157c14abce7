# Optional CUDA backend of the kernel (src/cuda/, docs/usage/gpu.md). Included by the top-level
# CMakeLists.txt after attnflow_kernel and by scripts/gpu-check/CMakeLists.txt.
#   ATTNFLOW_CUDA = AUTO (default): built when CMake finds a CUDA compiler; ON: required;
#   OFF: never. Without a CUDA compiler nothing here defines a target, so the CPU build is
#   unchanged (device = cuda then fails with a clear error, src/kernel/device.cpp).
# Targets when built: attnflow_cuda (linked into attnflow_kernel, which then defines
# ATTNFLOW_HAVE_CUDA for device.cpp), cuda_tests (GPU vs CPU, determinism, bad input) and
# cuda_bench (bench/cuda_bench.cu), cuda_library_bench (bench/cuda_library_bench.cpp: the
# public API after set_device(cuda)) and cuda_ensemble_bench (the phase diagram on the batched
# ensemble's GPU path), all driven by bench/cuda_compare.py.
get_filename_component(attnflow_root ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
set(ATTNFLOW_CUDA AUTO CACHE STRING "Build the CUDA backend: AUTO (when a CUDA compiler is found), ON or OFF")
set_property(CACHE ATTNFLOW_CUDA PROPERTY STRINGS AUTO ON OFF)
set(ATTNFLOW_HAVE_CUDA OFF)
if(NOT ATTNFLOW_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(ATTNFLOW_HAVE_CUDA ON)
  elseif(ATTNFLOW_CUDA STREQUAL "ON")
    message(FATAL_ERROR "ATTNFLOW_CUDA = ON, but no CUDA compiler was found (set CMAKE_CUDA_COMPILER or put nvcc on PATH)")
  endif()
endif()

if(ATTNFLOW_HAVE_CUDA)
  # Hopper (H100 / H200) unless told otherwise; "native" needs a GPU at configure time.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "attnflow: CUDA backend ON (${CMAKE_CUDA_COMPILER}, architectures ${CMAKE_CUDA_ARCHITECTURES})")

  # C++17 for CUDA (CMake < 3.27 knows no C++20 flag for nvcc; the .cu files need 17).
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  add_library(attnflow_cuda STATIC ${attnflow_root}/src/cuda/kernel_cuda.cu ${attnflow_root}/src/cuda/batch_cuda.cu)
  target_include_directories(attnflow_cuda PUBLIC $<BUILD_INTERFACE:${attnflow_root}/src/cuda>)
  # No fast math: the float64 path must agree with the CPU to 1e-12.
  target_compile_options(attnflow_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3>)
  # The static runtime loads the driver (libcuda) only when first used: programs and the Python
  # module still start on machines without a GPU or a CUDA runtime library.
  target_link_libraries(attnflow_cuda PUBLIC CUDA::cudart_static)
  set_target_properties(attnflow_cuda PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
  target_link_libraries(attnflow_kernel PUBLIC attnflow_cuda)
  target_compile_definitions(attnflow_kernel PRIVATE ATTNFLOW_HAVE_CUDA=1)
  # Installed and exported with the modules (cmake/install.cmake). A consumer of such an
  # install also needs find_dependency(CUDAToolkit) for CUDA::cudart_static.
  list(APPEND ATTNFLOW_MODULES attnflow_cuda)

  if(ATTNFLOW_BUILD_TESTS)
    find_package(GTest REQUIRED)
    add_executable(cuda_tests ${attnflow_root}/tests/cuda/cuda_test.cpp)
    target_link_libraries(cuda_tests PRIVATE attnflow_kernel GTest::gtest_main)
    # set_device followed end to end (attention, Sinkhorn, flows, ensembles): needs the modules
    # above the kernel (attnflow_flow, defined after this file in the top-level build and by
    # scripts/gpu-check/CMakeLists.txt there).
    add_executable(cuda_wiring_tests ${attnflow_root}/tests/cuda/device_wiring_test.cpp)
    target_link_libraries(cuda_wiring_tests PRIVATE attnflow_flow GTest::gtest_main)
    # Registered with CTest only where a GPU is visible at configure time (nvidia-smi lists
    # one): a build machine with nvcc and no GPU builds cuda_tests but does not run it.
    set(ATTNFLOW_CUDA_CTEST AUTO CACHE STRING "Register cuda_tests with CTest: AUTO (when nvidia-smi lists a GPU), ON or OFF")
    set(register_cuda_tests OFF)
    if(ATTNFLOW_CUDA_CTEST STREQUAL "ON")
      set(register_cuda_tests ON)
    elseif(ATTNFLOW_CUDA_CTEST STREQUAL "AUTO")
      execute_process(COMMAND nvidia-smi -L OUTPUT_VARIABLE gpu_list RESULT_VARIABLE gpu_rc
                      ERROR_QUIET)
      if(gpu_rc EQUAL 0 AND gpu_list MATCHES "GPU")
        set(register_cuda_tests ON)
      endif()
    endif()
    if(register_cuda_tests)
      enable_testing()
      add_test(NAME cuda_tests COMMAND cuda_tests)
      set_tests_properties(cuda_tests PROPERTIES TIMEOUT 600)
      add_test(NAME cuda_wiring_tests COMMAND cuda_wiring_tests)
      set_tests_properties(cuda_wiring_tests PROPERTIES TIMEOUT 600)
    else()
      message(STATUS "attnflow: cuda_tests and cuda_wiring_tests built but not registered with CTest (no GPU visible)")
    endif()
  endif()
  if(ATTNFLOW_BUILD_BENCH)
    add_executable(cuda_bench ${attnflow_root}/bench/cuda_bench.cu)
    target_link_libraries(cuda_bench PRIVATE attnflow_cuda)
    # The public API (attention, sinkhorn) after set_device(cuda): host copies included.
    add_executable(cuda_library_bench ${attnflow_root}/bench/cuda_library_bench.cpp)
    target_link_libraries(cuda_library_bench PRIVATE attnflow_flow)
    # The published phase diagram (one d) on the batched ensemble's GPU path.
    add_executable(cuda_ensemble_bench ${attnflow_root}/bench/cuda_ensemble_bench.cpp)
    target_link_libraries(cuda_ensemble_bench PRIVATE attnflow_flow)
  endif()
endif()
