// recurrent — version.hpp
#pragma once

#define RECURRENT_VERSION_MAJOR 0
#define RECURRENT_VERSION_MINOR 5
#define RECURRENT_VERSION_PATCH 0
