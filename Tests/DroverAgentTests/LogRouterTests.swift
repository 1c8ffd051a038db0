import CDroverSys
@testable import DroverAgent
import DroverConfig
import DroverCore
import Foundation
import XCTest

final class LogRouterTests: XCTestCase {
    /// 2026-03-01 12:00:00 UTC, whatever the local zone makes of it.
    let now: Int64 = 1_772_366_400 * 1_000_000
    var stamp: String { "[\(ErrorLog.timestamp(now))]" }

    func makeConfig(_ dir: TempDir, limit: Int = 1024, decorate: Bool = true) -> Configuration {
        var global = GlobalConfig()
        global.errorLog = dir.file("error.log")
        global.logLimit = limit
        let here = SourceLocation(file: "test", line: 1)
        var www = PoolConfig(name: "www", location: here)
        www.accessLog = dir.file("www.access.log")
        www.slowlog = dir.file("www.slow.log")
        www.catchWorkersOutput = true
        www.decorateWorkersOutput = decorate
        var api = PoolConfig(name: "api", location: here)
        api.accessLog = dir.file("api.access.log")
        return Configuration(global: global, pools: [www, api], files: [], warnings: [])
    }

    func makeRouter(_ dir: TempDir, limit: Int = 1024, decorate: Bool = true) -> LogRouter {
        let now = self.now
        return LogRouter(config: makeConfig(dir, limit: limit, decorate: decorate), clock: { now })
    }

    func output(_ router: LogRouter, pid: Int32 = 1234, stream: UInt8 = 2, pool: UInt16 = 0, _ text: String) {
        router.route(LogRecordHeader(kind: .output, stream: stream, pool: pool, pid: pid), text)
    }

