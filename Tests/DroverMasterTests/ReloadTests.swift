import DroverCore
import Glibc
import XCTest
@testable import DroverMaster

final class HandoffTests: XCTestCase {
    func testRoundTripWithListenersOrphansAndSpaces() {
        let handoff = Handoff(
            generation: 3, scoreboardFD: 5, channelSendFD: 6, channelReceiveFD: 7, agentPID: 4242,
            appSocketBase: "/tmp/drover dir.Ab12", pidFile: "/run/drover.pid",
            listeners: [
                Handoff.Listener(fd: 8, address: "/run/www pool.sock", fromSystemd: false),
                Handoff.Listener(fd: 9, address: "[::1]:9000", fromSystemd: true),
                Handoff.Listener(fd: 10, address: "/run/old.sock", fromSystemd: false, pool: 2),
            ])
        XCTAssertEqual(Handoff(decoding: handoff.encoded()), handoff)
        XCTAssertEqual(handoff.descriptors, [5, 6, 7, 8, 9, 10])
    }

    func testWithoutPidFileOrAgent() {
        let handoff = Handoff(generation: 1, scoreboardFD: 3, channelSendFD: 4, channelReceiveFD: 5, agentPID: 0,
                              appSocketBase: "/tmp/d", pidFile: nil, listeners: [])
        XCTAssertEqual(Handoff(decoding: handoff.encoded()), handoff)
    }

    func testMalformedIsRejected() {
        XCTAssertNil(Handoff(decoding: ""))
        XCTAssertNil(Handoff(decoding: "generation 1\nscoreboard 3"))
        XCTAssertNil(Handoff(decoding: "generation 1\nscoreboard 3\nchannel 4 5\nagent 0\nsockets /x\nlisten x 0 /a"))
        XCTAssertNil(Handoff(decoding: "generation 1\nscoreboard 3\nchannel 4 5\nagent 0\nsockets /x\nbogus 1"))
    }

    func testTakeRemovesTheVariable() {
        setenv(Handoff.variable, "generation 1", 1)
        var env = [Handoff.variable: "generation 1", "PATH": "/bin"]
        XCTAssertNil(Handoff.take(from: &env))     // malformed, but taken out all the same
        XCTAssertEqual(env, ["PATH": "/bin"])
        XCTAssertNil(getenv(Handoff.variable))
    }
}

final class OldGenerationTests: XCTestCase {
    let workers = [
        LiveWorker(slot: 0, pid: 100, pool: 0, generation: 1),
        LiveWorker(slot: 1, pid: 101, pool: 0, generation: 1),
        LiveWorker(slot: 2, pid: 102, pool: 0, generation: 1),
        LiveWorker(slot: 3, pid: 200, pool: 1, generation: 1),
    ]

    func testOneOldWorkerLeavesPerNewWorkerReadyIdleOnesFirst() {
        let old = OldGeneration(workers: workers, orphans: [], now: 0)
        var ready = 0
        let progress = { (pool: Int) -> OldGeneration.Progress? in pool == 0 ? .init(target: 3, ready: ready) : .init(target: 1, ready: 0) }
        XCTAssertEqual(old.step(now: 10_000, newGeneration: progress, isIdle: { _ in false }).pids, [])
        ready = 1
        XCTAssertEqual(old.step(now: 20_000, newGeneration: progress, isIdle: { $0 == 101 }).pids, [101])
        XCTAssertEqual(old.step(now: 30_000, newGeneration: progress, isIdle: { _ in true }).pids, [])
        ready = 3
        XCTAssertEqual(Set(old.step(now: 40_000, newGeneration: progress, isIdle: { _ in true }).pids), [100, 102])
        XCTAssertFalse(old.isServing(pool: 0))
        XCTAssertFalse(old.allRetired, "pool 1 has no new worker yet")
        // No progress for readyWait: the rest is retired anyway.
        XCTAssertEqual(old.step(now: 40_000 + OldGeneration.readyWait, newGeneration: progress, isIdle: { _ in true }).pids, [200])
        XCTAssertTrue(old.allRetired)
    }

    func testOndemandAndDroppedPoolsRetireAtOnce() {
        let old = OldGeneration(workers: workers, orphans: [], now: 0)
        let step = old.step(now: 1, newGeneration: { $0 == 0 ? .init(target: 0, ready: 0) : nil }, isIdle: { _ in true })
        XCTAssertEqual(Set(step.pids), [100, 101, 102, 200])
    }

    func testExitsAreCountedPerPool() {
        let old = OldGeneration(workers: workers, orphans: [], now: 0)
        XCTAssertTrue(old.owns(100))
        XCTAssertEqual(old.count(pool: 0), 3)
        XCTAssertEqual(old.exited(100)?.slot, 0)
        XCTAssertNil(old.exited(100))
        XCTAssertEqual(old.count(pool: 0), 2)
        for pid: Int32 in [101, 102, 200] { _ = old.exited(pid) }
        XCTAssertTrue(old.isEmpty)
    }

    func testOrphanIsClosedOnceItsPoolHasNoServingWorker() {
        let orphan = Handoff.Listener(fd: -1, address: "/x.sock", fromSystemd: false, pool: 5)
        let old = OldGeneration(workers: [LiveWorker(slot: 9, pid: 500, pool: 5, generation: 1)], orphans: [orphan], now: 0)
        XCTAssertFalse(old.allRetired)
        let step = old.step(now: 1, newGeneration: { _ in nil }, isIdle: { _ in true })
        XCTAssertEqual(step.pids, [500])
        XCTAssertEqual(step.sockets, [orphan])
        XCTAssertTrue(old.allRetired)
        _ = old.exited(500)
        XCTAssertTrue(old.isEmpty)
    }

    func testProcessControlTimeoutEscalatesOnce() {
        let old = OldGeneration(workers: workers, orphans: [], now: 0)
        _ = old.step(now: 0, newGeneration: { $0 == 1 ? nil : .init(target: 3, ready: 0) }, isIdle: { _ in true })
        XCTAssertTrue(old.overdue(now: 500_000, timeout: 1).isEmpty)
        XCTAssertTrue(old.overdue(now: 5_000_000, timeout: 0).isEmpty, "0: no limit")
        let first = old.overdue(now: 1_000_000, timeout: 1)
        XCTAssertEqual(first.map { $0.pid }, [200])
        XCTAssertEqual(first.map { $0.signal }, [SIGTERM])
        XCTAssertTrue(old.overdue(now: 1_500_000, timeout: 1).isEmpty)
        XCTAssertEqual(old.overdue(now: 2_000_000, timeout: 1).map { $0.signal }, [SIGKILL])
        XCTAssertTrue(old.overdue(now: 9_000_000, timeout: 1).isEmpty)
    }
}
