# SP_SANITIZE="address;undefined" (or "thread") instruments core, plugins and
# tests alike; plugins must be built with the same flags as the core.
set(SP_SANITIZER_FLAGS "")
if(SP_SANITIZE)
  string(REPLACE ";" "," _sp_san "${SP_SANITIZE}")
  set(SP_SANITIZER_FLAGS -fsanitize=${_sp_san} -fno-omit-frame-pointer)
  if("${SP_SANITIZE}" MATCHES "undefined")
    list(APPEND SP_SANITIZER_FLAGS -fno-sanitize-recover=undefined)
  endif()
  add_compile_options(${SP_SANITIZER_FLAGS})
  add_link_options(${SP_SANITIZER_FLAGS})
endif()
