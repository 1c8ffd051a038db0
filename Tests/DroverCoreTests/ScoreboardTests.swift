import DroverConfig
import XCTest

@testable import DroverCore

final class ScoreboardTests: XCTestCase {
    func testSlotLifecycleShowsInStatus() throws {
        let board = try Scoreboard.create(poolCapacity: 4, slotCapacity: 8)
        board.configurePool(0, name: "www", limits: PoolLimits(pm: ProcessManager.static.scoreboardValue,
                                                               maxChildren: 2, startServers: 0, minSpare: 0, maxSpare: 0))
        let a = try XCTUnwrap(board.claimSlot(pool: 0, generation: 1))
        let b = try XCTUnwrap(board.claimSlot(pool: 0, generation: 1))
        XCTAssertNotEqual(a, b)
        board.setWorkerPID(slot: a, pid: 1111)
        board.setWorkerPID(slot: b, pid: 2222)
        let writerA = board.writer(slot: a)
        writerA.setState(.idle)
        board.writer(slot: b).setState(.idle)

        writerA.countAcceptedConnection()
        writerA.beginRequest(at: Clock.realtimeMicros())
        let params: [(SlotWriter.Field, String)] = [(.method, "POST"), (.uri, "/index.php"), (.query, "a=1"),
                                                    (.script, "/srv/index.php"), (.user, "bob")]
        writerA.describeRequest(contentLength: 42) { set in
            for (field, value) in params {
                Array(value.utf8).withUnsafeBytes { set(field, $0) }
            }
        }
        var status = board.status(pool: 0)
        XCTAssertEqual(status.name, "www")
        XCTAssertEqual(status.processManager, "static")
        XCTAssertEqual(status.totalProcesses, 2)
        XCTAssertEqual(status.activeProcesses, 1)
        XCTAssertEqual(status.idleProcesses, 1)
        XCTAssertEqual(status.acceptedConnections, 1)
        XCTAssertEqual(status.maxActiveProcesses, 1)
        let busy = try XCTUnwrap(status.processes.first { $0.pid == 1111 })
        XCTAssertEqual(busy.state, "Running")
        XCTAssertEqual(busy.requestMethod, "POST")
        XCTAssertEqual(busy.requestURI, "/index.php?a=1")
        XCTAssertEqual(busy.script, "/srv/index.php")
        XCTAssertEqual(busy.user, "bob")
        XCTAssertEqual(busy.contentLength, 42)

        writerA.setStatus(404)
        writerA.endRequest(at: Clock.realtimeMicros(), bytesIn: 42, bytesOut: 10)
        status = board.status(pool: 0)
        XCTAssertEqual(status.activeProcesses, 0)
        XCTAssertEqual(status.idleProcesses, 2)
        XCTAssertEqual(status.processes.first { $0.pid == 1111 }?.statusCode, 404)
        XCTAssertEqual(status.processes.first { $0.pid == 1111 }?.requests, 1)
    }

    func testLongFieldsAreTruncatedLikePHPFPM() throws {
        let board = try Scoreboard.create(poolCapacity: 1, slotCapacity: 1)
        board.configurePool(0, name: "p", limits: PoolLimits(pm: 0, maxChildren: 1, startServers: 0, minSpare: 0, maxSpare: 0))
        let slot = try XCTUnwrap(board.claimSlot(pool: 0, generation: 1))
        let writer = board.writer(slot: slot)
        writer.beginRequest(at: Clock.realtimeMicros())
        let long = String(repeating: "u", count: 1000)
        writer.describeRequest(contentLength: 0) { set in
            Array(long.utf8).withUnsafeBytes { set(.uri, $0) }
        }
        let uri = board.status(pool: 0).processes[0].requestURI
        XCTAssertEqual(uri.count, 127)   // php-fpm: request_uri[128], NUL-terminated
    }

    func testSlotOfWorkerThatDiedBusyIsFreedAndActiveCorrected() throws {
        let board = try Scoreboard.create(poolCapacity: 1, slotCapacity: 2)
        board.configurePool(0, name: "p", limits: PoolLimits(pm: 0, maxChildren: 2, startServers: 0, minSpare: 0, maxSpare: 0))
        let slot = try XCTUnwrap(board.claimSlot(pool: 0, generation: 1))
        board.writer(slot: slot).beginRequest(at: Clock.realtimeMicros())
        XCTAssertEqual(board.status(pool: 0).activeProcesses, 1)
        board.releaseSlot(slot)
        XCTAssertEqual(board.slotState(slot), .free)
        XCTAssertEqual(board.status(pool: 0).totalProcesses, 0)
        // The freed slot is reused.
        XCTAssertEqual(board.claimSlot(pool: 0, generation: 2), slot)
    }

    func testNoSlotWhenFull() throws {
        let board = try Scoreboard.create(poolCapacity: 1, slotCapacity: 1)
        XCTAssertNotNil(board.claimSlot(pool: 0, generation: 1))
        XCTAssertNil(board.claimSlot(pool: 0, generation: 1))
    }

    func testAttachSeesTheSameMemory() throws {
        let board = try Scoreboard.create(poolCapacity: 2, slotCapacity: 2)
        board.configurePool(1, name: "git", limits: PoolLimits(pm: 0, maxChildren: 1, startServers: 0, minSpare: 0, maxSpare: 0))
        board.add(.spawns, pool: 1, 3)
        let other = try Scoreboard.attach(fd: board.fd)
        XCTAssertEqual(other.poolIndex(named: "git"), 1)
        XCTAssertEqual(other.status(pool: 1).spawns, 3)
        XCTAssertEqual(other.poolIndices, [1])
    }
}
