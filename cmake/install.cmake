# make install: library modules, headers, CMake package config (find_package(attnflow)), CLI.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/attnflow DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS attnflow RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ${ATTNFLOW_MODULES} attnflow_core attnflow_options EXPORT attnflowTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT attnflowTargets NAMESPACE attnflow:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/attnflow)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/attnflowConfig.cmake.in
  ${PROJECT_BINARY_DIR}/attnflowConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/attnflow)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/attnflowConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/attnflowConfig.cmake ${PROJECT_BINARY_DIR}/attnflowConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/attnflow)
