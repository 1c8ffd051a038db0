import DroverConfig
import XCTest

@testable import DroverMaster

final class ScalingPolicyTests: XCTestCase {
    /// The burst of the issue: start 2, min 1, max 3, max_children 64.
    private func dynamic(total: Int = 2, starting: Int = 0, idle: Int, queued: Int = 0) -> ScalingInput {
        ScalingInput(pm: .dynamic, maxChildren: 64, minSpare: 1, maxSpare: 3,
                     total: total, starting: starting, idle: idle, queued: queued)
    }

    func testDynamicKeepsMinSpareIdle() {
        XCTAssertEqual(ScalingPolicy.workersToStart(dynamic(idle: 1)), 0)
        XCTAssertEqual(ScalingPolicy.workersToStart(dynamic(idle: 0)), 1)
    }

    func testDynamicStartsOneWorkerPerWaitingConnection() {
        // 50 connections, 2 busy workers, 48 waiting: 48 + the idle reserve.
        XCTAssertEqual(ScalingPolicy.workersToStart(dynamic(idle: 0, queued: 48)), 49)
    }

    func testOnlyWaitingConnectionsAreUrgent() {
        // Short of the idle reserve with nobody waiting: not urgent.
        XCTAssertEqual(ScalingPolicy.workersForWaitingConnections(dynamic(idle: 0)), 0)
        // One waiting, one idle worker about to take it: not urgent either.
        XCTAssertEqual(ScalingPolicy.workersForWaitingConnections(dynamic(idle: 1, queued: 1)), 0)
        XCTAssertEqual(ScalingPolicy.workersToStart(dynamic(idle: 1, queued: 1)), 1)
        XCTAssertEqual(ScalingPolicy.workersForWaitingConnections(dynamic(idle: 0, queued: 48)), 48)
        XCTAssertEqual(ScalingPolicy.workersForWaitingConnections(dynamic(total: 34, starting: 32, idle: 0, queued: 48)), 16)
    }

    func testWorkersAlreadyStartingAreCounted() {
        XCTAssertEqual(ScalingPolicy.workersToStart(dynamic(total: 34, starting: 32, idle: 0, queued: 48)), 17)
        XCTAssertEqual(ScalingPolicy.workersToStart(dynamic(total: 51, starting: 49, idle: 0, queued: 48)), 0)
    }

    func testNeverBeyondMaxChildren() {
        XCTAssertEqual(ScalingPolicy.workersToStart(dynamic(total: 60, idle: 0, queued: 48)), 4)
        XCTAssertEqual(ScalingPolicy.workersToStart(dynamic(total: 64, idle: 0, queued: 48)), 0)
        XCTAssertTrue(ScalingPolicy.reachedMaxChildren(dynamic(total: 64, idle: 0, queued: 3)))
        XCTAssertTrue(ScalingPolicy.reachedMaxChildren(dynamic(total: 64, idle: 0)))
        XCTAssertFalse(ScalingPolicy.reachedMaxChildren(dynamic(total: 64, idle: 1)))
        XCTAssertFalse(ScalingPolicy.reachedMaxChildren(dynamic(total: 63, idle: 0, queued: 5)))
    }

    func testOndemandStartsOnlyForWaitingConnections() {
        let none = ScalingInput(pm: .ondemand, maxChildren: 5, minSpare: 0, maxSpare: 0,
                                total: 0, starting: 0, idle: 0, queued: 0)
        XCTAssertEqual(ScalingPolicy.workersToStart(none), 0)
        var waiting = none
        waiting.queued = 3
        XCTAssertEqual(ScalingPolicy.workersToStart(waiting), 3)
        waiting.idle = 1
        XCTAssertEqual(ScalingPolicy.workersToStart(waiting), 2)
        XCTAssertFalse(ScalingPolicy.reachedMaxChildren(waiting))
        waiting.total = 5
        XCTAssertTrue(ScalingPolicy.reachedMaxChildren(waiting))
        // All busy with nobody waiting is not "reached": nobody is refused.
        XCTAssertFalse(ScalingPolicy.reachedMaxChildren(ScalingInput(
            pm: .ondemand, maxChildren: 5, minSpare: 0, maxSpare: 0, total: 5, starting: 0, idle: 0, queued: 0)))
    }

    func testStaticPoolsAreNotScaled() {
        let x = ScalingInput(pm: .static, maxChildren: 4, minSpare: 0, maxSpare: 0,
                             total: 2, starting: 0, idle: 0, queued: 9)
        XCTAssertEqual(ScalingPolicy.workersToStart(x), 0)
        XCTAssertFalse(ScalingPolicy.reachedMaxChildren(x))
        XCTAssertEqual(ScalingPolicy.surplusIdle(x), 0)
    }

    func testSurplusIdleAboveMaxSpare() {
        XCTAssertEqual(ScalingPolicy.surplusIdle(dynamic(total: 10, idle: 5)), 2)
        XCTAssertEqual(ScalingPolicy.surplusIdle(dynamic(total: 10, idle: 3)), 0)
    }

    func testSpawnRateAllowsABurstThenTheRate() {
        var rate = SpawnRate(perSecond: 32, now: 0)
        XCTAssertEqual(rate.take(49, at: 0), 32)
        XCTAssertEqual(rate.take(17, at: 0), 0)
        XCTAssertEqual(rate.secondsToNextToken(at: 0), 1.0 / 32, accuracy: 1e-9)
        XCTAssertEqual(rate.take(17, at: 100_000), 3)       // 3.2 tokens after 0.1 s
        XCTAssertEqual(rate.take(100, at: 10_000_000), 32)  // never more than one second's worth
    }

    func testEmergencyRestartCountsWithinTheInterval() {
        var e = EmergencyRestart(threshold: 3, intervalSeconds: 10)
        XCTAssertFalse(e.record(at: 0))
        XCTAssertFalse(e.record(at: 1_000_000))
        XCTAssertFalse(e.record(at: 20_000_000))   // the first two are too old
        XCTAssertFalse(e.record(at: 21_000_000))
        XCTAssertTrue(e.record(at: 22_000_000))
        XCTAssertFalse(e.record(at: 23_000_000))   // a new episode starts from zero
        XCTAssertFalse(EmergencyRestart(threshold: 0, intervalSeconds: 10).isEnabled)
    }
}
