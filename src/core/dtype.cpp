#include "core/dtype.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <string>

#include "quant/blocks.h"

namespace vireo {
namespace {

struct Entry {
  DType type;
  DTypeInfo info;
};

const Entry kTypes[] = {
    {DType::F32, {"F32", 1, 4, false}},
    {DType::F16, {"F16", 1, 2, false}},
    {DType::BF16, {"BF16", 1, 2, false}},
    {DType::F64, {"F64", 1, 8, false}},
    {DType::I8, {"I8", 1, 1, false}},
    {DType::I16, {"I16", 1, 2, false}},
    {DType::I32, {"I32", 1, 4, false}},
    {DType::I64, {"I64", 1, 8, false}},
    {DType::Q4_0, {"Q4_0", QK4_0, sizeof(BlockQ4_0), true}},
    {DType::Q4_1, {"Q4_1", QK4_1, sizeof(BlockQ4_1), true}},
    {DType::Q5_0, {"Q5_0", QK5_0, sizeof(BlockQ5_0), true}},
    {DType::Q5_1, {"Q5_1", QK5_1, sizeof(BlockQ5_1), true}},
    {DType::Q8_0, {"Q8_0", QK8_0, sizeof(BlockQ8_0), true}},
    {DType::Q8_1, {"Q8_1", QK8_1, sizeof(BlockQ8_1), true}},
    {DType::Q2_K, {"Q2_K", QK_K, sizeof(BlockQ2_K), true}},
    {DType::Q3_K, {"Q3_K", QK_K, sizeof(BlockQ3_K), true}},
    {DType::Q4_K, {"Q4_K", QK_K, sizeof(BlockQ4_K), true}},
    {DType::Q5_K, {"Q5_K", QK_K, sizeof(BlockQ5_K), true}},
    {DType::Q6_K, {"Q6_K", QK_K, sizeof(BlockQ6_K), true}},
    {DType::Q8_K, {"Q8_K", QK_K, sizeof(BlockQ8_K), true}},
};

}  // namespace

const DTypeInfo* dtype_info(uint32_t id) {
  for (const Entry& e : kTypes)
    if (static_cast<uint32_t>(e.type) == id) return &e.info;
  return nullptr;
}

const DTypeInfo& dtype_info(DType t) { return *dtype_info(static_cast<uint32_t>(t)); }

bool dtype_from_name(std::string_view name, DType* out) {
  std::string up(name);
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Entry& e : kTypes)
    if (e.info.name == up) {
      *out = e.type;
      return true;
    }
  return false;
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: value = man * 2^-24
      float f = std::ldexp(static_cast<float>(man), -24);
      std::memcpy(&bits, &f, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00);  // NaN
  if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // overflow -> inf
  if (abs < 0x38800000) {  // result is subnormal or zero: round man*2^24 to nearest even
    float a;
    std::memcpy(&a, &abs, 4);
    float scaled = a * 16777216.0f;  // 2^24
    uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));
    return static_cast<uint16_t>(sign | m);
  }
  // normal: rebias exponent, round mantissa to nearest even
  uint32_t r = abs - 0x38000000;  // exp - 112
  r += 0x0fff + ((r >> 13) & 1);
  return static_cast<uint16_t>(sign | (r >> 13));
}

uint16_t fp32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace vireo
