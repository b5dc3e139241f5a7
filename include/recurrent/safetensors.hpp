// recurrent — safetensors.hpp: weight files in the safetensors format, by PyTorch's names.
//
// Needs nlohmann/json (Debian: nlohmann-json3-dev; CMake: nlohmann_json::nlohmann_json),
// which is why the umbrella header recurrent.hpp does not include this one.
//
// The format (https://github.com/huggingface/safetensors):
//
//     8 bytes      N, the header length, unsigned 64-bit little-endian
//     N bytes      a JSON object: for each tensor name
//                    {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}
//                  and optionally "__metadata__": {string: string}
//     the rest     the data: each tensor's bytes at [begin, end) of this buffer, row-major
//                  (C order), little-endian
//
// Reading treats the file as untrusted: every number in the header is checked before it is
// used, and a bad file throws SafetensorsError naming the file and the problem. Loading is
// all-or-nothing: every tensor is read into a temporary and checked first, then the model's
// tensors are assigned, which cannot fail.
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/state_dict.hpp>

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

/// A weight file that cannot be read or written: the message names the file and the problem.
/// Derives from std::invalid_argument, the library's caller-error type.
class SafetensorsError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Element types: every one may be read into a model; F32 and F64 may be written.
enum class Dtype { F16, BF16, F32, F64 };

/// What a safetensors file holds, without its data (inspectSafetensors()).
struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;                 ///< as written in the file: "F32", "F64", "I64", ...
  std::vector<std::uint64_t> shape;  ///< row-major, outermost first, as PyTorch's shape
  std::uint64_t begin = 0, end = 0;  ///< byte range in the data buffer
};
struct SafetensorsInfo {
  std::vector<SafetensorsTensorInfo> tensors;   ///< sorted by name
  std::map<std::string, std::string> metadata;  ///< "__metadata__"
};

