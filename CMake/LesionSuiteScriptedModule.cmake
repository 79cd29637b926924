#-----------------------------------------------------------------------------
# lesion_suite_scripted_module(<name> [SCRIPTS <file>...] [RESOURCES <file>...])
#
# Builds one scripted module of the extension the way every LesionSuite module is built:
# slicerMacroBuildScriptedModule with Slicer's generic tests, and the unittest subclass of
# the module's main script registered as a ctest (the test is also available at runtime).
#
# Every module has <name>.py, Resources/Icons/<name>.png and Resources/UI/<name>.ui, so
# they are added here; SCRIPTS and RESOURCES list the module's other files, one by one
# (paths relative to the module folder). Testing/test_cmake_lists.py checks that every file
# of the folder is listed, and `python Testing/test_cmake_lists.py --write` rewrites the
# lists.
#
# A function, not a macro: the lists stay local to it. CMAKE_CURRENT_SOURCE_DIR is still the
# calling module's folder, which is what slicerMacroBuildScriptedModule resolves paths from.
function(lesion_suite_scripted_module name)
  cmake_parse_arguments(ARG "" "" "SCRIPTS;RESOURCES" ${ARGN})
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR
      "lesion_suite_scripted_module(${name}): unknown arguments \"${ARG_UNPARSED_ARGUMENTS}\";"
      " list files after SCRIPTS (.py) or RESOURCES (everything else)")
  endif()

  slicerMacroBuildScriptedModule(
    NAME ${name}
    SCRIPTS ${name}.py ${ARG_SCRIPTS}
    RESOURCES Resources/Icons/${name}.png Resources/UI/${name}.ui ${ARG_RESOURCES}
    WITH_GENERIC_TESTS
    )

  if(BUILD_TESTING)
    slicer_add_python_unittest(SCRIPT ${name}.py)
  endif()
endfunction()
