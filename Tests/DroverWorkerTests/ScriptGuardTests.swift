import DroverConfig
import Glibc
import XCTest

@testable import DroverWorker

/// security.limit_extensions: which pools check, which file is checked, and
/// php-fpm's suffix comparison.
final class ScriptGuardTests: XCTestCase {
    func pool(_ configure: (inout PoolConfig) -> Void = { _ in }) -> PoolConfig {
        var p = PoolConfig(name: "www", location: SourceLocation(file: "t.conf", line: 1))
        configure(&p)
        return p
    }

    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testOnlyPHPCGIPoolsWithExtensionsCheck() {
        XCTAssertNotNil(ScriptGuard(pool: pool()))   // no command: php-cgi, default .php .phar
        XCTAssertNotNil(ScriptGuard(pool: pool { $0.command = ["/usr/bin/php-cgi8.2", "-c", "/etc/php.ini"] }))
        XCTAssertNil(ScriptGuard(pool: pool { $0.command = ["/usr/sbin/fcgiwrap", "-f"] }))
        XCTAssertNil(ScriptGuard(pool: pool { $0.securityLimitExtensions = [] }))   // empty: off, as php-fpm
    }

    func testSuffixComparisonIsPHPFPMs() {
        let g = ScriptGuard(pool: pool())!
        XCTAssertTrue(g.allows(bytes("/srv/index.php")))
        XCTAssertTrue(g.allows(bytes("/srv/app.phar")))
        XCTAssertFalse(g.allows(bytes("/srv/index.PHP")))      // case-sensitive
        XCTAssertFalse(g.allows(bytes("/srv/upload.jpg")))
        XCTAssertFalse(g.allows(bytes("/srv/index.php.txt")))
        XCTAssertFalse(g.allows(bytes(".php")))                // longer than the extension
        XCTAssertTrue(g.allows(bytes("x.php")))
        // Any suffix, not only after a dot, as php-fpm compares.
        let custom = ScriptGuard(pool: pool { $0.securityLimitExtensions = ["php", ".inc"] })!
        XCTAssertTrue(custom.allows(bytes("/srv/xphp")))
        XCTAssertTrue(custom.allows(bytes("/srv/a.inc")))
    }

    func testScriptToRunFollowsFixPathinfo() {
        let files: Set<[UInt8]> = [bytes("/srv/up/evil.jpg"), bytes("/srv/index.php")]
        let dirs: Set<[UInt8]> = [bytes("/srv"), bytes("/srv/up")]
        func run(_ name: String) -> String? {
            ScriptGuard.scriptToRun(bytes(name), exists: { files.contains($0) || dirs.contains($0) },
                                    isRegularFile: { files.contains($0) }).map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(run("/srv/index.php"), "/srv/index.php")
        XCTAssertEqual(run("/srv/up/evil.jpg"), "/srv/up/evil.jpg")
        XCTAssertEqual(run("/srv/up/evil.jpg/x.php"), "/srv/up/evil.jpg")      // the classic attack
        XCTAssertEqual(run("/srv/index.php/some/path"), "/srv/index.php")
        XCTAssertEqual(run("/srv/up"), "/srv/up")                              // exists: checked as is
        XCTAssertNil(run("/srv/up/"))                                           // ends in '/': walked back, no file
        XCTAssertNil(run("/srv/missing.php"))                                   // nothing: php-cgi's 404
        XCTAssertNil(run(""))
    }

    func testDeniedScriptLooksAtTheFileSystem() throws {
        var template = Array("/tmp/drover-scriptguard-XXXXXX".utf8CString)
        let dir = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer {
            for f in ["a.php", "evil.jpg"] { unlink("\(dir)/\(f)") }
            rmdir(dir)
        }
        for f in ["a.php", "evil.jpg"] { close(open("\(dir)/\(f)", O_CREAT | O_WRONLY, 0o644)) }
        let g = ScriptGuard(pool: pool())!
        func denied(_ name: String) -> String? {
            let b = bytes(name)
            return b.withUnsafeBytes { g.deniedScript($0) }
        }
        XCTAssertNil(denied("\(dir)/a.php"))
        XCTAssertNil(denied("\(dir)/a.php/extra"))
        XCTAssertNil(denied("\(dir)/nothing.txt"))            // no such file: the app's 404, as php-fpm
        XCTAssertEqual(denied("\(dir)/evil.jpg"), "\(dir)/evil.jpg")
        XCTAssertEqual(denied("\(dir)/evil.jpg/x.php"), "\(dir)/evil.jpg")
        XCTAssertEqual(denied("\(dir)/evil.jpg\u{0}.php"), "\(dir)/evil.jpg")   // PHP stops at NUL
        XCTAssertEqual(denied(dir), dir)                      // a directory is not a script

        // Under chroot the worker looks inside it; the name is the app's.
        let chrooted = ScriptGuard(pool: pool { $0.chroot = dir })!
        let inside = bytes("/evil.jpg/x.php")
        XCTAssertEqual(inside.withUnsafeBytes { chrooted.deniedScript($0) }, "/evil.jpg")
    }
}
