// Checkpoint and state I/O by Hugging Face name: safetensors dtype names, tensors from borrowed bytes or file ranges,
// loading a state dict in place, and writing model or AdamW state as safetensors straight from the tensors.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <unordered_set>
#ifdef _WIN32
#include <io.h>
#else
#include <unistd.h>
#endif
#include "torch_session.h"

namespace bert {

static bool Fsync(std::FILE* f) {  // the bytes are on disk before the caller renames the file into place
#ifdef _WIN32
  return _commit(_fileno(f)) == 0;
#else
  return fsync(fileno(f)) == 0;
#endif
}

at::ScalarType DtypeOf(const std::string& d) {
  if (d == "F32") return at::kFloat;
  if (d == "F16") return at::kHalf;
  if (d == "BF16") return at::kBFloat16;
  if (d == "F64") return at::kDouble;
  if (d == "I64") return at::kLong;
  if (d == "I32") return at::kInt;
  if (d == "U8") return at::kByte;
  if (d == "BOOL") return at::kBool;
  throw std::invalid_argument("unsupported dtype '" + d + "'");
}

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kDouble: return "F64";
    case at::kLong: return "I64";
    case at::kInt: return "I32";
    case at::kByte: return "U8";
    case at::kBool: return "BOOL";
    default: throw std::invalid_argument("no safetensors name for this dtype");
  }
}

static std::string ShapeStr(at::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Reads n bytes at offset of file into dst: a checkpoint's tensor goes from disk into its tensor with no copy between.
static void ReadAt(const std::string& file, uint64_t offset, void* dst, size_t n, const std::string& name) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(file.c_str(), "rb"), &std::fclose);
  if (!f) throw std::runtime_error("cannot read " + file + ": " + std::strerror(errno));
#ifdef _WIN32
  const bool seeked = _fseeki64(f.get(), static_cast<int64_t>(offset), SEEK_SET) == 0;
#else
  const bool seeked = fseeko(f.get(), static_cast<off_t>(offset), SEEK_SET) == 0;
#endif
  if (!seeked || std::fread(dst, 1, n, f.get()) != n)
    throw std::runtime_error(file + ": the file ended before tensor " + name + " (truncated or changed while reading?)");
}

// The one copy into the tensor: borrowed bytes (any alignment) or a file range -> a fresh tensor.
at::Tensor FromBlob(const Blob& b, const at::Device& device) {
  at::Tensor t = at::empty(b.shape, DtypeOf(b.dtype));
  if (static_cast<size_t>(t.nbytes()) != b.nbytes)
    throw std::invalid_argument("tensor '" + b.name + "': " + std::to_string(b.nbytes) + " bytes for shape " +
                                ShapeStr(b.shape) + " of " + b.dtype);
  if (b.nbytes && !b.file.empty()) ReadAt(b.file, b.offset, t.data_ptr(), b.nbytes, b.name);
  else if (b.nbytes) std::memcpy(t.data_ptr(), b.data, b.nbytes);
  return device.is_cpu() ? t : t.to(device);
}

Blob ToBlob(const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kCPU).contiguous();
  Blob b;
  b.name = name;
  b.dtype = DtypeName(c.scalar_type());
  b.shape = c.sizes().vec();
  b.nbytes = c.nbytes();
  b.owned.resize(b.nbytes);
  if (b.nbytes) std::memcpy(b.owned.data(), c.data_ptr(), b.nbytes);
  return b;
}

