# cmake -DSRC=<plotly-gl3d.min.js> -DDST=<dir> -P copy_library.cmake: copies the plotting library
# into DST when npm ci has installed it, else says how to install it (not an error: only
# `attnflow view` needs it, and it names the missing file).
if(EXISTS "${SRC}")
  file(COPY "${SRC}" DESTINATION "${DST}")
else()
  message(STATUS "viewer: ${SRC} not installed: run scripts/install-deps.sh (npm ci in viewer/) "
                 "before attnflow view")
endif()
