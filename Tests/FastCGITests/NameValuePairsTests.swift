import XCTest
@testable import FastCGI

/// Collects pairs with the zero-copy iterator.
func pairs(in bytes: [UInt8]) throws -> [([UInt8], [UInt8])] {
    var result: [([UInt8], [UInt8])] = []
    try bytes.withUnsafeBytes { raw in
        try NameValuePairs.forEach(in: raw) { name, value in result.append((Array(name), Array(value))) }
    }
    return result
}

final class NameValuePairsTests: XCTestCase {
    func testLengthEncodingBoundaries() {
        var out: [UInt8] = []
        NameValuePairs.append(name: [UInt8](repeating: 0x61, count: 127), value: [UInt8](), to: &out)
        XCTAssertEqual(Array(out.prefix(2)), [127, 0])
        XCTAssertEqual(out.count, 2 + 127)

        out = []
        NameValuePairs.append(name: [UInt8](repeating: 0x61, count: 128), value: [UInt8](repeating: 0x62, count: 1), to: &out)
        XCTAssertEqual(Array(out.prefix(5)), [0x80, 0, 0, 128, 1])
        XCTAssertEqual(out.count, 5 + 128 + 1)

        out = []
        NameValuePairs.append(name: [0x4E], value: [UInt8](repeating: 0, count: 0x0102_0304), to: &out)
        XCTAssertEqual(Array(out.prefix(6)), [1, 0x81, 0x02, 0x03, 0x04, 0x4E])
        XCTAssertEqual(NameValuePairs.encodedLength(nameLength: 1, valueLength: 0x0102_0304), out.count)
    }

    func testRoundTripAcrossLengths() throws {
        let lengths = [0, 1, 2, 126, 127, 128, 129, 255, 256, 65535, 65536, 100_000]
        var out: [UInt8] = []
        var expected: [([UInt8], [UInt8])] = []
        for (i, nameLength) in lengths.enumerated() {
            let valueLength = lengths[(i + 3) % lengths.count]
            let name = (0 ..< nameLength).map { UInt8(truncatingIfNeeded: $0 &+ i) }
            let value = (0 ..< valueLength).map { UInt8(truncatingIfNeeded: $0 &* 3) }
            NameValuePairs.append(name: name, value: value, to: &out)
            XCTAssertEqual(NameValuePairs.encodedLength(nameLength: nameLength, valueLength: valueLength),
                           out.count - expected.reduce(0) {
                               $0 + NameValuePairs.encodedLength(nameLength: $1.0.count, valueLength: $1.1.count)
                           })
            expected.append((name, value))
        }
        let decoded = try pairs(in: out)
        XCTAssertEqual(decoded.count, expected.count)
        for (got, want) in zip(decoded, expected) {
            XCTAssertEqual(got.0, want.0)
            XCTAssertEqual(got.1, want.1)
        }
    }

    func testEmptyNamesAndValues() throws {
        var out: [UInt8] = []
        NameValuePairs.append(name: "EMPTY", value: "", to: &out)
        NameValuePairs.append(name: "", value: "", to: &out)
        NameValuePairs.append(name: "", value: "x", to: &out)
        XCTAssertEqual(out, [5, 0] + Array("EMPTY".utf8) + [0, 0, 0, 1, 0x78])
        let decoded = try NameValuePairs.decode(out)
        XCTAssertEqual(decoded.map(\.name), ["EMPTY", "", ""])
        XCTAssertEqual(decoded.map(\.value), ["", "", "x"])
        XCTAssertEqual(try NameValuePairs.decode([]).count, 0)
    }

