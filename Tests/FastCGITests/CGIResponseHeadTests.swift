import XCTest
import FastCGI

private func status(_ text: String) -> Int? {
    Array(text.utf8).withUnsafeBytes { CGIResponseHead.statusCode($0) }
}

private func end(_ text: String) -> Int? {
    Array(text.utf8).withUnsafeBytes { CGIResponseHead.headerEnd($0) }
}

final class CGIResponseHeadTests: XCTestCase {
    func testStatusHeader() {
        XCTAssertEqual(status("Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n<h1>"), 404)
        XCTAssertEqual(status("Content-Type: text/html\r\nStatus: 503\r\n\r\n"), 503)
        XCTAssertEqual(status("status:500\n\n"), 500)
        XCTAssertEqual(status("STATUS: \t201 Created\r\n\r\n"), 201)
        XCTAssertEqual(status("Status : 418\r\n\r\n"), 418)
    }

    func testFirstStatusWins() {
        XCTAssertEqual(status("Status: 404\r\nStatus: 500\r\n\r\n"), 404)
    }

    func testLocationWithoutStatusIs302() {
        XCTAssertEqual(status("Location: https://example.com/\r\n\r\n"), 302)
        XCTAssertEqual(status("location: /next\n\n"), 302)
        XCTAssertEqual(status("Location: /x\r\nStatus: 301 Moved\r\n\r\n"), 301)
        XCTAssertEqual(status("Status: 307\r\nLocation: /x\r\n\r\n"), 307)
    }

    func testDefaultIs200() {
        XCTAssertEqual(status("Content-Type: text/plain\r\n\r\nStatus: 500\r\n\r\n"), 200, "body is not headers")
        XCTAssertEqual(status("X-Powered-By: PHP\r\n\r\n"), 200)
        XCTAssertEqual(status("X-Status: 500\r\nStatusCode: 404\r\n\r\n"), 200)
        XCTAssertEqual(status("\r\nbody"), 200)
        XCTAssertEqual(status("\n"), 200)
    }

    func testMalformedStatusIsIgnored() {
        XCTAssertEqual(status("Status: abc\r\n\r\n"), 200)
        XCTAssertEqual(status("Status: 42\r\n\r\n"), 200)
        XCTAssertEqual(status("Status: 4040\r\n\r\n"), 200)
        XCTAssertEqual(status("Status: 099\r\n\r\n"), 200)
        XCTAssertEqual(status("Status:\r\n\r\n"), 200)
        XCTAssertEqual(status("Status: bad\r\nLocation: /\r\n\r\n"), 302)
    }

    func testIncompleteHeaderBlock() {
        XCTAssertNil(status(""))
        XCTAssertNil(status("Status: 404"))
        XCTAssertNil(status("Status: 404\r\n"))
        XCTAssertNil(status("Status: 404\r\n\r"))
        XCTAssertNil(end("Content-Type: text/plain\r\n"))
    }

    func testHeaderEnd() {
        XCTAssertEqual(end("A: b\r\n\r\nbody"), 8)
        XCTAssertEqual(end("A: b\n\nbody"), 6)
        XCTAssertEqual(end("A: b\n\r\nbody"), 7)
        XCTAssertEqual(end("A: b\r\n\nbody"), 7)
        XCTAssertEqual(end("\r\n"), 2)
        XCTAssertEqual(end("\n"), 1)
        XCTAssertEqual(end("A: b\r\nC: d\r\n\r\n"), 14)
    }

    func testParseGivesBothInOnePass() {
        let text = "Status: 204\r\nX: y\r\n\r\nrest"
        let parsed = Array(text.utf8).withUnsafeBytes { CGIResponseHead.parse($0) }
        XCTAssertEqual(parsed?.statusCode, 204)
        XCTAssertEqual(parsed?.headerEnd, text.utf8.count - 4)
    }
}
