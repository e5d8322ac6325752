// Quantize one linear layer with RTN, static AWQ and TTQ at 2-5 bits and print the relative
// activation-aware error E (paper Eq. 2) of each: the smallest demonstration of what TTQ is for.
//
// The layer is a real one from the bundled stories260K model by default (--tensor NAME picks
// another, --random a seeded random one). The prompt's activations are synthetic with LLM-like
// outlier channels; static AWQ is calibrated on activations whose outliers sit on *other*
// channels (a domain shift), and on the prompt itself as the best case it can reach.
//
// Usage: ttq-layer-error [--tensor NAME | --random] [--d-out N] [--d-in N] [--tokens T]
//                        [--group G] [--seed S] [--data-dir DIR]
#include <ttq/ttq.hpp>

#include "common/cli.hpp"
#include "llama/gguf.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>

namespace {

ttq::RowMatrix normal(ttq::Index rows, ttq::Index cols, std::mt19937& rng, float stddev) {
  std::normal_distribution<float> dist(0.0f, stddev);
  ttq::RowMatrix m(rows, cols);
  for (ttq::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

// Activations with a handful of channels 20-100x larger than the rest.
ttq::RowMatrix with_outliers(ttq::Index tokens, ttq::Index d_in, std::mt19937& rng) {
  ttq::RowMatrix x = normal(tokens, d_in, rng, 1.0f);
  std::uniform_int_distribution<ttq::Index> channel(0, d_in - 1);
  for (int k = 0; k < 6; ++k) x.col(channel(rng)) *= 20.0f + 16.0f * static_cast<float>(k);
  return x;
}

template <int Bits>
void print_row(const ttq::RowMatrix& w, const ttq::RowMatrix& prompt, const ttq::RowMatrix& shifted, ttq::Index group) {
  using Q = ttq::Quantizer<Bits, ttq::Dynamic>;
  const Q quantizer({.group = group});
  ttq::RtnOperator<Q> rtn(w, {}, quantizer);
  ttq::StaticAwqOperator<Q> awq_shifted(w, {}, quantizer), awq_prompt(w, {}, quantizer);
  awq_shifted.calibrate(shifted);
  awq_prompt.calibrate(prompt);
  ttq::OnlineAWQ<Q> ttq_op(w, {}, quantizer);  // the default statistic (max norm, alpha 0.1)
  ttq_op.calibrate(prompt);
  ttq::OnlineAWQ<Q, ttq::AdaptiveExponent<1>> ttq_auto(w, {}, quantizer);
  ttq_auto.calibrate(prompt);
  std::printf("| %d | %.3e | %.3e | %.3e | %.3e | %.3e |\n", Bits, ttq::relative_error(prompt, w, rtn.effective_weight()),
              ttq::relative_error(prompt, w, awq_shifted.effective_weight()),
              ttq::relative_error(prompt, w, awq_prompt.effective_weight()),
              ttq::relative_error(prompt, w, ttq_op.effective_weight()),
              ttq::relative_error(prompt, w, ttq_auto.effective_weight()));
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0) {
      std::puts("usage: ttq-layer-error [--tensor NAME | --random] [--d-out N] [--d-in N] [--tokens T] [--group G] [--seed S]\n"
                "                       [--threads N] [--data-dir DIR]\n"
                "  --d-out/--d-in: the shape of the --random layer (1..16384, default 256); --tokens 1..65536;\n"
                "  --group 0 = per-channel (default 32); --seed 0..4294967295\n"
                "  default: blk.0.ffn_down.weight of the bundled stories260K (64 x 172: ragged groups)");
      return ttq::llama::cli::finish_output("ttq-layer-error");
    }
  try {
    using ttq::llama::cli::Flags;
    std::set<std::string> valued{"tensor", "d-out", "d-in", "tokens", "group", "seed"};
    valued.insert(ttq::llama::cli::runtime_flags().begin(), ttq::llama::cli::runtime_flags().end());
    const Flags flags(argc, argv, valued, {"random"});
    ttq::llama::cli::configure_threads(flags);
    const bool random = flags.has("random");
    // The shape flags describe the random layer; the real layer has its own shape.
    for (const char* key : {"d-out", "d-in"})
      if (flags.has(key) && !random)
        throw ttq::llama::LlamaError(std::string("--") + key + " applies only with --random (the bundled layer has its own shape)");
    if (flags.has("tensor") && random) throw ttq::llama::LlamaError("--tensor and --random exclude each other");
    ttq::Index d_out = flags.get_int("d-out", 256, 1, 1 << 14), d_in = flags.get_int("d-in", 256, 1, 1 << 14);
    const ttq::Index tokens = flags.get_int("tokens", 128, 1, 1 << 16);
    const ttq::Index group = flags.get_int("group", 32, 0, ttq::llama::cli::kMaxGroup);
    std::mt19937 rng(static_cast<unsigned>(flags.get_int("seed", 1, 0, 0xFFFFFFFFll)));
    ttq::RowMatrix w;
    std::string source = "seeded random";
    if (random) {
      w = normal(d_out, d_in, rng, 0.05f);
    } else {
      const std::string name = flags.get("tensor", "blk.0.ffn_down.weight");
      const auto file = ttq::llama::read_gguf_file(ttq::llama::cli::data_file(flags, "stories260K.gguf"));
      const auto* tensor = file.find_tensor(name);
      if (tensor == nullptr) throw ttq::llama::LlamaError("--tensor: no tensor '" + name + "' in stories260K");
      if (tensor->dims.size() != 2)
        throw ttq::llama::LlamaError("--tensor " + name + ": expected a matrix, got a tensor of " + std::to_string(tensor->dims.size()) +
                                     " dimension(s)");
      d_out = static_cast<ttq::Index>(tensor->rows());
      d_in = static_cast<ttq::Index>(tensor->cols());
      w = Eigen::Map<const ttq::RowMatrix>(tensor->data.data(), d_out, d_in);
      source = name + " of stories260K";
    }
    // The group against the layer, before any output (0: per-channel).
    ttq::llama::check_group(group);
    ttq::llama::check_group_for_rows(group, d_in, "the layer " + source + " [" + std::to_string(d_out) + ", " + std::to_string(d_in) + "]");
    const ttq::RowMatrix prompt = with_outliers(tokens, d_in, rng);
    const ttq::RowMatrix shifted = with_outliers(tokens, d_in, rng);
    std::printf("Relative activation-aware error E = ||X (W - W^)^T||^2 / ||X W^T||^2 (lower is better)\n");
    const std::string group_text = group == 0 ? std::string("per-channel") : "group " + std::to_string(group);
    std::printf("layer %s (%ldx%ld), %s, %ld synthetic prompt tokens with outlier channels\n\n", source.c_str(),
                static_cast<long>(d_out), static_cast<long>(d_in), group_text.c_str(), static_cast<long>(tokens));
    std::printf("| bits | RTN | AWQ (shifted calib) | AWQ (prompt calib) | TTQ | TTQ (auto alpha) |\n|---|---|---|---|---|---|\n");
    const ttq::Index resolved = group == 0 ? ttq::Index(ttq::PerChannel) : group;
    print_row<2>(w, prompt, shifted, resolved);
    print_row<3>(w, prompt, shifted, resolved);
    print_row<4>(w, prompt, shifted, resolved);
    print_row<5>(w, prompt, shifted, resolved);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ttq-layer-error: %s\n", e.what());
    return 2;
  }
  return ttq::llama::cli::finish_output("ttq-layer-error");
}
