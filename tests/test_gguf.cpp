#include <gtest/gtest.h>
#include "gguf/gguf.h"
TEST(Gguf, Placeholder) { EXPECT_EQ(1, 1); }
