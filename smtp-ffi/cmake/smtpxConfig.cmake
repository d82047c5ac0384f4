# CMake package file for libsmtpx, installed by `make install` as
# PREFIX/lib/cmake/smtpx/smtpxConfig.cmake. Relocatable: paths are found from this file.
#
#   find_package(smtpx 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE smtpx::smtpx)          # the shared library
#   target_link_libraries(app PRIVATE smtpx::smtpx_static)   # libsmtpx.a, no .so needed
#
# With SMTPX_STATIC set to ON before find_package, smtpx::smtpx links statically too.

get_filename_component(_smtpx_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET smtpx::smtpx_shared)
  add_library(smtpx::smtpx_shared SHARED IMPORTED)
  set_target_properties(smtpx::smtpx_shared PROPERTIES
    IMPORTED_LOCATION "${_smtpx_prefix}/lib/libsmtpx.so.@VERSION@"
    IMPORTED_SONAME "libsmtpx.so.@VERSION@"
    INTERFACE_INCLUDE_DIRECTORIES "${_smtpx_prefix}/include")

  add_library(smtpx::smtpx_static STATIC IMPORTED)
  set_target_properties(smtpx::smtpx_static PROPERTIES
    IMPORTED_LOCATION "${_smtpx_prefix}/lib/libsmtpx.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "${_smtpx_prefix}/include"
    # What a program linking the Rust static library also needs.
    INTERFACE_LINK_LIBRARIES "@STATIC_LIBS_CMAKE@")

  add_library(smtpx::smtpx INTERFACE IMPORTED)
  if(SMTPX_STATIC)
    set_target_properties(smtpx::smtpx PROPERTIES INTERFACE_LINK_LIBRARIES smtpx::smtpx_static)
  else()
    set_target_properties(smtpx::smtpx PROPERTIES INTERFACE_LINK_LIBRARIES smtpx::smtpx_shared)
  endif()
endif()

set(smtpx_VERSION "@VERSION@")
set(smtpx_FOUND TRUE)
unset(_smtpx_prefix)
