// The version of ttq: the one place it is written. CMake's project(VERSION) reads it from here.
#pragma once

#define TTQ_VERSION_MAJOR 0
#define TTQ_VERSION_MINOR 2
#define TTQ_VERSION_PATCH 0

namespace ttq {
inline constexpr int kVersionMajor = TTQ_VERSION_MAJOR;
inline constexpr int kVersionMinor = TTQ_VERSION_MINOR;
inline constexpr int kVersionPatch = TTQ_VERSION_PATCH;
}  // namespace ttq
