// ttq._ttq: the Python bindings (nanobind) of the ttq library. One translation unit, thin: every
// number comes from the library's headers and the run-time ISA dispatch library ttq::dispatch
// (backend::Dispatched), so one wheel runs the best kernels of whatever CPU imports it.
//
// What lives here and nowhere in the library:
//   - array conversion: numpy arrays and __dlpack__ objects (torch CPU tensors) of fp32, fp16,
//     bf16 (and fp64) become fp32 MatrixViews, in place when the layout allows (fp32, unit
//     column stride, uniform row stride), else through one fp32 copy;
//   - results as numpy arrays, or torch tensors when the input was a torch tensor;
//   - run-time options (method, bits, group, format, p, alpha or "auto", ...) mapped onto the
//     operator templates, as tools/common/ttq_linear.cpp does for the CLI tools;
//   - ttq::Error subclasses translated into Python exceptions (docs/python.md).
// Every call into a kernel releases the GIL; an operator serializes its own calls with a mutex.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <ttq/backend/dispatch.hpp>
#include <ttq/ttq.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace ttqpy {

using ttq::ConstMatrixView;
using ttq::Index;
using ttq::QuantizedMatrix;
using ttq::RowMatrix;

// ---------------------------------------------------------------------------------------------
// What the stubs call the arrays going in and out: inputs are anything numpy.asarray or DLPack
// can read; results are numpy arrays, or torch tensors for torch inputs (so: Any).

inline bool any_object(PyObject*) { return true; }
class ArrayLike : public nb::object {
  NB_OBJECT_DEFAULT(ArrayLike, object, "numpy.typing.ArrayLike", any_object)
};
class Array : public nb::object {
  NB_OBJECT_DEFAULT(Array, object, "typing.Any", any_object)
};

// ---------------------------------------------------------------------------------------------
// Exceptions: ttq.Error (a ValueError) and one subclass per ttq::Error subclass.

PyObject* g_error = nullptr;
PyObject* g_shape_error = nullptr;
PyObject* g_range_error = nullptr;
PyObject* g_non_finite_error = nullptr;
PyObject* g_state_error = nullptr;

PyObject* new_exception(nb::module_& m, const char* name, std::initializer_list<PyObject*> bases, const char* doc) {
  // Created in ttq._ttq (so the stubs define them here); ttq/__init__.py re-exports them as ttq.*.
  const std::string qualified = std::string("ttq._ttq.") + name;
  nb::tuple base_tuple = nb::steal<nb::tuple>(PyTuple_New(static_cast<Py_ssize_t>(bases.size())));
  Py_ssize_t i = 0;
  for (PyObject* b : bases) {
    Py_INCREF(b);
    PyTuple_SET_ITEM(base_tuple.ptr(), i++, b);
  }
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base_tuple.ptr(), nullptr);
  if (!type) throw nb::python_error();
  m.attr(name) = nb::handle(type);
  return type;
}

