# Turn text files into C arrays at build time: cmake -DOUT=x.c -DINPUTS="name=path;..." -P embed.cmake
# Each becomes `const char name[] = { ..., 0 };`, so the binary needs no files
# at run time and the files in the repository stay the single source.
set(content "/* Generated from the files named below by cmake/embed.cmake; do not edit. */\n")
foreach(pair IN LISTS INPUTS)
  string(REPLACE "=" ";" kv "${pair}")
  list(GET kv 0 name)
  list(GET kv 1 path)
  file(READ "${path}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND content "/* ${path} */\nconst char ${name}[] = {${bytes}0};\n")
endforeach()
file(WRITE "${OUT}.tmp" "${content}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
