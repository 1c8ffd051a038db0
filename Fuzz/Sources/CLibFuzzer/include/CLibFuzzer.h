// libFuzzer's driver entry point (compiler-rt, LLVM 11+), declared for Swift.
//
// SwiftPM on Linux renames an executable target's entry point to
// `<Target>_main` and links it as `main`, which would hide libFuzzer's own
// main(). Each fuzz target therefore defines `<Target>_main` itself and hands
// control to libFuzzer here, with the same command line as libFuzzer's main.
#ifndef DROVER_CLIBFUZZER_H
#define DROVER_CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

typedef int (*DroverFuzzTestOneInput)(const uint8_t *data, size_t size);

int LLVMFuzzerRunDriver(int *argc, char ***argv, DroverFuzzTestOneInput callback);

#endif
