// swift-tools-version:6.0
//
// Drover: a FastCGI process manager. Module graph (one way only):
//
//   CDroverSys, CLibev, CLibuv      thin C: syscalls Glibc hides, libev/libuv macros
//   FastCGI                         protocol codec, no I/O policy (a library product)
//   DroverConfig                    php-fpm ini dialect, directive table, typed model
//   DroverCore                      syscall wrappers, scoreboard, error log, status renderers
//   DroverWorker  DroverMaster  DroverAgent
//                                   the worker, the libev master, the libuv agent (siblings)
//   drover  droverctl               executables that wire the above together
import PackageDescription

let package = Package(
    name: "drover",
    products: [
        .executable(name: "drover", targets: ["drover"]),
        .executable(name: "droverctl", targets: ["droverctl"]),
        .library(name: "FastCGI", targets: ["FastCGI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "CLibev", path: "Sources/CLibev"),
        .systemLibrary(name: "CLibuv", path: "Sources/CLibuv", pkgConfig: "libuv"),
        .target(name: "CDroverSys"),
        .target(name: "FastCGI"),
        .target(name: "DroverConfig"),
        .target(name: "DroverCore", dependencies: ["CDroverSys", "DroverConfig", "FastCGI"]),
        .target(name: "DroverWorker", dependencies: ["DroverCore", "FastCGI", "CDroverSys"]),
        .target(name: "DroverMaster", dependencies: ["DroverCore", "CDroverSys", "CLibev"]),
        .target(name: "DroverAgent", dependencies: ["DroverCore", "DroverConfig", "FastCGI", "CDroverSys", "CLibuv"]),
        .executableTarget(
            name: "drover",
            dependencies: [
                "DroverMaster", "DroverWorker", "DroverAgent", "DroverCore", "DroverConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "droverctl",
            dependencies: [
                "FastCGI", "DroverConfig", "DroverCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "FastCGITests", dependencies: ["FastCGI"]),
        .testTarget(name: "DroverConfigTests", dependencies: ["DroverConfig"],
                    resources: [.copy("Fixtures")]),
        .target(name: "DroverTestSupport", path: "Tests/DroverTestSupport"),
        .testTarget(name: "DroverCoreTests", dependencies: ["DroverCore", "DroverTestSupport"]),
        .testTarget(name: "DroverMasterTests", dependencies: ["DroverMaster"]),
        .testTarget(name: "DroverAgentTests", dependencies: ["DroverAgent", "DroverCore", "DroverConfig"]),
        .testTarget(name: "DroverWorkerTests", dependencies: ["DroverWorker", "DroverConfig", "DroverTestSupport"]),
    ]
)
