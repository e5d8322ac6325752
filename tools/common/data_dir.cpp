#include "common/data_dir.hpp"

#include <cstdlib>
#include <system_error>

#include "llama/error.hpp"

namespace ttq::llama {
namespace {

enum class Source { flag, environment, install };

struct Found {
  std::filesystem::path dir;
  Source source;
};

Found locate(const std::optional<std::string>& flag) {
  if (flag) return {*flag, Source::flag};
  if (const char* env = std::getenv("TTQ_DATA_DIR"); env != nullptr && *env != '\0') return {env, Source::environment};
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path base = ec ? std::filesystem::current_path() : exe.parent_path();
  return {(base / TTQ_TOOLS_DATA_RELATIVE).lexically_normal(), Source::install};
}

}  // namespace

std::filesystem::path data_dir(const std::optional<std::string>& flag) { return locate(flag).dir; }

std::string bundled_file(const std::optional<std::string>& flag, const std::string& name) {
  const Found found = locate(flag);
  const std::filesystem::path file = found.dir / name;
  std::error_code ec;
  if (std::filesystem::is_regular_file(file, ec)) return file.string();
  const char* origin = found.source == Source::flag          ? "--data-dir"
                       : found.source == Source::environment ? "TTQ_DATA_DIR"
                                                             : "the install's data folder next to the executable";
  throw LlamaError("bundled data file '" + name + "' not found in '" + found.dir.string() + "' (from " + origin +
                   "); pass --data-dir DIR or set TTQ_DATA_DIR to the folder holding the bundled model and texts");
}

}  // namespace ttq::llama
