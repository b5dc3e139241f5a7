// recurrent — io/safetensors.hpp: weight files in the safetensors format, by PyTorch's names.
//
// Needs nlohmann/json (Debian: nlohmann-json3-dev; CMake: nlohmann_json::nlohmann_json),
// which is why the umbrella header recurrent.hpp does not include this one.
//
// The format and its checks: safetensors_format.hpp. Reading treats the file as untrusted: a bad
// file throws SafetensorsError naming the file and the problem. Loading is
// all-or-nothing: every tensor is read into a temporary and checked first, then the model's
// tensors are assigned, which cannot fail.
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/io/safetensors_format.hpp>
#include <recurrent/io/state_dict.hpp>

#include <nlohmann/json.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace recurrent {

namespace detail {

template <typename Scalar>
void loadParsed(const ParsedSafetensors& file, const StateDict<Scalar>& dict, bool strict,
                const std::string& source, const char* where) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  std::map<std::string, const SafetensorsTensorInfo*> byName;
  for (const auto& t : file.info.tensors) byName[t.name] = &t;

  // 1. Every tensor of the model: present, of a floating dtype and of the model's shape.
  std::vector<Matrix> loaded;
  loaded.reserve(dict.size());
  for (const auto& e : dict) {
    const auto it = byName.find(e.name);
    if (it == byName.end()) {
      std::string names;
      for (const auto& t : file.info.tensors) names += (names.empty() ? "" : ", ") + t.name;
      fileError(where, source, "missing tensor '", e.name,
                "' (the file holds: ", names.empty() ? std::string("no tensors") : names, ")");
    }
    const SafetensorsTensorInfo& t = *it->second;
    Dtype dtype;
    if (!parseDtype(t.dtype, dtype)) {
      fileError(where, source, "tensor '", e.name, "' has dtype ", t.dtype,
                "; a model loads F32, F64, F16 or BF16");
    }
    std::vector<std::uint64_t> expected{static_cast<std::uint64_t>(e.tensor.rows())};
    if (e.tensor.rank() == 2) expected.push_back(static_cast<std::uint64_t>(e.tensor.cols()));
    if (t.shape != expected) {
      fileError(where, source, "tensor '", e.name, "' has shape ", shapeString(t.shape),
                ", the model needs ", shapeString(expected));
    }
    const Eigen::Index rows = e.tensor.rows();
    const Eigen::Index cols = e.tensor.cols();
    const std::uint64_t bytes = dtypeBytes(t.dtype);
    Matrix m(rows, cols);
    const std::uint8_t* p = file.data + t.begin;
    for (Eigen::Index r = 0; r < rows; ++r) {  // row-major in the file
      for (Eigen::Index c = 0; c < cols; ++c, p += bytes) {
        m(r, c) = static_cast<Scalar>(readElement(p, dtype));
      }
    }
    loaded.push_back(std::move(m));
  }
  // 2. Nothing in the file that the model does not have.
  if (strict) {
    for (const auto& t : file.info.tensors) {
      if (dict.find(t.name) == nullptr) {
        fileError(
            where, source, "unexpected tensor '", t.name,
            "': the model has no tensor of that name (load with strict = false to ignore it)");
      }
    }
  }
  // 3. Commit: same shapes, so these assignments neither allocate nor throw.
  for (std::size_t k = 0; k < dict.size(); ++k) {
    const auto& h = dict[k].tensor;
    Eigen::Map<Matrix>(h.data(), h.rows(), h.cols()) = loaded[k];
  }
}

}  // namespace detail

/// Reads a safetensors file already in memory into the tensors of `dict` (`source` names it in
/// messages). All-or-nothing: throws SafetensorsError naming the problem, and leaves every
/// tensor of the model as it was, if the file is malformed, a tensor of the model is missing
/// from it or has another shape, or its dtype is not a floating one (F32, F64, F16, BF16; any
/// of them loads into a float or double model). With `strict`, a tensor in the file that the
/// model does not have is an error too (PyTorch's load_state_dict(strict=True)).
template <typename Scalar>
void loadSafetensors(const std::uint8_t* bytes, std::size_t size, const StateDict<Scalar>& dict,
                     const std::string& source = "<memory>", bool strict = true) {
  const char* where = "loadSafetensors";
  const detail::ParsedSafetensors file = detail::parseSafetensors(bytes, size, source, where);
  detail::loadParsed(file, dict, strict, source, where);
}

