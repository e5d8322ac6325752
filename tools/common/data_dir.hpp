// Where the tools find their bundled model and texts at run time: the --data-dir flag, else the
// TTQ_DATA_DIR environment variable, else the install's data folder (share/ttq, reached from the
// executable's own location, so a moved or installed tree keeps working). The build tree mirrors
// the install layout (<build>/bin, <build>/share/ttq), so the same rule finds it there.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace ttq::llama {

/// The data folder to use, by the rule above; never fails (see bundled_file).
std::filesystem::path data_dir(const std::optional<std::string>& flag);

/// `name` inside data_dir(flag); throws LlamaError naming the folder, where it came from and
/// how to point elsewhere when the file is not there.
std::string bundled_file(const std::optional<std::string>& flag, const std::string& name);

}  // namespace ttq::llama