namespace detail {

/// The largest header accepted (the reference implementation's limit too).
constexpr std::uint64_t kMaxSafetensorsHeader = 100ull * 1024 * 1024;

template <typename... Parts>
[[noreturn]] void fileError(const char* where, const std::string& source, const Parts&... parts) {
  std::ostringstream message;
  message << "recurrent: " << where << ": " << source << ": ";
  (message << ... << parts);
  throw SafetensorsError(message.str());
}

/// Bytes per element of every dtype the format defines; 0 for an unknown name.
inline std::uint64_t dtypeBytes(const std::string& dtype) {
  static const std::map<std::string, std::uint64_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

inline const char* dtypeName(Dtype dtype) {
  switch (dtype) {
    case Dtype::F16:
      return "F16";
    case Dtype::BF16:
      return "BF16";
    case Dtype::F32:
      return "F32";
    case Dtype::F64:
      return "F64";
  }
  return "?";
}

inline bool parseDtype(const std::string& name, Dtype& dtype) {
  if (name == "F32")
    dtype = Dtype::F32;
  else if (name == "F64")
    dtype = Dtype::F64;
  else if (name == "F16")
    dtype = Dtype::F16;
  else if (name == "BF16")
    dtype = Dtype::BF16;
  else
    return false;
  return true;
}

inline std::uint64_t readLE(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int k = bytes - 1; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}
inline void writeLE(std::uint8_t* p, std::uint64_t v, int bytes) {
  for (int k = 0; k < bytes; ++k) {
    p[k] = static_cast<std::uint8_t>(v & 0xffu);
    v >>= 8;
  }
}

/// IEEE binary16 to double (exact).
inline double halfToDouble(std::uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  double v;
  if (exponent == 0) {
    v = std::ldexp(static_cast<double>(mantissa), -24);
  } else if (exponent == 31) {
    v = mantissa == 0 ? std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(static_cast<double>(mantissa + 1024), exponent - 25);
  }
  return sign != 0 ? -v : v;
}

/// One element of a little-endian buffer, whatever the host's byte order.
inline double readElement(const std::uint8_t* p, Dtype dtype) {
  switch (dtype) {
    case Dtype::F32: {
      const auto bits = static_cast<std::uint32_t>(readLE(p, 4));
      float f;
      std::memcpy(&f, &bits, 4);
      return static_cast<double>(f);
    }
    case Dtype::F64: {
      const std::uint64_t bits = readLE(p, 8);
      double d;
      std::memcpy(&d, &bits, 8);
      return d;
    }
    case Dtype::F16:
      return halfToDouble(static_cast<std::uint16_t>(readLE(p, 2)));
    case Dtype::BF16: {
      const auto bits = static_cast<std::uint32_t>(readLE(p, 2) << 16);
      float f;
      std::memcpy(&f, &bits, 4);
      return static_cast<double>(f);
    }
  }
  return 0;
}

inline void writeElement(std::uint8_t* p, double value, Dtype dtype) {
  if (dtype == Dtype::F32) {
    const auto f = static_cast<float>(value);
    std::uint32_t bits;
    std::memcpy(&bits, &f, 4);
    writeLE(p, bits, 4);
  } else {
    std::uint64_t bits;
    std::memcpy(&bits, &value, 8);
    writeLE(p, bits, 8);
  }
}

inline std::string shapeString(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

/// A parsed and checked file held in memory: the header, and where the data starts.
struct ParsedSafetensors {
  SafetensorsInfo info;
  const std::uint8_t* data = nullptr;
  std::uint64_t dataSize = 0;
};

inline std::uint64_t headerNumber(const char* where, const std::string& source,
                                  const std::string& tensor, const char* field,
                                  const nlohmann::json& value) {
  if (!value.is_number_unsigned()) {
    fileError(where, source, "tensor '", tensor, "': ", field,
              " must hold non-negative integers, got a ", value.type_name());
  }
  return value.get<std::uint64_t>();
}

/// Parses and checks the header of the file `bytes` (named `source` in messages). Checks the
/// header length against the limit and the file, the JSON, every entry's fields, the byte
/// length of every tensor against its dtype and shape, and that the tensors' byte ranges lie
/// inside the data and do not overlap.
inline ParsedSafetensors parseSafetensors(const std::uint8_t* bytes, std::size_t size,
                                          const std::string& source, const char* where) {
  if (size < 8) {
    fileError(where, source, "file is truncated: ", size,
              " bytes, too short for the 8-byte header length");
  }
  const std::uint64_t headerSize = readLE(bytes, 8);
  if (headerSize > kMaxSafetensorsHeader) {
    fileError(where, source, "header length ", headerSize, " bytes is over the limit of ",
              kMaxSafetensorsHeader, " bytes (100 MB)");
  }
  if (headerSize > size - 8) {
    fileError(where, source, "header length ", headerSize, " bytes runs past the end of the file (",
              size, " bytes): the file is truncated or not a safetensors file");
  }
  const auto* headerBegin = bytes + 8;
  const auto* headerEnd = headerBegin + headerSize;
  if (headerSize < 2 || *headerBegin != '{') {
    fileError(where, source, "header is not a JSON object (it must start with '{')");
  }

  // Duplicate names are an error (JSON parsers differ on which one wins).
  std::set<std::string> keys;
  std::string duplicate;
  const nlohmann::json::parser_callback_t noteKeys =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string()) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!keys.insert(key).second && duplicate.empty()) duplicate = key;
        }
        return true;
      };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(headerBegin, headerEnd, noteKeys);
  } catch (const nlohmann::json::exception& e) {
    fileError(where, source, "header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fileError(where, source, "header is not a JSON object");
  if (!duplicate.empty()) fileError(where, source, "header names '", duplicate, "' twice");

  ParsedSafetensors out;
  out.data = headerEnd;
  out.dataSize = static_cast<std::uint64_t>(size) - 8 - headerSize;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fileError(where, source, "__metadata__ must be a JSON object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          fileError(where, source, "__metadata__ value of '", key, "' must be a string, got a ",
                    value.type_name());
        }
        out.info.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    SafetensorsTensorInfo t;
    t.name = name;
    if (!entry.is_object()) {
      fileError(where, source, "tensor '", name, "' must be a JSON object, got a ",
                entry.type_name());
    }
    const auto dtype = entry.find("dtype");
    const auto shape = entry.find("shape");
    const auto offsets = entry.find("data_offsets");
    if (dtype == entry.end() || shape == entry.end() || offsets == entry.end()) {
      fileError(where, source, "tensor '", name, "' needs dtype, shape and data_offsets");
    }
    if (!dtype->is_string()) {
      fileError(where, source, "tensor '", name, "': dtype must be a string, got a ",
                dtype->type_name());
    }
    t.dtype = dtype->get<std::string>();
    const std::uint64_t elementBytes = dtypeBytes(t.dtype);
    if (elementBytes == 0) fileError(where, source, "tensor '", name, "': unknown dtype ", t.dtype);
    if (!shape->is_array()) {
      fileError(where, source, "tensor '", name, "': shape must be an array, got a ",
                shape->type_name());
    }
    // Bytes = Π shape · element size, each product checked against the data size (so that
    // it cannot overflow).
    std::uint64_t numBytes = elementBytes;
    bool tooBig = false;
    for (const auto& d : *shape) {
      const std::uint64_t dim = headerNumber(where, source, name, "shape", d);
      t.shape.push_back(dim);
      if (dim != 0 && numBytes > out.dataSize / dim) tooBig = true;
      numBytes = tooBig ? 0 : numBytes * dim;
    }
    if (!offsets->is_array() || offsets->size() != 2) {
      fileError(where, source, "tensor '", name,
                "': data_offsets must be an array of two integers [begin, end]");
    }
    t.begin = headerNumber(where, source, name, "data_offsets", (*offsets)[0]);
    t.end = headerNumber(where, source, name, "data_offsets", (*offsets)[1]);
    if (t.begin > t.end) {
      fileError(where, source, "tensor '", name, "': data_offsets [", t.begin, ", ", t.end,
                "] end before they begin");
    }
    if (t.end > out.dataSize) {
      fileError(where, source, "tensor '", name, "': data_offsets [", t.begin, ", ", t.end,
                "] lie outside the data (", out.dataSize, " bytes): the file is truncated?");
    }
    if (tooBig || t.end - t.begin != numBytes) {
      fileError(where, source, "tensor '", name, "': data_offsets [", t.begin, ", ", t.end,
                "] hold ", t.end - t.begin, " bytes, but ", t.dtype, " of shape ",
                shapeString(t.shape), " needs ",
                tooBig ? std::string("more than the whole data") : std::to_string(numBytes));
    }
    out.info.tensors.push_back(std::move(t));
  }

  // No two tensors may share a byte.
  std::vector<const SafetensorsTensorInfo*> byBegin;
  for (const auto& t : out.info.tensors) {
    if (t.end > t.begin) byBegin.push_back(&t);
  }
  std::sort(byBegin.begin(), byBegin.end(),
            [](const auto* a, const auto* b) { return a->begin < b->begin; });
  for (std::size_t k = 1; k < byBegin.size(); ++k) {
    if (byBegin[k]->begin < byBegin[k - 1]->end) {
      fileError(where, source, "tensors '", byBegin[k - 1]->name, "' and '", byBegin[k]->name,
                "' overlap in the data (data_offsets [", byBegin[k - 1]->begin, ", ",
                byBegin[k - 1]->end, "] and [", byBegin[k]->begin, ", ", byBegin[k]->end, "])");
    }
  }
  return out;
}

inline std::vector<std::uint8_t> readWholeFile(const std::string& path, const char* where) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (error || !std::filesystem::exists(status)) fileError(where, path, "cannot open the file");
  if (!std::filesystem::is_regular_file(status)) fileError(where, path, "is not a regular file");
  const std::uintmax_t size = std::filesystem::file_size(path, error);
  std::ifstream in(path, std::ios::binary);
  if (error || !in) fileError(where, path, "cannot open the file");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (size > 0 &&
      !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    fileError(where, path, "cannot read the file");
  }
  return bytes;
}

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
