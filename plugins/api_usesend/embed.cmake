# SPDX-License-Identifier: Apache-2.0
# cmake -DIN=openapi.json -DFRAGS=openapi.d -DOUT=openapi_json.c -P embed.cmake
# Merges the "paths", "tags" and "components.schemas" of every FRAGS/*.json
# into IN (one file per area, so areas are edited independently), checks the
# result is JSON, and writes it as a NUL-terminated byte array so the plugin
# serves the document without reading files at run time.
file(READ "${IN}" _doc)
file(GLOB _frags "${FRAGS}/*.json")
list(SORT _frags)
foreach(_f IN LISTS _frags)
  file(READ "${_f}" _frag)
  foreach(_section paths components.schemas)
    string(REPLACE "." ";" _path "${_section}")
    string(JSON _n ERROR_VARIABLE _err LENGTH "${_frag}" ${_path})
    if(_err)
      continue()
    endif()
    if(_n EQUAL 0)
      continue()
    endif()
    math(EXPR _last "${_n} - 1")
    foreach(_i RANGE ${_last})
      string(JSON _k MEMBER "${_frag}" ${_path} ${_i})
      string(JSON _v GET "${_frag}" ${_path} "${_k}")
      string(JSON _doc SET "${_doc}" ${_path} "${_k}" "${_v}")
    endforeach()
  endforeach()
  string(JSON _nt ERROR_VARIABLE _err LENGTH "${_frag}" tags)
  if(NOT _err AND _nt GREATER 0)
    math(EXPR _last "${_nt} - 1")
    foreach(_i RANGE ${_last})
      string(JSON _t GET "${_frag}" tags ${_i})
      string(JSON _len LENGTH "${_doc}" tags)
      string(JSON _doc SET "${_doc}" tags ${_len} "${_t}")
    endforeach()
  endif()
endforeach()
string(HEX "${_doc}" _hex)
string(LENGTH "${_hex}" _n)
math(EXPR _len "${_n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       _bytes "${_bytes}")
file(WRITE "${OUT}.tmp" "/* SPDX-License-Identifier: Apache-2.0 */
/* Generated from openapi.json and openapi.d/ by embed.cmake: do not edit. */
#include <stddef.h>
extern const unsigned char api_openapi_json[];
extern const size_t api_openapi_json_len;
const unsigned char api_openapi_json[] = {
${_bytes}0x00};
const size_t api_openapi_json_len = ${_len};
")
file(RENAME "${OUT}.tmp" "${OUT}")