void register_exceptions(nb::module_& m) {
  g_error = new_exception(m, "Error", {PyExc_ValueError},
                          "Base of every error ttq raises for bad input (a ValueError). The message is the C++ library's: "
                          "it names the argument, what was expected and what came.");
  g_shape_error = new_exception(m, "ShapeError", {g_error}, "An array has the wrong shape for the operation (ttq::ShapeError).");
  g_range_error = new_exception(m, "RangeError", {g_error},
                                "A parameter is outside its documented range: bits, group, p, alpha, ... (ttq::RangeError).");
  g_non_finite_error = new_exception(m, "NonFiniteError", {g_error, PyExc_FloatingPointError},
                                     "A NaN or an infinity where finite numbers are required, or a result that overflowed "
                                     "float (ttq::NonFiniteError). Both a ValueError and a FloatingPointError.");
  g_state_error = new_exception(m, "StateError", {g_error, PyExc_RuntimeError},
                                "The operation is not valid in the object's current state (ttq::StateError). Both a "
                                "ValueError and a RuntimeError.");
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const ttq::NonFiniteError& e) {
      PyErr_SetString(g_non_finite_error, e.what());
    } catch (const ttq::ShapeError& e) {
      PyErr_SetString(g_shape_error, e.what());
    } catch (const ttq::RangeError& e) {
      PyErr_SetString(g_range_error, e.what());
    } catch (const ttq::StateError& e) {
      PyErr_SetString(g_state_error, e.what());
    } catch (const ttq::Error& e) {
      PyErr_SetString(g_error, e.what());
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Array conversion.

using AnyArray = nb::ndarray<nb::ro>;

enum class DType { f32, f16, bf16, f64 };

bool is_torch(nb::handle obj) {
  nb::object module = nb::getattr(obj.type(), "__module__", nb::none());
  if (!nb::isinstance<nb::str>(module)) return false;
  const std::string name = nb::cast<std::string>(module);
  return name == "torch" || name.rfind("torch.", 0) == 0;
}

std::string python_type_name(nb::handle obj) { return nb::cast<std::string>(nb::type_name(obj.type())); }

/// `obj` as an ndarray on the CPU of a supported dtype; TypeError otherwise.
AnyArray as_array(nb::handle obj, const char* argument, DType& dtype) {
  nb::object source = nb::borrow(obj);
  // A tensor that requires grad refuses __dlpack__; ttq is inference only, so read its data.
  if (is_torch(obj) && nb::hasattr(obj, "requires_grad") && nb::cast<bool>(obj.attr("requires_grad")))
    source = obj.attr("detach")();
  AnyArray array;
  if (!nb::try_cast(source, array)) {
    // Lists, tuples, scalars: whatever numpy.asarray makes of them.
    bool converted = false;
    if (!nb::hasattr(source, "__dlpack__") && !nb::hasattr(source, "__array_interface__")) {
      try {
        nb::object np_array = nb::module_::import_("numpy").attr("asarray")(source);
        converted = nb::try_cast(np_array, array);
      } catch (const nb::python_error&) {
        converted = false;
      }
    }
    if (!converted)
      throw nb::type_error(("ttq: argument '" + std::string(argument) + "': expected a numpy array or a CPU tensor (an object with "
                            "__dlpack__), got " + python_type_name(obj)).c_str());
  }
  if (array.device_type() != nb::device::cpu::value)
    throw nb::type_error(("ttq: argument '" + std::string(argument) +
                          "': the array is not in CPU memory; move it to the CPU first (tensor.cpu())").c_str());
  const nb::dlpack::dtype t = array.dtype();
  const auto code = static_cast<nb::dlpack::dtype_code>(t.code);
  if (t.lanes != 1) throw nb::type_error(("ttq: argument '" + std::string(argument) + "': vector dtypes are not supported").c_str());
  if (code == nb::dlpack::dtype_code::Float && t.bits == 32) dtype = DType::f32;
  else if (code == nb::dlpack::dtype_code::Float && t.bits == 16) dtype = DType::f16;
  else if (code == nb::dlpack::dtype_code::Bfloat && t.bits == 16) dtype = DType::bf16;
  else if (code == nb::dlpack::dtype_code::Float && t.bits == 64) dtype = DType::f64;
  else
    throw nb::type_error(("ttq: argument '" + std::string(argument) +
                          "': expected float32, float16 or bfloat16 data (float64 is converted), got a dtype of code " +
                          std::to_string(t.code) + " and " + std::to_string(t.bits) + " bits").c_str());
  return array;
}

std::string describe_shape(const AnyArray& a) {
  std::string s = "[";
  for (std::size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + "]";
}

/// What a conversion accepts: a weight (exactly 2-D), tokens (1-D is one token; N-D has its
/// leading dimensions flattened into tokens) or a vector (1-D).
enum class Kind { weight, tokens, vector };

/// A [rows, cols] fp32 view of a Python array: the array's own memory when it is fp32 with a unit
/// column stride and one row stride over the flattened leading dimensions, else an fp32 copy.
struct Matrix {
  AnyArray array;            // keeps the source alive for the view
  std::vector<float> owned;  // the fp32 copy, when one was needed
  ConstMatrixView view;
  std::vector<std::size_t> lead;  // the leading (token) dimensions of the source; empty for 1-D tokens
  DType dtype = DType::f32;
  bool torch = false;
  bool copied = false;
};

float element_as_float(const std::uint8_t* p, DType dtype) {
  switch (dtype) {
    case DType::f32: {
      float v;
      std::memcpy(&v, p, sizeof v);
      return v;
    }
    case DType::f16: {
      ttq::Float16 h;
      std::memcpy(&h.bits, p, sizeof h.bits);
      return h.to_float();
    }
    case DType::bf16: {
      ttq::BFloat16 b;
      std::memcpy(&b.bits, p, sizeof b.bits);
      return b.to_float();
    }
    case DType::f64: {
      double v;
      std::memcpy(&v, p, sizeof v);
      return static_cast<float>(v);  // (out-of-range values become infinities: caught as non-finite)
    }
  }
  return 0.0f;
}

std::size_t dtype_size(DType dtype) { return dtype == DType::f32 ? 4 : dtype == DType::f64 ? 8 : 2; }

/// Converts `obj`; throws TypeError for what is no array of a supported dtype, ttq.ShapeError
/// for a wrong number of dimensions. Extents are checked by the library.
Matrix to_matrix(nb::handle obj, const char* argument, Kind kind) {
  Matrix m;
  m.torch = is_torch(obj);
  m.array = as_array(obj, argument, m.dtype);
  const AnyArray& a = m.array;
  const std::size_t nd = a.ndim();
  const bool ok = kind == Kind::weight ? nd == 2 : kind == Kind::vector ? nd == 1 : nd >= 1;
  if (!ok) {
    const char* expected = kind == Kind::weight ? "a 2-D array [d_out, d_in]"
                           : kind == Kind::vector ? "a 1-D array" : "an array [..., d_in] of at least 1 dimension";
    throw ttq::ShapeError(argument, std::string("expected ") + expected + ", got shape " + describe_shape(a));
  }
  // Logical shape [rows, cols]; element (r, c) of the flattened leading dimensions.
  const std::size_t cols = a.shape(nd - 1);
  std::size_t rows = 1;
  for (std::size_t i = 0; i + 1 < nd; ++i) {
    rows *= a.shape(i);
    m.lead.push_back(a.shape(i));
  }
  if (kind == Kind::vector) m.lead.clear();
  // The leading dimensions collapse into one row stride when each (of extent > 1) steps over
  // exactly the dimensions after it.
  std::int64_t row_stride = static_cast<std::int64_t>(cols);
  bool uniform = true;
  {
    std::int64_t expected = -1;  // stride the next-outer dimension of extent > 1 must have
    for (std::size_t k = nd - 1; k-- > 0;) {
      if (a.shape(k) <= 1) continue;
      if (expected < 0) {
        row_stride = a.stride(k);
        expected = a.stride(k) * static_cast<std::int64_t>(a.shape(k));
      } else if (a.stride(k) != expected) {
        uniform = false;
        break;
      } else {
        expected *= static_cast<std::int64_t>(a.shape(k));
      }
    }
  }
  const bool unit_cols = cols <= 1 || a.stride(nd - 1) == 1;
  const auto* base = static_cast<const std::uint8_t*>(a.data());
  const bool aligned = reinterpret_cast<std::uintptr_t>(base) % alignof(float) == 0;
  if (m.dtype == DType::f32 && unit_cols && uniform && aligned && (rows <= 1 || row_stride >= static_cast<std::int64_t>(cols))) {
    m.view = ConstMatrixView(reinterpret_cast<const float*>(base), static_cast<Index>(rows), static_cast<Index>(cols),
                             rows <= 1 ? static_cast<Index>(cols) : static_cast<Index>(row_stride));
    return m;
  }
  // One fp32 copy, element by element through the strides (the GIL is not needed to read).
  m.copied = true;
  m.owned.resize(rows * cols);
  {
    nb::gil_scoped_release release;
    const std::size_t item = dtype_size(m.dtype);
    std::vector<std::size_t> index(nd, 0);
    for (std::size_t flat = 0; flat < rows * cols; ++flat) {
      std::int64_t offset = 0;
      for (std::size_t k = 0; k < nd; ++k) offset += static_cast<std::int64_t>(index[k]) * a.stride(k);
      m.owned[flat] = element_as_float(base + offset * static_cast<std::int64_t>(item), m.dtype);
      for (std::size_t k = nd; k-- > 0;) {  // odometer over the logical (C-order) index
        if (++index[k] < a.shape(k)) break;
        index[k] = 0;
      }
    }
  }
  m.view = ConstMatrixView(m.owned.data(), static_cast<Index>(rows), static_cast<Index>(cols));
  return m;
}

/// A 1-D fp32 vector (bias, scales), copied.
std::vector<float> to_vector(nb::handle obj, const char* argument) {
  Matrix m = to_matrix(obj, argument, Kind::vector);
  return std::vector<float>(m.view.data, m.view.data + m.view.cols);
}

/// Hands `holder` (a RowMatrix or a std::vector) to Python without a copy: a numpy array, or a
/// torch tensor (through DLPack) when `torch`.
template <class Holder>
Array export_array(Holder holder, const std::vector<std::size_t>& shape, bool torch) {
  auto* h = new Holder(std::move(holder));
  nb::capsule owner(h, [](void* p) noexcept { delete static_cast<Holder*>(p); });
  using T = std::remove_cv_t<std::remove_pointer_t<decltype(h->data())>>;
  T* data = h->data();
  nb::object out;
  if (torch) out = nb::ndarray<nb::pytorch, T>(data, shape.size(), shape.data(), owner).cast();
  else out = nb::ndarray<nb::numpy, T>(data, shape.size(), shape.data(), owner).cast();
  return nb::steal<Array>(out.release());
}

Array export_matrix(RowMatrix m, bool torch) {
  const std::vector<std::size_t> shape{static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
  return export_array(std::move(m), shape, torch);
}

/// Y [rows, d_out] shaped as the input's leading dimensions + [d_out].
Array export_tokens(RowMatrix y, const std::vector<std::size_t>& lead, bool torch) {
  std::vector<std::size_t> shape = lead;
  shape.push_back(static_cast<std::size_t>(y.cols()));
  return export_array(std::move(y), shape, torch);
}

// ---------------------------------------------------------------------------------------------
// Quantization settings chosen at run time.

// The formats' own names (quant/format.hpp), except that Python spells the symmetric format out.
std::string format_label(ttq::FormatKind kind) {
  const std::string name = ttq::format_name(kind);
  return name == "sym" ? "symmetric" : name;
}

ttq::FormatKind parse_format(const std::string& name) {
  std::optional<ttq::FormatKind> found;
  std::string known;
  ttq::for_each_format([&](auto f) {
    using F = decltype(f);
    const std::string label = format_label(F::kind);
    if (name == label || name == F::name) found = F::kind;
    known += (known.empty() ? "'" : ", '") + label + "'";
  });
  if (!found) throw ttq::RangeError("format", "expected one of " + known + ", got '" + name + "'");
  return *found;
}

/// A quantizer policy whose bits, group, number format and clip ratio are all run-time values
/// (ttq::Quantizer fixes the format at compile time; the kernels only ever see the QuantConfig).
class RuntimeQuantizer {
 public:
  static constexpr int bits = ttq::Dynamic;
  static constexpr int group = ttq::Dynamic;
  using format = void;  // QuantConfig::format, chosen at run time

  /// group 0 is per-channel (as the tools' --group 0).
  RuntimeQuantizer(int bits_value, Index group_value, ttq::FormatKind kind, float clip)
      : bits_(bits_value), group_(group_value), format_(kind), clip_(clip) {
    ttq::detail::require_range(group_ >= 0, "group", "a group size >= 1, or 0 for per-channel", std::to_string(group_));
    ttq::QuantConfig probe{bits_, 1, format_, clip_};
    probe.validate(1 << 30);  // bits for the format and the clip ratio; the group is checked against d_in in config()
  }

  ttq::QuantConfig config(Index d_in) const {
    ttq::detail::require_range(d_in >= 1, "d_in", "at least 1 input channel", std::to_string(d_in));
    const ttq::QuantConfig c{bits_, group_ == 0 ? d_in : group_, format_, clip_};
    c.validate(d_in);
    return c;
  }

 private:
  int bits_;
  Index group_;
  ttq::FormatKind format_;
  float clip_;
};

// ---------------------------------------------------------------------------------------------
// QuantizedMatrix.

struct PyQuantized {
  QuantizedMatrix q;
  bool torch = false;
};

Array quantized_codes(const PyQuantized& self) {
  const QuantizedMatrix& q = self.q;
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(q.rows * q.cols));
  for (Index r = 0; r < q.rows; ++r)
    for (Index c = 0; c < q.cols; ++c) codes[static_cast<std::size_t>(r * q.cols + c)] = static_cast<std::uint8_t>(q.code(r, c));
  return export_array(std::move(codes), {static_cast<std::size_t>(q.rows), static_cast<std::size_t>(q.cols)}, self.torch);
}

Array quantized_params(const PyQuantized& self, const std::vector<float>& values) {
  const QuantizedMatrix& q = self.q;
  return export_array(std::vector<float>(values), {static_cast<std::size_t>(q.rows), static_cast<std::size_t>(q.groups_per_row())},
                      self.torch);
}

std::vector<float> checked_scales(nb::handle scales, Index cols) {
  std::vector<float> d = to_vector(scales, "scales");
  ttq::detail::require_shape(static_cast<Index>(d.size()) == cols, "scales", "[d_in] = [" + std::to_string(cols) + "]", 1,
                             static_cast<Index>(d.size()));
  ttq::detail::require_finite(std::span<const float>(d), "scales");
  for (std::size_t j = 0; j < d.size(); ++j)
    ttq::detail::require_range(d[j] > 0.0f, "scales", "positive scales", std::to_string(d[j]) + " at channel " + std::to_string(j));
  return d;
}

PyQuantized quantize_impl(nb::handle w, int bits, Index group, const std::string& format, nb::handle scales, float clip) {
  const RuntimeQuantizer quantizer(bits, group, parse_format(format), clip);
  Matrix m = to_matrix(w, "w", Kind::weight);
  ttq::detail::require_valid_view(m.view, "w");
  const ttq::QuantConfig config = quantizer.config(m.view.cols);
  std::vector<float> d;
  if (!scales.is_none()) d = checked_scales(scales, m.view.cols);
  PyQuantized out;
  out.torch = m.torch;
  nb::gil_scoped_release release;
  ttq::detail::require_finite(m.view, "w");
  out.q = ttq::backend::quantize(ttq::backend::Dispatched{}, config, m.view, d, {});
  return out;
}

PyQuantized quantize(ArrayLike w, int bits, Index group, const std::string& format, std::optional<ArrayLike> scales, float clip) {
  return quantize_impl(w, bits, group, format, scales ? nb::handle(*scales) : nb::handle(nb::none()), clip);
}

Array quantize_dequantize(ArrayLike w, int bits, Index group, const std::string& format, std::optional<ArrayLike> scales_arg,
                          float clip) {
  const nb::handle scales = scales_arg ? nb::handle(*scales_arg) : nb::handle(nb::none());
  const bool torch = is_torch(w);
  PyQuantized q = quantize_impl(w, bits, group, format, scales, clip);
  RowMatrix out;
  {
    nb::gil_scoped_release release;
    out = q.q.dequantize();
  }
  if (!scales.is_none()) {
    const std::vector<float> d = to_vector(scales, "scales");
    for (Index r = 0; r < out.rows(); ++r)
      for (Index c = 0; c < out.cols(); ++c) out(r, c) /= d[static_cast<std::size_t>(c)];
  }
  return export_matrix(std::move(out), torch);
}

// ---------------------------------------------------------------------------------------------
// Operators: the four instantiations of the tools (RTN, static AWQ, TTQ with a fixed exponent,
// TTQ with the adaptive exponent), all on the run-time dispatched backend.

template <class Scale, class Residual>
using Operator = ttq::OnlineAWQ<RuntimeQuantizer, Scale, Residual, ttq::backend::Dispatched>;
using RtnOperator = Operator<ttq::UniformScales, ttq::NoResidual>;
using AwqOperator = Operator<ttq::StaticAwqScales, ttq::NoResidual>;
using TtqOperator = Operator<ttq::DiagCorrelation<ttq::Dynamic>, ttq::LowRankResidual<ttq::Dynamic>>;
using AutoOperator = Operator<ttq::AdaptiveExponent<ttq::Dynamic>, ttq::LowRankResidual<ttq::Dynamic>>;

/// Every run-time option of an operator, as the Python constructor takes them. Method-specific
/// options are optional so that one given to a method it does not apply to is an error, never
/// silently ignored. To add an option: a field here, its keyword in bind_operator() below, and its
/// use in make_operator().
struct OperatorOptions {
  std::string method = "ttq";  // "ttq" | "rtn" | "awq"
  int bits = 4;
  Index group = 128;  // 0: per-channel
  std::string format = "awq";
  float clip_ratio = 1.0f;  // the quantizer's fixed range shrink (all methods)
  // TTQ
  std::optional<std::variant<double, std::string>> alpha;  // a fixed exponent, or "auto" (default)
  std::optional<double> p;  // the statistic's norm; default 1 for "auto" and awq, inf for a fixed alpha
  std::optional<double> lambda;
  std::optional<double> decay;
  std::optional<std::vector<double>> prior;
  std::optional<double> prior_weight;
  std::optional<std::vector<double>> alpha_grid;
  std::optional<bool> awq_normalisation;
  std::optional<double> floor;
  std::optional<Index> error_rows;
  std::optional<std::string> clip;  // "none" | "diag" | "block": the online clip search
  std::optional<Index> clip_rank;
  std::optional<double> relative_floor;
  std::optional<Index> rank;
  // static AWQ
  std::optional<bool> awq_clip;
  std::optional<int> awq_grid;
  std::optional<int> clip_grid;
  std::optional<double> max_shrink;
  std::optional<Index> max_calibration_tokens;
};

class AnyOperator {
 public:
  virtual ~AnyOperator() = default;
  virtual void observe(ConstMatrixView x) = 0;
  virtual void requantize() = 0;
  virtual void calibrate(ConstMatrixView x) = 0;
  virtual void forward(ConstMatrixView x, ttq::MatrixView<float> y) const = 0;
  virtual void begin_prompt() = 0;
  virtual void reset() = 0;
  virtual Index d_in() const = 0;
  virtual Index d_out() const = 0;
  virtual std::vector<float> scales() const = 0;
  virtual const QuantizedMatrix& quantized() const = 0;
  virtual const ttq::LowRankFactors& factors() const = 0;
  virtual RowMatrix effective_weight() const = 0;
  virtual std::optional<double> chosen_alpha() const = 0;
  virtual std::vector<double> candidate_errors() const = 0;
  virtual std::optional<bool> frozen() const = 0;
  virtual double tokens() const = 0;
};

template <class Op>
class OperatorImpl final : public AnyOperator {
  using Policy = typename Op::correlation_type;
  static constexpr bool kAuto = std::is_same_v<Policy, ttq::AdaptiveExponent<ttq::Dynamic>>;
  static constexpr bool kAwq = std::is_same_v<Policy, ttq::StaticAwqScales>;
  static constexpr bool kFixed = std::is_same_v<Policy, ttq::DiagCorrelation<ttq::Dynamic>>;

 public:
  explicit OperatorImpl(Op op) : op_(std::move(op)) {}
  void observe(ConstMatrixView x) override { op_.observe(x); }
  void requantize() override { op_.requantize(); }
  void calibrate(ConstMatrixView x) override { op_.calibrate(x); }
  void forward(ConstMatrixView x, ttq::MatrixView<float> y) const override { op_.forward(x, y); }
  void begin_prompt() override { op_.begin_prompt(); }
  void reset() override { op_.reset(); }
  Index d_in() const override { return op_.d_in(); }
  Index d_out() const override { return op_.d_out(); }
  std::vector<float> scales() const override { return {op_.scales().begin(), op_.scales().end()}; }
  const QuantizedMatrix& quantized() const override { return op_.quantized(); }
  const ttq::LowRankFactors& factors() const override { return op_.factors(); }
  RowMatrix effective_weight() const override { return op_.effective_weight(); }
  std::optional<double> chosen_alpha() const override {
    if constexpr (kAuto || kAwq) return op_.correlation().chosen_exponent();
    else if constexpr (kFixed) return op_.correlation().options().alpha;
    else return std::nullopt;
  }
  std::vector<double> candidate_errors() const override {
    if constexpr (kAuto) return op_.correlation().candidate_errors();
    else return {};
  }
  std::optional<bool> frozen() const override {
    if constexpr (kAwq) return op_.correlation().frozen();
    else return std::nullopt;
  }
  double tokens() const override {
    if constexpr (kAuto) return op_.correlation().statistics().tokens();
    else if constexpr (kFixed) return op_.correlation().tokens();
    else if constexpr (kAwq) return op_.correlation().calibration_tokens();
    else return 0.0;
  }

 private:
  Op op_;
};

/// Raises ttq.RangeError when an option was given to a method it does not apply to.
template <class T>
void require_applies(const std::optional<T>& option, const char* name, bool applies, const char* where) {
  if (option && !applies) throw ttq::RangeError(name, std::string("applies only to ") + where + "; it would be ignored here");
}

std::unique_ptr<AnyOperator> make_operator(ConstMatrixView w, std::span<const float> bias, const OperatorOptions& o) {
  const RuntimeQuantizer quantizer(o.bits, o.group, parse_format(o.format), o.clip_ratio);
  const bool ttq = o.method == "ttq", rtn = o.method == "rtn", awq = o.method == "awq";
  if (!ttq && !rtn && !awq) throw ttq::RangeError("method", "expected 'ttq', 'rtn' or 'awq', got '" + o.method + "'");
  std::optional<double> alpha;  // nullopt: "auto"
  if (o.alpha) {
    if (const auto* s = std::get_if<std::string>(&*o.alpha)) {
      if (*s != "auto") throw ttq::RangeError("alpha", "expected a number >= 0 or 'auto', got '" + *s + "'");
    } else {
      alpha = std::get<double>(*o.alpha);
    }
  }
  const bool fixed = ttq && alpha.has_value(), adaptive = ttq && !alpha.has_value();
  require_applies(o.alpha, "alpha", ttq, "method='ttq'");
  require_applies(o.p, "p", ttq || awq, "method='ttq' and method='awq'");
  require_applies(o.rank, "rank", ttq, "method='ttq'");
  require_applies(o.decay, "decay", ttq, "method='ttq'");
  require_applies(o.lambda, "lambda_", fixed, "method='ttq' with a fixed alpha");
  require_applies(o.prior, "prior", fixed, "method='ttq' with a fixed alpha");
  require_applies(o.prior_weight, "prior_weight", fixed, "method='ttq' with a fixed alpha");
  require_applies(o.alpha_grid, "alpha_grid", adaptive, "method='ttq' with alpha='auto'");
  require_applies(o.awq_normalisation, "awq_normalisation", adaptive, "method='ttq' with alpha='auto'");
  require_applies(o.floor, "floor", adaptive, "method='ttq' with alpha='auto'");
  require_applies(o.error_rows, "error_rows", adaptive, "method='ttq' with alpha='auto'");
  require_applies(o.clip, "clip", adaptive, "method='ttq' with alpha='auto'");
  require_applies(o.clip_rank, "clip_rank", adaptive && o.clip && *o.clip == "block", "clip='block'");
  require_applies(o.relative_floor, "relative_floor", adaptive, "method='ttq' with alpha='auto'");
  require_applies(o.awq_clip, "awq_clip", awq, "method='awq'");
  require_applies(o.awq_grid, "awq_grid", awq, "method='awq'");
  require_applies(o.clip_grid, "clip_grid", awq, "method='awq'");
  require_applies(o.max_shrink, "max_shrink", awq, "method='awq'");
  require_applies(o.max_calibration_tokens, "max_calibration_tokens", awq, "method='awq'");
  // The tools' defaults (tools/common/cli.cpp): the l1 statistic for the adaptive exponent and
  // static AWQ, the max norm for a fixed exponent (docs/numerics.md, "Defaults").
  const double p = o.p.value_or(fixed ? INFINITY : 1.0);

  if (rtn) return std::make_unique<OperatorImpl<RtnOperator>>(RtnOperator(ttq::LayerWeights::copy(w, bias), quantizer));
  if (awq) {
    ttq::StaticAwqOptions a;
    a.p = p;
    a.clip_search = o.awq_clip.value_or(false);
    if (o.awq_grid) a.grid = *o.awq_grid;
    if (o.clip_grid) a.clip_grid = *o.clip_grid;
    if (o.max_shrink) a.max_shrink = *o.max_shrink;
    if (o.max_calibration_tokens) a.max_calibration_tokens = *o.max_calibration_tokens;
    return std::make_unique<OperatorImpl<AwqOperator>>(
        AwqOperator(ttq::LayerWeights::copy(w, bias), quantizer, ttq::StaticAwqScales(a)));
  }
  const ttq::LowRankResidual<ttq::Dynamic> residual(o.rank.value_or(0));
  auto weights = ttq::LayerWeights::copy(w, bias, residual);
  if (fixed) {
    ttq::DiagCorrelationOptions d;
    d.p = p;
    d.alpha = *alpha;
    d.lambda = o.lambda.value_or(0.0);
    d.decay = o.decay.value_or(0.0);
    d.prior_weight = o.prior_weight.value_or(0.0);
    if (o.prior) d.prior = *o.prior;
    return std::make_unique<OperatorImpl<TtqOperator>>(
        TtqOperator(std::move(weights), quantizer, ttq::DiagCorrelation<ttq::Dynamic>(std::move(d))));
  }
  ttq::AdaptiveExponentOptions e;
  e.p = p;
  if (o.alpha_grid) e.grid = *o.alpha_grid;
  e.normalisation = o.awq_normalisation.value_or(false) ? ttq::ExponentNormalisation::awq : ttq::ExponentNormalisation::none;
  e.decay = o.decay.value_or(0.0);
  if (o.floor) e.floor = *o.floor;
  if (o.error_rows) e.error_rows = *o.error_rows;
  if (o.relative_floor) e.relative_floor = *o.relative_floor;
  if (o.clip) {
    if (*o.clip == "none") e.clip.objective = ttq::ClipObjective::none;
    else if (*o.clip == "diag") e.clip.objective = ttq::ClipObjective::diag;
    else if (*o.clip == "block") e.clip.objective = ttq::ClipObjective::block;
    else throw ttq::RangeError("clip", "'none', 'diag' or 'block', got '" + *o.clip + "'");
  }
  if (o.clip_rank) e.clip.block_rank = *o.clip_rank;
  return std::make_unique<OperatorImpl<AutoOperator>>(
      AutoOperator(std::move(weights), quantizer, ttq::AdaptiveExponent<ttq::Dynamic>(std::move(e))));
}

/// The Python OnlineAWQ: one operator, its options, and a mutex that serializes its calls (the
/// GIL is released inside them, so two Python threads may call the same operator at once).
class PyOperator {
 public:
  PyOperator(nb::handle w, nb::handle bias, OperatorOptions options) : options_(std::move(options)) {
    Matrix wm = to_matrix(w, "w", Kind::weight);
    torch_ = wm.torch;
    std::vector<float> b;
    if (!bias.is_none()) b = to_vector(bias, "bias");
    nb::gil_scoped_release release;
    impl_ = make_operator(wm.view, b, options_);
  }

  void observe(ArrayLike x) { run_tokens(x, [&](ConstMatrixView v) { impl_->observe(v); }); }
  void calibrate(ArrayLike x) { run_tokens(x, [&](ConstMatrixView v) { impl_->calibrate(v); }); }
  void requantize() { locked([&] { impl_->requantize(); }); }
  void begin_prompt() { locked([&] { impl_->begin_prompt(); }); }
  void reset() { locked([&] { impl_->reset(); }); }

  Array forward(ArrayLike x) { return forward_impl(x, false); }
  Array prefill(ArrayLike x) { return forward_impl(x, true); }

  Array scales() const {
    std::vector<float> d;
    locked([&] { d = impl_->scales(); });
    const std::size_t n = d.size();
    return export_array(std::move(d), {n}, torch_);
  }
  PyQuantized quantized() const {
    PyQuantized q;
    q.torch = torch_;
    locked([&] { q.q = impl_->quantized(); });
    return q;
  }
  Array effective_weight() const {
    RowMatrix w;
    locked([&] { w = impl_->effective_weight(); });
    return export_matrix(std::move(w), torch_);
  }
  std::pair<Array, Array> factors() const {
    RowMatrix a, b;
    locked([&] {
      a = impl_->factors().a;
      b = impl_->factors().b;
    });
    return {export_matrix(std::move(a), torch_), export_matrix(std::move(b), torch_)};
  }
  double bits_per_weight() const {
    double bits = 0.0;
    locked([&] {
      // Codes plus scales/zeros, plus the fp32 low-rank factors spread over the matrix (as the tools).
      const double elements = static_cast<double>(impl_->d_in()) * static_cast<double>(impl_->d_out());
      const double lowrank = 32.0 * static_cast<double>(impl_->factors().rank()) * static_cast<double>(impl_->d_in() + impl_->d_out());
      bits = impl_->quantized().bits_per_weight() + lowrank / elements;
    });
    return bits;
  }
  std::optional<double> chosen_alpha() const {
    std::optional<double> a;
    locked([&] { a = impl_->chosen_alpha(); });
    return a;
  }
  std::vector<double> candidate_errors() const {
    std::vector<double> e;
    locked([&] { e = impl_->candidate_errors(); });
    return e;
  }
  std::optional<bool> frozen() const {
    std::optional<bool> f;
    locked([&] { f = impl_->frozen(); });
    return f;
  }
  double tokens() const {
    double t = 0.0;
    locked([&] { t = impl_->tokens(); });
    return t;
  }
  Index d_in() const { return impl_->d_in(); }
  Index d_out() const { return impl_->d_out(); }
  Index rank() const { return impl_->factors().rank(); }
  const OperatorOptions& options() const { return options_; }
  Index resolved_group() const { return impl_->quantized().group; }
  bool torch_weights() const { return torch_; }

  std::string repr() const {
    std::string s = "ttq.OnlineAWQ(d_out=" + std::to_string(d_out()) + ", d_in=" + std::to_string(d_in()) + ", method='" +
                    options_.method + "', bits=" + std::to_string(options_.bits) + ", group=" + std::to_string(options_.group) +
                    ", format='" + format_label(parse_format(options_.format)) + "'";
    if (options_.method == "ttq") {
      if (options_.alpha && std::holds_alternative<double>(*options_.alpha))
        s += ", alpha=" + std::to_string(std::get<double>(*options_.alpha));
      else s += ", alpha='auto'";
      if (rank() > 0) s += ", rank=" + std::to_string(rank());
    }
    return s + ")";
  }

 private:
  // Runs f with the GIL released and this operator's mutex held (in that order: the mutex is
  // never waited for while holding the GIL, and released before the GIL is taken back).
  template <class F>
  void locked(F&& f) const {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    f();
  }

  template <class F>
  void run_tokens(nb::handle x, F&& f) {
    Matrix m = to_matrix(x, "x", Kind::tokens);
    locked([&] { f(m.view); });
  }

  Array forward_impl(nb::handle x, bool calibrate_first) {
    Matrix m = to_matrix(x, "x", Kind::tokens);
    RowMatrix y;
    locked([&] {
      if (calibrate_first) impl_->calibrate(m.view);
      // (The library checks X's shape; an empty X is its ShapeError, not an empty result.)
      if (m.view.cols == impl_->d_in() && m.view.rows >= 1) y.resize(m.view.rows, impl_->d_out());
      impl_->forward(m.view, ttq::MatrixView<float>(y.data(), y.rows(), y.cols()));
    });
    return export_tokens(std::move(y), m.lead, m.torch);
  }

  OperatorOptions options_;
  std::unique_ptr<AnyOperator> impl_;
  mutable std::mutex mutex_;
  bool torch_ = false;
};

// ---------------------------------------------------------------------------------------------
// Module.

const char* kQuantizeDoc = R"(Quantizes ``w`` [rows, cols] groupwise, round to nearest.

Args:
    w: the weight, a 2-D array (numpy or torch, fp32/fp16/bf16; fp64 is converted).
    bits: bit width, 2..8 (4 for ``nf4``).
    group: group size along a row (its last group may be shorter); 0 is per-channel (one group
        per row).
    format: ``"awq"`` (llm-awq's asymmetric integer format with an integer zero point),
        ``"offset"`` (asymmetric with a float offset, as ggml Q4_1 and HQQ), ``"symmetric"``,
        or ``"nf4"`` (NormalFloat4).
    scales: optional per-channel scales D [cols], finite and positive: ``w * D`` is quantized
        (the AWQ transform). ``dequantize()`` then decodes ``w * D``, not ``w``.
    clip: range shrink ratio in (0, 1]; 1 is plain round to nearest.

Returns:
    A :class:`QuantizedMatrix`.)";

const char* kOperatorDoc = R"(One linear layer ``y = x @ w.T + bias`` quantized by ttq's operator (``ttq::OnlineAWQ``).

``method="ttq"`` is test-time quantization: the prompt's activations choose per-channel scales D
(``calibrate``), W·diag(D) is quantized groupwise, and ``forward`` computes
``(x / D) @ deq(Q).T + bias``. ``method="rtn"`` is round to nearest (D = 1, never recalibrated).
``method="awq"`` is static AWQ: ``calibrate`` on calibration data fits D (and, with
``awq_clip=True``, per-group clip ratios) once and freezes it; ``observe`` several batches then
``requantize()`` to fit on all of them.

Args:
    w: the weight [d_out, d_in] (numpy or torch; fp32/fp16/bf16; copied into the operator).
    bias: optional bias [d_out].
    bits: bit width, 2..8 (4 for ``nf4``).
    group: group size along a row; 0 is per-channel.
    method: ``"ttq"``, ``"rtn"`` or ``"awq"``.
    format: number format, as :func:`quantize`.
    clip_ratio: the quantizer's fixed range shrink in (0, 1] (all methods).
    alpha: TTQ: a fixed exponent >= 0 (``DiagCorrelation``), or ``"auto"`` (the default:
        ``AdaptiveExponent``, the exponent of ``alpha_grid`` with the least error, chosen per
        layer and prompt).
    p: norm of the activation statistic, >= 1 or ``math.inf``. Default: 1 for ``alpha="auto"``
        and ``method="awq"``, inf for a fixed alpha (the tools' defaults).
    lambda_: TTQ with a fixed alpha: damping toward uniform, in [0, 1] (``lambda`` is a Python
        keyword).
    decay: TTQ: factor in [0, 1] on the statistics at ``begin_prompt()`` (0 forgets them).
    prior, prior_weight: TTQ with a fixed alpha: a static prior correlation [d_in] and its
        weight in [0, 1].
    alpha_grid: TTQ ``"auto"``: the candidate exponents (default 0, 0.1, ..., 0.9).
    awq_normalisation: TTQ ``"auto"``: llm-awq's sqrt(max*min) normalisation of the scales.
    floor: TTQ ``"auto"``: lower bound on the candidate scales s^a (default 1e-4).
    error_rows: TTQ ``"auto"``: rows the error is measured on (0: all).
    clip: TTQ ``"auto"``: the online clip search, a clip ratio per (row, group) chosen on the
        prompt: ``"none"`` (default), ``"diag"`` (weighted by the channels' mean squares) or
        ``"block"`` (by the prompt's Gram block of the group; the most accurate).
    clip_rank: ``clip="block"``: use each Gram block's top-k eigenpairs plus the rest's
        diagonal (0: the exact block).
    relative_floor: TTQ ``"auto"``: lower bound on s^a relative to its mean, so channels the
        prompt did not use keep their weights (default 0: off).
    rank: TTQ: rank of the full-precision low-rank residual (0: none).
    awq_clip: static AWQ: also search a clip ratio per (row, group).
    awq_grid: static AWQ: exponents i / awq_grid, i < awq_grid.
    clip_grid, max_shrink: static AWQ's clip search grid.
    max_calibration_tokens: static AWQ: calibration tokens kept for the search.

An option given to a method it does not apply to raises :class:`RangeError`.)";

void bind(nb::module_& m) {
  m.doc() = "ttq: test-time quantization of LLM linear layers (bindings of the C++ library; docs/python.md)";
  register_exceptions(m);
  m.attr("__version__") = std::to_string(TTQ_VERSION_MAJOR) + "." + std::to_string(TTQ_VERSION_MINOR) + "." +
                          std::to_string(TTQ_VERSION_PATCH);

  nb::class_<PyQuantized>(m, "QuantizedMatrix", "A groupwise-quantized matrix [rows, cols]: codes, per-group scales and zeros.")
      .def("dequantize", [](const PyQuantized& q) {
             RowMatrix out;
             {
               nb::gil_scoped_release release;
               out = q.q.dequantize();
             }
             return export_matrix(std::move(out), q.torch);
           },
           "The decoded values [rows, cols] (float32): what was quantized (w * D when scales D were given).")
      .def_prop_ro("codes", &quantized_codes, "The codes [rows, cols], unpacked, uint8 in [0, 2**bits).")
      .def_prop_ro("scales", [](const PyQuantized& q) { return quantized_params(q, q.q.scales); },
                   "Per-group scales [rows, groups] (float32).")
      .def_prop_ro("zeros", [](const PyQuantized& q) { return quantized_params(q, q.q.zeros); },
                   "Per-group zeros [rows, groups] (float32): the integer zero point ('awq'), the group minimum "
                   "('offset'), 0 ('symmetric', 'nf4').")
      .def_prop_ro("bits_per_weight", [](const PyQuantized& q) { return q.q.bits_per_weight(); },
                   "Storage per weight: codes plus fp32 scales plus zero points at the format's size.")
      .def_prop_ro("bits", [](const PyQuantized& q) { return q.q.bits; })
      .def_prop_ro("group", [](const PyQuantized& q) { return q.q.group; }, "The resolved group size (cols when per-channel).")
      .def_prop_ro("groups", [](const PyQuantized& q) { return q.q.groups_per_row(); }, "Groups per row.")
      .def_prop_ro("format", [](const PyQuantized& q) { return std::string(format_label(q.q.format)); })
      .def_prop_ro("shape", [](const PyQuantized& q) { return std::make_pair(q.q.rows, q.q.cols); })
      .def("__repr__", [](const PyQuantized& q) {
        return "ttq.QuantizedMatrix(shape=(" + std::to_string(q.q.rows) + ", " + std::to_string(q.q.cols) + "), bits=" +
               std::to_string(q.q.bits) + ", group=" + std::to_string(q.q.group) + ", format='" + format_label(q.q.format) + "')";
      });

  m.def("quantize", &quantize, "w"_a, "bits"_a = 4, "group"_a = 128, "format"_a = "awq", "scales"_a = nb::none(), "clip"_a = 1.0f,
        kQuantizeDoc);
  m.def("quantize_dequantize", &quantize_dequantize, "w"_a, "bits"_a = 4, "group"_a = 128, "format"_a = "awq",
        "scales"_a = nb::none(), "clip"_a = 1.0f,
        "Q(w D) / D as a dense float32 array [rows, cols] (plain QDQ without scales): the effective weight of "
        "quantizing with per-channel scales D. Arguments as quantize().");

  nb::class_<PyOperator>(m, "OnlineAWQ", kOperatorDoc)
      .def("__init__",
           [](PyOperator* self, ArrayLike w, std::optional<ArrayLike> bias, int bits, Index group, std::string method, std::string format,
              float clip_ratio, std::optional<std::variant<double, std::string>> alpha, std::optional<double> p,
              std::optional<double> lambda, std::optional<double> decay, std::optional<std::vector<double>> prior,
              std::optional<double> prior_weight, std::optional<std::vector<double>> alpha_grid,
              std::optional<bool> awq_normalisation, std::optional<double> floor, std::optional<Index> error_rows,
              std::optional<std::string> clip, std::optional<Index> clip_rank, std::optional<double> relative_floor,
              std::optional<Index> rank,
              std::optional<bool> awq_clip, std::optional<int> awq_grid, std::optional<int> clip_grid,
              std::optional<double> max_shrink, std::optional<Index> max_calibration_tokens) {
             OperatorOptions o;
             o.method = std::move(method);
             o.bits = bits;
             o.group = group;
             o.format = std::move(format);
             o.clip_ratio = clip_ratio;
             o.alpha = std::move(alpha);
             o.p = p;
             o.lambda = lambda;
             o.decay = decay;
             o.prior = std::move(prior);
             o.prior_weight = prior_weight;
             o.alpha_grid = std::move(alpha_grid);
             o.awq_normalisation = awq_normalisation;
             o.floor = floor;
             o.error_rows = error_rows;
             o.clip = std::move(clip);
             o.clip_rank = clip_rank;
             o.relative_floor = relative_floor;
             o.rank = rank;
             o.awq_clip = awq_clip;
             o.awq_grid = awq_grid;
             o.clip_grid = clip_grid;
             o.max_shrink = max_shrink;
             o.max_calibration_tokens = max_calibration_tokens;
             new (self) PyOperator(w, bias ? nb::handle(*bias) : nb::handle(nb::none()), std::move(o));
           },
           "w"_a, "bias"_a = nb::none(), nb::kw_only(), "bits"_a = 4, "group"_a = 128, "method"_a = "ttq", "format"_a = "awq",
           "clip_ratio"_a = 1.0f, "alpha"_a = nb::none(), "p"_a = nb::none(), "lambda_"_a = nb::none(), "decay"_a = nb::none(),
           "prior"_a = nb::none(), "prior_weight"_a = nb::none(), "alpha_grid"_a = nb::none(),
           "awq_normalisation"_a = nb::none(), "floor"_a = nb::none(), "error_rows"_a = nb::none(), "clip"_a = nb::none(),
           "clip_rank"_a = nb::none(), "relative_floor"_a = nb::none(), "rank"_a = nb::none(), "awq_clip"_a = nb::none(),
           "awq_grid"_a = nb::none(), "clip_grid"_a = nb::none(), "max_shrink"_a = nb::none(),
           "max_calibration_tokens"_a = nb::none())
      .def("calibrate", &PyOperator::calibrate, "x"_a,
           "Observes the prompt's activations x [..., d_in] and re-quantizes (TTQ); RTN only validates x; static AWQ fits "
           "and freezes on the first call.")
      .def("observe", &PyOperator::observe, "x"_a,
           "Accumulates statistics of x [..., d_in] without re-quantizing (chunked prefill; static AWQ's calibration "
           "batches); requantize() then applies them.")
      .def("requantize", &PyOperator::requantize, "Re-plans D from the statistics so far and quantizes W with it.")
      .def("prefill", &PyOperator::prefill, "x"_a, "calibrate(x), then forward(x) with the new quantization.")
      .def("forward", &PyOperator::forward, "x"_a,
           "y [..., d_out] = forward of x [..., d_in] with the current quantization (float32; numpy, or torch for a "
           "torch input). A 1-D x is one token.")
      .def("decode", &PyOperator::forward, "x"_a, "forward(x): a decode step, no statistics update.")
      .def("__call__", &PyOperator::forward, "x"_a, "forward(x).")
      .def("begin_prompt", &PyOperator::begin_prompt,
           "Starts a new prompt: the statistics decay (or are forgotten); the quantization stays until the next calibrate().")
      .def("reset", &PyOperator::reset, "Forgets every statistic (unfreezes static AWQ) and returns to the plan before any activation.")
      .def("effective_weight", &PyOperator::effective_weight,
           "W^ = B A + deq(Q) diag(1/D) [d_out, d_in]: the weight forward() applies (float32).")
      .def_prop_ro("scales", &PyOperator::scales, "The per-channel scales D in use [d_in] (float32).")
      .def_prop_ro("quantized", &PyOperator::quantized, "A copy of the current quantization of W·diag(D) (or of W - B A).")
      .def_prop_ro("factors", &PyOperator::factors, "The low-rank factors (A [rank, d_in], B [d_out, rank]); W ~ B A + residual.")
      .def_prop_ro("bits_per_weight", &PyOperator::bits_per_weight,
                   "Storage per weight: codes, scales, zero points and the fp32 low-rank factors.")
      .def_prop_ro("chosen_alpha", &PyOperator::chosen_alpha,
                   "The exponent in use: the one chosen by alpha='auto' or static AWQ (None before calibration), the "
                   "fixed alpha, None for RTN.")
      .def_prop_ro("candidate_errors", &PyOperator::candidate_errors,
                   "alpha='auto': the error of each alpha_grid candidate at the last calibration (empty otherwise).")
      .def_prop_ro("frozen", &PyOperator::frozen, "Static AWQ: whether the scales are fitted and frozen (None for other methods).")
      .def_prop_ro("tokens", &PyOperator::tokens, "Tokens in the statistics (fractional after decay).")
      .def_prop_ro("d_in", &PyOperator::d_in)
      .def_prop_ro("d_out", &PyOperator::d_out)
      .def_prop_ro("rank", &PyOperator::rank)
      .def_prop_ro("method", [](const PyOperator& o) { return o.options().method; })
      .def_prop_ro("bits", [](const PyOperator& o) { return o.options().bits; })
      .def_prop_ro("group", &PyOperator::resolved_group, "The resolved group size (d_in when per-channel).")
      .def_prop_ro("format", [](const PyOperator& o) { return std::string(format_label(parse_format(o.options().format))); })
      .def("__repr__", &PyOperator::repr);

  // Threads and instruction sets.
  m.def("set_num_threads", [](int n) {
          ttq::detail::require_range(n >= 1 && n <= 1024, "n", "a thread count in 1..1024", std::to_string(n));
          ttq::backend::set_executor(ttq::backend::thread_pool_executor(n));
        },
        "n"_a, "Replaces the library's thread pool by one of n threads (the calling thread counts as one).");
  m.def("num_threads", [] { return ttq::backend::current_executor()->concurrency(); },
        "Threads of the library's pool (default: TTQ_NUM_THREADS, else all hardware threads).");
  m.def("isa", [] { return std::string(ttq::backend::isa_name(ttq::backend::active_isa())); },
        "The instruction set the kernels of new operators use: TTQ_ISA if set, else the best this CPU supports.");
  m.def("best_isa", [] { return std::string(ttq::backend::isa_name(ttq::backend::best_isa())); },
        "The best instruction set both compiled in and supported by this CPU.");
  m.def("compiled_isas", [] {
          std::vector<std::string> names;
          for (auto isa : ttq::backend::compiled_isas()) names.emplace_back(ttq::backend::isa_name(isa));
          return names;
        },
        "The instruction sets this build contains, 'scalar' (the reference) first.");
  m.def("cpu_supports", [](const std::string& name) { return ttq::backend::cpu_supports(ttq::backend::parse_isa(name)); }, "isa"_a,
        "Whether this CPU can run the named instruction set.");
  m.def("set_isa", [](const std::string& name) { ttq::backend::set_active_isa(ttq::backend::parse_isa(name)); }, "isa"_a,
        "Makes the named instruction set ('scalar' is the reference oracle) the one new operators and quantize() use. "
        "Operators already built keep theirs.");

  // For the tests: the address of the fp32 data the kernels would read for x, and whether it is a copy.
  m.def("_input_address", [](ArrayLike x) {
    Matrix mx = to_matrix(x, "x", Kind::tokens);
    return std::make_pair(reinterpret_cast<std::uintptr_t>(mx.view.data), mx.copied);
  });
}

}  // namespace ttqpy

NB_MODULE(_ttq, m) { ttqpy::bind(m); }
