import XCTest
@testable import FastCGI

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A realistic request and response on one connection.
func sampleStream() -> [UInt8] {
    var out: [UInt8] = []
    RecordEncoder.appendBeginRequest(requestID: 1, role: .responder, keepConnection: true, to: &out)
    RecordEncoder.appendParams(requestID: 1, params: [("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "70000"),
                                                      ("LONG", String(repeating: "L", count: 200))], to: &out)
    RecordEncoder.append(.stdin, requestID: 1, content: [UInt8](repeating: 0x42, count: 70000), to: &out)
    RecordEncoder.appendEmpty(.stdin, requestID: 1, to: &out)
    RecordEncoder.append(.stdout, requestID: 1, content: Array("Status: 201 Created\r\n\r\nok".utf8), to: &out)
    RecordEncoder.append(.stderr, requestID: 1, content: Array("warning\n".utf8), to: &out)
    RecordEncoder.appendEmpty(.stdout, requestID: 1, to: &out)
    RecordEncoder.appendEndRequest(requestID: 1, appStatus: 0, protocolStatus: .requestComplete, to: &out)
    RecordEncoder.appendUnknownType(200, to: &out)
    return out
}

final class RecordDecoderTests: XCTestCase {
    func testOneByteAtATimeYieldsTheSameRecords() throws {
        let stream = sampleStream()
        let whole = decodeAll(stream)
        XCTAssertEqual(whole.count, 11)

        var decoder = RecordDecoder()
        var records: [Record] = []
        for byte in stream {
            decoder.feed([byte])
            while let record = try decoder.next() { records.append(record) }
        }
        XCTAssertEqual(records, whole)
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }

    func testRandomChunkingYieldsTheSameRecords() throws {
        let stream = sampleStream()
        let whole = decodeAll(stream)
        var rng = SeededGenerator(seed: 42)
        for _ in 0 ..< 20 {
            var decoder = RecordDecoder()
            var records: [Record] = []
            var offset = 0
            while offset < stream.count {
                let n = min(stream.count - offset, Int.random(in: 1 ... 20000, using: &rng))
                stream[offset ..< offset + n].withUnsafeBytes { decoder.feed($0) }
                offset += n
                while let record = try decoder.next() { records.append(record) }
            }
            XCTAssertEqual(records, whole)
        }
    }

    func testIncompleteRecordWaitsForMoreBytes() throws {
        var bytes: [UInt8] = []
        RecordEncoder.append(.stdout, requestID: 1, content: [1, 2, 3], to: &bytes)
        var decoder = RecordDecoder()
        decoder.feed(Array(bytes.prefix(7)))
        XCTAssertNil(try decoder.next())
        decoder.feed(Array(bytes[7 ..< 12]))
        XCTAssertNil(try decoder.next(), "content complete but padding missing")
        XCTAssertEqual(decoder.bufferedByteCount, 12)
        decoder.feed(Array(bytes[12...]))
        let record = try XCTUnwrap(try decoder.next())
        XCTAssertEqual(record.content, [1, 2, 3])
        XCTAssertNil(try decoder.next())
    }

    func testAnyPaddingIsAccepted() throws {
        var decoder = RecordDecoder()
        for padding: UInt8 in [0, 1, 7, 8, 9, 255] {
            let header = RecordHeader(type: .stdout, requestID: 2, contentLength: 2, paddingLength: padding)
            decoder.feed(header.bytes + [0x68, 0x69] + [UInt8](repeating: 0xCC, count: Int(padding)))
            let record = try XCTUnwrap(try decoder.next())
            XCTAssertEqual(record.content, [0x68, 0x69])
            XCTAssertEqual(record.header.paddingLength, padding)
        }
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }

    func testWrongVersionIsRejectedAndSticky() {
        var decoder = RecordDecoder()
        decoder.feed(Array("GET / HTTP/1.1\r\n".utf8))
        XCTAssertThrowsError(try decoder.next()) {
            XCTAssertEqual($0 as? FastCGIError, .unsupportedVersion(UInt8(ascii: "G")))
        }
        XCTAssertThrowsError(try decoder.next())
    }

    func testContentLimit() throws {
        var decoder = RecordDecoder(maxContentLength: 16)
        var bytes: [UInt8] = []
        RecordEncoder.append(.stdout, requestID: 1, content: [UInt8](repeating: 1, count: 16), to: &bytes)
        RecordEncoder.append(.stdout, requestID: 1, content: [UInt8](repeating: 1, count: 17), to: &bytes)
        decoder.feed(bytes)
        XCTAssertEqual(try decoder.next()?.content.count, 16)
        XCTAssertThrowsError(try decoder.next()) { error in
            guard case .limitExceeded = error as? FastCGIError else { return XCTFail("\(error)") }
        }
    }

    func testHugeDeclaredLengthWithoutBytesIsJustIncomplete() throws {
        var decoder = RecordDecoder()
        decoder.feed([1, 6, 0, 1, 0xFF, 0xFF, 0xFF, 0])
        XCTAssertNil(try decoder.next())
        XCTAssertEqual(decoder.bufferedByteCount, 8)
    }

    func testManyRecordsDoNotGrowTheBuffer() throws {
        var chunk: [UInt8] = []
        RecordEncoder.append(.stdout, requestID: 1, content: [UInt8](repeating: 7, count: 1000), to: &chunk)
        var decoder = RecordDecoder()
        // Feed 1.5 records at a time so a partial record is always left over.
        let twice = chunk + chunk
        var total = 0
        for _ in 0 ..< 1000 {
            decoder.feed(Array(twice.prefix(twice.count * 3 / 4)))
            decoder.feed(Array(twice.suffix(twice.count - twice.count * 3 / 4)))
            while let record = try decoder.next() { total += record.content.count }
            XCTAssertLessThanOrEqual(decoder.storage.count, 4 * twice.count)
        }
        XCTAssertEqual(total, 2_000_000)
    }
}

final class RandomInputTests: XCTestCase {
    /// Random and mutated bytes must produce records or errors, never a crash.
    func testRandomBytesDoNotCrashTheDecoder() {
        var rng = SeededGenerator(seed: 0xD20E_5EED)
        let valid = sampleStream()
        for round in 0 ..< 3000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0 ..< Int.random(in: 0 ... 400, using: &rng)).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
                if round % 4 == 0, !bytes.isEmpty { bytes[0] = 1 }  // get past the version check more often
            } else {
                bytes = Array(valid.prefix(Int.random(in: 0 ... 2000, using: &rng)))
                for _ in 0 ..< Int.random(in: 1 ... 8, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: 0 ..< bytes.count, using: &rng)] = UInt8.random(in: 0 ... 255, using: &rng)
                }
            }
            var decoder = RecordDecoder(maxContentLength: Int.random(in: 0 ... 65535, using: &rng))
            var offset = 0
            outer: while offset < bytes.count {
                let n = min(bytes.count - offset, Int.random(in: 1 ... 64, using: &rng))
                decoder.feed(Array(bytes[offset ..< offset + n]))
                offset += n
                while true {
                    do {
                        guard let record = try decoder.next() else { break }
                        XCTAssertEqual(Int(record.header.contentLength), record.content.count)
                        // Exercise the body parsers on whatever came out.
                        record.content.withUnsafeBytes { raw in
                            _ = try? BeginRequestBody(parsing: raw)
                            _ = try? EndRequestBody(parsing: raw)
                            _ = try? NameValuePairs.forEach(in: raw) { _, _ in }
                        }
                    } catch {
                        break outer
                    }
                }
            }
            XCTAssertLessThanOrEqual(decoder.bufferedByteCount, bytes.count)
        }
    }

    func testRandomBytesDoNotCrashNameValuePairs() {
        var rng = SeededGenerator(seed: 12345)
        var accepted = 0
        for round in 0 ..< 5000 {
            var bytes = (0 ..< Int.random(in: 0 ... 300, using: &rng)).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            if round % 3 == 0 {
                // Mostly small lengths, so some inputs parse fully.
                for i in bytes.indices where Bool.random(using: &rng) { bytes[i] &= 0x0F }
            }
            var total = 0
            do {
                try bytes.withUnsafeBytes { raw in
                    try NameValuePairs.forEach(in: raw) { name, value in
                        total += name.count + value.count
                        XCTAssertLessThanOrEqual(total, raw.count)
                    }
                }
                accepted += 1
            } catch {
                XCTAssertTrue(error is FastCGIError)
            }
            _ = try? NameValuePairs.decode(bytes)
        }
        XCTAssertGreaterThan(accepted, 0)
    }
}
