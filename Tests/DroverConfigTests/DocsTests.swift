import DroverConfig
import Foundation
import XCTest

/// docs/configuration.md's directive reference is generated from
/// `Directives.all`. When the table changes, regenerate it with
/// `DROVER_UPDATE_DOCS=1 swift test --filter DroverConfigTests.DocsTests`.
final class DocsTests: XCTestCase {
    static let begin = "<!-- BEGIN GENERATED DIRECTIVE REFERENCE: edit Sources/DroverConfig/Directives.swift, then run DROVER_UPDATE_DOCS=1 swift test --filter DroverConfigTests.DocsTests -->"
    static let end = "<!-- END GENERATED DIRECTIVE REFERENCE -->"

    static var docsPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/configuration.md").path
    }

    static func cell(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }

    /// The reference tables, one per scope.
    static func reference() -> String {
        var out: [String] = []
        for (scope, title) in [(DirectiveInfo.Scope.global, "Global directives (`[global]`)"), (.pool, "Pool directives (`[name]`)")] {
            out.append("### \(title)")
            out.append("")
            out.append("| Directive | Default | Status | Meaning |")
            out.append("|---|---|---|---|")
            for d in Directives.all where d.scope == scope {
                let status = (d.implemented ? "implemented" : "not yet (warning)") + (d.droverExtension ? ", Drover" : "")
                out.append("| `\(d.name)` | \(cell(d.defaultValue)) | \(status) | \(cell(d.summary)) |")
            }
            out.append("")
        }
        return out.joined(separator: "\n")
    }

    func testReferenceIsUpToDate() throws {
        let path = Self.docsPath
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let b = try XCTUnwrap(text.range(of: Self.begin), "begin marker missing in \(path)")
        let e = try XCTUnwrap(text.range(of: Self.end), "end marker missing in \(path)")
        let current = String(text[b.upperBound..<e.lowerBound])
        let wanted = "\n\n" + Self.reference() + "\n"
        if current != wanted {
            if ProcessInfo.processInfo.environment["DROVER_UPDATE_DOCS"] == "1" {
                let updated = String(text[..<b.upperBound]) + wanted + String(text[e.lowerBound...])
                try updated.write(toFile: path, atomically: true, encoding: .utf8)
            } else {
                XCTFail("docs/configuration.md is out of date; run DROVER_UPDATE_DOCS=1 swift test --filter DroverConfigTests.DocsTests")
            }
        }
    }

    func testDocsMentionEveryDirective() throws {
        let text = try String(contentsOfFile: Self.docsPath, encoding: .utf8)
        for d in Directives.all {
            XCTAssertTrue(text.contains("`\(d.name)`"), "docs/configuration.md does not mention \(d.name)")
        }
        for topic in ["command", "listen.allowed_clients", "CIDR", "include", "$pool", "${", "php_flag"] {
            XCTAssertTrue(text.contains(topic), topic)
        }
    }
}
