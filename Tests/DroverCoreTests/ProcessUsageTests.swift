import Foundation
import DroverTestSupport
import XCTest

@testable import DroverCore

final class ProcessUsageTests: XCTestCase {
    private let children = ChildProcesses()

    override func tearDown() {
        children.killAll()
    }

    func testSleepingChildHasMemoryAndLittleCPU() throws {
        let pid = try children.spawn(["/bin/sleep", "30"])
        let usage = try XCTUnwrap(ProcessUsage(pid: pid))
        let a = try XCTUnwrap(usage.sample())
        XCTAssertGreaterThan(a.rssBytes, 0)
        XCTAssertGreaterThanOrEqual(a.cpuMicros, 0)
        XCTAssertLessThan(a.cpuMicros, 500_000)
        usleep(100_000)
        let b = try XCTUnwrap(usage.sample())
        XCTAssertGreaterThanOrEqual(b.cpuMicros, a.cpuMicros)
        XCTAssertLessThan(b.cpuMicros - a.cpuMicros, 20_000, "a sleeping process should use next to no CPU")
        XCTAssertGreaterThan(b.rssBytes, 0)
    }

    func testBusyChildCPUGrows() throws {
        let pid = try children.spawn(["/bin/sh", "-c", "while :; do :; done"])
        let usage = try XCTUnwrap(ProcessUsage(pid: pid))
        let start = Clock.monotonicMicros()
        let a = try XCTUnwrap(usage.sample())
        usleep(400_000)
        let b = try XCTUnwrap(usage.sample())
        let wall = Clock.monotonicMicros() - start
        XCTAssertGreaterThan(b.cpuMicros - a.cpuMicros, 20_000, "CPU: \(a.cpuMicros) -> \(b.cpuMicros) µs")
        XCTAssertLessThanOrEqual(b.cpuMicros - a.cpuMicros, wall + 10_000, "one thread cannot beat the wall clock")
        XCTAssertGreaterThan(b.rssBytes, 0)
        let percent = ProcessUsage.cpuPercent(cpuMicros: b.cpuMicros - a.cpuMicros, wallMicros: wall)
        XCTAssertGreaterThan(percent, 5)
        XCTAssertLessThanOrEqual(percent, 103)
    }

    /// The process CPU clock sums every thread (/proc/PID/schedstat would
    /// show only the main thread, which sits idle here).
    func testCountsEveryThread() throws {
        let usage = try XCTUnwrap(ProcessUsage(pid: getpid()))
        let a = try XCTUnwrap(usage.sample())
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let end = Clock.monotonicMicros() + 300_000
            var x = 0
            while Clock.monotonicMicros() < end { x &+= 1 }
            if x == 42 { print("") }
            done.signal()
        }
        thread.start()
        done.wait()
        let b = try XCTUnwrap(usage.sample())
        XCTAssertGreaterThan(b.cpuMicros - a.cpuMicros, 30_000, "CPU: \(a.cpuMicros) -> \(b.cpuMicros) µs")
    }

    func testDeadProcessSamplesNil() throws {
        let pid = try children.spawn(["/bin/sleep", "30"])
        let usage = try XCTUnwrap(ProcessUsage(pid: pid))
        XCTAssertNotNil(usage.sample())
        kill(pid, SIGKILL)
        // A zombie (killed, not reaped yet) has no memory map: nil.
        var zombie: ProcessUsage.Sample? = usage.sample()
        for _ in 0..<100 where zombie != nil {
            usleep(10_000)
            zombie = usage.sample()
        }
        XCTAssertNil(zombie)
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        children.forget(pid)
        XCTAssertNil(usage.sample())
        XCTAssertNil(ProcessUsage(pid: pid))
        XCTAssertNil(ProcessUsage(pid: 0))
        XCTAssertNil(ProcessUsage(pid: -1))
    }

    func testClosedSamplesNil() throws {
        let usage = try XCTUnwrap(ProcessUsage(pid: getpid()))
        XCTAssertNotNil(usage.sample())
        usage.close()
        usage.close()
        XCTAssertNil(usage.sample())
    }

    func testCPUPercent() {
        XCTAssertEqual(ProcessUsage.cpuPercent(cpuMicros: 50_000, wallMicros: 100_000), 50)
        XCTAssertEqual(ProcessUsage.cpuPercent(cpuMicros: 250_000, wallMicros: 100_000), 250)
        XCTAssertEqual(ProcessUsage.cpuPercent(cpuMicros: 0, wallMicros: 100_000), 0)
        XCTAssertEqual(ProcessUsage.cpuPercent(cpuMicros: 10, wallMicros: 0), 0)
        XCTAssertEqual(ProcessUsage.cpuPercent(cpuMicros: -5, wallMicros: 10), 0)
    }
}