/// Reads the safetensors file `path` into the tensors of `dict`, all or nothing (see above).
template <typename Scalar>
void loadSafetensors(const std::string& path, const StateDict<Scalar>& dict, bool strict = true) {
  const std::vector<std::uint8_t> bytes = detail::readWholeFile(path, "loadSafetensors");
  loadSafetensors(bytes.data(), bytes.size(), dict, path, strict);
}

/// The names, dtypes, shapes and metadata of a safetensors file, checked as loading checks
/// them.
inline SafetensorsInfo inspectSafetensors(const std::string& path) {
  const std::vector<std::uint8_t> bytes = detail::readWholeFile(path, "inspectSafetensors");
  return detail::parseSafetensors(bytes.data(), bytes.size(), path, "inspectSafetensors").info;
}

/// The tensors of `dict` as a safetensors file, in `dtype` (F32 or F64), in the dictionary's
/// order, with `metadata` as "__metadata__" (by default {"format": "pt"}, as PyTorch writers
/// put it). The header is padded with spaces to a multiple of 8 bytes.
template <typename Scalar>
std::vector<std::uint8_t> serializeSafetensors(
    const StateDict<Scalar>& dict,
    Dtype dtype = std::is_same<Scalar, double>::value ? Dtype::F64 : Dtype::F32,
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}}) {
  const char* where = "saveSafetensors";
  if (dtype != Dtype::F32 && dtype != Dtype::F64) {
    detail::fail(where, ": files are written in F32 or F64, got ", detail::dtypeName(dtype));
  }
  const std::uint64_t elementBytes = dtype == Dtype::F32 ? 4 : 8;
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& e : dict) {
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    shape.push_back(e.tensor.rows());
    if (e.tensor.rank() == 2) shape.push_back(e.tensor.cols());
    const std::uint64_t bytes = static_cast<std::uint64_t>(e.tensor.size()) * elementBytes;
    header[e.name] = {{"dtype", detail::dtypeName(dtype)},
                      {"shape", shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::uint8_t> out(8 + text.size() + offset);
  detail::writeLE(out.data(), text.size(), 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::uint8_t* p = out.data() + 8 + text.size();
  for (const auto& e : dict) {
    const auto* data = e.tensor.data();
    const Eigen::Index rows = e.tensor.rows();
    const Eigen::Index cols = e.tensor.cols();
    for (Eigen::Index r = 0; r < rows; ++r) {  // row-major in the file
      for (Eigen::Index c = 0; c < cols; ++c, p += elementBytes) {
        detail::writeElement(p, static_cast<double>(data[c * rows + r]), dtype);
      }
    }
  }
  return out;
}

/// Writes the tensors of `dict` to the safetensors file `path` (see serializeSafetensors). The
/// file is written beside `path` first and renamed over it at the end, so a failed save leaves
/// any previous file whole. Throws SafetensorsError if the file cannot be written.
template <typename Scalar>
void saveSafetensors(const std::string& path, const StateDict<Scalar>& dict,
                     Dtype dtype = std::is_same<Scalar, double>::value ? Dtype::F64 : Dtype::F32,
                     const std::map<std::string, std::string>& metadata = {{"format", "pt"}}) {
  const char* where = "saveSafetensors";
  const std::vector<std::uint8_t> bytes = serializeSafetensors(dict, dtype, metadata);
  const std::string temporary = path + ".partial";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) detail::fileError(where, path, "cannot open ", temporary, " for writing");
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(temporary.c_str());
      detail::fileError(where, path, "cannot write ", temporary);
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    detail::fileError(where, path, "cannot rename ", temporary, " to it");
  }
}

}  // namespace recurrent