    func testBinaryContent() throws {
        let name = (0 ... 255).map { UInt8($0) }
        let value: [UInt8] = [0, 0x80, 0xFF, 0x0A, 0x0D, 0]
        var out: [UInt8] = []
        NameValuePairs.append(name: name, value: value, to: &out)
        NameValuePairs.append(name: value, value: name, to: &out)
        let decoded = try pairs(in: out)
        XCTAssertEqual(decoded.map(\.0), [name, value])
        XCTAssertEqual(decoded.map(\.1), [value, name])
        // Invalid UTF-8 is repaired, not fatal, in the String convenience.
        XCTAssertEqual(try NameValuePairs.decode(out).count, 2)
    }

    func testEncodeConvenienceMatchesAppend() throws {
        let list = [("A", "1"), ("LONG", String(repeating: "z", count: 300))]
        var out: [UInt8] = []
        for (n, v) in list { NameValuePairs.append(name: n, value: v, to: &out) }
        XCTAssertEqual(NameValuePairs.encode(list), out)
    }

    func testTruncatedLengthPrefixIsRejected() {
        for bytes: [UInt8] in [[0x80], [0x80, 0], [0x80, 0, 0], [3], [1, 0x80, 0, 0], [0x80, 0, 0, 1, 0x81]] {
            XCTAssertThrowsError(try pairs(in: bytes), "\(bytes)") {
                XCTAssertEqual($0 as? FastCGIError, .truncated, "\(bytes)")
            }
        }
    }

    func testLengthsPastTheEndAreRejected() {
        let cases: [[UInt8]] = [
            [3, 0, 0x41, 0x42],                    // name is 3, only 2 bytes
            [1, 2, 0x41, 0x42],                    // value runs past the end
            [0xFF, 0xFF, 0xFF, 0xFF, 0],           // name 0x7fffffff
            [0, 0xFF, 0xFF, 0xFF, 0xFF],           // value 0x7fffffff
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3], // both huge
            [1, 1, 0x41, 0x42, 2, 0, 0x41],        // a good pair, then a bad one
        ]
        for bytes in cases {
            XCTAssertThrowsError(try pairs(in: bytes), "\(bytes)") { error in
                guard case .invalidLength = error as? FastCGIError else {
                    return XCTFail("expected invalidLength, got \(error) for \(bytes)")
                }
            }
            XCTAssertThrowsError(try NameValuePairs.decode(bytes))
        }
    }

    func testPairsBeforeAnErrorAreDelivered() {
        var seen: [[UInt8]] = []
        let bytes: [UInt8] = [1, 1, 0x41, 0x42, 9, 9]
        XCTAssertThrowsError(try bytes.withUnsafeBytes { raw in
            try NameValuePairs.forEach(in: raw) { name, _ in seen.append(Array(name)) }
        })
        XCTAssertEqual(seen, [[0x41]])
    }

    func testBodyErrorsPropagate() {
        struct Stop: Error {}
        var calls = 0
        let bytes = NameValuePairs.encode([("A", "1"), ("B", "2")])
        XCTAssertThrowsError(try bytes.withUnsafeBytes { raw in
            try NameValuePairs.forEach(in: raw) { _, _ in calls += 1; throw Stop() }
        }) { XCTAssertTrue($0 is Stop) }
        XCTAssertEqual(calls, 1)
    }

    func testNextPairRanges() throws {
        let bytes = NameValuePairs.encode([("AB", "c"), ("", "")])
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            let first = try XCTUnwrap(try NameValuePairs.nextPair(in: raw, at: &offset))
            XCTAssertEqual(first.name, 2 ..< 4)
            XCTAssertEqual(first.value, 4 ..< 5)
            XCTAssertEqual(offset, 5)
            let second = try XCTUnwrap(try NameValuePairs.nextPair(in: raw, at: &offset))
            XCTAssertTrue(second.name.isEmpty && second.value.isEmpty)
            XCTAssertNil(try NameValuePairs.nextPair(in: raw, at: &offset))
        }
    }

    func testCheckedAppend() throws {
        var out: [UInt8] = []
        try NameValuePairs.checkedAppend(name: [1, 2], value: [3], to: &out)
        XCTAssertEqual(out, [2, 1, 1, 2, 3])
    }
}
