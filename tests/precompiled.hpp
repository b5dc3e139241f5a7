// The headers that nearly every unit of the test programs includes: parsed once per build, into a
// precompiled header that tests/CMakeLists.txt puts before each unit of those programs.
#pragma once

#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <iostream>
#include <limits>
