// swift-tools-version:6.0
//
// libFuzzer targets for Drover's hostile-input surfaces (issue 5, item 4).
//
// A separate package so the main build never sees -sanitize=fuzzer. The main
// package exports only FastCGI as a product (DroverConfig is internal to it),
// so instead of a path dependency this package compiles the very same
// sources through symlinks: Sources/FastCGI and Sources/DroverConfig point at
// ../../Sources/FastCGI and ../../Sources/DroverConfig. Nothing is copied.
//
// Build and run with scripts/fuzz (see docs/fuzzing.md), which does:
//
//   swift build --package-path Fuzz -c debug \
//       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//
// Each Fuzz* target defines LLVMFuzzerTestOneInput, plus `<Target>_main`
// (the name SwiftPM links as main() on Linux) which runs libFuzzer's driver,
// LLVMFuzzerRunDriver, declared by the CLibFuzzer shim.
import PackageDescription

let package = Package(
    name: "drover-fuzz",
    targets: [
        .target(name: "FastCGI"),
        .target(name: "DroverConfig"),
        .target(name: "CLibFuzzer"),
        .executableTarget(name: "FuzzFastCGI", dependencies: ["FastCGI", "CLibFuzzer"]),
        .executableTarget(name: "FuzzConfig", dependencies: ["DroverConfig", "CLibFuzzer"]),
    ]
)
