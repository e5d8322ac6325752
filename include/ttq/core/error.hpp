// Typed errors for bad input at ttq's API boundaries.
//
// Every public entry point validates what it is given (shapes, finiteness, ranges) and throws
// one of these, naming the argument, what was expected and what came. Hot inner loops never
// check: their callers have. See docs/numerics.md ("Error policy").
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace ttq {

/// Base of every error ttq throws, bad input and CUDA runtime failures (cuda::CudaError, in
/// backend/cuda/common.cuh) alike. `argument()` names the offending argument ("" if none).
class Error : public std::invalid_argument {
 public:
  Error(std::string argument, const std::string& message)
      : std::invalid_argument("ttq: " + (argument.empty() ? std::string() : "argument '" + argument + "': ") + message),
        argument_(std::move(argument)) {}
  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

/// A matrix or vector has the wrong shape for the operation (or is empty where data is needed).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A value is NaN or infinite where a finite number is required.
class NonFiniteError : public Error {
 public:
  using Error::Error;
};

/// A scalar parameter is outside its documented range (bits, group size, rank, p, alpha, ...).
class RangeError : public Error {
 public:
  using Error::Error;
};

/// The operation is not valid in the object's current state (e.g. a frozen baseline).
class StateError : public Error {
 public:
  using Error::Error;
};

namespace detail {

inline std::string describe_shape(std::ptrdiff_t rows, std::ptrdiff_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

inline void require_shape(bool ok, const char* argument, const std::string& expected, std::ptrdiff_t rows,
                          std::ptrdiff_t cols) {
  if (!ok) throw ShapeError(argument, "expected shape " + expected + ", got " + describe_shape(rows, cols));
}

inline void require_range(bool ok, const char* argument, const std::string& expected, const std::string& got) {
  if (!ok) throw RangeError(argument, "expected " + expected + ", got " + got);
}

}  // namespace detail
}  // namespace ttq
