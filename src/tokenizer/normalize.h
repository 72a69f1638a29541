// Unicode normalization for tokenizers whose tokenizer.json asks for it (Qwen2/3: NFC), via ICU.
#pragma once
#include <string>
#include <string_view>

namespace vireo {

// True when this build can normalize (ICU present; the WASM build has none).
bool nfc_available();
// `in` in Normalization Form C. ASCII text is returned as it is without calling ICU. Invalid UTF-8 is passed
// through unchanged (the tokenizer then sees the same bytes it would without normalization). Throws
// std::runtime_error when the build has no ICU.
std::string to_nfc(std::string_view in);

}  // namespace vireo
