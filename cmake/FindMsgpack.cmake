# msgpack-c's pkg-config name is "msgpack" in Debian 12 (4.0) and "msgpack-c"
# upstream from 6.0 on: accept either, behind one imported target.
pkg_check_modules(MSGPACK IMPORTED_TARGET msgpack-c)
if(NOT MSGPACK_FOUND)
  pkg_check_modules(MSGPACK REQUIRED IMPORTED_TARGET msgpack)
endif()
if(NOT TARGET sp::msgpack)
  add_library(sp::msgpack INTERFACE IMPORTED)
  target_link_libraries(sp::msgpack INTERFACE PkgConfig::MSGPACK)
endif()
