// Reading the reference files the tests compare against (../shared/fixtures).
#pragma once
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace vireo::test_files {

// The whole file, bytes as they are ("" when it cannot be read).
inline std::string read_file(const std::string& path) {
  std::stringstream ss;
  ss << std::ifstream(path, std::ios::binary).rdbuf();
  return ss.str();
}

// The token ids on the "sequence:" lines of a golden *.tokens.txt file, in order.
inline std::vector<int32_t> read_token_sequence(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<int32_t> seq;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("sequence:", 0) != 0) continue;
    std::istringstream ls(line.substr(9));
    int32_t t;
    while (ls >> t) seq.push_back(t);
  }
  return seq;
}

inline std::string rstrip_newlines(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

}  // namespace vireo::test_files
