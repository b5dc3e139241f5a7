// recurrent — io/safetensors_format.hpp: the safetensors file format, read as untrusted input.
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
// Every number in the header is checked before it is used, and a bad file throws
// SafetensorsError naming the file and the problem. Included by safetensors.hpp, which reads
// and writes a model's tensors with it; needs nlohmann/json.
#pragma once

#include <recurrent/detail/errors.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
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

/// One tensor of a safetensors file, without its data (SafetensorsInfo::tensors).
struct SafetensorsTensorInfo {
  std::string name;                  ///< the tensor's name in the header
  std::string dtype;                 ///< as written in the file: "F32", "F64", "I64", ...
  std::vector<std::uint64_t> shape;  ///< row-major, outermost first, as PyTorch's shape
  /// The offset of the first byte in the data buffer (the bytes after the header).
  std::uint64_t begin = 0, end = 0;  ///< one past the last: the bytes [begin, end) are the tensor's
};
/// What a safetensors file holds, without its data (inspectSafetensors()).
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

}  // namespace detail
}  // namespace recurrent
