// Intentionally empty: SwiftPM needs one source file in a C target. The
// header declares LLVMFuzzerRunDriver, which -sanitize=fuzzer links in.
#include "CLibFuzzer.h"