    func errorLines(_ dir: TempDir) -> [String] {
        (dir.read("error.log") ?? "").split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    // MARK: access, slow, error

    func testAccessAndSlowRecordsGoToTheirPoolsFiles() {
        let dir = TempDir()
        let router = makeRouter(dir)
        router.route(LogRecordHeader(kind: .access, pool: 0, pid: 10), "GET /a 200\n")
        router.route(LogRecordHeader(kind: .access, pool: 1, pid: 11), "GET /b 404")   // newline added
        router.route(LogRecordHeader(kind: .slow, pool: 0, pid: 10), "\n[01-Mar-2026] [pool www] pid 10\nscript: /x.php\n")
        XCTAssertFalse(router.route(LogRecordHeader(kind: .slow, pool: 1, pid: 12), "api has no slowlog\n"))
        XCTAssertEqual(dir.read("www.access.log"), "GET /a 200\n")
        XCTAssertEqual(dir.read("api.access.log"), "GET /b 404\n")
        XCTAssertEqual(dir.read("www.slow.log"), "\n[01-Mar-2026] [pool www] pid 10\nscript: /x.php\n")
        XCTAssertEqual(router.counts.access, 2)
        XCTAssertEqual(router.counts.slow, 1)
        XCTAssertEqual(router.counts.dropped, 1)
    }

    func testRecordsOfAPoolAReloadDroppedGoToTheErrorLog() {
        let dir = TempDir()
        let router = makeRouter(dir)
        // A pool the configuration no longer has finishes its last requests.
        XCTAssertTrue(router.route(LogRecordHeader(kind: .access, pool: 7, pid: 12), "GET /last 200\n"))
        XCTAssertEqual(errorLines(dir).count, 1)
        XCTAssertTrue(errorLines(dir)[0].hasSuffix("NOTICE: child 12 of a pool removed by a reload: access: GET /last 200"), errorLines(dir)[0])
        XCTAssertTrue(router.route(LogRecordHeader(kind: .output, stream: 2, pool: 7, pid: 13), "Warning: last words\n"))
        XCTAssertTrue(errorLines(dir)[1].hasSuffix("NOTICE: child 13 of a pool removed by a reload: stderr: Warning: last words"), errorLines(dir)[1])
        XCTAssertTrue(router.route(LogRecordHeader(kind: .output, stream: 2, pool: 7, pid: 13), ""))   // the stream closed
        XCTAssertEqual(errorLines(dir).count, 2)
        XCTAssertEqual(router.counts.dropped, 0)
    }

    func testPoolsAreFoundByTheirScoreboardRecord() {
        // After a reload `api` may keep record 0 and `www` get record 3.
        let dir = TempDir()
        let router = LogRouter(config: makeConfig(dir, limit: 1024, decorate: true), poolRecords: [3, 0])
        router.route(LogRecordHeader(kind: .access, pool: 3, pid: 10), "GET /www 200\n")
        router.route(LogRecordHeader(kind: .access, pool: 0, pid: 11), "GET /api 200\n")
        XCTAssertEqual(dir.read("www.access.log"), "GET /www 200\n")
        XCTAssertEqual(dir.read("api.access.log"), "GET /api 200\n")
    }

    func testErrorLinesArePassedThroughAndCutAtLogLimit() {
        let dir = TempDir()
        let router = makeRouter(dir, limit: 64)
        let short = "[01-Mar-2026 12:00:00] NOTICE: fpm is running, pid 1\n"
        router.route(LogRecordHeader(kind: .error, pid: 1), short)
        let long = "[01-Mar-2026 12:00:00] WARNING: " + String(repeating: "z", count: 100) + "\n"
        router.route(LogRecordHeader(kind: .error, pid: 1), long)
        let lines = errorLines(dir)
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(lines[0] + "\n", short)
        XCTAssertEqual(lines[1].utf8.count + 1, 64)
        XCTAssertTrue(lines[1].hasSuffix("zzz..."))
        XCTAssertTrue(lines[1].hasPrefix("[01-Mar-2026 12:00:00] WARNING: zzz"))
        XCTAssertEqual(router.counts.error, 2)
    }

    func testSplitErrorLineForSyslog() {
        var line = Array("[01-Mar-2026 12:00:00] ERROR: [pool www] boom".utf8)
        line.withUnsafeBytes { raw in
            let (level, message) = LogRouter.splitErrorLine(raw)
            XCTAssertEqual(level, .error)
            XCTAssertEqual(String(decoding: message, as: UTF8.self), "[pool www] boom")
        }
        line = Array("no prefix at all".utf8)
        line.withUnsafeBytes { raw in
            let (level, message) = LogRouter.splitErrorLine(raw)
            XCTAssertEqual(level, .notice)
            XCTAssertEqual(String(decoding: message, as: UTF8.self), "no prefix at all")
        }
    }

    func testOwnMessagesAreFilteredByLogLevel() {
        let dir = TempDir()
        var config = makeConfig(dir)
        config.global.logLevel = .warning
        let now = self.now
        let router = LogRouter(config: config, clock: { now })
        router.log(.notice, "hidden")
        router.log(.error, "shown")
        XCTAssertEqual(errorLines(dir), ["\(stamp) ERROR: shown"])
    }

    // MARK: worker output

    func testOutputIsSplitIntoLinesAndDecoratedLikePhpFpm() {
        let dir = TempDir()
        let router = makeRouter(dir)
        output(router, "hello\nworld\n")
        output(router, pid: 99, stream: 1, "on stdout\n")
        output(router, "\n")
        XCTAssertEqual(errorLines(dir), [
            "\(stamp) WARNING: [pool www] child 1234 said into stderr: \"hello\"",
            "\(stamp) WARNING: [pool www] child 1234 said into stderr: \"world\"",
            "\(stamp) WARNING: [pool www] child 99 said into stdout: \"on stdout\"",
            "\(stamp) WARNING: [pool www] child 1234 said into stderr: \"\"",
        ])
        XCTAssertEqual(router.counts.output, 4)
    }

    func testUndecoratedOutputIsWrittenBare() {
        let dir = TempDir()
        let router = makeRouter(dir, decorate: false)
        output(router, "plain line\n\nsecond\n")
        // php-fpm drops an empty undecorated line.
        XCTAssertEqual(errorLines(dir), ["plain line", "second"])
    }

    /// php-fpm's zlog stream wraps a line longer than log_limit into several
    /// complete lines, each with the prefix and its own quotes, each exactly
    /// log_limit bytes with the newline; no "..." marker.
    func testLongOutputLinesAreWrappedAtLogLimit() {
        let dir = TempDir()
        let limit = 120
        let router = makeRouter(dir, limit: limit)
        let text = (0..<300).map { String(UnicodeScalar(UInt8(97 + $0 % 26))) }.joined()
        output(router, text + "\n")
        let lines = errorLines(dir)
        let head = "\(stamp) WARNING: [pool www] child 1234 said into stderr: \""
        let room = limit - head.utf8.count - 2
        XCTAssertEqual(lines.count, (300 + room - 1) / room)
        var rebuilt = ""
        for (i, line) in lines.enumerated() {
            XCTAssertTrue(line.hasPrefix(head), line)
            XCTAssertTrue(line.hasSuffix("\""), line)
            XCTAssertFalse(line.contains("..."))
            if i < lines.count - 1 { XCTAssertEqual(line.utf8.count + 1, limit, line) }
            XCTAssertLessThanOrEqual(line.utf8.count + 1, limit)
            rebuilt += String(line.dropFirst(head.count).dropLast())
        }
        XCTAssertEqual(rebuilt, text)
    }

    func testUndecoratedLinesWrapAtLogLimitLessTheNewline() {
        let dir = TempDir()
        let router = makeRouter(dir, limit: 50, decorate: false)
        output(router, String(repeating: "q", count: 120) + "\n")
        XCTAssertEqual(errorLines(dir), [String(repeating: "q", count: 49), String(repeating: "q", count: 49),
                                         String(repeating: "q", count: 22)])
    }

    func testPartialLinesAreJoinedPerProcessAndStream() {
        let dir = TempDir()
        let router = makeRouter(dir)
        output(router, pid: 1, "first ha")
        output(router, pid: 2, "other ")
        output(router, pid: 1, stream: 1, "out ")
        output(router, pid: 1, "lf\nsecond ")
        XCTAssertEqual(router.pendingBytes, "other ".count + "out ".count + "second ".count)
        output(router, pid: 2, "process\n")
        output(router, pid: 1, "line\n")
        output(router, pid: 1, stream: 1, "stream\n")
        let prefix = "\(stamp) WARNING: [pool www] child"
        XCTAssertEqual(errorLines(dir), [
            "\(prefix) 1 said into stderr: \"first half\"",
            "\(prefix) 2 said into stderr: \"other process\"",
            "\(prefix) 1 said into stderr: \"second line\"",
            "\(prefix) 1 said into stdout: \"out stream\"",
        ])
        XCTAssertEqual(router.pendingBytes, 0)
    }

    /// A partial line never holds more than one line's worth: the full
    /// pieces are written at once, the rest waits for its newline.
    func testPartialLinesAreBoundedByLogLimit() {
        let dir = TempDir()
        let limit = 100
        let router = makeRouter(dir, limit: limit)
        let head = "\(stamp) WARNING: [pool www] child 1234 said into stderr: \""
        let room = limit - head.utf8.count - 2
        output(router, String(repeating: "p", count: room * 2 + 5))
        XCTAssertEqual(errorLines(dir).count, 2)
        XCTAssertEqual(router.pendingBytes, 5)
        output(router, "\n")
        let lines = errorLines(dir)
        XCTAssertEqual(lines.count, 3)
        XCTAssertEqual(lines[2], head + "ppppp\"")
    }

    func testAClosedStreamFlushesItsPartialLine() {
        let dir = TempDir()
        let router = makeRouter(dir)
        output(router, "no newline")
        XCTAssertEqual(errorLines(dir), [])
        output(router, "")
        XCTAssertEqual(errorLines(dir), ["\(stamp) WARNING: [pool www] child 1234 said into stderr: \"no newline\""])
        output(router, pid: 5, "at exit")
        router.flushPartials()
        XCTAssertEqual(errorLines(dir).last, "\(stamp) WARNING: [pool www] child 5 said into stderr: \"at exit\"")
    }

    func testOutputOfOneRecordIsOneWrite() {
        // Many lines of one record and then a rotation: the rotation falls
        // between records, so no file ends mid-line.
        let dir = TempDir()
        var config = makeConfig(dir)
        config.global.logMaxSize = 16384
        config.global.logMaxFiles = 50
        let now = self.now
        let router = LogRouter(config: config, clock: { now })
        for n in 0..<200 {
            output(router, (0..<5).map { "record \(n) line \($0)" }.joined(separator: "\n") + "\n")
        }
        var names = ["error.log"]
        var i = 1
        while dir.exists("error.log.\(i)") { names.insert("error.log.\(i)", at: 0); i += 1 }
        XCTAssertGreaterThan(names.count, 2)
        let all = names.map { dir.read($0)! }
        for text in all { XCTAssertTrue(text.hasSuffix("\n")) }
        XCTAssertEqual(all.joined().split(separator: "\n").count, 1000)
    }

    // MARK: reopen

    func testReopenAllReopensEveryFileAndLogsLikePhpFpm() {
        let dir = TempDir()
        let router = makeRouter(dir)
        router.route(LogRecordHeader(kind: .access, pool: 0, pid: 10), "old\n")
        dir.rename("www.access.log", "www.access.log.1")
        dir.rename("error.log", "error.log.1")
        XCTAssertTrue(router.reopenAll())
        router.route(LogRecordHeader(kind: .access, pool: 0, pid: 10), "new\n")
        XCTAssertEqual(dir.read("www.access.log.1"), "old\n")
        XCTAssertEqual(dir.read("www.access.log"), "new\n")
        XCTAssertEqual(errorLines(dir), [
            "\(stamp) NOTICE: error log file re-opened",
            "\(stamp) NOTICE: access log file re-opened",
        ])
    }

    func testAFileThatCouldNotBeOpenedIsTriedAgainAtReopen() {
        let dir = TempDir()
        var config = makeConfig(dir)
        config.pools[1].accessLog = dir.file("later/api.access.log")
        let now = self.now
        let router = LogRouter(config: config, clock: { now })
        XCTAssertTrue(errorLines(dir)[0].hasPrefix("\(stamp) ERROR: failed to open access log (\(dir.file("later/api.access.log"))): No such file or directory (2)"))
        XCTAssertFalse(router.route(LogRecordHeader(kind: .access, pool: 1, pid: 1), "lost\n"))
        XCTAssertEqual(mkdir(dir.file("later"), 0o755), 0)
        XCTAssertTrue(router.reopenAll())
        XCTAssertTrue(router.route(LogRecordHeader(kind: .access, pool: 1, pid: 1), "kept\n"))
        XCTAssertEqual(dir.read("later/api.access.log"), "kept\n")
    }
}

/// The agent in a forked child, fed through a real log channel.
final class AgentEndToEndTests: XCTestCase {
    func waitFor(_ what: String, timeout: Double = 10, _ condition: () -> Bool) {
        let deadline = Clock.monotonicMicros() + Int64(timeout * 1_000_000)
        while !condition() {
            if Clock.monotonicMicros() > deadline {
                XCTFail("timed out waiting for \(what)")
                return
            }
            usleep(5_000)
        }
    }

