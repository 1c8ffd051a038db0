import DroverCore
import Foundation
import DroverTestSupport
import XCTest

@testable import DroverWorker

final class SlowLogTests: XCTestCase {
    private let children = ChildProcesses()
    private var files: [String] = []

    override func tearDown() {
        children.killAll()
        files.forEach { unlink($0) }
        files = []
    }

    private func tempPath() -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("drover-slowlog-\(getpid())-\(files.count)-\(UInt32.random(in: 0...UInt32.max)).log").path
        files.append(path)
        return path
    }

    /// Polls `path` until `done` holds for its text or `seconds` pass.
    private func waitForFile(_ path: String, seconds: Double, until done: (String) -> Bool) -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var text = ""
        while Date() < deadline {
            text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if done(text) { break }
            usleep(10_000)
        }
        return text
    }

    /// Waits until the child sleeps in the kernel (it may still be starting).
    private func waitUntilSleeping(_ pid: pid_t) -> SlowLog.AppProbe {
        var probe = SlowLog.AppProbe.read(pid: pid)
        for _ in 0..<100 where probe.state != "S" || !(probe.syscall ?? "").hasPrefix(nanosleepNumber) {
            usleep(10_000)
            probe = SlowLog.AppProbe.read(pid: pid)
        }
        return probe
    }

    #if arch(x86_64)
    let nanosleepNumber = "230 "
    #else
    let nanosleepNumber = "115 "
    #endif

    func request(app: pid_t) -> SlowLog.Request {
        SlowLog.Request(pool: "www", workerPID: 1234, appPID: app, scriptFilename: "/var/www/slow.php",
                        method: "GET", uri: "/slow.php?x=1", elapsedMicros: 1_003_400,
                        startedAtRealtimeMicros: 1_700_000_000_123_456)
    }

    // MARK: format

    func testFormatOfAFixedProbe() {
        #if arch(x86_64)
        let syscall = "230 0x0 0x0 0x7ffd90aa8b30 0x7ffd90aa8b70 0x0 0x0 0x7ffd90aa8b18 0x7fc103104503"
        let syscallLine = "clock_nanosleep (230)"
        #else
        let syscall = "115 0x0 0x0 0xffffd0aa8b30 0xffffd0aa8b70 0x0 0x0 0xffffd0aa8b18 0xffff83104503"
        let syscallLine = "clock_nanosleep (115)"
        #endif
        let probe = SlowLog.AppProbe(state: "S", wchan: "hrtimer_nanosleep", syscall: syscall,
                                     stack: "[<0>] hrtimer_nanosleep+0x74/0xf0\n[<0>] common_nsleep+0x30/0x60")
        let trace = SlowLog.TraceResult(command: ["py-spy", "dump", "--pid", "1235"],
                                        output: "Thread 1 (idle)\n    sleep (slow.py:3)\n", timeout: 5)
        let entry = SlowLog.format(request(app: 1235), probe: probe, trace: trace)
        let stamp = ErrorLog.timestamp(1_700_000_000_123_456)
        XCTAssertEqual(entry, """
            [\(stamp)]  [pool www] pid 1234 (app 1235)
            script_filename = /var/www/slow.php
            request = GET /slow.php?x=1
            elapsed = 1.003 s
            app state = S (sleeping)
            wchan = hrtimer_nanosleep
            syscall = \(syscallLine)
            stack:
            [<0>] hrtimer_nanosleep+0x74/0xf0
            [<0>] common_nsleep+0x30/0x60
            trace (py-spy dump --pid 1235):
            Thread 1 (idle)
                sleep (slow.py:3)


            """)
        XCTAssertNotNil(entry.range(of: #"^\[\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d\]  \[pool"#, options: .regularExpression))
    }

    func testFormatOfAnUnreadableProbeAndAFailedTrace() {
        let probe = SlowLog.AppProbe(state: nil, wchan: nil, syscall: nil, stack: nil)
        var trace = SlowLog.TraceResult(command: ["/bin/sleep", "10"], output: "", timedOut: true, timeout: 0.5,
                                        exitStatus: nil)
        var entry = SlowLog.format(request(app: 9), probe: probe, trace: trace)
        XCTAssertTrue(entry.contains("\napp state = (not readable)\nwchan = (not readable)\nsyscall = (not readable)\nstack: (not readable)\n"), entry)
        XCTAssertTrue(entry.hasSuffix("trace (/bin/sleep 10):\n(no output)\ntrace command timed out after 0.5 s\n\n"), entry)

        trace = SlowLog.TraceResult(command: ["gdb"], output: "partial", truncated: true, timeout: 2, exitStatus: 3 << 8)
        entry = SlowLog.format(request(app: 9), probe: probe, trace: trace)
        XCTAssertTrue(entry.hasSuffix("trace (gdb):\npartial\n(output cut at 65536 bytes)\ntrace command exited with code 3\n\n"), entry)

        trace = SlowLog.TraceResult(command: ["nope"], output: "", timeout: 2, exitStatus: nil, failure: "cannot find nope on PATH")
        entry = SlowLog.format(request(app: 9), probe: probe, trace: trace)
        XCTAssertTrue(entry.hasSuffix("trace (nope): cannot find nope on PATH\n\n"), entry)
        XCTAssertFalse(SlowLog.format(request(app: 9), probe: probe, trace: nil).contains("trace"))
    }

    func testFormatDetails() {
        XCTAssertEqual(SlowLog.milliseconds(1_003_400), "1.003")
        XCTAssertEqual(SlowLog.milliseconds(999_600), "1.000")
        XCTAssertEqual(SlowLog.milliseconds(61_050_000), "61.050")
        XCTAssertEqual(SlowLog.milliseconds(4), "0.000")
        XCTAssertEqual(SlowLog.seconds(0.5), "0.5")
        XCTAssertEqual(SlowLog.seconds(2), "2")
        XCTAssertEqual(SlowLog.describeSyscall("running"), "running")
        XCTAssertEqual(SlowLog.describeSyscall("-1 0x7ffd90aa8b30 0x7fc103104503"), "none (blocked outside a syscall)")
        XCTAssertEqual(SlowLog.describeSyscall("99999 0x0"), "99999")
        XCTAssertEqual(SlowLog.describeState("D"), "D (disk sleep)")
        XCTAssertEqual(SlowLog.describeWchan("0"), "-")
        // A hostile URI cannot forge a line of its own.
        var r = request(app: 9)
        r.uri = "/x\n[01-Jan-2026 00:00:00]  [pool evil]"
        let entry = SlowLog.format(r, probe: SlowLog.AppProbe(state: "R", wchan: "0", syscall: "running", stack: ""), trace: nil)
        XCTAssertTrue(entry.contains("request = GET /x\\n[01-Jan-2026 00:00:00]  [pool evil]\n"), entry)
        XCTAssertTrue(entry.contains("\nstack: (empty)\n"), entry)
        XCTAssertEqual(SlowLog.TraceResult.substitute(["py-spy", "--pid={pid}", "{pid}{pid}"], pid: 42),
                       ["py-spy", "--pid=42", "4242"])
    }

    func testStateLetterAfterTheLastParenthesis() {
        let stat = Array("123 (evil) S (x)) R 1 123 123 0 -1".utf8)
        XCTAssertEqual(SlowLog.AppProbe.stateLetter(stat), "R")
        XCTAssertNil(SlowLog.AppProbe.stateLetter(Array("123 (x".utf8)))
    }

    // MARK: a live app

    func testProbeOfASleepingChild() throws {
        let pid = try children.spawn(["/bin/sleep", "5"])
        let probe = waitUntilSleeping(pid)
        XCTAssertEqual(probe.state, "S")
        let syscall = SlowLog.describeSyscall(probe.syscall)
        let wchan = probe.wchan ?? ""
        XCTAssertTrue(syscall.contains("nanosleep") || wchan.contains("nanosleep"), "syscall \(syscall), wchan \(wchan)")
        XCTAssertNil(SlowLog.AppProbe.read(pid: 0x3fff_fff0).state, "no such process")
        // What this machine gives (stack needs CAP_SYS_ADMIN): shown with -v.
        print("probe of sleep \(pid): \(probe)")
        let start = Clock.monotonicMicros()
        for _ in 0..<100 { _ = SlowLog.AppProbe.read(pid: pid) }
        print("AppProbe.read: \((Clock.monotonicMicros() - start) / 100) µs each")
    }

    func testReportAppendsTheTraceOutput() throws {
        let pid = try children.spawn(["/bin/sleep", "5"])
        _ = waitUntilSleeping(pid)
        let path = tempPath()
        let start = Clock.monotonicMicros()
        XCTAssertTrue(SlowLog.report(request(app: pid), path: path, traceCommand: ["/bin/echo", "traced", "{pid}"],
                                     traceTimeout: 2))
        let returnedAfter = Clock.monotonicMicros() - start
        XCTAssertLessThan(returnedAfter, 200_000, "report() must not wait for the helper")
        let text = waitForFile(path, seconds: 2) { $0.hasSuffix("\n\n") }
        XCTAssertTrue(text.contains("trace (/bin/echo traced \(pid)):\ntraced \(pid)\n"), text)
        XCTAssertTrue(text.contains("(app \(pid))\n"), text)
        XCTAssertTrue(text.contains("app state = S (sleeping)\n"), text)
        XCTAssertTrue(text.contains("nanosleep"), text)
        XCTAssertEqual(text.components(separatedBy: "[pool www]").count, 2, "one entry")
        print("report() returned after \(returnedAfter) µs; entry:\n\(text)")

        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o640 & ~currentUmask())

        // A second report appends.
        SlowLog.report(request(app: pid), path: path, traceCommand: nil, traceTimeout: 1)
        let both = waitForFile(path, seconds: 2) { $0.components(separatedBy: "[pool www]").count == 3 }
        XCTAssertEqual(both.components(separatedBy: "[pool www]").count, 3, both)
        XCTAssertTrue(both.hasPrefix(text))
    }

    func testReportKillsATraceCommandAtItsTimeout() throws {
        let pid = try children.spawn(["/bin/sleep", "5"])
        let path = tempPath()
        let start = Date()
        SlowLog.report(request(app: pid), path: path, traceCommand: ["/bin/sleep", "10"], traceTimeout: 0.5)
        let text = waitForFile(path, seconds: 3) { $0.hasSuffix("\n\n") }
        let took = Date().timeIntervalSince(start)
        XCTAssertTrue(text.contains("trace (/bin/sleep 10):\n(no output)\ntrace command timed out after 0.5 s\n"), text)
        XCTAssertLessThan(took, 3)
        XCTAssertGreaterThanOrEqual(took, 0.45)
    }

    func testReportLogsWhenTheSlowlogCannotBeOpened() throws {
        let logPath = tempPath()
        let log = try ErrorLog(path: logPath, level: .notice)
        defer { FD.close(log.fd) }
        XCTAssertTrue(SlowLog.report(request(app: getpid()), path: "/nonexistent-dir/slow.log", traceCommand: nil,
                                     traceTimeout: 1, errorLog: log))
        let text = waitForFile(logPath, seconds: 2) { $0.hasSuffix("\n") }
        XCTAssertTrue(text.contains("ERROR: [pool www] slowlog: unable to open slowlog: open(/nonexistent-dir/slow.log): No such file or directory (2)\n"), text)
    }

    // MARK: the trace command itself

    func testTraceRunCollectsBothStreamsAndTheStatus() {
        let t = SlowLog.TraceResult.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout: 5)
        XCTAssertNil(t.failure)
        XCTAssertFalse(t.timedOut)
        XCTAssertTrue(t.output.contains("out\n") && t.output.contains("err\n"), t.output)
        XCTAssertEqual(t.exitStatus.map { ExitStatus($0).code }, 3)

        let missing = SlowLog.TraceResult.run(["/nonexistent/tracer"], timeout: 1)
        XCTAssertNotNil(missing.failure)
        XCTAssertEqual(SlowLog.TraceResult.run(["no-such-tracer-here"], timeout: 1).failure,
                       "cannot find no-such-tracer-here on PATH")
    }

    func testTraceOutputIsCapped() {
        let t = SlowLog.TraceResult.run(["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a"], timeout: 5)
        XCTAssertTrue(t.truncated)
        XCTAssertFalse(t.timedOut)
        XCTAssertEqual(t.output.utf8.count, SlowLog.traceOutputCap)
        XCTAssertEqual(t.exitStatus, 0)
    }

    func testTraceTimeoutKillsItsChildrenToo() {
        // The shell's background child keeps the pipe open after the shell exits.
        let start = Clock.monotonicMicros()
        let t = SlowLog.TraceResult.run(["/bin/sh", "-c", "sleep 30 & echo started"], timeout: 0.3)
        XCTAssertLessThan(Clock.monotonicMicros() - start, 2_000_000)
        XCTAssertTrue(t.timedOut)
        XCTAssertEqual(t.output, "started\n")
    }

    private func currentUmask() -> mode_t {
        let old = umask(0o022)
        umask(old)
        return old
    }
}
