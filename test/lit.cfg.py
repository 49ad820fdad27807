# lit configuration of the attn test suite.
import os
import sys

import lit.formats
from lit.llvm import llvm_config

config.name = "ATTN"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "e2e"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.attn_obj_root, "test")

config.substitutions.append(("%attn_src", config.attn_src_root))
# The Python that runs lit, for helper scripts (test/dialect/mutate.py).
config.substitutions.append(("%python", sys.executable))
llvm_config.use_default_substitutions()

# FileCheck, not and count come from the LLVM 22 tools; our tools from build/bin.
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
tool_dirs = [config.attn_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["attn-opt", "attn-run", "attnc"], tool_dirs)

if config.attn_have_cuda:
    config.available_features.add("cuda-toolkit")