    func lines(_ text: String?) -> [String] {
        (text ?? "").split(separator: "\n").map(String.init)
    }

    func testAgentWritesReopensOnSIGUSR1AndDrainsOnSIGTERM() throws {
        let dir = TempDir()
        let ini = dir.file("drover.conf")
        try """
        [global]
        error_log = \(dir.file("error.log"))
        log_level = notice

        [www]
        listen = \(dir.file("www.sock"))
        pm.max_children = 1
        access.log = \(dir.file("access.log"))
        slowlog = \(dir.file("slow.log"))
        catch_workers_output = yes
        """.write(toFile: ini, atomically: true, encoding: .utf8)
        let config = try ConfigLoader.load(path: ini)
        let scoreboard = try Scoreboard.create(poolCapacity: 1, slotCapacity: 1)
        let channel = try LogChannel()
        defer {
            close(channel.sendFD)
            close(channel.receiveFD)
        }
        let launch = AgentLaunch(config: config, scoreboard: scoreboard, channel: channel,
                                 forceStderr: false, masterPID: getpid())

        let pid = drover_fork_child(SIGKILL)
        if pid == 0 { Agent.run(launch) }
        XCTAssertGreaterThan(pid, 0)
        var reaped = false
        defer {
            if !reaped {
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
            }
        }

        // Records of every kind.
        channel.send(LogRecordHeader(kind: .error, pid: 1), "[01-Mar-2026 12:00:00] NOTICE: hello from a worker\n")
        for n in 1...50 { channel.send(LogRecordHeader(kind: .access, pool: 0, pid: 2), "GET /before/\(n) 200\n") }
        channel.send(LogRecordHeader(kind: .slow, pool: 0, pid: 2), "\n[pool www] pid 2\nscript_filename = /slow.php\n")
        channel.send(LogRecordHeader(kind: .output, stream: 2, pool: 0, pid: 77), "app says")
        channel.send(LogRecordHeader(kind: .output, stream: 2, pool: 0, pid: 77), " hi\n")

        waitFor("access lines") { lines(dir.read("access.log")).count == 50 }
        waitFor("worker output") { (dir.read("error.log") ?? "").contains("[pool www] child 77 said into stderr: \"app says hi\"") }
        XCTAssertTrue((dir.read("error.log") ?? "").contains("[01-Mar-2026 12:00:00] NOTICE: hello from a worker\n"))
        XCTAssertEqual(dir.read("slow.log"), "\n[pool www] pid 2\nscript_filename = /slow.php\n")
        // The process title (prctl name; ps shows the rewritten argv too).
        XCTAssertEqual(try String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8), "drover: agent\n")

