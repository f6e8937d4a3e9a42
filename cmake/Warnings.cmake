# Warning flags for everything sendpipe builds (core, plugins, tests).
set(SP_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 -Wvla
    -Wno-unused-parameter -Wmissing-prototypes)
if(SP_WERROR)
  list(APPEND SP_WARNINGS -Werror)
endif()
add_compile_options(${SP_WARNINGS})
add_compile_definitions(_GNU_SOURCE)
