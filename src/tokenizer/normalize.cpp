#include "tokenizer/normalize.h"

#include <stdexcept>
#include <vector>

#ifndef VIREO_NO_ICU
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#endif

namespace vireo {

bool nfc_available() {
#ifdef VIREO_NO_ICU
  return false;
#else
  return true;
#endif
}

std::string to_nfc(std::string_view in) {
  bool ascii = true;
  for (unsigned char c : in) ascii = ascii && c < 0x80;
  if (ascii) return std::string(in);
#ifdef VIREO_NO_ICU
  throw std::runtime_error("this tokenizer asks for NFC normalization, which needs ICU (not in this build)");
#else
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* nfc = unorm2_getNFCInstance(&err);
  if (U_FAILURE(err)) throw std::runtime_error(std::string("ICU NFC normalizer: ") + u_errorName(err));
  // UTF-8 -> UTF-16 (invalid input: pass the text through unchanged)
  int32_t n16 = 0;
  err = U_ZERO_ERROR;
  u_strFromUTF8(nullptr, 0, &n16, in.data(), static_cast<int32_t>(in.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) return std::string(in);
  std::vector<UChar> src(static_cast<size_t>(n16) + 1);
  err = U_ZERO_ERROR;
  u_strFromUTF8(src.data(), n16 + 1, nullptr, in.data(), static_cast<int32_t>(in.size()), &err);
  if (U_FAILURE(err)) return std::string(in);
  if (unorm2_isNormalized(nfc, src.data(), n16, &err) && U_SUCCESS(err)) return std::string(in);
  err = U_ZERO_ERROR;
  const int32_t cap = 3 * n16 + 16;  // NFC output is at most 3x the input in UTF-16 units
  std::vector<UChar> dst(static_cast<size_t>(cap));
  const int32_t nd = unorm2_normalize(nfc, src.data(), n16, dst.data(), cap, &err);
  if (U_FAILURE(err)) throw std::runtime_error(std::string("ICU NFC normalization: ") + u_errorName(err));
  int32_t n8 = 0;
  err = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &n8, dst.data(), nd, &err);
  std::string out(static_cast<size_t>(n8), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), n8, nullptr, dst.data(), nd, &err);
  if (U_FAILURE(err) && err != U_STRING_NOT_TERMINATED_WARNING)
    throw std::runtime_error(std::string("ICU NFC normalization: ") + u_errorName(err));
  return out;
#endif
}

}  // namespace vireo
