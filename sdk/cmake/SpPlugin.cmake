# sp_add_plugin(NAME <name> SOURCES <files...> [LIBS <targets...>] [NO_INSTALL])
#
# Builds a sendpipe plugin: a MODULE library named <name>.so (no "lib"
# prefix), hidden visibility so only the descriptor is exported, compiled
# against the SDK headers only. Outside sanitizer builds it links with
# -z defs, so a plugin that calls into the core by symbol fails to link.
# Used in the sendpipe tree and, installed with the SDK, by plugins built
# out of tree (find_package(SendpipeSDK)).
function(sp_add_plugin)
  cmake_parse_arguments(SPP "NO_INSTALL" "NAME" "SOURCES;LIBS" ${ARGN})
  if(NOT SPP_NAME OR NOT SPP_SOURCES)
    message(FATAL_ERROR "sp_add_plugin: NAME and SOURCES are required")
  endif()
  string(TOUPPER "SP_PLUGIN_${SPP_NAME}" _opt)
  option(${_opt} "Build the ${SPP_NAME} plugin" ON)
  if(NOT ${_opt})
    return()
  endif()
  add_library(${SPP_NAME} MODULE ${SPP_SOURCES})
  set_target_properties(${SPP_NAME} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(DEFINED SP_PLUGIN_OUTPUT_DIR)
    set_target_properties(${SPP_NAME} PROPERTIES
      LIBRARY_OUTPUT_DIRECTORY ${SP_PLUGIN_OUTPUT_DIR})
  endif()
  target_link_libraries(${SPP_NAME} PRIVATE sp::sdk ${SPP_LIBS})
  if(NOT SP_SANITIZE AND NOT CMAKE_C_FLAGS MATCHES "-fsanitize")
    target_link_options(${SPP_NAME} PRIVATE "LINKER:-z,defs")
  endif()
  if(NOT SPP_NO_INSTALL AND DEFINED SP_INSTALL_PLUGIN_DIR)
    install(TARGETS ${SPP_NAME} LIBRARY DESTINATION ${SP_INSTALL_PLUGIN_DIR})
  endif()
endfunction()
