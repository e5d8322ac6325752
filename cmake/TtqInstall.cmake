# install() rules and the exported package: find_package(ttq CONFIG) gives ttq::ttq.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS ttq EXPORT ttqTargets)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ttq DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp" PATTERN "*.cuh")
install(EXPORT ttqTargets NAMESPACE ttq:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ttq)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ttqConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ttqConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ttq)
# Header-only: the package is usable from any architecture.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ttqConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/ttqConfig.cmake ${PROJECT_BINARY_DIR}/ttqConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ttq)
