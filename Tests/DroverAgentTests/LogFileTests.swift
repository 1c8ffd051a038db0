@testable import DroverAgent
import DroverCore
import Foundation
import XCTest

/// A scratch directory, removed at deinit.
final class TempDir {
    let path: String

    init() {
        var template = Array((NSTemporaryDirectory() + "drover-agent-tests-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }

    func read(_ name: String) -> String? {
        guard let data = FileManager.default.contents(atPath: file(name)) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: file(name)) }

    func size(_ name: String) -> Int64 {
        var st = stat()
        return stat(file(name), &st) == 0 ? Int64(st.st_size) : -1
    }

    func rename(_ from: String, _ to: String) {
        XCTAssertEqual(Glibc.rename(file(from), file(to)), 0)
    }
}

final class LogFileTests: XCTestCase {
    func testWritesAppendAndCreateWithMode0640() throws {
        let dir = TempDir()
        let old = umask(0o022)
        defer { umask(old) }
        let f = try LogFile(path: dir.file("a.log"))
        XCTAssertTrue(f.write("one\n"))
        XCTAssertTrue(f.write("two\n"))
        XCTAssertEqual(dir.read("a.log"), "one\ntwo\n")
        XCTAssertEqual(f.size, 8)
        var st = stat()
        XCTAssertEqual(stat(dir.file("a.log"), &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o640)
        // Opening again appends.
        let g = try LogFile(path: dir.file("a.log"))
        XCTAssertEqual(g.size, 8)
        g.write("three\n")
        XCTAssertEqual(dir.read("a.log"), "one\ntwo\nthree\n")
    }

    func testMissingDirectoryIsAnError() {
        let dir = TempDir()
        XCTAssertThrowsError(try LogFile(path: dir.file("no/such/dir.log"))) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ENOENT)
        }
        XCTAssertFalse(dir.exists("no"))
    }

    func testReopenAfterRenameWritesToNewFileAndKeepsOldIntact() throws {
        let dir = TempDir()
        let f = try LogFile(path: dir.file("access.log"))
        f.write("before 1\n")
        dir.rename("access.log", "access.log.1")
        // Until reopened, records still go to the moved file (logrotate's
        // window between moving and signalling).
        f.write("before 2\n")
        XCTAssertFalse(dir.exists("access.log"))
        try f.reopen()
        XCTAssertTrue(dir.exists("access.log"))
        XCTAssertEqual(f.size, 0)
        f.write("after 1\n")
        f.write("after 2\n")
        XCTAssertEqual(dir.read("access.log.1"), "before 1\nbefore 2\n")
        XCTAssertEqual(dir.read("access.log"), "after 1\nafter 2\n")
    }

    func testFailedReopenKeepsTheOldDescriptor() throws {
        let dir = TempDir()
        XCTAssertEqual(mkdir(dir.file("logs"), 0o755), 0)
        let f = try LogFile(path: dir.file("logs/a.log"))
        f.write("one\n")
        dir.rename("logs", "moved")
        XCTAssertThrowsError(try f.reopen())
        f.write("two\n")
        XCTAssertEqual(dir.read("moved/a.log"), "one\ntwo\n")
    }

    func testStderrTargetIsNeverReopenedOrRotated() throws {
        let f = LogFile.stderr()
        XCTAssertTrue(f.isStderr)
        XCTAssertEqual(f.fd, STDERR_FILENO)
        try f.reopen()
        try f.rotate()
        XCTAssertEqual(f.fd, STDERR_FILENO)
        XCTAssertEqual(f.rotations, 0)
    }

    /// 10 000 numbered lines of varying length with log.max_size set so that
    /// they need exactly four files and log.max_files = 3: path, path.1 …
    /// path.3 hold every line once, in order, none split, none too large.
    func testSizeRotationKeepsEveryLineWhole() throws {
        let dir = TempDir()
        let lines = (1...10_000).map { n in "line \(n) " + String(repeating: "x", count: n % 37) + "\n" }
        let total = lines.reduce(0) { $0 + $1.utf8.count }
        let longest = lines.map(\.utf8.count).max()!
        let maxSize = Int64(Double(total) / 3.5)
        let f = try LogFile(path: dir.file("access.log"), maxSize: maxSize, maxFiles: 3)
        for line in lines { XCTAssertTrue(f.write(line)) }

        XCTAssertEqual(f.rotations, 3)
        for name in ["access.log", "access.log.1", "access.log.2", "access.log.3"] {
            XCTAssertTrue(dir.exists(name), name)
            XCTAssertLessThanOrEqual(dir.size(name), maxSize, name)
        }
        XCTAssertFalse(dir.exists("access.log.4"))
        // Full files are filled up to less than one line from the limit.
        for name in ["access.log.1", "access.log.2", "access.log.3"] {
            XCTAssertGreaterThan(dir.size(name), maxSize - Int64(longest), name)
        }
        let joined = ["access.log.3", "access.log.2", "access.log.1", "access.log"].map { dir.read($0)! }
        for text in joined { XCTAssertTrue(text.hasSuffix("\n"), "a file ends mid-line") }
        XCTAssertEqual(joined.joined(), lines.joined())
    }

    func testRotationDeletesTheOldest() throws {
        let dir = TempDir()
        let f = try LogFile(path: dir.file("e.log"), maxSize: 100, maxFiles: 2)
        // 10-byte lines, 10 per file: 55 lines make six files, three kept.
        for n in 1...55 { f.write(String(format: "line %04d\n", n)) }
        XCTAssertEqual(f.rotations, 5)
        XCTAssertTrue(dir.exists("e.log.1"))
        XCTAssertTrue(dir.exists("e.log.2"))
        XCTAssertFalse(dir.exists("e.log.3"))
        let kept = (dir.read("e.log.2")! + dir.read("e.log.1")! + dir.read("e.log")!)
            .split(separator: "\n").map(String.init)
        XCTAssertEqual(kept, (31...55).map { String(format: "line %04d", $0) })
    }

    func testARecordLargerThanMaxSizeGoesAloneIntoAFreshFile() throws {
        let dir = TempDir()
        let f = try LogFile(path: dir.file("s.log"), maxSize: 50, maxFiles: 5)
        f.write("small\n")
        let big = String(repeating: "y", count: 120) + "\n"
        f.write(big)
        f.write("after\n")
        XCTAssertEqual(dir.read("s.log.2"), "small\n")
        XCTAssertEqual(dir.read("s.log.1"), big)
        XCTAssertEqual(dir.read("s.log"), "after\n")
    }

    func testMaxFilesZeroKeepsNoRotatedFile() throws {
        let dir = TempDir()
        let f = try LogFile(path: dir.file("z.log"), maxSize: 20, maxFiles: 0)
        for n in 1...5 { f.write(String(format: "line %04d\n", n)) }
        XCTAssertFalse(dir.exists("z.log.1"))
        XCTAssertEqual(dir.read("z.log"), "line 0005\n")
    }

    func testSyslogFacilitiesAndPriorities() {
        XCTAssertEqual(SyslogTarget.facility(named: "daemon"), LOG_DAEMON)
        XCTAssertEqual(SyslogTarget.facility(named: "LOCAL3"), LOG_LOCAL3)
        XCTAssertEqual(SyslogTarget.facility(named: "nonsense"), LOG_DAEMON)
        XCTAssertEqual(SyslogTarget.priority(.error), LOG_ERR)
        XCTAssertEqual(SyslogTarget.priority(.alert), LOG_ALERT)
    }
}