        // logrotate moves the file, then the master forwards SIGUSR1.
        dir.rename("access.log", "access.log.1")
        XCTAssertEqual(kill(pid, SIGUSR1), 0)
        waitFor("a new access.log") { dir.exists("access.log") }
        waitFor("the reopen notice") { (dir.read("error.log") ?? "").contains("NOTICE: access log file re-opened") }
        for n in 1...50 { channel.send(LogRecordHeader(kind: .access, pool: 0, pid: 2), "GET /after/\(n) 200\n") }
        waitFor("access lines in the new file") { lines(dir.read("access.log")).count == 50 }
        XCTAssertEqual(lines(dir.read("access.log.1")), (1...50).map { "GET /before/\($0) 200" })
        XCTAssertEqual(lines(dir.read("access.log")), (1...50).map { "GET /after/\($0) 200" })

        // SIGTERM: what is still in the channel is written, then exit 0.
        for n in 1...200 { channel.send(LogRecordHeader(kind: .access, pool: 0, pid: 2), "GET /last/\(n) 200\n") }
        channel.send(LogRecordHeader(kind: .output, stream: 1, pool: 0, pid: 78), "unfinished")
        XCTAssertEqual(kill(pid, SIGTERM), 0)
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        reaped = true
        XCTAssertTrue(status & 0x7f == 0, "agent killed by signal \(status & 0x7f)")
        XCTAssertEqual((status >> 8) & 0xff, 0)
        XCTAssertEqual(lines(dir.read("access.log")).count, 250)
        XCTAssertEqual(lines(dir.read("access.log")).suffix(200), (1...200).map { "GET /last/\($0) 200" }[...])
        XCTAssertTrue((dir.read("error.log") ?? "").contains("[pool www] child 78 said into stdout: \"unfinished\""))
    }