LoadReport TorchSession::Load(const std::vector<Blob>& blobs) {
  at::NoGradGuard no_grad;
  LoadReport report;
  std::unordered_set<std::string> seen;
  // Check every shape first so a bad checkpoint leaves the model untouched.
  for (const Blob& b : blobs) {
    const Param* p = store_.find(b.name);
    if (!p) continue;
    if (p->value.sizes() != at::IntArrayRef(b.shape))
      throw std::invalid_argument("size mismatch for " + b.name + ": the checkpoint has shape " + ShapeStr(b.shape) +
                                  ", the model (from config.json) needs " + ShapeStr(p->value.sizes()));
    if (!at::isFloatingType(DtypeOf(b.dtype)))
      throw std::invalid_argument("tensor " + b.name + " has dtype " + b.dtype + "; a floating-point dtype is needed");
  }
  for (const Blob& b : blobs) {
    Param* p = store_.find(b.name);
    if (!p) {
      report.unexpected.push_back(b.name);
      continue;
    }
    try {  // one tensor at a time, so loading never holds a second copy of the model
      p->value.copy_(FromBlob(b, at::kCPU));
    } catch (const std::exception& e) {
      if (seen.empty()) throw;
      throw std::runtime_error(std::string(e.what()) + "; " + std::to_string(seen.size()) +
                               " tensor(s) had already been loaded, so the model now holds a mix: load it again");
    }
    seen.insert(b.name);
  }
  for (const auto& p : store_.params())
    if (!seen.count(p.name)) report.missing.push_back(p.name);
  return report;
}

std::vector<std::pair<std::string, at::Tensor>> TorchSession::Named(State what) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (what == State::kRng) {
    out.emplace_back("cpu", cpu_gen_.get_state());
    if (device_gen_.defined()) out.emplace_back("cuda", device_gen_.get_state());
    return out;
  }
  if (what == State::kModel) {
    for (const auto& p : store_.params()) out.emplace_back(p.name, p.value.to(at::kFloat));
    return out;
  }
  if (!optimizer_) throw std::logic_error("saveOptimizerState: no optimizer (call setOptimizer first)");
  return optimizer_->State();
}

std::vector<Blob> TorchSession::StateDict() {
  std::vector<Blob> out;
  for (const auto& [name, t] : Named(State::kModel)) out.push_back(ToBlob(name, t));
  return out;
}

static std::string JsonString(const std::string& s) {
  std::string r = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') r += '\\', r += static_cast<char>(ch);
    else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      r += buf;
    } else r += static_cast<char>(ch);
  }
  return r + "\"";
}

void TorchSession::SaveSafetensors(const std::string& file, State what,
                                   const std::vector<std::pair<std::string, std::string>>& metadata) {
  at::NoGradGuard no_grad;
  auto named = Named(what);
  for (auto& [name, t] : named) t = t.detach().contiguous();  // no copy for the CPU's contiguous parameters
  // Header: {"__metadata__": {...}, name: {dtype, shape, data_offsets}, ...}, padded with spaces to 8 bytes.
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i) {
      if (i) h += ',';
      h += JsonString(metadata[i].first);
      h += ':';
      h += JsonString(metadata[i].second);
    }
    h += "}";
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : named) {
    std::string shape;
    for (int64_t d : t.sizes()) {
      if (!shape.empty()) shape += ',';
      shape += std::to_string(d);
    }
    const uint64_t end = offset + t.nbytes();
    if (h.size() > 1) h += ',';
    h += JsonString(name);
    h += ":{\"dtype\":\"" + DtypeName(t.scalar_type()) + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
         std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(file.c_str(), "wb"), &std::fclose);
  auto fail = [&](int err) { return std::runtime_error("cannot write " + file + ": " + std::strerror(err)); };
  if (!f) throw fail(errno);
  auto put = [&](const void* data, size_t n) {
    if (n && std::fwrite(data, 1, n, f.get()) != n) throw fail(errno);
  };
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));  // little-endian
  put(len, 8);
  put(h.data(), h.size());
  for (const auto& [name, t] : named) {
    at::Tensor c = t.is_cpu() ? t : t.to(at::kCPU);  // a GPU tensor is copied one at a time
    put(c.data_ptr(), c.nbytes());
  }
  if (std::fflush(f.get()) != 0 || !Fsync(f.get())) throw fail(errno);
  if (std::fclose(f.release()) != 0) throw fail(errno);
}

}  // namespace bert
