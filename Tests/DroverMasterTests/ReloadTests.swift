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
        LiveWorker(slot: 2, pid: 102, pool: 1, generation: 1),
    ]

    func testKeptPoolRetiresWhenItsNewGenerationIsReady() {
        let old = OldGeneration(workers: workers, orphans: [], now: 0)
        var ready: [Int: Bool] = [0: false, 1: false]
        XCTAssertEqual(old.poolsToRetire(now: 10_000, newGenerationReady: { ready[$0] }), [Int]())
        ready[1] = true
        XCTAssertEqual(old.poolsToRetire(now: 20_000, newGenerationReady: { ready[$0] }), [1])
        let (pids, sockets) = old.retire(1, now: 20_000)
        XCTAssertEqual(pids, [102])
        XCTAssertTrue(sockets.isEmpty)
        XCTAssertFalse(old.allRetired)
        // Not ready in time: retired anyway.
        XCTAssertEqual(old.poolsToRetire(now: OldGeneration.readyWait, newGenerationReady: { ready[$0] }), [0])
        _ = old.retire(0, now: OldGeneration.readyWait)
        XCTAssertTrue(old.allRetired)
    }

    func testDroppedPoolRetiresAtOnceWithoutOrphanedSockets() {
        let old = OldGeneration(workers: workers, orphans: [], now: 0)
        XCTAssertEqual(old.poolsToRetire(now: 1, newGenerationReady: { $0 == 0 ? false : nil }), [1])
    }

    func testExitsAreCountedPerPool() {
        let old = OldGeneration(workers: workers, orphans: [], now: 0)
        XCTAssertTrue(old.owns(100))
        XCTAssertEqual(old.count(pool: 0), 2)
        XCTAssertEqual(old.exited(100)?.slot, 0)
        XCTAssertNil(old.exited(100))
        XCTAssertEqual(old.count(pool: 0), 1)
        _ = old.exited(101)
        _ = old.exited(102)
        XCTAssertTrue(old.isEmpty)
    }

    func testOrphanWithoutWorkersRetiresAtOnce() {
        let orphan = Handoff.Listener(fd: -1, address: "/x.sock", fromSystemd: false, pool: 5)
        let old = OldGeneration(workers: [], orphans: [orphan], now: 0)
        XCTAssertFalse(old.isEmpty)
        XCTAssertEqual(old.poolsToRetire(now: 1, newGenerationReady: { _ in nil }), [5])
        XCTAssertEqual(old.retire(5, now: 1).sockets, [orphan])
        XCTAssertTrue(old.isEmpty)
    }

    func testProcessControlTimeoutEscalatesOnce() {
        let old = OldGeneration(workers: workers, orphans: [], now: 0)
        _ = old.retire(1, now: 0)
        XCTAssertTrue(old.overdue(now: 500_000, timeout: 1).isEmpty)
        XCTAssertTrue(old.overdue(now: 5_000_000, timeout: 0).isEmpty, "0: no limit")
        let first = old.overdue(now: 1_000_000, timeout: 1)
        XCTAssertEqual(first.map { $0.pid }, [102])
        XCTAssertEqual(first.map { $0.signal }, [SIGTERM])
        XCTAssertTrue(old.overdue(now: 1_500_000, timeout: 1).isEmpty)
        XCTAssertEqual(old.overdue(now: 2_000_000, timeout: 1).map { $0.signal }, [SIGKILL])
        XCTAssertTrue(old.overdue(now: 9_000_000, timeout: 1).isEmpty)
    }
}