    func testAgentExitsWhenItsMasterIsGone() throws {
        let dir = TempDir()
        let ini = dir.file("drover.conf")
        try """
        [global]
        error_log = \(dir.file("error.log"))

        [www]
        listen = \(dir.file("www.sock"))
        pm.max_children = 1
        access.log = \(dir.file("access.log"))
        """.write(toFile: ini, atomically: true, encoding: .utf8)
        let config = try ConfigLoader.load(path: ini)
        let scoreboard = try Scoreboard.create(poolCapacity: 1, slotCapacity: 1)
        let channel = try LogChannel()
        defer { close(channel.receiveFD) }
        let sockets = dir.file("sockets")
        XCTAssertEqual(mkdir(sockets, 0o711), 0)
        XCTAssertEqual(mkdir(sockets + "/p0", 0o700), 0)
        // A master pid that is not our parent: the 1 s check notices.
        let launch = AgentLaunch(config: config, scoreboard: scoreboard, channel: channel,
                                 forceStderr: false, masterPID: getpid() &+ 1_000_000, appSocketBase: sockets)
        channel.send(LogRecordHeader(kind: .access, pool: 0, pid: 2), "GET /queued 200\n")
        let pid = drover_fork_child(SIGKILL)
        if pid == 0 { Agent.run(launch) }
        // The agent stays while anyone can still send (the master's workers
        // finishing their requests); here the last sender is this process.
        usleep(1_500_000)
        XCTAssertEqual(waitpid(pid, nil, WNOHANG), 0, "the agent left while a sender was still there")
        channel.send(LogRecordHeader(kind: .access, pool: 0, pid: 3), "GET /finished-later 200\n")
        close(channel.sendFD)
        var status: Int32 = 0
        let deadline = Clock.monotonicMicros() + 10_000_000
        var done: Int32 = 0
        while done == 0 && Clock.monotonicMicros() < deadline {
            done = waitpid(pid, &status, WNOHANG)
            if done == 0 { usleep(10_000) }
        }
        if done == 0 {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
            XCTFail("the agent did not exit")
            return
        }
        XCTAssertEqual(status, 0)
        XCTAssertEqual(dir.read("access.log"), "GET /queued 200\nGET /finished-later 200\n")
        XCTAssertTrue((dir.read("error.log") ?? "").contains("ALERT: the master (pid \(getpid() &+ 1_000_000)) is gone"))
        XCTAssertNotEqual(access(sockets, F_OK), 0, "the apps' socket directory is removed")
    }
}
