import XCTest

@testable import DroverMaster

final class BackoffTests: XCTestCase {
    func testDoublesUpToTheMaximum() {
        var b = Backoff()
        XCTAssertEqual(b.delay, 0)
        XCTAssertEqual(b.fail(at: 1_000), 100_000)
        XCTAssertEqual(b.fail(at: 2_000), 200_000)
        XCTAssertEqual(b.fail(at: 3_000), 400_000)
        for i in 0..<20 { _ = b.fail(at: 4_000 + Int64(i)) }
        XCTAssertEqual(b.delay, 30_000_000)
    }

    func testForgottenAfterAHealthyPeriod() {
        var b = Backoff()
        _ = b.fail(at: 0)
        _ = b.fail(at: 1)
        XCTAssertEqual(b.delay(at: 10_000_000), 200_000)
        XCTAssertEqual(b.delay(at: 31_000_000), 0)
        XCTAssertEqual(b.fail(at: 31_000_001), 100_000)
    }
}
