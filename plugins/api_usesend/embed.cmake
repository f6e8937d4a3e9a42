# SPDX-License-Identifier: Apache-2.0
# cmake -DIN=openapi.json -DOUT=openapi_json.c -P embed.cmake
# Writes IN as a NUL-terminated byte array so the plugin serves the document
# without reading files at run time.
file(READ "${IN}" _hex HEX)
string(LENGTH "${_hex}" _n)
math(EXPR _len "${_n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       _bytes "${_bytes}")
file(WRITE "${OUT}.tmp" "/* SPDX-License-Identifier: Apache-2.0 */
/* Generated from openapi.json by embed.cmake: do not edit. */
#include <stddef.h>
extern const unsigned char api_openapi_json[];
extern const size_t api_openapi_json_len;
const unsigned char api_openapi_json[] = {
${_bytes}0x00};
const size_t api_openapi_json_len = ${_len};
")
file(RENAME "${OUT}.tmp" "${OUT}")
