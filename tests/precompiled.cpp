// The owner of the test programs' precompiled header (tests/CMakeLists.txt): compiled with their
// settings, so that they can share it.
