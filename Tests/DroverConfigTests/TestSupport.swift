import DroverConfig
import Foundation
import XCTest

/// A scratch directory with config files, removed at deinit.
final class ConfigDir {
    let path: String

    init() {
        let base = NSTemporaryDirectory() + "drover-config-tests-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = URL(fileURLWithPath: base).resolvingSymlinksInPath().path
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `text` to `name` (relative to the directory); returns the absolute path.
    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let full = path + "/" + name
        try! FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! text.write(toFile: full, atomically: true, encoding: .utf8)
        return full
    }

    func mkdir(_ name: String) {
        try! FileManager.default.createDirectory(atPath: path + "/" + name, withIntermediateDirectories: true)
    }
}

/// A minimal valid pool, to append to configs under test.
let minimalPool = """
    [www]
    listen = /run/drover-test/www.sock
    pm.max_children = 2
    """

/// The outcome of loading a config.
struct LoadResult {
    var config: Configuration?
    var errors: [ConfigDiagnostic]
    var warnings: [ConfigDiagnostic]

    var errorText: String { errors.map(\.description).joined(separator: "\n") }
    var warningText: String { warnings.map(\.description).joined(separator: "\n") }
}

func load(_ path: String, prefix: String? = nil, environment: [String: String] = [:]) -> LoadResult {
    do {
        let c = try ConfigLoader.load(path: path, prefix: prefix, environment: environment)
        return LoadResult(config: c, errors: [], warnings: c.warnings)
    } catch let e as ConfigErrors {
        return LoadResult(config: nil, errors: e.errors, warnings: e.warnings)
    } catch {
        XCTFail("unexpected error type: \(error)")
        return LoadResult(config: nil, errors: [], warnings: [])
    }
}

/// Writes `text` as `php-fpm.conf` in a fresh directory and loads it.
func loadText(_ text: String, environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line)
    -> (LoadResult, ConfigDir, String)
{
    let dir = ConfigDir()
    let path = dir.write("php-fpm.conf", text)
    return (load(path, environment: environment), dir, path)
}

/// Loads `text` and expects success; returns the configuration.
func loadOK(_ text: String, environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line)
    -> Configuration?
{
    let (r, _, _) = loadText(text, environment: environment)
    XCTAssertTrue(r.errors.isEmpty, "unexpected errors:\n\(r.errorText)", file: file, line: line)
    return r.config
}

/// Asserts one of `diagnostics` is at `path:lineNo`, about `directive`, with `fragment` in its message.
func assertDiagnostic(
    _ diagnostics: [ConfigDiagnostic], at path: String?, line lineNo: Int?, directive: String?, contains fragment: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    let found = diagnostics.contains { d in
        (path == nil || d.location?.file == path) && (lineNo == nil || d.location?.line == lineNo)
            && d.directive == directive && d.message.contains(fragment)
    }
    XCTAssertTrue(
        found,
        "no diagnostic at \(path ?? "*"):\(lineNo.map(String.init) ?? "*"): \(directive ?? "-"): …\(fragment)… in:\n"
            + diagnostics.map(\.description).joined(separator: "\n"),
        file: file, line: line)
}

/// Loads `text` and expects an error at `line` about `directive`.
func assertError(
    _ text: String, line lineNo: Int?, directive: String?, contains fragment: String,
    environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line
) {
    let (r, _, path) = loadText(text, environment: environment)
    XCTAssertNil(r.config, "expected an error", file: file, line: line)
    assertDiagnostic(r.errors, at: lineNo == nil ? nil : path, line: lineNo, directive: directive, contains: fragment,
                     file: file, line: line)
}

/// Loads `text` and expects success with a warning at `line` about `directive`.
func assertWarning(
    _ text: String, line lineNo: Int?, directive: String?, contains fragment: String,
    environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line
) {
    let (r, _, path) = loadText(text, environment: environment)
    XCTAssertTrue(r.errors.isEmpty, "unexpected errors:\n\(r.errorText)", file: file, line: line)
    assertDiagnostic(r.warnings, at: lineNo == nil ? nil : path, line: lineNo, directive: directive, contains: fragment,
                     file: file, line: line)
}
